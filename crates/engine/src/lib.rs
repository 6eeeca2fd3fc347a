//! mdsync's sync engine: the I/O around the pure decisions of `mdsync-sync-core`.
//!
//! An [`Engine`] holds the two protocol clients and a [`mdsync_state::StateStore`]. Each
//! [`Engine::run_cycle`]:
//! 1. reads Marketo lead changes (mapped fields only) and deleted leads from stored paging tokens;
//! 2. per entity (system users, accounts, leads, contacts, opportunities, in that order), reads Dataverse
//!    changes — the resumable initial load (change tracking, 5000-row pages; an interrupted load continues
//!    from the committed `@odata.nextLink`), then delta links; an expired link becomes a bounded resync
//!    that writes only differences;
//! 3. plans each page with [`mdsync_sync_core::plan::plan_cycle`] together with the Marketo changes of the
//!    persons it holds (so conflicts are seen), writes the ops in batches of 300 (Marketo, several calls in
//!    flight, answers in input order) or 1000 (`$batch`), and commits links, fingerprints, conflicts, dead
//!    letters and the page's cursor at once;
//! 4. plans and writes the Marketo changes no page took, and commits the Marketo tokens.
//!
//! The initial load is pipelined: the next page is read ahead while the current one is planned, and a
//! page's writes and commit run on their own task ([`EngineSettings::pipeline_depth`] pages at once) while
//! the engine plans the next. Commits still happen strictly in page order. Memory is bounded by
//! (read-ahead + planning + in-flight pages) × page size, never by the table size.
//!
//! **Architecture invariant:** cursors advance only after the writes they cover were acknowledged, in the
//! same transaction as their state; writes are upserts by key (`msftId`, `externalCompanyId`,
//! `externalOpportunityId`, the role key, Dataverse ids), so a crash anywhere converges on restart.
//!
//! **API boundary:** the engine decides nothing about fields, echoes or conflicts — the sync core does.
//! It knows batching, ordering, retries of whole calls and state bookkeeping.
//!
//! Modules: [`settings`] (what to do), `discover` (what the services have), `engine` (cycles),
//! `execute` (writes), `push` (`push-person`), `retry` (dead letters), `status`, `run` (continuous mode),
//! [`report`] (what a cycle did).

#[macro_use]
mod execute;
mod cursor;
mod discover;
mod engine;
mod error;
mod push;
pub mod report;
mod retry;
mod run;
pub mod settings;
mod status;
mod store;

pub use cursor::{CrmPosition, DELETED_LEADS, LEAD_CHANGES};
pub use discover::{Discovery, LOAD_ORDER};
pub use engine::{CycleOptions, Engine, Progress};
pub use error::EngineError;
pub use push::{PersonRef, PushOutcome};
pub use report::{CycleReport, EntityReport, Timings};
pub use retry::RetryReport;
pub use settings::{EngineSettings, MARKETO_DAILY_QUOTA};
pub use status::{EntityStatus, Status};
pub use store::SharedStore;
