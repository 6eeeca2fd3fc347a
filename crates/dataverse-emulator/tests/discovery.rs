//! Entra ID discovery (what MSAL/azure-identity fetch before a token), the v1 token endpoint and
//! the API's audience check.
mod common;

use common::start;
use reqwest::Method;
use serde_json::Value;

#[tokio::test]
async fn openid_configuration_points_at_the_emulator_token_endpoint() {
    let env = start().await;
    let d = env.running.description().clone();
    let v: Value = env
        .http
        .get(format!(
            "{}/{}/v2.0/.well-known/openid-configuration",
            d.url, d.tenant_id
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["token_endpoint"], d.token_url.as_str());
    for k in [
        "authorization_endpoint",
        "issuer",
        "jwks_uri",
        "end_session_endpoint",
    ] {
        assert!(v[k].as_str().unwrap().starts_with(&d.url), "{k}: {}", v[k]);
    }
    // The advertised token endpoint really issues tokens.
    let r = env
        .http
        .post(v["token_endpoint"].as_str().unwrap())
        .form(&[
            ("client_id", d.admin_client_id.as_str()),
            ("client_secret", d.admin_client_secret.as_str()),
            ("grant_type", "client_credentials"),
            ("scope", &format!("{}/.default", d.url)),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // JWKS answers (empty: tokens are HMAC-signed).
    let jwks: Value = env
        .http
        .get(v["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(jwks["keys"].is_array());
    // v1 discovery document names the v1 token endpoint.
    let v1: Value = env
        .http
        .get(format!(
            "{}/{}/.well-known/openid-configuration",
            d.url, d.tenant_id
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        v1["token_endpoint"],
        format!("{}/{}/oauth2/token", d.url, d.tenant_id).as_str()
    );
    // Unknown tenant: AADSTS90002.
    let r = env
        .http
        .get(format!(
            "{}/nope/v2.0/.well-known/openid-configuration",
            d.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error_codes"][0], 90002);
}

#[tokio::test]
async fn instance_discovery_answers_like_msal_expects() {
    let env = start().await;
    let d = env.running.description().clone();
    let auth_ep = format!("{}/{}/oauth2/v2.0/authorize", d.url, d.tenant_id);
    let r = env
        .http
        .get(format!("{}/common/discovery/instance", d.url))
        .query(&[("api-version", "1.1"), ("authorization_endpoint", &auth_ep)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["tenant_discovery_endpoint"],
        format!(
            "{}/{}/v2.0/.well-known/openid-configuration",
            d.url, d.tenant_id
        )
        .as_str()
    );
    let host = d.url.trim_start_matches("http://");
    assert_eq!(v["metadata"][0]["preferred_network"], host);
    assert_eq!(v["metadata"][0]["aliases"][0], host);
}

#[tokio::test]
async fn v1_token_endpoint_takes_resource() {
    let env = start().await;
    let d = env.running.description().clone();
    let r = env
        .http
        .post(format!("{}/{}/oauth2/token", d.url, d.tenant_id))
        .form(&[
            ("client_id", d.admin_client_id.as_str()),
            ("client_secret", d.admin_client_secret.as_str()),
            ("grant_type", "client_credentials"),
            ("resource", d.url.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], "3599");
    assert_eq!(v["resource"], d.url.as_str());
    assert!(v["expires_on"].as_str().unwrap().parse::<i64>().is_ok());
    let tok = v["access_token"].as_str().unwrap();
    let r = env.call(Method::GET, "WhoAmI", tok, None, &[]).await;
    assert_eq!(r.status(), 200);
    // Missing resource.
    let r = env
        .http
        .post(format!("{}/{}/oauth2/token", d.url, d.tenant_id))
        .form(&[
            ("client_id", d.admin_client_id.as_str()),
            ("client_secret", d.admin_client_secret.as_str()),
            ("grant_type", "client_credentials"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn tokens_for_another_resource_are_rejected_by_the_api() {
    let env = start().await;
    let d = env.running.description().clone();
    let form = |scope: String| {
        vec![
            ("client_id", d.admin_client_id.clone()),
            ("client_secret", d.admin_client_secret.clone()),
            ("grant_type", "client_credentials".to_string()),
            ("scope", scope),
        ]
    };
    let r = env
        .http
        .post(&d.token_url)
        .form(&form("https://other.crm.dynamics.com/.default".into()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "Entra issues it; the API refuses it");
    let v: Value = r.json().await.unwrap();
    let foreign = v["access_token"].as_str().unwrap().to_string();
    let r = env.call(Method::GET, "WhoAmI", &foreign, None, &[]).await;
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    // The org URL with a trailing slash (as some SDKs send it) is this organization.
    let r = env
        .http
        .post(&d.token_url)
        .form(&form(format!("{}//.default", d.url)))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    let r = env
        .call(
            Method::GET,
            "WhoAmI",
            v["access_token"].as_str().unwrap(),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status(), 200);
    // Test-surface user tokens carry this organization's audience.
    let org = env.org().await;
    let user = env
        .user_token(org["salesperson_user_id"].as_str().unwrap())
        .await;
    let r = env.call(Method::GET, "WhoAmI", &user, None, &[]).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn bad_secret_message_names_the_app() {
    let env = start().await;
    let d = env.running.description().clone();
    let r = env
        .http
        .post(&d.token_url)
        .form(&[
            ("client_id", d.admin_client_id.as_str()),
            ("client_secret", "wrong"),
            ("grant_type", "client_credentials"),
            ("scope", &format!("{}/.default", d.url)),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    let msg = v["error_description"].as_str().unwrap();
    assert!(
        msg.contains(&format!(
            "for a secret added to app '{}'. Trace ID:",
            d.admin_client_id
        )),
        "{msg}"
    );
}
