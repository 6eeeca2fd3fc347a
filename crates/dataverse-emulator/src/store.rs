//! SQLite storage: one table per entity holding each row as JSON text, a global monotonic version
//! counter (the `versionnumber` and change-tracking clock), tombstones for deletes, N:N links,
//! role privileges, custom columns and emulator metadata (credentials, secrets).
//!
//! **Invariant:** every read path streams rows in bounded batches; nothing loads a whole table.

use std::path::Path;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Map, Value};

use crate::schema::{ColumnDef, EntityDef, builtin_entities};

/// A stored row: wire-named properties (primary key, system columns, `_x_value` lookups).
pub type Row = Map<String, Value>;

/// The live table metadata (built-ins plus custom columns), swapped atomically when columns are added.
#[derive(Debug)]
pub struct Schema {
    pub entities: Vec<Arc<EntityDef>>,
}

impl Schema {
    pub fn by_set(&self, set: &str) -> Option<Arc<EntityDef>> {
        self.entities.iter().find(|e| e.set_name == set).cloned()
    }
    pub fn by_logical(&self, logical: &str) -> Option<Arc<EntityDef>> {
        self.entities
            .iter()
            .find(|e| e.logical_name == logical)
            .cloned()
    }
}

/// The database plus in-memory caches that depend on it.
pub struct Store {
    pub conn: Mutex<Connection>,
    pub schema: RwLock<Arc<Schema>>,
    _checkpointer: Option<Checkpointer>,
    _tempdir: Option<tempfile::TempDir>,
}

/// Checkpoints the WAL from a second connection on its own thread, so the cost of copying pages
/// back into the database file is not paid inside a request's commit.
struct Checkpointer {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    fn start(path: &str) -> Option<Checkpointer> {
        let conn = Connection::open(path).ok()?;
        mdsync_emulator_kit::configure(&conn).ok()?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("dataverse-wal-checkpoint".into())
            .spawn(move || {
                while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::park_timeout(std::time::Duration::from_millis(200));
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::debug!(error = %e, "Background WAL checkpoint failed");
                    }
                }
            })
            .ok()?;
        Some(Checkpointer {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// Name of the SQLite table holding an entity's rows.
pub fn table(def: &EntityDef) -> String {
    format!("rec_{}", def.logical_name)
}

impl Store {
    /// Opens or creates the store, its tables and the custom columns persisted earlier.
    pub fn open(dir: Option<&Path>) -> Result<Store, rusqlite::Error> {
        let (conn, tempdir) = mdsync_emulator_kit::open_database(dir, "dataverse.sqlite3")?;
        // A fixed 64 MiB page cache: large enough for the id indexes of a million-row table, and
        // independent of how many records are stored.
        // Checkpoints run on a background thread (see `Checkpointer`); the automatic one inside a
        // commit is only a safety valve for when that thread falls behind (≈200 MiB of WAL).
        conn.execute_batch("PRAGMA cache_size = -65536; PRAGMA wal_autocheckpoint = 50000;")?;
        let checkpointer = conn.path().and_then(Checkpointer::start);
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS tombstones(entity TEXT NOT NULL, id TEXT NOT NULL, versionnumber INTEGER NOT NULL);
             CREATE INDEX IF NOT EXISTS tombstones_by_version ON tombstones(entity, versionnumber);
             CREATE TABLE IF NOT EXISTS assoc(rel TEXT NOT NULL, a TEXT NOT NULL, b TEXT NOT NULL, PRIMARY KEY(rel, a, b)) WITHOUT ROWID;
             CREATE INDEX IF NOT EXISTS assoc_by_b ON assoc(rel, b);
             CREATE TABLE IF NOT EXISTS role_privileges(roleid TEXT NOT NULL, entity TEXT NOT NULL, rights INTEGER NOT NULL, PRIMARY KEY(roleid, entity)) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS custom_columns(entity TEXT NOT NULL, logical_name TEXT NOT NULL, def TEXT NOT NULL, PRIMARY KEY(entity, logical_name));
             CREATE TABLE IF NOT EXISTS custom_keys(entity TEXT NOT NULL, schema_name TEXT NOT NULL, columns TEXT NOT NULL, PRIMARY KEY(entity, schema_name));
             CREATE TABLE IF NOT EXISTS apps(client_id TEXT PRIMARY KEY, secret TEXT NOT NULL, name TEXT NOT NULL, object_id TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS publish_log(id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, systemuserid TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS version_clock(id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL);
             INSERT OR IGNORE INTO version_clock(id, value) VALUES (1, 1000);",
        )?;
        let mut entities = builtin_entities();
        for def in &entities {
            create_entity_table(&conn, def)?;
        }
        {
            let mut stmt = conn.prepare("SELECT entity, def FROM custom_columns ORDER BY rowid")?;
            let rows =
                stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            for row in rows {
                let (entity, def) = row?;
                if let (Some(e), Ok(c)) = (
                    entities.iter_mut().find(|e| e.logical_name == entity),
                    serde_json::from_str::<ColumnDef>(&def),
                ) {
                    e.columns.push(c);
                }
            }
        }
        {
            let mut stmt = conn
                .prepare("SELECT entity, schema_name, columns FROM custom_keys ORDER BY rowid")?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })?;
            for row in rows {
                let (entity, name, cols) = row?;
                if let (Some(e), Ok(cols)) = (
                    entities.iter_mut().find(|e| e.logical_name == entity),
                    serde_json::from_str::<Vec<String>>(&cols),
                ) {
                    e.alternate_keys.push(cols.clone());
                    e.key_schema_names.push((cols, name));
                }
            }
        }
        let schema = Schema {
            entities: entities.into_iter().map(Arc::new).collect(),
        };
        Ok(Store {
            conn: Mutex::new(conn),
            schema: RwLock::new(Arc::new(schema)),
            _checkpointer: checkpointer,
            _tempdir: tempdir,
        })
    }

    pub fn schema(&self) -> Arc<Schema> {
        self.schema.read().clone()
    }
}

fn create_entity_table(conn: &Connection, def: &EntityDef) -> rusqlite::Result<()> {
    let t = table(def);
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {t}(id TEXT NOT NULL UNIQUE, versionnumber INTEGER NOT NULL, createdon TEXT NOT NULL, modifiedon TEXT NOT NULL, data TEXT NOT NULL);
         CREATE INDEX IF NOT EXISTS {t}_by_version ON {t}(versionnumber);"
    ))?;
    for key in &def.alternate_keys {
        create_key_index(conn, def, key)?;
    }
    Ok(())
}

