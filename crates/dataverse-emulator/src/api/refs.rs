//! Paths below a record: single columns (`accounts(id)/name`), N:N navigation
//! (`systemusers(id)/systemuserroles_association`, `/$ref`), single-valued `$ref`.

use axum::http::{Method, StatusCode};
use serde_json::{Map, Value, json};

use super::crud::{entity_url, write_record};
use super::{Ctx, Reply, Req, json_body, query_pairs};
use crate::error::{ApiError, ApiResult};
use crate::path::{Key, Segment};
use crate::records::{self, WriteCtx, nav_column, resolve_reference};
use crate::schema::EntityDef;
use crate::security::{READ, WRITE};
use crate::store;

/// An N:N relationship: navigation name, entity on the `a` side, entity on the `b` side.
pub const RELATIONSHIPS: &[(&str, &str, &str)] = &[
    ("systemuserroles_association", "systemuser", "role"),
    ("teammembership_association", "systemuser", "team"),
    ("teamroles_association", "team", "role"),
];

/// The relationship and whether `entity` is on its `a` side.
pub fn relationship(entity: &str, nav: &str) -> Option<(&'static str, bool, &'static str)> {
    RELATIONSHIPS.iter().find_map(|(n, a, b)| {
        if *n != nav {
            None
        } else if *a == entity {
            Some((*n, true, *b))
        } else if *b == entity {
            Some((*n, false, *a))
        } else {
            None
        }
    })
}

pub fn handle(
    ctx: &mut Ctx<'_>,
    req: &Req,
    def: &EntityDef,
    key: &Key,
    rest: &[Segment],
) -> ApiResult<Reply> {
    let id = records::resolve_key(ctx.conn, def, Some(key))?
        .ok_or_else(|| records::not_found_for_key(def, Some(key)))?;
    let nav = &rest[0];
    if let Some((rel, a_side, other)) = relationship(&def.logical_name, &nav.name) {
        return many_to_many(ctx, req, def, &id, rel, a_side, other, nav, &rest[1..]);
    }
    if rest.len() == 2
        && rest[1].name == "$ref"
        && let Some(col) = nav_column(def, &nav.name)
    {
        return single_ref(ctx, req, def, &id, &col.logical_name.clone(), &nav.name);
    }
    if rest.len() == 1
        && nav.key.is_none()
        && let Some(col) = def
            .column_by_wire(&nav.name)
            .or_else(|| def.column(&nav.name))
    {
        return single_column(ctx, req, def, &id, &col.wire_name(), col.is_lookup());
    }
    Err(ApiError::segment_not_found(&nav.name))
}

