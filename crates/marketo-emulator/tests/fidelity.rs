//! Details real clients tripped over: ids never reused (also in stores written before the fix), `id` and
//! the idField in every projection, deleted leads taking their activities with them, 612 for JSON sent as
//! a form, 32-bit integers, the New Lead lead-change shape, a second enqueue, the 1035 knob.

mod common;

use common::{Emu, error_code, quiet_config, start};
use mdsync_marketo_emulator::Config;
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

async fn delete_leads(emu: &Emu, ids: &[i64]) {
    let input: Vec<Value> = ids.iter().map(|id| json!({"id": id})).collect();
    let body = emu
        .post("/rest/v1/leads/delete.json", json!({"input": input}))
        .await;
    assert!(statuses(&body).iter().all(|s| s == "deleted"), "{body}");
}

async fn paging_token(emu: &Emu) -> String {
    let body = emu
        .get("/rest/v1/activities/pagingtoken.json?sinceDatetime=2020-01-01T00:00:00Z")
        .await;
    body["nextPageToken"].as_str().expect("token").to_string()
}

/// Every record of an incremental endpoint from `token` on.
async fn drain(emu: &Emu, path: &str, mut token: String) -> Vec<Value> {
    let mut records = Vec::new();
    for _ in 0..100 {
        let page = emu.get(&format!("{path}&nextPageToken={token}")).await;
        assert_eq!(page["success"], true, "{page}");
        records.extend(page["result"].as_array().cloned().unwrap_or_default());
        token = page["nextPageToken"].as_str().expect("token").to_string();
        if page["moreResult"] == false {
            return records;
        }
    }
    panic!("paging never ended");
}

#[tokio::test]
async fn lead_and_company_ids_are_never_reused_after_the_highest_is_deleted() {
    let emu = start(quiet_config()).await;
    let ids = emu
        .create_leads(vec![
            json!({"email": "a@x.com"}),
            json!({"email": "b@x.com"}),
            json!({"email": "c@x.com"}),
        ])
        .await;
    delete_leads(&emu, &[ids[2]]).await;
    let again = emu.create_leads(vec![json!({"email": "d@x.com"})]).await;
    assert!(again[0] > ids[2], "{ids:?} then {again:?}");

    let body = emu
        .post(
            "/rest/v1/companies.json",
            json!({"input": [{"externalCompanyId": "C1", "company": "One"}, {"externalCompanyId": "C2", "company": "Two"}]}),
        )
        .await;
    let c2 = body["result"][1]["id"].as_i64().expect("company id");
    let body = emu
        .post(
            "/rest/v1/companies/delete.json",
            json!({"input": [{"externalCompanyId": "C2"}]}),
        )
        .await;
    assert_eq!(statuses(&body), ["deleted"]);
    let body = emu
        .post(
            "/rest/v1/companies.json",
            json!({"input": [{"externalCompanyId": "C3", "company": "Three"}]}),
        )
        .await;
    assert!(body["result"][0]["id"].as_i64().expect("id") > c2, "{body}");
    emu.shutdown().await;
}

