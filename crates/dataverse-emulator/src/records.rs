//! Record semantics independent of HTTP: body validation, `@odata.bind`, state/status pairs,
//! computed columns, system columns, and projecting rows into the wire shape.

use std::collections::HashMap;

use axum::http::StatusCode;
use rusqlite::Connection;
use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};
use crate::path::{Key, parse_segment, strip_base};
use crate::schema::{ColumnDef, ColumnType, EntityDef};
use crate::security::{APPEND_TO, Caller, READ};
use crate::store::{self, Row, Schema};

/// UTC now without fractional seconds, as the service emits datetimes.
pub fn now_string() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Everything a write needs besides the body.
pub struct WriteCtx<'a> {
    pub conn: &'a Connection,
    pub schema: &'a Schema,
    pub caller: &'a Caller,
    /// `$n` → entity URL (relative, e.g. `contacts(<id>)`) for change sets.
    pub content_ids: &'a HashMap<String, String>,
}

/// Resolves a reference such as `/contacts(<id>)`, an absolute URL, `$1` or an alternate-key path
/// to (entity, id), checking the record exists.
pub fn resolve_reference(
    ctx: &WriteCtx<'_>,
    reference: &str,
) -> ApiResult<(std::sync::Arc<EntityDef>, String)> {
    let mut r = strip_base(reference).to_string();
    if let Some(rest) = r.strip_prefix('$') {
        let (n, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let target = ctx.content_ids.get(n).ok_or_else(|| {
            ApiError::bad_request(format!(
                "Content-ID Reference: '${n}' does not exist in the batch context."
            ))
        })?;
        r = format!("{target}{tail}");
    }
    let seg = parse_segment(&r)
        .ok_or_else(|| ApiError::bad_request(format!("Invalid reference '{reference}'.")))?;
    let def = ctx
        .schema
        .by_set(&seg.name)
        .ok_or_else(|| ApiError::segment_not_found(&seg.name))?;
    let id = resolve_key(ctx.conn, &def, seg.key.as_ref())?
        .ok_or_else(|| not_found_for_key(&def, seg.key.as_ref()))?;
    Ok((def, id))
}

/// The error for a key that matches no row.
pub fn not_found_for_key(def: &EntityDef, key: Option<&Key>) -> ApiError {
    match key {
        Some(Key::Guid(g)) => ApiError::record_not_found(&def.logical_name, g),
        _ => ApiError::new(
            StatusCode::NOT_FOUND,
            "0x80060891",
            format!(
                "A record with the specified key values does not exist in {} entity",
                def.logical_name
            ),
        ),
    }
}

/// Turns a key into a row id: GUID keys are returned as-is (existence is the caller's concern
/// for upserts); alternate keys are looked up. `Ok(None)` = alternate key with no match.
pub fn resolve_key(
    conn: &Connection,
    def: &EntityDef,
    key: Option<&Key>,
) -> ApiResult<Option<String>> {
    match key {
        Some(Key::Guid(g)) => {
            if store::get(conn, def, g)?.is_some() {
                Ok(Some(g.clone()))
            } else {
                Ok(None)
            }
        }
        Some(Key::Named(pairs)) => {
            let pairs = normalize_alternate_key(def, pairs)?;
            Ok(store::find_by_key(conn, def, &pairs)?)
        }
        _ => Err(ApiError::bad_request(
            "The key is not valid for this entity.",
        )),
    }
}

/// Validates that named key parts form a defined alternate key (order-insensitive).
pub fn normalize_alternate_key(
    def: &EntityDef,
    pairs: &[(String, Value)],
) -> ApiResult<Vec<(String, Value)>> {
    if pairs.len() == 1
        && pairs[0].0 == def.primary_key
        && let Value::String(s) = &pairs[0].1
    {
        return Ok(vec![(
            def.primary_key.clone(),
            Value::String(s.to_lowercase()),
        )]);
    }
    let mut names: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    names.sort();
    let defined = def.alternate_keys.iter().any(|k| {
        let mut cols: Vec<&str> = k.iter().map(String::as_str).collect();
        cols.sort();
        cols == names
    });
    if !defined {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "0x80060890",
            format!(
                "The specified key attributes are not a defined key for the {} entity",
                def.logical_name
            ),
        ));
    }
    Ok(pairs.to_vec())
}