fn create_key_index(conn: &Connection, def: &EntityDef, key: &[String]) -> rusqlite::Result<()> {
    let t = table(def);
    let exprs: Vec<String> = key
        .iter()
        .map(|c| format!("json_extract(data, '$.{c}')"))
        .collect();
    conn.execute_batch(&format!(
        "CREATE INDEX IF NOT EXISTS {t}_key_{} ON {t}({});",
        key.join("_"),
        exprs.join(", ")
    ))
}

/// Adds an alternate key created through `POST EntityDefinitions(...)/Keys` (persisted, indexed,
/// and live in the schema at once: the emulator's key index is never "Pending").
pub fn add_custom_key(
    store: &Store,
    conn: &Connection,
    entity: &str,
    schema_name: &str,
    columns: Vec<String>,
) -> rusqlite::Result<()> {
    let json = serde_json::to_string(&columns).unwrap_or_default();
    conn.execute(
        "INSERT INTO custom_keys(entity, schema_name, columns) VALUES (?1, ?2, ?3)",
        params![entity, schema_name, json],
    )?;
    let mut guard = store.schema.write();
    let mut entities: Vec<Arc<EntityDef>> = guard.entities.clone();
    for e in entities.iter_mut() {
        if e.logical_name == entity {
            let mut def = (**e).clone();
            create_key_index(conn, &def, &columns)?;
            def.alternate_keys.push(columns.clone());
            def.key_schema_names
                .push((columns.clone(), schema_name.to_string()));
            *e = Arc::new(def);
        }
    }
    *guard = Arc::new(Schema { entities });
    Ok(())
}

