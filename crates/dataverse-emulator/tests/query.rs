//! Query options, paging, $count, change tracking.
mod common;

use common::{error_code, start};
use reqwest::Method;
use serde_json::{Value, json};

async fn seed(env: &common::Env, contacts: u64) {
    let r = env.http.post(format!("{}/_emulator/seed", env.url))
        .json(&json!({"seed": 7, "accounts": 10, "contacts": contacts, "leads": 20, "opportunities": 5}))
        .send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn select_filter_orderby_top_count() {
    let env = start().await;
    seed(&env, 300).await;
    let (s, v) = env.get("contacts?$select=firstname,lastname&$top=3").await;
    assert_eq!(s, 200);
    assert_eq!(v["value"].as_array().unwrap().len(), 3);
    assert!(
        v["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("$metadata#contacts(firstname,lastname)")
    );
    let row = v["value"][0].as_object().unwrap();
    assert_eq!(
        row.keys().cloned().collect::<Vec<_>>(),
        vec!["@odata.etag", "firstname", "lastname", "contactid"]
    );
    assert!(v.get("@odata.nextLink").is_none());
    // Filters against a scan computed locally.
    let (_, all) = env.get("contacts?$select=firstname,lastname,emailaddress1,_parentcustomerid_value,donotbulkemail").await;
    let all = all["value"].as_array().unwrap().clone();
    assert_eq!(all.len(), 300);
    let first = all[0]["firstname"].as_str().unwrap().to_string();
    let expected = all
        .iter()
        .filter(|c| c["firstname"] == first.as_str())
        .count();
    let (_, v) = env
        .get(&format!(
            "contacts?$select=firstname&$filter=firstname eq '{first}'&$count=true"
        ))
        .await;
    assert_eq!(v["value"].as_array().unwrap().len(), expected);
    assert_eq!(v["@odata.count"], expected);
    let (_, v) = env
        .get(&format!(
            "contacts?$select=firstname&$filter=FIRSTNAME eq '{first}'"
        ))
        .await;
    assert!(v["error"].is_object() || v["value"].is_array());
    let expected_sw = all
        .iter()
        .filter(|c| {
            c["lastname"]
                .as_str()
                .unwrap()
                .to_lowercase()
                .starts_with('s')
                && c["donotbulkemail"] == false
        })
        .count();
    let (_, v) = env.get("contacts?$select=lastname&$filter=startswith(lastname,'S') and not (donotbulkemail eq true)").await;
    assert_eq!(v["value"].as_array().unwrap().len(), expected_sw);
    let acc = all
        .iter()
        .find_map(|c| c["_parentcustomerid_value"].as_str())
        .unwrap()
        .to_string();
    let expected_acc = all
        .iter()
        .filter(|c| c["_parentcustomerid_value"] == acc.as_str())
        .count();
    let (_, v) = env
        .get(&format!(
            "contacts?$select=lastname&$filter=_parentcustomerid_value eq {acc}"
        ))
        .await;
    assert_eq!(v["value"].as_array().unwrap().len(), expected_acc);
    let (_, v) = env.get("contacts?$select=lastname&$filter=contains(emailaddress1,'example') or telephone1 eq null").await;
    assert_eq!(v["value"].as_array().unwrap().len(), 300);
    let (_, v) = env.get("contacts?$select=lastname&$filter=createdon ge 2000-01-01T00:00:00Z and createdon le 2999-01-01T00:00:00Z").await;
    assert_eq!(v["value"].as_array().unwrap().len(), 300);
    // Quotes escaped by doubling.
    env.create("contacts", json!({"lastname": "O'Neil"})).await;
    let (_, v) = env
        .get("contacts?$select=lastname&$filter=lastname eq 'O''Neil'")
        .await;
    assert_eq!(v["value"].as_array().unwrap().len(), 1);
    // Order by lastname desc then verify order.
    let (_, v) = env
        .get("contacts?$select=lastname&$orderby=lastname desc&$top=50")
        .await;
    let names: Vec<String> = v["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["lastname"].as_str().unwrap().to_lowercase())
        .collect();
    let mut sorted = names.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(names, sorted);
    // /$count is plain text.
    let r = env
        .call(Method::GET, "contacts/$count", &env.admin_token, None, &[])
        .await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["Content-Type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(r.text().await.unwrap(), "301");
    // Errors: unknown column, syntax, unsupported options.
    let r = env
        .call(
            Method::GET,
            "contacts?$select=nosuch",
            &env.admin_token,
            None,
            &[],
        )
        .await;
    assert_eq!(
        error_code(r).await,
        (
            400,
            "0x80060888".into(),
            "Could not find a property named 'nosuch' on type 'Microsoft.Dynamics.CRM.contact'."
                .into()
        )
    );
    let r = env
        .call(
            Method::GET,
            "contacts?$filter=nosuch eq 1",
            &env.admin_token,
            None,
            &[],
        )
        .await;
    assert_eq!(error_code(r).await.0, 400);
    let r = env
        .call(
            Method::GET,
            "contacts?$filter=lastname eq",
            &env.admin_token,
            None,
            &[],
        )
        .await;
    assert_eq!(error_code(r).await.1, "0x80060888");
    for bad in [
        "contacts?$orderby=lastname sideways",
        "contacts?$orderby=nosuch",
        "contacts?$select=a/b",
    ] {
        let r = env
            .call(Method::GET, bad, &env.admin_token, None, &[])
            .await;
        assert_eq!(error_code(r).await.0, 400, "{bad}");
    }
    let r = env
        .call(
            Method::GET,
            "contacts?$skip=10",
            &env.admin_token,
            None,
            &[],
        )
        .await;
    assert_eq!(error_code(r).await.0, 400);
    let r = env
        .call(
            Method::GET,
            "contacts?$top=abc",
            &env.admin_token,
            None,
            &[],
        )
        .await;
    assert_eq!(error_code(r).await.0, 400);
    env.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn paging_with_maxpagesize_and_absolute_next_links() {
    let env = start().await;
    seed(&env, 250).await;
    let mut url = "contacts?$select=fullname".to_string();
    let mut seen = std::collections::HashSet::new();
    let mut pages = 0;
    loop {
        let r = env
            .call(
                Method::GET,
                &url,
                &env.admin_token,
                None,
                &[("Prefer", "odata.maxpagesize=100")],
            )
            .await;
        assert_eq!(r.headers()["Preference-Applied"], "odata.maxpagesize=100");
        let v: Value = r.json().await.unwrap();
        pages += 1;
        for c in v["value"].as_array().unwrap() {
            assert!(seen.insert(c["contactid"].as_str().unwrap().to_string()));
        }
        match v["@odata.nextLink"].as_str() {
            Some(next) => {
                assert!(next.starts_with(&env.api), "{next}");
                assert!(
                    next.contains("$skiptoken=%3Ccookie%20pagenumber%3D%22"),
                    "{next}"
                );
                url = next.to_string();
            }
            None => break,
        }
    }
    assert_eq!((pages, seen.len()), (3, 250));
    // Ordered paging by a non-key column.
    let mut url = "contacts?$select=lastname&$orderby=lastname asc".to_string();
    let mut names = Vec::new();
    loop {
        let r = env
            .call(
                Method::GET,
                &url,
                &env.admin_token,
                None,
                &[("Prefer", "odata.maxpagesize=60")],
            )
            .await;
        let v: Value = r.json().await.unwrap();
        names.extend(
            v["value"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["lastname"].as_str().unwrap().to_lowercase()),
        );
        match v["@odata.nextLink"].as_str() {
            Some(n) => url = n.to_string(),
            None => break,
        }
    }
    assert_eq!(names.len(), 250);
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    // The nextLink follows the Host header the client used (with a token for that host: the
    // audience must name the organization the request reached).
    let d = env.running.description().clone();
    let tv: Value = env
        .http
        .post(&d.token_url)
        .form(&[
            ("client_id", d.admin_client_id.as_str()),
            ("client_secret", d.admin_client_secret.as_str()),
            ("grant_type", "client_credentials"),
            ("scope", "http://crm.example.test/.default"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let host_token = tv["access_token"].as_str().unwrap().to_string();
    let r = env
        .http
        .get(format!("{}contacts?$select=fullname", env.api))
        .bearer_auth(&host_token)
        .header("Host", "crm.example.test")
        .header("Prefer", "odata.maxpagesize=10")
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert!(
        v["@odata.nextLink"]
            .as_str()
            .unwrap()
            .starts_with("http://crm.example.test/api/data/v9.2/contacts?")
    );
    // Bad skiptoken.
    let r = env
        .call(
            Method::GET,
            "contacts?$skiptoken=garbage",
            &env.admin_token,
            None,
            &[],
        )
        .await;
    assert_eq!(error_code(r).await.0, 400);
    env.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn change_tracking_delta_links_and_deletions() {
    let env = start().await;
    seed(&env, 30).await;
    // Initial paged read; deltaLink only on the last page.
    let mut url = "contacts?$select=firstname,lastname".to_string();
    let mut total = 0;
    let delta = loop {
        let r = env
            .call(
                Method::GET,
                &url,
                &env.admin_token,
                None,
                &[("Prefer", "odata.track-changes,odata.maxpagesize=20")],
            )
            .await;
        assert!(
            r.headers()["Preference-Applied"]
                .to_str()
                .unwrap()
                .contains("odata.track-changes")
        );
        let v: Value = r.json().await.unwrap();
        total += v["value"].as_array().unwrap().len();
        if let Some(n) = v["@odata.nextLink"].as_str() {
            assert!(v.get("@odata.deltaLink").is_none());
            url = n.to_string();
        } else {
            break v["@odata.deltaLink"].as_str().unwrap().to_string();
        }
    };
    assert_eq!(total, 30);
    assert!(
        delta.starts_with(&format!(
            "{}contacts?$select=firstname,lastname&$deltatoken=",
            env.api
        )),
        "{delta}"
    );
    // No changes → empty.
    let (_, v) = env.get(&delta).await;
    assert_eq!(v["value"].as_array().unwrap().len(), 0);
    assert!(
        v["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("$metadata#contacts(firstname,lastname)/$delta")
    );
    // Changes: one update, one create, one delete, one create+delete.
    let (_, some) = env.get("contacts?$select=contactid&$top=2").await;
    let upd = some["value"][0]["contactid"].as_str().unwrap().to_string();
    let del = some["value"][1]["contactid"].as_str().unwrap().to_string();
    env.send(
        Method::PATCH,
        &format!("contacts({upd})"),
        json!({"firstname": "Changed"}),
    )
    .await;
    let new = env.create("contacts", json!({"lastname": "New"})).await;
    env.call(
        Method::DELETE,
        &format!("contacts({del})"),
        &env.admin_token,
        None,
        &[],
    )
    .await;
    let tmp = env.create("contacts", json!({"lastname": "Temp"})).await;
    env.call(
        Method::DELETE,
        &format!("contacts({tmp})"),
        &env.admin_token,
        None,
        &[],
    )
    .await;
    let r = env
        .call(
            Method::GET,
            &delta.replace("contacts?", "contacts/$count?").to_string(),
            &env.admin_token,
            None,
            &[],
        )
        .await;
    assert_eq!(r.text().await.unwrap(), "4");
    let (_, v) = env.get(&delta).await;
    let value = v["value"].as_array().unwrap();
    assert_eq!(value.len(), 4, "{v}");
    assert_eq!(value[0]["contactid"], upd);
    assert_eq!(value[0]["firstname"], "Changed");
    assert_eq!(value[1]["contactid"], new);
    let deleted: Vec<&str> = value[2..]
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(deleted, vec![del.as_str(), tmp.as_str()]);
    assert_eq!(value[2]["reason"], "deleted");
    assert!(
        value[2]["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("$metadata#contacts/$deletedEntity")
    );
    let next_delta = v["@odata.deltaLink"].as_str().unwrap().to_string();
    let (_, v) = env.get(&next_delta).await;
    assert_eq!(v["value"].as_array().unwrap().len(), 0);
    // Paged delta.
    for i in 0..5 {
        env.create("contacts", json!({"lastname": format!("Batch{i}")}))
            .await;
    }
    let r = env
        .call(
            Method::GET,
            &next_delta,
            &env.admin_token,
            None,
            &[("Prefer", "odata.maxpagesize=2")],
        )
        .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["value"].as_array().unwrap().len(), 2);
    let mut n = 2;
    let mut link = v["@odata.nextLink"].as_str().unwrap().to_string();
    loop {
        let r = env
            .call(
                Method::GET,
                &link,
                &env.admin_token,
                None,
                &[("Prefer", "odata.maxpagesize=2")],
            )
            .await;
        let v: Value = r.json().await.unwrap();
        n += v["value"].as_array().unwrap().len();
        match v["@odata.nextLink"].as_str() {
            Some(l) => link = l.to_string(),
            None => {
                assert!(v["@odata.deltaLink"].is_string());
                break;
            }
        }
    }
    assert_eq!(n, 5);
    // Restrictions and errors.
    let r = env
        .call(
            Method::GET,
            "contacts?$filter=lastname eq 'x'",
            &env.admin_token,
            None,
            &[("Prefer", "odata.track-changes")],
        )
        .await;
    let (s, _, msg) = error_code(r).await;
    assert_eq!(s, 400);
    assert!(
        msg.contains("isn't supported when Change Tracking is enabled"),
        "{msg}"
    );
    let r = env
        .call(
            Method::GET,
            "contacts?$select=lastname&$deltatoken=junk",
            &env.admin_token,
            None,
            &[],
        )
        .await;
    assert_eq!(error_code(r).await.1, "0x80044352");
    let r = env
        .call(
            Method::GET,
            "contacts?$select=lastname&$deltatoken=1!01/01/2020%2000:00:00",
            &env.admin_token,
            None,
            &[],
        )
        .await;
    let (s, code, msg) = error_code(r).await;
    assert_eq!((s, code.as_str()), (400, "0x80044352"));
    assert!(msg.contains("expired"), "{msg}");
    let r = env
        .call(
            Method::GET,
            "usersettingscollection",
            &env.admin_token,
            None,
            &[("Prefer", "odata.track-changes")],
        )
        .await;
    assert_eq!(error_code(r).await.1, "0x80072491");
    env.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn fast_and_general_read_paths_render_identically() {
    let env = start().await;
    seed(&env, 40).await;
    env.create("accounts", json!({"name": "Nulls & \"quotes\" ü", "revenue": 12.5, "numberofemployees": 3, "donotphone": true})).await;
    for (set, cols) in [
        (
            "contacts",
            "firstname,donotbulkemail,_parentcustomerid_value,createdon,statecode,telephone1",
        ),
        (
            "accounts",
            "name,revenue,numberofemployees,donotphone,websiteurl,versionnumber",
        ),
    ] {
        let (_, fast) = env.get(&format!("{set}?$select={cols}")).await;
        let (_, general) = env
            .get(&format!("{set}?$select={cols}&$filter=createdon ne null"))
            .await;
        assert_eq!(fast, general, "{set}");
        assert!(fast["value"].as_array().unwrap().len() >= 10);
    }
    env.running.shutdown().await.unwrap();
}