fn validation(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "0x80044331", message)
}

fn cannot_convert(value: &Value, edm: &str) -> ApiError {
    let lit = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "0x0",
        format!("Cannot convert the literal '{lit}' to the expected type '{edm}'."),
    )
}

/// Checks and normalizes one value for a column.
pub fn coerce(def: &EntityDef, col: &ColumnDef, value: &Value) -> ApiResult<Value> {
    if value.is_null() {
        if col.required {
            return Err(validation(format!(
                "A validation error occurred. The value of '{}' on record of type '{}' cannot be null.",
                col.logical_name, def.logical_name
            )));
        }
        return Ok(Value::Null);
    }
    let bad = || cannot_convert(value, col.ty.edm_type());
    Ok(match &col.ty {
        ColumnType::String { max_len } | ColumnType::Memo { max_len } => {
            let s = value.as_str().ok_or_else(bad)?;
            if s.chars().count() > *max_len as usize {
                return Err(validation(format!(
                    "A validation error occurred. The length of the '{}' attribute of the '{}' entity exceeded the maximum allowed length of '{}'.",
                    col.logical_name, def.logical_name, max_len
                )));
            }
            value.clone()
        }
        ColumnType::Integer | ColumnType::BigInt => {
            let i = value.as_i64().ok_or_else(bad)?;
            if matches!(col.ty, ColumnType::Integer) && i32::try_from(i).is_err() {
                return Err(bad());
            }
            Value::from(i)
        }
        ColumnType::Decimal | ColumnType::Money | ColumnType::Double => {
            if !value.is_number() {
                return Err(bad());
            }
            value.clone()
        }
        ColumnType::Boolean => Value::Bool(value.as_bool().ok_or_else(bad)?),
        ColumnType::DateTime => {
            let s = value.as_str().ok_or_else(bad)?;
            let dt = chrono::DateTime::parse_from_rfc3339(s)
                .map(|d| d.with_timezone(&chrono::Utc))
                .or_else(|_| {
                    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                        .map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
                })
                .map_err(|_| bad())?;
            Value::String(dt.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        }
        ColumnType::Uniqueidentifier | ColumnType::Lookup { .. } => {
            let s = value.as_str().ok_or_else(bad)?;
            let u = uuid::Uuid::parse_str(s.trim_matches(|c| c == '{' || c == '}'))
                .map_err(|_| bad())?;
            Value::String(u.to_string())
        }
        ColumnType::Picklist { options } | ColumnType::State { options } => {
            let i = value.as_i64().ok_or_else(bad)?;
            if !options.iter().any(|(v, _)| *v == i) {
                return Err(out_of_range(def, col, i, options.iter().map(|o| o.0)));
            }
            Value::from(i)
        }
        ColumnType::Status { options } => {
            let i = value.as_i64().ok_or_else(bad)?;
            if !options.iter().any(|(v, _, _)| *v == i) {
                return Err(out_of_range(def, col, i, options.iter().map(|o| o.0)));
            }
            Value::from(i)
        }
    })
}

fn out_of_range(
    def: &EntityDef,
    col: &ColumnDef,
    value: i64,
    accepted: impl Iterator<Item = i64>,
) -> ApiError {
    let list: Vec<String> = accepted.map(|v| v.to_string()).collect();
    validation(format!(
        "A validation error occurred. The value {value} of '{}' on record of type '{}' is outside the valid range. Accepted Values: {}",
        col.logical_name,
        def.logical_name,
        list.join(",")
    ))
}

/// Applies a request body to a row (new or existing): validates columns, binds lookups.
pub fn apply_body(
    ctx: &WriteCtx<'_>,
    def: &EntityDef,
    row: &mut Row,
    body: &Map<String, Value>,
    creating: bool,
) -> ApiResult<()> {
    for (k, v) in body {
        if k.starts_with('@') || k.contains("@odata.type") || k.contains("@OData.Community") {
            continue;
        }
        if let Some(nav) = k.strip_suffix("@odata.bind") {
            bind(ctx, def, row, nav, v)?;
            continue;
        }
        if k.contains('@') {
            continue;
        }
        let Some(col) = def.column(k) else {
            if k.starts_with('_') && k.ends_with("_value") {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "0x80060888",
                    format!(
                        "Invalid property '{k}' was found in entity '{}'.",
                        def.type_name()
                    ),
                ));
            }
            if let Some(col) = nav_column(def, k) {
                if v.is_null() {
                    row.insert(col.wire_name(), Value::Null);
                    continue;
                }
                return Err(ApiError::bad_request(format!(
                    "An undeclared property '{k}' which only has property annotations in the payload but no property value was found in the payload."
                )));
            }
            return Err(ApiError::unknown_property(&def.logical_name, k));
        };
        if col.is_lookup() {
            if v.is_null() {
                row.insert(col.wire_name(), Value::Null);
                continue;
            }
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "0x0",
                format!(
                    "A 'PrimitiveValue' node with non-null value was found when trying to read the value of the property '{k}'; however, a 'StartArray' node, a 'StartObject' node, or a 'PrimitiveValue' node with null value was expected."
                ),
            ));
        }
        if col.logical_name == def.primary_key {
            if creating {
                let v = coerce(def, col, v)?;
                row.insert(col.logical_name.clone(), v);
            }
            continue;
        }
        let writable = if creating {
            col.valid_for_create
        } else {
            col.valid_for_update
        };
        if !writable {
            continue; // system-managed columns are ignored, as the platform does
        }
        let v = coerce(def, col, v)?;
        row.insert(col.logical_name.clone(), v);
    }
    Ok(())
}

