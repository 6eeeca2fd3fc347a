//! Entra ID-style identity: the client-credentials token endpoint, JWT-shaped access tokens
//! (HMAC-SHA256 signed with a per-store secret) and mapping a token to its `systemuser`.

use std::collections::HashMap;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rusqlite::{Connection, OptionalExtension};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// A registered app (client credentials).
#[derive(Clone)]
pub struct App {
    pub client_id: String,
    pub secret: String,
    pub name: String,
    pub object_id: String,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("client_id", &self.client_id)
            .field("name", &self.name)
            .field("secret", &"<redacted>")
            .finish()
    }
}

pub fn find_app(conn: &Connection, client_id: &str) -> rusqlite::Result<Option<App>> {
    conn.query_row(
        "SELECT client_id, secret, name, object_id FROM apps WHERE lower(client_id) = lower(?1)",
        [client_id],
        |r| {
            Ok(App {
                client_id: r.get(0)?,
                secret: r.get(1)?,
                name: r.get(2)?,
                object_id: r.get(3)?,
            })
        },
    )
    .optional()
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    let ih = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(ih);
    outer.finalize().into()
}

/// Signs claims into a `header.payload.signature` token.
pub fn sign(secret: &str, claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"HS256","kid":"mdsync-emulator"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
    let signing_input = format!("{header}.{payload}");
    let sig = URL_SAFE_NO_PAD.encode(hmac_sha256(secret.as_bytes(), signing_input.as_bytes()));
    format!("{signing_input}.{sig}")
}

/// Why a bearer token was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum TokenProblem {
    Missing,
    Malformed,
    BadSignature,
    Expired,
}

/// Verifies signature and expiry; returns the claims.
pub fn verify(secret: &str, token: &str, now: i64) -> Result<Value, TokenProblem> {
    let parts: Vec<&str> = token.split('.').collect();
    let [h, p, s] = parts.as_slice() else {
        return Err(TokenProblem::Malformed);
    };
    let expected = hmac_sha256(secret.as_bytes(), format!("{h}.{p}").as_bytes());
    let given = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| TokenProblem::Malformed)?;
    if given.as_slice() != expected.as_slice() {
        return Err(TokenProblem::BadSignature);
    }
    let payload = URL_SAFE_NO_PAD
        .decode(p)
        .map_err(|_| TokenProblem::Malformed)?;
    let claims: Value = serde_json::from_slice(&payload).map_err(|_| TokenProblem::Malformed)?;
    let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
    if exp <= now {
        return Err(TokenProblem::Expired);
    }
    Ok(claims)
}

/// Claims for an app token.
pub fn app_claims(app: &App, tenant: &str, audience: &str, lifetime_secs: i64, now: i64) -> Value {
    json!({
        "aud": audience,
        "iss": format!("https://sts.windows.net/{tenant}/"),
        "iat": now, "nbf": now, "exp": now + lifetime_secs,
        "appid": app.client_id, "azp": app.client_id, "appidacr": "1",
        "idp": format!("https://sts.windows.net/{tenant}/"),
        "idtyp": "app", "oid": app.object_id, "sub": app.object_id,
        "tid": tenant, "ver": "1.0",
    })
}

/// Claims for a token acting as a given user (test surface).
pub fn user_claims(
    user_id: &str,
    tenant: &str,
    audience: &str,
    lifetime_secs: i64,
    now: i64,
) -> Value {
    json!({
        "aud": audience,
        "iss": format!("https://sts.windows.net/{tenant}/"),
        "iat": now, "nbf": now, "exp": now + lifetime_secs,
        "appid": "51f81489-12ee-4a9e-aaae-a2591f45987d", "idtyp": "user",
        "oid": user_id, "sub": user_id, "tid": tenant, "ver": "1.0",
        "xms_mdsync_systemuserid": user_id,
    })
}

fn aad_error(status: StatusCode, error: &str, code: u32, description: &str) -> Response {
    let now = chrono::Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string();
    let trace = uuid::Uuid::new_v4().to_string();
    let body = json!({
        "error": error,
        "error_description": format!("AADSTS{code}: {description} Trace ID: {trace} Correlation ID: {trace} Timestamp: {now}"),
        "error_codes": [code],
        "timestamp": now,
        "trace_id": trace,
        "correlation_id": trace,
        "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
    });
    let mut r = (status, axum::Json(body)).into_response();
    r.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store, no-cache"),
    );
    r
}

