//! `mdsync emulate`: both emulators in one process until SIGINT/SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, ValueEnum};
use serde_json::{Map, Value};

use mdsync_dataverse_emulator as dataverse;
use mdsync_marketo_emulator as marketo;

#[derive(Args, Debug, Clone)]
pub struct EmulateArgs {
    /// Address of the Dataverse emulator (port 0 = any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub dataverse_listen: SocketAddr,
    /// Address of the Marketo emulator (port 0 = any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub marketo_listen: SocketAddr,
    /// Persist state (SQLite files and built-in credentials) under this directory; default: a fresh temp store.
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// Print one JSON object describing the emulators (with credentials) as the first stdout line.
    #[arg(long)]
    pub print_json: bool,
    /// Turn service-protection and rate limits off (benchmarks).
    #[arg(long)]
    pub no_limits: bool,
    /// Version of the "Marketo Lead Management" solution installed in Dataverse (e.g. 4.0.0.13 for legacy).
    #[arg(long, value_name = "V")]
    pub marketo_solution_version: Option<String>,
    /// Start only one of the emulators.
    #[arg(long, value_enum)]
    pub only: Option<Which>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Dataverse,
    Marketo,
}

/// The emulators started by [`start`].
pub struct Emulators {
    pub dataverse: Option<dataverse::Running>,
    pub marketo: Option<marketo::Running>,
    state: Option<PathBuf>,
}

impl Emulators {
    /// `{"dataverse":{...},"marketo":{...}}` with the running ones (secrets included).
    pub fn description_json(&self) -> anyhow::Result<Value> {
        let mut object = Map::new();
        if let Some(running) = &self.dataverse {
            object.insert(
                "dataverse".into(),
                serde_json::to_value(running.description()).context("describing Dataverse")?,
            );
        }
        if let Some(running) = &self.marketo {
            object.insert(
                "marketo".into(),
                serde_json::to_value(running.description()).context("describing Marketo")?,
            );
        }
        Ok(Value::Object(object))
    }

    /// Stops both (state flushed); reports every failure, not just the first.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let mut problems = Vec::new();
        if let Some(running) = self.dataverse
            && let Err(err) = running.shutdown().await
        {
            problems.push(format!("Dataverse emulator: {err}"));
        }
        if let Some(running) = self.marketo
            && let Err(err) = running.shutdown().await
        {
            problems.push(format!("Marketo emulator: {err}"));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("shutdown failed: {}", problems.join("; "))
        }
    }
}

/// Each emulator keeps its files in its own subdirectory of `--state`.
fn state_subdir(state: Option<&Path>, name: &str) -> Option<PathBuf> {
    state.map(|dir| dir.join(name))
}

/// Starts the emulators selected by `args`.
pub async fn start(args: &EmulateArgs) -> anyhow::Result<Emulators> {
    let mut emulators = Emulators {
        dataverse: None,
        marketo: None,
        state: args.state.clone(),
    };
    if args.only != Some(Which::Marketo) {
        let mut config = dataverse::Config {
            listen: args.dataverse_listen,
            state_dir: state_subdir(args.state.as_deref(), "dataverse"),
            limits_enabled: !args.no_limits,
            ..Default::default()
        };
        if let Some(version) = &args.marketo_solution_version {
            config.marketo_solution_version = version.clone();
        }
        let running = dataverse::spawn(config).await.with_context(|| {
            format!(
                "starting the Dataverse emulator on {}",
                args.dataverse_listen
            )
        })?;
        emulators.dataverse = Some(running);
    }
    if args.only != Some(Which::Dataverse) {
        let config = marketo::Config {
            listen: args.marketo_listen,
            state_dir: state_subdir(args.state.as_deref(), "marketo"),
            limits_enabled: !args.no_limits,
            ..Default::default()
        };
        match marketo::spawn(config).await {
            Ok(running) => emulators.marketo = Some(running),
            Err(err) => {
                let _ = emulators.shutdown().await;
                return Err(anyhow::Error::new(err).context(format!(
                    "starting the Marketo emulator on {}",
                    args.marketo_listen
                )));
            }
        }
    }
    Ok(emulators)
}

pub async fn run(args: EmulateArgs) -> anyhow::Result<()> {
    let emulators = start(&args).await?;
    let mut stdout = std::io::stdout().lock();
    if args.print_json {
        let line = serde_json::to_string(&emulators.description_json()?)?;
        writeln!(stdout, "{line}")?;
    } else {
        write!(stdout, "{}", human_summary(&emulators))?;
    }
    stdout.flush()?;
    drop(stdout);

    let signal = wait_for_signal().await?;
    tracing::info!(signal, "stopping the emulators");
    emulators.shutdown().await?;
    tracing::info!("emulators stopped, state flushed");
    Ok(())
}

fn human_summary(emulators: &Emulators) -> String {
    let mut out = String::new();
    if let Some(running) = &emulators.dataverse {
        let d = running.description();
        out.push_str(&format!(
            "Dataverse emulator (Web API v9.2)\n  org URL:        {}\n  Web API:        {}\n  token endpoint: {}/{}/oauth2/v2.0/token\n  tenant:         {}\n  admin app:      client id {}\n  sync app:       client id {}\n",
            d.url, d.api_url, d.url, d.tenant_id, d.tenant_id, d.admin_client_id, d.sync_app_client_id
        ));
    }
    if let Some(running) = &emulators.marketo {
        let m = running.description();
        out.push_str(&format!(
            "Marketo emulator (REST API)\n  URL:            {} (stands for https://{}.mktorest.com)\n  identity:       {}/identity/oauth/token\n  API user:       {} (client id {})\n  other user:     client id {}\n",
            m.url, m.munchkin_id, m.url, m.api_user, m.client_id, m.other_client_id
        ));
    }
    match &emulators.state {
        Some(dir) => out.push_str(&format!(
            "State: persisted under {} (same credentials on restart)\n",
            dir.display()
        )),
        None => out.push_str("State: temporary (deleted on exit; use --state DIR to keep it)\n"),
    }
    out.push_str(
        "Client secrets are printed only with --print-json.\nTest surface: <url>/_emulator/ (reset, seed, faults, counters).\nStop with Ctrl-C or SIGTERM.\n",
    );
    out
}

/// Waits for SIGINT or SIGTERM and names the one received.
async fn wait_for_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}
