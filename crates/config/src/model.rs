//! The file's shape (`deny_unknown_fields` everywhere) and its resolved, checked form.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mdsync_secret::Secret;
use serde::Deserialize;

use crate::ConfigError;
use crate::secrets::resolve;

/// The sync filter column of Marketo's custom Dynamics sync filter.
pub const DEFAULT_FILTER_FIELD: &str = "new_synctomkto";
/// The Dynamics tables synced when `[sync] entities` is not given.
pub const DEFAULT_ENTITIES: &[&str] = &["lead", "contact", "account", "opportunity"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    dynamics: RawDynamics,
    marketo: RawMarketo,
    #[serde(default)]
    sync: RawSync,
    #[serde(default)]
    mapping: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDynamics {
    url: String,
    tenant_id: String,
    client_id: String,
    client_secret: Option<Secret>,
    client_secret_env: Option<String>,
    authority: Option<String>,
    sync_user: Option<String>,
    timeout_seconds: Option<u64>,
    admin: Option<RawAdmin>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    client_id: String,
    client_secret: Option<Secret>,
    client_secret_env: Option<String>,
    tenant_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMarketo {
    url: String,
    client_id: String,
    client_secret: Option<Secret>,
    client_secret_env: Option<String>,
    timeout_seconds: Option<u64>,
}

/// `[sync] interval_seconds` when absent.
pub const DEFAULT_INTERVAL_SECONDS: u64 = 1;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSync {
    state: Option<PathBuf>,
    filter_field: Option<String>,
    entities: Option<Vec<String>>,
    match_existing_by_email: Option<bool>,
    marketo_daily_budget: Option<u64>,
    interval_seconds: Option<u64>,
}

/// A checked config file: every secret resolved, every URL parsed.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it came from (relative paths in it are relative to its directory).
    pub path: PathBuf,
    pub dynamics: DynamicsConfig,
    pub marketo: MarketoConfig,
    pub sync: SyncConfig,
    /// `[[mapping.<entity>]]` tables, kept raw: the sync core interprets them.
    pub mapping: BTreeMap<String, toml::Value>,
}

/// `[dynamics]`: the org and the sync app's credentials (the identity every sync call runs as).
#[derive(Clone, Debug)]
pub struct DynamicsConfig {
    /// Org root without a trailing slash, e.g. `https://contoso.crm.dynamics.com`.
    pub url: String,
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// Token authority; `https://login.microsoftonline.com` unless set (the emulator's URL in tests).
    pub authority: String,
    /// A named sync user (its `domainname`) instead of the sync app's application user.
    pub sync_user: Option<String>,
    pub timeout: Option<Duration>,
    /// `[dynamics.admin]`: only `mdsync setup` uses it.
    pub admin: Option<AdminConfig>,
}

/// `[dynamics.admin]`: an administrator app, used only to set things up.
#[derive(Clone, Debug)]
pub struct AdminConfig {
    pub client_id: String,
    pub client_secret: Secret,
    pub tenant_id: String,
}

/// `[marketo]`: the instance and the LaunchPoint custom service mdsync calls as.
#[derive(Clone, Debug)]
pub struct MarketoConfig {
    /// Instance root, e.g. `https://123-ABC-456.mktorest.com`.
    pub url: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub timeout: Option<Duration>,
}

/// `[sync]`: what syncs and where mdsync keeps its state.
#[derive(Clone, Debug)]
pub struct SyncConfig {
    /// SQLite state file, resolved against the config file's directory.
    pub state: PathBuf,
    /// Boolean column deciding per record whether it syncs (`None` = every record syncs).
    pub filter_field: Option<String>,
    /// Dynamics tables (logical names) to sync.
    pub entities: Vec<String>,
    /// Link existing Marketo persons to Dynamics records by email on the first sync.
    pub match_existing_by_email: bool,
    /// Marketo calls per day mdsync may spend (the instance quota, 50,000 by default, is shared).
    pub marketo_daily_budget: u64,
    /// Pause between sync cycles: Dataverse is polled after each (change tracking costs no quota, one
    /// request per entity); Marketo only as often as `marketo_daily_budget` allows. Default 1 s, so an
    /// edit in Dynamics reaches Marketo within seconds.
    pub interval: Duration,
}

/// Reads and checks `path`, taking `*_env` secrets from the process environment.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Checks `text` as if read from `path`, with secrets from the process environment.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    parse_with_env(path, text, &|name| std::env::var(name).ok())
}

