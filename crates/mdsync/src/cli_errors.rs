//! `mdsync errors list [--json] | show ID | retry [ID…|--all] | export [--format csv|json|jsonl]`: the
//! dead-letter list. Listing and exporting read the state database only.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use mdsync_state::{DeadLetterQuery, ExportFormat, StateStore};
use serde_json::json;

#[derive(Args, Debug)]
pub struct ErrorsArgs {
    #[arg(long, global = true, default_value = "mdsync.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: ErrorsCommand,
}

#[derive(Subcommand, Debug)]
enum ErrorsCommand {
    /// Unresolved dead letters (oldest first).
    List {
        /// An array of objects: id, entity, crm_id, marketo_id, operation, direction, code, message, …
        #[arg(long)]
        json: bool,
        /// Include resolved ones.
        #[arg(long)]
        all: bool,
    },
    /// One dead letter with its payload.
    Show { id: i64 },
    /// Retry dead letters from current data; resolved ones leave the list.
    Retry {
        ids: Vec<i64>,
        /// Every unresolved dead letter.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Write every dead letter to stdout.
    Export {
        #[arg(long, value_enum, default_value = "json")]
        format: Format,
        /// Include resolved ones.
        #[arg(long)]
        all: bool,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum Format {
    Csv,
    Json,
    Jsonl,
}

pub async fn run(args: ErrorsArgs) -> anyhow::Result<()> {
    match args.command {
        ErrorsCommand::List { json, all } => {
            let (config, _) = crate::cli_sync::load(&args.config)?;
            let store = crate::cli_sync::open_store(&config)?;
            let mut stdout = std::io::stdout().lock();
            if json {
                store.export_dead_letters(ExportFormat::Json, all, &mut stdout)?;
                writeln!(stdout)?;
                return Ok(());
            }
            let mut after_id = 0;
            let mut n = 0;
            writeln!(
                stdout,
                "{:>5} {:<12} {:<12} {:<38} {:>10} {:<10} {:<10} message",
                "id", "entity", "direction", "crm id", "marketo id", "operation", "code"
            )?;
            loop {
                let page = store.dead_letters(&DeadLetterQuery {
                    include_resolved: all,
                    after_id,
                    limit: 500,
                    ..DeadLetterQuery::default()
                })?;
                let Some(last) = page.last() else { break };
                after_id = last.id;
                for d in page {
                    n += 1;
                    writeln!(
                        stdout,
                        "{:>5} {:<12} {:<12} {:<38} {:>10} {:<10} {:<10} {}",
                        d.id,
                        d.entity.to_string(),
                        d.direction.to_string(),
                        d.crm_id.map(|i| i.to_string()).unwrap_or_default(),
                        d.marketo_id.map(|i| i.to_string()).unwrap_or_default(),
                        d.operation,
                        d.code,
                        d.message
                    )?;
                }
            }
            writeln!(stdout, "{n} dead letter(s)")?;
            Ok(())
        }
        ErrorsCommand::Show { id } => {
            let (config, _) = crate::cli_sync::load(&args.config)?;
            let store = crate::cli_sync::open_store(&config)?;
            let dl = store
                .dead_letter(id)?
                .with_context(|| format!("no dead letter {id}"))?;
            println!("{}", serde_json::to_string_pretty(&dl)?);
            Ok(())
        }
        ErrorsCommand::Retry { ids, all, json } => {
            if ids.is_empty() && !all {
                anyhow::bail!("name dead-letter ids or pass --all");
            }
            let engine = crate::cli_sync::engine(&args.config).await?;
            let report = engine
                .retry_dead_letters(if all { None } else { Some(ids) })
                .await?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!(
                    "retried {}: {} resolved, {} still failing{}",
                    report.attempted,
                    report.resolved,
                    report.still_failing,
                    if report.not_found.is_empty() {
                        String::new()
                    } else {
                        format!(", not found or already resolved: {:?}", report.not_found)
                    }
                );
            }
            let _ = json!(null);
            Ok(())
        }
        ErrorsCommand::Export { format, all } => {
            let (config, _) = crate::cli_sync::load(&args.config)?;
            let store = crate::cli_sync::open_store(&config)?;
            let mut stdout = std::io::stdout().lock();
            let format = match format {
                Format::Csv => ExportFormat::Csv,
                Format::Json => ExportFormat::Json,
                Format::Jsonl => ExportFormat::Jsonl,
            };
            store.export_dead_letters(format, all, &mut stdout)?;
            if matches!(format, ExportFormat::Json) {
                writeln!(stdout)?;
            }
            Ok(())
        }
    }
}
