//! Metadata API: `$expand` of Attributes/OptionSet/Keys, casts on attribute collections, the
//! EntityMetadata properties SDKs filter on, `Keys`, and a 400 for anything unsupported.
mod common;

use common::{error_code, start};
use reqwest::Method;

#[tokio::test]
async fn entity_definitions_expand_attributes_with_nested_select() {
    let env = start().await;
    let (s, v) = env
        .get("EntityDefinitions(LogicalName='lead')?$select=LogicalName&$expand=Attributes($select=LogicalName,AttributeType)")
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["LogicalName"], "lead");
    assert!(v.get("EntitySetName").is_none(), "$select applies: {v}");
    let attrs = v["Attributes"].as_array().expect("expanded Attributes");
    let names: Vec<&str> = attrs
        .iter()
        .map(|a| a["LogicalName"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"leadsourcecode") && names.contains(&"emailaddress1"));
    assert!(
        attrs
            .iter()
            .all(|a| a.get("DisplayName").is_none() && a["AttributeType"].is_string())
    );
    // A nested $filter on a collection-valued expansion works too.
    let (s, v) = env
        .get("EntityDefinitions(LogicalName='lead')?$select=LogicalName&$expand=Attributes($select=LogicalName;$filter=LogicalName eq 'leadsourcecode')")
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["Attributes"].as_array().unwrap().len(), 1);
    // Keys expand (account has the accountnumber alternate key).
    let (s, v) = env
        .get("EntityDefinitions(LogicalName='account')?$select=LogicalName&$expand=Keys($select=KeyAttributes)")
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["Keys"][0]["KeyAttributes"][0], "accountnumber");
}