/// A store written by the emulator before ids were AUTOINCREMENT: leads 1–3, lead 7 deleted (only its
/// activities remain), company 4. After the upgrade its rows are intact and new ids start past 7 and 4.
#[tokio::test]
async fn stores_from_before_the_fix_are_migrated_and_keep_their_high_water_mark() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let conn = rusqlite::Connection::open(dir.path().join("marketo.sqlite")).expect("open");
        conn.execute_batch(
            r#"CREATE TABLE leads(
                id INTEGER PRIMARY KEY, email_key TEXT, partition_id INTEGER NOT NULL DEFAULT 1,
                created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, data TEXT NOT NULL);
            CREATE INDEX leads_email ON leads(email_key);
            CREATE TABLE activities(
                id INTEGER PRIMARY KEY, lead_id INTEGER NOT NULL, activity_at INTEGER NOT NULL,
                type_id INTEGER NOT NULL, pav_id INTEGER, pav TEXT, fields TEXT, attributes TEXT NOT NULL);
            CREATE INDEX activities_at ON activities(activity_at);
            CREATE TABLE objects(
                id INTEGER PRIMARY KEY, kind TEXT NOT NULL, guid TEXT NOT NULL, dedupe TEXT NOT NULL,
                data TEXT NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
                UNIQUE(kind, dedupe));
            INSERT INTO leads VALUES
                (1, 'old1@x.com', 1, 1700000000, 1700000000, '{"email":"old1@x.com","firstName":"Old"}'),
                (2, 'old2@x.com', 1, 1700000000, 1700000000, '{"email":"old2@x.com"}'),
                (3, 'old3@x.com', 1, 1700000000, 1700000000, '{"email":"old3@x.com"}');
            INSERT INTO activities(lead_id, activity_at, type_id, pav_id, pav, fields, attributes)
                VALUES (7, 1700000000, 12, 7, 'Gone', NULL, '[]'), (7, 1700000001, 37, 7, 'Gone', NULL, '[]');
            INSERT INTO objects VALUES
                (4, 'company', 'g-4', '["C4"]', '{"externalCompanyId":"C4","company":"Four"}', 1700000000, 1700000000);"#,
        )
        .expect("old schema");
    }
    let emu = start(Config {
        state_dir: Some(dir.path().to_path_buf()),
        ..quiet_config()
    })
    .await;
    let old = emu.get("/rest/v1/lead/1.json?fields=email,firstName").await;
    assert_eq!(
        old["result"],
        json!([{"id": 1, "email": "old1@x.com", "firstName": "Old"}])
    );
    let by_email = emu
        .get("/rest/v1/leads.json?filterType=email&filterValues=old2@x.com")
        .await;
    assert_eq!(by_email["result"][0]["id"], 2, "email index rebuilt");
    let new = emu.create_leads(vec![json!({"email": "new@x.com"})]).await;
    assert_eq!(
        new,
        [8],
        "past the deleted lead 7 its activities still name"
    );
    let body = emu
        .post(
            "/rest/v1/companies.json",
            json!({"input": [{"externalCompanyId": "C5", "company": "Five"}]}),
        )
        .await;
    assert_eq!(body["result"][0]["id"], 5, "{body}");
    emu.shutdown().await;

    // Reopening the migrated store changes nothing.
    let emu = start(Config {
        state_dir: Some(dir.path().to_path_buf()),
        ..quiet_config()
    })
    .await;
    let new = emu
        .create_leads(vec![json!({"email": "newer@x.com"})])
        .await;
    assert_eq!(new, [9]);
    emu.shutdown().await;
}

