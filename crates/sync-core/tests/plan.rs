//! Scenario tests of the cycle planner: each builds inputs as the engine would and checks the plan.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, TimeZone, Utc};
use mdsync_sync_core::convert::{CrmFieldType, MarketoFieldType, OptionValue};
use mdsync_sync_core::echo::SyncIdentity;
use mdsync_sync_core::link::{
    FieldFingerprint, FingerprintView, Link, LinkChange, LinkView, StateEffects,
};
use mdsync_sync_core::mapping::{ConflictPolicy, Mappings};
use mdsync_sync_core::plan::{
    CycleInput, CyclePlan, Mode, OpKind, PlanSettings, PushPlan, PushRequest, Schema, SkipReason,
    plan_cycle, plan_push_person,
};
use mdsync_sync_core::record::{
    ChangeActor, CrmChange, CrmEntity, CrmRecord, Flow, MarketoChange, MarketoFieldChange,
    MarketoObject, MarketoPerson, MarketoRole, Side,
};
use mdsync_sync_core::sync_filter::FilterValue;
use serde_json::{Map, Value, json};
use uuid::Uuid;

const SYNC_USER: Uuid = Uuid::from_u128(0x5);
const HUMAN: Uuid = Uuid::from_u128(0x6);

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 0)
        .single()
        .expect("valid time")
}

fn settings(filter_enabled: bool) -> PlanSettings {
    let mut schema = Schema::default();
    schema.set_crm(
        CrmEntity::Lead,
        "lastname",
        CrmFieldType::String {
            max_length: Some(10),
        },
    );
    schema.set_crm(CrmEntity::Lead, "donotphone", CrmFieldType::Boolean);
    schema.set_marketo(
        MarketoObject::Person,
        "doNotCall",
        MarketoFieldType::Boolean,
    );
    schema.set_crm(
        CrmEntity::Lead,
        "leadsourcecode",
        CrmFieldType::Choice {
            options: vec![
                OptionValue {
                    value: 1,
                    label: "Advertisement".into(),
                },
                OptionValue {
                    value: 8,
                    label: "Web".into(),
                },
            ],
        },
    );
    schema.set_marketo(
        MarketoObject::Person,
        "leadSource",
        MarketoFieldType::String {
            max_length: Some(255),
        },
    );
    PlanSettings {
        identity: SyncIdentity {
            crm_sync_user: SYNC_USER,
            marketo_api_users: vec!["mdsync@123-abc-456.apiuser".into()],
        },
        mappings: Mappings::default(),
        schema,
        filter_enabled,
        match_existing_by_email: false,
    }
}

fn record(entity: CrmEntity, n: u128, by: Uuid, fields: Value) -> CrmRecord {
    let Value::Object(fields) = fields else {
        panic!("fields must be an object")
    };
    CrmRecord {
        entity,
        id: Uuid::from_u128(n),
        modified_by: Some(by),
        modified_on: Some(t(100)),
        version: Some(1),
        fields,
    }
}

fn link(entity: CrmEntity, n: u128, marketo_id: Option<i64>, filter: FilterValue) -> Link {
    Link {
        object: entity.marketo_object(),
        crm_entity: entity,
        crm_id: Uuid::from_u128(n),
        marketo_id,
        filter,
        created_at: t(0),
    }
}

fn mk_change(person_id: i64, actor: ChangeActor, fields: &[(&str, Value)]) -> MarketoChange {
    MarketoChange::Upsert {
        person_id,
        fields: fields
            .iter()
            .map(|(k, v)| {
                (
                    (*k).to_owned(),
                    MarketoFieldChange {
                        value: v.clone(),
                        actor,
                        at: Some(t(90)),
                    },
                )
            })
            .collect::<BTreeMap<_, _>>(),
    }
}

struct Scenario {
    settings: PlanSettings,
    links: LinkView,
    fps: FingerprintView,
    by_email: HashMap<String, i64>,
}

impl Scenario {
    fn new(filter_enabled: bool, links: Vec<Link>, fps: Vec<FieldFingerprint>) -> Scenario {
        Scenario {
            settings: settings(filter_enabled),
            links: LinkView::new(links),
            fps: FingerprintView::new(fps),
            by_email: HashMap::new(),
        }
    }

    fn plan(&self, mode: Mode, crm: &[CrmChange], marketo: &[MarketoChange]) -> CyclePlan {
        plan_cycle(
            &self.settings,
            CycleInput {
                mode,
                crm,
                marketo,
                links: &self.links,
                fingerprints: &self.fps,
                existing_by_email: &self.by_email,
                now: t(200),
            },
        )
    }

    /// Applies what the engine would commit after every op succeeded (creates get Marketo id 1000 + n).
    fn commit(&mut self, plan: &CyclePlan) {
        let mut effects = plan.unconditional.clone();
        for op in &plan.ops {
            let mut e = op.on_success.clone();
            if op.kind == OpKind::CreatePerson {
                e.set_marketo_id(op.crm_id, 1000 + op.crm_id.as_u128() as i64);
            }
            effects.extend(e);
        }
        apply(&mut self.links, &mut self.fps, effects);
    }
}

