//! CRUD, upsert, ETags, alternate keys, validation, lookups, single columns.
mod common;

use common::{error_code, start};
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn create_retrieve_update_delete_with_etags() {
    let env = start().await;
    // Create with representation.
    let r = env.call(Method::POST, "contacts?$select=firstname,lastname,fullname", &env.admin_token,
        Some(json!({"firstname": "Ada", "lastname": "Lovelace", "emailaddress1": "ada@example.com", "donotbulkemail": true})),
        &[("Prefer", "return=representation")]).await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["Preference-Applied"], "return=representation");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["fullname"], "Ada Lovelace");
    assert!(
        v["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("$metadata#contacts(firstname,lastname,fullname)/$entity")
    );
    let id = v["contactid"].as_str().unwrap().to_string();
    let etag = v["@odata.etag"].as_str().unwrap().to_string();
    assert!(etag.starts_with("W/\""));
    // Retrieve: all columns, system columns set, datetimes without milliseconds.
    let (s, c) = env.get(&format!("contacts({id})")).await;
    assert_eq!(s, 200);
    assert_eq!(c["emailaddress1"], "ada@example.com");
    assert_eq!(c["statecode"], 0);
    assert_eq!(c["statuscode"], 1);
    assert_eq!(c["telephone1"], Value::Null);
    let created = c["createdon"].as_str().unwrap();
    assert_eq!(created.len(), 20, "{created}");
    assert!(created.ends_with('Z'));
    let org = env.org().await;
    let (_, who) = env.get("WhoAmI").await;
    assert_eq!(c["_createdby_value"], who["UserId"]);
    assert_eq!(c["_ownerid_value"], who["UserId"]);
    let _ = org;
    // Conditional GET.
    let r = env
        .call(
            Method::GET,
            &format!("contacts({id})"),
            &env.admin_token,
            None,
            &[("If-None-Match", &etag)],
        )
        .await;
    assert_eq!(r.status(), 304);
    // Update with stale If-Match after a change.
    let r = env
        .call(
            Method::PATCH,
            &format!("contacts({id})"),
            &env.admin_token,
            Some(json!({"telephone1": "555"})),
            &[("If-Match", &etag)],
        )
        .await;
    assert_eq!(r.status(), 204);
    assert!(
        r.headers()["OData-EntityId"]
            .to_str()
            .unwrap()
            .ends_with(&format!("contacts({id})"))
    );
    let r = env
        .call(
            Method::PATCH,
            &format!("contacts({id})"),
            &env.admin_token,
            Some(json!({"telephone1": "556"})),
            &[("If-Match", &etag)],
        )
        .await;
    assert_eq!(
        error_code(r).await,
        (
            412,
            "0x80060882".into(),
            "The version of the existing record doesn't match the RowVersion property provided."
                .into()
        )
    );
    // PATCH with representation → 200.
    let r = env
        .call(
            Method::PATCH,
            &format!("contacts({id})?$select=telephone1"),
            &env.admin_token,
            Some(json!({"telephone1": "557"})),
            &[("Prefer", "return=representation")],
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["telephone1"], "557");
    assert_ne!(v["@odata.etag"], etag);
    // Single column read and write.
    let (s, v) = env.get(&format!("contacts({id})/telephone1")).await;
    assert_eq!((s, v["value"].clone()), (200, json!("557")));
    let r = env
        .send(
            Method::PUT,
            &format!("contacts({id})/jobtitle"),
            json!({"value": "Countess"}),
        )
        .await;
    assert_eq!(r.status(), 204);
    let r = env
        .call(
            Method::DELETE,
            &format!("contacts({id})/telephone1"),
            &env.admin_token,
            None,
            &[],
        )
        .await;
    assert_eq!(r.status(), 204);
    let (_, v) = env
        .get(&format!("contacts({id})?$select=jobtitle,telephone1"))
        .await;
    assert_eq!(v["jobtitle"], "Countess");
    assert_eq!(v["telephone1"], Value::Null);
    // Delete then 404.
    let r = env
        .call(
            Method::DELETE,
            &format!("contacts({id})"),
            &env.admin_token,
            None,
            &[],
        )
        .await;
    assert_eq!(r.status(), 204);
    let r = env
        .call(
            Method::GET,
            &format!("contacts({id})"),
            &env.admin_token,
            None,
            &[],
        )
        .await;
    assert_eq!(
        error_code(r).await,
        (
            404,
            "0x80040217".into(),
            format!("contact With Id = {id} Does Not Exist")
        )
    );
    let r = env
        .call(
            Method::DELETE,
            &format!("contacts({id})"),
            &env.admin_token,
            None,
            &[],
        )
        .await;
    assert_eq!(r.status(), 404);
    env.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn upsert_semantics_and_conditions() {
    let env = start().await;
    let id = "6f1e8a52-0000-4000-8000-000000000001";
    // Upsert creates.
    let r = env
        .send(
            Method::PATCH,
            &format!("leads({id})"),
            json!({"lastname": "Up", "companyname": "Acme"}),
        )
        .await;
    assert_eq!(r.status(), 204);
    assert!(
        r.headers()["OData-EntityId"]
            .to_str()
            .unwrap()
            .ends_with(&format!("leads({id})"))
    );
    // If-None-Match: * on an existing row → 412.
    let r = env
        .call(
            Method::PATCH,
            &format!("leads({id})"),
            &env.admin_token,
            Some(json!({"lastname": "x"})),
            &[("If-None-Match", "*")],
        )
        .await;
    assert_eq!(
        error_code(r).await,
        (
            412,
            "0x80040237".into(),
            "A record with matching key values already exists.".into()
        )
    );
    // If-Match: * on a missing row → 404.
    let missing = "6f1e8a52-0000-4000-8000-000000000002";
    let r = env
        .call(
            Method::PATCH,
            &format!("leads({missing})"),
            &env.admin_token,
            Some(json!({"lastname": "x"})),
            &[("If-Match", "*")],
        )
        .await;
    assert_eq!(error_code(r).await.0, 404);
    // Upsert updates.
    let r = env
        .send(
            Method::PATCH,
            &format!("leads({id})"),
            json!({"companyname": "Acme 2"}),
        )
        .await;
    assert_eq!(r.status(), 204);
    let (_, v) = env
        .get(&format!("leads({id})?$select=companyname,lastname"))
        .await;
    assert_eq!(v["companyname"], "Acme 2");
    assert_eq!(v["lastname"], "Up");
    // Create with an existing id → 412 duplicate.
    let r = env
        .send(
            Method::POST,
            "leads",
            json!({"leadid": id, "lastname": "dup"}),
        )
        .await;
    assert_eq!(error_code(r).await.0, 412);
    env.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn alternate_keys_binds_and_validation() {
    let env = start().await;
    let acc = env
        .create(
            "accounts",
            json!({"name": "Contoso", "accountnumber": "ACC-1"}),
        )
        .await;
    let (s, v) = env
        .get("accounts(accountnumber='ACC-1')?$select=name")
        .await;
    assert_eq!((s, v["accountid"].as_str().unwrap()), (200, acc.as_str()));
    let r = env
        .call(
            Method::GET,
            "accounts(accountnumber='NOPE')",
            &env.admin_token,
            None,
            &[],
        )
        .await;
    assert_eq!(error_code(r).await.1, "0x80060891");
    let r = env
        .call(
            Method::GET,
            "accounts(name='Contoso')",
            &env.admin_token,
            None,
            &[],
        )
        .await;
    assert_eq!(
        error_code(r).await,
        (
            400,
            "0x80060890".into(),
            "The specified key attributes are not a defined key for the account entity".into()
        )
    );
    // Upsert by alternate key creates with the key value.
    let r = env
        .send(
            Method::PATCH,
            "accounts(accountnumber='ACC-2')",
            json!({"name": "Fabrikam"}),
        )
        .await;
    assert_eq!(r.status(), 204);
    let (_, v) = env
        .get("accounts(accountnumber='ACC-2')?$select=name,accountnumber")
        .await;
    assert_eq!(v["name"], "Fabrikam");
    // Duplicate key value.
    let r = env
        .send(
            Method::POST,
            "accounts",
            json!({"name": "Other", "accountnumber": "ACC-1"}),
        )
        .await;
    assert_eq!(error_code(r).await.1, "0x80060892");
    // Lookups: bind to an account, read back _x_value with annotations.
    let c = env.create("contacts", json!({"lastname": "Linked", "parentcustomerid_account@odata.bind": format!("/accounts({acc})")})).await;
    let r = env
        .call(
            Method::GET,
            &format!("contacts({c})?$select=_parentcustomerid_value"),
            &env.admin_token,
            None,
            &[("Prefer", "odata.include-annotations=\"*\"")],
        )
        .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["_parentcustomerid_value"], acc);
    assert_eq!(
        v["_parentcustomerid_value@Microsoft.Dynamics.CRM.lookuplogicalname"],
        "account"
    );
    assert_eq!(
        v["_parentcustomerid_value@OData.Community.Display.V1.FormattedValue"],
        "Contoso"
    );
    assert_eq!(
        v["statecode@OData.Community.Display.V1.FormattedValue"],
        Value::Null
    ); // not selected
    // Bind to a missing record.
    let r = env.send(Method::POST, "contacts", json!({"lastname": "x", "parentcustomerid_account@odata.bind": "/accounts(00000000-0000-0000-0000-000000000009)"})).await;
    assert_eq!(error_code(r).await.1, "0x80040217");
    // Wrong target type.
    let r = env
        .send(
            Method::POST,
            "opportunities",
            json!({"name": "x", "parentaccountid@odata.bind": format!("/contacts({c})")}),
        )
        .await;
    assert_eq!(error_code(r).await.0, 400);
    // Clear a lookup through single-valued $ref.
    let r = env
        .call(
            Method::DELETE,
            &format!("contacts({c})/parentcustomerid_account/$ref"),
            &env.admin_token,
            None,
            &[],
        )
        .await;
    assert_eq!(r.status(), 204);
    let (_, v) = env
        .get(&format!("contacts({c})?$select=_parentcustomerid_value"))
        .await;
    assert_eq!(v["_parentcustomerid_value"], Value::Null);
    let r = env
        .send(
            Method::PUT,
            &format!("contacts({c})/parentcustomerid_account/$ref"),
            json!({"@odata.id": format!("{}accounts({acc})", env.api)}),
        )
        .await;
    assert_eq!(r.status(), 204);
    // Unknown column.
    let r = env
        .send(
            Method::POST,
            "contacts",
            json!({"lastname": "x", "nosuch": 1}),
        )
        .await;
    assert_eq!(
        error_code(r).await,
        (
            400,
            "0x0".into(),
            "Could not find a property named 'nosuch' on type 'Microsoft.Dynamics.CRM.contact'."
                .into()
        )
    );
    // Max length.
    let r = env
        .send(
            Method::POST,
            "contacts",
            json!({"lastname": "x".repeat(51)}),
        )
        .await;
    let (s, code, msg) = error_code(r).await;
    assert_eq!((s, code.as_str()), (400, "0x80044331"));
    assert!(
        msg.contains("exceeded the maximum allowed length of '50'"),
        "{msg}"
    );
    // Wrong type.
    let r = env
        .send(
            Method::POST,
            "contacts",
            json!({"lastname": "x", "donotphone": "yes"}),
        )
        .await;
    assert_eq!(error_code(r).await.0, 400);
    // State/status pairs.
    let r = env
        .send(
            Method::POST,
            "leads",
            json!({"lastname": "x", "statecode": 0, "statuscode": 3}),
        )
        .await;
    let (s, code, msg) = error_code(r).await;
    assert_eq!((s, code.as_str()), (400, "0x80048408"));
    assert!(
        msg.starts_with("3 is not a valid status code for state code LeadState.Open"),
        "{msg}"
    );
    let l = env
        .create(
            "leads",
            json!({"lastname": "q", "statecode": 2, "statuscode": 6}),
        )
        .await;
    let (_, v) = env
        .get(&format!("leads({l})?$select=statecode,statuscode"))
        .await;
    assert_eq!(
        (v["statecode"].as_i64(), v["statuscode"].as_i64()),
        (Some(2), Some(6))
    );
    let r = env
        .send(
            Method::POST,
            "leads",
            json!({"lastname": "x", "leadsourcecode": 99}),
        )
        .await;
    assert_eq!(error_code(r).await.1, "0x80044331");
    // Bad JSON body.
    let r = env
        .http
        .post(format!("{}contacts", env.api))
        .bearer_auth(&env.admin_token)
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Method not allowed on a collection.
    let r = env
        .call(Method::DELETE, "contacts", &env.admin_token, None, &[])
        .await;
    assert_eq!(r.status(), 405);
    env.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn marketo_artefacts_are_visible_and_configurable() {
    let env = start().await;
    let (s, v) = env.get("solutions?$filter=uniquename eq 'MarketoLeadManagement'&$select=friendlyname,version,uniquename").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["value"][0]["friendlyname"], "Marketo Lead Management");
    assert_eq!(v["value"][0]["version"], "5.0.2.1");
    let sol = v["value"][0]["solutionid"].as_str().unwrap().to_string();
    let (_, comps) = env.get(&format!("solutioncomponents?$filter=_solutionid_value eq {sol} and componenttype eq 92&$select=objectid")).await;
    let steps = comps["value"].as_array().unwrap();
    assert!(steps.len() >= 5);
    let step = steps[0]["objectid"].as_str().unwrap().to_string();
    let (_, st) = env
        .get(&format!(
            "sdkmessageprocessingsteps({step})?$select=statecode,name"
        ))
        .await;
    assert_eq!(st["statecode"], 0);
    let r = env
        .send(
            Method::PATCH,
            &format!("sdkmessageprocessingsteps({step})"),
            json!({"statecode": 1, "statuscode": 2}),
        )
        .await;
    assert_eq!(r.status(), 204);
    let (_, st) = env
        .get(&format!(
            "sdkmessageprocessingsteps({step})?$select=statecode"
        ))
        .await;
    assert_eq!(st["statecode"], 1);
    // Test surface can re-enable.
    let r = env
        .http
        .put(format!("{}/_emulator/steps/{step}/state", env.url))
        .json(&json!({"statecode": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (_, st) = env
        .get(&format!(
            "sdkmessageprocessingsteps({step})?$select=statecode,statuscode"
        ))
        .await;
    assert_eq!(
        (st["statecode"].as_i64(), st["statuscode"].as_i64()),
        (Some(0), Some(1))
    );
    // Marketo config Default record and its user lookup.
    let (_, cfg) = env.get("mkt_marketoconfigs?$filter=mkt_name eq 'Default'&$select=mkt_name,_mkt_marketouserid_value").await;
    let cfg_id = cfg["value"][0]["mkt_marketoconfigid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(cfg["value"][0]["_mkt_marketouserid_value"], Value::Null);
    let (_, who) = env.get("WhoAmI").await;
    let uid = who["UserId"].as_str().unwrap();
    let r = env
        .send(
            Method::PATCH,
            &format!("mkt_marketoconfigs({cfg_id})"),
            json!({"mkt_marketouserid@odata.bind": format!("/systemusers({uid})")}),
        )
        .await;
    assert_eq!(r.status(), 204);
    let (_, cfg) = env
        .get(&format!(
            "mkt_marketoconfigs({cfg_id})?$select=_mkt_marketouserid_value"
        ))
        .await;
    assert_eq!(cfg["_mkt_marketouserid_value"], uid);
    // PublishAllXml is recorded.
    let r = env
        .call(Method::POST, "PublishAllXml", &env.admin_token, None, &[])
        .await;
    assert_eq!(r.status(), 204);
    let p: Value = env
        .http
        .get(format!("{}/_emulator/publishes", env.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(p["count"], 1);
    assert_eq!(p["publishes"][0]["systemuserid"], uid);
    // Roles and language via the test surface.
    let (_, roles) = env.get("roles?$select=name&$orderby=name").await;
    let names: Vec<&str> = roles["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec!["Marketo Sync User", "Salesperson", "System Administrator"]
    );
    let r = env
        .http
        .put(format!("{}/_emulator/users/{uid}/language", env.url))
        .json(&json!({"uilanguageid": 1031}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (_, us) = env
        .get(&format!(
            "usersettingscollection({uid})?$select=uilanguageid"
        ))
        .await;
    assert_eq!(us["uilanguageid"], 1031);
    let r = env
        .http
        .put(format!("{}/_emulator/users/{uid}/language", env.url))
        .body("{bad")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    env.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn legacy_solution_version_and_persistence_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = mdsync_dataverse_emulator::Config {
        state_dir: Some(dir.path().to_path_buf()),
        marketo_solution_version: "4.0.0.13".into(),
        limits_enabled: false,
        ..Default::default()
    };
    let env = common::start_with(cfg.clone()).await;
    let id = env.create("leads", json!({"lastname": "Persisted"})).await;
    let d1 = env.running.description().clone();
    let (_, v) = env
        .get("solutions?$filter=uniquename eq 'MarketoLeadManagement'&$select=version")
        .await;
    assert_eq!(v["value"][0]["version"], "4.0.0.13");
    env.running.shutdown().await.unwrap();
    let env = common::start_with(cfg).await;
    let d2 = env.running.description().clone();
    assert_eq!(d1.admin_client_secret, d2.admin_client_secret);
    assert_eq!(d1.sync_app_client_id, d2.sync_app_client_id);
    let (s, v) = env.get(&format!("leads({id})?$select=lastname")).await;
    assert_eq!((s, v["lastname"].clone()), (200, json!("Persisted")));
    assert!(!format!("{d2:?}").contains(&d2.admin_client_secret));
    env.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn expand_single_valued_and_many_to_many() {
    let env = start().await;
    let acc = env.create("accounts", json!({"name": "Expando"})).await;
    let c = env.create("contacts", json!({"lastname": "Exp", "parentcustomerid_account@odata.bind": format!("/accounts({acc})")})).await;
    let (s, v) = env.get(&format!("contacts({c})?$select=lastname&$expand=parentcustomerid_account($select=name),parentcustomerid_contact")).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["parentcustomerid_account"]["name"], "Expando");
    assert_eq!(v["parentcustomerid_account"]["accountid"], acc);
    assert_eq!(v["parentcustomerid_contact"], Value::Null);
    let (_, v) = env.get("contacts?$select=lastname&$filter=lastname eq 'Exp'&$expand=parentcustomerid_account($select=name)").await;
    assert_eq!(v["value"][0]["parentcustomerid_account"]["name"], "Expando");
    let (_, who) = env.get("WhoAmI").await;
    let uid = who["UserId"].as_str().unwrap();
    let (_, u) = env
        .get(&format!(
            "systemusers({uid})?$select=fullname&$expand=systemuserroles_association($select=name)"
        ))
        .await;
    assert_eq!(
        u["systemuserroles_association"][0]["name"],
        "System Administrator"
    );
    for bad in [
        "contacts?$expand=nosuch",
        "contacts?$expand=parentcustomerid_account($filter=name eq 'x')",
        "contacts?$expand=parentcustomerid_account(",
    ] {
        let r = env
            .call(Method::GET, bad, &env.admin_token, None, &[])
            .await;
        assert_eq!(error_code(r).await.0, 400, "{bad}");
    }
    env.running.shutdown().await.unwrap();
}
