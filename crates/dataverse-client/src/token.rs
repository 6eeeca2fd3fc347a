//! Client-credentials tokens from Entra ID (or the emulator), cached and refreshed before they expire.
//!
//! The cache is a single async mutex: concurrent callers that find no fresh token wait for the one fetch
//! in flight instead of each asking the authority (single-flight).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mdsync_secret::Secret;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::error::{DataverseError, ErrorKind};
use crate::retry::{Decision, Outcome, RetryPolicy, parse_retry_after};

/// Refresh this long before expiry, or at half the lifetime when tokens are short-lived.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

struct CachedToken {
    token: Secret,
    refresh_at: Instant,
}

/// Where and how to obtain tokens.
pub(crate) struct TokenSource {
    http: reqwest::Client,
    endpoint: String,
    client_id: String,
    client_secret: Secret,
    scope: String,
    policy: RetryPolicy,
    cache: Mutex<Option<CachedToken>>,
    fetches: AtomicU64,
}

/// When to refresh a token that lives `lifetime` from `obtained`.
pub(crate) fn refresh_at(obtained: Instant, lifetime: Duration) -> Instant {
    let margin = REFRESH_MARGIN.min(lifetime / 2);
    obtained + lifetime.saturating_sub(margin)
}

impl TokenSource {
    pub(crate) fn new(
        http: reqwest::Client,
        authority: &str,
        tenant_id: &str,
        client_id: &str,
        client_secret: Secret,
        resource: &str,
        policy: RetryPolicy,
    ) -> Self {
        let endpoint = format!(
            "{}/{}/oauth2/v2.0/token",
            authority.trim_end_matches('/'),
            percent_encoding::utf8_percent_encode(tenant_id, percent_encoding::NON_ALPHANUMERIC)
        );
        Self {
            http,
            endpoint,
            client_id: client_id.to_string(),
            client_secret,
            scope: format!("{}/.default", resource.trim_end_matches('/')),
            policy,
            cache: Mutex::new(None),
            fetches: AtomicU64::new(0),
        }
    }

    /// How many tokens were fetched from the authority so far.
    pub(crate) fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// A token valid for a while yet; fetches one (once, for all waiting callers) when needed.
    pub(crate) async fn token(&self) -> Result<Secret, DataverseError> {
        let mut cache = self.cache.lock().await;
        if let Some(cached) = cache.as_ref()
            && Instant::now() < cached.refresh_at
        {
            return Ok(cached.token.clone());
        }
        let (token, lifetime) = self.fetch().await?;
        *cache = Some(CachedToken {
            token: token.clone(),
            refresh_at: refresh_at(Instant::now(), lifetime),
        });
        Ok(token)
    }

    /// Drops the cached token if it is still the one the service rejected (a newer one is kept).
    pub(crate) async fn invalidate(&self, rejected: &Secret) {
        let mut cache = self.cache.lock().await;
        if cache.as_ref().is_some_and(|c| &c.token == rejected) {
            *cache = None;
        }
    }

    async fn fetch(&self) -> Result<(Secret, Duration), DataverseError> {
        let operation = "acquire access token";
        let mut retries = 0;
        loop {
            let form = [
                ("client_id", self.client_id.as_str()),
                ("client_secret", self.client_secret.expose()),
                ("scope", self.scope.as_str()),
                ("grant_type", "client_credentials"),
            ];
            let sent = self
                .http
                .post(&self.endpoint)
                .header(reqwest::header::ACCEPT, "application/json")
                .form(&form)
                .send()
                .await;
            let outcome = match sent {
                Err(err) => {
                    let outcome = transport_outcome(&err);
                    match self.policy.decide(outcome, retries, true) {
                        Decision::RetryAfter(wait) => {
                            tracing::warn!(error = %err, ?wait, "Token request failed, retrying");
                            tokio::time::sleep(wait).await;
                            retries += 1;
                            continue;
                        }
                        Decision::Fail => return Err(transport_error(operation, err)),
                    }
                }
                Ok(response) => response,
            };
            let status = outcome.status().as_u16();
            let retry_after = outcome
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, chrono::Utc::now()));
            let header_request_id = crate::client::request_id(outcome.headers());
            let body = match outcome.bytes().await {
                Ok(body) => body,
                Err(err) => return Err(transport_error(operation, err)),
            };
            if status == 200 {
                self.fetches.fetch_add(1, Ordering::Relaxed);
                return parse_token(&body).ok_or_else(|| {
                    DataverseError::new(
                        ErrorKind::Decode,
                        operation,
                        "the token endpoint answered 200 without a usable access_token/expires_in",
                    )
                });
            }
            if status == 429 || status >= 500 {
                let decision = self.policy.decide(
                    Outcome::Status {
                        status,
                        retry_after,
                    },
                    retries,
                    true,
                );
                if let Decision::RetryAfter(wait) = decision {
                    tracing::warn!(status, ?wait, "Token endpoint unavailable, retrying");
                    tokio::time::sleep(wait).await;
                    retries += 1;
                    continue;
                }
            }
            return Err(token_error(operation, status, &body, header_request_id));
        }
    }
}

