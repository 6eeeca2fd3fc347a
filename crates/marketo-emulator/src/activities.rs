//! The activity log: what every lead write records, activity types, paging tokens and the three
//! incremental endpoints (`activities.json`, `leadchanges.json`, `deletedleads.json`).
//!
//! The incremental endpoints scan fixed-size blocks of activity ids like the real service, so a page can be
//! short or empty while `moreResult` is true; they always return `nextPageToken` and `moreResult`.

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Map, Value, json};

use crate::envelope::{ApiError, ApiResult, Reply};
use crate::fields::FieldDef;
use crate::lead_store::Lead;
use crate::paging;
use crate::routes::{AppState, Ctx};
use crate::store::StoreError;

pub const NEW_LEAD: i64 = 12;
pub const CHANGE_DATA_VALUE: i64 = 13;
pub const MERGE_LEADS: i64 = 32;
pub const DELETE_LEAD: i64 = 37;

/// SQL condition over an `activities` row: false for the activities of a deleted lead (the real service
/// deletes a lead's activity history with it), except its Delete Lead record.
pub const LIVE_LEAD: &str =
    "(type_id = 37 OR NOT EXISTS (SELECT 1 FROM deleted_leads d WHERE d.id = activities.lead_id))";

/// Who made a change; API writes carry the API user's attributes.
pub struct Actor<'a> {
    kind: ActorKind<'a>,
    /// The Change Data Value attributes are the same for every change of one request: serialised once.
    change_attributes: std::cell::OnceCell<String>,
}

enum ActorKind<'a> {
    Api {
        method: &'static str,
        user: &'a str,
        request_id: &'a str,
    },
    Marketer,
}

impl<'a> Actor<'a> {
    /// An API call by `user` (its email) through `method` (e.g. `syncLead`).
    pub fn api(method: &'static str, user: &'a str, request_id: &'a str) -> Self {
        Self {
            kind: ActorKind::Api {
                method,
                user,
                request_id,
            },
            change_attributes: std::cell::OnceCell::new(),
        }
    }

    /// A marketer working in the Marketo UI / a smart campaign flow step.
    pub fn marketer() -> Self {
        Self {
            kind: ActorKind::Marketer,
            change_attributes: std::cell::OnceCell::new(),
        }
    }

    fn is_api(&self) -> bool {
        matches!(self.kind, ActorKind::Api { .. })
    }

    fn source(&self) -> &'static str {
        if self.is_api() {
            "Web service API"
        } else {
            "Marketo Flow Action"
        }
    }

    fn reason(&self) -> &'static str {
        if self.is_api() {
            "Web service API"
        } else {
            "Changed by Smart Campaign Marketer Edits.Update Person action Change Data Value"
        }
    }

    fn api_attributes(&self, out: &mut Vec<Value>) {
        if let ActorKind::Api {
            method,
            user,
            request_id,
        } = self.kind
        {
            out.push(json!({"name": "Api Method Name", "value": method}));
            out.push(json!({"name": "Modifying User", "value": user}));
            out.push(json!({"name": "Request Id", "value": request_id}));
        }
    }

    fn change_attributes(&self) -> &str {
        self.change_attributes.get_or_init(|| {
            let mut attrs = vec![
                json!({"name": "Reason", "value": self.reason()}),
                json!({"name": "Source", "value": self.source()}),
            ];
            self.api_attributes(&mut attrs);
            Value::Array(attrs).to_string()
        })
    }
}

#[allow(clippy::too_many_arguments)]
fn insert(
    conn: &Connection,
    lead_id: i64,
    at: i64,
    type_id: i64,
    pav_id: Option<i64>,
    pav: Option<&str>,
    fields: Option<&Value>,
    attributes: &str,
) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO activities(lead_id, activity_at, type_id, pav_id, pav, fields, attributes)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    let fields = fields.map(serde_json::to_string).transpose()?;
    stmt.execute(params![
        lead_id, at, type_id, pav_id, pav, fields, attributes
    ])?;
    Ok(())
}

/// Activity values are strings on the wire (`"newValue":"B"`).
fn as_text(v: &Value) -> Value {
    match v {
        Value::Null => Value::Null,
        Value::String(_) => v.clone(),
        other => Value::String(other.to_string()),
    }
}

pub fn log_new_lead(
    conn: &Connection,
    lead: &Lead,
    at: i64,
    actor: &Actor<'_>,
) -> Result<(), StoreError> {
    let mut attrs = vec![
        json!({"name": "Created Date", "value": crate::time::format(at)[..10].to_string()}),
        json!({"name": "Source Type", "value": if actor.is_api() { "Web service API" } else { "New lead" }}),
    ];
    actor.api_attributes(&mut attrs);
    insert(
        conn,
        lead.id,
        at,
        NEW_LEAD,
        Some(lead.id),
        Some(&lead.display_name()),
        None,
        &Value::Array(attrs).to_string(),
    )
}

