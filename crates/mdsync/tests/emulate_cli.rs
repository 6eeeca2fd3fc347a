//! `mdsync emulate` as a real process: --print-json, both emulators over HTTP, SIGTERM/SIGINT exit 0,
//! `--state DIR` survives a restart with the same credentials, secrets only in --print-json.

mod common;

use common::Mdsync;
use serde_json::{Value, json};

async fn dataverse_token(http: &reqwest::Client, dv: &Value) -> String {
    let url = format!(
        "{}/{}/oauth2/v2.0/token",
        s(&dv["url"]),
        s(&dv["tenant_id"])
    );
    let scope = format!("{}/.default", s(&dv["url"]));
    let body: Value = http
        .post(url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", s(&dv["admin_client_id"])),
            ("client_secret", s(&dv["admin_client_secret"])),
            ("scope", &scope),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

async fn marketo_token(http: &reqwest::Client, mk: &Value) -> String {
    let body: Value = http
        .get(format!("{}/identity/oauth/token", s(&mk["url"])))
        .query(&[
            ("grant_type", "client_credentials"),
            ("client_id", s(&mk["client_id"])),
            ("client_secret", s(&mk["client_secret"])),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

fn s(value: &Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("expected a string, got {value}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulate_prints_json_serves_both_stops_on_sigterm_and_keeps_state() {
    let state = tempfile::tempdir().unwrap();
    let state_arg = state.path().to_str().unwrap();
    let http = reqwest::Client::new();

    let (process, first) = Mdsync::emulate_json(&["--state", state_arg]);
    let dv = first["dataverse"].clone();
    let mk = first["marketo"].clone();
    for key in [
        "url",
        "api_url",
        "tenant_id",
        "admin_client_id",
        "admin_client_secret",
        "sync_app_client_id",
        "sync_app_client_secret",
    ] {
        assert!(dv[key].is_string(), "dataverse.{key} missing: {first}");
    }
    for key in [
        "url",
        "munchkin_id",
        "client_id",
        "client_secret",
        "api_user",
        "other_client_id",
        "other_client_secret",
    ] {
        assert!(mk[key].is_string(), "marketo.{key} missing: {first}");
    }
    assert_eq!(
        s(&dv["api_url"]),
        format!("{}/api/data/v9.2/", s(&dv["url"]))
    );

    // Dataverse: WhoAmI and a created contact.
    let token = dataverse_token(&http, &dv).await;
    let who = http
        .get(format!("{}WhoAmI", s(&dv["api_url"])))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(who.status(), 200);
    let created = http
        .post(format!("{}contacts", s(&dv["api_url"])))
        .bearer_auth(&token)
        .json(&json!({"firstname": "Persisted", "lastname": "Across Restarts"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 204);
    let entity_id = created.headers()["OData-EntityId"]
        .to_str()
        .unwrap()
        .to_owned();

    // Marketo: a synced lead.
    let mk_token = marketo_token(&http, &mk).await;
    let synced: Value = http
        .post(format!("{}/rest/v1/leads.json", s(&mk["url"])))
        .bearer_auth(&mk_token)
        .json(&json!({"action": "createOrUpdate", "lookupField": "email",
                      "input": [{"email": "persisted@restart.example", "firstName": "Kept"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(synced["result"][0]["status"], "created", "{synced}");

    process.signal("TERM");
    assert_eq!(process.wait_exit(), Some(0), "exit 0 after SIGTERM");

    // Restart on the same state: same credentials, same data.
    let (process, second) = Mdsync::emulate_json(&["--state", state_arg]);
    let dv2 = &second["dataverse"];
    let mk2 = &second["marketo"];
    for key in [
        "tenant_id",
        "admin_client_id",
        "admin_client_secret",
        "sync_app_client_id",
        "sync_app_client_secret",
    ] {
        assert_eq!(dv[key], dv2[key], "dataverse.{key} changed across restarts");
    }
    for key in [
        "client_id",
        "client_secret",
        "other_client_id",
        "other_client_secret",
        "api_user",
    ] {
        assert_eq!(mk[key], mk2[key], "marketo.{key} changed across restarts");
    }
    let token = dataverse_token(&http, dv2).await;
    // The entity id is absolute on the old port; keep only the path after the API root.
    let relative = entity_id
        .split("/api/data/v9.2/")
        .nth(1)
        .expect("OData-EntityId under the API root");
    let contact: Value = http
        .get(format!(
            "{}{relative}?$select=firstname",
            s(&dv2["api_url"])
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(contact["firstname"], "Persisted", "{contact}");
    let mk_token = marketo_token(&http, mk2).await;
    let found: Value = http
        .get(format!("{}/rest/v1/leads.json", s(&mk2["url"])))
        .bearer_auth(&mk_token)
        .query(&[
            ("filterType", "email"),
            ("filterValues", "persisted@restart.example"),
            ("fields", "email,firstName"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found["result"][0]["firstName"], "Kept", "{found}");

    process.signal("INT");
    assert_eq!(process.wait_exit(), Some(0), "exit 0 after SIGINT");

    // The human summary never shows secrets.
    let process = Mdsync::start(&["emulate", "--state", state_arg]);
    let mut summary = String::new();
    loop {
        let line = process.next_line();
        summary.push_str(&line);
        summary.push('\n');
        if line.starts_with("Stop with") {
            break;
        }
    }
    for expected in [
        "Dataverse emulator",
        "Marketo emulator",
        "persisted under",
        "/identity/oauth/token",
    ] {
        assert!(
            summary.contains(expected),
            "summary lacks {expected:?}:\n{summary}"
        );
    }
    for secret in [
        &dv["admin_client_secret"],
        &dv["sync_app_client_secret"],
        &mk["client_secret"],
        &mk["other_client_secret"],
    ] {
        assert!(
            !summary.contains(s(secret)),
            "secret leaked in the summary:\n{summary}"
        );
    }
    process.signal("TERM");
    assert_eq!(process.wait_exit(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulate_only_starts_one_emulator() {
    let (process, json) = Mdsync::emulate_json(&["--only", "marketo", "--no-limits"]);
    assert!(json.get("dataverse").is_none(), "{json}");
    assert!(json["marketo"]["url"].is_string(), "{json}");
    process.signal("TERM");
    assert_eq!(process.wait_exit(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulate_passes_the_marketo_solution_version_to_dataverse() {
    let (process, json) = Mdsync::emulate_json(&[
        "--only",
        "dataverse",
        "--marketo-solution-version",
        "4.0.0.13",
    ]);
    let dv = &json["dataverse"];
    let http = reqwest::Client::new();
    let token = dataverse_token(&http, dv).await;
    let body: Value = http
        .get(format!(
            "{}solutions?$select=uniquename,version&$filter=uniquename eq 'MarketoLeadManagement'",
            s(&dv["api_url"])
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["value"][0]["version"], "4.0.0.13", "{body}");
    process.signal("TERM");
    assert_eq!(process.wait_exit(), Some(0));
}

#[test]
fn emulate_with_a_taken_port_fails_with_a_message() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_mdsync"))
        .args([
            "emulate",
            "--print-json",
            "--only",
            "dataverse",
            "--dataverse-listen",
            &addr,
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        output.stdout.is_empty(),
        "nothing on stdout when start-up fails"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("starting the Dataverse emulator"),
        "{stderr}"
    );
}
