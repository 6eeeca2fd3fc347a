//! The kit's middleware and admin routes over real HTTP on 127.0.0.1.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use mdsync_emulator_kit::{Fault, FaultRegistry, RequestCounters, ServerHandle, instrument, serve};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};

fn render_fault(fault: &Fault) -> Response {
    let status = fault
        .status
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let body = json!({"error": {
        "code": fault.code.clone().unwrap_or_else(|| "0x80040216".into()),
        "message": fault.message.clone().unwrap_or_else(|| "injected".into()),
    }});
    (status, axum::Json(body)).into_response()
}

fn render_500() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        axum::Json(
            json!({"error": {"code": "0x80040216", "message": "An unexpected error occurred."}}),
        ),
    )
        .into_response()
}

struct TestServer {
    handle: ServerHandle,
    base: String,
    http: reqwest::Client,
    faults: FaultRegistry,
    counters: RequestCounters,
    slow_started: Arc<Notify>,
}

async fn start() -> TestServer {
    let faults = FaultRegistry::new(Arc::new(render_fault));
    let counters = RequestCounters::default();
    let slow_started = Arc::new(Notify::new());
    let notify = slow_started.clone();
    let router = Router::new()
        .route("/api/items/{id}", get(|| async { "item" }))
        .route("/api/items", axum::routing::post(|| async { "created" }))
        .route(
            "/panic",
            get(|| async {
                if std::hint::black_box(true) {
                    panic!("handler bug");
                }
                "unreachable"
            }),
        )
        .route(
            "/slow",
            get(move || {
                let notify = notify.clone();
                async move {
                    notify.notify_one();
                    tokio::time::sleep(Duration::from_millis(400)).await;
                    "slow done"
                }
            }),
        );
    let app = instrument(router, faults.clone(), counters.clone(), render_500);
    let handle = serve("127.0.0.1:0".parse().unwrap(), app).await.unwrap();
    let base = format!("http://{}", handle.local_addr());
    TestServer {
        handle,
        base,
        http: reqwest::Client::new(),
        faults,
        counters,
        slow_started,
    }
}

impl TestServer {
    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    async fn add_fault(&self, fault: Value) -> u64 {
        let response = self
            .http
            .post(self.url("/_emulator/faults"))
            .json(&fault)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.unwrap();
        body["id"].as_u64().unwrap()
    }

    async fn get(&self, path: &str) -> (StatusCode, String) {
        let response = self.http.get(self.url(path)).send().await.unwrap();
        (response.status(), response.text().await.unwrap())
    }

    async fn post(&self, path: &str) -> reqwest::Response {
        self.http.post(self.url(path)).send().await.unwrap()
    }
}

