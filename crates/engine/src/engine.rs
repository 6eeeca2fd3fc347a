//! The engine: one cycle reads both sides' changes, plans them with the sync core, writes them in
//! batches and commits the resulting state together with the cursors that cover them.
//!
//! **Invariant:** a cursor (delta link, paging token, load position) is committed in the same state
//! transaction as the link/fingerprint/dead-letter state of the writes it covers, and only after those
//! writes were acknowledged by the target. Every write is an upsert by key, so a crash anywhere replays at
//! most the uncommitted batch, which converges.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use futures::{Stream, TryStreamExt};
use mdsync_dataverse_client::{Change, ChangePage, Client as CrmClient, DataverseError, ErrorKind};
use mdsync_marketo_client::{ActivityFilter, Client as MarketoClient};
use mdsync_state::{Backlog, CursorUpdate, CycleCommit, CycleStatus, NewDeadLetter, StateStore};
use mdsync_sync_core::conflict::ConflictRecord;
use mdsync_sync_core::echo::SyncIdentity;
use mdsync_sync_core::fingerprint::Fingerprint;
use mdsync_sync_core::link::{FingerprintView, LinkView, StateEffects};
use mdsync_sync_core::mapping::MSFT_ID;
use mdsync_sync_core::plan::{self, CycleInput, Mode, Op, PlanSettings};
use mdsync_sync_core::record::{
    ActivityAttribute, ChangeActor, CrmChange, CrmEntity, CrmRecord, Flow, LeadChangeActivity,
    MarketoChange, MarketoObject, Side, fold_lead_changes,
};
use mdsync_sync_core::sync_filter::FILTER_FIELD;
use serde_json::Value;
use tokio::sync::Mutex as AsyncMutex;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::cursor::{CrmPosition, DELETED_LEADS, LEAD_CHANGES};
use crate::discover::{self, CUSTOMER, Discovery, ORIGINATING_LEAD};
use crate::error::EngineError;
use crate::execute::{Writer, retrying};
use crate::report::CycleReport;
use crate::settings::EngineSettings;
use crate::store::SharedStore;

/// Receives initial-load progress (the CLI draws bars; tests and `run` ignore it).
pub trait Progress: Send + Sync {
    /// An entity's load starts; `total` is the row count when the service tells it.
    fn start(&self, entity: CrmEntity, total: Option<u64>);
    fn advance(&self, entity: CrmEntity, rows: u64);
    fn finish(&self, entity: CrmEntity);
}

/// How to run one cycle.
#[derive(Clone, Default)]
pub struct CycleOptions {
    /// Plan and count, write nothing (not even the cycle history).
    pub dry_run: bool,
    /// Skip reading Marketo changes this cycle (continuous mode polls Marketo less often than Dataverse).
    pub skip_marketo: bool,
    pub progress: Option<Arc<dyn Progress>>,
}

/// The sync engine for one Dataverse org and one Marketo instance.
pub struct Engine {
    pub(crate) crm: CrmClient,
    pub(crate) marketo: MarketoClient,
    pub(crate) store: SharedStore,
    pub(crate) settings: Arc<EngineSettings>,
    discovery: AsyncMutex<Option<Arc<Discovery>>>,
}

/// Marketo changes read at the start of a cycle, consumed by the batches they belong to.
pub(crate) struct Pending {
    upserts: HashMap<i64, MarketoChange>,
    order: Vec<i64>,
    deletes: Vec<MarketoChange>,
    cursors: Vec<CursorUpdate>,
}

impl Pending {
    fn empty() -> Pending {
        Pending {
            upserts: HashMap::new(),
            order: Vec::new(),
            deletes: Vec::new(),
            cursors: Vec::new(),
        }
    }

    fn take(&mut self, person_id: i64) -> Option<MarketoChange> {
        self.upserts.remove(&person_id)
    }
}

/// A planned batch.
pub(crate) enum Planned {
    /// Dry run: nothing to write; whether planning found no failure.
    DryRun {
        clean: bool,
    },
    Ready(Box<Ready>),
}

/// A planned batch waiting for its writes and commit (owns everything, so it can run on its own task).
pub(crate) struct Ready {
    ops: Vec<Op>,
    unconditional: StateEffects,
    /// The batch's own (read) and the plan's dead letters.
    dead_letters: Vec<NewDeadLetter>,
    /// Dead letters not yet in the plan counts (read failures).
    counted: Vec<(CrmEntity, Flow)>,
    conflicts: Vec<ConflictRecord>,
    cursors: Vec<CursorUpdate>,
    backlog: Vec<Backlog>,
    retry_of: Option<i64>,
}

/// What writing and committing a batch did, for the cycle report.
pub(crate) struct Applied {
    marketo_writes: u64,
    crm_writes: u64,
    /// Per dead letter not yet in the plan counts.
    counted: Vec<(CrmEntity, Flow)>,
    dead_letters: u64,
    write_ms: u64,
    commit_ms: u64,
}

