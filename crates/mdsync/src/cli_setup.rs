//! `mdsync setup sync-user | sync-filter | marketo`: thin wrappers printing each step as it happens.
//! Exit codes: 0 every step done or already done, 1 a step failed or was refused, 2 could not run.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use mdsync_setup::{Event, Outcome, SyncUserIdentity, SyncUserOptions};

#[derive(Args, Debug)]
pub struct SetupArgs {
    /// Config file.
    #[arg(long, global = true, default_value = "mdsync.toml")]
    config: PathBuf,
    /// Administrator app client id, instead of `[dynamics.admin] client_id`.
    #[arg(long, global = true, requires = "admin_client_secret_env")]
    admin_client_id: Option<String>,
    /// Environment variable holding that app's client secret (never pass a secret on the command line).
    #[arg(long, global = true, requires = "admin_client_id")]
    admin_client_secret_env: Option<String>,
    #[command(subcommand)]
    command: SetupCommand,
}

#[derive(Subcommand, Debug)]
enum SetupCommand {
    /// Create the dedicated sync user, give it the Marketo Sync User role, set it as Marketo User, publish.
    SyncUser(SyncUserArgs),
    /// Create the Boolean `new_synctomkto` column on the chosen tables.
    SyncFilter(SyncFilterArgs),
    /// Create mdsync's custom Marketo lead fields.
    Marketo(DryRun),
}

#[derive(Args, Debug)]
struct SyncUserArgs {
    /// Print the plan; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Accept an existing person's account as the sync user.
    #[arg(long)]
    force: bool,
    /// Solution >= 4.0.0.14: remove the sync role from every other user.
    #[arg(long)]
    revoke_others: bool,
    /// Solution < 4.0.0.14: give the sync role to every enabled user.
    #[arg(long)]
    assign_all: bool,
    /// A named sync user (sign-in name) instead of the sync app's application user.
    #[arg(long, requires = "email")]
    user_name: Option<String>,
    /// The named sync user's email.
    #[arg(long, requires = "user_name")]
    email: Option<String>,
}

#[derive(Args, Debug)]
struct SyncFilterArgs {
    /// Tables (logical names), comma-separated; default: `[sync] entities`.
    #[arg(long, value_delimiter = ',')]
    entities: Vec<String>,
    #[arg(long)]
    dry_run: bool,
}

#[derive(Args, Debug)]
struct DryRun {
    #[arg(long)]
    dry_run: bool,
}

fn print_event(event: &Event) {
    match event {
        Event::Step(step) => println!("{step}"),
        Event::Note(note) => println!("  note: {note}"),
    }
    let _ = std::io::stdout().flush();
}

/// The exit code of a finished setup run (0 done or planned, 1 a step failed or was refused).
fn finish(outcome: &Outcome) -> ExitCode {
    let planned = outcome
        .steps
        .iter()
        .filter(|s| matches!(s.status, mdsync_setup::StepStatus::WouldDo(_)))
        .count();
    let code = if !outcome.ok() {
        println!("setup incomplete: fix the failed step and re-run (completed steps are kept)");
        1
    } else if planned > 0 {
        println!("dry run: {planned} step(s) would change the org; run without --dry-run to apply");
        0
    } else if outcome.all_already_done() {
        println!("nothing to do: every step was already done");
        0
    } else {
        println!("ok");
        0
    };
    let _ = std::io::stdout().flush();
    ExitCode::from(code)
}

/// Runs a setup subcommand; exit 2 when it could not run (bad config, missing admin credentials).
pub async fn run(args: SetupArgs) -> ExitCode {
    match outcome(args).await {
        Ok(outcome) => finish(&outcome),
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

async fn outcome(args: SetupArgs) -> Result<Outcome, String> {
    let cannot_run = |e: &dyn std::fmt::Display| e.to_string();
    let mut config = mdsync_config::load(&args.config).map_err(|e| cannot_run(&e))?;
    if let (Some(client_id), Some(var)) = (args.admin_client_id, args.admin_client_secret_env) {
        let secret = std::env::var(&var)
            .ok()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                format!("--admin-client-secret-env: environment variable {var} is not set")
            })?;
        let tenant_id = config.dynamics.tenant_id.clone();
        config.dynamics.admin = Some(mdsync_config::AdminConfig {
            client_id,
            client_secret: mdsync_config::Secret::new(secret),
            tenant_id,
        });
    }
    let mut sink = print_event;
    let outcome = match args.command {
        SetupCommand::SyncUser(a) => {
            let admin_config = config
                .dynamics
                .admin_client_config()
                .ok_or_else(|| cannot_run(&mdsync_setup::SetupError::NoAdmin))?;
            let admin =
                mdsync_dataverse_client::Client::new(admin_config).map_err(|e| cannot_run(&e))?;
            let identity = match (a.user_name, a.email) {
                (Some(user_name), Some(email)) => SyncUserIdentity::Named { user_name, email },
                _ => SyncUserIdentity::Application {
                    client_id: config.dynamics.client_id.clone(),
                },
            };
            let mut marker = config.sync.state.clone().into_os_string();
            marker.push(".publish-pending");
            let options = SyncUserOptions {
                dry_run: a.dry_run,
                force: a.force,
                revoke_others: a.revoke_others,
                assign_all: a.assign_all,
                publish_marker: Some(marker.into()),
            };
            if a.dry_run {
                println!("plan (dry run, nothing is changed):");
            }
            mdsync_setup::sync_user(&admin, &identity, &options, &mut sink)
                .await
                .map_err(|e| cannot_run(&e))?
        }
        SetupCommand::SyncFilter(a) => {
            let admin_config = config
                .dynamics
                .admin_client_config()
                .ok_or_else(|| cannot_run(&mdsync_setup::SetupError::NoAdmin))?;
            let admin =
                mdsync_dataverse_client::Client::new(admin_config).map_err(|e| cannot_run(&e))?;
            let entities = if a.entities.is_empty() {
                config.sync.entities.clone()
            } else {
                a.entities
            };
            let column = config
                .sync
                .filter_field
                .clone()
                .unwrap_or_else(|| mdsync_config::DEFAULT_FILTER_FIELD.into());
            mdsync_setup::sync_filter::sync_filter(&admin, &entities, &column, a.dry_run, &mut sink)
                .await
        }
        SetupCommand::Marketo(a) => {
            let client = mdsync_marketo_client::Client::new(config.marketo_client_config())
                .map_err(|e| cannot_run(&e))?;
            mdsync_setup::marketo_fields::marketo_fields(&client, a.dry_run, &mut sink).await
        }
    };
    Ok(outcome)
}
