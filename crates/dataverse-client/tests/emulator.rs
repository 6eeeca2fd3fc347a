//! The client against the real Dataverse emulator, in-process on an ephemeral port: tokens, throttling,
//! retries, paging, CRUD, change tracking, `$batch`, bulk messages and privilege errors over real HTTP.

use std::time::{Duration, Instant};

use futures::TryStreamExt;
use mdsync_dataverse_client::{
    BatchOp, BatchRequest, Change, ChangePage, Client, ClientConfig, DataverseError, ErrorKind,
    Method, Page, Precondition, QueryOptions, RecordKey, Row, Secret,
};
use mdsync_dataverse_emulator::{Config, Running, spawn};
use serde_json::{Value, json};
use uuid::Uuid;

async fn emulator(token_lifetime: Duration) -> Running {
    spawn(Config {
        listen: "127.0.0.1:0".parse().expect("literal address"),
        limits_enabled: false,
        token_lifetime,
        ..Config::default()
    })
    .await
    .expect("emulator starts")
}

fn config(running: &Running, client_id: &str, secret: &str) -> ClientConfig {
    let d = running.description();
    let mut config = ClientConfig::new(
        d.url.clone(),
        d.tenant_id.clone(),
        client_id,
        Secret::new(secret),
    )
    .with_authority(d.url.clone());
    config.backoff_base = Duration::from_millis(20);
    config.backoff_max = Duration::from_millis(200);
    config.timeout = Duration::from_secs(20);
    config
}

fn admin(running: &Running) -> Client {
    let d = running.description();
    Client::new(config(running, &d.admin_client_id, &d.admin_client_secret)).expect("valid config")
}

