//! The emulator's own `/_emulator/` routes (the kit adds faults and counters).
// Admin handlers return ready-made responses as their error type; boxing them buys nothing here.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use mdsync_emulator_kit::admin_error;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::state::Shared;
use crate::store;

pub fn routes(shared: Arc<Shared>) -> Router<Arc<Shared>> {
    let _ = shared;
    Router::new()
        .route("/_emulator/reset", post(reset))
        .route("/_emulator/seed", post(seed))
        .route("/_emulator/apps", post(add_app))
        .route("/_emulator/tokens", post(user_token))
        .route("/_emulator/org", get(org))
        .route("/_emulator/publishes", get(publishes))
        .route("/_emulator/users/{id}/language", put(set_language))
        .route("/_emulator/steps/{id}/state", put(set_step_state))
        .route("/_emulator/panic", post(panic_now))
}

fn parse<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, Response> {
    let text = if body.is_empty() {
        &b"{}"[..]
    } else {
        &body[..]
    };
    serde_json::from_slice(text)
        .map_err(|e| admin_error(StatusCode::BAD_REQUEST, format!("Invalid JSON body: {e}")))
}

async fn blocking<F>(shared: Arc<Shared>, f: F) -> Response
where
    F: FnOnce(&Shared, &rusqlite::Connection) -> Result<Response, Response> + Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        let conn = shared.store().conn.lock();
        crate::server::recover_connection(&conn);
        match f(&shared, &conn) {
            Ok(r) | Err(r) => r,
        }
    })
    .await
    .unwrap_or_else(|e| admin_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

fn db_err(e: rusqlite::Error) -> Response {
    admin_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("storage error: {e}"),
    )
}

async fn reset(State(shared): State<Arc<Shared>>) -> Response {
    shared.faults.clear();
    shared.counters.reset();
    blocking(shared, |sh, conn| {
        let schema = sh.store().schema();
        conn.execute_batch("BEGIN").map_err(db_err)?;
        let r = store::clear_data(conn, &schema).and_then(|_| {
            crate::org::seed(conn, &schema, &sh.ids, &sh.config.marketo_solution_version)
        });
        match r {
            Ok(()) => conn.execute_batch("COMMIT").map_err(db_err)?,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(db_err(e));
            }
        }
        Ok(axum::Json(json!({"reset": true})).into_response())
    })
    .await
}

/// Body of `POST /_emulator/seed`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedRequest {
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub accounts: u64,
    #[serde(default)]
    pub contacts: u64,
    #[serde(default)]
    pub leads: u64,
    #[serde(default)]
    pub opportunities: u64,
}

