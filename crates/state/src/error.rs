//! Errors of the state store.

/// A state-store operation that failed. Nothing of the failed operation was committed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(
        "state database {path}: schema version {found} is newer than this mdsync supports ({supported}); upgrade mdsync"
    )]
    SchemaTooNew {
        path: String,
        found: i64,
        supported: i64,
    },
    #[error("state database holds an invalid {what}: {value:?}")]
    Corrupt { what: &'static str, value: String },
    #[error("exporting dead letters: {0}")]
    Export(String),
}
