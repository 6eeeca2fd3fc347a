//! A local server that behaves on the wire like the Dataverse (Dynamics 365) Web API v9.2.
//!
//! Spawn it with [`spawn`]; [`Running::description`] tells a client where and how to connect.
//!
//! # Wire surface
//! - `POST /{tenant}/oauth2/v2.0/token`: Entra ID client credentials (form body or Basic auth,
//!   `scope=<url>/.default`); JWT-shaped HS256 tokens signed with a per-store secret. The v1
//!   endpoint `POST /{tenant}/oauth2/token` takes `resource=<url>`.
//! - Discovery for MSAL/azure-identity: `GET /{tenant}/v2.0/.well-known/openid-configuration` (and
//!   the v1 form), `GET /common/discovery/instance` (pass it to MSAL as `instance_discovery=<url>`,
//!   or turn instance discovery off), an empty JWKS. Links are built from the request's Host and
//!   `X-Forwarded-Proto` (MSAL only talks https: put a TLS proxy in front that sets it).
//! - The API checks the token audience: its host must be the host the request reached
//!   (`org.crm…` and `org.api.crm…` count as the same, the scheme is ignored); else 401.
//! - `/api/data/v9.2/` (also `v9.0`, `v9.1`; `HEAD` = `GET` without body; URLs above 32 KB → 414):
//!   service document, `$metadata`, `WhoAmI`, `RetrieveVersion`,
//!   `PublishAllXml`, CRUD/upsert with ETags and alternate keys, `$select`/`$filter`/`$orderby`/
//!   `$top`/`$count`/`/$count`, paging, change tracking, `$batch`, `CreateMultiple`/
//!   `UpdateMultiple`/`UpsertMultiple`, `$ref` associations, basic `?fetchXml=` (see
//!   [`api::fetch`]), `EntityDefinitions` with custom columns, casts, `$expand` of
//!   `Attributes`/`OptionSet`/`GlobalOptionSet`/`Keys`, and `Keys` (list, get, create),
//!   `leads(<id>)/Microsoft.Dynamics.CRM.QualifyLead` (see [`api::qualify`]) and `Merge` for
//!   accounts, contacts and leads (see [`api::merge`]).
//!   Tables: `accounts`, `contacts`, `leads`, `opportunities`, `systemusers`, `roles`, `teams`,
//!   `businessunits`, `organizations`, `usersettingscollection` (keyed by `systemuserid`),
//!   `solutions`, `solutioncomponents`, `sdkmessageprocessingsteps`, `mkt_marketoconfigs`.
//! - Security per [`security`]; service protection per [`limits`].
//!
//! # Behaviour notes
//! - Rows come back in storage order unless `$orderby` is given (the real service orders by the
//!   primary key); paging cookies are opaque either way. `$orderby` on other columns pages by
//!   offset, so very deep ordered paging costs a rescan per page.
//! - `$count`/`/$count` stop at 5000 like the service. Delta tokens are `<version>!<timestamp>` on
//!   a store-wide change clock; they expire after 7 days (`0x80044352`).
//! - `$expand` covers lookups (`primarycontactid($select=fullname)`, `parentcustomerid_account`,
//!   `ownerid`, `createdby`), the main 1:N relationships ([`api::expand::ONE_TO_MANY`], at most
//!   5000 rows each) and the N:N relationships, with a nested `$select` only.
//! - Not implemented (answered with a 400, never a wrong result): `$apply`, nested `$filter`/
//!   `$orderby`/`$top`/`$expand` in `$expand`, deep insert, lambda/navigation-path filters
//!   (rejected by mdsync-odata), `savedQuery`/`userQuery`/`?sql=`, FetchXML `link-entity`/aggregates,
//!   metadata `$expand` of relationships, metadata `$top`/`$orderby`. `$filter` comparing a number
//!   column with a string (or the reverse) is a 400 like the service.
//! - Metadata: `OptionSet` is also returned inline on choice/boolean attributes without `$expand`
//!   (the real service needs `$expand=OptionSet`; mdsync-engine currently relies on the inline form).
//! - Lead lifecycle columns: `originatingleadid` on accounts, contacts and opportunities (set by
//!   `QualifyLead`, also bindable), `qualifyingopportunityid` on leads, `merged`/`masterid` on
//!   accounts, contacts and leads (read-only, set by `Merge`).
//! - `FormattedValue` annotations (when asked for) cover choices, status, booleans, money and
//!   lookups (the target record's primary name).
//! - The Marketo configuration table's names (`mkt_marketoconfig`, `mkt_marketouserid`) are
//!   inferred from the solution's `mkt_` publisher prefix; see [`org`].
//! - Scale: `cargo run --release -p mdsync-dataverse-emulator --example bench` seeds a million
//!   contacts and measures paged reads, `UpsertMultiple`, a delta read and RSS.
//!
//! # Test surface (`/_emulator/`, JSON)
//! - `POST /_emulator/reset`: empties the data and re-seeds the organization (credentials kept).
//! - `POST /_emulator/seed` `{"seed":42,"accounts":100,"contacts":1000,"leads":1000,"opportunities":100}`:
//!   deterministic generated records (contacts linked to accounts, opportunities to accounts/contacts).
//! - `POST /_emulator/apps` `{"name":"x"}` → `{"client_id","client_secret","name"}`: registers an app.
//! - `POST /_emulator/tokens` `{"systemuserid":"<id>","lifetime_seconds":60}` → a bearer token acting as that user.
//! - `GET /_emulator/org`: ids of the seeded organization (users, roles, solution, config record).
//! - `PUT /_emulator/users/{id}/language` `{"uilanguageid":1036}`: sets a user's UI language (also
//!   possible through `PATCH usersettingscollection(<id>)` as that user or an admin).
//! - `PUT /_emulator/steps/{id}/state` `{"statecode":1}`: enables/disables a Marketo SDK step (also
//!   possible through `PATCH sdkmessageprocessingsteps(<id>)` as an admin).
//! - `GET /_emulator/publishes`: how many times `PublishAllXml` ran, and by whom.
//! - `POST /_emulator/panic`: deliberately panics inside a handler (500 in the Dataverse error shape;
//!   the server keeps serving).
//! - `/_emulator/faults`, `/_emulator/counters`: fault injection and per-route request counters (kit).

