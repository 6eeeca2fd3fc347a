//! The one error type every handler returns; it renders the Dataverse wire envelope
//! `{"error":{"code":"0x...","message":"..."}}` so no handler formats an error by hand.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// A Web API error as the real service reports it: HTTP status, hex HRESULT code, message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    /// Extra response headers (e.g. `Retry-After`, `WWW-Authenticate`).
    pub headers: Vec<(String, String)>,
    /// 401 answers carry no body, like the real service.
    pub empty_body: bool,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.to_string(),
            message: message.into(),
            headers: Vec::new(),
            empty_body: false,
        }
    }
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }
    /// 404 `0x8006088a` for a path segment that names nothing.
    pub fn segment_not_found(segment: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "0x8006088a",
            format!("Resource not found for the segment '{segment}'."),
        )
    }
    /// 404 `0x80040217` for a missing record.
    pub fn record_not_found(entity: &str, id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "0x80040217",
            format!("{entity} With Id = {id} Does Not Exist"),
        )
    }
    /// 400 `0x0` for a property name the entity type lacks.
    pub fn unknown_property(entity: &str, name: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "0x0",
            format!(
                "Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{entity}'."
            ),
        )
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "0x80060888", message)
    }
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "0x80060888",
            "The requested resource does not support http method.",
        )
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "0x80040216", message)
    }
    /// 401 with an empty body and a `WWW-Authenticate` challenge.
    pub fn unauthorized(authorization_uri: &str, resource: &str, message: &str) -> Self {
        let mut e = Self::new(StatusCode::UNAUTHORIZED, "0x80072560", message);
        e.empty_body = true;
        e.headers.push((
            "WWW-Authenticate".into(),
            format!("Bearer authorization_uri={authorization_uri}, resource_id={resource}"),
        ));
        e
    }
    /// 403 `0x80040220` naming the missing privilege like the platform does.
    pub fn privilege_denied(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "0x80040220", message)
    }
    /// The JSON body as the service sends it.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {"code": self.code, "message": self.message}})
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}
impl std::error::Error for ApiError {}

impl From<rusqlite::Error> for ApiError {
    fn from(e: rusqlite::Error) -> Self {
        tracing::error!(error = %e, "SQLite failure");
        ApiError::internal(format!("An unexpected storage error occurred: {e}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = if self.empty_body {
            self.status.into_response()
        } else {
            let body = serde_json::to_vec(&self.body()).unwrap_or_default();
            let mut r = (self.status, body).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json; odata.metadata=minimal"),
            );
            r
        };
        resp.headers_mut()
            .insert("OData-Version", HeaderValue::from_static("4.0"));
        for (k, v) in &self.headers {
            if let (Ok(name), Ok(value)) = (
                axum::http::HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                resp.headers_mut().insert(name, value);
            }
        }
        resp
    }
}

/// Result alias for handlers.
pub type ApiResult<T> = Result<T, ApiError>;
