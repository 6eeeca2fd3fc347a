//! Small wire details: API versions, HEAD, the 32 KB URL limit, maxpagesize capping, strict
//! navigation properties and filter types, and `$batch` parts that name another host.
mod common;

use common::{error_code, start};
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn older_api_versions_and_head_are_served() {
    let env = start().await;
    for v in ["v9.0", "v9.1"] {
        let r = env
            .call(
                Method::GET,
                &format!("{}/api/data/{v}/WhoAmI", env.url),
                &env.admin_token,
                None,
                &[],
            )
            .await;
        assert_eq!(r.status(), 200, "{v}");
        let body: Value = r.json().await.unwrap();
        assert!(
            body["@odata.context"]
                .as_str()
                .unwrap()
                .contains(&format!("/api/data/{v}/$metadata")),
            "{body}"
        );
    }
    let r = env
        .call(Method::HEAD, "accounts?$top=1", &env.admin_token, None, &[])
        .await;
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn url_limit_is_32_kb() {
    let env = start().await;
    let long = "a".repeat(32 * 1024);
    let (s, _) = env.get(&format!("accounts?$filter=name eq '{long}'")).await;
    assert_eq!(s, 414);
    let shorter = "a".repeat(30 * 1024);
    let (s, v) = env
        .get(&format!(
            "accounts?$select=name&$filter=name eq '{shorter}'"
        ))
        .await;
    assert_eq!(s, 200, "{v}");
}

#[tokio::test]
async fn maxpagesize_above_5000_is_capped() {
    let env = start().await;
    let r = env
        .call(
            Method::GET,
            "accounts?$select=name",
            &env.admin_token,
            None,
            &[("Prefer", "odata.maxpagesize=6000")],
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["Preference-Applied"].to_str().unwrap(),
        "odata.maxpagesize=5000"
    );
}

#[tokio::test]
async fn customer_lookups_bind_only_through_typed_navigation_properties() {
    let env = start().await;
    let account = env.create("accounts", json!({"name": "Bind"})).await;
    let r = env
        .send(
            Method::POST,
            "contacts",
            json!({"lastname": "X", "parentcustomerid@odata.bind": format!("/accounts({account})")}),
        )
        .await;
    let (s, _, msg) = error_code(r).await;
    assert_eq!(s, 400);
    assert!(msg.contains("parentcustomerid"), "{msg}");
    // ownerid is a single navigation property and binds fine.
    let org = env.org().await;
    let owner = org["admin_user_id"].as_str().unwrap();
    let r = env
        .send(
            Method::POST,
            "contacts",
            json!({"lastname": "Y", "ownerid@odata.bind": format!("/systemusers({owner})")}),
        )
        .await;
    assert_eq!(r.status(), 204);
}

#[tokio::test]
async fn filter_type_mismatch_is_a_400() {
    let env = start().await;
    let r = env
        .call(
            Method::GET,
            "leads?$filter=statecode eq '0'",
            &env.admin_token,
            None,
            &[],
        )
        .await;
    let (s, code, msg) = error_code(r).await;
    assert_eq!((s, code.as_str()), (400, "0x80060888"));
    assert!(
        msg.contains("Found operand types 'Edm.Int32' and 'Edm.String' for operator kind 'Equal'"),
        "{msg}"
    );
    let (s, _) = env.get("leads?$filter=statecode eq 0").await;
    assert_eq!(s, 200);
    let (s, _) = env.get("leads?$filter=lastname eq 5").await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn batch_parts_for_another_host_are_rejected() {
    let env = start().await;
    env.create("leads", json!({"lastname": "Secret"})).await;
    let body = format!(
        "--b\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\nGET http://evil.example/api/data/v9.2/leads?$select=lastname HTTP/1.1\r\nAccept: application/json\r\n\r\n\r\n--b\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\nGET {}leads?$select=lastname HTTP/1.1\r\nAccept: application/json\r\n\r\n\r\n--b--\r\n",
        env.api
    );
    let r = env
        .http
        .post(format!("{}$batch", env.api))
        .bearer_auth(&env.admin_token)
        .header("Content-Type", "multipart/mixed;boundary=b")
        .header("Prefer", "odata.continue-on-error")
        .body(body)
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    let first = text.find("HTTP/1.1 400").expect("foreign part refused");
    let ok = text.find("HTTP/1.1 200").expect("own part served");
    assert!(first < ok, "{text}");
    assert_eq!(text.matches("Secret").count(), 1, "{text}");
}
