//! Lead endpoints: query by filter, get by id, sync, delete, describe, schema fields, partitions, merge.

use rusqlite::{OptionalExtension, params};
use serde_json::{Map, Value, json};

use crate::activities::Actor;
use crate::envelope::{ApiError, ApiResult, Reply, skipped};
use crate::fields::{self, Catalog, FieldDef};
use crate::lead_store::{self, Lead};
use crate::paging;
use crate::routes::{AppState, Ctx};

/// Records per write call.
pub const MAX_BATCH: usize = 300;
/// Leads a filter may match before 1003.
const MAX_MATCHES: i64 = 1000;

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

fn api_actor<'a>(ctx: &'a Ctx, method: &'static str) -> Actor<'a> {
    Actor::api(method, &ctx.user.email, &ctx.request_id)
}

/// `GET /rest/v1/leads.json?filterType=&filterValues=`.
pub fn query(state: &AppState, ctx: &Ctx) -> ApiResult {
    let filter_type = ctx.params.get("filterType").ok_or_else(|| {
        ApiError::new(
            "1002",
            "Missing value for the required parameter 'filterType'",
        )
    })?;
    let values = ctx.params.list("filterValues");
    if values.is_empty() {
        return Err(ApiError::new(
            "1002",
            "Missing value for the required parameter 'filterValues'",
        ));
    }
    if values.len() > MAX_BATCH {
        return Err(ApiError::invalid_data(
            "Too many filter values: at most 300 allowed",
        ));
    }
    let batch = batch_size(ctx)?;
    let after = match ctx.params.get("nextPageToken") {
        Some(token) => paging::decode(&token)?,
        None => 0,
    };
    let conn = state.store.lock();
    let catalog = fields::load(&conn)?;
    let def = catalog
        .get(&filter_type)
        .ok_or_else(|| ApiError::new("1006", format!("Field '{filter_type}' not found")))?;
    if !def.searchable {
        return Err(ApiError::new(
            "1011",
            format!("Field '{filter_type}' not supported"),
        ));
    }
    let selected = catalog.select(&ctx.params.list("fields"))?;
    let keys: Vec<String> = values.iter().map(|v| v.to_lowercase()).collect();
    let keys_json = serde_json::to_string(&keys)?;
    let (condition, field_bind) = match def.name.as_str() {
        "id" => ("id IN (SELECT value FROM json_each(?1))", None),
        "email" => ("email_key IN (SELECT value FROM json_each(?1))", None),
        "leadPartitionId" => ("partition_id IN (SELECT value FROM json_each(?1))", None),
        _ => (
            "id IN (SELECT lead_id FROM lead_index WHERE field_id = ?2 AND value IN (SELECT value FROM json_each(?1)))",
            Some(def.id),
        ),
    };
    let field_id = field_bind.unwrap_or(0);
    let matches: i64 = conn.query_row(
        &format!(
            "SELECT COUNT(*) FROM (SELECT 1 FROM leads WHERE {condition} AND ?2 = ?2 LIMIT {})",
            MAX_MATCHES + 1
        ),
        params![keys_json, field_id],
        |r| r.get(0),
    )?;
    if matches > MAX_MATCHES {
        return Err(ApiError::invalid_data("Too many results match the filter"));
    }
    let mut stmt = conn.prepare_cached(&format!(
        "{} WHERE {condition} AND ?2 = ?2 AND id > ?3 ORDER BY id LIMIT ?4",
        lead_store::SELECT
    ))?;
    let mut leads = stmt
        .query_map(
            params![keys_json, field_id, after, batch + 1],
            Lead::from_row,
        )?
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

/// `GET /rest/v1/lead/{id}.json`.
pub fn get_by_id(state: &AppState, ctx: &Ctx, id: &str) -> ApiResult {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::invalid_value(id, "integer"))?;
    let conn = state.store.lock();
    let catalog = fields::load(&conn)?;
    let selected = catalog.select(&ctx.params.list("fields"))?;
    let result = lead_store::load(&conn, id)?
        .map(|l| vec![l.render(&selected)])
        .unwrap_or_default();
    Ok(Reply::result(result))
}

