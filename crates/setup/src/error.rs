//! Why a setup command could not run at all (a step that fails is reported, not raised).

/// A setup or validation run that could not start or continue.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Dataverse(#[from] mdsync_dataverse_client::DataverseError),
    #[error(transparent)]
    Marketo(#[from] mdsync_marketo_client::Error),
    /// `[dynamics.admin]` is required by `mdsync setup` but absent from the config.
    #[error(
        "`mdsync setup` needs administrator credentials: add a [dynamics.admin] section (client_id, client_secret) to the config"
    )]
    NoAdmin,
    /// An emulator's test surface or description could not be used.
    #[error("emulator: {0}")]
    Emulator(String),
    /// The organization lacks something the step needs (the Marketo solution, its role or config record).
    #[error("{0}")]
    Org(String),
}
