//! Planning a cycle: from a batch of incoming changes and the relevant state to the writes to make.
//!
//! [`plan_cycle`] is where mapping, conversion, echo rules, conflicts and the sync filter meet. The engine
//! gathers the inputs (changes from one or both sides, the links and fingerprints of the records involved),
//! calls it, executes [`CyclePlan::ops`] in batches, and commits, in one transaction with the cursor that
//! covers the batch, [`CyclePlan::unconditional`] plus the `on_success` effects of the ops that succeeded,
//! dead letters for the ops that failed and [`CyclePlan::dead_letters`]. A `--dry-run` prints
//! [`CyclePlan::counts`] and stops.
//!
//! Identity rules: CRM records are matched to Marketo persons by CRM id (through links) only, never by
//! email, except with `match_existing_by_email` during the initial load. Persons created from Marketo
//! ([`plan_push_person`]) are looked up by email in Dynamics first.
//!
//! Ops that create Marketo persons are meant to be sent with `lookupField=msftId` so that a retry after a
//! crash updates the person created the first time instead of duplicating it.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::conflict::{self, Candidate, ConflictRecord};
use crate::convert::{self, ConvertError, CrmFieldType, MarketoFieldType, RecordRef};
use crate::echo::{self, EchoReason, SyncIdentity, Verdict};
use crate::fingerprint::Fingerprint;
use crate::link::{FieldFingerprint, FingerprintView, Link, LinkChange, LinkView, StateEffects};
use crate::mapping::{EntityMapping, FieldMapping, MSFT_ID, MSFT_IS_DELETED, MSFT_TYPE, Mappings};
use crate::record::{
    CrmChange, CrmEntity, CrmRecord, Flow, MarketoChange, MarketoFieldChange, MarketoObject,
    MarketoPerson, MarketoRole, Side,
};
use crate::sync_filter::{self, FILTER_FIELD, FilterTransition, FilterValue, QualifiedContact};

/// Field types of both sides, from Dataverse attribute metadata and Marketo describe. A field whose type
/// is unknown is passed through unconverted.
#[derive(Clone, Debug, Default)]
pub struct Schema {
    crm: HashMap<(CrmEntity, String), CrmFieldType>,
    marketo: HashMap<(MarketoObject, String), MarketoFieldType>,
}

impl Schema {
    pub fn set_crm(&mut self, entity: CrmEntity, field: impl Into<String>, ty: CrmFieldType) {
        self.crm.insert((entity, field.into()), ty);
    }

    pub fn set_marketo(
        &mut self,
        object: MarketoObject,
        field: impl Into<String>,
        ty: MarketoFieldType,
    ) {
        self.marketo.insert((object, field.into()), ty);
    }

    pub fn crm(&self, entity: CrmEntity, field: &str) -> Option<&CrmFieldType> {
        self.crm.get(&(entity, field.to_owned()))
    }

    pub fn marketo(&self, object: MarketoObject, field: &str) -> Option<&MarketoFieldType> {
        self.marketo.get(&(object, field.to_owned()))
    }
}

/// What stays the same for every cycle of a run.
#[derive(Clone, Debug)]
pub struct PlanSettings {
    pub identity: SyncIdentity,
    pub mappings: Mappings,
    pub schema: Schema,
    /// `filter_field` is configured: honour `new_synctomkto`.
    pub filter_enabled: bool,
    /// Initial load only: link an unlinked CRM lead/contact to an existing Marketo person with its email.
    pub match_existing_by_email: bool,
}

/// Initial load (send every record whole) or incremental (echo rules apply).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Initial,
    Incremental,
}

/// Dataverse's merge flag: set on the subordinate record of a `Merge`.
pub const MERGED: &str = "merged";
/// The subordinate's master after a `Merge`.
pub const MASTER: &str = "_masterid_value";
/// A lead's `statecode` once qualified.
pub const LEAD_QUALIFIED: i64 = 1;

/// One batch to plan.
///
/// Conflicts are detected within one call only: pass a page of CRM changes together with the Marketo
/// changes of the persons linked to those records (and the remaining Marketo changes in a later call, with
/// no CRM changes). A field both sides changed but planned in separate calls is not a conflict: the later
/// call simply wins.
#[derive(Clone, Copy, Debug)]
pub struct CycleInput<'a> {
    pub mode: Mode,
    pub crm: &'a [CrmChange],
    pub marketo: &'a [MarketoChange],
    /// Links of every record in the batch, plus those of referenced records: a contact's
    /// `_originatingleadid_value` (qualify) and an opportunity's `_customerid_value` (roles).
    pub links: &'a LinkView,
    pub fingerprints: &'a FingerprintView,
    /// Initial load with `match_existing_by_email`: lowercased email → unlinked Marketo person id.
    pub existing_by_email: &'a HashMap<String, i64>,
    pub now: DateTime<Utc>,
}

/// The write an [`Op`] makes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OpKind {
    /// Create a Marketo person (send with `lookupField=msftId`); its id completes the link.
    CreatePerson,
    UpdatePerson {
        marketo_id: i64,
    },
    /// `msftIsDeleted = true` after a Dynamics delete; nothing is deleted in Marketo.
    MarkPersonDeleted {
        marketo_id: i64,
    },
    /// createOrUpdate of a company, opportunity or sales person by its external id (the CRM id).
    UpsertObject {
        object: MarketoObject,
        external_id: String,
        create: bool,
    },
    DeleteObject {
        object: MarketoObject,
        external_id: String,
    },
    UpsertRole {
        role: MarketoRole,
    },
    /// Create a Dynamics record with a client-chosen id (an upsert by key, so retries are idempotent).
    CreateCrm {
        entity: CrmEntity,
    },
    UpdateCrm {
        entity: CrmEntity,
    },
}

