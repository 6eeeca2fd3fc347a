//! HTTP wiring: the router, authentication, impersonation, limits, and turning [`Reply`] values
//! into responses. Handlers run on the blocking pool holding the store's connection.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use mdsync_emulator_kit::{Fault, FaultRegistry, RequestCounters, ServerHandle};
use serde_json::Value;

use crate::api::{self, Ctx, Reply, Req};
use crate::error::ApiError;
use crate::org::OrgIds;
use crate::security::{self, Caller};
use crate::state::Shared;
use crate::store::{self, Store};
use crate::{Config, Description, Error};

/// Largest request body accepted (the service allows ~116 MB for bulk operations).
const MAX_BODY: usize = 128 * 1024 * 1024;
pub const API_PREFIX: &str = "/api/data/v9.2";

/// A running emulator.
pub struct Running {
    handle: ServerHandle,
    shared: Arc<Shared>,
    description: Description,
}

impl Running {
    pub fn description(&self) -> &Description {
        &self.description
    }
    /// Stops the server and flushes state (WAL checkpoint) before returning.
    pub async fn shutdown(self) -> Result<(), Error> {
        self.handle.shutdown().await;
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let conn = shared.store().conn.lock();
            mdsync_emulator_kit::checkpoint(&conn)
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))??;
        Ok(())
    }
}

fn render_fault(f: &Fault) -> Response {
    let code = f.code.clone().unwrap_or_else(|| "0x80040216".into());
    let status = f
        .status
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(
            if matches!(code.as_str(), "0x80072322" | "0x80072321" | "0x80072326") {
                StatusCode::TOO_MANY_REQUESTS
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            },
        );
    let message = f
        .message
        .clone()
        .unwrap_or_else(|| "An unexpected error occurred.".into());
    ApiError::new(status, &code, message).into_response()
}

fn render_panic() -> Response {
    ApiError::internal("An unexpected error occurred.").into_response()
}

/// Opens the store, seeds a fresh organization, binds and serves.
pub async fn spawn(config: Config) -> Result<Running, Error> {
    let cfg = config.clone();
    let (store, ids) = tokio::task::spawn_blocking(move || -> Result<(Store, OrgIds), Error> {
        let store = Store::open(cfg.state_dir.as_deref())?;
        let ids = {
            let conn = store.conn.lock();
            let ids = OrgIds::load_or_create(&conn)?;
            if store::meta_get(&conn, "seeded")?.is_none() {
                conn.execute_batch("BEGIN")?;
                crate::org::seed(&conn, &store.schema(), &ids, &cfg.marketo_solution_version)?;
                conn.execute_batch("COMMIT")?;
            }
            ids
        };
        Ok((store, ids))
    })
    .await
    .map_err(|e| Error::Task(e.to_string()))??;
    let faults = FaultRegistry::new(Arc::new(render_fault));
    let counters = RequestCounters::default();
    let shared = Shared::new(store, ids, config.clone(), faults.clone(), counters.clone());
    let router = Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(token_v2))
        .route("/{tenant}/oauth2/token", post(token_v1))
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(openid_v2),
        )
        .route("/{tenant}/.well-known/openid-configuration", get(openid_v1))
        .route("/common/discovery/instance", get(instance_discovery))
        .route("/{tenant}/discovery/v2.0/keys", get(jwks))
        .route("/{tenant}/discovery/keys", get(jwks))
        .merge(crate::admin::routes(shared.clone()))
        .fallback(entry)
        .with_state(shared.clone());
    let app = mdsync_emulator_kit::instrument(router, faults, counters, render_panic).layer(
        axum::middleware::from_fn_with_state(shared.clone(), protect),
    );
    let handle = mdsync_emulator_kit::serve(config.listen, app).await?;
    let url = format!("http://{}", handle.local_addr());
    let ids = &shared.ids;
    let description = Description {
        api_url: format!("{url}{API_PREFIX}/"),
        token_url: format!("{url}/{}/oauth2/v2.0/token", ids.tenant_id),
        tenant_id: ids.tenant_id.clone(),
        admin_client_id: ids.admin_client_id.clone(),
        admin_client_secret: ids.admin_client_secret.clone(),
        sync_app_client_id: ids.sync_client_id.clone(),
        sync_app_client_secret: ids.sync_client_secret.clone(),
        url,
    };
    Ok(Running {
        handle,
        shared,
        description,
    })
}

