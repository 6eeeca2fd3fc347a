//! An interrupted initial load continues from the last committed page link instead of re-reading the
//! entity from the start, and still lands every record exactly once.

mod common;

use std::time::Duration;

use common::Env;
use mdsync_engine::{CrmPosition, CycleOptions};
use mdsync_state::StateStore;
use mdsync_sync_core::record::{CrmEntity, Side};
use serde_json::json;

/// Pages committed so far and the stored link, read through a separate connection.
fn position(env: &Env) -> CrmPosition {
    let store = env.store();
    let stored = store
        .cursor(CrmEntity::Lead.logical_name(), Side::Crm)
        .expect("cursor");
    CrmPosition::parse(stored.as_ref().map(|c| c.value.as_str()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_load_resumes_from_the_committed_page_link() {
    let env = Env::start().await;
    env.prepare(false).await;
    env.seed_crm(json!({"seed": 11, "leads": 60})).await;
    let mk = env.mk.description().url.clone();
    // Slow Marketo writes so the load is still running when it is interrupted.
    env.post(
        &mk,
        "/_emulator/faults",
        json!({"path_contains": "/rest/v1/leads.json", "method": "POST", "latency_ms": 150, "count": 1000}),
    )
    .await;
    let mut settings = env.settings();
    settings.entities = vec![CrmEntity::Lead];
    settings.crm_page_size = 10;

    let first = env.engine(settings.clone());
    let interrupted = tokio::select! {
        r = first.run_cycle(CycleOptions::default()) => panic!("the load should still be running: {r:?}"),
        pages = async {
            loop {
                if let CrmPosition::Loading { pages, next: Some(_) } = position(&env) && pages >= 2 {
                    return pages;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        } => pages,
    };
    // Dropping the cycle aborts it (like a crash after a commit); the stored position is what counts.
    drop(first);
    let CrmPosition::Loading {
        pages: committed,
        next: Some(link),
    } = position(&env)
    else {
        panic!("the load's position carries a page link");
    };
    assert!(committed >= interrupted && committed < 6, "{committed}");
    assert!(link.contains("$skiptoken"), "{link}");

    let second = env.engine(settings);
    let report = second
        .run_cycle(CycleOptions::default())
        .await
        .expect("the resumed load completes");
    let lead = report
        .entities
        .iter()
        .find(|e| e.entity == "lead")
        .expect("lead report");
    assert_eq!(lead.resumed_at_page, Some(committed), "{report:?}");
    assert_eq!(
        lead.rows_read,
        60 - committed * 10,
        "only the rest was read"
    );
    assert!(lead.load_completed);
    assert_eq!(report.dead_letters, 0, "{report:?}");
    assert!(matches!(position(&env), CrmPosition::Delta(_)));
    for id in env.crm_ids("leads", "leadid", 100).await {
        assert_eq!(
            env.persons_by_msft_id(id, &["id"]).await.len(),
            1,
            "one person for {id}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_page_link_restarts_the_load_without_duplicates() {
    let env = Env::start().await;
    env.prepare(false).await;
    env.seed_crm(json!({"seed": 12, "leads": 30})).await;
    let mut settings = env.settings();
    settings.entities = vec![CrmEntity::Lead];
    settings.crm_page_size = 10;
    // A position from another org's link (the emulator refuses its cookie): start over, skip nothing lost.
    let api = env.dv.description().url.clone();
    let bogus = CrmPosition::Loading {
        pages: 2,
        next: Some(format!(
            "{api}/api/data/v9.2/leads?$skiptoken=%3Ccookie%20pagenumber=%223%22%20pagingcookie=%22garbage%22%20istracking=%22True%22%20/%3E"
        )),
    };
    let mut store = env.store();
    store
        .commit_cycle(
            &mdsync_state::CycleCommit {
                cursors: vec![mdsync_state::CursorUpdate {
                    scope: "lead".into(),
                    side: Side::Crm,
                    value: bogus.encode(),
                }],
                ..Default::default()
            },
            chrono::Utc::now(),
        )
        .expect("commit");
    drop(store);
    let report = env
        .engine(settings)
        .run_cycle(CycleOptions::default())
        .await
        .expect("the load completes");
    let lead = report
        .entities
        .iter()
        .find(|e| e.entity == "lead")
        .expect("lead report");
    assert_eq!(lead.resumed_at_page, None);
    assert_eq!(lead.rows_read, 30);
    assert!(matches!(position(&env), CrmPosition::Delta(_)));
    for id in env.crm_ids("leads", "leadid", 100).await {
        assert_eq!(env.persons_by_msft_id(id, &["id"]).await.len(), 1);
    }
}
