//! Lead qualification (`QualifyLead`) and record merges (`Merge`) over real HTTP.
mod common;

use common::{Env, error_code, start};
use reqwest::Method;
use serde_json::{Value, json};

/// A human user holding only the Marketo Sync User role, and a token acting as them.
async fn sync_user(env: &Env) -> (String, String) {
    let org = env.org().await;
    let uid = env
        .create(
            "systemusers",
            json!({"firstname": "Marketo", "lastname": "Sync", "domainname": "mktosync@example.com", "internalemailaddress": "mktosync@example.com"}),
        )
        .await;
    let role = org["roles"]["Marketo Sync User"].as_str().unwrap();
    let r = env
        .send(
            Method::POST,
            &format!("systemusers({uid})/systemuserroles_association/$ref"),
            json!({"@odata.id": format!("{}roles({role})", env.api)}),
        )
        .await;
    assert_eq!(r.status(), 204);
    let token = env.user_token(&uid).await;
    (uid, token)
}

/// Adds the Boolean sync-filter column `new_synctomkto` to a table.
async fn add_filter_column(env: &Env, entity: &str) {
    let label = |t: &str| json!({"@odata.type": "Microsoft.Dynamics.CRM.Label", "LocalizedLabels": [{"@odata.type": "Microsoft.Dynamics.CRM.LocalizedLabel", "Label": t, "LanguageCode": 1033}]});
    let body = json!({
        "@odata.type": "Microsoft.Dynamics.CRM.BooleanAttributeMetadata",
        "AttributeType": "Boolean", "AttributeTypeName": {"Value": "BooleanType"},
        "SchemaName": "new_SyncToMkto", "DisplayName": label("Sync to Marketo"),
        "RequiredLevel": {"Value": "None", "CanBeChanged": true, "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings"},
        "DefaultValue": false,
        "OptionSet": {"@odata.type": "Microsoft.Dynamics.CRM.BooleanOptionSetMetadata", "TrueOption": {"Value": 1, "Label": label("Yes")}, "FalseOption": {"Value": 0, "Label": label("No")}, "OptionSetType": "Boolean"}
    });
    let r = env
        .send(
            Method::POST,
            &format!("EntityDefinitions(LogicalName='{entity}')/Attributes"),
            body,
        )
        .await;
    assert_eq!(r.status(), 204, "{:?}", r.text().await);
}

fn qualify_body(account: bool, contact: bool, opportunity: bool) -> Value {
    json!({"CreateAccount": account, "CreateContact": contact, "CreateOpportunity": opportunity, "Status": 3})
}

async fn post(env: &Env, path: &str, token: &str, body: Value) -> reqwest::Response {
    env.call(Method::POST, path, token, Some(body), &[]).await
}

