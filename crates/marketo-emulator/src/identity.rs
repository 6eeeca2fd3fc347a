//! API-only users and their OAuth client-credentials tokens (`/identity/oauth/token`).

use http::StatusCode;
use rand::Rng;
use rand::distr::Alphanumeric;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::json;

use crate::envelope::{ApiError, json_response};
use crate::params::Params;
use crate::store::{Store, StoreError};

/// An API-only user (a LaunchPoint custom service bound to it).
#[derive(Clone)]
pub struct ApiUser {
    pub id: i64,
    pub client_id: String,
    pub client_secret: String,
    pub email: String,
}

impl std::fmt::Debug for ApiUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiUser")
            .field("id", &self.id)
            .field("client_id", &self.client_id)
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

/// The two users every store has.
pub struct BuiltinUsers {
    pub sync: ApiUser,
    pub other: ApiUser,
}

/// Email of mdsync's own API-only user (API-only users carry the email the admin typed).
pub const SYNC_USER_EMAIL: &str = "mdsync@123-abc-456.mktoapi.example";
pub const OTHER_USER_EMAIL: &str = "other-integration@123-abc-456.mktoapi.example";

/// Creates the built-in users on a fresh store (random credentials, persisted) and returns them.
pub fn ensure_builtin_users(store: &Store) -> Result<BuiltinUsers, StoreError> {
    let conn = store.lock();
    let sync = match user_by_role(&conn, "sync")? {
        Some(u) => u,
        None => create_user(&conn, SYNC_USER_EMAIL, "sync")?,
    };
    let other = match user_by_role(&conn, "other")? {
        Some(u) => u,
        None => create_user(&conn, OTHER_USER_EMAIL, "other")?,
    };
    Ok(BuiltinUsers { sync, other })
}

fn user_by_role(conn: &Connection, role: &str) -> Result<Option<ApiUser>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT id, client_id, client_secret, email FROM api_users WHERE role = ?1 ORDER BY id LIMIT 1",
            [role],
            row_user,
        )
        .optional()?)
}

fn row_user(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApiUser> {
    Ok(ApiUser {
        id: r.get(0)?,
        client_id: r.get(1)?,
        client_secret: r.get(2)?,
        email: r.get(3)?,
    })
}

fn random_secret(len: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// Adds an API-only user with fresh credentials.
pub fn create_user(conn: &Connection, email: &str, role: &str) -> Result<ApiUser, StoreError> {
    let client_id = uuid::Uuid::new_v4().to_string();
    let client_secret = random_secret(32);
    conn.execute(
        "INSERT INTO api_users(client_id, client_secret, email, role) VALUES (?1, ?2, ?3, ?4)",
        params![client_id, client_secret, email, role],
    )?;
    Ok(ApiUser {
        id: conn.last_insert_rowid(),
        client_id,
        client_secret,
        email: email.to_owned(),
    })
}

/// All users (for the test surface; secrets are not returned there).
pub fn list_users(conn: &Connection) -> Result<Vec<ApiUser>, StoreError> {
    let mut stmt =
        conn.prepare("SELECT id, client_id, client_secret, email FROM api_users ORDER BY id")?;
    let users = stmt
        .query_map([], row_user)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(users)
}

pub fn user_by_id(conn: &Connection, id: i64) -> Result<Option<ApiUser>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT id, client_id, client_secret, email FROM api_users WHERE id = ?1",
            [id],
            row_user,
        )
        .optional()?)
}

fn identity_error(status: StatusCode, error: &str, description: &str) -> axum::response::Response {
    json_response(
        status,
        &json!({"error": error, "error_description": description}),
    )
}

/// `GET|POST /identity/oauth/token`: the same token until it expires, with the time left.
pub fn token(store: &Store, params: &Params, lifetime_secs: u64) -> axum::response::Response {
    match params.get("grant_type").as_deref() {
        None => {
            return identity_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Missing grant type",
            );
        }
        Some("client_credentials") => {}
        Some(_) => {
            return identity_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "Unsupported grant type",
            );
        }
    }
    let (Some(client_id), Some(secret)) = (params.get("client_id"), params.get("client_secret"))
    else {
        return identity_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Bad client credentials",
        );
    };
    let result = (|| -> Result<Option<(String, i64, String)>, StoreError> {
        let conn = store.lock();
        let user: Option<ApiUser> = conn
            .query_row(
                "SELECT id, client_id, client_secret, email FROM api_users WHERE client_id = ?1",
                [&client_id],
                row_user,
            )
            .optional()?;
        let Some(user) = user.filter(|u| u.client_secret == secret) else {
            return Ok(None);
        };
        let now = crate::time::now_ms();
        let live: Option<(String, i64)> = conn
            .query_row(
                "SELECT token, expires_at_ms FROM tokens WHERE user_id = ?1 AND expires_at_ms > ?2
                 ORDER BY expires_at_ms DESC LIMIT 1",
                params![user.id, now],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let (token, expires) = match live {
            Some(t) => t,
            None => {
                let token = format!("{}:ab", uuid::Uuid::new_v4());
                let expires = now + (lifetime_secs as i64) * 1000;
                conn.execute(
                    "INSERT INTO tokens(token, user_id, expires_at_ms) VALUES (?1, ?2, ?3)",
                    params![token, user.id, expires],
                )?;
                (token, expires)
            }
        };
        let left = ((expires - now) / 1000).max(0);
        Ok(Some((token, left, user.email)))
    })();
    match result {
        Ok(Some((token, left, email))) => json_response(
            StatusCode::OK,
            &json!({"access_token": token, "token_type": "bearer", "expires_in": left, "scope": email}),
        ),
        Ok(None) => identity_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Bad client credentials",
        ),
        Err(err) => {
            tracing::error!(error = %err, "identity storage failure");
            identity_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "Internal error",
            )
        }
    }
}

/// Resolves an access token to its user: 601 unknown, 602 expired.
pub fn authenticate(store: &Store, token: Option<&str>) -> Result<ApiUser, ApiError> {
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Err(ApiError::token_invalid());
    };
    let conn = store.lock();
    let found: Option<(i64, i64)> = conn
        .query_row(
            "SELECT user_id, expires_at_ms FROM tokens WHERE token = ?1",
            [token],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((user_id, expires)) = found else {
        return Err(ApiError::token_invalid());
    };
    if expires <= crate::time::now_ms() {
        return Err(ApiError::token_expired());
    }
    user_by_id(&conn, user_id)?.ok_or_else(ApiError::token_invalid)
}