fn apply(links: &mut LinkView, fps: &mut FingerprintView, effects: StateEffects) {
    let mut all_links: HashMap<Uuid, Link> = HashMap::new();
    for id in (0..64u128).map(Uuid::from_u128) {
        if let Some(l) = links.by_crm(id) {
            all_links.insert(id, l.clone());
        }
    }
    for change in effects.links {
        match change {
            LinkChange::Upsert(l) => {
                all_links.insert(l.crm_id, l);
            }
            LinkChange::Remove { crm_id, .. } => {
                all_links.remove(&crm_id);
            }
        }
    }
    *links = LinkView::new(all_links.into_values());
    let mut merged: HashMap<(Uuid, Side, String), FieldFingerprint> = HashMap::new();
    for id in (0..64u128).map(Uuid::from_u128) {
        for side in [Side::Crm, Side::Marketo] {
            for field in [
                "firstname",
                "lastname",
                "emailaddress1",
                "firstName",
                "lastName",
                "email",
                "donotphone",
                "doNotCall",
                "leadsourcecode",
                "leadSource",
            ] {
                if let Some(f) = fps.get(id, side, field) {
                    merged.insert(
                        (id, side, field.into()),
                        FieldFingerprint {
                            crm_id: id,
                            side,
                            field: field.into(),
                            fingerprint: f,
                        },
                    );
                }
            }
        }
    }
    for f in effects.fingerprints {
        merged.insert((f.crm_id, f.side, f.field.clone()), f);
    }
    *fps = FingerprintView::new(merged.into_values());
}

fn payload(plan: &CyclePlan, i: usize) -> &Map<String, Value> {
    &plan.ops[i].payload
}

#[test]
fn initial_load_creates_people_with_msft_fields_and_converted_values() {
    let s = Scenario::new(true, vec![], vec![]);
    let lead = record(
        CrmEntity::Lead,
        1,
        HUMAN,
        json!({"firstname": "Ada", "lastname": "Lovelace", "emailaddress1": "ada@example.com", "leadsourcecode": 8,
               "donotphone": true, "createdon": "2024-01-02T03:04:05Z", "new_synctomkto": null, "unmapped": 1}),
    );
    let filtered = record(
        CrmEntity::Lead,
        2,
        HUMAN,
        json!({"lastname": "Hidden", "new_synctomkto": false}),
    );
    let account = record(
        CrmEntity::Account,
        3,
        HUMAN,
        json!({"name": "Contoso", "numberofemployees": 50}),
    );
    let by_sync_user = record(
        CrmEntity::Contact,
        4,
        SYNC_USER,
        json!({"lastname": "Synced"}),
    );
    let plan = s.plan(
        Mode::Initial,
        &[
            CrmChange::Upsert(lead),
            CrmChange::Upsert(filtered),
            CrmChange::Upsert(account),
            CrmChange::Upsert(by_sync_user),
        ],
        &[],
    );
    assert_eq!(plan.ops.len(), 3, "{plan:#?}");
    assert_eq!(plan.ops[0].kind, OpKind::CreatePerson);
    let p = payload(&plan, 0);
    assert_eq!(p["firstName"], json!("Ada"));
    assert_eq!(p["leadSource"], json!("Web"));
    assert_eq!(p["doNotCall"], json!(true));
    assert_eq!(p["msftCreatedDate"], json!("2024-01-02T03:04:05Z"));
    assert_eq!(p["msftId"], json!("00000000-0000-0000-0000-000000000001"));
    assert_eq!(p["msftType"], json!("Lead"));
    assert_eq!(p["msftIsDeleted"], json!(false));
    assert!(!p.contains_key("unmapped"));
    let LinkChange::Upsert(l) = &plan.ops[0].on_success.links[0] else {
        panic!("link upsert expected")
    };
    assert_eq!(
        (l.crm_entity, l.marketo_id, l.filter),
        (CrmEntity::Lead, None, FilterValue::Null)
    );
    assert!(
        plan.ops[0]
            .on_success
            .fingerprints
            .iter()
            .any(|f| f.side == Side::Crm && f.field == "leadsourcecode")
    );
    assert!(
        plan.ops[0]
            .on_success
            .fingerprints
            .iter()
            .any(|f| f.side == Side::Marketo && f.field == "leadSource")
    );

    assert_eq!(plan.skips.len(), 1);
    assert_eq!(
        (plan.skips[0].crm_id, plan.skips[0].reason),
        (Some(Uuid::from_u128(2)), SkipReason::Filtered)
    );
    assert_eq!(
        plan.ops[1].kind,
        OpKind::UpsertObject {
            object: MarketoObject::Company,
            external_id: Uuid::from_u128(3).to_string(),
            create: true
        }
    );
    assert_eq!(payload(&plan, 1)["company"], json!("Contoso"));
    // Initial load ignores who last modified a row.
    assert_eq!(plan.ops[2].kind, OpKind::CreatePerson);
    assert_eq!(payload(&plan, 2)["msftType"], json!("Contact"));

    let lead_counts = plan.counts.get(CrmEntity::Lead, Flow::ToMarketo);
    assert_eq!((lead_counts.creates, lead_counts.skips), (1, 1));
    assert_eq!(
        plan.counts.get(CrmEntity::Account, Flow::ToMarketo).creates,
        1
    );
    let rows = serde_json::to_value(plan.counts.rows()).expect("serializable");
    assert_eq!(rows[0]["entity"], json!("lead"));
    assert_eq!(rows[0]["flow"], json!("to_marketo"));
    assert_eq!(rows[0]["creates"], json!(1));
}

