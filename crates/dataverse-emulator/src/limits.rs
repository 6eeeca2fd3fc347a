//! Service-protection limits per user (sliding windows): number of requests, combined execution
//! time, concurrent requests — with the real 429 codes, messages and `x-ms-ratelimit-*` headers.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use mdsync_emulator_kit::{ConcurrencyGate, ConcurrencyGuard, SlidingWindow};
use parking_lot::Mutex;

use crate::error::ApiError;

/// The limit numbers (real defaults: 6000 requests and 1,200,000 ms per 300 s, 52 concurrent).
#[derive(Clone, Debug)]
pub struct LimitSettings {
    pub enabled: bool,
    pub max_requests: u32,
    pub max_execution_ms: u64,
    pub max_concurrent: u32,
    pub window: Duration,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            enabled: true,
            max_requests: 6000,
            max_execution_ms: 1_200_000,
            max_concurrent: 52,
            window: Duration::from_secs(300),
        }
    }
}

/// Live limiter state.
pub struct Limits {
    pub settings: LimitSettings,
    requests: SlidingWindow,
    concurrency: ConcurrencyGate,
    execution: Mutex<HashMap<String, VecDeque<(Instant, u64)>>>,
}

/// Held while a request runs; records its execution time on drop.
pub struct Permit<'a> {
    limits: &'a Limits,
    key: String,
    start: Instant,
    _guard: Option<ConcurrencyGuard>,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.limits.settings.enabled {
            return;
        }
        let ms = self.start.elapsed().as_millis() as u64;
        self.limits
            .execution
            .lock()
            .entry(std::mem::take(&mut self.key))
            .or_default()
            .push_back((Instant::now(), ms));
    }
}

fn too_many(code: &str, message: String, retry: Duration) -> ApiError {
    let secs = retry.as_secs_f64().ceil().max(1.0) as u64;
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, message)
        .with_header("Retry-After", secs.to_string())
}

impl Limits {
    pub fn new(settings: LimitSettings) -> Self {
        Limits {
            requests: SlidingWindow::new(settings.max_requests, settings.window),
            concurrency: ConcurrencyGate::new(settings.max_concurrent),
            execution: Mutex::new(HashMap::new()),
            settings,
        }
    }

    fn execution_used(&self, key: &str) -> (u64, Option<Instant>) {
        let mut map = self.execution.lock();
        let q = map.entry(key.to_string()).or_default();
        let now = Instant::now();
        while q
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > self.settings.window)
        {
            q.pop_front();
        }
        (q.iter().map(|(_, ms)| ms).sum(), q.front().map(|(t, _)| *t))
    }

    /// Admits a request for `key` (a user) or answers the 429 the service would.
    pub fn admit(&self, key: &str) -> Result<Permit<'_>, ApiError> {
        let s = &self.settings;
        if !s.enabled {
            return Ok(Permit {
                limits: self,
                key: key.to_string(),
                start: Instant::now(),
                _guard: None,
            });
        }
        let guard = self.concurrency.try_enter(key).ok_or_else(|| {
            too_many(
                "0x80072326",
                format!(
                    "Number of concurrent requests exceeded the limit of {}.",
                    s.max_concurrent
                ),
                Duration::from_secs(1),
            )
        })?;
        let (used, oldest) = self.execution_used(key);
        if used >= s.max_execution_ms {
            let retry = oldest
                .map(|t| s.window.saturating_sub(t.elapsed()))
                .unwrap_or(s.window);
            return Err(too_many(
                "0x80072321",
                format!(
                    "Combined execution time of incoming requests exceeded limit of {} milliseconds over time window of {} seconds. Decrease number of concurrent requests or reduce the duration of requests and try again later.",
                    group(s.max_execution_ms),
                    s.window.as_secs()
                ),
                retry,
            ));
        }
        self.requests.try_hit(key).map_err(|retry| {
            too_many(
                "0x80072322",
                format!(
                    "Number of requests exceeded the limit of {} over time window of {} seconds.",
                    s.max_requests,
                    s.window.as_secs()
                ),
                retry,
            )
        })?;
        Ok(Permit {
            limits: self,
            key: key.to_string(),
            start: Instant::now(),
            _guard: Some(guard),
        })
    }

    /// `x-ms-ratelimit-*` debug headers for a user.
    pub fn headers(&self, key: &str) -> Vec<(String, String)> {
        if !self.settings.enabled {
            return Vec::new();
        }
        let (used, _) = self.execution_used(key);
        let left = self.settings.max_execution_ms.saturating_sub(used);
        vec![
            (
                "x-ms-ratelimit-burst-remaining-xrm-requests".into(),
                self.requests.remaining(key).to_string(),
            ),
            (
                "x-ms-ratelimit-time-remaining-xrm-requests".into(),
                format!("{}.00", group(left)),
            ),
        ]
    }
}

/// `1200000` → `1,200,000`.
fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn groups_thousands() {
        assert_eq!(super::group(1_200_000), "1,200,000");
        assert_eq!(super::group(999), "999");
    }
}
