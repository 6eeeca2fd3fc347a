//! Companies, opportunities and opportunity roles: describe, query, sync (`dedupeBy`) and delete, with their
//! id and dedupe fields and the per-record statuses (`seq` in input order).

use std::collections::HashSet;

use rusqlite::{OptionalExtension, params};
use serde_json::{Map, Value, json};

use crate::envelope::{ApiError, ApiResult, Reply, skipped};
use crate::fields::FieldDef;
use crate::paging;
use crate::routes::{AppState, Ctx};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Company,
    Opportunity,
    Role,
    /// Sales owners (Dynamics system users): leads, companies and opportunities point at them through
    /// `externalSalesPersonId`.
    SalesPerson,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Root,
    Describe,
    Delete,
}

type FieldSpec = (&'static str, &'static str, &'static str, Option<i64>, bool);

const COMPANY_FIELDS: &[FieldSpec] = &[
    ("id", "Id", "integer", None, false),
    (
        "externalCompanyId",
        "External Company Id",
        "string",
        Some(100),
        false,
    ),
    ("company", "Company Name", "string", Some(255), true),
    ("website", "Website", "url", Some(255), true),
    ("mainPhone", "Main Phone", "phone", Some(255), true),
    ("annualRevenue", "Annual Revenue", "currency", None, true),
    ("numberOfEmployees", "Num Employees", "integer", None, true),
    ("industry", "Industry", "string", Some(255), true),
    ("sicCode", "SIC Code", "string", Some(40), true),
    ("billingStreet", "Billing Street", "string", Some(255), true),
    ("billingCity", "Billing City", "string", Some(255), true),
    ("billingState", "Billing State", "string", Some(255), true),
    (
        "billingPostalCode",
        "Billing Postal Code",
        "string",
        Some(255),
        true,
    ),
    (
        "billingCountry",
        "Billing Country",
        "string",
        Some(255),
        true,
    ),
    (
        "externalSalesPersonId",
        "External Sales Person Id",
        "string",
        Some(100),
        true,
    ),
    ("createdAt", "Created At", "datetime", None, false),
    ("updatedAt", "Updated At", "datetime", None, false),
];

const OPPORTUNITY_FIELDS: &[FieldSpec] = &[
    ("marketoGUID", "Marketo GUID", "string", Some(36), false),
    (
        "externalOpportunityId",
        "External Opportunity Id",
        "string",
        Some(50),
        false,
    ),
    ("name", "Name", "string", Some(255), true),
    ("description", "Description", "string", Some(2000), true),
    ("amount", "Amount", "currency", None, true),
    ("closeDate", "Close Date", "date", None, true),
    (
        "expectedRevenue",
        "Expected Revenue",
        "currency",
        None,
        true,
    ),
    ("fiscalQuarter", "Fiscal Quarter", "integer", None, true),
    ("fiscalYear", "Fiscal Year", "integer", None, true),
    ("isClosed", "Is Closed", "boolean", None, true),
    ("isWon", "Is Won", "boolean", None, true),
    ("lastActivityDate", "Last Activity Date", "date", None, true),
    ("leadSource", "Lead Source", "string", Some(255), true),
    ("nextStep", "Next Step", "string", Some(255), true),
    ("probability", "Probability", "integer", None, true),
    ("stage", "Stage", "string", Some(255), true),
    ("type", "Type", "string", Some(255), true),
    (
        "externalCompanyId",
        "External Company Id",
        "string",
        Some(100),
        true,
    ),
    (
        "externalSalesPersonId",
        "External Sales Person Id",
        "string",
        Some(100),
        true,
    ),
    (
        "externalCreatedDate",
        "External Created Date",
        "datetime",
        None,
        true,
    ),
    ("createdAt", "Created At", "datetime", None, false),
    ("updatedAt", "Updated At", "datetime", None, false),
];

/// `GET /rest/v1/salespersons/describe.json` (names, display names and flags from the Sales Persons doc;
/// the person fields are the ones its examples sync).
const SALES_PERSON_FIELDS: &[FieldSpec] = &[
    ("id", "Marketo Id", "integer", None, false),
    ("createdAt", "Created At", "datetime", None, false),
    ("updatedAt", "Updated At", "datetime", None, false),
    ("email", "Email", "string", Some(255), false),
    (
        "externalSalesPersonId",
        "External Sales Person Id",
        "string",
        Some(255),
        false,
    ),
    ("firstName", "First Name", "string", Some(255), true),
    ("lastName", "Last Name", "string", Some(255), true),
    ("phone", "Phone Number", "phone", Some(255), true),
    (
        "mobilePhone",
        "Mobile Phone Number",
        "phone",
        Some(255),
        true,
    ),
    ("fax", "Fax Number", "phone", Some(255), true),
    ("title", "Job Title", "string", Some(255), true),
];

/// `GET /rest/v1/namedaccounts/describe.json` (read-only here: named accounts are not synced by mdsync).
const NAMED_ACCOUNT_FIELDS: &[FieldSpec] = &[
    ("marketoGUID", "Marketo GUID", "string", Some(36), false),
    ("name", "Name", "string", Some(255), false),
    ("createdAt", "Created At", "datetime", None, false),
    ("updatedAt", "Updated At", "datetime", None, false),
    ("annualRevenue", "Annual Revenue", "currency", None, true),
    ("city", "City", "string", Some(255), true),
    ("country", "Country", "string", Some(255), true),
    ("domainName", "Domain Name", "string", Some(255), true),
    ("industry", "Industry", "string", Some(255), true),
    ("logoUrl", "Logo Url", "string", Some(255), true),
    ("numberOfEmployees", "Num Employees", "integer", None, true),
    ("sicCode", "SIC Code", "string", Some(40), true),
    ("state", "State", "string", Some(255), true),
    (
        "membershipCount",
        "Membership Count",
        "integer",
        None,
        false,
    ),
    ("opptyAmount", "Opportunity Amount", "currency", None, false),
    ("opptyCount", "Opportunity Count", "integer", None, false),
];

/// The named-account describe record (the object itself is not stored).
pub fn describe_named_accounts() -> ApiResult {
    Ok(Reply::result(vec![describe_record(
        "Named Account",
        NAMED_ACCOUNT_FIELDS,
        "marketoGUID",
        &["name"],
        vec![
            vec!["name"],
            vec!["marketoGUID"],
            vec!["domainName"],
            vec!["city"],
            vec!["country"],
        ],
    )]))
}

const ROLE_FIELDS: &[FieldSpec] = &[
    ("marketoGUID", "Marketo GUID", "string", Some(36), false),
    (
        "externalOpportunityId",
        "External Opportunity Id",
        "string",
        Some(50),
        false,
    ),
    ("leadId", "Lead Id", "integer", None, false),
    ("role", "Role", "string", Some(50), false),
    ("isPrimary", "Is Primary", "boolean", None, true),
    (
        "externalCreatedDate",
        "External Created Date",
        "datetime",
        None,
        true,
    ),
    ("createdAt", "Created At", "datetime", None, false),
    ("updatedAt", "Updated At", "datetime", None, false),
];

impl Kind {
    /// Maps the path after `/rest/v1/` to an object kind and action.
    pub fn from_path(rest: &[&str]) -> Option<(Kind, Action)> {
        Some(match rest {
            ["companies.json"] => (Kind::Company, Action::Root),
            ["companies", "describe.json"] => (Kind::Company, Action::Describe),
            ["companies", "delete.json"] => (Kind::Company, Action::Delete),
            ["opportunities.json"] => (Kind::Opportunity, Action::Root),
            ["opportunities", "describe.json"] => (Kind::Opportunity, Action::Describe),
            ["opportunities", "delete.json"] => (Kind::Opportunity, Action::Delete),
            ["opportunities", "roles.json"] => (Kind::Role, Action::Root),
            ["opportunities", "roles", "describe.json"] => (Kind::Role, Action::Describe),
            ["opportunities", "roles", "delete.json"] => (Kind::Role, Action::Delete),
            ["salespersons.json"] => (Kind::SalesPerson, Action::Root),
            ["salespersons", "describe.json"] => (Kind::SalesPerson, Action::Describe),
            ["salespersons", "delete.json"] => (Kind::SalesPerson, Action::Delete),
            _ => return None,
        })
    }

    pub fn tag(self) -> &'static str {
        match self {
            Kind::Company => "company",
            Kind::Opportunity => "opportunity",
            Kind::Role => "role",
            Kind::SalesPerson => "salesperson",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Company => "Company",
            Kind::Opportunity => "Opportunity",
            Kind::Role => "Opportunity Role",
            Kind::SalesPerson => "SalesPerson",
        }
    }

    fn specs(self) -> &'static [FieldSpec] {
        match self {
            Kind::Company => COMPANY_FIELDS,
            Kind::Opportunity => OPPORTUNITY_FIELDS,
            Kind::Role => ROLE_FIELDS,
            Kind::SalesPerson => SALES_PERSON_FIELDS,
        }
    }

    fn id_field(self) -> &'static str {
        if self.integer_id() {
            "id"
        } else {
            "marketoGUID"
        }
    }

    /// Companies and sales persons are keyed by an integer `id`, the others by a `marketoGUID`.
    fn integer_id(self) -> bool {
        matches!(self, Kind::Company | Kind::SalesPerson)
    }

    pub fn dedupe_fields(self) -> &'static [&'static str] {
        match self {
            Kind::Company => &["externalCompanyId"],
            Kind::Opportunity => &["externalOpportunityId"],
            Kind::Role => &["externalOpportunityId", "leadId", "role"],
            Kind::SalesPerson => &["externalSalesPersonId"],
        }
    }

    fn searchable(self) -> Vec<Vec<&'static str>> {
        match self {
            Kind::Company => vec![vec!["externalCompanyId"], vec!["id"], vec!["company"]],
            Kind::Opportunity => vec![
                vec!["externalOpportunityId"],
                vec!["marketoGUID"],
                vec!["externalCompanyId"],
            ],
            Kind::Role => vec![
                vec!["externalOpportunityId", "leadId", "role"],
                vec!["marketoGUID"],
                vec!["leadId"],
                vec!["externalOpportunityId"],
            ],
            Kind::SalesPerson => vec![vec!["email"], vec!["id"], vec!["externalSalesPersonId"]],
        }
    }

    fn field(self, name: &str) -> Option<FieldDef> {
        self.specs()
            .iter()
            .enumerate()
            .find(|(_, s)| s.0 == name)
            .map(|(i, s)| FieldDef {
                id: i as i64 + 1,
                name: s.0.into(),
                display_name: s.1.into(),
                data_type: s.2.into(),
                length: s.3,
                read_only: !s.4,
                searchable: false,
                is_custom: false,
                is_hidden: false,
                description: None,
                is_html_encoding: false,
                is_sensitive: false,
            })
    }
}

