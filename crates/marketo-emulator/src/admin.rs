//! The emulator's own test-surface routes under `/_emulator/` (the kit adds faults and counters).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::StatusCode;
use mdsync_emulator_kit::admin_error;
use serde_json::{Map, Value, json};

use crate::activities::Actor;
use crate::routes::AppState;

type AppRef = Arc<AppState>;

pub fn routes() -> Router<AppRef> {
    Router::new()
        .route("/_emulator/reset", post(reset))
        .route("/_emulator/seed", post(seed))
        .route("/_emulator/marketer-edits", post(marketer_edit))
        .route("/_emulator/users", get(list_users).post(add_user))
        .route("/_emulator/partitions", post(add_partition))
        .route("/_emulator/lists", post(add_list))
        .route("/_emulator/programs", post(add_program))
        .route("/_emulator/campaigns", post(add_campaign))
        .route("/_emulator/usage", get(usage))
}

fn bad(message: impl Into<String>) -> Response {
    admin_error(StatusCode::BAD_REQUEST, message)
}

fn internal(err: impl std::fmt::Display) -> Response {
    tracing::error!(error = %err, "marketo test surface failure");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        axum::Json(json!({"error": {"code": "InternalError", "message": err.to_string()}})),
    )
        .into_response()
}

fn parse_object(body: &Bytes) -> Result<Map<String, Value>, Box<Response>> {
    if body.is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Box::new(bad("the body must be a JSON object"))),
        Err(err) => Err(Box::new(bad(format!("invalid JSON: {err}")))),
    }
}

async fn blocking(work: impl FnOnce() -> Response + Send + 'static) -> Response {
    match tokio::task::spawn_blocking(work).await {
        Ok(r) => r,
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(err) => internal(err),
    }
}

async fn reset(State(state): State<AppRef>) -> Response {
    blocking(move || {
        let conn = state.store.lock();
        let result = conn.execute_batch(
            "DELETE FROM lead_index; DELETE FROM leads; DELETE FROM activities; DELETE FROM objects;
             DELETE FROM export_jobs; DELETE FROM deleted_leads; DELETE FROM list_members;
             DELETE FROM program_members;",
        );
        drop(conn);
        state.limits.reset();
        match result {
            Ok(()) => axum::Json(json!({"reset": true})).into_response(),
            Err(err) => internal(err),
        }
    })
    .await
}

async fn seed(State(state): State<AppRef>, body: Bytes) -> Response {
    let request: crate::seed::SeedRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(err) => return bad(format!("invalid seed request: {err}")),
    };
    blocking(move || match crate::seed::seed(&state.store, &request) {
        Ok(v) => axum::Json(v).into_response(),
        Err(err) => internal(err),
    })
    .await
}

/// `{"leadId":1,"fields":{..}}`, `{"create":{..}}` or `{"deleteLeadId":1}`, all as a marketer.
async fn marketer_edit(State(state): State<AppRef>, body: Bytes) -> Response {
    let request = match parse_object(&body) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    blocking(move || {
        let mut conn = state.store.lock();
        let tx = match conn.transaction() {
            Ok(tx) => tx,
            Err(err) => return internal(err),
        };
        let catalog = match crate::fields::load(&tx) {
            Ok(c) => c,
            Err(err) => return internal(err),
        };
        let now = crate::time::now();
        let actor = Actor::marketer();
        let validate = |fields: Option<&Value>| -> Result<Map<String, Value>, Box<Response>> {
            let Some(Value::Object(fields)) = fields else {
                return Err(Box::new(bad(
                    "'fields' (or 'create') must be an object of lead fields",
                )));
            };
            crate::lead_store::validate_record(&catalog, fields).map_err(|e| {
                Box::new(match e {
                    crate::envelope::ApiError::Api { code, message } => {
                        bad(format!("{code}: {message}"))
                    }
                    crate::envelope::ApiError::Http { body, .. } => bad(body),
                })
            })
        };
        let response = if let Some(create) = request.get("create") {
            let values = match validate(Some(create)) {
                Ok(v) => v,
                Err(r) => return *r,
            };
            match crate::lead_store::create(&tx, &catalog, 1, &values, now, &actor) {
                Ok(id) => axum::Json(json!({"id": id, "status": "created"})).into_response(),
                Err(err) => return internal(err),
            }
        } else if let Some(id) = request.get("deleteLeadId") {
            let Some(id) = id.as_i64() else {
                return bad("'deleteLeadId' must be an integer");
            };
            match crate::lead_store::delete(&tx, id, now, &actor) {
                Ok(true) => axum::Json(json!({"id": id, "status": "deleted"})).into_response(),
                Ok(false) => {
                    return admin_error(StatusCode::NOT_FOUND, format!("no lead with id {id}"));
                }
                Err(err) => return internal(err),
            }
        } else {
            let Some(id) = request.get("leadId").and_then(Value::as_i64) else {
                return bad(
                    "one of 'leadId' (with 'fields'), 'create' or 'deleteLeadId' is required",
                );
            };
            let values = match validate(request.get("fields")) {
                Ok(v) => v,
                Err(r) => return *r,
            };
            let mut lead = match crate::lead_store::load(&tx, id) {
                Ok(Some(l)) => l,
                Ok(None) => {
                    return admin_error(StatusCode::NOT_FOUND, format!("no lead with id {id}"));
                }
                Err(err) => return internal(err),
            };
            match crate::lead_store::update(&tx, &catalog, &mut lead, &values, now, &actor) {
                Ok(changed) => {
                    axum::Json(json!({"id": id, "status": "updated", "changed": changed}))
                        .into_response()
                }
                Err(err) => return internal(err),
            }
        };
        match tx.commit() {
            Ok(()) => response,
            Err(err) => internal(err),
        }
    })
    .await
}