pub fn log_change(
    conn: &Connection,
    lead_id: i64,
    def: &FieldDef,
    old: &Value,
    new: &Value,
    at: i64,
    actor: &Actor<'_>,
) -> Result<(), StoreError> {
    let fields = json!([{"id": def.id, "name": def.name, "newValue": as_text(new), "oldValue": as_text(old)}]);
    insert(
        conn,
        lead_id,
        at,
        CHANGE_DATA_VALUE,
        Some(def.id),
        Some(&def.display_name),
        Some(&fields),
        actor.change_attributes(),
    )
}

pub fn log_delete(
    conn: &Connection,
    lead: &Lead,
    at: i64,
    actor: &Actor<'_>,
) -> Result<(), StoreError> {
    let mut attrs = Vec::new();
    actor.api_attributes(&mut attrs);
    insert(
        conn,
        lead.id,
        at,
        DELETE_LEAD,
        Some(lead.id),
        Some(&lead.display_name()),
        None,
        &Value::Array(attrs).to_string(),
    )
}

pub fn log_merge(
    conn: &Connection,
    winner: &Lead,
    losers: &[i64],
    at: i64,
    actor: &Actor<'_>,
) -> Result<(), StoreError> {
    let ids: Vec<String> = losers.iter().map(i64::to_string).collect();
    let mut attrs = vec![
        json!({"name": "Merge IDs", "value": ids.join(",")}),
        json!({"name": "Merge Source", "value": actor.source()}),
        json!({"name": "Merged in Sales", "value": false}),
    ];
    actor.api_attributes(&mut attrs);
    insert(
        conn,
        winner.id,
        at,
        MERGE_LEADS,
        Some(winner.id),
        Some(&winner.display_name()),
        None,
        &Value::Array(attrs).to_string(),
    )
}