impl OpKind {
    /// The dead-letter `operation` name.
    pub fn operation(&self) -> &'static str {
        match self {
            OpKind::CreatePerson | OpKind::CreateCrm { .. } => "create",
            OpKind::UpsertObject { create: true, .. } => "create",
            OpKind::UpdatePerson { .. }
            | OpKind::UpdateCrm { .. }
            | OpKind::UpsertObject { create: false, .. } => "update",
            OpKind::MarkPersonDeleted { .. } => "mark_deleted",
            OpKind::DeleteObject { .. } => "delete",
            OpKind::UpsertRole { .. } => "upsert_role",
        }
    }
}

/// One write to make.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Op {
    pub entity: CrmEntity,
    pub crm_id: Uuid,
    pub flow: Flow,
    pub kind: OpKind,
    /// Target-side field names and converted values.
    pub payload: Map<String, Value>,
    /// State to commit when (and only when) this write succeeded. For [`OpKind::CreatePerson`], call
    /// [`StateEffects::set_marketo_id`] with the returned id first.
    pub on_success: StateEffects,
}

/// Why a change produced no write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// `new_synctomkto` is No.
    Filtered,
    /// `new_synctomkto` went Yes → No: syncing stops, nothing is deleted.
    FilterStopped,
    /// Every changed field was an echo of mdsync's own writes.
    Echo,
    /// No mapped field changed.
    NoChanges,
    /// A Marketo-only person (never linked, not pushed) or a delete of something never synced.
    NotLinked,
    /// An unlinked row created or changed only by the sync user (the seed's rule).
    SyncUserRecord,
    /// Every changed field lost a conflict.
    ConflictLost,
    /// The entity has no mapping.
    EntityNotMapped,
    /// Push: the person is already linked or its email already exists in Dynamics.
    AlreadyInCrm,
    /// A merged-away record (`merged = true`) that has no person: it is never created.
    Merged,
    /// A qualified lead with no person of its own (its person became the contact, or it never synced):
    /// it is not created again.
    Qualified,
}

/// A change that produced no write.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Skip {
    pub entity: CrmEntity,
    pub crm_id: Option<Uuid>,
    pub marketo_id: Option<i64>,
    pub flow: Flow,
    pub reason: SkipReason,
}

/// A change that cannot be written as it is (e.g. a value that does not fit its target field).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlannedDeadLetter {
    pub entity: CrmEntity,
    pub crm_id: Option<Uuid>,
    pub marketo_id: Option<i64>,
    pub operation: String,
    pub flow: Flow,
    pub code: String,
    pub message: String,
    /// The source change, to retry from.
    pub payload: Value,
}

/// Per entity and direction, what the plan does (the `--dry-run` table).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpCounts {
    pub creates: u64,
    pub updates: u64,
    pub deletes: u64,
    pub unlinks: u64,
    pub conflicts: u64,
    pub skips: u64,
    pub echoes: u64,
    pub dead_letters: u64,
}

/// A row of [`PlanCounts`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountRow {
    pub entity: CrmEntity,
    pub flow: Flow,
    #[serde(flatten)]
    pub counts: OpCounts,
}

/// Counts by entity and direction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlanCounts(pub BTreeMap<(CrmEntity, Flow), OpCounts>);

impl PlanCounts {
    pub fn entry(&mut self, entity: CrmEntity, flow: Flow) -> &mut OpCounts {
        self.0.entry((entity, flow)).or_default()
    }

    pub fn get(&self, entity: CrmEntity, flow: Flow) -> OpCounts {
        self.0.get(&(entity, flow)).cloned().unwrap_or_default()
    }

    pub fn rows(&self) -> Vec<CountRow> {
        self.0
            .iter()
            .map(|((entity, flow), counts)| CountRow {
                entity: *entity,
                flow: *flow,
                counts: counts.clone(),
            })
            .collect()
    }

    pub fn merge(&mut self, other: &PlanCounts) {
        for ((e, f), c) in &other.0 {
            let t = self.entry(*e, *f);
            t.creates += c.creates;
            t.updates += c.updates;
            t.deletes += c.deletes;
            t.unlinks += c.unlinks;
            t.conflicts += c.conflicts;
            t.skips += c.skips;
            t.echoes += c.echoes;
            t.dead_letters += c.dead_letters;
        }
    }
}

/// The plan for one batch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CyclePlan {
    pub ops: Vec<Op>,
    pub skips: Vec<Skip>,
    pub dead_letters: Vec<PlannedDeadLetter>,
    pub conflicts: Vec<ConflictRecord>,
    /// State changes that do not depend on a write (filter flags, unlinks, fingerprints of echoes).
    pub unconditional: StateEffects,
    pub counts: PlanCounts,
}

/// A field both sides changed, settled while planning the CRM side and applied to the Marketo side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decision {
    /// Both sides already hold the same value.
    Agreed,
    Won(Side),
}

type Decisions = HashMap<(i64, String), Decision>;

struct Planner<'a> {
    settings: &'a PlanSettings,
    input: CycleInput<'a>,
    plan: CyclePlan,
    decisions: Decisions,
    /// Sync-filter flags read in this batch's CRM rows, newer than the links' (a Yes → No in the same batch
    /// must also stop that record's Marketo changes).
    filter_now: HashMap<Uuid, FilterValue>,
    /// CRM records deleted in this batch: their persons' Marketo changes have nowhere to go.
    deleted_now: HashSet<Uuid>,
    pending_marketo: HashMap<i64, &'a BTreeMap<String, MarketoFieldChange>>,
}

