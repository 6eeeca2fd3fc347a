//! The client against the real Marketo emulator, in-process on an ephemeral port, over real HTTP.
//! Each test spawns its own emulator so tests stay isolated and parallel-safe.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use mdsync_marketo_client::{
    ActivityFilter, Client, ClientConfig, Error, ExportKind, ExportStatus, KeyKind, NewLeadField,
    ObjectKind, Record, RecordStatus, SyncAction, SyncLeadsOptions,
};
use mdsync_marketo_emulator::{Config, Running, spawn};
use serde_json::{Value, json};
use sha2::Digest;

struct Env {
    emulator: Running,
    admin: reqwest::Client,
}

impl Env {
    async fn start(config: Config) -> Self {
        let emulator = spawn(config).await.expect("emulator starts");
        Self {
            emulator,
            admin: reqwest::Client::new(),
        }
    }

    async fn default() -> Self {
        Self::start(Config {
            limits_enabled: false,
            ..Config::default()
        })
        .await
    }

    fn url(&self) -> String {
        self.emulator.description().url.clone()
    }

    /// A client with fast retries so tests stay quick.
    fn config(&self) -> ClientConfig {
        let d = self.emulator.description();
        let mut config =
            ClientConfig::new(d.url.clone(), d.client_id.clone(), d.client_secret.clone());
        config.retry_base_delay = Duration::from_millis(20);
        config.retry_max_delay = Duration::from_millis(200);
        config.timeout = Duration::from_secs(10);
        config
    }

    fn client(&self) -> Client {
        Client::new(self.config()).expect("valid config")
    }

    async fn fault(&self, fault: Value) {
        let response = self
            .admin
            .post(format!("{}/_emulator/faults", self.url()))
            .json(&fault)
            .send()
            .await
            .expect("fault endpoint reachable");
        assert!(
            response.status().is_success(),
            "fault rejected: {}",
            response.text().await.unwrap_or_default()
        );
    }

    async fn counters(&self) -> BTreeMap<String, u64> {
        let body: Value = self
            .admin
            .get(format!("{}/_emulator/counters", self.url()))
            .send()
            .await
            .expect("counters reachable")
            .json()
            .await
            .expect("counters JSON");
        serde_json::from_value(body["counters"].clone()).expect("counter map")
    }

    async fn count(&self, key: &str) -> u64 {
        self.counters().await.get(key).copied().unwrap_or(0)
    }

    async fn marketer_edit(&self, lead_id: i64, fields: Value) {
        let response = self
            .admin
            .post(format!("{}/_emulator/marketer-edits", self.url()))
            .json(&json!({"leadId": lead_id, "fields": fields}))
            .send()
            .await
            .expect("marketer edit reachable");
        assert!(response.status().is_success());
    }
}

fn lead(email: &str, first: &str) -> Record {
    let mut r = Record::new();
    r.insert("email".into(), json!(email));
    r.insert("firstName".into(), json!(first));
    r.insert("lastName".into(), json!("Tester"));
    r
}

fn leads(n: usize, prefix: &str) -> Vec<Record> {
    (0..n)
        .map(|i| lead(&format!("{prefix}{i}@example.com"), &format!("F{i}")))
        .collect()
}

async fn create(client: &Client, records: &[Record]) -> Vec<i64> {
    let results = client
        .sync_leads(records, &SyncLeadsOptions::default())
        .await
        .expect("sync");
    results
        .iter()
        .map(|r| {
            assert_eq!(r.status, Some(RecordStatus::Created), "{r:?}");
            r.id.expect("created lead has an id")
        })
        .collect()
}

// ---------------------------------------------------------------- token

#[tokio::test]
async fn token_is_reused_across_calls() {
    let env = Env::default().await;
    let client = env.client();
    client.describe_leads2().await.unwrap();
    client.describe_leads().await.unwrap();
    client.activity_types().await.unwrap();
    assert_eq!(client.token_fetches(), 1);
    assert_eq!(env.count("GET /identity/oauth/token").await, 1);
}

