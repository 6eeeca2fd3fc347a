//! A local server that behaves on the wire like the Adobe Marketo Engage REST API.
//!
//! `url` stands for `https://{munchkinId}.mktorest.com`: identity at `/identity/oauth/token`, the Lead
//! Database at `/rest/v1/...`, bulk extract at `/bulk/v1/...`. Everything is stored in one SQLite file
//! (`marketo.sqlite` under `Config::state_dir`, or a temp file), and streamed by key so memory stays bounded
//! by the page or batch size, not by the number of stored leads or activities. The store survives a
//! process crash (WAL) and a clean [`Running::shutdown`] (WAL checkpoint); it does not fsync, so a power
//! loss may lose recent writes — it is a test double, and fsyncs would halve sync throughput.
//!
//! # Wire behaviour
//! - Envelope `{"requestId":"hex#hex","success":..,"result":[..],"errors":[{"code":"601",..}],"warnings":[]}`
//!   with HTTP 200 for API errors; string codes; 601/602 for unknown/expired tokens (Bearer header or the
//!   deprecated `access_token` parameter); 605 wrong method; 609 bad JSON; 610 unknown path; 612 JSON body
//!   without `application/json`; HTTP 413 for bodies over 1 MB and 414 for URIs over 8 KB.
//! - `POST ...?_method=GET` with a form or JSON body; comma-separated and repeated list parameters;
//!   `DELETE /rest/v1/leads.json` with a JSON body; dot-segments (`/rest/../bulk/...`) are resolved.
//! - Limits (on by default, see [`Config`]): 100 calls / 20 s (606), 10 concurrent (615), 50,000 calls a
//!   day (607); identity calls and 601/602 answers are free. `GET /rest/v1/stats/usage.json` reports usage.
//!
//! # Endpoints
//! - Identity: `GET|POST /identity/oauth/token` (query or form parameters; 401 `invalid_client`).
//! - Leads: `GET|POST|DELETE /rest/v1/leads.json` (query / sync / delete), `GET /rest/v1/lead/{id}.json`,
//!   `POST /rest/v1/leads/delete.json`, `GET /rest/v1/leads/describe.json`, `.../describe2.json`,
//!   `GET|POST /rest/v1/leads/schema/fields.json`, `GET|POST /rest/v1/leads/schema/fields/{name}.json`,
//!   `GET|POST /rest/v1/leads/partitions.json`, `POST /rest/v1/leads/{id}/merge.json`.
//! - Activities: `GET /rest/v1/activities/types.json`, `.../pagingtoken.json`, `/rest/v1/activities.json`,
//!   `.../leadchanges.json`, `.../deletedleads.json`. Every API create logs New Lead (12), every changed
//!   field one Change Data Value (13), every delete Delete Lead (37), merges Merge Leads (32); API writes
//!   carry `Api Method Name`, `Modifying User` (the API user's email) and `Request Id`.
//! - Companies, opportunities, roles: `GET|POST /rest/v1/{companies|opportunities|opportunities/roles}.json`,
//!   `.../describe.json`, `.../delete.json` (compound-key role queries via `POST ...?_method=GET` + JSON).
//! - Bulk extract: `/bulk/v1/{leads|activities}/export/create.json`, `.../{exportId}/enqueue.json`,
//!   `status.json`, `file.json` (`Range` → 206), `cancel.json`, and `/bulk/v1/{t}/export.json`.
//! - Usage: `GET /rest/v1/stats/usage.json`, `.../usage/last7days.json` (`stats/errors*.json` answer `[]`).
//! - Static lists: `GET /rest/v1/lists.json` (`id`/`name`/`programName`/`workspaceName`, token-paged by
//!   `batchSize`), `GET /rest/v1/lists/{id}.json` (1013 unknown); membership `GET|POST|DELETE
//!   /rest/v1/lists/{listId}/leads.json` (members as lead records / `added` / `removed`, skipped 1004
//!   unknown lead, 1015 not a member; ids as `?id=` or a JSON `input:[{id}]`, ≤ 300), the older `GET
//!   /rest/v1/list/{listId}/leads.json`, and `GET .../leads/ismember.json` (`memberof`/`notmemberof`).
//!   `listId` filters `activities.json` and `leadchanges.json`; `staticListId`/`staticListName` filter bulk
//!   lead exports (smart lists are still refused).
//! - Campaigns: `GET /rest/v1/campaigns.json` (token-paged), `GET /rest/v1/campaigns/{id}.json`.
//! - Programs (Asset API): `GET /rest/asset/v1/programs.json` (`offset`/`maxReturn` ≤ 200,
//!   `earliestUpdatedAt`/`latestUpdatedAt`; `errors:[]`, `warnings:[]`, and no `result` with the warning
//!   "No assets found for the given search criteria." when nothing matches).
//! - Push Lead: `POST /rest/v1/leads/push.json` (`programName` required → 1002, unknown → 1013;
//!   `lookupField`, `partitionName`, `programStatus`, `source`, `reason`; per-record `{"id","status"}` like
//!   Sync Leads createOrUpdate; created/updated leads become program members).
//! - Associate: `POST /rest/v1/leads/{id}/associate.json?cookie=` (sets the searchable `cookies` field;
//!   1012 malformed cookie, 1004 unknown lead; answers `requestId`/`success` only).
//! - Sales persons: `GET|POST /rest/v1/salespersons.json` (filterType `externalSalesPersonId`
//!   (`dedupeFields`), `id` (`idField`), `email`; sync with `dedupeBy`), `.../describe.json`, `.../delete.json`
//!   (skipped 1022 while a lead's `externalSalesPersonId` names it). Leads, companies and opportunities
//!   link to them through `externalSalesPersonId`.
//! - `GET /rest/v1/namedaccounts/describe.json`; `GET /rest/v1/customobjects.json` (no custom object types:
//!   `result:[]`).
//!
//! # Fidelity notes
//! - Ids (leads, activities, companies, opportunities, roles, sales persons, lists) are never reused, even
//!   after the highest is deleted or after `/_emulator/reset`; stores written before that are migrated on
//!   open (same rows, high-water mark past every id ever handed out).
//! - `fields=` projections always carry `id` (leads) or `seq` plus the idField (other objects), like the
//!   real service; opportunity currency values (`amount`, `expectedRevenue`) are shown as strings.
//! - Deleting a lead deletes its activity history for every reader (REST and bulk); its Delete Lead (37)
//!   record stays. New Lead rows of `leadchanges.json` carry `"fields":[]` and no `Lead ID` attribute.
//! - Integer fields are 32-bit: values outside skip the record with 1003. A JSON body sent as
//!   `application/x-www-form-urlencoded`, or a form on a JSON-only endpoint, is 612.
//! - A second enqueue of a Queued/Processing export is 1029 "Job already queued" (Completed, Failed or
//!   Cancelled jobs: 1003). [`Config::bulk_updated_at_filter_unsupported`] makes `updatedAt` lead exports
//!   answer 1035 (tap-marketo's "Corona" probe).
//!
//! # Test surface (`/_emulator/...`, JSON; bad bodies get 400 `{"error":{"code","message"}}`)
//! - `POST /_emulator/reset`: deletes every lead, activity, company, opportunity, role, sales person and
//!   export job; custom fields, partitions, API users, lists, programs and campaigns stay.
//! - `POST /_emulator/seed` `{"seed":42,"leads":1000,"companies":100,"opportunities":100}`: deterministic
//!   realistic records (one transaction; 1,000,000 leads in seconds). Seeded records write no activities.
//!   Answers the counts and the id ranges created.
//! - `POST /_emulator/marketer-edits` `{"leadId":1,"fields":{"title":"CFO"}}`: a marketer's edit (Change
//!   Data Value activities with `Source` = `Marketo Flow Action`, no API attributes). `{"create":{..}}`
//!   creates a lead as a marketer (New Lead with a non-API source), `{"deleteLeadId":1}` deletes one.
//! - `POST /_emulator/users` `{"email":"x@y.com"}` → `{"client_id","client_secret","email"}`: a new
//!   API-only user; `GET /_emulator/users` lists users (ids and emails, no secrets).
//! - `GET|POST|DELETE /_emulator/faults`, `GET|DELETE /_emulator/counters` (from `mdsync-emulator-kit`):
//!   an injected fault with a `code` answers the Marketo envelope with HTTP 200 unless `status` is set.
//! - `GET /_emulator/usage`: the limit counters (calls today, in the window, in flight).
//! - `POST /_emulator/lists` `{"name","description?","programName?"}`, `POST /_emulator/programs`
//!   `{"name","type?","channel?","description?"}`, `POST /_emulator/campaigns`
//!   `{"name","type?":"batch"|"trigger","programName?","active?"}` → 201 with the record as the API shows
//!   it (marketers make these in the UI). Reset keeps them but empties list and program memberships.

