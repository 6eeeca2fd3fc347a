//! `mdsync sync --once [--dry-run]`, `mdsync run` and `mdsync push-person`: the engine driven from
//! `mdsync.toml`. `sync --once` exits 0 when the cycle completed (dead letters included) and non-zero
//! only when it could not run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use mdsync_engine::{CycleOptions, Engine, EngineSettings, PersonRef, Progress};
use mdsync_state::SqliteStateStore;
use mdsync_sync_core::mapping::{MappingConfig, Mappings};
use mdsync_sync_core::record::CrmEntity;
use parking_lot::Mutex;
use uuid::Uuid;

#[derive(Args, Debug)]
pub struct SyncArgs {
    /// Config file.
    #[arg(long, default_value = "mdsync.toml")]
    pub config: PathBuf,
    /// Run one cycle and exit (the only mode of `sync`; `mdsync run` is continuous).
    #[arg(long)]
    pub once: bool,
    /// Print the plan (per entity and direction: creates, updates, conflicts, skips); write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the cycle report as JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Rows per Dataverse change-tracking page (and per planning batch).
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=5000))]
    pub page_size: u32,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[arg(long, default_value = "mdsync.toml")]
    pub config: PathBuf,
    /// Pause between cycles in milliseconds (default: `[sync] interval_seconds`).
    #[arg(long, value_name = "MS")]
    pub poll_ms: Option<u64>,
    /// One JSON report per cycle on stdout instead of tables.
    #[arg(long)]
    pub json: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushAs {
    Lead,
    Contact,
}

#[derive(Args, Debug)]
pub struct PushPersonArgs {
    /// The Marketo person: an email or a Marketo lead id.
    pub person: String,
    /// Create it as a lead (default) or as a contact.
    #[arg(long = "as", value_enum, default_value = "lead")]
    pub as_entity: PushAs,
    /// Owner of the new record (a Dynamics `systemuserid`).
    #[arg(long)]
    pub owner: Option<Uuid>,
    #[arg(long, default_value = "mdsync.toml")]
    pub config: PathBuf,
    #[arg(long)]
    pub json: bool,
}

/// The config file and the engine settings it asks for.
pub fn load(path: &Path) -> anyhow::Result<(mdsync_config::Config, EngineSettings)> {
    let config = mdsync_config::load(path)?;
    let mut entities = Vec::new();
    for name in &config.sync.entities {
        entities.push(
            name.parse::<CrmEntity>()
                .with_context(|| format!("{}: [sync] entities", path.display()))?,
        );
    }
    let raw = serde_json::to_value(&config.mapping).context("reading [mapping]")?;
    let mapping: MappingConfig =
        serde_json::from_value(raw).with_context(|| format!("{}: [mapping]", path.display()))?;
    let mappings = Mappings::from_config(&mapping)
        .with_context(|| format!("{}: [mapping]", path.display()))?;
    let settings = EngineSettings {
        entities,
        mappings,
        filter_field: config.sync.filter_field.clone(),
        match_existing_by_email: config.sync.match_existing_by_email,
        poll_interval: config.sync.interval,
        marketo_daily_budget: config.sync.marketo_daily_budget,
        ..EngineSettings::default()
    };
    Ok((config, settings))
}

/// Opens the state store named by the config.
pub fn open_store(config: &mdsync_config::Config) -> anyhow::Result<SqliteStateStore> {
    SqliteStateStore::open(&config.sync.state)
        .with_context(|| format!("opening the state database {}", config.sync.state.display()))
}

/// The engine for a config file.
pub async fn engine(path: &Path) -> anyhow::Result<Engine> {
    engine_with(path, |_| {}).await
}

/// The engine for a config file, with command-line adjustments of its settings.
pub async fn engine_with(
    path: &Path,
    adjust: impl FnOnce(&mut EngineSettings),
) -> anyhow::Result<Engine> {
    let (config, mut settings) = load(path)?;
    adjust(&mut settings);
    let crm = mdsync_dataverse_client::Client::new(config.dynamics.client_config())
        .context("Dataverse client")?;
    let marketo = mdsync_marketo_client::Client::new(config.marketo_client_config())
        .context("Marketo client")?;
    if let Some(name) = &config.dynamics.sync_user {
        settings.crm_sync_user = Some(named_sync_user(&crm, name).await?);
    }
    let store = open_store(&config)?;
    Ok(Engine::new(crm, marketo, Box::new(store), settings))
}

/// The `systemuserid` of a named sync user (`[dynamics] sync_user`, its `domainname`).
async fn named_sync_user(
    crm: &mdsync_dataverse_client::Client,
    name: &str,
) -> anyhow::Result<Uuid> {
    let options = mdsync_dataverse_client::QueryOptions::new()
        .select(["systemuserid"])
        .filter(format!(
            "domainname eq {}",
            mdsync_dataverse_client::literal(&serde_json::Value::String(name.to_owned()))
        ));
    let row = crm
        .query_first("systemusers", &options)
        .await
        .context("looking up [dynamics] sync_user")?
        .with_context(|| {
            format!("no Dynamics user with domainname {name:?} ([dynamics] sync_user)")
        })?;
    row.get("systemuserid")
        .and_then(|v| v.as_str())
        .and_then(|s| Uuid::parse_str(s).ok())
        .context("systemuserid of [dynamics] sync_user")
}