/// `GET <object>/describe.json`.
pub fn describe(kind: Kind) -> ApiResult {
    Ok(Reply::result(vec![describe_record(
        kind.name(),
        kind.specs(),
        kind.id_field(),
        kind.dedupe_fields(),
        kind.searchable(),
    )]))
}

fn describe_record(
    name: &str,
    specs: &[FieldSpec],
    id_field: &str,
    dedupe: &[&str],
    searchable: Vec<Vec<&str>>,
) -> Value {
    let fields: Vec<Value> = specs
        .iter()
        .map(|(name, display, data_type, length, updateable)| {
            let mut m = Map::new();
            m.insert("name".into(), json!(name));
            m.insert("displayName".into(), json!(display));
            m.insert("dataType".into(), json!(data_type));
            if let Some(l) = length {
                m.insert("length".into(), json!(l));
            }
            m.insert("updateable".into(), json!(updateable));
            Value::Object(m)
        })
        .collect();
    json!({
        "name": name,
        "description": format!("Map of {name} fields"),
        "createdAt": "2016-01-01T00:00:00Z",
        "updatedAt": "2016-01-01T00:00:00Z",
        "idField": id_field,
        "dedupeFields": dedupe,
        "searchableFields": searchable,
        "fields": fields,
    })
}

/// A stored record.
struct Record {
    id: i64,
    guid: String,
    created_at: i64,
    updated_at: i64,
    data: Map<String, Value>,
}

