//! Limits (606 rate, 615 concurrency, 607 quota), usage stats, faults and counters (marketo-rest.md §7).

mod common;

use std::time::Duration;

use common::{error_code, quiet_config, start, token};
use mdsync_marketo_emulator::Config;
use serde_json::{Value, json};

#[tokio::test]
async fn rate_limit_606_counts_api_calls_but_not_identity_or_token_errors() {
    let emu = start(Config {
        rate_limit: 5,
        rate_window: Duration::from_secs(2),
        ..Config::default()
    })
    .await;
    let d = emu.running.description().clone();
    // Identity calls and 601 answers are free.
    for _ in 0..10 {
        token(&emu.http, &d.url, &d.client_id, &d.client_secret).await;
        let bad: Value = emu
            .http
            .get(emu.url("/rest/v1/leads/describe.json"))
            .bearer_auth("nope")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(error_code(&bad), "601");
    }
    for _ in 0..5 {
        assert_eq!(
            emu.get("/rest/v1/leads/partitions.json").await["success"],
            true
        );
    }
    let limited = emu.get("/rest/v1/leads/partitions.json").await;
    assert_eq!(error_code(&limited), "606");
    assert_eq!(
        limited["errors"][0]["message"],
        "Max rate limit '5' exceeded with in '2' secs"
    );
    // The window rolls.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        emu.get("/rest/v1/leads/partitions.json").await["success"],
        true
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn daily_quota_607_and_usage_stats_per_user() {
    let emu = start(Config {
        daily_quota: 4,
        ..Config::default()
    })
    .await;
    let d = emu.running.description().clone();
    let other = token(
        &emu.http,
        &d.url,
        &d.other_client_id,
        &d.other_client_secret,
    )
    .await;
    for _ in 0..2 {
        assert_eq!(
            emu.get("/rest/v1/leads/partitions.json").await["success"],
            true
        );
    }
    let by_other: Value = emu
        .http
        .get(emu.url("/rest/v1/stats/usage.json"))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let today = &by_other["result"][0];
    assert_eq!(today["total"], 3, "{by_other}");
    let users = today["users"].as_array().unwrap();
    assert!(
        users.contains(&json!({"userId": d.api_user, "count": 2})),
        "{users:?}"
    );
    assert!(today["date"].as_str().unwrap().len() == 10);
    assert_eq!(
        emu.get("/rest/v1/leads/partitions.json").await["success"],
        true
    );
    let over = emu.get("/rest/v1/leads/partitions.json").await;
    assert_eq!(error_code(&over), "607");
    assert_eq!(over["errors"][0]["message"], "Daily quota reached");
    let last7 = emu.get("/rest/v1/stats/usage/last7days.json").await;
    assert_eq!(error_code(&last7), "607");
    emu.shutdown().await;
}

#[tokio::test]
async fn concurrency_615_while_ten_calls_are_in_flight() {
    let emu = start(Config {
        concurrency_limit: 2,
        ..Config::default()
    })
    .await;
    // Slow every describe call down so two stay in flight.
    let response = emu
        .http
        .post(emu.url("/_emulator/faults"))
        .json(&json!({"path_contains": "describe", "latency_ms": 700}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let slow = || emu.get("/rest/v1/leads/describe.json");
    let third = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        emu.get("/rest/v1/leads/partitions.json").await
    };
    let (a, b, c) = tokio::join!(slow(), slow(), third);
    assert_eq!(a["success"], true);
    assert_eq!(b["success"], true);
    assert_eq!(error_code(&c), "615");
    assert_eq!(
        c["errors"][0]["message"],
        "Concurrent access limit '2' reached"
    );
    assert_eq!(
        emu.get("/rest/v1/leads/partitions.json").await["success"],
        true
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn limits_off_lets_everything_through() {
    let emu = start(Config {
        rate_limit: 1,
        daily_quota: 1,
        ..quiet_config()
    })
    .await;
    for _ in 0..5 {
        assert_eq!(
            emu.get("/rest/v1/leads/partitions.json").await["success"],
            true
        );
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn faults_render_the_marketo_envelope_and_counters_count_routes() {
    let emu = start(quiet_config()).await;
    let (status, _) = emu
        .admin("/_emulator/faults", json!({"path_contains": "/rest/v1/leads.json", "method": "POST", "code": "606", "count": 1}))
        .await;
    assert_eq!(status, 201);
    let faulted = emu
        .post(
            "/rest/v1/leads.json",
            json!({"input": [{"email": "f@x.com"}]}),
        )
        .await;
    assert_eq!(error_code(&faulted), "606");
    assert_eq!(
        faulted["errors"][0]["message"],
        "Max rate limit '100' exceeded with in '20' secs"
    );
    assert!(faulted["requestId"].is_string());
    // count = 1: the next call goes through.
    let ok = emu
        .post(
            "/rest/v1/leads.json",
            json!({"input": [{"email": "f@x.com"}]}),
        )
        .await;
    assert_eq!(ok["result"][0]["status"], "created");
    // A fault with an HTTP status (gateway error).
    emu.admin(
        "/_emulator/faults",
        json!({"path_contains": "partitions", "status": 502, "count": 1}),
    )
    .await;
    let response = emu
        .http
        .get(emu.url("/rest/v1/leads/partitions.json"))
        .bearer_auth(&emu.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    // Bad fault bodies are 400.
    let (status, body) = emu.admin("/_emulator/faults", json!({"status": 42})).await;
    assert_eq!(status, 400, "{body}");

    let ids = emu
        .create_leads(vec![
            json!({"email": "c1@x.com"}),
            json!({"email": "c2@x.com"}),
        ])
        .await;
    emu.get(&format!("/rest/v1/lead/{}.json", ids[0])).await;
    emu.get(&format!("/rest/v1/lead/{}.json", ids[1])).await;
    let counters: Value = emu
        .http
        .get(emu.url("/_emulator/counters"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        counters["counters"]["GET /rest/v1/lead/{id}.json"], 2,
        "{counters}"
    );
    assert_eq!(counters["counters"]["POST /rest/v1/leads.json"], 3);
    assert_eq!(counters["counters"]["GET /identity/oauth/token"], 1);
    let usage: Value = emu
        .http
        .get(emu.url("/_emulator/usage"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(usage["limitsEnabled"], false);
    emu.shutdown().await;
}

#[tokio::test]
async fn api_users_can_be_added_and_reset_and_seed_work() {
    let emu = start(quiet_config()).await;
    let (status, user) = emu
        .admin("/_emulator/users", json!({"email": "zapier@example.com"}))
        .await;
    assert_eq!(status, 201);
    let t = token(
        &emu.http,
        &emu.running.description().url,
        user["client_id"].as_str().unwrap(),
        user["client_secret"].as_str().unwrap(),
    )
    .await;
    let created: Value = emu
        .http
        .post(emu.url("/rest/v1/leads.json"))
        .bearer_auth(&t)
        .json(&json!({"input": [{"email": "z@x.com"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(created["result"][0]["status"], "created");
    let listed: Value = emu
        .http
        .get(emu.url("/_emulator/users"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["users"].as_array().unwrap().len(), 3);
    assert!(
        !listed
            .to_string()
            .contains(user["client_secret"].as_str().unwrap())
    );
    let (status, _) = emu.admin("/_emulator/users", json!({"email": 5})).await;
    assert_eq!(status, 400);

    // Seed is deterministic per seed number; reset empties the data.
    let (status, seeded) = emu
        .admin(
            "/_emulator/seed",
            json!({"seed": 7, "leads": 50, "companies": 5, "opportunities": 5}),
        )
        .await;
    assert_eq!(status, 200, "{seeded}");
    let first = seeded["leads"]["firstId"].as_i64().unwrap();
    let lead = emu
        .get(&format!(
            "/rest/v1/lead/{first}.json?fields=email,firstName,lastName,company,title"
        ))
        .await;
    let (_, _) = emu.admin("/_emulator/reset", json!({})).await;
    assert_eq!(
        emu.get(&format!("/rest/v1/lead/{first}.json")).await["result"],
        json!([])
    );
    let (_, again) = emu
        .admin("/_emulator/seed", json!({"seed": 7, "leads": 50}))
        .await;
    let id = again["leads"]["firstId"].as_i64().unwrap();
    let same = emu
        .get(&format!(
            "/rest/v1/lead/{id}.json?fields=email,firstName,lastName,company,title"
        ))
        .await;
    // Ids are never reused, even after a reset: the same person comes back under a new id.
    assert!(id > first, "{first} then {id}");
    let without_id = |v: &Value| {
        let mut v = v["result"][0].clone();
        v.as_object_mut().map(|m| m.remove("id"));
        v
    };
    assert_eq!(without_id(&lead), without_id(&same));
    assert_eq!(same["result"][0]["id"], id);
    let (status, body) = emu
        .admin("/_emulator/seed", json!({"seed": 1, "leeds": 5}))
        .await;
    assert_eq!(status, 400, "{body}");
    emu.shutdown().await;
}