#[tokio::test]
async fn projections_always_carry_the_id() {
    let emu = start(quiet_config()).await;
    let ids = emu
        .create_leads(vec![
            json!({"email": "one@x.com", "firstName": "One"}),
            json!({"email": "two@x.com", "firstName": "Two"}),
        ])
        .await;
    // node-marketo-rest fixture lead-by-id-with-email-filter.
    let one = emu
        .get(&format!("/rest/v1/lead/{}.json?fields=email", ids[0]))
        .await;
    assert_eq!(one["result"], json!([{"id": ids[0], "email": "one@x.com"}]));
    // node-marketo-rest fixture find-by-multiple-ids-and-retrieve-a-subset-of-fields.
    let many = emu
        .get(&format!(
            "/rest/v1/leads.json?filterType=id&filterValues={},{}&fields=email,firstName",
            ids[0], ids[1]
        ))
        .await;
    assert_eq!(
        many["result"],
        json!([
            {"id": ids[0], "email": "one@x.com", "firstName": "One"},
            {"id": ids[1], "email": "two@x.com", "firstName": "Two"},
        ])
    );
    let keys: Vec<&String> = many["result"][0]
        .as_object()
        .expect("object")
        .keys()
        .collect();
    assert_eq!(keys[0], "id", "id comes first like the real service");
    // Asking for id explicitly does not duplicate it.
    let explicit = emu
        .get(&format!(
            "/rest/v1/lead/{}.json?fields=firstName,id",
            ids[1]
        ))
        .await;
    assert_eq!(
        explicit["result"],
        json!([{"id": ids[1], "firstName": "Two"}])
    );

    let body = emu
        .post(
            "/rest/v1/opportunities.json",
            json!({"input": [{"externalOpportunityId": "O1", "name": "Deal", "amount": 99.5}]}),
        )
        .await;
    let guid = body["result"][0]["marketoGUID"]
        .as_str()
        .expect("guid")
        .to_string();
    let q = emu
        .get("/rest/v1/opportunities.json?filterType=dedupeFields&filterValues=O1&fields=amount")
        .await;
    assert_eq!(
        q["result"],
        json!([{"seq": 0, "marketoGUID": guid, "amount": "99.5"}])
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn a_deleted_leads_activities_go_with_it_but_its_delete_record_stays() {
    let emu = start(quiet_config()).await;
    let token = paging_token(&emu).await;
    let ids = emu
        .create_leads(vec![
            json!({"email": "keep@x.com", "title": "A"}),
            json!({"email": "gone@x.com", "title": "A"}),
        ])
        .await;
    emu.post(
        "/rest/v1/leads.json",
        json!({"input": [{"email": "keep@x.com", "title": "B"}, {"email": "gone@x.com", "title": "B"}]}),
    )
    .await;
    delete_leads(&emu, &[ids[1]]).await;

    let changes = drain(
        &emu,
        "/rest/v1/activities/leadchanges.json?fields=title",
        token.clone(),
    )
    .await;
    let leads: Vec<i64> = changes
        .iter()
        .filter_map(|c| c["leadId"].as_i64())
        .collect();
    assert_eq!(leads, [ids[0], ids[0]], "{changes:?}");
    let all = drain(
        &emu,
        "/rest/v1/activities.json?activityTypeIds=12,13,37",
        token.clone(),
    )
    .await;
    let gone: Vec<i64> = all
        .iter()
        .filter(|a| a["leadId"] == ids[1])
        .filter_map(|a| a["activityTypeId"].as_i64())
        .collect();
    assert_eq!(gone, [37], "only Delete Lead remains: {all:?}");
    let deleted = drain(
        &emu,
        "/rest/v1/activities/deletedleads.json?batchSize=300",
        token,
    )
    .await;
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0]["leadId"], ids[1]);
    emu.shutdown().await;
}

#[tokio::test]
async fn new_lead_lead_changes_have_empty_fields_and_no_lead_id_attribute() {
    let emu = start(quiet_config()).await;
    let token = paging_token(&emu).await;
    let id = emu
        .create_leads(vec![json!({"email": "nl@x.com", "firstName": "A"})])
        .await[0];
    emu.post(
        "/rest/v1/leads.json",
        json!({"input": [{"email": "nl@x.com", "firstName": "B"}]}),
    )
    .await;
    let changes = drain(
        &emu,
        "/rest/v1/activities/leadchanges.json?fields=firstName",
        token,
    )
    .await;
    assert_eq!(changes.len(), 2, "{changes:?}");
    let new_lead = &changes[0];
    assert_eq!(new_lead["activityTypeId"], 12);
    assert_eq!(new_lead["fields"], json!([]));
    let names: Vec<&str> = new_lead["attributes"]
        .as_array()
        .expect("attributes")
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert!(
        names.contains(&"Source Type") && names.contains(&"Created Date"),
        "{names:?}"
    );
    assert!(!names.contains(&"Lead ID"), "{names:?}");
    let change = &changes[1];
    assert_eq!(change["activityTypeId"], 13);
    assert_eq!(change["fields"][0]["name"], "firstName");
    let last = change["attributes"]
        .as_array()
        .expect("attributes")
        .last()
        .cloned();
    assert_eq!(last, Some(json!({"name": "Lead ID", "value": id})));
    emu.shutdown().await;
}

