//! The core and the store together, as the engine uses them: plan a batch, settle its outcomes, commit
//! with the cursor, reopen the file, and plan the echoes of the same batch (which must write nothing).

use std::collections::HashMap;

use chrono::{DateTime, TimeZone, Utc};
use mdsync_state::{CursorUpdate, CycleCommit, SqliteStateStore, StateStore};
use mdsync_sync_core::echo::SyncIdentity;
use mdsync_sync_core::link::{FingerprintView, LinkView};
use mdsync_sync_core::mapping::Mappings;
use mdsync_sync_core::plan::{
    CycleInput, Mode, OpKind, OpOutcome, PlanSettings, Schema, plan_cycle, referenced_crm_ids,
};
use mdsync_sync_core::record::{CrmChange, CrmEntity, CrmRecord, MarketoObject, Side};
use serde_json::json;
use uuid::Uuid;

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 0)
        .single()
        .unwrap_or_default()
}

const SYNC_USER: Uuid = Uuid::from_u128(5);

fn rec(n: u128, by: Uuid, last: &str) -> CrmRecord {
    let fields = json!({"firstname": format!("F{n}"), "lastname": last, "emailaddress1": format!("p{n}@example.com")});
    CrmRecord {
        entity: CrmEntity::Contact,
        id: Uuid::from_u128(n),
        modified_by: Some(by),
        modified_on: Some(t(1)),
        version: None,
        fields: fields.as_object().cloned().unwrap_or_default(),
    }
}

fn plan_with_store(
    store: &SqliteStateStore,
    settings: &PlanSettings,
    mode: Mode,
    changes: &[CrmChange],
) -> Result<mdsync_sync_core::plan::CyclePlan, mdsync_state::StateError> {
    let ids = referenced_crm_ids(changes);
    let links = LinkView::new(store.links_by_crm_ids(&ids)?);
    let fps = FingerprintView::new(store.fingerprints(&ids)?);
    let none = HashMap::new();
    Ok(plan_cycle(
        settings,
        CycleInput {
            mode,
            crm: changes,
            marketo: &[],
            links: &links,
            fingerprints: &fps,
            existing_by_email: &none,
            now: t(2),
        },
    ))
}

#[test]
fn committed_batches_make_their_echoes_silent_after_reopen()
-> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("state.db");
    let settings = PlanSettings {
        identity: SyncIdentity {
            crm_sync_user: SYNC_USER,
            marketo_api_users: vec![],
        },
        mappings: Mappings::default(),
        schema: Schema::default(),
        filter_enabled: false,
        match_existing_by_email: false,
    };
    let batch: Vec<CrmChange> = (1..=300u128)
        .map(|n| CrmChange::Upsert(rec(n, Uuid::from_u128(9), "L")))
        .collect();
    {
        let mut store = SqliteStateStore::open(&path)?;
        let plan = plan_with_store(&store, &settings, Mode::Initial, &batch)?;
        assert_eq!(plan.ops.len(), 300);
        // Marketo accepted all but the last record.
        let mut outcomes: Vec<OpOutcome> = (0..299)
            .map(|i| OpOutcome::Done {
                marketo_id: Some(10_000 + i),
            })
            .collect();
        outcomes.push(OpOutcome::Failed {
            code: "1003".into(),
            message: "Invalid email".into(),
        });
        let settled = plan.settle(&outcomes);
        let cursor = CursorUpdate {
            scope: "contact".into(),
            side: Side::Crm,
            value: "delta-1".into(),
        };
        store.commit_cycle(&CycleCommit::from_settled(settled, vec![cursor]), t(3))?;
    }
    let store = SqliteStateStore::open(&path)?;
    assert_eq!(store.link_count(Some(CrmEntity::Contact))?, 299);
    assert_eq!(store.dead_letter_count(false)?, 1);
    assert_eq!(
        store
            .links_by_marketo_ids(MarketoObject::Person, &[10_000])?
            .len(),
        1
    );
    assert_eq!(
        store.cursor("contact", Side::Crm)?.map(|c| c.value),
        Some("delta-1".to_owned())
    );

    // Change tracking now reports mdsync's own writes (and one human edit).
    let mut echoes: Vec<CrmChange> = (1..=299u128)
        .map(|n| CrmChange::Upsert(rec(n, SYNC_USER, "L")))
        .collect();
    echoes[10] = CrmChange::Upsert(rec(11, SYNC_USER, "Edited"));
    let plan = plan_with_store(&store, &settings, Mode::Incremental, &echoes)?;
    assert_eq!(plan.ops.len(), 1, "{:?}", plan.ops);
    assert_eq!(plan.ops[0].crm_id, Uuid::from_u128(11));
    assert!(matches!(
        plan.ops[0].kind,
        OpKind::UpdatePerson { marketo_id: 10_010 }
    ));
    assert_eq!(plan.ops[0].payload["lastName"], json!("Edited"));

    // The failed record is retried whole next time (it has no link), and would be created.
    let retry = plan_with_store(
        &store,
        &settings,
        Mode::Incremental,
        &[CrmChange::Upsert(rec(300, Uuid::from_u128(9), "L"))],
    )?;
    assert_eq!(retry.ops[0].kind, OpKind::CreatePerson);
    Ok(())
}