/// Initial-load progress bars with rate and ETA; indicatif draws nothing when stderr is not a terminal.
struct Bars {
    multi: MultiProgress,
    bars: Mutex<Vec<(CrmEntity, ProgressBar)>>,
}

impl Bars {
    fn new() -> Bars {
        Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: Mutex::new(Vec::new()),
        }
    }

    fn bar(&self, entity: CrmEntity) -> Option<ProgressBar> {
        self.bars
            .lock()
            .iter()
            .find(|(e, _)| *e == entity)
            .map(|(_, b)| b.clone())
    }
}

impl Progress for Bars {
    fn start(&self, entity: CrmEntity, total: Option<u64>) {
        let bar = self.multi.add(match total {
            Some(n) => ProgressBar::new(n),
            None => ProgressBar::no_length(),
        });
        let style =
            ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} {per_sec} ETA {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(entity.logical_name());
        self.bars.lock().push((entity, bar));
    }

    fn advance(&self, entity: CrmEntity, rows: u64) {
        if let Some(bar) = self.bar(entity) {
            bar.inc(rows);
        }
    }

    fn finish(&self, entity: CrmEntity) {
        if let Some(bar) = self.bar(entity) {
            bar.finish();
        }
    }
}

pub async fn sync(args: SyncArgs) -> anyhow::Result<()> {
    if !args.once && !args.dry_run {
        anyhow::bail!(
            "`mdsync sync` runs one cycle: pass --once (or use `mdsync run` for continuous sync)"
        );
    }
    let page_size = args.page_size;
    let engine = engine_with(&args.config, |s| s.crm_page_size = page_size).await?;
    let progress: Option<Arc<dyn Progress>> = Some(Arc::new(Bars::new()));
    let report = engine
        .run_cycle(CycleOptions {
            dry_run: args.dry_run,
            skip_marketo: false,
            progress,
        })
        .await
        .context("the sync cycle could not complete")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
        for note in &report.notes {
            println!("note: {note}");
        }
        if report.dead_letters > 0 {
            println!(
                "{} record(s) failed: see `mdsync errors list`",
                report.dead_letters
            );
        }
    }
    Ok(())
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let mut engine_settings_override = None;
    if let Some(ms) = args.poll_ms {
        engine_settings_override = Some(Duration::from_millis(ms));
    }
    let (config, mut settings) = load(&args.config)?;
    if let Some(p) = engine_settings_override {
        settings.poll_interval = p;
    }
    let crm = mdsync_dataverse_client::Client::new(config.dynamics.client_config())
        .context("Dataverse client")?;
    let marketo = mdsync_marketo_client::Client::new(config.marketo_client_config())
        .context("Marketo client")?;
    if let Some(name) = &config.dynamics.sync_user {
        settings.crm_sync_user = Some(named_sync_user(&crm, name).await?);
    }
    let store = open_store(&config)?;
    tracing::info!(
        poll_s = settings.poll_interval.as_secs_f64(),
        marketo_poll_s = settings.marketo_poll_interval().as_secs_f64(),
        "Continuous sync started"
    );
    let engine = Engine::new(crm, marketo, Box::new(store), settings);
    let json = args.json;
    engine
        .run(shutdown_signal(), |result| match result {
            Ok(report) if json => {
                if let Ok(line) = serde_json::to_string(report) {
                    println!("{line}");
                }
            }
            Ok(report) => {
                if report.marketo_writes + report.crm_writes + report.dead_letters > 0 {
                    print!("{}", report.table());
                }
            }
            Err(e) => tracing::warn!(error = %e, "Cycle failed"),
        })
        .await?;
    tracing::info!("Continuous sync stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

pub async fn push_person(args: PushPersonArgs) -> anyhow::Result<()> {
    let engine = engine(&args.config).await?;
    let as_entity = match args.as_entity {
        PushAs::Lead => CrmEntity::Lead,
        PushAs::Contact => CrmEntity::Contact,
    };
    let outcome = engine
        .push_person(&PersonRef::parse(&args.person), as_entity, args.owner)
        .await?;
    if args.json {
        println!("{}", serde_json::to_string(&outcome)?);
    } else {
        match &outcome {
            mdsync_engine::PushOutcome::AlreadyInCrm {
                entity,
                crm_id,
                marketo_id,
            } => {
                println!(
                    "person {marketo_id} is already in Dynamics as {entity} {crm_id}: nothing to do"
                )
            }
            mdsync_engine::PushOutcome::Linked {
                entity,
                crm_id,
                marketo_id,
            } => {
                println!(
                    "person {marketo_id} linked to the existing {entity} {crm_id} (same email)"
                )
            }
            mdsync_engine::PushOutcome::Created {
                entity,
                crm_id,
                marketo_id,
            } => {
                println!("person {marketo_id} created in Dynamics as {entity} {crm_id}")
            }
            mdsync_engine::PushOutcome::Failed {
                marketo_id,
                code,
                message,
            } => {
                println!(
                    "person {marketo_id} could not be written ({code}: {message}); see `mdsync errors list`"
                )
            }
        }
    }
    if matches!(outcome, mdsync_engine::PushOutcome::Failed { .. }) {
        anyhow::bail!("push-person failed");
    }
    Ok(())
}
