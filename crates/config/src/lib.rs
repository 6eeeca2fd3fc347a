//! `mdsync.toml`: the one configuration file of mdsync.
//!
//! [`load`] reads and checks the file; every problem is a [`ConfigError`] naming the file, the dotted key
//! (`dynamics.admin.client_secret`) and, when the TOML itself is at fault, the line and column. Secrets are
//! either written inline (`client_secret = "..."`) or named by environment variable
//! (`client_secret_env = "MDSYNC_DYNAMICS_CLIENT_SECRET"`), and are [`Secret`]s from the moment they are read.
//!
//! The resolved [`Config`] builds the settings of both protocol clients
//! ([`DynamicsConfig::client_config`], [`DynamicsConfig::admin_client_config`],
//! [`Config::marketo_client_config`]). [`render`] writes a config file for known credentials (used by
//! `mdsync config init`).
//!
//! **API boundary:** this crate does no network I/O.

mod error;
mod model;
mod render;
mod secrets;

pub use error::ConfigError;
pub use mdsync_secret::Secret;
pub use model::{
    AdminConfig, Config, DEFAULT_ENTITIES, DEFAULT_FILTER_FIELD, DEFAULT_INTERVAL_SECONDS,
    DynamicsConfig, MarketoConfig, SyncConfig, load, parse, parse_with_env,
};
pub use render::{InitValues, render};
