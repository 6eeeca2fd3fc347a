//! Property tests of the pure core: conversions round-trip, fingerprints normalise, batches cover their
//! input, and a synced record's echoes never produce writes while any real edit does.

use std::collections::HashMap;

use chrono::{DateTime, TimeZone, Utc};
use mdsync_sync_core::batch::{chunks, zip_results};
use mdsync_sync_core::convert::{CrmFieldType, MarketoFieldType, crm_to_marketo, marketo_to_crm};
use mdsync_sync_core::echo::SyncIdentity;
use mdsync_sync_core::fingerprint::Fingerprint;
use mdsync_sync_core::link::{FieldFingerprint, FingerprintView, Link, LinkChange, LinkView};
use mdsync_sync_core::mapping::Mappings;
use mdsync_sync_core::plan::{CycleInput, Mode, OpKind, PlanSettings, Schema, plan_cycle};
use mdsync_sync_core::record::{
    ChangeActor, CrmChange, CrmEntity, CrmRecord, MarketoChange, MarketoFieldChange,
};
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use uuid::Uuid;

const SYNC_USER: Uuid = Uuid::from_u128(0x5);

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 0)
        .single()
        .unwrap_or_default()
}

proptest! {
    #[test]
    fn strings_round_trip(s in "\\PC{0,40}") {
        let crm = CrmFieldType::String { max_length: Some(100) };
        let mk = MarketoFieldType::String { max_length: Some(255) };
        let there = crm_to_marketo(&json!(s), Some(&crm), Some(&mk)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let back = marketo_to_crm(&there, Some(&mk), Some(&crm)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let expected = if s.is_empty() { Value::Null } else { json!(s) };
        prop_assert_eq!(back, expected);
    }

    #[test]
    fn integers_round_trip_through_activity_strings(i in any::<i32>()) {
        let there = crm_to_marketo(&json!(i), Some(&CrmFieldType::Integer), Some(&MarketoFieldType::Integer)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        // Lead-change activities report the new value as a string.
        let as_activity = json!(there.to_string());
        let back = marketo_to_crm(&as_activity, Some(&MarketoFieldType::Integer), Some(&CrmFieldType::Integer)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back, json!(i));
        prop_assert_eq!(
            Fingerprint::of_marketo(&there, Some(&MarketoFieldType::Integer)),
            Fingerprint::of_marketo(&as_activity, Some(&MarketoFieldType::Integer))
        );
    }

    #[test]
    fn datetimes_round_trip(secs in 0i64..4_000_000_000) {
        let dt = Utc.timestamp_opt(secs, 0).single().unwrap_or_default();
        let v = json!(dt.format("%Y-%m-%dT%H:%M:%SZ").to_string());
        let there = crm_to_marketo(&v, Some(&CrmFieldType::DateTime), Some(&MarketoFieldType::DateTime)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let back = marketo_to_crm(&there, Some(&MarketoFieldType::DateTime), Some(&CrmFieldType::DateTime)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back, v);
    }

    #[test]
    fn booleans_round_trip(b in any::<bool>()) {
        let there = crm_to_marketo(&json!(b), Some(&CrmFieldType::Boolean), Some(&MarketoFieldType::Boolean)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let back = marketo_to_crm(&json!(there.to_string()), Some(&MarketoFieldType::Boolean), Some(&CrmFieldType::Boolean)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back, json!(b));
    }

    #[test]
    fn too_long_strings_always_fail(s in "[a-z]{11,30}") {
        let crm = CrmFieldType::String { max_length: Some(10) };
        prop_assert!(marketo_to_crm(&json!(s), None, Some(&crm)).is_err());
    }

    #[test]
    fn chunks_cover_input_in_order(len in 0usize..2000, max in 1usize..400) {
        let items: Vec<usize> = (0..len).collect();
        let mut seen = Vec::new();
        for c in chunks(&items, max) {
            prop_assert!(c.items.len() <= max && !c.items.is_empty());
            let results: Vec<usize> = c.items.iter().map(|x| x * 2).collect();
            for (i, r) in zip_results(&c, results).map_err(|e| TestCaseError::fail(e.to_string()))? {
                prop_assert_eq!(r, items[i] * 2);
                seen.push(i);
            }
        }
        prop_assert_eq!(seen, items);
    }

    #[test]
    fn fingerprints_distinguish_different_strings(a in "\\PC{1,20}", b in "\\PC{1,20}") {
        prop_assume!(a != b);
        prop_assert_ne!(Fingerprint::of_crm(&json!(a), None), Fingerprint::of_crm(&json!(b), None));
    }
}

fn settings() -> PlanSettings {
    let mut schema = Schema::default();
    for e in [CrmEntity::Lead, CrmEntity::Contact] {
        schema.set_crm(e, "donotphone", CrmFieldType::Boolean);
    }
    schema.set_marketo(
        mdsync_sync_core::record::MarketoObject::Person,
        "doNotCall",
        MarketoFieldType::Boolean,
    );
    PlanSettings {
        identity: SyncIdentity {
            crm_sync_user: SYNC_USER,
            marketo_api_users: vec!["mdsync@x.apiuser".into()],
        },
        mappings: Mappings::default(),
        schema,
        filter_enabled: true,
        match_existing_by_email: false,
    }
}

fn fields_strategy() -> impl Strategy<Value = Map<String, Value>> {
    (
        proptest::option::of("[A-Za-z]{0,8}"),
        proptest::option::of("[A-Za-z]{0,8}"),
        proptest::option::of("[a-z]{1,6}@[a-z]{1,6}\\.com"),
        proptest::option::of(any::<bool>()),
    )
        .prop_map(|(first, last, email, dnc)| {
            let mut m = Map::new();
            if let Some(v) = first {
                m.insert("firstname".into(), json!(v));
            }
            if let Some(v) = last {
                m.insert("lastname".into(), json!(v));
            }
            if let Some(v) = email {
                m.insert("emailaddress1".into(), json!(v));
            }
            if let Some(v) = dnc {
                m.insert("donotphone".into(), json!(v));
            }
            m
        })
}

proptest! {
    /// After a record is synced and the state committed, reading it back (from either side, attributed to
    /// anyone) plans no write; changing one field plans exactly that field.
    #[test]
    fn echoes_never_write_and_edits_always_do(
        fields in fields_strategy(),
        by_sync in any::<bool>(),
        new_last in "[A-Za-z]{1,8}",
        contact in any::<bool>(),
    ) {
        let entity = if contact { CrmEntity::Contact } else { CrmEntity::Lead };
        let s = settings();
        let id = Uuid::from_u128(1);
        let rec = CrmRecord { entity, id, modified_by: Some(Uuid::from_u128(9)), modified_on: Some(t(1)), version: None, fields: fields.clone() };
        let empty_links = LinkView::default();
        let empty_fps = FingerprintView::default();
        let none = HashMap::new();
        let plan = plan_cycle(&s, CycleInput { mode: Mode::Initial, crm: &[CrmChange::Upsert(rec.clone())], marketo: &[], links: &empty_links, fingerprints: &empty_fps, existing_by_email: &none, now: t(2) });
        prop_assert_eq!(plan.ops.len(), 1);
        prop_assert_eq!(&plan.ops[0].kind, &OpKind::CreatePerson);
        let mut effects = plan.ops[0].on_success.clone();
        effects.set_marketo_id(id, 500);
        let links: Vec<Link> = effects.links.iter().filter_map(|c| match c { LinkChange::Upsert(l) => Some(l.clone()), LinkChange::Remove { .. } => None }).collect();
        let links = LinkView::new(links);
        let fps: Vec<FieldFingerprint> = effects.fingerprints.clone();
        let fps = FingerprintView::new(fps);
        prop_assert_eq!(links.by_marketo_person(500).map(|l| l.crm_id), Some(id));

        // The same row again, by the sync user or not: nothing to write.
        let again = CrmRecord { modified_by: Some(if by_sync { SYNC_USER } else { Uuid::from_u128(9) }), ..rec.clone() };
        // Marketo reporting back exactly what mdsync wrote, by anyone.
        let payload = &plan.ops[0].payload;
        let mk_fields = payload
            .iter()
            .filter(|(k, _)| !k.starts_with("msft"))
            .map(|(k, v)| (k.clone(), MarketoFieldChange { value: if v.is_boolean() { json!(v.to_string()) } else { v.clone() }, actor: if by_sync { ChangeActor::SyncUser } else { ChangeActor::Other }, at: Some(t(3)) }))
            .collect();
        let echo_mk = MarketoChange::Upsert { person_id: 500, fields: mk_fields };
        let plan2 = plan_cycle(&s, CycleInput { mode: Mode::Incremental, crm: &[CrmChange::Upsert(again)], marketo: &[echo_mk], links: &links, fingerprints: &fps, existing_by_email: &none, now: t(4) });
        prop_assert!(plan2.ops.is_empty(), "echo planned writes: {:?}", plan2.ops);
        prop_assert!(plan2.conflicts.is_empty());

        // A real edit of one field by a human in Dynamics: exactly that field (plus the msft identity).
        let old_last = fields.get("lastname").and_then(Value::as_str).unwrap_or("");
        prop_assume!(new_last != old_last);
        let mut edited = rec.fields.clone();
        edited.insert("lastname".into(), json!(new_last));
        let edit = CrmRecord { fields: edited, modified_by: Some(if by_sync { SYNC_USER } else { Uuid::from_u128(9) }), ..rec.clone() };
        let plan3 = plan_cycle(&s, CycleInput { mode: Mode::Incremental, crm: &[CrmChange::Upsert(edit)], marketo: &[], links: &links, fingerprints: &fps, existing_by_email: &none, now: t(5) });
        // A sync-user row whose lastname was never fingerprinted (absent at initial load) is the seed's rule.
        if by_sync && !fields.contains_key("lastname") {
            prop_assert!(plan3.ops.is_empty());
        } else {
            prop_assert_eq!(plan3.ops.len(), 1);
            prop_assert_eq!(&plan3.ops[0].kind, &OpKind::UpdatePerson { marketo_id: 500 });
            let keys: Vec<&str> = plan3.ops[0].payload.keys().map(String::as_str).filter(|k| !k.starts_with("msft")).collect();
            prop_assert_eq!(keys, vec!["lastName"]);
        }

        // A marketer's edit of one field: exactly that field goes to Dynamics.
        let mk_edit = MarketoChange::Upsert {
            person_id: 500,
            fields: [("lastName".to_owned(), MarketoFieldChange { value: json!(new_last), actor: ChangeActor::Other, at: Some(t(6)) })].into_iter().collect(),
        };
        let plan4 = plan_cycle(&s, CycleInput { mode: Mode::Incremental, crm: &[], marketo: &[mk_edit], links: &links, fingerprints: &fps, existing_by_email: &none, now: t(7) });
        prop_assert_eq!(plan4.ops.len(), 1);
        prop_assert_eq!(&plan4.ops[0].kind, &OpKind::UpdateCrm { entity });
        prop_assert_eq!(plan4.ops[0].payload.get("lastname"), Some(&json!(new_last)));
        prop_assert_eq!(plan4.ops[0].payload.len(), 1);
    }
}
