//! The call pipeline every endpoint goes through: token, limiter, one HTTP attempt, envelope decoding,
//! and the retry/re-authentication loop around them.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::time::Instant;
use tracing::Instrument;

use crate::config::ClientConfig;
use crate::envelope::{self, Decoded, Failure, Page};
use crate::error::Error;
use crate::limiter::{Budget, Limiter, Permit};
use crate::retry::{self, Disposition};
use crate::token::TokenCache;

/// Queries longer than this go as `POST ...?_method=GET` with a form body (Marketo answers 414 past 8 KB).
const MAX_QUERY_LEN: usize = 6_000;

/// A Marketo REST client for one instance. Cheap to clone; clones share the token, limiter and budget.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ClientConfig,
    base: url::Url,
    http: reqwest::Client,
    tokens: TokenCache,
    limiter: Limiter,
    counters: crate::stats::Counters,
}

/// One logical request, replayable across attempts.
#[derive(Clone, Debug)]
pub(crate) struct Call {
    pub method: Method,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub body: Body,
}

#[derive(Clone, Debug)]
pub(crate) enum Body {
    None,
    Json(Value),
}

impl Call {
    pub fn get(path: impl Into<String>) -> Self {
        Self {
            method: Method::GET,
            path: path.into(),
            query: Vec::new(),
            body: Body::None,
        }
    }

    pub fn post(path: impl Into<String>) -> Self {
        Self {
            method: Method::POST,
            ..Self::get(path)
        }
    }

    pub fn query(mut self, key: &str, value: impl Into<String>) -> Self {
        self.query.push((key.to_owned(), value.into()));
        self
    }

    pub fn json(mut self, body: Value) -> Self {
        self.body = Body::Json(body);
        self
    }
}

