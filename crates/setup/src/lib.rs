//! `mdsync setup …` and `mdsync validate`: the seed page (set up the Marketo sync user in Dynamics),
//! automated against the real services and the emulators alike.
//!
//! - [`sync_user`]: the four seed steps as an idempotent plan → apply, each step reported as it happens.
//! - [`sync_filter`]: the Boolean `new_synctomkto` column on the chosen tables.
//! - [`marketo_fields`]: mdsync's custom Marketo lead fields.
//! - [`validate`]: every check, never stopping at the first failure, each with a fix.
//! - [`emulator_init`]: config values for a running emulator pair (`mdsync config init`).
//!
//! **API boundary:** the CLI only parses flags and prints; everything else is here.

pub mod emulator_init;
mod error;
pub mod marketo_fields;
pub mod org;
mod report;
pub mod sync_filter;
pub mod sync_user;
pub mod validate;

pub use error::SetupError;
pub use report::{Event, Outcome, StepReport, StepStatus};
pub use sync_user::{SyncUserIdentity, SyncUserOptions, sync_user};
