//! `mdsync sync --once [--dry-run]`, `status`, `errors` and `push-person` as real processes against
//! in-process emulators, checking the data on the other side.

mod sync_support;

use serde_json::{Value, json};
use sync_support::{Pair, id_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_writes_nothing_then_once_syncs_and_status_reports() {
    let pair = Pair::start(false).await;
    pair.seed_crm(json!({"seed": 11, "accounts": 3, "leads": 30, "contacts": 20}))
        .await;
    let leads = pair.crm_rows("leads", "leadid,firstname").await;
    let ids: Vec<_> = leads.iter().map(|r| id_of(r, "leadid")).collect();

    let plan = pair.ok(&["sync", "--dry-run", "--json"]).await;
    let plan: Value = serde_json::from_str(&plan).expect("report JSON");
    assert_eq!(plan["dry_run"], true);
    let creates: u64 = plan["counts"]
        .as_array()
        .expect("counts")
        .iter()
        .map(|r| r["creates"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(creates, 53, "{plan}");
    assert!(
        pair.persons(&ids, &["id"]).await.is_empty(),
        "a dry run writes nothing"
    );
    let status: Value =
        serde_json::from_str(&pair.ok(&["status", "--json"]).await).expect("status");
    assert_eq!(status["last_cycles"], json!([]));

    let table = pair.ok(&["sync", "--once"]).await;
    assert!(
        table.contains("lead") && table.contains("to_marketo"),
        "{table}"
    );
    let persons = pair.persons(&ids, &["firstName"]).await;
    assert_eq!(persons.len(), 30);
    for row in &leads {
        let p = &persons[&id_of(row, "leadid").to_string()];
        assert_eq!(p.len(), 1);
        assert_eq!(p[0]["firstName"], row["firstname"]);
    }
    let status: Value =
        serde_json::from_str(&pair.ok(&["status", "--json"]).await).expect("status");
    let lead = status["entities"]
        .as_array()
        .expect("entities")
        .iter()
        .find(|e| e["entity"] == "lead")
        .expect("lead status")
        .clone();
    assert_eq!(lead["phase"], "incremental");
    assert_eq!(lead["linked"], 30);
    assert_eq!(status["last_cycles"][0]["status"], "completed");
    let shown = pair.ok(&["status"]).await;
    assert!(!shown.to_lowercase().contains("secret"), "{shown}");
    assert!(!shown.contains(&pair.dv.description().sync_app_client_secret));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_records_are_listed_exported_and_retried() {
    let pair = Pair::start(false).await;
    pair.ok(&["sync", "--once"]).await;
    pair.crm(
        reqwest::Method::POST,
        "leads",
        Some(json!({"lastname": "Broken", "emailaddress1": "no-at-sign"})),
    )
    .await;
    // The cycle completes: exit 0 with a dead letter.
    let out = pair.ok(&["sync", "--once"]).await;
    assert!(out.contains("failed"), "{out}");
    let list: Value = serde_json::from_str(pair.ok(&["errors", "list", "--json"]).await.trim())
        .expect("JSON array");
    let items = list.as_array().expect("array");
    assert_eq!(items.len(), 1, "{list}");
    for key in [
        "entity",
        "crm_id",
        "marketo_id",
        "operation",
        "direction",
        "code",
        "message",
    ] {
        assert!(items[0].get(key).is_some(), "missing {key}: {list}");
    }
    assert_eq!(items[0]["entity"], "lead");
    assert_eq!(items[0]["direction"], "to_marketo");
    let id = items[0]["id"].as_i64().expect("id").to_string();
    let shown = pair.ok(&["errors", "show", &id]).await;
    assert!(shown.contains("no-at-sign"), "{shown}");
    let csv = pair.ok(&["errors", "export", "--format", "csv"]).await;
    assert!(csv.lines().count() >= 2 && csv.contains("lead"), "{csv}");
    // Fix it in Dynamics, retry: resolved, the person exists once.
    let crm_id = items[0]["crm_id"].as_str().expect("crm id").to_owned();
    pair.crm(
        reqwest::Method::PATCH,
        &format!("leads({crm_id})"),
        Some(json!({"emailaddress1": "fixed@x.example.com"})),
    )
    .await;
    let retried: Value = serde_json::from_str(
        pair.ok(&["errors", "retry", "--all", "--json"])
            .await
            .trim(),
    )
    .expect("retry JSON");
    assert_eq!(retried["resolved"], 1, "{retried}");
    let list: Value =
        serde_json::from_str(pair.ok(&["errors", "list", "--json"]).await.trim()).expect("JSON");
    assert_eq!(list, json!([]));
    let uuid = uuid::Uuid::parse_str(&crm_id).expect("uuid");
    let persons = pair.persons(&[uuid], &["email"]).await;
    assert_eq!(persons[&crm_id].len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_person_creates_once_then_is_a_no_op() {
    let pair = Pair::start(false).await;
    pair.ok(&["sync", "--once"]).await;
    pair.marketer_edit(json!({"create": {"email": "pushed@x.example.com", "firstName": "Pushed", "lastName": "Person"}}))
        .await;
    let out: Value = serde_json::from_str(
        pair.ok(&["push-person", "pushed@x.example.com", "--json"])
            .await
            .trim(),
    )
    .expect("outcome JSON");
    assert_eq!(out["outcome"], "created", "{out}");
    let leads = pair
        .crm_rows("leads", "leadid,lastname,emailaddress1")
        .await;
    let found: Vec<_> = leads
        .iter()
        .filter(|r| r["emailaddress1"] == "pushed@x.example.com")
        .collect();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["lastname"], "Person");
    let again: Value = serde_json::from_str(
        pair.ok(&["push-person", "pushed@x.example.com", "--json"])
            .await
            .trim(),
    )
    .expect("outcome JSON");
    assert_eq!(again["outcome"], "already_in_crm", "{again}");
    let missing = pair.run(&["push-person", "nobody@x.example.com"]).await;
    assert_ne!(missing.status.code(), Some(0));
}
