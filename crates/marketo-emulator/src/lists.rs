//! Static lists and their membership (`/rest/v1/lists*.json`): what tap-marketo's `lists` stream reads and
//! what Marketo's CRM campaign sync adds leads to. Lists themselves are made by marketers (the test
//! surface's `POST /_emulator/lists`); the API reads them and adds, removes and checks members.

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Map, Value, json};

use crate::envelope::{ApiError, ApiResult, Reply, skipped};
use crate::lead_store::{self, Lead};
use crate::paging;
use crate::routes::{AppState, Ctx};
use crate::store::StoreError;

/// Ids per membership call.
const MAX_IDS: usize = 300;

/// One static list as `lists.json` shows it.
fn render(r: &rusqlite::Row<'_>) -> rusqlite::Result<Value> {
    let mut m = Map::new();
    m.insert("id".into(), json!(r.get::<_, i64>(0)?));
    m.insert("name".into(), json!(r.get::<_, String>(1)?));
    if let Some(d) = r.get::<_, Option<String>>(2)? {
        m.insert("description".into(), json!(d));
    }
    if let Some(p) = r.get::<_, Option<String>>(3)? {
        m.insert("programName".into(), json!(p));
    }
    m.insert("workspaceName".into(), json!(r.get::<_, String>(4)?));
    m.insert(
        "createdAt".into(),
        json!(crate::time::format(r.get::<_, i64>(5)?)),
    );
    m.insert(
        "updatedAt".into(),
        json!(crate::time::format(r.get::<_, i64>(6)?)),
    );
    Ok(Value::Object(m))
}

const SELECT: &str =
    "SELECT id, name, description, program_name, workspace_name, created_at, updated_at FROM lists";

/// The list's name, or 1013 when there is no such list.
pub fn require(conn: &Connection, id: i64) -> Result<String, ApiError> {
    conn.prepare_cached("SELECT name FROM lists WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?
        .ok_or_else(|| ApiError::new("1013", format!("Static list '{id}' not found")))
}

/// Creates a static list (test surface: marketers make lists in the UI).
pub fn create(
    conn: &Connection,
    name: &str,
    description: Option<&str>,
    program_name: Option<&str>,
) -> Result<Value, StoreError> {
    let now = crate::time::now();
    conn.execute(
        "INSERT INTO lists(name, description, program_name, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?4)",
        params![name, description, program_name, now],
    )?;
    let id = conn.last_insert_rowid();
    Ok(conn.query_row(&format!("{SELECT} WHERE id = ?1"), [id], render)?)
}

fn batch_size(ctx: &Ctx) -> Result<i64, ApiError> {
    match ctx.params.get("batchSize") {
        None => Ok(300),
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|b| *b > 0)
            .map(|b| b.min(300))
            .ok_or_else(|| ApiError::invalid_value(&text, "integer")),
    }
}

fn after(ctx: &Ctx) -> Result<i64, ApiError> {
    match ctx.params.get("nextPageToken") {
        Some(token) => paging::decode(&token),
        None => Ok(0),
    }
}

fn parse_id(text: &str) -> Result<i64, ApiError> {
    text.trim()
        .parse()
        .map_err(|_| ApiError::invalid_value(text, "integer"))
}

