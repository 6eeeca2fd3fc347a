//! $batch, CreateMultiple/UpdateMultiple/UpsertMultiple, metadata and custom columns.
mod common;

use common::{error_code, start};
use reqwest::Method;
use serde_json::{Value, json};

async fn batch(
    env: &common::Env,
    body: String,
    boundary: &str,
    prefer: Option<&str>,
) -> (u16, String) {
    let mut rb = env
        .http
        .post(format!("{}$batch", env.api))
        .bearer_auth(&env.admin_token)
        .header(
            "Content-Type",
            format!("multipart/mixed;boundary={boundary}"),
        )
        .body(body);
    if let Some(p) = prefer {
        rb = rb.header("Prefer", p);
    }
    let r = rb.send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.text().await.unwrap())
}

#[tokio::test]
async fn batch_change_set_with_content_id_references() {
    let env = start().await;
    let api = env.api.clone();
    // LF-only framing, unquoted boundaries, absolute request lines: what dynamics-web-api sends.
    let body = format!(
        "\n--b1\nContent-Type: multipart/mixed;boundary=cs1\n\n--cs1\nContent-Type: application/http\nContent-Transfer-Encoding: binary\nContent-ID: 1\n\nPOST {api}accounts HTTP/1.1\nContent-Type: application/json\n\n{{\"name\":\"Batch Co\"}}\n--cs1\nContent-Type: application/http\nContent-Transfer-Encoding: binary\nContent-ID: 2\n\nPOST {api}contacts HTTP/1.1\nContent-Type: application/json\n\n{{\"lastname\":\"Batchy\",\"parentcustomerid_account@odata.bind\":\"$1\"}}\n--cs1\nContent-Type: application/http\nContent-Transfer-Encoding: binary\nContent-ID: 3\n\nPATCH $1 HTTP/1.1\nContent-Type: application/json\n\n{{\"telephone1\":\"123\"}}\n--cs1--\n--b1\nContent-Type: application/http\nContent-Transfer-Encoding: binary\n\nGET {api}accounts?$select=name,telephone1&$filter=name%20eq%20'Batch%20Co' HTTP/1.1\nAccept: application/json\n\n--b1--\n"
    );
    let (s, text) = batch(&env, body, "b1", None).await;
    assert_eq!(s, 200, "{text}");
    assert!(text.starts_with("--batchresponse_"), "{text}");
    assert!(text.contains("--changesetresponse_"));
    assert_eq!(text.matches("HTTP/1.1 204 No Content").count(), 3, "{text}");
    assert!(text.contains("HTTP/1.1 200 OK"));
    assert!(text.contains("\"telephone1\":\"123\""), "{text}");
    assert!(text.contains("Content-ID: 2"));
    let (_, v) = env
        .get("contacts?$select=lastname,_parentcustomerid_value&$filter=lastname eq 'Batchy'")
        .await;
    assert!(v["value"][0]["_parentcustomerid_value"].is_string());
    env.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn failing_change_set_rolls_back_and_continue_on_error() {
    let env = start().await;
    let part = |cid: u32, body: &str| {
        format!(
            "--cs\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: {cid}\r\n\r\nPOST /api/data/v9.2/leads HTTP/1.1\r\nContent-Type: application/json; type=entry\r\n\r\n{body}\r\n"
        )
    };
    let body = format!(
        "--batch_x\r\nContent-Type: multipart/mixed; boundary=\"cs\"\r\n\r\n{}{}--cs--\r\n--batch_x\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\nGET leads?$select=lastname HTTP/1.1\r\n\r\n\r\n--batch_x--\r\n",
        part(1, r#"{"lastname":"Rolled"}"#),
        part(2, r#"{"lastname":"Bad","nosuch":1}"#)
    );
    let (s, text) = batch(&env, body.clone(), "\"batch_x\"", None).await;
    assert_eq!(s, 400, "{text}");
    assert!(text.contains("HTTP/1.1 400 Bad Request"));
    assert!(
        !text.contains("HTTP/1.1 200 OK"),
        "processing must stop: {text}"
    );
    let (_, v) = env
        .get("leads?$select=lastname&$filter=lastname eq 'Rolled'")
        .await;
    assert_eq!(
        v["value"].as_array().unwrap().len(),
        0,
        "change set must roll back"
    );
    let (s, text) = batch(&env, body, "\"batch_x\"", Some("odata.continue-on-error")).await;
    assert_eq!(s, 200);
    assert!(text.contains("HTTP/1.1 400 Bad Request"));
    assert!(text.contains("HTTP/1.1 200 OK"));
    // Forward Content-ID reference.
    let body = "--b\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n--c\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 1\r\n\r\nPATCH $2 HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{}\r\n--c--\r\n--b--\r\n".to_string();
    let (s, text) = batch(&env, body, "b", None).await;
    assert_eq!(s, 400);
    assert!(
        text.contains("Content-ID Reference: '$2' does not exist in the batch context."),
        "{text}"
    );
    // Malformed batch.
    let (s, _) = batch(&env, "garbage".into(), "nope", None).await;
    assert_eq!(s, 400);
    env.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn create_update_upsert_multiple() {
    let env = start().await;
    let targets: Vec<Value> = (0..50).map(|i| json!({"@odata.type": "Microsoft.Dynamics.CRM.contact", "lastname": format!("Multi{i}")})).collect();
    let r = env
        .send(
            Method::POST,
            "contacts/Microsoft.Dynamics.CRM.CreateMultiple",
            json!({"Targets": targets}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("#Microsoft.Dynamics.CRM.CreateMultipleResponse")
    );
    let ids: Vec<String> = v["Ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 50);
    let upd: Vec<Value> = ids.iter().map(|id| json!({"@odata.type": "Microsoft.Dynamics.CRM.contact", "contactid": id, "jobtitle": "Updated"})).collect();
    let r = env
        .send(
            Method::POST,
            "contacts/Microsoft.Dynamics.CRM.UpdateMultiple",
            json!({"Targets": upd}),
        )
        .await;
    assert_eq!(r.status(), 204);
    let (_, v) = env.get("contacts/$count").await;
    let _ = v;
    let (_, v) = env
        .get("contacts?$select=jobtitle&$filter=jobtitle eq 'Updated'&$count=true")
        .await;
    assert_eq!(v["@odata.count"], 50);
    // Upsert: one existing by id, one new by alternate key on accounts.
    let acc = env
        .create("accounts", json!({"name": "A", "accountnumber": "K1"}))
        .await;
    let r = env.send(Method::POST, "accounts/Microsoft.Dynamics.CRM.UpsertMultiple", json!({"Targets": [
        {"@odata.type": "Microsoft.Dynamics.CRM.account", "accountid": acc, "name": "A2"},
        {"@odata.type": "Microsoft.Dynamics.CRM.account", "@odata.id": "accounts(accountnumber='K2')", "name": "B"},
        {"@odata.type": "Microsoft.Dynamics.CRM.account", "@odata.id": "accounts(accountnumber='K1')", "telephone1": "9"},
    ]})).await;
    assert_eq!(r.status(), 204);
    let (_, v) = env
        .get("accounts?$select=name,accountnumber,telephone1&$orderby=accountnumber")
        .await;
    assert_eq!(v["value"][0]["name"], "A2");
    assert_eq!(v["value"][0]["telephone1"], "9");
    assert_eq!(v["value"][1]["name"], "B");
    assert_eq!(v["value"][1]["accountnumber"], "K2");
    // All or nothing: one bad target rolls back the whole request.
    let r = env
        .send(
            Method::POST,
            "contacts/Microsoft.Dynamics.CRM.CreateMultiple",
            json!({"Targets": [
                {"@odata.type": "Microsoft.Dynamics.CRM.contact", "lastname": "Atomic1"},
                {"@odata.type": "Microsoft.Dynamics.CRM.contact", "lastname": "x".repeat(80)},
            ]}),
        )
        .await;
    assert_eq!(error_code(r).await.1, "0x80044331");
    let (_, v) = env.get("contacts?$filter=lastname eq 'Atomic1'").await;
    assert_eq!(v["value"].as_array().unwrap().len(), 0);
    // Missing @odata.type; UpdateMultiple of a missing row.
    let r = env
        .send(
            Method::POST,
            "contacts/Microsoft.Dynamics.CRM.CreateMultiple",
            json!({"Targets": [{"lastname": "x"}]}),
        )
        .await;
    assert_eq!(error_code(r).await.0, 400);
    let r = env.send(Method::POST, "contacts/Microsoft.Dynamics.CRM.UpdateMultiple", json!({"Targets": [{"@odata.type": "Microsoft.Dynamics.CRM.contact", "contactid": "00000000-0000-0000-0000-0000000000aa", "lastname": "x"}]})).await;
    assert_eq!(error_code(r).await.0, 404);
    env.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn metadata_and_custom_boolean_column() {
    let env = start().await;
    let r = env
        .call(
            Method::GET,
            "$metadata",
            &env.admin_token,
            None,
            &[("Accept", "application/xml")],
        )
        .await;
    assert_eq!(r.status(), 200);
    let xml = r.text().await.unwrap();
    assert!(xml.contains(r#"<Schema Namespace="Microsoft.Dynamics.CRM" Alias="mscrm""#));
    assert!(xml.contains(r#"<EntitySet Name="leads" EntityType="Microsoft.Dynamics.CRM.lead">"#));
    assert!(!xml.contains("new_synctomkto"));
    let (s, v) = env.get("EntityDefinitions(LogicalName='lead')?$select=LogicalName,EntitySetName,PrimaryIdAttribute").await;
    assert_eq!(s, 200);
    assert_eq!(v["EntitySetName"], "leads");
    assert_eq!(v["PrimaryIdAttribute"], "leadid");
    let (_, list) = env
        .get("EntityDefinitions?$select=LogicalName&$filter=LogicalName eq 'contact'")
        .await;
    assert_eq!(list["value"].as_array().unwrap().len(), 1);
    let (_, a) = env
        .get("EntityDefinitions(LogicalName='lead')/Attributes(LogicalName='lastname')")
        .await;
    assert_eq!(a["MaxLength"], 50);
    assert_eq!(a["AttributeType"], "String");
    // Create the sync filter column like setup does.
    let label = |t: &str| json!({"@odata.type": "Microsoft.Dynamics.CRM.Label", "LocalizedLabels": [{"@odata.type": "Microsoft.Dynamics.CRM.LocalizedLabel", "Label": t, "LanguageCode": 1033}]});
    let body = json!({
        "@odata.type": "Microsoft.Dynamics.CRM.BooleanAttributeMetadata",
        "AttributeType": "Boolean", "AttributeTypeName": {"Value": "BooleanType"},
        "SchemaName": "new_SyncToMkto", "DisplayName": label("Sync to Marketo"), "Description": label("Sync filter"),
        "RequiredLevel": {"Value": "None", "CanBeChanged": true, "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings"},
        "DefaultValue": false,
        "OptionSet": {"@odata.type": "Microsoft.Dynamics.CRM.BooleanOptionSetMetadata", "TrueOption": {"Value": 1, "Label": label("Yes")}, "FalseOption": {"Value": 0, "Label": label("No")}, "OptionSetType": "Boolean"}
    });
    // Not allowed for a non-admin.
    let org = env.org().await;
    let sales = env
        .user_token(org["salesperson_user_id"].as_str().unwrap())
        .await;
    let r = env
        .call(
            Method::POST,
            "EntityDefinitions(LogicalName='lead')/Attributes",
            &sales,
            Some(body.clone()),
            &[],
        )
        .await;
    assert_eq!(r.status(), 403);
    let r = env
        .send(
            Method::POST,
            "EntityDefinitions(LogicalName='lead')/Attributes",
            body.clone(),
        )
        .await;
    assert_eq!(r.status(), 204);
    assert!(
        r.headers()["OData-EntityId"]
            .to_str()
            .unwrap()
            .contains("/Attributes(")
    );
    let r = env
        .send(
            Method::POST,
            "EntityDefinitions(LogicalName='lead')/Attributes",
            body,
        )
        .await;
    assert_eq!(r.status(), 400);
    let (s, a) = env
        .get("EntityDefinitions(LogicalName='lead')/Attributes(LogicalName='new_synctomkto')")
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        a["@odata.type"],
        "#Microsoft.Dynamics.CRM.BooleanAttributeMetadata"
    );
    assert_eq!(a["IsCustomAttribute"], true);
    assert_eq!(
        a["DisplayName"]["UserLocalizedLabel"]["Label"],
        "Sync to Marketo"
    );
    let (s, _) = env.get("EntityDefinitions(LogicalName='lead')/Attributes(LogicalName='new_synctomkto')/Microsoft.Dynamics.CRM.BooleanAttributeMetadata").await;
    assert_eq!(s, 200);
    // It now behaves like a built-in column.
    let id = env
        .create(
            "leads",
            json!({"lastname": "Filtered", "new_synctomkto": false}),
        )
        .await;
    env.create(
        "leads",
        json!({"lastname": "Included", "new_synctomkto": true}),
    )
    .await;
    let (_, v) = env
        .get("leads?$select=lastname,new_synctomkto&$filter=new_synctomkto eq false")
        .await;
    assert_eq!(v["value"].as_array().unwrap().len(), 1);
    assert_eq!(v["value"][0]["leadid"], id);
    let r = env
        .send(
            Method::POST,
            "leads",
            json!({"lastname": "x", "new_synctomkto": "no"}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let r = env
        .call(Method::GET, "$metadata", &env.admin_token, None, &[])
        .await;
    assert!(
        r.text()
            .await
            .unwrap()
            .contains(r#"<Property Name="new_synctomkto" Type="Edm.Boolean"/>"#)
    );
    let r = env
        .call(
            Method::GET,
            "EntityDefinitions(LogicalName='nosuch')",
            &env.admin_token,
            None,
            &[],
        )
        .await;
    assert_eq!(r.status(), 404);
    env.running.shutdown().await.unwrap();
}
