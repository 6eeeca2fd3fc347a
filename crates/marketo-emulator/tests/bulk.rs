//! Bulk extract of leads and activities (marketo-rest.md §6).

mod common;

use std::time::Duration;

use chrono::{Duration as Span, Utc};
use common::{Emu, error_code, quiet_config, start};
use mdsync_marketo_emulator::Config;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn window(days_back: i64, days_forward: i64) -> Value {
    let fmt = |t: chrono::DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    json!({"startAt": fmt(Utc::now() - Span::days(days_back)), "endAt": fmt(Utc::now() + Span::days(days_forward))})
}

async fn wait_completed(emu: &Emu, kind: &str, id: &str) -> Value {
    for _ in 0..200 {
        let status = emu
            .get(&format!("/bulk/v1/{kind}/export/{id}/status.json"))
            .await;
        let job = status["result"][0].clone();
        match job["status"].as_str() {
            Some("Completed") => return job,
            Some("Queued") | Some("Processing") => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            other => panic!("unexpected status {other:?}: {status}"),
        }
    }
    panic!("export never completed");
}

#[tokio::test]
async fn lead_export_lifecycle_file_ranges_and_checksum() {
    let emu = start(quiet_config()).await;
    emu.create_leads(vec![
        json!({"email": "e1@x.com", "firstName": "Ann, \"Quoted\""}),
        json!({"email": "e2@x.com"}),
        json!({"email": "e3@x.com", "firstName": "Zoë"}),
    ])
    .await;
    let created = emu
        .post(
            "/bulk/v1/leads/export/create.json",
            json!({"fields": ["id", "email", "firstName"], "format": "CSV",
                   "columnHeaderNames": {"email": "Email"}, "filter": {"createdAt": window(1, 1)}}),
        )
        .await;
    let job = &created["result"][0];
    assert_eq!(job["status"], "Created", "{created}");
    assert_eq!(job["format"], "CSV");
    assert!(job.get("fileSize").is_none());
    let id = job["exportId"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 36);

    // The file is a plain-text 404 until the job completes.
    let early = emu
        .http
        .get(emu.url(&format!("/bulk/v1/leads/export/{id}/file.json")))
        .bearer_auth(&emu.token)
        .send()
        .await
        .unwrap();
    assert_eq!(early.status(), 404);
    assert!(
        early.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );

    let queued = emu
        .post(
            &format!("/bulk/v1/leads/export/{id}/enqueue.json"),
            json!(null),
        )
        .await;
    assert_eq!(queued["result"][0]["status"], "Queued", "{queued}");
    assert!(queued["result"][0]["queuedAt"].is_string());
    let again = emu
        .post(
            &format!("/bulk/v1/leads/export/{id}/enqueue.json"),
            json!(null),
        )
        .await;
    let code = if again["success"] == false {
        error_code(&again).to_string()
    } else {
        String::new()
    };
    assert!(code == "1029" || code == "1003", "{again}");

    let done = wait_completed(&emu, "leads", &id).await;
    assert_eq!(done["numberOfRecords"], 3);
    let response = emu
        .http
        .get(emu.url(&format!("/bulk/v1/leads/export/{id}/file.json")))
        .bearer_auth(&emu.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.bytes().await.unwrap();
    assert_eq!(done["fileSize"], body.len());
    assert_eq!(
        done["fileChecksum"],
        format!("sha256:{}", hex::encode(Sha256::digest(&body)))
    );
    let text = String::from_utf8(body.to_vec()).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("id,Email,firstName"));
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 3);
    assert!(
        rows[0].ends_with(",e1@x.com,\"Ann, \"\"Quoted\"\"\""),
        "{}",
        rows[0]
    );
    assert!(
        rows[1].ends_with(",e2@x.com,null"),
        "null literal: {}",
        rows[1]
    );
    assert!(rows[2].ends_with("Zoë"));

    // Bulk files are never gzipped.
    let raw = reqwest::Client::builder().no_gzip().build().unwrap();
    let plain = raw
        .get(emu.url(&format!("/bulk/v1/leads/export/{id}/file.json")))
        .bearer_auth(&emu.token)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    assert_eq!(plain.bytes().await.unwrap(), text.as_bytes());

    // Range requests: 206 with Content-Range; tap-marketo's bytes=0-0 probe.
    let partial = emu
        .http
        .get(emu.url(&format!("/bulk/v1/leads/export/{id}/file.json")))
        .bearer_auth(&emu.token)
        .header("Range", "bytes=0-9")
        .send()
        .await
        .unwrap();
    assert_eq!(partial.status(), 206);
    assert_eq!(
        partial.headers()["content-range"],
        format!("bytes 0-9/{}", text.len())
    );
    assert_eq!(partial.headers()["accept-ranges"], "bytes");
    assert_eq!(partial.bytes().await.unwrap(), &text.as_bytes()[..10]);
    let tail = emu
        .http
        .get(emu.url(&format!("/bulk/v1/leads/export/{id}/file.json")))
        .bearer_auth(&emu.token)
        .header("Range", "bytes=10-")
        .send()
        .await
        .unwrap();
    assert_eq!(tail.bytes().await.unwrap(), &text.as_bytes()[10..]);

    // Listing by status; only the creating user sees its jobs.
    let list = emu
        .get("/bulk/v1/leads/export.json?status=Completed&status=Failed")
        .await;
    assert_eq!(list["result"].as_array().unwrap().len(), 1);
    let d = emu.running.description().clone();
    let other = common::token(
        &emu.http,
        &d.url,
        &d.other_client_id,
        &d.other_client_secret,
    )
    .await;
    let theirs: Value = emu
        .http
        .get(emu.url(&format!("/bulk/v1/leads/export/{id}/status.json")))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(error_code(&theirs), "1003");
    // Completed jobs cannot be cancelled; node-marketo-rest's dot-segment path works.
    let cancel = emu
        .post(
            &format!("/rest/../bulk/v1/leads/export/{id}/cancel.json"),
            json!(null),
        )
        .await;
    assert_eq!(error_code(&cancel), "1003");
    emu.shutdown().await;
}

