//! Connection settings and the knobs of the client-side limits.

use std::time::Duration;

use mdsync_secret::Secret;

/// How to reach one Marketo instance and how politely to use it. `Debug` never shows the secret.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Instance root, e.g. `https://123-ABC-456.mktorest.com` (a trailing `/rest` or `/identity` is stripped).
    pub url: String,
    /// Client ID of the LaunchPoint custom service.
    pub client_id: String,
    pub client_secret: Secret,
    /// Whole-request timeout for every call except bulk file bodies (server-side limits go up to 300 s).
    pub timeout: Duration,
    /// TCP/TLS connect timeout.
    pub connect_timeout: Duration,
    /// Longest silence between two chunks of a bulk export download.
    pub download_idle_timeout: Duration,
    /// Calls per day this client may spend (the instance default quota is 50,000, shared by every integration).
    pub daily_budget: u64,
    /// Calls allowed per `rate_window`; the instance limit is 100 per 20 s, shared, so stay below it.
    pub rate_limit: u32,
    pub rate_window: Duration,
    /// Calls in flight at once; the instance limit is 10, shared (Adobe advises ≤ 5 per integration).
    pub max_concurrency: usize,
    /// Retries of a transient failure (604/606/608/611/615/713, 5xx, timeouts) before giving up.
    pub max_retries: u32,
    /// First backoff delay; doubles per retry with jitter up to `retry_max_delay`.
    pub retry_base_delay: Duration,
    pub retry_max_delay: Duration,
    /// Re-authentications after 601/602 within one call before giving up.
    pub max_reauthentications: u32,
    /// Renew the token when it has less than this left (mrp uses 60 s, tap-marketo 15 s).
    pub token_refresh_margin: Duration,
    /// Records per sync/delete call (Marketo's maximum is 300).
    pub batch_size: usize,
    pub user_agent: String,
}

impl ClientConfig {
    /// Settings with the defaults below for everything but the instance and credentials.
    pub fn new(
        url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<Secret>,
    ) -> Self {
        Self {
            url: url.into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(15),
            download_idle_timeout: Duration::from_secs(120),
            daily_budget: 50_000,
            rate_limit: 90,
            rate_window: Duration::from_secs(20),
            max_concurrency: 5,
            max_retries: 5,
            retry_base_delay: Duration::from_secs(1),
            retry_max_delay: Duration::from_secs(60),
            max_reauthentications: 3,
            token_refresh_margin: Duration::from_secs(60),
            batch_size: 300,
            user_agent: concat!("mdsync/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }

    /// The instance root without a trailing slash or API suffix.
    pub(crate) fn base_url(&self) -> Result<url::Url, crate::Error> {
        let trimmed = self.url.trim().trim_end_matches('/');
        let trimmed = trimmed
            .strip_suffix("/rest")
            .or_else(|| trimmed.strip_suffix("/identity"))
            .unwrap_or(trimmed);
        let url = url::Url::parse(trimmed)
            .map_err(|e| crate::Error::Config(format!("url {trimmed:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(crate::Error::Config(format!(
                "url {trimmed:?} must be http(s)"
            )));
        }
        Ok(url)
    }

    pub(crate) fn validate(&self) -> Result<(), crate::Error> {
        self.base_url()?;
        if self.client_id.is_empty() {
            return Err(crate::Error::Config("client_id is empty".into()));
        }
        if self.client_secret.is_empty() {
            return Err(crate::Error::Config("client_secret is empty".into()));
        }
        if self.rate_limit == 0 || self.rate_window.is_zero() {
            return Err(crate::Error::Config(
                "rate_limit and rate_window must be positive".into(),
            ));
        }
        if self.max_concurrency == 0 {
            return Err(crate::Error::Config(
                "max_concurrency must be at least 1".into(),
            ));
        }
        if self.batch_size == 0 || self.batch_size > 300 {
            return Err(crate::Error::Config(
                "batch_size must be between 1 and 300".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_secret_and_suffixes_are_stripped() {
        let mut config = ClientConfig::new(
            "https://123-ABC-456.mktorest.com/rest/",
            "id",
            "very-secret",
        );
        assert!(!format!("{config:?}").contains("very-secret"));
        assert_eq!(
            config.base_url().unwrap().as_str(),
            "https://123-abc-456.mktorest.com/"
        );
        assert!(config.validate().is_ok());
        config.batch_size = 301;
        assert!(matches!(config.validate(), Err(crate::Error::Config(_))));
        config.batch_size = 300;
        config.url = "ftp://x".into();
        assert!(matches!(config.validate(), Err(crate::Error::Config(_))));
    }
}
