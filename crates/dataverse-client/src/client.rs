//! The client handle and the one place every request goes through: concurrency permit, bearer token,
//! timeout, retries, request-id tracing and error decoding.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use mdsync_secret::Secret;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::sync::Semaphore;
use tracing::Instrument;
use url::Url;

use crate::config::ClientConfig;
use crate::error::{DataverseError, ErrorKind};
use crate::retry::{Decision, Outcome, RetryPolicy, parse_retry_after};
use crate::token::{TokenSource, transport_error, transport_outcome};

/// A Dataverse Web API client for one org and one identity. Cheap to clone (shared state behind an `Arc`).
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("api_base", &self.inner.base.as_str())
            .field("client_id", &self.inner.config.client_id)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    http: reqwest::Client,
    pub(crate) config: ClientConfig,
    /// `<org>/api/data/v9.2/`, always with the trailing slash.
    pub(crate) base: Url,
    tokens: TokenSource,
    permits: Semaphore,
    policy: RetryPolicy,
}

/// One logical call, kept re-sendable for retries.
pub(crate) struct ApiRequest {
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Option<(Bytes, String)>,
    /// For errors and spans: "retrieve accounts(<id>)".
    pub operation: String,
    /// Safe to resend after a timeout or 5xx (the service may have run it).
    pub idempotent: bool,
    /// Hand back non-success responses instead of turning them into errors (for `$batch`).
    pub raw: bool,
}