mod admin;
pub mod api;
pub mod auth;
mod batch;
pub mod error;
pub mod limits;
pub mod org;
pub mod path;
pub mod records;
pub mod schema;
pub mod security;
mod seed;
mod server;
pub mod state;
pub mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use limits::LimitSettings;
pub use server::{Running, spawn};

/// Everything `mdsync emulate` can set; `Default` = the embedded defaults (real limits on).
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    /// Some = persist to `dataverse.sqlite3` in this dir; None = a fresh temp store.
    pub state_dir: Option<PathBuf>,
    /// Service-protection limits on (default) or off (benchmarks).
    pub limits_enabled: bool,
    pub token_lifetime: Duration,
    /// Version of the "Marketo Lead Management" solution seeded in a fresh store.
    pub marketo_solution_version: String,
    /// The limit numbers (`enabled` is taken from `limits_enabled`).
    pub limits: LimitSettings,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            state_dir: None,
            limits_enabled: true,
            token_lifetime: Duration::from_secs(3599),
            marketo_solution_version: "5.0.2.1".into(),
            limits: LimitSettings::default(),
        }
    }
}

/// What a client needs to connect. `Debug` redacts the secrets.
#[derive(Clone, serde::Serialize)]
pub struct Description {
    pub url: String,
    pub api_url: String,
    pub token_url: String,
    pub tenant_id: String,
    pub admin_client_id: String,
    pub admin_client_secret: String,
    pub sync_app_client_id: String,
    pub sync_app_client_secret: String,
}

impl std::fmt::Debug for Description {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Description")
            .field("url", &self.url)
            .field("api_url", &self.api_url)
            .field("tenant_id", &self.tenant_id)
            .field("admin_client_id", &self.admin_client_id)
            .field("admin_client_secret", &"<redacted>")
            .field("sync_app_client_id", &self.sync_app_client_id)
            .field("sync_app_client_secret", &"<redacted>")
            .finish()
    }
}

/// Why the emulator could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("storage error: {0}")]
    Storage(#[from] rusqlite::Error),
    #[error("network error: {0}")]
    Io(#[from] std::io::Error),
    #[error("background task failed: {0}")]
    Task(String),
}
