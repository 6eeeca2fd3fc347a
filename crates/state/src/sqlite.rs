//! The embedded SQLite implementation of [`StateStore`].
//!
//! WAL journal with `synchronous=FULL`: a commit that returned has reached the disk, so a cursor never
//! survives a crash without the links and fingerprints it was committed with. Every read query is keyed
//! or keyset-paged, so memory stays bounded by the batch or page size.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use mdsync_sync_core::conflict::ConflictRecord;
use mdsync_sync_core::fingerprint::Fingerprint;
use mdsync_sync_core::link::{FieldFingerprint, Link, LinkChange};
use mdsync_sync_core::mapping::ConflictPolicy;
use mdsync_sync_core::record::{CrmEntity, Flow, MarketoObject, Side};
use mdsync_sync_core::sync_filter::FilterValue;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params, params_from_iter};
use serde_json::Value;
use uuid::Uuid;

use crate::StateStore;
use crate::error::StateError;
use crate::migrations;
use crate::model::{
    Backlog, Cursor, CycleCommit, CycleRecord, CycleStatus, DeadLetter, DeadLetterQuery,
    ExportFormat, NewDeadLetter, StoredConflict,
};
use crate::record_fps::{self, FieldDictionary, FpMap};

/// SQLite caps bound parameters per statement; lookups are split into chunks of this size.
const IN_CHUNK: usize = 500;

/// The embedded state store: one SQLite file.
pub struct SqliteStateStore {
    conn: Connection,
    path: PathBuf,
    fields: FieldDictionary,
}

impl std::fmt::Debug for SqliteStateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStateStore")
            .field("path", &self.path)
            .finish()
    }
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn parse_ts(s: &str) -> Result<DateTime<Utc>, StateError> {
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|_| StateError::Corrupt {
            what: "timestamp",
            value: s.to_owned(),
        })
}

fn parse_opt_ts(s: Option<String>) -> Result<Option<DateTime<Utc>>, StateError> {
    s.map(|s| parse_ts(&s)).transpose()
}

fn parse_uuid(s: &str) -> Result<Uuid, StateError> {
    Uuid::parse_str(s).map_err(|_| StateError::Corrupt {
        what: "GUID",
        value: s.to_owned(),
    })
}

fn parse_enum<T: FromStr>(what: &'static str, s: &str) -> Result<T, StateError> {
    s.parse().map_err(|_| StateError::Corrupt {
        what,
        value: s.to_owned(),
    })
}

fn parse_flow(s: &str) -> Result<Flow, StateError> {
    match s {
        "to_marketo" => Ok(Flow::ToMarketo),
        "to_dynamics" => Ok(Flow::ToDynamics),
        other => Err(StateError::Corrupt {
            what: "direction",
            value: other.to_owned(),
        }),
    }
}

fn parse_policy(s: &str) -> Result<ConflictPolicy, StateError> {
    serde_json::from_value(Value::String(s.to_owned())).map_err(|_| StateError::Corrupt {
        what: "conflict policy",
        value: s.to_owned(),
    })
}

fn parse_json(s: &str) -> Result<Value, StateError> {
    serde_json::from_str(s).map_err(|_| StateError::Corrupt {
        what: "JSON payload",
        value: s.chars().take(80).collect(),
    })
}

struct LinkRow {
    object: String,
    crm_entity: String,
    crm_id: String,
    marketo_id: Option<i64>,
    filter: String,
    created_at: String,
}

impl LinkRow {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<LinkRow> {
        Ok(LinkRow {
            object: r.get(0)?,
            crm_entity: r.get(1)?,
            crm_id: r.get(2)?,
            marketo_id: r.get(3)?,
            filter: r.get(4)?,
            created_at: r.get(5)?,
        })
    }

    fn into_link(self) -> Result<Link, StateError> {
        Ok(Link {
            object: parse_enum::<MarketoObject>("Marketo object", &self.object)?,
            crm_entity: parse_enum::<CrmEntity>("entity", &self.crm_entity)?,
            crm_id: parse_uuid(&self.crm_id)?,
            marketo_id: self.marketo_id,
            filter: parse_enum::<FilterValue>("filter state", &self.filter)?,
            created_at: parse_ts(&self.created_at)?,
        })
    }
}