fn single_column(
    ctx: &mut Ctx<'_>,
    req: &Req,
    def: &EntityDef,
    id: &str,
    wire: &str,
    lookup: bool,
) -> ApiResult<Reply> {
    match req.method {
        Method::GET => {
            ctx.caller.check_record(def, READ, id)?;
            let row = store::get(ctx.conn, def, id)?.unwrap_or_default();
            let v = row.get(wire).cloned().unwrap_or(Value::Null);
            if v.is_null() {
                return Ok(Reply::no_content());
            }
            Ok(Reply::json(
                StatusCode::OK,
                json!({"@odata.context": format!("{}$metadata#{}({})/{}", ctx.base, def.set_name, id, wire), "value": v}),
            ))
        }
        Method::PUT | Method::DELETE if !lookup => {
            ctx.caller.check_record(def, WRITE, id)?;
            let value = if req.method == Method::PUT {
                json_body(req)?.remove("value").unwrap_or(Value::Null)
            } else {
                Value::Null
            };
            let mut body = Map::new();
            body.insert(wire.to_string(), value);
            let existing = store::get(ctx.conn, def, id)?;
            store::savepoint(ctx.conn, || write_record(ctx, def, id, existing, &body))?;
            Ok(Reply::no_content())
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn single_ref(
    ctx: &mut Ctx<'_>,
    req: &Req,
    def: &EntityDef,
    id: &str,
    _col: &str,
    nav: &str,
) -> ApiResult<Reply> {
    ctx.caller.check_record(def, WRITE, id)?;
    let mut body = Map::new();
    match req.method {
        Method::PUT => {
            let target = json_body(req)?
                .get("@odata.id")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| ApiError::bad_request("The '@odata.id' property is required."))?;
            body.insert(format!("{nav}@odata.bind"), Value::String(target));
        }
        Method::DELETE => {
            body.insert(format!("{nav}@odata.bind"), Value::Null);
        }
        _ => return Err(ApiError::method_not_allowed()),
    }
    let existing = store::get(ctx.conn, def, id)?;
    store::savepoint(ctx.conn, || write_record(ctx, def, id, existing, &body))?;
    Ok(Reply::no_content())
}

#[allow(clippy::too_many_arguments)]
fn many_to_many(
    ctx: &mut Ctx<'_>,
    req: &Req,
    def: &EntityDef,
    id: &str,
    rel: &str,
    a_side: bool,
    other: &str,
    nav: &Segment,
    rest: &[Segment],
) -> ApiResult<Reply> {
    let other_def = ctx
        .schema
        .by_logical(other)
        .ok_or_else(|| ApiError::internal("relationship target missing"))?;
    let is_ref = rest.first().is_some_and(|s| s.name == "$ref");
    let pair = |x: &str| {
        if a_side {
            (id.to_string(), x.to_string())
        } else {
            (x.to_string(), id.to_string())
        }
    };
    match (&req.method, is_ref, &nav.key) {
        (&Method::GET, _, None) => {
            ctx.caller.check(def, READ)?;
            ctx.caller.check(&other_def, READ)?;
            let ids = if a_side {
                store::linked_b(ctx.conn, rel, id)?
            } else {
                store::linked_a(ctx.conn, rel, id)?
            };
            let select = super::crud::select_list(&other_def, &req.query)?;
            let mut value = Vec::new();
            for oid in ids {
                if let Some(row) = store::get(ctx.conn, &other_def, &oid)? {
                    if is_ref {
                        value.push(json!({"@odata.id": entity_url(ctx, &other_def, &oid)}));
                    } else {
                        value.push(Value::Object(records::project(
                            &other_def,
                            &row,
                            select.as_deref(),
                            &Default::default(),
                        )));
                    }
                }
            }
            let context = if is_ref {
                format!("{}$metadata#Collection($ref)", ctx.base)
            } else {
                format!("{}$metadata#{}", ctx.base, other_def.set_name)
            };
            Ok(Reply::json(
                StatusCode::OK,
                json!({"@odata.context": context, "value": value}),
            ))
        }
        (&Method::POST, true, None) => {
            check_assoc_rights(ctx, def, &other_def)?;
            let reference = json_body(req)?
                .get("@odata.id")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| ApiError::bad_request("The '@odata.id' property is required."))?;
            let wctx = WriteCtx {
                conn: ctx.conn,
                schema: &ctx.schema,
                caller: &ctx.caller,
                content_ids: &ctx.content_ids,
            };
            let (target_def, target) = resolve_reference(&wctx, &reference)?;
            if target_def.logical_name != other_def.logical_name {
                return Err(ApiError::bad_request(format!(
                    "The entity reference '{reference}' is not of type '{}'.",
                    other_def.type_name()
                )));
            }
            let (a, b) = pair(&target);
            if !store::associate(ctx.conn, rel, &a, &b)? {
                return Err(ApiError::new(
                    StatusCode::PRECONDITION_FAILED,
                    "0x80040237",
                    "Cannot insert duplicate key.",
                ));
            }
            Ok(Reply::no_content())
        }
        (&Method::DELETE, true, _) => {
            check_assoc_rights(ctx, def, &other_def)?;
            let target = match &nav.key {
                Some(Key::Guid(g)) => g.clone(),
                _ => {
                    let reference = query_pairs(&req.query)
                        .into_iter()
                        .find(|(k, _)| k == "$id")
                        .map(|(_, v)| v)
                        .ok_or_else(|| {
                            ApiError::bad_request(
                                "The $id query option is required to remove a link.",
                            )
                        })?;
                    let wctx = WriteCtx {
                        conn: ctx.conn,
                        schema: &ctx.schema,
                        caller: &ctx.caller,
                        content_ids: &ctx.content_ids,
                    };
                    resolve_reference(&wctx, &reference)?.1
                }
            };
            let (a, b) = pair(&target);
            store::disassociate(ctx.conn, rel, &a, &b)?;
            Ok(Reply::no_content())
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// Changing role or team membership needs security administration (System Administrator).
fn check_assoc_rights(ctx: &Ctx<'_>, def: &EntityDef, other: &EntityDef) -> ApiResult<()> {
    if def.logical_name == "role" || other.logical_name == "role" {
        return ctx.caller.check_admin("prvAssignRole");
    }
    ctx.caller.check(def, WRITE)?;
    ctx.caller.check(other, WRITE)
}