#[tokio::test]
async fn renews_the_token_before_it_expires() {
    let env = Env::start(Config {
        limits_enabled: false,
        token_lifetime: Duration::from_secs(2),
        ..Config::default()
    })
    .await;
    let mut config = env.config();
    config.token_refresh_margin = Duration::from_secs(1);
    let client = Client::new(config).unwrap();
    client.describe_leads2().await.unwrap();
    tokio::time::sleep(Duration::from_millis(2200)).await;
    client.describe_leads2().await.unwrap();
    assert_eq!(client.token_fetches(), 2);
}

#[tokio::test]
async fn reauthenticates_and_retries_on_602_and_601() {
    let env = Env::default().await;
    let client = env.client();
    client.authenticate().await.unwrap();
    env.fault(json!({"path_contains": "/rest/v1/leads/describe2.json", "code": "602", "count": 1}))
        .await;
    let described = client.describe_leads2().await.unwrap();
    assert!(!described.fields.is_empty());
    assert_eq!(client.token_fetches(), 2);
    assert_eq!(env.count("GET /rest/v1/leads/describe2.json").await, 2);

    env.fault(json!({"path_contains": "/rest/", "code": "601", "count": 1}))
        .await;
    client.activity_types().await.unwrap();
    assert_eq!(client.token_fetches(), 3);
    assert_eq!(client.stats().reauthentications, 2);
    // 601/602 answers are free: only the successful calls spent budget.
    assert_eq!(client.budget().used(), 2);
}

#[tokio::test]
async fn token_rejection_is_bounded() {
    let env = Env::default().await;
    let mut config = env.config();
    config.max_reauthentications = 2;
    let client = Client::new(config).unwrap();
    env.fault(json!({"path_contains": "/rest/", "code": "602"}))
        .await;
    let err = client.describe_leads2().await.unwrap_err();
    assert!(
        matches!(err, Error::TokenRejected { ref code, .. } if code == "602"),
        "{err}"
    );
    assert_eq!(env.count("GET /rest/v1/leads/describe2.json").await, 3);
}

#[tokio::test]
async fn identity_outages_are_retried() {
    let env = Env::default().await;
    let client = env.client();
    env.fault(json!({"path_contains": "/identity/", "status": 503, "body": "Service Unavailable", "count": 2}))
        .await;
    client.authenticate().await.unwrap();
    assert_eq!(client.token_fetches(), 1);
    assert_eq!(env.count("GET /identity/oauth/token").await, 3);
}

#[tokio::test]
async fn bad_credentials_are_an_auth_error_without_the_secret() {
    let env = Env::default().await;
    let mut config = env.config();
    config.client_secret = "wrong-secret-value".into();
    let client = Client::new(config).unwrap();
    let err = client.describe_leads2().await.unwrap_err();
    match &err {
        Error::Auth { status, error, .. } => {
            assert_eq!(*status, 401);
            assert_eq!(error, "invalid_client");
        }
        other => panic!("expected Auth, got {other:?}"),
    }
    assert!(!format!("{err} {err:?}").contains("wrong-secret-value"));
    assert_eq!(env.count("GET /rest/v1/leads/describe2.json").await, 0);
}

// ---------------------------------------------------------------- limits and retries

#[tokio::test]
async fn waits_out_the_rate_window_on_606() {
    let env = Env::default().await;
    let client = env.client();
    client.authenticate().await.unwrap();
    env.fault(json!({
        "path_contains": "/rest/",
        "code": "606",
        "message": "Max rate limit '100' exceeded with in '1' secs",
        "count": 2
    }))
    .await;
    let started = Instant::now();
    client.activity_types().await.unwrap();
    // Two full windows waited, not a fast hammering retry.
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(env.count("GET /rest/v1/activities/types.json").await, 3);
    let stats = client.stats();
    assert_eq!(
        (
            stats.calls,
            stats.retries,
            stats.rate_limited,
            stats.failures
        ),
        (3, 2, 2, 0)
    );
}

#[tokio::test]
async fn backs_off_on_615_604_608_611_713_and_5xx() {
    let env = Env::default().await;
    let client = env.client();
    for code in ["615", "604", "608", "611", "713"] {
        env.fault(
            json!({"path_contains": "/rest/v1/activities/types.json", "code": code, "count": 2}),
        )
        .await;
    }
    env.fault(json!({"path_contains": "/rest/v1/activities/types.json", "status": 502, "body": "Bad Gateway", "count": 1}))
        .await;
    let mut config = env.config();
    config.max_retries = 20;
    let client2 = Client::new(config).unwrap();
    drop(client);
    client2.activity_types().await.unwrap();
    assert_eq!(env.count("GET /rest/v1/activities/types.json").await, 12);
}

