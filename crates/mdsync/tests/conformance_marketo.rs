//! The real PyPI client `marketorestpython` (unmodified, `host` pointed at the emulator) against the
//! Marketo emulator.

mod common;

use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marketorestpython_passes_against_the_marketo_emulator() {
    let dir = common::workspace_root().join("conformance/marketo");
    let python = dir.join(".venv/bin/python");
    let installed = std::process::Command::new(&python)
        .args(["-c", "import marketorestpython"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        installed,
        "conformance/marketo/.venv with marketorestpython is missing: run \
         `python3 -m venv conformance/marketo/.venv && conformance/marketo/.venv/bin/pip install -r \
         conformance/marketo/requirements.txt` (scripts/test does this automatically)"
    );
    let running = mdsync_marketo_emulator::spawn(mdsync_marketo_emulator::Config::default())
        .await
        .expect("spawn the Marketo emulator");
    let description = json!({ "marketo": running.description() });
    common::run_conformance(
        &python,
        &dir,
        "conformance.py",
        &description,
        &[
            "token",
            "paging token",
            "create leads",
            "update leads",
            "get leads by filter with paging",
            "get lead by id",
            "describe",
            "lead changes",
            "deleted leads",
            "companies",
            "opportunities",
            "bulk lead export",
        ],
    )
    .await;
    running.shutdown().await.expect("clean shutdown");
}
