//! Typed failures of the client. Callers branch on the variant (fatal quota vs. budget vs. a bad call),
//! so nothing here is a bare string.

use std::time::Duration;

/// Everything a client call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The call failed as a whole: `success:false` with a code other than the quota/auth ones below.
    #[error("Marketo error {code}: {message}{}", request_suffix(.request_id))]
    Api {
        code: String,
        message: String,
        request_id: Option<String>,
    },

    /// 607: the instance's daily API quota is spent. Fatal until the quota resets (midnight US Central).
    #[error(
        "Marketo daily API quota reached (607: {message}){}; calls resume after the quota resets at midnight US Central time",
        request_suffix(.request_id)
    )]
    DailyQuota {
        message: String,
        request_id: Option<String>,
    },

    /// 1029: a bulk export limit (queue full, 500 MB/day export quota, job already queued). Fatal for this job.
    #[error("Marketo bulk export limit (1029: {message}){}", request_suffix(.request_id))]
    BulkQuota {
        message: String,
        request_id: Option<String>,
    },

    /// The configured `daily_budget` of this client is spent; no call was sent.
    #[error(
        "mdsync's Marketo call budget is spent ({used} of {budget} calls today); raise `daily_budget` or wait for the daily reset"
    )]
    BudgetExhausted { used: u64, budget: u64 },

    /// The identity endpoint refused the credentials (HTTP 401 `invalid_client`, ...) or answered garbage.
    #[error("Marketo authentication failed (HTTP {status}): {error}: {description}")]
    Auth {
        status: u16,
        error: String,
        description: String,
    },

    /// 601/602 kept coming back after re-authenticating.
    #[error("Marketo kept rejecting fresh access tokens ({code}: {message})")]
    TokenRejected { code: String, message: String },

    /// A non-200 HTTP status outside the envelope (413, 414, gateway 5xx, 429, ...).
    #[error("HTTP {status} from {path}: {body}")]
    Http {
        status: u16,
        path: String,
        body: String,
        /// From a `Retry-After` header, when the server sent one.
        retry_after: Option<Duration>,
    },

    /// Connection, TLS or timeout failure. The URL is stripped from `source` so no secret can leak.
    #[error("request to {path} failed: {source}")]
    Transport {
        path: String,
        #[source]
        source: reqwest::Error,
    },

    /// The body was not the JSON shape the endpoint documents.
    #[error("unexpected response from {path}: {message}")]
    Decode { path: String, message: String },

    /// A retryable failure persisted through every allowed attempt.
    #[error("{path}: gave up after {attempts} attempts: {last}")]
    RetriesExhausted {
        path: String,
        attempts: u32,
        #[source]
        last: Box<Error>,
    },

    /// A bulk export file is not downloadable (HTTP 404: job unknown or not completed yet).
    #[error("export file {export_id} is not available (HTTP {status}): {message}")]
    ExportFileUnavailable {
        export_id: String,
        status: u16,
        message: String,
    },

    /// A bulk export ended in `Failed` or `Cancelled`, or did not finish in time.
    #[error("export {export_id} ended as {status}: {message}")]
    ExportNotCompleted {
        export_id: String,
        status: String,
        message: String,
    },

    /// The caller passed something the API cannot accept (caught before spending a call).
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// The client configuration is unusable (bad URL, zero limits, ...).
    #[error("invalid Marketo client configuration: {0}")]
    Config(String),
}

fn request_suffix(request_id: &Option<String>) -> String {
    match request_id {
        Some(id) => format!(" [requestId {id}]"),
        None => String::new(),
    }
}

impl Error {
    /// The Marketo error code behind this error, looking through `RetriesExhausted`.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Api { code, .. } | Error::TokenRejected { code, .. } => Some(code),
            Error::DailyQuota { .. } => Some("607"),
            Error::BulkQuota { .. } => Some("1029"),
            Error::RetriesExhausted { last, .. } => last.code(),
            _ => None,
        }
    }

    /// True for errors that no retry or wait within this run can fix (quota spent, bad credentials).
    pub fn is_fatal(&self) -> bool {
        match self {
            Error::DailyQuota { .. }
            | Error::BulkQuota { .. }
            | Error::BudgetExhausted { .. }
            | Error::Auth { .. }
            | Error::Config(_) => true,
            Error::RetriesExhausted { last, .. } => last.is_fatal(),
            _ => false,
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