const LINK_COLUMNS: &str = "object, crm_entity, crm_id, marketo_id, filter_state, created_at";
const DEAD_LETTER_COLUMNS: &str = "id, entity, crm_id, marketo_id, operation, direction, code, message, payload, attempts, first_seen, last_seen, retried_at, resolved";

struct DeadLetterRow {
    id: i64,
    entity: String,
    crm_id: Option<String>,
    marketo_id: Option<i64>,
    operation: String,
    direction: String,
    code: String,
    message: String,
    payload: String,
    attempts: i64,
    first_seen: String,
    last_seen: String,
    retried_at: Option<String>,
    resolved: bool,
}

impl DeadLetterRow {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<DeadLetterRow> {
        Ok(DeadLetterRow {
            id: r.get(0)?,
            entity: r.get(1)?,
            crm_id: r.get(2)?,
            marketo_id: r.get(3)?,
            operation: r.get(4)?,
            direction: r.get(5)?,
            code: r.get(6)?,
            message: r.get(7)?,
            payload: r.get(8)?,
            attempts: r.get(9)?,
            first_seen: r.get(10)?,
            last_seen: r.get(11)?,
            retried_at: r.get(12)?,
            resolved: r.get(13)?,
        })
    }

    fn into_dead_letter(self) -> Result<DeadLetter, StateError> {
        Ok(DeadLetter {
            id: self.id,
            entity: parse_enum("entity", &self.entity)?,
            crm_id: self.crm_id.as_deref().map(parse_uuid).transpose()?,
            marketo_id: self.marketo_id,
            operation: self.operation,
            direction: parse_flow(&self.direction)?,
            code: self.code,
            message: self.message,
            payload: parse_json(&self.payload)?,
            attempts: self.attempts,
            first_seen: parse_ts(&self.first_seen)?,
            last_seen: parse_ts(&self.last_seen)?,
            retried_at: parse_opt_ts(self.retried_at)?,
            resolved: self.resolved,
        })
    }
}

impl SqliteStateStore {
    /// Opens (creating if needed) the state database at `path` and brings its schema up to date.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStateStore, StateError> {
        let path = path.as_ref().to_path_buf();
        let mut conn = Connection::open(&path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Links and fingerprints are keyed by random GUIDs, so a page of 5000 records touches pages all
        // over their B-trees: a 16 MiB page cache keeps the upper levels in memory across commits (the default 2 MiB
        // made every commit re-read and spill pages), and a larger WAL checkpoint interval writes a page
        // back once for many commits instead of once per commit.
        conn.pragma_update(None, "cache_size", -16_384)?;
        conn.pragma_update(None, "wal_autocheckpoint", 8_192)?;
        migrations::migrate(&mut conn, &path.display().to_string())?;
        let fields = FieldDictionary::load(&conn)?;
        Ok(SqliteStateStore { conn, path, fields })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version after migrations.
    pub fn schema_version(&self) -> Result<i64, StateError> {
        migrations::current_version(&self.conn)
    }

    fn apply_link_change(
        tx: &Transaction<'_>,
        change: &LinkChange,
        now: &str,
    ) -> Result<(), StateError> {
        match change {
            LinkChange::Upsert(link) => {
                let upsert = |tx: &Transaction<'_>| -> rusqlite::Result<usize> {
                    tx.prepare_cached(
                        "INSERT INTO links (crm_id, crm_entity, object, marketo_id, filter_state, created_at, updated_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                         ON CONFLICT (crm_id) DO UPDATE SET
                           crm_entity = excluded.crm_entity,
                           object = excluded.object,
                           marketo_id = COALESCE(excluded.marketo_id, links.marketo_id),
                           filter_state = excluded.filter_state,
                           updated_at = excluded.updated_at",
                    )?
                    .execute(params![
                        link.crm_id.to_string(),
                        link.crm_entity.logical_name(),
                        link.object.as_str(),
                        link.marketo_id,
                        link.filter.as_str(),
                        ts(link.created_at),
                        now,
                    ])
                };
                match (upsert(tx), link.marketo_id) {
                    (Ok(_), _) => {}
                    // A Marketo id belongs to one record: a relink (qualify) moves it. Rare, so it is
                    // handled when the unique index refuses the row (the failed statement alone is
                    // undone; the transaction goes on).
                    (Err(rusqlite::Error::SqliteFailure(e, _)), Some(mid))
                        if e.code == rusqlite::ErrorCode::ConstraintViolation =>
                    {
                        tx.prepare_cached(
                            "DELETE FROM links WHERE object = ?1 AND marketo_id = ?2 AND crm_id <> ?3",
                        )?
                        .execute(params![link.object.as_str(), mid, link.crm_id.to_string()])?;
                        upsert(tx)?;
                    }
                    (Err(e), _) => return Err(e.into()),
                }
            }
            LinkChange::Remove { crm_entity, crm_id } => {
                tx.execute(
                    "DELETE FROM links WHERE crm_entity = ?1 AND crm_id = ?2",
                    params![crm_entity.logical_name(), crm_id.to_string()],
                )?;
                tx.prepare_cached("DELETE FROM record_fps WHERE crm_id = ?1")?
                    .execute(params![crm_id.to_string()])?;
            }
        }
        Ok(())
    }

