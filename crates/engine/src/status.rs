//! `mdsync status`: where each entity's change capture stands, the last cycles, backlog and dead
//! letters — read from the state store only (no service call, no secret anywhere near it).

use chrono::{DateTime, Utc};
use mdsync_state::{Backlog, CycleRecord, StateError, StateStore};
use mdsync_sync_core::record::{CrmEntity, Side};
use serde::Serialize;

use crate::cursor::{CrmPosition, DELETED_LEADS, LEAD_CHANGES};

/// One entity's sync state.
#[derive(Clone, Debug, Serialize)]
pub struct EntityStatus {
    pub entity: CrmEntity,
    /// `not started`, `initial load` (pages committed so far) or `incremental`.
    pub phase: String,
    pub pages_loaded: Option<u64>,
    /// Records linked to a Marketo counterpart.
    pub linked: u64,
    /// When its cursor last advanced.
    pub cursor_updated_at: Option<DateTime<Utc>>,
}

/// The whole status report.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    pub entities: Vec<EntityStatus>,
    /// When the Marketo lead-change token last advanced.
    pub marketo_changes_at: Option<DateTime<Utc>>,
    pub marketo_deletes_at: Option<DateTime<Utc>>,
    pub backlog: Vec<Backlog>,
    /// Newest first.
    pub last_cycles: Vec<CycleRecord>,
    pub dead_letters: u64,
    pub conflicts_logged: u64,
}

impl Status {
    /// Reads the status of `entities` from a state store.
    pub fn read(store: &dyn StateStore, entities: &[CrmEntity]) -> Result<Status, StateError> {
        let mut out = Vec::new();
        for &entity in entities {
            let cursor = store.cursor(entity.logical_name(), Side::Crm)?;
            let (phase, pages) = match cursor.as_ref().map(|c| CrmPosition::parse(Some(&c.value))) {
                None => ("not started".to_owned(), None),
                Some(CrmPosition::Loading { pages, .. }) => {
                    ("initial load".to_owned(), Some(pages))
                }
                Some(CrmPosition::Delta(_)) => ("incremental".to_owned(), None),
            };
            out.push(EntityStatus {
                entity,
                phase,
                pages_loaded: pages,
                linked: store.link_count(Some(entity))?,
                cursor_updated_at: cursor.map(|c| c.updated_at),
            });
        }
        let mut conflicts = 0u64;
        let mut after = 0;
        loop {
            let page = store.conflicts(after, 1000)?;
            let Some(last) = page.last() else { break };
            after = last.id;
            conflicts += page.len() as u64;
        }
        Ok(Status {
            entities: out,
            marketo_changes_at: store
                .cursor(LEAD_CHANGES, Side::Marketo)?
                .map(|c| c.updated_at),
            marketo_deletes_at: store
                .cursor(DELETED_LEADS, Side::Marketo)?
                .map(|c| c.updated_at),
            backlog: store.backlog()?,
            last_cycles: store.cycles(5)?,
            dead_letters: store.dead_letter_count(false)?,
            conflicts_logged: conflicts,
        })
    }
}