#[tokio::test]
async fn faults_match_by_path_and_method_and_count_down() {
    let server = start().await;
    let id = server
        .add_fault(json!({
            "path_contains": "/api/items",
            "method": "post",
            "status": 429,
            "code": "0x80072322",
            "message": "Number of requests exceeded the limit",
            "headers": {"Retry-After": "2"},
            "count": 2
        }))
        .await;
    assert_eq!(id, 1);

    // Method mismatch passes through.
    assert_eq!(
        server.get("/api/items/1").await,
        (StatusCode::OK, "item".into())
    );

    let first = server.post("/api/items").await;
    assert_eq!(first.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(first.headers()["retry-after"], "2");
    let body: Value = first.json().await.unwrap();
    assert_eq!(body["error"]["code"], "0x80072322");
    assert_eq!(
        body["error"]["message"],
        "Number of requests exceeded the limit"
    );

    let listed: Value = server
        .http
        .get(server.url("/_emulator/faults"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["faults"][0]["id"], 1);
    assert_eq!(listed["faults"][0]["count"], 1);

    assert_eq!(
        server.post("/api/items").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // Used up: gone from the registry and the route answers normally.
    assert!(server.faults.list().is_empty());
    let third = server.post("/api/items").await;
    assert_eq!(third.status(), StatusCode::OK);
    assert_eq!(third.text().await.unwrap(), "created");
}

#[tokio::test]
async fn fault_path_mismatch_passes_through_and_oldest_match_wins() {
    let server = start().await;
    server
        .add_fault(json!({"path_contains": "/api/items/9", "status": 404, "code": "0x80040217"}))
        .await;
    server
        .add_fault(json!({"path_contains": "/api/items/", "status": 500, "code": "second"}))
        .await;
    let (status, body) = server.get("/api/items/9").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("0x80040217"), "{body}");
    let (status, body) = server.get("/api/items/1").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.contains("second"), "{body}");
    assert_eq!(server.post("/api/items").await.status(), StatusCode::OK);
    // Unlimited faults stay until cleared.
    assert_eq!(server.faults.list().len(), 2);
    let cleared: Value = server
        .http
        .delete(server.url("/_emulator/faults"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cleared["cleared"], 2);
    assert_eq!(
        server.get("/api/items/9").await,
        (StatusCode::OK, "item".into())
    );
}

#[tokio::test]
async fn fault_body_is_verbatim_and_renderer_status_is_kept() {
    let server = start().await;
    let custom = json!({"requestId": "e42b#14272d07d78", "success": false,
                        "errors": [{"code": "606", "message": "Max rate limit '100' exceeded with in '20' secs"}]});
    server.add_fault(json!({"body": custom, "count": 1})).await;
    let response = server
        .http
        .get(server.url("/api/items/3"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(response.json::<Value>().await.unwrap(), custom);

    server
        .add_fault(json!({"body": {"ok": false}, "status": 200, "count": 1}))
        .await;
    let response = server
        .http
        .get(server.url("/api/items/3"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"ok": false})
    );
}

#[tokio::test]
async fn latency_only_fault_delays_then_passes_through() {
    let server = start().await;
    server
        .add_fault(json!({"path_contains": "/api/items/7", "latency_ms": 300, "count": 1}))
        .await;
    let started = Instant::now();
    assert_eq!(
        server.get("/api/items/7").await,
        (StatusCode::OK, "item".into())
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(
        server.faults.list().is_empty(),
        "latency fault counts down too"
    );

    // Latency before an injected error.
    server
        .add_fault(json!({"latency_ms": 200, "status": 503, "count": 1}))
        .await;
    let started = Instant::now();
    assert_eq!(
        server.get("/api/items/7").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn admin_routes_are_never_faulted() {
    let server = start().await;
    server.add_fault(json!({"status": 500})).await; // matches every path and method
    assert_eq!(
        server.get("/api/items/1").await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(server.get("/_emulator/faults").await.0, StatusCode::OK);
    assert_eq!(server.get("/_emulator/counters").await.0, StatusCode::OK);
    let response = server
        .http
        .delete(server.url("/_emulator/faults"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(server.get("/api/items/1").await.0, StatusCode::OK);
}

#[tokio::test]
async fn counters_count_by_matched_route() {
    let server = start().await;
    server.get("/api/items/1").await;
    server.get("/api/items/2").await;
    server.post("/api/items").await;
    assert_eq!(server.get("/nope/x").await.0, StatusCode::NOT_FOUND);
    // Faulted requests are counted too.
    server
        .add_fault(json!({"path_contains": "/api/items/3", "status": 503, "count": 1}))
        .await;
    assert_eq!(
        server.get("/api/items/3").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );

    let body: Value = server
        .http
        .get(server.url("/_emulator/counters"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["counters"]["GET /api/items/{id}"], 3);
    assert_eq!(body["counters"]["POST /api/items"], 1);
    assert_eq!(body["counters"]["GET /nope/x"], 1);
    assert_eq!(body["counters"]["POST /_emulator/faults"], 1);
    assert_eq!(body["total"], 5, "total excludes /_emulator/: {body}");
    assert_eq!(server.counters.total(), 5);
    assert_eq!(server.counters.get("GET /api/items/{id}"), 3);

    let reset = server
        .http
        .delete(server.url("/_emulator/counters"))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), StatusCode::NO_CONTENT);
    assert_eq!(server.counters.total(), 0);
    assert!(server.counters.snapshot().is_empty());
}

#[tokio::test]
async fn handler_panic_answers_renderer_500_and_server_keeps_serving() {
    let server = start().await;
    let response = server.http.get(server.url("/panic")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["message"], "An unexpected error occurred.");
    assert_eq!(
        server.get("/api/items/1").await,
        (StatusCode::OK, "item".into())
    );
    assert_eq!(server.counters.get("GET /panic"), 1);
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_then_stops_listening() {
    let server = start().await;
    let (tx, mut rx) = mpsc::channel(1);
    let url = server.url("/slow");
    let client = server.http.clone();
    tokio::spawn(async move {
        let result = match client.get(url).send().await {
            Ok(response) => Ok((response.status(), response.text().await)),
            Err(err) => Err(err),
        };
        let _ = tx.send(result).await;
    });
    server.slow_started.notified().await;
    let addr = server.handle.local_addr();
    server.handle.shutdown().await;
    let (status, text) = rx
        .recv()
        .await
        .unwrap()
        .expect("in-flight request completed");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(text.unwrap(), "slow done");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener closed after shutdown"
    );
}

#[tokio::test]
async fn bad_admin_requests_get_json_400_naming_the_problem() {
    let server = start().await;
    let cases = [
        ("not json", "invalid fault JSON"),
        (r#"{"stauts": 500}"#, "stauts"),
        (r#"{"status": 99}"#, "status 99"),
        (r#"{"status": 500, "count": 0}"#, "count"),
        (r#"{"latency_ms": -1}"#, "latency_ms"),
        (r#"{"method": "GE T"}"#, "method"),
        (r#"{"headers": {"Bad Header": "x"}}"#, "header name"),
    ];
    for (body, needle) in cases {
        let response = server
            .http
            .post(server.url("/_emulator/faults"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let json: Value = response.json().await.unwrap();
        assert_eq!(json["error"]["code"], "BadRequest");
        let message = json["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{body}: {message}");
    }
    assert!(server.faults.list().is_empty());

    let response = server
        .http
        .delete(server.url("/_emulator/faults/abc"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let response = server
        .http
        .delete(server.url("/_emulator/faults/999"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    let id = server.add_fault(json!({"status": 500})).await;
    let response = server
        .http
        .delete(server.url(&format!("/_emulator/faults/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(server.faults.list().is_empty());
}
