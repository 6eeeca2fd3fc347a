//! `setup` and `validate` against both emulators in-process (ephemeral ports, real HTTP, real SQLite).

use std::collections::BTreeSet;
use std::path::PathBuf;

use mdsync_config::{Config, InitValues, Secret};
use mdsync_dataverse_client::{Client, ErrorKind, QueryOptions};
use mdsync_setup::validate::{self, Report};
use mdsync_setup::{Event, Outcome, StepStatus, SyncUserIdentity, SyncUserOptions};
use serde_json::{Value, json};
use uuid::Uuid;

struct Env {
    dv: mdsync_dataverse_emulator::Running,
    mk: mdsync_marketo_emulator::Running,
    dir: tempfile::TempDir,
    config: Config,
    http: reqwest::Client,
}

async fn env(solution_version: &str) -> Env {
    let dv = mdsync_dataverse_emulator::spawn(mdsync_dataverse_emulator::Config {
        marketo_solution_version: solution_version.into(),
        ..Default::default()
    })
    .await
    .expect("dataverse emulator");
    let mk = mdsync_marketo_emulator::spawn(mdsync_marketo_emulator::Config::default())
        .await
        .expect("marketo emulator");
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dv.description();
    let m = mk.description();
    let text = mdsync_config::render(&InitValues {
        dynamics_url: d.url.clone(),
        tenant_id: d.tenant_id.clone(),
        authority: Some(d.url.clone()),
        sync_client_id: d.sync_app_client_id.clone(),
        sync_client_secret: Secret::new(d.sync_app_client_secret.clone()),
        admin_client_id: d.admin_client_id.clone(),
        admin_client_secret: Secret::new(d.admin_client_secret.clone()),
        marketo_url: m.url.clone(),
        marketo_client_id: m.client_id.clone(),
        marketo_client_secret: Secret::new(m.client_secret.clone()),
        state: "mdsync.db".into(),
    })
    .replace(
        "# filter_field = \"new_synctomkto\"",
        "filter_field = \"new_synctomkto\"",
    );
    let path = dir.path().join("mdsync.toml");
    std::fs::write(&path, &text).expect("write config");
    let config = mdsync_config::load(&path).expect("config loads");
    Env {
        dv,
        mk,
        dir,
        config,
        http: reqwest::Client::new(),
    }
}

