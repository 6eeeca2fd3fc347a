//! The one error type of the client, classified so callers match on [`ErrorKind`] instead of strings.

use std::fmt;
use std::time::Duration;

/// What went wrong, in the terms a caller acts on (resync, refuse, retry later, fix the config).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// 404 `0x80040217` (record missing), `0x80060891` (alternate key miss) or any other 404.
    NotFound,
    /// 403 `0x80040220`/`0x80040231`/`0x80048306`: the caller's roles lack a privilege.
    PrivilegeDenied,
    /// 403 `0x80072560`: a valid token whose app has no application user in this org.
    NotMemberOfOrg,
    /// 412: ETag mismatch, `If-None-Match: *` on an existing row, duplicate key.
    PreconditionFailed,
    /// 429 service protection; `retry_after` says when the service accepts calls again.
    Throttled,
    /// 401 on a data call even after a fresh token.
    Unauthorized,
    /// The token endpoint refused the credentials (bad tenant, client id or secret).
    Authentication,
    /// The stored delta link can no longer be used (expired or invalid version stamp): resync from scratch.
    ChangeTokenExpired,
    /// `0x80072491`: the table is not enabled for change tracking.
    ChangeTrackingNotEnabled,
    /// Any other 4xx (bad request, unknown column, validation).
    BadRequest,
    /// 5xx after the retry budget was spent.
    Server,
    /// The request timed out (after retries).
    Timeout,
    /// Connection-level failure (DNS, refused, reset, TLS) after retries.
    Transport,
    /// The service answered something this client cannot read (bad JSON, missing header, foreign link).
    Decode,
    /// The client configuration or an argument is unusable (bad URL, header value).
    InvalidInput,
}

/// A failed Dataverse call: the operation, the HTTP status, the HRESULT code and message, the request id.
///
/// `Display` reads like "update accounts(…): The user does not hold the necessary privileges. (HTTP 403,
/// code 0x80040220, request id …)". No secret or bearer token ever enters this type.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct DataverseError(Box<Details>);

#[derive(Debug, thiserror::Error)]
struct Details {
    kind: ErrorKind,
    operation: String,
    status: Option<u16>,
    code: Option<String>,
    message: String,
    request_id: Option<String>,
    retry_after: Option<Duration>,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl fmt::Display for Details {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.operation, self.message)?;
        let mut details = Vec::new();
        if let Some(status) = self.status {
            details.push(format!("HTTP {status}"));
        }
        if let Some(code) = &self.code {
            details.push(format!("code {code}"));
        }
        if let Some(id) = &self.request_id {
            details.push(format!("request id {id}"));
        }
        if let Some(after) = self.retry_after {
            details.push(format!("retry after {}s", after.as_secs_f64()));
        }
        if !details.is_empty() {
            write!(f, " ({})", details.join(", "))?;
        }
        Ok(())
    }
}

impl DataverseError {
    /// An error that did not come from an HTTP response (transport, decode, bad input).
    pub fn new(kind: ErrorKind, operation: impl Into<String>, message: impl Into<String>) -> Self {
        Self(Box::new(Details {
            kind,
            operation: operation.into(),
            status: None,
            code: None,
            message: message.into(),
            request_id: None,
            retry_after: None,
            source: None,
        }))
    }

    /// Classifies an error response from the Web API (status + `{"error":{"code","message"}}`).
    pub fn from_response(
        operation: impl Into<String>,
        status: u16,
        code: Option<String>,
        message: Option<String>,
        request_id: Option<String>,
    ) -> Self {
        let kind = classify(status, code.as_deref(), message.as_deref());
        let message = message
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| default_message(status).to_string());
        Self(Box::new(Details {
            kind,
            operation: operation.into(),
            status: Some(status),
            code: code.filter(|c| !c.is_empty()),
            message,
            request_id,
            retry_after: None,
            source: None,
        }))
    }

    pub(crate) fn with_source(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        self.0.source = Some(Box::new(source));
        self
    }

    pub(crate) fn with_retry_after(mut self, retry_after: Option<Duration>) -> Self {
        self.0.retry_after = retry_after;
        self
    }

    pub(crate) fn with_kind(mut self, kind: ErrorKind) -> Self {
        self.0.kind = kind;
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }
    /// What was attempted, e.g. `retrieve accounts(<id>)`.
    pub fn operation(&self) -> &str {
        &self.0.operation
    }
    pub fn status(&self) -> Option<u16> {
        self.0.status
    }
    /// The HRESULT string from the error body (`0x80040217`), or the OAuth error name for token failures.
    pub fn code(&self) -> Option<&str> {
        self.0.code.as_deref()
    }
    pub fn message(&self) -> &str {
        &self.0.message
    }
    /// `x-ms-service-request-id` / `REQ_ID` of the failing response, for support tickets.
    pub fn request_id(&self) -> Option<&str> {
        self.0.request_id.as_deref()
    }
    /// For [`ErrorKind::Throttled`]: the wait the service asked for.
    pub fn retry_after(&self) -> Option<Duration> {
        self.0.retry_after
    }
    /// True when the path itself names nothing (`0x8006088a` "Resource not found for the segment ..."):
    /// an entity set, function or column the org does not have, as opposed to a missing record.
    pub fn is_unknown_resource(&self) -> bool {
        self.0
            .code
            .as_deref()
            .is_some_and(|c| c.eq_ignore_ascii_case("0x8006088a"))
    }

    /// True for failures that may succeed later without any change (throttling, 5xx, timeouts, transport).
    pub fn is_transient(&self) -> bool {
        matches!(
            self.0.kind,
            ErrorKind::Throttled | ErrorKind::Server | ErrorKind::Timeout | ErrorKind::Transport
        )
    }
}