impl Client {
    /// Builds a client; no network call happens until the first request.
    pub fn new(config: ClientConfig) -> Result<Self, Error> {
        config.validate()?;
        let base = config.base_url()?;
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .user_agent(config.user_agent.clone())
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {}", e.without_url())))?;
        let limiter = Limiter::new(
            config.rate_limit,
            config.rate_window,
            config.max_concurrency,
            config.daily_budget,
        );
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                base,
                http,
                tokens: TokenCache::default(),
                limiter,
                counters: Default::default(),
            }),
        })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// Today's call budget (spent, remaining, or set from `stats/usage.json`).
    pub fn budget(&self) -> &Budget {
        self.inner.limiter.budget()
    }

    /// What this client (and its clones) did so far: calls, retries, 606s, re-authentications, failures.
    pub fn stats(&self) -> crate::ClientStats {
        self.inner.counters.snapshot()
    }

    /// Identity calls that returned a token so far.
    pub fn token_fetches(&self) -> u64 {
        self.inner.tokens.fetches()
    }

    /// Authenticates now (or reuses the cached token): a cheap credentials check that spends no quota.
    pub async fn authenticate(&self) -> Result<(), Error> {
        self.token().await.map(|_| ())
    }

    async fn token(&self) -> Result<mdsync_secret::Secret, Error> {
        let inner = &self.inner;
        inner
            .tokens
            .get(&inner.http, &inner.base, &inner.config)
            .await
    }

    /// Runs a call to completion: retries transient failures, re-authenticates on 601/602.
    pub(crate) async fn execute<T: DeserializeOwned>(&self, call: &Call) -> Result<Page<T>, Error> {
        let span = tracing::info_span!(
            "marketo_call",
            method = %call.method,
            path = %call.path,
            request_id = tracing::field::Empty,
            attempts = tracing::field::Empty,
        );
        let outcome = self.execute_inner(call).instrument(span).await;
        if outcome.is_err() {
            self.inner.counters.failure();
        }
        outcome
    }

    async fn execute_inner<T: DeserializeOwned>(&self, call: &Call) -> Result<Page<T>, Error> {
        let config = &self.inner.config;
        let mut retries = 0u32;
        let mut reauths = 0u32;
        loop {
            let token = self.token().await?;
            let permit = self.inner.limiter.acquire().await?;
            self.inner.counters.call();
            let (outcome, retry_after) = self.send_once::<T>(call, &token, permit).await;
            let span = tracing::Span::current();
            span.record("attempts", retries + reauths + 1);
            let err = match outcome {
                Ok(page) => {
                    if let Some(id) = &page.request_id {
                        span.record("request_id", id.as_str());
                    }
                    tracing::debug!(
                        request_id = page.request_id.as_deref().unwrap_or(""),
                        records = page.result.len(),
                        "Marketo call succeeded"
                    );
                    return Ok(page);
                }
                Err(err) => err,
            };
            if let Error::Api {
                request_id: Some(id),
                ..
            }
            | Error::DailyQuota {
                request_id: Some(id),
                ..
            }
            | Error::BulkQuota {
                request_id: Some(id),
                ..
            } = &err
            {
                span.record("request_id", id.as_str());
            }
            tracing::debug!(error = %err, "Marketo call attempt failed");
            if not_counted(&err) {
                self.inner.limiter.budget().refund();
            }
            match retry::classify(&err) {
                Disposition::Reauthenticate => {
                    if reauths >= config.max_reauthentications {
                        let (code, message) = match &err {
                            Error::Api { code, message, .. } => (code.clone(), message.clone()),
                            _ => (String::new(), err.to_string()),
                        };
                        return Err(Error::TokenRejected { code, message });
                    }
                    reauths += 1;
                    self.inner.counters.reauthentication();
                    tracing::info!(error = %err, "Marketo rejected the access token; authenticating again");
                    self.inner.tokens.invalidate(&token).await;
                }
                Disposition::WaitRateWindow(window) => {
                    if retries >= config.max_retries {
                        return Err(exhausted(call, retries, err));
                    }
                    retries += 1;
                    self.inner.counters.retry();
                    self.inner.counters.rate_limited();
                    let wait = retry_after.unwrap_or(window);
                    tracing::warn!(error = %err, ?wait, "Marketo rate limit hit; pausing all calls for the window");
                    self.inner.limiter.pause_until(Instant::now() + wait);
                }
                Disposition::Retry { at_least } => {
                    if retries >= config.max_retries {
                        return Err(exhausted(call, retries, err));
                    }
                    retries += 1;
                    self.inner.counters.retry();
                    let computed = retry::backoff(
                        retries,
                        config.retry_base_delay,
                        config.retry_max_delay,
                        rand::random::<f64>(),
                    );
                    let floor = at_least.or(retry_after).unwrap_or_default();
                    let wait = computed.max(floor);
                    tracing::warn!(error = %err, ?wait, retry = retries, "Transient Marketo failure; retrying");
                    tokio::time::sleep(wait).await;
                }
                Disposition::Fail => return Err(err),
            }
        }
    }

    /// One HTTP attempt. Returns the outcome and any `Retry-After` the server sent.
    async fn send_once<T: DeserializeOwned>(
        &self,
        call: &Call,
        token: &mdsync_secret::Secret,
        permit: Permit,
    ) -> (Result<Page<T>, Error>, Option<Duration>) {
        let response = match self.request(call, token).send().await {
            Ok(r) => r,
            Err(e) => return (Err(transport(&call.path, e)), None),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(retry::parse_retry_after);
        let body = match response.bytes().await {
            Ok(b) => b,
            Err(e) => return (Err(transport(&call.path, e)), retry_after),
        };
        drop(permit);
        (
            decode_body(&call.path, status, &body, retry_after),
            retry_after,
        )
    }

    /// Builds the HTTP request for a call (long GET queries become `POST ?_method=GET` with a form body).
    fn request(&self, call: &Call, token: &mdsync_secret::Secret) -> reqwest::RequestBuilder {
        let inner = &self.inner;
        let mut url = inner.base.clone();
        url.set_path(&call.path);
        let query_len: usize = call.query.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
        let builder = if call.method == Method::GET && query_len > MAX_QUERY_LEN {
            url.query_pairs_mut().append_pair("_method", "GET");
            inner.http.post(url).form(&call.query)
        } else {
            if !call.query.is_empty() {
                url.query_pairs_mut().extend_pairs(call.query.iter());
            }
            let builder = inner.http.request(call.method.clone(), url);
            match &call.body {
                Body::None => builder,
                Body::Json(v) => builder.json(v),
            }
        };
        builder
            .bearer_auth(token.expose())
            .timeout(inner.config.timeout)
    }

    /// Sends a call whose answer is not an envelope when it succeeds (bulk file downloads).
    /// Returns the raw response for status 200/206; envelope failures and other statuses become errors.
    pub(crate) async fn execute_raw(
        &self,
        call: &Call,
        range: Option<String>,
    ) -> Result<(reqwest::Response, Permit), Error> {
        let config = &self.inner.config;
        let mut retries = 0u32;
        let mut reauths = 0u32;
        loop {
            let token = self.token().await?;
            let permit = self.inner.limiter.acquire().await?;
            self.inner.counters.call();
            let mut request = self
                .request(call, &token)
                // The body is streamed: only the headers are bounded by `timeout`.
                .timeout(Duration::from_secs(24 * 3600));
            if let Some(range) = &range {
                request = request.header(reqwest::header::RANGE, range);
            }
            let outcome = tokio::time::timeout(config.timeout, request.send()).await;
            let response = match outcome {
                Err(_) => Err(Error::Http {
                    status: 504,
                    path: call.path.clone(),
                    body: format!("no response headers within {:?}", config.timeout),
                    retry_after: None,
                }),
                Ok(Err(e)) => Err(transport(&call.path, e)),
                Ok(Ok(r)) => Ok(r),
            };
            let err = match response {
                Ok(r) if matches!(r.status().as_u16(), 200 | 206) && !is_json(&r) => {
                    return Ok((r, permit));
                }
                Ok(r) => {
                    let status = r.status().as_u16();
                    let retry_after = r
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(retry::parse_retry_after);
                    let body = match r.bytes().await {
                        Ok(b) => b,
                        Err(e) => return Err(transport(&call.path, e)),
                    };
                    match decode_body::<Value>(&call.path, status, &body, retry_after) {
                        Err(Error::Http {
                            status: 404, body, ..
                        }) => {
                            return Err(Error::ExportFileUnavailable {
                                export_id: String::new(),
                                status: 404,
                                message: body,
                            });
                        }
                        Ok(_) => {
                            return Err(Error::Decode {
                                path: call.path.clone(),
                                message: "a JSON envelope where a file was expected".into(),
                            });
                        }
                        Err(e) => e,
                    }
                }
                Err(e) => e,
            };
            drop(permit);
            match retry::classify(&err) {
                Disposition::Reauthenticate if reauths < config.max_reauthentications => {
                    reauths += 1;
                    self.inner.tokens.invalidate(&token).await;
                }
                Disposition::WaitRateWindow(window) if retries < config.max_retries => {
                    retries += 1;
                    self.inner.limiter.pause_until(Instant::now() + window);
                }
                Disposition::Retry { at_least } if retries < config.max_retries => {
                    retries += 1;
                    let wait = retry::backoff(
                        retries,
                        config.retry_base_delay,
                        config.retry_max_delay,
                        rand::random::<f64>(),
                    )
                    .max(at_least.unwrap_or_default());
                    tokio::time::sleep(wait).await;
                }
                Disposition::Fail => return Err(err),
                _ => return Err(exhausted(call, retries, err)),
            }
        }
    }
}