/// Plans one batch. Pure: the same inputs always give the same plan.
pub fn plan_cycle(settings: &PlanSettings, input: CycleInput<'_>) -> CyclePlan {
    let mut pending_marketo = HashMap::new();
    for change in input.marketo {
        if let MarketoChange::Upsert { person_id, fields } = change {
            pending_marketo.insert(*person_id, fields);
        }
    }
    let mut planner = Planner {
        settings,
        input,
        plan: CyclePlan::default(),
        decisions: HashMap::new(),
        filter_now: HashMap::new(),
        deleted_now: HashSet::new(),
        pending_marketo,
    };
    for change in input.crm {
        match change {
            CrmChange::Upsert(record) => planner.crm_upsert(record),
            CrmChange::Delete { entity, id } => planner.crm_delete(*entity, *id),
        }
    }
    for change in input.marketo {
        match change {
            MarketoChange::Upsert { person_id, fields } => {
                planner.marketo_upsert(*person_id, fields)
            }
            MarketoChange::Delete { person_id } => planner.marketo_delete(*person_id),
        }
    }
    planner.plan
}

fn is_empty_value(v: &Value) -> bool {
    matches!(v, Value::Null) || matches!(v, Value::String(s) if s.is_empty())
}

impl<'a> Planner<'a> {
    fn skip(
        &mut self,
        entity: CrmEntity,
        crm_id: Option<Uuid>,
        marketo_id: Option<i64>,
        flow: Flow,
        reason: SkipReason,
    ) {
        self.plan.counts.entry(entity, flow).skips += 1;
        self.plan.skips.push(Skip {
            entity,
            crm_id,
            marketo_id,
            flow,
            reason,
        });
    }

    fn dead_letter(
        &mut self,
        error: &ConvertError,
        crm_id: Option<Uuid>,
        marketo_id: Option<i64>,
        operation: &str,
        flow: Flow,
        payload: Value,
    ) {
        self.plan.counts.entry(error.entity, flow).dead_letters += 1;
        self.plan.dead_letters.push(PlannedDeadLetter {
            entity: error.entity,
            crm_id,
            marketo_id,
            operation: operation.to_owned(),
            flow,
            code: "conversion".to_owned(),
            message: error.to_string(),
            payload,
        });
    }

    fn push_op(&mut self, op: Op) {
        let c = self.plan.counts.entry(op.entity, op.flow);
        match &op.kind {
            OpKind::CreatePerson
            | OpKind::CreateCrm { .. }
            | OpKind::UpsertObject { create: true, .. } => c.creates += 1,
            OpKind::UpdatePerson { .. }
            | OpKind::UpdateCrm { .. }
            | OpKind::UpsertObject { create: false, .. }
            | OpKind::UpsertRole { .. } => c.updates += 1,
            OpKind::MarkPersonDeleted { .. } | OpKind::DeleteObject { .. } => c.deletes += 1,
        }
        self.plan.ops.push(op);
    }

    fn crm_upsert(&mut self, record: &'a CrmRecord) {
        let entity = record.entity;
        let Some(mapping) = self.settings.mappings.get(entity) else {
            self.skip(
                entity,
                Some(record.id),
                None,
                Flow::ToMarketo,
                SkipReason::EntityNotMapped,
            );
            return;
        };
        let link = self.input.links.by_crm(record.id);
        // Merge: the subordinate is deactivated and points at its master; the master syncs by its own
        // flag (§4: the winner decides), the subordinate's person is marked deleted and unlinked.
        if record.fields.get(MERGED) == Some(&Value::Bool(true)) {
            if link.is_some() {
                self.crm_delete(entity, record.id);
            } else {
                self.skip(
                    entity,
                    Some(record.id),
                    None,
                    Flow::ToMarketo,
                    SkipReason::Merged,
                );
            }
            return;
        }
        // Qualify: once the contact took over the lead's person the lead has no link; a later change of
        // the qualified lead must not create a second person.
        if entity == CrmEntity::Lead
            && link.is_none()
            && self.input.mode != Mode::Initial
            && record.fields.get("statecode").and_then(Value::as_i64) == Some(LEAD_QUALIFIED)
        {
            self.skip(
                entity,
                Some(record.id),
                None,
                Flow::ToMarketo,
                SkipReason::Qualified,
            );
            return;
        }
        let filter = if self.settings.filter_enabled {
            FilterValue::from_field(record.fields.get(FILTER_FIELD))
        } else {
            FilterValue::Missing
        };
        if link.is_some() {
            self.filter_now.insert(record.id, filter);
        }
        match sync_filter::transition(link.map(|l| l.filter), filter) {
            FilterTransition::Skipped => {
                self.skip(
                    entity,
                    Some(record.id),
                    link.and_then(|l| l.marketo_id),
                    Flow::ToMarketo,
                    SkipReason::Filtered,
                );
                return;
            }
            FilterTransition::StopSync => {
                if let Some(l) = link {
                    self.plan.unconditional.links.push(LinkChange::Upsert(Link {
                        filter,
                        ..l.clone()
                    }));
                }
                self.skip(
                    entity,
                    Some(record.id),
                    link.and_then(|l| l.marketo_id),
                    Flow::ToMarketo,
                    SkipReason::FilterStopped,
                );
                return;
            }
            FilterTransition::Syncing | FilterTransition::StartSync => {}
        }
        let by_sync_user = record.modified_by == Some(self.settings.identity.crm_sync_user);
        let initial = self.input.mode == Mode::Initial;
        match link {
            None => {
                if entity == CrmEntity::Contact && self.qualify(record, mapping, filter) {
                    return;
                }
                if by_sync_user && !initial {
                    self.skip(
                        entity,
                        Some(record.id),
                        None,
                        Flow::ToMarketo,
                        SkipReason::SyncUserRecord,
                    );
                    return;
                }
                self.crm_create(record, mapping, filter);
            }
            Some(link) => {
                // A No → Yes transition re-sends the whole record ("create or update at once").
                let full = initial || !link.filter.syncs();
                self.crm_update(record, mapping, link, filter, full, by_sync_user);
            }
        }
    }

