//! Single-record create, retrieve, update/upsert and delete with ETags and conditional headers.

use axum::http::StatusCode;
use serde_json::{Map, Value};

use super::{Ctx, Reply, Req, header, json_body, parse_prefer, query_pairs};
use crate::error::{ApiError, ApiResult};
use crate::path::Key;
use crate::records::{self, WriteCtx, now_string};
use crate::schema::EntityDef;
use crate::security::{CREATE, DELETE, READ, WRITE};
use crate::store::{self, Row};

/// `$select` from the query string, validated against the table.
pub fn select_list(def: &EntityDef, query: &str) -> ApiResult<Option<Vec<String>>> {
    for (k, v) in query_pairs(query) {
        if k == "$select" {
            let cols = mdsync_odata::parse_select(&v)?;
            if cols.iter().any(|c| c == "*") {
                return Ok(None);
            }
            for c in &cols {
                if def.column_by_wire(c).is_none() && def.column(c).is_none() {
                    return Err(
                        mdsync_odata::ODataError::property_not_found(c, &def.logical_name).into(),
                    );
                }
            }
            return Ok(Some(cols));
        }
    }
    Ok(None)
}

impl From<mdsync_odata::ODataError> for ApiError {
    fn from(e: mdsync_odata::ODataError) -> Self {
        ApiError::new(
            StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
            &e.code,
            e.message,
        )
    }
}

/// `<base>$metadata#set(cols)/$entity`
pub fn entity_context(ctx: &Ctx<'_>, def: &EntityDef, select: Option<&[String]>) -> String {
    match select {
        Some(cols) => format!(
            "{}$metadata#{}({})/$entity",
            ctx.base,
            def.set_name,
            cols.join(",")
        ),
        None => format!("{}$metadata#{}/$entity", ctx.base, def.set_name),
    }
}

/// The record's URL, e.g. `<base>accounts(<id>)`.
pub fn entity_url(ctx: &Ctx<'_>, def: &EntityDef, id: &str) -> String {
    format!("{}{}({})", ctx.base, def.set_name, id)
}

fn etag(row: &Row) -> String {
    format!(
        "W/\"{}\"",
        row.get("versionnumber")
            .and_then(Value::as_i64)
            .unwrap_or(0)
    )
}

fn resolve_existing(ctx: &Ctx<'_>, def: &EntityDef, key: &Key) -> ApiResult<Option<(String, Row)>> {
    let id = match key {
        Key::Guid(g) => g.clone(),
        Key::Named(pairs) => {
            let pairs = records::normalize_alternate_key(def, pairs)?;
            match store::find_by_key(ctx.conn, def, &pairs)? {
                Some(id) => id,
                None => return Ok(None),
            }
        }
        _ => {
            return Err(ApiError::bad_request(
                "The key is not valid for this entity.",
            ));
        }
    };
    Ok(store::get(ctx.conn, def, &id)?.map(|r| (id, r)))
}

pub fn retrieve(ctx: &mut Ctx<'_>, req: &Req, def: &EntityDef, key: &Key) -> ApiResult<Reply> {
    let select = select_list(def, &req.query)?;
    let expand = match query_pairs(&req.query)
        .into_iter()
        .find(|(k, _)| k == "$expand")
    {
        Some((_, v)) => super::expand::parse(def, &v)?,
        None => Vec::new(),
    };
    let prefer = parse_prefer(&req.headers);
    let Some((id, row)) = resolve_existing(ctx, def, key)? else {
        return Err(records::not_found_for_key(def, Some(key)));
    };
    ctx.caller.check_record(def, READ, &id)?;
    let tag = etag(&row);
    if let Some(inm) = header(req, "if-none-match")
        && inm.trim() == tag
        && prefer.annotations.is_empty()
        && expand.is_empty()
    {
        return Ok(Reply {
            status: StatusCode::NOT_MODIFIED,
            headers: vec![("ETag".into(), tag)],
            body: super::Body::Empty,
        });
    }
    let mut out = Map::new();
    out.insert(
        "@odata.context".into(),
        Value::String(entity_context(ctx, def, select.as_deref())),
    );
    out.extend(records::project_full(
        ctx.conn,
        &ctx.schema,
        def,
        &row,
        select.as_deref(),
        &prefer.annotations(),
    ));
    super::expand::apply(ctx, def, &row, &mut out, &expand)?;
    let mut reply = Reply::json(StatusCode::OK, Value::Object(out)).header("ETag", tag);
    if let Some(a) = prefer.applied_annotations() {
        reply = reply.header("Preference-Applied", a);
    }
    Ok(reply)
}

