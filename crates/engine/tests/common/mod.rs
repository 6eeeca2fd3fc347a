//! Both emulators in-process on ephemeral ports, a real SQLite state file, and the few set-up steps
//! `mdsync setup` does (Marketo msft* fields, the sync user's role, the sync filter column).
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use mdsync_dataverse_client::{Client as CrmClient, ClientConfig as CrmConfig, Secret};
use mdsync_dataverse_emulator as dataverse;
use mdsync_engine::{Engine, EngineSettings};
use mdsync_marketo_client::{Client as MarketoClient, ClientConfig as MarketoConfig, NewLeadField};
use mdsync_marketo_emulator as marketo;
use mdsync_state::SqliteStateStore;
use serde_json::{Value, json};
use uuid::Uuid;

pub struct Env {
    pub dv: dataverse::Running,
    pub mk: marketo::Running,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
    pub org: Value,
}

fn crm_config(d: &dataverse::Description, client_id: &str, secret: &str) -> CrmConfig {
    let mut c = CrmConfig::new(
        d.url.clone(),
        d.tenant_id.clone(),
        client_id,
        Secret::new(secret),
    )
    .with_authority(d.url.clone());
    c.backoff_base = Duration::from_millis(20);
    c.backoff_max = Duration::from_millis(200);
    c.timeout = Duration::from_secs(30);
    c
}

impl Env {
    pub async fn start() -> Env {
        Self::start_with(false).await
    }

    /// `limits`: the emulators' real rate limits on (fault tests) or off.
    pub async fn start_with(limits: bool) -> Env {
        let dv = dataverse::spawn(dataverse::Config {
            limits_enabled: limits,
            ..dataverse::Config::default()
        })
        .await
        .expect("dataverse emulator");
        let mk = marketo::spawn(marketo::Config {
            limits_enabled: limits,
            ..marketo::Config::default()
        })
        .await
        .expect("marketo emulator");
        let http = reqwest::Client::new();
        let org: Value = http
            .get(format!("{}/_emulator/org", dv.description().url))
            .send()
            .await
            .expect("org")
            .json()
            .await
            .expect("org json");
        Env {
            dv,
            mk,
            dir: tempfile::tempdir().expect("tempdir"),
            http,
            org,
        }
    }

    pub fn state_path(&self) -> PathBuf {
        self.dir.path().join("state.sqlite3")
    }

    pub fn admin_crm(&self) -> CrmClient {
        let d = self.dv.description();
        CrmClient::new(crm_config(d, &d.admin_client_id, &d.admin_client_secret))
            .expect("admin client")
    }

    pub fn sync_crm(&self) -> CrmClient {
        let d = self.dv.description();
        CrmClient::new(crm_config(
            d,
            &d.sync_app_client_id,
            &d.sync_app_client_secret,
        ))
        .expect("sync client")
    }

    pub fn marketo_config(&self) -> MarketoConfig {
        let d = self.mk.description();
        let mut c = MarketoConfig::new(d.url.clone(), d.client_id.clone(), d.client_secret.clone());
        c.retry_base_delay = Duration::from_millis(50);
        c.retry_max_delay = Duration::from_secs(2);
        c.timeout = Duration::from_secs(30);
        c
    }

    pub fn marketo(&self) -> MarketoClient {
        MarketoClient::new(self.marketo_config()).expect("marketo client")
    }

    pub fn settings(&self) -> EngineSettings {
        EngineSettings {
            batch_retry_delay: Duration::from_millis(200),
            poll_interval: Duration::from_millis(200),
            ..EngineSettings::default()
        }
    }

    pub fn engine(&self, settings: EngineSettings) -> Engine {
        let store = SqliteStateStore::open(self.state_path()).expect("state store");
        Engine::new(self.sync_crm(), self.marketo(), Box::new(store), settings)
    }

    pub fn store(&self) -> SqliteStateStore {
        SqliteStateStore::open(self.state_path()).expect("state store")
    }

    /// Marketo's msft* fields, the sync app's Marketo Sync User role, and (optionally) the filter column.
    pub async fn prepare(&self, filter: bool) {
        let fields = [
            ("Microsoft Id", "msftId", "string"),
            ("Microsoft Type", "msftType", "string"),
            ("Microsoft Is Deleted", "msftIsDeleted", "boolean"),
            ("Microsoft Created Date", "msftCreatedDate", "datetime"),
            ("Microsoft Person Status", "msftPersonStatus", "string"),
            ("Microsoft Status Reason", "msftStatusReason", "string"),
        ]
        .map(|(display, name, ty)| NewLeadField {
            display_name: display.into(),
            name: name.into(),
            data_type: ty.into(),
            description: None,
            length: None,
            is_hidden: None,
            is_html_encoding_in_email: None,
            is_sensitive: None,
        });
        self.marketo()
            .create_lead_fields(&fields)
            .await
            .expect("msft fields");
        let admin = self.admin_crm();
        let d = self.dv.description();
        let sync_user = admin
            .create(
                "systemusers",
                &json!({
                    "applicationid": d.sync_app_client_id,
                    "businessunitid@odata.bind": format!("/businessunits({})", self.org["root_business_unit_id"].as_str().expect("bu")),
                }),
            )
            .await
            .expect("application user");
        let role = Uuid::parse_str(
            self.org["roles"]["Marketo Sync User"]
                .as_str()
                .expect("role id"),
        )
        .expect("role uuid");
        admin
            .associate(
                "systemusers",
                sync_user,
                "systemuserroles_association",
                "roles",
                role,
            )
            .await
            .expect("role association");
        if filter {
            let label = |t: &str| json!({"@odata.type": "Microsoft.Dynamics.CRM.Label", "LocalizedLabels": [{"@odata.type": "Microsoft.Dynamics.CRM.LocalizedLabel", "Label": t, "LanguageCode": 1033}]});
            for entity in ["lead", "contact"] {
                let body = json!({
                    "@odata.type": "Microsoft.Dynamics.CRM.BooleanAttributeMetadata",
                    "AttributeType": "Boolean", "AttributeTypeName": {"Value": "BooleanType"},
                    "SchemaName": "new_SyncToMkto", "DisplayName": label("Sync to Marketo"), "Description": label("Sync filter"),
                    "RequiredLevel": {"Value": "None", "CanBeChanged": true, "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings"},
                    "DefaultValue": false,
                    "OptionSet": {"@odata.type": "Microsoft.Dynamics.CRM.BooleanOptionSetMetadata", "TrueOption": {"Value": 1, "Label": label("Yes")}, "FalseOption": {"Value": 0, "Label": label("No")}, "OptionSetType": "Boolean"}
                });
                admin
                    .send_json(
                        mdsync_dataverse_client::Method::POST,
                        &format!("EntityDefinitions(LogicalName='{entity}')/Attributes"),
                        Some(&body),
                    )
                    .await
                    .expect("filter column");
            }
        }
    }

