//! Qualify (lead → contact) and merge against both emulators, following marketo-dynamics-sync.md §4:
//! the Qualify table (lead flag / contact flag) and "the winner's flag decides" for merges. Every check
//! reads Marketo's own data.

mod common;

use common::Env;
use mdsync_engine::CycleOptions;
use mdsync_state::StateStore;
use serde_json::{Value, json};
use uuid::Uuid;

async fn engine_with_filter(env: &Env) -> mdsync_engine::Engine {
    env.prepare(true).await;
    let mut settings = env.settings();
    settings.filter_field = Some("new_synctomkto".into());
    env.engine(settings)
}

async fn cycle(engine: &mdsync_engine::Engine) {
    let r = engine
        .run_cycle(CycleOptions::default())
        .await
        .expect("cycle");
    eprintln!("{}", r.table());
    assert_eq!(r.dead_letters, 0, "{r:?}");
}

fn person_id(env: &Env, crm_id: Uuid) -> Option<i64> {
    env.store()
        .links_by_crm_ids(&[crm_id])
        .expect("links")
        .first()
        .and_then(|l| l.marketo_id)
}

/// Persons with this email (any msftId).
async fn persons_by_email(env: &Env, email: &str) -> Vec<serde_json::Map<String, Value>> {
    let client = env.marketo();
    let mut pager = client
        .leads_by_filter(
            "email",
            &[email.to_owned()],
            &["id", "msftId", "msftType"],
            None,
        )
        .expect("filter");
    let mut out = Vec::new();
    while let Some(page) = pager.next_page().await.expect("page") {
        out.extend(page);
    }
    out
}

