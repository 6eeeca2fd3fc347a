//! Shared helpers: spawn an emulator on port 0, get tokens, call the API over real HTTP.
#![allow(dead_code)]

use mdsync_dataverse_emulator::{Config, Running, spawn};
use reqwest::{Client, Method, Response};
use serde_json::{Value, json};

pub struct Env {
    pub running: Running,
    pub http: Client,
    pub admin_token: String,
    pub api: String,
    pub url: String,
}

pub async fn start() -> Env {
    start_with(Config {
        limits_enabled: false,
        ..Config::default()
    })
    .await
}

pub async fn start_with(config: Config) -> Env {
    let running = spawn(config).await.expect("spawn emulator");
    let http = Client::new();
    let d = running.description().clone();
    let admin_token = token(
        &http,
        &d.url,
        &d.tenant_id,
        &d.admin_client_id,
        &d.admin_client_secret,
    )
    .await;
    Env {
        http,
        admin_token,
        api: d.api_url.clone(),
        url: d.url.clone(),
        running,
    }
}

pub async fn token(http: &Client, url: &str, tenant: &str, id: &str, secret: &str) -> String {
    let r = http
        .post(format!("{url}/{tenant}/oauth2/v2.0/token"))
        .form(&[
            ("client_id", id),
            ("client_secret", secret),
            ("grant_type", "client_credentials"),
            ("scope", &format!("{url}/.default")),
        ])
        .send()
        .await
        .expect("token request");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("token json");
    v["access_token"]
        .as_str()
        .expect("access_token")
        .to_string()
}

impl Env {
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Response {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{}", self.api, path)
        };
        let mut rb = self
            .http
            .request(method, url)
            .bearer_auth(token)
            .header("Accept", "application/json");
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        rb.send().await.expect("request")
    }
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .call(Method::GET, path, &self.admin_token, None, &[])
            .await;
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }
    pub async fn send(&self, method: Method, path: &str, body: Value) -> Response {
        self.call(method, path, &self.admin_token, Some(body), &[])
            .await
    }
    pub async fn org(&self) -> Value {
        self.http
            .get(format!("{}/_emulator/org", self.url))
            .send()
            .await
            .expect("org")
            .json()
            .await
            .expect("org json")
    }
    pub async fn user_token(&self, systemuserid: &str) -> String {
        let v: Value = self
            .http
            .post(format!("{}/_emulator/tokens", self.url))
            .json(&json!({"systemuserid": systemuserid}))
            .send()
            .await
            .expect("tokens")
            .json()
            .await
            .expect("token json");
        v["access_token"].as_str().expect("token").to_string()
    }
    /// Creates a record and returns its id (from OData-EntityId).
    pub async fn create(&self, set: &str, body: Value) -> String {
        let r = self.send(Method::POST, set, body).await;
        assert_eq!(r.status(), 204, "create {set}: {:?}", r.text().await);
        let loc = r.headers()["OData-EntityId"]
            .to_str()
            .expect("entity id")
            .to_string();
        loc.rsplit('(')
            .next()
            .expect("id")
            .trim_end_matches(')')
            .to_string()
    }
}

pub async fn error_code(r: Response) -> (u16, String, String) {
    let s = r.status().as_u16();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    (
        s,
        v["error"]["code"].as_str().unwrap_or("").to_string(),
        v["error"]["message"].as_str().unwrap_or("").to_string(),
    )
}
