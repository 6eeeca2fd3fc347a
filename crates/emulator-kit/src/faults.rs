//! Fault injection: tests register faults under `/_emulator/faults`; matching requests get an error
//! (rendered in the emulator's own wire shape) and/or extra latency.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use futures::future::BoxFuture;
use http::{HeaderName, HeaderValue, StatusCode, header};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// One injected fault. All fields are optional in JSON; unknown fields are rejected so typos surface.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Fault {
    /// Assigned on insert (any value sent by a client is replaced).
    pub id: Option<u64>,
    /// Substring of the request path; `None` = any path.
    pub path_contains: Option<String>,
    /// HTTP method, compared case-insensitively; `None` = any.
    pub method: Option<String>,
    /// HTTP status to answer (`None` = let the emulator's renderer pick).
    pub status: Option<u16>,
    /// Emulator-level error code, e.g. `"0x80072322"` or `"606"`.
    pub code: Option<String>,
    pub message: Option<String>,
    /// Verbatim JSON body; overrides the renderer's body (its status is kept unless `status` is set).
    pub body: Option<serde_json::Value>,
    /// Extra response headers, e.g. `{"Retry-After": "2"}`.
    pub headers: BTreeMap<String, String>,
    /// Delay before answering (or before passing through when no status/code/body is set).
    pub latency_ms: u64,
    /// How many requests it hits; `None` = until cleared.
    pub count: Option<u32>,
}

impl Fault {
    /// True when the fault answers instead of the emulator (otherwise it only adds latency).
    pub fn answers(&self) -> bool {
        self.status.is_some()
            || self.code.is_some()
            || self.message.is_some()
            || self.body.is_some()
    }

    /// True when this fault applies to a request with `method` and `path`.
    pub fn matches(&self, method: &str, path: &str) -> bool {
        if path.starts_with(crate::ADMIN_PREFIX) {
            return false;
        }
        let method_ok = self
            .method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method));
        let path_ok = self
            .path_contains
            .as_deref()
            .is_none_or(|p| path.contains(p));
        method_ok && path_ok
    }

    /// Checks what serde cannot: a valid status, a usable method and headers, a positive count.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(status) = self.status
            && !(100..=599).contains(&status)
        {
            return Err(format!("status {status} is not an HTTP status (100-599)"));
        }
        if let Some(method) = &self.method
            && http::Method::from_bytes(method.as_bytes()).is_err()
        {
            return Err(format!("method {method:?} is not an HTTP method"));
        }
        if self.count == Some(0) {
            return Err(
                "count must be at least 1 (omit it for a fault that lasts until cleared)".into(),
            );
        }
        for (name, value) in &self.headers {
            if HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(format!("header name {name:?} is invalid"));
            }
            if HeaderValue::from_str(value).is_err() {
                return Err(format!("header value for {name:?} is invalid"));
            }
        }
        Ok(())
    }
}

/// Turns a matched fault into the emulator's own wire error (Dataverse: `{"error":{code,message}}` with
/// a status; Marketo: HTTP 200 envelope `{"requestId","success":false,"errors":[...]}`).
pub type FaultRenderer = Arc<dyn Fn(&Fault) -> Response + Send + Sync>;

#[derive(Default)]
struct Faults {
    next_id: u64,
    active: Vec<Fault>,
}

/// The active faults of one emulator, shared by its admin routes and its [`fault_layer`].
#[derive(Clone)]
pub struct FaultRegistry {
    faults: Arc<Mutex<Faults>>,
    renderer: FaultRenderer,
}

impl std::fmt::Debug for FaultRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultRegistry")
            .field("active", &self.faults.lock().active)
            .finish()
    }
}

impl FaultRegistry {
    pub fn new(renderer: FaultRenderer) -> Self {
        Self {
            faults: Arc::default(),
            renderer,
        }
    }

    /// Adds a fault (after existing ones: the oldest matching fault wins) and returns its id.
    pub fn add(&self, mut fault: Fault) -> u64 {
        let mut faults = self.faults.lock();
        faults.next_id += 1;
        let id = faults.next_id;
        fault.id = Some(id);
        faults.active.push(fault);
        id
    }

    /// The active faults, with their remaining counts.
    pub fn list(&self) -> Vec<Fault> {
        self.faults.lock().active.clone()
    }

    /// Removes one fault; false when no fault has this id.
    pub fn remove(&self, id: u64) -> bool {
        let mut faults = self.faults.lock();
        let before = faults.active.len();
        faults.active.retain(|f| f.id != Some(id));
        faults.active.len() != before
    }

    pub fn clear(&self) {
        self.faults.lock().active.clear();
    }

    /// Finds the first fault matching the request, counts it down (dropping it when used up) and returns
    /// a copy of it as it was when it matched.
    pub fn take_match(&self, method: &str, path: &str) -> Option<Fault> {
        let mut faults = self.faults.lock();
        let index = faults.active.iter().position(|f| f.matches(method, path))?;
        let hit = faults.active[index].clone();
        match &mut faults.active[index].count {
            Some(1) | Some(0) => {
                faults.active.remove(index);
            }
            Some(n) => *n -= 1,
            None => {}
        }
        Some(hit)
    }

    /// The response for an answering fault: the renderer's, then `status`, `body` and `headers` applied.
    pub fn render(&self, fault: &Fault) -> Response {
        let mut response = (self.renderer)(fault);
        if let Some(status) = fault.status.and_then(|s| StatusCode::from_u16(s).ok()) {
            *response.status_mut() = status;
        }
        if let Some(body) = &fault.body {
            let bytes = serde_json::to_vec(body).unwrap_or_default();
            let headers = response.headers_mut();
            headers.remove(header::CONTENT_LENGTH);
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=utf-8"),
            );
            *response.body_mut() = Body::from(bytes);
        }
        for (name, value) in &fault.headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

/// Middleware applying the registry's faults; paths under `/_emulator/` are never faulted.
pub fn fault_layer(registry: FaultRegistry) -> FaultLayer {
    FaultLayer { registry }
}

/// See [`fault_layer`].
#[derive(Clone, Debug)]
pub struct FaultLayer {
    registry: FaultRegistry,
}

impl<S> tower::Layer<S> for FaultLayer {
    type Service = FaultService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        FaultService {
            inner,
            registry: self.registry.clone(),
        }
    }
}

/// See [`fault_layer`].
#[derive(Clone, Debug)]
pub struct FaultService<S> {
    inner: S,
    registry: FaultRegistry,
}

impl<S> tower::Service<Request> for FaultService<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let fault = self
            .registry
            .take_match(request.method().as_str(), request.uri().path());
        let Some(fault) = fault else {
            return Box::pin(self.inner.call(request));
        };
        // Take the service that was driven to readiness, leave a fresh clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let registry = self.registry.clone();
        Box::pin(async move {
            if fault.latency_ms > 0 {
                tokio::time::sleep(Duration::from_millis(fault.latency_ms)).await;
            }
            if fault.answers() {
                tracing::debug!(id = fault.id, "answering with injected fault");
                Ok(registry.render(&fault))
            } else {
                inner.call(request).await
            }
        })
    }
}