fn input_records(ctx: &Ctx, max: usize) -> Result<Vec<Value>, ApiError> {
    let input = match ctx.params.json_member("input") {
        Some(Value::Array(items)) => items.clone(),
        Some(_) => return Err(ApiError::invalid_data("input must be an array")),
        None => return Err(ApiError::blank("input")),
    };
    if input.is_empty() {
        return Err(ApiError::blank("input"));
    }
    if input.len() > max {
        return Err(ApiError::invalid_data(format!(
            "Input array exceeds the maximum of {max} records"
        )));
    }
    Ok(input)
}

/// Fields that live on the company record; 1021 when a lead linked to a company sets them.
const COMPANY_FIELDS: [&str; 12] = [
    "company",
    "site",
    "billingStreet",
    "billingCity",
    "billingState",
    "billingCountry",
    "billingPostalCode",
    "website",
    "mainPhone",
    "annualRevenue",
    "numberOfEmployees",
    "industry",
];

#[derive(Clone, Copy, PartialEq)]
enum Action {
    CreateOnly,
    UpdateOnly,
    CreateOrUpdate,
    CreateDuplicate,
}

/// `POST /rest/v1/leads.json`.
pub fn sync(state: &AppState, ctx: &Ctx) -> ApiResult {
    let input = input_records(ctx, MAX_BATCH)?;
    let action = match ctx.params.get("action").as_deref() {
        None | Some("createOrUpdate") => Action::CreateOrUpdate,
        Some("createOnly") => Action::CreateOnly,
        Some("updateOnly") => Action::UpdateOnly,
        Some("createDuplicate") => Action::CreateDuplicate,
        Some(other) => {
            return Err(ApiError::invalid_data(format!("Invalid action '{other}'")));
        }
    };
    let mut conn = state.store.lock();
    let tx = conn.transaction()?;
    let result = sync_batch(&tx, ctx, &input, action, "syncLead")?;
    tx.commit()?;
    Ok(Reply::result(result))
}

/// The shared body of Sync Leads and Push Lead: `lookupField`/`partitionName` checks, then one
/// per-record outcome per input record, in input order.
fn sync_batch(
    tx: &rusqlite::Connection,
    ctx: &Ctx,
    input: &[Value],
    action: Action,
    method: &'static str,
) -> Result<Vec<Value>, ApiError> {
    let lookup = ctx
        .params
        .get("lookupField")
        .unwrap_or_else(|| "email".into());
    let catalog = fields::load(tx)?;
    let def = catalog
        .get(&lookup)
        .ok_or_else(|| ApiError::new("1006", format!("Field '{lookup}' not found")))?;
    if !def.searchable || lookup == "leadPartitionId" {
        return Err(ApiError::new(
            "1011",
            format!("Field '{lookup}' not supported"),
        ));
    }
    if lookup == "id" && action != Action::UpdateOnly {
        return Err(ApiError::invalid_data(
            "Lookup field 'id' is only allowed with action 'updateOnly'",
        ));
    }
    let partition_name = ctx
        .params
        .get("partitionName")
        .filter(|_| matches!(action, Action::CreateOnly | Action::CreateOrUpdate));
    let partition: Option<Option<i64>> = match &partition_name {
        Some(name) => Some(
            tx.query_row("SELECT id FROM partitions WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?,
        ),
        None => None,
    };
    let now = crate::time::now();
    let actor = api_actor(ctx, method);
    let mut result = Vec::with_capacity(input.len());
    for record in input {
        let outcome = sync_one(
            tx,
            &catalog,
            record,
            action,
            &lookup,
            partition_name.as_deref(),
            partition,
            now,
            &actor,
        )?;
        result.push(outcome);
    }
    Ok(result)
}

/// `POST /rest/v1/leads/push.json` `{"programName","programStatus?","lookupField?","partitionName?",
/// "source?","reason?","input":[..]}`: upserts like Sync Leads (createOrUpdate) and makes every created or
/// updated lead a member of the program; per-record `{"id","status"}` in input order.
pub fn push(state: &AppState, ctx: &Ctx) -> ApiResult {
    let program = ctx.params.get("programName").ok_or_else(|| {
        ApiError::new(
            "1002",
            "Missing value for the required parameter 'programName'",
        )
    })?;
    let input = input_records(ctx, MAX_BATCH)?;
    let status = ctx
        .params
        .get("programStatus")
        .unwrap_or_else(|| "Member".into());
    let mut conn = state.store.lock();
    let tx = conn.transaction()?;
    let program_id = crate::programs::program_id(&tx, &program)?
        .ok_or_else(|| ApiError::new("1013", format!("Program '{program}' not found")))?;
    let result = sync_batch(
        &tx,
        ctx,
        &input,
        Action::CreateOrUpdate,
        "pushLeadToMarketo",
    )?;
    for record in &result {
        if let (Some(id), Some("created" | "updated")) =
            (record["id"].as_i64(), record["status"].as_str())
        {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO program_members(program_id, lead_id, status) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![program_id, id, status])?;
        }
    }
    tx.commit()?;
    Ok(Reply::result(result))
}

