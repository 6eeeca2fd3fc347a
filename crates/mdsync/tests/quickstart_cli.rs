//! `mdsync quickstart` and `mdsync bench emulator` as real processes.

use std::process::Command;

#[test]
fn quickstart_tells_the_whole_story_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let workdir = dir.path().join("qs");
    let output = Command::new(env!("CARGO_BIN_EXE_mdsync"))
        .args(["quickstart", "--workdir"])
        .arg(&workdir)
        .env("RUST_LOG", "error")
        .output()
        .expect("run mdsync quickstart");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stdout}\n{stderr}");
    assert_eq!(
        output.status.code(),
        Some(0),
        "quickstart failed:\n{stdout}"
    );
    assert!(!stdout.contains("[FAIL]"), "{stdout}");
    // Not a terminal: no progress bar drawn.
    assert!(
        !stderr.contains("ETA"),
        "progress bar drawn without a TTY: {stderr}"
    );
    let ok = |step: &str| {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("[ok]") && l.contains(step)),
            "step {step:?} not reported ok:\n{stdout}"
        );
    };
    for step in [
        "start the Dataverse and Marketo emulators",
        "setup sync-user",
        "setup sync-filter",
        "setup marketo",
        "seed Dynamics",
        "with new_synctomkto = No",
        "persons only in Marketo",
        "validate (every check green)",
        "initial sync",
        "check the load on the Marketo side",
        "Marketo-only persons stayed out of Dynamics",
        "a salesperson edits a lead in Dynamics -> Marketo",
        "a marketer edits a person in Marketo -> Dynamics",
        "echo suppressed",
        "conflicts: both sides edit the same field",
        "filtered record skipped",
        "dead-letter list",
        "final summary",
    ] {
        ok(step);
    }
    // The key facts each step checked against the other side.
    for fact in [
        "all 12 checks passed",
        "2000 leads and 2000 contacts each have exactly one Marketo person",
        "10 leads and 10 contacts with new_synctomkto = No have none",
        "firstName is now \"Zed\"",
        "is now \"CFO\"",
        "dropped as an echo",
        "policy marketo_wins -> winner Marketo: both sides now read \"Marketo-Mara\"",
        "policy dynamics_wins -> winner Dynamics: both sides now read \"VP Sales (Dynamics)\"",
        "Marketo has no person with msftId",
        "Invalid email address 'not-an-email'",
        "1 dead letter(s), 2 conflict(s) logged",
    ] {
        assert!(stdout.contains(fact), "missing {fact:?}:\n{stdout}");
    }
    assert!(stdout.contains("all 21 steps passed"), "{stdout}");
    // --workdir keeps the config and the state DB.
    assert!(workdir.join("mdsync.toml").is_file());
    assert!(workdir.join("mdsync.db").is_file());
    // A second run refuses the used work dir (its state belongs to emulators that are gone).
    let again = Command::new(env!("CARGO_BIN_EXE_mdsync"))
        .args(["quickstart", "--workdir"])
        .arg(&workdir)
        .output()
        .expect("run mdsync quickstart again");
    assert_eq!(again.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already holds a state DB"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

#[test]
fn a_step_that_cannot_show_its_behaviour_fails_the_run_by_name() {
    // With no record marked "do not sync" the filter step has nothing to show: it must fail, be named,
    // and the emulators must still be stopped.
    let output = Command::new(env!("CARGO_BIN_EXE_mdsync"))
        .args([
            "quickstart",
            "--filtered",
            "0",
            "--leads",
            "300",
            "--contacts",
            "300",
            "--accounts",
            "20",
            "--opportunities",
            "20",
            "--marketo-only",
            "20",
        ])
        .env("RUST_LOG", "error")
        .output()
        .expect("run mdsync quickstart");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stdout}\n{stderr}");
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("[FAIL]") && l.contains("filtered record skipped")),
        "{stdout}"
    );
    assert!(
        stderr.contains("step 18 \"filtered record skipped"),
        "the error names the step: {stderr}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("[ok]") && l.contains("stop both emulators")),
        "{stdout}"
    );
    assert!(!stdout.contains("steps passed"), "{stdout}");
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

#[test]
fn global_log_flags_work_before_and_after_the_subcommand() {
    let output = Command::new(env!("CARGO_BIN_EXE_mdsync"))
        .args([
            "--log-format",
            "json",
            "quickstart",
            "-v",
            "--leads",
            "100",
            "--contacts",
            "100",
            "--accounts",
            "5",
            "--opportunities",
            "5",
            "--marketo-only",
            "5",
            "--filtered",
            "1",
        ])
        .env_remove("RUST_LOG")
        .output()
        .expect("run mdsync quickstart");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "-v logged nothing");
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(v["level"].is_string(), "{line}");
    }
    assert!(
        lines.iter().any(|l| l.contains("\"DEBUG\"")),
        "-v did not raise the level to debug"
    );
    // Validate keeps its own exit code with the global flags: 2 when it cannot run.
    let output = Command::new(env!("CARGO_BIN_EXE_mdsync"))
        .args(["validate", "-vv", "--log-format", "json", "--config"])
        .arg("/nonexistent/mdsync.toml")
        .output()
        .expect("run mdsync validate");
    assert_eq!(output.status.code(), Some(2));
}
