//! Helpers for the mdsync process-level tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A running `mdsync` child process; killed on drop if still running.
pub struct Mdsync {
    pub child: Child,
    pub lines: mpsc::Receiver<String>,
}

impl Mdsync {
    pub fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mdsync"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn mdsync");
        let stdout: ChildStdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    pub fn next_line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(120))
            .expect("a stdout line from mdsync within 120 s")
    }

    /// Starts `mdsync emulate --print-json ...` and parses its first line.
    pub fn emulate_json(extra: &[&str]) -> (Self, Value) {
        let mut args = vec!["emulate", "--print-json"];
        args.extend_from_slice(extra);
        let process = Self::start(&args);
        let line = process.next_line();
        let json: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("first stdout line is not JSON ({e}): {line}"));
        (process, json)
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for exit (at most 60 s) and returns the exit code.
    pub fn wait_exit(mut self) -> Option<i32> {
        for _ in 0..600 {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("mdsync did not exit within 60 s");
    }
}

impl Drop for Mdsync {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs a conformance script and returns its per-step JSON lines, asserting the exit status is 0 and
/// every expected step reported ok.
pub async fn run_conformance(
    program: &std::path::Path,
    script_dir: &std::path::Path,
    script: &str,
    description: &Value,
    expected_steps: &[&str],
) {
    let output = tokio::process::Command::new(program)
        .arg(script)
        .current_dir(script_dir)
        .env("MDSYNC_EMULATOR_JSON", description.to_string())
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap_or_else(|e| panic!("running {} {script}: {e}", program.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("--- {script} stdout ---\n{stdout}--- {script} stderr ---\n{stderr}");
    let mut seen = Vec::new();
    let mut failed = Vec::new();
    for line in stdout.lines() {
        let Ok(step) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let name = step["step"].as_str().unwrap_or_default().to_owned();
        if step["ok"] != Value::Bool(true) {
            failed.push(format!("{name}: {}", step["error"]));
        }
        seen.push(name);
    }
    assert!(
        failed.is_empty(),
        "conformance steps failed:\n{}",
        failed.join("\n")
    );
    for expected in expected_steps {
        assert!(
            seen.iter().any(|s| s == expected),
            "step {expected:?} did not report (script crashed?); saw {seen:?}"
        );
    }
    assert!(
        output.status.success(),
        "{script} exited with {}",
        output.status
    );
}
