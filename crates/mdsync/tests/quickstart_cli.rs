//! `mdsync quickstart` and `mdsync bench emulator` as real processes.

use std::process::Command;

#[test]
fn quickstart_runs_every_step_and_exits_zero() {
    let output = Command::new(env!("CARGO_BIN_EXE_mdsync"))
        .arg("quickstart")
        .output()
        .expect("run mdsync quickstart");
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "quickstart failed:\n{stdout}");
    assert!(!stdout.contains("[FAIL]"), "{stdout}");
    for step in [
        "call WhoAmI",
        "read every contact page by page",
        "sync three Marketo leads",
        "query the Marketo leads",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("[ok]") && l.contains(step)),
            "step {step:?} not reported ok:\n{stdout}"
        );
    }
    assert!(stdout.contains("steps passed"), "{stdout}");
}

#[test]
fn bench_emulator_measures_everything_on_a_small_store() {
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("bench.json");
    let output = Command::new(env!("CARGO_BIN_EXE_mdsync"))
        .args([
            "bench",
            "emulator",
            "--records",
            "300",
            "--upsert-batches",
            "2",
            "--sync-batches",
            "2",
            "--json",
            json_path.to_str().unwrap(),
        ])
        .output()
        .expect("run mdsync bench emulator");
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "bench failed:\n{stdout}");
    let document: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json_path).expect("bench JSON written")).unwrap();
    let metrics = document["metrics"].as_array().expect("metrics array");
    let missing: Vec<_> = metrics
        .iter()
        .filter(|m| m["value"].is_null())
        .map(|m| format!("{} {}: {}", m["emulator"], m["name"], m["not_measured"]))
        .collect();
    assert!(missing.is_empty(), "not measured:\n{}", missing.join("\n"));
    for (emulator, name) in [
        ("dataverse", "paged read (5000/page)"),
        ("dataverse", "UpsertMultiple (1000/call)"),
        ("dataverse", "delta read after 10,000 changes"),
        ("dataverse", "peak RSS"),
        ("marketo", "lead sync (300/call)"),
        ("marketo", "lead changes paging"),
        ("marketo", "bulk lead export (streamed)"),
        ("marketo", "peak RSS"),
    ] {
        assert!(
            metrics.iter().any(|m| m["emulator"] == emulator
                && m["name"] == name
                && m["value"].as_f64().is_some_and(|v| v > 0.0)),
            "{emulator} {name} missing or zero"
        );
    }
}