impl Record {
    fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        let data: String = r.get(4)?;
        Ok(Self {
            id: r.get(0)?,
            guid: r.get(1)?,
            created_at: r.get(2)?,
            updated_at: r.get(3)?,
            data: match serde_json::from_str(&data) {
                Ok(Value::Object(m)) => m,
                _ => Map::new(),
            },
        })
    }

    fn value(&self, name: &str) -> Value {
        match name {
            "id" => json!(self.id),
            "marketoGUID" => json!(self.guid),
            "createdAt" => json!(crate::time::format(self.created_at)),
            "updatedAt" => json!(crate::time::format(self.updated_at)),
            other => self.data.get(other).cloned().unwrap_or(Value::Null),
        }
    }

    fn key(&self, kind: Kind) -> Value {
        if kind.integer_id() {
            json!(self.id)
        } else {
            json!(self.guid)
        }
    }

    /// A field as queries show it: opportunity currency values are strings (`"amount":"1604.47"` in
    /// the Opportunities doc), everything else as stored.
    fn shown(&self, kind: Kind, name: &str) -> Value {
        let v = self.value(name);
        if kind == Kind::Opportunity
            && let Value::Number(n) = &v
            && kind.field(name).is_some_and(|d| d.data_type == "currency")
        {
            return Value::String(n.to_string());
        }
        v
    }
}