#[tokio::test]
async fn honours_retry_after_on_429() {
    let env = Env::default().await;
    let client = env.client();
    client.authenticate().await.unwrap();
    env.fault(json!({
        "path_contains": "/rest/", "status": 429, "body": {"message": "Too Many Requests"},
        "headers": {"Retry-After": "1"}, "count": 1
    }))
    .await;
    let started = Instant::now();
    client.activity_types().await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn gives_up_after_max_retries() {
    let env = Env::default().await;
    let mut config = env.config();
    config.max_retries = 2;
    let client = Client::new(config).unwrap();
    env.fault(json!({"path_contains": "/rest/", "code": "615"}))
        .await;
    let err = client.activity_types().await.unwrap_err();
    assert!(
        matches!(err, Error::RetriesExhausted { attempts: 3, .. }),
        "{err}"
    );
    assert_eq!(err.code(), Some("615"));
    assert_eq!(env.count("GET /rest/v1/activities/types.json").await, 3);
}

#[tokio::test]
async fn timeouts_are_retried() {
    let env = Env::default().await;
    let mut config = env.config();
    config.timeout = Duration::from_millis(300);
    let client = Client::new(config).unwrap();
    client.authenticate().await.unwrap();
    env.fault(json!({"path_contains": "/rest/", "latency_ms": 1500, "count": 1}))
        .await;
    client.activity_types().await.unwrap();
    assert_eq!(env.count("GET /rest/v1/activities/types.json").await, 2);
}

#[tokio::test]
async fn daily_quota_607_is_fatal_and_not_retried() {
    let env = Env::default().await;
    let client = env.client();
    env.fault(json!({"path_contains": "/rest/", "code": "607", "count": 5}))
        .await;
    let err = client.activity_types().await.unwrap_err();
    assert!(matches!(err, Error::DailyQuota { .. }), "{err}");
    assert!(err.is_fatal());
    assert_eq!(env.count("GET /rest/v1/activities/types.json").await, 1);
}

#[tokio::test]
async fn the_emulators_real_daily_quota_stops_the_client() {
    let env = Env::start(Config {
        daily_quota: 3,
        ..Config::default()
    })
    .await;
    let client = env.client();
    for _ in 0..3 {
        client.activity_types().await.unwrap();
    }
    let err = client.activity_types().await.unwrap_err();
    assert!(matches!(err, Error::DailyQuota { .. }), "{err}");
    assert_eq!(env.count("GET /rest/v1/activities/types.json").await, 4);
}

#[tokio::test]
async fn bulk_quota_1029_is_fatal_and_not_retried() {
    let env = Env::default().await;
    let client = env.client();
    env.fault(json!({"path_contains": "/bulk/", "code": "1029", "message": "Export daily quota 500MB exceeded.", "count": 5}))
        .await;
    let err = client
        .create_export(&ExportKind::Leads, &json!({"fields": ["id"], "format": "CSV",
            "filter": {"createdAt": {"startAt": "2024-01-01T00:00:00Z", "endAt": "2024-01-02T00:00:00Z"}}}))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::BulkQuota { ref message, .. } if message.contains("500MB")),
        "{err}"
    );
    assert_eq!(env.count("POST /bulk/v1/leads/export/create.json").await, 1);
}

#[tokio::test]
async fn client_limiter_keeps_under_the_servers_rate_limit() {
    // The emulator allows 6 calls per 2 s; the client is configured for 5 per 2 s: no 606 ever.
    let env = Env::start(Config {
        rate_limit: 6,
        rate_window: Duration::from_secs(2),
        ..Config::default()
    })
    .await;
    let mut config = env.config();
    config.rate_limit = 5;
    config.rate_window = Duration::from_secs(2);
    config.max_retries = 0;
    let client = Client::new(config).unwrap();
    let tasks: Vec<_> = (0..12)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.activity_types().await.map(|_| ()) })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(env.count("GET /rest/v1/activities/types.json").await, 12);
}

