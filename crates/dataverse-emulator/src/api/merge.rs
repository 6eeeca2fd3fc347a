//! The unbound action `Merge` for accounts, contacts and leads.
//!
//! Like the platform: the `UpdateContent` columns are written to the target; the subordinate is
//! kept (never deleted) with `merged = true`, `masterid` = the target and an inactive state
//! (accounts/contacts: Inactive; leads: Disqualified/Canceled); child records that point at the
//! subordinate (contacts' parent customer, opportunities' customer/parents, leads' parents) are
//! re-parented to the target. Every row touched gets a new version, so change tracking reports
//! the target, the subordinate and the re-parented rows as updates.
//! The service does not copy other subordinate columns by itself: clients (the merge dialog)
//! send what should move in `UpdateContent`.

use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use super::{Ctx, Reply, Req, json_body};
use crate::error::{ApiError, ApiResult};
use crate::records::{self, now_string};
use crate::schema::EntityDef;
use crate::security::{READ, WRITE};
use crate::store;

/// Tables `Merge` accepts.
const MERGEABLE: &[&str] = &["account", "contact", "lead"];

/// (table, lookup wire name) pairs re-parented from the subordinate to the target, per merged table.
fn children(entity: &str) -> &'static [(&'static str, &'static str)] {
    match entity {
        "account" => &[
            ("contact", "_parentcustomerid_value"),
            ("account", "_parentaccountid_value"),
            ("opportunity", "_customerid_value"),
            ("opportunity", "_parentaccountid_value"),
            ("lead", "_parentaccountid_value"),
        ],
        "contact" => &[
            ("contact", "_parentcustomerid_value"),
            ("opportunity", "_customerid_value"),
            ("opportunity", "_parentcontactid_value"),
            ("lead", "_parentcontactid_value"),
            ("account", "_primarycontactid_value"),
        ],
        _ => &[],
    }
}

/// Rows re-parented per statement (keeps memory bounded by the batch, not the child count).
const REPARENT_BATCH: usize = 500;

/// Reads `{"@odata.type":"Microsoft.Dynamics.CRM.contact","contactid":"…"}`.
fn reference(
    ctx: &Ctx<'_>,
    body: &Map<String, Value>,
    param: &str,
) -> ApiResult<(std::sync::Arc<EntityDef>, String)> {
    let obj = match body.get(param) {
        Some(Value::Object(o)) => o,
        Some(_) => {
            return Err(ApiError::bad_request(format!(
                "The parameter '{param}' must be an entity object."
            )));
        }
        None => {
            return Err(ApiError::bad_request(format!(
                "Missing parameter '{param}' for action 'Microsoft.Dynamics.CRM.Merge'."
            )));
        }
    };
    let ty = obj
        .get("@odata.type")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "The parameter '{param}' needs an '@odata.type' annotation: its type is crmbaseentity."
            ))
        })?;
    let logical = ty
        .trim_start_matches('#')
        .trim_start_matches("Microsoft.Dynamics.CRM.");
    let def = ctx.schema.by_logical(logical).ok_or_else(|| {
        ApiError::bad_request(format!(
            "A type named '{ty}' could not be resolved by the model."
        ))
    })?;
    let id = obj
        .get(&def.primary_key)
        .and_then(Value::as_str)
        .map(|s| s.trim_matches(|c| c == '{' || c == '}'))
        .and_then(|s| uuid::Uuid::parse_str(s).ok())
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "The parameter '{param}' must carry a valid '{}'.",
                def.primary_key
            ))
        })?
        .to_string();
    Ok((def, id))
}

fn parent_of(def: &EntityDef, row: &store::Row) -> Option<Value> {
    let wire = match def.logical_name.as_str() {
        "contact" => "_parentcustomerid_value",
        _ => "_parentaccountid_value",
    };
    row.get(wire).filter(|v| !v.is_null()).cloned()
}

