//! Client-side protection so we never trip the instance-wide limits (100 calls / rolling 20 s, 10 concurrent,
//! 50,000 calls/day) that every integration on the instance shares.
//!
//! A rolling window of send times (not a token bucket): Marketo counts calls in a rolling window, so a
//! bucket refilled at 90/20 s could still put 100+ calls in some 20 s span after an idle period.

use std::sync::Arc;
use std::time::Duration;

use chrono::{FixedOffset, NaiveDate, Utc};
use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::error::Error;

/// Sliding-window rate limit plus a concurrency cap plus the daily budget.
#[derive(Debug)]
pub struct Limiter {
    window: Arc<Mutex<RateWindow>>,
    concurrency: Arc<Semaphore>,
    budget: Budget,
}

/// Held for the duration of one HTTP call; on drop it releases the concurrency slot and re-dates its
/// rate slot to the completion time. The server counts a call when it arrives, somewhere between our send
/// and the response; counting it until `window` after completion keeps us under the server's count even
/// when latencies vary.
#[derive(Debug)]
pub struct Permit {
    _slot: OwnedSemaphorePermit,
    window: Arc<Mutex<RateWindow>>,
    id: u64,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.window.lock().complete(self.id, Instant::now());
    }
}

impl Limiter {
    pub fn new(rate: u32, window: Duration, max_concurrency: usize, daily_budget: u64) -> Self {
        Self {
            window: Arc::new(Mutex::new(RateWindow::new(rate, window))),
            concurrency: Arc::new(Semaphore::new(max_concurrency.max(1))),
            budget: Budget::new(daily_budget),
        }
    }

    /// Waits for a concurrency slot and a rate slot, then spends one call of the budget.
    pub async fn acquire(&self) -> Result<Permit, Error> {
        self.budget.check()?;
        let slot = self
            .concurrency
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Config("the call limiter was closed".into()))?;
        let id = loop {
            let verdict = self.window.lock().try_take(Instant::now());
            match verdict {
                Ok(id) => break id,
                Err(until) => tokio::time::sleep_until(until).await,
            }
        };
        let permit = Permit {
            _slot: slot,
            window: Arc::clone(&self.window),
            id,
        };
        self.budget.spend()?;
        Ok(permit)
    }

    /// Makes every caller wait until `until` (after a 606 the server's window is full, whatever we counted).
    pub fn pause_until(&self, until: Instant) {
        self.window.lock().pause_until(until);
    }

    pub fn budget(&self) -> &Budget {
        &self.budget
    }
}

/// Send (then completion) times within the last `window`, and an optional server-imposed pause.
#[derive(Debug)]
pub struct RateWindow {
    max: u32,
    window: Duration,
    /// (call id, time) — at most `max` entries, so linear scans are cheap.
    calls: Vec<(u64, Instant)>,
    next_id: u64,
    paused_until: Option<Instant>,
}

impl RateWindow {
    pub fn new(max: u32, window: Duration) -> Self {
        Self {
            max: max.max(1),
            window,
            calls: Vec::new(),
            next_id: 0,
            paused_until: None,
        }
    }

    /// Records a call at `now` when allowed (returning its id), or says when to try again.
    pub fn try_take(&mut self, now: Instant) -> Result<u64, Instant> {
        if let Some(until) = self.paused_until {
            if now < until {
                return Err(until);
            }
            self.paused_until = None;
        }
        let window = self.window;
        self.calls
            .retain(|(_, at)| now.saturating_duration_since(*at) < window);
        if self.calls.len() < self.max as usize {
            let id = self.next_id;
            self.next_id += 1;
            self.calls.push((id, now));
            Ok(id)
        } else {
            let oldest = self.calls.iter().map(|(_, at)| *at).min().unwrap_or(now);
            Err(oldest + self.window)
        }
    }

    /// Moves call `id` to `now` (its completion), if it is still counted.
    pub fn complete(&mut self, id: u64, now: Instant) {
        if let Some(entry) = self.calls.iter_mut().find(|(i, _)| *i == id)
            && entry.1 < now
        {
            entry.1 = now;
        }
    }

    pub fn pause_until(&mut self, until: Instant) {
        if self.paused_until.is_none_or(|current| current < until) {
            self.paused_until = Some(until);
        }
    }

    /// Calls recorded in the current window.
    #[cfg(test)]
    pub fn in_window(&self) -> usize {
        self.calls.len()
    }
}

/// Calls spent today against the configured budget. Marketo's day resets at 00:00 US Central (CST, UTC-6).
#[derive(Debug)]
pub struct Budget {
    limit: u64,
    state: Mutex<(NaiveDate, u64)>,
}

impl Budget {
    pub fn new(limit: u64) -> Self {
        Self {
            limit,
            state: Mutex::new((marketo_today(), 0)),
        }
    }

    /// The configured calls per day.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Calls spent today (after a day change: 0).
    pub fn used(&self) -> u64 {
        let mut state = self.state.lock();
        roll(&mut state);
        state.1
    }