#[tokio::test]
async fn recovers_from_the_servers_real_606() {
    // Client misconfigured above the server's limit: the server answers 606 and the client waits it out.
    let env = Env::start(Config {
        rate_limit: 3,
        rate_window: Duration::from_secs(1),
        ..Config::default()
    })
    .await;
    let mut config = env.config();
    config.rate_limit = 100;
    let client = Client::new(config).unwrap();
    for _ in 0..7 {
        client.activity_types().await.unwrap();
    }
    assert!(env.count("GET /rest/v1/activities/types.json").await >= 7);
}

#[tokio::test]
async fn concurrency_cap_avoids_615() {
    let env = Env::start(Config {
        concurrency_limit: 2,
        ..Config::default()
    })
    .await;
    let mut config = env.config();
    config.max_concurrency = 2;
    config.max_retries = 0;
    let client = Client::new(config).unwrap();
    env.fault(json!({"path_contains": "/rest/", "latency_ms": 200, "count": 8}))
        .await;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.activity_types().await.map(|_| ()) })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn budget_refuses_calls_locally() {
    let env = Env::default().await;
    let mut config = env.config();
    config.daily_budget = 2;
    let client = Client::new(config).unwrap();
    client.activity_types().await.unwrap();
    client.activity_types().await.unwrap();
    let err = client.activity_types().await.unwrap_err();
    assert!(
        matches!(err, Error::BudgetExhausted { used: 2, budget: 2 }),
        "{err}"
    );
    assert_eq!(env.count("GET /rest/v1/activities/types.json").await, 2);
}

#[tokio::test]
async fn usage_stats_feed_the_budget() {
    let env = Env::start(Config::default()).await;
    let client = env.client();
    client.activity_types().await.unwrap();
    client.describe_leads2().await.unwrap();
    let fresh = env.client();
    let total = fresh.sync_budget_with_usage().await.unwrap();
    assert!(total >= 2, "usage total {total}");
    assert!(fresh.budget().used() >= 2);
}

// ---------------------------------------------------------------- leads

