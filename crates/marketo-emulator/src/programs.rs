//! Programs (Asset API, `GET /rest/asset/v1/programs.json`) and smart campaigns (`GET
//! /rest/v1/campaigns.json`): read-only for API users, made by marketers through the test surface. Enough
//! for tap-marketo's `programs`/`campaigns` streams and for Push Lead's `programName`.

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Map, Value, json};

use crate::envelope::{ApiError, ApiResult, Reply};
use crate::paging;
use crate::routes::{AppState, Ctx};
use crate::store::StoreError;

/// The Asset API's "empty search" warning (success stays true, no `result`).
pub const NO_ASSETS: &str = "No assets found for the given search criteria.";
/// Asset API page size: default 20, at most 200.
const DEFAULT_MAX_RETURN: i64 = 20;
const MAX_RETURN: i64 = 200;

/// Asset API timestamps look like `2017-07-27T01:38:33Z+0000`.
fn asset_time(secs: i64) -> String {
    format!("{}+0000", crate::time::format(secs))
}

const PROGRAM_SELECT: &str = "SELECT id, name, description, type, channel, status, workspace, created_at, updated_at FROM programs";

fn render_program(r: &rusqlite::Row<'_>) -> rusqlite::Result<Value> {
    let id: i64 = r.get(0)?;
    Ok(json!({
        "id": id,
        "name": r.get::<_, String>(1)?,
        "description": r.get::<_, Option<String>>(2)?.unwrap_or_default(),
        "createdAt": asset_time(r.get(7)?),
        "updatedAt": asset_time(r.get(8)?),
        "url": format!("https://app-emulator.marketo.com/#PG{id}A1"),
        "type": r.get::<_, String>(3)?,
        "channel": r.get::<_, String>(4)?,
        "folder": {"type": "Folder", "value": 1, "folderName": "Marketing Activities"},
        "status": r.get::<_, String>(5)?,
        "workspace": r.get::<_, String>(6)?,
        "tags": [],
        "costs": null,
    }))
}

/// Creates a program (test surface).
pub fn create_program(
    conn: &Connection,
    name: &str,
    kind: &str,
    channel: &str,
    description: Option<&str>,
) -> Result<Value, StoreError> {
    let now = crate::time::now();
    conn.execute(
        "INSERT INTO programs(name, description, type, channel, status, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, '', ?5, ?5)",
        params![name, description, kind, channel, now],
    )?;
    let id = conn.last_insert_rowid();
    Ok(conn.query_row(
        &format!("{PROGRAM_SELECT} WHERE id = ?1"),
        [id],
        render_program,
    )?)
}

/// The id of the program called `name`.
pub fn program_id(conn: &Connection, name: &str) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT id FROM programs WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()?)
}

fn int_param(ctx: &Ctx, name: &str) -> Result<Option<i64>, ApiError> {
    ctx.params
        .get(name)
        .map(|t| {
            t.trim()
                .parse::<i64>()
                .map_err(|_| ApiError::invalid_value(&t, "integer"))
        })
        .transpose()
}

fn time_param(ctx: &Ctx, name: &str) -> Result<Option<i64>, ApiError> {
    ctx.params
        .get(name)
        .map(|t| crate::time::parse(&t).ok_or_else(|| ApiError::new("704", "Invalid date format")))
        .transpose()
}

/// `GET /rest/asset/v1/programs.json?maxReturn=&offset=&earliestUpdatedAt=&latestUpdatedAt=`: offset
/// paging; past the end, the "No assets found" warning that tap-marketo stops on.
pub fn programs(state: &AppState, ctx: &Ctx) -> ApiResult {
    let max = int_param(ctx, "maxReturn")?.unwrap_or(DEFAULT_MAX_RETURN);
    if !(1..=MAX_RETURN).contains(&max) {
        return Err(ApiError::invalid_data(format!(
            "maxReturn must be between 1 and {MAX_RETURN}"
        )));
    }
    let offset = int_param(ctx, "offset")?.unwrap_or(0).max(0);
    let earliest = time_param(ctx, "earliestUpdatedAt")?.unwrap_or(i64::MIN);
    let latest = time_param(ctx, "latestUpdatedAt")?.unwrap_or(i64::MAX);
    let conn = state.store.lock();
    let mut stmt = conn.prepare_cached(&format!(
        "{PROGRAM_SELECT} WHERE updated_at >= ?1 AND updated_at <= ?2 ORDER BY id LIMIT ?3 OFFSET ?4"
    ))?;
    let rows = stmt
        .query_map(params![earliest, latest, max, offset], render_program)?
        .collect::<Result<Vec<_>, _>>()?;
    asset_reply(rows)
}

/// The Asset API envelope: `errors:[]` and `warnings:[]` always; no `result` when nothing matched.
fn asset_reply(rows: Vec<Value>) -> ApiResult {
    if rows.is_empty() {
        let mut m = Map::new();
        m.insert("errors".into(), json!([]));
        m.insert("warnings".into(), json!([NO_ASSETS]));
        return Ok(Reply::Envelope(m));
    }
    Ok(Reply::result(rows)
        .with("errors", json!([]))
        .with("warnings", json!([])))
}