const SELECT: &str = "SELECT id, guid, created_at, updated_at, data FROM objects";

/// Dedupe key text of a record's input (None when a dedupe field is missing).
fn dedupe_key(kind: Kind, values: &Map<String, Value>) -> Option<String> {
    let parts: Option<Vec<Value>> = kind
        .dedupe_fields()
        .iter()
        .map(|f| values.get(*f).filter(|v| !v.is_null()).cloned())
        .collect();
    parts.map(|p| Value::Array(p).to_string())
}

fn by_dedupe(
    conn: &rusqlite::Connection,
    kind: Kind,
    key: &str,
) -> Result<Option<Record>, ApiError> {
    Ok(conn
        .prepare_cached(&format!("{SELECT} WHERE kind = ?1 AND dedupe = ?2"))?
        .query_row(params![kind.tag(), key], Record::from_row)
        .optional()?)
}

fn by_id(conn: &rusqlite::Connection, kind: Kind, id: &Value) -> Result<Option<Record>, ApiError> {
    let found = match kind {
        Kind::Company | Kind::SalesPerson => {
            let Some(id) = id
                .as_i64()
                .or_else(|| id.as_str().and_then(|s| s.parse().ok()))
            else {
                return Ok(None);
            };
            conn.prepare_cached(&format!("{SELECT} WHERE kind = ?1 AND id = ?2"))?
                .query_row(params![kind.tag(), id], Record::from_row)
                .optional()?
        }
        _ => {
            let Some(guid) = id.as_str() else {
                return Ok(None);
            };
            conn.prepare_cached(&format!("{SELECT} WHERE kind = ?1 AND guid = ?2"))?
                .query_row(params![kind.tag(), guid], Record::from_row)
                .optional()?
        }
    };
    Ok(found)
}

fn validate(kind: Kind, record: &Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let mut out = Map::new();
    for (name, value) in record {
        let def = kind
            .field(name)
            .ok_or_else(|| ApiError::new("1006", format!("Field '{name}' not found")))?;
        if matches!(
            name.as_str(),
            "id" | "marketoGUID" | "createdAt" | "updatedAt"
        ) {
            continue;
        }
        out.insert(name.clone(), def.coerce(value)?);
    }
    Ok(out)
}

fn input_records(ctx: &Ctx) -> Result<Vec<Value>, ApiError> {
    match ctx.params.json_member("input") {
        Some(Value::Array(items)) if !items.is_empty() => {
            if items.len() > crate::leads::MAX_BATCH {
                Err(ApiError::invalid_data(
                    "Input array exceeds the maximum of 300 records",
                ))
            } else {
                Ok(items.clone())
            }
        }
        Some(Value::Array(_)) | None => Err(ApiError::blank("input")),
        Some(_) => Err(ApiError::invalid_data("input must be an array")),
    }
}

