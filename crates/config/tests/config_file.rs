//! The config file as users write it: good files load, bad ones name the file, key and problem.

use std::path::Path;

use mdsync_config::{ConfigError, InitValues, Secret, parse_with_env, render};

const GOOD: &str = r#"
[dynamics]
url = "https://contoso.crm.dynamics.com/"
tenant_id = "t-1"
client_id = "sync-app"
client_secret_env = "MDSYNC_DYNAMICS_CLIENT_SECRET"
[dynamics.admin]
client_id = "admin-app"
client_secret = "admin-secret"
[marketo]
url = "https://123-ABC-456.mktorest.com"
client_id = "mkto"
client_secret = "mkto-secret"
[sync]
state = "state/mdsync.db"
filter_field = "new_synctomkto"
entities = ["lead", "contact"]
marketo_daily_budget = 2000
[[mapping.lead]]
dynamics = "firstname"
marketo = "firstName"
"#;

fn env(name: &str) -> Option<String> {
    (name == "MDSYNC_DYNAMICS_CLIENT_SECRET").then(|| "from-env".to_string())
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn invalid(text: &str) -> ConfigError {
    match parse_with_env(Path::new("/etc/mdsync/mdsync.toml"), text, &env) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e,
    }
}

#[test]
fn a_complete_file_resolves_secrets_paths_and_client_settings() {
    let config = parse_with_env(Path::new("/etc/mdsync/mdsync.toml"), GOOD, &env).expect("valid");
    assert_eq!(config.dynamics.url, "https://contoso.crm.dynamics.com");
    assert_eq!(config.dynamics.client_secret.expose(), "from-env");
    assert_eq!(
        config.dynamics.authority,
        "https://login.microsoftonline.com"
    );
    let admin = config.dynamics.admin.as_ref().expect("admin section");
    assert_eq!(admin.tenant_id, "t-1", "admin tenant defaults to the org's");
    assert_eq!(config.sync.state, Path::new("/etc/mdsync/state/mdsync.db"));
    assert_eq!(config.sync.entities, ["lead", "contact"]);
    assert_eq!(config.sync.filter_field.as_deref(), Some("new_synctomkto"));
    assert!(config.mapping["lead"].is_array());
    assert_eq!(
        config.sync.interval,
        std::time::Duration::from_secs(1),
        "Dataverse is polled every second unless configured"
    );
    let dv = config.dynamics.client_config();
    assert_eq!(dv.client_id, "sync-app");
    let admin_dv = config.dynamics.admin_client_config().expect("admin client");
    assert_eq!(admin_dv.client_secret.expose(), "admin-secret");
    let mk = config.marketo_client_config();
    assert_eq!(mk.daily_budget, 2000);
    let shown = format!("{config:?}");
    for secret in ["from-env", "admin-secret", "mkto-secret"] {
        assert!(!shown.contains(secret), "Debug leaks {secret}: {shown}");
    }
}

#[test]
fn unknown_keys_name_the_dotted_path_and_line() {
    let text = GOOD.replace(
        "client_id = \"admin-app\"",
        "client_id = \"admin-app\"\nclient_sercet = \"x\"",
    );
    let e = invalid(&text);
    assert_eq!(e.key(), Some("dynamics.admin.client_sercet"), "{e}");
    let shown = e.to_string();
    assert!(shown.starts_with("/etc/mdsync/mdsync.toml:"), "{shown}");
    assert!(shown.contains("unknown field `client_sercet`"), "{shown}");
    match e {
        ConfigError::Invalid { line, .. } => assert_eq!(line, Some(9)),
        other => panic!("{other}"),
    }
}