const CAMPAIGN_SELECT: &str = "SELECT id, name, description, type, program_id, program_name, workspace_name, active, created_at, updated_at FROM campaigns";

fn render_campaign(r: &rusqlite::Row<'_>) -> rusqlite::Result<Value> {
    let mut m = Map::new();
    m.insert("id".into(), json!(r.get::<_, i64>(0)?));
    m.insert("name".into(), json!(r.get::<_, String>(1)?));
    if let Some(d) = r.get::<_, Option<String>>(2)? {
        m.insert("description".into(), json!(d));
    }
    m.insert("type".into(), json!(r.get::<_, String>(3)?));
    if let Some(p) = r.get::<_, Option<i64>>(4)? {
        m.insert("programId".into(), json!(p));
    }
    if let Some(p) = r.get::<_, Option<String>>(5)? {
        m.insert("programName".into(), json!(p));
    }
    m.insert("workspaceName".into(), json!(r.get::<_, String>(6)?));
    m.insert("createdAt".into(), json!(crate::time::format(r.get(8)?)));
    m.insert("updatedAt".into(), json!(crate::time::format(r.get(9)?)));
    m.insert("active".into(), json!(r.get::<_, bool>(7)?));
    Ok(Value::Object(m))
}

/// Creates a smart campaign (test surface); `kind` is `batch` or `trigger`.
pub fn create_campaign(
    conn: &Connection,
    name: &str,
    kind: &str,
    program_name: Option<&str>,
    active: bool,
    description: Option<&str>,
) -> Result<Value, StoreError> {
    let program = match program_name {
        Some(p) => program_id(conn, p)?,
        None => None,
    };
    let now = crate::time::now();
    conn.execute(
        "INSERT INTO campaigns(name, description, type, program_id, program_name, active, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
        params![name, description, kind, program, program_name, active, now],
    )?;
    let id = conn.last_insert_rowid();
    Ok(conn.query_row(
        &format!("{CAMPAIGN_SELECT} WHERE id = ?1"),
        [id],
        render_campaign,
    )?)
}

/// `GET /rest/v1/campaigns.json?id=&name=&programName=&workspaceName=&batchSize=&nextPageToken=`.
pub fn campaigns(state: &AppState, ctx: &Ctx) -> ApiResult {
    let ids = ctx
        .params
        .list("id")
        .iter()
        .map(|i| {
            i.parse::<i64>()
                .map_err(|_| ApiError::invalid_value(i, "integer"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let names = ctx.params.list("name");
    let programs = ctx.params.list("programName");
    let workspaces = ctx.params.list("workspaceName");
    let batch = match int_param(ctx, "batchSize")? {
        None => 300,
        Some(b) if b > 0 => b.min(300),
        Some(b) => return Err(ApiError::invalid_value(&b.to_string(), "integer")),
    };
    let after = match ctx.params.get("nextPageToken") {
        Some(t) => paging::decode(&t)?,
        None => 0,
    };
    let conn = state.store.lock();
    let mut stmt = conn.prepare_cached(&format!(
        "{CAMPAIGN_SELECT} WHERE id > ?1
           AND (?2 = '[]' OR id IN (SELECT value FROM json_each(?2)))
           AND (?3 = '[]' OR name IN (SELECT value FROM json_each(?3)))
           AND (?4 = '[]' OR program_name IN (SELECT value FROM json_each(?4)))
           AND (?5 = '[]' OR workspace_name IN (SELECT value FROM json_each(?5)))
         ORDER BY id LIMIT ?6"
    ))?;
    let mut rows = stmt
        .query_map(
            params![
                after,
                serde_json::to_string(&ids)?,
                serde_json::to_string(&names)?,
                serde_json::to_string(&programs)?,
                serde_json::to_string(&workspaces)?,
                batch + 1
            ],
            render_campaign,
        )?
        .collect::<Result<Vec<_>, _>>()?;
    let more = rows.len() as i64 > batch;
    rows.truncate(batch as usize);
    let last = rows.last().and_then(|r| r["id"].as_i64());
    let mut reply = Reply::result(rows);
    if more && let Some(last) = last {
        reply = reply
            .with(
                "nextPageToken",
                json!(paging::encode(crate::time::now(), last)),
            )
            .with("moreResult", json!(true));
    }
    Ok(reply)
}

/// `GET /rest/v1/campaigns/{id}.json` (1013 when unknown).
pub fn campaign(state: &AppState, id: &str) -> ApiResult {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::invalid_value(id, "integer"))?;
    let conn = state.store.lock();
    let found = conn
        .query_row(
            &format!("{CAMPAIGN_SELECT} WHERE id = ?1"),
            [id],
            render_campaign,
        )
        .optional()?
        .ok_or_else(|| ApiError::new("1013", format!("Campaign '{id}' not found")))?;
    Ok(Reply::result(vec![found]))
}