#[test]
fn initial_load_matches_by_email_only_when_opted_in() {
    let mut s = Scenario::new(false, vec![], vec![]);
    s.by_email.insert("ada@example.com".into(), 77);
    let lead = record(
        CrmEntity::Lead,
        1,
        HUMAN,
        json!({"emailaddress1": "Ada@Example.com"}),
    );
    let plan = s.plan(Mode::Initial, &[CrmChange::Upsert(lead.clone())], &[]);
    assert_eq!(
        plan.ops[0].kind,
        OpKind::CreatePerson,
        "email matching is off by default"
    );
    s.settings.match_existing_by_email = true;
    let plan = s.plan(Mode::Initial, &[CrmChange::Upsert(lead.clone())], &[]);
    assert_eq!(plan.ops[0].kind, OpKind::UpdatePerson { marketo_id: 77 });
    assert_eq!(plan.counts.get(CrmEntity::Lead, Flow::ToMarketo).creates, 1);
    let plan = s.plan(Mode::Incremental, &[CrmChange::Upsert(lead)], &[]);
    assert_eq!(
        plan.ops[0].kind,
        OpKind::CreatePerson,
        "never by email outside the initial load"
    );
}

#[test]
fn echoes_are_dropped_and_human_edits_in_sync_user_rows_still_sync() {
    let mut s = Scenario::new(false, vec![], vec![]);
    let lead = record(
        CrmEntity::Lead,
        1,
        HUMAN,
        json!({"firstname": "Ada", "lastname": "Lovelace"}),
    );
    let plan = s.plan(Mode::Initial, &[CrmChange::Upsert(lead)], &[]);
    s.commit(&plan);
    assert_eq!(
        s.links
            .by_crm(Uuid::from_u128(1))
            .and_then(|l| l.marketo_id),
        Some(1001)
    );

    // The sync user's own write comes back unchanged: an echo.
    let echo = record(
        CrmEntity::Lead,
        1,
        SYNC_USER,
        json!({"firstname": "Ada", "lastname": "Lovelace"}),
    );
    let plan = s.plan(Mode::Incremental, &[CrmChange::Upsert(echo)], &[]);
    assert!(plan.ops.is_empty(), "{plan:#?}");
    assert_eq!(plan.skips[0].reason, SkipReason::Echo);
    assert_eq!(plan.counts.get(CrmEntity::Lead, Flow::ToMarketo).echoes, 1);

    // A human changed the last name right before the sync user wrote the row: the row says "sync user",
    // the fingerprint says the last name is new.
    let mixed = record(
        CrmEntity::Lead,
        1,
        SYNC_USER,
        json!({"firstname": "Ada", "lastname": "Byron"}),
    );
    let plan = s.plan(Mode::Incremental, &[CrmChange::Upsert(mixed)], &[]);
    assert_eq!(plan.ops.len(), 1);
    assert_eq!(plan.ops[0].kind, OpKind::UpdatePerson { marketo_id: 1001 });
    let p = payload(&plan, 0);
    assert_eq!(p.get("lastName"), Some(&json!("Byron")));
    assert!(!p.contains_key("firstName"), "unchanged field not resent");
    assert_eq!(p["msftId"], json!(Uuid::from_u128(1).to_string()));

    // A field the sync user wrote that mdsync never fingerprinted: the seed's rule drops it.
    let unknown = record(
        CrmEntity::Lead,
        1,
        SYNC_USER,
        json!({"telephone1": "+1 555"}),
    );
    let plan = s.plan(
        Mode::Incremental,
        &[CrmChange::Upsert(unknown.clone())],
        &[],
    );
    assert!(plan.ops.is_empty());
    assert_eq!(
        plan.unconditional.fingerprints.len(),
        1,
        "read fingerprint remembered"
    );
    // …but the same field changed by a human syncs.
    let human = CrmRecord {
        modified_by: Some(HUMAN),
        ..unknown
    };
    let plan = s.plan(Mode::Incremental, &[CrmChange::Upsert(human)], &[]);
    assert_eq!(payload(&plan, 0)["phone"], json!("+1 555"));

    // An unlinked row written only by the sync user is not sent (incremental).
    let orphan = record(CrmEntity::Lead, 9, SYNC_USER, json!({"lastname": "Pushed"}));
    let plan = s.plan(Mode::Incremental, &[CrmChange::Upsert(orphan)], &[]);
    assert_eq!(plan.skips[0].reason, SkipReason::SyncUserRecord);
}

