//! `$expand` on records: lookups (single-valued, with nested `$select`), the main 1:N
//! relationships, on single records and collections; anything unsupported is a 400.
mod common;

use common::{error_code, start};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn lookups_expand_on_single_records_and_collections() {
    let env = start().await;
    let account = env.create("accounts", json!({"name": "Acme Expand"})).await;
    let contact = env
        .create(
            "contacts",
            json!({"firstname": "Ada", "lastname": "Lovelace",
                   "parentcustomerid_account@odata.bind": format!("/accounts({account})")}),
        )
        .await;
    let (s, v) = env
        .get(&format!(
            "contacts({contact})?$select=fullname&$expand=parentcustomerid_account($select=name)"
        ))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["fullname"], "Ada Lovelace");
    assert_eq!(v["parentcustomerid_account"]["name"], "Acme Expand");
    assert_eq!(v["parentcustomerid_account"]["accountid"], account.as_str());
    assert!(v["parentcustomerid_account"].get("revenue").is_none());
    // The other target of the customer lookup is null, not an error.
    let (s, v) = env
        .get(&format!(
            "contacts({contact})?$select=fullname&$expand=parentcustomerid_contact($select=fullname)"
        ))
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(v["parentcustomerid_contact"].is_null());
    // System lookups: owner and creator (the admin app's application user).
    let (s, v) = env
        .get(&format!(
            "contacts({contact})?$select=fullname&$expand=ownerid($select=fullname),createdby($select=fullname)"
        ))
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(v["ownerid"]["fullname"].is_string(), "{v}");
    assert_eq!(v["createdby"]["fullname"], v["ownerid"]["fullname"]);
    // On a collection.
    let (s, v) = env
        .get(&format!(
            "contacts?$select=fullname&$filter=contactid eq {contact}&$expand=parentcustomerid_account($select=name)"
        ))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["value"][0]["parentcustomerid_account"]["name"],
        "Acme Expand"
    );
}

#[tokio::test]
async fn one_to_many_relationships_expand_to_arrays() {
    let env = start().await;
    let account = env.create("accounts", json!({"name": "Parent"})).await;
    for n in ["One", "Two"] {
        env.create(
            "contacts",
            json!({"lastname": n, "parentcustomerid_account@odata.bind": format!("/accounts({account})")}),
        )
        .await;
    }
    env.create("contacts", json!({"lastname": "Unrelated"}))
        .await;
    let (s, v) = env
        .get(&format!(
            "accounts({account})?$select=name&$expand=contact_customer_accounts($select=lastname)"
        ))
        .await;
    assert_eq!(s, 200, "{v}");
    let mut names: Vec<&str> = v["contact_customer_accounts"]
        .as_array()
        .expect("array")
        .iter()
        .map(|c| c["lastname"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["One", "Two"]);
    // Declared in $metadata.
    let r = env
        .call(Method::GET, "$metadata", &env.admin_token, None, &[])
        .await;
    let xml = r.text().await.unwrap();
    assert!(xml.contains(
        r#"<NavigationProperty Name="contact_customer_accounts" Type="Collection(mscrm.contact)""#
    ));
}

#[tokio::test]
async fn unsupported_expand_is_a_400() {
    let env = start().await;
    let account = env.create("accounts", json!({"name": "X"})).await;
    for q in [
        "$expand=nosuchnav",
        "$expand=contact_customer_accounts($filter=lastname eq 'a')",
        "$expand=primarycontactid($expand=parentcustomerid_account)",
        "$expand=contact_customer_accounts($top=1)",
    ] {
        for path in [format!("accounts({account})?{q}"), format!("accounts?{q}")] {
            let r = env
                .call(Method::GET, &path, &env.admin_token, None, &[])
                .await;
            let (s, code, _) = error_code(r).await;
            assert_eq!((s, code.as_str()), (400, "0x80060888"), "{path}");
        }
    }
}
