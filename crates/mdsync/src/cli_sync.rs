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

/// Keeps the allocator's footprint close to the live data. glibc gives every thread that allocates its
/// own heap arena (up to 8 per core); the engine's pages move between the runtime's workers and blocking
/// threads, so freed memory sat in arenas other threads never reuse and the peak RSS grew with the thread
/// count, not the page size. Two arenas keep it bounded by
/// the pages in flight (the same effect as `MALLOC_ARENA_MAX=2`).
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_MMAP_THRESHOLD: i32 = -3;
        const M_ARENA_MAX: i32 = -8;
        unsafe extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        // SAFETY: mallopt only tunes the allocator; these parameters are valid at any time. A fixed mmap
        // threshold also stops glibc from raising it (up to 32 MiB) each time a large page buffer is
        // freed, which kept those buffers in the heap instead of returning them.
        unsafe {
            mallopt(M_ARENA_MAX, 2);
            mallopt(M_MMAP_THRESHOLD, 256 * 1024);
            mallopt(M_TRIM_THRESHOLD, 4 * 1024 * 1024);
        }
    }
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
    limit_malloc_arenas();
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
    limit_malloc_arenas();
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

/// `mdsync bench sync`: initial-load throughput, Marketo calls per 1000 records, peak RSS, and the
/// propagation latency of single edits in continuous mode, against emulators with limits off.
pub mod bench {
    use std::path::PathBuf;
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    use anyhow::{Context, bail};
    use clap::Args;
    use mdsync_engine::{CycleOptions, Engine};
    use serde::Serialize;
    use serde_json::{Value, json};
    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::process::{Child, Command};

    #[derive(Args, Debug)]
    pub struct BenchSyncArgs {
        /// CRM leads to load; repeat to compare sizes (e.g. --records 100000 --records 1000000).
        #[arg(long, default_values_t = [100_000u64])]
        pub records: Vec<u64>,
        /// Single edits timed per direction in continuous mode.
        #[arg(long, default_value_t = 20)]
        pub samples: usize,
        /// Dataverse poll interval of continuous mode, in ms (the engine default is 1000).
        #[arg(long, default_value_t = 1000)]
        pub poll_ms: u64,
        /// Marketo calls per day mdsync may spend (sets the Marketo poll interval).
        #[arg(long, default_value_t = 50_000)]
        pub marketo_daily_budget: u64,
        /// Initial-load pages written while the next is planned (engine default: 1).
        #[arg(long)]
        pub pipeline_depth: Option<usize>,
        /// Marketo write calls in flight per batch (engine default: 5).
        #[arg(long)]
        pub marketo_concurrency: Option<usize>,
        /// Where to write the JSON results.
        #[arg(long, default_value = "bench-results/sync.json")]
        pub json: PathBuf,
    }

    #[derive(Serialize, Debug, Default)]
    struct Run {
        records: u64,
        load_seconds: f64,
        records_per_second: f64,
        marketo_writes: u64,
        marketo_calls: u64,
        marketo_calls_per_1000: f64,
        peak_rss_mb: f64,
        d2m_p50_ms: Option<f64>,
        d2m_p99_ms: Option<f64>,
        m2d_p50_ms: Option<f64>,
        m2d_p99_ms: Option<f64>,
        marketo_poll_interval_s: f64,
        poll_interval_s: f64,
        /// Where the load's time went (ms per phase).
        load_timings: Option<mdsync_engine::Timings>,
        /// Cycles needed afterwards to read back the load's own New Lead activities (echoes).
        drain_cycles: u64,
        drain_seconds: f64,
        notes: Vec<String>,
    }

    fn peak_rss_mb() -> f64 {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmHWM:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
            .map(|kb| kb / 1024.0)
            .unwrap_or(0.0)
    }

    fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
        if sorted.is_empty() {
            return None;
        }
        let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
        sorted.get(rank.min(sorted.len() - 1)).copied()
    }

    struct Emulators {
        child: Child,
        json: Value,
        dir: PathBuf,
    }

    impl Drop for Emulators {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    async fn emulators() -> anyhow::Result<Emulators> {
        let exe = std::env::current_exe().context("locating the mdsync executable")?;
        let dir = std::env::temp_dir().join(format!("mdsync-bench-sync-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).context("temp dir")?;
        let mut child = Command::new(exe)
            .args(["emulate", "--no-limits", "--print-json", "--state"])
            .arg(dir.join("emulators"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting the emulators")?;
        let stdout = child.stdout.take().context("emulator stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .context("the emulators did not start within 60 s")??
            .context("the emulators exited")?;
        let json: Value = serde_json::from_str(&line).context("emulator description")?;
        Ok(Emulators { child, json, dir })
    }

    async fn mdsync(args: &[&str]) -> anyhow::Result<()> {
        let exe = std::env::current_exe().context("locating the mdsync executable")?;
        let out = Command::new(exe)
            .args(args)
            .env("RUST_LOG", "error")
            .output()
            .await?;
        if !out.status.success() {
            bail!(
                "mdsync {args:?} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    async fn post(http: &reqwest::Client, url: String, body: Value) -> anyhow::Result<Value> {
        let r = http.post(&url).json(&body).send().await?;
        let status = r.status();
        let text = r.text().await?;
        if !status.is_success() {
            bail!("{url}: {status} {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn one(args: &BenchSyncArgs, records: u64) -> anyhow::Result<Run> {
        let mut emu = emulators().await?;
        let dv_url = emu.json["dataverse"]["url"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let api_url = emu.json["dataverse"]["api_url"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let mk_url = emu.json["marketo"]["url"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let described = emu.dir.join("emulators.json");
        std::fs::write(&described, emu.json.to_string())?;
        let config = emu.dir.join("mdsync.toml");
        let state = emu.dir.join("state.sqlite3");
        let config_s = config.display().to_string();
        mdsync(&[
            "config",
            "init",
            "--config",
            &config_s,
            "--from-emulator-json",
            &described.display().to_string(),
            "--state",
            &state.display().to_string(),
        ])
        .await?;
        mdsync(&["setup", "sync-user", "--config", &config_s]).await?;
        mdsync(&["setup", "marketo", "--config", &config_s]).await?;
        let http = reqwest::Client::new();
        post(
            &http,
            format!("{dv_url}/_emulator/seed"),
            json!({"seed": 1, "leads": records}),
        )
        .await?;

        // Limits off on our side too: the emulators have none, the point is the engine's own speed.
        let (cfg, mut settings) = super::load(&config)?;
        settings.entities = vec![mdsync_sync_core::record::CrmEntity::Lead];
        settings.poll_interval = Duration::from_millis(args.poll_ms);
        settings.marketo_daily_budget = args.marketo_daily_budget;
        if let Some(depth) = args.pipeline_depth {
            settings.pipeline_depth = depth;
        }
        if let Some(n) = args.marketo_concurrency {
            settings.marketo_concurrency = n;
        }
        let crm = mdsync_dataverse_client::Client::new(cfg.dynamics.client_config())?;
        let mut mk_config = cfg.marketo_client_config();
        mk_config.rate_limit = 1_000_000;
        mk_config.max_concurrency = 10;
        mk_config.daily_budget = 100_000_000;
        let marketo = mdsync_marketo_client::Client::new(mk_config)?;
        let store = super::open_store(&cfg)?;
        let engine = Engine::new(crm, marketo, Box::new(store), settings.clone());

        let started = Instant::now();
        let report = engine.run_cycle(CycleOptions::default()).await?;
        let load = started.elapsed().as_secs_f64();
        let mut run = Run {
            records,
            load_seconds: load,
            records_per_second: report.marketo_writes as f64 / load.max(1e-9),
            marketo_writes: report.marketo_writes,
            marketo_calls: report.marketo_calls,
            marketo_calls_per_1000: report.marketo_calls as f64 * 1000.0
                / (report.marketo_writes.max(1) as f64),
            peak_rss_mb: peak_rss_mb(),
            marketo_poll_interval_s: settings.marketo_poll_interval().as_secs_f64(),
            poll_interval_s: settings.poll_interval.as_secs_f64(),
            ..Run::default()
        };
        if report.dead_letters > 0 {
            run.notes
                .push(format!("{} dead letters in the load", report.dead_letters));
        }
        run.load_timings = Some(report.timings.clone());
        // Read back the load's own activities (echoes) so the latency runs start from a quiet state.
        let drain = Instant::now();
        loop {
            let r = engine.run_cycle(CycleOptions::default()).await?;
            run.drain_cycles += 1;
            if !r.marketo_backlog || run.drain_cycles > 10_000 {
                break;
            }
        }
        run.drain_seconds = drain.elapsed().as_secs_f64();
        if args.samples > 0 {
            latency(
                args, &engine, &http, &api_url, &dv_url, &mk_url, &emu.json, &mut run,
            )
            .await?;
        }
        let _ = emu.child.start_kill();
        Ok(run)
    }

    #[allow(clippy::too_many_arguments)]
    async fn latency(
        args: &BenchSyncArgs,
        engine: &Engine,
        http: &reqwest::Client,
        api_url: &str,
        dv_url: &str,
        mk_url: &str,
        desc: &Value,
        run: &mut Run,
    ) -> anyhow::Result<()> {
        let token = post(
            http,
            format!("{dv_url}/_emulator/tokens"),
            json!({"systemuserid": engine_org(http, dv_url).await?["salesperson_user_id"]}),
        )
        .await?["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let rows: Value = http
            .get(format!(
                "{api_url}leads?$select=leadid&$top={}",
                args.samples * 2
            ))
            .bearer_auth(&token)
            .send()
            .await?
            .json()
            .await?;
        let ids: Vec<String> = rows["value"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|r| r["leadid"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let mut observer = mdsync_marketo_client::ClientConfig::new(
            mk_url,
            desc["marketo"]["other_client_id"]
                .as_str()
                .unwrap_or_default(),
            desc["marketo"]["other_client_secret"]
                .as_str()
                .unwrap_or_default(),
        );
        // The observer polls every 20 ms: the client's default 90 calls / 20 s would make it wait for its
        // own rate limit and report that wait as propagation latency (the emulators have no limits here).
        observer.rate_limit = 1_000_000;
        observer.max_concurrency = 10;
        observer.daily_budget = 100_000_000;
        let mk = mdsync_marketo_client::Client::new(observer)?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let runner = async {
            engine
                .run(
                    async {
                        let _ = stop_rx.await;
                    },
                    |_| {},
                )
                .await
        };
        let measure = async {
            let mut d2m = Vec::new();
            let mut m2d = Vec::new();
            // Let the first cycle (and the first Marketo poll) pass.
            tokio::time::sleep(Duration::from_millis(500)).await;
            for (i, id) in ids.iter().take(args.samples).enumerate() {
                let value = format!("Latency{i}");
                let t0 = Instant::now();
                http.patch(format!("{api_url}leads({id})"))
                    .bearer_auth(&token)
                    .header("If-Match", "*")
                    .json(&json!({"firstname": value}))
                    .send()
                    .await?;
                let person = loop {
                    let mut pager =
                        mk.leads_by_filter("msftId", &[id.as_str()], &["id", "firstName"], None)?;
                    let p = pager.next_page().await?.and_then(|p| p.into_iter().next());
                    if let Some(p) = &p
                        && p["firstName"] == value.as_str()
                    {
                        break p.clone();
                    }
                    if t0.elapsed() > Duration::from_secs(120) {
                        bail!("Dynamics → Marketo edit not seen within 120 s");
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                };
                d2m.push(t0.elapsed().as_secs_f64() * 1000.0);
                let mid = person["id"].as_i64().unwrap_or_default();
                let title = format!("Title{i}");
                let t1 = Instant::now();
                post(
                    http,
                    format!("{mk_url}/_emulator/marketer-edits"),
                    json!({"leadId": mid, "fields": {"title": title}}),
                )
                .await?;
                loop {
                    let row: Value = http
                        .get(format!("{api_url}leads({id})?$select=jobtitle"))
                        .bearer_auth(&token)
                        .send()
                        .await?
                        .json()
                        .await?;
                    if row["jobtitle"] == title.as_str() {
                        break;
                    }
                    if t1.elapsed() > Duration::from_secs(300) {
                        bail!("Marketo → Dynamics edit not seen within 300 s");
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                m2d.push(t1.elapsed().as_secs_f64() * 1000.0);
            }
            Ok::<_, anyhow::Error>((d2m, m2d))
        };
        let (measured, ran) = tokio::join!(
            async {
                let r = measure.await;
                let _ = stop_tx.send(());
                r
            },
            runner
        );
        ran?;
        let (mut d2m, mut m2d) = measured?;
        d2m.sort_by(f64::total_cmp);
        m2d.sort_by(f64::total_cmp);
        run.d2m_p50_ms = percentile(&d2m, 50.0);
        run.d2m_p99_ms = percentile(&d2m, 99.0);
        run.m2d_p50_ms = percentile(&m2d, 50.0);
        run.m2d_p99_ms = percentile(&m2d, 99.0);
        Ok(())
    }

    async fn engine_org(http: &reqwest::Client, dv_url: &str) -> anyhow::Result<Value> {
        Ok(http
            .get(format!("{dv_url}/_emulator/org"))
            .send()
            .await?
            .json()
            .await?)
    }

    fn ms(v: Option<f64>) -> String {
        v.map(|x| format!("{x:.0}")).unwrap_or_else(|| "-".into())
    }

    pub async fn run(args: BenchSyncArgs) -> anyhow::Result<()> {
        super::limit_malloc_arenas();
        let mut runs = Vec::new();
        for &records in &args.records {
            eprintln!("bench sync: {records} leads…");
            runs.push(one(&args, records).await?);
        }
        println!(
            "{:>9} {:>8} {:>10} {:>12} {:>9} {:>10} {:>10} {:>10} {:>10}",
            "records",
            "load s",
            "records/s",
            "calls/1000",
            "RSS MB",
            "D→M p50",
            "D→M p99",
            "M→D p50",
            "M→D p99"
        );
        for r in &runs {
            println!(
                "{:>9} {:>8.1} {:>10.0} {:>12.2} {:>9.1} {:>10} {:>10} {:>10} {:>10}",
                r.records,
                r.load_seconds,
                r.records_per_second,
                r.marketo_calls_per_1000,
                r.peak_rss_mb,
                ms(r.d2m_p50_ms),
                ms(r.d2m_p99_ms),
                ms(r.m2d_p50_ms),
                ms(r.m2d_p99_ms)
            );
        }
        if let Some(r) = runs.first() {
            println!(
                "latencies in ms; Dataverse polled every {:.1} s, Marketo every {:.1} s (daily budget {}); RSS is the sync process's peak (emulators run in a child process)",
                r.poll_interval_s, r.marketo_poll_interval_s, args.marketo_daily_budget
            );
        }
        if let Some(dir) = args.json.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(
            &args.json,
            serde_json::to_string_pretty(&json!({"bench": "sync", "runs": runs}))?,
        )?;
        println!("results written to {}", args.json.display());
        Ok(())
    }
}