/// A fully read response.
pub(crate) struct ApiResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl ApiResponse {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The service's request id: `x-ms-service-request-id`, else `REQ_ID`, else `x-ms-request-id`.
pub(crate) fn request_id(headers: &HeaderMap) -> Option<String> {
    ["x-ms-service-request-id", "req_id", "x-ms-request-id"]
        .iter()
        .find_map(|name| headers.get(*name).and_then(|v| v.to_str().ok()))
        .map(|v| v.split(',').next().unwrap_or(v).trim().to_string())
}

impl Client {
    /// Builds the client; no request is made until the first call.
    pub fn new(config: ClientConfig) -> Result<Self, DataverseError> {
        let invalid = |message: String| {
            DataverseError::new(ErrorKind::InvalidInput, "configure client", message)
        };
        let org = Url::parse(config.url.trim_end_matches('/'))
            .map_err(|e| invalid(format!("the org url {:?} is not a URL: {e}", config.url)))?;
        if !matches!(org.scheme(), "http" | "https") || org.host_str().is_none() {
            return Err(invalid(format!(
                "the org url {:?} must be an http(s) URL",
                config.url
            )));
        }
        if config.api_version.is_empty() || config.api_version.contains('/') {
            return Err(invalid(format!(
                "api version {:?} is invalid",
                config.api_version
            )));
        }
        let base = Url::parse(&format!(
            "{}/api/data/{}/",
            config.url.trim_end_matches('/'),
            config.api_version
        ))
        .map_err(|e| invalid(format!("cannot build the Web API URL: {e}")))?;
        Url::parse(&config.authority).map_err(|e| {
            invalid(format!(
                "the authority {:?} is not a URL: {e}",
                config.authority
            ))
        })?;
        if config.client_id.is_empty()
            || config.tenant_id.is_empty()
            || config.client_secret.is_empty()
        {
            return Err(invalid(
                "tenant_id, client_id and client_secret must all be set".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .user_agent(config.user_agent.clone())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| invalid(format!("cannot build the HTTP client: {e}")))?;
        let policy = RetryPolicy {
            max_retries: config.max_retries,
            max_retry_after: config.max_retry_after,
            backoff_base: config.backoff_base,
            backoff_max: config.backoff_max,
        };
        let tokens = TokenSource::new(
            http.clone(),
            &config.authority,
            &config.tenant_id,
            &config.client_id,
            config.client_secret.clone(),
            config.url.trim_end_matches('/'),
            policy,
        );
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                permits: Semaphore::new(config.max_concurrency.max(1)),
                config,
                base,
                tokens,
                policy,
            }),
        })
    }

    /// The Web API root, `<org>/api/data/v9.2/`.
    pub fn api_base(&self) -> &Url {
        &self.inner.base
    }

    /// How many access tokens were fetched so far (observability; tests use it to see refreshes).
    pub fn token_fetches(&self) -> u64 {
        self.inner.tokens.fetches()
    }

    /// Fetches a token now (or returns the cached one): a cheap credentials check.
    pub async fn authenticate(&self) -> Result<(), DataverseError> {
        self.inner.tokens.token().await.map(|_| ())
    }

    /// `<base><relative>`; `relative` is a path (and query) below the API root.
    pub(crate) fn url(&self, relative: &str, operation: &str) -> Result<Url, DataverseError> {
        self.inner.base.join(relative).map_err(|e| {
            DataverseError::new(
                ErrorKind::InvalidInput,
                operation,
                format!("cannot build a URL from {relative:?}: {e}"),
            )
        })
    }

    /// Accepts a nextLink/deltaLink only if it points at this org's Web API (the bearer token must not
    /// travel anywhere else); relative links are resolved against the API root.
    pub(crate) fn link(&self, link: &str, operation: &str) -> Result<Url, DataverseError> {
        let url = self.inner.base.join(link).map_err(|e| {
            DataverseError::new(
                ErrorKind::Decode,
                operation,
                format!("the service sent an unusable link: {e}"),
            )
        })?;
        let base = &self.inner.base;
        if url.scheme() != base.scheme()
            || url.host_str() != base.host_str()
            || url.port_or_known_default() != base.port_or_known_default()
        {
            return Err(DataverseError::new(
                ErrorKind::Decode,
                operation,
                format!(
                    "refusing to follow a link to {} (not this org's Web API)",
                    url.host_str().unwrap_or("?")
                ),
            ));
        }
        Ok(url)
    }

    /// Sends `request` with retries; returns the successful (or, with `raw`, final) response.
    pub(crate) async fn execute(&self, request: ApiRequest) -> Result<ApiResponse, DataverseError> {
        let span = tracing::debug_span!(
            "dataverse_request",
            op = %request.operation,
            method = %request.method,
            path = request.url.path(),
            status = tracing::field::Empty,
            request_id = tracing::field::Empty,
        );
        self.execute_inner(request).instrument(span).await
    }

    async fn execute_inner(&self, request: ApiRequest) -> Result<ApiResponse, DataverseError> {
        let inner = &*self.inner;
        let mut retries = 0u32;
        let mut refreshed = false;
        loop {
            let token = inner.tokens.token().await?;
            let started = Instant::now();
            let sent = {
                let _permit = inner.permits.acquire().await.map_err(|_| {
                    DataverseError::new(
                        ErrorKind::Transport,
                        &request.operation,
                        "the client was shut down",
                    )
                })?;
                self.send_once(&request, &token).await
            };
            let response = match sent {
                Ok(response) => response,
                Err(err) => {
                    let outcome = transport_outcome(&err);
                    match inner.policy.decide(outcome, retries, request.idempotent) {
                        Decision::RetryAfter(wait) => {
                            tracing::warn!(error = %err, ?wait, retries, "Dataverse request failed, retrying");
                            tokio::time::sleep(wait).await;
                            retries += 1;
                            continue;
                        }
                        Decision::Fail => return Err(transport_error(&request.operation, err)),
                    }
                }
            };
            let status = response.status;
            let id = request_id(&response.headers);
            let span = tracing::Span::current();
            span.record("status", status.as_u16());
            if let Some(id) = &id {
                span.record("request_id", id.as_str());
            }
            tracing::debug!(
                status = status.as_u16(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "Dataverse response"
            );
            if status.is_success() || status == StatusCode::NOT_MODIFIED {
                return Ok(response);
            }
            if status == StatusCode::UNAUTHORIZED && !refreshed {
                // The token may have been revoked or expired early: one fresh token, one more try.
                inner.tokens.invalidate(&token).await;
                refreshed = true;
                continue;
            }
            let retry_after = response
                .header("retry-after")
                .and_then(|v| parse_retry_after(v, chrono::Utc::now()));
            let outcome = Outcome::Status {
                status: status.as_u16(),
                retry_after,
            };
            match inner.policy.decide(outcome, retries, request.idempotent) {
                Decision::RetryAfter(wait) => {
                    tracing::warn!(
                        status = status.as_u16(),
                        ?wait,
                        retries,
                        request_id = id.as_deref(),
                        "Dataverse asked to retry"
                    );
                    tokio::time::sleep(wait).await;
                    retries += 1;
                }
                Decision::Fail
                    if request.raw
                        && status != StatusCode::TOO_MANY_REQUESTS
                        && !status.is_server_error() =>
                {
                    return Ok(response);
                }
                Decision::Fail => {
                    return Err(error_from_response(&request.operation, &response)
                        .with_retry_after(retry_after));
                }
            }
        }
    }

    async fn send_once(
        &self,
        request: &ApiRequest,
        token: &Secret,
    ) -> Result<ApiResponse, reqwest::Error> {
        let mut builder = self
            .inner
            .http
            .request(request.method.clone(), request.url.clone())
            .header("Accept", "application/json")
            .header("OData-MaxVersion", "4.0")
            .header("OData-Version", "4.0")
            .bearer_auth(token.expose());
        if request.method == Method::GET && !request.headers.contains_key("if-none-match") {
            // Recommended by Microsoft so no intermediate cache answers a GET.
            builder = builder.header("If-None-Match", "null");
        }
        builder = builder.headers(request.headers.clone());
        if let Some((body, content_type)) = &request.body {
            builder = builder
                .header("Content-Type", content_type.as_str())
                .body(body.clone());
        }
        let response = builder.send().await?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await?;
        Ok(ApiResponse {
            status,
            headers,
            body,
        })
    }
}

