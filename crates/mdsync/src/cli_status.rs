//! `mdsync status [--json]`: per-entity phase and links, backlog, last cycles and dead letters, read from
//! the state database (no service call; no secret is ever printed).

use std::path::PathBuf;

use clap::Args;
use mdsync_engine::Status;

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[arg(long, default_value = "mdsync.toml")]
    config: PathBuf,
    #[arg(long)]
    json: bool,
}

pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let (config, settings) = crate::cli_sync::load(&args.config)?;
    let store = crate::cli_sync::open_store(&config)?;
    let status = Status::read(&store, &settings.entities)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(());
    }
    println!(
        "{:<12} {:<14} {:>8} {:>10}  cursor advanced",
        "entity", "phase", "pages", "linked"
    );
    for e in &status.entities {
        println!(
            "{:<12} {:<14} {:>8} {:>10}  {}",
            e.entity.to_string(),
            e.phase,
            e.pages_loaded.map(|p| p.to_string()).unwrap_or_default(),
            e.linked,
            e.cursor_updated_at
                .map(|t| t.to_rfc3339())
                .unwrap_or_else(|| "-".into())
        );
    }
    println!(
        "Marketo changes read up to: {}",
        status
            .marketo_changes_at
            .map(|t| t.to_rfc3339())
            .unwrap_or_else(|| "-".into())
    );
    for b in &status.backlog {
        println!(
            "backlog {} {}: {} inserts, {} updates pending",
            b.entity, b.direction, b.pending_inserts, b.pending_updates
        );
    }
    match status.last_cycles.first() {
        Some(c) => println!(
            "last cycle: #{} {} {} at {}{}",
            c.id,
            c.mode,
            c.status.as_str(),
            c.started_at.to_rfc3339(),
            c.error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        ),
        None => println!("last cycle: none yet"),
    }
    println!(
        "dead letters: {} unresolved (`mdsync errors list`); conflicts logged: {}",
        status.dead_letters, status.conflicts_logged
    );
    Ok(())
}
