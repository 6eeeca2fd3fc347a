//! The shared part of the `/_emulator/` test surface: faults and counters.
//!
//! - `GET /_emulator/faults` → `{"faults":[Fault...]}` (with remaining counts)
//! - `POST /_emulator/faults` with one [`Fault`] object → 201 `{"id":n,"fault":{...}}`
//! - `DELETE /_emulator/faults` → `{"cleared":n}`; `DELETE /_emulator/faults/{id}` → 204 or 404
//! - `GET /_emulator/counters` → `{"total":n,"counters":{"GET /route":n,...}}` (`total` excludes `/_emulator/`)
//! - `DELETE /_emulator/counters` → 204
//!
//! Bad requests answer `{"error":{"code":"BadRequest","message":"..."}}` with status 400.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use serde_json::json;

use crate::counters::RequestCounters;
use crate::faults::{Fault, FaultRegistry};

#[derive(Clone)]
struct AdminState {
    faults: FaultRegistry,
    counters: RequestCounters,
}

/// GET/POST/DELETE /_emulator/faults, GET/DELETE /_emulator/counters. Emulators merge this into their router
/// and add their own /_emulator/reset, /_emulator/seed, etc.
pub fn admin_routes(faults: FaultRegistry, counters: RequestCounters) -> Router {
    Router::new()
        .route(
            "/_emulator/faults",
            get(list_faults).post(add_fault).delete(clear_faults),
        )
        .route("/_emulator/faults/{id}", delete(remove_fault))
        .route(
            "/_emulator/counters",
            get(read_counters).delete(reset_counters),
        )
        .with_state(AdminState { faults, counters })
}

/// The kit's JSON error for bad test-surface requests (emulators may reuse it for their own admin routes).
pub fn admin_error(status: StatusCode, message: impl Into<String>) -> Response {
    let code = match status {
        StatusCode::NOT_FOUND => "NotFound",
        _ => "BadRequest",
    };
    (
        status,
        axum::Json(json!({"error": {"code": code, "message": message.into()}})),
    )
        .into_response()
}

async fn list_faults(State(state): State<AdminState>) -> Response {
    axum::Json(json!({ "faults": state.faults.list() })).into_response()
}

async fn add_fault(State(state): State<AdminState>, body: Bytes) -> Response {
    let fault = match parse_fault(&body) {
        Ok(fault) => fault,
        Err(problem) => return admin_error(StatusCode::BAD_REQUEST, problem),
    };
    if let Err(problem) = fault.validate() {
        return admin_error(StatusCode::BAD_REQUEST, format!("invalid fault: {problem}"));
    }
    let id = state.faults.add(fault.clone());
    let fault = Fault {
        id: Some(id),
        ..fault
    };
    (
        StatusCode::CREATED,
        axum::Json(json!({"id": id, "fault": fault})),
    )
        .into_response()
}

/// Parses a fault, naming the offending field when one has the wrong type.
fn parse_fault(body: &[u8]) -> Result<Fault, String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|err| format!("invalid fault JSON: {err}"))?;
    let Some(object) = value.as_object() else {
        return Err("invalid fault JSON: expected a JSON object".into());
    };
    serde_json::from_value::<Fault>(value.clone()).map_err(|err| {
        let field = object.iter().find_map(|(key, field_value)| {
            let single = serde_json::json!({ key: field_value });
            serde_json::from_value::<Fault>(single)
                .err()
                .map(|e| (key, e))
        });
        match field {
            Some((key, e)) => format!("invalid fault JSON: field `{key}`: {e}"),
            None => format!("invalid fault JSON: {err}"),
        }
    })
}

async fn clear_faults(State(state): State<AdminState>) -> Response {
    let cleared = state.faults.list().len();
    state.faults.clear();
    axum::Json(json!({ "cleared": cleared })).into_response()
}

async fn remove_fault(State(state): State<AdminState>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<u64>() else {
        return admin_error(
            StatusCode::BAD_REQUEST,
            format!("fault id {id:?} is not a number"),
        );
    };
    if state.faults.remove(id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        admin_error(StatusCode::NOT_FOUND, format!("no fault with id {id}"))
    }
}

async fn read_counters(State(state): State<AdminState>) -> Response {
    axum::Json(json!({
        "total": state.counters.total(),
        "counters": state.counters.snapshot(),
    }))
    .into_response()
}

async fn reset_counters(State(state): State<AdminState>) -> Response {
    state.counters.reset();
    StatusCode::NO_CONTENT.into_response()
}