    /// Converts every mapped field present in the row; the whole record fails on the first bad value.
    fn convert_all(
        &self,
        record: &CrmRecord,
        mapping: &EntityMapping,
    ) -> Result<(Map<String, Value>, Vec<FieldFingerprint>), ConvertError> {
        let object = record.entity.marketo_object();
        let mut payload = Map::new();
        let mut fps = Vec::new();
        for f in mapping.flowing(Flow::ToMarketo) {
            let Some(value) = record.fields.get(&f.crm) else {
                continue;
            };
            let (converted, crm_fp, mk_fp) = self.convert_to_marketo(record, object, f, value)?;
            payload.insert(f.marketo.clone(), converted);
            fps.push(FieldFingerprint {
                crm_id: record.id,
                side: Side::Crm,
                field: f.crm.clone(),
                fingerprint: crm_fp,
            });
            fps.push(FieldFingerprint {
                crm_id: record.id,
                side: Side::Marketo,
                field: f.marketo.clone(),
                fingerprint: mk_fp,
            });
        }
        Ok((payload, fps))
    }

    fn convert_to_marketo(
        &self,
        record: &CrmRecord,
        object: MarketoObject,
        f: &FieldMapping,
        value: &Value,
    ) -> Result<(Value, Fingerprint, Fingerprint), ConvertError> {
        let crm_ty = self.settings.schema.crm(record.entity, &f.crm);
        let mk_ty = self.settings.schema.marketo(object, &f.marketo);
        let converted =
            convert::crm_to_marketo(value, crm_ty, mk_ty).map_err(|cause| ConvertError {
                entity: record.entity,
                record: RecordRef::Crm(record.id),
                field: f.crm.clone(),
                cause,
            })?;
        let crm_fp = Fingerprint::of_crm(value, crm_ty);
        let mk_fp = Fingerprint::of_marketo(&converted, mk_ty);
        Ok((converted, crm_fp, mk_fp))
    }

    fn record_payload(record: &CrmRecord) -> Value {
        serde_json::to_value(record).unwrap_or(Value::Null)
    }

    fn person_fields(payload: &mut Map<String, Value>, entity: CrmEntity, crm_id: Uuid) {
        payload.insert(MSFT_ID.to_owned(), Value::String(crm_id.to_string()));
        if let Some(t) = entity.msft_type() {
            payload.insert(MSFT_TYPE.to_owned(), Value::String(t.to_owned()));
        }
    }

    fn new_link(&self, record: &CrmRecord, marketo_id: Option<i64>, filter: FilterValue) -> Link {
        Link {
            object: record.entity.marketo_object(),
            crm_entity: record.entity,
            crm_id: record.id,
            marketo_id,
            filter,
            created_at: self.input.now,
        }
    }

    fn crm_create(&mut self, record: &'a CrmRecord, mapping: &EntityMapping, filter: FilterValue) {
        let entity = record.entity;
        let object = entity.marketo_object();
        let (mut payload, fingerprints) = match self.convert_all(record, mapping) {
            Ok(x) => x,
            Err(e) => {
                self.dead_letter(
                    &e,
                    Some(record.id),
                    None,
                    "create",
                    Flow::ToMarketo,
                    Self::record_payload(record),
                );
                return;
            }
        };
        let kind = match object {
            MarketoObject::Person => {
                Self::person_fields(&mut payload, entity, record.id);
                payload.insert(MSFT_IS_DELETED.to_owned(), Value::Bool(false));
                let existing = (self.input.mode == Mode::Initial
                    && self.settings.match_existing_by_email)
                    .then(|| {
                        mapping
                            .by_crm("emailaddress1")
                            .and_then(|f| payload.get(&f.marketo))
                            .and_then(Value::as_str)
                            .and_then(|email| {
                                self.input
                                    .existing_by_email
                                    .get(&email.trim().to_lowercase())
                            })
                    })
                    .flatten();
                match existing {
                    Some(&marketo_id) => OpKind::UpdatePerson { marketo_id },
                    None => OpKind::CreatePerson,
                }
            }
            other => OpKind::UpsertObject {
                object: other,
                external_id: record.id.to_string(),
                create: true,
            },
        };
        let marketo_id = match &kind {
            OpKind::UpdatePerson { marketo_id } => Some(*marketo_id),
            _ => None,
        };
        let link = self.new_link(record, marketo_id, filter);
        let on_success = StateEffects {
            links: vec![LinkChange::Upsert(link)],
            fingerprints,
        };
        // A created/linked person counts as a create even when matched by email: it is new to the sync.
        let create_kind_is_update = matches!(kind, OpKind::UpdatePerson { .. });
        self.push_op(Op {
            entity,
            crm_id: record.id,
            flow: Flow::ToMarketo,
            kind,
            payload,
            on_success,
        });
        if create_kind_is_update {
            let c = self.plan.counts.entry(entity, Flow::ToMarketo);
            c.updates -= 1;
            c.creates += 1;
        }
        self.opportunity_role(record, true);
    }

