//! The activity log: what writes record, activity types, paging tokens, lead changes, activities and
//! deleted leads, short pages while `moreResult`, marketer edits (marketo-rest.md §4).

mod common;

use common::{Emu, error_code, quiet_config, start};
use mdsync_marketo_emulator::Config;
use serde_json::{Value, json};

fn attr<'a>(activity: &'a Value, name: &str) -> Option<&'a Value> {
    activity["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["name"] == name)
        .map(|a| &a["value"])
}

/// Follows tokens until `moreResult` is false; returns all records, the pages seen and the last token.
async fn drain(emu: &Emu, path: &str, token: &str) -> (Vec<Value>, Vec<usize>, String) {
    let mut token = token.to_string();
    let mut records = Vec::new();
    let mut pages = Vec::new();
    for _ in 0..1000 {
        let sep = if path.contains('?') { '&' } else { '?' };
        let page = emu.get(&format!("{path}{sep}nextPageToken={token}")).await;
        assert_eq!(page["success"], true, "{page}");
        let more = page["moreResult"]
            .as_bool()
            .expect("moreResult always present");
        token = page["nextPageToken"]
            .as_str()
            .expect("nextPageToken always present")
            .to_string();
        let got = page["result"].as_array().cloned().unwrap_or_default();
        pages.push(got.len());
        records.extend(got);
        if !more {
            return (records, pages, token);
        }
    }
    panic!("paging never ended");
}