#[test]
fn marketo_changes_respect_api_user_and_fingerprints() {
    let mut s = Scenario::new(false, vec![], vec![]);
    let lead = record(
        CrmEntity::Lead,
        1,
        HUMAN,
        json!({"firstname": "Ada", "lastname": "Lovelace", "donotphone": false}),
    );
    let plan = s.plan(Mode::Initial, &[CrmChange::Upsert(lead)], &[]);
    s.commit(&plan);

    // mdsync's own API write (even with a value the state store missed) never goes back.
    let own = mk_change(1001, ChangeActor::SyncUser, &[("firstName", json!("Zed"))]);
    // Another actor's change whose value equals what mdsync wrote: an echo by fingerprint.
    let same = mk_change(1001, ChangeActor::Other, &[("lastName", json!("Lovelace"))]);
    let plan = s.plan(Mode::Incremental, &[], &[own, same]);
    assert!(plan.ops.is_empty(), "{plan:#?}");
    assert!(
        plan.skips
            .iter()
            .all(|k| k.reason == SkipReason::Echo && k.flow == Flow::ToDynamics)
    );

    // A marketer's edit: converted to Dataverse types ("true" string from activities → bool).
    let edit = mk_change(
        1001,
        ChangeActor::Other,
        &[
            ("lastName", json!("Byron")),
            ("doNotCall", json!("true")),
            ("msftId", json!("x")),
            ("unmapped", json!(1)),
        ],
    );
    let plan = s.plan(Mode::Incremental, &[], &[edit]);
    assert_eq!(plan.ops.len(), 1);
    assert_eq!(
        plan.ops[0].kind,
        OpKind::UpdateCrm {
            entity: CrmEntity::Lead
        }
    );
    assert_eq!(plan.ops[0].flow, Flow::ToDynamics);
    assert_eq!(plan.ops[0].crm_id, Uuid::from_u128(1));
    assert_eq!(
        payload(&plan, 0),
        json!({"donotphone": true, "lastname": "Byron"})
            .as_object()
            .expect("object")
    );
    s.commit(&plan);

    // The write to Dynamics comes back through change tracking as a sync-user row: an echo.
    let back = record(
        CrmEntity::Lead,
        1,
        SYNC_USER,
        json!({"lastname": "Byron", "donotphone": true}),
    );
    let plan = s.plan(Mode::Incremental, &[CrmChange::Upsert(back)], &[]);
    assert!(plan.ops.is_empty(), "{plan:#?}");

    // Marketo-only persons stay out of Dynamics.
    let stranger = mk_change(5555, ChangeActor::Other, &[("lastName", json!("Nobody"))]);
    let plan = s.plan(Mode::Incremental, &[], &[stranger]);
    assert_eq!(plan.skips[0].reason, SkipReason::NotLinked);
}

#[test]
fn conflicts_follow_the_policy_and_are_recorded() {
    for (entity, policy_winner) in [
        (CrmEntity::Lead, Side::Marketo),
        (CrmEntity::Contact, Side::Crm),
    ] {
        let mut s = Scenario::new(false, vec![], vec![]);
        let base = record(
            entity,
            1,
            HUMAN,
            json!({"firstname": "Ada", "lastname": "Lovelace"}),
        );
        let plan = s.plan(Mode::Initial, &[CrmChange::Upsert(base)], &[]);
        s.commit(&plan);
        let crm = record(
            entity,
            1,
            HUMAN,
            json!({"firstname": "Ada-CRM", "lastname": "Lovelace"}),
        );
        let mk = mk_change(
            1001,
            ChangeActor::Other,
            &[("firstName", json!("Ada-MKTO"))],
        );
        let plan = s.plan(Mode::Incremental, &[CrmChange::Upsert(crm)], &[mk]);
        assert_eq!(plan.conflicts.len(), 1, "{entity}");
        let c = &plan.conflicts[0];
        assert_eq!(
            (c.crm_value.clone(), c.marketo_value.clone()),
            (json!("Ada-CRM"), json!("Ada-MKTO"))
        );
        assert_eq!(c.outcome, policy_winner);
        assert_eq!(c.policy, ConflictPolicy::default_for(entity));
        assert_eq!(plan.ops.len(), 1, "{entity}: {plan:#?}");
        match policy_winner {
            Side::Marketo => {
                assert_eq!(plan.ops[0].kind, OpKind::UpdateCrm { entity });
                assert_eq!(payload(&plan, 0)["firstname"], json!("Ada-MKTO"));
                assert_eq!(plan.skips[0].reason, SkipReason::ConflictLost);
            }
            Side::Crm => {
                assert_eq!(plan.ops[0].kind, OpKind::UpdatePerson { marketo_id: 1001 });
                assert_eq!(payload(&plan, 0)["firstName"], json!("Ada-CRM"));
                assert_eq!(plan.skips[0].flow, Flow::ToDynamics);
                assert_eq!(plan.skips[0].reason, SkipReason::ConflictLost);
            }
        }
        assert_eq!(plan.counts.get(entity, Flow::ToMarketo).conflicts, 1);
        s.commit(&plan);
        // After the winner is written both ways, the echoes die out.
        let winner = if policy_winner == Side::Crm {
            "Ada-CRM"
        } else {
            "Ada-MKTO"
        };
        let echo_crm = record(
            entity,
            1,
            SYNC_USER,
            json!({"firstname": winner, "lastname": "Lovelace"}),
        );
        let echo_mk = mk_change(1001, ChangeActor::SyncUser, &[("firstName", json!(winner))]);
        let plan = s.plan(
            Mode::Incremental,
            &[CrmChange::Upsert(echo_crm)],
            &[echo_mk],
        );
        assert!(
            plan.ops.is_empty() && plan.conflicts.is_empty(),
            "{entity}: {plan:#?}"
        );
    }

    // Both sides made the same edit: no conflict, no writes.
    let mut s = Scenario::new(false, vec![], vec![]);
    let plan = s.plan(
        Mode::Initial,
        &[CrmChange::Upsert(record(
            CrmEntity::Lead,
            1,
            HUMAN,
            json!({"firstname": "A"}),
        ))],
        &[],
    );
    s.commit(&plan);
    let plan = s.plan(
        Mode::Incremental,
        &[CrmChange::Upsert(record(
            CrmEntity::Lead,
            1,
            HUMAN,
            json!({"firstname": "B"}),
        ))],
        &[mk_change(
            1001,
            ChangeActor::Other,
            &[("firstName", json!("B"))],
        )],
    );
    assert!(
        plan.ops.is_empty() && plan.conflicts.is_empty(),
        "{plan:#?}"
    );
}