async fn seed(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let req: SeedRequest = match parse(&body) {
        Ok(r) => r,
        Err(e) => return e,
    };
    blocking(shared, move |sh, conn| {
        let counts = crate::seed::seed(sh, conn, &req).map_err(db_err)?;
        Ok(axum::Json(counts).into_response())
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AppRequest {
    name: Option<String>,
}

async fn add_app(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let req: AppRequest = match parse(&body) {
        Ok(r) => r,
        Err(e) => return e,
    };
    blocking(shared, move |_, conn| {
        let client_id = uuid::Uuid::new_v4().to_string();
        let secret = crate::org::new_secret();
        let name = req.name.unwrap_or_else(|| "Registered app".into());
        conn.execute(
            "INSERT INTO apps(client_id, secret, name, object_id) VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![client_id, secret, name, uuid::Uuid::new_v4().to_string()],
        )
        .map_err(db_err)?;
        Ok((
            StatusCode::CREATED,
            axum::Json(json!({"client_id": client_id, "client_secret": secret, "name": name})),
        )
            .into_response())
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    systemuserid: String,
    lifetime_seconds: Option<i64>,
}

async fn user_token(
    State(shared): State<Arc<Shared>>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let local = format!("127.0.0.1:{}", shared.config.listen.port());
    let audience = crate::server::origin(&headers, &local);
    let req: TokenRequest = match parse(&body) {
        Ok(r) => r,
        Err(e) => return e,
    };
    blocking(shared, move |sh, conn| {
        let Ok(uid) = uuid::Uuid::parse_str(req.systemuserid.trim()) else {
            return Err(admin_error(
                StatusCode::BAD_REQUEST,
                "systemuserid must be a GUID",
            ));
        };
        let uid = uid.to_string();
        let exists: bool = conn
            .query_row("SELECT 1 FROM rec_systemuser WHERE id = ?1", [&uid], |_| {
                Ok(true)
            })
            .unwrap_or(false);
        if !exists {
            return Err(admin_error(
                StatusCode::NOT_FOUND,
                format!("systemuser {uid} does not exist"),
            ));
        }
        let lifetime = req
            .lifetime_seconds
            .unwrap_or(sh.config.token_lifetime.as_secs() as i64);
        let now = chrono::Utc::now().timestamp();
        let claims = crate::auth::user_claims(&uid, &sh.ids.tenant_id, &audience, lifetime, now);
        let token = crate::auth::sign(&sh.ids.token_secret, &claims);
        Ok(axum::Json(
            json!({"token_type": "Bearer", "expires_in": lifetime, "access_token": token}),
        )
        .into_response())
    })
    .await
}

async fn org(State(shared): State<Arc<Shared>>) -> Response {
    let i = &shared.ids;
    axum::Json(json!({
        "tenant_id": i.tenant_id,
        "organization_id": i.organization_id,
        "root_business_unit_id": i.root_business_unit_id,
        "admin_user_id": i.admin_user_id,
        "salesperson_user_id": i.sales_user_id,
        "no_role_user_id": i.service_user_id,
        "admin_app_user_id": i.admin_app_user_id,
        "roles": {"System Administrator": i.role_sysadmin_id, "Salesperson": i.role_salesperson_id, "Marketo Sync User": i.role_marketo_sync_id},
        "teams": {"default": i.default_team_id, "Marketing": i.marketing_team_id},
        "marketo_solution_id": i.solution_id,
        "marketo_config_id": i.config_id,
        "marketo_solution_version": shared.config.marketo_solution_version,
    }))
    .into_response()
}

async fn publishes(State(shared): State<Arc<Shared>>) -> Response {
    blocking(shared, |_, conn| {
        let mut stmt = conn
            .prepare("SELECT at, systemuserid FROM publish_log ORDER BY id")
            .map_err(db_err)?;
        let rows: Vec<Value> = stmt
            .query_map([], |r| {
                Ok(json!({"at": r.get::<_, String>(0)?, "systemuserid": r.get::<_, String>(1)?}))
            })
            .map_err(db_err)?
            .filter_map(Result::ok)
            .collect();
        Ok(axum::Json(json!({"count": rows.len(), "publishes": rows})).into_response())
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LanguageRequest {
    uilanguageid: i64,
}

/// Updates one record's fields as the seeded admin (test surface shortcut).
fn admin_patch(
    sh: &Shared,
    conn: &rusqlite::Connection,
    entity: &str,
    id: &str,
    fields: serde_json::Map<String, Value>,
) -> Result<Response, Response> {
    let schema = sh.store().schema();
    let Some(def) = schema.by_logical(entity) else {
        return Err(admin_error(
            StatusCode::NOT_FOUND,
            format!("no table {entity}"),
        ));
    };
    let Ok(uid) = uuid::Uuid::parse_str(id) else {
        return Err(admin_error(StatusCode::BAD_REQUEST, "id must be a GUID"));
    };
    let id = uid.to_string();
    let Some(row) = store::get(conn, &def, &id).map_err(db_err)? else {
        return Err(admin_error(
            StatusCode::NOT_FOUND,
            format!("{entity} {id} does not exist"),
        ));
    };
    let users = schema
        .by_logical("systemuser")
        .ok_or_else(|| admin_error(StatusCode::INTERNAL_SERVER_ERROR, "no systemuser table"))?;
    let caller = crate::security::load_caller(conn, &users, &sh.ids.admin_user_id)
        .map_err(|e| e.into_response())?;
    let ctx = crate::api::Ctx {
        shared: sh,
        conn,
        schema: schema.clone(),
        caller,
        base: String::new(),
        content_ids: Default::default(),
        in_batch: false,
        versions: Default::default(),
    };
    crate::api::crud::write_record(&ctx, &def, &id, Some(row), &fields)
        .map_err(|e| admin_error(StatusCode::BAD_REQUEST, e.message))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn set_language(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let req: LanguageRequest = match parse(&body) {
        Ok(r) => r,
        Err(e) => return e,
    };
    blocking(shared, move |sh, conn| {
        let mut m = serde_json::Map::new();
        m.insert("uilanguageid".into(), json!(req.uilanguageid));
        admin_patch(sh, conn, "usersettings", &id, m)
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StepStateRequest {
    statecode: i64,
}

async fn set_step_state(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let req: StepStateRequest = match parse(&body) {
        Ok(r) => r,
        Err(e) => return e,
    };
    blocking(shared, move |sh, conn| {
        let mut m = serde_json::Map::new();
        m.insert("statecode".into(), json!(req.statecode));
        admin_patch(sh, conn, "sdkmessageprocessingstep", &id, m)
    })
    .await
}

/// Deliberately panics, to prove a handler panic answers 500 and leaves the server running.
async fn panic_now() -> Response {
    panic!("deliberate panic requested through /_emulator/panic")
}
