//! Lead field metadata (the standard fields plus custom fields created through the schema API) and the
//! type/length validation applied to synced values.

use rusqlite::{Connection, params};
use serde_json::{Map, Value, json};

use crate::envelope::ApiError;
use crate::store::StoreError;

/// One lead field.
#[derive(Debug, Clone)]
pub struct FieldDef {
    pub id: i64,
    pub name: String,
    pub display_name: String,
    pub data_type: String,
    pub length: Option<i64>,
    pub read_only: bool,
    pub searchable: bool,
    pub is_custom: bool,
    pub is_hidden: bool,
    pub description: Option<String>,
    pub is_html_encoding: bool,
    pub is_sensitive: bool,
}

/// Default fields of lead reads.
pub const DEFAULT_FIELDS: [&str; 6] = [
    "id",
    "updatedAt",
    "lastName",
    "email",
    "createdAt",
    "firstName",
];

/// (name, display name, type, length, read-only, searchable). REST names from the standard-fields list.
/// (name, display name, type, length, read-only, searchable).
type StandardField = (
    &'static str,
    &'static str,
    &'static str,
    Option<i64>,
    bool,
    bool,
);

const STANDARD: &[StandardField] = &[
    ("company", "Company Name", "string", Some(255), false, false),
    ("site", "Site", "string", Some(255), false, false),
    (
        "billingStreet",
        "Billing Address",
        "textarea",
        None,
        false,
        false,
    ),
    (
        "billingCity",
        "Billing City",
        "string",
        Some(255),
        false,
        false,
    ),
    (
        "billingState",
        "Billing State",
        "string",
        Some(255),
        false,
        false,
    ),
    (
        "billingCountry",
        "Billing Country",
        "string",
        Some(255),
        false,
        false,
    ),
    (
        "billingPostalCode",
        "Billing Postal Code",
        "string",
        Some(255),
        false,
        false,
    ),
    ("website", "Website", "url", Some(255), false, false),
    ("mainPhone", "Main Phone", "phone", Some(255), false, false),
    (
        "annualRevenue",
        "Annual Revenue",
        "currency",
        None,
        false,
        false,
    ),
    (
        "numberOfEmployees",
        "Num Employees",
        "integer",
        None,
        false,
        false,
    ),
    ("industry", "Industry", "string", Some(255), false, false),
    ("id", "Id", "integer", None, true, true),
    (
        "salutation",
        "Salutation",
        "string",
        Some(255),
        false,
        false,
    ),
    ("firstName", "First Name", "string", Some(255), false, false),
    (
        "middleName",
        "Middle Name",
        "string",
        Some(255),
        false,
        false,
    ),
    ("lastName", "Last Name", "string", Some(255), false, false),
    ("email", "Email Address", "email", Some(255), false, true),
    ("phone", "Phone Number", "phone", Some(255), false, false),
    (
        "mobilePhone",
        "Mobile Phone Number",
        "phone",
        Some(255),
        false,
        false,
    ),
    ("fax", "Fax Number", "phone", Some(255), false, false),
    ("title", "Job Title", "string", Some(255), false, false),
    (
        "contactCompany",
        "Contact Company",
        "reference",
        None,
        true,
        false,
    ),
    ("dateOfBirth", "Date of Birth", "date", None, false, false),
    ("address", "Address", "textarea", None, false, false),
    ("city", "City", "string", Some(255), false, false),
    ("state", "State", "string", Some(255), false, false),
    ("country", "Country", "string", Some(255), false, false),
    (
        "postalCode",
        "Postal Code",
        "string",
        Some(255),
        false,
        false,
    ),
    (
        "originalSourceType",
        "Original Source Type",
        "string",
        Some(255),
        true,
        false,
    ),
    (
        "originalSourceInfo",
        "Original Source Info",
        "string",
        Some(255),
        true,
        false,
    ),
    (
        "registrationSourceType",
        "Registration Source Type",
        "string",
        Some(255),
        true,
        false,
    ),
    (
        "department",
        "Department",
        "string",
        Some(255),
        false,
        false,
    ),
    ("leadRole", "Role", "string", Some(50), false, false),
    (
        "leadSource",
        "Person Source",
        "string",
        Some(255),
        false,
        false,
    ),
    (
        "leadStatus",
        "Lead Status",
        "string",
        Some(255),
        false,
        false,
    ),
    ("leadScore", "Lead Score", "integer", None, false, false),
    ("rating", "Lead Rating", "string", Some(255), false, false),
    (
        "unsubscribed",
        "Unsubscribed",
        "boolean",
        None,
        false,
        false,
    ),
    (
        "unsubscribedReason",
        "Unsubscribed Reason",
        "textarea",
        None,
        false,
        false,
    ),
    ("doNotCall", "Do Not Call", "boolean", None, false, false),
    (
        "doNotCallReason",
        "Do Not Call Reason",
        "string",
        Some(255),
        false,
        false,
    ),
    (
        "emailInvalid",
        "Email Invalid",
        "boolean",
        None,
        false,
        false,
    ),
    (
        "emailInvalidCause",
        "Email Invalid Cause",
        "string",
        Some(255),
        false,
        false,
    ),
    (
        "anonymousIP",
        "Anonymous IP",
        "string",
        Some(255),
        false,
        false,
    ),
    (
        "inferredCompany",
        "Inferred Company",
        "string",
        Some(255),
        true,
        false,
    ),
    (
        "inferredCountry",
        "Inferred Country",
        "string",
        Some(255),
        true,
        false,
    ),
    ("cookies", "Cookies", "string", Some(255), false, true),
    (
        "externalCompanyId",
        "External Company Id",
        "string",
        Some(100),
        false,
        false,
    ),
    (
        "externalSalesPersonId",
        "External Sales Person Id",
        "string",
        Some(100),
        false,
        false,
    ),
    ("sfdcLeadId", "SFDC Lead ID", "string", Some(18), true, true),
    (
        "sfdcContactId",
        "SFDC Contact ID",
        "string",
        Some(18),
        true,
        true,
    ),
    (
        "sfdcAccountId",
        "SFDC Account ID",
        "string",
        Some(18),
        true,
        true,
    ),
    (
        "sfdcLeadOwnerId",
        "SFDC Lead Owner ID",
        "string",
        Some(18),
        true,
        true,
    ),
    (
        "sfdcOpptyId",
        "SFDC Oppty ID",
        "string",
        Some(18),
        true,
        true,
    ),
    (
        "facebookId",
        "Facebook Id",
        "string",
        Some(255),
        false,
        true,
    ),
    (
        "linkedInId",
        "LinkedIn Id",
        "string",
        Some(255),
        false,
        true,
    ),
    ("twitterId", "Twitter Id", "string", Some(255), false, true),
    (
        "leadPartitionId",
        "Lead Partition Id",
        "integer",
        None,
        true,
        true,
    ),
    ("createdAt", "Created At", "datetime", None, true, false),
    ("updatedAt", "Updated At", "datetime", None, true, false),
];