/// `POST /rest/v1/leads/{id}/associate.json?cookie=id:AAA-BBB-CCC&token:_mch-...`: links a Munchkin cookie
/// to the lead (its `cookies` field, searchable with `filterType=cookies`). Answers just
/// `requestId`/`success` like the real service; 1004 unknown lead, 1012 malformed cookie.
pub fn associate(state: &AppState, ctx: &Ctx, id: &str) -> ApiResult {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::invalid_value(id, "integer"))?;
    let cookie = ctx.params.get("cookie").ok_or_else(|| {
        ApiError::new("1002", "Missing value for the required parameter 'cookie'")
    })?;
    if !cookie.contains("_mch-") {
        return Err(ApiError::new(
            "1012",
            format!("Invalid cookie value '{cookie}'"),
        ));
    }
    let mut conn = state.store.lock();
    let tx = conn.transaction()?;
    let catalog = fields::load(&tx)?;
    let mut lead =
        lead_store::load(&tx, id)?.ok_or_else(|| ApiError::new("1004", "Lead not found"))?;
    let mut change = Map::new();
    change.insert("cookies".into(), json!(cookie));
    let actor = api_actor(ctx, "associateLead");
    lead_store::update(
        &tx,
        &catalog,
        &mut lead,
        &change,
        crate::time::now(),
        &actor,
    )?;
    tx.commit()?;
    Ok(Reply::Envelope(Map::new()))
}