    fn crm_update(
        &mut self,
        record: &'a CrmRecord,
        mapping: &EntityMapping,
        link: &Link,
        filter: FilterValue,
        full: bool,
        by_sync_user: bool,
    ) {
        let entity = record.entity;
        let object = entity.marketo_object();
        let mut payload = Map::new();
        let mut on_success = Vec::new();
        let mut echoes = 0u64;
        let mut lost = 0u64;
        for f in mapping.flowing(Flow::ToMarketo) {
            let Some(value) = record.fields.get(&f.crm) else {
                continue;
            };
            let (converted, crm_fp, mk_fp) = match self.convert_to_marketo(record, object, f, value)
            {
                Ok(x) => x,
                Err(e) => {
                    self.dead_letter(
                        &e,
                        Some(record.id),
                        link.marketo_id,
                        "update",
                        Flow::ToMarketo,
                        Self::record_payload(record),
                    );
                    return;
                }
            };
            let crm_fp_entry = FieldFingerprint {
                crm_id: record.id,
                side: Side::Crm,
                field: f.crm.clone(),
                fingerprint: crm_fp,
            };
            let mk_fp_entry = FieldFingerprint {
                crm_id: record.id,
                side: Side::Marketo,
                field: f.marketo.clone(),
                fingerprint: mk_fp,
            };
            if !full {
                let stored = self.input.fingerprints.get(record.id, Side::Crm, &f.crm);
                match echo::judge_crm_field(by_sync_user, stored, crm_fp) {
                    Verdict::Echo(reason) => {
                        echoes += 1;
                        if reason == EchoReason::SyncUserRow {
                            self.plan.unconditional.fingerprints.push(crm_fp_entry);
                        }
                        continue;
                    }
                    Verdict::RealEdit => {}
                }
                // Both sides changed this field since the last cycle?
                if f.direction.allows(Flow::ToDynamics)
                    && let Some(marketo_id) = link.marketo_id
                    && let Some(change) = self
                        .pending_marketo
                        .get(&marketo_id)
                        .and_then(|m| m.get(&f.marketo))
                {
                    let mk_ty = self.settings.schema.marketo(object, &f.marketo);
                    let their_fp = Fingerprint::of_marketo(&change.value, mk_ty);
                    let stored_mk =
                        self.input
                            .fingerprints
                            .get(record.id, Side::Marketo, &f.marketo);
                    if echo::judge_marketo_field(change.actor, stored_mk, their_fp).is_real_edit() {
                        if their_fp == mk_fp {
                            // Both sides now hold the same value: nothing to write either way.
                            self.decisions
                                .insert((marketo_id, f.marketo.clone()), Decision::Agreed);
                            self.plan.unconditional.fingerprints.push(crm_fp_entry);
                            self.plan.unconditional.fingerprints.push(mk_fp_entry);
                            echoes += 1;
                            continue;
                        }
                        let winner = conflict::resolve(
                            f.conflict,
                            entity,
                            Candidate {
                                empty: is_empty_value(value),
                                at: record.modified_on,
                            },
                            Candidate {
                                empty: is_empty_value(&change.value),
                                at: change.at,
                            },
                        );
                        self.decisions
                            .insert((marketo_id, f.marketo.clone()), Decision::Won(winner));
                        self.plan.counts.entry(entity, Flow::ToMarketo).conflicts += 1;
                        self.plan.conflicts.push(ConflictRecord {
                            entity,
                            crm_id: record.id,
                            marketo_id: Some(marketo_id),
                            crm_field: f.crm.clone(),
                            marketo_field: f.marketo.clone(),
                            crm_value: value.clone(),
                            marketo_value: change.value.clone(),
                            policy: f.conflict,
                            outcome: winner,
                            at: self.input.now,
                        });
                        if winner == Side::Marketo {
                            lost += 1;
                            continue;
                        }
                    }
                }
            }
            payload.insert(f.marketo.clone(), converted);
            on_success.push(crm_fp_entry);
            on_success.push(mk_fp_entry);
        }
        let role_changed = self.opportunity_role(record, full);
        let filter_changed = link.filter != filter;
        if payload.is_empty() {
            if filter_changed {
                self.plan.unconditional.links.push(LinkChange::Upsert(Link {
                    filter,
                    ..link.clone()
                }));
            }
            if !role_changed {
                let reason = if lost > 0 {
                    SkipReason::ConflictLost
                } else if echoes > 0 {
                    SkipReason::Echo
                } else {
                    SkipReason::NoChanges
                };
                if reason == SkipReason::Echo {
                    self.plan.counts.entry(entity, Flow::ToMarketo).echoes += 1;
                }
                self.skip(
                    entity,
                    Some(record.id),
                    link.marketo_id,
                    Flow::ToMarketo,
                    reason,
                );
            }
            return;
        }
        let kind = match (object, link.marketo_id) {
            (MarketoObject::Person, Some(marketo_id)) => {
                Self::person_fields(&mut payload, entity, record.id);
                OpKind::UpdatePerson { marketo_id }
            }
            (MarketoObject::Person, None) => {
                Self::person_fields(&mut payload, entity, record.id);
                OpKind::CreatePerson
            }
            (other, _) => OpKind::UpsertObject {
                object: other,
                external_id: record.id.to_string(),
                create: false,
            },
        };
        let mut links = Vec::new();
        if filter_changed {
            links.push(LinkChange::Upsert(Link {
                filter,
                ..link.clone()
            }));
        }
        self.push_op(Op {
            entity,
            crm_id: record.id,
            flow: Flow::ToMarketo,
            kind,
            payload,
            on_success: StateEffects {
                links,
                fingerprints: on_success,
            },
        });
    }

    /// An opportunity whose `_customerid_value` is a linked contact gets a contact role (marketo-dynamics-sync
    /// §3: contact only → an `opportunitycontactrole`). Returns whether a role op was planned.
    fn opportunity_role(&mut self, record: &CrmRecord, full: bool) -> bool {
        const CUSTOMER: &str = "_customerid_value";
        if record.entity != CrmEntity::Opportunity {
            return false;
        }
        let Some(customer) = record.fields.get(CUSTOMER) else {
            return false;
        };
        let fp = Fingerprint::of_crm(customer, Some(&CrmFieldType::Guid));
        if !full && self.input.fingerprints.get(record.id, Side::Crm, CUSTOMER) == Some(fp) {
            return false;
        }
        let contact = customer
            .as_str()
            .and_then(|s| Uuid::parse_str(s).ok())
            .and_then(|id| self.input.links.by_crm(id))
            .filter(|l| l.crm_entity == CrmEntity::Contact);
        let Some(lead_id) = contact.and_then(|l| l.marketo_id) else {
            return false;
        };
        self.push_op(Op {
            entity: CrmEntity::Opportunity,
            crm_id: record.id,
            flow: Flow::ToMarketo,
            kind: OpKind::UpsertRole {
                role: MarketoRole {
                    external_opportunity_id: record.id.to_string(),
                    lead_id,
                    role: "Customer".to_owned(),
                    is_primary: true,
                },
            },
            payload: Map::new(),
            on_success: StateEffects {
                links: vec![],
                fingerprints: vec![FieldFingerprint {
                    crm_id: record.id,
                    side: Side::Crm,
                    field: CUSTOMER.to_owned(),
                    fingerprint: fp,
                }],
            },
        });
        true
    }

