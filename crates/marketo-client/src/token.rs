//! The OAuth access token: fetched from `/identity/oauth/token`, cached until shortly before expiry,
//! dropped when a call answers 601/602.
//!
//! The identity call carries the client secret in its query string (that is the documented form), so its
//! URL is never logged and transport errors are stripped of it.

use std::time::Duration;

use mdsync_secret::Secret;
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::config::ClientConfig;
use crate::envelope::snippet;
use crate::error::Error;
use crate::retry::backoff;

const IDENTITY_PATH: &str = "/identity/oauth/token";

/// A cached token and when to stop using it.
#[derive(Debug)]
struct Cached {
    value: Secret,
    refresh_at: Instant,
}

/// One token per client, shared by all concurrent calls; only one task authenticates at a time.
#[derive(Debug, Default)]
pub struct TokenCache {
    current: Mutex<Option<Cached>>,
    fetches: std::sync::atomic::AtomicU64,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
    #[serde(default, deserialize_with = "crate::envelope::opt_i64_lenient")]
    expires_in: Option<i64>,
    error: Option<String>,
    error_description: Option<String>,
}

impl TokenCache {
    /// The cached token, or a fresh one when it is missing or about to expire.
    pub async fn get(
        &self,
        http: &reqwest::Client,
        base: &url::Url,
        config: &ClientConfig,
    ) -> Result<Secret, Error> {
        let mut current = self.current.lock().await;
        if let Some(cached) = current.as_ref()
            && Instant::now() < cached.refresh_at
        {
            return Ok(cached.value.clone());
        }
        let (value, expires_in) = fetch(http, base, config).await?;
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // A token close to expiry (the service can answer `expires_in:0`) is used for this call only.
        let usable = expires_in.saturating_sub(config.token_refresh_margin);
        *current = Some(Cached {
            value: value.clone(),
            refresh_at: Instant::now() + usable,
        });
        Ok(value)
    }

    /// Forgets `stale` (unless another task already replaced it) so the next `get` authenticates.
    pub async fn invalidate(&self, stale: &Secret) {
        let mut current = self.current.lock().await;
        if current.as_ref().is_some_and(|c| &c.value == stale) {
            *current = None;
        }
    }

    /// Successful identity calls so far (for tests and `status`).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }
}

async fn fetch(
    http: &reqwest::Client,
    base: &url::Url,
    config: &ClientConfig,
) -> Result<(Secret, Duration), Error> {
    let mut url = base
        .join(IDENTITY_PATH)
        .map_err(|e| Error::Config(format!("identity URL: {e}")))?;
    url.query_pairs_mut()
        .append_pair("grant_type", "client_credentials")
        .append_pair("client_id", &config.client_id)
        .append_pair("client_secret", config.client_secret.expose());

    let mut attempt = 0;
    loop {
        let outcome = fetch_once(http, &url, config).await;
        match outcome {
            Err(err) if attempt < config.max_retries && transient(&err) => {
                attempt += 1;
                let delay = backoff(
                    attempt,
                    config.retry_base_delay,
                    config.retry_max_delay,
                    rand::random::<f64>(),
                );
                tracing::warn!(path = IDENTITY_PATH, attempt, ?delay, error = %err, "Retrying Marketo authentication");
                tokio::time::sleep(delay).await;
            }
            other => return other,
        }
    }
}

fn transient(err: &Error) -> bool {
    match err {
        Error::Transport { .. } => true,
        Error::Http { status, .. } => *status == 429 || *status >= 500,
        _ => false,
    }
}

async fn fetch_once(
    http: &reqwest::Client,
    url: &url::Url,
    config: &ClientConfig,
) -> Result<(Secret, Duration), Error> {
    let transport = |e: reqwest::Error| Error::Transport {
        path: IDENTITY_PATH.to_owned(),
        source: e.without_url(),
    };
    let response = http
        .get(url.clone())
        .timeout(config.timeout)
        .send()
        .await
        .map_err(transport)?;
    let status = response.status().as_u16();
    let body = response.bytes().await.map_err(transport)?;
    let parsed: Option<TokenResponse> = serde_json::from_slice(&body).ok();

    if status == 200
        && let Some(TokenResponse {
            access_token: Some(token),
            expires_in,
            ..
        }) = &parsed
        && !token.is_empty()
    {
        let secs = expires_in.unwrap_or(0).max(0) as u64;
        tracing::debug!(
            path = IDENTITY_PATH,
            expires_in = secs,
            "Authenticated with Marketo"
        );
        return Ok((Secret::new(token.clone()), Duration::from_secs(secs)));
    }
    match parsed {
        Some(TokenResponse {
            error: Some(error),
            error_description,
            ..
        }) if status < 500 => Err(Error::Auth {
            status,
            error,
            description: error_description.unwrap_or_default(),
        }),
        _ if status == 200 || (400..500).contains(&status) && status != 429 => Err(Error::Auth {
            status,
            error: "unexpected_response".into(),
            // A 200 body may hold a token in an odd shape: never echo it.
            description: if status == 200 {
                "the identity endpoint answered HTTP 200 without an access_token".into()
            } else {
                format!("the identity endpoint answered {}", snippet(&body))
            },
        }),
        _ => Err(Error::Http {
            status,
            path: IDENTITY_PATH.to_owned(),
            body: String::from_utf8_lossy(&body[..body.len().min(500)]).into_owned(),
            retry_after: None,
        }),
    }
}
