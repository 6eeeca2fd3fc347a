//! mdsync's state: links between CRM records and Marketo objects, per-field fingerprints, change-capture
//! cursors, dead letters, the conflict log, cycle history and backlog counters.
//!
//! Fingerprints are stored one row per record (field names interned, a compact `field → fingerprint`
//! map for both sides), so a synced record costs two row writes (link + fingerprints), not thirty.
//!
//! **Architecture invariant:** a cursor advances only in the same transaction as the link, fingerprint and
//! dead-letter state of the writes it covers ([`StateStore::commit_cycle`]). Because every write mdsync
//! makes is an upsert by key, a crash at any point replays at most the uncommitted batch, which converges.
//!
//! [`StateStore`] is synchronous (the engine calls it from `spawn_blocking`) and object-safe, so a server
//! database can implement it next to [`SqliteStateStore`], the embedded default.

mod error;
mod migrations;
pub mod model;
mod record_fps;
mod sqlite;

use std::io::Write;

use chrono::{DateTime, Utc};
use mdsync_sync_core::link::{FieldFingerprint, Link};
use mdsync_sync_core::record::{CrmEntity, MarketoObject, Side};
use serde_json::Value;
use uuid::Uuid;

pub use error::StateError;
pub use migrations::LATEST as SCHEMA_VERSION;
pub use model::*;
pub use sqlite::SqliteStateStore;

/// The state store's operations. Reads are keyed or keyset-paged so memory stays bounded.
pub trait StateStore: Send {
    /// Links of these CRM records (any entity); missing ids are simply absent.
    fn links_by_crm_ids(&self, ids: &[Uuid]) -> Result<Vec<Link>, StateError>;
    /// Links of these Marketo objects.
    fn links_by_marketo_ids(
        &self,
        object: MarketoObject,
        ids: &[i64],
    ) -> Result<Vec<Link>, StateError>;
    /// One page of an entity's links ordered by CRM id, after `after_crm_id` (for resyncs and audits).
    fn links_page(
        &self,
        entity: CrmEntity,
        after_crm_id: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Link>, StateError>;
    fn link_count(&self, entity: Option<CrmEntity>) -> Result<u64, StateError>;
    /// Fingerprints of these CRM records, both sides.
    fn fingerprints(&self, crm_ids: &[Uuid]) -> Result<Vec<FieldFingerprint>, StateError>;
    fn cursor(&self, scope: &str, side: Side) -> Result<Option<Cursor>, StateError>;

    /// Applies a whole batch atomically (see the crate docs): all of it or, on any error, none of it.
    fn commit_cycle(&mut self, commit: &CycleCommit, now: DateTime<Utc>) -> Result<(), StateError>;

    fn start_cycle(&mut self, mode: &str, started_at: DateTime<Utc>) -> Result<i64, StateError>;
    fn finish_cycle(
        &mut self,
        id: i64,
        finished_at: DateTime<Utc>,
        status: CycleStatus,
        counts: &Value,
        error: Option<&str>,
    ) -> Result<(), StateError>;
    /// The latest cycles, newest first.
    fn cycles(&self, limit: u32) -> Result<Vec<CycleRecord>, StateError>;

    fn dead_letters(&self, query: &DeadLetterQuery) -> Result<Vec<DeadLetter>, StateError>;
    fn dead_letter(&self, id: i64) -> Result<Option<DeadLetter>, StateError>;
    fn dead_letter_count(&self, include_resolved: bool) -> Result<u64, StateError>;
    /// Records a retry attempt (`errors retry`); returns whether the id exists.
    fn mark_dead_letter_retried(&mut self, id: i64, at: DateTime<Utc>) -> Result<bool, StateError>;
    /// Marks a dead letter resolved; returns whether the id exists.
    fn resolve_dead_letter(&mut self, id: i64, at: DateTime<Utc>) -> Result<bool, StateError>;
    /// Streams dead letters to `out` in id order; returns how many were written.
    fn export_dead_letters(
        &self,
        format: ExportFormat,
        include_resolved: bool,
        out: &mut dyn Write,
    ) -> Result<u64, StateError>;

    /// The conflict log, keyset-paged by id.
    fn conflicts(&self, after_id: i64, limit: u32) -> Result<Vec<StoredConflict>, StateError>;
    fn backlog(&self) -> Result<Vec<Backlog>, StateError>;
}
