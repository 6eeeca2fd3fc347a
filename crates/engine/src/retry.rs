//! `mdsync errors retry`: dead letters are retried from the current data, not from a stale copy — a
//! Dataverse-side failure re-reads the record and sends it whole; a Marketo-side one re-plans the stored
//! change. A retry that succeeds resolves the dead letter; one that fails again bumps its attempts.

use mdsync_dataverse_client::ErrorKind;
use mdsync_state::{CycleCommit, DeadLetter, DeadLetterQuery};
use mdsync_sync_core::plan::{Mode, Op};
use mdsync_sync_core::record::{CrmChange, CrmRecord, Flow, MarketoChange};
use serde::Serialize;
use serde_json::Value;

use crate::engine::{Batch, CycleOptions, Engine};
use crate::error::EngineError;
use crate::report::CycleReport;

/// What a retry run did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RetryReport {
    pub attempted: u64,
    pub resolved: u64,
    pub still_failing: u64,
    /// Ids that do not exist or were already resolved.
    pub not_found: Vec<i64>,
    /// Dead letters with nothing to retry from (e.g. an unreadable row without an id).
    pub not_retryable: Vec<i64>,
}

impl Engine {
    /// Retries the given dead letters, or every unresolved one when `ids` is `None`.
    pub async fn retry_dead_letters(
        &self,
        ids: Option<Vec<i64>>,
    ) -> Result<RetryReport, EngineError> {
        let mut report = RetryReport::default();
        match ids {
            Some(ids) => {
                for id in ids {
                    let dl = self.store.with(move |s| s.dead_letter(id)).await?;
                    match dl {
                        Some(dl) if !dl.resolved => self.retry_one(dl, &mut report).await?,
                        _ => report.not_found.push(id),
                    }
                }
            }
            None => {
                let mut after_id = 0;
                loop {
                    let page = self
                        .store
                        .with(move |s| {
                            s.dead_letters(&DeadLetterQuery {
                                after_id,
                                limit: 100,
                                ..DeadLetterQuery::default()
                            })
                        })
                        .await?;
                    let Some(last) = page.last() else { break };
                    after_id = last.id;
                    for dl in page {
                        self.retry_one(dl, &mut report).await?;
                    }
                }
            }
        }
        Ok(report)
    }

    async fn retry_one(&self, dl: DeadLetter, report: &mut RetryReport) -> Result<(), EngineError> {
        let d = self.discovery().await?;
        let id = dl.id;
        self.store
            .with(move |s| s.mark_dead_letter_retried(id, chrono::Utc::now()))
            .await?;
        let batch = match (dl.direction, dl.crm_id) {
            (Flow::ToMarketo, Some(crm_id)) => {
                let select = d.select.get(&dl.entity).cloned().unwrap_or_default();
                match self
                    .crm
                    .retrieve(dl.entity.entity_set(), crm_id, &select)
                    .await
                {
                    Ok(row) => match CrmRecord::from_web_api(dl.entity, &Value::Object(row)) {
                        Ok(record) => Batch::retry(
                            Mode::Initial,
                            vec![CrmChange::Upsert(record)],
                            Vec::new(),
                            id,
                        ),
                        Err(_) => {
                            report.not_retryable.push(id);
                            return Ok(());
                        }
                    },
                    Err(e) if e.kind() == ErrorKind::NotFound => Batch::retry(
                        Mode::Incremental,
                        vec![CrmChange::Delete {
                            entity: dl.entity,
                            id: crm_id,
                        }],
                        Vec::new(),
                        id,
                    ),
                    Err(e) => return Err(e.into()),
                }
            }
            (Flow::ToDynamics, _) => {
                if let Some(op) = dl
                    .payload
                    .get("op")
                    .and_then(|v| serde_json::from_value::<Op>(v.clone()).ok())
                {
                    report.attempted += 1;
                    let done = self.writer().execute(std::slice::from_ref(&op)).await?;
                    let clean = done.dead_letters.is_empty();
                    self.commit(CycleCommit {
                        effects: done.effects,
                        dead_letters: done.dead_letters,
                        resolved_dead_letters: if clean { vec![id] } else { Vec::new() },
                        ..CycleCommit::default()
                    })
                    .await?;
                    if clean {
                        report.resolved += 1;
                    } else {
                        report.still_failing += 1;
                    }
                    return Ok(());
                }
                match serde_json::from_value::<MarketoChangeWire>(dl.payload.clone()) {
                    Ok(w) => Batch::retry(
                        Mode::Incremental,
                        Vec::new(),
                        vec![MarketoChange::Upsert {
                            person_id: w.person_id,
                            fields: w.fields,
                        }],
                        id,
                    ),
                    Err(_) => {
                        report.not_retryable.push(id);
                        return Ok(());
                    }
                }
            }
            _ => {
                report.not_retryable.push(id);
                return Ok(());
            }
        };
        report.attempted += 1;
        let mut scratch = CycleReport::default();
        let clean = self
            .process(&d, batch, None, &CycleOptions::default(), &mut scratch)
            .await?;
        if clean {
            report.resolved += 1;
        } else {
            report.still_failing += 1;
        }
        Ok(())
    }
}

/// The source change the planner stores with a Marketo → Dynamics conversion failure.
#[derive(serde::Deserialize)]
struct MarketoChangeWire {
    person_id: i64,
    fields: std::collections::BTreeMap<String, mdsync_sync_core::record::MarketoFieldChange>,
}