/// Validates and writes one record; returns the stored row. `existing` = update.
pub fn write_record(
    ctx: &Ctx<'_>,
    def: &EntityDef,
    id: &str,
    existing: Option<Row>,
    body: &Map<String, Value>,
) -> ApiResult<Row> {
    let creating = existing.is_none();
    let mut row = existing.unwrap_or_default();
    let wctx = WriteCtx {
        conn: ctx.conn,
        schema: &ctx.schema,
        caller: &ctx.caller,
        content_ids: &ctx.content_ids,
    };
    records::apply_body(&wctx, def, &mut row, body, creating)?;
    row.insert(def.primary_key.clone(), Value::String(id.to_string()));
    records::compute_fullname(def, &mut row);
    records::fix_state(def, &mut row, body, id)?;
    if creating {
        special_create(ctx, def, &mut row)?;
        records::check_required(def, &row)?;
    }
    records::check_unique_keys(ctx.conn, def, id, &row)?;
    let version = ctx.next_version()?;
    records::stamp(def, &mut row, &ctx.caller, version, &now_string(), creating);
    store::put(ctx.conn, def, id, &row)?;
    Ok(row)
}

/// Platform behaviour on create for system tables (application users).
fn special_create(ctx: &Ctx<'_>, def: &EntityDef, row: &mut Row) -> ApiResult<()> {
    if def.logical_name == "usersettings" {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "0x80040203",
            "User settings are created with the user; update them instead.",
        ));
    }
    if def.logical_name != "systemuser" {
        return Ok(());
    }
    row.entry("isdisabled").or_insert(Value::Bool(false));
    if row.get("_businessunitid_value").is_none_or(Value::is_null) {
        row.insert(
            "_businessunitid_value".into(),
            Value::String(ctx.shared.ids.root_business_unit_id.clone()),
        );
        row.insert(
            "_businessunitid_value@Microsoft.Dynamics.CRM.lookuplogicalname".into(),
            Value::String("businessunit".into()),
        );
    }
    if let Some(appid) = row
        .get("applicationid")
        .and_then(Value::as_str)
        .map(str::to_string)
    {
        if crate::auth::systemuser_for(ctx.conn, &serde_json::json!({"appid": appid}))?.is_some() {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "0x8004f511",
                format!(
                    "You are attempting to create an Application ID = {appid} that already exists."
                ),
            ));
        }
        let app = crate::auth::find_app(ctx.conn, &appid)?;
        let name = app
            .as_ref()
            .map(|a| a.name.clone())
            .unwrap_or_else(|| appid.clone());
        let oid = app
            .map(|a| a.object_id)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        row.insert("firstname".into(), Value::String("#".into()));
        row.insert("lastname".into(), Value::String(name.clone()));
        row.insert("fullname".into(), Value::String(format!("# {name}")));
        let upn = format!("{appid}@mdsync.onmicrosoft.com");
        row.insert("domainname".into(), Value::String(upn.clone()));
        row.insert("internalemailaddress".into(), Value::String(upn));
        row.insert("azureactivedirectoryobjectid".into(), Value::String(oid));
        row.insert("accessmode".into(), Value::from(4));
        row.insert("islicensed".into(), Value::Bool(false));
    } else {
        row.entry("accessmode").or_insert(Value::from(0));
        row.entry("azureactivedirectoryobjectid")
            .or_insert_with(|| Value::String(uuid::Uuid::new_v4().to_string()));
    }
    Ok(())
}

/// After creating a user, give them language settings like the platform does.
fn after_create(ctx: &Ctx<'_>, def: &EntityDef, id: &str) -> ApiResult<()> {
    if def.logical_name == "systemuser" {
        crate::org::insert_raw(
            ctx.conn,
            &ctx.schema,
            "usersettings",
            id,
            serde_json::json!({"uilanguageid": 1033, "helplanguageid": 1033, "localeid": 1033, "timezonecode": 85}),
            &ctx.caller,
        )?;
    }
    Ok(())
}

fn created_reply(
    ctx: &Ctx<'_>,
    req: &Req,
    def: &EntityDef,
    id: &str,
    row: &Row,
    status_created: StatusCode,
) -> ApiResult<Reply> {
    let prefer = parse_prefer(&req.headers);
    let url = entity_url(ctx, def, id);
    if prefer.return_representation {
        let select = select_list(def, &req.query)?;
        let mut out = Map::new();
        out.insert(
            "@odata.context".into(),
            Value::String(entity_context(ctx, def, select.as_deref())),
        );
        out.extend(records::project_full(
            ctx.conn,
            &ctx.schema,
            def,
            row,
            select.as_deref(),
            &prefer.annotations(),
        ));
        return Ok(Reply::json(status_created, Value::Object(out))
            .header("Preference-Applied", "return=representation")
            .header("ETag", etag(row)));
    }
    Ok(Reply::no_content().header("OData-EntityId", url))
}

