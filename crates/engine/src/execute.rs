//! Executing a plan's writes in service-sized batches and turning per-record answers into state effects
//! (success) or dead letters (failure).
//!
//! Marketo persons are written with `POST /rest/v1/leads.json`: creates as `createOrUpdate` with
//! `lookupField=msftId` (a retried create after a crash finds the person it created the first time),
//! updates as `updateOnly` by `id`. Companies, opportunities and roles are `createOrUpdate` by their dedupe
//! fields (`externalCompanyId`, `externalOpportunityId`, the role's compound key). Dataverse writes go in
//! `$batch`es of PATCH requests with `Prefer: odata.continue-on-error`, so one bad row fails alone.
//!
//! A whole call that fails transiently (throttling storms, 5xx, timeouts the clients gave up on) is
//! retried here with a growing pause; a call that fails for good dead-letters its records.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use mdsync_dataverse_client::{BatchOp, BatchRequest, Client as CrmClient};
use mdsync_marketo_client::{
    Client as MarketoClient, KeyKind, ObjectKind, Record, RecordResult, RecordStatus, SyncAction,
    SyncLeadsOptions,
};
use mdsync_state::NewDeadLetter;
use mdsync_sync_core::link::StateEffects;
use mdsync_sync_core::mapping::MSFT_ID;
use mdsync_sync_core::plan::{Op, OpKind};
use mdsync_sync_core::record::MarketoObject;
use serde_json::{Value, json};

use crate::error::EngineError;
use crate::settings::EngineSettings;

/// What executing a set of ops achieved.
#[derive(Debug, Default)]
pub struct Executed {
    /// The `on_success` effects of every op that succeeded (create ids filled in).
    pub effects: StateEffects,
    pub dead_letters: Vec<NewDeadLetter>,
    /// Per op index: whether it succeeded.
    pub succeeded: Vec<bool>,
    pub marketo_writes: u64,
    pub crm_writes: u64,
}

/// The clients and limits the executor needs; owned (the clients are shared handles) so a batch's writes
/// can run on their own task while the engine plans the next one.
#[derive(Clone)]
pub struct Writer {
    pub crm: CrmClient,
    pub marketo: MarketoClient,
    pub settings: Arc<EngineSettings>,
}

/// Evaluates a fallible expression again while it fails transiently (like [`retrying`], for calls that
/// borrow mutable state such as a pager); evaluates to the `Ok` value or returns the error.
#[macro_export]
#[doc(hidden)]
macro_rules! retry_loop {
    ($settings:expr, $what:expr, $call:expr) => {{
        let settings: &$crate::EngineSettings = $settings;
        let mut delay = settings.batch_retry_delay;
        let mut attempt = 0u32;
        loop {
            match $call.map_err($crate::EngineError::from) {
                Ok(v) => break v,
                Err(e) if e.is_transient() && attempt < settings.batch_retries => {
                    attempt += 1;
                    tracing::warn!(what = $what, attempt, error = %e, "Retrying after a transient failure");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(std::time::Duration::from_secs(60));
                }
                Err(e) => return Err(e),
            }
        }
    }};
}

/// Runs `call` again while it fails transiently, pausing `batch_retry_delay`, doubling, up to a minute.
pub async fn retrying<T, F, Fut>(
    settings: &EngineSettings,
    what: &str,
    mut call: F,
) -> Result<T, EngineError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, EngineError>>,
{
    let mut delay = settings.batch_retry_delay;
    let mut attempt = 0;
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_transient() && attempt < settings.batch_retries => {
                attempt += 1;
                tracing::warn!(what, attempt, error = %e, "Retrying after a transient failure");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(60));
            }
            Err(e) => return Err(e),
        }
    }
}

fn op_payload(op: &Op) -> Value {
    json!({ "op": op })
}

