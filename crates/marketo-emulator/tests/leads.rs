//! Leads: sync, query, get, delete, describe, schema fields, partitions, merge (marketo-rest.md §3).

mod common;

use common::{error_code, quiet_config, start};
use serde_json::{Value, json};

fn statuses(body: &Value) -> Vec<String> {
    body["result"]
        .as_array()
        .unwrap_or_else(|| panic!("no result: {body}"))
        .iter()
        .map(|r| {
            let s = r["status"].as_str().unwrap_or("").to_string();
            match r["reasons"][0]["code"].as_str() {
                Some(code) => format!("{s}:{code}"),
                None => s,
            }
        })
        .collect()
}

#[tokio::test]
async fn sync_actions_give_per_record_statuses_in_input_order() {
    let emu = start(quiet_config()).await;
    let created = emu
        .post(
            "/rest/v1/leads.json",
            json!({"input": [{"email": "ann@x.com", "firstName": "Ann"}, {"email": "bob@x.com"}]}),
        )
        .await;
    assert_eq!(statuses(&created), ["created", "created"]);
    let ann = created["result"][0]["id"].as_i64().unwrap();

    // createOrUpdate (default) updates by email, case-insensitively; createOnly skips existing (1005).
    let body = emu
        .post(
            "/rest/v1/leads.json",
            json!({"input": [{"email": "ANN@x.com", "lastName": "Lee"}, {"email": "cid@x.com"}]}),
        )
        .await;
    assert_eq!(statuses(&body), ["updated", "created"]);
    assert_eq!(body["result"][0]["id"], ann);
    let body = emu
        .post(
            "/rest/v1/leads.json",
            json!({"action": "createOnly", "input": [{"email": "ann@x.com"}]}),
        )
        .await;
    assert_eq!(
        body["result"][0]["reasons"][0],
        json!({"code": "1005", "message": "Lead already exists"})
    );

    // updateOnly: 1004 when nothing matches; lookup by id allowed only there.
    let body = emu
        .post(
            "/rest/v1/leads.json",
            json!({"action": "updateOnly", "input": [{"email": "nobody@x.com", "title": "X"}]}),
        )
        .await;
    assert_eq!(
        body["result"][0]["reasons"][0],
        json!({"code": "1004", "message": "Lead not found"})
    );
    let body = emu
        .post(
            "/rest/v1/leads.json",
            json!({"action": "updateOnly", "lookupField": "id", "input": [{"id": ann, "title": "CTO"}]}),
        )
        .await;
    assert_eq!(statuses(&body), ["updated"]);
    let body = emu
        .post(
            "/rest/v1/leads.json",
            json!({"action": "createOnly", "lookupField": "id", "input": [{"id": 1}]}),
        )
        .await;
    assert_eq!(error_code(&body), "1003");
    let body = emu
        .post(
            "/rest/v1/leads.json",
            json!({"lookupField": "firstName", "input": [{"firstName": "A"}]}),
        )
        .await;
    assert_eq!(error_code(&body), "1011");

    // createDuplicate always inserts; then an email lookup matches two leads: 1007.
    let body = emu
        .post(
            "/rest/v1/leads.json",
            json!({"action": "createDuplicate", "input": [{"email": "ann@x.com"}]}),
        )
        .await;
    assert_eq!(statuses(&body), ["created"]);
    let body = emu
        .post(
            "/rest/v1/leads.json",
            json!({"input": [{"email": "ann@x.com", "title": "Y"}]}),
        )
        .await;
    assert_eq!(
        body["result"][0]["reasons"][0],
        json!({"code": "1007", "message": "Multiple leads match the lookup criteria"})
    );

    // Field validation: unknown field 1006, wrong type 1001, too long 1003; others in the batch still go.
    let body = emu
        .post(
            "/rest/v1/leads.json",
            json!({"input": [
                {"email": "v1@x.com", "noSuchField": "x"},
                {"email": "v2@x.com", "numberOfEmployees": "many"},
                {"email": "v3@x.com", "firstName": "x".repeat(256)},
                {"email": "v4@x.com", "numberOfEmployees": "42", "unsubscribed": "TRUE", "dateOfBirth": "1990-05-04"},
            ]}),
        )
        .await;
    assert_eq!(
        statuses(&body),
        ["skipped:1006", "skipped:1001", "skipped:1003", "created"]
    );
    assert_eq!(
        body["result"][0]["reasons"][0]["message"],
        "Field 'noSuchField' not found"
    );
    assert_eq!(
        body["result"][1]["reasons"][0]["message"],
        "Invalid value 'many'. Required of type 'integer'"
    );
    let v4 = body["result"][3]["id"].as_i64().unwrap();
    let got = emu
        .get(&format!(
            "/rest/v1/lead/{v4}.json?fields=numberOfEmployees,unsubscribed,dateOfBirth,title"
        ))
        .await;
    assert_eq!(
        got["result"][0],
        json!({"id": v4, "numberOfEmployees": 42, "unsubscribed": true, "dateOfBirth": "1990-05-04"}),
        "`id` comes with every projection"
    );

    // More than 300 records, missing input, bad action.
    let many: Vec<Value> = (0..301)
        .map(|i| json!({"email": format!("m{i}@x.com")}))
        .collect();
    assert_eq!(
        error_code(
            &emu.post("/rest/v1/leads.json", json!({"input": many}))
                .await
        ),
        "1003"
    );
    assert_eq!(
        error_code(
            &emu.post("/rest/v1/leads.json", json!({"action": "createOnly"}))
                .await
        ),
        "701"
    );
    assert_eq!(
        error_code(
            &emu.post(
                "/rest/v1/leads.json",
                json!({"action": "upsert", "input": [{}]})
            )
            .await
        ),
        "1003"
    );
    // Company fields on a lead linked to a company: 1021.
    let body = emu
        .post(
            "/rest/v1/leads.json",
            json!({"input": [{"email": "co@x.com", "externalCompanyId": "C1", "company": "Acme"}]}),
        )
        .await;
    assert_eq!(statuses(&body), ["skipped:1021"]);
    emu.shutdown().await;
}