async fn since_token(emu: &Emu, since: &str) -> String {
    let body = emu
        .get(&format!(
            "/rest/v1/activities/pagingtoken.json?sinceDatetime={}",
            since.replace('+', "%2B")
        ))
        .await;
    assert_eq!(body["success"], true, "{body}");
    assert!(body.get("result").is_none());
    body["nextPageToken"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn api_writes_log_new_lead_change_data_value_and_delete_with_api_attributes() {
    let emu = start(quiet_config()).await;
    let token = since_token(&emu, "2020-01-01T00:00:00Z").await;
    let created = emu
        .post(
            "/rest/v1/leads.json",
            json!({"input": [{"email": "a@x.com", "firstName": "A", "lastName": "Z"}]}),
        )
        .await;
    let id = created["result"][0]["id"].as_i64().unwrap();
    let update = emu
        .post(
            "/rest/v1/leads.json",
            json!({"input": [{"email": "a@x.com", "firstName": "B", "title": "CEO"}]}),
        )
        .await;
    let update_request = update["requestId"].as_str().unwrap().to_string();
    // Same values again: no new activity.
    emu.post(
        "/rest/v1/leads.json",
        json!({"input": [{"email": "a@x.com", "firstName": "B"}]}),
    )
    .await;

    let (changes, _, _) = drain(
        &emu,
        "/rest/v1/activities/leadchanges.json?fields=firstName,title",
        &token,
    )
    .await;
    assert_eq!(changes.len(), 3, "{changes:#?}");
    assert_eq!(changes[0]["activityTypeId"], 12);
    assert_eq!(changes[0]["leadId"], id);
    let first = &changes[1];
    assert_eq!(first["activityTypeId"], 13);
    assert_eq!(
        first["fields"],
        json!([{"id": first["fields"][0]["id"], "name": "firstName", "newValue": "B", "oldValue": "A"}])
    );
    assert_eq!(first["marketoGUID"], first["id"].to_string());
    assert_eq!(attr(first, "Source"), Some(&json!("Web service API")));
    assert_eq!(attr(first, "Reason"), Some(&json!("Web service API")));
    assert_eq!(attr(first, "Api Method Name"), Some(&json!("syncLead")));
    assert_eq!(
        attr(first, "Modifying User"),
        Some(&json!(emu.running.description().api_user))
    );
    assert_eq!(attr(first, "Request Id"), Some(&json!(update_request)));
    let date = first["activityDate"].as_str().unwrap();
    assert!(date.ends_with('Z') && date.len() == 20, "{date}");
    assert_eq!(changes[2]["fields"][0]["name"], "title");
    assert_eq!(changes[2]["fields"][0]["oldValue"], Value::Null);

    // The field filter applies to Change Data Value only.
    let (only_title, _, _) = drain(
        &emu,
        "/rest/v1/activities/leadchanges.json?fields=title",
        &token,
    )
    .await;
    assert_eq!(
        only_title
            .iter()
            .map(|c| c["activityTypeId"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [12, 13]
    );

    // activities.json shows New Value / Old Value and the primary attribute.
    let (acts, _, _) = drain(&emu, "/rest/v1/activities.json?activityTypeIds=13", &token).await;
    assert_eq!(acts.len(), 2);
    assert_eq!(acts[0]["primaryAttributeValue"], "First Name");
    assert_eq!(attr(&acts[0], "New Value"), Some(&json!("B")));
    assert_eq!(attr(&acts[0], "Old Value"), Some(&json!("A")));
    let (new_leads, _, _) = drain(
        &emu,
        "/rest/v1/activities.json?activityTypeIds=12&activityTypeIds=37",
        &token,
    )
    .await;
    assert_eq!(new_leads.len(), 1);
    assert_eq!(new_leads[0]["primaryAttributeValueId"], id);
    assert_eq!(new_leads[0]["primaryAttributeValue"], "A Z");

    // Deletes show up in deletedleads.json.
    emu.post("/rest/v1/leads/delete.json", json!({"input": [{"id": id}]}))
        .await;
    let (deleted, _, last) = drain(&emu, "/rest/v1/activities/deletedleads.json", &token).await;
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0]["activityTypeId"], 37);
    assert_eq!(deleted[0]["leadId"], id);
    assert_eq!(
        attr(&deleted[0], "Api Method Name"),
        Some(&json!("deleteLead"))
    );
    // Resuming from the last token finds nothing new, and still returns a token and moreResult.
    let page = emu
        .get(&format!(
            "/rest/v1/activities/deletedleads.json?nextPageToken={last}"
        ))
        .await;
    assert_eq!(page["moreResult"], false);
    assert!(page["nextPageToken"].is_string());
    assert!(page.get("result").is_none());
    emu.shutdown().await;
}

#[tokio::test]
async fn pages_are_short_while_more_result_and_tokens_resume_exactly() {
    let emu = start(Config {
        activity_scan_block: 7,
        ..quiet_config()
    })
    .await;
    let token = since_token(&emu, "2000-01-01T00:00:00+0000").await;
    // 40 leads (40 New Lead), then 20 title changes on every other lead.
    let ids = emu
        .create_leads(
            (0..40)
                .map(|i| json!({"email": format!("s{i}@x.com")}))
                .collect(),
        )
        .await;
    let updates: Vec<Value> = ids
        .iter()
        .step_by(2)
        .map(|id| json!({"id": id, "title": "T"}))
        .collect();
    emu.post(
        "/rest/v1/leads.json",
        json!({"action": "updateOnly", "lookupField": "id", "input": updates}),
    )
    .await;

    let (changes, pages, _) =
        drain(&emu, "/rest/v1/activities.json?activityTypeIds=13", &token).await;
    assert_eq!(changes.len(), 20);
    assert!(
        pages.len() >= 8,
        "60 activities scanned 7 at a time: {pages:?}"
    );
    assert!(
        pages.contains(&0),
        "sparse scan yields empty pages while moreResult: {pages:?}"
    );
    // batchSize cuts inside a block and the token resumes right after the last record.
    let (all, pages, _) = drain(
        &emu,
        "/rest/v1/activities/leadchanges.json?fields=title&batchSize=2",
        &token,
    )
    .await;
    assert_eq!(all.len(), 60);
    assert!(pages.iter().all(|n| *n <= 2));
    let mut ids_seen: Vec<i64> = all.iter().map(|a| a["id"].as_i64().unwrap()).collect();
    ids_seen.dedup();
    assert_eq!(ids_seen.len(), 60, "no duplicates, no gaps");
    // leadIds filter (≤ 30).
    let path = format!(
        "/rest/v1/activities/leadchanges.json?fields=title&leadIds={},{}",
        ids[0], ids[1]
    );
    let (two, _, _) = drain(&emu, &path, &token).await;
    assert_eq!(two.len(), 3);
    let too_many: Vec<String> = (1..=31).map(|i| i.to_string()).collect();
    let body = emu
        .get(&format!(
            "/rest/v1/activities/leadchanges.json?fields=title&nextPageToken={token}&leadIds={}",
            too_many.join(",")
        ))
        .await;
    assert_eq!(error_code(&body), "1003");
    emu.shutdown().await;
}

#[tokio::test]
async fn paging_token_maps_since_datetime_and_parameters_are_checked() {
    let emu = start(quiet_config()).await;
    emu.create_leads(vec![json!({"email": "old@x.com"})]).await;
    // A future sinceDatetime starts after everything logged so far.
    let future = since_token(&emu, "2999-01-01T00:00:00Z").await;
    emu.create_leads(vec![json!({"email": "new@x.com"})]).await;
    let (records, _, _) = drain(
        &emu,
        "/rest/v1/activities/leadchanges.json?fields=email",
        &future,
    )
    .await;
    assert_eq!(records.len(), 1);
    // Errors: missing/invalid sinceDatetime, bad token, missing fields, > 10 activity types.
    assert_eq!(
        error_code(&emu.get("/rest/v1/activities/pagingtoken.json").await),
        "701"
    );
    assert_eq!(
        error_code(
            &emu.get("/rest/v1/activities/pagingtoken.json?sinceDatetime=yesterday")
                .await
        ),
        "1001"
    );
    assert_eq!(
        error_code(
            &emu.get("/rest/v1/activities/leadchanges.json?fields=email&nextPageToken=@@")
                .await
        ),
        "1003"
    );
    assert_eq!(
        error_code(
            &emu.get(&format!(
                "/rest/v1/activities/leadchanges.json?nextPageToken={future}"
            ))
            .await
        ),
        "701"
    );
    let body = emu
        .get(&format!("/rest/v1/activities.json?nextPageToken={future}&activityTypeIds=1,2,3,4,5,6,7,8,9,10,11"))
        .await;
    assert_eq!(error_code(&body), "1003");
    assert_eq!(
        error_code(
            &emu.get(&format!("/rest/v1/activities.json?nextPageToken={future}"))
                .await
        ),
        "701"
    );
    // Activity types: not paged, doc-confirmed ids present.
    let types = emu.get("/rest/v1/activities/types.json").await;
    let ids: Vec<i64> = types["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect();
    for id in [1, 2, 7, 9, 10, 11, 12, 13, 37, 104] {
        assert!(ids.contains(&id), "type {id} missing");
    }
    let cdv = types["result"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == 13)
        .unwrap();
    assert_eq!(cdv["name"], "Change Data Value");
    emu.shutdown().await;
}

#[tokio::test]
async fn marketer_edits_log_non_api_activities() {
    let emu = start(quiet_config()).await;
    let token = since_token(&emu, "2020-01-01T00:00:00Z").await;
    let (status, created) = emu
        .admin(
            "/_emulator/marketer-edits",
            json!({"create": {"email": "m@x.com", "firstName": "M"}}),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let id = created["id"].as_i64().unwrap();
    let (status, edited) = emu
        .admin(
            "/_emulator/marketer-edits",
            json!({"leadId": id, "fields": {"title": "VP", "firstName": "M"}}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(edited["changed"], json!(["title"]));
    let (changes, _, _) = drain(
        &emu,
        "/rest/v1/activities/leadchanges.json?fields=title",
        &token,
    )
    .await;
    assert_eq!(changes.len(), 2);
    let change = &changes[1];
    assert_eq!(attr(change, "Source"), Some(&json!("Marketo Flow Action")));
    assert!(
        attr(change, "Reason")
            .and_then(Value::as_str)
            .unwrap()
            .starts_with("Changed by Smart Campaign")
    );
    assert!(attr(change, "Api Method Name").is_none() && attr(change, "Modifying User").is_none());
    // Bad bodies: 400 with a JSON error; unknown lead 404; delete as marketer.
    let (status, body) = emu
        .admin(
            "/_emulator/marketer-edits",
            json!({"leadId": id, "fields": {"nope": 1}}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().unwrap().contains("nope"));
    let (status, _) = emu
        .admin(
            "/_emulator/marketer-edits",
            json!({"leadId": 999999, "fields": {}}),
        )
        .await;
    assert_eq!(status, 404);
    let response = emu
        .http
        .post(emu.url("/_emulator/marketer-edits"))
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let (status, _) = emu
        .admin("/_emulator/marketer-edits", json!({"deleteLeadId": id}))
        .await;
    assert_eq!(status, 200);
    let (deleted, _, _) = drain(&emu, "/rest/v1/activities/deletedleads.json", &token).await;
    assert_eq!(deleted.len(), 1);
    assert!(attr(&deleted[0], "Api Method Name").is_none());
    emu.shutdown().await;
}
