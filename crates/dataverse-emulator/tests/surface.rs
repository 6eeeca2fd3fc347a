//! Service protection limits, fault injection, counters, reset, seeding, registered apps.
mod common;

use common::{error_code, start, start_with, token};
use mdsync_dataverse_emulator::{Config, LimitSettings};
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn request_limit_answers_429_with_retry_after() {
    let limits = LimitSettings {
        max_requests: 5,
        window: std::time::Duration::from_secs(60),
        ..LimitSettings::default()
    };
    let env = start_with(Config {
        limits_enabled: true,
        limits,
        ..Config::default()
    })
    .await;
    for _ in 0..5 {
        let r = env
            .call(Method::GET, "WhoAmI", &env.admin_token, None, &[])
            .await;
        assert_eq!(r.status(), 200);
        assert!(
            r.headers()
                .contains_key("x-ms-ratelimit-burst-remaining-xrm-requests")
        );
        assert!(
            r.headers()["x-ms-ratelimit-time-remaining-xrm-requests"]
                .to_str()
                .unwrap()
                .ends_with(".00")
        );
    }
    let r = env
        .call(Method::GET, "WhoAmI", &env.admin_token, None, &[])
        .await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["Retry-After"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    let (_, code, msg) = error_code(r).await;
    assert_eq!(code, "0x80072322");
    assert_eq!(
        msg,
        "Number of requests exceeded the limit of 5 over time window of 60 seconds."
    );
    // Another identity has its own window.
    let org = env.org().await;
    let t = env.user_token(org["admin_user_id"].as_str().unwrap()).await;
    let r = env.call(Method::GET, "WhoAmI", &t, None, &[]).await;
    assert_eq!(r.status(), 200);
    env.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn concurrency_limit_answers_429() {
    let limits = LimitSettings {
        max_concurrent: 1,
        ..LimitSettings::default()
    };
    let env = start_with(Config {
        limits_enabled: true,
        limits,
        ..Config::default()
    })
    .await;
    // Hold one request open with an injected latency, then a second one is refused.
    let r = env
        .http
        .post(format!("{}/_emulator/faults", env.url))
        .json(&json!({"path_contains": "RetrieveVersion", "latency_ms": 800, "count": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let slow = env.call(
        Method::GET,
        "RetrieveVersion()",
        &env.admin_token,
        None,
        &[],
    );
    let fast = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        env.call(Method::GET, "WhoAmI", &env.admin_token, None, &[])
            .await
    };
    let (a, b) = tokio::join!(slow, fast);
    assert_eq!(a.status(), 200);
    let (s, code, msg) = error_code(b).await;
    assert_eq!(
        (s, code.as_str(), msg.as_str()),
        (
            429,
            "0x80072326",
            "Number of concurrent requests exceeded the limit of 1."
        )
    );
    env.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn faults_counters_reset_and_apps() {
    let env = start().await;
    // Fault with a Dataverse code renders the real envelope.
    let r = env.http.post(format!("{}/_emulator/faults", env.url))
        .json(&json!({"path_contains": "/contacts", "method": "GET", "code": "0x80072322", "message": "Number of requests exceeded the limit of 6000 over time window of 300 seconds.", "headers": {"Retry-After": "2"}, "count": 1}))
        .send().await.unwrap();
    assert_eq!(r.status(), 201);
    let r = env
        .call(Method::GET, "contacts", &env.admin_token, None, &[])
        .await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["Retry-After"], "2");
    assert_eq!(error_code(r).await.1, "0x80072322");
    let r = env
        .call(Method::GET, "contacts", &env.admin_token, None, &[])
        .await;
    assert_eq!(r.status(), 200);
    let r = env
        .http
        .post(format!("{}/_emulator/faults", env.url))
        .json(&json!({"status": "oops"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Counters.
    let c: Value = env
        .http
        .get(format!("{}/_emulator/counters", env.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(c["total"].as_u64().unwrap() >= 2);
    assert!(
        c["counters"]
            .as_object()
            .unwrap()
            .keys()
            .any(|k| k.starts_with("GET /api/data/v9.2/contacts")),
        "{c}"
    );
    // Seeding is deterministic.
    let seed = json!({"seed": 42, "accounts": 5, "contacts": 40, "leads": 10, "opportunities": 3});
    let r = env
        .http
        .post(format!("{}/_emulator/seed", env.url))
        .json(&seed)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, first) = env
        .get("contacts?$select=fullname,emailaddress1,_parentcustomerid_value&$orderby=contactid")
        .await;
    assert_eq!(first["value"].as_array().unwrap().len(), 40);
    assert!(
        first["value"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["emailaddress1"].as_str().unwrap().contains('@')
                && c["_parentcustomerid_value"].is_string())
    );
    let (_, opps) = env
        .get("opportunities?$select=_customerid_value,_parentcontactid_value")
        .await;
    assert!(
        opps["value"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["_customerid_value"].is_string())
    );
    // Reset empties data but keeps credentials and the org.
    let r = env
        .http
        .post(format!("{}/_emulator/reset", env.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, v) = env.get("contacts?$select=fullname").await;
    assert_eq!(v["value"].as_array().unwrap().len(), 0);
    let r = env
        .http
        .post(format!("{}/_emulator/seed", env.url))
        .json(&seed)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, again) = env
        .get("contacts?$select=fullname,emailaddress1,_parentcustomerid_value&$orderby=contactid")
        .await;
    let strip = |v: &Value| {
        v["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["contactid"].clone(),
                    c["fullname"].clone(),
                    c["emailaddress1"].clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&first), strip(&again));
    let r = env
        .http
        .post(format!("{}/_emulator/seed", env.url))
        .json(&json!({"contacts": "many"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = env
        .http
        .post(format!("{}/_emulator/seed", env.url))
        .json(&json!({"unknown": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Register an extra app; it gets tokens, and is not a member until an application user exists.
    let app: Value = env
        .http
        .post(format!("{}/_emulator/apps", env.url))
        .json(&json!({"name": "Extra"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let d = env.running.description().clone();
    let t = token(
        &env.http,
        &d.url,
        &d.tenant_id,
        app["client_id"].as_str().unwrap(),
        app["client_secret"].as_str().unwrap(),
    )
    .await;
    let r = env.call(Method::GET, "WhoAmI", &t, None, &[]).await;
    assert_eq!(r.status(), 403);
    let r = env
        .http
        .post(format!("{}/_emulator/tokens", env.url))
        .json(&json!({"systemuserid": "00000000-0000-0000-0000-000000000001"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    env.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn handler_panic_answers_500_and_server_survives() {
    let env = start().await;
    let r = env
        .http
        .post(format!("{}/_emulator/panic", env.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["code"].as_str().unwrap().starts_with("0x"));
    let r = env
        .call(Method::GET, "WhoAmI", &env.admin_token, None, &[])
        .await;
    assert_eq!(r.status(), 200);
    env.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn execution_time_limit_answers_429() {
    let limits = LimitSettings {
        max_execution_ms: 30,
        ..LimitSettings::default()
    };
    let env = start_with(Config {
        limits_enabled: true,
        limits,
        ..Config::default()
    })
    .await;
    let r = env
        .http
        .post(format!("{}/_emulator/faults", env.url))
        .json(&json!({"path_contains": "RetrieveVersion", "latency_ms": 60, "count": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = env
        .call(
            Method::GET,
            "RetrieveVersion()",
            &env.admin_token,
            None,
            &[],
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = env
        .call(Method::GET, "WhoAmI", &env.admin_token, None, &[])
        .await;
    assert!(r.headers().contains_key("Retry-After"));
    let (s, code, msg) = error_code(r).await;
    assert_eq!((s, code.as_str()), (429, "0x80072321"));
    assert!(msg.starts_with("Combined execution time of incoming requests exceeded limit of 30 milliseconds over time window of 300 seconds."), "{msg}");
    env.running.shutdown().await.unwrap();
}
