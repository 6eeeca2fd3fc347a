//! Record shapes clients depend on: two-option defaults, formatted values and lookup annotations,
//! schema names.
mod common;

use common::start;
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn new_records_default_two_options_to_false() {
    let env = start().await;
    let lead = env
        .create("leads", json!({"lastname": "Defaults", "subject": "x"}))
        .await;
    let (s, v) = env
        .get(&format!(
            "leads({lead})?$select=donotemail,donotbulkemail,donotphone"
        ))
        .await;
    assert_eq!(s, 200, "{v}");
    for c in ["donotemail", "donotbulkemail", "donotphone"] {
        assert_eq!(v[c], false, "{c}: {v}");
    }
    // An explicit value still wins.
    let lead = env
        .create("leads", json!({"lastname": "Explicit", "donotemail": true}))
        .await;
    let (_, v) = env.get(&format!("leads({lead})?$select=donotemail")).await;
    assert_eq!(v["donotemail"], true);
}

#[tokio::test]
async fn formatted_values_cover_dates_owner_and_lookup_annotations() {
    let env = start().await;
    let account = env
        .create("accounts", json!({"name": "Formatted Co"}))
        .await;
    let contact = env
        .create(
            "contacts",
            json!({"lastname": "Shape", "parentcustomerid_account@odata.bind": format!("/accounts({account})")}),
        )
        .await;
    let r = env
        .call(
            Method::GET,
            &format!(
                "contacts({contact})?$select=createdon,_ownerid_value,_parentcustomerid_value"
            ),
            &env.admin_token,
            None,
            &[("Prefer", "odata.include-annotations=\"*\"")],
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let created = v["createdon@OData.Community.Display.V1.FormattedValue"]
        .as_str()
        .expect("createdon formatted");
    // e.g. "11/24/2026 5:42 AM"
    let (date, time) = created.split_once(' ').expect("date and time");
    assert_eq!(date.split('/').count(), 3, "{created}");
    assert!(time.ends_with("AM") || time.ends_with("PM"), "{created}");
    assert!(
        v["_ownerid_value@OData.Community.Display.V1.FormattedValue"]
            .as_str()
            .is_some_and(|n| !n.is_empty()),
        "{v}"
    );
    assert_eq!(
        v["_ownerid_value@Microsoft.Dynamics.CRM.lookuplogicalname"],
        "systemuser"
    );
    assert_eq!(
        v["_ownerid_value@Microsoft.Dynamics.CRM.associatednavigationproperty"],
        "ownerid"
    );
    assert_eq!(
        v["_parentcustomerid_value@OData.Community.Display.V1.FormattedValue"],
        "Formatted Co"
    );
    assert_eq!(
        v["_parentcustomerid_value@Microsoft.Dynamics.CRM.associatednavigationproperty"],
        "parentcustomerid_account"
    );
}

#[tokio::test]
async fn schema_names_match_the_service() {
    let env = start().await;
    for (attr, schema) in [
        ("emailaddress1", "EMailAddress1"),
        ("donotbulkemail", "DoNotBulkEMail"),
        ("address1_postalcode", "Address1_PostalCode"),
        ("parentcustomerid", "ParentCustomerId"),
    ] {
        let (s, v) = env
            .get(&format!(
                "EntityDefinitions(LogicalName='contact')/Attributes(LogicalName='{attr}')?$select=SchemaName"
            ))
            .await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["SchemaName"], schema);
    }
}