impl Env {
    fn admin(&self) -> Client {
        Client::new(self.config.dynamics.admin_client_config().expect("admin"))
            .expect("admin client")
    }
    fn sync_client(&self) -> Client {
        Client::new(self.config.dynamics.client_config()).expect("sync client")
    }
    fn marker(&self) -> PathBuf {
        self.dir.path().join("mdsync.db.publish-pending")
    }
    fn options(&self) -> SyncUserOptions {
        SyncUserOptions {
            publish_marker: Some(self.marker()),
            ..Default::default()
        }
    }
    fn app(&self) -> SyncUserIdentity {
        SyncUserIdentity::Application {
            client_id: self.config.dynamics.client_id.clone(),
        }
    }
    async fn setup_user(&self, options: &SyncUserOptions) -> (Outcome, Vec<Event>) {
        let mut events = Vec::new();
        let outcome = mdsync_setup::sync_user(&self.admin(), &self.app(), options, &mut |e| {
            events.push(e.clone())
        })
        .await
        .expect("sync_user runs");
        (outcome, events)
    }
    async fn setup_all(&self) {
        let (user, _) = self.setup_user(&self.options()).await;
        assert!(user.ok(), "{user:#?}");
        let filter = mdsync_setup::sync_filter::sync_filter(
            &self.admin(),
            &self.config.sync.entities,
            "new_synctomkto",
            false,
            &mut |_| {},
        )
        .await;
        assert!(filter.ok(), "{filter:#?}");
        let mk = mdsync_marketo_client::Client::new(self.config.marketo_client_config())
            .expect("marketo client");
        let fields = mdsync_setup::marketo_fields::marketo_fields(&mk, false, &mut |_| {}).await;
        assert!(fields.ok(), "{fields:#?}");
    }
    async fn emulator(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let r = self
            .http
            .request(method, format!("{}{path}", self.dv.description().url))
            .json(&body)
            .send()
            .await
            .expect("emulator call");
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.unwrap_or(Value::Null)
    }
    async fn org(&self) -> Value {
        self.emulator(reqwest::Method::GET, "/_emulator/org", Value::Null)
            .await
    }
    async fn sync_user_id(&self) -> Uuid {
        mdsync_setup::org::app_user(&self.admin(), &self.config.dynamics.client_id)
            .await
            .expect("query")
            .expect("sync user exists")
            .id
    }
    async fn publishes(&self) -> u64 {
        self.emulator(reqwest::Method::GET, "/_emulator/publishes", Value::Null)
            .await["count"]
            .as_u64()
            .unwrap_or(0)
    }
    /// Write requests (anything but GET and token calls) since the last counter reset.
    async fn writes(&self) -> Vec<String> {
        let c = self
            .emulator(reqwest::Method::GET, "/_emulator/counters", Value::Null)
            .await;
        c["counters"]
            .as_object()
            .map(|m| {
                m.keys()
                    .filter(|k| {
                        !k.starts_with("GET ")
                            && !k.contains("oauth2")
                            && !k.contains("/_emulator/")
                    })
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
    async fn reset_counters(&self) {
        self.emulator(reqwest::Method::DELETE, "/_emulator/counters", Value::Null)
            .await;
    }
}

fn failed(report: &Report) -> BTreeSet<String> {
    report.failed().into_iter().map(str::to_string).collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn statuses(outcome: &Outcome) -> Vec<&'static str> {
    outcome.steps.iter().map(|s| s.status.tag()).collect()
}

#[tokio::test]
async fn fresh_org_fails_the_expected_checks_setup_fixes_them_and_a_rerun_changes_nothing() {
    let env = env("5.0.2.1").await;
    let fresh = validate::validate(&env.config).await;
    assert!(!fresh.ok);
    assert_eq!(
        failed(&fresh),
        set(&[
            validate::ROLE,
            validate::MARKETO_USER_SET,
            validate::MARKETO_USER_MATCHES,
            validate::USER_ENABLED,
            validate::USER_LANGUAGE,
            validate::MARKETO_FIELDS,
            validate::FILTER,
        ]),
        "{fresh:#?}"
    );
    assert!(
        fresh
            .check(validate::ROLE)
            .expect("role")
            .fix
            .contains("mdsync setup sync-user")
    );
    assert!(
        fresh
            .check(validate::MARKETO_FIELDS)
            .expect("fields")
            .fix
            .contains("mdsync setup marketo")
    );
    assert!(
        fresh
            .check(validate::FILTER)
            .expect("filter")
            .fix
            .contains("mdsync setup sync-filter --entities lead,contact,account,opportunity")
    );
    assert!(
        fresh
            .check(validate::SOLUTION)
            .expect("solution")
            .found
            .contains("5.0.2.1")
    );
    assert!(
        fresh
            .check(validate::ORG_URL)
            .expect("url")
            .found
            .contains("Bearer challenge")
    );

    // Dry run: a plan, and not a single write.
    env.reset_counters().await;
    let (plan, _) = env
        .setup_user(&SyncUserOptions {
            dry_run: true,
            ..env.options()
        })
        .await;
    assert_eq!(statuses(&plan), ["would do"; 4], "{plan:#?}");
    assert!(env.writes().await.is_empty(), "{:?}", env.writes().await);

    let before = env.publishes().await;
    let (first, events) = env.setup_user(&env.options()).await;
    assert_eq!(statuses(&first), ["done"; 4], "{first:#?}");
    assert_eq!(events.len(), 4, "each step is reported as it happens");
    assert_eq!(env.publishes().await, before + 1);
    assert!(
        !env.marker().exists(),
        "the publish marker is cleared after publishing"
    );
    env.setup_all().await;

    let good = validate::validate(&env.config).await;
    assert!(good.ok, "{good:#?}");
    assert_eq!(good.checks.len(), 12);
    assert!(good.checks.iter().all(|c| c.fix.is_empty()));
    let fields = good.check(validate::MARKETO_FIELDS).expect("fields");
    assert!(fields.found.contains("msftId is searchable"), "{fields:?}");

    // The second run: every step already done, nothing written, nothing published.
    env.reset_counters().await;
    let user_before = env
        .admin()
        .retrieve(
            "systemusers",
            env.sync_user_id().await,
            &["versionnumber", "modifiedon"],
        )
        .await
        .expect("user");
    let (second, _) = env.setup_user(&env.options()).await;
    assert!(second.all_already_done(), "{second:#?}");
    let filter = mdsync_setup::sync_filter::sync_filter(
        &env.admin(),
        &env.config.sync.entities,
        "new_synctomkto",
        false,
        &mut |_| {},
    )
    .await;
    assert!(filter.all_already_done(), "{filter:#?}");
    let mk = mdsync_marketo_client::Client::new(env.config.marketo_client_config())
        .expect("marketo client");
    let fields = mdsync_setup::marketo_fields::marketo_fields(&mk, false, &mut |_| {}).await;
    assert!(fields.all_already_done(), "{fields:#?}");
    assert!(env.writes().await.is_empty(), "{:?}", env.writes().await);
    assert_eq!(
        env.publishes().await,
        before + 2,
        "sync-filter published once, the re-run not at all"
    );
    let user_after = env
        .admin()
        .retrieve(
            "systemusers",
            env.sync_user_id().await,
            &["versionnumber", "modifiedon"],
        )
        .await
        .expect("user");
    assert_eq!(user_before, user_after);
}

#[tokio::test]
async fn each_breakage_fails_exactly_its_own_check_with_its_fix() {
    let env = env("5.0.2.1").await;
    env.setup_all().await;
    assert!(validate::validate(&env.config).await.ok);
    let admin = env.admin();
    let user = env.sync_user_id().await;
    let org = env.org().await;

    // A disabled solution step.
    let solution = mdsync_setup::org::marketo_solution(&admin)
        .await
        .expect("q")
        .expect("solution");
    let steps = mdsync_setup::org::solution_steps(&admin, solution.id)
        .await
        .expect("steps");
    assert_eq!(steps.len(), 8);
    let step = &steps[2];
    env.emulator(
        reqwest::Method::PUT,
        &format!("/_emulator/steps/{}/state", step.id),
        json!({"statecode": 1}),
    )
    .await;
    let r = validate::validate(&env.config).await;
    assert_eq!(failed(&r), set(&[validate::STEPS]), "{r:#?}");
    let c = r.check(validate::STEPS).expect("steps");
    assert!(
        c.found.contains(&step.name) && c.found.contains("1 of 8"),
        "{c:?}"
    );
    assert!(c.fix.contains("SDK message processing steps"), "{c:?}");
    env.emulator(
        reqwest::Method::PUT,
        &format!("/_emulator/steps/{}/state", step.id),
        json!({"statecode": 0}),
    )
    .await;

    // A wrong Marketo User.
    let (config_id, _) = mdsync_setup::org::default_config(&admin)
        .await
        .expect("q")
        .expect("Default");
    let sales = org["salesperson_user_id"]
        .as_str()
        .expect("sales user")
        .to_string();
    admin
        .update(
            "mkt_marketoconfigs",
            config_id,
            &json!({"mkt_marketouserid@odata.bind": format!("/systemusers({sales})")}),
        )
        .await
        .expect("point Default elsewhere");
    let r = validate::validate(&env.config).await;
    assert_eq!(failed(&r), set(&[validate::MARKETO_USER_MATCHES]), "{r:#?}");
    let c = r.check(validate::MARKETO_USER_MATCHES).expect("identity");
    assert!(
        c.found.contains(&sales) && c.found.contains("WhoAmI"),
        "{c:?}"
    );
    assert!(c.fix.contains("mdsync setup sync-user"), "{c:?}");
    let (fix, _) = env.setup_user(&env.options()).await;
    assert_eq!(
        statuses(&fix),
        ["already done", "already done", "done", "done"],
        "{fix:#?}"
    );

    // A disabled sync user.
    admin
        .update("systemusers", user, &json!({"isdisabled": true}))
        .await
        .expect("disable");
    let r = validate::validate(&env.config).await;
    assert_eq!(failed(&r), set(&[validate::USER_ENABLED]), "{r:#?}");
    let c = r.check(validate::USER_ENABLED).expect("enabled");
    assert!(
        c.found.contains("is disabled") && c.fix.contains("mdsync setup sync-user"),
        "{c:?}"
    );
    let (fix, _) = env.setup_user(&env.options()).await;
    assert_eq!(statuses(&fix)[0], "done", "{fix:#?}");

    // A non-English sync user.
    env.emulator(
        reqwest::Method::PUT,
        &format!("/_emulator/users/{user}/language"),
        json!({"uilanguageid": 1036}),
    )
    .await;
    let r = validate::validate(&env.config).await;
    assert_eq!(failed(&r), set(&[validate::USER_LANGUAGE]), "{r:#?}");
    let c = r.check(validate::USER_LANGUAGE).expect("language");
    assert!(
        c.found.contains("1036") && c.fix.contains("English"),
        "{c:?}"
    );
    env.setup_user(&env.options()).await;

    // A missing role: the sync user is refused by the service with the platform's own error.
    let role: Uuid = org["roles"]["Marketo Sync User"]
        .as_str()
        .expect("role")
        .parse()
        .expect("guid");
    admin
        .disassociate(
            "systemusers",
            user,
            "systemuserroles_association",
            Some(role),
        )
        .await
        .expect("remove role");
    let refused = env
        .sync_client()
        .query_first("leads", &QueryOptions::new().select(["leadid"]))
        .await
        .expect_err("refused");
    assert_eq!(refused.kind(), ErrorKind::PrivilegeDenied);
    assert_eq!(refused.code(), Some("0x80040220"));
    assert!(
        refused
            .message()
            .contains("is missing prvReadLead privilege"),
        "{refused}"
    );
    let r = validate::validate(&env.config).await;
    assert_eq!(failed(&r), set(&[validate::ROLE]), "{r:#?}");
    let c = r.check(validate::ROLE).expect("role");
    assert!(
        c.found.contains("prvReadLead") && c.fix.contains("mdsync setup sync-user"),
        "{c:?}"
    );
    env.setup_user(&env.options()).await;
    assert!(validate::validate(&env.config).await.ok);

    // Wrong secrets.
    let mut wrong = env.config.clone();
    wrong.dynamics.client_secret = Secret::new("not-the-secret");
    let r = validate::validate(&wrong).await;
    assert_eq!(failed(&r), set(&[validate::CREDENTIALS]), "{r:#?}");
    assert!(
        r.check(validate::CREDENTIALS)
            .expect("c")
            .fix
            .contains("client_secret")
    );
    let c = r.check(validate::MARKETO_USER_MATCHES).expect("identity");
    assert!(c.found.contains("application user of client id"), "{c:?}");
    let mut wrong = env.config.clone();
    wrong.marketo.client_secret = Secret::new("not-the-secret");
    let r = validate::validate(&wrong).await;
    assert_eq!(
        failed(&r),
        set(&[validate::MARKETO_CREDENTIALS, validate::MARKETO_FIELDS]),
        "{r:#?}"
    );
    assert!(
        r.check(validate::MARKETO_CREDENTIALS)
            .expect("c")
            .fix
            .contains("marketo.client_secret")
    );
    assert!(
        r.check(validate::MARKETO_FIELDS)
            .expect("c")
            .found
            .starts_with("not checked")
    );
}

#[tokio::test]
async fn other_role_holders_are_listed_and_revoked_on_current_solutions() {
    let env = env("5.0.2.1").await;
    let org = env.org().await;
    let role: Uuid = org["roles"]["Marketo Sync User"]
        .as_str()
        .expect("role")
        .parse()
        .expect("guid");
    let sales: Uuid = org["salesperson_user_id"]
        .as_str()
        .expect("sales")
        .parse()
        .expect("guid");
    env.admin()
        .associate(
            "systemusers",
            sales,
            "systemuserroles_association",
            "roles",
            role,
        )
        .await
        .expect("give role");
    let (out, _) = env.setup_user(&env.options()).await;
    assert!(out.ok());
    let warning = out
        .notes
        .iter()
        .find(|n| n.starts_with("warning"))
        .expect("warning");
    assert!(
        warning.contains("Sam Seller") && warning.contains("--revoke-others"),
        "{warning}"
    );
    let r = validate::validate(&env.config).await;
    let c = r.check(validate::ROLE).expect("role");
    assert!(
        c.ok && c.found.contains("1 other user(s) also hold it"),
        "{c:?}"
    );
    let (out, _) = env
        .setup_user(&SyncUserOptions {
            revoke_others: true,
            ..env.options()
        })
        .await;
    assert!(
        out.notes
            .iter()
            .any(|n| n.starts_with("revoked") && n.contains("Sam Seller")),
        "{out:#?}"
    );
    let holders = mdsync_setup::org::role_holders(&env.admin(), role)
        .await
        .expect("holders");
    assert_eq!(holders.len(), 1);
    assert_eq!(holders[0].id, env.sync_user_id().await);
}

#[tokio::test]
async fn legacy_solutions_explain_that_every_user_needs_the_role_and_can_assign_it() {
    let env = env("4.0.0.13").await;
    let (out, _) = env.setup_user(&env.options()).await;
    assert!(out.ok(), "{out:#?}");
    let note = out
        .notes
        .iter()
        .find(|n| n.contains("older than 4.0.0.14"))
        .expect("legacy note");
    assert!(
        note.contains("every Dynamics user needs") && note.contains("--assign-all"),
        "{note}"
    );
    let (out, _) = env
        .setup_user(&SyncUserOptions {
            assign_all: true,
            ..env.options()
        })
        .await;
    assert!(
        out.notes.iter().any(|n| n.starts_with("assigned")),
        "{out:#?}"
    );
    let role: Uuid = env.org().await["roles"]["Marketo Sync User"]
        .as_str()
        .expect("role")
        .parse()
        .expect("guid");
    let holders = mdsync_setup::org::role_holders(&env.admin(), role)
        .await
        .expect("holders");
    assert!(
        holders.len() >= 5,
        "every enabled user holds it: {holders:?}"
    );
    let r = validate::validate(&env.config).await;
    assert!(
        r.check(validate::SOLUTION)
            .expect("s")
            .found
            .contains("4.0.0.13")
    );
    assert!(
        r.check(validate::ROLE)
            .expect("r")
            .found
            .contains("every user needs the role")
    );
}

#[tokio::test]
async fn an_existing_human_user_is_refused_unless_forced() {
    let env = env("5.0.2.1").await;
    let (config_id, before) = mdsync_setup::org::default_config(&env.admin())
        .await
        .expect("q")
        .expect("Default");
    let identity = SyncUserIdentity::Named {
        user_name: "sam.seller@mdsync.onmicrosoft.com".into(),
        email: "sam.seller@mdsync.onmicrosoft.com".into(),
    };
    env.reset_counters().await;
    let out = mdsync_setup::sync_user(&env.admin(), &identity, &env.options(), &mut |_| {})
        .await
        .expect("runs");
    assert!(!out.ok());
    assert_eq!(statuses(&out), ["FAILED", "skipped", "skipped", "skipped"]);
    let why = out.steps[0].status.detail();
    assert!(
        why.contains("refused")
            && why.contains("dedicated sync user")
            && why.contains("never synced back"),
        "{why}"
    );
    assert!(
        why.contains("Salesperson") && why.contains("--force"),
        "{why}"
    );
    assert!(env.writes().await.is_empty());
    assert_eq!(
        mdsync_setup::org::default_config(&env.admin())
            .await
            .expect("q"),
        Some((config_id, before))
    );

    let forced = mdsync_setup::sync_user(
        &env.admin(),
        &identity,
        &SyncUserOptions {
            force: true,
            ..env.options()
        },
        &mut |_| {},
    )
    .await
    .expect("runs");
    assert!(forced.ok(), "{forced:#?}");
    assert!(forced.notes.iter().any(|n| n.starts_with("--force")));

    // A named dedicated user is created non-interactive and passes on a re-run.
    let env = self::env("5.0.2.1").await;
    let named = SyncUserIdentity::Named {
        user_name: "marketo.sync@contoso.example".into(),
        email: "marketo.sync@contoso.example".into(),
    };
    let out = mdsync_setup::sync_user(&env.admin(), &named, &env.options(), &mut |_| {})
        .await
        .expect("runs");
    assert_eq!(statuses(&out), ["done"; 4], "{out:#?}");
    let again = mdsync_setup::sync_user(&env.admin(), &named, &env.options(), &mut |_| {})
        .await
        .expect("runs");
    assert!(again.all_already_done(), "{again:#?}");
}

#[tokio::test]
async fn a_run_that_fails_half_way_is_completed_by_a_rerun() {
    let env = env("5.0.2.1").await;
    // Step 3 fails once (a non-retryable refusal on the config update).
    env.emulator(
        reqwest::Method::POST,
        "/_emulator/faults",
        json!({"path_contains": "mkt_marketoconfigs(", "method": "PATCH", "status": 400, "code": "0x80040216", "message": "Injected failure", "count": 1}),
    )
    .await;
    let (first, _) = env.setup_user(&env.options()).await;
    assert_eq!(
        statuses(&first),
        ["done", "done", "FAILED", "skipped"],
        "{first:#?}"
    );
    assert!(first.steps[2].status.detail().contains("Injected failure"));
    assert!(env.marker().exists(), "a publish is owed");
    let (second, _) = env.setup_user(&env.options()).await;
    assert_eq!(
        statuses(&second),
        ["already done", "already done", "done", "done"],
        "{second:#?}"
    );
    let r = validate::validate(&env.config).await;
    assert_eq!(
        failed(&r),
        set(&[validate::MARKETO_FIELDS, validate::FILTER]),
        "only the other setup commands remain: {r:#?}"
    );

    // A crash between step 3 and the publish: the re-run publishes although steps 1-3 are done.
    let env = self::env("5.0.2.1").await;
    env.emulator(
        reqwest::Method::POST,
        "/_emulator/faults",
        json!({"path_contains": "PublishAllXml", "status": 400, "code": "0x80040216", "message": "Injected failure", "count": 1}),
    )
    .await;
    let (first, _) = env.setup_user(&env.options()).await;
    assert_eq!(
        statuses(&first),
        ["done", "done", "done", "FAILED"],
        "{first:#?}"
    );
    let before = env.publishes().await;
    let (second, _) = env.setup_user(&env.options()).await;
    assert_eq!(
        statuses(&second),
        ["already done", "already done", "already done", "done"],
        "{second:#?}"
    );
    assert!(second.steps[3].status.detail().contains("interrupted"));
    assert_eq!(env.publishes().await, before + 1);
    let (third, _) = env.setup_user(&env.options()).await;
    assert!(third.all_already_done());
    assert!(matches!(third.steps[3].status, StepStatus::AlreadyDone(_)));
    drop(env.mk);
}

#[tokio::test]
async fn validate_without_admin_credentials_inspects_as_the_sync_user() {
    let env = env("5.0.2.1").await;
    env.setup_all().await;
    let mut config = env.config.clone();
    config.dynamics.admin = None;
    let r = validate::validate(&config).await;
    assert!(
        r.ok,
        "the sync role can read everything the checks need: {r:#?}"
    );
    // Without the role, the sync user cannot even read the solution: the checks say why.
    let role: Uuid = env.org().await["roles"]["Marketo Sync User"]
        .as_str()
        .expect("role")
        .parse()
        .expect("guid");
    env.admin()
        .disassociate(
            "systemusers",
            env.sync_user_id().await,
            "systemuserroles_association",
            Some(role),
        )
        .await
        .expect("remove role");
    let r = validate::validate(&config).await;
    assert!(!r.ok);
    let c = r.check(validate::SOLUTION).expect("solution");
    assert!(c.found.contains("prvReadSolution"), "{c:?}");
}