async fn token_v2(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    token(shared, crate::auth::Endpoint::V2, tenant, headers, body).await
}

async fn token_v1(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    token(shared, crate::auth::Endpoint::V1, tenant, headers, body).await
}

fn request_origin(shared: &Shared, headers: &HeaderMap) -> String {
    origin(
        headers,
        &format!("127.0.0.1:{}", shared.config.listen.port()),
    )
}

/// Entra ID answers discovery for unknown tenants with 400 AADSTS90002; same here.
fn discovery(shared: &Shared, headers: &HeaderMap, tenant: &str, v2: bool) -> Response {
    if !tenant.eq_ignore_ascii_case(&shared.ids.tenant_id) {
        return crate::auth::tenant_not_found(tenant);
    }
    let origin = request_origin(shared, headers);
    axum::Json(crate::auth::openid_configuration(
        &origin,
        &shared.ids.tenant_id,
        v2,
    ))
    .into_response()
}

async fn openid_v2(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Response {
    discovery(&shared, &headers, &tenant, true)
}

async fn openid_v1(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Response {
    discovery(&shared, &headers, &tenant, false)
}

async fn instance_discovery(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let params: Vec<(String, String)> =
        serde_urlencoded::from_str(query.as_deref().unwrap_or("")).unwrap_or_default();
    let endpoint = params
        .iter()
        .find(|(k, _)| k == "authorization_endpoint")
        .map(|(_, v)| v.as_str());
    let origin = request_origin(&shared, &headers);
    axum::Json(crate::auth::instance_discovery(&origin, endpoint)).into_response()
}

/// Tokens are HMAC-signed, so there is no public key to publish; the set is empty.
async fn jwks() -> Response {
    axum::Json(serde_json::json!({"keys": []})).into_response()
}

async fn token(
    shared: Arc<Shared>,
    endpoint: crate::auth::Endpoint,
    tenant: String,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let lifetime = shared.config.token_lifetime.as_secs() as i64;
    tokio::task::spawn_blocking(move || {
        let conn = shared.store().conn.lock();
        crate::auth::token_endpoint(
            endpoint,
            &conn,
            &shared.ids.tenant_id,
            &shared.ids.token_secret,
            lifetime,
            &tenant,
            &headers,
            &body,
        )
    })
    .await
    .unwrap_or_else(|_| render_panic())
}

/// `<scheme>://<host>` from the request itself (Host header; `X-Forwarded-Proto` for the scheme).
pub fn origin(headers: &HeaderMap, fallback_host: &str) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or(fallback_host);
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("http");
    format!("{scheme}://{host}")
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Turns a reply into an HTTP response with the OData headers.
pub fn into_response(reply: Reply) -> Response {
    let mut resp = match reply.body {
        api::Body::Empty => reply.status.into_response(),
        api::Body::Json(v) => {
            let mut r = (reply.status, serde_json::to_vec(&v).unwrap_or_default()).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json; odata.metadata=minimal"),
            );
            r
        }
        api::Body::RawJson(t) => {
            let mut r = (reply.status, t).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json; odata.metadata=minimal"),
            );
            r
        }
        api::Body::Text(t, ct) => {
            let mut r = (reply.status, t).into_response();
            if let Ok(v) = HeaderValue::from_str(ct) {
                r.headers_mut().insert(header::CONTENT_TYPE, v);
            }
            r
        }
    };
    resp.headers_mut()
        .insert("OData-Version", HeaderValue::from_static("4.0"));
    for (k, v) in reply.headers {
        if let (Ok(name), Ok(value)) = (
            header::HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(&v),
        ) {
            resp.headers_mut().insert(name, value);
        }
    }
    resp
}

