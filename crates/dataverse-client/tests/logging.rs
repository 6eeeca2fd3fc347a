//! What the client logs, in its own test binary: tracing's per-callsite interest is process-global, so a
//! thread-local subscriber only sees every event reliably when no other test runs beside it.

use std::time::Duration;

use mdsync_dataverse_client::{Client, ClientConfig, Secret};
use mdsync_dataverse_emulator::{Config, Running, spawn};
use serde_json::json;
use uuid::Uuid;

async fn emulator() -> Running {
    spawn(Config {
        listen: "127.0.0.1:0".parse().expect("literal address"),
        limits_enabled: false,
        ..Config::default()
    })
    .await
    .expect("emulator starts")
}

fn config(running: &Running, client_id: &str, secret: &str) -> ClientConfig {
    let d = running.description();
    let mut config = ClientConfig::new(
        d.url.clone(),
        d.tenant_id.clone(),
        client_id,
        Secret::new(secret),
    )
    .with_authority(d.url.clone());
    config.backoff_base = Duration::from_millis(20);
    config
}

fn admin(running: &Running) -> Client {
    let d = running.description();
    Client::new(config(running, &d.admin_client_id, &d.admin_client_secret)).expect("valid config")
}

async fn add_fault(running: &Running, fault: serde_json::Value) {
    let url = format!("{}/_emulator/faults", running.description().url);
    let response = reqwest::Client::new()
        .post(&url)
        .json(&fault)
        .send()
        .await
        .expect("test surface");
    assert!(
        response.status().is_success(),
        "fault refused: {}",
        response.status()
    );
}

/// Collects formatted log output so a test can read what the client logged.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn logs_and_debug_output_never_carry_secrets_or_tokens() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "mdsync_dataverse_client=trace",
        ))
        .with_writer(captured.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let running = emulator().await;
    let d = running.description().clone();
    let client = admin(&running);
    client.whoami().await.expect("whoami");
    add_fault(
        &running,
        json!({"path_contains": "WhoAmI", "status": 429, "code": "0x80072322", "headers": {"Retry-After": "0"}, "count": 1}),
    )
    .await;
    client.whoami().await.expect("after a 429");
    let err = client
        .retrieve("accounts", Uuid::new_v4(), &["name"])
        .await
        .expect_err("missing");
    let bad =
        Client::new(config(&running, &d.admin_client_id, "wrong-secret-value")).expect("config");
    let auth_err = bad.whoami().await.expect_err("bad secret");

    let logs = String::from_utf8(captured.0.lock().expect("logs").clone()).expect("utf-8 logs");
    assert!(
        logs.contains("Dataverse response"),
        "requests are traced: {logs}"
    );
    assert!(logs.contains("status=429"), "{logs}");
    for text in [
        logs.as_str(),
        &format!("{client:?}"),
        &format!("{err:?}"),
        &format!("{auth_err:?} {auth_err}"),
    ] {
        assert!(
            !text.contains(&d.admin_client_secret),
            "secret leaked: {text}"
        );
        assert!(
            !text.contains("wrong-secret-value"),
            "secret leaked: {text}"
        );
        assert!(!text.contains("Bearer "), "token leaked: {text}");
        assert!(!text.contains("eyJ"), "JWT leaked: {text}");
    }
    running.shutdown().await.expect("shutdown");
}