#[allow(clippy::too_many_arguments)]
fn sync_one(
    conn: &rusqlite::Connection,
    catalog: &Catalog,
    record: &Value,
    action: Action,
    lookup: &str,
    partition_name: Option<&str>,
    partition: Option<Option<i64>>,
    now: i64,
    actor: &Actor<'_>,
) -> Result<Value, ApiError> {
    let skip = |err: ApiError| Ok(skipped(&err, Map::new()));
    let Value::Object(record) = record else {
        return skip(ApiError::invalid_data("Invalid data"));
    };
    let lookup_value = record.get(lookup).cloned().unwrap_or(Value::Null);
    let mut writable = record.clone();
    if lookup == "id" {
        writable.remove("id");
    }
    let values = match lead_store::validate_record(catalog, &writable) {
        Ok(v) => v,
        Err(err) => return skip(err),
    };
    if values.contains_key("externalCompanyId")
        && COMPANY_FIELDS.iter().any(|f| values.contains_key(*f))
    {
        return skip(ApiError::new("1021", "Company update not allowed"));
    }
    let partition_id = match (partition_name, partition) {
        (Some(name), Some(None)) => {
            return skip(ApiError::new(
                "1008",
                format!("Access denied to partition '{name}'"),
            ));
        }
        (_, Some(Some(id))) => Some(id),
        _ => None,
    };
    // An id lookup loads the lead once and keeps it for the update.
    let mut preloaded: Option<Lead> = None;
    let matches = if action == Action::CreateDuplicate || lookup_value.is_null() {
        Vec::new()
    } else if lookup == "id" {
        let id = lookup_value
            .as_i64()
            .or_else(|| lookup_value.as_str().and_then(|s| s.trim().parse().ok()));
        preloaded = match id {
            Some(id) => lead_store::load(conn, id)?,
            None => None,
        };
        preloaded.iter().map(|l| l.id).collect()
    } else {
        let def = catalog.get(lookup).ok_or_else(ApiError::system_error)?;
        let key = if lookup == "id" {
            lookup_value.clone()
        } else {
            match def.coerce(&lookup_value) {
                Ok(v) => v,
                Err(err) => return skip(err),
            }
        };
        lead_store::find(conn, catalog, lookup, &key, 2)?
    };
    if lookup_value.is_null() && action == Action::UpdateOnly {
        return skip(ApiError::invalid_data(format!(
            "Value for lookup field '{lookup}' not specified"
        )));
    }
    match (matches.len(), action) {
        (0, Action::UpdateOnly) => skip(ApiError::new("1004", "Lead not found")),
        (0, _) | (_, Action::CreateDuplicate) => {
            let id = lead_store::create(
                conn,
                catalog,
                partition_id.unwrap_or(1),
                &values,
                now,
                actor,
            )?;
            Ok(json!({"id": id, "status": "created"}))
        }
        (1, Action::CreateOnly) => skip(ApiError::new("1005", "Lead already exists")),
        (1, _) => {
            let loaded = match preloaded.take() {
                Some(lead) => Some(lead),
                None => lead_store::load(conn, matches[0])?,
            };
            let Some(mut lead) = loaded else {
                return skip(ApiError::new("1004", "Lead not found"));
            };
            if let Some(pid) = partition_id
                && pid != lead.partition_id
            {
                return skip(ApiError::new("1010", "Partition update not allowed"));
            }
            lead_store::update(conn, catalog, &mut lead, &values, now, actor)?;
            Ok(json!({"id": lead.id, "status": "updated"}))
        }
        _ => skip(ApiError::new(
            "1007",
            "Multiple leads match the lookup criteria",
        )),
    }
}