/// `POST Merge`.
pub fn merge(ctx: &mut Ctx<'_>, req: &Req) -> ApiResult<Reply> {
    let body = json_body(req)?;
    let (def, target_id) = reference(ctx, &body, "Target")?;
    let (sub_def, sub_id) = reference(ctx, &body, "Subordinate")?;
    if !MERGEABLE.contains(&def.logical_name.as_str()) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "0x80040203",
            format!("Merge is not supported for entity '{}'.", def.logical_name),
        ));
    }
    if sub_def.logical_name != def.logical_name {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "0x80040203",
            "The target and the subordinate must be records of the same table.",
        ));
    }
    if target_id == sub_id {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "0x80040203",
            "The target and the subordinate cannot be the same record.",
        ));
    }
    let parenting_checks = match body.get("PerformParentingChecks") {
        Some(Value::Bool(b)) => *b,
        None | Some(Value::Null) => false,
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "Cannot convert the literal '{v}' to the expected type 'Edm.Boolean'."
            )));
        }
    };
    let update = match body.get("UpdateContent") {
        Some(Value::Object(o)) => o.clone(),
        None | Some(Value::Null) => Map::new(),
        Some(_) => {
            return Err(ApiError::bad_request(
                "The parameter 'UpdateContent' must be an entity object.",
            ));
        }
    };
    // The caller needs rights on both records.
    ctx.caller.check(&def, READ)?;
    ctx.caller.check(&def, WRITE)?;
    let target = store::get(ctx.conn, &def, &target_id)?
        .ok_or_else(|| ApiError::record_not_found(&def.logical_name, &target_id))?;
    let sub = store::get(ctx.conn, &def, &sub_id)?
        .ok_or_else(|| ApiError::record_not_found(&def.logical_name, &sub_id))?;
    for (row, which) in [(&target, "target"), (&sub, "subordinate")] {
        if row.get("merged").and_then(Value::as_bool).unwrap_or(false) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "0x80040203",
                format!("The {which} record has already been merged into another record."),
            ));
        }
    }
    if parenting_checks && parent_of(&def, &target) != parent_of(&def, &sub) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "0x80040203",
            "The parent of the subordinate record differs from the parent of the target record.",
        ));
    }
    store::savepoint(ctx.conn, || {
        // Target: the UpdateContent columns (with the usual validation).
        let mut content = update.clone();
        content.remove(&def.primary_key);
        super::crud::write_record(ctx, &def, &target_id, Some(target.clone()), &content)?;
        // Subordinate: merged, pointing at the master, deactivated.
        let mut row = sub.clone();
        row.insert("merged".into(), Value::Bool(true));
        row.insert("_masterid_value".into(), json!(target_id));
        row.insert(
            "_masterid_value@Microsoft.Dynamics.CRM.lookuplogicalname".into(),
            json!(def.logical_name),
        );
        let (state, status) = if def.logical_name == "lead" {
            (2, 7)
        } else {
            (1, 2)
        };
        row.insert("statecode".into(), json!(state));
        row.insert("statuscode".into(), json!(status));
        let version = ctx.next_version()?;
        records::stamp(&def, &mut row, &ctx.caller, version, &now_string(), false);
        store::put(ctx.conn, &def, &sub_id, &row)?;
        reparent(ctx, &def, &sub_id, &target_id)?;
        Ok::<_, ApiError>(())
    })?;
    Ok(Reply::no_content())
}

/// Points the subordinate's child records at the target, a batch at a time.
fn reparent(ctx: &Ctx<'_>, def: &EntityDef, from: &str, to: &str) -> ApiResult<()> {
    for (table, wire) in children(&def.logical_name) {
        let Some(child_def) = ctx.schema.by_logical(table) else {
            continue;
        };
        loop {
            let rows = store::referencing(ctx.conn, &child_def, wire, from, REPARENT_BATCH)?;
            if rows.is_empty() {
                break;
            }
            for mut row in rows {
                let Some(id) = row
                    .get(&child_def.primary_key)
                    .and_then(Value::as_str)
                    .map(str::to_string)
                else {
                    return Err(ApiError::internal("stored row without its primary key"));
                };
                row.insert((*wire).to_string(), json!(to));
                let version = ctx.next_version()?;
                records::stamp(
                    &child_def,
                    &mut row,
                    &ctx.caller,
                    version,
                    &now_string(),
                    false,
                );
                store::put(ctx.conn, &child_def, &id, &row)?;
            }
        }
    }
    Ok(())
}
