//! How to reach one Dataverse org and how hard to push it.

use std::time::Duration;

use mdsync_secret::Secret;

/// The Entra ID authority used when none is configured.
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";

/// Connection settings. `Debug` is safe to log: the secret prints as `***`.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Org root, e.g. `https://contoso.crm.dynamics.com` (no `/api/data/...`).
    pub url: String,
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// Token authority; the emulator's URL in tests.
    pub authority: String,
    /// Web API version segment, `v9.2`.
    pub api_version: String,
    /// Whole-request timeout (connect + send + reading the body), applied to every call.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Retries after the first attempt for throttling, 5xx and timeouts (a 401 token refresh is not counted).
    pub max_retries: u32,
    /// In-flight requests allowed at once; the service's own limit is 52 per user per web server.
    pub max_concurrency: usize,
    /// Longest `Retry-After` honoured in-line; a longer one fails with [`crate::ErrorKind::Throttled`]
    /// carrying the wait, so the caller can schedule instead of blocking.
    pub max_retry_after: Duration,
    /// First backoff step for 5xx/timeouts; doubles per attempt up to `backoff_max`, with jitter.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// `Prefer: odata.maxpagesize` when a query does not set its own.
    pub default_page_size: u32,
    pub user_agent: String,
}

impl ClientConfig {
    /// A config with production defaults for everything but the four identifying values.
    pub fn new(
        url: impl Into<String>,
        tenant_id: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: Secret,
    ) -> Self {
        Self {
            url: url.into(),
            tenant_id: tenant_id.into(),
            client_id: client_id.into(),
            client_secret,
            authority: DEFAULT_AUTHORITY.to_string(),
            api_version: "v9.2".to_string(),
            timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(15),
            max_retries: 5,
            max_concurrency: 16,
            max_retry_after: Duration::from_secs(300),
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            default_page_size: 5000,
            user_agent: concat!("mdsync-dataverse-client/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }

    /// Points token requests at another authority (the emulator's URL).
    pub fn with_authority(mut self, authority: impl Into<String>) -> Self {
        self.authority = authority.into();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let config = ClientConfig::new(
            "https://x.crm.dynamics.com",
            "t",
            "c",
            Secret::new("s3cr3t-value"),
        );
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cr3t-value"), "{shown}");
        assert!(config.max_concurrency < 52);
    }
}