    fn insert_dead_letter(
        tx: &Transaction<'_>,
        d: &NewDeadLetter,
        now: &str,
    ) -> Result<(), StateError> {
        let crm_id = d.crm_id.map(|u| u.to_string());
        let payload = d.payload.to_string();
        let updated = tx.execute(
            "UPDATE dead_letters SET code = ?1, message = ?2, payload = ?3, attempts = attempts + 1, last_seen = ?4
             WHERE resolved = 0 AND entity = ?5 AND crm_id IS ?6 AND marketo_id IS ?7 AND operation = ?8 AND direction = ?9",
            params![d.code, d.message, payload, now, d.entity.logical_name(), crm_id, d.marketo_id, d.operation, d.direction.as_str()],
        )?;
        if updated == 0 {
            tx.execute(
                "INSERT INTO dead_letters (entity, crm_id, marketo_id, operation, direction, code, message, payload, attempts, first_seen, last_seen, resolved)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 1, ?9, ?9, 0)",
                params![d.entity.logical_name(), crm_id, d.marketo_id, d.operation, d.direction.as_str(), d.code, d.message, payload, now],
            )?;
        }
        Ok(())
    }

    fn insert_conflict(tx: &Transaction<'_>, c: &ConflictRecord) -> Result<(), StateError> {
        tx.execute(
            "INSERT INTO conflicts (at, entity, crm_id, marketo_id, crm_field, marketo_field, crm_value, marketo_value, policy, outcome)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                ts(c.at),
                c.entity.logical_name(),
                c.crm_id.to_string(),
                c.marketo_id,
                c.crm_field,
                c.marketo_field,
                c.crm_value.to_string(),
                c.marketo_value.to_string(),
                c.policy.as_str(),
                c.outcome.as_str(),
            ],
        )?;
        Ok(())
    }

    /// Merges a commit's fingerprints into each record's stored map (one row per record). Returns the
    /// field names interned in `tx`, for the dictionary once the transaction commits.
    fn write_fingerprints(
        tx: &Transaction<'_>,
        fields: &FieldDictionary,
        commit: &CycleCommit,
        now: &str,
    ) -> Result<Vec<(u32, Side, String)>, StateError> {
        let mut interned: Vec<(u32, Side, String)> = Vec::new();
        // Per record, in first-seen order; later entries for the same field win.
        let mut order: Vec<Uuid> = Vec::new();
        let mut maps: std::collections::HashMap<Uuid, FpMap> = std::collections::HashMap::new();
        for f in &commit.effects.fingerprints {
            let id = match fields.id(f.side, &f.field) {
                Some(id) => id,
                None => match interned
                    .iter()
                    .find(|(_, s, n)| *s == f.side && *n == f.field)
                {
                    Some((id, _, _)) => *id,
                    None => {
                        let id = FieldDictionary::intern(tx, f.side, &f.field)?;
                        interned.push((id, f.side, f.field.clone()));
                        id
                    }
                },
            };
            maps.entry(f.crm_id)
                .or_insert_with(|| {
                    order.push(f.crm_id);
                    FpMap::new()
                })
                .insert(id, f.fingerprint.0);
        }
        if order.is_empty() {
            return Ok(interned);
        }
        let mut read = tx.prepare_cached("SELECT fps FROM record_fps WHERE crm_id = ?1")?;
        let mut write = tx.prepare_cached(
            "INSERT INTO record_fps (crm_id, fps, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (crm_id) DO UPDATE SET fps = excluded.fps, updated_at = excluded.updated_at",
        )?;
        for crm_id in order {
            let Some(new) = maps.remove(&crm_id) else {
                continue;
            };
            let key = crm_id.to_string();
            let stored: Option<Vec<u8>> = read.query_row(params![key], |r| r.get(0)).optional()?;
            let merged = match stored {
                Some(blob) => {
                    let mut map = record_fps::decode(&blob)?;
                    map.extend(new);
                    map
                }
                None => new,
            };
            write.execute(params![key, record_fps::encode(&merged), now])?;
        }
        Ok(interned)
    }

    /// Streams dead letters matching `query` (ignoring its `limit`/`after_id`) to `f`, in id order.
    fn for_each_dead_letter(
        &self,
        include_resolved: bool,
        f: &mut dyn FnMut(DeadLetter) -> Result<(), StateError>,
    ) -> Result<u64, StateError> {
        let mut after = 0i64;
        let mut n = 0u64;
        loop {
            let page = self.dead_letters(&DeadLetterQuery {
                entity: None,
                include_resolved,
                after_id: after,
                limit: 500,
            })?;
            if page.is_empty() {
                return Ok(n);
            }
            for d in page {
                after = d.id;
                n += 1;
                f(d)?;
            }
        }
    }
}