    /// Calls left today.
    pub fn remaining(&self) -> u64 {
        self.limit.saturating_sub(self.used())
    }

    /// Sets today's count, e.g. from `stats/usage.json` or a stored counter after a restart.
    pub fn set_used(&self, used: u64) {
        let mut state = self.state.lock();
        roll(&mut state);
        state.1 = used;
    }

    fn check(&self) -> Result<(), Error> {
        let used = self.used();
        if used >= self.limit {
            return Err(Error::BudgetExhausted {
                used,
                budget: self.limit,
            });
        }
        Ok(())
    }

    fn spend(&self) -> Result<(), Error> {
        let mut state = self.state.lock();
        roll(&mut state);
        if state.1 >= self.limit {
            return Err(Error::BudgetExhausted {
                used: state.1,
                budget: self.limit,
            });
        }
        state.1 += 1;
        Ok(())
    }

    /// Gives back a call the server did not count (601/602/604/608/611 are free).
    pub(crate) fn refund(&self) {
        let mut state = self.state.lock();
        state.1 = state.1.saturating_sub(1);
    }
}

fn roll(state: &mut (NaiveDate, u64)) {
    let today = marketo_today();
    if state.0 != today {
        *state = (today, 0);
    }
}

/// The current date in Marketo's quota timezone (US Central standard time).
pub fn marketo_today() -> NaiveDate {
    let now = Utc::now();
    match FixedOffset::west_opt(6 * 3600) {
        Some(cst) => now.with_timezone(&cst).date_naive(),
        None => now.date_naive(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_admits_max_then_waits_for_the_oldest_to_expire() {
        let t0 = Instant::now();
        let mut w = RateWindow::new(3, Duration::from_secs(20));
        assert!(w.try_take(t0).is_ok());
        assert!(w.try_take(t0 + Duration::from_secs(1)).is_ok());
        assert!(w.try_take(t0 + Duration::from_secs(2)).is_ok());
        assert_eq!(
            w.try_take(t0 + Duration::from_secs(3)),
            Err(t0 + Duration::from_secs(20))
        );
        // Exactly one window after the first send, that slot is free again.
        assert!(w.try_take(t0 + Duration::from_secs(20)).is_ok());
        assert_eq!(w.in_window(), 3);
        assert_eq!(
            w.try_take(t0 + Duration::from_secs(20)),
            Err(t0 + Duration::from_secs(21))
        );
    }

    #[test]
    fn pause_blocks_until_its_end_and_only_extends() {
        let t0 = Instant::now();
        let mut w = RateWindow::new(100, Duration::from_secs(20));
        w.pause_until(t0 + Duration::from_secs(5));
        w.pause_until(t0 + Duration::from_secs(2));
        assert_eq!(w.try_take(t0), Err(t0 + Duration::from_secs(5)));
        assert!(w.try_take(t0 + Duration::from_secs(5)).is_ok());
    }

    #[test]
    fn a_completed_call_counts_from_its_completion() {
        let t0 = Instant::now();
        let mut w = RateWindow::new(1, Duration::from_secs(20));
        let id = w.try_take(t0).unwrap();
        w.complete(id, t0 + Duration::from_secs(3));
        assert_eq!(
            w.try_take(t0 + Duration::from_secs(20)),
            Err(t0 + Duration::from_secs(23))
        );
        assert!(w.try_take(t0 + Duration::from_secs(23)).is_ok());
    }

    #[test]
    fn budget_counts_refunds_and_refuses_when_spent() {
        let budget = Budget::new(2);
        assert!(budget.spend().is_ok());
        assert!(budget.spend().is_ok());
        assert_eq!(budget.used(), 2);
        let err = budget.check().unwrap_err();
        assert!(matches!(err, Error::BudgetExhausted { used: 2, budget: 2 }));
        budget.refund();
        assert_eq!(budget.remaining(), 1);
        budget.set_used(10);
        assert!(budget.spend().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn acquire_spaces_calls_by_the_window() {
        let limiter = Limiter::new(2, Duration::from_secs(20), 5, 100);
        let start = Instant::now();
        drop(limiter.acquire().await.unwrap());
        drop(limiter.acquire().await.unwrap());
        drop(limiter.acquire().await.unwrap());
        assert_eq!(start.elapsed(), Duration::from_secs(20));
        assert_eq!(limiter.budget().used(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn acquire_caps_concurrency() {
        let limiter = Arc::new(Limiter::new(100, Duration::from_secs(20), 2, 100));
        let a = limiter.acquire().await.unwrap();
        let _b = limiter.acquire().await.unwrap();
        let l2 = limiter.clone();
        let third = tokio::spawn(async move { l2.acquire().await.map(|_| ()) });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!third.is_finished());
        drop(a);
        third.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn acquire_refuses_without_waiting_when_budget_is_spent() {
        let limiter = Limiter::new(100, Duration::from_secs(20), 2, 1);
        drop(limiter.acquire().await.unwrap());
        assert!(matches!(
            limiter.acquire().await,
            Err(Error::BudgetExhausted { .. })
        ));
    }
}
