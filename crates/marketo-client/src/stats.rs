//! Counters of what the client did, for `mdsync status` and metrics ("reports the rate limits").

use std::sync::atomic::{AtomicU64, Ordering};

/// Running totals since the client was built; shared by its clones.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    calls: AtomicU64,
    retries: AtomicU64,
    rate_limited: AtomicU64,
    reauthentications: AtomicU64,
    failures: AtomicU64,
}

/// What a client did since it was built (see [`Client::stats`](crate::Client::stats)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ClientStats {
    /// HTTP attempts sent to REST/bulk endpoints (identity excluded).
    pub calls: u64,
    /// Attempts repeated after a transient failure (604/608/611/615/713, 5xx, timeouts, 606).
    pub retries: u64,
    /// 606 answers (the instance-wide rate window was full).
    pub rate_limited: u64,
    /// 601/602 answers that made the client authenticate again.
    pub reauthentications: u64,
    /// Calls that ended in an error returned to the caller.
    pub failures: u64,
}

impl Counters {
    pub fn call(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }
    pub fn retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }
    pub fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }
    pub fn reauthentication(&self) {
        self.reauthentications.fetch_add(1, Ordering::Relaxed);
    }
    pub fn failure(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> ClientStats {
        ClientStats {
            calls: self.calls.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
            reauthentications: self.reauthentications.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
        }
    }
}