/// HRESULT codes that mean "the delta token is no longer usable".
const EXPIRED_VERSION_STAMP: &str = "0x80044352";

/// Maps status + HRESULT (+ message, for the change-token case) to a kind. The code wins over the status
/// because Dataverse codes are independent of HTTP statuses.
pub fn classify(status: u16, code: Option<&str>, message: Option<&str>) -> ErrorKind {
    let code = code.map(str::to_ascii_lowercase);
    match code.as_deref() {
        Some("0x80040217") | Some("0x80060891") => return ErrorKind::NotFound,
        Some("0x80040220") | Some("0x80040231") | Some("0x80048306") => {
            return ErrorKind::PrivilegeDenied;
        }
        Some("0x80072560") if status != 401 => return ErrorKind::NotMemberOfOrg,
        Some("0x80072322") | Some("0x80072321") | Some("0x80072326") => {
            return ErrorKind::Throttled;
        }
        Some("0x80072491") => return ErrorKind::ChangeTrackingNotEnabled,
        Some("0x80060882") => return ErrorKind::PreconditionFailed,
        Some(c) if c == EXPIRED_VERSION_STAMP => return ErrorKind::ChangeTokenExpired,
        _ => {}
    }
    if let Some(message) = message {
        let lower = message.to_ascii_lowercase();
        // "Version stamp associated with the client has expired. Please perform a full sync."
        if lower.contains("version stamp") || lower.contains("perform a full sync") {
            return ErrorKind::ChangeTokenExpired;
        }
    }
    match status {
        401 => ErrorKind::Unauthorized,
        403 => ErrorKind::PrivilegeDenied,
        404 => ErrorKind::NotFound,
        412 => ErrorKind::PreconditionFailed,
        429 => ErrorKind::Throttled,
        500..=599 => ErrorKind::Server,
        _ => ErrorKind::BadRequest,
    }
}

fn default_message(status: u16) -> &'static str {
    match status {
        401 => "the service rejected the access token",
        403 => "access denied",
        404 => "not found",
        412 => "precondition failed",
        429 => "too many requests",
        500..=599 => "the service failed",
        _ => "the request was rejected",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_win_over_statuses() {
        assert_eq!(classify(404, Some("0x80040217"), None), ErrorKind::NotFound);
        assert_eq!(
            classify(403, Some("0x80040220"), None),
            ErrorKind::PrivilegeDenied
        );
        assert_eq!(
            classify(403, Some("0x80072560"), None),
            ErrorKind::NotMemberOfOrg
        );
        assert_eq!(
            classify(401, Some("0x80072560"), None),
            ErrorKind::Unauthorized
        );
        assert_eq!(
            classify(429, Some("0x80072322"), None),
            ErrorKind::Throttled
        );
        assert_eq!(
            classify(400, Some("0x80072491"), None),
            ErrorKind::ChangeTrackingNotEnabled
        );
        assert_eq!(
            classify(412, Some("0x80060882"), None),
            ErrorKind::PreconditionFailed
        );
        assert_eq!(
            classify(400, Some("0x80044352"), None),
            ErrorKind::ChangeTokenExpired
        );
        assert_eq!(
            classify(400, Some("0x80040237".to_uppercase().as_str()), None),
            ErrorKind::BadRequest
        );
        assert_eq!(
            classify(400, Some("0x8004F511"), None),
            ErrorKind::BadRequest
        );
    }

    #[test]
    fn statuses_classify_unknown_codes() {
        assert_eq!(classify(404, Some("0x8006088a"), None), ErrorKind::NotFound);
        assert_eq!(classify(412, None, None), ErrorKind::PreconditionFailed);
        assert_eq!(classify(503, None, None), ErrorKind::Server);
        assert_eq!(classify(401, None, None), ErrorKind::Unauthorized);
        assert_eq!(classify(400, Some("0x0"), None), ErrorKind::BadRequest);
    }

    #[test]
    fn expired_version_stamp_message_is_recognised() {
        let message =
            "Version stamp associated with the client has expired. Please perform a full sync.";
        assert_eq!(
            classify(400, Some("0x80040216"), Some(message)),
            ErrorKind::ChangeTokenExpired
        );
    }

    #[test]
    fn display_names_operation_status_code_and_request_id() {
        let err = DataverseError::from_response(
            "update accounts(00000000-0000-0000-0000-000000000001)",
            403,
            Some("0x80040220".into()),
            Some("The user does not hold the necessary privileges.".into()),
            Some("abc-123".into()),
        );
        assert_eq!(
            err.to_string(),
            "update accounts(00000000-0000-0000-0000-000000000001): The user does not hold the necessary \
             privileges. (HTTP 403, code 0x80040220, request id abc-123)"
        );
        assert_eq!(err.kind(), ErrorKind::PrivilegeDenied);
        assert!(!err.is_transient());
    }

    #[test]
    fn empty_messages_get_a_readable_default() {
        let err = DataverseError::from_response("whoami", 401, None, Some(String::new()), None);
        assert_eq!(
            err.to_string(),
            "whoami: the service rejected the access token (HTTP 401)"
        );
    }
}
