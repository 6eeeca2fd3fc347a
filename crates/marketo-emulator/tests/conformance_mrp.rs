//! Conformance: the unmodified PyPI client `marketorestpython` (conformance/marketo/conformance.py, run
//! from the venv that `scripts/test` creates) drives an in-process emulator with its real limits on.

use std::path::PathBuf;
use std::process::Stdio;

use mdsync_marketo_emulator::{Config, spawn};

#[tokio::test]
async fn marketorestpython_passes_every_conformance_step() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../conformance/marketo");
    let python = root.join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/test (it creates the venv with marketorestpython)",
        python.display()
    );
    let running = spawn(Config::default()).await.expect("spawn");
    let description = serde_json::json!({ "marketo": running.description() });
    let output = tokio::process::Command::new(&python)
        .arg(root.join("conformance.py"))
        .env("MDSYNC_EMULATOR_JSON", description.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .expect("run conformance.py");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let steps: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let failed: Vec<&serde_json::Value> = steps.iter().filter(|s| s["ok"] != true).collect();
    assert!(
        output.status.success() && failed.is_empty() && steps.len() >= 12,
        "conformance failed ({} steps, failures {failed:#?})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        steps.len()
    );
    running.shutdown().await.expect("shutdown");
}
