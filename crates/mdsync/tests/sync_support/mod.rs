//! Shared by the `sync_*` process tests: in-process emulators, a config written by `mdsync config init`,
//! `mdsync setup`, and helpers to act as a Dynamics user or a marketer and to read both sides.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::{Map, Value, json};
use uuid::Uuid;

pub struct Pair {
    pub dv: mdsync_dataverse_emulator::Running,
    pub mk: mdsync_marketo_emulator::Running,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub http: reqwest::Client,
    pub org: Value,
}

pub async fn mdsync(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_mdsync"))
            .args(&args)
            .env("RUST_LOG", "error")
            .output()
            .expect("run mdsync")
    })
    .await
    .expect("join")
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

impl Pair {
    /// Emulators (limits off), `config init`, `setup sync-user`, `setup marketo` (and the sync filter).
    pub async fn start(filter: bool) -> Pair {
        let dv = mdsync_dataverse_emulator::spawn(mdsync_dataverse_emulator::Config {
            limits_enabled: false,
            ..Default::default()
        })
        .await
        .expect("dataverse");
        let mk = mdsync_marketo_emulator::spawn(mdsync_marketo_emulator::Config {
            limits_enabled: false,
            ..Default::default()
        })
        .await
        .expect("marketo");
        let dir = tempfile::tempdir().expect("tempdir");
        let described = dir.path().join("emulators.json");
        let line = json!({"dataverse": dv.description(), "marketo": mk.description()}).to_string();
        std::fs::write(&described, line).expect("write description");
        let config = dir.path().join("mdsync.toml");
        let state = dir.path().join("state.sqlite3");
        let http = reqwest::Client::new();
        let org: Value = http
            .get(format!("{}/_emulator/org", dv.description().url))
            .send()
            .await
            .expect("org")
            .json()
            .await
            .expect("org json");
        let pair = Pair {
            dv,
            mk,
            dir,
            config,
            http,
            org,
        };
        pair.ok(&[
            "config",
            "init",
            "--from-emulator-json",
            &described.display().to_string(),
            "--state",
            &state.display().to_string(),
        ])
        .await;
        pair.ok(&["setup", "sync-user"]).await;
        pair.ok(&["setup", "marketo"]).await;
        if filter {
            pair.ok(&["setup", "sync-filter", "--entities", "lead,contact"])
                .await;
            let text = std::fs::read_to_string(&pair.config).expect("config");
            if !text.contains("filter_field") {
                std::fs::write(
                    &pair.config,
                    text.replacen("[sync]\n", "[sync]\nfilter_field = \"new_synctomkto\"\n", 1),
                )
                .expect("config");
            }
        }
        pair
    }

    pub fn args(&self, list: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        v.push("--config".into());
        v.push(self.config.display().to_string());
        v
    }

    pub async fn run(&self, list: &[&str]) -> Output {
        mdsync(self.args(list)).await
    }

    /// Runs an mdsync command that must exit 0; returns stdout.
    pub async fn ok(&self, list: &[&str]) -> String {
        let out = self.run(list).await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "mdsync {list:?}: {}",
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn config_path(&self) -> &Path {
        &self.config
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
        let t = r.text().await.expect("body");
        assert!(status.is_success(), "{path}: {status} {t}");
        serde_json::from_str(&t).unwrap_or(Value::Null)
    }

    pub async fn seed_crm(&self, body: Value) -> Value {
        self.post(&self.dv.description().url, "/_emulator/seed", body)
            .await
    }

    pub async fn marketer_edit(&self, body: Value) -> Value {
        self.post(
            &self.mk.description().url,
            "/_emulator/marketer-edits",
            body,
        )
        .await
    }

    async fn token(&self, user: &str) -> String {
        let v = self
            .post(
                &self.dv.description().url,
                "/_emulator/tokens",
                json!({"systemuserid": user}),
            )
            .await;
        v["access_token"].as_str().expect("token").to_owned()
    }

    /// A Dataverse call as the seeded admin user (a human).
    pub async fn crm(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let token = self
            .token(self.org["admin_user_id"].as_str().expect("admin"))
            .await;
        let url = format!("{}{path}", self.dv.description().api_url);
        let mut req = self.http.request(method.clone(), url).bearer_auth(token);
        if method == reqwest::Method::PATCH {
            req = req.header("If-Match", "*");
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("dataverse call");
        let status = r.status();
        let t = r.text().await.expect("body");
        assert!(status.is_success(), "{path}: {status} {t}");
        serde_json::from_str(&t).unwrap_or(Value::Null)
    }

    /// Every row of an entity set (`select` columns), following next links.
    pub async fn crm_rows(&self, entity_set: &str, select: &str) -> Vec<Map<String, Value>> {
        let mut out = Vec::new();
        let mut url = format!(
            "{}{entity_set}?$select={select}",
            self.dv.description().api_url
        );
        let token = self
            .token(self.org["admin_user_id"].as_str().expect("admin"))
            .await;
        loop {
            let v: Value = self
                .http
                .get(&url)
                .bearer_auth(&token)
                .header("Prefer", "odata.maxpagesize=5000")
                .send()
                .await
                .expect("query")
                .json()
                .await
                .expect("json");
            for row in v["value"].as_array().expect("rows") {
                out.push(row.as_object().expect("row").clone());
            }
            match v["@odata.nextLink"].as_str() {
                Some(next) => url = next.to_owned(),
                None => break,
            }
        }
        out
    }

    fn marketo(&self) -> mdsync_marketo_client::Client {
        let d = self.mk.description();
        mdsync_marketo_client::Client::new(mdsync_marketo_client::ClientConfig::new(
            d.url.clone(),
            d.client_id.clone(),
            d.client_secret.clone(),
        ))
        .expect("marketo client")
    }

    /// Marketo persons by msftId, 300 ids per call: msftId → every person carrying it.
    pub async fn persons(
        &self,
        ids: &[Uuid],
        fields: &[&str],
    ) -> std::collections::HashMap<String, Vec<Map<String, Value>>> {
        let client = self.marketo();
        let mut out: std::collections::HashMap<String, Vec<Map<String, Value>>> =
            Default::default();
        let mut with_id: Vec<&str> = fields.to_vec();
        with_id.push("msftId");
        for chunk in ids.chunks(300) {
            let values: Vec<String> = chunk.iter().map(ToString::to_string).collect();
            let mut pager = client
                .leads_by_filter("msftId", &values, &with_id, Some(300))
                .expect("filter");
            while let Some(page) = pager.next_page().await.expect("page") {
                for p in page {
                    let key = p["msftId"].as_str().unwrap_or_default().to_lowercase();
                    out.entry(key).or_default().push(p);
                }
            }
        }
        out
    }
}

pub fn id_of(row: &Map<String, Value>, key: &str) -> Uuid {
    row.get(key)
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
        .expect("row id")
}