    /// A new contact qualified from a linked lead (`_originatingleadid_value`): Marketo's Qualify table
    /// decides whether the lead's person becomes the contact, a new person is created, or nothing syncs.
    /// Returns `true` when it handled the record.
    fn qualify(
        &mut self,
        record: &'a CrmRecord,
        mapping: &EntityMapping,
        filter: FilterValue,
    ) -> bool {
        let Some(lead_link) = record
            .fields
            .get("_originatingleadid_value")
            .and_then(Value::as_str)
            .and_then(|s| Uuid::parse_str(s).ok())
            .and_then(|id| self.input.links.by_crm(id))
            .filter(|l| l.crm_entity == CrmEntity::Lead)
            .cloned()
        else {
            return false;
        };
        match sync_filter::qualify(lead_link.filter, filter).contact {
            QualifiedContact::NotSynced => {
                self.skip(
                    record.entity,
                    Some(record.id),
                    None,
                    Flow::ToMarketo,
                    SkipReason::Filtered,
                );
                true
            }
            QualifiedContact::NewPerson => {
                self.crm_create(record, mapping, filter);
                true
            }
            QualifiedContact::TakesOverLeadPerson => {
                let Some(marketo_id) = lead_link.marketo_id else {
                    self.crm_create(record, mapping, filter);
                    return true;
                };
                let (mut payload, fingerprints) = match self.convert_all(record, mapping) {
                    Ok(x) => x,
                    Err(e) => {
                        self.dead_letter(
                            &e,
                            Some(record.id),
                            Some(marketo_id),
                            "update",
                            Flow::ToMarketo,
                            Self::record_payload(record),
                        );
                        return true;
                    }
                };
                Self::person_fields(&mut payload, record.entity, record.id);
                let link = self.new_link(record, Some(marketo_id), filter);
                self.push_op(Op {
                    entity: record.entity,
                    crm_id: record.id,
                    flow: Flow::ToMarketo,
                    kind: OpKind::UpdatePerson { marketo_id },
                    payload,
                    on_success: StateEffects {
                        links: vec![
                            LinkChange::Remove {
                                crm_entity: CrmEntity::Lead,
                                crm_id: lead_link.crm_id,
                            },
                            LinkChange::Upsert(link),
                        ],
                        fingerprints,
                    },
                });
                true
            }
        }
    }

    fn crm_delete(&mut self, entity: CrmEntity, id: Uuid) {
        self.deleted_now.insert(id);
        let Some(link) = self.input.links.by_crm(id).cloned() else {
            self.skip(
                entity,
                Some(id),
                None,
                Flow::ToMarketo,
                SkipReason::NotLinked,
            );
            return;
        };
        let remove = StateEffects {
            links: vec![LinkChange::Remove {
                crm_entity: link.crm_entity,
                crm_id: id,
            }],
            fingerprints: vec![],
        };
        let kind = match (link.object, link.marketo_id) {
            (MarketoObject::Person, Some(marketo_id)) => OpKind::MarkPersonDeleted { marketo_id },
            (MarketoObject::Person, None) => {
                self.plan.unconditional.extend(remove);
                self.skip(
                    entity,
                    Some(id),
                    None,
                    Flow::ToMarketo,
                    SkipReason::NotLinked,
                );
                return;
            }
            (object, _) => OpKind::DeleteObject {
                object,
                external_id: id.to_string(),
            },
        };
        let mut payload = Map::new();
        if matches!(kind, OpKind::MarkPersonDeleted { .. }) {
            payload.insert(MSFT_IS_DELETED.to_owned(), Value::Bool(true));
        }
        self.push_op(Op {
            entity,
            crm_id: id,
            flow: Flow::ToMarketo,
            kind,
            payload,
            on_success: remove,
        });
    }

    fn marketo_delete(&mut self, person_id: i64) {
        match self.input.links.by_marketo_person(person_id) {
            None => self.skip(
                CrmEntity::Lead,
                None,
                Some(person_id),
                Flow::ToDynamics,
                SkipReason::NotLinked,
            ),
            Some(link) => {
                // A Marketo delete stays in Marketo: the link is dropped, nothing is deleted in Dynamics.
                self.plan
                    .counts
                    .entry(link.crm_entity, Flow::ToDynamics)
                    .unlinks += 1;
                self.plan.unconditional.links.push(LinkChange::Remove {
                    crm_entity: link.crm_entity,
                    crm_id: link.crm_id,
                });
            }
        }
    }