/// Qualifies a lead into a contact as a human user; returns the new contact's id.
async fn qualify(env: &Env, lead: Uuid) -> Uuid {
    let r = env
        .human(
            reqwest::Method::POST,
            &format!("leads({lead})/Microsoft.Dynamics.CRM.QualifyLead"),
            Some(json!({"CreateAccount": false, "CreateContact": true, "CreateOpportunity": false, "Status": 3})),
        )
        .await;
    let body: Value = r.json().await.expect("QualifyLead answer");
    body["value"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|e| e.get("contactid").and_then(Value::as_str))
        .and_then(|s| Uuid::parse_str(s).ok())
        .unwrap_or_else(|| panic!("no contact in {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qualify_follows_the_lead_and_contact_flags() {
    let env = Env::start().await;
    let engine = engine_with_filter(&env).await;
    // (lead flag, contact flag) per Marketo's Qualify table.
    let cases = [(true, true), (true, false), (false, true), (false, false)];
    let mut leads = Vec::new();
    for (i, (lead_flag, _)) in cases.iter().enumerate() {
        let email = format!("q{i}@qualify.example.com");
        let id = env
            .human_create(
                "leads",
                json!({"firstname": "Q", "lastname": format!("Case{i}"), "emailaddress1": email, "new_synctomkto": lead_flag}),
            )
            .await;
        leads.push((id, email));
    }
    cycle(&engine).await;
    let tt_person = person_id(&env, leads[0].0).expect("T lead linked");
    assert!(person_id(&env, leads[2].0).is_none());

    let mut contacts = Vec::new();
    for ((lead, _), (_, contact_flag)) in leads.iter().zip(cases) {
        let contact = qualify(&env, *lead).await;
        env.human(
            reqwest::Method::PATCH,
            &format!("contacts({contact})"),
            Some(json!({"new_synctomkto": contact_flag})),
        )
        .await;
        contacts.push(contact);
    }
    cycle(&engine).await;

    // T/T: the lead's person becomes the contact (same Marketo person, msftType Contact).
    let p = env
        .person(contacts[0], &["id", "msftType", "msftId", "firstName"])
        .await;
    assert_eq!(p["id"], json!(tt_person), "{p:?}");
    assert_eq!(p["msftType"], "Contact");
    assert!(env.persons_by_msft_id(leads[0].0, &["id"]).await.is_empty());
    assert_eq!(persons_by_email(&env, &leads[0].1).await.len(), 1);
    // T/F: the lead is updated (now Qualified), the contact does not sync.
    let p = env
        .person(leads[1].0, &["msftType", "msftPersonStatus"])
        .await;
    assert_eq!(p["msftType"], "Lead");
    assert_eq!(p["msftPersonStatus"], "Qualified", "{p:?}");
    assert!(
        env.persons_by_msft_id(contacts[1], &["id"])
            .await
            .is_empty()
    );
    // F/T: a new contact person.
    let p = env.person(contacts[2], &["msftType"]).await;
    assert_eq!(p["msftType"], "Contact");
    assert!(env.persons_by_msft_id(leads[2].0, &["id"]).await.is_empty());
    assert_eq!(persons_by_email(&env, &leads[2].1).await.len(), 1);
    // F/F: nothing.
    assert!(env.persons_by_msft_id(leads[3].0, &["id"]).await.is_empty());
    assert!(
        env.persons_by_msft_id(contacts[3], &["id"])
            .await
            .is_empty()
    );

    // A later change of the converted lead does not bring a second person back.
    let token = env.human_token().await;
    let edited = env
        .http
        .patch(format!(
            "{}leads({})",
            env.dv.description().api_url,
            leads[0].0
        ))
        .bearer_auth(token)
        .header("If-Match", "*")
        .json(&json!({"description": "after qualify"}))
        .send()
        .await
        .expect("lead edit");
    eprintln!("edit of the qualified lead: {}", edited.status());
    cycle(&engine).await;
    assert!(env.persons_by_msft_id(leads[0].0, &["id"]).await.is_empty());
    assert_eq!(persons_by_email(&env, &leads[0].1).await.len(), 1);
}

async fn merge(env: &Env, target: Uuid, subordinate: Uuid) {
    env.human(
        reqwest::Method::POST,
        "Merge",
        Some(json!({
            "Target": {"@odata.type": "Microsoft.Dynamics.CRM.contact", "contactid": target},
            "Subordinate": {"@odata.type": "Microsoft.Dynamics.CRM.contact", "contactid": subordinate},
            "PerformParentingChecks": false
        })),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_lets_the_winner_decide_and_never_duplicates_the_loser() {
    let env = Env::start().await;
    let engine = engine_with_filter(&env).await;
    let mut ids = Vec::new();
    // (winner true, loser true), (winner false, loser true), (winner true, loser false).
    for (i, flag) in [true, true, false, true, true, false]
        .into_iter()
        .enumerate()
    {
        let id = env
            .human_create(
                "contacts",
                json!({"firstname": "M", "lastname": format!("Merge{i}"), "emailaddress1": format!("m{i}@merge.example.com"), "new_synctomkto": flag}),
            )
            .await;
        ids.push(id);
    }
    cycle(&engine).await;
    let loser_person = person_id(&env, ids[1]).expect("loser linked");
    for pair in ids.chunks(2) {
        merge(&env, pair[0], pair[1]).await;
    }
    let row = env.crm_row("contacts", ids[1], &["merged"]).await;
    assert_eq!(row["merged"], true, "{row:?}");
    cycle(&engine).await;

    // T winner / T loser: the winner keeps syncing; the loser's person is marked, unlinked, not copied.
    let w = env.person(ids[0], &["msftIsDeleted", "lastName"]).await;
    assert_eq!(w["msftIsDeleted"], false);
    let l = env.person(ids[1], &["id", "msftIsDeleted"]).await;
    assert_eq!(l["id"], json!(loser_person));
    assert_eq!(l["msftIsDeleted"], true, "{l:?}");
    assert!(person_id(&env, ids[1]).is_none());
    // F winner: not synced, whatever the loser's flag; the loser's person is marked.
    assert!(env.persons_by_msft_id(ids[2], &["id"]).await.is_empty());
    assert_eq!(
        env.person(ids[3], &["msftIsDeleted"]).await["msftIsDeleted"],
        true
    );
    // T winner / F loser: the winner syncs, the never-synced loser stays out.
    assert_eq!(
        env.person(ids[4], &["msftIsDeleted"]).await["msftIsDeleted"],
        false
    );
    assert!(env.persons_by_msft_id(ids[5], &["id"]).await.is_empty());

    // Turning the merged loser's flag on again never re-creates it.
    let token = env.human_token().await;
    let r = env
        .http
        .patch(format!(
            "{}contacts({})",
            env.dv.description().api_url,
            ids[5]
        ))
        .bearer_auth(token)
        .header("If-Match", "*")
        .json(&json!({"new_synctomkto": true}))
        .send()
        .await
        .expect("loser edit");
    eprintln!("edit of the merged loser: {}", r.status());
    cycle(&engine).await;
    assert!(env.persons_by_msft_id(ids[5], &["id"]).await.is_empty());
    assert_eq!(env.persons_by_msft_id(ids[1], &["id"]).await.len(), 1);
}
