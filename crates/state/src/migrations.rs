//! Schema migrations, recorded in `schema_version`. Each step runs in its own transaction together with
//! the version bump, so a crash mid-migration leaves the previous version intact, and running the
//! migrations again is a no-op.

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::StateError;

/// Migration steps; index + 1 is the version they produce. Append only.
const STEPS: &[&str] = &[
    // 1: the initial schema.
    "
    CREATE TABLE links (
        crm_entity   TEXT NOT NULL CHECK (crm_entity IN ('lead','contact','account','opportunity','systemuser')),
        crm_id       TEXT NOT NULL CHECK (length(crm_id) = 36),
        object       TEXT NOT NULL CHECK (object IN ('person','company','opportunity','salesperson')),
        marketo_id   INTEGER,
        filter_state TEXT NOT NULL CHECK (filter_state IN ('missing','null','true','false')),
        created_at   TEXT NOT NULL,
        updated_at   TEXT NOT NULL,
        PRIMARY KEY (crm_entity, crm_id)
    ) WITHOUT ROWID;
    CREATE INDEX links_by_crm_id ON links (crm_id);
    CREATE UNIQUE INDEX links_by_marketo_id ON links (object, marketo_id) WHERE marketo_id IS NOT NULL;

    CREATE TABLE fingerprints (
        crm_id     TEXT NOT NULL CHECK (length(crm_id) = 36),
        side       TEXT NOT NULL CHECK (side IN ('crm','marketo')),
        field      TEXT NOT NULL CHECK (field <> ''),
        fp         INTEGER NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (crm_id, side, field)
    ) WITHOUT ROWID;

    CREATE TABLE cursors (
        scope      TEXT NOT NULL CHECK (scope <> ''),
        side       TEXT NOT NULL CHECK (side IN ('crm','marketo')),
        value      TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (scope, side)
    ) WITHOUT ROWID;

    CREATE TABLE dead_letters (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        entity     TEXT NOT NULL,
        crm_id     TEXT,
        marketo_id INTEGER,
        operation  TEXT NOT NULL,
        direction  TEXT NOT NULL CHECK (direction IN ('to_marketo','to_dynamics')),
        code       TEXT NOT NULL,
        message    TEXT NOT NULL,
        payload    TEXT NOT NULL,
        attempts   INTEGER NOT NULL DEFAULT 1,
        first_seen TEXT NOT NULL,
        last_seen  TEXT NOT NULL,
        retried_at TEXT,
        resolved   INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX dead_letters_open ON dead_letters (resolved, entity, crm_id, marketo_id);

    CREATE TABLE conflicts (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        at            TEXT NOT NULL,
        entity        TEXT NOT NULL,
        crm_id        TEXT NOT NULL,
        marketo_id    INTEGER,
        crm_field     TEXT NOT NULL,
        marketo_field TEXT NOT NULL,
        crm_value     TEXT NOT NULL,
        marketo_value TEXT NOT NULL,
        policy        TEXT NOT NULL,
        outcome       TEXT NOT NULL CHECK (outcome IN ('crm','marketo'))
    );

    CREATE TABLE cycles (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        mode        TEXT NOT NULL,
        started_at  TEXT NOT NULL,
        finished_at TEXT,
        status      TEXT NOT NULL CHECK (status IN ('running','completed','failed')),
        counts      TEXT NOT NULL,
        error       TEXT
    );

    CREATE TABLE backlog (
        entity          TEXT NOT NULL,
        direction       TEXT NOT NULL CHECK (direction IN ('to_marketo','to_dynamics')),
        pending_inserts INTEGER NOT NULL,
        pending_updates INTEGER NOT NULL,
        oldest          TEXT,
        updated_at      TEXT NOT NULL,
        PRIMARY KEY (entity, direction)
    ) WITHOUT ROWID;
    ",
];

/// The version this build of mdsync writes.
pub const LATEST: i64 = STEPS.len() as i64;

/// The database's schema version (0 for a new file).
pub fn current_version(conn: &Connection) -> Result<i64, StateError> {
    let exists: Option<String> = conn
        .query_row(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if exists.is_none() {
        return Ok(0);
    }
    Ok(conn
        .query_row("SELECT MAX(version) FROM schema_version", [], |r| {
            r.get::<_, Option<i64>>(0)
        })?
        .unwrap_or(0))
}

/// Brings the schema to [`LATEST`]; refuses a database written by a newer mdsync.
pub fn migrate(conn: &mut Connection, path: &str) -> Result<(), StateError> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_at TEXT NOT NULL)")?;
    let found = current_version(conn)?;
    if found > LATEST {
        return Err(StateError::SchemaTooNew {
            path: path.to_owned(),
            found,
            supported: LATEST,
        });
    }
    for (i, step) in STEPS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(step)?;
        tx.execute(
            "INSERT INTO schema_version (version, applied_at) VALUES (?1, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
            params![i as i64 + 1],
        )?;
        tx.commit()?;
    }
    Ok(())
}
