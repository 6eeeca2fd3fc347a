//! Token endpoint, authentication failures, WhoAmI/RetrieveVersion, service document, security.
mod common;

use common::{error_code, start, start_with, token};
use mdsync_dataverse_emulator::Config;
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn token_endpoint_success_and_errors() {
    let env = start().await;
    let d = env.running.description().clone();
    let url = format!("{}/{}/oauth2/v2.0/token", d.url, d.tenant_id);
    let scope = format!("{}/.default", d.url);
    // Basic auth works too.
    let r = env
        .http
        .post(&url)
        .basic_auth(&d.admin_client_id, Some(&d.admin_client_secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", scope.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 3599);
    assert_eq!(v["ext_expires_in"], 3599);
    assert_eq!(v["access_token"].as_str().unwrap().split('.').count(), 3);
    // Wrong secret.
    let r = env
        .http
        .post(&url)
        .form(&[
            ("client_id", d.admin_client_id.as_str()),
            ("client_secret", "nope"),
            ("grant_type", "client_credentials"),
            ("scope", scope.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "invalid_client");
    assert_eq!(v["error_codes"][0], 7000215);
    // Bad scope.
    let r = env
        .http
        .post(&url)
        .form(&[
            ("client_id", d.admin_client_id.as_str()),
            ("client_secret", d.admin_client_secret.as_str()),
            ("grant_type", "client_credentials"),
            ("scope", "https://x"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "invalid_scope");
    assert_eq!(v["error_codes"][0], 70011);
    // Unknown client.
    let r = env
        .http
        .post(&url)
        .form(&[
            ("client_id", "00000000-0000-0000-0000-000000000000"),
            ("client_secret", "x"),
            ("grant_type", "client_credentials"),
            ("scope", scope.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "unauthorized_client");
    // Unknown tenant.
    let r = env
        .http
        .post(format!("{}/other-tenant/oauth2/v2.0/token", d.url))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    env.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn whoami_version_and_service_document() {
    let env = start().await;
    let org = env.org().await;
    let (s, v) = env.get("WhoAmI()").await;
    assert_eq!(s, 200);
    assert_eq!(v["UserId"], org["admin_app_user_id"]);
    assert_eq!(v["BusinessUnitId"], org["root_business_unit_id"]);
    assert_eq!(v["OrganizationId"], org["organization_id"]);
    assert!(
        v["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse")
    );
    let (s, v) = env.get("WhoAmI").await;
    assert_eq!(s, 200);
    assert_eq!(v["UserId"], org["admin_app_user_id"]);
    let (s, v) = env.get("RetrieveVersion()").await;
    assert_eq!(s, 200);
    assert!(v["Version"].as_str().unwrap().starts_with("9.2."));
    env.create("accounts", json!({"name": "Counted"})).await;
    for path in [
        "RetrieveTotalRecordCount(EntityNames=['account','role'])",
        "RetrieveTotalRecordCount(EntityNames=@p1)?@p1=[\"account\",\"role\"]",
    ] {
        let (s, v) = env.get(path).await;
        assert_eq!(s, 200, "{path}: {v}");
        assert_eq!(
            v["EntityRecordCountCollection"]["Keys"],
            json!(["account", "role"])
        );
        assert_eq!(v["EntityRecordCountCollection"]["Values"], json!([1, 3]));
    }
    let (s, _) = env
        .get("RetrieveTotalRecordCount(EntityNames=['nosuch'])")
        .await;
    assert_eq!(s, 400);
    let r = env.call(Method::GET, "", &env.admin_token, None, &[]).await;
    assert_eq!(r.headers()["OData-Version"], "4.0");
    assert_eq!(
        r.headers()["Content-Type"],
        "application/json; odata.metadata=minimal"
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["@odata.context"], format!("{}$metadata", env.api));
    assert!(
        v["value"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "contacts" && e["kind"] == "EntitySet")
    );
    // Unknown segment.
    let r = env
        .call(Method::GET, "nothings", &env.admin_token, None, &[])
        .await;
    assert_eq!(
        error_code(r).await,
        (
            404,
            "0x8006088a".into(),
            "Resource not found for the segment 'nothings'.".into()
        )
    );
    let r = env
        .http
        .get(format!("{}/elsewhere", env.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    env.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn missing_bad_and_expired_tokens_get_401() {
    let env = start_with(Config {
        limits_enabled: false,
        token_lifetime: std::time::Duration::from_secs(1),
        ..Config::default()
    })
    .await;
    let r = env
        .http
        .get(format!("{}WhoAmI", env.api))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["WWW-Authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer authorization_uri=")
    );
    let r = env
        .call(Method::GET, "WhoAmI", "abc.def.ghi", None, &[])
        .await;
    assert_eq!(r.status(), 401);
    // Tamper with the payload of a valid token.
    let mut parts: Vec<String> = env.admin_token.split('.').map(str::to_string).collect();
    parts[1] = parts[1].chars().rev().collect();
    let r = env
        .call(Method::GET, "WhoAmI", &parts.join("."), None, &[])
        .await;
    assert_eq!(r.status(), 401);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let r = env
        .call(Method::GET, "WhoAmI", &env.admin_token, None, &[])
        .await;
    assert_eq!(r.status(), 401);
    env.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn sync_app_without_user_is_not_member_then_gets_role() {
    let env = start().await;
    let d = env.running.description().clone();
    let org = env.org().await;
    let sync = token(
        &env.http,
        &d.url,
        &d.tenant_id,
        &d.sync_app_client_id,
        &d.sync_app_client_secret,
    )
    .await;
    let r = env.call(Method::GET, "WhoAmI", &sync, None, &[]).await;
    assert_eq!(
        error_code(r).await,
        (
            403,
            "0x80072560".into(),
            "The user is not a member of the organization.".into()
        )
    );
    // Create the application user.
    let uid = env.create("systemusers", json!({"applicationid": d.sync_app_client_id, "businessunitid@odata.bind": format!("/businessunits({})", org["root_business_unit_id"].as_str().unwrap())})).await;
    let (_, user) = env.get(&format!("systemusers({uid})?$select=fullname,applicationid,accessmode,isdisabled,domainname,_businessunitid_value")).await;
    assert_eq!(user["applicationid"], d.sync_app_client_id);
    assert_eq!(user["accessmode"], 4);
    assert_eq!(user["isdisabled"], false);
    assert_eq!(user["_businessunitid_value"], org["root_business_unit_id"]);
    // Duplicate application user.
    let r = env
        .send(
            Method::POST,
            "systemusers",
            json!({"applicationid": d.sync_app_client_id}),
        )
        .await;
    let (s, code, msg) = error_code(r).await;
    assert_eq!((s, code.as_str()), (400, "0x8004f511"));
    assert!(msg.contains("already exists"));
    // WhoAmI works, but without a role the data is off limits.
    let (s, who) = {
        let r = env.call(Method::GET, "WhoAmI()", &sync, None, &[]).await;
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    assert_eq!(s, 200);
    assert_eq!(who["UserId"], uid);
    let r = env.call(Method::GET, "leads", &sync, None, &[]).await;
    let (s, code, msg) = error_code(r).await;
    assert_eq!((s, code.as_str()), (403, "0x80040220"));
    assert!(msg.contains("prvReadLead"), "{msg}");
    // Assign the Marketo Sync User role through $ref.
    let role = org["roles"]["Marketo Sync User"].as_str().unwrap();
    let r = env
        .send(
            Method::POST,
            &format!("systemusers({uid})/systemuserroles_association/$ref"),
            json!({"@odata.id": format!("{}roles({role})", env.api)}),
        )
        .await;
    assert_eq!(r.status(), 204);
    let (s, roles) = env
        .get(&format!(
            "systemusers({uid})/systemuserroles_association?$select=name"
        ))
        .await;
    assert_eq!(s, 200);
    assert_eq!(roles["value"][0]["name"], "Marketo Sync User");
    // Re-associating is a duplicate.
    let r = env
        .send(
            Method::POST,
            &format!("systemusers({uid})/systemuserroles_association/$ref"),
            json!({"@odata.id": format!("roles({role})")}),
        )
        .await;
    assert_eq!(r.status(), 412);
    // Now leads/contacts are readable and writable; accounts read-only; no deletes.
    let r = env.call(Method::GET, "leads", &sync, None, &[]).await;
    assert_eq!(r.status(), 200);
    let r = env
        .call(
            Method::POST,
            "contacts",
            &sync,
            Some(json!({"lastname": "Sync"})),
            &[],
        )
        .await;
    assert_eq!(r.status(), 204);
    let r = env.call(Method::GET, "accounts", &sync, None, &[]).await;
    assert_eq!(r.status(), 200);
    let r = env
        .call(
            Method::POST,
            "accounts",
            &sync,
            Some(json!({"name": "x"})),
            &[],
        )
        .await;
    let (s, _, msg) = error_code(r).await;
    assert_eq!(s, 403);
    assert!(msg.contains("prvCreateAccount"));
    let r = env
        .call(
            Method::GET,
            &format!(
                "mkt_marketoconfigs({})",
                org["marketo_config_id"].as_str().unwrap()
            ),
            &sync,
            None,
            &[],
        )
        .await;
    assert_eq!(r.status(), 200);
    // The sync user cannot assign roles.
    let r = env.call(Method::POST, &format!("systemusers({uid})/systemuserroles_association/$ref"), &sync, Some(json!({"@odata.id": format!("roles({})", org["roles"]["System Administrator"].as_str().unwrap())})), &[]).await;
    assert_eq!(r.status(), 403);
    // Disassociate both ways.
    let r = env
        .call(
            Method::DELETE,
            &format!("systemusers({uid})/systemuserroles_association({role})/$ref"),
            &env.admin_token,
            None,
            &[],
        )
        .await;
    assert_eq!(r.status(), 204);
    let r = env.call(Method::GET, "leads", &sync, None, &[]).await;
    assert_eq!(r.status(), 403);
    env.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn impersonation_sets_created_by_and_needs_admin() {
    let env = start().await;
    let org = env.org().await;
    let sales = org["salesperson_user_id"].as_str().unwrap();
    let r = env
        .call(
            Method::POST,
            "leads",
            &env.admin_token,
            Some(json!({"lastname": "Imp"})),
            &[("MSCRMCallerID", sales)],
        )
        .await;
    assert_eq!(r.status(), 204);
    let id = r.headers()["OData-EntityId"]
        .to_str()
        .unwrap()
        .rsplit('(')
        .next()
        .unwrap()
        .trim_end_matches(')')
        .to_string();
    let (_, lead) = env
        .get(&format!(
            "leads({id})?$select=_createdby_value,_modifiedby_value,_ownerid_value"
        ))
        .await;
    assert_eq!(lead["_createdby_value"], sales);
    assert_eq!(lead["_modifiedby_value"], sales);
    assert_eq!(lead["_ownerid_value"], sales);
    let (_, me) = env.get("WhoAmI").await;
    let (_, lead) = env
        .get(&format!("leads({id})?$select=_createdonbehalfby_value"))
        .await;
    assert_eq!(lead["_createdonbehalfby_value"], me["UserId"]);
    // CallerObjectId (Entra object id) works too.
    let (_, u) = env
        .get(&format!(
            "systemusers({sales})?$select=azureactivedirectoryobjectid"
        ))
        .await;
    let oid = u["azureactivedirectoryobjectid"]
        .as_str()
        .unwrap()
        .to_string();
    let r = env
        .call(
            Method::GET,
            "WhoAmI",
            &env.admin_token,
            None,
            &[("CallerObjectId", oid.as_str())],
        )
        .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["UserId"], sales);
    let r = env
        .call(
            Method::GET,
            "WhoAmI",
            &env.admin_token,
            None,
            &[("MSCRMCallerID", "00000000-0000-0000-0000-0000000000ff")],
        )
        .await;
    assert_eq!(r.status(), 404);
    // A salesperson cannot impersonate.
    let t = env.user_token(sales).await;
    let r = env
        .call(
            Method::GET,
            "WhoAmI",
            &t,
            None,
            &[("MSCRMCallerID", org["admin_user_id"].as_str().unwrap())],
        )
        .await;
    let (s, code, msg) = error_code(r).await;
    assert_eq!((s, code.as_str()), (403, "0x80040220"));
    assert!(msg.contains("prvActOnBehalfOfAnotherUser"));
    // A user without roles can't read contacts.
    let t = env
        .user_token(org["no_role_user_id"].as_str().unwrap())
        .await;
    let r = env.call(Method::GET, "contacts", &t, None, &[]).await;
    assert_eq!(r.status(), 403);
    // But reads their own language settings and changes them.
    let me = org["no_role_user_id"].as_str().unwrap();
    let r = env
        .call(
            Method::GET,
            &format!("usersettingscollection({me})?$select=uilanguageid"),
            &t,
            None,
            &[],
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["uilanguageid"], 1033);
    let r = env
        .call(
            Method::PATCH,
            &format!("usersettingscollection({me})"),
            &t,
            Some(json!({"uilanguageid": 1036})),
            &[("If-Match", "*")],
        )
        .await;
    assert_eq!(r.status(), 204);
    let r = env
        .call(
            Method::GET,
            &format!(
                "usersettingscollection({})",
                org["admin_user_id"].as_str().unwrap()
            ),
            &t,
            None,
            &[],
        )
        .await;
    assert_eq!(r.status(), 403);
    env.running.shutdown().await.unwrap();
}