fn is_json(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"))
}

/// Turns a response into a page or the typed error it stands for.
fn decode_body<T: DeserializeOwned>(
    path: &str,
    status: u16,
    body: &[u8],
    retry_after: Option<Duration>,
) -> Result<Page<T>, Error> {
    if status == 200 {
        return match envelope::decode::<T>(path, body)? {
            Decoded::Success(page) => Ok(page),
            Decoded::Failure(failure) => Err(failure_error(failure)),
        };
    }
    // Gateways and fault injection may wrap an envelope error in a non-200 status: the code wins.
    if let Ok(Decoded::Failure(failure)) = envelope::decode::<Value>(path, body) {
        return Err(failure_error(failure));
    }
    Err(Error::Http {
        status,
        path: path.to_owned(),
        body: String::from_utf8_lossy(&body[..body.len().min(500)]).into_owned(),
        retry_after,
    })
}

/// Maps an envelope failure to its error variant: quota codes are fatal variants of their own.
fn failure_error(failure: Failure) -> Error {
    let Failure { request_id, error } = failure;
    match error.code.as_str() {
        "607" => Error::DailyQuota {
            message: error.message,
            request_id,
        },
        "1029" => Error::BulkQuota {
            message: error.message,
            request_id,
        },
        _ => Error::Api {
            code: error.code,
            message: error.message,
            request_id,
        },
    }
}

/// Codes Marketo does not count against the daily quota.
fn not_counted(err: &Error) -> bool {
    matches!(err, Error::Api { code, .. } if matches!(code.as_str(), "601" | "602" | "604" | "605" | "608" | "611"))
        || matches!(err, Error::Transport { .. })
}

fn transport(path: &str, e: reqwest::Error) -> Error {
    Error::Transport {
        path: path.to_owned(),
        source: e.without_url(),
    }
}

fn exhausted(call: &Call, retries: u32, last: Error) -> Error {
    Error::RetriesExhausted {
        path: call.path.clone(),
        attempts: retries + 1,
        last: Box::new(last),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_codes_become_fatal_variants() {
        let body = br#"{"requestId":"a#1","success":false,"errors":[{"code":"607","message":"Daily quota reached"}]}"#;
        let err = decode_body::<Value>("/p", 200, body, None).unwrap_err();
        assert!(matches!(err, Error::DailyQuota { .. }) && err.is_fatal());
        let body = br#"{"requestId":"a#1","success":false,"errors":[{"code":"1029","message":"Too many jobs in queue"}]}"#;
        let err = decode_body::<Value>("/p", 200, body, None).unwrap_err();
        assert!(
            matches!(err, Error::BulkQuota { ref message, .. } if message == "Too many jobs in queue")
        );
        assert_eq!(err.code(), Some("1029"));
    }

    #[test]
    fn non_200_statuses() {
        let err = decode_body::<Value>("/p", 502, b"Bad Gateway", Some(Duration::from_secs(1)))
            .unwrap_err();
        assert!(matches!(
            err,
            Error::Http {
                status: 502,
                retry_after: Some(_),
                ..
            }
        ));
        let body = br#"{"success":false,"errors":[{"code":"615","message":"Concurrent access limit '10' reached"}]}"#;
        let err = decode_body::<Value>("/p", 429, body, None).unwrap_err();
        assert_eq!(err.code(), Some("615"));
    }

    #[test]
    fn free_codes_are_refunded() {
        let api = |code: &str| Error::Api {
            code: code.into(),
            message: String::new(),
            request_id: None,
        };
        assert!(not_counted(&api("602")));
        assert!(not_counted(&api("611")));
        assert!(!not_counted(&api("606")));
        assert!(!not_counted(&api("1003")));
    }
}
