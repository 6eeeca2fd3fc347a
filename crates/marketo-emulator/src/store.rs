//! The SQLite file behind the emulator: one writer connection behind a mutex, extra reader connections for
//! long streams (bulk exports) so they never hold the writer.

use std::path::{Path, PathBuf};

use parking_lot::{Mutex, MutexGuard};
use rusqlite::{Connection, OptionalExtension};

/// Storage failures (I/O or SQL).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("stored JSON is corrupt: {0}")]
    Json(#[from] serde_json::Error),
}

const FILE_NAME: &str = "marketo.sqlite";
const STATEMENT_CACHE: usize = 128;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS api_users(
    id INTEGER PRIMARY KEY, client_id TEXT NOT NULL UNIQUE, client_secret TEXT NOT NULL,
    email TEXT NOT NULL, role TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tokens(
    token TEXT PRIMARY KEY, user_id INTEGER NOT NULL, expires_at_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS tokens_user ON tokens(user_id, expires_at_ms);
CREATE TABLE IF NOT EXISTS lead_fields(
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, display_name TEXT NOT NULL,
    data_type TEXT NOT NULL, length INTEGER, read_only INTEGER NOT NULL, searchable INTEGER NOT NULL,
    is_custom INTEGER NOT NULL, is_hidden INTEGER NOT NULL, description TEXT,
    is_html_encoding INTEGER NOT NULL DEFAULT 1, is_sensitive INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS partitions(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, description TEXT);
CREATE TABLE IF NOT EXISTS leads(
    id INTEGER PRIMARY KEY AUTOINCREMENT, email_key TEXT, partition_id INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS leads_email ON leads(email_key);
CREATE INDEX IF NOT EXISTS leads_created ON leads(created_at);
CREATE TABLE IF NOT EXISTS lead_index(
    field_id INTEGER NOT NULL, value TEXT NOT NULL, lead_id INTEGER NOT NULL,
    PRIMARY KEY(field_id, value, lead_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS lead_index_lead ON lead_index(lead_id);
CREATE TABLE IF NOT EXISTS activities(
    id INTEGER PRIMARY KEY AUTOINCREMENT, lead_id INTEGER NOT NULL, activity_at INTEGER NOT NULL,
    type_id INTEGER NOT NULL, pav_id INTEGER, pav TEXT, fields TEXT, attributes TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS activities_at ON activities(activity_at);
-- No index on leads.updated_at or activities.lead_id: each would cost a random page write per synced
-- record; the bulk updatedAt filter streams the table instead, and activity lead filters only look
-- inside one scan block.
DROP INDEX IF EXISTS leads_updated;
DROP INDEX IF EXISTS activities_lead;
CREATE TABLE IF NOT EXISTS objects(
    id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, guid TEXT NOT NULL, dedupe TEXT NOT NULL,
    data TEXT NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
    UNIQUE(kind, dedupe));
CREATE INDEX IF NOT EXISTS objects_guid ON objects(kind, guid);
-- Leads deleted through the API or a marketer: their activities (all but Delete Lead) are gone from every
-- activity read, like the real service; a small table so each scanned activity costs one cheap lookup.
CREATE TABLE IF NOT EXISTS deleted_leads(id INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS lists(
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, description TEXT,
    program_name TEXT, workspace_name TEXT NOT NULL DEFAULT 'Default',
    created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS list_members(
    list_id INTEGER NOT NULL, lead_id INTEGER NOT NULL, PRIMARY KEY(list_id, lead_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS list_members_lead ON list_members(lead_id);
CREATE TABLE IF NOT EXISTS campaigns(
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, description TEXT, type TEXT NOT NULL,
    program_id INTEGER, program_name TEXT, workspace_name TEXT NOT NULL DEFAULT 'Default',
    active INTEGER NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS programs(
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, description TEXT,
    type TEXT NOT NULL, channel TEXT NOT NULL, status TEXT NOT NULL,
    workspace TEXT NOT NULL DEFAULT 'Default', created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS program_members(
    program_id INTEGER NOT NULL, lead_id INTEGER NOT NULL, status TEXT NOT NULL,
    PRIMARY KEY(program_id, lead_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS export_jobs(
    id TEXT PRIMARY KEY, seq INTEGER NOT NULL, kind TEXT NOT NULL, user_id INTEGER NOT NULL,
    format TEXT NOT NULL, status TEXT NOT NULL, request TEXT NOT NULL, created_at INTEGER NOT NULL,
    queued_at INTEGER, started_at INTEGER, finished_at INTEGER, number_of_records INTEGER,
    file_size INTEGER, file_checksum TEXT, error_msg TEXT);
"#;

/// Tables whose ids clients see and keep: never reused, even after the highest row is deleted (real
/// Marketo never hands out a lead id twice; a reused activity id would hide changes behind a paging token).
const NEVER_REUSED: [(&str, &str); 3] = [
    (
        "leads",
        "id, email_key, partition_id, created_at, updated_at, data",
    ),
    (
        "activities",
        "id, lead_id, activity_at, type_id, pav_id, pav, fields, attributes",
    ),
    (
        "objects",
        "id, kind, guid, dedupe, data, created_at, updated_at",
    ),
];

/// Stores written before ids were AUTOINCREMENT: rebuilds those tables (same columns, same rows) and sets
/// the high-water mark past every id ever handed out, including deleted leads still named by activities.
/// `SCHEMA` recreates the indexes afterwards.
fn migrate_to_autoincrement(conn: &Connection) -> Result<(), StoreError> {
    for (table, columns) in NEVER_REUSED {
        let sql: Option<String> = conn
            .query_row(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [table],
                |r| r.get(0),
            )
            .optional()?;
        let Some(sql) = sql else { continue };
        if sql.to_ascii_uppercase().contains("AUTOINCREMENT") {
            continue;
        }
        let create = sql.replacen(
            "INTEGER PRIMARY KEY",
            "INTEGER PRIMARY KEY AUTOINCREMENT",
            1,
        );
        let indexes: Vec<String> = {
            let mut stmt = conn.prepare(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?1 AND sql IS NOT NULL",
            )?;
            stmt.query_map([table], |r| r.get(0))?
                .collect::<Result<_, _>>()?
        };
        let mut batch = String::from("BEGIN IMMEDIATE;");
        for index in &indexes {
            batch.push_str(&format!("DROP INDEX \"{index}\";"));
        }
        batch.push_str(&format!(
            "ALTER TABLE {table} RENAME TO {table}_migrating; {create};
             INSERT INTO {table}({columns}) SELECT {columns} FROM {table}_migrating;
             DROP TABLE {table}_migrating;"
        ));
        if table == "leads" {
            // Deleted leads' ids live on in their activities.
            batch.push_str(
                "INSERT INTO sqlite_sequence(name, seq)
                 SELECT 'leads', COALESCE((SELECT MAX(lead_id) FROM activities), 0)
                 WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'leads');
                 UPDATE sqlite_sequence SET seq = MAX(seq, COALESCE((SELECT MAX(lead_id) FROM activities), 0))
                 WHERE name = 'leads';",
            );
        }
        batch.push_str("COMMIT;");
        conn.execute_batch(&batch)?;
    }
    Ok(())
}

/// The emulator's database.
pub struct Store {
    conn: Mutex<Connection>,
    path: PathBuf,
    files_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl Store {
    /// Opens `<dir>/marketo.sqlite` (or a temp file) and creates the schema and the standard lead fields.
    pub fn open(dir: Option<&Path>) -> Result<Self, StoreError> {
        let (conn, temp) = mdsync_emulator_kit::open_database(dir, FILE_NAME)?;
        // Every hot statement stays prepared (the default cache of 16 would thrash on the sync path).
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        // Sync batches dirty pages all over the lead table; checkpointing (and fsyncing) every 1000 pages
        // made writes wait on the disk. Checkpoint less often and never fsync: an emulator's store must
        // survive a process crash (WAL does that without fsync) and a clean shutdown (which checkpoints),
        // not a power loss.
        conn.execute_batch("PRAGMA wal_autocheckpoint = 16384; PRAGMA synchronous = OFF;")?;
        migrate_to_autoincrement(&conn)?;
        conn.execute_batch(SCHEMA)?;
        let path = conn
            .path()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(FILE_NAME));
        let base = dir
            .map(Path::to_path_buf)
            .or_else(|| temp.as_ref().map(|t| t.path().to_path_buf()))
            .unwrap_or_else(std::env::temp_dir);
        let files_dir = base.join("marketo-exports");
        std::fs::create_dir_all(&files_dir)?;
        crate::fields::seed_standard_fields(&conn)?;
        conn.execute(
            "INSERT OR IGNORE INTO partitions(id, name, description) VALUES (1, 'Default', 'Initial Lead Partition')",
            [],
        )?;
        Ok(Self {
            conn: Mutex::new(conn),
            path,
            files_dir,
            _temp: temp,
        })
    }

    /// The writer connection; hold it only for one request's work.
    pub fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock()
    }

    /// A fresh read connection for long streams (WAL lets it read while the writer writes).
    pub fn reader(&self) -> Result<Connection, StoreError> {
        let conn = Connection::open_with_flags(
            &self.path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch("PRAGMA cache_size = -8192;")?;
        Ok(conn)
    }

    /// Where bulk export files are written.
    pub fn files_dir(&self) -> &Path {
        &self.files_dir
    }

    /// Flushes the WAL into the main file.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        mdsync_emulator_kit::checkpoint(&self.lock())?;
        Ok(())
    }
}
