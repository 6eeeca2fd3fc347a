//! Behaviours beyond the main flows: the opt-in initial match by email, and plain timeouts (a service
//! that answers too late) on both sides. Each test checks the data in the other service.

mod common;

use std::time::Duration;

use common::Env;
use mdsync_engine::{CycleOptions, Engine};
use mdsync_marketo_client::{SyncAction, SyncLeadsOptions};
use mdsync_sync_core::record::CrmEntity;
use serde_json::{Value, json};

/// Marketo persons with this email (any case), by the REST API.
async fn persons_by_email(env: &Env, email: &str) -> Vec<serde_json::Map<String, Value>> {
    let client = env.marketo();
    let mut pager = client
        .leads_by_filter(
            "email",
            &[email],
            &["id", "email", "msftId", "msftType"],
            None,
        )
        .expect("filter");
    let mut out = Vec::new();
    while let Some(page) = pager.next_page().await.expect("page") {
        out.extend(page);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn match_existing_by_email_links_marketo_only_persons_instead_of_duplicating() {
    let env = Env::start().await;
    env.prepare(false).await;
    env.seed_crm(json!({"seed": 31, "leads": 6})).await;
    let ids = env.crm_ids("leads", "leadid", 10).await;
    let matched = ids[0];
    let email = env.crm_row("leads", matched, &["emailaddress1"]).await["emailaddress1"]
        .as_str()
        .expect("seeded email")
        .to_owned();
    // A person that exists only in Marketo (say from a form), spelled with another case.
    let existing = env
        .marketo()
        .sync_leads(
            &[
                json!({"email": email.to_uppercase(), "firstName": "FromAForm"})
                    .as_object()
                    .cloned()
                    .expect("record"),
            ],
            &SyncLeadsOptions {
                action: SyncAction::CreateOnly,
                lookup_field: None,
                partition_name: None,
            },
        )
        .await
        .expect("create")[0]
        .id
        .expect("person id");

    let mut settings = env.settings();
    settings.entities = vec![CrmEntity::Lead];
    settings.match_existing_by_email = true;
    let report = env
        .engine(settings)
        .run_cycle(CycleOptions::default())
        .await
        .expect("initial load");
    assert_eq!(report.dead_letters, 0, "{report:?}");

    let people = persons_by_email(&env, &email).await;
    assert_eq!(people.len(), 1, "no duplicate for {email}: {people:?}");
    assert_eq!(people[0]["id"], existing, "the existing person was linked");
    assert_eq!(people[0]["msftId"], matched.to_string());
    assert_eq!(people[0]["msftType"], "Lead");
    let linked = env.person(matched, &["id", "firstName"]).await;
    let row = env.crm_row("leads", matched, &["firstname"]).await;
    assert_eq!(
        linked["firstName"], row["firstname"],
        "CRM values loaded onto it"
    );
    for id in &ids[1..] {
        assert_eq!(env.persons_by_msft_id(*id, &["id"]).await.len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_option_an_email_twin_stays_separate() {
    let env = Env::start().await;
    env.prepare(false).await;
    env.seed_crm(json!({"seed": 32, "leads": 2})).await;
    let id = env.crm_ids("leads", "leadid", 1).await[0];
    let email = env.crm_row("leads", id, &["emailaddress1"]).await["emailaddress1"]
        .as_str()
        .expect("seeded email")
        .to_owned();
    env.marketo()
        .sync_leads(
            &[json!({"email": email, "firstName": "FromAForm"})
                .as_object()
                .cloned()
                .expect("record")],
            &SyncLeadsOptions {
                action: SyncAction::CreateOnly,
                lookup_field: None,
                partition_name: None,
            },
        )
        .await
        .expect("create");
    let mut settings = env.settings();
    settings.entities = vec![CrmEntity::Lead];
    env.engine(settings)
        .run_cycle(CycleOptions::default())
        .await
        .expect("initial load");
    // Matching is by CRM id, never by email: the form person is untouched, the lead gets its own.
    let people = persons_by_email(&env, &email).await;
    assert_eq!(people.len(), 2, "{people:?}");
    assert_eq!(
        people
            .iter()
            .filter(|p| p.get("msftId").and_then(Value::as_str) == Some(id.to_string().as_str()))
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_timeouts_on_both_sides_are_retried_without_duplicates() {
    let env = Env::start().await;
    env.prepare(false).await;
    env.seed_crm(json!({"seed": 33, "leads": 25})).await;
    let mk = env.mk.description().url.clone();
    let dv = env.dv.description().url.clone();
    // Answers that arrive after the clients stopped waiting (1 s): twice on the lead writes, once on
    // the Dataverse read.
    env.post(
        &mk,
        "/_emulator/faults",
        json!({"path_contains": "/rest/v1/leads.json", "method": "POST", "latency_ms": 2500, "count": 2}),
    )
    .await;
    env.post(
        &dv,
        "/_emulator/faults",
        json!({"path_contains": "/api/data/v9.2/leads", "method": "GET", "latency_ms": 2500, "count": 1}),
    )
    .await;
    let mut mk_config = env.marketo_config();
    mk_config.timeout = Duration::from_secs(1);
    let marketo = mdsync_marketo_client::Client::new(mk_config).expect("marketo client");
    let d = env.dv.description();
    let mut crm_config = mdsync_dataverse_client::ClientConfig::new(
        d.url.clone(),
        d.tenant_id.clone(),
        &d.sync_app_client_id,
        mdsync_dataverse_client::Secret::new(&d.sync_app_client_secret),
    )
    .with_authority(d.url.clone());
    crm_config.timeout = Duration::from_secs(1);
    crm_config.backoff_base = Duration::from_millis(20);
    crm_config.backoff_max = Duration::from_millis(200);
    let crm = mdsync_dataverse_client::Client::new(crm_config).expect("crm client");
    let mut settings = env.settings();
    settings.entities = vec![CrmEntity::Lead];
    settings.batch_retry_delay = Duration::from_millis(100);
    let store = mdsync_state::SqliteStateStore::open(env.state_path()).expect("store");
    let engine = Engine::new(crm, marketo, Box::new(store), settings);
    let report = engine
        .run_cycle(CycleOptions::default())
        .await
        .expect("the cycle outlasts the timeouts");
    assert_eq!(report.dead_letters, 0, "{report:?}");
    for id in env.crm_ids("leads", "leadid", 100).await {
        assert_eq!(
            env.persons_by_msft_id(id, &["id"]).await.len(),
            1,
            "one person for {id}"
        );
    }
    let left: Value = env
        .http
        .get(format!("{mk}/_emulator/faults"))
        .send()
        .await
        .expect("faults")
        .json()
        .await
        .expect("json");
    let remaining = left
        .as_array()
        .map(Vec::len)
        .or_else(|| left["faults"].as_array().map(Vec::len));
    assert_eq!(remaining, Some(0), "both slow answers were hit: {left}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_become_sales_persons_and_persons_point_at_them() {
    let env = Env::start().await;
    env.prepare(false).await;
    env.seed_crm(json!({"seed": 34, "leads": 8})).await;
    let mut settings = env.settings();
    settings.entities = vec![CrmEntity::SystemUser, CrmEntity::Lead];
    let report = env
        .engine(settings)
        .run_cycle(CycleOptions::default())
        .await
        .expect("initial load");
    assert_eq!(report.dead_letters, 0, "{report:?}");
    let users = report
        .entities
        .iter()
        .find(|e| e.entity == "systemuser")
        .expect("systemuser loaded");
    assert!(users.load_completed && users.rows_read > 0, "{report:?}");

    let client = env.marketo();
    for id in env.crm_ids("leads", "leadid", 10).await {
        let row = env.crm_row("leads", id, &["_ownerid_value"]).await;
        let owner = row["_ownerid_value"].as_str().expect("owner").to_owned();
        let person = env.person(id, &["externalSalesPersonId"]).await;
        assert_eq!(person["externalSalesPersonId"], owner.as_str());
        let user = env
            .crm_row(
                "systemusers",
                owner.parse().expect("guid"),
                &["internalemailaddress"],
            )
            .await;
        let mut pager = client
            .query_objects(
                mdsync_marketo_client::ObjectKind::SalesPersons,
                "externalSalesPersonId",
                &[owner.as_str()],
                &["id", "email", "externalSalesPersonId"],
                None,
            )
            .expect("query");
        let found = pager.next_page().await.expect("page").unwrap_or_default();
        assert_eq!(
            found.len(),
            1,
            "one sales person for owner {owner}: {found:?}"
        );
        assert_eq!(found[0]["email"], user["internalemailaddress"]);
    }
}
