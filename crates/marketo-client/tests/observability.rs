//! What the client leaves in logs and `Debug` output: request ids yes, secrets and tokens never.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mdsync_marketo_client::{Client, ClientConfig, Error};
use mdsync_marketo_emulator::{Config, spawn};
use serde_json::json;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
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

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn logs_carry_request_ids_but_never_secrets_or_tokens() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let emulator = spawn(Config {
        limits_enabled: false,
        ..Config::default()
    })
    .await
    .expect("emulator starts");
    let d = emulator.description().clone();
    let mut config = ClientConfig::new(d.url.clone(), d.client_id.clone(), d.client_secret.clone());
    config.retry_base_delay = Duration::from_millis(10);
    let client = Client::new(config.clone()).unwrap();

    // A token rejection, a transient failure and a success, so every log path runs.
    let admin = reqwest::Client::new();
    for fault in [
        json!({"path_contains": "/rest/", "code": "602", "count": 1}),
        json!({"path_contains": "/rest/", "code": "611", "count": 1}),
    ] {
        admin
            .post(format!("{}/_emulator/faults", d.url))
            .json(&fault)
            .send()
            .await
            .expect("fault accepted");
    }
    client
        .describe_leads2()
        .await
        .expect("describe after retries");

    // Bad credentials: the error and the logs name the problem, not the secret.
    let mut wrong = config.clone();
    wrong.client_secret = "not-the-right-secret-123".into();
    let err = Client::new(wrong)
        .unwrap()
        .authenticate()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Auth { .. }));

    // Fetch the token the emulator issued (same token until expiry) to check it never appears either.
    let token: serde_json::Value = admin
        .get(format!(
            "{}/identity/oauth/token?grant_type=client_credentials&client_id={}&client_secret={}",
            d.url, d.client_id, d.client_secret
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().expect("token").to_owned();

    let logs = captured.text();
    let debug = format!("{client:?} {err} {err:?}");
    for secret in [
        d.client_secret.as_str(),
        token.as_str(),
        "not-the-right-secret-123",
    ] {
        assert!(!logs.contains(secret), "a secret reached the logs:\n{logs}");
        assert!(
            !debug.contains(secret),
            "a secret reached Debug output: {debug}"
        );
    }
    assert!(
        logs.contains("request_id"),
        "no request id in logs:\n{logs}"
    );
    assert!(
        logs.contains('#'),
        "request ids look like `hex#hex`:\n{logs}"
    );
    assert!(logs.contains("marketo_call"), "no call span:\n{logs}");
    emulator.shutdown().await.unwrap();
}