/// `POST <object>.json` with `action` and `dedupeBy`.
pub fn sync(state: &AppState, ctx: &Ctx, kind: Kind) -> ApiResult {
    let input = input_records(ctx)?;
    let action = ctx
        .params
        .get("action")
        .unwrap_or_else(|| "createOrUpdate".into());
    if !matches!(
        action.as_str(),
        "createOnly" | "updateOnly" | "createOrUpdate"
    ) {
        return Err(ApiError::invalid_data(format!("Invalid action '{action}'")));
    }
    let dedupe_by = ctx
        .params
        .get("dedupeBy")
        .unwrap_or_else(|| "dedupeFields".into());
    if !matches!(dedupe_by.as_str(), "dedupeFields" | "idField") {
        return Err(ApiError::invalid_data(format!(
            "Invalid dedupeBy '{dedupe_by}'"
        )));
    }
    if dedupe_by == "idField" && action != "updateOnly" {
        return Err(ApiError::invalid_data(
            "dedupeBy 'idField' is only allowed with action 'updateOnly'",
        ));
    }
    let mut conn = state.store.lock();
    let tx = conn.transaction()?;
    let now = crate::time::now();
    let mut seen = HashSet::new();
    let mut result = Vec::with_capacity(input.len());
    for (seq, record) in input.iter().enumerate() {
        let mut extra = Map::new();
        extra.insert("seq".into(), json!(seq));
        let outcome = (|| -> Result<Value, ApiError> {
            let Value::Object(record) = record else {
                return Err(ApiError::invalid_data("Invalid data"));
            };
            let values = validate(kind, record)?;
            let existing = if dedupe_by == "idField" {
                let id = record.get(kind.id_field()).cloned().ok_or_else(|| {
                    ApiError::new(
                        "1002",
                        format!(
                            "Missing value for the required parameter '{}'",
                            kind.id_field()
                        ),
                    )
                })?;
                if !seen.insert(id.to_string()) {
                    return Err(ApiError::new("1036", "Duplicate object found in input"));
                }
                by_id(&tx, kind, &id)?
            } else {
                let key = dedupe_key(kind, &values).ok_or_else(|| {
                    ApiError::new(
                        "1002",
                        format!(
                            "Missing value for the required parameter '{}'",
                            kind.dedupe_fields().join(",")
                        ),
                    )
                })?;
                if !seen.insert(key.clone()) {
                    return Err(ApiError::new("1036", "Duplicate object found in input"));
                }
                by_dedupe(&tx, kind, &key)?
            };
            match (existing, action.as_str()) {
                (Some(_), "createOnly") => Err(ApiError::new("1017", "Object already exists")),
                (None, "updateOnly") => Err(ApiError::new("1013", "Object not found")),
                (Some(mut rec), _) => {
                    for (k, v) in values {
                        if kind.dedupe_fields().contains(&k.as_str()) {
                            continue;
                        }
                        if v.is_null() {
                            rec.data.remove(&k);
                        } else {
                            rec.data.insert(k, v);
                        }
                    }
                    tx.prepare_cached(
                        "UPDATE objects SET data = ?1, updated_at = ?2 WHERE id = ?3",
                    )?
                    .execute(params![
                        serde_json::to_string(&rec.data)?,
                        now,
                        rec.id
                    ])?;
                    Ok(status(kind, "updated", &rec))
                }
                (None, _) => {
                    check_references(&tx, kind, &values)?;
                    let key = dedupe_key(kind, &values).unwrap_or_default();
                    let data: Map<String, Value> =
                        values.into_iter().filter(|(_, v)| !v.is_null()).collect();
                    let guid = uuid::Uuid::new_v4().to_string();
                    tx.prepare_cached(
                        "INSERT INTO objects(kind, guid, dedupe, data, created_at, updated_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                    )?
                    .execute(params![
                        kind.tag(),
                        guid,
                        key,
                        serde_json::to_string(&data)?,
                        now
                    ])?;
                    let rec = Record {
                        id: tx.last_insert_rowid(),
                        guid,
                        created_at: now,
                        updated_at: now,
                        data,
                    };
                    Ok(status(kind, "created", &rec))
                }
            }
        })();
        match outcome {
            Ok(Value::Object(mut m)) => {
                let mut ordered = extra;
                ordered.append(&mut m);
                result.push(Value::Object(ordered));
            }
            Ok(other) => result.push(other),
            Err(err @ ApiError::Api { .. }) if err.code() != Some("611") => {
                result.push(skipped(&err, extra));
            }
            Err(err) => return Err(err),
        }
    }
    tx.commit()?;
    Ok(Reply::result(result))
}

fn status(kind: Kind, status: &str, rec: &Record) -> Value {
    let mut m = Map::new();
    m.insert("status".into(), json!(status));
    m.insert(kind.id_field().into(), rec.key(kind));
    Value::Object(m)
}

/// New opportunities need a name; roles need an existing opportunity and lead.
fn check_references(
    conn: &rusqlite::Connection,
    kind: Kind,
    values: &Map<String, Value>,
) -> Result<(), ApiError> {
    match kind {
        Kind::Company | Kind::SalesPerson => Ok(()),
        Kind::Opportunity => {
            if values.get("name").is_none_or(Value::is_null) {
                return Err(ApiError::invalid_data(
                    "Value for field 'name' cannot be null",
                ));
            }
            Ok(())
        }
        Kind::Role => {
            let opp = values
                .get("externalOpportunityId")
                .cloned()
                .unwrap_or_default();
            let key = Value::Array(vec![opp.clone()]).to_string();
            if by_dedupe(conn, Kind::Opportunity, &key)?.is_none() {
                return Err(ApiError::new(
                    "1013",
                    format!("Opportunity '{}' not found", opp.as_str().unwrap_or("")),
                ));
            }
            let lead_id = values.get("leadId").and_then(Value::as_i64).unwrap_or(-1);
            if crate::lead_store::load(conn, lead_id)?.is_none() {
                return Err(ApiError::new("1004", "Lead not found"));
            }
            Ok(())
        }
    }
}

/// A sales person still owning a lead cannot be deleted (the doc's "in use" rule). Owners are rare and
/// deletes rarer, so one scan that stops at the first owned lead is fine.
fn sales_person_in_use(conn: &rusqlite::Connection, rec: &Record) -> Result<bool, ApiError> {
    let Some(external) = rec
        .data
        .get("externalSalesPersonId")
        .and_then(Value::as_str)
    else {
        return Ok(false);
    };
    Ok(conn
        .prepare_cached(
            "SELECT 1 FROM leads WHERE json_extract(data, '$.externalSalesPersonId') = ?1 LIMIT 1",
        )?
        .query_row([external], |_| Ok(()))
        .optional()?
        .is_some())
}

/// `POST <object>/delete.json` with `deleteBy`.
pub fn delete(state: &AppState, ctx: &Ctx, kind: Kind) -> ApiResult {
    let input = input_records(ctx)?;
    let delete_by = ctx
        .params
        .get("deleteBy")
        .unwrap_or_else(|| "dedupeFields".into());
    if !matches!(delete_by.as_str(), "dedupeFields" | "idField") {
        return Err(ApiError::invalid_data(format!(
            "Invalid deleteBy '{delete_by}'"
        )));
    }
    let mut conn = state.store.lock();
    let tx = conn.transaction()?;
    let mut result = Vec::with_capacity(input.len());
    for (seq, record) in input.iter().enumerate() {
        let mut extra = Map::new();
        extra.insert("seq".into(), json!(seq));
        let found = match record {
            Value::Object(m) if delete_by == "idField" => match m.get(kind.id_field()) {
                Some(id) => by_id(&tx, kind, id)?,
                None => None,
            },
            Value::Object(m) => match validate(kind, m).ok().and_then(|v| dedupe_key(kind, &v)) {
                Some(key) => by_dedupe(&tx, kind, &key)?,
                None => None,
            },
            _ => None,
        };
        match found {
            Some(rec) if kind == Kind::SalesPerson && sales_person_in_use(&tx, &rec)? => {
                result.push(skipped(&ApiError::new("1022", "Object in use"), extra));
            }
            Some(rec) => {
                tx.execute("DELETE FROM objects WHERE id = ?1", [rec.id])?;
                let mut m = extra;
                m.insert("status".into(), json!("deleted"));
                m.insert(kind.id_field().into(), rec.key(kind));
                result.push(Value::Object(m));
            }
            None => result.push(skipped(&ApiError::new("1013", "Object not found"), extra)),
        }
    }
    tx.commit()?;
    Ok(Reply::result(result))
}

/// `GET <object>.json?filterType=&filterValues=` or `POST ...?_method=GET` with a JSON `input` of
/// compound keys.
pub fn query(state: &AppState, ctx: &Ctx, kind: Kind) -> ApiResult {
    let filter_type = ctx.params.get("filterType").ok_or_else(|| {
        ApiError::new(
            "1002",
            "Missing value for the required parameter 'filterType'",
        )
    })?;
    let filter_type = match filter_type.as_str() {
        "idField" => kind.id_field().to_string(),
        "dedupeFields" if kind.dedupe_fields().len() == 1 => kind.dedupe_fields()[0].to_string(),
        other => other.to_string(),
    };
    let compound = filter_type == "dedupeFields";
    if !compound
        && !kind
            .searchable()
            .iter()
            .any(|s| s.len() == 1 && s[0] == filter_type)
    {
        return Err(ApiError::invalid_data(format!(
            "Invalid filterType '{filter_type}'"
        )));
    }
    let names = ctx.params.list("fields");
    let selected: Vec<String> = if names.is_empty() {
        let mut d = vec![kind.id_field().to_string()];
        d.extend(kind.dedupe_fields().iter().map(|s| s.to_string()));
        d.push("createdAt".into());
        d.push("updatedAt".into());
        d
    } else {
        for n in &names {
            if kind.field(n).is_none() {
                return Err(ApiError::new("1006", format!("Field '{n}' not found")));
            }
        }
        // Like `seq`, the idField is in every record whatever `fields` asks for (the docs' query
        // examples; leads behave the same with `id`).
        let mut selected = vec![kind.id_field().to_string()];
        selected.extend(names.into_iter().filter(|n| n != kind.id_field()));
        selected
    };
    let batch = match ctx.params.get("batchSize") {
        None => 300,
        Some(t) => t
            .parse::<i64>()
            .ok()
            .filter(|b| *b > 0)
            .map(|b| b.min(300))
            .ok_or_else(|| ApiError::invalid_value(&t, "integer"))?,
    };
    let after = match ctx.params.get("nextPageToken") {
        Some(t) => paging::decode(&t)?,
        None => 0,
    };
    let conn = state.store.lock();
    let (condition, binds): (String, Vec<String>) = if compound {
        let Some(Value::Array(input)) = ctx.params.json_member("input") else {
            return Err(ApiError::blank("input"));
        };
        let keys: Vec<String> = input
            .iter()
            .filter_map(|v| v.as_object())
            .filter_map(|m| validate(kind, m).ok())
            .filter_map(|m| dedupe_key(kind, &m))
            .collect();
        (
            "dedupe IN (SELECT value FROM json_each(?2))".into(),
            vec![serde_json::to_string(&keys)?],
        )
    } else {
        let values = ctx.params.list("filterValues");
        if values.is_empty() {
            return Err(ApiError::new(
                "1002",
                "Missing value for the required parameter 'filterValues'",
            ));
        }
        if values.len() > 300 {
            return Err(ApiError::invalid_data(
                "Too many filter values: at most 300 allowed",
            ));
        }
        let list = serde_json::to_string(&values)?;
        let condition = match filter_type.as_str() {
            "id" => "CAST(id AS TEXT) IN (SELECT value FROM json_each(?2))".to_string(),
            "marketoGUID" => "guid IN (SELECT value FROM json_each(?2))".to_string(),
            field => format!(
                "CAST(json_extract(data, '$.{field}') AS TEXT) IN (SELECT value FROM json_each(?2))"
            ),
        };
        (condition, vec![list])
    };
    let mut stmt = conn.prepare_cached(&format!(
        "{SELECT} WHERE kind = ?1 AND {condition} AND id > ?3 ORDER BY id LIMIT ?4"
    ))?;
    let mut records = stmt
        .query_map(
            params![kind.tag(), binds[0], after, batch + 1],
            Record::from_row,
        )?
        .collect::<Result<Vec<_>, _>>()?;
    let more = records.len() as i64 > batch;
    records.truncate(batch as usize);
    let result: Vec<Value> = records
        .iter()
        .enumerate()
        .map(|(seq, r)| {
            let mut m = Map::new();
            m.insert("seq".into(), json!(seq));
            for f in &selected {
                let v = r.shown(kind, f);
                if !v.is_null() {
                    m.insert(f.clone(), v);
                }
            }
            Value::Object(m)
        })
        .collect();
    let mut reply = Reply::result(result);
    if more && let Some(last) = records.last() {
        reply = reply
            .with(
                "nextPageToken",
                json!(paging::encode(crate::time::now(), last.id)),
            )
            .with("moreResult", json!(true));
    }
    Ok(reply)
}
