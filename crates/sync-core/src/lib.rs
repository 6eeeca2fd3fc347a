//! The sync's decision logic, free of I/O.
//!
//! **Architecture invariant:** this crate never performs I/O and never reads the clock. It has no tokio, no
//! HTTP client and no database; time arrives as a parameter (`now`), state arrives as data (links,
//! fingerprints) and leaves as data (state effects to commit). It therefore cannot fail for I/O reasons, and
//! every rule is testable with plain values.
//!
//! **API boundary:** the protocol clients turn wire JSON into [`record`] types; the engine asks
//! [`plan::plan_cycle`] what to write, executes the [`plan::Op`]s in [`batch`]-sized calls, and commits the
//! resulting state effects together with the cursor they cover (crate `mdsync-state`).
//!
//! Modules, named after the domain concepts they decide:
//! - [`record`]: neutral records and change events of both sides, and who made a change.
//! - [`mapping`]: which field maps to which, direction and conflict policy; defaults and config overrides.
//! - [`convert`]: value conversion between Dataverse and Marketo types, with per-record errors.
//! - [`fingerprint`] and [`echo`]: what counts as an echo of mdsync's own writes.
//! - [`conflict`]: who wins when both sides changed a field.
//! - [`sync_filter`]: `new_synctomkto`, qualify and merge.
//! - [`link`]: links and fingerprints as the planner reads them, and the state changes it asks for.
//! - [`plan`]: one batch of changes → the writes to make, with `--dry-run` counts.
//! - [`batch`]: chunking writes into service limits and mapping per-record results back.

pub mod batch;
pub mod conflict;
pub mod convert;
pub mod echo;
pub mod fingerprint;
pub mod link;
pub mod mapping;
pub mod plan;
pub mod record;
pub mod sync_filter;