fn dead_letter(op: &Op, code: impl Into<String>, message: impl Into<String>) -> NewDeadLetter {
    let marketo_id = match &op.kind {
        OpKind::UpdatePerson { marketo_id } | OpKind::MarkPersonDeleted { marketo_id } => {
            Some(*marketo_id)
        }
        OpKind::UpsertRole { role } => Some(role.lead_id),
        _ => None,
    };
    NewDeadLetter {
        entity: op.entity,
        crm_id: Some(op.crm_id),
        marketo_id,
        operation: op.kind.operation().to_owned(),
        direction: op.flow,
        code: code.into(),
        message: message.into(),
        payload: op_payload(op),
    }
}

/// Which Marketo call an op belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Call {
    PersonCreate,
    PersonUpdate,
    ObjectUpsert(MarketoObject),
    ObjectDelete(MarketoObject),
    Role,
    Crm,
}

fn call_of(op: &Op) -> Call {
    match &op.kind {
        OpKind::CreatePerson => Call::PersonCreate,
        OpKind::UpdatePerson { .. } | OpKind::MarkPersonDeleted { .. } => Call::PersonUpdate,
        OpKind::UpsertObject { object, .. } => Call::ObjectUpsert(*object),
        OpKind::DeleteObject { object, .. } => Call::ObjectDelete(*object),
        OpKind::UpsertRole { .. } => Call::Role,
        OpKind::CreateCrm { .. } | OpKind::UpdateCrm { .. } => Call::Crm,
    }
}

/// The order calls run in: sales persons and companies before persons (who point at them), persons and
/// opportunities before roles (which point at both), Dataverse last.
const CALL_ORDER: [Call; 10] = [
    Call::ObjectUpsert(MarketoObject::SalesPerson),
    Call::ObjectUpsert(MarketoObject::Company),
    Call::PersonCreate,
    Call::PersonUpdate,
    Call::ObjectUpsert(MarketoObject::Opportunity),
    Call::Role,
    Call::ObjectDelete(MarketoObject::Opportunity),
    Call::ObjectDelete(MarketoObject::Company),
    Call::ObjectDelete(MarketoObject::SalesPerson),
    Call::Crm,
];

fn object_kind(object: MarketoObject) -> Option<(ObjectKind, &'static str)> {
    match object {
        MarketoObject::Company => Some((ObjectKind::Companies, "externalCompanyId")),
        MarketoObject::Opportunity => Some((ObjectKind::Opportunities, "externalOpportunityId")),
        MarketoObject::SalesPerson => Some((ObjectKind::SalesPersons, "externalSalesPersonId")),
        _ => None,
    }
}

fn marketo_record(op: &Op) -> Record {
    let mut record = op.payload.clone();
    match &op.kind {
        OpKind::UpdatePerson { marketo_id } | OpKind::MarkPersonDeleted { marketo_id } => {
            record.insert("id".into(), json!(marketo_id));
        }
        OpKind::CreatePerson => {
            record
                .entry(MSFT_ID.to_owned())
                .or_insert_with(|| json!(op.crm_id.to_string()));
        }
        OpKind::UpsertObject {
            object,
            external_id,
            ..
        }
        | OpKind::DeleteObject {
            object,
            external_id,
        } => {
            if let Some((_, key)) = object_kind(*object) {
                record.insert(key.into(), json!(external_id));
            }
        }
        OpKind::UpsertRole { role } => {
            record.insert(
                "externalOpportunityId".into(),
                json!(role.external_opportunity_id),
            );
            record.insert("leadId".into(), json!(role.lead_id));
            record.insert("role".into(), json!(role.role));
            record.insert("isPrimary".into(), json!(role.is_primary));
        }
        OpKind::CreateCrm { .. } | OpKind::UpdateCrm { .. } => {}
    }
    record
}

fn result_ok(r: &RecordResult) -> bool {
    matches!(
        r.status,
        Some(RecordStatus::Created | RecordStatus::Updated | RecordStatus::Deleted)
    )
}