/// Checks `text` with `env` standing in for the environment (tests, embedding).
pub fn parse_with_env(
    path: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    resolve_config(path, text, env).map_err(|e| with_position(e, text))
}

/// Adds the line of the offending key to a value error (the deserializer's own errors carry spans).
fn with_position(e: ConfigError, text: &str) -> ConfigError {
    match e {
        ConfigError::Invalid {
            path,
            key,
            line: None,
            column: None,
            message,
        } if !key.is_empty() => {
            let (line, column) = locate_key(text, &key).unzip();
            ConfigError::Invalid {
                path,
                key,
                line,
                column,
                message,
            }
        }
        other => other,
    }
}

/// Line and column of `table.key = ...` in simple TOML (table headers plus `key = value` lines).
fn locate_key(text: &str, dotted: &str) -> Option<(usize, usize)> {
    let (table, key) = dotted.rsplit_once('.').unwrap_or(("", dotted));
    let mut current = String::new();
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(header) = trimmed.strip_prefix('[') {
            current = header
                .trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("")
                .trim()
                .to_string();
            continue;
        }
        if current == table
            && let Some(rest) = trimmed.strip_prefix(key)
            && rest.trim_start().starts_with('=')
        {
            return Some((n + 1, line.len() - trimmed.len() + 1));
        }
    }
    None
}

fn resolve_config(
    path: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let raw = deserialize(path, text)?;
    let d = raw.dynamics;
    let dynamics_url = org_url(path, "dynamics.url", &d.url, true)?;
    non_empty(path, "dynamics.tenant_id", &d.tenant_id)?;
    non_empty(path, "dynamics.client_id", &d.client_id)?;
    let client_secret = resolve(
        path,
        "dynamics",
        "client_secret",
        d.client_secret,
        d.client_secret_env.as_deref(),
        env,
    )?;
    let authority = match d.authority {
        Some(a) => org_url(path, "dynamics.authority", &a, false)?,
        None => mdsync_dataverse_client::DEFAULT_AUTHORITY.to_string(),
    };
    let admin = match d.admin {
        None => None,
        Some(a) => {
            non_empty(path, "dynamics.admin.client_id", &a.client_id)?;
            let client_secret = resolve(
                path,
                "dynamics.admin",
                "client_secret",
                a.client_secret,
                a.client_secret_env.as_deref(),
                env,
            )?;
            let tenant_id = a.tenant_id.unwrap_or_else(|| d.tenant_id.clone());
            non_empty(path, "dynamics.admin.tenant_id", &tenant_id)?;
            Some(AdminConfig {
                client_id: a.client_id,
                client_secret,
                tenant_id,
            })
        }
    };
    if let Some(user) = &d.sync_user {
        non_empty(path, "dynamics.sync_user", user)?;
    }
    let m = raw.marketo;
    let marketo_url = org_url(path, "marketo.url", &m.url, false)?;
    non_empty(path, "marketo.client_id", &m.client_id)?;
    let marketo_secret = resolve(
        path,
        "marketo",
        "client_secret",
        m.client_secret,
        m.client_secret_env.as_deref(),
        env,
    )?;
    let s = raw.sync;
    let entities = match s.entities {
        None => DEFAULT_ENTITIES.iter().map(|e| (*e).to_string()).collect(),
        Some(list) => {
            if list.is_empty() {
                return Err(ConfigError::invalid(
                    path,
                    "sync.entities",
                    "the list is empty",
                ));
            }
            for e in &list {
                if !is_logical_name(e) {
                    return Err(ConfigError::invalid(
                        path,
                        "sync.entities",
                        format!(
                            "`{e}` is not a Dynamics table logical name (lowercase letters, digits, `_`)"
                        ),
                    ));
                }
            }
            list
        }
    };
    if let Some(f) = &s.filter_field
        && !is_logical_name(f)
    {
        return Err(ConfigError::invalid(
            path,
            "sync.filter_field",
            format!("`{f}` is not a column logical name (lowercase letters, digits, `_`)"),
        ));
    }
    let budget = s.marketo_daily_budget.unwrap_or(10_000);
    if budget == 0 {
        return Err(ConfigError::invalid(
            path,
            "sync.marketo_daily_budget",
            "must be at least 1",
        ));
    }
    let base = path.parent().unwrap_or(Path::new(""));
    let state = s.state.unwrap_or_else(|| PathBuf::from("mdsync.db"));
    let state = if state.is_absolute() {
        state
    } else {
        base.join(state)
    };
    Ok(Config {
        path: path.to_path_buf(),
        dynamics: DynamicsConfig {
            url: dynamics_url,
            tenant_id: d.tenant_id,
            client_id: d.client_id,
            client_secret,
            authority,
            sync_user: d.sync_user,
            timeout: d.timeout_seconds.map(Duration::from_secs),
            admin,
        },
        marketo: MarketoConfig {
            url: marketo_url,
            client_id: m.client_id,
            client_secret: marketo_secret,
            timeout: m.timeout_seconds.map(Duration::from_secs),
        },
        sync: SyncConfig {
            state,
            filter_field: s.filter_field,
            entities,
            match_existing_by_email: s.match_existing_by_email.unwrap_or(false),
            marketo_daily_budget: budget,
            interval: Duration::from_secs(s.interval_seconds.unwrap_or(DEFAULT_INTERVAL_SECONDS)),
        },
        mapping: raw.mapping,
    })
}