/// Finds the lookup column behind a navigation property name (`parentcustomerid_account` → `parentcustomerid`).
pub fn nav_column<'d>(def: &'d EntityDef, nav: &str) -> Option<&'d ColumnDef> {
    // A multi-target lookup (customer) has one navigation property per target and none under its
    // own name; `ownerid` is the exception (a single `principal` navigation property).
    if let Some(c) = def.column(nav).filter(|c| c.is_lookup()) {
        let multi = matches!(&c.ty, ColumnType::Lookup { targets } if targets.len() > 1);
        return (!multi || c.logical_name == "ownerid").then_some(c);
    }
    def.columns.iter().find(|c| match &c.ty {
        ColumnType::Lookup { targets } => targets
            .iter()
            .any(|t| nav == format!("{}_{}", c.logical_name, t)),
        _ => false,
    })
}

fn bind(ctx: &WriteCtx<'_>, def: &EntityDef, row: &mut Row, nav: &str, v: &Value) -> ApiResult<()> {
    let col = nav_column(def, nav).ok_or_else(|| {
        ApiError::bad_request(format!(
            "An undeclared property '{nav}' which only has property annotations in the payload but no property value was found in the payload. In OData, only declared navigation properties and declared named streams can be represented as properties without values."
        ))
    })?;
    if matches!(
        col.logical_name.as_str(),
        "createdby" | "modifiedby" | "createdonbehalfby" | "modifiedonbehalfby"
    ) {
        return Ok(());
    }
    let wire = col.wire_name();
    let reference = match v {
        Value::Null => {
            row.insert(wire.clone(), Value::Null);
            row.remove(&format!("{wire}@Microsoft.Dynamics.CRM.lookuplogicalname"));
            return Ok(());
        }
        Value::String(s) => s,
        _ => {
            return Err(ApiError::bad_request(format!(
                "The value of '{nav}@odata.bind' must be a string URL."
            )));
        }
    };
    let (target, id) = resolve_reference(ctx, reference)?;
    let ColumnType::Lookup { targets } = &col.ty else {
        return Err(ApiError::internal("lookup column without targets"));
    };
    let nav_target = nav.strip_prefix(&format!("{}_", col.logical_name));
    let allowed = targets.iter().any(|t| *t == target.logical_name)
        && nav_target.is_none_or(|t| t == target.logical_name);
    if !allowed {
        return Err(ApiError::bad_request(format!(
            "A navigation property '{nav}' cannot reference an entity of type '{}'.",
            target.type_name()
        )));
    }
    if ctx.caller.rights(&target.logical_name) & (READ | APPEND_TO) == 0 {
        return Err(ctx.caller.deny(
            &crate::security::privilege_name(&target, APPEND_TO),
            Some(&target),
        ));
    }
    row.insert(wire.clone(), Value::String(id));
    row.insert(
        format!("{wire}@Microsoft.Dynamics.CRM.lookuplogicalname"),
        Value::String(target.logical_name.clone()),
    );
    Ok(())
}