#[test]
fn sync_filter_transitions() {
    let linked = link(CrmEntity::Lead, 1, Some(500), FilterValue::True);
    let s = Scenario::new(true, vec![linked.clone()], vec![]);
    // Yes → No: stop, delete nothing, remember the flag.
    let off = record(
        CrmEntity::Lead,
        1,
        HUMAN,
        json!({"lastname": "X", "new_synctomkto": false}),
    );
    let plan = s.plan(
        Mode::Incremental,
        &[CrmChange::Upsert(off)],
        &[mk_change(
            500,
            ChangeActor::Other,
            &[("lastName", json!("Y"))],
        )],
    );
    assert!(plan.ops.is_empty(), "{plan:#?}");
    assert_eq!(plan.skips[0].reason, SkipReason::FilterStopped);
    assert_eq!(
        plan.unconditional.links,
        vec![LinkChange::Upsert(Link {
            filter: FilterValue::False,
            ..linked.clone()
        })]
    );

    // While No, Marketo changes don't flow either.
    let stopped = Scenario::new(
        true,
        vec![Link {
            filter: FilterValue::False,
            ..linked.clone()
        }],
        vec![],
    );
    let plan = stopped.plan(
        Mode::Incremental,
        &[],
        &[mk_change(
            500,
            ChangeActor::Other,
            &[("lastName", json!("Y"))],
        )],
    );
    assert_eq!(plan.skips[0].reason, SkipReason::Filtered);

    // No → Yes: the whole record is sent at once, fingerprints or not, and the flag is remembered.
    let fp = FieldFingerprint {
        crm_id: Uuid::from_u128(1),
        side: Side::Crm,
        field: "firstname".into(),
        fingerprint: mdsync_sync_core::fingerprint::Fingerprint::of_crm(&json!("Ada"), None),
    };
    let stopped = Scenario::new(
        true,
        vec![Link {
            filter: FilterValue::False,
            ..linked.clone()
        }],
        vec![fp],
    );
    let on = record(
        CrmEntity::Lead,
        1,
        SYNC_USER,
        json!({"firstname": "Ada", "lastname": "X", "new_synctomkto": true}),
    );
    let plan = stopped.plan(Mode::Incremental, &[CrmChange::Upsert(on)], &[]);
    assert_eq!(plan.ops[0].kind, OpKind::UpdatePerson { marketo_id: 500 });
    assert_eq!(payload(&plan, 0)["firstName"], json!("Ada"));
    assert_eq!(
        plan.ops[0].on_success.links,
        vec![LinkChange::Upsert(Link {
            filter: FilterValue::True,
            ..linked
        })]
    );

    // Never synced and now Yes: create.
    let fresh = Scenario::new(true, vec![], vec![]);
    let plan = fresh.plan(
        Mode::Incremental,
        &[CrmChange::Upsert(record(
            CrmEntity::Lead,
            2,
            HUMAN,
            json!({"lastname": "New", "new_synctomkto": true}),
        ))],
        &[],
    );
    assert_eq!(plan.ops[0].kind, OpKind::CreatePerson);
}

