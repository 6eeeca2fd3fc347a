//! `?fetchXml=`: the common FetchXML subset, and a 400 for what is not emulated.
mod common;

use common::{error_code, start};
use reqwest::Method;
use serde_json::{Value, json};

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

async fn fetch(env: &common::Env, set: &str, xml: &str, prefer: Option<&str>) -> (u16, Value) {
    let mut headers = Vec::new();
    if let Some(p) = prefer {
        headers.push(("Prefer", p));
    }
    let r = env
        .call(
            Method::GET,
            &format!("{set}?fetchXml={}", enc(xml)),
            &env.admin_token,
            None,
            &headers,
        )
        .await;
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn fetch_xml_filters_orders_limits_and_pages() {
    let env = start().await;
    for (i, name) in ["Alpha", "Bravo", "Charlie", "Delta", "Echo"]
        .iter()
        .enumerate()
    {
        env.create(
            "leads",
            json!({"lastname": name, "subject": "fx", "leadsourcecode": if i % 2 == 0 { 1 } else { 2 }}),
        )
        .await;
    }
    env.create("leads", json!({"lastname": "Other", "subject": "not this"}))
        .await;
    // top + filter + order.
    let (s, v) = fetch(
        &env,
        "leads",
        r#"<fetch top="2"><entity name="lead"><attribute name="lastname"/><order attribute="lastname" descending="true"/><filter type="and"><condition attribute="subject" operator="eq" value="fx"/></filter></entity></fetch>"#,
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let names: Vec<&str> = v["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["lastname"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Echo", "Delta"]);
    assert!(
        v["value"][0].get("subject").is_none(),
        "only the listed attributes"
    );
    // or-filter, in, like.
    let (s, v) = fetch(
        &env,
        "leads",
        r#"<fetch><entity name="lead"><attribute name="lastname"/><filter type="or"><condition attribute="lastname" operator="like" value="Al%"/><condition attribute="lastname" operator="in"><value>Echo</value><value>Delta</value></condition></filter></entity></fetch>"#,
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["value"].as_array().unwrap().len(), 3);
    // Paging with count/page, paging cookie and morerecords annotations.
    let xml = |page: u32| {
        format!(
            r#"<fetch count="2" page="{page}"><entity name="lead"><attribute name="lastname"/><order attribute="lastname"/><filter><condition attribute="subject" operator="eq" value="fx"/></filter></entity></fetch>"#
        )
    };
    let prefer = r#"odata.include-annotations="Microsoft.Dynamics.CRM.fetchxmlpagingcookie,Microsoft.Dynamics.CRM.morerecords""#;
    let mut seen = Vec::new();
    for page in 1..=3 {
        let (s, v) = fetch(&env, "leads", &xml(page), Some(prefer)).await;
        assert_eq!(s, 200, "{v}");
        for r in v["value"].as_array().unwrap() {
            seen.push(r["lastname"].as_str().unwrap().to_string());
        }
        let more = v["@Microsoft.Dynamics.CRM.morerecords"].as_bool().unwrap();
        assert_eq!(more, page < 3, "page {page}");
        if more {
            assert!(
                v["@Microsoft.Dynamics.CRM.fetchxmlpagingcookie"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("<cookie pagenumber=\"{}\"", page + 1))
            );
        }
    }
    assert_eq!(seen, ["Alpha", "Bravo", "Charlie", "Delta", "Echo"]);
}

#[tokio::test]
async fn fetch_xml_it_cannot_run_is_a_400() {
    let env = start().await;
    for xml in [
        r#"<fetch><entity name="contact"><all-attributes/></entity></fetch>"#,
        r#"<fetch><entity name="lead"><link-entity name="account" from="accountid" to="parentaccountid"/></entity></fetch>"#,
        r#"<fetch aggregate="true"><entity name="lead"><attribute name="leadid" aggregate="count" alias="n"/></entity></fetch>"#,
        r#"<fetch><entity name="lead"><filter><condition attribute="lastname" operator="eq-userid"/></filter></entity></fetch>"#,
        r#"<fetch><entity name="lead"><attribute name="nosuchcolumn"/></entity></fetch>"#,
        r#"<fetch><entity name="lead">"#,
    ] {
        let r = env
            .call(
                Method::GET,
                &format!("leads?fetchXml={}", enc(xml)),
                &env.admin_token,
                None,
                &[],
            )
            .await;
        let (s, _, msg) = error_code(r).await;
        assert_eq!(s, 400, "{xml}: {msg}");
    }
}

#[tokio::test]
async fn sql_and_stored_queries_are_a_400_not_every_row() {
    let env = start().await;
    env.create("leads", json!({"lastname": "Visible"})).await;
    for q in [
        "sql=SELECT%20TOP%201%20lastname%20FROM%20lead",
        "savedQuery=00000000-0000-0000-00aa-000010001001",
        "userQuery=00000000-0000-0000-00aa-000010001001",
    ] {
        let r = env
            .call(
                Method::GET,
                &format!("leads?{q}"),
                &env.admin_token,
                None,
                &[],
            )
            .await;
        let (s, code, _) = error_code(r).await;
        assert_eq!((s, code.as_str()), (400, "0x80060888"), "{q}");
    }
}