/// (statecode options, statuscode options with their owning state).
type StateOptions<'a> = (&'a Vec<(i64, String)>, &'a Vec<(i64, String, i64)>);

fn status_options(def: &EntityDef) -> Option<StateOptions<'_>> {
    let states = match &def.column("statecode")?.ty {
        ColumnType::State { options } => options,
        _ => return None,
    };
    let statuses = match &def.column("statuscode")?.ty {
        ColumnType::Status { options } => options,
        _ => return None,
    };
    Some((states, statuses))
}

/// Fills defaults and checks the statecode/statuscode pair.
pub fn fix_state(
    def: &EntityDef,
    row: &mut Row,
    body: &Map<String, Value>,
    id: &str,
) -> ApiResult<()> {
    let Some((states, statuses)) = status_options(def) else {
        return Ok(());
    };
    let state = row.get("statecode").and_then(Value::as_i64).unwrap_or(0);
    let body_has_status = body.contains_key("statuscode");
    let status = row.get("statuscode").and_then(Value::as_i64);
    let default_status = statuses.iter().find(|s| s.2 == state).map(|s| s.0);
    let status = match status {
        Some(s) if body_has_status || !body.contains_key("statecode") => s,
        _ => default_status.unwrap_or(1),
    };
    let ok = statuses.iter().any(|s| s.0 == status && s.2 == state);
    if !ok {
        let state_label = states
            .iter()
            .find(|s| s.0 == state)
            .map(|s| s.1.replace(' ', ""))
            .unwrap_or_default();
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "0x80048408",
            format!(
                "{status} is not a valid status code for state code {}State.{state_label} on {} with Id {id}.",
                def.schema_name, def.logical_name
            ),
        ));
    }
    row.insert("statecode".into(), Value::from(state));
    row.insert("statuscode".into(), Value::from(status));
    Ok(())
}

/// Computes `fullname` from first and last names.
pub fn compute_fullname(def: &EntityDef, row: &mut Row) {
    if !def.has_fullname() {
        return;
    }
    let f = row.get("firstname").and_then(Value::as_str).unwrap_or("");
    let l = row.get("lastname").and_then(Value::as_str).unwrap_or("");
    let full = format!("{f} {l}").trim().to_string();
    row.insert("fullname".into(), Value::String(full));
}

/// Sets the system columns of a row being written.
pub fn stamp(
    def: &EntityDef,
    row: &mut Row,
    caller: &Caller,
    version: i64,
    now: &str,
    creating: bool,
) {
    let who = Value::String(caller.user_id.clone());
    let sys = Value::String("systemuser".into());
    // Impersonated writes record the real caller as the delegate, like the platform.
    let delegate = caller
        .calling_user_id
        .as_ref()
        .map(|d| Value::String(d.clone()))
        .unwrap_or(Value::Null);
    let annotate = |row: &mut Row, wire: &str| {
        if delegate.is_null() {
            row.remove(&format!("{wire}@Microsoft.Dynamics.CRM.lookuplogicalname"));
        } else {
            row.insert(
                format!("{wire}@Microsoft.Dynamics.CRM.lookuplogicalname"),
                Value::String("systemuser".into()),
            );
        }
    };
    if creating {
        row.insert("_createdonbehalfby_value".into(), delegate.clone());
        annotate(row, "_createdonbehalfby_value");
    }
    row.insert("_modifiedonbehalfby_value".into(), delegate.clone());
    annotate(row, "_modifiedonbehalfby_value");
    if creating {
        // Two-option columns start at their default (false), never null.
        for c in &def.columns {
            if matches!(c.ty, ColumnType::Boolean) && !row.contains_key(&c.logical_name) {
                row.insert(c.logical_name.clone(), Value::Bool(false));
            }
        }
        row.insert("createdon".into(), Value::String(now.to_string()));
        row.insert("_createdby_value".into(), who.clone());
        row.insert(
            "_createdby_value@Microsoft.Dynamics.CRM.lookuplogicalname".into(),
            sys.clone(),
        );
        if def.user_owned {
            if row.get("_ownerid_value").is_none_or(|v| v.is_null()) {
                row.insert("_ownerid_value".into(), who.clone());
                row.insert(
                    "_ownerid_value@Microsoft.Dynamics.CRM.lookuplogicalname".into(),
                    sys.clone(),
                );
            }
            row.insert(
                "_owningbusinessunit_value".into(),
                Value::String(caller.business_unit_id.clone()),
            );
        }
    }
    row.insert("modifiedon".into(), Value::String(now.to_string()));
    row.insert("_modifiedby_value".into(), who);
    row.insert(
        "_modifiedby_value@Microsoft.Dynamics.CRM.lookuplogicalname".into(),
        sys,
    );
    row.insert("versionnumber".into(), Value::from(version));
}