#[tokio::test]
async fn export_requests_are_validated() {
    let emu = start(quiet_config()).await;
    let create = |body: Value| emu.post("/bulk/v1/leads/export/create.json", body);
    assert_eq!(
        error_code(&create(json!({"filter": {"createdAt": window(1, 0)}})).await),
        "701"
    );
    assert_eq!(
        error_code(
            &create(json!({"fields": ["nope"], "filter": {"createdAt": window(1, 0)}})).await
        ),
        "1003"
    );
    assert_eq!(
        error_code(
            &create(json!({"fields": ["id"], "filter": {"createdAt": window(40, 0)}})).await
        ),
        "1003"
    );
    assert_eq!(
        error_code(
            &create(
                json!({"fields": ["id"], "format": "XML", "filter": {"createdAt": window(1, 0)}})
            )
            .await
        ),
        "1003"
    );
    assert_eq!(error_code(&create(json!({"fields": ["id"]})).await), "701");
    assert_eq!(
        error_code(&create(json!({"fields": ["id"], "filter": {"createdAt": window(1, 0), "updatedAt": window(1, 0)}})).await),
        "1003"
    );
    let bad = emu
        .post(
            "/bulk/v1/activities/export/create.json",
            json!({"filter": {"createdAt": window(1, 0), "activityTypeIds": [37]}}),
        )
        .await;
    assert_eq!(error_code(&bad), "1003");
    assert_eq!(
        error_code(
            &emu.get("/bulk/v1/leads/export/00000000-0000-0000-0000-000000000000/status.json")
                .await
        ),
        "1003"
    );
    assert_eq!(
        error_code(&emu.get("/bulk/v1/programs/export.json").await),
        "610"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn activity_export_has_default_columns_and_json_attributes() {
    let emu = start(quiet_config()).await;
    // A deleted lead takes its activities with it: only its Delete Lead record stays, and that one is
    // never exported.
    let ids = emu
        .create_leads(vec![
            json!({"email": "act@x.com", "title": "A"}),
            json!({"email": "gone@x.com", "title": "A"}),
        ])
        .await;
    emu.post(
        "/rest/v1/leads.json",
        json!({"input": [{"email": "act@x.com", "title": "B"}]}),
    )
    .await;
    emu.post(
        "/rest/v1/leads/delete.json",
        json!({"input": [{"id": ids[1]}]}),
    )
    .await;
    let created = emu
        .post(
            "/bulk/v1/activities/export/create.json",
            json!({"format": "TSV", "filter": {"createdAt": window(1, 1), "activityTypeIds": [12, 13]}}),
        )
        .await;
    let export = created["result"][0]["exportId"]
        .as_str()
        .unwrap()
        .to_string();
    emu.post(
        &format!("/bulk/v1/activities/export/{export}/enqueue.json"),
        json!(null),
    )
    .await;
    let done = wait_completed(&emu, "activities", &export).await;
    assert_eq!(
        done["numberOfRecords"], 2,
        "the deleted lead's New Lead and its Delete Lead are not exported"
    );
    let text = emu
        .http
        .get(emu.url(&format!("/bulk/v1/activities/export/{export}/file.json")))
        .bearer_auth(&emu.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(
            "marketoGUID\tleadId\tactivityDate\tactivityTypeId\tcampaignId\tprimaryAttributeValueId\tprimaryAttributeValue\tattributes"
        )
    );
    let change: Vec<&str> = lines.nth(1).unwrap().split('\t').collect();
    assert_eq!(change[3], "13");
    assert_eq!(change[4], "null");
    assert_eq!(change[6], "Job Title");
    let attributes: Value =
        serde_json::from_str(&change[7].trim_matches('"').replace("\"\"", "\"")).unwrap();
    assert_eq!(attributes["New Value"], "B");
    assert_eq!(attributes["Old Value"], "A");
    assert_eq!(attributes["Source"], "Web service API");
    emu.shutdown().await;
}

#[tokio::test]
async fn bulk_limits_answer_1029_and_cancel_works() {
    // No processing slot frees up while the status delay holds the first job, so the queue fills.
    let emu = start(Config {
        bulk_max_queued: 2,
        bulk_max_processing: 1,
        bulk_status_delay: Duration::from_secs(3),
        ..Config::default()
    })
    .await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let created = emu
            .post(
                "/bulk/v1/leads/export/create.json",
                json!({"fields": ["id"], "filter": {"updatedAt": window(1, 0)}}),
            )
            .await;
        ids.push(
            created["result"][0]["exportId"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    for id in &ids[..2] {
        let q = emu
            .post(
                &format!("/bulk/v1/leads/export/{id}/enqueue.json"),
                json!(null),
            )
            .await;
        assert_eq!(q["success"], true, "{q}");
    }
    let full = emu
        .post(
            &format!("/bulk/v1/leads/export/{}/enqueue.json", ids[2]),
            json!(null),
        )
        .await;
    assert_eq!(error_code(&full), "1029");
    assert_eq!(full["errors"][0]["message"], "Too many jobs in queue");
    let again = emu
        .post(
            &format!("/bulk/v1/leads/export/{}/enqueue.json", ids[0]),
            json!(null),
        )
        .await;
    assert_eq!(error_code(&again), "1029");
    assert_eq!(again["errors"][0]["message"], "Job already queued");
    let cancelled = emu
        .post(
            &format!("/bulk/v1/leads/export/{}/cancel.json", ids[1]),
            json!(null),
        )
        .await;
    assert_eq!(cancelled["result"][0]["status"], "Cancelled");
    let status = emu
        .get(&format!("/bulk/v1/leads/export/{}/status.json", ids[1]))
        .await;
    assert_eq!(status["result"][0]["status"], "Cancelled");
    let now_room = emu
        .post(
            &format!("/bulk/v1/leads/export/{}/enqueue.json", ids[2]),
            json!(null),
        )
        .await;
    assert_eq!(now_room["success"], true, "{now_room}");
    emu.shutdown().await;

    // The daily export volume.
    let emu = start(Config {
        bulk_daily_bytes: 1,
        ..Config::default()
    })
    .await;
    emu.create_leads(vec![json!({"email": "q@x.com"})]).await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let created = emu
            .post(
                "/bulk/v1/leads/export/create.json",
                json!({"fields": ["id"], "filter": {"createdAt": window(1, 1)}}),
            )
            .await;
        ids.push(
            created["result"][0]["exportId"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    emu.post(
        &format!("/bulk/v1/leads/export/{}/enqueue.json", ids[0]),
        json!(null),
    )
    .await;
    wait_completed(&emu, "leads", &ids[0]).await;
    let over = emu
        .post(
            &format!("/bulk/v1/leads/export/{}/enqueue.json", ids[1]),
            json!(null),
        )
        .await;
    assert_eq!(error_code(&over), "1029");
    assert_eq!(
        over["errors"][0]["message"],
        "Export daily quota 0MB exceeded."
    );
    emu.shutdown().await;
}