    pub async fn seed_crm(&self, body: Value) -> Value {
        self.post(&self.dv.description().url, "/_emulator/seed", body)
            .await
    }

    pub async fn post(&self, base: &str, path: &str, body: Value) -> Value {
        let r = self
            .http
            .post(format!("{base}{path}"))
            .json(&body)
            .send()
            .await
            .expect("post");
        let status = r.status();
        let text = r.text().await.expect("body");
        assert!(status.is_success(), "{path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// A bearer token acting as the seeded salesperson (a human Dynamics user).
    pub async fn human_token(&self) -> String {
        let v = self
            .post(
                &self.dv.description().url,
                "/_emulator/tokens",
                json!({"systemuserid": self.org["salesperson_user_id"]}),
            )
            .await;
        v["access_token"].as_str().expect("token").to_owned()
    }

    /// A human's write to Dataverse (`method` on `path` below the API root).
    pub async fn human(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let token = self.human_token().await;
        let url = format!("{}{path}", self.dv.description().api_url);
        let mut req = self
            .http
            .request(method, url)
            .bearer_auth(token)
            .header("If-Match", "*");
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("human call");
        assert!(r.status().is_success(), "human call {path}: {}", r.status());
        r
    }

    /// A human creates a record (POST); returns its id.
    pub async fn human_create(&self, entity_set: &str, body: Value) -> Uuid {
        let token = self.human_token().await;
        let url = format!("{}{entity_set}", self.dv.description().api_url);
        let r = self
            .http
            .post(url)
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("create");
        assert!(r.status().is_success(), "human create: {}", r.status());
        let loc = r
            .headers()
            .get("OData-EntityId")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        mdsync_dataverse_client::id_from_entity_url(&loc).expect("entity id")
    }

    pub async fn marketer_edit(&self, body: Value) -> Value {
        self.post(
            &self.mk.description().url,
            "/_emulator/marketer-edits",
            body,
        )
        .await
    }

    /// Every Marketo person with this msftId (by the REST API).
    pub async fn persons_by_msft_id(
        &self,
        crm_id: Uuid,
        fields: &[&str],
    ) -> Vec<serde_json::Map<String, Value>> {
        let client = self.marketo();
        let mut pager = client
            .leads_by_filter("msftId", &[crm_id.to_string()], fields, None)
            .expect("filter");
        let mut out = Vec::new();
        while let Some(page) = pager.next_page().await.expect("page") {
            out.extend(page);
        }
        out
    }

    pub async fn person(&self, crm_id: Uuid, fields: &[&str]) -> serde_json::Map<String, Value> {
        let mut v = self.persons_by_msft_id(crm_id, fields).await;
        assert_eq!(v.len(), 1, "exactly one person with msftId {crm_id}: {v:?}");
        v.remove(0)
    }

    pub async fn crm_row(
        &self,
        entity_set: &str,
        id: Uuid,
        select: &[&str],
    ) -> serde_json::Map<String, Value> {
        self.admin_crm()
            .retrieve(entity_set, id, select)
            .await
            .expect("retrieve")
    }

    /// The first `n` ids of an entity set (ordered by id).
    pub async fn crm_ids(&self, entity_set: &str, key: &str, n: u32) -> Vec<Uuid> {
        use futures::TryStreamExt;
        let options = mdsync_dataverse_client::QueryOptions::new()
            .select([key])
            .orderby(format!("{key} asc"))
            .top(n);
        let pages: Vec<_> = self
            .admin_crm()
            .query(entity_set, &options)
            .try_collect()
            .await
            .expect("query");
        pages
            .into_iter()
            .flat_map(|p| p.rows)
            .filter_map(|r| {
                r.get(key)
                    .and_then(Value::as_str)
                    .and_then(|s| Uuid::parse_str(s).ok())
            })
            .collect()
    }

    pub async fn counters(&self, base: &str) -> Value {
        self.http
            .get(format!("{base}/_emulator/counters"))
            .send()
            .await
            .expect("counters")
            .json()
            .await
            .expect("json")
    }
}