/// `{"access_token","expires_in"}`; `expires_in` may be a number or (v1 endpoints) a string.
fn parse_token(body: &[u8]) -> Option<(Secret, Duration)> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let token = value.get("access_token")?.as_str()?;
    if token.is_empty() {
        return None;
    }
    let expires_in = match value.get("expires_in")? {
        Value::Number(n) => n.as_u64()?,
        Value::String(s) => s.parse().ok()?,
        _ => return None,
    };
    Some((Secret::new(token), Duration::from_secs(expires_in)))
}

/// Entra ID errors: `{"error":"invalid_client","error_description":"AADSTS7000215: ...","trace_id":...}`.
fn token_error(
    operation: &str,
    status: u16,
    body: &[u8],
    request_id: Option<String>,
) -> DataverseError {
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let code = value
        .get("error")
        .and_then(Value::as_str)
        .map(str::to_string);
    let message = value
        .get("error_description")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| format!("the token endpoint answered HTTP {status}"));
    let request_id = value
        .get("trace_id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or(request_id);
    let kind = match status {
        400 | 401 | 403 => ErrorKind::Authentication,
        429 => ErrorKind::Throttled,
        500..=599 => ErrorKind::Server,
        404 => ErrorKind::InvalidInput,
        _ => ErrorKind::Authentication,
    };
    DataverseError::from_response(operation, status, code, Some(message), request_id)
        .with_kind(kind)
}

pub(crate) fn transport_outcome(err: &reqwest::Error) -> Outcome {
    if err.is_timeout() {
        Outcome::Timeout
    } else if err.is_connect() {
        Outcome::ConnectFailed
    } else {
        Outcome::Broken
    }
}

pub(crate) fn transport_error(operation: &str, err: reqwest::Error) -> DataverseError {
    let (kind, message) = if err.is_timeout() {
        (ErrorKind::Timeout, "the request timed out")
    } else if err.is_connect() {
        (ErrorKind::Transport, "could not connect to the service")
    } else if err.is_decode() {
        (ErrorKind::Decode, "could not read the response")
    } else {
        (ErrorKind::Transport, "the connection failed")
    };
    // reqwest errors carry the URL (never credentials: tokens travel in headers, secrets in bodies).
    DataverseError::new(kind, operation, message).with_source(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refreshes_five_minutes_early_or_at_half_life() {
        let now = Instant::now();
        assert_eq!(
            refresh_at(now, Duration::from_secs(3599)),
            now + Duration::from_secs(3299)
        );
        assert_eq!(
            refresh_at(now, Duration::from_secs(60)),
            now + Duration::from_secs(30)
        );
        assert_eq!(refresh_at(now, Duration::ZERO), now);
    }

    #[test]
    fn token_bodies_parse_numbers_and_strings() {
        let (token, life) =
            parse_token(br#"{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"a.b.c"}"#)
                .unwrap();
        assert_eq!(token.expose(), "a.b.c");
        assert_eq!(life, Duration::from_secs(3599));
        let (_, life) = parse_token(br#"{"expires_in":"60","access_token":"x"}"#).unwrap();
        assert_eq!(life, Duration::from_secs(60));
        assert!(parse_token(br#"{"expires_in":60}"#).is_none());
        assert!(parse_token(b"not json").is_none());
    }

    #[test]
    fn token_errors_are_authentication_errors_with_the_aad_text() {
        let body = br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.","trace_id":"t-1"}"#;
        let err = token_error("acquire access token", 401, body, None);
        assert_eq!(err.kind(), ErrorKind::Authentication);
        assert_eq!(err.code(), Some("invalid_client"));
        assert_eq!(err.request_id(), Some("t-1"));
        assert!(err.to_string().contains("AADSTS7000215"), "{err}");
    }
}
