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
        // Choice columns arrive as their labels (option sets read through the metadata casts).
        let choices = env
            .person(*id, &["msftPersonStatus", "msftStatusReason", "leadSource"])
            .await;
        assert_eq!(choices["msftPersonStatus"], "Open", "{choices:?}");
        assert!(
            matches!(
                choices["msftStatusReason"].as_str(),
                Some("New" | "Contacted")
            ),
            "{choices:?}"
        );
        let source = choices["leadSource"].as_str().unwrap_or_default();
        assert!(
            !source.is_empty() && source.parse::<i64>().is_err(),
            "leadSource is a label: {choices:?}"
        );
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
    let backlog = store.backlog().expect("backlog");
    let lead_backlog = backlog
        .iter()
        .find(|b| b.entity == mdsync_sync_core::record::CrmEntity::Lead)
        .expect("lead backlog recorded during the load");
    assert_eq!(lead_backlog.pending_inserts, 0);
    let status = mdsync_engine::Status::read(&store, &[mdsync_sync_core::record::CrmEntity::Lead])
        .expect("status");
    assert_eq!(status.entities[0].phase, "incremental");
    assert_eq!(status.entities[0].linked, 60);
    assert_eq!(
        status.last_cycles[0].status,
        mdsync_state::CycleStatus::Completed
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

async fn marketo_id(env: &Env, crm_id: uuid::Uuid) -> i64 {
    env.store()
        .links_by_crm_ids(&[crm_id])
        .expect("links")
        .first()
        .and_then(|l| l.marketo_id)
        .expect("linked person")
}

/// Sets up, seeds a few leads and contacts, runs the initial load; returns (engine, leads, contacts).
async fn loaded(
    env: &Env,
    filter: bool,
) -> (mdsync_engine::Engine, Vec<uuid::Uuid>, Vec<uuid::Uuid>) {
    env.prepare(filter).await;
    env.seed_crm(json!({"seed": 3, "accounts": 2, "contacts": 6, "leads": 6}))
        .await;
    let mut settings = env.settings();
    if filter {
        settings.filter_field = Some("new_synctomkto".into());
    }
    let engine = env.engine(settings);
    let r = engine
        .run_cycle(CycleOptions::default())
        .await
        .expect("initial cycle");
    assert_eq!(r.dead_letters, 0, "{r:?}");
    let leads = env.crm_ids("leads", "leadid", 10).await;
    let contacts = env.crm_ids("contacts", "contactid", 10).await;
    (engine, leads, contacts)
}

fn count(
    report: &mdsync_engine::CycleReport,
    entity: &str,
    flow: &str,
    f: impl Fn(&mdsync_sync_core::plan::OpCounts) -> u64,
) -> u64 {
    report
        .counts
        .iter()
        .filter(|r| r.entity.to_string() == entity && r.flow.to_string() == flow)
        .map(|r| f(&r.counts))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_flow_both_ways_and_echoes_are_suppressed() {
    let env = Env::start().await;
    let (engine, leads, contacts) = loaded(&env, false).await;
    // A human edits a lead in Dynamics; a marketer edits a contact's person in Marketo.
    env.human(
        reqwest::Method::PATCH,
        &format!("leads({})", leads[0]),
        Some(json!({"firstname": "Zed"})),
    )
    .await;
    let c0 = marketo_id(&env, contacts[0]).await;
    env.marketer_edit(json!({"leadId": c0, "fields": {"title": "CFO"}}))
        .await;

    let r = engine
        .run_cycle(CycleOptions::default())
        .await
        .expect("cycle");
    eprintln!("{}", r.table());
    assert_eq!(
        env.person(leads[0], &["firstName"]).await["firstName"],
        "Zed"
    );
    assert_eq!(
        env.crm_row("contacts", contacts[0], &["jobtitle"]).await["jobtitle"],
        "CFO"
    );
    assert_eq!((r.marketo_writes, r.crm_writes), (1, 1), "{r:?}");

    // The two writes come back as changes (a Change Data Value by mdsync's API user, a delta row modified
    // by the sync user): both are echoes, nothing is written back.
    let echo = engine
        .run_cycle(CycleOptions::default())
        .await
        .expect("echo cycle");
    eprintln!("{}", echo.table());
    assert_eq!((echo.marketo_writes, echo.crm_writes), (0, 0), "{echo:?}");
    assert!(
        echo.marketo_changes_read >= 1,
        "our own Marketo write was read back: {echo:?}"
    );
    assert!(
        count(&echo, "contact", "to_marketo", |c| c.echoes) >= 1,
        "{echo:?}"
    );
    // Dynamics still has the marketer's value, Marketo the human's.
    assert_eq!(
        env.crm_row("contacts", contacts[0], &["jobtitle"]).await["jobtitle"],
        "CFO"
    );
    assert_eq!(
        env.person(leads[0], &["firstName"]).await["firstName"],
        "Zed"
    );
    // And a quiet cycle after that is quiet.
    let quiet = engine
        .run_cycle(CycleOptions::default())
        .await
        .expect("quiet cycle");
    assert_eq!(
        (quiet.marketo_writes, quiet.crm_writes),
        (0, 0),
        "{quiet:?}"
    );

    // A human edit right after a sync-user write is still synced (fingerprints, not the row's modifier).
    env.human(
        reqwest::Method::PATCH,
        &format!("contacts({})", contacts[0]),
        Some(json!({"jobtitle": "CEO"})),
    )
    .await;
    engine
        .run_cycle(CycleOptions::default())
        .await
        .expect("cycle");
    assert_eq!(env.person(contacts[0], &["title"]).await["title"], "CEO");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_follow_the_field_policy_and_are_recorded() {
    let env = Env::start().await;
    let (engine, leads, contacts) = loaded(&env, false).await;
    let l = marketo_id(&env, leads[1]).await;
    let c = marketo_id(&env, contacts[1]).await;
    env.human(
        reqwest::Method::PATCH,
        &format!("leads({})", leads[1]),
        Some(json!({"firstname": "FromCrm"})),
    )
    .await;
    env.human(
        reqwest::Method::PATCH,
        &format!("contacts({})", contacts[1]),
        Some(json!({"jobtitle": "CrmTitle"})),
    )
    .await;
    env.marketer_edit(json!({"leadId": l, "fields": {"firstName": "FromMarketo"}}))
        .await;
    env.marketer_edit(json!({"leadId": c, "fields": {"title": "MarketoTitle"}}))
        .await;
    let r = engine
        .run_cycle(CycleOptions::default())
        .await
        .expect("cycle");
    eprintln!("{}", r.table());
    assert_eq!(r.conflicts, 2, "{r:?}");
    // Leads: Marketo wins, on both sides.
    assert_eq!(
        env.crm_row("leads", leads[1], &["firstname"]).await["firstname"],
        "FromMarketo"
    );
    assert_eq!(
        env.person(leads[1], &["firstName"]).await["firstName"],
        "FromMarketo"
    );
    // Contacts: Dynamics wins, on both sides.
    assert_eq!(
        env.crm_row("contacts", contacts[1], &["jobtitle"]).await["jobtitle"],
        "CrmTitle"
    );
    assert_eq!(
        env.person(contacts[1], &["title"]).await["title"],
        "CrmTitle"
    );
    let logged = env.store().conflicts(0, 100).expect("conflicts");
    assert_eq!(logged.len(), 2);
    let lead = logged
        .iter()
        .find(|c| c.conflict.crm_id == leads[1])
        .expect("lead conflict");
    assert_eq!(lead.conflict.crm_value, json!("FromCrm"));
    assert_eq!(lead.conflict.marketo_value, json!("FromMarketo"));
    assert_eq!(
        lead.conflict.outcome,
        mdsync_sync_core::record::Side::Marketo
    );
    let contact = logged
        .iter()
        .find(|c| c.conflict.crm_id == contacts[1])
        .expect("contact conflict");
    assert_eq!(
        contact.conflict.outcome,
        mdsync_sync_core::record::Side::Crm
    );
    // Converged: the next cycles write nothing.
    for _ in 0..2 {
        let r = engine
            .run_cycle(CycleOptions::default())
            .await
            .expect("cycle");
        assert_eq!((r.marketo_writes, r.crm_writes), (0, 0), "{r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_mark_persons_and_marketo_deletes_drop_links() {
    let env = Env::start().await;
    let (engine, leads, contacts) = loaded(&env, false).await;
    env.human(
        reqwest::Method::DELETE,
        &format!("leads({})", leads[2]),
        None,
    )
    .await;
    let c = marketo_id(&env, contacts[2]).await;
    env.marketer_edit(json!({"deleteLeadId": c})).await;
    let r = engine
        .run_cycle(CycleOptions::default())
        .await
        .expect("cycle");
    eprintln!("{}", r.table());
    let p = env.person(leads[2], &["msftIsDeleted"]).await;
    assert_eq!(p["msftIsDeleted"], true);
    assert!(
        env.store()
            .links_by_crm_ids(&[contacts[2]])
            .expect("links")
            .is_empty()
    );
    // The contact stays in Dynamics.
    assert!(
        env.crm_row("contacts", contacts[2], &["fullname"])
            .await
            .contains_key("contactid")
    );
    // Updated in Dynamics after the Marketo delete → a new Marketo person.
    env.human(
        reqwest::Method::PATCH,
        &format!("contacts({})", contacts[2]),
        Some(json!({"jobtitle": "Back"})),
    )
    .await;
    engine
        .run_cycle(CycleOptions::default())
        .await
        .expect("cycle");
    assert_eq!(env.person(contacts[2], &["title"]).await["title"], "Back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_filter_skips_false_and_starts_on_true() {
    let env = Env::start().await;
    let (engine, leads, _) = loaded(&env, true).await;
    let no = env
        .human_create("leads", json!({"lastname": "Filtered", "firstname": "No", "emailaddress1": "no@x.example.com", "new_synctomkto": false}))
        .await;
    let yes = env
        .human_create("leads", json!({"lastname": "Synced", "firstname": "Yes", "emailaddress1": "yes@x.example.com", "new_synctomkto": true}))
        .await;
    let r = engine
        .run_cycle(CycleOptions::default())
        .await
        .expect("cycle");
    eprintln!("{}", r.table());
    assert!(env.persons_by_msft_id(no, &["id"]).await.is_empty());
    assert_eq!(env.person(yes, &["firstName"]).await["firstName"], "Yes");
    assert!(count(&r, "lead", "to_marketo", |c| c.skips) >= 1);
    // No → Yes creates it at once.
    env.human(
        reqwest::Method::PATCH,
        &format!("leads({no})"),
        Some(json!({"new_synctomkto": true})),
    )
    .await;
    engine
        .run_cycle(CycleOptions::default())
        .await
        .expect("cycle");
    assert_eq!(env.person(no, &["firstName"]).await["firstName"], "No");
    // Yes → No stops syncing and deletes nothing.
    env.human(
        reqwest::Method::PATCH,
        &format!("leads({})", leads[0]),
        Some(json!({"new_synctomkto": false, "firstname": "Stale"})),
    )
    .await;
    engine
        .run_cycle(CycleOptions::default())
        .await
        .expect("cycle");
    let p = env.person(leads[0], &["firstName", "msftIsDeleted"]).await;
    assert_ne!(p["firstName"], "Stale");
    assert_eq!(p["msftIsDeleted"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_record_is_dead_lettered_and_retried() {
    let env = Env::start().await;
    let (engine, _, _) = loaded(&env, false).await;
    let bad = env
        .human_create(
            "leads",
            json!({"lastname": "Broken", "emailaddress1": "not-an-email"}),
        )
        .await;
    let good = env
        .human_create(
            "leads",
            json!({"lastname": "Fine", "emailaddress1": "fine@x.example.com"}),
        )
        .await;
    let r = engine
        .run_cycle(CycleOptions::default())
        .await
        .expect("the cycle completes despite the bad record");
    eprintln!("{}", r.table());
    assert_eq!(r.dead_letters, 1, "{r:?}");
    assert!(env.persons_by_msft_id(bad, &["id"]).await.is_empty());
    assert_eq!(env.person(good, &["lastName"]).await["lastName"], "Fine");
    let store = env.store();
    let dls = store
        .dead_letters(&mdsync_state::DeadLetterQuery::default())
        .expect("dead letters");
    assert_eq!(dls.len(), 1);
    let dl = &dls[0];
    assert_eq!(dl.crm_id, Some(bad));
    assert_eq!(dl.operation, "create");
    assert_eq!(dl.direction, mdsync_sync_core::record::Flow::ToMarketo);
    assert!(
        !dl.code.is_empty() && dl.message.to_lowercase().contains("email"),
        "{dl:?}"
    );
    // Retrying while still broken keeps it (attempts bumped); after a fix it resolves.
    let again = engine.retry_dead_letters(None).await.expect("retry");
    assert_eq!((again.attempted, again.resolved), (1, 0), "{again:?}");
    env.human(
        reqwest::Method::PATCH,
        &format!("leads({bad})"),
        Some(json!({"emailaddress1": "fixed@x.example.com"})),
    )
    .await;
    let fixed = engine
        .retry_dead_letters(Some(vec![dl.id]))
        .await
        .expect("retry");
    assert_eq!(fixed.resolved, 1, "{fixed:?}");
    assert_eq!(
        env.person(bad, &["email"]).await["email"],
        "fixed@x.example.com"
    );
    assert_eq!(env.store().dead_letter_count(false).unwrap(), 0);
    // The fix's own delta row is now an echo: one person, no further write.
    let r = engine
        .run_cycle(CycleOptions::default())
        .await
        .expect("cycle");
    assert_eq!(r.marketo_writes, 0, "{r:?}");
    assert_eq!(env.persons_by_msft_id(bad, &["id"]).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_person_creates_the_lead_once() {
    let env = Env::start().await;
    let (engine, _, _) = loaded(&env, false).await;
    env.marketer_edit(json!({"create": {"email": "only.marketo@x.example.com", "firstName": "Only", "lastName": "Marketo"}}))
        .await;
    let who = mdsync_engine::PersonRef::parse("only.marketo@x.example.com");
    let out = engine
        .push_person(&who, mdsync_sync_core::record::CrmEntity::Lead, None)
        .await
        .expect("push");
    let mdsync_engine::PushOutcome::Created { crm_id, entity, .. } = out else {
        panic!("expected a create, got {out:?}");
    };
    assert_eq!(entity, mdsync_sync_core::record::CrmEntity::Lead);
    let row = env
        .crm_row("leads", crm_id, &["lastname", "emailaddress1"])
        .await;
    assert_eq!(row["lastname"], "Marketo");
    let p = env.person(crm_id, &["msftType", "email"]).await;
    assert_eq!(p["msftType"], "Lead");
    // Present → no-op.
    let again = engine
        .push_person(&who, mdsync_sync_core::record::CrmEntity::Lead, None)
        .await
        .expect("push again");
    assert!(
        matches!(again, mdsync_engine::PushOutcome::AlreadyInCrm { .. }),
        "{again:?}"
    );
    // The new lead comes back through change tracking as an echo.
    let r = engine
        .run_cycle(CycleOptions::default())
        .await
        .expect("cycle");
    assert_eq!((r.marketo_writes, r.crm_writes), (0, 0), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_opportunities_and_contact_roles_go_one_way() {
    let env = Env::start().await;
    let (engine, _, contacts) = loaded(&env, false).await;
    // Persons carry their account as externalCompanyId.
    let row = env
        .crm_row("contacts", contacts[0], &["_parentcustomerid_value"])
        .await;
    let p = env.person(contacts[0], &["externalCompanyId"]).await;
    assert_eq!(p["externalCompanyId"], row["_parentcustomerid_value"]);
    // An opportunity whose potential customer is a contact → Marketo opportunity + contact role.
    let opp = env
        .human_create(
            "opportunities",
            json!({"name": "Big deal", "estimatedvalue": 125000.0, "customerid_contact@odata.bind": format!("/contacts({})", contacts[0])}),
        )
        .await;
    let r = engine
        .run_cycle(CycleOptions::default())
        .await
        .expect("cycle");
    eprintln!("{}", r.table());
    assert_eq!(r.dead_letters, 0, "{r:?}");
    let client = env.marketo();
    let mut pager = client
        .query_objects(
            mdsync_marketo_client::ObjectKind::Opportunities,
            "externalOpportunityId",
            &[opp.to_string()],
            &["externalOpportunityId", "name", "amount"],
            None,
        )
        .expect("query");
    let found = pager.next_page().await.expect("page").unwrap_or_default();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["name"], "Big deal");
    let lead_id = marketo_id(&env, contacts[0]).await;
    let mut roles = client
        .query_objects(
            mdsync_marketo_client::ObjectKind::OpportunityRoles,
            "externalOpportunityId",
            &[opp.to_string()],
            &["externalOpportunityId", "leadId", "role"],
            None,
        )
        .expect("roles");
    let roles = roles.next_page().await.expect("page").unwrap_or_default();
    assert_eq!(roles.len(), 1, "{roles:?}");
    assert_eq!(roles[0]["leadId"], json!(lead_id));
    // One way: nothing flows back, a rename in Dynamics overwrites Marketo.
    env.human(
        reqwest::Method::PATCH,
        &format!("opportunities({opp})"),
        Some(json!({"name": "Bigger deal"})),
    )
    .await;
    engine
        .run_cycle(CycleOptions::default())
        .await
        .expect("cycle");
    let mut pager = client
        .query_objects(
            mdsync_marketo_client::ObjectKind::Opportunities,
            "externalOpportunityId",
            &[opp.to_string()],
            &["name"],
            None,
        )
        .expect("query");
    assert_eq!(
        pager.next_page().await.expect("page").unwrap_or_default()[0]["name"],
        "Bigger deal"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuous_mode_propagates_edits_and_stops_on_shutdown() {
    let env = Env::start().await;
    let (engine, leads, _) = loaded(&env, false).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let cycles = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen = std::sync::Arc::clone(&cycles);
    let completed = std::sync::Arc::clone(&cycles);
    let runner = engine.run(
        async {
            let _ = stopped.await;
        },
        move |r| {
            assert!(r.is_ok(), "{r:?}");
            seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        },
    );
    let driver = async {
        env.human(
            reqwest::Method::PATCH,
            &format!("leads({})", leads[3]),
            Some(json!({"firstname": "Live"})),
        )
        .await;
        let start = std::time::Instant::now();
        loop {
            let p = env.person(leads[3], &["firstName"]).await;
            if p["firstName"] == "Live" {
                break;
            }
            assert!(
                start.elapsed() < std::time::Duration::from_secs(30),
                "edit not propagated"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        // The write lands before the cycle that made it reports back; wait for that report so that
        // stopping cannot race the callback.
        while completed.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(30),
                "no cycle completed"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let _ = stop.send(());
    };
    let (ran, ()) = tokio::join!(runner, driver);
    ran.expect("run ends cleanly on shutdown");
    assert!(cycles.load(std::sync::atomic::Ordering::Relaxed) >= 1);
}
