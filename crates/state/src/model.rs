//! What the state store keeps, as plain data.

use chrono::{DateTime, Utc};
use mdsync_sync_core::conflict::ConflictRecord;
use mdsync_sync_core::link::StateEffects;
use mdsync_sync_core::plan::PlannedDeadLetter;
use mdsync_sync_core::record::{CrmEntity, Flow, Side};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// A change-capture position: a Dataverse delta link or a Marketo paging token, opaque to the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// What the cursor tracks: an entity's logical name (`lead`) or a Marketo stream (`leadchanges`,
    /// `deletedleads`).
    pub scope: String,
    pub side: Side,
    pub value: String,
    pub updated_at: DateTime<Utc>,
}

/// A cursor to set in a commit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CursorUpdate {
    pub scope: String,
    pub side: Side,
    pub value: String,
}

/// A failed record, as recorded at commit time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewDeadLetter {
    pub entity: CrmEntity,
    pub crm_id: Option<Uuid>,
    pub marketo_id: Option<i64>,
    pub operation: String,
    pub direction: Flow,
    /// The service's error code (`1003`, `0x80044331`) or mdsync's (`conversion`).
    pub code: String,
    pub message: String,
    /// What to retry from (the source change or the request body).
    pub payload: Value,
}

impl From<PlannedDeadLetter> for NewDeadLetter {
    fn from(d: PlannedDeadLetter) -> Self {
        NewDeadLetter {
            entity: d.entity,
            crm_id: d.crm_id,
            marketo_id: d.marketo_id,
            operation: d.operation,
            direction: d.flow,
            code: d.code,
            message: d.message,
            payload: d.payload,
        }
    }
}

/// A dead letter as stored. The same record failing the same operation again while unresolved bumps
/// `attempts` and `last_seen` instead of adding a row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub id: i64,
    pub entity: CrmEntity,
    pub crm_id: Option<Uuid>,
    pub marketo_id: Option<i64>,
    pub operation: String,
    pub direction: Flow,
    pub code: String,
    pub message: String,
    pub payload: Value,
    pub attempts: i64,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub retried_at: Option<DateTime<Utc>>,
    pub resolved: bool,
}

/// Which dead letters to list (keyset-paged by id).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterQuery {
    pub entity: Option<CrmEntity>,
    pub include_resolved: bool,
    /// Only ids greater than this.
    pub after_id: i64,
    pub limit: u32,
}

impl Default for DeadLetterQuery {
    fn default() -> Self {
        DeadLetterQuery {
            entity: None,
            include_resolved: false,
            after_id: 0,
            limit: 100,
        }
    }
}

/// Export formats for `mdsync errors export`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// One JSON object per line.
    Jsonl,
    /// A JSON array (the shape of `errors list --json`).
    Json,
    Csv,
}

/// Per entity and direction: what is waiting to be written (the Sync Status backlog).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backlog {
    pub entity: CrmEntity,
    pub direction: Flow,
    pub pending_inserts: u64,
    pub pending_updates: u64,
    pub oldest: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// Everything one batch of a cycle makes true, committed atomically: the cursor advances only together
/// with the link and fingerprint state of the writes it covers.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct CycleCommit {
    pub cursors: Vec<CursorUpdate>,
    pub effects: StateEffects,
    pub dead_letters: Vec<NewDeadLetter>,
    /// Dead letters whose retry succeeded.
    pub resolved_dead_letters: Vec<i64>,
    pub conflicts: Vec<ConflictRecord>,
    pub backlog: Vec<Backlog>,
}

/// A logged conflict with its row id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredConflict {
    pub id: i64,
    #[serde(flatten)]
    pub conflict: ConflictRecord,
}

/// How a cycle ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CycleStatus {
    Running,
    Completed,
    Failed,
}

impl CycleStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CycleStatus::Running => "running",
            CycleStatus::Completed => "completed",
            CycleStatus::Failed => "failed",
        }
    }
}

/// One cycle in the history (`mdsync status`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CycleRecord {
    pub id: i64,
    /// `initial` or `incremental` (or what the engine calls it).
    pub mode: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub status: CycleStatus,
    /// The cycle's counts, as the engine reports them (e.g. plan count rows).
    pub counts: Value,
    pub error: Option<String>,
}

impl CycleCommit {
    /// The commit for a settled batch (see `CyclePlan::settle`) and the cursors it covers.
    pub fn from_settled(
        settled: mdsync_sync_core::plan::Settled,
        cursors: Vec<CursorUpdate>,
    ) -> CycleCommit {
        CycleCommit {
            cursors,
            effects: settled.effects,
            dead_letters: settled
                .dead_letters
                .into_iter()
                .map(NewDeadLetter::from)
                .collect(),
            resolved_dead_letters: Vec::new(),
            conflicts: settled.conflicts,
            backlog: Vec::new(),
        }
    }
}