/// Checks system-required columns on create.
pub fn check_required(def: &EntityDef, row: &Row) -> ApiResult<()> {
    for c in def.columns.iter().filter(|c| c.required) {
        if row.get(&c.wire_name()).is_none_or(Value::is_null) {
            return Err(validation(format!(
                "A validation error occurred. The value of '{}' on record of type '{}' is required.",
                c.logical_name, def.logical_name
            )));
        }
    }
    Ok(())
}

/// Checks alternate-key uniqueness for a row being written.
pub fn check_unique_keys(conn: &Connection, def: &EntityDef, id: &str, row: &Row) -> ApiResult<()> {
    for key in &def.alternate_keys {
        let values: Vec<(String, Value)> = key
            .iter()
            .map(|c| (c.clone(), row.get(c).cloned().unwrap_or(Value::Null)))
            .collect();
        if values.iter().any(|(_, v)| v.is_null()) {
            continue;
        }
        if let Some(other) = store::find_by_key(conn, def, &values)?
            && other != id
        {
            let shown: Vec<String> = values
                .iter()
                .map(|(_, v)| {
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string())
                })
                .collect();
            return Err(ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "0x80060892",
                format!(
                    "Entity Key {} violated. A record with the same value for {} already exists. A duplicate record cannot be created. Try again with different values.",
                    key.join("_"),
                    shown.join(",")
                ),
            ));
        }
    }
    Ok(())
}

/// Which annotations the caller asked for with `odata.include-annotations`.
#[derive(Clone, Debug, Default)]
pub struct Annotations {
    patterns: Vec<String>,
}

impl Annotations {
    pub fn new(patterns: Vec<String>) -> Self {
        Annotations { patterns }
    }
    pub fn wants(&self, name: &str) -> bool {
        self.patterns.iter().any(|p| {
            let p = p.trim();
            p == "*"
                || p == name
                || p.strip_suffix('*')
                    .is_some_and(|prefix| name.starts_with(prefix))
        })
    }
    pub fn any(&self) -> bool {
        !self.patterns.is_empty()
    }
}