/// `POST /rest/v1/leads/delete.json` (also `DELETE /rest/v1/leads.json` with the same body).
pub fn delete(state: &AppState, ctx: &Ctx) -> ApiResult {
    let mut ids: Vec<Value> = Vec::new();
    if ctx.params.json_member("input").is_some() {
        for record in input_records(ctx, MAX_BATCH)? {
            ids.push(record.get("id").cloned().unwrap_or(Value::Null));
        }
    } else {
        let list = ctx.params.list("id");
        if list.is_empty() {
            return Err(ApiError::blank("input"));
        }
        if list.len() > MAX_BATCH {
            return Err(ApiError::invalid_data(format!(
                "Input array exceeds the maximum of {MAX_BATCH} records"
            )));
        }
        ids.extend(list.into_iter().map(Value::String));
    }
    let mut conn = state.store.lock();
    let tx = conn.transaction()?;
    let now = crate::time::now();
    let actor = api_actor(ctx, "deleteLead");
    let mut result = Vec::with_capacity(ids.len());
    for raw in ids {
        let id = match &raw {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        let Some(id) = id else {
            let text = match &raw {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            result.push(skipped(
                &ApiError::invalid_value(&text, "integer"),
                Map::new(),
            ));
            continue;
        };
        if lead_store::delete(&tx, id, now, &actor)? {
            result.push(json!({"id": id, "status": "deleted"}));
        } else {
            let mut extra = Map::new();
            extra.insert("id".into(), json!(id));
            result.push(skipped(&ApiError::new("1004", "Lead not found"), extra));
        }
    }
    tx.commit()?;
    Ok(Reply::result(result))
}

pub fn describe(state: &AppState) -> ApiResult {
    let catalog = fields::load(&state.store.lock())?;
    Ok(Reply::result(catalog.describe()))
}

pub fn describe2(state: &AppState) -> ApiResult {
    let catalog = fields::load(&state.store.lock())?;
    Ok(Reply::result(vec![catalog.describe2()]))
}

/// `GET /rest/v1/leads/schema/fields.json` (paged by `batchSize`/`nextPageToken`).
pub fn schema_fields(state: &AppState, ctx: &Ctx) -> ApiResult {
    let batch = batch_size(ctx)? as usize;
    let after = match ctx.params.get("nextPageToken") {
        Some(token) => paging::decode(&token)?,
        None => 0,
    };
    let catalog = fields::load(&state.store.lock())?;
    let rest: Vec<&FieldDef> = catalog.fields.iter().filter(|f| f.id > after).collect();
    let page: Vec<Value> = rest.iter().take(batch).map(|f| f.schema()).collect();
    let more = rest.len() > batch;
    let mut reply = Reply::result(page).with("moreResult", json!(more));
    if more && let Some(last) = rest.get(batch - 1) {
        reply = reply.with(
            "nextPageToken",
            json!(paging::encode(crate::time::now(), last.id)),
        );
    }
    Ok(reply)
}

/// `GET /rest/v1/leads/schema/fields/{name}.json`.
pub fn schema_field(state: &AppState, name: &str) -> ApiResult {
    let catalog = fields::load(&state.store.lock())?;
    let def = catalog
        .get(name)
        .ok_or_else(|| ApiError::new("1006", format!("Field '{name}' not found")))?;
    Ok(Reply::result(vec![def.schema()]))
}

fn valid_api_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `POST /rest/v1/leads/schema/fields.json`: creates custom fields (`displayName`, `name`, `dataType`
/// required; `description`, `isHidden`, `isHtmlEncodingInEmail`, `isSensitive` optional).
pub fn create_fields(state: &AppState, ctx: &Ctx) -> ApiResult {
    let input = input_records(ctx, 100)?;
    let mut conn = state.store.lock();
    let tx = conn.transaction()?;
    let mut result = Vec::with_capacity(input.len());
    for record in &input {
        let name = record.get("name").and_then(Value::as_str).unwrap_or("");
        let mut extra = Map::new();
        if !name.is_empty() {
            extra.insert("name".into(), json!(name));
        }
        match new_field(&tx, record) {
            Ok(def) => {
                fields::insert_custom(&tx, &def)?;
                result.push(json!({"name": def.name, "status": "created"}));
            }
            Err(err) => result.push(skipped(&err, extra)),
        }
    }
    tx.commit()?;
    Ok(Reply::result(result))
}

fn new_field(conn: &rusqlite::Connection, record: &Value) -> Result<FieldDef, ApiError> {
    let text = |k: &str| {
        record
            .get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .unwrap_or("")
    };
    let flag = |k: &str, default: bool| match record.get(k) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => crate::params::parse_bool(s).unwrap_or(default),
        _ => default,
    };
    let (name, display, data_type) = (text("name"), text("displayName"), text("dataType"));
    for (k, v) in [
        ("name", name),
        ("displayName", display),
        ("dataType", data_type),
    ] {
        if v.is_empty() {
            return Err(ApiError::new(
                "1002",
                format!("Missing value for the required parameter '{k}'"),
            ));
        }
    }
    if !valid_api_name(name) {
        return Err(ApiError::invalid_data(format!(
            "Invalid field name '{name}': it must start with a letter and contain only letters, numbers or underscores"
        )));
    }
    if !display
        .chars()
        .all(|c| c.is_alphanumeric() || c == ' ' || c == '_' || c == '-')
    {
        return Err(ApiError::invalid_data(format!(
            "Invalid display name '{display}': special characters are not allowed"
        )));
    }
    let length = fields::creatable_type(data_type)
        .ok_or_else(|| ApiError::invalid_data(format!("Invalid dataType '{data_type}'")))?;
    let catalog = fields::load(conn)?;
    if catalog
        .fields
        .iter()
        .any(|f| f.name.eq_ignore_ascii_case(name))
    {
        return Err(ApiError::new(
            "1017",
            format!("Field '{name}' already exists"),
        ));
    }
    if catalog
        .fields
        .iter()
        .any(|f| f.display_name.eq_ignore_ascii_case(display))
    {
        return Err(ApiError::new(
            "1017",
            format!("Field with display name '{display}' already exists"),
        ));
    }
    let data_type = if data_type == "textarea" {
        "text"
    } else {
        data_type
    };
    Ok(FieldDef {
        id: 0,
        name: name.into(),
        display_name: display.into(),
        data_type: data_type.into(),
        length,
        read_only: false,
        searchable: matches!(data_type, "string" | "email" | "integer"),
        is_custom: true,
        is_hidden: flag("isHidden", false),
        description: record
            .get("description")
            .and_then(Value::as_str)
            .map(String::from),
        is_html_encoding: flag("isHtmlEncodingInEmail", true),
        is_sensitive: flag("isSensitive", false),
    })
}

/// `POST /rest/v1/leads/schema/fields/{name}.json`: display name (custom only), description, flags.
pub fn update_field(state: &AppState, ctx: &Ctx, name: &str) -> ApiResult {
    let input = input_records(ctx, 1)?;
    let record = &input[0];
    let conn = state.store.lock();
    let catalog = fields::load(&conn)?;
    let Some(def) = catalog.get(name) else {
        return Ok(Reply::result(vec![skipped(
            &ApiError::new("1006", format!("Field '{name}' not found")),
            Map::from_iter([("name".to_string(), json!(name))]),
        )]));
    };
    if let Some(display) = record.get("displayName").and_then(Value::as_str) {
        if !def.is_custom {
            return Ok(Reply::result(vec![skipped(
                &ApiError::invalid_data("displayName of a standard field cannot be updated"),
                Map::from_iter([("name".to_string(), json!(name))]),
            )]));
        }
        conn.execute(
            "UPDATE lead_fields SET display_name = ?1 WHERE id = ?2",
            params![display, def.id],
        )?;
    }
    if let Some(description) = record.get("description").and_then(Value::as_str) {
        conn.execute(
            "UPDATE lead_fields SET description = ?1 WHERE id = ?2",
            params![description, def.id],
        )?;
    }
    for (key, column) in [
        ("isHidden", "is_hidden"),
        ("isHtmlEncodingInEmail", "is_html_encoding"),
        ("isSensitive", "is_sensitive"),
    ] {
        if let Some(b) = record.get(key).and_then(Value::as_bool) {
            if key == "isHidden" && !def.is_custom {
                continue;
            }
            conn.execute(
                &format!("UPDATE lead_fields SET {column} = ?1 WHERE id = ?2"),
                params![b, def.id],
            )?;
        }
    }
    Ok(Reply::result(vec![
        json!({"name": name, "status": "updated"}),
    ]))
}

/// `GET /rest/v1/leads/partitions.json`.
pub fn partitions(state: &AppState) -> ApiResult {
    let conn = state.store.lock();
    let mut stmt = conn.prepare("SELECT id, name, description FROM partitions ORDER BY id")?;
    let rows = stmt
        .query_map([], |r| {
            Ok(
                json!({"id": r.get::<_, i64>(0)?, "name": r.get::<_, String>(1)?,
                      "description": r.get::<_, Option<String>>(2)?}),
            )
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Reply::result(rows))
}

/// `POST /rest/v1/leads/partitions.json` `{"input":[{"id":1,"partitionName":"X"}]}`.
pub fn update_partitions(state: &AppState, ctx: &Ctx) -> ApiResult {
    let input = input_records(ctx, MAX_BATCH)?;
    let mut conn = state.store.lock();
    let tx = conn.transaction()?;
    let now = crate::time::now();
    let mut result = Vec::with_capacity(input.len());
    for record in &input {
        let id = record.get("id").and_then(Value::as_i64);
        let name = record.get("partitionName").and_then(Value::as_str);
        let mut extra = Map::new();
        if let Some(id) = id {
            extra.insert("id".into(), json!(id));
        }
        let (Some(id), Some(name)) = (id, name) else {
            result.push(skipped(
                &ApiError::new("1009", "Partition name must be specified"),
                extra,
            ));
            continue;
        };
        let partition: Option<i64> = tx
            .query_row("SELECT id FROM partitions WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?;
        let Some(partition) = partition else {
            result.push(skipped(
                &ApiError::new("1008", format!("Access denied to partition '{name}'")),
                extra,
            ));
            continue;
        };
        let changed = tx.execute(
            "UPDATE leads SET partition_id = ?1, updated_at = ?2 WHERE id = ?3",
            params![partition, now, id],
        )?;
        if changed == 0 {
            result.push(skipped(&ApiError::new("1004", "Lead not found"), extra));
        } else {
            result.push(json!({"id": id, "status": "updated"}));
        }
    }
    tx.commit()?;
    Ok(Reply::result(result))
}

/// `POST /rest/v1/leads/{winnerId}/merge.json?leadId=|leadIds=`: losers' values fill the winner's empty
/// fields, the losers are removed, one Merge Leads activity is logged.
pub fn merge(state: &AppState, ctx: &Ctx, winner: &str) -> ApiResult {
    let winner: i64 = winner
        .parse()
        .map_err(|_| ApiError::invalid_value(winner, "integer"))?;
    let mut losers = ctx.params.list("leadIds");
    losers.extend(ctx.params.list("leadId"));
    if losers.is_empty() {
        return Err(ApiError::invalid_data("Losing lead ids not specified"));
    }
    if losers.len() > 25 {
        return Err(ApiError::new(
            "1080",
            "Cannot merge more than 25 leads at a time",
        ));
    }
    let losers: Vec<i64> = losers
        .iter()
        .map(|l| {
            l.parse::<i64>()
                .map_err(|_| ApiError::invalid_value(l, "integer"))
        })
        .collect::<Result<_, _>>()?;
    let mut conn = state.store.lock();
    let tx = conn.transaction()?;
    let catalog = fields::load(&tx)?;
    let mut lead = lead_store::load(&tx, winner)?
        .ok_or_else(|| ApiError::new("1004", format!("Lead '{winner}' not found")))?;
    let mut fill = Map::new();
    let mut loser_leads = Vec::new();
    for id in &losers {
        if *id == winner {
            return Err(ApiError::invalid_data(
                "Winning lead cannot be a losing lead",
            ));
        }
        let loser = lead_store::load(&tx, *id)?
            .ok_or_else(|| ApiError::new("1004", format!("Lead '{id}' not found")))?;
        loser_leads.push(loser);
    }
    for loser in &loser_leads {
        for (k, v) in &loser.data {
            if !lead.data.contains_key(k) && !fill.contains_key(k) && !v.is_null() {
                fill.insert(k.clone(), v.clone());
            }
        }
    }
    let now = crate::time::now();
    let actor = api_actor(ctx, "mergeLeads");
    // Losers go first so the winner can take over their unique values (email).
    for loser in &loser_leads {
        tx.execute("DELETE FROM lead_index WHERE lead_id = ?1", [loser.id])?;
        tx.execute("DELETE FROM leads WHERE id = ?1", [loser.id])?;
    }
    lead_store::update(&tx, &catalog, &mut lead, &fill, now, &actor)?;
    crate::activities::log_merge(&tx, &lead, &losers, now, &actor)?;
    tx.commit()?;
    Ok(Reply::Envelope(Map::new()))
}