#[test]
fn deletes_mark_or_unlink_and_never_delete_people() {
    let s = Scenario::new(
        false,
        vec![
            link(CrmEntity::Lead, 1, Some(500), FilterValue::Missing),
            link(CrmEntity::Contact, 2, Some(600), FilterValue::Missing),
            link(CrmEntity::Account, 3, None, FilterValue::Missing),
        ],
        vec![],
    );
    let plan = s.plan(
        Mode::Incremental,
        &[
            CrmChange::Delete {
                entity: CrmEntity::Lead,
                id: Uuid::from_u128(1),
            },
            CrmChange::Delete {
                entity: CrmEntity::Account,
                id: Uuid::from_u128(3),
            },
            CrmChange::Delete {
                entity: CrmEntity::Lead,
                id: Uuid::from_u128(42),
            },
        ],
        &[
            MarketoChange::Delete { person_id: 600 },
            MarketoChange::Delete { person_id: 9 },
        ],
    );
    assert_eq!(plan.ops.len(), 2, "{plan:#?}");
    assert_eq!(
        plan.ops[0].kind,
        OpKind::MarkPersonDeleted { marketo_id: 500 }
    );
    assert_eq!(
        payload(&plan, 0),
        json!({"msftIsDeleted": true}).as_object().expect("object")
    );
    assert_eq!(
        plan.ops[0].on_success.links,
        vec![LinkChange::Remove {
            crm_entity: CrmEntity::Lead,
            crm_id: Uuid::from_u128(1)
        }]
    );
    assert_eq!(
        plan.ops[1].kind,
        OpKind::DeleteObject {
            object: MarketoObject::Company,
            external_id: Uuid::from_u128(3).to_string()
        }
    );
    // A Marketo delete: link dropped, nothing in Dynamics.
    assert_eq!(
        plan.unconditional.links,
        vec![LinkChange::Remove {
            crm_entity: CrmEntity::Contact,
            crm_id: Uuid::from_u128(2)
        }]
    );
    assert_eq!(
        plan.counts
            .get(CrmEntity::Contact, Flow::ToDynamics)
            .unlinks,
        1
    );
    assert!(plan.ops.iter().all(|o| o.flow == Flow::ToMarketo));
    assert_eq!(
        plan.skips
            .iter()
            .filter(|k| k.reason == SkipReason::NotLinked)
            .count(),
        2
    );
    assert_eq!(plan.counts.get(CrmEntity::Lead, Flow::ToMarketo).deletes, 1);
}

#[test]
fn a_value_that_does_not_fit_dead_letters_its_record_and_the_batch_goes_on() {
    let s = Scenario::new(
        false,
        vec![link(CrmEntity::Lead, 1, Some(500), FilterValue::Missing)],
        vec![],
    );
    let too_long = record(CrmEntity::Lead, 2, HUMAN, json!({"lastname": "x"}));
    let ok = record(CrmEntity::Lead, 3, HUMAN, json!({"lastname": "fine"}));
    let bad_mk = mk_change(
        500,
        ChangeActor::Other,
        &[
            ("lastName", json!("far too long a name")),
            ("firstName", json!("A")),
        ],
    );
    let bad_option = mk_change(
        500,
        ChangeActor::Other,
        &[("leadSource", json!("Carrier pigeon"))],
    );
    let plan = s.plan(
        Mode::Incremental,
        &[CrmChange::Upsert(too_long), CrmChange::Upsert(ok)],
        &[bad_mk, bad_option],
    );
    assert_eq!(plan.ops.len(), 2, "{plan:#?}");
    assert_eq!(plan.dead_letters.len(), 2);
    let d = &plan.dead_letters[0];
    assert_eq!(
        (
            d.entity,
            d.crm_id,
            d.marketo_id,
            d.flow,
            d.operation.as_str(),
            d.code.as_str()
        ),
        (
            CrmEntity::Lead,
            Some(Uuid::from_u128(1)),
            Some(500),
            Flow::ToDynamics,
            "update",
            "conversion"
        )
    );
    assert_eq!(
        d.message,
        "lead Marketo person 500: field `lastName`: value is 19 characters long, the target holds at most 10"
    );
    assert_eq!(d.payload["person_id"], json!(500));
    assert!(
        plan.dead_letters[1]
            .message
            .contains("\"Carrier pigeon\" is not one of the option set's labels or values")
    );
    assert_eq!(
        plan.counts
            .get(CrmEntity::Lead, Flow::ToDynamics)
            .dead_letters,
        2
    );
}

#[test]
fn qualify_moves_the_lead_person_to_the_contact() {
    let lead_link = link(CrmEntity::Lead, 1, Some(500), FilterValue::True);
    let s = Scenario::new(true, vec![lead_link.clone()], vec![]);
    let contact = record(
        CrmEntity::Contact,
        2,
        HUMAN,
        json!({"lastname": "Lovelace", "_originatingleadid_value": Uuid::from_u128(1).to_string(), "new_synctomkto": true}),
    );
    let plan = s.plan(
        Mode::Incremental,
        &[CrmChange::Upsert(contact.clone())],
        &[],
    );
    assert_eq!(plan.ops[0].kind, OpKind::UpdatePerson { marketo_id: 500 });
    assert_eq!(payload(&plan, 0)["msftType"], json!("Contact"));
    assert_eq!(
        payload(&plan, 0)["msftId"],
        json!(Uuid::from_u128(2).to_string())
    );
    assert_eq!(
        plan.ops[0].on_success.links[0],
        LinkChange::Remove {
            crm_entity: CrmEntity::Lead,
            crm_id: Uuid::from_u128(1)
        }
    );

    // Lead flag F, contact flag T: a new contact person.
    let s = Scenario::new(
        true,
        vec![Link {
            filter: FilterValue::False,
            ..lead_link.clone()
        }],
        vec![],
    );
    let plan = s.plan(
        Mode::Incremental,
        &[CrmChange::Upsert(contact.clone())],
        &[],
    );
    assert_eq!(plan.ops[0].kind, OpKind::CreatePerson);
    // Contact flag F: the contact is not synced.
    let no = CrmRecord {
        fields: {
            let mut f = contact.fields.clone();
            f.insert("new_synctomkto".into(), json!(false));
            f
        },
        ..contact
    };
    let s = Scenario::new(true, vec![lead_link], vec![]);
    let plan = s.plan(Mode::Incremental, &[CrmChange::Upsert(no)], &[]);
    assert!(plan.ops.is_empty());
    assert_eq!(plan.skips[0].reason, SkipReason::Filtered);
}

