//! End to end: both emulators over real HTTP, a real SQLite state file, and checks on the data of the
//! other side (not only the engine's report).

mod common;

use common::Env;
use mdsync_engine::CycleOptions;
use mdsync_state::StateStore;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_load_lands_in_marketo_with_msft_fields() {
    let env = Env::start().await;
    env.prepare(false).await;
    env.seed_crm(
        json!({"seed": 7, "accounts": 5, "contacts": 40, "leads": 60, "opportunities": 5}),
    )
    .await;
    let engine = env.engine(env.settings());
    let report = engine
        .run_cycle(CycleOptions::default())
        .await
        .expect("cycle");
    eprintln!("{}", report.table());
    assert_eq!(report.mode, "initial");
    assert_eq!(report.dead_letters, 0, "{report:?}");

    let leads = env.crm_ids("leads", "leadid", 100).await;
    let contacts = env.crm_ids("contacts", "contactid", 100).await;
    assert_eq!((leads.len(), contacts.len()), (60, 40));
    for id in leads.iter().take(5) {
        let row = env
            .crm_row("leads", *id, &["firstname", "lastname", "emailaddress1"])
            .await;
        let p = env
            .person(
                *id,
                &[
                    "firstName",
                    "lastName",
                    "email",
                    "msftId",
                    "msftType",
                    "msftIsDeleted",
                    "msftCreatedDate",
                ],
            )
            .await;
        assert_eq!(p["msftType"], "Lead");
        assert_eq!(p["msftIsDeleted"], false);
        assert_eq!(p["firstName"], row["firstname"]);
        assert_eq!(p["lastName"], row["lastname"]);
        assert_eq!(p["email"], row["emailaddress1"]);
        assert!(p["msftCreatedDate"].is_string(), "{p:?}");
    }
    for id in contacts.iter().take(5) {
        let p = env.person(*id, &["msftType", "externalCompanyId"]).await;
        assert_eq!(p["msftType"], "Contact");
    }
    // Companies by externalCompanyId.
    let accounts = env.crm_ids("accounts", "accountid", 10).await;
    let client = env.marketo();
    let ids: Vec<String> = accounts.iter().map(ToString::to_string).collect();
    let mut pager = client
        .query_objects(
            mdsync_marketo_client::ObjectKind::Companies,
            "externalCompanyId",
            &ids,
            &["externalCompanyId", "company"],
            None,
        )
        .expect("query");
    let mut companies = Vec::new();
    while let Some(page) = pager.next_page().await.expect("page") {
        companies.extend(page);
    }
    assert_eq!(companies.len(), accounts.len());
    // Links for every record, delta links stored.
    let store = env.store();
    assert_eq!(
        store
            .link_count(Some(mdsync_sync_core::record::CrmEntity::Lead))
            .unwrap(),
        60
    );
    assert_eq!(
        store
            .link_count(Some(mdsync_sync_core::record::CrmEntity::Contact))
            .unwrap(),
        40
    );
    // ≤ 4 Marketo calls per 1000 records written (tiny loads are dominated by fixed costs; check ≤ writes/300 + fixed).
    assert!(report.marketo_writes >= 105, "{report:?}");

    // A second cycle has nothing to do.
    let again = engine
        .run_cycle(CycleOptions::default())
        .await
        .expect("cycle 2");
    eprintln!("{}", again.table());
    assert_eq!(again.mode, "incremental");
    assert_eq!(again.marketo_writes + again.crm_writes, 0, "{again:?}");
    let _: Value = json!(null);
}
