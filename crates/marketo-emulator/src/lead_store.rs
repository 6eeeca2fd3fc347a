//! Lead rows: the SQL behind reads and writes, the side index for searchable fields, and the activities
//! every write logs. Shared by the REST handlers, the marketer test surface and the seeder.

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Map, Value, json};

use crate::activities::{self, Actor};
use crate::fields::{Catalog, FieldDef};
use crate::store::StoreError;

/// One stored lead.
#[derive(Debug, Clone)]
pub struct Lead {
    pub id: i64,
    pub partition_id: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub data: Map<String, Value>,
}

impl Lead {
    pub fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        let data: String = r.get(4)?;
        let data = match serde_json::from_str::<Value>(&data) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        Ok(Self {
            id: r.get(0)?,
            partition_id: r.get(1)?,
            created_at: r.get(2)?,
            updated_at: r.get(3)?,
            data,
        })
    }

    /// A field's value as the API shows it (system fields included).
    pub fn value(&self, name: &str) -> Value {
        match name {
            "id" => json!(self.id),
            "createdAt" => json!(crate::time::format(self.created_at)),
            "updatedAt" => json!(crate::time::format(self.updated_at)),
            "leadPartitionId" => json!(self.partition_id),
            other => self.data.get(other).cloned().unwrap_or(Value::Null),
        }
    }

    /// The record with the selected fields; null values are omitted like the real service.
    pub fn render(&self, fields: &[&FieldDef]) -> Value {
        let mut m = Map::new();
        for f in fields {
            let v = self.value(&f.name);
            if !v.is_null() {
                m.insert(f.name.clone(), v);
            }
        }
        Value::Object(m)
    }

    /// "First Last" (the New Lead primary attribute value).
    pub fn display_name(&self) -> String {
        let part = |k: &str| {
            self.data
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        format!("{} {}", part("firstName"), part("lastName"))
            .trim()
            .to_owned()
    }
}

pub const SELECT: &str = "SELECT id, partition_id, created_at, updated_at, data FROM leads";

pub fn load(conn: &Connection, id: i64) -> Result<Option<Lead>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, partition_id, created_at, updated_at, data FROM leads WHERE id = ?1",
    )?;
    Ok(stmt.query_row([id], Lead::from_row).optional()?)
}

/// The text a searchable value is indexed and looked up by (case-insensitive like Marketo).
pub fn index_key(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.to_lowercase()),
        other => Some(other.to_string().to_lowercase()),
    }
}

/// Ids of leads whose `field` equals `value` (at most `limit`).
pub fn find(
    conn: &Connection,
    catalog: &Catalog,
    field: &str,
    value: &Value,
    limit: i64,
) -> Result<Vec<i64>, StoreError> {
    let Some(key) = index_key(value) else {
        return Ok(Vec::new());
    };
    let ids = match field {
        "id" => {
            let id = key.parse::<i64>().unwrap_or(-1);
            let mut stmt = conn.prepare_cached("SELECT id FROM leads WHERE id = ?1")?;
            stmt.query_map([id], |r| r.get(0))?
                .collect::<Result<Vec<i64>, _>>()?
        }
        "email" => {
            let mut stmt = conn
                .prepare_cached("SELECT id FROM leads WHERE email_key = ?1 ORDER BY id LIMIT ?2")?;
            stmt.query_map(params![key, limit], |r| r.get(0))?
                .collect::<Result<Vec<i64>, _>>()?
        }
        "leadPartitionId" => {
            let mut stmt = conn.prepare_cached(
                "SELECT id FROM leads WHERE partition_id = ?1 ORDER BY id LIMIT ?2",
            )?;
            stmt.query_map(params![key.parse::<i64>().unwrap_or(-1), limit], |r| {
                r.get(0)
            })?
            .collect::<Result<Vec<i64>, _>>()?
        }
        other => {
            let Some(def) = catalog.get(other) else {
                return Ok(Vec::new());
            };
            let mut stmt = conn.prepare_cached(
                "SELECT lead_id FROM lead_index WHERE field_id = ?1 AND value = ?2 ORDER BY lead_id LIMIT ?3",
            )?;
            stmt.query_map(params![def.id, key, limit], |r| r.get(0))?
                .collect::<Result<Vec<i64>, _>>()?
        }
    };
    Ok(ids)
}

/// Inserts a lead and its index rows; returns the new id.
pub fn insert(
    conn: &Connection,
    catalog: &Catalog,
    partition_id: i64,
    now: i64,
    data: &Map<String, Value>,
) -> Result<i64, StoreError> {
    let email_key = data.get("email").and_then(index_key);
    let text = serde_json::to_string(data)?;
    let mut stmt = conn.prepare_cached(
        "INSERT INTO leads(email_key, partition_id, created_at, updated_at, data) VALUES (?1, ?2, ?3, ?3, ?4)",
    )?;
    stmt.execute(params![email_key, partition_id, now, text])?;
    let id = conn.last_insert_rowid();
    write_index(conn, catalog, id, data, None)?;
    Ok(id)
}