#[tokio::test]
async fn json_sent_as_a_form_is_612_and_integers_are_32_bit() {
    let emu = start(quiet_config()).await;
    let form = |body: &'static str, path: &str| {
        emu.http
            .post(emu.url(path))
            .bearer_auth(&emu.token)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
    };
    let body: Value = form(r#"{"input":[{"email":"f@x.com"}]}"#, "/rest/v1/leads.json")
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(error_code(&body), "612", "{body}");
    assert_eq!(body["errors"][0]["message"], "Invalid Content Type");
    // A real form on a JSON-only endpoint is 612 too, not a missing input.
    let body: Value = form("action=createOnly", "/rest/v1/leads.json")
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(error_code(&body), "612", "{body}");
    // Forms stay fine where Marketo takes them (`_method=GET` reads).
    let body: Value = form(
        "filterType=email&filterValues=none@x.com",
        "/rest/v1/leads.json?_method=GET",
    )
    .send()
    .await
    .expect("send")
    .json()
    .await
    .expect("json");
    assert_eq!(body["success"], true, "{body}");

    let body = emu
        .post(
            "/rest/v1/leads.json",
            json!({"input": [
                {"email": "i1@x.com", "numberOfEmployees": 2147483647},
                {"email": "i2@x.com", "numberOfEmployees": 2147483648i64},
                {"email": "i3@x.com", "leadScore": "-2147483649"},
                {"email": "i4@x.com", "numberOfEmployees": "99999999999999999999999"},
                {"email": "i5@x.com", "numberOfEmployees": -2147483648i64},
            ]}),
        )
        .await;
    assert_eq!(
        statuses(&body),
        [
            "created",
            "skipped:1003",
            "skipped:1003",
            "skipped:1003",
            "created"
        ]
    );
    let message = body["result"][1]["reasons"][0]["message"]
        .as_str()
        .expect("message");
    assert!(
        message.contains("numberOfEmployees") && message.contains("2147483647"),
        "{message}"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn a_second_enqueue_is_1029_and_the_1035_knob_refuses_updated_at_exports() {
    // The status delay keeps the job Queued long enough for the second call.
    let emu = start(Config {
        bulk_status_delay: std::time::Duration::from_secs(30),
        ..quiet_config()
    })
    .await;
    let window = json!({"startAt": "2024-01-01T00:00:00Z", "endAt": "2024-01-20T00:00:00Z"});
    let created = emu
        .post(
            "/bulk/v1/leads/export/create.json",
            json!({"fields": ["id"], "filter": {"updatedAt": window}}),
        )
        .await;
    let export = created["result"][0]["exportId"]
        .as_str()
        .expect("id")
        .to_string();
    let path = format!("/bulk/v1/leads/export/{export}/enqueue.json");
    let first = emu.post(&path, json!(null)).await;
    assert_eq!(first["success"], true, "{first}");
    let second = emu.post(&path, json!(null)).await;
    assert_eq!(error_code(&second), "1029");
    assert_eq!(second["errors"][0]["message"], "Job already queued");
    let cancel = emu
        .post(
            &format!("/bulk/v1/leads/export/{export}/cancel.json"),
            json!(null),
        )
        .await;
    assert_eq!(cancel["result"][0]["status"], "Cancelled", "{cancel}");
    emu.shutdown().await;

    let emu = start(Config {
        bulk_updated_at_filter_unsupported: true,
        ..quiet_config()
    })
    .await;
    let probe = emu
        .post(
            "/bulk/v1/leads/export/create.json",
            json!({"fields": ["id"], "filter": {"updatedAt": window}}),
        )
        .await;
    assert_eq!(error_code(&probe), "1035");
    assert_eq!(
        probe["errors"][0]["message"],
        "Unsupported filter type for target subscription"
    );
    let created = emu
        .post(
            "/bulk/v1/leads/export/create.json",
            json!({"fields": ["id"], "filter": {"createdAt": window}}),
        )
        .await;
    assert_eq!(created["success"], true, "createdAt still works: {created}");
    emu.shutdown().await;
}