#[test]
fn qualified_leads_without_a_person_are_not_created_again() {
    let s = Scenario::new(true, vec![], vec![]);
    let lead = record(
        CrmEntity::Lead,
        1,
        HUMAN,
        json!({"lastname": "Lovelace", "statecode": 1}),
    );
    let plan = s.plan(Mode::Incremental, &[CrmChange::Upsert(lead.clone())], &[]);
    assert!(plan.ops.is_empty());
    assert_eq!(plan.skips[0].reason, SkipReason::Qualified);
    // The initial load still brings historic qualified leads over; an open lead is created as usual.
    let plan = s.plan(Mode::Initial, &[CrmChange::Upsert(lead.clone())], &[]);
    assert_eq!(plan.ops[0].kind, OpKind::CreatePerson);
    let open = record(
        CrmEntity::Lead,
        1,
        HUMAN,
        json!({"lastname": "Lovelace", "statecode": 0}),
    );
    let plan = s.plan(Mode::Incremental, &[CrmChange::Upsert(open)], &[]);
    assert_eq!(plan.ops[0].kind, OpKind::CreatePerson);
}

#[test]
fn merged_subordinates_are_marked_and_unlinked_never_created() {
    let s = Scenario::new(
        true,
        vec![link(CrmEntity::Contact, 2, Some(700), FilterValue::True)],
        vec![],
    );
    let merged = |n: u128, flag: bool| {
        record(
            CrmEntity::Contact,
            n,
            HUMAN,
            json!({"lastname": "Loser", "merged": true, "_masterid_value": Uuid::from_u128(1).to_string(), "new_synctomkto": flag}),
        )
    };
    // Linked loser (whatever its flag): its person is marked deleted and the link dropped.
    for flag in [true, false] {
        let plan = s.plan(
            Mode::Incremental,
            &[CrmChange::Upsert(merged(2, flag))],
            &[],
        );
        assert_eq!(
            plan.ops[0].kind,
            OpKind::MarkPersonDeleted { marketo_id: 700 }
        );
        assert_eq!(payload(&plan, 0)["msftIsDeleted"], json!(true));
        assert!(plan.ops[0].on_success.links.iter().any(|l| matches!(
            l,
            LinkChange::Remove { crm_id, .. } if *crm_id == Uuid::from_u128(2)
        )));
    }
    // An unlinked loser is never created, even flagged Yes.
    let plan = s.plan(
        Mode::Incremental,
        &[CrmChange::Upsert(merged(3, true))],
        &[],
    );
    assert!(plan.ops.is_empty());
    assert_eq!(plan.skips[0].reason, SkipReason::Merged);
}

#[test]
fn opportunities_get_contact_roles() {
    let s = Scenario::new(
        false,
        vec![link(CrmEntity::Contact, 7, Some(700), FilterValue::Missing)],
        vec![],
    );
    let opp = record(
        CrmEntity::Opportunity,
        8,
        HUMAN,
        json!({"name": "Deal", "estimatedvalue": 1000.5, "statecode": 0, "_customerid_value": Uuid::from_u128(7).to_string()}),
    );
    let plan = s.plan(Mode::Initial, &[CrmChange::Upsert(opp)], &[]);
    assert_eq!(plan.ops.len(), 2);
    assert_eq!(
        plan.ops[0].kind,
        OpKind::UpsertObject {
            object: MarketoObject::Opportunity,
            external_id: Uuid::from_u128(8).to_string(),
            create: true
        }
    );
    assert_eq!(payload(&plan, 0)["amount"], json!(1000.5));
    assert_eq!(
        plan.ops[1].kind,
        OpKind::UpsertRole {
            role: MarketoRole {
                external_opportunity_id: Uuid::from_u128(8).to_string(),
                lead_id: 700,
                role: "Customer".into(),
                is_primary: true
            }
        }
    );
}