/// Inserts the standard fields on a fresh store (ids follow the list order).
pub fn seed_standard_fields(conn: &Connection) -> Result<(), StoreError> {
    let mut stmt = conn.prepare(
        "INSERT OR IGNORE INTO lead_fields(id, name, display_name, data_type, length, read_only, searchable,
             is_custom, is_hidden, description, is_html_encoding, is_sensitive)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, 0, NULL, ?8, 0)",
    )?;
    for (i, (name, display, kind, length, read_only, searchable)) in STANDARD.iter().enumerate() {
        let html = matches!(*kind, "string" | "textarea" | "email" | "phone" | "url");
        stmt.execute(params![
            i as i64 + 1,
            name,
            display,
            kind,
            length,
            read_only,
            searchable,
            html
        ])?;
    }
    Ok(())
}

/// All fields, in id order.
pub fn load(conn: &Connection) -> Result<Catalog, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, name, display_name, data_type, length, read_only, searchable, is_custom, is_hidden,
                description, is_html_encoding, is_sensitive
         FROM lead_fields ORDER BY id",
    )?;
    let fields = stmt
        .query_map([], |r| {
            Ok(FieldDef {
                id: r.get(0)?,
                name: r.get(1)?,
                display_name: r.get(2)?,
                data_type: r.get(3)?,
                length: r.get(4)?,
                read_only: r.get(5)?,
                searchable: r.get(6)?,
                is_custom: r.get(7)?,
                is_hidden: r.get(8)?,
                description: r.get(9)?,
                is_html_encoding: r.get(10)?,
                is_sensitive: r.get(11)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Catalog { fields })
}

/// The lead field catalog of one request.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub fields: Vec<FieldDef>,
}

impl Catalog {
    pub fn get(&self, name: &str) -> Option<&FieldDef> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Fields kept in the side index for `filterType` queries and lookups (besides id/email/partition).
    pub fn indexed(&self) -> impl Iterator<Item = &FieldDef> {
        self.fields.iter().filter(|f| {
            f.searchable && !matches!(f.name.as_str(), "id" | "email" | "leadPartitionId")
        })
    }

    /// Resolves a `fields` parameter: every name must exist (1006), defaults when empty. `id` is always
    /// returned, requested or not (recorded real responses: `?fields=email` → `{"id":1,"email":..}`).
    pub fn select(&self, names: &[String]) -> Result<Vec<&FieldDef>, ApiError> {
        if names.is_empty() {
            return Ok(DEFAULT_FIELDS.iter().filter_map(|n| self.get(n)).collect());
        }
        let mut selected: Vec<&FieldDef> = Vec::with_capacity(names.len() + 1);
        if !names.iter().any(|n| n == "id")
            && let Some(id) = self.get("id")
        {
            selected.push(id);
        }
        for n in names {
            let def = self
                .get(n)
                .ok_or_else(|| ApiError::new("1006", format!("Field '{n}' not found")))?;
            if !selected.iter().any(|d| d.id == def.id) {
                selected.push(def);
            }
        }
        Ok(selected)
    }

    /// `GET /rest/v1/leads/describe.json` records.
    pub fn describe(&self) -> Vec<Value> {
        self.fields
            .iter()
            .map(|f| {
                let mut m = Map::new();
                m.insert("id".into(), json!(f.id));
                m.insert("displayName".into(), json!(f.display_name));
                m.insert("dataType".into(), json!(f.data_type));
                if let Some(length) = f.length {
                    m.insert("length".into(), json!(length));
                }
                m.insert(
                    "rest".into(),
                    json!({"name": f.name, "readOnly": f.read_only}),
                );
                m.insert(
                    "soap".into(),
                    json!({"name": soap_name(&f.name), "readOnly": f.read_only}),
                );
                Value::Object(m)
            })
            .collect()
    }

    /// `GET /rest/v1/leads/describe2.json` result.
    pub fn describe2(&self) -> Value {
        let searchable: Vec<Value> = self
            .fields
            .iter()
            .filter(|f| f.searchable)
            .map(|f| json!([f.name]))
            .collect();
        let fields: Vec<Value> = self
            .fields
            .iter()
            .map(|f| {
                let mut m = Map::new();
                m.insert("name".into(), json!(f.name));
                m.insert("displayName".into(), json!(f.display_name));
                m.insert("dataType".into(), json!(f.data_type));
                if let Some(length) = f.length {
                    m.insert("length".into(), json!(length));
                }
                m.insert("updateable".into(), json!(!f.read_only));
                m.insert("crmManaged".into(), json!(false));
                Value::Object(m)
            })
            .collect();
        json!({"name": "API Lead", "searchableFields": searchable, "fields": fields})
    }
}

impl FieldDef {
    /// `GET /rest/v1/leads/schema/fields.json` record.
    pub fn schema(&self) -> Value {
        let mut m = Map::new();
        m.insert("displayName".into(), json!(self.display_name));
        m.insert("name".into(), json!(self.name));
        m.insert("description".into(), json!(self.description));
        m.insert("dataType".into(), json!(self.data_type));
        if let Some(length) = self.length {
            m.insert("length".into(), json!(length));
        }
        m.insert("isHidden".into(), json!(self.is_hidden));
        m.insert("isHtmlEncodingInEmail".into(), json!(self.is_html_encoding));
        m.insert("isSensitive".into(), json!(self.is_sensitive));
        m.insert("isCustom".into(), json!(self.is_custom));
        Value::Object(m)
    }

    /// 1003 for an integer outside the 32-bit range Marketo stores.
    fn out_of_range(&self, text: &str) -> ApiError {
        ApiError::invalid_data(format!(
            "Value '{text}' for field '{}' is out of range: integer fields hold -2147483648 to 2147483647",
            self.name
        ))
    }

    /// Checks and normalises a value sent for this field; `Ok(Value::Null)` clears it.
    pub fn coerce(&self, value: &Value) -> Result<Value, ApiError> {
        if value.is_null() {
            return Ok(Value::Null);
        }
        let text = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let bad = || ApiError::invalid_value(&text, &self.data_type);
        match self.data_type.as_str() {
            "integer" | "score" | "reference" => {
                let parsed = match value {
                    Value::Number(n) if n.is_i64() => n.as_i64(),
                    Value::Number(n) => n
                        .as_f64()
                        .filter(|f| f.fract() == 0.0 && f.abs() < 1e18)
                        .map(|f| f as i64),
                    Value::String(s) => s.trim().parse::<i64>().ok(),
                    _ => None,
                };
                let i = match (parsed, value) {
                    (Some(i), _) => i,
                    // Digits too long for 64 bits are still a number out of range, not a bad type.
                    (None, Value::Number(n)) if n.as_f64().is_some_and(|f| f.fract() == 0.0) => {
                        return Err(self.out_of_range(&text));
                    }
                    (None, Value::String(s))
                        if s.trim()
                            .trim_start_matches('-')
                            .bytes()
                            .all(|b| b.is_ascii_digit())
                            && !s.trim().trim_start_matches('-').is_empty() =>
                    {
                        return Err(self.out_of_range(&text));
                    }
                    _ => return Err(bad()),
                };
                // Marketo integer fields are 32-bit (`reference` ids are not user-set values).
                if self.data_type != "reference" && i32::try_from(i).is_err() {
                    return Err(self.out_of_range(&text));
                }
                Ok(json!(i))
            }
            "float" | "currency" | "percent" => match value {
                Value::Number(_) => Ok(value.clone()),
                Value::String(s) => s
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .map(|f| json!(f))
                    .ok_or_else(bad),
                _ => Err(bad()),
            },
            "boolean" => match value {
                Value::Bool(_) => Ok(value.clone()),
                Value::String(s) => crate::params::parse_bool(s)
                    .map(Value::Bool)
                    .ok_or_else(bad),
                Value::Number(n) => match n.as_i64() {
                    Some(0) => Ok(Value::Bool(false)),
                    Some(1) => Ok(Value::Bool(true)),
                    _ => Err(bad()),
                },
                _ => Err(bad()),
            },
            "date" => {
                let secs = crate::time::parse(&text).ok_or_else(bad)?;
                Ok(json!(crate::time::format(secs)[..10].to_string()))
            }
            "datetime" => {
                let secs = crate::time::parse(&text).ok_or_else(bad)?;
                Ok(json!(crate::time::format(secs)))
            }
            _ => {
                if matches!(value, Value::Object(_) | Value::Array(_)) {
                    return Err(bad());
                }
                let limit = self.length.unwrap_or(
                    if self.data_type == "textarea" || self.data_type == "text" {
                        30_000
                    } else {
                        255
                    },
                );
                if text.chars().count() as i64 > limit {
                    return Err(ApiError::invalid_data(format!(
                        "Value for field '{}' exceeds max length of {limit}",
                        self.name
                    )));
                }
                if self.data_type == "email"
                    && !text.is_empty()
                    && (!text.is_ascii() || !text.contains('@'))
                {
                    return Err(ApiError::invalid_data(format!(
                        "Invalid email address '{text}'"
                    )));
                }
                Ok(Value::String(text))
            }
        }
    }
}

/// SOAP names are the REST names with a capital first letter (close enough for the describe output).
fn soap_name(rest: &str) -> String {
    let mut chars = rest.chars();
    match chars.next() {
        Some(c) => c.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

/// Data types the create-field API accepts, with the length it gives them.
pub fn creatable_type(data_type: &str) -> Option<Option<i64>> {
    match data_type {
        "string" | "email" | "phone" | "url" => Some(Some(255)),
        "text" | "textarea" => Some(None),
        "integer" | "float" | "currency" | "percent" | "score" | "boolean" | "date"
        | "datetime" => Some(None),
        _ => None,
    }
}

/// Creates one custom field; the caller has validated the input.
pub fn insert_custom(conn: &Connection, def: &FieldDef) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO lead_fields(name, display_name, data_type, length, read_only, searchable, is_custom,
             is_hidden, description, is_html_encoding, is_sensitive)
         VALUES (?1, ?2, ?3, ?4, 0, ?5, 1, ?6, ?7, ?8, ?9)",
        params![
            def.name,
            def.display_name,
            def.data_type,
            def.length,
            def.searchable,
            def.is_hidden,
            def.description,
            def.is_html_encoding,
            def.is_sensitive
        ],
    )?;
    Ok(())
}