/// POSTs to the emulator's test surface.
async fn surface(running: &Running, path: &str, body: Value) -> Value {
    let url = format!("{}{path}", running.description().url);
    let response = reqwest::Client::new()
        .post(&url)
        .json(&body)
        .send()
        .await
        .expect("test surface reachable");
    let status = response.status();
    let text = response.text().await.expect("body");
    assert!(status.is_success(), "{path} answered {status}: {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

async fn faults(running: &Running) -> Vec<Value> {
    let url = format!("{}/_emulator/faults", running.description().url);
    let value: Value = reqwest::get(&url)
        .await
        .expect("faults")
        .json()
        .await
        .expect("json");
    match value {
        Value::Array(items) => items,
        Value::Object(mut map) => match map.remove("faults") {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

async fn pages(
    stream: impl futures::Stream<Item = Result<Page, DataverseError>>,
) -> Result<Vec<Page>, DataverseError> {
    stream.try_collect().await
}

async fn change_pages(
    stream: impl futures::Stream<Item = Result<ChangePage, DataverseError>>,
) -> Result<Vec<ChangePage>, DataverseError> {
    stream.try_collect().await
}

fn id_of(row: &Row, key: &str) -> Uuid {
    row.get(key)
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
        .unwrap_or_else(|| panic!("row has no {key}: {row:?}"))
}

#[tokio::test]
async fn whoami_and_version_with_the_admin_app() {
    let running = emulator(Duration::from_secs(3599)).await;
    let client = admin(&running);
    let me = client.whoami().await.expect("whoami");
    let user = client
        .retrieve("systemusers", me.user_id, &["applicationid", "isdisabled"])
        .await
        .expect("own user row");
    assert_eq!(
        user["applicationid"].as_str().map(str::to_ascii_lowercase),
        Some(running.description().admin_client_id.to_ascii_lowercase())
    );
    let version = client.retrieve_version().await.expect("version");
    assert!(version.starts_with("9."), "{version}");
    assert_eq!(client.token_fetches(), 1, "one token serves every call");
    running.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn wrong_secret_is_an_authentication_error_without_the_secret() {
    let running = emulator(Duration::from_secs(3599)).await;
    let d = running.description();
    let client =
        Client::new(config(&running, &d.admin_client_id, "not-the-secret-xyz")).expect("config");
    let err = client.whoami().await.expect_err("bad secret");
    assert_eq!(err.kind(), ErrorKind::Authentication, "{err}");
    assert!(!err.to_string().contains("not-the-secret-xyz"));
    assert!(!format!("{err:?}").contains("not-the-secret-xyz"));
    running.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn an_app_without_an_application_user_is_not_a_member_of_the_org() {
    let running = emulator(Duration::from_secs(3599)).await;
    let d = running.description();
    let client = Client::new(config(
        &running,
        &d.sync_app_client_id,
        &d.sync_app_client_secret,
    ))
    .expect("config");
    let err = client
        .whoami()
        .await
        .expect_err("no systemuser for the sync app yet");
    assert_eq!(err.kind(), ErrorKind::NotMemberOfOrg, "{err}");
    assert_eq!(err.code(), Some("0x80072560"));
    assert_eq!(err.status(), Some(403));
    running.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn tokens_are_refreshed_before_expiry_and_after_a_401() {
    let running = emulator(Duration::from_secs(2)).await;
    let client = admin(&running);
    client.whoami().await.expect("first call");
    assert_eq!(client.token_fetches(), 1);
    // Half of a 2 s lifetime: the cached token is replaced before the emulator would refuse it.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    client.whoami().await.expect("after expiry");
    assert_eq!(client.token_fetches(), 2);

    // A 401 on a data call (token revoked early) drops the token and retries once with a new one.
    surface(
        &running,
        "/_emulator/faults",
        json!({"path_contains": "/api/data/", "status": 401, "count": 1}),
    )
    .await;
    client.whoami().await.expect("recovers from one 401");
    assert_eq!(client.token_fetches(), 3);
    // Two 401s in a row are not papered over.
    surface(
        &running,
        "/_emulator/faults",
        json!({"path_contains": "/api/data/", "status": 401, "count": 2}),
    )
    .await;
    let err = client.whoami().await.expect_err("second 401 is final");
    assert_eq!(err.kind(), ErrorKind::Unauthorized, "{err}");
    running.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn concurrent_callers_share_one_token_fetch() {
    let running = emulator(Duration::from_secs(3599)).await;
    let client = admin(&running);
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.whoami().await })
        })
        .collect();
    for call in calls {
        call.await.expect("task").expect("whoami");
    }
    assert_eq!(client.token_fetches(), 1, "single-flight token fetch");
    running.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn throttling_waits_for_retry_after_then_succeeds() {
    let running = emulator(Duration::from_secs(3599)).await;
    let client = admin(&running);
    client.authenticate().await.expect("token");
    surface(
        &running,
        "/_emulator/faults",
        json!({"path_contains": "/api/data/", "status": 429, "code": "0x80072322",
               "headers": {"Retry-After": "1"}, "count": 2}),
    )
    .await;
    let started = Instant::now();
    client.whoami().await.expect("succeeds after two 429s");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "waited Retry-After twice: {:?}",
        started.elapsed()
    );
    assert!(faults(&running).await.is_empty(), "both faults consumed");

    // With a smaller budget the throttling error surfaces, typed, with the wait the service asked for.
    let mut cfg = config(
        &running,
        &running.description().admin_client_id,
        &running.description().admin_client_secret,
    );
    cfg.max_retries = 1;
    let impatient = Client::new(cfg).expect("config");
    surface(
        &running,
        "/_emulator/faults",
        json!({"path_contains": "/api/data/", "status": 429, "code": "0x80072322",
               "headers": {"Retry-After": "1"}, "count": 2}),
    )
    .await;
    let err = impatient.whoami().await.expect_err("budget of one retry");
    assert_eq!(err.kind(), ErrorKind::Throttled, "{err}");
    assert_eq!(err.code(), Some("0x80072322"));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
    running.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn server_errors_are_retried_for_reads_but_not_for_creates() {
    let running = emulator(Duration::from_secs(3599)).await;
    let client = admin(&running);
    client.authenticate().await.expect("token");
    surface(
        &running,
        "/_emulator/faults",
        json!({"path_contains": "WhoAmI", "status": 500, "count": 2}),
    )
    .await;
    client.whoami().await.expect("two 500s then success");

    surface(
        &running,
        "/_emulator/faults",
        json!({"path_contains": "/accounts", "method": "POST", "status": 500, "count": 1}),
    )
    .await;
    let err = client
        .create("accounts", &json!({"name": "Never twice"}))
        .await
        .expect_err("a create is not resent");
    assert_eq!(err.kind(), ErrorKind::Server, "{err}");
    assert!(faults(&running).await.is_empty());
    // The fault answered instead of the emulator, so nothing was created and nothing was sent twice.
    let found = client
        .query_first(
            "accounts",
            &QueryOptions::new().filter("name eq 'Never twice'"),
        )
        .await
        .expect("query");
    assert!(found.is_none());
    running.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn queries_stream_many_pages_following_next_links() {
    let running = emulator(Duration::from_secs(3599)).await;
    surface(
        &running,
        "/_emulator/seed",
        json!({"seed": 7, "contacts": 230}),
    )
    .await;
    let client = admin(&running);
    let total = pages(client.query(
        "contacts",
        &QueryOptions::new().select(["contactid"]).count().top(1),
    ))
    .await
    .expect("count")[0]
        .count
        .expect("@odata.count");
    assert!(total >= 230, "{total}");

    let all = pages(
        client.query(
            "contacts",
            &QueryOptions::new()
                .select(["contactid", "fullname"])
                .page_size(25),
        ),
    )
    .await
    .expect("all pages");
    assert_eq!(all.len() as u64, total.div_ceil(25));
    assert!(all.iter().all(|p| p.rows.len() <= 25));
    assert!(all[..all.len() - 1].iter().all(|p| p.next_link.is_some()));
    assert!(all.last().expect("pages").next_link.is_none());
    let mut ids: Vec<Uuid> = all
        .iter()
        .flat_map(|p| p.rows.iter().map(|r| id_of(r, "contactid")))
        .collect();
    assert_eq!(ids.len() as u64, total);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len() as u64, total, "no row twice across pages");

    let filtered = pages(
        client.query(
            "contacts",
            &QueryOptions::new()
                .select(["contactid"])
                .filter("contactid eq null")
                .page_size(10),
        ),
    )
    .await
    .expect("empty result");
    assert_eq!(filtered.len(), 1);
    assert!(filtered[0].rows.is_empty());

    let err = pages(client.query("contacts", &QueryOptions::new().select(["nosuchcolumn"])))
        .await
        .expect_err("unknown column");
    assert_eq!(err.kind(), ErrorKind::BadRequest, "{err}");
    running.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn single_record_calls_round_trip() {
    let running = emulator(Duration::from_secs(3599)).await;
    let client = admin(&running);
    let id = client
        .create(
            "accounts",
            &json!({"name": "Contoso", "accountnumber": "A-1"}),
        )
        .await
        .expect("create");
    let row = client
        .retrieve("accounts", id, &["name", "accountnumber"])
        .await
        .expect("retrieve");
    assert_eq!(row["name"], "Contoso");
    assert!(
        row["@odata.etag"]
            .as_str()
            .is_some_and(|e| e.starts_with("W/"))
    );

    client
        .update("accounts", id, &json!({"name": "Contoso Ltd"}))
        .await
        .expect("update");
    assert_eq!(
        client
            .retrieve("accounts", id, &["name"])
            .await
            .expect("retrieve")["name"],
        "Contoso Ltd"
    );

    let missing = Uuid::new_v4();
    let err = client
        .update("accounts", missing, &json!({"name": "x"}))
        .await
        .expect_err("update never creates");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert_eq!(err.code(), Some("0x80040217"));
    assert!(err.to_string().contains(&missing.to_string()), "{err}");

    client
        .upsert(
            "accounts",
            missing,
            &json!({"name": "Upserted"}),
            Precondition::None,
        )
        .await
        .expect("upsert creates");
    assert_eq!(
        client
            .retrieve("accounts", missing, &["name"])
            .await
            .expect("created")["name"],
        "Upserted"
    );
    let err = client
        .upsert(
            "accounts",
            missing,
            &json!({"name": "again"}),
            Precondition::IfNoneMatch("*".into()),
        )
        .await
        .expect_err("create-only on an existing row");
    assert_eq!(err.kind(), ErrorKind::PreconditionFailed, "{err}");

    let etag = row["@odata.etag"].as_str().expect("etag").to_string();
    let err = client
        .upsert(
            "accounts",
            id,
            &json!({"name": "stale"}),
            Precondition::IfMatch(etag),
        )
        .await
        .expect_err("the row changed since that etag");
    assert_eq!(err.kind(), ErrorKind::PreconditionFailed, "{err}");

    client.delete("accounts", id).await.expect("delete");
    let err = client
        .retrieve("accounts", id, &["name"])
        .await
        .expect_err("gone");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let err = client
        .delete("accounts", id)
        .await
        .expect_err("already gone");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    running.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn alternate_keys_functions_and_actions() {
    let running = emulator(Duration::from_secs(3599)).await;
    let client = admin(&running);
    let me = client.whoami().await.expect("whoami");
    let via_function = client
        .call_function("WhoAmI", &[])
        .await
        .expect("WhoAmI as a function");
    assert_eq!(
        via_function["UserId"]
            .as_str()
            .map(Uuid::parse_str)
            .and_then(Result::ok),
        Some(me.user_id)
    );
    assert_eq!(
        client
            .call_action("PublishAllXml", None)
            .await
            .expect("publish"),
        None
    );
    let err = client
        .call_function("NoSuchFunction", &[])
        .await
        .expect_err("unknown");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.is_unknown_resource(), "{err}");
    let err = client
        .retrieve("accounts", Uuid::new_v4(), &["name"])
        .await
        .expect_err("missing record");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(
        !err.is_unknown_resource(),
        "a missing record is not a missing resource"
    );
    let err = client
        .retrieve(
            "accounts",
            RecordKey::alternate([("nosuchkey", "1")]),
            &["name"],
        )
        .await
        .expect_err("undefined key");
    assert!(
        matches!(err.kind(), ErrorKind::BadRequest | ErrorKind::NotFound),
        "{err}"
    );
    running.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn change_tracking_round_trip() {
    let running = emulator(Duration::from_secs(3599)).await;
    let client = admin(&running);
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(
            client
                .create("accounts", &json!({"name": format!("Tracked {i}")}))
                .await
                .expect("create"),
        );
    }
    let initial = change_pages(client.track_changes("accounts", &["name"], Some(5)))
        .await
        .expect("initial read");
    assert!(initial.len() >= 3, "12+ rows in pages of 5");
    let delta = initial
        .last()
        .and_then(|p| p.delta_link.clone())
        .expect("delta link on the last page");
    assert!(
        initial[..initial.len() - 1]
            .iter()
            .all(|p| p.delta_link.is_none())
    );
    let seen: Vec<Uuid> = initial
        .iter()
        .flat_map(|p| &p.changes)
        .filter_map(|c| match c {
            Change::Upsert(row) => Some(id_of(row, "accountid")),
            Change::Deleted(_) => None,
        })
        .collect();
    assert!(ids.iter().all(|id| seen.contains(id)));

    let unchanged = change_pages(client.follow_delta(&delta, Some(5)))
        .await
        .expect("no changes");
    assert!(unchanged.iter().all(|p| p.changes.is_empty()));
    let delta = unchanged
        .last()
        .and_then(|p| p.delta_link.clone())
        .expect("new link");

    client
        .update("accounts", ids[0], &json!({"name": "Renamed"}))
        .await
        .expect("update");
    client.delete("accounts", ids[1]).await.expect("delete");
    let created = client
        .create("accounts", &json!({"name": "New"}))
        .await
        .expect("create");
    let changes: Vec<Change> = change_pages(client.follow_delta(&delta, Some(2)))
        .await
        .expect("delta")
        .into_iter()
        .flat_map(|p| p.changes)
        .collect();
    assert_eq!(changes.len(), 3, "{changes:?}");
    assert!(changes.contains(&Change::Deleted(ids[1])));
    let upserted: Vec<(Uuid, Value)> = changes
        .iter()
        .filter_map(|c| match c {
            Change::Upsert(row) => Some((id_of(row, "accountid"), row["name"].clone())),
            Change::Deleted(_) => None,
        })
        .collect();
    assert!(upserted.contains(&(ids[0], json!("Renamed"))));
    assert!(upserted.contains(&(created, json!("New"))));

    let bogus = format!(
        "{}accounts?$select=name&$deltatoken=garbage",
        client.api_base()
    );
    let err = change_pages(client.follow_delta(&bogus, None))
        .await
        .expect_err("bad token");
    assert_eq!(err.kind(), ErrorKind::ChangeTokenExpired, "{err}");
    let err = change_pages(
        client.follow_delta("https://elsewhere.example.com/api/data/v9.2/accounts", None),
    )
    .await
    .expect_err("foreign link");
    assert_eq!(err.kind(), ErrorKind::ChangeTokenExpired, "{err}");
    running.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn batch_with_a_change_set_and_a_failing_part() {
    let running = emulator(Duration::from_secs(3599)).await;
    let client = admin(&running);
    let responses = client
        .batch(vec![
            BatchOp::ChangeSet(vec![
                BatchRequest::create("accounts", json!({"name": "Batch parent"})),
                BatchRequest::create(
                    "contacts",
                    json!({"lastname": "Batch child", "parentcustomerid_account@odata.bind": "$1"}),
                ),
            ]),
            BatchOp::Request(BatchRequest::get(
                "accounts?$select=name&$filter=name%20eq%20'Batch%20parent'",
            )),
        ])
        .await
        .expect("batch");
    assert_eq!(responses.len(), 3, "{responses:?}");
    assert!(responses.iter().all(|r| r.is_success()), "{responses:?}");
    let account = responses[0].entity_id().expect("account id");
    let contact = responses[1].entity_id().expect("contact id");
    let row = client
        .retrieve("contacts", contact, &["_parentcustomerid_value"])
        .await
        .expect("contact");
    assert_eq!(
        row["_parentcustomerid_value"]
            .as_str()
            .map(Uuid::parse_str)
            .and_then(Result::ok),
        Some(account)
    );
    assert_eq!(
        responses[2].body.as_ref().expect("json")["value"][0]["name"],
        "Batch parent"
    );

    // A change set with a bad part rolls back as a whole; the failing part carries the typed error.
    let responses = client
        .batch(vec![BatchOp::ChangeSet(vec![
            BatchRequest::create("accounts", json!({"name": "Rolled back"})),
            BatchRequest::create("accounts", json!({"nosuchcolumn": 1})),
        ])])
        .await
        .expect("batch answered");
    let failed = responses
        .iter()
        .find(|r| !r.is_success())
        .expect("a failed part");
    let err = failed.error("create accounts in batch").expect("error");
    assert_eq!(err.kind(), ErrorKind::BadRequest, "{err}");
    let found = client
        .query_first(
            "accounts",
            &QueryOptions::new().filter("name eq 'Rolled back'"),
        )
        .await
        .expect("query");
    assert!(found.is_none(), "change set rolled back");
    running.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn bulk_messages_create_update_and_upsert() {
    let running = emulator(Duration::from_secs(3599)).await;
    let client = admin(&running);
    let targets: Vec<Row> = (0..5)
        .map(|i| serde_json::from_value(json!({"lastname": format!("Bulk {i}")})).expect("object"))
        .collect();
    let ids = client
        .create_multiple("contacts", "contact", targets)
        .await
        .expect("CreateMultiple");
    assert_eq!(ids.len(), 5);
    let updates: Vec<Row> = ids
        .iter()
        .map(|id| {
            serde_json::from_value(json!({"contactid": id, "firstname": "Updated"}))
                .expect("object")
        })
        .collect();
    client
        .update_multiple("contacts", "contact", updates)
        .await
        .expect("UpdateMultiple");
    let fresh = Uuid::new_v4();
    let upserts: Vec<Row> = [ids[0], fresh]
        .iter()
        .map(|id| {
            serde_json::from_value(json!({"contactid": id, "lastname": "Upserted"}))
                .expect("object")
        })
        .collect();
    client
        .upsert_multiple("contacts", "contact", upserts)
        .await
        .expect("UpsertMultiple");
    let first = client
        .retrieve("contacts", ids[0], &["firstname", "lastname"])
        .await
        .expect("row");
    assert_eq!(
        (first["firstname"].clone(), first["lastname"].clone()),
        (json!("Updated"), json!("Upserted"))
    );
    assert_eq!(
        client
            .retrieve("contacts", fresh, &["lastname"])
            .await
            .expect("created")["lastname"],
        "Upserted"
    );
    running.shutdown().await.expect("shutdown");
}

/// An app whose application user holds no role: the emulator refuses data calls with the real 403.
#[tokio::test]
async fn privilege_errors_are_typed_and_association_grants_access() {
    let running = emulator(Duration::from_secs(3599)).await;
    let admin = admin(&running);
    let app = surface(&running, "/_emulator/apps", json!({"name": "Limited app"})).await;
    let client_id = app["client_id"].as_str().expect("client_id").to_string();
    let secret = app["client_secret"]
        .as_str()
        .expect("client_secret")
        .to_string();
    let me = admin.whoami().await.expect("admin");
    let user = admin
        .create(
            "systemusers",
            &json!({"applicationid": client_id,
                    "businessunitid@odata.bind": format!("/businessunits({})", me.business_unit_id)}),
        )
        .await
        .expect("application user");
    let limited = Client::new(config(&running, &client_id, &secret)).expect("config");
    assert_eq!(
        limited
            .whoami()
            .await
            .expect("whoami works without roles")
            .user_id,
        user
    );
    let err = limited
        .create("accounts", &json!({"name": "Nope"}))
        .await
        .expect_err("no create privilege");
    assert_eq!(err.kind(), ErrorKind::PrivilegeDenied, "{err}");
    assert_eq!(err.status(), Some(403));
    assert!(err.code().is_some_and(|c| c.starts_with("0x8004")), "{err}");

    let role = admin
        .query_first(
            "roles",
            &QueryOptions::new()
                .select(["roleid"])
                .filter("name eq 'System Administrator'"),
        )
        .await
        .expect("roles")
        .expect("System Administrator exists");
    let role = id_of(&role, "roleid");
    admin
        .associate(
            "systemusers",
            user,
            "systemuserroles_association",
            "roles",
            role,
        )
        .await
        .expect("associate");
    limited
        .create("accounts", &json!({"name": "Now allowed"}))
        .await
        .expect("privilege granted");
    admin
        .disassociate(
            "systemusers",
            user,
            "systemuserroles_association",
            Some(role),
        )
        .await
        .expect("disassociate");
    let err = limited
        .create("accounts", &json!({"name": "Nope again"}))
        .await
        .expect_err("revoked");
    assert_eq!(err.kind(), ErrorKind::PrivilegeDenied, "{err}");
    running.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn escape_hatch_reads_metadata_and_writes_generic_requests() {
    let running = emulator(Duration::from_secs(3599)).await;
    let client = admin(&running);
    let services = client.get_json("").await.expect("service document");
    assert!(
        services["value"]
            .as_array()
            .is_some_and(|v| v.iter().any(|s| s["name"] == "accounts"))
    );
    let id = client
        .create("accounts", &json!({"name": "Generic"}))
        .await
        .expect("create");
    client
        .send_json(
            Method::PATCH,
            &format!("accounts({id})"),
            Some(&json!({"name": "Generic 2"})),
        )
        .await
        .expect("patch");
    assert_eq!(
        client
            .retrieve("accounts", id, &["name"])
            .await
            .expect("row")["name"],
        "Generic 2"
    );
    running.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn timeouts_are_retried_for_reads_and_reported_for_creates() {
    let running = emulator(Duration::from_secs(3599)).await;
    let d = running.description();
    let mut cfg = config(&running, &d.admin_client_id, &d.admin_client_secret);
    cfg.timeout = Duration::from_millis(400);
    let client = Client::new(cfg).expect("config");
    client.authenticate().await.expect("token");
    surface(
        &running,
        "/_emulator/faults",
        json!({"path_contains": "WhoAmI", "latency_ms": 1500, "count": 1}),
    )
    .await;
    client
        .whoami()
        .await
        .expect("the second attempt is not delayed");

    surface(
        &running,
        "/_emulator/faults",
        json!({"path_contains": "/accounts", "method": "POST", "latency_ms": 1500, "count": 1}),
    )
    .await;
    let err = client
        .create("accounts", &json!({"name": "Slow"}))
        .await
        .expect_err("a create is not resent");
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(err.is_transient());
    running.shutdown().await.expect("shutdown");
}

async fn limited_emulator(limits: mdsync_dataverse_emulator::LimitSettings) -> Running {
    spawn(Config {
        listen: "127.0.0.1:0".parse().expect("literal address"),
        limits_enabled: true,
        limits,
        ..Config::default()
    })
    .await
    .expect("emulator starts")
}

/// The client's semaphore keeps it under the service's concurrency limit: with no retry budget at all,
/// a single 429 would fail a call.
#[tokio::test]
async fn the_concurrency_cap_keeps_calls_under_the_service_limit() {
    let running = limited_emulator(mdsync_dataverse_emulator::LimitSettings {
        max_concurrent: 3,
        ..Default::default()
    })
    .await;
    let d = running.description();
    let mut cfg = config(&running, &d.admin_client_id, &d.admin_client_secret);
    cfg.max_concurrency = 3;
    cfg.max_retries = 0;
    let client = Client::new(cfg).expect("config");
    surface(
        &running,
        "/_emulator/faults",
        json!({"path_contains": "WhoAmI", "latency_ms": 50}),
    )
    .await;
    let calls: Vec<_> = (0..24)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.whoami().await })
        })
        .collect();
    for call in calls {
        call.await.expect("task").expect("never throttled");
    }
    running.shutdown().await.expect("shutdown");
}

/// The emulator's real request-count limit answers 429 with `Retry-After`; the client waits and finishes.
#[tokio::test]
async fn the_request_limit_is_ridden_out_with_retry_after() {
    let running = limited_emulator(mdsync_dataverse_emulator::LimitSettings {
        max_requests: 4,
        window: Duration::from_secs(1),
        ..Default::default()
    })
    .await;
    let client = admin(&running);
    for _ in 0..10 {
        client.whoami().await.expect("throttled calls are retried");
    }
    let mut cfg = config(
        &running,
        &running.description().admin_client_id,
        &running.description().admin_client_secret,
    );
    cfg.max_retries = 0;
    let impatient = Client::new(cfg).expect("config");
    let mut throttled = None;
    for _ in 0..10 {
        if let Err(err) = impatient.whoami().await {
            throttled = Some(err);
            break;
        }
    }
    let err = throttled.expect("the limit is hit without retries");
    assert_eq!(err.kind(), ErrorKind::Throttled, "{err}");
    assert_eq!(err.code(), Some("0x80072322"));
    assert!(err.retry_after().is_some());
    running.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn batches_of_upserts_are_resent_after_a_5xx_but_creates_are_not() {
    let running = emulator(Duration::from_secs(3599)).await;
    let client = admin(&running);
    client.authenticate().await.expect("token");
    let ids = [Uuid::new_v4(), Uuid::new_v4()];
    let upserts = || {
        ids.iter()
            .map(|id| {
                BatchOp::Request(BatchRequest::upsert(
                    "accounts",
                    *id,
                    json!({"name": "Batched upsert"}),
                ))
            })
            .collect::<Vec<_>>()
    };
    surface(
        &running,
        "/_emulator/faults",
        json!({"path_contains": "$batch", "status": 500, "count": 1}),
    )
    .await;
    let responses = client
        .batch_with(upserts(), true)
        .await
        .expect("resent after the 500");
    assert!(responses.iter().all(|r| r.is_success()), "{responses:?}");
    for id in ids {
        assert_eq!(
            client
                .retrieve("accounts", id, &["name"])
                .await
                .expect("upserted")["name"],
            "Batched upsert"
        );
    }

    surface(
        &running,
        "/_emulator/faults",
        json!({"path_contains": "$batch", "status": 500, "count": 1}),
    )
    .await;
    let err = client
        .batch(vec![BatchOp::Request(BatchRequest::create(
            "accounts",
            json!({"name": "Batched create"}),
        ))])
        .await
        .expect_err("a batch that creates is not resent");
    assert_eq!(err.kind(), ErrorKind::Server, "{err}");
    running.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn the_token_endpoint_is_retried_when_unavailable() {
    let running = emulator(Duration::from_secs(3599)).await;
    let client = admin(&running);
    surface(
        &running,
        "/_emulator/faults",
        json!({"path_contains": "oauth2", "status": 503, "count": 2}),
    )
    .await;
    client.whoami().await.expect("token after two 503s");
    assert_eq!(client.token_fetches(), 1);
    assert!(faults(&running).await.is_empty());
    running.shutdown().await.expect("shutdown");
}
