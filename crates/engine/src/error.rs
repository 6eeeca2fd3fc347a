//! The engine's one error type: why a cycle (or a command) could not run at all.
//!
//! Per-record failures are not errors: they become dead letters and the cycle goes on.

use mdsync_dataverse_client::DataverseError;
use mdsync_state::StateError;

/// A failure that stops a cycle; nothing of the batch in flight was committed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("Dataverse: {0}")]
    Dataverse(#[from] DataverseError),
    #[error("Marketo: {0}")]
    Marketo(#[from] mdsync_marketo_client::Error),
    #[error(transparent)]
    State(#[from] StateError),
    /// The services lack something the sync needs (custom fields, a table) — `mdsync setup` fixes it.
    #[error("not set up for sync: {0}")]
    NotPrepared(String),
    /// A caller's argument is unusable (`push-person` of an unknown person, a bad id).
    #[error("{0}")]
    InvalidInput(String),
    /// A service answered something the engine cannot attribute to its records.
    #[error("unexpected answer: {0}")]
    Protocol(String),
    /// The blocking state task panicked or was cancelled.
    #[error("state task failed: {0}")]
    Task(String),
    /// The run was asked to stop.
    #[error("stopped")]
    Stopped,
}

impl EngineError {
    /// Worth running the cycle again later (throttling, outages), as opposed to a broken setup.
    pub fn is_transient(&self) -> bool {
        match self {
            EngineError::Dataverse(e) => e.is_transient(),
            EngineError::Marketo(e) => marketo_transient(e),
            _ => false,
        }
    }
}

/// Marketo failures that a later attempt can succeed at (the client already retried them).
pub(crate) fn marketo_transient(e: &mdsync_marketo_client::Error) -> bool {
    use mdsync_marketo_client::{Disposition, Error};
    match e {
        Error::RetriesExhausted { .. } => !e.is_fatal(),
        Error::Transport { .. } => true,
        Error::TokenRejected { .. } => true,
        other => !matches!(mdsync_marketo_client::classify(other), Disposition::Fail),
    }
}
