//! What a cycle did, for the summary table, `--json` output and the cycle history.

use chrono::{DateTime, Utc};
use mdsync_sync_core::plan::{CountRow, PlanCounts};
use serde::Serialize;

/// Per entity: where its change capture stood and what was read.
#[derive(Clone, Debug, Default, Serialize)]
pub struct EntityReport {
    pub entity: String,
    /// `initial` (a load ran or resumed), `incremental`, or `resync` (the delta link had expired).
    pub mode: String,
    pub rows_read: u64,
    pub pages: u64,
    /// Whether the entity finished its initial load (or resync) in this cycle.
    pub load_completed: bool,
    /// An interrupted initial load continued after this many committed pages (not re-read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed_at_page: Option<u64>,
}

/// Wall-clock time per phase of a cycle, in milliseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Timings {
    pub crm_read_ms: u64,
    pub marketo_read_ms: u64,
    pub state_read_ms: u64,
    pub plan_ms: u64,
    pub write_ms: u64,
    pub commit_ms: u64,
}

/// Everything one cycle did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CycleReport {
    pub cycle_id: Option<i64>,
    pub dry_run: bool,
    /// `initial`, `incremental` or `mixed`.
    pub mode: String,
    pub started_at: Option<DateTime<Utc>>,
    pub duration_ms: u64,
    pub entities: Vec<EntityReport>,
    /// Per entity and direction: creates, updates, deletes, unlinks, conflicts, skips, echoes, dead letters.
    pub counts: Vec<CountRow>,
    pub marketo_changes_read: u64,
    pub marketo_deletes_read: u64,
    pub marketo_writes: u64,
    pub crm_writes: u64,
    /// Marketo calls this cycle spent (the client's own count).
    pub marketo_calls: u64,
    pub dead_letters: u64,
    pub conflicts: u64,
    /// Entities whose delta link had expired and were re-read in full (only differences were written).
    pub resyncs: Vec<String>,
    /// More Marketo activity pages were waiting when the cycle stopped reading (per-cycle cap).
    pub marketo_backlog: bool,
    /// Where the time went, in ms: reading Dataverse pages, planning, writing, committing state.
    pub timings: Timings,
    pub notes: Vec<String>,
    #[serde(skip)]
    pub(crate) plan_counts: PlanCounts,
}

impl CycleReport {
    pub(crate) fn entity(&mut self, entity: &str) -> &mut EntityReport {
        if let Some(i) = self.entities.iter().position(|e| e.entity == entity) {
            return &mut self.entities[i];
        }
        self.entities.push(EntityReport {
            entity: entity.to_owned(),
            ..EntityReport::default()
        });
        let last = self.entities.len() - 1;
        &mut self.entities[last]
    }

    pub(crate) fn finish_counts(&mut self) {
        self.counts = self.plan_counts.rows();
    }

    /// The summary table printed after each cycle.
    pub fn table(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "{:<12} {:<12} {:>7} {:>7} {:>7} {:>7} {:>9} {:>6} {:>6} {:>5}\n",
            "entity",
            "direction",
            "create",
            "update",
            "delete",
            "unlink",
            "conflict",
            "skip",
            "echo",
            "dead"
        ));
        for row in &self.counts {
            let c = &row.counts;
            out.push_str(&format!(
                "{:<12} {:<12} {:>7} {:>7} {:>7} {:>7} {:>9} {:>6} {:>6} {:>5}\n",
                row.entity.to_string(),
                row.flow.to_string(),
                c.creates,
                c.updates,
                c.deletes,
                c.unlinks,
                c.conflicts,
                c.skips,
                c.echoes,
                c.dead_letters
            ));
        }
        if self.counts.is_empty() {
            out.push_str("(no changes)\n");
        }
        out.push_str(&format!(
            "{} cycle{} in {:.1} s: {} Marketo writes, {} Dataverse writes, {} Marketo calls, {} dead letters, {} conflicts{}\n",
            self.mode,
            if self.dry_run { " (dry run: nothing written)" } else { "" },
            self.duration_ms as f64 / 1000.0,
            self.marketo_writes,
            self.crm_writes,
            self.marketo_calls,
            self.dead_letters,
            self.conflicts,
            if self.resyncs.is_empty() {
                String::new()
            } else {
                format!(", resynced: {}", self.resyncs.join(", "))
            }
        ));
        out
    }
}
