//! A Dataverse (Dynamics 365) Web API v9.2 client, used by `mdsync setup`, `mdsync validate` and the sync
//! engine against the real service and the emulator alike.
//!
//! - **Identity**: client-credentials tokens from `{authority}/{tenant}/oauth2/v2.0/token` with
//!   `scope={org}/.default`, cached, refreshed before expiry (5 min early, or at half life for short
//!   tokens), one fetch at a time; a 401 on a data call drops the token and retries once.
//! - **Resilience**: at most `max_concurrency` calls in flight; 429 waits `Retry-After`; 5xx and timeouts
//!   back off with jitter, a bounded number of times (non-idempotent calls only when the service surely did
//!   not run them). Every call has a timeout.
//! - **Memory**: queries and change tracking are streams of pages; only one page is held at a time.
//! - **Errors**: one [`DataverseError`] with an [`ErrorKind`] derived from the HRESULT code and status.
//! - **Secrets**: the client secret and tokens are [`mdsync_secret::Secret`]s; no `Debug`, error or log line
//!   contains them.
//!
//! ```no_run
//! # async fn demo() -> Result<(), mdsync_dataverse_client::DataverseError> {
//! use futures::TryStreamExt;
//! use mdsync_dataverse_client::{Client, ClientConfig, QueryOptions};
//! let config = ClientConfig::new("https://contoso.crm.dynamics.com", "tenant", "client", "secret".into());
//! let client = Client::new(config)?;
//! let me = client.whoami().await?;
//! let pages = client.query("contacts", &QueryOptions::new().select(["fullname"]).page_size(500));
//! futures::pin_mut!(pages);
//! while let Some(page) = pages.try_next().await? {
//!     println!("{} rows for {}", page.rows.len(), me.user_id);
//! }
//! # Ok(()) }
//! ```

mod batch;
mod changes;
mod client;
mod config;
mod error;
mod path;
mod query;
mod records;
mod retry;
mod token;

pub use batch::{
    BatchOp, BatchRequest, BatchResponse, MAX_BATCH_REQUESTS, boundary_of, decode_batch,
    encode_batch,
};
pub use changes::{Change, ChangePage};
pub use client::Client;
pub use config::{ClientConfig, DEFAULT_AUTHORITY};
pub use error::{DataverseError, ErrorKind, classify};
pub use mdsync_secret::Secret;
pub use path::{RecordKey, encode_component, literal};
pub use query::{Page, QueryOptions, Row};
pub use records::{Precondition, WhoAmI, id_from_entity_url};
pub use reqwest::Method;
pub use retry::{Decision, Outcome, RetryPolicy, parse_retry_after};