/// 400 AADSTS90002, as Entra ID answers for an unknown tenant.
pub fn tenant_not_found(tenant: &str) -> Response {
    aad_error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        90002,
        &format!(
            "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
        ),
    )
}

/// Which token endpoint was called: v2.0 takes `scope=<resource>/.default`, v1 takes
/// `resource=<resource>` and answers with string-typed lifetimes plus `expires_on`/`resource`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    V1,
    V2,
}

/// Handles `POST /{tenant}/oauth2/v2.0/token` and `POST /{tenant}/oauth2/token` (client
/// credentials; form body or Basic auth).
#[allow(clippy::too_many_arguments)]
pub fn token_endpoint(
    endpoint: Endpoint,
    conn: &Connection,
    tenant_id: &str,
    token_secret: &str,
    lifetime_secs: i64,
    path_tenant: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    if !path_tenant.eq_ignore_ascii_case(tenant_id) {
        return tenant_not_found(path_tenant);
    }
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(body).unwrap_or_default();
    let (mut client_id, mut secret) = (
        form.get("client_id").cloned(),
        form.get("client_secret").cloned(),
    );
    if let Some(basic) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        && let Some((u, p)) = STANDARD
            .decode(basic.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| {
                s.split_once(':')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
            })
    {
        let dec = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .to_string()
        };
        client_id = Some(dec(&u));
        secret = Some(dec(&p));
    }
    match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {}
        Some(other) => {
            return aad_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                70003,
                &format!("The app requested an unsupported grant type '{other}'."),
            );
        }
        None => {
            return aad_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'grant_type'.",
            );
        }
    }
    let Some(client_id) = client_id.filter(|c| !c.is_empty()) else {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        );
    };
    let resource = match endpoint {
        Endpoint::V2 => {
            let scope = form.get("scope").cloned().unwrap_or_default();
            let Some(resource) = scope
                .strip_suffix("/.default")
                .filter(|r| !r.is_empty() && !r.contains(' '))
            else {
                return aad_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    70011,
                    &format!(
                        "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
                    ),
                );
            };
            resource.to_string()
        }
        Endpoint::V1 => match form.get("resource").filter(|r| !r.trim().is_empty()) {
            Some(r) => r.trim().trim_end_matches('/').to_string(),
            None => {
                return aad_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_resource",
                    500011,
                    "The resource principal named  was not found in the tenant. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant.",
                );
            }
        },
    };
    let app = match find_app(conn, &client_id) {
        Ok(Some(app)) => app,
        Ok(None) => {
            return aad_error(
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                700016,
                &format!(
                    "Application with identifier '{client_id}' was not found in the directory '{tenant_id}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
                ),
            );
        }
        Err(_) => {
            return aad_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "temporarily_unavailable",
                90033,
                "A transient error has occurred. Please try again.",
            );
        }
    };
    if secret.as_deref() != Some(app.secret.as_str()) {
        return aad_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            &format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.",
                app.client_id
            ),
        );
    }
    let now = chrono::Utc::now().timestamp();
    let claims = app_claims(&app, tenant_id, &resource, lifetime_secs, now);
    let token = sign(token_secret, &claims);
    let body = match endpoint {
        Endpoint::V2 => json!({
            "token_type": "Bearer",
            "expires_in": lifetime_secs,
            "ext_expires_in": lifetime_secs,
            "access_token": token,
        }),
        Endpoint::V1 => json!({
            "token_type": "Bearer",
            "expires_in": lifetime_secs.to_string(),
            "ext_expires_in": lifetime_secs.to_string(),
            "expires_on": (now + lifetime_secs).to_string(),
            "not_before": now.to_string(),
            "resource": resource,
            "access_token": token,
        }),
    };
    let mut r = (StatusCode::OK, axum::Json(body)).into_response();
    r.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store, no-cache"),
    );
    r
}