impl StateStore for SqliteStateStore {
    fn links_by_crm_ids(&self, ids: &[Uuid]) -> Result<Vec<Link>, StateError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(IN_CHUNK) {
            let marks = vec!["?"; chunk.len()].join(",");
            let mut stmt = self.conn.prepare_cached(&format!(
                "SELECT {LINK_COLUMNS} FROM links WHERE crm_id IN ({marks})"
            ))?;
            let rows = stmt.query_map(
                params_from_iter(chunk.iter().map(|u| u.to_string())),
                LinkRow::from_row,
            )?;
            for row in rows {
                out.push(row?.into_link()?);
            }
        }
        Ok(out)
    }

    fn links_by_marketo_ids(
        &self,
        object: MarketoObject,
        ids: &[i64],
    ) -> Result<Vec<Link>, StateError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(IN_CHUNK) {
            let marks = vec!["?"; chunk.len()].join(",");
            let mut stmt = self.conn.prepare_cached(&format!(
                "SELECT {LINK_COLUMNS} FROM links WHERE object = ? AND marketo_id IN ({marks})"
            ))?;
            let params: Vec<rusqlite::types::Value> =
                std::iter::once(rusqlite::types::Value::Text(object.as_str().to_owned()))
                    .chain(chunk.iter().map(|i| rusqlite::types::Value::Integer(*i)))
                    .collect();
            let rows = stmt.query_map(params_from_iter(params), LinkRow::from_row)?;
            for row in rows {
                out.push(row?.into_link()?);
            }
        }
        Ok(out)
    }

    fn links_page(
        &self,
        entity: CrmEntity,
        after_crm_id: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Link>, StateError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {LINK_COLUMNS} FROM links WHERE crm_entity = ?1 AND crm_id > ?2 ORDER BY crm_id LIMIT ?3"
        ))?;
        let after = after_crm_id.map(|u| u.to_string()).unwrap_or_default();
        let rows = stmt.query_map(
            params![entity.logical_name(), after, limit],
            LinkRow::from_row,
        )?;
        rows.map(|r| r.map_err(StateError::from).and_then(LinkRow::into_link))
            .collect()
    }

    fn link_count(&self, entity: Option<CrmEntity>) -> Result<u64, StateError> {
        let n: i64 = match entity {
            Some(e) => self.conn.query_row(
                "SELECT COUNT(*) FROM links WHERE crm_entity = ?1",
                params![e.logical_name()],
                |r| r.get(0),
            )?,
            None => self
                .conn
                .query_row("SELECT COUNT(*) FROM links", [], |r| r.get(0))?,
        };
        Ok(n as u64)
    }

    fn fingerprints(&self, crm_ids: &[Uuid]) -> Result<Vec<FieldFingerprint>, StateError> {
        let mut out = Vec::new();
        for chunk in crm_ids.chunks(IN_CHUNK) {
            let marks = vec!["?"; chunk.len()].join(",");
            let mut stmt = self.conn.prepare_cached(&format!(
                "SELECT crm_id, fps FROM record_fps WHERE crm_id IN ({marks})"
            ))?;
            let mut rows = stmt.query(params_from_iter(chunk.iter().map(|u| u.to_string())))?;
            while let Some(row) = rows.next()? {
                let crm_id = parse_uuid(&row.get::<_, String>(0)?)?;
                let map = record_fps::decode(&row.get::<_, Vec<u8>>(1)?)?;
                for (id, fp) in map {
                    let (side, field) =
                        self.fields.name(id).ok_or_else(|| StateError::Corrupt {
                            what: "fingerprint field id",
                            value: id.to_string(),
                        })?;
                    out.push(FieldFingerprint {
                        crm_id,
                        side: *side,
                        field: field.clone(),
                        fingerprint: Fingerprint(fp),
                    });
                }
            }
        }
        Ok(out)
    }

    fn cursor(&self, scope: &str, side: Side) -> Result<Option<Cursor>, StateError> {
        let row = self
            .conn
            .query_row(
                "SELECT value, updated_at FROM cursors WHERE scope = ?1 AND side = ?2",
                params![scope, side.as_str()],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
            )
            .optional()?;
        row.map(|(value, updated_at)| {
            Ok(Cursor {
                scope: scope.to_owned(),
                side,
                value,
                updated_at: parse_ts(&updated_at)?,
            })
        })
        .transpose()
    }

    fn commit_cycle(&mut self, commit: &CycleCommit, now: DateTime<Utc>) -> Result<(), StateError> {
        let now = ts(now);
        let tx = self.conn.transaction()?;
        for change in &commit.effects.links {
            Self::apply_link_change(&tx, change, &now)?;
        }
        let interned = Self::write_fingerprints(&tx, &self.fields, commit, &now)?;
        for d in &commit.dead_letters {
            Self::insert_dead_letter(&tx, d, &now)?;
        }
        for id in &commit.resolved_dead_letters {
            tx.execute(
                "UPDATE dead_letters SET resolved = 1, last_seen = ?2 WHERE id = ?1",
                params![id, now],
            )?;
        }
        for c in &commit.conflicts {
            Self::insert_conflict(&tx, c)?;
        }
        for b in &commit.backlog {
            tx.execute(
                "INSERT INTO backlog (entity, direction, pending_inserts, pending_updates, oldest, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (entity, direction) DO UPDATE SET pending_inserts = excluded.pending_inserts,
                   pending_updates = excluded.pending_updates, oldest = excluded.oldest, updated_at = excluded.updated_at",
                params![
                    b.entity.logical_name(),
                    b.direction.as_str(),
                    b.pending_inserts as i64,
                    b.pending_updates as i64,
                    b.oldest.map(ts),
                    ts(b.updated_at)
                ],
            )?;
        }
        // Cursors last: if anything above failed, the transaction rolls back and they never move.
        for c in &commit.cursors {
            tx.execute(
                "INSERT INTO cursors (scope, side, value, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (scope, side) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                params![c.scope, c.side.as_str(), c.value, now],
            )?;
        }
        tx.commit()?;
        for (id, side, field) in interned {
            self.fields.insert(id, side, field);
        }
        Ok(())
    }

    fn start_cycle(&mut self, mode: &str, started_at: DateTime<Utc>) -> Result<i64, StateError> {
        self.conn.execute(
            "INSERT INTO cycles (mode, started_at, status, counts) VALUES (?1, ?2, 'running', 'null')",
            params![mode, ts(started_at)],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    fn finish_cycle(
        &mut self,
        id: i64,
        finished_at: DateTime<Utc>,
        status: CycleStatus,
        counts: &Value,
        error: Option<&str>,
    ) -> Result<(), StateError> {
        self.conn.execute(
            "UPDATE cycles SET finished_at = ?2, status = ?3, counts = ?4, error = ?5 WHERE id = ?1",
            params![id, ts(finished_at), status.as_str(), counts.to_string(), error],
        )?;
        Ok(())
    }

    fn cycles(&self, limit: u32) -> Result<Vec<CycleRecord>, StateError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, mode, started_at, finished_at, status, counts, error FROM cycles ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map(params![limit], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, Option<String>>(6)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, mode, started, finished, status, counts, error) = row?;
            out.push(CycleRecord {
                id,
                mode,
                started_at: parse_ts(&started)?,
                finished_at: parse_opt_ts(finished)?,
                status: match status.as_str() {
                    "running" => CycleStatus::Running,
                    "completed" => CycleStatus::Completed,
                    "failed" => CycleStatus::Failed,
                    other => {
                        return Err(StateError::Corrupt {
                            what: "cycle status",
                            value: other.to_owned(),
                        });
                    }
                },
                counts: parse_json(&counts)?,
                error,
            });
        }
        Ok(out)
    }

    fn dead_letters(&self, query: &DeadLetterQuery) -> Result<Vec<DeadLetter>, StateError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters
             WHERE id > ?1 AND (?2 OR resolved = 0) AND (?3 IS NULL OR entity = ?3)
             ORDER BY id LIMIT ?4"
        ))?;
        let rows = stmt.query_map(
            params![
                query.after_id,
                query.include_resolved,
                query.entity.map(|e| e.logical_name()),
                query.limit
            ],
            DeadLetterRow::from_row,
        )?;
        rows.map(|r| {
            r.map_err(StateError::from)
                .and_then(DeadLetterRow::into_dead_letter)
        })
        .collect()
    }

    fn dead_letter(&self, id: i64) -> Result<Option<DeadLetter>, StateError> {
        self.conn
            .query_row(
                &format!("SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters WHERE id = ?1"),
                params![id],
                DeadLetterRow::from_row,
            )
            .optional()?
            .map(DeadLetterRow::into_dead_letter)
            .transpose()
    }

    fn dead_letter_count(&self, include_resolved: bool) -> Result<u64, StateError> {
        let n: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM dead_letters WHERE ?1 OR resolved = 0",
            params![include_resolved],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    fn mark_dead_letter_retried(&mut self, id: i64, at: DateTime<Utc>) -> Result<bool, StateError> {
        let n = self.conn.execute(
            "UPDATE dead_letters SET retried_at = ?2, attempts = attempts + 1, last_seen = ?2 WHERE id = ?1",
            params![id, ts(at)],
        )?;
        Ok(n == 1)
    }

    fn resolve_dead_letter(&mut self, id: i64, at: DateTime<Utc>) -> Result<bool, StateError> {
        let n = self.conn.execute(
            "UPDATE dead_letters SET resolved = 1, last_seen = ?2 WHERE id = ?1",
            params![id, ts(at)],
        )?;
        Ok(n == 1)
    }

    fn export_dead_letters(
        &self,
        format: ExportFormat,
        include_resolved: bool,
        out: &mut dyn Write,
    ) -> Result<u64, StateError> {
        let io = |e: std::io::Error| StateError::Export(e.to_string());
        match format {
            ExportFormat::Jsonl => self.for_each_dead_letter(include_resolved, &mut |d| {
                serde_json::to_writer(&mut *out, &d)
                    .map_err(|e| StateError::Export(e.to_string()))?;
                out.write_all(b"\n").map_err(io)
            }),
            ExportFormat::Json => {
                out.write_all(b"[").map_err(io)?;
                let mut first = true;
                let n = self.for_each_dead_letter(include_resolved, &mut |d| {
                    if !first {
                        out.write_all(b",").map_err(io)?;
                    }
                    first = false;
                    serde_json::to_writer(&mut *out, &d)
                        .map_err(|e| StateError::Export(e.to_string()))
                })?;
                out.write_all(b"]\n").map_err(io)?;
                Ok(n)
            }
            ExportFormat::Csv => {
                let mut w = csv::Writer::from_writer(out);
                let err = |e: csv::Error| StateError::Export(e.to_string());
                w.write_record([
                    "id",
                    "entity",
                    "crm_id",
                    "marketo_id",
                    "operation",
                    "direction",
                    "code",
                    "message",
                    "attempts",
                    "first_seen",
                    "last_seen",
                    "resolved",
                    "payload",
                ])
                .map_err(err)?;
                let n = self.for_each_dead_letter(include_resolved, &mut |d| {
                    w.write_record([
                        d.id.to_string(),
                        d.entity.to_string(),
                        d.crm_id.map(|u| u.to_string()).unwrap_or_default(),
                        d.marketo_id.map(|i| i.to_string()).unwrap_or_default(),
                        d.operation,
                        d.direction.to_string(),
                        d.code,
                        d.message,
                        d.attempts.to_string(),
                        ts(d.first_seen),
                        ts(d.last_seen),
                        d.resolved.to_string(),
                        d.payload.to_string(),
                    ])
                    .map_err(err)
                })?;
                w.flush().map_err(io)?;
                Ok(n)
            }
        }
    }

    fn conflicts(&self, after_id: i64, limit: u32) -> Result<Vec<StoredConflict>, StateError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, at, entity, crm_id, marketo_id, crm_field, marketo_field, crm_value, marketo_value, policy, outcome
             FROM conflicts WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![after_id, limit], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<i64>>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, String>(7)?,
                r.get::<_, String>(8)?,
                r.get::<_, String>(9)?,
                r.get::<_, String>(10)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (
                id,
                at,
                entity,
                crm_id,
                marketo_id,
                crm_field,
                marketo_field,
                crm_value,
                marketo_value,
                policy,
                outcome,
            ) = row?;
            out.push(StoredConflict {
                id,
                conflict: ConflictRecord {
                    entity: parse_enum("entity", &entity)?,
                    crm_id: parse_uuid(&crm_id)?,
                    marketo_id,
                    crm_field,
                    marketo_field,
                    crm_value: parse_json(&crm_value)?,
                    marketo_value: parse_json(&marketo_value)?,
                    policy: parse_policy(&policy)?,
                    outcome: parse_enum("side", &outcome)?,
                    at: parse_ts(&at)?,
                },
            });
        }
        Ok(out)
    }

    fn backlog(&self) -> Result<Vec<Backlog>, StateError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT entity, direction, pending_inserts, pending_updates, oldest, updated_at FROM backlog ORDER BY entity, direction",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, String>(5)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (entity, direction, inserts, updates, oldest, updated_at) = row?;
            out.push(Backlog {
                entity: parse_enum("entity", &entity)?,
                direction: parse_flow(&direction)?,
                pending_inserts: inserts.max(0) as u64,
                pending_updates: updates.max(0) as u64,
                oldest: parse_opt_ts(oldest)?,
                updated_at: parse_ts(&updated_at)?,
            });
        }
        Ok(out)
    }
}