impl Applied {
    /// Adds this batch to the report; returns whether nothing failed.
    fn account(self, report: &mut CycleReport) -> bool {
        report.marketo_writes += self.marketo_writes;
        report.crm_writes += self.crm_writes;
        report.timings.write_ms += self.write_ms;
        report.timings.commit_ms += self.commit_ms;
        for (entity, flow) in self.counted {
            report.plan_counts.entry(entity, flow).dead_letters += 1;
        }
        report.dead_letters += self.dead_letters;
        self.dead_letters == 0
    }
}

/// Writes a planned batch and commits its state and cursors. With `after`, the commit waits until the
/// previous batch committed (cursors advance in order) and fails without committing if it did not;
/// `done` tells the next batch.
async fn apply(
    writer: Writer,
    store: SharedStore,
    ready: Box<Ready>,
    after: Option<oneshot::Receiver<()>>,
    done: Option<oneshot::Sender<()>>,
) -> Result<Applied, EngineError> {
    let ready = *ready;
    let t_write = Instant::now();
    let executed = writer.execute(&ready.ops).await?;
    let write_ms = t_write.elapsed().as_millis() as u64;
    drop(ready.ops);
    let mut effects = ready.unconditional;
    effects.extend(executed.effects);
    let mut counted = ready.counted;
    counted.extend(
        executed
            .dead_letters
            .iter()
            .map(|d| (d.entity, d.direction)),
    );
    let mut dead_letters = ready.dead_letters;
    dead_letters.extend(executed.dead_letters);
    let clean = dead_letters.is_empty();
    let resolved_dead_letters = match ready.retry_of {
        Some(id) if clean => vec![id],
        _ => Vec::new(),
    };
    let count = dead_letters.len() as u64;
    if let Some(after) = after {
        after
            .await
            .map_err(|_| EngineError::Task("an earlier batch did not commit".into()))?;
    }
    let t_commit = Instant::now();
    let commit = CycleCommit {
        cursors: ready.cursors,
        effects,
        dead_letters,
        resolved_dead_letters,
        conflicts: ready.conflicts,
        backlog: ready.backlog,
    };
    store
        .with(move |s| s.commit_cycle(&commit, Utc::now()))
        .await?;
    if let Some(done) = done {
        let _ = done.send(());
    }
    Ok(Applied {
        marketo_writes: executed.marketo_writes,
        crm_writes: executed.crm_writes,
        counted,
        dead_letters: count,
        write_ms,
        commit_ms: t_commit.elapsed().as_millis() as u64,
    })
}

/// Reads `stream` on its own task, up to `ahead` pages ahead of the consumer (memory: `ahead` pages).
/// The task ends when the receiver is dropped.
fn prefetch(
    stream: impl Stream<Item = Result<ChangePage, DataverseError>> + Send + 'static,
    ahead: usize,
) -> PageReceiver {
    let (tx, rx) = mpsc::channel(ahead.max(1));
    let task = tokio::spawn(async move {
        futures::pin_mut!(stream);
        loop {
            // A slot first, then the read: at most `ahead` pages exist beyond the consumer's.
            let Ok(slot) = tx.reserve().await else {
                return;
            };
            let next = stream.try_next().await.transpose();
            let end = !matches!(next, Some(Ok(_)));
            if let Some(item) = next {
                slot.send(item);
            }
            if end {
                return;
            }
        }
    });
    PageReceiver { rx, task }
}

/// Pages read ahead by [`prefetch`]; dropping it stops the reader.
struct PageReceiver {
    rx: mpsc::Receiver<Result<ChangePage, DataverseError>>,
    task: tokio::task::JoinHandle<()>,
}

impl PageReceiver {
    async fn recv(&mut self) -> Option<Result<ChangePage, DataverseError>> {
        self.rx.recv().await
    }
}