    fn marketo_upsert(&mut self, person_id: i64, fields: &BTreeMap<String, MarketoFieldChange>) {
        let Some(link) = self.input.links.by_marketo_person(person_id).cloned() else {
            self.skip(
                CrmEntity::Lead,
                None,
                Some(person_id),
                Flow::ToDynamics,
                SkipReason::NotLinked,
            );
            return;
        };
        if self.deleted_now.contains(&link.crm_id) {
            self.skip(
                link.crm_entity,
                Some(link.crm_id),
                Some(person_id),
                Flow::ToDynamics,
                SkipReason::NotLinked,
            );
            return;
        }
        let entity = link.crm_entity;
        let filter = self
            .filter_now
            .get(&link.crm_id)
            .copied()
            .unwrap_or(link.filter);
        if !filter.syncs() {
            self.skip(
                entity,
                Some(link.crm_id),
                Some(person_id),
                Flow::ToDynamics,
                SkipReason::Filtered,
            );
            return;
        }
        let Some(mapping) = self.settings.mappings.get(entity) else {
            self.skip(
                entity,
                Some(link.crm_id),
                Some(person_id),
                Flow::ToDynamics,
                SkipReason::EntityNotMapped,
            );
            return;
        };
        let mut payload = Map::new();
        let mut fps = Vec::new();
        let (mut echoes, mut lost) = (0u64, 0u64);
        for (mk_field, change) in fields {
            let Some(f) = mapping.by_marketo_to_dynamics(mk_field) else {
                continue;
            };
            let mk_ty = self
                .settings
                .schema
                .marketo(MarketoObject::Person, mk_field);
            let crm_ty = self.settings.schema.crm(entity, &f.crm);
            let mk_fp = Fingerprint::of_marketo(&change.value, mk_ty);
            match self.decisions.get(&(person_id, mk_field.clone())) {
                Some(Decision::Agreed) => {
                    echoes += 1;
                    continue;
                }
                Some(Decision::Won(Side::Crm)) => {
                    lost += 1;
                    continue;
                }
                Some(Decision::Won(Side::Marketo)) => {}
                None => {
                    let stored = self
                        .input
                        .fingerprints
                        .get(link.crm_id, Side::Marketo, mk_field);
                    if let Verdict::Echo(_) = echo::judge_marketo_field(change.actor, stored, mk_fp)
                    {
                        echoes += 1;
                        continue;
                    }
                }
            }
            let converted = match convert::marketo_to_crm(&change.value, mk_ty, crm_ty) {
                Ok(v) => v,
                Err(cause) => {
                    let e = ConvertError {
                        entity,
                        record: RecordRef::Marketo(person_id),
                        field: mk_field.clone(),
                        cause,
                    };
                    let source = serde_json::json!({ "person_id": person_id, "fields": fields });
                    self.dead_letter(
                        &e,
                        Some(link.crm_id),
                        Some(person_id),
                        "update",
                        Flow::ToDynamics,
                        source,
                    );
                    return;
                }
            };
            fps.push(FieldFingerprint {
                crm_id: link.crm_id,
                side: Side::Crm,
                field: f.crm.clone(),
                fingerprint: Fingerprint::of_crm(&converted, crm_ty),
            });
            fps.push(FieldFingerprint {
                crm_id: link.crm_id,
                side: Side::Marketo,
                field: mk_field.clone(),
                fingerprint: mk_fp,
            });
            payload.insert(f.crm.clone(), converted);
        }
        if payload.is_empty() {
            let reason = if lost > 0 {
                SkipReason::ConflictLost
            } else if echoes > 0 {
                self.plan.counts.entry(entity, Flow::ToDynamics).echoes += 1;
                SkipReason::Echo
            } else {
                SkipReason::NoChanges
            };
            self.skip(
                entity,
                Some(link.crm_id),
                Some(person_id),
                Flow::ToDynamics,
                reason,
            );
            return;
        }
        self.push_op(Op {
            entity,
            crm_id: link.crm_id,
            flow: Flow::ToDynamics,
            kind: OpKind::UpdateCrm { entity },
            payload,
            on_success: StateEffects {
                links: vec![],
                fingerprints: fps,
            },
        });
    }
}

/// What `mdsync push-person` does.
#[derive(Clone, Debug, PartialEq)]
pub enum PushPlan {
    /// Already linked: nothing to do.
    AlreadyLinked { crm_entity: CrmEntity, crm_id: Uuid },
    /// A lead or contact with the person's email exists: link to it, create nothing.
    LinkExisting { ops: Vec<Op> },
    /// Create the record (then stamp the person's `msftId`/`msftType`), run in order.
    Create { ops: Vec<Op> },
    /// The person's values do not fit Dynamics.
    DeadLetter(PlannedDeadLetter),
}

/// The inputs of [`plan_push_person`].
#[derive(Clone, Copy, Debug)]
pub struct PushRequest<'a> {
    pub person: &'a MarketoPerson,
    /// The person's link, if any.
    pub link: Option<&'a Link>,
    /// The result of looking the person's email up among leads and contacts (done by the caller, before
    /// creating, to avoid duplicates).
    pub crm_match: Option<(CrmEntity, Uuid)>,
    /// `--as lead|contact`.
    pub as_entity: CrmEntity,
    /// `--owner`: a `systemuserid`.
    pub owner: Option<Uuid>,
    /// The id to create the record with, so a retried create is an upsert of the same record.
    pub new_id: Uuid,
    pub now: DateTime<Utc>,
}