async fn list_users(State(state): State<AppRef>) -> Response {
    blocking(
        move || match crate::identity::list_users(&state.store.lock()) {
            Ok(users) => {
                let users: Vec<Value> = users
                    .iter()
                    .map(|u| json!({"id": u.id, "client_id": u.client_id, "email": u.email}))
                    .collect();
                axum::Json(json!({"users": users})).into_response()
            }
            Err(err) => internal(err),
        },
    )
    .await
}

/// `{"email":"x@y.com"}` → a new API-only user with fresh credentials.
async fn add_user(State(state): State<AppRef>, body: Bytes) -> Response {
    let request = match parse_object(&body) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let email = match request.get("email") {
        Some(Value::String(e)) if e.contains('@') => e.clone(),
        None => format!(
            "api-{}@123-abc-456.mktoapi.example",
            uuid::Uuid::new_v4().simple()
        ),
        _ => return bad("'email' must be an email address"),
    };
    blocking(move || match crate::identity::create_user(&state.store.lock(), &email, "extra") {
        Ok(u) => (
            StatusCode::CREATED,
            axum::Json(json!({"id": u.id, "client_id": u.client_id, "client_secret": u.client_secret, "email": u.email})),
        )
            .into_response(),
        Err(err) => internal(err),
    })
    .await
}

/// `{"name":"Europe","description":".."}` → a lead partition.
async fn add_partition(State(state): State<AppRef>, body: Bytes) -> Response {
    let request = match parse_object(&body) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let Some(name) = request
        .get("name")
        .and_then(Value::as_str)
        .map(String::from)
    else {
        return bad("'name' is required");
    };
    let description = request
        .get("description")
        .and_then(Value::as_str)
        .map(String::from);
    blocking(move || {
        let conn = state.store.lock();
        match conn.execute(
            "INSERT INTO partitions(name, description) VALUES (?1, ?2)",
            rusqlite::params![name, description],
        ) {
            Ok(_) => (
                StatusCode::CREATED,
                axum::Json(json!({"id": conn.last_insert_rowid(), "name": name})),
            )
                .into_response(),
            Err(err) => bad(format!("cannot create partition: {err}")),
        }
    })
    .await
}

fn text(request: &Map<String, Value>, key: &str) -> Option<String> {
    request.get(key).and_then(Value::as_str).map(String::from)
}

/// `{"name":"Webinar invitees","description":"..","programName":".."}` → a static list (marketers make
/// lists in the UI; the API only reads them and changes their members).
async fn add_list(State(state): State<AppRef>, body: Bytes) -> Response {
    let request = match parse_object(&body) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let Some(name) = text(&request, "name") else {
        return bad("'name' is required");
    };
    blocking(move || {
        let conn = state.store.lock();
        match crate::lists::create(
            &conn,
            &name,
            text(&request, "description").as_deref(),
            text(&request, "programName").as_deref(),
        ) {
            Ok(list) => (StatusCode::CREATED, axum::Json(list)).into_response(),
            Err(err) => bad(format!("cannot create list: {err}")),
        }
    })
    .await
}

/// `{"name":"Spring Webinar","type":"Event","channel":"Webinar","description":".."}` → a program.
async fn add_program(State(state): State<AppRef>, body: Bytes) -> Response {
    let request = match parse_object(&body) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let Some(name) = text(&request, "name") else {
        return bad("'name' is required");
    };
    blocking(move || {
        let conn = state.store.lock();
        match crate::programs::create_program(
            &conn,
            &name,
            text(&request, "type").as_deref().unwrap_or("Default"),
            text(&request, "channel")
                .as_deref()
                .unwrap_or("Online Advertising"),
            text(&request, "description").as_deref(),
        ) {
            Ok(program) => (StatusCode::CREATED, axum::Json(program)).into_response(),
            Err(err) => bad(format!("cannot create program: {err}")),
        }
    })
    .await
}

/// `{"name":"Nurture","type":"batch"|"trigger","programName":"..","active":true}` → a smart campaign.
async fn add_campaign(State(state): State<AppRef>, body: Bytes) -> Response {
    let request = match parse_object(&body) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let Some(name) = text(&request, "name") else {
        return bad("'name' is required");
    };
    let kind = text(&request, "type").unwrap_or_else(|| "batch".into());
    if kind != "batch" && kind != "trigger" {
        return bad("'type' must be 'batch' or 'trigger'");
    }
    let active = request
        .get("active")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    blocking(move || {
        let conn = state.store.lock();
        match crate::programs::create_campaign(
            &conn,
            &name,
            &kind,
            text(&request, "programName").as_deref(),
            active,
            text(&request, "description").as_deref(),
        ) {
            Ok(campaign) => (StatusCode::CREATED, axum::Json(campaign)).into_response(),
            Err(err) => bad(format!("cannot create campaign: {err}")),
        }
    })
    .await
}

async fn usage(State(state): State<AppRef>) -> Response {
    axum::Json(state.limits.snapshot()).into_response()
}
