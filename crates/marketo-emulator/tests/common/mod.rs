//! Shared helpers for the integration tests: spawn an emulator on port 0, get tokens, call the API.
#![allow(dead_code)]

use std::time::Duration;

use mdsync_marketo_emulator::{Config, Running, spawn};
use serde_json::{Value, json};

pub struct Emu {
    pub running: Running,
    pub http: reqwest::Client,
    pub token: String,
}

impl Emu {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.running.description().url, path)
    }

    pub async fn get(&self, path: &str) -> Value {
        self.http
            .get(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json body")
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        self.http
            .post(self.url(path))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json body")
    }

    pub async fn admin(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Creates leads through sync and returns their ids.
    pub async fn create_leads(&self, records: Vec<Value>) -> Vec<i64> {
        let body = self
            .post(
                "/rest/v1/leads.json",
                json!({"action": "createOnly", "input": records}),
            )
            .await;
        assert_eq!(body["success"], true, "{body}");
        body["result"]
            .as_array()
            .expect("result")
            .iter()
            .map(|r| {
                r["id"]
                    .as_i64()
                    .unwrap_or_else(|| panic!("not created: {r}"))
            })
            .collect()
    }

    pub async fn shutdown(self) {
        self.running.shutdown().await.expect("shutdown");
    }
}

pub fn quiet_config() -> Config {
    Config {
        limits_enabled: false,
        ..Config::default()
    }
}

pub async fn start(config: Config) -> Emu {
    let running = spawn(config).await.expect("spawn");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let d = running.description().clone();
    let token = token(&http, &d.url, &d.client_id, &d.client_secret).await;
    Emu {
        running,
        http,
        token,
    }
}

pub async fn token(http: &reqwest::Client, url: &str, id: &str, secret: &str) -> String {
    let body: Value = http
        .get(format!("{url}/identity/oauth/token"))
        .query(&[
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret),
        ])
        .send()
        .await
        .expect("token request")
        .json()
        .await
        .expect("token json");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_string()
}

pub fn error_code(body: &Value) -> &str {
    assert_eq!(body["success"], false, "expected a failure: {body}");
    body["errors"][0]["code"].as_str().expect("string code")
}