/// Starts change tracking on a set and returns the delta link.
async fn delta_link(env: &Env, set: &str, select: &str) -> String {
    let r = env
        .call(
            Method::GET,
            &format!("{set}?$select={select}"),
            &env.admin_token,
            None,
            &[("Prefer", "odata.track-changes")],
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["@odata.deltaLink"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn qualify_lead_creates_linked_records_and_closes_the_lead() {
    let env = start().await;
    add_filter_column(&env, "lead").await;
    add_filter_column(&env, "contact").await;
    let lead = env
        .create(
            "leads",
            json!({"firstname": "Grace", "lastname": "Hopper", "emailaddress1": "grace@navy.example",
                   "telephone1": "555-0100", "jobtitle": "Rear Admiral", "companyname": "Navy Labs",
                   "subject": "Compiler deal", "address1_city": "Arlington", "donotphone": true,
                   "new_synctomkto": true}),
        )
        .await;
    let contacts_delta = delta_link(&env, "contacts", "fullname").await;
    let r = post(
        &env,
        &format!("leads({lead})/Microsoft.Dynamics.CRM.QualifyLead"),
        &env.admin_token,
        qualify_body(true, true, true),
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("$metadata#Collection(Microsoft.Dynamics.CRM.crmbaseentity)"),
        "{v}"
    );
    let created = v["value"].as_array().unwrap();
    assert_eq!(created.len(), 3, "{v}");
    let find = |ty: &str, key: &str| {
        created
            .iter()
            .find(|e| e["@odata.type"] == format!("#Microsoft.Dynamics.CRM.{ty}"))
            .and_then(|e| e[key].as_str())
            .unwrap_or_else(|| panic!("no {ty} in {v}"))
            .to_string()
    };
    let account = find("account", "accountid");
    let contact = find("contact", "contactid");
    let opp = find("opportunity", "opportunityid");

    let (s, c) = env.get(&format!("contacts({contact})")).await;
    assert_eq!(s, 200);
    assert_eq!(c["fullname"], "Grace Hopper");
    assert_eq!(c["emailaddress1"], "grace@navy.example");
    assert_eq!(c["telephone1"], "555-0100");
    assert_eq!(c["jobtitle"], "Rear Admiral");
    assert_eq!(c["address1_city"], "Arlington");
    assert_eq!(c["donotphone"], true);
    assert_eq!(c["new_synctomkto"], true);
    assert_eq!(c["_originatingleadid_value"], lead.as_str());
    assert_eq!(c["_parentcustomerid_value"], account.as_str());

    let (_, a) = env.get(&format!("accounts({account})")).await;
    assert_eq!(a["name"], "Navy Labs");
    assert_eq!(a["_originatingleadid_value"], lead.as_str());
    assert_eq!(a["_primarycontactid_value"], contact.as_str());

    let (_, o) = env.get(&format!("opportunities({opp})")).await;
    assert_eq!(o["name"], "Compiler deal");
    assert_eq!(o["_originatingleadid_value"], lead.as_str());
    assert_eq!(o["_customerid_value"], account.as_str());
    assert_eq!(o["_parentcontactid_value"], contact.as_str());

    let (_, l) = env.get(&format!("leads({lead})")).await;
    assert_eq!(l["statecode"], 1);
    assert_eq!(l["statuscode"], 3);
    assert_eq!(l["_qualifyingopportunityid_value"], opp.as_str());

    // The lookup is filterable, like any other.
    let (s, q) = env
        .get(&format!(
            "contacts?$select=fullname&$filter=_originatingleadid_value eq {lead}"
        ))
        .await;
    assert_eq!(s, 200);
    assert_eq!(q["value"].as_array().unwrap().len(), 1);
    // The new contact shows up in change tracking.
    let (_, d) = env.get(&contacts_delta).await;
    assert!(
        d["value"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["contactid"] == contact.as_str()),
        "{d}"
    );

    // The action and the lookup are declared in $metadata.
    let r = env
        .call(Method::GET, "$metadata", &env.admin_token, None, &[])
        .await;
    let xml = r.text().await.unwrap();
    assert!(xml.contains(r#"<Action Name="QualifyLead" IsBound="true">"#));
    assert!(xml.contains(r#"<ActionImport Name="Merge" Action="Microsoft.Dynamics.CRM.Merge"/>"#));
    assert!(xml.contains("_originatingleadid_value"));

    // A closed lead cannot be qualified again.
    let r = post(
        &env,
        &format!("leads({lead})/Microsoft.Dynamics.CRM.QualifyLead"),
        &env.admin_token,
        qualify_body(false, true, false),
    )
    .await;
    let (s, code, msg) = error_code(r).await;
    assert_eq!((s, code.as_str()), (400, "0x80040203"));
    assert!(msg.contains("already closed"), "{msg}");
}

#[tokio::test]
async fn qualify_lead_errors() {
    let env = start().await;
    let lead = env
        .create("leads", json!({"firstname": "Ann", "lastname": "Other"}))
        .await;
    let path = format!("leads({lead})/Microsoft.Dynamics.CRM.QualifyLead");
    // Status must belong to the Qualified state; nothing is created and the lead stays open.
    let r = post(
        &env,
        &path,
        &env.admin_token,
        json!({"CreateAccount": false, "CreateContact": true, "CreateOpportunity": false, "Status": 4}),
    )
    .await;
    let (s, code, _) = error_code(r).await;
    assert_eq!((s, code.as_str()), (400, "0x80048408"));
    let (_, n) = env
        .get(&format!(
            "contacts?$select=fullname&$filter=_originatingleadid_value eq {lead}"
        ))
        .await;
    assert_eq!(n["value"].as_array().unwrap().len(), 0);
    let (_, l) = env.get(&format!("leads({lead})")).await;
    assert_eq!(l["statecode"], 0);
    // Missing or mistyped parameters.
    let r = post(
        &env,
        &path,
        &env.admin_token,
        json!({"CreateContact": true}),
    )
    .await;
    assert_eq!(r.status(), 400);
    let r = post(
        &env,
        &path,
        &env.admin_token,
        json!({"CreateAccount": "yes", "CreateContact": true, "CreateOpportunity": false, "Status": 3}),
    )
    .await;
    assert_eq!(r.status(), 400);
    let r = env
        .call(Method::POST, &path, &env.admin_token, None, &[])
        .await;
    assert_eq!(r.status(), 400);
    // An account needs the lead's company name.
    let r = post(
        &env,
        &path,
        &env.admin_token,
        qualify_body(true, false, false),
    )
    .await;
    assert_eq!(r.status(), 400);
    // Unknown lead.
    let r = post(
        &env,
        "leads(00000000-0000-0000-0000-000000000001)/Microsoft.Dynamics.CRM.QualifyLead",
        &env.admin_token,
        qualify_body(false, true, false),
    )
    .await;
    let (s, code, _) = error_code(r).await;
    assert_eq!((s, code.as_str()), (404, "0x80040217"));
    // GET is not allowed on an action.
    let r = env
        .call(Method::GET, &path, &env.admin_token, None, &[])
        .await;
    assert_eq!(r.status(), 405);
    // Qualifying with no records to create only closes the lead.
    let r = post(
        &env,
        &path,
        &env.admin_token,
        qualify_body(false, false, false),
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["value"], json!([]));
    let (_, l) = env.get(&format!("leads({lead})")).await;
    assert_eq!(
        (l["statecode"].clone(), l["statuscode"].clone()),
        (json!(1), json!(3))
    );
}

#[tokio::test]
async fn qualify_lead_privileges_follow_the_role() {
    let env = start().await;
    let (_, sync) = sync_user(&env).await;
    let lead = env
        .create(
            "leads",
            json!({"firstname": "Sam", "lastname": "Sync", "companyname": "Sync Co"}),
        )
        .await;
    let path = format!("leads({lead})/Microsoft.Dynamics.CRM.QualifyLead");
    // The Marketo Sync User role cannot create accounts or opportunities…
    let r = post(&env, &path, &sync, qualify_body(true, true, false)).await;
    let (s, code, msg) = error_code(r).await;
    assert_eq!((s, code.as_str()), (403, "0x80040220"));
    assert!(msg.contains("prvCreateAccount"), "{msg}");
    let r = post(&env, &path, &sync, qualify_body(false, true, true)).await;
    let (s, _, msg) = error_code(r).await;
    assert_eq!(s, 403);
    assert!(msg.contains("prvCreateOpportunity"), "{msg}");
    let (_, l) = env.get(&format!("leads({lead})")).await;
    assert_eq!(l["statecode"], 0);
    // …but it can write leads and create contacts, so "Sync As: Contact" works.
    let r = post(&env, &path, &sync, qualify_body(false, true, false)).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["value"][0]["@odata.type"],
        "#Microsoft.Dynamics.CRM.contact"
    );
    // A user with no role at all is refused on the lead itself.
    let org = env.org().await;
    let nobody = env
        .user_token(org["no_role_user_id"].as_str().unwrap())
        .await;
    let lead2 = env.create("leads", json!({"lastname": "Two"})).await;
    let r = post(
        &env,
        &format!("leads({lead2})/Microsoft.Dynamics.CRM.QualifyLead"),
        &nobody,
        qualify_body(false, true, false),
    )
    .await;
    let (s, _, msg) = error_code(r).await;
    assert_eq!(s, 403);
    assert!(msg.contains("prvWriteLead"), "{msg}");
}

fn merge_body(ty: &str, key: &str, target: &str, sub: &str, update: Value) -> Value {
    let mut update = update;
    update["@odata.type"] = json!(format!("Microsoft.Dynamics.CRM.{ty}"));
    json!({
        "Target": {"@odata.type": format!("Microsoft.Dynamics.CRM.{ty}"), key: target},
        "Subordinate": {"@odata.type": format!("Microsoft.Dynamics.CRM.{ty}"), key: sub},
        "UpdateContent": update,
        "PerformParentingChecks": false,
    })
}

#[tokio::test]
async fn merge_contacts_accounts_and_leads() {
    let env = start().await;
    add_filter_column(&env, "contact").await;
    let target = env
        .create(
            "contacts",
            json!({"firstname": "Ada", "lastname": "Lovelace", "new_synctomkto": true}),
        )
        .await;
    let sub = env
        .create(
            "contacts",
            json!({"firstname": "Ada", "lastname": "L.", "telephone1": "555-0199", "new_synctomkto": false}),
        )
        .await;
    let opp = env
        .create(
            "opportunities",
            json!({"name": "Engine", "customerid_contact@odata.bind": format!("contacts({sub})")}),
        )
        .await;
    let delta = delta_link(&env, "contacts", "fullname,statecode,merged").await;
    let r = post(
        &env,
        "Merge",
        &env.admin_token,
        merge_body(
            "contact",
            "contactid",
            &target,
            &sub,
            json!({"telephone1": "555-0199"}),
        ),
    )
    .await;
    assert_eq!(r.status(), 204, "{:?}", r.text().await);
    let (_, t) = env.get(&format!("contacts({target})")).await;
    assert_eq!(t["telephone1"], "555-0199");
    assert_eq!(t["new_synctomkto"], true);
    assert_eq!(t["merged"], false);
    assert_eq!(t["statecode"], 0);
    let (s, sc) = env.get(&format!("contacts({sub})")).await;
    assert_eq!(s, 200, "the subordinate is kept");
    assert_eq!(sc["merged"], true);
    assert_eq!(sc["_masterid_value"], target.as_str());
    assert_eq!(
        (sc["statecode"].clone(), sc["statuscode"].clone()),
        (json!(1), json!(2))
    );
    // Children follow the target.
    let (_, o) = env.get(&format!("opportunities({opp})")).await;
    assert_eq!(o["_customerid_value"], target.as_str());
    // Both rows come back as updates; nothing is deleted.
    let (_, d) = env.get(&delta).await;
    let rows = d["value"].as_array().unwrap();
    assert!(
        rows.iter().any(|r| r["contactid"] == target.as_str()),
        "{d}"
    );
    let sub_row = rows
        .iter()
        .find(|r| r["contactid"] == sub.as_str())
        .unwrap_or_else(|| panic!("{d}"));
    assert_eq!(sub_row["merged"], true);
    assert!(
        !rows.iter().any(|r| r["@odata.context"]
            .as_str()
            .is_some_and(|c| c.contains("$deletedEntity"))),
        "{d}"
    );
    // A merged record cannot be merged again.
    let r = post(
        &env,
        "Merge",
        &env.admin_token,
        merge_body("contact", "contactid", &target, &sub, json!({})),
    )
    .await;
    assert_eq!(r.status(), 400);

    // Accounts: children re-parented, subordinate inactive.
    let a1 = env.create("accounts", json!({"name": "Contoso"})).await;
    let a2 = env.create("accounts", json!({"name": "Contoso Ltd"})).await;
    let kid = env
        .create(
            "contacts",
            json!({"lastname": "Kid", "parentcustomerid_account@odata.bind": format!("accounts({a2})")}),
        )
        .await;
    let r = post(
        &env,
        "Merge",
        &env.admin_token,
        merge_body(
            "account",
            "accountid",
            &a1,
            &a2,
            json!({"accountnumber": "1234"}),
        ),
    )
    .await;
    assert_eq!(r.status(), 204);
    let (_, a) = env.get(&format!("accounts({a1})")).await;
    assert_eq!(a["accountnumber"], "1234");
    let (_, b) = env.get(&format!("accounts({a2})")).await;
    assert_eq!(
        (b["merged"].clone(), b["statecode"].clone()),
        (json!(true), json!(1))
    );
    let (_, k) = env.get(&format!("contacts({kid})")).await;
    assert_eq!(k["_parentcustomerid_value"], a1.as_str());

    // Leads: the subordinate is closed as Disqualified/Canceled.
    let l1 = env.create("leads", json!({"lastname": "Lead one"})).await;
    let l2 = env.create("leads", json!({"lastname": "Lead two"})).await;
    let r = post(
        &env,
        "Merge",
        &env.admin_token,
        merge_body("lead", "leadid", &l1, &l2, json!({})),
    )
    .await;
    assert_eq!(r.status(), 204);
    let (_, l) = env.get(&format!("leads({l2})")).await;
    assert_eq!(
        (
            l["merged"].clone(),
            l["statecode"].clone(),
            l["statuscode"].clone(),
            l["_masterid_value"].clone()
        ),
        (json!(true), json!(2), json!(7), json!(l1))
    );
}

#[tokio::test]
async fn merge_errors_and_privileges() {
    let env = start().await;
    let c1 = env.create("contacts", json!({"lastname": "One"})).await;
    let c2 = env.create("contacts", json!({"lastname": "Two"})).await;
    let a1 = env.create("accounts", json!({"name": "A"})).await;
    // Mixed tables, same record, unknown record, missing parameter, unmergeable table, bad column.
    let mut mixed = merge_body("contact", "contactid", &c1, &c2, json!({}));
    mixed["Subordinate"] =
        json!({"@odata.type": "Microsoft.Dynamics.CRM.account", "accountid": a1});
    let cases = [
        (mixed, 400),
        (merge_body("contact", "contactid", &c1, &c1, json!({})), 400),
        (
            merge_body(
                "contact",
                "contactid",
                &c1,
                "00000000-0000-0000-0000-000000000009",
                json!({}),
            ),
            404,
        ),
        (
            json!({"Target": {"@odata.type": "Microsoft.Dynamics.CRM.contact", "contactid": c1}}),
            400,
        ),
        (
            json!({"Target": {"contactid": c1}, "Subordinate": {"contactid": c2}}),
            400,
        ),
        (
            merge_body("opportunity", "opportunityid", &c1, &c2, json!({})),
            400,
        ),
        (
            merge_body("contact", "contactid", &c1, &c2, json!({"nosuchcolumn": 1})),
            400,
        ),
    ];
    for (body, status) in cases {
        let r = post(&env, "Merge", &env.admin_token, body.clone()).await;
        assert_eq!(r.status().as_u16(), status, "{body}");
    }
    // Nothing changed after the failures (the bad-column case rolled back).
    let (_, c) = env.get(&format!("contacts({c2})")).await;
    assert_eq!(c["merged"], false);
    assert_eq!(c["statecode"], 0);
    // Parenting checks: different parents are refused when asked for.
    let a2 = env.create("accounts", json!({"name": "B"})).await;
    let p1 = env
        .create("contacts", json!({"lastname": "P1", "parentcustomerid_account@odata.bind": format!("accounts({a1})")}))
        .await;
    let p2 = env
        .create("contacts", json!({"lastname": "P2", "parentcustomerid_account@odata.bind": format!("accounts({a2})")}))
        .await;
    let mut body = merge_body("contact", "contactid", &p1, &p2, json!({}));
    body["PerformParentingChecks"] = json!(true);
    let r = post(&env, "Merge", &env.admin_token, body).await;
    assert_eq!(r.status(), 400);
    // GET is not allowed.
    let r = env
        .call(Method::GET, "Merge", &env.admin_token, None, &[])
        .await;
    assert_eq!(r.status(), 405);
    // The Marketo Sync User may merge contacts and leads (write rights) but not accounts.
    let (_, sync) = sync_user(&env).await;
    let r = post(
        &env,
        "Merge",
        &sync,
        merge_body("account", "accountid", &a1, &a2, json!({})),
    )
    .await;
    let (s, code, msg) = error_code(r).await;
    assert_eq!((s, code.as_str()), (403, "0x80040220"));
    assert!(msg.contains("prvWriteAccount"), "{msg}");
    let r = post(
        &env,
        "Merge",
        &sync,
        merge_body("contact", "contactid", &c1, &c2, json!({})),
    )
    .await;
    assert_eq!(r.status(), 204);
    // A user with no role cannot merge anything.
    let org = env.org().await;
    let nobody = env
        .user_token(org["no_role_user_id"].as_str().unwrap())
        .await;
    let l1 = env.create("leads", json!({"lastname": "L1"})).await;
    let l2 = env.create("leads", json!({"lastname": "L2"})).await;
    let r = post(
        &env,
        "Merge",
        &nobody,
        merge_body("lead", "leadid", &l1, &l2, json!({})),
    )
    .await;
    assert_eq!(r.status(), 403);
}

async fn batch(env: &Env, body: String) -> (u16, String) {
    let r = env
        .http
        .post(format!("{}$batch", env.api))
        .bearer_auth(&env.admin_token)
        .header("Content-Type", "multipart/mixed;boundary=b")
        .body(body)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.text().await.unwrap())
}

/// A change set with `QualifyLead` then `Merge`.
fn change_set(lead: &str, merge: &Value) -> String {
    let part = |cid: u32, line: &str, body: &str| {
        format!(
            "--c\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: {cid}\r\n\r\n{line} HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{body}\r\n"
        )
    };
    format!(
        "--b\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n{}{}--c--\r\n--b--\r\n",
        part(
            1,
            &format!("POST leads({lead})/Microsoft.Dynamics.CRM.QualifyLead"),
            &qualify_body(false, true, false).to_string()
        ),
        part(2, "POST Merge", &merge.to_string())
    )
}

#[tokio::test]
async fn qualify_and_merge_in_a_batch_change_set_are_atomic() {
    let env = start().await;
    let lead = env
        .create("leads", json!({"firstname": "Bat", "lastname": "Ch"}))
        .await;
    let c1 = env.create("contacts", json!({"lastname": "C1"})).await;
    let c2 = env.create("contacts", json!({"lastname": "C2"})).await;
    // The merge fails (unknown column), so the qualification rolls back too.
    let bad = merge_body("contact", "contactid", &c1, &c2, json!({"nosuch": 1}));
    let (s, text) = batch(&env, change_set(&lead, &bad)).await;
    assert_eq!(s, 400, "{text}");
    let (_, l) = env.get(&format!("leads({lead})")).await;
    assert_eq!(l["statecode"], 0, "rolled back");
    let (_, n) = env
        .get(&format!(
            "contacts?$select=fullname&$filter=_originatingleadid_value eq {lead}"
        ))
        .await;
    assert_eq!(n["value"].as_array().unwrap().len(), 0);
    // Both succeed together.
    let good = merge_body("contact", "contactid", &c1, &c2, json!({}));
    let (s, text) = batch(&env, change_set(&lead, &good)).await;
    assert_eq!(s, 200, "{text}");
    assert!(text.contains("HTTP/1.1 200 OK"), "{text}");
    assert!(text.contains("HTTP/1.1 204 No Content"), "{text}");
    assert!(text.contains("#Microsoft.Dynamics.CRM.contact"), "{text}");
    let (_, l) = env.get(&format!("leads({lead})")).await;
    assert_eq!(l["statecode"], 1);
    let (_, c) = env.get(&format!("contacts({c2})")).await;
    assert_eq!(c["merged"], true);
}
