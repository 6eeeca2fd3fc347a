//! Building blocks for service-protection limits; each emulator decides keys, numbers and error bodies.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// At most `max` hits per key within any `window`-long interval (a true sliding window: each hit
/// expires exactly `window` after it happened).
#[derive(Debug)]
pub struct SlidingWindow {
    max: u32,
    window: Duration,
    hits: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl SlidingWindow {
    pub fn new(max: u32, window: Duration) -> Self {
        Self {
            max,
            window,
            hits: Mutex::default(),
        }
    }

    pub fn max(&self) -> u32 {
        self.max
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    /// Ok(()) and records the hit, or Err(retry_after) when `key` already has `max` hits in the window.
    pub fn try_hit(&self, key: &str) -> Result<(), Duration> {
        self.try_hit_at(key, Instant::now())
    }

    /// [`SlidingWindow::try_hit`] at a given instant (instants must not go backwards per key).
    pub fn try_hit_at(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut hits = self.hits.lock();
        let queue = hits.entry(key.to_owned()).or_default();
        prune(queue, now, self.window);
        if queue.len() >= self.max as usize {
            let retry_after = match queue.front() {
                Some(oldest) => (*oldest + self.window).saturating_duration_since(now),
                None => self.window, // max == 0: never admits
            };
            return Err(retry_after);
        }
        queue.push_back(now);
        // Keep the map from growing with one-off keys.
        if hits.len() > 1024 {
            let window = self.window;
            hits.retain(|_, q| {
                prune(q, now, window);
                !q.is_empty()
            });
        }
        Ok(())
    }

    /// Hits still allowed for `key` right now.
    pub fn remaining(&self, key: &str) -> u32 {
        self.remaining_at(key, Instant::now())
    }

    /// [`SlidingWindow::remaining`] at a given instant.
    pub fn remaining_at(&self, key: &str, now: Instant) -> u32 {
        let mut hits = self.hits.lock();
        match hits.get_mut(key) {
            Some(queue) => {
                prune(queue, now, self.window);
                self.max.saturating_sub(queue.len() as u32)
            }
            None => self.max,
        }
    }

    /// Forgets every hit (e.g. on `/_emulator/reset`).
    pub fn reset(&self) {
        self.hits.lock().clear();
    }
}

fn prune(queue: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while let Some(oldest) = queue.front() {
        if now.saturating_duration_since(*oldest) >= window {
            queue.pop_front();
        } else {
            break;
        }
    }
}

/// At most `max` requests in flight per key.
#[derive(Debug)]
pub struct ConcurrencyGate {
    max: u32,
    in_flight: Arc<Mutex<HashMap<String, u32>>>,
}

impl ConcurrencyGate {
    pub fn new(max: u32) -> Self {
        Self {
            max,
            in_flight: Arc::default(),
        }
    }

    pub fn max(&self) -> u32 {
        self.max
    }

    /// Some(guard) while under `max` in-flight for `key`; the guard releases on drop. None = over the limit.
    pub fn try_enter(&self, key: &str) -> Option<ConcurrencyGuard> {
        let mut in_flight = self.in_flight.lock();
        let count = in_flight.entry(key.to_owned()).or_insert(0);
        if *count >= self.max {
            if *count == 0 {
                in_flight.remove(key);
            }
            return None;
        }
        *count += 1;
        Some(ConcurrencyGuard {
            in_flight: Arc::clone(&self.in_flight),
            key: key.to_owned(),
        })
    }

    /// Requests currently in flight for `key`.
    pub fn in_flight(&self, key: &str) -> u32 {
        self.in_flight.lock().get(key).copied().unwrap_or(0)
    }
}

/// Holds one in-flight slot of a [`ConcurrencyGate`] until dropped.
#[derive(Debug)]
pub struct ConcurrencyGuard {
    in_flight: Arc<Mutex<HashMap<String, u32>>>,
    key: String,
}

impl Drop for ConcurrencyGuard {
    fn drop(&mut self) {
        let mut in_flight = self.in_flight.lock();
        if let Some(count) = in_flight.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                in_flight.remove(&self.key);
            }
        }
    }
}