/// Resolves the caller from verified claims and applies `MSCRMCallerID`/`CallerObjectId`.
pub fn resolve_caller(
    shared: &Shared,
    conn: &rusqlite::Connection,
    claims: &Value,
    headers: &HeaderMap,
) -> Result<Caller, ApiError> {
    let schema = shared.store().schema();
    let users = schema
        .by_logical("systemuser")
        .ok_or_else(|| ApiError::internal("systemuser table missing"))?;
    let Some(uid) = crate::auth::systemuser_for(conn, claims)? else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "0x80072560",
            "The user is not a member of the organization.",
        ));
    };
    let caller = security::load_caller(conn, &users, &uid)?;
    let target = if let Some(id) = headers.get("mscrmcallerid").and_then(|v| v.to_str().ok()) {
        Some(
            id.trim()
                .trim_matches(|c| c == '{' || c == '}')
                .to_ascii_lowercase(),
        )
    } else if let Some(oid) = headers.get("callerobjectid").and_then(|v| v.to_str().ok()) {
        let found: Option<String> = conn
            .prepare_cached("SELECT id FROM rec_systemuser WHERE lower(json_extract(data, '$.azureactivedirectoryobjectid')) = lower(?1)")?
            .query_row([oid.trim()], |r| r.get(0))
            .ok();
        Some(found.ok_or_else(|| ApiError::record_not_found("systemuser", oid.trim()))?)
    } else {
        None
    };
    match target {
        None => Ok(caller),
        Some(t) if t == caller.user_id => Ok(caller),
        Some(t) => {
            if !caller.is_admin() {
                return Err(caller.deny("prvActOnBehalfOfAnotherUser", None));
            }
            if uuid::Uuid::parse_str(&t).is_err() {
                return Err(ApiError::bad_request(format!(
                    "Invalid MSCRMCallerID header value '{t}'."
                )));
            }
            if store::get(conn, &users, &t)?.is_none() {
                return Err(ApiError::record_not_found("systemuser", &t));
            }
            let mut impersonated = security::load_caller(conn, &users, &t)?;
            impersonated.calling_user_id = Some(caller.user_id);
            Ok(impersonated)
        }
    }
}

/// The Web API versions served; all behave like v9.2 (links keep the version the client used).
const API_VERSIONS: &[&str] = &["/api/data/v9.2", "/api/data/v9.1", "/api/data/v9.0"];

/// Longest URL (path and query) accepted outside `$batch`, like the service's 32 KB.
const MAX_URL: usize = 32 * 1024;

