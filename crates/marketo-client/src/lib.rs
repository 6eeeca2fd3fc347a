//! A client for the Adobe Marketo Engage REST API, used by `mdsync setup`, `mdsync validate` and the sync
//! engine against the real service and `mdsync-marketo-emulator` alike.
//!
//! Every call goes through one pipeline ([`Client`]): a cached OAuth token (renewed before expiry and
//! after 601/602), a client-side limiter that keeps this integration under the instance-wide limits
//! (rolling calls per 20 s, concurrent calls, a daily budget), and retries with backoff for transient
//! codes (604/606/608/611/615/713, 5xx, timeouts). 607 (daily quota) and 1029 (bulk limits) are fatal
//! and never retried. Reads are paged ([`Pager`], [`ActivityPager`]) so memory is bounded by one page.
//!
//! ```no_run
//! # async fn run() -> Result<(), mdsync_marketo_client::Error> {
//! use mdsync_marketo_client::{ActivityFilter, Client, ClientConfig};
//! let client = Client::new(ClientConfig::new("https://123-ABC-456.mktorest.com", "id", "secret"))?;
//! let start = client.paging_token(chrono::Utc::now() - chrono::Duration::hours(1)).await?;
//! let next_run_token = client
//!     .lead_changes(start, &["email", "firstName"], &ActivityFilter::default())?
//!     .drain(|changes| {
//!         println!("{} changes", changes.len());
//!         Ok(())
//!     })
//!     .await?;
//! # let _ = next_run_token;
//! # Ok(())
//! # }
//! ```
//!
//! Secrets: the client secret and tokens are [`mdsync_secret::Secret`]s; request URLs are never logged
//! with their query, and transport errors are stripped of URLs.

mod activities;
mod bulk;
mod client;
mod config;
mod envelope;
mod error;
mod leads;
mod limiter;
mod objects;
mod paging;
mod retry;
mod stats;
mod token;
mod types;

pub use activities::{ActivityFilter, MAX_ACTIVITY_TYPE_IDS, MAX_LEAD_IDS};
pub use bulk::{ExportFile, ExportKind};
pub use client::Client;
pub use config::ClientConfig;
pub use envelope::{ApiError, Page};
pub use error::{Error, Result};
pub use leads::{MAX_BATCH, MAX_MERGE_IDS, SyncLeadsOptions};
pub use limiter::{Budget, marketo_today};
pub use objects::{KeyKind, ObjectKind, key};
pub use paging::{ActivityPage, ActivityPager, Pager};
pub use retry::{Disposition, classify, classify_code, rate_window_from_message};
pub use stats::ClientStats;
pub use types::{
    Activity, ActivityType, ApiName, Attribute, AttributeType, DescribedField, ExportJob,
    ExportStatus, FieldChange, LeadDescription, LeadField, NewLeadField, ObjectDescription, Record,
    RecordResult, RecordStatus, SchemaField, SyncAction, Usage, UserUsage, parse_marketo_datetime,
};