#[tokio::test]
async fn sync_chunks_large_inputs_and_keeps_input_order() {
    let env = Env::default().await;
    let client = env.client();
    let first = leads(650, "bulk");
    let ids = create(&client, &first).await;
    assert_eq!(ids.len(), 650);
    assert_eq!(env.count("POST /rest/v1/leads.json").await, 3);

    // Results line up with input: the id at position i is the lead with email i.
    for i in [0usize, 299, 300, 649] {
        let lead = client
            .lead_by_id(ids[i], &["email"])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(lead["email"], json!(format!("bulk{i}@example.com")));
    }

    // createOnly on a mix: existing emails are skipped with 1005, new ones created, in place.
    let mixed = vec![
        lead("bulk5@example.com", "X"),
        lead("new@example.com", "Y"),
        lead("bulk7@example.com", "Z"),
    ];
    let results = client
        .sync_leads(
            &mixed,
            &SyncLeadsOptions {
                action: SyncAction::CreateOnly,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(results[0].is_skipped() && results[0].reason_code() == Some("1005"));
    assert_eq!(results[1].status, Some(RecordStatus::Created));
    assert_eq!(results[2].reason_code(), Some("1005"));

    // updateOnly by id.
    let mut update = Record::new();
    update.insert("id".into(), json!(ids[3]));
    update.insert("firstName".into(), json!("Renamed"));
    let results = client
        .sync_leads(
            &[update],
            &SyncLeadsOptions {
                action: SyncAction::UpdateOnly,
                lookup_field: Some("id".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(results[0].status, Some(RecordStatus::Updated));
    let lead = client
        .lead_by_id(ids[3], &["firstName"])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lead["firstName"], json!("Renamed"));
}

#[tokio::test]
async fn filter_queries_page_until_the_token_stops() {
    let env = Env::default().await;
    let client = env.client();
    let records = leads(250, "page");
    let ids = create(&client, &records).await;
    let values: Vec<String> = ids.iter().map(i64::to_string).collect();
    let mut pager = client
        .leads_by_filter("id", &values, &["id", "email"], Some(100))
        .unwrap();
    let mut seen = Vec::new();
    let mut pages = 0;
    while let Some(page) = pager.next_page().await.unwrap() {
        assert!(page.len() <= 100);
        pages += 1;
        seen.extend(page.into_iter().map(|r| r["id"].as_i64().unwrap()));
    }
    assert_eq!(pages, 3);
    seen.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(seen, expected);

    // The same query as a record stream.
    use futures::TryStreamExt;
    let streamed: Vec<Record> = client
        .leads_by_filter("id", &values, &["id"], Some(120))
        .unwrap()
        .into_stream()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(streamed.len(), 250);

    // No match: an empty result, not an error.
    let mut none = client
        .leads_by_filter("email", &["nobody@example.com"], &[], None)
        .unwrap();
    assert!(none.next_page().await.unwrap().is_none());

    // Unsupported filter fields are the service's error, typed.
    let err = match client
        .leads_by_filter("firstName", &["x"], &[], None)
        .unwrap()
        .next_page()
        .await
    {
        Err(e) => e,
        Ok(v) => panic!("expected an error, got {v:?}"),
    };
    assert!(
        matches!(err, Error::Api { ref code, .. } if code == "1011" || code == "1006"),
        "{err}"
    );
}

#[tokio::test]
async fn lead_by_id_missing_is_none_and_delete_reports_per_record() {
    let env = Env::default().await;
    let client = env.client();
    let ids = create(&client, &leads(3, "del")).await;
    assert!(client.lead_by_id(999_999, &[]).await.unwrap().is_none());
    let results = client
        .delete_leads(&[ids[0], 999_999, ids[2]])
        .await
        .unwrap();
    assert_eq!(results[0].status, Some(RecordStatus::Deleted));
    assert_eq!(results[1].reason_code(), Some("1004"));
    assert_eq!(results[2].status, Some(RecordStatus::Deleted));
    assert!(client.lead_by_id(ids[0], &[]).await.unwrap().is_none());
    assert!(client.lead_by_id(ids[1], &[]).await.unwrap().is_some());
}

#[tokio::test]
async fn merge_removes_the_losers() {
    let env = Env::default().await;
    let client = env.client();
    let ids = create(&client, &leads(3, "merge")).await;
    client.merge_leads(ids[0], &ids[1..], false).await.unwrap();
    assert!(client.lead_by_id(ids[0], &[]).await.unwrap().is_some());
    assert!(client.lead_by_id(ids[1], &[]).await.unwrap().is_none());
    assert!(matches!(
        client
            .merge_leads(ids[0], &(0..26).collect::<Vec<_>>(), false)
            .await,
        Err(Error::InvalidInput(_))
    ));
}

#[tokio::test]
async fn custom_lead_fields_are_created_and_listed() {
    let env = Env::default().await;
    let client = env.client();
    let new = |name: &str, display: &str, data_type: &str| NewLeadField {
        display_name: display.into(),
        name: name.into(),
        data_type: data_type.into(),
        description: Some("mdsync".into()),
        length: None,
        is_hidden: None,
        is_html_encoding_in_email: None,
        is_sensitive: None,
    };
    let results = client
        .create_lead_fields(&[
            new("msftId", "Msft Id", "string"),
            new("msftIsDeleted", "Msft Is Deleted", "boolean"),
        ])
        .await
        .unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0].name.as_deref(), Some("msftId"));
    assert_eq!(results[0].status, Some(RecordStatus::Created));

    let mut names = Vec::new();
    let mut pager = client.lead_schema_fields();
    while let Some(page) = pager.next_page().await.unwrap() {
        names.extend(page.into_iter().map(|f| f.name));
    }
    assert!(names.contains(&"msftId".to_string()) && names.contains(&"email".to_string()));
    let field = client
        .lead_schema_field("msftIsDeleted")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(field.data_type, "boolean");
    assert!(
        client
            .lead_schema_field("noSuchField")
            .await
            .unwrap()
            .is_none()
    );

    // Creating it again is skipped per record, not a call failure.
    let again = client
        .create_lead_fields(&[new("msftId", "Msft Id", "string")])
        .await
        .unwrap();
    assert!(again[0].is_skipped(), "{again:?}");

    let describe = client.describe_leads2().await.unwrap();
    assert!(describe.fields.iter().any(|f| f.name == "msftId"));
}

#[tokio::test]
async fn long_filter_queries_go_as_post_with_method_get() {
    let env = Env::default().await;
    let client = env.client();
    let padding = "x".repeat(30);
    let records: Vec<Record> = (0..300)
        .map(|i| lead(&format!("{padding}{i}@example.com"), "Long"))
        .collect();
    create(&client, &records).await;
    let emails: Vec<String> = (0..300)
        .map(|i| format!("{padding}{i}@example.com"))
        .collect();
    let mut pager = client
        .leads_by_filter("email", &emails, &["email"], None)
        .unwrap();
    let mut found = 0;
    while let Some(page) = pager.next_page().await.unwrap() {
        found += page.len();
    }
    assert_eq!(found, 300);
    // The sync plus the query: both POSTs (the query as `?_method=GET`, its URI would exceed 8 KB).
    assert_eq!(env.count("POST /rest/v1/leads.json").await, 2);
    assert_eq!(env.count("GET /rest/v1/leads.json").await, 0);
}

// ---------------------------------------------------------------- incremental reads

#[tokio::test]
async fn activity_pages_may_be_empty_and_the_last_token_resumes() {
    let env = Env::start(Config {
        limits_enabled: false,
        activity_scan_block: 4,
        ..Config::default()
    })
    .await;
    let client = env.client();
    let token = client
        .paging_token(Utc::now() - chrono::Duration::minutes(5))
        .await
        .unwrap();
    let ids = create(&client, &leads(20, "act")).await;
    env.marketer_edit(ids[3], json!({"title": "CFO"})).await;
    env.marketer_edit(ids[17], json!({"title": "CEO"})).await;

    let mut pager = client
        .activities(token.clone(), &[13], &ActivityFilter::default())
        .unwrap();
    let mut changes = Vec::new();
    let mut empty_pages_with_more = 0;
    while let Some(page) = pager.next_page().await.unwrap() {
        if page.records.is_empty() && page.more_result {
            empty_pages_with_more += 1;
        }
        changes.extend(page.records);
    }
    assert!(empty_pages_with_more >= 1, "expected sparse empty pages");
    assert_eq!(changes.len(), 2);
    assert!(changes.iter().all(|a| a.activity_type_id == 13));
    assert_eq!(changes[0].lead_id, Some(ids[3]));
    // activities.json carries the change as attributes (leadchanges.json has `fields`).
    assert_eq!(changes[0].attribute("New Value"), Some(&json!("CFO")));
    let stored = pager.token().to_owned();

    // Resuming from the stored token sees nothing new, then exactly the next change.
    let nothing = client
        .activities(stored.clone(), &[13], &ActivityFilter::default())
        .unwrap()
        .drain(|page| panic!("unexpected page {page:?}"))
        .await
        .unwrap();
    env.marketer_edit(ids[0], json!({"title": "CTO"})).await;
    let mut later = Vec::new();
    client
        .activities(nothing, &[13], &ActivityFilter::default())
        .unwrap()
        .drain(|page| {
            later.extend(page);
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].lead_id, Some(ids[0]));
}

#[tokio::test]
async fn lead_changes_report_api_and_marketer_edits() {
    let env = Env::default().await;
    let client = env.client();
    let token = client
        .paging_token(Utc::now() - chrono::Duration::minutes(5))
        .await
        .unwrap();
    let ids = create(&client, &leads(2, "chg")).await;
    env.marketer_edit(ids[1], json!({"firstName": "Edited"}))
        .await;
    let mut all = Vec::new();
    let last = client
        .lead_changes(token, &["firstName"], &ActivityFilter::default())
        .unwrap()
        .drain(|page| {
            all.extend(page);
            Ok(())
        })
        .await
        .unwrap();
    assert!(!last.is_empty());
    let change = all
        .iter()
        .find(|a| a.activity_type_id == 13 && a.lead_id == Some(ids[1]))
        .expect("the marketer's change");
    assert_eq!(change.fields[0].new_value, json!("Edited"));
    assert_eq!(change.fields[0].old_value, json!("F1"));
    assert!(change.date().is_some());
    assert_ne!(change.attribute("Source"), Some(&json!("Web service API")));
    let created = all.iter().filter(|a| a.activity_type_id == 12).count();
    assert_eq!(created, 2);
}

#[tokio::test]
async fn deleted_leads_are_read_incrementally() {
    let env = Env::default().await;
    let client = env.client();
    let token = client
        .paging_token(Utc::now() - chrono::Duration::minutes(5))
        .await
        .unwrap();
    let ids = create(&client, &leads(3, "gone")).await;
    client.delete_leads(&ids[..2]).await.unwrap();
    let mut deleted = Vec::new();
    client
        .deleted_leads(token, None)
        .drain(|page| {
            deleted.extend(page);
            Ok(())
        })
        .await
        .unwrap();
    let mut lead_ids: Vec<i64> = deleted.iter().filter_map(|a| a.lead_id).collect();
    lead_ids.sort();
    assert_eq!(lead_ids, ids[..2].to_vec());
    assert!(deleted.iter().all(|a| a.activity_type_id == 37));
}

#[tokio::test]
async fn activity_types_include_the_documented_ids() {
    let env = Env::default().await;
    let types = env.client().activity_types().await.unwrap();
    for id in [1, 12, 13, 37] {
        assert!(types.iter().any(|t| t.id == id), "type {id} missing");
    }
    assert!(
        env.client()
            .activities("x", &[], &ActivityFilter::default())
            .is_err()
    );
}

// ---------------------------------------------------------------- objects

#[tokio::test]
async fn companies_describe_sync_query_delete() {
    let env = Env::default().await;
    let client = env.client();
    let described = client.describe_object(ObjectKind::Companies).await.unwrap();
    assert_eq!(described.id_field, "id");
    assert_eq!(
        described.dedupe_fields,
        vec!["externalCompanyId".to_string()]
    );

    let records: Vec<Record> = (0..3)
        .map(|i| {
            mdsync_marketo_client::key(&[
                ("externalCompanyId", json!(format!("C{i}"))),
                ("company", json!(format!("Acme {i}"))),
            ])
        })
        .collect();
    let results = client
        .sync_objects(
            ObjectKind::Companies,
            SyncAction::CreateOrUpdate,
            KeyKind::DedupeFields,
            &records,
        )
        .await
        .unwrap();
    assert!(
        results
            .iter()
            .all(|r| r.status == Some(RecordStatus::Created)),
        "{results:?}"
    );

    let mut pager = client
        .query_objects(
            ObjectKind::Companies,
            "externalCompanyId",
            &["C0", "C2"],
            &["company"],
            None,
        )
        .unwrap();
    let page = pager.next_page().await.unwrap().unwrap();
    assert_eq!(page.len(), 2);

    let results = client
        .delete_objects(
            ObjectKind::Companies,
            KeyKind::DedupeFields,
            &[
                mdsync_marketo_client::key(&[("externalCompanyId", json!("C0"))]),
                mdsync_marketo_client::key(&[("externalCompanyId", json!("nope"))]),
            ],
        )
        .await
        .unwrap();
    assert_eq!(results[0].status, Some(RecordStatus::Deleted));
    assert_eq!(results[1].reason_code(), Some("1013"));
}

#[tokio::test]
async fn opportunities_and_roles() {
    let env = Env::default().await;
    let client = env.client();
    let ids = create(&client, &leads(1, "opp")).await;
    let described = client
        .describe_object(ObjectKind::Opportunities)
        .await
        .unwrap();
    assert_eq!(described.id_field, "marketoGUID");
    let described = client
        .describe_object(ObjectKind::OpportunityRoles)
        .await
        .unwrap();
    assert_eq!(
        described.dedupe_fields,
        vec!["externalOpportunityId", "leadId", "role"]
    );
    let opp = mdsync_marketo_client::key(&[
        ("externalOpportunityId", json!("O1")),
        ("name", json!("Deal")),
    ]);
    let r = client
        .sync_objects(
            ObjectKind::Opportunities,
            SyncAction::CreateOrUpdate,
            KeyKind::DedupeFields,
            &[opp],
        )
        .await
        .unwrap();
    assert_eq!(r[0].status, Some(RecordStatus::Created), "{r:?}");
    let role = mdsync_marketo_client::key(&[
        ("externalOpportunityId", json!("O1")),
        ("leadId", json!(ids[0])),
        ("role", json!("Captain")),
    ]);
    let r = client
        .sync_objects(
            ObjectKind::OpportunityRoles,
            SyncAction::CreateOrUpdate,
            KeyKind::DedupeFields,
            std::slice::from_ref(&role),
        )
        .await
        .unwrap();
    assert_eq!(r[0].status, Some(RecordStatus::Created), "{r:?}");
    let mut pager = client
        .query_objects_by_keys(ObjectKind::OpportunityRoles, "dedupeFields", &[role], &[])
        .unwrap();
    let page = pager.next_page().await.unwrap().unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0]["role"], json!("Captain"));
}

