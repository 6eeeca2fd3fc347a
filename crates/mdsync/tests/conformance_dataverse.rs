//! The real npm client `dynamics-web-api` (unmodified) against the Dataverse emulator.

mod common;

use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamics_web_api_passes_against_the_dataverse_emulator() {
    let dir = common::workspace_root().join("conformance/dataverse");
    assert!(
        dir.join("node_modules/dynamics-web-api/package.json")
            .is_file(),
        "conformance/dataverse/node_modules is missing: run `npm ci --prefix conformance/dataverse` \
         (scripts/test does this automatically)"
    );
    let running = mdsync_dataverse_emulator::spawn(mdsync_dataverse_emulator::Config::default())
        .await
        .expect("spawn the Dataverse emulator");
    let description = json!({ "dataverse": running.description() });
    common::run_conformance(
        std::path::Path::new("node"),
        &dir,
        "conformance.mjs",
        &description,
        &[
            "token",
            "callFunction WhoAmI",
            "create",
            "retrieve",
            "retrieveMultiple with maxPageSize",
            "retrieveAll",
            "update",
            "upsert with ifnonematch",
            "delete",
            "associate a role",
            "executeBatch with a change set",
            "change tracking via the delta link",
        ],
    )
    .await;
    running.shutdown().await.expect("clean shutdown");
}