/// `GET /rest/v1/activities/types.json`.
pub fn types() -> ApiResult {
    let t = |id: i64,
             name: &str,
             description: &str,
             primary: Option<(&str, &str)>,
             attrs: &[(&str, &str)]| {
        let mut m = Map::new();
        m.insert("id".into(), json!(id));
        m.insert("name".into(), json!(name));
        m.insert("description".into(), json!(description));
        if let Some((n, d)) = primary {
            m.insert("primaryAttribute".into(), json!({"name": n, "dataType": d}));
        }
        let attrs: Vec<Value> = attrs
            .iter()
            .map(|(n, d)| json!({"name": n, "dataType": d}))
            .collect();
        m.insert("attributes".into(), Value::Array(attrs));
        Value::Object(m)
    };
    Ok(Reply::result(vec![
        t(
            1,
            "Visit Webpage",
            "User visits a web page",
            Some(("Webpage ID", "integer")),
            &[
                ("Client IP Address", "string"),
                ("Query Parameters", "string"),
                ("Referrer URL", "string"),
                ("User Agent", "string"),
                ("Webpage URL", "string"),
            ],
        ),
        t(
            2,
            "Fill Out Form",
            "User fills out and submits form on web page",
            Some(("Webform ID", "integer")),
            &[
                ("Client IP Address", "string"),
                ("Form Fields", "text"),
                ("Query Parameters", "string"),
                ("Referrer URL", "string"),
                ("User Agent", "string"),
                ("Webpage ID", "integer"),
            ],
        ),
        t(
            6,
            "Send Email",
            "Send Marketo Email to a person",
            Some(("Mailing ID", "integer")),
            &[("Campaign Run ID", "integer"), ("Step ID", "integer")],
        ),
        t(
            7,
            "Email Delivered",
            "Marketo Email is delivered to a person",
            Some(("Mailing ID", "integer")),
            &[("Campaign Run ID", "integer"), ("Step ID", "integer")],
        ),
        t(
            9,
            "Unsubscribe Email",
            "Person unsubscribes from Marketo Emails",
            Some(("Mailing ID", "integer")),
            &[
                ("Client IP Address", "string"),
                ("Form Fields", "text"),
                ("User Agent", "string"),
            ],
        ),
        t(
            10,
            "Open Email",
            "User opens Marketo Email",
            Some(("Mailing ID", "integer")),
            &[
                ("Device", "string"),
                ("Is Mobile Device", "boolean"),
                ("Platform", "string"),
                ("User Agent", "string"),
            ],
        ),
        t(
            11,
            "Click Email",
            "User clicks on a link in a Marketo Email",
            Some(("Mailing ID", "integer")),
            &[
                ("Device", "string"),
                ("Is Mobile Device", "boolean"),
                ("Link", "string"),
                ("Platform", "string"),
                ("User Agent", "string"),
            ],
        ),
        t(
            NEW_LEAD,
            "New Lead",
            "New person",
            None,
            &[
                ("Api Method Name", "string"),
                ("Created Date", "date"),
                ("Form Name", "string"),
                ("List Name", "string"),
                ("Modifying User", "string"),
                ("Request Id", "string"),
                ("SFDC Type", "string"),
                ("Source Type", "string"),
            ],
        ),
        t(
            CHANGE_DATA_VALUE,
            "Change Data Value",
            "Changed attribute value for a person",
            Some(("Attribute Name", "integer")),
            &[
                ("Api Method Name", "string"),
                ("Modifying User", "string"),
                ("New Value", "string"),
                ("Old Value", "string"),
                ("Reason", "string"),
                ("Request Id", "string"),
                ("Source", "string"),
            ],
        ),
        t(
            22,
            "Change Score",
            "Changed score value for a person",
            Some(("Score Name", "integer")),
            &[
                ("Change Value", "string"),
                ("New Value", "integer"),
                ("Old Value", "integer"),
                ("Reason", "string"),
            ],
        ),
        t(
            24,
            "Add to List",
            "Person added to a list",
            Some(("List ID", "integer")),
            &[("Source", "string")],
        ),
        t(
            MERGE_LEADS,
            "Merge Leads",
            "Merge two or more people",
            Some(("Lead ID", "integer")),
            &[
                ("Api Method Name", "string"),
                ("Master Updated", "boolean"),
                ("Merge IDs", "string"),
                ("Merge Source", "string"),
                ("Merged in Sales", "boolean"),
                ("Modifying User", "string"),
                ("Request Id", "string"),
            ],
        ),
        t(
            DELETE_LEAD,
            "Delete Lead",
            "Delete person",
            Some(("Lead ID", "integer")),
            &[
                ("Api Method Name", "string"),
                ("Modifying User", "string"),
                ("Remove from CRM", "boolean"),
                ("Request Id", "string"),
            ],
        ),
        t(
            104,
            "Change Status in Progression",
            "Change a person's Program Status",
            Some(("Program ID", "integer")),
            &[
                ("Acquired By", "boolean"),
                ("New Status ID", "integer"),
                ("Old Status ID", "integer"),
                ("Reason", "string"),
                ("Success", "boolean"),
            ],
        ),
        t(
            46,
            "Interesting Moment",
            "Interesting moment",
            Some(("Milestone ID", "integer")),
            &[
                ("Date", "datetime"),
                ("Description", "string"),
                ("Source", "string"),
                ("Type", "string"),
            ],
        ),
    ]))
}

/// `GET /rest/v1/activities/pagingtoken.json?sinceDatetime=`: the first activity at/after that time.
pub fn paging_token(state: &AppState, ctx: &Ctx) -> ApiResult {
    let since_text = ctx
        .params
        .get("sinceDatetime")
        .or_else(|| ctx.params.get("sinceDateTime"))
        .ok_or_else(|| ApiError::blank("sinceDatetime"))?;
    let since = crate::time::parse(&since_text)
        .ok_or_else(|| ApiError::invalid_value(&since_text, "datetime"))?;
    let conn = state.store.lock();
    let first: Option<i64> = conn
        .query_row(
            "SELECT id FROM activities WHERE activity_at >= ?1 ORDER BY activity_at, id LIMIT 1",
            [since],
            |r| r.get(0),
        )
        .optional()?;
    let position = match first {
        Some(id) => id - 1,
        None => conn.query_row("SELECT COALESCE(MAX(id), 0) FROM activities", [], |r| {
            r.get(0)
        })?,
    };
    let mut reply = Reply::Envelope(Map::new());
    reply = reply.with("nextPageToken", json!(paging::encode(since, position)));
    Ok(reply)
}

/// One page of the block scan; `filter` is extra SQL over the row with its bound JSON arrays.
struct Scan<'a> {
    filter: &'a str,
    binds: Vec<String>,
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

fn position(ctx: &Ctx) -> Result<i64, ApiError> {
    let token = ctx
        .params
        .get("nextPageToken")
        .ok_or_else(|| ApiError::blank("nextPageToken"))?;
    paging::decode(&token)
}

/// One stored activity.
pub struct ActivityRow {
    id: i64,
    lead_id: i64,
    at: i64,
    type_id: i64,
    pav_id: Option<i64>,
    pav: Option<String>,
    fields: Option<String>,
    attributes: String,
}