mod activities;
mod admin;
mod bulk;
mod envelope;
mod fields;
mod identity;
mod lead_store;
mod leads;
mod limits;
mod lists;
mod objects;
mod paging;
mod params;
mod programs;
mod routes;
mod seed;
mod store;
mod time;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use store::StoreError;

/// Everything `mdsync emulate` can set; `Default` = real Marketo limits on.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address to bind; port 0 picks a free port.
    pub listen: SocketAddr,
    /// `Some` = persist in `marketo.sqlite` (and bulk files) in this directory; `None` = fresh temp store.
    pub state_dir: Option<PathBuf>,
    /// Rate, concurrency, quota and bulk limits; benchmarks turn them off.
    pub limits_enabled: bool,
    /// Lifetime of a new access token (the real service: 3600 s).
    pub token_lifetime: Duration,
    /// Shown in the description; the real host is `https://{munchkin_id}.mktorest.com`.
    pub munchkin_id: String,
    /// Calls per day before 607.
    pub daily_quota: u64,
    /// Calls per `rate_window` before 606.
    pub rate_limit: u32,
    pub rate_window: Duration,
    /// Calls in flight before 615.
    pub concurrency_limit: u32,
    /// Activities scanned per page of the incremental endpoints (pages may be short while `moreResult`).
    pub activity_scan_block: i64,
    /// Bulk: jobs processing at once, jobs queued (including processing), bytes exported per day.
    pub bulk_max_processing: u32,
    pub bulk_max_queued: u32,
    pub bulk_daily_bytes: u64,
    /// The real status granularity (60 s between status changes); off by default so tests are fast.
    pub bulk_status_delay: Duration,
    /// A subscription without the bulk `updatedAt` filter: lead exports filtered on `updatedAt` answer
    /// 1035 "Unsupported filter type for target subscription" (tap-marketo's "Corona" probe path).
    pub bulk_updated_at_filter_unsupported: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            state_dir: None,
            limits_enabled: true,
            token_lifetime: Duration::from_secs(3600),
            munchkin_id: "123-ABC-456".into(),
            daily_quota: 50_000,
            rate_limit: 100,
            rate_window: Duration::from_secs(20),
            concurrency_limit: 10,
            activity_scan_block: 1000,
            bulk_max_processing: 2,
            bulk_max_queued: 10,
            bulk_daily_bytes: 500 * 1024 * 1024,
            bulk_status_delay: Duration::ZERO,
            bulk_updated_at_filter_unsupported: false,
        }
    }
}