fn write_index(
    conn: &Connection,
    catalog: &Catalog,
    id: i64,
    data: &Map<String, Value>,
    only: Option<&[String]>,
) -> Result<(), StoreError> {
    let mut del =
        conn.prepare_cached("DELETE FROM lead_index WHERE field_id = ?1 AND lead_id = ?2")?;
    let mut ins = conn.prepare_cached(
        "INSERT OR IGNORE INTO lead_index(field_id, value, lead_id) VALUES (?1, ?2, ?3)",
    )?;
    for def in catalog.indexed() {
        if let Some(only) = only {
            if !only.contains(&def.name) {
                continue;
            }
            del.execute(params![def.id, id])?;
        }
        if let Some(key) = data.get(&def.name).and_then(index_key) {
            ins.execute(params![def.id, key, id])?;
        }
    }
    Ok(())
}

/// Applies `changes` (already validated) to a lead; logs one Change Data Value per changed field.
/// Returns the names of the fields that changed.
pub fn update(
    conn: &Connection,
    catalog: &Catalog,
    lead: &mut Lead,
    changes: &Map<String, Value>,
    now: i64,
    actor: &Actor<'_>,
) -> Result<Vec<String>, StoreError> {
    let mut changed = Vec::new();
    for (name, new) in changes {
        let old = lead.data.get(name).cloned().unwrap_or(Value::Null);
        if old == *new {
            continue;
        }
        if new.is_null() {
            lead.data.remove(name);
        } else {
            lead.data.insert(name.clone(), new.clone());
        }
        if let Some(def) = catalog.get(name) {
            activities::log_change(conn, lead.id, def, &old, new, now, actor)?;
        }
        changed.push(name.clone());
    }
    if changed.is_empty() {
        return Ok(changed);
    }
    lead.updated_at = now;
    let email_key = lead.data.get("email").and_then(index_key);
    let text = serde_json::to_string(&lead.data)?;
    let mut stmt = conn.prepare_cached(
        "UPDATE leads SET email_key = ?1, updated_at = ?2, data = ?3 WHERE id = ?4",
    )?;
    stmt.execute(params![email_key, now, text, lead.id])?;
    write_index(conn, catalog, lead.id, &lead.data, Some(&changed))?;
    Ok(changed)
}

/// Creates a lead and logs New Lead.
pub fn create(
    conn: &Connection,
    catalog: &Catalog,
    partition_id: i64,
    data: &Map<String, Value>,
    now: i64,
    actor: &Actor<'_>,
) -> Result<i64, StoreError> {
    let id = insert(conn, catalog, partition_id, now, data)?;
    let lead = Lead {
        id,
        partition_id,
        created_at: now,
        updated_at: now,
        data: data.clone(),
    };
    activities::log_new_lead(conn, &lead, now, actor)?;
    Ok(id)
}

/// Deletes a lead (and, for readers, its activities and memberships) and logs Delete Lead; false when it
/// did not exist.
pub fn delete(conn: &Connection, id: i64, now: i64, actor: &Actor<'_>) -> Result<bool, StoreError> {
    let Some(lead) = load(conn, id)? else {
        return Ok(false);
    };
    conn.prepare_cached("DELETE FROM lead_index WHERE lead_id = ?1")?
        .execute([id])?;
    conn.prepare_cached("DELETE FROM leads WHERE id = ?1")?
        .execute([id])?;
    // Its activities go with it (every read skips them); the Delete Lead record stays.
    conn.prepare_cached("INSERT OR IGNORE INTO deleted_leads(id) VALUES (?1)")?
        .execute([id])?;
    conn.prepare_cached("DELETE FROM list_members WHERE lead_id = ?1")?
        .execute([id])?;
    conn.prepare_cached("DELETE FROM program_members WHERE lead_id = ?1")?
        .execute([id])?;
    activities::log_delete(conn, &lead, now, actor)?;
    Ok(true)
}

/// Validates one input record against the catalog: unknown fields (1006), bad values (1001/1003);
/// read-only fields are ignored. Returns the writable values.
pub fn validate_record(
    catalog: &Catalog,
    record: &Map<String, Value>,
) -> Result<Map<String, Value>, crate::envelope::ApiError> {
    let mut out = Map::new();
    for (name, value) in record {
        let def = catalog.get(name).ok_or_else(|| {
            crate::envelope::ApiError::new("1006", format!("Field '{name}' not found"))
        })?;
        if def.read_only {
            continue;
        }
        out.insert(name.clone(), def.coerce(value)?);
    }
    Ok(out)
}
