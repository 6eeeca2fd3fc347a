//! `mdsync`: the command-line entry point. Each subcommand returns its own exit code (see [`dispatch`]);
//! logs go to stderr (`-v`, `--log-format json`, `RUST_LOG`) so stdout stays machine-readable.

mod bench;
mod cli_config;
mod cli_errors;
mod cli_setup;
mod cli_status;
mod cli_sync;
mod cli_validate;
mod emulate;
mod http;
mod quickstart;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Parser, Debug)]
#[command(
    name = "mdsync",
    version,
    about = "Sync between Dynamics 365 (Dataverse) and Marketo Engage"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// More log detail on stderr (-v debug, -vv trace); `RUST_LOG` overrides.
    #[arg(short = 'v', long = "verbose", global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Log line format on stderr.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the Dataverse and Marketo emulators until SIGINT/SIGTERM.
    Emulate(emulate::EmulateArgs),
    /// The whole story on the embedded defaults in under a minute: emulators, seed, setup, validate,
    /// initial sync, edits both ways, echo, conflicts, filter, dead letter; exit 0 only if all held.
    Quickstart(quickstart::QuickstartArgs),
    /// Benchmarks (printed as a table and written as JSON).
    Bench {
        #[command(subcommand)]
        target: BenchTarget,
    },
    /// Write a config file (`config init --from-emulator ...`).
    Config(cli_config::ConfigArgs),
    /// Set up Dynamics and Marketo for the sync (sync user, sync filter, Marketo fields).
    Setup(cli_setup::SetupArgs),
    /// Check the whole setup; exit 0 all pass, 1 any fails, 2 could not run.
    Validate(cli_validate::ValidateArgs),
    /// One sync cycle (`--once`), or its plan (`--dry-run`); exit 0 when the cycle completed.
    Sync(cli_sync::SyncArgs),
    /// Continuous sync until SIGINT/SIGTERM.
    Run(cli_sync::RunArgs),
    /// Per-entity sync state, last cycles, backlog and dead letters.
    Status(cli_status::StatusArgs),
    /// Records that failed to sync: list, show, retry, export.
    Errors(cli_errors::ErrorsArgs),
    /// Create a Marketo person in Dynamics if missing ("Sync Person to Microsoft"); no-op if present.
    PushPerson(cli_sync::PushPersonArgs),
}

#[derive(Subcommand, Debug)]
enum BenchTarget {
    /// The emulators' throughput and memory with limits off.
    Emulator(bench::BenchEmulatorArgs),
    /// The sync: initial-load throughput, Marketo calls per 1000 records, peak RSS, edit latency.
    Sync(cli_sync::bench::BenchSyncArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs go to stderr so stdout stays machine-readable (`emulate --print-json`).
    let default_filter = match cli.verbose {
        0 => "warn,mdsync=info,mdsync_engine=info",
        1 => "info,mdsync=debug,mdsync_engine=debug",
        _ => "debug,mdsync=trace,mdsync_engine=trace",
    };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => logs.init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(dispatch(cli.command))
}

/// Runs a subcommand and returns its exit code. Setup and validate own theirs (0 ok, 1 a step or
/// check failed, 2 could not run); the others exit 0 on success and 1 with the error on stderr.
async fn dispatch(command: Command) -> ExitCode {
    match command {
        Command::Setup(args) => cli_setup::run(args).await,
        Command::Validate(args) => cli_validate::run(args).await,
        Command::Emulate(args) => exit_code(emulate::run(args).await),
        Command::Quickstart(args) => exit_code(quickstart::run(args).await),
        Command::Config(args) => exit_code(cli_config::run(args).await),
        Command::Sync(args) => exit_code(cli_sync::sync(args).await),
        Command::Run(args) => exit_code(cli_sync::run(args).await),
        Command::Status(args) => exit_code(cli_status::run(args).await),
        Command::Errors(args) => exit_code(cli_errors::run(args).await),
        Command::PushPerson(args) => exit_code(cli_sync::push_person(args).await),
        Command::Bench {
            target: BenchTarget::Emulator(args),
        } => exit_code(bench::run(args).await),
        Command::Bench {
            target: BenchTarget::Sync(args),
        } => exit_code(cli_sync::bench::run(args).await),
    }
}

fn exit_code(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
