//! Conformance: the unmodified npm client `dynamics-web-api` (conformance/dataverse, installed by
//! `scripts/test` / `.ci/run`) drives a freshly spawned emulator over real HTTP.
use std::path::PathBuf;

use mdsync_dataverse_emulator::{Config, spawn};

#[tokio::test]
async fn dynamics_web_api_client_passes_every_step() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../conformance/dataverse");
    assert!(
        root.join("node_modules/dynamics-web-api/package.json")
            .exists(),
        "dynamics-web-api is not installed: run `npm ci --prefix conformance/dataverse` (scripts/test does)"
    );
    let running = spawn(Config {
        limits_enabled: false,
        ..Config::default()
    })
    .await
    .expect("spawn");
    let json = serde_json::json!({ "dataverse": running.description() }).to_string();
    let out = tokio::process::Command::new("node")
        .arg("conformance.mjs")
        .current_dir(&root)
        .env("MDSYNC_EMULATOR_JSON", json)
        .output()
        .await
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let failed: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("\"ok\":false"))
        .collect();
    let steps = stdout.lines().filter(|l| l.contains("\"ok\":true")).count();
    assert!(
        out.status.success() && failed.is_empty(),
        "conformance failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(steps >= 12, "only {steps} steps ran:\n{stdout}");
    running.shutdown().await.expect("shutdown");
}