async fn entry(State(shared): State<Arc<Shared>>, req: Request<Body>) -> Response {
    let (mut parts, body) = req.into_parts();
    let url_len = parts.uri.path_and_query().map_or(0, |p| p.as_str().len());
    if url_len > MAX_URL {
        return (
            StatusCode::URI_TOO_LONG,
            [(header::CONTENT_TYPE, "text/html; charset=us-ascii")],
            "<h2>Request URL Too Long</h2><hr><p>HTTP Error 414. The request URL is too long.</p>",
        )
            .into_response();
    }
    // HEAD is a GET without the body (hyper drops the body of a HEAD response).
    if parts.method == axum::http::Method::HEAD {
        parts.method = axum::http::Method::GET;
    }
    let path = parts.uri.path().to_string();
    let Some((prefix, rest)) = API_VERSIONS
        .iter()
        .find_map(|p| path.strip_prefix(p).map(|r| (*p, r)))
    else {
        let first = path
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or("")
            .to_string();
        return ApiError::segment_not_found(&first).into_response();
    };
    if !rest.is_empty() && !rest.starts_with('/') {
        return ApiError::segment_not_found(path.trim_start_matches('/')).into_response();
    }
    let rest = rest.trim_start_matches('/').to_string();
    let local = format!("127.0.0.1:{}", shared.config.listen.port());
    let origin = origin(&parts.headers, &local);
    let base = format!("{origin}{prefix}/");
    let challenge = format!("{origin}/{}/oauth2/authorize", shared.ids.tenant_id);
    let Some(token) = bearer(&parts.headers) else {
        return ApiError::unauthorized(&challenge, &origin, "Bearer token is missing.")
            .into_response();
    };
    let now = chrono::Utc::now().timestamp();
    let claims = match crate::auth::verify(&shared.ids.token_secret, token, now) {
        Ok(c) => c,
        Err(p) => {
            return ApiError::unauthorized(
                &challenge,
                &origin,
                &format!("The access token is invalid: {p:?}."),
            )
            .into_response();
        }
    };
    let aud = claims.get("aud").and_then(Value::as_str).unwrap_or("");
    if !crate::auth::audience_matches(aud, &origin) {
        return ApiError::unauthorized(
            &challenge,
            &origin,
            "The access token is invalid: its audience does not match this organization.",
        )
        .into_response();
    }
    let body = match to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "0x80040216",
                "The request body is too large.",
            )
            .into_response();
        }
    };
    let req = Req {
        method: parts.method.clone(),
        path: rest,
        query: parts.uri.query().unwrap_or("").to_string(),
        headers: parts.headers.clone(),
        body,
    };
    let sh = shared.clone();
    let result = tokio::task::spawn_blocking(move || run(&sh, &claims, req, base)).await;
    result.unwrap_or_else(|_| render_panic())
}

/// Service protection, outermost so that time spent anywhere in the stack (including injected
/// latency) counts toward the caller's concurrency and execution-time windows.
async fn protect(
    State(shared): State<Arc<Shared>>,
    req: Request<Body>,
    next: axum::middleware::Next,
) -> Response {
    if !shared.limits.settings.enabled || !req.uri().path().starts_with("/api/data/") {
        return next.run(req).await;
    }
    let now = chrono::Utc::now().timestamp();
    let key = bearer(req.headers())
        .and_then(|t| crate::auth::verify(&shared.ids.token_secret, t, now).ok())
        .and_then(|c| c.get("oid").and_then(Value::as_str).map(str::to_string));
    let Some(key) = key else {
        return next.run(req).await;
    };
    let permit = match shared.limits.admit(&key) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let mut resp = next.run(req).await;
    drop(permit);
    for (k, v) in shared.limits.headers(&key) {
        if let (Ok(n), Ok(v)) = (
            header::HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(&v),
        ) {
            resp.headers_mut().insert(n, v);
        }
    }
    resp
}

/// A handler that panicked mid-write leaves its transaction open; roll it back so later requests
/// are not silently nested inside it.
pub fn recover_connection(conn: &rusqlite::Connection) {
    if !conn.is_autocommit() {
        tracing::warn!("Rolling back a transaction left open by a failed request");
        let _ = conn.execute_batch("ROLLBACK");
    }
}

fn run(shared: &Shared, claims: &Value, req: Req, base: String) -> Response {
    let conn = shared.store().conn.lock();
    recover_connection(&conn);
    let caller = match resolve_caller(shared, &conn, claims, &req.headers) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let mut ctx = Ctx {
        shared,
        conn: &conn,
        schema: shared.store().schema(),
        caller,
        base,
        content_ids: Default::default(),
        in_batch: false,
        versions: Default::default(),
    };
    if req.path == "$batch" {
        return crate::batch::run(&mut ctx, &req, claims);
    }
    match api::dispatch(&mut ctx, &req) {
        Ok(reply) => into_response(reply),
        Err(e) => e.into_response(),
    }
}