/// `GET /rest/v1/lists.json?id=&name=&programName=&workspaceName=&batchSize=&nextPageToken=`.
pub fn query(state: &AppState, ctx: &Ctx) -> ApiResult {
    let ids = ctx
        .params
        .list("id")
        .iter()
        .map(|i| parse_id(i))
        .collect::<Result<Vec<_>, _>>()?;
    let names = ctx.params.list("name");
    let programs = ctx.params.list("programName");
    let workspaces = ctx.params.list("workspaceName");
    let batch = batch_size(ctx)?;
    let after = after(ctx)?;
    let conn = state.store.lock();
    let mut stmt = conn.prepare_cached(&format!(
        "{SELECT} WHERE id > ?1
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
            render,
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

/// `GET /rest/v1/lists/{id}.json`.
pub fn by_id(state: &AppState, id: &str) -> ApiResult {
    let id = parse_id(id)?;
    let conn = state.store.lock();
    require(&conn, id)?;
    let list = conn.query_row(&format!("{SELECT} WHERE id = ?1"), [id], render)?;
    Ok(Reply::result(vec![list]))
}

/// Lead ids of a membership call: `?id=1&id=2` / `?id=1,2` or a JSON `{"input":[{"id":1}]}`.
fn member_ids(ctx: &Ctx) -> Result<Vec<Value>, ApiError> {
    let mut ids: Vec<Value> = ctx
        .params
        .list("id")
        .into_iter()
        .map(Value::String)
        .collect();
    if ids.is_empty() {
        match ctx.params.json_member("input") {
            Some(Value::Array(items)) => {
                ids.extend(items.iter().map(|i| match i {
                    Value::Object(m) => m.get("id").cloned().unwrap_or(Value::Null),
                    other => other.clone(),
                }));
            }
            Some(_) => return Err(ApiError::invalid_data("input must be an array")),
            None => {}
        }
    }
    if ids.is_empty() {
        return Err(ApiError::blank("id"));
    }
    if ids.len() > MAX_IDS {
        return Err(ApiError::invalid_data(format!(
            "Too many lead ids: at most {MAX_IDS} allowed"
        )));
    }
    Ok(ids)
}

fn as_lead_id(raw: &Value) -> Option<i64> {
    match raw {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn lead_exists(conn: &Connection, id: i64) -> Result<bool, ApiError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM leads WHERE id = ?1")?
        .query_row([id], |_| Ok(()))
        .optional()?
        .is_some())
}

fn is_member(conn: &Connection, list: i64, lead: i64) -> Result<bool, ApiError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM list_members WHERE list_id = ?1 AND lead_id = ?2")?
        .query_row([list, lead], |_| Ok(()))
        .optional()?
        .is_some())
}

/// What one membership call does to one lead.
#[derive(Clone, Copy)]
enum Op {
    Add,
    Remove,
    Check,
}

fn membership(state: &AppState, ctx: &Ctx, list: &str, op: Op) -> ApiResult {
    let list = parse_id(list)?;
    let ids = member_ids(ctx)?;
    let mut conn = state.store.lock();
    let tx = conn.transaction()?;
    require(&tx, list)?;
    let mut result = Vec::with_capacity(ids.len());
    let mut changed = false;
    for raw in ids {
        let Some(id) = as_lead_id(&raw) else {
            let text = raw.as_str().map(str::to_owned).unwrap_or(raw.to_string());
            result.push(skipped(
                &ApiError::invalid_value(&text, "integer"),
                Map::new(),
            ));
            continue;
        };
        let mut extra = Map::new();
        extra.insert("id".into(), json!(id));
        if !lead_exists(&tx, id)? {
            result.push(skipped(&ApiError::new("1004", "Lead not found"), extra));
            continue;
        }
        let status = match op {
            Op::Add => {
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO list_members(list_id, lead_id) VALUES (?1, ?2)",
                )?
                .execute([list, id])?;
                changed = true;
                "added"
            }
            Op::Remove => {
                let removed = tx
                    .prepare_cached("DELETE FROM list_members WHERE list_id = ?1 AND lead_id = ?2")?
                    .execute([list, id])?;
                if removed == 0 {
                    result.push(skipped(&ApiError::new("1015", "Lead not in list"), extra));
                    continue;
                }
                changed = true;
                "removed"
            }
            Op::Check => {
                if is_member(&tx, list, id)? {
                    "memberof"
                } else {
                    "notmemberof"
                }
            }
        };
        extra.insert("status".into(), json!(status));
        result.push(Value::Object(extra));
    }
    if changed {
        tx.execute(
            "UPDATE lists SET updated_at = ?1 WHERE id = ?2",
            params![crate::time::now(), list],
        )?;
    }
    tx.commit()?;
    Ok(Reply::result(result))
}

/// `POST /rest/v1/lists/{listId}/leads.json`: each lead `added`, or skipped with 1004.
pub fn add(state: &AppState, ctx: &Ctx, list: &str) -> ApiResult {
    membership(state, ctx, list, Op::Add)
}

/// `DELETE /rest/v1/lists/{listId}/leads.json`: `removed`, or skipped with 1004 / 1015.
pub fn remove(state: &AppState, ctx: &Ctx, list: &str) -> ApiResult {
    membership(state, ctx, list, Op::Remove)
}

/// `GET /rest/v1/lists/{listId}/leads/ismember.json`: `memberof` / `notmemberof`, or skipped with 1004.
pub fn is_member_of(state: &AppState, ctx: &Ctx, list: &str) -> ApiResult {
    membership(state, ctx, list, Op::Check)
}

/// `GET /rest/v1/lists/{listId}/leads.json` (and the older `/rest/v1/list/{listId}/leads.json`): members
/// as lead records (`fields`, `batchSize`, `nextPageToken`), token present only when more rows exist.
pub fn members(state: &AppState, ctx: &Ctx, list: &str) -> ApiResult {
    let list = parse_id(list)?;
    let batch = batch_size(ctx)?;
    let after = after(ctx)?;
    let conn = state.store.lock();
    require(&conn, list)?;
    let catalog = crate::fields::load(&conn)?;
    let selected = catalog.select(&ctx.params.list("fields"))?;
    let mut stmt = conn.prepare_cached(&format!(
        "{} WHERE id IN (SELECT lead_id FROM list_members WHERE list_id = ?1 AND lead_id > ?2)
         ORDER BY id LIMIT ?3",
        lead_store::SELECT
    ))?;
    let mut leads = stmt
        .query_map(params![list, after, batch + 1], Lead::from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    let more = leads.len() as i64 > batch;
    leads.truncate(batch as usize);
    let result: Vec<Value> = leads.iter().map(|l| l.render(&selected)).collect();
    let mut reply = Reply::result(result);
    if more && let Some(last) = leads.last() {
        reply = reply
            .with(
                "nextPageToken",
                json!(paging::encode(crate::time::now(), last.id)),
            )
            .with("moreResult", json!(true));
    }
    Ok(reply)
}