fn scan(
    state: &AppState,
    ctx: &Ctx,
    scan: Scan<'_>,
    render: impl Fn(&ActivityRow, &mut String),
) -> ApiResult {
    let start = position(ctx)?;
    let batch = batch_size(ctx)?;
    let block = state.config.activity_scan_block.max(1);
    let conn = state.store.lock();
    let max_id: i64 = conn.query_row("SELECT COALESCE(MAX(id), 0) FROM activities", [], |r| {
        r.get(0)
    })?;
    let end = (start + block).min(max_id).max(start);
    let sql = format!(
        "SELECT id, lead_id, activity_at, type_id, pav_id, pav, fields, attributes FROM activities
         WHERE id > ? AND id <= ? AND ({}) AND {LIVE_LEAD} ORDER BY id LIMIT ?",
        scan.filter
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut values: Vec<Box<dyn rusqlite::ToSql>> = vec![Box::new(start), Box::new(end)];
    for b in scan.binds {
        values.push(Box::new(b));
    }
    values.push(Box::new(batch));
    let rows = stmt
        .query_map(rusqlite::params_from_iter(values.iter()), read_row)?
        .collect::<Result<Vec<_>, _>>()?;
    let next = if rows.len() as i64 == batch {
        rows.last().map(|r| r.id).unwrap_or(end)
    } else {
        end
    };
    let stamp = rows.last().map(|r| r.at).unwrap_or_else(crate::time::now);
    let reply = if rows.is_empty() {
        Reply::Envelope(Map::new())
    } else {
        let mut result = String::with_capacity(rows.len() * 400);
        result.push('[');
        for (i, row) in rows.iter().enumerate() {
            if i > 0 {
                result.push(',');
            }
            render(row, &mut result);
        }
        result.push(']');
        Reply::Prebuilt {
            result,
            members: Map::new(),
        }
    };
    Ok(reply
        .with("nextPageToken", json!(paging::encode(stamp, next)))
        .with("moreResult", json!(next < max_id)))
}

fn base(row: &ActivityRow) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("id".into(), json!(row.id));
    m.insert("marketoGUID".into(), json!(row.id.to_string()));
    m.insert("leadId".into(), json!(row.lead_id));
    m.insert("activityDate".into(), json!(crate::time::format(row.at)));
    m.insert("activityTypeId".into(), json!(row.type_id));
    m
}

fn stored_attributes(row: &ActivityRow) -> Vec<Value> {
    serde_json::from_str(&row.attributes).unwrap_or_default()
}

fn stored_fields(row: &ActivityRow) -> Vec<Value> {
    row.fields
        .as_deref()
        .and_then(|f| serde_json::from_str(f).ok())
        .unwrap_or_default()
}

/// Reads `SELECT id, lead_id, activity_at, type_id, pav_id, pav, fields, attributes`.
pub fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ActivityRow> {
    Ok(ActivityRow {
        id: r.get(0)?,
        lead_id: r.get(1)?,
        at: r.get(2)?,
        type_id: r.get(3)?,
        pav_id: r.get(4)?,
        pav: r.get(5)?,
        fields: r.get(6)?,
        attributes: r.get(7)?,
    })
}

/// An activity as `activities.json` and bulk exports show it (Change Data Value carries New/Old Value).
pub fn activity_record(row: &ActivityRow) -> Value {
    let mut m = base(row);
    if let Some(id) = row.pav_id {
        m.insert("primaryAttributeValueId".into(), json!(id));
    }
    if let Some(v) = &row.pav {
        m.insert("primaryAttributeValue".into(), json!(v));
    }
    let mut attrs = Vec::new();
    if row.type_id == CHANGE_DATA_VALUE
        && let Some(f) = stored_fields(row).first()
    {
        attrs.push(json!({"name": "New Value", "value": f["newValue"]}));
        attrs.push(json!({"name": "Old Value", "value": f["oldValue"]}));
    }
    attrs.extend(stored_attributes(row));
    m.insert("attributes".into(), Value::Array(attrs));
    Value::Object(m)
}

fn ids_param(ctx: &Ctx, name: &str, max: usize) -> Result<Vec<i64>, ApiError> {
    let values = ctx.params.list(name);
    if values.len() > max {
        return Err(ApiError::invalid_data(format!(
            "Too many values for '{name}': at most {max} allowed"
        )));
    }
    values
        .iter()
        .map(|v| {
            v.parse::<i64>()
                .map_err(|_| ApiError::invalid_value(v, "integer"))
        })
        .collect()
}