/// Plans pushing a Marketo-only person to Dynamics ("Sync Person to Microsoft": create the lead if
/// missing, no-op if present, optional owner). "Sync as contact" creates a contact directly.
pub fn plan_push_person(settings: &PlanSettings, request: PushRequest<'_>) -> PushPlan {
    let PushRequest {
        person,
        link,
        crm_match,
        as_entity,
        owner,
        new_id,
        now,
    } = request;
    if let Some(l) = link {
        return PushPlan::AlreadyLinked {
            crm_entity: l.crm_entity,
            crm_id: l.crm_id,
        };
    }
    let stamp = |entity: CrmEntity, crm_id: Uuid, fingerprints: Vec<FieldFingerprint>| {
        let mut payload = Map::new();
        payload.insert(MSFT_ID.to_owned(), Value::String(crm_id.to_string()));
        if let Some(t) = entity.msft_type() {
            payload.insert(MSFT_TYPE.to_owned(), Value::String(t.to_owned()));
        }
        payload.insert(MSFT_IS_DELETED.to_owned(), Value::Bool(false));
        let link = Link {
            object: MarketoObject::Person,
            crm_entity: entity,
            crm_id,
            marketo_id: Some(person.id),
            filter: FilterValue::Missing,
            created_at: now,
        };
        Op {
            entity,
            crm_id,
            flow: Flow::ToMarketo,
            kind: OpKind::UpdatePerson {
                marketo_id: person.id,
            },
            payload,
            on_success: StateEffects {
                links: vec![LinkChange::Upsert(link)],
                fingerprints,
            },
        }
    };
    if let Some((entity, crm_id)) = crm_match {
        return PushPlan::LinkExisting {
            ops: vec![stamp(entity, crm_id, vec![])],
        };
    }
    let entity = if as_entity == CrmEntity::Contact {
        CrmEntity::Contact
    } else {
        CrmEntity::Lead
    };
    let mapping = settings
        .mappings
        .get(entity)
        .cloned()
        .unwrap_or_else(|| EntityMapping::defaults(entity));
    let mut payload = Map::new();
    let mut fps = Vec::new();
    for f in mapping.flowing(Flow::ToDynamics) {
        let Some(value) = person.fields.get(&f.marketo) else {
            continue;
        };
        let mk_ty = settings.schema.marketo(MarketoObject::Person, &f.marketo);
        let crm_ty = settings.schema.crm(entity, &f.crm);
        let converted = match convert::marketo_to_crm(value, mk_ty, crm_ty) {
            Ok(v) => v,
            Err(cause) => {
                let e = ConvertError {
                    entity,
                    record: RecordRef::Marketo(person.id),
                    field: f.marketo.clone(),
                    cause,
                };
                return PushPlan::DeadLetter(PlannedDeadLetter {
                    entity,
                    crm_id: None,
                    marketo_id: Some(person.id),
                    operation: "create".to_owned(),
                    flow: Flow::ToDynamics,
                    code: "conversion".to_owned(),
                    message: e.to_string(),
                    payload: serde_json::to_value(person).unwrap_or(Value::Null),
                });
            }
        };
        fps.push(FieldFingerprint {
            crm_id: new_id,
            side: Side::Crm,
            field: f.crm.clone(),
            fingerprint: Fingerprint::of_crm(&converted, crm_ty),
        });
        fps.push(FieldFingerprint {
            crm_id: new_id,
            side: Side::Marketo,
            field: f.marketo.clone(),
            fingerprint: Fingerprint::of_marketo(value, mk_ty),
        });
        payload.insert(f.crm.clone(), converted);
    }
    if let Some(owner) = owner {
        payload.insert(
            "ownerid@odata.bind".to_owned(),
            Value::String(format!("/systemusers({owner})")),
        );
    }
    let create = Op {
        entity,
        crm_id: new_id,
        flow: Flow::ToDynamics,
        kind: OpKind::CreateCrm { entity },
        payload,
        on_success: StateEffects::default(),
    };
    PushPlan::Create {
        ops: vec![create, stamp(entity, new_id, fps)],
    }
}

/// The CRM ids whose links a batch needs: its records plus the leads contacts were qualified from and the
/// customers of opportunities. Feed them to the state store, then build the [`LinkView`].
pub fn referenced_crm_ids(changes: &[CrmChange]) -> Vec<Uuid> {
    let mut ids = Vec::with_capacity(changes.len());
    for c in changes {
        ids.push(c.id());
        if let CrmChange::Upsert(r) = c {
            for key in ["_originatingleadid_value", "_customerid_value"] {
                if let Some(id) = r
                    .fields
                    .get(key)
                    .and_then(Value::as_str)
                    .and_then(|s| Uuid::parse_str(s).ok())
                {
                    ids.push(id);
                }
            }
        }
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The Marketo person ids a batch of Marketo changes touches (for the link lookup by Marketo id).
pub fn marketo_person_ids(changes: &[MarketoChange]) -> Vec<i64> {
    let mut ids: Vec<i64> = changes.iter().map(MarketoChange::person_id).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// How one planned op went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpOutcome {
    /// Written; for [`OpKind::CreatePerson`], the id Marketo returned.
    Done { marketo_id: Option<i64> },
    /// Rejected for this record (the batch went on): the service's code and message.
    Failed { code: String, message: String },
    /// Not attempted (e.g. the cycle stopped): no state for it is committed, so it is planned again.
    NotAttempted,
}

/// What to commit for a batch once its ops ran.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Settled {
    pub effects: StateEffects,
    pub dead_letters: Vec<PlannedDeadLetter>,
    pub conflicts: Vec<ConflictRecord>,
    /// How many ops were written / failed / not attempted.
    pub done: usize,
    pub failed: usize,
    pub not_attempted: usize,
}

impl CyclePlan {
    /// Folds per-op outcomes (`outcomes[i]` for `ops[i]`) into the state to commit: the unconditional
    /// effects, the `on_success` effects of written ops, a dead letter per failed op (plus those planned).
    ///
    /// A missing outcome counts as not attempted. A create that reports no Marketo id leaves its link
    /// without one; the next cycle's update then re-creates by `msftId`, which is idempotent.
    pub fn settle(self, outcomes: &[OpOutcome]) -> Settled {
        let mut settled = Settled {
            effects: self.unconditional,
            dead_letters: self.dead_letters,
            conflicts: self.conflicts,
            ..Settled::default()
        };
        for (i, op) in self.ops.into_iter().enumerate() {
            match outcomes.get(i).unwrap_or(&OpOutcome::NotAttempted) {
                OpOutcome::Done { marketo_id } => {
                    settled.done += 1;
                    let mut effects = op.on_success;
                    if let Some(id) = marketo_id {
                        effects.set_marketo_id(op.crm_id, *id);
                    }
                    settled.effects.extend(effects);
                }
                OpOutcome::Failed { code, message } => {
                    settled.failed += 1;
                    settled.dead_letters.push(PlannedDeadLetter {
                        entity: op.entity,
                        crm_id: Some(op.crm_id),
                        marketo_id: match &op.kind {
                            OpKind::UpdatePerson { marketo_id }
                            | OpKind::MarkPersonDeleted { marketo_id } => Some(*marketo_id),
                            OpKind::UpsertRole { role } => Some(role.lead_id),
                            _ => None,
                        },
                        operation: op.kind.operation().to_owned(),
                        flow: op.flow,
                        code: code.clone(),
                        message: message.clone(),
                        payload: serde_json::json!({ "op": op.kind, "payload": op.payload }),
                    });
                }
                OpOutcome::NotAttempted => settled.not_attempted += 1,
            }
        }
        settled
    }
}
