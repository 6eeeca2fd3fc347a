//! Per-route request counters, read by tests under `/_emulator/counters` to prove how many calls a client
//! made (e.g. that paging or retries did what they claim).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{MatchedPath, Request};
use axum::response::Response;
use parking_lot::Mutex;

/// Counts keyed `"METHOD /matched/route"` (the raw path when no route matched).
#[derive(Clone, Default, Debug)]
pub struct RequestCounters {
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl RequestCounters {
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.counts.lock().clone()
    }

    pub fn reset(&self) {
        self.counts.lock().clear();
    }

    /// All requests except those to `/_emulator/` routes.
    pub fn total(&self) -> u64 {
        self.counts
            .lock()
            .iter()
            .filter(|(key, _)| !is_admin_key(key))
            .map(|(_, n)| n)
            .sum()
    }

    /// Count for one key, e.g. `"GET /api/data/v9.2/{entity_set}"`.
    pub fn get(&self, key: &str) -> u64 {
        self.counts.lock().get(key).copied().unwrap_or(0)
    }

    /// Records one request.
    pub fn record(&self, method: &str, route: &str) {
        let key = format!("{method} {route}");
        *self.counts.lock().entry(key).or_insert(0) += 1;
    }
}

fn is_admin_key(key: &str) -> bool {
    key.split_once(' ')
        .is_some_and(|(_, path)| path.starts_with(crate::ADMIN_PREFIX))
}

/// Middleware counting every request by method and axum [`MatchedPath`] (raw path when unmatched).
/// Add it with `Router::layer` so the matched route is known.
pub fn counter_layer(counters: RequestCounters) -> CounterLayer {
    CounterLayer { counters }
}

/// See [`counter_layer`].
#[derive(Clone, Debug)]
pub struct CounterLayer {
    counters: RequestCounters,
}

impl<S> tower::Layer<S> for CounterLayer {
    type Service = CounterService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CounterService {
            inner,
            counters: self.counters.clone(),
        }
    }
}

/// See [`counter_layer`].
#[derive(Clone, Debug)]
pub struct CounterService<S> {
    inner: S,
    counters: RequestCounters,
}

impl<S> tower::Service<Request> for CounterService<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let route = match request.extensions().get::<MatchedPath>() {
            Some(matched) => matched.as_str(),
            None => request.uri().path(),
        };
        self.counters.record(request.method().as_str(), route);
        self.inner.call(request)
    }
}