#[tokio::test]
async fn query_by_filter_pages_and_reports_real_errors() {
    let emu = start(quiet_config()).await;
    let records: Vec<Value> = (0..7)
        .map(|i| json!({"email": format!("p{i}@x.com"), "firstName": format!("P{i}"), "title": "Engineer"}))
        .collect();
    let ids = emu.create_leads(records).await;
    let all: Vec<String> = ids.iter().map(i64::to_string).collect();

    // Default fields; nulls omitted; pages of batchSize with nextPageToken only while more rows exist.
    let mut token: Option<String> = None;
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let mut path = format!(
            "/rest/v1/leads.json?filterType=id&filterValues={}&batchSize=3",
            all.join(",")
        );
        if let Some(t) = &token {
            path.push_str(&format!("&nextPageToken={t}"));
        }
        let page = emu.get(&path).await;
        assert_eq!(page["success"], true, "{page}");
        pages += 1;
        for r in page["result"].as_array().unwrap() {
            let keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
            assert!(
                keys.iter().all(|k| [
                    "id",
                    "email",
                    "firstName",
                    "lastName",
                    "createdAt",
                    "updatedAt"
                ]
                .contains(k)),
                "{keys:?}"
            );
            seen.push(r["id"].as_i64().unwrap());
        }
        match page["nextPageToken"].as_str() {
            Some(t) => {
                assert_eq!(page["moreResult"], true);
                token = Some(t.to_string());
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ids);

    // By email (case-insensitive) with fields.
    let page = emu.get("/rest/v1/leads.json?filterType=email&filterValues=P3@X.COM,none@x.com&fields=email,title").await;
    let p3 = page["result"][0]["id"]
        .as_i64()
        .expect("id is always returned");
    assert!(ids.contains(&p3), "{page}");
    assert_eq!(
        page["result"],
        json!([{"id": p3, "email": "p3@x.com", "title": "Engineer"}])
    );
    assert!(page.get("nextPageToken").is_none());
    // No match: success with an empty result.
    let page = emu
        .get("/rest/v1/leads.json?filterType=email&filterValues=zzz@x.com")
        .await;
    assert_eq!(page["result"], json!([]));
    // updatedAt and firstName are not filterable (1011); unknown fields in `fields` give 1006.
    let page = emu
        .get("/rest/v1/leads.json?filterType=updatedAt&filterValues=2020-01-01")
        .await;
    assert_eq!(error_code(&page), "1011");
    assert_eq!(
        page["errors"][0]["message"],
        "Field 'updatedAt' not supported"
    );
    assert_eq!(
        error_code(
            &emu.get("/rest/v1/leads.json?filterType=firstName&filterValues=P1")
                .await
        ),
        "1011"
    );
    assert_eq!(
        error_code(
            &emu.get("/rest/v1/leads.json?filterType=id&filterValues=1&fields=bogus")
                .await
        ),
        "1006"
    );
    assert_eq!(
        error_code(&emu.get("/rest/v1/leads.json?filterType=id").await),
        "1002"
    );
    // A bad paging token is refused.
    assert_eq!(
        error_code(
            &emu.get("/rest/v1/leads.json?filterType=id&filterValues=1&nextPageToken=%21%21")
                .await
        ),
        "1003"
    );
    // Get by id; an unknown id is an empty result.
    let one = emu.get(&format!("/rest/v1/lead/{}.json", ids[0])).await;
    assert_eq!(one["result"][0]["email"], "p0@x.com");
    assert_eq!(
        emu.get("/rest/v1/lead/999999.json").await["result"],
        json!([])
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn more_than_1000_matches_is_1003() {
    let emu = start(quiet_config()).await;
    let (status, _) = emu
        .admin("/_emulator/seed", json!({"seed": 1, "leads": 1001}))
        .await;
    assert_eq!(status, 200);
    let page = emu
        .get("/rest/v1/leads.json?filterType=leadPartitionId&filterValues=1")
        .await;
    assert_eq!(error_code(&page), "1003");
    assert_eq!(
        page["errors"][0]["message"],
        "Too many results match the filter"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn custom_fields_are_created_described_searchable_and_validated() {
    let emu = start(quiet_config()).await;
    let body = emu
        .post(
            "/rest/v1/leads/schema/fields.json",
            json!({"input": [
                {"displayName": "Microsoft Id", "name": "msftId", "dataType": "string", "description": "CRM id"},
                {"displayName": "Microsoft Type", "name": "msftType", "dataType": "string"},
                {"displayName": "Microsoft Is Deleted", "name": "msftIsDeleted", "dataType": "boolean"},
                {"displayName": "Microsoft Created Date", "name": "msftCreatedDate", "dataType": "datetime"},
                {"displayName": "Dup", "name": "email", "dataType": "string"},
                {"displayName": "Bad Name", "name": "9lives", "dataType": "string"},
                {"displayName": "Bad Type", "name": "badType", "dataType": "blob"},
                {"name": "noDisplay", "dataType": "string"},
            ]}),
        )
        .await;
    assert_eq!(
        statuses(&body),
        [
            "created",
            "created",
            "created",
            "created",
            "skipped:1017",
            "skipped:1003",
            "skipped:1003",
            "skipped:1002"
        ]
    );
    assert_eq!(
        body["result"][0],
        json!({"name": "msftId", "status": "created"})
    );

    let field = emu.get("/rest/v1/leads/schema/fields/msftId.json").await;
    assert_eq!(field["result"][0]["isCustom"], true);
    assert_eq!(field["result"][0]["dataType"], "string");
    assert_eq!(field["result"][0]["length"], 255);
    assert_eq!(
        error_code(&emu.get("/rest/v1/leads/schema/fields/nope.json").await),
        "1006"
    );

    // Listing pages through every field.
    let mut names = Vec::new();
    let mut path = "/rest/v1/leads/schema/fields.json?batchSize=20".to_string();
    loop {
        let page = emu.get(&path).await;
        for f in page["result"].as_array().unwrap() {
            names.push(f["name"].as_str().unwrap().to_string());
        }
        match page["nextPageToken"].as_str() {
            Some(t) if page["moreResult"] == true => {
                path = format!("/rest/v1/leads/schema/fields.json?batchSize=20&nextPageToken={t}")
            }
            _ => break,
        }
    }
    assert!(names.contains(&"email".to_string()) && names.contains(&"msftCreatedDate".to_string()));

    // describe / describe2 carry REST names, types, lengths and read-only flags.
    let describe = emu.get("/rest/v1/leads/describe.json").await;
    let msft = describe["result"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rest"]["name"] == "msftId")
        .unwrap()
        .clone();
    assert_eq!(msft["dataType"], "string");
    assert_eq!(msft["rest"]["readOnly"], false);
    let updated = describe["result"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rest"]["name"] == "updatedAt")
        .unwrap()
        .clone();
    assert_eq!(updated["rest"]["readOnly"], true);
    let d2 = emu.get("/rest/v1/leads/describe2.json").await;
    assert_eq!(d2["result"][0]["name"], "API Lead");
    let searchable = d2["result"][0]["searchableFields"].as_array().unwrap();
    assert!(searchable.contains(&json!(["msftId"])) && searchable.contains(&json!(["email"])));
    assert!(!searchable.contains(&json!(["updatedAt"])));

    // Custom values are validated by type, and a searchable custom field works as filter and lookup.
    let body = emu
        .post(
            "/rest/v1/leads.json",
            json!({"input": [
                {"email": "crm1@x.com", "msftId": "A-1", "msftType": "contact", "msftIsDeleted": false, "msftCreatedDate": "2024-01-02T03:04:05+01:00"},
                {"email": "crm2@x.com", "msftIsDeleted": "maybe"},
            ]}),
        )
        .await;
    assert_eq!(statuses(&body), ["created", "skipped:1001"]);
    let crm1 = body["result"][0]["id"].clone();
    let page = emu.get("/rest/v1/leads.json?filterType=msftId&filterValues=a-1&fields=email,msftCreatedDate,msftIsDeleted").await;
    assert_eq!(
        page["result"],
        json!([{"id": crm1, "email": "crm1@x.com", "msftCreatedDate": "2024-01-02T02:04:05Z", "msftIsDeleted": false}])
    );
    let body = emu
        .post("/rest/v1/leads.json", json!({"lookupField": "msftId", "input": [{"msftId": "A-1", "firstName": "Via CRM id"}]}))
        .await;
    assert_eq!(statuses(&body), ["updated"]);

    // Updating a field's metadata.
    let body = emu
        .post(
            "/rest/v1/leads/schema/fields/msftId.json",
            json!({"input": [{"displayName": "CRM Id"}]}),
        )
        .await;
    assert_eq!(
        body["result"][0],
        json!({"name": "msftId", "status": "updated"})
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn delete_partitions_and_merge() {
    let emu = start(quiet_config()).await;
    let ids = emu
        .create_leads(vec![
            json!({"email": "w@x.com", "firstName": "Win"}),
            json!({"email": "l1@x.com", "title": "Loser title", "city": "Oslo"}),
            json!({"email": "l2@x.com"}),
            json!({"email": "d@x.com"}),
        ])
        .await;
    // Delete: body form, query form, unknown id skipped with 1004.
    let body = emu
        .post(
            "/rest/v1/leads/delete.json",
            json!({"input": [{"id": ids[3]}, {"id": 999999}]}),
        )
        .await;
    assert_eq!(
        body["result"][0],
        json!({"id": ids[3], "status": "deleted"})
    );
    assert_eq!(
        body["result"][1]["reasons"][0],
        json!({"code": "1004", "message": "Lead not found"})
    );
    let body = emu
        .post(
            &format!("/rest/v1/leads/delete.json?id={}", ids[3]),
            json!({}),
        )
        .await;
    assert_eq!(statuses(&body), ["skipped:1004"]);

    // Partitions: a new one (test surface), moving a lead, unknown names.
    let (status, _) = emu
        .admin("/_emulator/partitions", json!({"name": "Europe"}))
        .await;
    assert_eq!(status, 201);
    let parts = emu.get("/rest/v1/leads/partitions.json").await;
    assert_eq!(parts["result"].as_array().unwrap().len(), 2);
    let body = emu
        .post("/rest/v1/leads/partitions.json", json!({"input": [{"id": ids[2], "partitionName": "Europe"}, {"id": ids[2], "partitionName": "Mars"}]}))
        .await;
    assert_eq!(statuses(&body), ["updated", "skipped:1008"]);
    let got = emu
        .get(&format!(
            "/rest/v1/lead/{}.json?fields=leadPartitionId",
            ids[2]
        ))
        .await;
    assert_eq!(got["result"][0]["leadPartitionId"], 2);
    // Sync into a partition; an existing lead in another partition cannot move (1010).
    let body = emu
        .post("/rest/v1/leads.json", json!({"partitionName": "Europe", "input": [{"email": "eu@x.com"}, {"email": "w@x.com"}]}))
        .await;
    assert_eq!(statuses(&body), ["created", "skipped:1010"]);

    // Merge: losers' values fill the winner's empty fields, losers disappear; the result has no `result`.
    let merged: Value = emu
        .http
        .post(emu.url(&format!(
            "/rest/v1/leads/{}/merge.json?leadIds={},{}&mergeInCRM=False",
            ids[0], ids[1], ids[2]
        )))
        .bearer_auth(&emu.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(merged["success"], true, "{merged}");
    assert!(merged.get("result").is_none());
    let winner = emu
        .get(&format!(
            "/rest/v1/lead/{}.json?fields=email,firstName,title,city",
            ids[0]
        ))
        .await;
    assert_eq!(
        winner["result"][0],
        json!({"id": ids[0], "email": "w@x.com", "firstName": "Win", "title": "Loser title", "city": "Oslo"})
    );
    assert_eq!(
        emu.get(&format!("/rest/v1/lead/{}.json", ids[1])).await["result"],
        json!([])
    );
    let none: Value = emu
        .http
        .post(emu.url(&format!("/rest/v1/leads/{}/merge.json", ids[0])))
        .bearer_auth(&emu.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(error_code(&none), "1003");
    assert_eq!(
        none["errors"][0]["message"],
        "Losing lead ids not specified"
    );
    let too_many: Vec<String> = (1..=26).map(|i| i.to_string()).collect();
    let body: Value = emu
        .http
        .post(emu.url(&format!(
            "/rest/v1/leads/{}/merge.json?leadIds={}",
            ids[0],
            too_many.join(",")
        )))
        .bearer_auth(&emu.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(error_code(&body), "1080");
    emu.shutdown().await;
}
