//! Companies, opportunities and opportunity roles (marketo-rest.md §5).

mod common;

use common::{error_code, quiet_config, start};
use serde_json::{Value, json};

fn statuses(body: &Value) -> Vec<String> {
    body["result"]
        .as_array()
        .unwrap_or_else(|| panic!("no result: {body}"))
        .iter()
        .map(|r| match r["reasons"][0]["code"].as_str() {
            Some(code) => format!("{}:{code}", r["status"].as_str().unwrap_or("")),
            None => r["status"].as_str().unwrap_or("").to_string(),
        })
        .collect()
}

#[tokio::test]
async fn companies_describe_sync_query_delete() {
    let emu = start(quiet_config()).await;
    let d = emu.get("/rest/v1/companies/describe.json").await;
    assert_eq!(d["result"][0]["idField"], "id");
    assert_eq!(d["result"][0]["dedupeFields"], json!(["externalCompanyId"]));
    assert!(
        d["result"][0]["searchableFields"]
            .as_array()
            .unwrap()
            .contains(&json!(["company"]))
    );

    let body = emu
        .post(
            "/rest/v1/companies.json",
            json!({"action": "createOrUpdate", "dedupeBy": "dedupeFields", "input": [
                {"externalCompanyId": "C1", "company": "Acme", "numberOfEmployees": 50},
                {"externalCompanyId": "C2", "company": "Globex"},
                {"externalCompanyId": "C1", "company": "Acme again"},
                {"company": "No key"},
                {"externalCompanyId": "C3", "numberOfEmployees": "lots"},
            ]}),
        )
        .await;
    assert_eq!(
        statuses(&body),
        [
            "created",
            "created",
            "skipped:1036",
            "skipped:1002",
            "skipped:1001"
        ]
    );
    assert_eq!(body["result"][0]["seq"], 0);
    assert_eq!(body["result"][1]["seq"], 1);
    let c1 = body["result"][0]["id"].as_i64().unwrap();

    let body = emu
        .post(
            "/rest/v1/companies.json",
            json!({"input": [{"externalCompanyId": "C1", "industry": "Tools"}]}),
        )
        .await;
    assert_eq!(
        body["result"][0],
        json!({"seq": 0, "status": "updated", "id": c1})
    );
    let body = emu
        .post(
            "/rest/v1/companies.json",
            json!({"action": "createOnly", "input": [{"externalCompanyId": "C1"}]}),
        )
        .await;
    assert_eq!(statuses(&body), ["skipped:1017"]);
    let body = emu
        .post(
            "/rest/v1/companies.json",
            json!({"action": "updateOnly", "input": [{"externalCompanyId": "C9"}]}),
        )
        .await;
    assert_eq!(statuses(&body), ["skipped:1013"]);
    let body = emu
        .post("/rest/v1/companies.json", json!({"action": "updateOnly", "dedupeBy": "idField", "input": [{"id": c1, "sicCode": "1234"}]}))
        .await;
    assert_eq!(statuses(&body), ["updated"]);
    let body = emu
        .post(
            "/rest/v1/companies.json",
            json!({"dedupeBy": "idField", "input": [{"id": c1}]}),
        )
        .await;
    assert_eq!(error_code(&body), "1003");

    // Query by dedupe field, by id, by company name; default fields; unknown filterType.
    let q = emu
        .get("/rest/v1/companies.json?filterType=externalCompanyId&filterValues=C1,C2")
        .await;
    let rows = q["result"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["seq"], 0);
    assert!(rows[0].get("createdAt").is_some() && rows[0].get("id").is_some());
    let q = emu.get(&format!("/rest/v1/companies.json?filterType=id&filterValues={c1}&fields=company,industry,sicCode")).await;
    assert_eq!(
        q["result"],
        json!([{"seq": 0, "id": c1, "company": "Acme", "industry": "Tools", "sicCode": "1234"}]),
        "seq and the idField come with every projection"
    );
    let q = emu.get("/rest/v1/companies.json?filterType=company&filterValues=Globex&fields=externalCompanyId").await;
    assert_eq!(q["result"][0]["externalCompanyId"], "C2");
    assert_eq!(
        error_code(
            &emu.get("/rest/v1/companies.json?filterType=industry&filterValues=x")
                .await
        ),
        "1003"
    );
    assert_eq!(
        error_code(
            &emu.get("/rest/v1/companies.json?filterType=id&filterValues=1&fields=nope")
                .await
        ),
        "1006"
    );

    let body = emu
        .post("/rest/v1/companies/delete.json", json!({"deleteBy": "dedupeFields", "input": [{"externalCompanyId": "C2"}, {"externalCompanyId": "C404"}]}))
        .await;
    assert_eq!(statuses(&body), ["deleted", "skipped:1013"]);
    let body = emu
        .post(
            "/rest/v1/companies/delete.json",
            json!({"deleteBy": "idField", "input": [{"id": c1}]}),
        )
        .await;
    assert_eq!(
        body["result"][0],
        json!({"seq": 0, "status": "deleted", "id": c1})
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn opportunities_and_roles_with_compound_keys() {
    let emu = start(quiet_config()).await;
    let d = emu.get("/rest/v1/opportunities/describe.json").await;
    assert_eq!(d["result"][0]["idField"], "marketoGUID");
    assert_eq!(
        d["result"][0]["dedupeFields"],
        json!(["externalOpportunityId"])
    );
    let body = emu
        .post(
            "/rest/v1/opportunities.json",
            json!({"input": [
                {"externalOpportunityId": "O1", "name": "Deal", "amount": 1200.5, "stage": "Proposal", "closeDate": "2026-12-01"},
                {"externalOpportunityId": "O2"},
            ]}),
        )
        .await;
    assert_eq!(statuses(&body), ["created", "skipped:1003"]);
    let guid = body["result"][0]["marketoGUID"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(guid.len(), 36);
    let q = emu
        .get(&format!("/rest/v1/opportunities.json?filterType=marketoGUID&filterValues={guid}&fields=name,amount,closeDate"))
        .await;
    assert_eq!(
        q["result"],
        json!([{"seq": 0, "marketoGUID": guid, "name": "Deal", "amount": "1200.5", "closeDate": "2026-12-01"}]),
        "opportunity amounts are strings like the real service"
    );

    let lead = emu.create_leads(vec![json!({"email": "role@x.com"})]).await[0];
    let d = emu.get("/rest/v1/opportunities/roles/describe.json").await;
    assert_eq!(
        d["result"][0]["dedupeFields"],
        json!(["externalOpportunityId", "leadId", "role"])
    );
    let body = emu
        .post(
            "/rest/v1/opportunities/roles.json",
            json!({"input": [
                {"externalOpportunityId": "O1", "leadId": lead, "role": "Captain", "isPrimary": true},
                {"externalOpportunityId": "O404", "leadId": lead, "role": "Captain"},
                {"externalOpportunityId": "O1", "leadId": 999999, "role": "Captain"},
            ]}),
        )
        .await;
    assert_eq!(statuses(&body), ["created", "skipped:1013", "skipped:1004"]);
    // Compound-key query: POST ?_method=GET with a JSON body.
    let q: Value = emu
        .http
        .post(emu.url("/rest/v1/opportunities/roles.json?_method=GET"))
        .bearer_auth(&emu.token)
        .json(&json!({"filterType": "dedupeFields", "fields": ["marketoGUID", "role", "isPrimary"],
                      "input": [{"externalOpportunityId": "O1", "leadId": lead, "role": "Captain"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(q["result"][0]["role"], "Captain", "{q}");
    assert_eq!(q["result"][0]["isPrimary"], true);
    let q = emu
        .get(&format!(
            "/rest/v1/opportunities/roles.json?filterType=leadId&filterValues={lead}"
        ))
        .await;
    assert_eq!(q["result"].as_array().unwrap().len(), 1);
    let body = emu
        .post(
            "/rest/v1/opportunities/roles/delete.json",
            json!({"input": [{"externalOpportunityId": "O1", "leadId": lead, "role": "Captain"}]}),
        )
        .await;
    assert_eq!(statuses(&body), ["deleted"]);
    let body = emu
        .post(
            "/rest/v1/opportunities/delete.json",
            json!({"deleteBy": "idField", "input": [{"marketoGUID": guid}]}),
        )
        .await;
    assert_eq!(statuses(&body), ["deleted"]);
    assert_eq!(
        error_code(
            &emu.post("/rest/v1/opportunities.json", json!({"input": []}))
                .await
        ),
        "701"
    );
    emu.shutdown().await;
}