impl Drop for PageReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A spawned batch, aborted if the cycle is dropped (its commit either happened whole or not at all).
struct InFlight(tokio::task::JoinHandle<Result<Applied, EngineError>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl InFlight {
    async fn finish(&mut self) -> Result<Applied, EngineError> {
        (&mut self.0)
            .await
            .map_err(|e| EngineError::Task(e.to_string()))?
    }
}

/// One batch to plan and write.
pub(crate) struct Batch {
    mode: Mode,
    crm: Vec<CrmChange>,
    marketo: Vec<MarketoChange>,
    cursors: Vec<CursorUpdate>,
    dead_letters: Vec<NewDeadLetter>,
    /// Resuming an interrupted initial load: drop rows already loaded with these very values.
    skip_loaded: bool,
    /// Take pending Marketo changes of persons linked to this batch's CRM records.
    pair_marketo: bool,
    /// A dead letter this one-record batch retries: resolved when the batch writes without failure.
    retry_of: Option<i64>,
    /// What is still waiting after this batch (initial load: rows not read yet).
    backlog: Vec<Backlog>,
}

impl Batch {
    pub(crate) fn retry(
        mode: Mode,
        crm: Vec<CrmChange>,
        marketo: Vec<MarketoChange>,
        id: i64,
    ) -> Batch {
        Batch {
            mode,
            crm,
            marketo,
            cursors: Vec::new(),
            dead_letters: Vec::new(),
            skip_loaded: false,
            pair_marketo: false,
            retry_of: Some(id),
            backlog: Vec::new(),
        }
    }
}

fn crm_cursor(entity: CrmEntity, position: &CrmPosition) -> CursorUpdate {
    CursorUpdate {
        scope: entity.logical_name().to_owned(),
        side: Side::Crm,
        value: position.encode(),
    }
}

fn uuid_field(record: &CrmRecord, field: &str) -> Option<Uuid> {
    record
        .fields
        .get(field)
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
}

impl Engine {
    /// An engine over the two clients and a state store. Nothing is called until the first cycle.
    pub fn new(
        crm: CrmClient,
        marketo: MarketoClient,
        store: Box<dyn StateStore>,
        settings: EngineSettings,
    ) -> Engine {
        Engine {
            crm,
            marketo,
            store: SharedStore::new(store),
            settings: Arc::new(settings),
            discovery: AsyncMutex::new(None),
        }
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    pub fn marketo(&self) -> &MarketoClient {
        &self.marketo
    }

    pub fn crm(&self) -> &CrmClient {
        &self.crm
    }

    /// The state store, for status and dead-letter commands.
    pub fn store(&self) -> &SharedStore {
        &self.store
    }

    /// Looks at both services once (identities, field types, effective mapping) and caches the answer.
    pub async fn discovery(&self) -> Result<Arc<Discovery>, EngineError> {
        let mut slot = self.discovery.lock().await;
        if let Some(d) = slot.as_ref() {
            return Ok(Arc::clone(d));
        }
        let d = Arc::new(
            retrying(&self.settings, "discovery", || {
                discover::discover(&self.crm, &self.marketo, &self.settings)
            })
            .await?,
        );
        for note in &d.notes {
            tracing::info!(note = note.as_str(), "Mapping narrowed");
        }
        *slot = Some(Arc::clone(&d));
        Ok(d)
    }

    pub(crate) fn plan_settings(&self, d: &Discovery) -> PlanSettings {
        PlanSettings {
            identity: SyncIdentity {
                crm_sync_user: d.crm_sync_user,
                marketo_api_users: d.marketo_api_users.clone(),
            },
            mappings: d.mappings.clone(),
            schema: d.schema.clone(),
            filter_enabled: !d.filter_column.is_empty(),
            match_existing_by_email: self.settings.match_existing_by_email,
        }
    }

    pub(crate) fn writer(&self) -> Writer {
        Writer {
            crm: self.crm.clone(),
            marketo: self.marketo.clone(),
            settings: Arc::clone(&self.settings),
        }
    }

    /// Runs one cycle: Marketo changes, then each entity's Dataverse changes (initial load, deltas or a
    /// resync), then the Marketo changes no Dataverse batch took. Per-record failures become dead letters;
    /// `Err` means the cycle could not complete (its committed batches stay committed).
    pub async fn run_cycle(&self, options: CycleOptions) -> Result<CycleReport, EngineError> {
        let started = Instant::now();
        let d = self.discovery().await?;
        let calls_before = self.marketo.budget().used();
        let mut report = CycleReport {
            dry_run: options.dry_run,
            started_at: Some(Utc::now()),
            notes: d.notes.clone(),
            ..CycleReport::default()
        };
        let entities = d.entities.clone();
        let positions = self
            .store
            .with(move |s| {
                entities
                    .into_iter()
                    .map(|e| {
                        let c = s.cursor(e.logical_name(), Side::Crm)?;
                        Ok((e, CrmPosition::parse(c.as_ref().map(|c| c.value.as_str()))))
                    })
                    .collect::<Result<Vec<_>, mdsync_state::StateError>>()
            })
            .await?;
        let loading = positions
            .iter()
            .filter(|(_, p)| matches!(p, CrmPosition::Loading { .. }))
            .count();
        report.mode = if loading == positions.len() && loading > 0 {
            "initial"
        } else if loading > 0 {
            "mixed"
        } else {
            "incremental"
        }
        .to_owned();
        if !options.dry_run {
            let mode = report.mode.clone();
            let id = self
                .store
                .with(move |s| s.start_cycle(&mode, Utc::now()))
                .await?;
            report.cycle_id = Some(id);
        }
        let result = self.cycle_body(&d, &positions, &options, &mut report).await;
        report.marketo_calls = self.marketo.budget().used().saturating_sub(calls_before);
        report.duration_ms = started.elapsed().as_millis() as u64;
        tracing::debug!(
            duration_ms = report.duration_ms,
            crm_read_ms = report.timings.crm_read_ms,
            marketo_read_ms = report.timings.marketo_read_ms,
            state_read_ms = report.timings.state_read_ms,
            plan_ms = report.timings.plan_ms,
            write_ms = report.timings.write_ms,
            commit_ms = report.timings.commit_ms,
            marketo_writes = report.marketo_writes,
            crm_writes = report.crm_writes,
            "Cycle finished"
        );
        report.finish_counts();
        if let Some(id) = report.cycle_id {
            let counts = serde_json::to_value(&report).unwrap_or(Value::Null);
            let (status, error) = match &result {
                Ok(()) => (CycleStatus::Completed, None),
                Err(e) => (CycleStatus::Failed, Some(e.to_string())),
            };
            self.store
                .with(move |s| s.finish_cycle(id, Utc::now(), status, &counts, error.as_deref()))
                .await?;
        }
        result.map(|()| report)
    }

    async fn cycle_body(
        &self,
        d: &Discovery,
        positions: &[(CrmEntity, CrmPosition)],
        options: &CycleOptions,
        report: &mut CycleReport,
    ) -> Result<(), EngineError> {
        let t = Instant::now();
        let mut pending = if options.skip_marketo {
            Pending::empty()
        } else {
            self.read_marketo(d, options.dry_run, report).await?
        };
        report.timings.marketo_read_ms += t.elapsed().as_millis() as u64;
        for (entity, position) in positions {
            match position {
                CrmPosition::Loading { pages, next } => {
                    self.load_entity(d, *entity, *pages, next.as_deref(), options, report)
                        .await?;
                }
                CrmPosition::Delta(link) => {
                    self.delta_entity(d, *entity, link, &mut pending, options, report)
                        .await?;
                }
            }
        }
        // What no Dataverse batch took: Marketo-only edits of linked persons, deletes, and the tokens.
        let mut rest: Vec<MarketoChange> = pending
            .order
            .iter()
            .filter_map(|id| pending.upserts.remove(id))
            .collect();
        rest.append(&mut pending.deletes);
        let cursors = std::mem::take(&mut pending.cursors);
        let chunk = self.settings.crm_page_size.max(1) as usize;
        if rest.is_empty() {
            if !cursors.is_empty() && !options.dry_run {
                self.commit(CycleCommit {
                    cursors,
                    ..CycleCommit::default()
                })
                .await?;
            }
            return Ok(());
        }
        let total = rest.len().div_ceil(chunk);
        for (i, part) in rest.chunks(chunk).enumerate() {
            let last = i + 1 == total;
            self.process(
                d,
                Batch {
                    mode: Mode::Incremental,
                    crm: Vec::new(),
                    marketo: part.to_vec(),
                    cursors: if last { cursors.clone() } else { Vec::new() },
                    dead_letters: Vec::new(),
                    skip_loaded: false,
                    pair_marketo: false,
                    retry_of: None,
                    backlog: Vec::new(),
                },
                None,
                options,
                report,
            )
            .await?;
        }
        Ok(())
    }

    /// Reads Marketo lead changes (mapped fields only) and deleted leads from the stored paging tokens.
    /// The first cycle ever stores tokens for "now" before anything is written, so no edit made during
    /// the initial load is missed.
    async fn read_marketo(
        &self,
        d: &Discovery,
        dry_run: bool,
        report: &mut CycleReport,
    ) -> Result<Pending, EngineError> {
        let mut pending = Pending::empty();
        let tokens = self
            .store
            .with(|s| {
                Ok((
                    s.cursor(LEAD_CHANGES, Side::Marketo)?,
                    s.cursor(DELETED_LEADS, Side::Marketo)?,
                ))
            })
            .await?;
        let (changes_token, deleted_token) = match tokens {
            (Some(a), Some(b)) => (a.value, b.value),
            _ => {
                if dry_run {
                    return Ok(pending);
                }
                let since = Utc::now() - chrono::Duration::seconds(5);
                let token = retrying(&self.settings, "paging token", || async {
                    self.marketo
                        .paging_token(since)
                        .await
                        .map_err(EngineError::from)
                })
                .await?;
                self.commit(CycleCommit {
                    cursors: vec![
                        CursorUpdate {
                            scope: LEAD_CHANGES.into(),
                            side: Side::Marketo,
                            value: token.clone(),
                        },
                        CursorUpdate {
                            scope: DELETED_LEADS.into(),
                            side: Side::Marketo,
                            value: token,
                        },
                    ],
                    ..CycleCommit::default()
                })
                .await?;
                return Ok(pending);
            }
        };
        let mut fields: Vec<String> = Vec::new();
        for entity in [CrmEntity::Lead, CrmEntity::Contact] {
            if let Some(m) = d.mappings.get(entity) {
                for f in m.flowing(Flow::ToDynamics) {
                    if !fields.contains(&f.marketo) {
                        fields.push(f.marketo.clone());
                    }
                }
            }
        }
        let max_pages = self.settings.max_activity_pages.max(1);
        let mut activities = Vec::new();
        let mut token = changes_token.clone();
        if !fields.is_empty() {
            let names: Vec<&str> = fields.iter().map(String::as_str).collect();
            let mut pager = self.marketo.lead_changes(
                changes_token.clone(),
                &names,
                &ActivityFilter::default(),
            )?;
            let mut pages = 0;
            loop {
                let page = retry_loop!(&self.settings, "lead changes", pager.next_page().await);
                let Some(page) = page else { break };
                pages += 1;
                token = page.next_page_token.clone();
                for a in page.records {
                    let Some(lead_id) = a.lead_id else { continue };
                    if a.fields.is_empty() {
                        continue;
                    }
                    let attributes: Vec<ActivityAttribute> = a
                        .attributes
                        .iter()
                        .map(|x| ActivityAttribute {
                            name: x.name.clone(),
                            value: x.value.clone(),
                        })
                        .collect();
                    activities.push(LeadChangeActivity {
                        lead_id,
                        at: a.date(),
                        actor: ChangeActor::from_attributes(&attributes, &d.marketo_api_users),
                        fields: a
                            .fields
                            .iter()
                            .map(|f| (f.name.clone(), f.new_value.clone()))
                            .collect(),
                    });
                }
                if !page.more_result {
                    break;
                }
                if pages >= max_pages {
                    report.marketo_backlog = true;
                    break;
                }
            }
        }
        let mut deleted_to = deleted_token.clone();
        let mut pager = self.marketo.deleted_leads(deleted_token, None);
        let mut pages = 0;
        loop {
            let page = retry_loop!(&self.settings, "deleted leads", pager.next_page().await);
            let Some(page) = page else { break };
            pages += 1;
            deleted_to = page.next_page_token.clone();
            for a in page.records {
                if let Some(person_id) = a.lead_id {
                    pending.deletes.push(MarketoChange::Delete { person_id });
                }
            }
            if !page.more_result || pages >= max_pages {
                break;
            }
        }
        report.marketo_deletes_read = pending.deletes.len() as u64;
        for change in fold_lead_changes(activities) {
            let id = change.person_id();
            pending.order.push(id);
            pending.upserts.insert(id, change);
        }
        report.marketo_changes_read = pending.order.len() as u64;
        if !dry_run {
            pending.cursors = vec![
                CursorUpdate {
                    scope: LEAD_CHANGES.into(),
                    side: Side::Marketo,
                    value: token,
                },
                CursorUpdate {
                    scope: DELETED_LEADS.into(),
                    side: Side::Marketo,
                    value: deleted_to,
                },
            ];
        }
        Ok(pending)
    }

    /// The initial load of one entity (or its continuation after a crash): every row, page by page; the
    /// delta link is committed with the last page. An interrupted load continues from the stored next-page
    /// link; when the service refuses that link, it starts over and skips the rows already loaded.
    async fn load_entity(
        &self,
        d: &Discovery,
        entity: CrmEntity,
        pages_done: u64,
        next: Option<&str>,
        options: &CycleOptions,
        report: &mut CycleReport,
    ) -> Result<(), EngineError> {
        let select = d.select.get(&entity).cloned().unwrap_or_default();
        let progress = options.progress.clone();
        let total = self.count_rows(entity).await;
        if let Some(p) = &progress {
            p.start(entity, total);
            if pages_done > 0 && next.is_some() {
                p.advance(entity, pages_done * u64::from(self.settings.crm_page_size));
            }
        }
        report.entity(entity.logical_name()).mode = "initial".into();
        let page_size = Some(self.settings.crm_page_size);
        let resumed = match next {
            Some(link) if pages_done > 0 => {
                let mut stream = Box::pin(self.crm.resume_changes(link, page_size));
                match stream.try_next().await {
                    Ok(first) => {
                        tracing::info!(entity = %entity, pages_done, "Resuming the initial load");
                        report.entity(entity.logical_name()).resumed_at_page = Some(pages_done);
                        let first =
                            futures::stream::iter(first.map(Ok::<ChangePage, DataverseError>));
                        Some(futures::StreamExt::chain(first, stream))
                    }
                    Err(e) if e.is_transient() => return Err(e.into()),
                    Err(e) => {
                        tracing::warn!(entity = %entity, error = %e, "The stored page link was refused: re-reading the entity from the start");
                        None
                    }
                }
            }
            _ => None,
        };
        match resumed {
            Some(stream) => {
                self.consume(
                    d,
                    entity,
                    stream,
                    Mode::Initial,
                    (true, pages_done),
                    true,
                    total,
                    None,
                    options,
                    report,
                )
                .await?
            }
            None => {
                let stream = self
                    .crm
                    .track_changes(entity.entity_set(), &select, page_size);
                self.consume(
                    d,
                    entity,
                    stream,
                    Mode::Initial,
                    (pages_done > 0, 0),
                    true,
                    total,
                    None,
                    options,
                    report,
                )
                .await?
            }
        }
        if let Some(p) = &progress {
            p.finish(entity);
        }
        Ok(())
    }

    /// Changes since the stored delta link; an expired link becomes a bounded resync of the entity.
    async fn delta_entity(
        &self,
        d: &Discovery,
        entity: CrmEntity,
        link: &str,
        pending: &mut Pending,
        options: &CycleOptions,
        report: &mut CycleReport,
    ) -> Result<(), EngineError> {
        report.entity(entity.logical_name()).mode = "incremental".into();
        let stream = self
            .crm
            .follow_delta(link, Some(self.settings.crm_page_size));
        match self
            .consume(
                d,
                entity,
                stream,
                Mode::Incremental,
                (false, 0),
                false,
                None,
                Some(pending),
                options,
                report,
            )
            .await
        {
            Err(EngineError::Dataverse(e)) if e.kind() == ErrorKind::ChangeTokenExpired => {
                tracing::warn!(entity = %entity, "Delta link expired: resyncing the entity");
                report.resyncs.push(entity.logical_name().to_owned());
                report.entity(entity.logical_name()).mode = "resync".into();
                let select = d.select.get(&entity).cloned().unwrap_or_default();
                let stream = self.crm.track_changes(
                    entity.entity_set(),
                    &select,
                    Some(self.settings.crm_page_size),
                );
                // Incremental planning: rows equal to their fingerprints are dropped, so a resync writes
                // only what actually differs.
                self.consume(
                    d,
                    entity,
                    stream,
                    Mode::Incremental,
                    (false, 0),
                    true,
                    None,
                    Some(pending),
                    options,
                    report,
                )
                .await
            }
            other => other,
        }
    }

    /// Rows in the table, for progress bars (`@odata.count` of a one-row query; `None` if unknown).
    async fn count_rows(&self, entity: CrmEntity) -> Option<u64> {
        let options = mdsync_dataverse_client::QueryOptions::new()
            .select([entity.primary_key()])
            .count()
            .page_size(1);
        let stream = self.crm.query(entity.entity_set(), &options);
        futures::pin_mut!(stream);
        match stream.try_next().await {
            Ok(Some(page)) => page.count,
            _ => None,
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn consume(
        &self,
        d: &Discovery,
        entity: CrmEntity,
        stream: impl Stream<Item = Result<ChangePage, DataverseError>> + Send + 'static,
        mode: Mode,
        (resuming, pages_before): (bool, u64),
        loading: bool,
        total: Option<u64>,
        mut pending: Option<&mut Pending>,
        options: &CycleOptions,
        report: &mut CycleReport,
    ) -> Result<(), EngineError> {
        // The initial load overlaps reading page n+1, planning it and writing/committing page n. Its pages
        // hold distinct rows that refer only to entities loaded before, so planning a page needs nothing
        // an in-flight page commits. Deltas stay sequential: they pair with Marketo changes via links.
        let pipelined = mode == Mode::Initial && pending.is_none() && !options.dry_run;
        let depth = if pipelined {
            self.settings.pipeline_depth.max(1)
        } else {
            1
        };
        let mut pages_rx = prefetch(stream, 1);
        let mut inflight: std::collections::VecDeque<InFlight> = Default::default();
        let mut previous: Option<oneshot::Receiver<()>> = None;
        let mut pages = pages_before;
        let mut read = pages_before * u64::from(self.settings.crm_page_size);
        loop {
            let t = Instant::now();
            let next = pages_rx.recv().await.transpose()?;
            report.timings.crm_read_ms += t.elapsed().as_millis() as u64;
            let Some(page) = next else { break };
            pages += 1;
            let rows = page.changes.len() as u64;
            read += rows;
            let backlog = match (mode, total, options.dry_run) {
                (Mode::Initial, Some(total), false) => vec![Backlog {
                    entity,
                    direction: Flow::ToMarketo,
                    pending_inserts: if page.delta_link.is_some() {
                        0
                    } else {
                        total.saturating_sub(read)
                    },
                    pending_updates: 0,
                    oldest: None,
                    updated_at: Utc::now(),
                }],
                _ => Vec::new(),
            };
            let mut crm = Vec::with_capacity(page.changes.len());
            let mut dead_letters = Vec::new();
            for change in page.changes {
                match change {
                    Change::Upsert(row) => {
                        match CrmRecord::from_web_api(entity, &Value::Object(row)) {
                            Ok(mut record) => {
                                if let Some(col) = d.filter_column.get(&entity)
                                    && col != FILTER_FIELD
                                    && let Some(v) = record.fields.remove(col)
                                {
                                    record.fields.insert(FILTER_FIELD.to_owned(), v);
                                }
                                crm.push(CrmChange::Upsert(record));
                            }
                            Err(e) => dead_letters.push(NewDeadLetter {
                                entity,
                                crm_id: None,
                                marketo_id: None,
                                operation: "read".into(),
                                direction: Flow::ToMarketo,
                                code: "decode".into(),
                                message: e.to_string(),
                                payload: Value::Null,
                            }),
                        }
                    }
                    Change::Deleted(id) => crm.push(CrmChange::Delete { entity, id }),
                }
            }
            let cursors = match (&page.delta_link, loading) {
                (Some(link), _) => vec![crm_cursor(entity, &CrmPosition::Delta(link.clone()))],
                (None, true) if mode == Mode::Initial => vec![crm_cursor(
                    entity,
                    &CrmPosition::Loading {
                        pages,
                        next: page.next_link.clone(),
                    },
                )],
                (None, _) => Vec::new(),
            };
            let last = page.delta_link.is_some();
            let batch = Batch {
                mode,
                crm,
                marketo: Vec::new(),
                cursors: if options.dry_run { Vec::new() } else { cursors },
                dead_letters,
                skip_loaded: resuming,
                pair_marketo: pending.is_some() && entity.marketo_object() == MarketoObject::Person,
                retry_of: None,
                backlog,
            };
            if pipelined {
                if let Planned::Ready(ready) =
                    self.plan_batch(d, batch, None, options, report).await?
                {
                    let (done, next) = oneshot::channel();
                    let after = previous.replace(next);
                    inflight.push_back(InFlight(tokio::spawn(apply(
                        self.writer(),
                        self.store.clone(),
                        ready,
                        after,
                        Some(done),
                    ))));
                }
                while inflight.len() >= depth {
                    if let Some(mut first) = inflight.pop_front() {
                        first.finish().await?.account(report);
                    }
                }
            } else {
                self.process(d, batch, pending.as_deref_mut(), options, report)
                    .await?;
            }
            let e = report.entity(entity.logical_name());
            e.rows_read += rows;
            e.pages += 1;
            if last && loading {
                e.load_completed = true;
            }
            if let Some(p) = &options.progress {
                p.advance(entity, rows);
            }
        }
        while let Some(mut first) = inflight.pop_front() {
            first.finish().await?.account(report);
        }
        Ok(())
    }

    pub(crate) async fn commit(&self, commit: CycleCommit) -> Result<(), EngineError> {
        self.store
            .with(move |s| s.commit_cycle(&commit, Utc::now()))
            .await
    }

    /// Plans one batch, writes it and commits it with its cursors. Returns whether nothing failed.
    pub(crate) async fn process(
        &self,
        d: &Discovery,
        batch: Batch,
        pending: Option<&mut Pending>,
        options: &CycleOptions,
        report: &mut CycleReport,
    ) -> Result<bool, EngineError> {
        match self.plan_batch(d, batch, pending, options, report).await? {
            Planned::DryRun { clean } => Ok(clean),
            Planned::Ready(ready) => {
                let applied = apply(self.writer(), self.store.clone(), ready, None, None).await?;
                Ok(applied.account(report))
            }
        }
    }

    /// Reads the state a batch needs and plans it (no writes).
    pub(crate) async fn plan_batch(
        &self,
        d: &Discovery,
        mut batch: Batch,
        pending: Option<&mut Pending>,
        options: &CycleOptions,
        report: &mut CycleReport,
    ) -> Result<Planned, EngineError> {
        // The links and fingerprints this batch needs: its records, the records they point at
        // (originating lead, potential customer), and the persons of its Marketo changes.
        let mut crm_ids: Vec<Uuid> = Vec::new();
        for change in &batch.crm {
            crm_ids.push(change.id());
            if let CrmChange::Upsert(r) = change {
                for field in [ORIGINATING_LEAD, CUSTOMER] {
                    if let Some(id) = uuid_field(r, field) {
                        crm_ids.push(id);
                    }
                }
            }
        }
        let t_state = Instant::now();
        let ids = crm_ids.clone();
        let mut links = self.store.with(move |s| s.links_by_crm_ids(&ids)).await?;
        if batch.pair_marketo
            && let Some(pending) = pending
        {
            let own: HashSet<Uuid> = batch.crm.iter().map(CrmChange::id).collect();
            for link in &links {
                if own.contains(&link.crm_id)
                    && link.object == MarketoObject::Person
                    && let Some(mid) = link.marketo_id
                    && let Some(change) = pending.take(mid)
                {
                    batch.marketo.push(change);
                }
            }
        }
        let person_ids: Vec<i64> = batch.marketo.iter().map(MarketoChange::person_id).collect();
        if !person_ids.is_empty() {
            let more = self
                .store
                .with(move |s| s.links_by_marketo_ids(MarketoObject::Person, &person_ids))
                .await?;
            links.extend(more);
        }
        let mut fp_ids: Vec<Uuid> = batch.crm.iter().map(CrmChange::id).collect();
        fp_ids.extend(links.iter().map(|l| l.crm_id));
        fp_ids.sort_unstable();
        fp_ids.dedup();
        let fingerprints =
            FingerprintView::new(self.store.with(move |s| s.fingerprints(&fp_ids)).await?);
        let links = LinkView::new(links);
        report.timings.state_read_ms += t_state.elapsed().as_millis() as u64;
        if batch.skip_loaded {
            batch
                .crm
                .retain(|c| !self.already_loaded(d, c, &links, &fingerprints));
        }
        let existing_by_email =
            if batch.mode == Mode::Initial && self.settings.match_existing_by_email {
                self.existing_by_email(&batch.crm, &links).await?
            } else {
                HashMap::new()
            };
        let t_plan = Instant::now();
        let settings = self.plan_settings(d);
        let plan = plan::plan_cycle(
            &settings,
            CycleInput {
                mode: batch.mode,
                crm: &batch.crm,
                marketo: &batch.marketo,
                links: &links,
                fingerprints: &fingerprints,
                existing_by_email: &existing_by_email,
                now: Utc::now(),
            },
        );
        report.timings.plan_ms += t_plan.elapsed().as_millis() as u64;
        report.plan_counts.merge(&plan.counts);
        report.conflicts += plan.conflicts.len() as u64;
        if options.dry_run {
            report.dead_letters += plan.dead_letters.len() as u64;
            return Ok(Planned::DryRun {
                clean: plan.dead_letters.is_empty(),
            });
        }
        let mut dead_letters = batch.dead_letters;
        let counted: Vec<(CrmEntity, Flow)> = dead_letters
            .iter()
            .map(|d| (d.entity, d.direction))
            .collect();
        dead_letters.extend(plan.dead_letters.into_iter().map(NewDeadLetter::from));
        Ok(Planned::Ready(Box::new(Ready {
            ops: plan.ops,
            unconditional: plan.unconditional,
            dead_letters,
            counted,
            conflicts: plan.conflicts,
            cursors: batch.cursors,
            backlog: batch.backlog,
            retry_of: batch.retry_of,
        })))
    }

    /// Resume rule: a linked row whose every mapped field equals what was loaded needs no second write.
    fn already_loaded(
        &self,
        d: &Discovery,
        change: &CrmChange,
        links: &LinkView,
        fingerprints: &FingerprintView,
    ) -> bool {
        let CrmChange::Upsert(record) = change else {
            return false;
        };
        if links.by_crm(record.id).is_none() {
            return false;
        }
        let Some(mapping) = d.mappings.get(record.entity) else {
            return false;
        };
        mapping
            .flowing(Flow::ToMarketo)
            .all(|f| match record.fields.get(&f.crm) {
                None => true,
                Some(v) => {
                    let fp = Fingerprint::of_crm(v, d.schema.crm(record.entity, &f.crm));
                    fingerprints.get(record.id, Side::Crm, &f.crm) == Some(fp)
                }
            })
    }

    /// `match_existing_by_email`: unlinked Marketo persons (no `msftId`) by lowercased email.
    async fn existing_by_email(
        &self,
        crm: &[CrmChange],
        links: &LinkView,
    ) -> Result<HashMap<String, i64>, EngineError> {
        let emails: Vec<String> = crm
            .iter()
            .filter_map(|c| match c {
                CrmChange::Upsert(r)
                    if r.entity.marketo_object() == MarketoObject::Person
                        && links.by_crm(r.id).is_none() =>
                {
                    r.fields
                        .get("emailaddress1")
                        .and_then(Value::as_str)
                        .map(|e| e.trim().to_lowercase())
                        .filter(|e| !e.is_empty())
                }
                _ => None,
            })
            .collect();
        let mut found = HashMap::new();
        for chunk in emails.chunks(300) {
            let mut pager = self.marketo.leads_by_filter(
                "email",
                chunk,
                &["id", "email", MSFT_ID],
                Some(300),
            )?;
            while let Some(page) =
                retry_loop!(&self.settings, "leads by email", pager.next_page().await)
            {
                for lead in page {
                    let unlinked = lead
                        .get(MSFT_ID)
                        .is_none_or(|v| v.is_null() || v.as_str() == Some(""));
                    if let (Some(id), Some(email), true) = (
                        lead.get("id").and_then(Value::as_i64),
                        lead.get("email").and_then(Value::as_str),
                        unlinked,
                    ) {
                        found.entry(email.trim().to_lowercase()).or_insert(id);
                    }
                }
            }
        }
        Ok(found)
    }
}