pub fn create(ctx: &mut Ctx<'_>, req: &Req, def: &EntityDef) -> ApiResult<Reply> {
    ctx.caller.check(def, CREATE)?;
    let body = json_body(req)?;
    let select = select_list(def, &req.query)?;
    let _ = select;
    let id = match body.get(&def.primary_key) {
        Some(Value::String(s)) => uuid::Uuid::parse_str(s.trim_matches(|c| c == '{' || c == '}'))
            .map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "0x0",
                    format!("Cannot convert the literal '{s}' to the expected type 'Edm.Guid'."),
                )
            })?
            .to_string(),
        _ => uuid::Uuid::new_v4().to_string(),
    };
    if store::get(ctx.conn, def, &id)?.is_some() {
        return Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "0x80040237",
            "Cannot insert duplicate key.",
        ));
    }
    let row = store::savepoint(ctx.conn, || {
        let row = write_record(ctx, def, &id, None, &body)?;
        after_create(ctx, def, &id)?;
        Ok::<_, ApiError>(row)
    })?;
    created_reply(ctx, req, def, &id, &row, StatusCode::CREATED)
}

/// PATCH: update, or create when the key matches nothing (upsert), honouring If-Match/If-None-Match.
pub fn upsert(ctx: &mut Ctx<'_>, req: &Req, def: &EntityDef, key: &Key) -> ApiResult<Reply> {
    let body = json_body(req)?;
    let existing = resolve_existing(ctx, def, key)?;
    let if_match = header(req, "if-match").map(str::trim).map(str::to_string);
    let if_none_match = header(req, "if-none-match")
        .map(str::trim)
        .map(str::to_string);
    match (&existing, if_match.as_deref()) {
        (None, Some(_)) => return Err(records::not_found_for_key(def, Some(key))),
        (Some((_, row)), Some(tag)) if tag != "*" && tag != etag(row) => {
            return Err(concurrency_mismatch());
        }
        _ => {}
    }
    if existing.is_some() && if_none_match.as_deref() == Some("*") {
        return Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "0x80040237",
            "A record with matching key values already exists.",
        ));
    }
    match existing {
        Some((id, row)) => {
            ctx.caller.check_record(def, WRITE, &id)?;
            let row = store::savepoint(ctx.conn, || write_record(ctx, def, &id, Some(row), &body))?;
            let prefer = parse_prefer(&req.headers);
            if prefer.return_representation {
                let select = select_list(def, &req.query)?;
                let mut out = Map::new();
                out.insert(
                    "@odata.context".into(),
                    Value::String(entity_context(ctx, def, select.as_deref())),
                );
                out.extend(records::project_full(
                    ctx.conn,
                    &ctx.schema,
                    def,
                    &row,
                    select.as_deref(),
                    &prefer.annotations(),
                ));
                return Ok(Reply::json(StatusCode::OK, Value::Object(out))
                    .header("Preference-Applied", "return=representation")
                    .header("ETag", etag(&row)));
            }
            Ok(Reply::no_content().header("OData-EntityId", entity_url(ctx, def, &id)))
        }
        None => {
            ctx.caller.check(def, CREATE)?;
            let mut body = body;
            let id = match key {
                Key::Guid(g) => g.clone(),
                Key::Named(pairs) => {
                    for (k, v) in pairs {
                        body.insert(k.clone(), v.clone());
                    }
                    uuid::Uuid::new_v4().to_string()
                }
                _ => {
                    return Err(ApiError::bad_request(
                        "The key is not valid for this entity.",
                    ));
                }
            };
            let row = store::savepoint(ctx.conn, || {
                let row = write_record(ctx, def, &id, None, &body)?;
                after_create(ctx, def, &id)?;
                Ok::<_, ApiError>(row)
            })?;
            created_reply(ctx, req, def, &id, &row, StatusCode::CREATED)
        }
    }
}

pub fn concurrency_mismatch() -> ApiError {
    ApiError::new(
        StatusCode::PRECONDITION_FAILED,
        "0x80060882",
        "The version of the existing record doesn't match the RowVersion property provided.",
    )
}

pub fn delete(ctx: &mut Ctx<'_>, req: &Req, def: &EntityDef, key: &Key) -> ApiResult<Reply> {
    let Some((id, row)) = resolve_existing(ctx, def, key)? else {
        return Err(records::not_found_for_key(def, Some(key)));
    };
    ctx.caller.check(def, DELETE)?;
    if let Some(tag) = header(req, "if-match").map(str::trim)
        && tag != "*"
        && tag != etag(&row)
    {
        return Err(concurrency_mismatch());
    }
    store::savepoint(ctx.conn, || {
        store::delete(ctx.conn, def, &id)?;
        Ok::<_, ApiError>(())
    })?;
    Ok(Reply::no_content())
}
