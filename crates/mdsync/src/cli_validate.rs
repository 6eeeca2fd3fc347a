//! `mdsync validate [--json]`: every check as a table (or one JSON object).
//! Exit codes: 0 every check passed, 1 any failed, 2 could not run (e.g. unreadable config).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// Config file.
    #[arg(long, default_value = "mdsync.toml")]
    config: PathBuf,
    /// Print `{"ok":bool,"checks":[{"name","ok","found","fix"}]}` instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs every check; the exit code is 0 all passed, 1 any failed, 2 could not run.
pub async fn run(args: ValidateArgs) -> ExitCode {
    let config = match mdsync_config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let report = mdsync_setup::validate::validate(&config).await;
    if args.json {
        match serde_json::to_string(&report) {
            Ok(line) => println!("{line}"),
            Err(e) => {
                eprintln!("error: cannot encode the report: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        print!("{}", table(&report));
    }
    let _ = std::io::stdout().flush();
    ExitCode::from(if report.ok { 0 } else { 1 })
}

/// The human table: check, pass/FAIL, what was found, and the fix under each failure.
pub fn table(report: &mdsync_setup::validate::Report) -> String {
    use std::fmt::Write as _;
    let width = report
        .checks
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut out = String::new();
    let _ = writeln!(out, "{:<width$}  {:<4}  found / fix", "check", "ok");
    for check in &report.checks {
        let mark = if check.ok { "pass" } else { "FAIL" };
        let _ = writeln!(out, "{:<width$}  {mark:<4}  {}", check.name, check.found);
        if !check.ok {
            let _ = writeln!(out, "{:<width$}        fix: {}", "", check.fix);
        }
    }
    let failed = report.checks.iter().filter(|c| !c.ok).count();
    if failed == 0 {
        let _ = writeln!(out, "all {} checks passed", report.checks.len());
    } else {
        let _ = writeln!(out, "{failed} of {} checks failed", report.checks.len());
    }
    out
}
