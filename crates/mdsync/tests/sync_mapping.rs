//! `[[mapping.<entity>]]` overrides in `mdsync.toml` are applied end to end: a renamed field, a
//! direction and a conflict policy, checked on the other side's data after `mdsync sync --once`.

mod sync_support;

use serde_json::json;
use sync_support::{Pair, id_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_mapping_overrides_rename_direct_and_resolve() {
    let pair = Pair::start(false).await;
    let text = std::fs::read_to_string(pair.config_path()).expect("config");
    let overrides = r#"
# Job title goes to Marketo's Department instead of Job Title.
[[mapping.lead]]
crm = "jobtitle"
marketo = "department"

# Phone is owned by Marketo: never sent there, only brought back.
[[mapping.lead]]
crm = "telephone1"
marketo = "phone"
direction = "to_dynamics"

# Last name: Dynamics wins a conflict (the lead default is Marketo wins).
[[mapping.lead]]
crm = "lastname"
marketo = "lastName"
conflict = "dynamics_wins"
"#;
    std::fs::write(pair.config_path(), format!("{text}\n{overrides}")).expect("config");

    pair.seed_crm(json!({"seed": 21, "leads": 3})).await;
    pair.ok(&["sync", "--once"]).await;
    let leads = pair
        .crm_rows("leads", "leadid,jobtitle,telephone1,lastname")
        .await;
    let lead = leads
        .iter()
        .find(|r| r["jobtitle"].is_string() && r["telephone1"].is_string())
        .expect("a seeded lead with a job title and a phone")
        .clone();
    let id = id_of(&lead, "leadid");
    let fields = ["id", "title", "department", "phone", "lastName"];
    let person =
        serde_json::Value::Object(pair.persons(&[id], &fields).await[&id.to_string()][0].clone());
    assert_eq!(person["department"], lead["jobtitle"], "renamed field");
    assert!(
        person["title"].is_null(),
        "the default target is not written: {person:?}"
    );
    assert!(
        person["phone"].is_null(),
        "to_dynamics is never sent: {person:?}"
    );
    let mid = person["id"].as_i64().expect("person id");

    // Both sides edit last name and phone in the same cycle.
    pair.crm(
        reqwest::Method::PATCH,
        &format!("leads({id})"),
        Some(json!({"lastname": "FromDynamics", "telephone1": "+1 555 0100"})),
    )
    .await;
    pair.marketer_edit(
        json!({"leadId": mid, "fields": {"lastName": "FromMarketo", "phone": "+1 555 0199"}}),
    )
    .await;
    pair.ok(&["sync", "--once"]).await;

    let person =
        serde_json::Value::Object(pair.persons(&[id], &fields).await[&id.to_string()][0].clone());
    let row = pair
        .crm(
            reqwest::Method::GET,
            &format!("leads({id})?$select=lastname,telephone1"),
            None,
        )
        .await;
    assert_eq!(
        person["lastName"], "FromDynamics",
        "dynamics_wins on Marketo"
    );
    assert_eq!(row["lastname"], "FromDynamics", "dynamics_wins on Dynamics");
    assert_eq!(
        person["phone"], "+1 555 0199",
        "Dynamics' phone is not sent"
    );
    assert_eq!(
        row["telephone1"], "+1 555 0199",
        "Marketo's phone comes back"
    );

    let status: serde_json::Value =
        serde_json::from_str(&pair.ok(&["status", "--json"]).await).expect("status");
    assert_eq!(status["last_cycles"][0]["status"], "completed", "{status}");
}
