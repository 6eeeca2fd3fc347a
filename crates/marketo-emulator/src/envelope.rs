//! The Marketo response envelope and the one error type every handler returns.

use std::sync::atomic::{AtomicU32, Ordering};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};
use serde_json::{Map, Value, json};

use crate::store::StoreError;

/// A request-level failure, rendered as `success:false` (HTTP 200) or as a bare HTTP status.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// `{"success":false,"errors":[{"code","message"}]}` with HTTP 200.
    Api { code: &'static str, message: String },
    /// A non-envelope answer (413, 414, bulk-file 404) with a plain-text body.
    Http { status: StatusCode, body: String },
}

impl ApiError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self::Api {
            code,
            message: message.into(),
        }
    }

    pub fn http(status: StatusCode, body: impl Into<String>) -> Self {
        Self::Http {
            status,
            body: body.into(),
        }
    }

    pub fn code(&self) -> Option<&'static str> {
        match self {
            Self::Api { code, .. } => Some(code),
            Self::Http { .. } => None,
        }
    }

    pub fn token_invalid() -> Self {
        Self::new("601", "Access token invalid")
    }
    pub fn token_expired() -> Self {
        Self::new("602", "Access token expired")
    }
    pub fn method_not_supported() -> Self {
        Self::new("605", "HTTP Method not supported")
    }
    pub fn invalid_json() -> Self {
        Self::new("609", "Invalid JSON")
    }
    pub fn not_found() -> Self {
        Self::new("610", "Requested resource not found")
    }
    pub fn system_error() -> Self {
        Self::new("611", "System error")
    }
    pub fn invalid_content_type() -> Self {
        Self::new("612", "Invalid Content Type")
    }
    pub fn blank(name: &str) -> Self {
        Self::new("701", format!("{name} cannot be blank"))
    }
    pub fn invalid_value(value: &str, kind: &str) -> Self {
        Self::new(
            "1001",
            format!("Invalid value '{value}'. Required of type '{kind}'"),
        )
    }
    pub fn invalid_data(message: impl Into<String>) -> Self {
        Self::new("1003", message)
    }

    /// Renders this error in the request's envelope.
    pub fn render(&self, request_id: &str) -> Response {
        match self {
            Self::Api { code, message } => json_response(
                StatusCode::OK,
                &json!({
                    "requestId": request_id,
                    "success": false,
                    "errors": [{"code": code, "message": message}],
                }),
            ),
            Self::Http { status, body } => plain_response(*status, body.clone()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        tracing::error!(error = %err, "marketo emulator storage failure");
        Self::system_error()
    }
}

impl From<rusqlite::Error> for ApiError {
    fn from(err: rusqlite::Error) -> Self {
        Self::from(StoreError::from(err))
    }
}

impl From<serde_json::Error> for ApiError {
    fn from(err: serde_json::Error) -> Self {
        Self::from(StoreError::from(err))
    }
}

/// Handler result: the success body (envelope members besides `requestId`/`success`) or an error.
pub type ApiResult = Result<Reply, ApiError>;

/// What a handler produced.
pub enum Reply {
    /// Envelope members: `result`, `nextPageToken`, `moreResult`, `warnings`, ...
    Envelope(Map<String, Value>),
    /// A response built by the handler (identity, bulk files).
    Raw(Response),
    /// A `result` array already serialised (hot paging paths skip a parse/re-serialise round trip),
    /// plus the other envelope members.
    Prebuilt {
        result: String,
        members: Map<String, Value>,
    },
}

impl Reply {
    /// `{"result":[...]}`.
    pub fn result(result: Vec<Value>) -> Self {
        let mut map = Map::new();
        map.insert("result".into(), Value::Array(result));
        Self::Envelope(map)
    }

    /// Adds an envelope member.
    pub fn with(mut self, key: &str, value: Value) -> Self {
        match &mut self {
            Self::Envelope(map) | Self::Prebuilt { members: map, .. } => {
                map.insert(key.into(), value);
            }
            Self::Raw(_) => {}
        }
        self
    }

    pub fn render(self, request_id: &str) -> Response {
        match self {
            Self::Raw(response) => response,
            Self::Prebuilt { result, members } => {
                let mut body = String::with_capacity(result.len() + 256);
                body.push_str("{\"requestId\":");
                body.push_str(&Value::String(request_id.into()).to_string());
                body.push_str(",\"result\":");
                body.push_str(&result);
                body.push_str(",\"success\":true");
                for (k, v) in members {
                    body.push(',');
                    body.push_str(&Value::String(k).to_string());
                    body.push(':');
                    body.push_str(&v.to_string());
                }
                body.push('}');
                let mut response = (StatusCode::OK, Body::from(body)).into_response();
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json;charset=UTF-8"),
                );
                response
            }
            Self::Envelope(mut members) => {
                let mut body = Map::new();
                body.insert("requestId".into(), Value::String(request_id.into()));
                if let Some(result) = members.remove("result") {
                    body.insert("result".into(), result);
                }
                body.insert("success".into(), Value::Bool(true));
                for (k, v) in members {
                    body.insert(k, v);
                }
                json_response(StatusCode::OK, &Value::Object(body))
            }
        }
    }
}

/// `application/json;charset=UTF-8` like the real service.
pub fn json_response(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut response = (status, Body::from(bytes)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    response
}

pub fn plain_response(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain;charset=UTF-8"),
    );
    response
}

static SEQ: AtomicU32 = AtomicU32::new(0x1000);

/// A request id shaped like the real ones: `e42b#14272d07d78` (node hex # epoch millis hex).
pub fn request_id() -> String {
    let seq = SEQ.fetch_add(1, Ordering::Relaxed) & 0xfffff;
    format!("{seq:x}#{:x}", crate::time::now_ms())
}

/// The 500 body for a caught handler panic: still the Marketo envelope, code 611.
pub fn panic_response() -> Response {
    let mut response = ApiError::system_error().render(&request_id());
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
}

/// A skipped record's `reasons` entry.
pub fn skipped(reason: &ApiError, extra: Map<String, Value>) -> Value {
    let mut record = extra;
    record.insert("status".into(), Value::String("skipped".into()));
    let (code, message) = match reason {
        ApiError::Api { code, message } => (*code, message.clone()),
        ApiError::Http { body, .. } => ("1003", body.clone()),
    };
    record.insert(
        "reasons".into(),
        json!([{"code": code, "message": message}]),
    );
    Value::Object(record)
}