#[tokio::test]
async fn picklist_cast_with_expanded_option_set() {
    let env = start().await;
    let (s, v) = env
        .get("EntityDefinitions(LogicalName='lead')/Attributes(LogicalName='leadsourcecode')/Microsoft.Dynamics.CRM.PicklistAttributeMetadata?$select=LogicalName&$expand=OptionSet($select=Options)")
        .await;
    assert_eq!(s, 200, "{v}");
    let options = v["OptionSet"]["Options"].as_array().expect("options");
    assert!(!options.is_empty());
    assert!(options[0]["Value"].is_i64());
    assert!(options[0]["Label"]["UserLocalizedLabel"]["Label"].is_string());
    // GlobalOptionSet: local choices have none.
    let (s, v) = env
        .get("EntityDefinitions(LogicalName='lead')/Attributes(LogicalName='leadsourcecode')/Microsoft.Dynamics.CRM.PicklistAttributeMetadata?$select=LogicalName&$expand=GlobalOptionSet")
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(v["GlobalOptionSet"].is_null());
    // Casting to the wrong type of that attribute is an error, an unknown type a 404.
    let (s, _) = env
        .get("EntityDefinitions(LogicalName='lead')/Attributes(LogicalName='leadsourcecode')/Microsoft.Dynamics.CRM.BooleanAttributeMetadata")
        .await;
    assert_eq!(s, 400);
    let (s, _) = env
        .get("EntityDefinitions(LogicalName='lead')/Attributes/Microsoft.Dynamics.CRM.NoSuchMetadata")
        .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn cast_on_the_attribute_collection_filters_by_type() {
    let env = start().await;
    let (s, v) = env
        .get("EntityDefinitions(LogicalName='lead')/Attributes/Microsoft.Dynamics.CRM.BooleanAttributeMetadata?$select=LogicalName")
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(
        v["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("/Attributes/Microsoft.Dynamics.CRM.BooleanAttributeMetadata")
    );
    let names: Vec<&str> = v["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["LogicalName"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"donotemail"), "{names:?}");
    assert!(!names.contains(&"emailaddress1"), "{names:?}");
    let (s, v) = env
        .get("EntityDefinitions(LogicalName='lead')/Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata?$select=LogicalName&$expand=OptionSet")
        .await;
    assert_eq!(s, 200, "{v}");
    let all = v["value"].as_array().unwrap();
    assert!(!all.is_empty());
    assert!(all.iter().all(|a| a["OptionSet"]["Options"].is_array()));
}

#[tokio::test]
async fn entity_definitions_have_the_properties_sdks_filter_on() {
    let env = start().await;
    let (s, v) = env
        .get("EntityDefinitions?$select=LogicalName,EntitySetName,SchemaName,PrimaryIdAttribute,PrimaryNameAttribute,IsCustomEntity,ObjectTypeCode,ChangeTrackingEnabled&$filter=IsPrivate eq false")
        .await;
    assert_eq!(s, 200, "{v}");
    let lead = v["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["LogicalName"] == "lead")
        .expect("lead listed with IsPrivate eq false");
    assert_eq!(lead["EntitySetName"], "leads");
    assert_eq!(lead["PrimaryIdAttribute"], "leadid");
    assert_eq!(lead["IsCustomEntity"], false);
    assert_eq!(lead["ObjectTypeCode"], 4);
    assert!(lead.get("IsPrivate").is_none(), "$select applies");
}

#[tokio::test]
async fn keys_are_listed_and_addressable() {
    let env = start().await;
    let (s, v) = env
        .get("EntityDefinitions(LogicalName='account')/Keys")
        .await;
    assert_eq!(s, 200, "{v}");
    let keys = v["value"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["KeyAttributes"][0], "accountnumber");
    assert_eq!(keys[0]["EntityKeyIndexStatus"], "Active");
    let name = keys[0]["LogicalName"].as_str().unwrap().to_string();
    let (s, v) = env
        .get(&format!(
            "EntityDefinitions(LogicalName='account')/Keys(LogicalName='{name}')"
        ))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["EntityLogicalName"], "account");
    let (s, v) = env.get("EntityDefinitions(LogicalName='lead')/Keys").await;
    assert_eq!(s, 200);
    assert_eq!(v["value"].as_array().unwrap().len(), 0);
    let (s, _) = env
        .get("EntityDefinitions(LogicalName='account')/Keys(LogicalName='nope')")
        .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn unsupported_metadata_options_are_400_not_ignored() {
    let env = start().await;
    for path in [
        "EntityDefinitions(LogicalName='lead')?$expand=ManyToOneRelationships",
        "EntityDefinitions(LogicalName='lead')/Attributes?$expand=Bogus",
        "EntityDefinitions?$top=1",
        "EntityDefinitions?$orderby=LogicalName",
    ] {
        let r = env
            .call(Method::GET, path, &env.admin_token, None, &[])
            .await;
        let (s, code, _) = error_code(r).await;
        assert_eq!((s, code.as_str()), (400, "0x80060888"), "{path}");
    }
}

#[tokio::test]
async fn csdl_declares_entity_definitions_and_alternate_keys() {
    let env = start().await;
    let r = env
        .call(
            Method::GET,
            "$metadata?annotations=true",
            &env.admin_token,
            None,
            &[],
        )
        .await;
    assert_eq!(r.status(), 200);
    let xml = r.text().await.unwrap();
    assert!(xml.contains(
        r#"<EntitySet Name="EntityDefinitions" EntityType="Microsoft.Dynamics.CRM.EntityMetadata"/>"#
    ));
    assert!(xml.contains(r#"<EntityType Name="EntityMetadata" BaseType="mscrm.MetadataBase">"#));
    assert!(xml.contains(r#"<Annotation Term="OData.Community.Keys.V1.AlternateKeys">"#));
    assert!(xml.contains(r#"<PropertyValue Property="Name" PropertyPath="accountnumber"/>"#));
    assert!(xml.contains(r#"<Annotation Term="Org.OData.Capabilities.V1.ChangeTracking">"#));
}

#[tokio::test]
async fn alternate_keys_can_be_created_and_used() {
    let env = start().await;
    let r = env
        .send(
            Method::POST,
            "EntityDefinitions(LogicalName='contact')/Keys",
            serde_json::json!({
                "SchemaName": "new_EmailKey",
                "DisplayName": {"LocalizedLabels": [{"Label": "Email key", "LanguageCode": 1033}]},
                "KeyAttributes": ["emailaddress1"]
            }),
        )
        .await;
    assert_eq!(r.status(), 204, "{:?}", r.text().await);
    assert!(
        r.headers()["OData-EntityId"]
            .to_str()
            .unwrap()
            .contains("/Keys(")
    );
    let (s, v) = env
        .get("EntityDefinitions(LogicalName='contact')/Keys")
        .await;
    assert_eq!(s, 200);
    let key = v["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["SchemaName"] == "new_EmailKey")
        .expect("created key listed");
    assert_eq!(key["LogicalName"], "new_emailkey");
    assert_eq!(key["KeyAttributes"][0], "emailaddress1");
    // Upsert and read through the new key.
    let r = env
        .send(
            Method::PATCH,
            "contacts(emailaddress1='key@example.com')",
            serde_json::json!({"lastname": "Keyed"}),
        )
        .await;
    assert_eq!(r.status(), 204);
    let (s, v) = env
        .get("contacts(emailaddress1='key@example.com')?$select=lastname")
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["lastname"], "Keyed");
    // Same attributes again, or a memo column: 400.
    let r = env
        .send(
            Method::POST,
            "EntityDefinitions(LogicalName='contact')/Keys",
            serde_json::json!({"SchemaName": "new_Other", "KeyAttributes": ["emailaddress1"]}),
        )
        .await;
    assert_eq!(r.status(), 400);
}