impl Writer {
    /// Executes `ops` (in [`CALL_ORDER`], batched) and reports per-op outcomes.
    pub async fn execute(&self, ops: &[Op]) -> Result<Executed, EngineError> {
        let mut out = Executed {
            succeeded: vec![false; ops.len()],
            ..Executed::default()
        };
        for call in CALL_ORDER {
            let indices: Vec<usize> = (0..ops.len())
                .filter(|&i| call_of(&ops[i]) == call)
                .collect();
            if indices.is_empty() {
                continue;
            }
            match call {
                Call::Crm => self.crm_writes(ops, &indices, &mut out).await?,
                Call::ObjectDelete(MarketoObject::Person)
                | Call::ObjectUpsert(MarketoObject::Person) => {
                    for &i in &indices {
                        out.dead_letters.push(dead_letter(
                            &ops[i],
                            "unsupported",
                            "persons are written with the lead endpoints",
                        ));
                    }
                }
                _ => self.marketo_writes(call, ops, &indices, &mut out).await?,
            }
        }
        Ok(out)
    }

    async fn marketo_writes(
        &self,
        call: Call,
        ops: &[Op],
        indices: &[usize],
        out: &mut Executed,
    ) -> Result<(), EngineError> {
        let batch = self.settings.marketo_batch.clamp(1, 300);
        let chunks: Vec<&[usize]> = indices.chunks(batch).collect();
        // Several calls in flight (the client's limiter bounds them), answers taken in input order.
        let mut calls = Vec::with_capacity(chunks.len());
        for &chunk in &chunks {
            // Bodies are built when a call starts, so only the calls in flight hold a copy.
            calls.push(async move {
                let records: Vec<Record> = chunk.iter().map(|&i| marketo_record(&ops[i])).collect();
                self.marketo_call(call, records).await
            });
        }
        let answers: Vec<Result<Vec<RecordResult>, EngineError>> = futures::stream::iter(calls)
            .buffered(self.settings.marketo_concurrency.max(1))
            .collect()
            .await;
        for (chunk, answer) in chunks.into_iter().zip(answers) {
            let results = match answer {
                Ok(results) => results,
                Err(EngineError::Marketo(e))
                    if !e.is_fatal() && !crate::error::marketo_transient(&e) =>
                {
                    // The call as a whole was refused (e.g. 1003 on the request): its records fail.
                    let code = e.code().unwrap_or("request").to_owned();
                    for &i in chunk {
                        out.dead_letters
                            .push(dead_letter(&ops[i], code.clone(), e.to_string()));
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            if results.len() != chunk.len() {
                return Err(EngineError::Protocol(format!(
                    "Marketo answered {} results for {} records",
                    results.len(),
                    chunk.len()
                )));
            }
            for (&i, result) in chunk.iter().zip(results) {
                let op = &ops[i];
                // Deleting an object that is already gone is the outcome we wanted.
                let gone =
                    matches!(call, Call::ObjectDelete(_)) && result.reason_code() == Some("1013");
                if result_ok(&result) || gone {
                    let mut effects = op.on_success.clone();
                    if let (OpKind::CreatePerson, Some(id)) = (&op.kind, result.id) {
                        effects.set_marketo_id(op.crm_id, id);
                    }
                    out.effects.extend(effects);
                    out.succeeded[i] = true;
                    out.marketo_writes += 1;
                } else {
                    let (code, message) = result
                        .reasons
                        .first()
                        .map(|r| (r.code.clone(), r.message.clone()))
                        .unwrap_or_else(|| {
                            (
                                "skipped".to_owned(),
                                "Marketo skipped the record".to_owned(),
                            )
                        });
                    out.dead_letters.push(dead_letter(op, code, message));
                }
            }
        }
        Ok(())
    }

    /// One Marketo write call, retried while it fails transiently.
    async fn marketo_call(
        &self,
        call: Call,
        records: Vec<Record>,
    ) -> Result<Vec<RecordResult>, EngineError> {
        retrying(&self.settings, "marketo write", || {
            let records = records.clone();
            async move {
                let r = match call {
                    Call::PersonCreate => {
                        self.marketo
                            .sync_leads(
                                &records,
                                &SyncLeadsOptions {
                                    action: SyncAction::CreateOrUpdate,
                                    lookup_field: Some(MSFT_ID.into()),
                                    partition_name: None,
                                },
                            )
                            .await
                    }
                    Call::PersonUpdate => {
                        self.marketo
                            .sync_leads(
                                &records,
                                &SyncLeadsOptions {
                                    action: SyncAction::UpdateOnly,
                                    lookup_field: Some("id".into()),
                                    partition_name: None,
                                },
                            )
                            .await
                    }
                    Call::ObjectUpsert(object) => {
                        let (kind, _) = object_kind(object).ok_or_else(|| {
                            EngineError::Protocol(format!("no Marketo endpoint for {object}"))
                        })?;
                        self.marketo
                            .sync_objects(
                                kind,
                                SyncAction::CreateOrUpdate,
                                KeyKind::DedupeFields,
                                &records,
                            )
                            .await
                    }
                    Call::ObjectDelete(object) => {
                        let (kind, _) = object_kind(object).ok_or_else(|| {
                            EngineError::Protocol(format!("no Marketo endpoint for {object}"))
                        })?;
                        self.marketo
                            .delete_objects(kind, KeyKind::DedupeFields, &records)
                            .await
                    }
                    Call::Role => {
                        self.marketo
                            .sync_objects(
                                ObjectKind::OpportunityRoles,
                                SyncAction::CreateOrUpdate,
                                KeyKind::DedupeFields,
                                &records,
                            )
                            .await
                    }
                    Call::Crm => unreachable_call(),
                };
                r.map_err(EngineError::from)
            }
        })
        .await
    }

    async fn crm_writes(
        &self,
        ops: &[Op],
        indices: &[usize],
        out: &mut Executed,
    ) -> Result<(), EngineError> {
        let batch = self.settings.crm_batch.clamp(1, 1000);
        for chunk in indices.chunks(batch) {
            let requests: Vec<BatchOp> = chunk
                .iter()
                .map(|&i| {
                    let op = &ops[i];
                    let set = op.entity.entity_set();
                    let body = Value::Object(op.payload.clone());
                    BatchOp::Request(match op.kind {
                        OpKind::CreateCrm { .. } => BatchRequest::upsert(set, op.crm_id, body),
                        _ => BatchRequest::update(set, op.crm_id, body),
                    })
                })
                .collect();
            let responses = retrying(&self.settings, "dataverse batch", || {
                let requests = requests.clone();
                async move {
                    self.crm
                        .batch_with(requests, true)
                        .await
                        .map_err(EngineError::from)
                }
            })
            .await?;
            if responses.len() != chunk.len() {
                return Err(EngineError::Protocol(format!(
                    "Dataverse answered {} parts for {} requests",
                    responses.len(),
                    chunk.len()
                )));
            }
            for (&i, response) in chunk.iter().zip(responses) {
                let op = &ops[i];
                match response.error(op.kind.operation()) {
                    None => {
                        out.effects.extend(op.on_success.clone());
                        out.succeeded[i] = true;
                        out.crm_writes += 1;
                    }
                    Some(e) => {
                        let code = e
                            .code()
                            .map(str::to_owned)
                            .unwrap_or_else(|| response.status.to_string());
                        out.dead_letters
                            .push(dead_letter(op, code, e.message().to_owned()));
                    }
                }
            }
        }
        Ok(())
    }
}

fn unreachable_call() -> Result<Vec<RecordResult>, mdsync_marketo_client::Error> {
    Err(mdsync_marketo_client::Error::InvalidInput(
        "Dataverse ops are not Marketo calls".into(),
    ))
}