// ---------------------------------------------------------------- bulk export

#[tokio::test]
async fn bulk_lead_export_end_to_end() {
    let env = Env::default().await;
    let client = env.client();
    create(&client, &leads(40, "export")).await;
    let now = Utc::now();
    let window = json!({
        "startAt": (now - chrono::Duration::hours(1)).format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "endAt": (now + chrono::Duration::hours(1)).format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    });
    let kind = ExportKind::Leads;
    let job = client
        .create_export(&kind, &json!({"fields": ["id", "email", "firstName"], "format": "CSV", "filter": {"createdAt": window}}))
        .await
        .unwrap();
    assert_eq!(job.status, ExportStatus::Created);

    // Not downloadable before completion: a typed 404.
    let err = client
        .download_export(&kind, &job.export_id, None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::ExportFileUnavailable { status: 404, ref export_id, .. } if *export_id == job.export_id),
        "{err}"
    );

    let queued = client.enqueue_export(&kind, &job.export_id).await.unwrap();
    assert!(matches!(
        queued.status,
        ExportStatus::Queued | ExportStatus::Processing | ExportStatus::Completed
    ));
    let done = client
        .wait_for_export(
            &kind,
            &job.export_id,
            Duration::from_millis(50),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(done.number_of_records, Some(40));

    let mut file = client
        .download_export(&kind, &job.export_id, None)
        .await
        .unwrap();
    assert_eq!(file.status, 200);
    let mut bytes = Vec::new();
    while let Some(chunk) = file.chunk().await.unwrap() {
        bytes.extend_from_slice(&chunk);
    }
    assert_eq!(Some(bytes.len() as i64), done.file_size);
    let checksum = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)));
    assert_eq!(done.file_checksum.as_deref(), Some(checksum.as_str()));
    let mut reader = csv::Reader::from_reader(bytes.as_slice());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        vec!["id", "email", "firstName"]
    );
    assert_eq!(reader.records().count(), 40);

    // A byte range comes back as 206 with just those bytes.
    let mut part = client
        .download_export(&kind, &job.export_id, Some((0, Some(9))))
        .await
        .unwrap();
    assert_eq!(part.status, 206);
    let mut head = Vec::new();
    while let Some(chunk) = part.chunk().await.unwrap() {
        head.extend_from_slice(&chunk);
    }
    assert_eq!(head, bytes[..10].to_vec());
}

#[tokio::test]
async fn bulk_export_can_be_cancelled_and_listed() {
    let env = Env::default().await;
    let client = env.client();
    let now = Utc::now();
    let job = client
        .create_export(
            &ExportKind::Activities,
            &json!({"format": "CSV", "filter": {"createdAt": {
                "startAt": (now - chrono::Duration::days(1)).format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                "endAt": now.format("%Y-%m-%dT%H:%M:%SZ").to_string()},
                "activityTypeIds": [12, 13]}}),
        )
        .await
        .unwrap();
    let cancelled = client
        .cancel_export(&ExportKind::Activities, &job.export_id)
        .await
        .unwrap();
    assert_eq!(cancelled.status, ExportStatus::Cancelled);
    let err = client
        .wait_for_export(
            &ExportKind::Activities,
            &job.export_id,
            Duration::from_millis(10),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ExportNotCompleted { .. }), "{err}");
    let mut pager = client.list_exports(&ExportKind::Activities, &[]).unwrap();
    let jobs = pager.next_page().await.unwrap().unwrap_or_default();
    assert!(jobs.iter().any(|j| j.export_id == job.export_id));
}