/// Renders a stored row in the wire shape: `@odata.etag` first, the selected (or all) columns.
pub fn project(
    def: &EntityDef,
    row: &Row,
    select: Option<&[String]>,
    ann: &Annotations,
) -> Map<String, Value> {
    let mut out = Map::new();
    let version = row
        .get("versionnumber")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    out.insert(
        "@odata.etag".into(),
        Value::String(format!("W/\"{version}\"")),
    );
    let mut emit = |col: &ColumnDef| {
        let wire = col.wire_name();
        let v = row.get(&wire).cloned().unwrap_or(Value::Null);
        if ann.any() && !v.is_null() {
            if let Some(label) = formatted(col, &v)
                && ann.wants("OData.Community.Display.V1.FormattedValue")
            {
                out.insert(
                    format!("{wire}@OData.Community.Display.V1.FormattedValue"),
                    Value::String(label),
                );
            }
            if col.is_lookup() {
                if ann.wants("Microsoft.Dynamics.CRM.associatednavigationproperty") {
                    // Multi-target lookups name the navigation property of the actual target
                    // (`parentcustomerid_account`); `ownerid` is a single navigation property.
                    let target = row
                        .get(&format!("{wire}@Microsoft.Dynamics.CRM.lookuplogicalname"))
                        .and_then(Value::as_str);
                    let nav = match (&col.ty, target) {
                        (ColumnType::Lookup { targets }, Some(t))
                            if targets.len() > 1 && col.logical_name != "ownerid" =>
                        {
                            format!("{}_{t}", col.logical_name)
                        }
                        _ => col.logical_name.clone(),
                    };
                    out.insert(
                        format!("{wire}@Microsoft.Dynamics.CRM.associatednavigationproperty"),
                        Value::String(nav),
                    );
                }
                if ann.wants("Microsoft.Dynamics.CRM.lookuplogicalname") {
                    let target = row
                        .get(&format!("{wire}@Microsoft.Dynamics.CRM.lookuplogicalname"))
                        .cloned()
                        .unwrap_or(Value::Null);
                    out.insert(
                        format!("{wire}@Microsoft.Dynamics.CRM.lookuplogicalname"),
                        target,
                    );
                }
            }
        }
        out.insert(wire, v);
    };
    match select {
        Some(cols) => {
            for name in cols {
                if let Some(c) = def.column_by_wire(name).or_else(|| def.column(name)) {
                    emit(c);
                }
            }
            if let Some(pk) = def.column(&def.primary_key)
                && !cols.iter().any(|c| c == &def.primary_key)
            {
                emit(pk);
            }
        }
        None => {
            for c in &def.columns {
                emit(c);
            }
        }
    }
    out
}

fn formatted(col: &ColumnDef, v: &Value) -> Option<String> {
    match &col.ty {
        ColumnType::Picklist { options } | ColumnType::State { options } => {
            let i = v.as_i64()?;
            options.iter().find(|o| o.0 == i).map(|o| o.1.clone())
        }
        ColumnType::Status { options } => {
            let i = v.as_i64()?;
            options.iter().find(|o| o.0 == i).map(|o| o.1.clone())
        }
        ColumnType::Boolean => Some(if v.as_bool()? { "Yes" } else { "No" }.to_string()),
        ColumnType::Money => Some(format!("${:.2}", v.as_f64()?)),
        ColumnType::DateTime => {
            let text = v.as_str()?;
            // Rendered for an en-US user in UTC, like the service's user-local formatting.
            match chrono::DateTime::parse_from_rfc3339(text) {
                Ok(t) => Some(
                    t.with_timezone(&chrono::Utc)
                        .format("%-m/%-d/%Y %-I:%M %p")
                        .to_string(),
                ),
                Err(_) => chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
                    .ok()
                    .map(|d| d.format("%-m/%-d/%Y").to_string()),
            }
        }
        ColumnType::Integer => Some(group_thousands(v.as_i64()?)),
        _ => None,
    }
}

/// `1234567` → `1,234,567` (en-US number formatting).
fn group_thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// [`project`] plus the `FormattedValue` of lookups (the target record's primary name), which
/// needs the store.
pub fn project_full(
    conn: &Connection,
    schema: &Schema,
    def: &EntityDef,
    row: &Row,
    select: Option<&[String]>,
    ann: &Annotations,
) -> Map<String, Value> {
    let mut out = project(def, row, select, ann);
    if !ann.wants("OData.Community.Display.V1.FormattedValue") {
        return out;
    }
    let lookups: Vec<(String, String, String)> = out
        .iter()
        .filter_map(|(k, v)| {
            let id = v.as_str()?;
            let col = def.column_by_wire(k).filter(|c| c.is_lookup())?;
            let wire = col.wire_name();
            let target = row
                .get(&format!("{wire}@Microsoft.Dynamics.CRM.lookuplogicalname"))
                .and_then(Value::as_str)?;
            Some((wire, target.to_string(), id.to_string()))
        })
        .collect();
    for (wire, target, id) in lookups {
        let Some(tdef) = schema.by_logical(&target) else {
            continue;
        };
        let Some(name_col) = tdef.primary_name.clone() else {
            continue;
        };
        if let Ok(Some(trow)) = store::get(conn, &tdef, &id)
            && let Some(name) = trow.get(&name_col).and_then(Value::as_str)
        {
            out.insert(
                format!("{wire}@OData.Community.Display.V1.FormattedValue"),
                Value::String(name.to_string()),
            );
        }
    }
    out
}