fn lead_filter(
    state: &AppState,
    ctx: &Ctx,
    filter: &mut String,
    binds: &mut Vec<String>,
) -> Result<(), ApiError> {
    let lead_ids = ids_param(ctx, "leadIds", 30)?;
    if !lead_ids.is_empty() {
        filter.push_str(" AND lead_id IN (SELECT value FROM json_each(?))");
        binds.push(serde_json::to_string(&lead_ids).unwrap_or_default());
    }
    if let Some(list) = ctx.params.get("listId") {
        let id = list
            .parse::<i64>()
            .map_err(|_| ApiError::invalid_value(&list, "integer"))?;
        crate::lists::require(&state.store.lock(), id)?;
        filter.push_str(" AND lead_id IN (SELECT lead_id FROM list_members WHERE list_id = ?)");
        binds.push(id.to_string());
    }
    Ok(())
}

/// `GET /rest/v1/activities.json`.
pub fn activities(state: &AppState, ctx: &Ctx) -> ApiResult {
    let types = ids_param(ctx, "activityTypeIds", 10)?;
    if types.is_empty() {
        return Err(ApiError::blank("activityTypeIds"));
    }
    let mut filter = String::from("type_id IN (SELECT value FROM json_each(?))");
    let mut binds = vec![serde_json::to_string(&types).unwrap_or_default()];
    lead_filter(state, ctx, &mut filter, &mut binds)?;
    scan(
        state,
        ctx,
        Scan {
            filter: &filter,
            binds,
        },
        push_activity,
    )
}

/// `GET /rest/v1/activities/leadchanges.json`: New Lead and Change Data Value of the listed fields.
pub fn lead_changes(state: &AppState, ctx: &Ctx) -> ApiResult {
    let names = ctx.params.list("fields");
    if names.is_empty() {
        return Err(ApiError::blank("fields"));
    }
    let catalog = crate::fields::load(&state.store.lock())?;
    let mut field_ids = Vec::new();
    for n in &names {
        let def = catalog
            .get(n)
            .ok_or_else(|| ApiError::new("1006", format!("Field '{n}' not found")))?;
        field_ids.push(def.id);
    }
    let mut filter = format!(
        "(type_id = {NEW_LEAD} OR (type_id = {CHANGE_DATA_VALUE} AND pav_id IN (SELECT value FROM json_each(?))))"
    );
    let mut binds = vec![serde_json::to_string(&field_ids).unwrap_or_default()];
    lead_filter(state, ctx, &mut filter, &mut binds)?;
    scan(
        state,
        ctx,
        Scan {
            filter: &filter,
            binds,
        },
        push_lead_change,
    )
}

fn push_activity(row: &ActivityRow, out: &mut String) {
    out.push_str(&activity_record(row).to_string());
}

/// A lead-change record written straight from the stored JSON (no parse / re-serialise):
/// `{"id","marketoGUID","leadId","activityDate","activityTypeId","fields":[..],"attributes":[..,Lead ID]}`
/// (New Lead: `"fields":[]`, no `Lead ID`, as recorded from the real service).
fn push_lead_change(row: &ActivityRow, out: &mut String) {
    use std::fmt::Write;
    let _ = write!(
        out,
        r#"{{"id":{id},"marketoGUID":"{id}","leadId":{lead},"activityDate":"{date}","activityTypeId":{kind},"fields":{fields},"attributes":"#,
        id = row.id,
        lead = row.lead_id,
        date = crate::time::format(row.at),
        kind = row.type_id,
        fields = row.fields.as_deref().unwrap_or("[]"),
    );
    // Real New Lead rows carry `"fields":[]` and their own attributes only; Change Data Value rows end
    // with a `Lead ID` attribute.
    if row.type_id != CHANGE_DATA_VALUE {
        out.push_str(&row.attributes);
        out.push('}');
        return;
    }
    let lead_id = format!(r#"{{"name":"Lead ID","value":{}}}]"#, row.lead_id);
    match row.attributes.trim_end().strip_suffix(']') {
        Some(head) if head.trim_end().ends_with('[') => {
            out.push_str(head);
            out.push_str(&lead_id);
        }
        Some(head) => {
            out.push_str(head);
            out.push(',');
            out.push_str(&lead_id);
        }
        None => {
            out.push('[');
            out.push_str(&lead_id);
        }
    }
    out.push('}');
}

/// `GET /rest/v1/activities/deletedleads.json`.
pub fn deleted_leads(state: &AppState, ctx: &Ctx) -> ApiResult {
    scan(
        state,
        ctx,
        Scan {
            filter: &format!("type_id = {DELETE_LEAD}"),
            binds: Vec::new(),
        },
        push_activity,
    )
}
