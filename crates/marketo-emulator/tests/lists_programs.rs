//! Endpoints that answered 610 before and so aborted tap-marketo streams and node-marketo-rest calls:
//! static lists and membership, campaigns, programs (Asset API), push lead, associate, named-account
//! describe, the custom-object list.

mod common;

use common::{Emu, error_code, quiet_config, start};
use serde_json::{Value, json};

fn statuses(body: &Value) -> Vec<String> {
    body["result"]
        .as_array()
        .unwrap_or_else(|| panic!("no result: {body}"))
        .iter()
        .map(|r| match r["status"].as_str() {
            Some("skipped") => format!(
                "skipped:{}",
                r["reasons"][0]["code"].as_str().unwrap_or("?")
            ),
            Some(s) => s.to_string(),
            None => "?".into(),
        })
        .collect()
}

async fn admin_created(emu: &Emu, path: &str, body: Value) -> Value {
    let (status, created) = emu.admin(path, body).await;
    assert_eq!(status, 201, "{created}");
    created
}

async fn send(emu: &Emu, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let mut request = emu
        .http
        .request(method, emu.url(path))
        .bearer_auth(&emu.token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json")
}

#[tokio::test]
async fn static_lists_page_and_their_members_are_added_checked_read_and_removed() {
    let emu = start(quiet_config()).await;
    let empty = emu.get("/rest/v1/lists.json").await;
    assert_eq!(empty["success"], true, "{empty}");
    assert_eq!(empty["result"], json!([]));
    let a = admin_created(
        &emu,
        "/_emulator/lists",
        json!({"name": "Invitees", "programName": "Spring"}),
    )
    .await;
    let b = admin_created(&emu, "/_emulator/lists", json!({"name": "CRM Campaign"})).await;
    let a_id = a["id"].as_i64().expect("id");
    let b_id = b["id"].as_i64().expect("id");

    // Token paging with batchSize (tap-marketo's lists stream).
    let first = emu.get("/rest/v1/lists.json?batchSize=1").await;
    assert_eq!(first["result"][0]["name"], "Invitees");
    assert_eq!(first["result"][0]["programName"], "Spring");
    assert_eq!(first["result"][0]["workspaceName"], "Default");
    assert!(
        first["result"][0]["createdAt"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    assert_eq!(first["moreResult"], true);
    let token = first["nextPageToken"].as_str().expect("token");
    let second = emu
        .get(&format!(
            "/rest/v1/lists.json?batchSize=1&nextPageToken={token}"
        ))
        .await;
    assert_eq!(second["result"][0]["id"], b_id);
    assert!(second.get("nextPageToken").is_none(), "{second}");
    // Filters by name (node-marketo-rest sends them through POST ?_method=GET).
    let by_name = emu
        .post(
            "/rest/v1/lists.json?_method=GET",
            json!({"name": ["CRM Campaign"]}),
        )
        .await;
    assert_eq!(
        by_name["result"].as_array().map(Vec::len),
        Some(1),
        "{by_name}"
    );
    assert_eq!(
        emu.get(&format!("/rest/v1/lists/{a_id}.json")).await["result"][0]["name"],
        "Invitees"
    );
    assert_eq!(
        error_code(&emu.get("/rest/v1/lists/9999.json").await),
        "1013"
    );

    let leads = emu
        .create_leads(vec![
            json!({"email": "m1@x.com", "firstName": "M1"}),
            json!({"email": "m2@x.com", "firstName": "M2"}),
            json!({"email": "m3@x.com", "firstName": "M3"}),
        ])
        .await;
    // Add: ids in the query (the docs) or a JSON input (node-marketo-rest, mrp).
    let added = emu
        .post(
            &format!("/rest/v1/lists/{a_id}/leads.json?id={}&id=999999", leads[0]),
            json!(null),
        )
        .await;
    assert_eq!(statuses(&added), ["added", "skipped:1004"]);
    assert_eq!(added["result"][0]["id"], leads[0]);
    assert_eq!(added["result"][1]["id"], 999999);
    let added = emu
        .post(
            &format!("/rest/v1/lists/{a_id}/leads.json"),
            json!({"input": [{"id": leads[1]}, {"id": leads[2]}]}),
        )
        .await;
    assert_eq!(statuses(&added), ["added", "added"]);
    assert_eq!(
        error_code(
            &emu.post(
                "/rest/v1/lists/9999/leads.json",
                json!({"input": [{"id": leads[0]}]})
            )
            .await
        ),
        "1013"
    );

    let check = emu
        .get(&format!(
            "/rest/v1/lists/{b_id}/leads/ismember.json?id={},999999",
            leads[0]
        ))
        .await;
    assert_eq!(statuses(&check), ["notmemberof", "skipped:1004"]);
    let check = emu
        .get(&format!(
            "/rest/v1/lists/{a_id}/leads/ismember.json?id={}",
            leads[0]
        ))
        .await;
    assert_eq!(statuses(&check), ["memberof"]);

    // Members as lead records, paged, `id` always there; the older singular path works too.
    let page = emu
        .get(&format!(
            "/rest/v1/lists/{a_id}/leads.json?batchSize=2&fields=firstName"
        ))
        .await;
    assert_eq!(
        page["result"],
        json!([{"id": leads[0], "firstName": "M1"}, {"id": leads[1], "firstName": "M2"}])
    );
    let token = page["nextPageToken"].as_str().expect("more members");
    let rest = emu
        .get(&format!(
            "/rest/v1/list/{a_id}/leads.json?batchSize=2&nextPageToken={token}"
        ))
        .await;
    assert_eq!(rest["result"][0]["email"], "m3@x.com");
    assert!(rest.get("nextPageToken").is_none());

    // Remove (DELETE with ids in the query, as node-marketo-rest sends it).
    let removed = send(
        &emu,
        reqwest::Method::DELETE,
        &format!(
            "/rest/v1/lists/{a_id}/leads.json?id={}&id={}&id=999999",
            leads[1], leads[1]
        ),
        None,
    )
    .await;
    assert_eq!(
        statuses(&removed),
        ["removed", "skipped:1015", "skipped:1004"]
    );

    // activities.json / leadchanges.json take a listId; a deleted lead leaves its lists.
    let token = emu
        .get("/rest/v1/activities/pagingtoken.json?sinceDatetime=2020-01-01T00:00:00Z")
        .await["nextPageToken"]
        .as_str()
        .expect("token")
        .to_string();
    let changes = emu
        .get(&format!(
            "/rest/v1/activities/leadchanges.json?fields=email&listId={a_id}&nextPageToken={token}"
        ))
        .await;
    let ids: Vec<i64> = changes["result"]
        .as_array()
        .expect("result")
        .iter()
        .filter_map(|c| c["leadId"].as_i64())
        .collect();
    assert_eq!(ids, [leads[0], leads[2]], "{changes}");
    assert_eq!(
        error_code(
            &emu.get(&format!(
                "/rest/v1/activities/leadchanges.json?fields=email&listId=9999&nextPageToken={token}"
            ))
            .await
        ),
        "1013"
    );
    emu.post(
        "/rest/v1/leads/delete.json",
        json!({"input": [{"id": leads[0]}]}),
    )
    .await;
    let page = emu.get(&format!("/rest/v1/lists/{a_id}/leads.json")).await;
    assert_eq!(page["result"].as_array().map(Vec::len), Some(1), "{page}");
    emu.shutdown().await;
}

#[tokio::test]
async fn campaigns_and_programs_page_like_the_real_service() {
    let emu = start(quiet_config()).await;
    let none = emu.get("/rest/v1/campaigns.json?batchSize=300").await;
    assert_eq!(none["success"], true, "{none}");
    assert_eq!(none["result"], json!([]));
    let programs = emu
        .get("/rest/asset/v1/programs.json?maxReturn=200&offset=0")
        .await;
    assert_eq!(programs["success"], true);
    assert!(programs.get("result").is_none(), "{programs}");
    assert_eq!(
        programs["warnings"],
        json!(["No assets found for the given search criteria."])
    );

    let spring = admin_created(
        &emu,
        "/_emulator/programs",
        json!({"name": "Spring Webinar", "type": "Event", "channel": "Webinar"}),
    )
    .await;
    admin_created(&emu, "/_emulator/programs", json!({"name": "Nurture"})).await;
    let page = emu
        .get("/rest/asset/v1/programs.json?maxReturn=1&offset=0")
        .await;
    assert_eq!(page["result"][0]["name"], "Spring Webinar");
    assert_eq!(page["result"][0]["type"], "Event");
    assert_eq!(page["result"][0]["channel"], "Webinar");
    assert_eq!(page["errors"], json!([]));
    assert_eq!(page["warnings"], json!([]));
    let next = emu
        .get("/rest/asset/v1/programs.json?maxReturn=1&offset=1")
        .await;
    assert_eq!(next["result"][0]["name"], "Nurture");
    let past = emu
        .get("/rest/asset/v1/programs.json?maxReturn=1&offset=2")
        .await;
    assert_eq!(
        past["warnings"][0],
        "No assets found for the given search criteria."
    );
    let window = emu
        .get("/rest/asset/v1/programs.json?earliestUpdatedAt=2000-01-01T00:00:00Z&latestUpdatedAt=2000-01-02T00:00:00Z")
        .await;
    assert!(window.get("result").is_none(), "{window}");
    assert_eq!(
        error_code(&emu.get("/rest/asset/v1/programs.json?maxReturn=201").await),
        "1003"
    );

    let first = admin_created(
        &emu,
        "/_emulator/campaigns",
        json!({"name": "Batch one", "programName": "Spring Webinar"}),
    )
    .await;
    admin_created(
        &emu,
        "/_emulator/campaigns",
        json!({"name": "Trigger two", "type": "trigger", "active": true}),
    )
    .await;
    assert_eq!(first["programId"], spring["id"]);
    let page = emu.get("/rest/v1/campaigns.json?batchSize=1").await;
    assert_eq!(page["result"][0]["name"], "Batch one");
    assert_eq!(page["result"][0]["type"], "batch");
    assert_eq!(page["result"][0]["programName"], "Spring Webinar");
    let token = page["nextPageToken"].as_str().expect("token");
    let rest = emu
        .get(&format!(
            "/rest/v1/campaigns.json?batchSize=1&nextPageToken={token}"
        ))
        .await;
    assert_eq!(rest["result"][0]["active"], true);
    assert!(rest.get("nextPageToken").is_none());
    let id = first["id"].as_i64().expect("id");
    assert_eq!(
        emu.get(&format!("/rest/v1/campaigns/{id}.json")).await["result"][0]["name"],
        "Batch one"
    );
    assert_eq!(
        error_code(&emu.get("/rest/v1/campaigns/9999.json").await),
        "1013"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn push_lead_upserts_into_a_program_and_associate_links_a_cookie() {
    let emu = start(quiet_config()).await;
    let existing = emu
        .create_leads(vec![json!({"email": "known@x.com"})])
        .await[0];
    let missing = emu
        .post(
            "/rest/v1/leads/push.json",
            json!({"programName": "Nope", "input": [{"email": "p@x.com"}]}),
        )
        .await;
    assert_eq!(error_code(&missing), "1013");
    assert_eq!(
        error_code(
            &emu.post(
                "/rest/v1/leads/push.json",
                json!({"input": [{"email": "p@x.com"}]})
            )
            .await
        ),
        "1002"
    );
    admin_created(&emu, "/_emulator/programs", json!({"name": "Whitepaper"})).await;
    let pushed = emu
        .post(
            "/rest/v1/leads/push.json",
            json!({"programName": "Whitepaper", "lookupField": "email", "source": "web", "reason": "download",
                   "input": [{"email": "known@x.com", "firstName": "Known"}, {"email": "new@x.com"}, {"email": "bad"}]}),
        )
        .await;
    assert_eq!(statuses(&pushed), ["updated", "created", "skipped:1003"]);
    assert_eq!(pushed["result"][0]["id"], existing);
    let lead = emu
        .get(&format!("/rest/v1/lead/{existing}.json?fields=firstName"))
        .await;
    assert_eq!(lead["result"][0]["firstName"], "Known");

    let cookie = "id:123-ABC-456&token:_mch-example.com-1680000000000-12345";
    let encoded = cookie.replace('&', "%26");
    let ok = emu
        .post(
            &format!("/rest/v1/leads/{existing}/associate.json?cookie={encoded}"),
            json!({}),
        )
        .await;
    assert_eq!(ok["success"], true, "{ok}");
    assert!(ok.get("result").is_none());
    let found = emu
        .get(&format!(
            "/rest/v1/leads.json?filterType=cookies&filterValues={encoded}"
        ))
        .await;
    assert_eq!(found["result"][0]["id"], existing, "{found}");
    assert_eq!(
        error_code(
            &emu.post(
                &format!("/rest/v1/leads/{existing}/associate.json?cookie=garbage"),
                json!({})
            )
            .await
        ),
        "1012"
    );
    assert_eq!(
        error_code(
            &emu.post(
                &format!("/rest/v1/leads/999999/associate.json?cookie={encoded}"),
                json!({})
            )
            .await
        ),
        "1004"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn named_account_describe_and_the_custom_object_list_answer() {
    let emu = start(quiet_config()).await;
    let d = emu.get("/rest/v1/namedaccounts/describe.json").await;
    assert_eq!(d["success"], true, "{d}");
    assert_eq!(d["result"][0]["idField"], "marketoGUID");
    assert_eq!(d["result"][0]["dedupeFields"], json!(["name"]));
    assert!(
        d["result"][0]["fields"]
            .as_array()
            .expect("fields")
            .iter()
            .any(|f| f["name"] == "domainName")
    );
    let co = emu.get("/rest/v1/customobjects.json").await;
    assert_eq!(co["success"], true, "{co}");
    assert_eq!(co["result"], json!([]));
    assert_eq!(
        error_code(&emu.get("/rest/v1/nothing/here.json").await),
        "610"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn lead_exports_filter_by_static_list() {
    let emu = start(quiet_config()).await;
    let list = admin_created(
        &emu,
        "/_emulator/lists",
        json!({"name": "Campaign members"}),
    )
    .await;
    let list_id = list["id"].as_i64().expect("id");
    let leads = emu
        .create_leads(vec![
            json!({"email": "in1@x.com"}),
            json!({"email": "out@x.com"}),
            json!({"email": "in2@x.com"}),
        ])
        .await;
    emu.post(
        &format!("/rest/v1/lists/{list_id}/leads.json"),
        json!({"input": [{"id": leads[0]}, {"id": leads[2]}]}),
    )
    .await;
    let missing = emu
        .post(
            "/bulk/v1/leads/export/create.json",
            json!({"fields": ["id"], "filter": {"staticListName": "Nope"}}),
        )
        .await;
    assert_eq!(error_code(&missing), "1003");
    let two = emu
        .post(
            "/bulk/v1/leads/export/create.json",
            json!({"fields": ["id"], "filter": {"staticListId": list_id,
                   "createdAt": {"startAt": "2024-01-01T00:00:00Z", "endAt": "2024-01-02T00:00:00Z"}}}),
        )
        .await;
    assert_eq!(error_code(&two), "1003", "exactly one filter");
    for filter in [
        json!({"staticListId": list_id}),
        json!({"staticListName": "Campaign members"}),
    ] {
        let created = emu
            .post(
                "/bulk/v1/leads/export/create.json",
                json!({"fields": ["id", "email"], "filter": filter}),
            )
            .await;
        let export = created["result"][0]["exportId"]
            .as_str()
            .unwrap_or_else(|| panic!("{created}"))
            .to_string();
        emu.post(
            &format!("/bulk/v1/leads/export/{export}/enqueue.json"),
            json!(null),
        )
        .await;
        let mut status = Value::Null;
        for _ in 0..200 {
            status = emu
                .get(&format!("/bulk/v1/leads/export/{export}/status.json"))
                .await["result"][0]
                .clone();
            if status["status"] == "Completed" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        assert_eq!(status["numberOfRecords"], 2, "{status}");
        let text = emu
            .http
            .get(emu.url(&format!("/bulk/v1/leads/export/{export}/file.json")))
            .bearer_auth(&emu.token)
            .send()
            .await
            .expect("file")
            .text()
            .await
            .expect("text");
        assert_eq!(
            text.lines().collect::<Vec<_>>(),
            [
                "id,email".to_string(),
                format!("{},in1@x.com", leads[0]),
                format!("{},in2@x.com", leads[2])
            ]
        );
    }
    emu.shutdown().await;
}