/// Decodes `{"error":{"code","message"}}` (or an empty/foreign body) into a classified error.
pub(crate) fn error_from_response(operation: &str, response: &ApiResponse) -> DataverseError {
    let (code, message) = error_body(&response.body);
    let message = message.or_else(|| {
        // 401s carry no body; the WWW-Authenticate challenge sometimes explains why.
        (response.status == StatusCode::UNAUTHORIZED)
            .then(|| {
                response
                    .header("www-authenticate")
                    .map(|_| "the service rejected the access token".to_string())
            })
            .flatten()
    });
    DataverseError::from_response(
        operation,
        response.status.as_u16(),
        code,
        message,
        request_id(&response.headers),
    )
}

/// `(code, message)` from a Web API error body; a non-JSON body becomes the (truncated) message.
pub(crate) fn error_body(body: &[u8]) -> (Option<String>, Option<String>) {
    match serde_json::from_slice::<Value>(body) {
        Ok(value) => {
            let error = value.get("error").unwrap_or(&value);
            let code = error
                .get("code")
                .and_then(Value::as_str)
                .map(str::to_string);
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_string);
            (code, message)
        }
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            let message = (!text.is_empty()).then(|| text.chars().take(500).collect());
            (None, message)
        }
    }
}

/// Builds a header map from static pairs, for request builders.
pub(crate) fn headers(
    pairs: &[(&'static str, String)],
    operation: &str,
) -> Result<HeaderMap, DataverseError> {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        let value = HeaderValue::from_str(value).map_err(|_| {
            DataverseError::new(
                ErrorKind::InvalidInput,
                operation,
                format!("invalid value for header {name}"),
            )
        })?;
        map.insert(HeaderName::from_static(name), value);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_decode_code_and_message() {
        let (code, message) = error_body(
            br#"{"error":{"code":"0x80040217","message":"account With Id = x Does Not Exist"}}"#,
        );
        assert_eq!(code.as_deref(), Some("0x80040217"));
        assert_eq!(
            message.as_deref(),
            Some("account With Id = x Does Not Exist")
        );
        assert_eq!(error_body(b""), (None, None));
        assert_eq!(error_body(b"Bad gateway").1.as_deref(), Some("Bad gateway"));
    }

    #[test]
    fn request_id_prefers_the_service_header() {
        let mut map = HeaderMap::new();
        map.insert("req_id", HeaderValue::from_static("r-2"));
        assert_eq!(request_id(&map).as_deref(), Some("r-2"));
        map.insert(
            "x-ms-service-request-id",
            HeaderValue::from_static("s-1, s-1b"),
        );
        assert_eq!(request_id(&map).as_deref(), Some("s-1"));
    }

    fn client() -> Client {
        Client::new(ClientConfig::new(
            "https://contoso.crm.dynamics.com/",
            "tenant",
            "client",
            Secret::new("secret"),
        ))
        .unwrap()
    }

    #[test]
    fn links_must_stay_on_the_org() {
        let c = client();
        assert_eq!(
            c.api_base().as_str(),
            "https://contoso.crm.dynamics.com/api/data/v9.2/"
        );
        let next = "https://contoso.crm.dynamics.com/api/data/v9.2/accounts?$select=name&$skiptoken=%3Ccookie%20pagenumber=%222%22%20/%3E";
        assert_eq!(
            c.link(next, "query").unwrap().as_str(),
            next,
            "followed verbatim"
        );
        assert_eq!(
            c.link("accounts?$deltatoken=1", "q").unwrap().as_str(),
            "https://contoso.crm.dynamics.com/api/data/v9.2/accounts?$deltatoken=1"
        );
        let err = c
            .link("https://evil.example.com/api/data/v9.2/accounts", "query")
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode);
        assert!(
            c.link(
                "http://contoso.crm.dynamics.com/api/data/v9.2/accounts",
                "q"
            )
            .is_err()
        );
    }

    #[test]
    fn bad_config_is_rejected_with_the_reason() {
        let err =
            Client::new(ClientConfig::new("not a url", "t", "c", Secret::new("s"))).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.to_string().contains("not a url"), "{err}");
        let err = Client::new(ClientConfig::new(
            "https://x.crm.dynamics.com",
            "t",
            "c",
            Secret::new(""),
        ))
        .unwrap_err();
        assert!(err.to_string().contains("client_secret"), "{err}");
        assert!(!format!("{:?}", client()).contains("secret\""));
    }
}