/// Whether a token's `aud` names this service as reached by the request (`origin` =
/// `<scheme>://<host>`). The scheme is ignored (a TLS-terminating proxy in front of the emulator
/// sees plain HTTP) and, like the service, both `org.crm…` and `org.api.crm…` host forms count.
pub fn audience_matches(aud: &str, origin: &str) -> bool {
    fn host(u: &str) -> String {
        let no_scheme = u.split_once("://").map_or(u, |(_, rest)| rest);
        let h = no_scheme
            .split('/')
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        let h = h.strip_suffix(":443").unwrap_or(&h).to_string();
        h.replacen(".api.crm", ".crm", 1)
    }
    let a = host(aud.trim());
    !a.is_empty() && a == host(origin)
}

/// `GET /{tenant}/v2.0/.well-known/openid-configuration` (and the v1 form without `/v2.0`):
/// what MSAL and azure-identity read before asking for a token.
pub fn openid_configuration(origin: &str, tenant: &str, v2: bool) -> Value {
    let (ver, issuer) = if v2 {
        ("/v2.0", format!("{origin}/{tenant}/v2.0"))
    } else {
        ("", format!("https://sts.windows.net/{tenant}/"))
    };
    json!({
        "token_endpoint": format!("{origin}/{tenant}/oauth2{ver}/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": format!("{origin}/{tenant}/discovery{ver}/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": issuer,
        "request_uri_parameter_supported": false,
        "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
        "authorization_endpoint": format!("{origin}/{tenant}/oauth2{ver}/authorize"),
        "device_authorization_endpoint": format!("{origin}/{tenant}/oauth2{ver}/devicecode"),
        "http_logout_supported": true,
        "frontchannel_logout_supported": true,
        "end_session_endpoint": format!("{origin}/{tenant}/oauth2{ver}/logout"),
        "claims_supported": ["sub", "iss", "cloud_instance_name", "cloud_instance_host_name", "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat", "auth_time", "acr", "nonce", "preferred_username", "name", "tid", "ver", "at_hash", "c_hash", "email"],
        "kerberos_endpoint": format!("{origin}/{tenant}/kerberos"),
        "tenant_region_scope": "NA",
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
        "rbac_url": "https://pas.windows.net",
    })
}

/// `GET /common/discovery/instance?api-version=1.1&authorization_endpoint=…`: MSAL's instance
/// discovery. The emulator is its own (only) cloud instance, so it points back at itself.
pub fn instance_discovery(origin: &str, authorization_endpoint: Option<&str>) -> Value {
    let host = origin.split_once("://").map_or(origin, |(_, h)| h);
    // The tenant is the first path segment of the authority the client named.
    let tenant = authorization_endpoint
        .and_then(|a| a.split_once("://").map(|(_, r)| r))
        .and_then(|r| r.split('/').nth(1))
        .filter(|t| !t.is_empty())
        .unwrap_or("common");
    json!({
        "tenant_discovery_endpoint": format!("{origin}/{tenant}/v2.0/.well-known/openid-configuration"),
        "api-version": "1.1",
        "metadata": [{
            "preferred_network": host,
            "preferred_cache": host,
            "aliases": [host],
        }],
    })
}

/// Finds the systemuser behind verified claims: user tokens carry the id, app tokens map through
/// `applicationid`. `Ok(None)` = the app has no application user.
pub fn systemuser_for(conn: &Connection, claims: &Value) -> rusqlite::Result<Option<String>> {
    if let Some(uid) = claims
        .get("xms_mdsync_systemuserid")
        .and_then(Value::as_str)
    {
        return Ok(Some(uid.to_string()));
    }
    let Some(appid) = claims.get("appid").and_then(Value::as_str) else {
        return Ok(None);
    };
    conn.prepare_cached(
        "SELECT id FROM rec_systemuser WHERE lower(json_extract(data, '$.applicationid')) = lower(?1) LIMIT 1",
    )?
    .query_row([appid], |r| r.get(0))
    .optional()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_tokens_verify_and_tampering_fails() {
        let claims = json!({"exp": 2_000, "appid": "x"});
        let t = sign("k", &claims);
        assert_eq!(verify("k", &t, 1_000).ok(), Some(claims));
        assert_eq!(verify("other", &t, 1_000), Err(TokenProblem::BadSignature));
        assert_eq!(verify("k", &t, 3_000), Err(TokenProblem::Expired));
        assert_eq!(verify("k", "abc", 0), Err(TokenProblem::Malformed));
    }

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