#[test]
fn push_person_creates_once_links_existing_and_reports_bad_values() {
    let s = settings(false);
    let person = MarketoPerson { id: 42, fields: json!({"email": "new@example.com", "lastName": "New", "firstName": "Nora", "doNotCall": "true"}).as_object().cloned().expect("object") };
    let req = |link, crm_match| PushRequest {
        person: &person,
        link,
        crm_match,
        as_entity: CrmEntity::Lead,
        owner: Some(Uuid::from_u128(0x99)),
        new_id: Uuid::from_u128(0x77),
        now: t(1),
    };

    let linked = link(CrmEntity::Lead, 3, Some(42), FilterValue::Missing);
    assert_eq!(
        plan_push_person(&s, req(Some(&linked), None)),
        PushPlan::AlreadyLinked {
            crm_entity: CrmEntity::Lead,
            crm_id: Uuid::from_u128(3)
        }
    );

    let PushPlan::LinkExisting { ops } = plan_push_person(
        &s,
        req(None, Some((CrmEntity::Contact, Uuid::from_u128(4)))),
    ) else {
        panic!("link existing")
    };
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].kind, OpKind::UpdatePerson { marketo_id: 42 });
    assert_eq!(ops[0].payload["msftType"], json!("Contact"));

    let PushPlan::Create { ops } = plan_push_person(&s, req(None, None)) else {
        panic!("create")
    };
    assert_eq!(
        ops[0].kind,
        OpKind::CreateCrm {
            entity: CrmEntity::Lead
        }
    );
    assert_eq!(ops[0].crm_id, Uuid::from_u128(0x77));
    assert_eq!(ops[0].payload["lastname"], json!("New"));
    assert_eq!(ops[0].payload["emailaddress1"], json!("new@example.com"));
    assert_eq!(ops[0].payload["donotphone"], json!(true));
    assert_eq!(
        ops[0].payload["ownerid@odata.bind"],
        json!(format!("/systemusers({})", Uuid::from_u128(0x99)))
    );
    assert_eq!(ops[1].kind, OpKind::UpdatePerson { marketo_id: 42 });
    assert_eq!(
        ops[1].payload["msftId"],
        json!(Uuid::from_u128(0x77).to_string())
    );
    assert!(
        matches!(&ops[1].on_success.links[0], LinkChange::Upsert(l) if l.marketo_id == Some(42) && l.crm_entity == CrmEntity::Lead)
    );

    let bad = MarketoPerson {
        id: 43,
        fields: json!({"lastName": "Much too long for ten"})
            .as_object()
            .cloned()
            .expect("object"),
    };
    let PushPlan::DeadLetter(d) = plan_push_person(
        &s,
        PushRequest {
            person: &bad,
            ..req(None, None)
        },
    ) else {
        panic!("dead letter")
    };
    assert_eq!(
        (d.operation.as_str(), d.flow, d.marketo_id),
        ("create", Flow::ToDynamics, Some(43))
    );
}

#[test]
fn settling_outcomes_commits_only_successes_and_dead_letters_failures() {
    use mdsync_sync_core::plan::{OpOutcome, marketo_person_ids, referenced_crm_ids};
    let s = Scenario::new(
        false,
        vec![link(CrmEntity::Lead, 1, Some(500), FilterValue::Missing)],
        vec![],
    );
    let changes = [
        CrmChange::Upsert(record(CrmEntity::Lead, 1, HUMAN, json!({"lastname": "A"}))),
        CrmChange::Upsert(record(CrmEntity::Lead, 2, HUMAN, json!({"lastname": "B"}))),
        CrmChange::Upsert(record(
            CrmEntity::Contact,
            3,
            HUMAN,
            json!({"lastname": "C", "_originatingleadid_value": Uuid::from_u128(9).to_string()}),
        )),
        CrmChange::Delete {
            entity: CrmEntity::Lead,
            id: Uuid::from_u128(42),
        },
    ];
    assert_eq!(
        referenced_crm_ids(&changes),
        [1u128, 2, 3, 9, 42].map(Uuid::from_u128).to_vec()
    );
    assert_eq!(
        marketo_person_ids(&[
            MarketoChange::Delete { person_id: 5 },
            MarketoChange::Delete { person_id: 5 }
        ]),
        vec![5]
    );

    let plan = s.plan(Mode::Incremental, &changes, &[]);
    assert_eq!(plan.ops.len(), 3);
    let settled = plan.settle(&[
        OpOutcome::Failed {
            code: "1006".into(),
            message: "Field 'lastName' not found".into(),
        },
        OpOutcome::Done {
            marketo_id: Some(777),
        },
    ]);
    assert_eq!(
        (settled.done, settled.failed, settled.not_attempted),
        (1, 1, 1)
    );
    assert_eq!(settled.dead_letters.len(), 1);
    let d = &settled.dead_letters[0];
    assert_eq!(
        (
            d.crm_id,
            d.marketo_id,
            d.operation.as_str(),
            d.code.as_str()
        ),
        (Some(Uuid::from_u128(1)), Some(500), "update", "1006")
    );
    assert_eq!(d.payload["payload"]["lastName"], json!("A"));
    // Only the successful create's link (with the returned id) and fingerprints are committed.
    let links: Vec<_> = settled.effects.links.iter().collect();
    assert_eq!(links.len(), 1);
    assert!(
        matches!(links[0], LinkChange::Upsert(l) if l.crm_id == Uuid::from_u128(2) && l.marketo_id == Some(777))
    );
    assert!(
        settled
            .effects
            .fingerprints
            .iter()
            .all(|f| f.crm_id == Uuid::from_u128(2))
    );
}

#[test]
fn marketo_edits_of_a_record_deleted_in_the_same_batch_go_nowhere() {
    let s = Scenario::new(
        false,
        vec![link(CrmEntity::Lead, 1, Some(500), FilterValue::Missing)],
        vec![],
    );
    let plan = s.plan(
        Mode::Incremental,
        &[CrmChange::Delete {
            entity: CrmEntity::Lead,
            id: Uuid::from_u128(1),
        }],
        &[mk_change(
            500,
            ChangeActor::Other,
            &[("lastName", json!("Late"))],
        )],
    );
    assert_eq!(plan.ops.len(), 1);
    assert_eq!(
        plan.ops[0].kind,
        OpKind::MarkPersonDeleted { marketo_id: 500 }
    );
    assert_eq!(plan.skips[0].reason, SkipReason::NotLinked);
}
