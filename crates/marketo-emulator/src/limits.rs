//! Marketo's service limits: calls per rolling window (606), calls in flight (615), calls per day (607),
//! and the per-user usage behind `stats/usage.json`.

use std::collections::BTreeMap;
use std::time::Duration;

use mdsync_emulator_kit::{ConcurrencyGate, ConcurrencyGuard, SlidingWindow};
use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::envelope::ApiError;

/// All calls of one instance share the limits, whatever the user.
const INSTANCE: &str = "instance";

/// Days of usage history kept for `stats/usage/last7days.json`.
const HISTORY_DAYS: usize = 8;

pub struct Limits {
    enabled: bool,
    rate: SlidingWindow,
    gate: ConcurrencyGate,
    daily_quota: u64,
    usage: Mutex<BTreeMap<String, BTreeMap<String, u64>>>,
}

impl Limits {
    pub fn new(config: &crate::Config) -> Self {
        Self {
            enabled: config.limits_enabled,
            rate: SlidingWindow::new(config.rate_limit, config.rate_window),
            gate: ConcurrencyGate::new(config.concurrency_limit),
            daily_quota: config.daily_quota,
            usage: Mutex::default(),
        }
    }

    /// A slot for one call in flight, or 615. `Ok(None)` when limits are off.
    pub fn enter(&self) -> Result<Option<ConcurrencyGuard>, ApiError> {
        if !self.enabled {
            return Ok(None);
        }
        self.gate.try_enter(INSTANCE).map(Some).ok_or_else(|| {
            ApiError::new(
                "615",
                format!("Concurrent access limit '{}' reached", self.gate.max()),
            )
        })
    }

    /// Counts one call by `user` against the daily quota and the rate window (607 / 606 when over).
    pub fn count(&self, user: &str) -> Result<(), ApiError> {
        let day = crate::time::quota_day(crate::time::now());
        if self.enabled {
            let today: u64 = self
                .usage
                .lock()
                .get(&day)
                .map(|u| u.values().sum())
                .unwrap_or(0);
            if today >= self.daily_quota {
                return Err(ApiError::new("607", "Daily quota reached"));
            }
            if self.rate.try_hit(INSTANCE).is_err() {
                return Err(ApiError::new(
                    "606",
                    format!(
                        "Max rate limit '{}' exceeded with in '{}' secs",
                        self.rate.max(),
                        secs(self.rate.window())
                    ),
                ));
            }
        }
        let mut usage = self.usage.lock();
        *usage
            .entry(day)
            .or_default()
            .entry(user.to_owned())
            .or_insert(0) += 1;
        while usage.len() > HISTORY_DAYS {
            usage.pop_first();
        }
        Ok(())
    }

    /// `stats/usage.json` (today) or `last7days` records.
    pub fn usage(&self, days: usize) -> Vec<Value> {
        let today = crate::time::quota_day(crate::time::now());
        let usage = self.usage.lock();
        let mut out: Vec<Value> = usage
            .iter()
            .rev()
            .filter(|(day, _)| days > 1 || **day == today)
            .take(days)
            .map(|(day, users)| {
                let users: Vec<Value> = users
                    .iter()
                    .map(|(u, n)| json!({"userId": u, "count": n}))
                    .collect();
                json!({"date": day, "total": users.iter().filter_map(|u| u["count"].as_u64()).sum::<u64>(), "users": users})
            })
            .collect();
        if out.is_empty() {
            out.push(json!({"date": today, "total": 0, "users": []}));
        }
        out
    }

    /// Counters for the test surface.
    pub fn snapshot(&self) -> Value {
        let today = crate::time::quota_day(crate::time::now());
        let calls_today: u64 = self
            .usage
            .lock()
            .get(&today)
            .map(|u| u.values().sum())
            .unwrap_or(0);
        json!({
            "limitsEnabled": self.enabled,
            "callsToday": calls_today,
            "dailyQuota": self.daily_quota,
            "rateRemaining": self.rate.remaining(INSTANCE),
            "rateLimit": self.rate.max(),
            "rateWindowSecs": secs(self.rate.window()),
            "inFlight": self.gate.in_flight(INSTANCE),
            "concurrencyLimit": self.gate.max(),
        })
    }

    /// Forgets usage (test-surface reset).
    pub fn reset(&self) {
        self.usage.lock().clear();
        self.rate.reset();
    }
}

fn secs(d: Duration) -> u64 {
    d.as_secs()
        .max(u64::from(d.subsec_nanos() > 0 && d.as_secs() == 0))
}