fn deserialize(path: &Path, text: &str) -> Result<RawConfig, ConfigError> {
    let locate = |e: &toml::de::Error| e.span().map(|span| line_column(text, span.start)).unzip();
    let deserializer = toml::Deserializer::parse(text).map_err(|e| {
        let (line, column) = locate(&e);
        ConfigError::Invalid {
            path: path.to_path_buf(),
            key: String::new(),
            line,
            column,
            message: e.message().trim().to_string(),
        }
    })?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let mut key = e.path().to_string();
        if key == "." {
            key.clear();
        }
        let inner = e.into_inner();
        let message = inner.message().trim().to_string();
        // A missing key is reported at its table; name the key itself.
        if let Some(missing) = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
        {
            key = if key.is_empty() {
                missing.to_string()
            } else {
                format!("{key}.{missing}")
            };
        }
        let (line, column) = locate(&inner);
        ConfigError::Invalid {
            path: path.to_path_buf(),
            key,
            line,
            column,
            message,
        }
    })
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn non_empty(path: &Path, key: &str, value: &str) -> Result<(), ConfigError> {
    if value.trim().is_empty() {
        Err(ConfigError::invalid(path, key, "must not be empty"))
    } else {
        Ok(())
    }
}

/// An http(s) URL without query; `root_only` refuses a path (the org root, not the API endpoint).
fn org_url(path: &Path, key: &str, value: &str, root_only: bool) -> Result<String, ConfigError> {
    let trimmed = value.trim().trim_end_matches('/');
    let parsed = url::Url::parse(trimmed)
        .map_err(|e| ConfigError::invalid(path, key, format!("`{trimmed}` is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(ConfigError::invalid(
            path,
            key,
            format!("`{trimmed}` must be an http(s) URL with a host"),
        ));
    }
    if root_only && parsed.path() != "/" && !parsed.path().is_empty() {
        return Err(ConfigError::invalid(
            path,
            key,
            format!(
                "`{trimmed}` has a path; give the org root (e.g. https://contoso.crm.dynamics.com), not the Web API endpoint"
            ),
        ));
    }
    Ok(trimmed.to_string())
}

fn is_logical_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl DynamicsConfig {
    /// Settings of the client that runs as the sync app (sync, validate).
    pub fn client_config(&self) -> mdsync_dataverse_client::ClientConfig {
        let mut c = mdsync_dataverse_client::ClientConfig::new(
            &self.url,
            &self.tenant_id,
            &self.client_id,
            self.client_secret.clone(),
        )
        .with_authority(&self.authority);
        if let Some(t) = self.timeout {
            c.timeout = t;
        }
        c
    }

    /// Settings of the administrator client (`mdsync setup`), when `[dynamics.admin]` is present.
    pub fn admin_client_config(&self) -> Option<mdsync_dataverse_client::ClientConfig> {
        let admin = self.admin.as_ref()?;
        let mut c = mdsync_dataverse_client::ClientConfig::new(
            &self.url,
            &admin.tenant_id,
            &admin.client_id,
            admin.client_secret.clone(),
        )
        .with_authority(&self.authority);
        if let Some(t) = self.timeout {
            c.timeout = t;
        }
        Some(c)
    }
}

impl Config {
    /// Settings of the Marketo client, with `[sync] marketo_daily_budget` as its daily budget.
    pub fn marketo_client_config(&self) -> mdsync_marketo_client::ClientConfig {
        let mut c = mdsync_marketo_client::ClientConfig::new(
            &self.marketo.url,
            &self.marketo.client_id,
            self.marketo.client_secret.clone(),
        );
        c.daily_budget = self.sync.marketo_daily_budget;
        if let Some(t) = self.marketo.timeout {
            c.timeout = t;
        }
        c
    }
}
