//! `CreateMultiple`, `UpdateMultiple`, `UpsertMultiple`: one transaction per request, all or nothing.

use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use super::crud::write_record;
use super::{Ctx, Reply, Req, json_body};
use crate::error::{ApiError, ApiResult};
use crate::path::{Key, parse_segment, strip_base};
use crate::records;
use crate::schema::EntityDef;
use crate::security::{CREATE, WRITE};
use crate::store;

pub fn handle(ctx: &mut Ctx<'_>, req: &Req, def: &EntityDef, action: &str) -> ApiResult<Reply> {
    let op = action.trim_start_matches("Microsoft.Dynamics.CRM.");
    if !matches!(op, "CreateMultiple" | "UpdateMultiple" | "UpsertMultiple") {
        return Err(ApiError::segment_not_found(action));
    }
    if req.method != axum::http::Method::POST {
        return Err(ApiError::method_not_allowed());
    }
    let mut body = json_body(req)?;
    let Some(Value::Array(targets)) = body.remove("Targets") else {
        return Err(ApiError::bad_request(format!(
            "The '{op}' request requires the 'Targets' parameter."
        )));
    };
    match op {
        "CreateMultiple" => ctx.caller.check(def, CREATE)?,
        "UpdateMultiple" => ctx.caller.check(def, WRITE)?,
        _ => {
            ctx.caller.check(def, CREATE)?;
            ctx.caller.check(def, WRITE)?;
        }
    }
    let expected_type = def.type_name();
    let ids = store::savepoint(ctx.conn, || {
        let first = store::reserve_versions(ctx.conn, targets.len().max(1) as i64)?;
        ctx.versions.set((first, first + targets.len() as i64));
        let mut ids = Vec::with_capacity(targets.len());
        for (i, t) in targets.into_iter().enumerate() {
            let Value::Object(mut t) = t else {
                return Err(ApiError::bad_request(format!(
                    "Target {i} is not an entity."
                )));
            };
            match t.get("@odata.type").and_then(Value::as_str) {
                Some(ty) if ty.trim_start_matches('#') == expected_type => {}
                Some(ty) => {
                    return Err(ApiError::bad_request(format!(
                        "The entity type '{ty}' of target {i} does not match the entity set type '{expected_type}'."
                    )));
                }
                None => {
                    return Err(ApiError::bad_request(
                        "The '@odata.type' annotation is required for each item in Targets.",
                    ));
                }
            }
            let key_ref = t
                .remove("@odata.id")
                .and_then(|v| v.as_str().map(str::to_string));
            let id = target_id(ctx, def, &mut t, key_ref.as_deref())?;
            ids.push(write_one(ctx, def, op, id, &t)?);
        }
        ctx.versions.set((0, 0));
        Ok(ids)
    })
    .inspect_err(|_| ctx.versions.set((0, 0)))?;
    if op == "CreateMultiple" {
        return Ok(Reply::json(
            StatusCode::OK,
            json!({
                "@odata.context": format!("{}$metadata#Microsoft.Dynamics.CRM.CreateMultipleResponse", ctx.base),
                "Ids": ids,
            }),
        ));
    }
    Ok(Reply::no_content())
}

/// The target's id: its primary key, or an `@odata.id` alternate-key reference (None = new).
fn target_id(
    ctx: &Ctx<'_>,
    def: &EntityDef,
    t: &mut Map<String, Value>,
    key_ref: Option<&str>,
) -> ApiResult<Option<String>> {
    if let Some(r) = key_ref {
        let seg = parse_segment(strip_base(r))
            .ok_or_else(|| ApiError::bad_request(format!("Invalid @odata.id '{r}'.")))?;
        return match seg.key {
            Some(Key::Guid(g)) => Ok(Some(g)),
            Some(Key::Named(pairs)) => {
                let pairs = records::normalize_alternate_key(def, &pairs)?;
                match store::find_by_key(ctx.conn, def, &pairs)? {
                    Some(id) => Ok(Some(id)),
                    None => {
                        for (k, v) in pairs {
                            t.insert(k, v);
                        }
                        Ok(None)
                    }
                }
            }
            _ => Err(ApiError::bad_request(format!("Invalid @odata.id '{r}'."))),
        };
    }
    match t.get(&def.primary_key) {
        Some(Value::String(s)) => Ok(Some(
            uuid::Uuid::parse_str(s.trim_matches(|c| c == '{' || c == '}'))
                .map_err(|_| {
                    ApiError::bad_request(format!(
                        "Cannot convert the literal '{s}' to the expected type 'Edm.Guid'."
                    ))
                })?
                .to_string(),
        )),
        _ => Ok(None),
    }
}

fn write_one(
    ctx: &Ctx<'_>,
    def: &EntityDef,
    op: &str,
    id: Option<String>,
    t: &Map<String, Value>,
) -> ApiResult<String> {
    let existing = match &id {
        Some(id) => store::get(ctx.conn, def, id)?,
        None => None,
    };
    match (op, existing) {
        ("CreateMultiple", Some(_)) => Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "0x80040237",
            "Cannot insert duplicate key.",
        )),
        ("UpdateMultiple", None) => match id {
            Some(id) => Err(ApiError::record_not_found(&def.logical_name, &id)),
            None => Err(ApiError::bad_request(format!(
                "The primary key '{}' is required for UpdateMultiple.",
                def.primary_key
            ))),
        },
        (_, existing) => {
            let id = id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            write_record(ctx, def, &id, existing, t)?;
            Ok(id)
        }
    }
}
