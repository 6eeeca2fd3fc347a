//! Schema migrations, recorded in `schema_version`. Each step runs in its own transaction together with
//! the version bump, so a crash mid-migration leaves the previous version intact, and running the
//! migrations again is a no-op.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::error::StateError;
use crate::record_fps::{FpMap, encode};

/// One migration: plain SQL, or code for steps that reshape data.
enum Step {
    Sql(&'static str),
    Code(fn(&Transaction<'_>) -> Result<(), StateError>),
}

/// Migration steps; index + 1 is the version they produce. Append only.
const STEPS: &[Step] = &[
    // 1: the initial schema.
    Step::Sql("
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
    "),
    // 2: fingerprints as one row per record (interned field names, a compact map per record).
    Step::Code(record_fingerprints),
    // 3: links keyed by the CRM id alone (GUIDs are unique across entities): one B-tree fewer to update
    // per synced record than the (entity, id) key plus an index on the id.
    Step::Sql(
        "
    CREATE TABLE links_by_id (
        crm_id       TEXT NOT NULL PRIMARY KEY CHECK (length(crm_id) = 36),
        crm_entity   TEXT NOT NULL CHECK (crm_entity IN ('lead','contact','account','opportunity','systemuser')),
        object       TEXT NOT NULL CHECK (object IN ('person','company','opportunity','salesperson')),
        marketo_id   INTEGER,
        filter_state TEXT NOT NULL CHECK (filter_state IN ('missing','null','true','false')),
        created_at   TEXT NOT NULL,
        updated_at   TEXT NOT NULL
    ) WITHOUT ROWID;
    INSERT OR REPLACE INTO links_by_id (crm_id, crm_entity, object, marketo_id, filter_state, created_at, updated_at)
        SELECT crm_id, crm_entity, object, marketo_id, filter_state, created_at, updated_at FROM links ORDER BY updated_at;
    DROP TABLE links;
    ALTER TABLE links_by_id RENAME TO links;
    CREATE UNIQUE INDEX links_by_marketo_id ON links (object, marketo_id) WHERE marketo_id IS NOT NULL;
    ",
    ),
];

/// Moves `fingerprints` (one row per record, side and field) into `fp_fields` + `record_fps`, streaming
/// the old rows in record order so memory stays bounded by one record.
fn record_fingerprints(tx: &Transaction<'_>) -> Result<(), StateError> {
    tx.execute_batch(
        "
        CREATE TABLE fp_fields (
            id    INTEGER PRIMARY KEY,
            side  TEXT NOT NULL CHECK (side IN ('crm','marketo')),
            field TEXT NOT NULL CHECK (field <> ''),
            UNIQUE (side, field)
        );
        CREATE TABLE record_fps (
            crm_id     TEXT NOT NULL PRIMARY KEY CHECK (length(crm_id) = 36),
            fps        BLOB NOT NULL,
            updated_at TEXT NOT NULL
        ) WITHOUT ROWID;
        INSERT INTO fp_fields (side, field) SELECT DISTINCT side, field FROM fingerprints ORDER BY side, field;
        ",
    )?;
    {
        let mut read = tx.prepare(
            "SELECT f.crm_id, d.id, f.fp, f.updated_at FROM fingerprints f
             JOIN fp_fields d ON d.side = f.side AND d.field = f.field ORDER BY f.crm_id",
        )?;
        let mut write =
            tx.prepare("INSERT INTO record_fps (crm_id, fps, updated_at) VALUES (?1, ?2, ?3)")?;
        let mut rows = read.query([])?;
        let mut current: Option<(String, FpMap, String)> = None;
        while let Some(row) = rows.next()? {
            let crm_id: String = row.get(0)?;
            let id: i64 = row.get(1)?;
            let fp: i64 = row.get(2)?;
            let updated_at: String = row.get(3)?;
            if current.as_ref().is_some_and(|(c, _, _)| *c != crm_id)
                && let Some((c, map, at)) = current.take()
            {
                write.execute(params![c, encode(&map), at])?;
            }
            let entry = current.get_or_insert_with(|| (crm_id, FpMap::new(), updated_at.clone()));
            entry.1.insert(id as u32, fp);
            if updated_at > entry.2 {
                entry.2 = updated_at;
            }
        }
        if let Some((c, map, at)) = current {
            write.execute(params![c, encode(&map), at])?;
        }
    }
    tx.execute_batch("DROP TABLE fingerprints;")?;
    Ok(())
}

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
        match step {
            Step::Sql(sql) => tx.execute_batch(sql)?,
            Step::Code(f) => f(&tx)?,
        }
        tx.execute(
            "INSERT INTO schema_version (version, applied_at) VALUES (?1, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
            params![i as i64 + 1],
        )?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record_fps::decode;

    #[test]
    fn version_1_fingerprints_move_to_one_row_per_record() -> Result<(), StateError> {
        let mut conn = Connection::open_in_memory()?;
        conn.execute_batch("CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at TEXT NOT NULL); INSERT INTO schema_version VALUES (1, 'x');")?;
        let Step::Sql(v1) = &STEPS[0] else {
            panic!("step 1 is SQL");
        };
        conn.execute_batch(v1)?;
        let a = "00000000-0000-0000-0000-00000000000a";
        let b = "00000000-0000-0000-0000-00000000000b";
        for (id, side, field, fp) in [
            (a, "crm", "firstname", 1i64),
            (a, "marketo", "firstName", -2),
            (b, "crm", "firstname", 3),
        ] {
            conn.execute(
                "INSERT INTO fingerprints (crm_id, side, field, fp, updated_at) VALUES (?1, ?2, ?3, ?4, '2024-01-01T00:00:00.000Z')",
                params![id, side, field, fp],
            )?;
        }
        migrate(&mut conn, "memory")?;
        assert_eq!(current_version(&conn)?, LATEST);
        let field_id = |side: &str, field: &str| -> Result<u32, StateError> {
            Ok(conn.query_row(
                "SELECT id FROM fp_fields WHERE side = ?1 AND field = ?2",
                params![side, field],
                |r| r.get::<_, u32>(0),
            )?)
        };
        let (crm, mkto) = (
            field_id("crm", "firstname")?,
            field_id("marketo", "firstName")?,
        );
        let blob: Vec<u8> =
            conn.query_row("SELECT fps FROM record_fps WHERE crm_id = ?1", [a], |r| {
                r.get(0)
            })?;
        let map = decode(&blob)?;
        assert_eq!(map.get(&crm), Some(&1));
        assert_eq!(map.get(&mkto), Some(&-2));
        let blob: Vec<u8> =
            conn.query_row("SELECT fps FROM record_fps WHERE crm_id = ?1", [b], |r| {
                r.get(0)
            })?;
        assert_eq!(
            decode(&blob)?.into_iter().collect::<Vec<_>>(),
            vec![(crm, 3)]
        );
        let old: i64 = conn.query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE name = 'fingerprints'",
            [],
            |r| r.get(0),
        )?;
        assert_eq!(old, 0);
        Ok(())
    }

    #[test]
    fn version_2_links_are_rekeyed_by_crm_id() -> Result<(), StateError> {
        let mut conn = Connection::open_in_memory()?;
        conn.execute_batch("CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at TEXT NOT NULL); INSERT INTO schema_version VALUES (2, 'x');")?;
        let Step::Sql(v1) = &STEPS[0] else {
            panic!("step 1 is SQL");
        };
        conn.execute_batch(v1)?;
        {
            let tx = conn.transaction()?;
            record_fingerprints(&tx)?;
            tx.commit()?;
        }
        for (entity, id, object, mid) in [
            (
                "lead",
                "00000000-0000-0000-0000-00000000000a",
                "person",
                Some(7i64),
            ),
            (
                "account",
                "00000000-0000-0000-0000-00000000000b",
                "company",
                None,
            ),
        ] {
            conn.execute(
                "INSERT INTO links (crm_entity, crm_id, object, marketo_id, filter_state, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, 'missing', 't', 't')",
                params![entity, id, object, mid],
            )?;
        }
        migrate(&mut conn, "memory")?;
        assert_eq!(current_version(&conn)?, LATEST);
        let rows: Vec<(String, String, Option<i64>)> = conn
            .prepare("SELECT crm_id, crm_entity, marketo_id FROM links ORDER BY crm_id")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        assert_eq!(
            rows,
            vec![
                (
                    "00000000-0000-0000-0000-00000000000a".into(),
                    "lead".into(),
                    Some(7)
                ),
                (
                    "00000000-0000-0000-0000-00000000000b".into(),
                    "account".into(),
                    None
                ),
            ]
        );
        // The Marketo id stays unique.
        assert!(
            conn.execute(
                "INSERT INTO links (crm_id, crm_entity, object, marketo_id, filter_state, created_at, updated_at)
                 VALUES ('00000000-0000-0000-0000-00000000000c', 'contact', 'person', 7, 'missing', 't', 't')",
                [],
            )
            .is_err()
        );
        Ok(())
    }
}
