//! Sales persons (`/rest/v1/salespersons*.json`): where the sync engine sends Dynamics system users (record
//! owners); leads, companies and opportunities point at them through `externalSalesPersonId`.

mod common;

use common::{error_code, quiet_config, start};
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

#[tokio::test]
async fn sales_persons_describe_sync_query_and_delete() {
    let emu = start(quiet_config()).await;
    let d = emu.get("/rest/v1/salespersons/describe.json").await;
    let d = &d["result"][0];
    assert_eq!(d["name"], "SalesPerson");
    assert_eq!(d["idField"], "id");
    assert_eq!(d["dedupeFields"], json!(["externalSalesPersonId"]));
    assert_eq!(
        d["searchableFields"],
        json!([["email"], ["id"], ["externalSalesPersonId"]])
    );
    let names: Vec<&str> = d["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    for name in [
        "id",
        "externalSalesPersonId",
        "email",
        "firstName",
        "lastName",
        "phone",
        "title",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }

    let body = emu
        .post(
            "/rest/v1/salespersons.json",
            json!({"action": "createOrUpdate", "dedupeBy": "dedupeFields", "input": [
                {"externalSalesPersonId": "sam@test.com", "email": "sam@test.com", "firstName": "Sam", "lastName": "Sanosin"},
                {"externalSalesPersonId": "david@test.com", "email": "david@test.com", "firstName": "David", "title": "AE"},
                {"externalSalesPersonId": "sam@test.com", "firstName": "Twice"},
                {"email": "nokey@test.com"},
            ]}),
        )
        .await;
    assert_eq!(
        statuses(&body),
        ["created", "created", "skipped:1036", "skipped:1002"]
    );
    assert_eq!(body["result"][1]["seq"], 1);
    let sam = body["result"][0]["id"].as_i64().expect("integer id");
    let body = emu
        .post(
            "/rest/v1/salespersons.json",
            json!({"input": [{"externalSalesPersonId": "sam@test.com", "phone": "+1 555 0100"}]}),
        )
        .await;
    assert_eq!(statuses(&body), ["updated"]);
    assert_eq!(body["result"][0]["id"], sam);

    let q = emu
        .get("/rest/v1/salespersons.json?filterType=dedupeFields&filterValues=sam@test.com,david@test.com")
        .await;
    let rows = q["result"].as_array().expect("rows");
    assert_eq!(rows.len(), 2, "{q}");
    assert_eq!(rows[0]["seq"], 0);
    assert_eq!(rows[0]["externalSalesPersonId"], "sam@test.com");
    let q = emu
        .get(&format!(
            "/rest/v1/salespersons.json?filterType=id&filterValues={sam}&fields=phone,firstName"
        ))
        .await;
    assert_eq!(
        q["result"],
        json!([{"seq": 0, "id": sam, "phone": "+1 555 0100", "firstName": "Sam"}])
    );
    let q = emu
        .get("/rest/v1/salespersons.json?filterType=email&filterValues=david@test.com&fields=title")
        .await;
    assert_eq!(q["result"][0]["title"], "AE");

    // A lead owned by Sam: Sam is in use and cannot go; David can; unknown owners are skipped.
    emu.create_leads(vec![
        json!({"email": "owned@x.com", "externalSalesPersonId": "sam@test.com"}),
    ])
    .await;
    let body = emu
        .post(
            "/rest/v1/salespersons/delete.json",
            json!({"deleteBy": "dedupeFields", "input": [
                {"externalSalesPersonId": "sam@test.com"},
                {"externalSalesPersonId": "david@test.com"},
                {"externalSalesPersonId": "raj@test.com"},
            ]}),
        )
        .await;
    assert_eq!(statuses(&body), ["skipped:1022", "deleted", "skipped:1013"]);
    assert_eq!(body["result"][1]["seq"], 1);
    assert!(body["result"][1]["id"].as_i64().is_some());
    assert_eq!(
        error_code(
            &emu.get("/rest/v1/salespersons.json?filterType=firstName&filterValues=Sam")
                .await
        ),
        "1003"
    );
    emu.shutdown().await;
}