/// What a client needs to connect; `Debug` redacts the secrets.
#[derive(Clone, serde::Serialize)]
pub struct Description {
    /// Stands for `https://{munchkin_id}.mktorest.com`.
    pub url: String,
    pub munchkin_id: String,
    /// The API-only user mdsync uses.
    pub client_id: String,
    pub client_secret: String,
    /// That user's email (the `scope` of its tokens and the `Modifying User` of its activities).
    pub api_user: String,
    /// A second API-only user standing for another integration.
    pub other_client_id: String,
    pub other_client_secret: String,
}

impl std::fmt::Debug for Description {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Description")
            .field("url", &self.url)
            .field("munchkin_id", &self.munchkin_id)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("api_user", &self.api_user)
            .field("other_client_id", &self.other_client_id)
            .field("other_client_secret", &"<redacted>")
            .finish()
    }
}

/// Errors starting or stopping the emulator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("marketo emulator store: {0}")]
    Store(#[from] StoreError),
    #[error("marketo emulator cannot bind: {0}")]
    Bind(#[from] std::io::Error),
}

/// A running emulator.
pub struct Running {
    description: Description,
    server: mdsync_emulator_kit::ServerHandle,
    state: Arc<routes::AppState>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("description", &self.description)
            .finish()
    }
}

impl Running {
    pub fn description(&self) -> &Description {
        &self.description
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Stops the server and flushes state (WAL checkpoint) before returning.
    pub async fn shutdown(self) -> Result<(), Error> {
        self.server.shutdown().await;
        self.state.bulk.stop();
        self.state.store.checkpoint()?;
        Ok(())
    }
}

/// Opens (or creates) the store, registers the built-in API users, binds and serves.
pub async fn spawn(config: Config) -> Result<Running, Error> {
    let store = store::Store::open(config.state_dir.as_deref())?;
    let users = identity::ensure_builtin_users(&store)?;
    let state = routes::AppState::new(config.clone(), store)?;
    let router = routes::router(Arc::clone(&state));
    let server = mdsync_emulator_kit::serve(config.listen, router).await?;
    let url = format!("http://{}", server.local_addr());
    state.bulk.start(Arc::clone(&state));
    let description = Description {
        url,
        munchkin_id: config.munchkin_id.clone(),
        client_id: users.sync.client_id.clone(),
        client_secret: users.sync.client_secret.clone(),
        api_user: users.sync.email.clone(),
        other_client_id: users.other.client_id.clone(),
        other_client_secret: users.other.client_secret.clone(),
    };
    Ok(Running {
        description,
        server,
        state,
    })
}
