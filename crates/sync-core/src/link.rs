//! Links (CRM record ⇄ Marketo object) and per-field fingerprints: the state the planner reads and the
//! changes it asks the state store to make once the writes they describe have succeeded.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::fingerprint::Fingerprint;
use crate::record::{CrmEntity, MarketoObject, Side};
use crate::sync_filter::FilterValue;

/// One CRM record's counterpart in Marketo.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub object: MarketoObject,
    pub crm_entity: CrmEntity,
    pub crm_id: Uuid,
    /// The Marketo id (persons, companies); `None` for objects keyed by their external id only, or while a
    /// create's answer is pending.
    pub marketo_id: Option<i64>,
    /// The sync-filter flag last seen on the CRM record.
    pub filter: FilterValue,
    pub created_at: DateTime<Utc>,
}

/// A change to the link table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LinkChange {
    Upsert(Link),
    /// Drops the link and the record's fingerprints.
    Remove {
        crm_entity: CrmEntity,
        crm_id: Uuid,
    },
}

/// A stored fingerprint: what mdsync last wrote to or read from `side` for this record's `field`
/// (the side's own field name).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FieldFingerprint {
    pub crm_id: Uuid,
    pub side: Side,
    pub field: String,
    pub fingerprint: Fingerprint,
}

/// State changes that become true together (committed in the same transaction as the cursor they cover).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateEffects {
    pub links: Vec<LinkChange>,
    pub fingerprints: Vec<FieldFingerprint>,
}

impl StateEffects {
    pub fn is_empty(&self) -> bool {
        self.links.is_empty() && self.fingerprints.is_empty()
    }

    pub fn extend(&mut self, other: StateEffects) {
        self.links.extend(other.links);
        self.fingerprints.extend(other.fingerprints);
    }

    /// Fills in the Marketo id a create returned, on the links of `crm_id` still waiting for it.
    pub fn set_marketo_id(&mut self, crm_id: Uuid, marketo_id: i64) {
        for change in &mut self.links {
            if let LinkChange::Upsert(link) = change
                && link.crm_id == crm_id
                && link.marketo_id.is_none()
            {
                link.marketo_id = Some(marketo_id);
            }
        }
    }
}

/// The links relevant to a batch, indexed both ways.
#[derive(Clone, Debug, Default)]
pub struct LinkView {
    by_crm: HashMap<Uuid, Link>,
    by_marketo: HashMap<(MarketoObject, i64), Uuid>,
}

impl LinkView {
    pub fn new(links: impl IntoIterator<Item = Link>) -> LinkView {
        let mut view = LinkView::default();
        for link in links {
            view.insert(link);
        }
        view
    }

    pub fn insert(&mut self, link: Link) {
        if let Some(id) = link.marketo_id {
            self.by_marketo.insert((link.object, id), link.crm_id);
        }
        self.by_crm.insert(link.crm_id, link);
    }

    pub fn by_crm(&self, crm_id: Uuid) -> Option<&Link> {
        self.by_crm.get(&crm_id)
    }

    pub fn by_marketo_person(&self, person_id: i64) -> Option<&Link> {
        self.by_marketo
            .get(&(MarketoObject::Person, person_id))
            .and_then(|id| self.by_crm.get(id))
    }

    pub fn len(&self) -> usize {
        self.by_crm.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_crm.is_empty()
    }
}

/// The fingerprints relevant to a batch.
#[derive(Clone, Debug, Default)]
pub struct FingerprintView {
    map: HashMap<(Uuid, Side, String), Fingerprint>,
}

impl FingerprintView {
    pub fn new(items: impl IntoIterator<Item = FieldFingerprint>) -> FingerprintView {
        FingerprintView {
            map: items
                .into_iter()
                .map(|f| ((f.crm_id, f.side, f.field), f.fingerprint))
                .collect(),
        }
    }

    pub fn get(&self, crm_id: Uuid, side: Side, field: &str) -> Option<Fingerprint> {
        self.map.get(&(crm_id, side, field.to_owned())).copied()
    }
}