/// Reserves the next version number (the global change clock).
pub fn next_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row(
        "UPDATE version_clock SET value = value + 1 WHERE id = 1 RETURNING value",
        [],
        |r| r.get(0),
    )
}

/// Reserves `n` consecutive versions, returning the first.
pub fn reserve_versions(conn: &Connection, n: i64) -> rusqlite::Result<i64> {
    let last: i64 = conn.query_row(
        "UPDATE version_clock SET value = value + ?1 WHERE id = 1 RETURNING value",
        [n],
        |r| r.get(0),
    )?;
    Ok(last - n + 1)
}

/// The current value of the change clock.
pub fn current_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT value FROM version_clock WHERE id = 1", [], |r| {
        r.get(0)
    })
}

pub fn parse_row(data: &str) -> Row {
    match serde_json::from_str::<Value>(data) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

/// Loads one row by primary key.
pub fn get(conn: &Connection, def: &EntityDef, id: &str) -> rusqlite::Result<Option<Row>> {
    let sql = format!("SELECT data FROM {} WHERE id = ?1", table(def));
    let mut stmt = conn.prepare_cached(&sql)?;
    let data: Option<String> = stmt.query_row([id], |r| r.get(0)).optional()?;
    Ok(data.map(|d| parse_row(&d)))
}

/// Rows of `def` whose lookup `wire` (`_x_value`) points at `id`, in storage order, at most `limit`.
pub fn referencing(
    conn: &Connection,
    def: &EntityDef,
    wire: &str,
    id: &str,
    limit: usize,
) -> rusqlite::Result<Vec<Row>> {
    let sql = format!(
        "SELECT data FROM {} WHERE json_extract(data, '$.{wire}') = ?1 ORDER BY rowid LIMIT ?2",
        table(def)
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(rusqlite::params![id, limit as i64], |r| {
        r.get::<_, String>(0)
    })?;
    rows.map(|d| d.map(|d| parse_row(&d))).collect()
}

/// Finds the id of the row whose alternate-key columns equal `values`.
pub fn find_by_key(
    conn: &Connection,
    def: &EntityDef,
    values: &[(String, Value)],
) -> rusqlite::Result<Option<String>> {
    let conds: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, (c, _))| format!("json_extract(data, '$.{c}') = ?{}", i + 1))
        .collect();
    let sql = format!(
        "SELECT id FROM {} WHERE {} LIMIT 1",
        table(def),
        conds.join(" AND ")
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let params: Vec<rusqlite::types::Value> = values.iter().map(|(_, v)| sql_value(v)).collect();
    stmt.query_row(rusqlite::params_from_iter(params), |r| r.get(0))
        .optional()
}

fn sql_value(v: &Value) -> rusqlite::types::Value {
    use rusqlite::types::Value as S;
    match v {
        Value::Null => S::Null,
        Value::Bool(b) => S::Integer(*b as i64),
        Value::Number(n) => n
            .as_i64()
            .map(S::Integer)
            .unwrap_or_else(|| S::Real(n.as_f64().unwrap_or(0.0))),
        Value::String(s) => S::Text(s.clone()),
        other => S::Text(other.to_string()),
    }
}

/// Inserts or replaces a row (the row must already carry its system columns).
pub fn put(conn: &Connection, def: &EntityDef, id: &str, row: &Row) -> rusqlite::Result<()> {
    let sql = format!(
        "INSERT INTO {}(id, versionnumber, createdon, modifiedon, data) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(id) DO UPDATE SET versionnumber = excluded.versionnumber, modifiedon = excluded.modifiedon, data = excluded.data",
        table(def)
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let version = row
        .get("versionnumber")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let created = row.get("createdon").and_then(Value::as_str).unwrap_or("");
    let modified = row.get("modifiedon").and_then(Value::as_str).unwrap_or("");
    let data = serde_json::to_string(row).unwrap_or_else(|_| "{}".into());
    stmt.execute(params![id, version, created, modified, data])?;
    Ok(())
}

/// Deletes a row and records a tombstone at a new version. Returns false when it did not exist.
pub fn delete(conn: &Connection, def: &EntityDef, id: &str) -> rusqlite::Result<bool> {
    let sql = format!("DELETE FROM {} WHERE id = ?1", table(def));
    let n = conn.prepare_cached(&sql)?.execute([id])?;
    if n == 0 {
        return Ok(false);
    }
    let v = next_version(conn)?;
    conn.prepare_cached("INSERT INTO tombstones(entity, id, versionnumber) VALUES (?1, ?2, ?3)")?
        .execute(params![def.logical_name, id, v])?;
    conn.prepare_cached("DELETE FROM assoc WHERE a = ?1 OR b = ?1")?
        .execute([id])?;
    Ok(true)
}

pub fn meta_get(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()
}

pub fn meta_set(conn: &Connection, key: &str, value: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO meta(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

/// Links two records through an N:N relationship; false when the link already existed.
pub fn associate(conn: &Connection, rel: &str, a: &str, b: &str) -> rusqlite::Result<bool> {
    let n = conn
        .prepare_cached("INSERT OR IGNORE INTO assoc(rel, a, b) VALUES (?1, ?2, ?3)")?
        .execute(params![rel, a, b])?;
    Ok(n > 0)
}

pub fn disassociate(conn: &Connection, rel: &str, a: &str, b: &str) -> rusqlite::Result<bool> {
    let n = conn
        .prepare_cached("DELETE FROM assoc WHERE rel = ?1 AND a = ?2 AND b = ?3")?
        .execute(params![rel, a, b])?;
    Ok(n > 0)
}

/// The `b` side ids linked to `a` (small sets: roles of a user, members of a team).
pub fn linked_b(conn: &Connection, rel: &str, a: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt =
        conn.prepare_cached("SELECT b FROM assoc WHERE rel = ?1 AND a = ?2 ORDER BY b")?;
    let rows = stmt.query_map(params![rel, a], |r| r.get(0))?;
    rows.collect()
}

pub fn linked_a(conn: &Connection, rel: &str, b: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt =
        conn.prepare_cached("SELECT a FROM assoc WHERE rel = ?1 AND b = ?2 ORDER BY a")?;
    let rows = stmt.query_map(params![rel, b], |r| r.get(0))?;
    rows.collect()
}

/// Runs `f` inside a SAVEPOINT: released on success, rolled back on error.
pub fn savepoint<T, E: From<rusqlite::Error>>(
    conn: &Connection,
    f: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    conn.execute_batch("SAVEPOINT op")?;
    match f() {
        Ok(v) => {
            conn.execute_batch("RELEASE op")?;
            Ok(v)
        }
        Err(e) => {
            conn.execute_batch("ROLLBACK TO op; RELEASE op")?;
            Err(e)
        }
    }
}

/// Empties every data table (reset), keeping schema and credentials.
pub fn clear_data(conn: &Connection, schema: &Schema) -> rusqlite::Result<()> {
    for def in &schema.entities {
        conn.execute_batch(&format!("DELETE FROM {};", table(def)))?;
    }
    conn.execute_batch(
        "DELETE FROM tombstones; DELETE FROM assoc; DELETE FROM role_privileges; DELETE FROM publish_log;",
    )?;
    Ok(())
}

/// Persists and registers a custom column.
pub fn add_custom_column(
    store: &Store,
    conn: &Connection,
    entity: &str,
    col: ColumnDef,
) -> rusqlite::Result<()> {
    let json = serde_json::to_string(&col).unwrap_or_default();
    conn.execute(
        "INSERT INTO custom_columns(entity, logical_name, def) VALUES (?1, ?2, ?3)",
        params![entity, col.logical_name, json],
    )?;
    let mut guard = store.schema.write();
    let mut entities: Vec<Arc<EntityDef>> = guard.entities.clone();
    for e in entities.iter_mut() {
        if e.logical_name == entity {
            let mut def = (**e).clone();
            def.columns.push(col.clone());
            *e = Arc::new(def);
        }
    }
    *guard = Arc::new(Schema { entities });
    Ok(())
}
