//! Minimal HTTP helpers shared by quickstart and the benchmarks: tokens and JSON calls against the
//! emulators, described by the same JSON that `mdsync emulate --print-json` prints.

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::Value;

/// The Dataverse part of the `--print-json` object.
#[derive(Deserialize, Clone)]
pub struct DataverseInfo {
    pub url: String,
    pub api_url: String,
    pub tenant_id: String,
    pub admin_client_id: String,
    pub admin_client_secret: String,
}

/// The Marketo part of the `--print-json` object.
#[derive(Deserialize, Clone)]
pub struct MarketoInfo {
    pub url: String,
    pub client_id: String,
    pub client_secret: String,
}

pub fn client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(8)
        .build()
        .context("building the HTTP client")
}

/// Client-credentials token for the admin app from the emulator's Entra ID-style endpoint.
pub async fn dataverse_token(http: &reqwest::Client, dv: &DataverseInfo) -> anyhow::Result<String> {
    let token_url = format!("{}/{}/oauth2/v2.0/token", dv.url, dv.tenant_id);
    let scope = format!("{}/.default", dv.url);
    let response = http
        .post(&token_url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", dv.admin_client_id.as_str()),
            ("client_secret", dv.admin_client_secret.as_str()),
            ("scope", scope.as_str()),
        ])
        .send()
        .await
        .with_context(|| format!("POST {token_url}"))?;
    let body = json_body(response, "Dataverse token").await?;
    match body.get("access_token").and_then(Value::as_str) {
        Some(token) => Ok(token.to_owned()),
        None => bail!("Dataverse token response has no access_token: {body}"),
    }
}

/// Marketo identity token for the sync's API user.
pub async fn marketo_token(http: &reqwest::Client, mk: &MarketoInfo) -> anyhow::Result<String> {
    let url = format!("{}/identity/oauth/token", mk.url);
    let response = http
        .get(&url)
        .query(&[
            ("grant_type", "client_credentials"),
            ("client_id", mk.client_id.as_str()),
            ("client_secret", mk.client_secret.as_str()),
        ])
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let body = json_body(response, "Marketo token").await?;
    match body.get("access_token").and_then(Value::as_str) {
        Some(token) => Ok(token.to_owned()),
        None => bail!("Marketo identity response has no access_token: {body}"),
    }
}

/// The JSON body of a successful (2xx) response, or an error quoting status and body.
pub async fn json_body(response: reqwest::Response, what: &str) -> anyhow::Result<Value> {
    let status = response.status();
    let text = response
        .text()
        .await
        .with_context(|| format!("{what}: reading the body"))?;
    if !status.is_success() {
        bail!("{what}: HTTP {status}: {}", truncate(&text));
    }
    serde_json::from_str(&text)
        .with_context(|| format!("{what}: body is not JSON: {}", truncate(&text)))
}

/// A Marketo envelope's `result`, or its `errors` as an error.
pub async fn marketo_result(response: reqwest::Response, what: &str) -> anyhow::Result<Value> {
    let body = json_body(response, what).await?;
    if body.get("success").and_then(Value::as_bool) != Some(true) {
        bail!("{what}: Marketo answered success=false: {body}");
    }
    Ok(body)
}

pub fn truncate(text: &str) -> String {
    const MAX: usize = 600;
    if text.len() <= MAX {
        return text.to_owned();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len())
}
