//! Identity, the envelope and the transport rules (marketo-rest.md §0–§2, §9 items 1–4).

mod common;

use std::time::Duration;

use common::{error_code, quiet_config, start, token};
use mdsync_marketo_emulator::{Config, spawn};
use serde_json::{Value, json};

#[tokio::test]
async fn identity_returns_the_same_token_until_expiry_and_rejects_bad_credentials() {
    let emu = start(quiet_config()).await;
    let d = emu.running.description().clone();
    let first: Value = emu
        .http
        .get(emu.url("/identity/oauth/token"))
        .query(&[
            ("grant_type", "client_credentials"),
            ("client_id", &d.client_id),
            ("client_secret", &d.client_secret),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = first["access_token"].as_str().unwrap();
    let (uuid, pod) = access.split_once(':').expect("uuid:pod");
    assert_eq!(uuid.len(), 36);
    assert!(!pod.is_empty());
    assert_eq!(first["token_type"], "bearer");
    assert_eq!(first["scope"], d.api_user);
    let left = first["expires_in"].as_i64().unwrap();
    assert!((3590..=3600).contains(&left), "{left}");
    assert_eq!(access, emu.token, "same token until expiry");

    // POST with a form body (Airbyte's CDK) gives the same token too.
    let form: Value = emu
        .http
        .post(emu.url("/identity/oauth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &d.client_id),
            ("client_secret", &d.client_secret),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(form["access_token"], first["access_token"]);

    // Another API user gets its own token.
    let other = token(
        &emu.http,
        &d.url,
        &d.other_client_id,
        &d.other_client_secret,
    )
    .await;
    assert_ne!(other, emu.token);

    let bad = emu
        .http
        .get(emu.url("/identity/oauth/token"))
        .query(&[
            ("grant_type", "client_credentials"),
            ("client_id", &d.client_id),
            ("client_secret", "wrong"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(
        body,
        json!({"error": "invalid_client", "error_description": "Bad client credentials"})
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn tokens_are_checked_601_invalid_602_expired_and_accepted_as_header_or_param() {
    let emu = start(Config {
        token_lifetime: Duration::from_secs(1),
        ..quiet_config()
    })
    .await;
    // Bearer header works.
    let ok = emu.get("/rest/v1/leads/describe.json").await;
    assert_eq!(ok["success"], true, "{ok}");
    // Deprecated access_token parameter works.
    let via_param: Value = emu
        .http
        .get(emu.url(&format!(
            "/rest/v1/leads/describe.json?access_token={}",
            emu.token
        )))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(via_param["success"], true);
    // Unknown token: 601 with HTTP 200.
    let response = emu
        .http
        .get(emu.url("/rest/v1/leads/describe.json"))
        .bearer_auth("00000000-0000-0000-0000-000000000000:ab")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), "601");
    assert_eq!(body["errors"][0]["message"], "Access token invalid");
    // No token at all: 601 too.
    let none: Value = emu
        .http
        .get(emu.url("/rest/v1/leads/describe.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(error_code(&none), "601");
    // Expired: 602.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let expired = emu.get("/rest/v1/leads/describe.json").await;
    assert_eq!(error_code(&expired), "602");
    assert_eq!(expired["errors"][0]["message"], "Access token expired");
    emu.shutdown().await;
}

#[tokio::test]
async fn envelope_has_request_id_and_string_codes_and_transport_errors_are_exact() {
    let emu = start(quiet_config()).await;
    let ok = emu.get("/rest/v1/leads/partitions.json").await;
    let rid = ok["requestId"].as_str().unwrap();
    let (a, b) = rid.split_once('#').expect("hex#hex");
    assert!(
        u64::from_str_radix(a, 16).is_ok() && u64::from_str_radix(b, 16).is_ok(),
        "{rid}"
    );
    assert_eq!(
        ok["result"][0],
        json!({"id": 1, "name": "Default", "description": "Initial Lead Partition"})
    );

    // 610 unknown path, 605 wrong method.
    assert_eq!(error_code(&emu.get("/rest/v1/nothing.json").await), "610");
    assert_eq!(
        error_code(&emu.get("/rest/v1/leads/delete.json").await),
        "605"
    );
    // 609 invalid JSON, 612 JSON body without a JSON content type.
    let bad_json: Value = emu
        .http
        .post(emu.url("/rest/v1/leads.json"))
        .bearer_auth(&emu.token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(error_code(&bad_json), "609");
    let bad_type: Value = emu
        .http
        .post(emu.url("/rest/v1/leads.json"))
        .bearer_auth(&emu.token)
        .header("content-type", "text/plain")
        .body(r#"{"input":[{"email":"a@b.c"}]}"#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(error_code(&bad_type), "612");
    // 413 body over 1 MB, 414 URI over 8 KB.
    let big = emu
        .http
        .post(emu.url("/rest/v1/leads.json"))
        .bearer_auth(&emu.token)
        .header("content-type", "application/json")
        .body(vec![b' '; 1024 * 1024 + 10])
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 413);
    let long = emu
        .http
        .get(emu.url(&format!(
            "/rest/v1/leads.json?filterType=id&filterValues={}",
            "1,".repeat(5000)
        )))
        .bearer_auth(&emu.token)
        .send()
        .await
        .unwrap();
    assert_eq!(long.status(), 414);
    emu.shutdown().await;
}

#[tokio::test]
async fn method_override_lists_dot_segments_and_delete_with_body() {
    let emu = start(quiet_config()).await;
    let ids = emu
        .create_leads(vec![
            json!({"email": "a@x.com"}),
            json!({"email": "b@x.com"}),
            json!({"email": "c@x.com"}),
        ])
        .await;
    // POST ?_method=GET with a form body.
    let form: Value = emu
        .http
        .post(emu.url("/rest/v1/leads.json?_method=GET"))
        .bearer_auth(&emu.token)
        .form(&[
            ("filterType", "id"),
            ("filterValues", &format!("{},{}", ids[0], ids[1])),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(form["result"].as_array().unwrap().len(), 2, "{form}");
    // Repeated list parameters, and a body on GET is ignored.
    let repeated: Value = emu
        .http
        .get(emu.url(&format!(
            "/rest/v1/leads.json?filterType=id&filterValues={}&filterValues={}",
            ids[1], ids[2]
        )))
        .bearer_auth(&emu.token)
        .header("content-type", "application/json")
        .body(r#"{"query":{"filterType":"email"}}"#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let got: Vec<i64> = repeated["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(got, vec![ids[1], ids[2]]);
    // Dot segments resolve (node-marketo-rest sends /rest/../bulk/...); double slashes too.
    let dotted = emu.get("/rest/../rest/v1//leads/describe2.json").await;
    assert_eq!(dotted["success"], true, "{dotted}");
    // DELETE /rest/v1/leads.json with a JSON body (marketorestpython).
    let deleted: Value = emu
        .http
        .delete(emu.url("/rest/v1/leads.json"))
        .bearer_auth(&emu.token)
        .json(&json!({"input": [{"id": ids[0]}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        deleted["result"][0],
        json!({"id": ids[0], "status": "deleted"})
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn state_dir_keeps_credentials_and_data_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        state_dir: Some(dir.path().to_path_buf()),
        ..quiet_config()
    };
    let emu = start(config.clone()).await;
    let first = emu.running.description().clone();
    let ids = emu
        .create_leads(vec![json!({"email": "keep@x.com", "firstName": "Keep"})])
        .await;
    assert!(
        !format!("{first:?}").contains(&first.client_secret),
        "Debug must redact secrets"
    );
    emu.shutdown().await;

    let again = spawn(config).await.unwrap();
    let second = again.description().clone();
    assert_eq!(first.client_id, second.client_id);
    assert_eq!(first.client_secret, second.client_secret);
    assert_eq!(first.other_client_id, second.other_client_id);
    let http = reqwest::Client::new();
    let t = token(&http, &second.url, &second.client_id, &second.client_secret).await;
    let body: Value = http
        .get(format!("{}/rest/v1/lead/{}.json", second.url, ids[0]))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["result"][0]["firstName"], "Keep");
    again.shutdown().await.unwrap();
}

#[tokio::test]
async fn bodies_of_1kb_or_more_are_gzipped_on_request() {
    let emu = start(quiet_config()).await;
    let raw = reqwest::Client::builder().no_gzip().build().unwrap();
    let big = raw
        .get(emu.url("/rest/v1/leads/describe.json"))
        .bearer_auth(&emu.token)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(big.headers()["content-encoding"], "gzip");
    let small = raw
        .get(emu.url("/rest/v1/leads/partitions.json"))
        .bearer_auth(&emu.token)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert!(small.headers().get("content-encoding").is_none());
    let plain = raw
        .get(emu.url("/rest/v1/leads/describe.json"))
        .bearer_auth(&emu.token)
        .send()
        .await
        .unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    let body: Value = plain.json().await.unwrap();
    assert_eq!(body["success"], true);
    emu.shutdown().await;
}