#[test]
fn missing_keys_and_wrong_types_name_the_key() {
    let e = invalid(&GOOD.replace("tenant_id = \"t-1\"\n", ""));
    assert_eq!(e.key(), Some("dynamics.tenant_id"), "{e}");
    assert!(e.to_string().contains("missing field `tenant_id`"), "{e}");
    let e = invalid(&GOOD.replace(
        "marketo_daily_budget = 2000",
        "marketo_daily_budget = \"lots\"",
    ));
    assert_eq!(e.key(), Some("sync.marketo_daily_budget"), "{e}");
    let e = invalid(&GOOD.replace(
        "entities = [\"lead\", \"contact\"]",
        "entities = [\"Lead\"]",
    ));
    assert_eq!(e.key(), Some("sync.entities"), "{e}");
}

#[test]
fn secrets_come_from_exactly_one_place() {
    let e = parse_with_env(Path::new("mdsync.toml"), GOOD, &no_env).expect_err("env var unset");
    assert_eq!(e.key(), Some("dynamics.client_secret_env"));
    assert!(
        e.to_string()
            .contains("MDSYNC_DYNAMICS_CLIENT_SECRET is not set"),
        "{e}"
    );
    let e = invalid(&GOOD.replace(
        "client_secret = \"mkto-secret\"",
        "client_secret = \"a\"\nclient_secret_env = \"B\"",
    ));
    assert_eq!(e.key(), Some("marketo.client_secret"));
    assert!(e.to_string().contains("not both"), "{e}");
    let e = invalid(&GOOD.replace("client_secret = \"admin-secret\"\n", ""));
    assert_eq!(e.key(), Some("dynamics.admin.client_secret"));
}

#[test]
fn urls_are_checked() {
    let e = invalid(&GOOD.replace(
        "https://contoso.crm.dynamics.com/",
        "https://contoso.crm.dynamics.com/api/data/v9.2/",
    ));
    assert_eq!(e.key(), Some("dynamics.url"));
    assert!(e.to_string().contains("org root"), "{e}");
    assert!(
        e.to_string()
            .starts_with("/etc/mdsync/mdsync.toml:3:1: key `dynamics.url`"),
        "value errors carry the key's line too: {e}"
    );
    let e = invalid(&GOOD.replace("https://123-ABC-456.mktorest.com", "123-ABC-456"));
    assert_eq!(e.key(), Some("marketo.url"));
}

#[test]
fn broken_toml_reports_line_and_column() {
    let e = invalid("[dynamics]\nurl = \"https://x\nclient_id = 1\n");
    match &e {
        ConfigError::Invalid { line, key, .. } => {
            assert_eq!(*line, Some(2), "{e}");
            assert!(key.is_empty());
        }
        other => panic!("{other}"),
    }
}

#[test]
fn unreadable_file_is_a_read_error() {
    let e = mdsync_config::load(Path::new("/nonexistent/mdsync.toml")).expect_err("missing file");
    assert!(matches!(e, ConfigError::Read { .. }), "{e}");
    assert!(e.to_string().contains("/nonexistent/mdsync.toml"), "{e}");
}

#[test]
fn rendered_files_load_back() {
    let values = InitValues {
        dynamics_url: "http://127.0.0.1:1234".into(),
        tenant_id: "tenant".into(),
        authority: Some("http://127.0.0.1:1234".into()),
        sync_client_id: "sync".into(),
        sync_client_secret: Secret::new("s\"1"),
        admin_client_id: "admin".into(),
        admin_client_secret: Secret::new("s2"),
        marketo_url: "http://127.0.0.1:5678".into(),
        marketo_client_id: "mk".into(),
        marketo_client_secret: Secret::new("s3"),
        state: "mdsync.db".into(),
    };
    let text = render(&values);
    let config =
        parse_with_env(Path::new("mdsync.toml"), &text, &no_env).expect("rendered file loads");
    assert_eq!(config.dynamics.authority, "http://127.0.0.1:1234");
    assert_eq!(config.dynamics.client_secret.expose(), "s\"1");
    assert_eq!(config.dynamics.admin.expect("admin").client_id, "admin");
    assert_eq!(config.marketo.client_secret.expose(), "s3");
}
