//! `mdsync config init`, `mdsync setup …` and `mdsync validate` as real processes against in-process emulators:
//! exit codes 0/1/2, `--json`, step lines.

use std::path::Path;
use std::process::Output;

use serde_json::{Value, json};

async fn mdsync(args: Vec<String>) -> Output {
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

fn args(list: &[&str], config: &Path) -> Vec<String> {
    let mut v: Vec<String> = list.iter().map(|s| s.to_string()).collect();
    v.push("--config".into());
    v.push(config.display().to_string());
    v
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

async fn emulators() -> (
    mdsync_dataverse_emulator::Running,
    mdsync_marketo_emulator::Running,
) {
    let dv = mdsync_dataverse_emulator::spawn(Default::default())
        .await
        .expect("dataverse");
    let mk = mdsync_marketo_emulator::spawn(Default::default())
        .await
        .expect("marketo");
    (dv, mk)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_that_cannot_run_exits_2_naming_the_file_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope.toml");
    let out = mdsync(args(&["validate"], &missing)).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("nope.toml"), "{}", stderr(&out));

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[dynamics]\nurl = \"https://x.crm.dynamics.com\"\ntenant_id = \"t\"\nclient_id = \"c\"\nclient_secret = \"s\"\ncolour = 1\n[marketo]\nurl = \"https://m\"\nclient_id = \"c\"\nclient_secret = \"s\"\n").expect("write");
    let out = mdsync(args(&["validate", "--json"], &bad)).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("bad.toml:6:1") && stderr(&out).contains("dynamics.colour"),
        "{}",
        stderr(&out)
    );
    let out = mdsync(args(&["setup", "sync-user"], &bad)).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_from_print_json_then_setup_then_validate_passes() {
    let (dv, mk) = emulators().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let described = dir.path().join("emulators.json");
    let line = json!({"dataverse": dv.description(), "marketo": mk.description()}).to_string();
    std::fs::write(&described, line).expect("write description");
    let config = dir.path().join("mdsync.toml");
    let mut init = args(&["config", "init", "--from-emulator-json"], &config);
    init.insert(3, described.display().to_string());
    let out = mdsync(init.clone()).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&config)
            .expect("config")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the config holds secrets: owner-only");
    }
    let out = mdsync(init).await;
    assert_ne!(
        out.status.code(),
        Some(0),
        "an existing file is not replaced without --force"
    );

    let out = mdsync(args(&["validate", "--json"], &config)).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report: Value = serde_json::from_str(stdout(&out).trim()).expect("one JSON object");
    assert_eq!(report["ok"], false);
    let failed: Vec<&str> = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["ok"] == false)
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert!(
        failed.contains(&"sync_user_role") && failed.contains(&"marketo_fields"),
        "{failed:?}"
    );
    for check in report["checks"].as_array().expect("checks") {
        for key in ["name", "ok", "found", "fix"] {
            assert!(check.get(key).is_some(), "{check}");
        }
    }

    let out = mdsync(args(&["setup", "sync-user", "--dry-run"], &config)).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).matches("[would do]").count(),
        4,
        "{}",
        stdout(&out)
    );

    let out = mdsync(args(&["setup", "sync-user"], &config)).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(
        text.contains("[done] sync user: created the application user"),
        "{text}"
    );
    assert!(text.contains("[done] publish all customizations"), "{text}");
    let out = mdsync(args(&["setup", "marketo"], &config)).await;
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let out = mdsync(args(
        &["setup", "sync-filter", "--entities", "lead,contact"],
        &config,
    ))
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert_eq!(
        stdout(&out).matches("[done] new_synctomkto on").count(),
        2,
        "{}",
        stdout(&out)
    );

    let out = mdsync(args(&["validate"], &config)).await;
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("all 12 checks passed"),
        "{}",
        stdout(&out)
    );
    let out = mdsync(args(&["validate", "--json"], &config)).await;
    assert_eq!(out.status.code(), Some(0));
    let report: Value = serde_json::from_str(stdout(&out).trim()).expect("json");
    assert_eq!(report["ok"], true);

    let out = mdsync(args(&["setup", "sync-user"], &config)).await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        stdout(&out).matches("[already done]").count(),
        4,
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("nothing to do"), "{}", stdout(&out));

    // A refused human user exits 1 and explains why.
    let out = mdsync(args(
        &[
            "setup",
            "sync-user",
            "--user-name",
            "sam.seller@mdsync.onmicrosoft.com",
            "--email",
            "sam.seller@mdsync.onmicrosoft.com",
        ],
        &config,
    ))
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("dedicated sync user"),
        "{}",
        stdout(&out)
    );
    dv.shutdown().await.expect("shutdown");
    mk.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_from_emulator_urls_registers_working_credentials() {
    let (dv, mk) = emulators().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("mdsync.toml");
    let mut init = args(&["config", "init", "--from-emulator"], &config);
    init.insert(3, dv.description().url.clone());
    init.insert(4, mk.description().url.clone());
    let out = mdsync(init).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = std::fs::read_to_string(&config).expect("config written");
    assert!(
        !text.contains(&dv.description().sync_app_client_id),
        "fresh credentials, not the built-in ones"
    );
    // Admin credentials may come from flags instead of [dynamics.admin] (secret through the environment).
    let start = text.find("[dynamics.admin]").expect("admin section");
    let end = text.find("[marketo]").expect("marketo section");
    let admin_section = &text[start..end];
    let value = |key: &str| {
        admin_section
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key} = \"")))
            .and_then(|rest| rest.split('"').next())
            .expect("key in admin section")
            .to_string()
    };
    let (admin_id, admin_secret) = (value("client_id"), value("client_secret"));
    std::fs::write(&config, format!("{}{}", &text[..start], &text[end..]))
        .expect("drop admin section");
    let out = mdsync(args(&["setup", "sync-user"], &config)).await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "no admin credentials: {}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("[dynamics.admin]"),
        "{}",
        stderr(&out)
    );
    let mut with_flags = args(&["setup", "sync-user"], &config);
    with_flags.extend([
        "--admin-client-id".into(),
        admin_id,
        "--admin-client-secret-env".into(),
        "MDSYNC_TEST_ADMIN_SECRET".into(),
    ]);
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_mdsync"))
            .args(&with_flags)
            .env("MDSYNC_TEST_ADMIN_SECRET", admin_secret)
            .output()
            .expect("run mdsync")
    })
    .await
    .expect("join");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let out = mdsync(args(&["setup", "marketo"], &config)).await;
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let out = mdsync(args(&["validate"], &config)).await;
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}
