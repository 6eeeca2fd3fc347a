//! What the engine is asked to do, as plain data (the CLI builds it from `mdsync.toml`).

use std::time::Duration;

use mdsync_sync_core::mapping::Mappings;
use mdsync_sync_core::record::CrmEntity;
use uuid::Uuid;

/// The Marketo instance quota every integration shares.
pub const MARKETO_DAILY_QUOTA: u64 = 50_000;

/// Engine settings. `Default` = the documented defaults (leads, contacts, accounts, opportunities; 5000-row
/// Dataverse pages; 300-record Marketo writes; the whole daily quota).
#[derive(Clone, Debug)]
pub struct EngineSettings {
    /// Entities to sync, in any order (the engine loads accounts before persons before opportunities).
    pub entities: Vec<CrmEntity>,
    pub mappings: Mappings,
    /// The sync filter column (`new_synctomkto`), when configured.
    pub filter_field: Option<String>,
    /// Initial load only: link unlinked CRM persons to existing Marketo persons with the same email.
    pub match_existing_by_email: bool,
    /// `Prefer: odata.maxpagesize` of change-tracking reads; also the planning batch size.
    pub crm_page_size: u32,
    /// Records per Marketo write (≤ 300).
    pub marketo_batch: usize,
    /// Requests per Dataverse `$batch` (≤ 1000).
    pub crm_batch: usize,
    /// Marketo write calls of one batch in flight at once (the client's own concurrency cap still applies;
    /// Marketo allows 10 concurrent calls per instance).
    pub marketo_concurrency: usize,
    /// Initial load: pages whose writes and commit may be under way while the next page is read and
    /// planned. Memory grows with it (each page holds `crm_page_size` records).
    pub pipeline_depth: usize,
    /// Shortest pause between cycles of `run` (Dataverse deltas cost no Marketo quota).
    pub poll_interval: Duration,
    /// Marketo calls per day mdsync may spend; it bounds how often `run` polls Marketo for changes
    /// ([`EngineSettings::marketo_poll_interval`]).
    pub marketo_daily_budget: u64,
    /// The Dynamics sync user (`systemuserid`); `None` = the caller's own (`WhoAmI`).
    pub crm_sync_user: Option<Uuid>,
    /// mdsync's Marketo API user emails (`Modifying User` of its writes); empty = discovered from the
    /// identity endpoint's `scope`.
    pub marketo_api_users: Vec<String>,
    /// Activity pages (300 each) read per cycle at most; the rest waits for the next cycle.
    pub max_activity_pages: usize,
    /// Whole-batch retries the engine adds on top of the clients' own, for throttling storms and outages.
    pub batch_retries: u32,
    /// First wait of those retries (doubles each time).
    pub batch_retry_delay: Duration,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            entities: vec![
                CrmEntity::Lead,
                CrmEntity::Contact,
                CrmEntity::Account,
                CrmEntity::Opportunity,
            ],
            mappings: Mappings::default(),
            filter_field: None,
            match_existing_by_email: false,
            crm_page_size: 5000,
            marketo_batch: 300,
            crm_batch: 1000,
            marketo_concurrency: 5,
            pipeline_depth: 1,
            poll_interval: Duration::from_secs(1),
            marketo_daily_budget: MARKETO_DAILY_QUOTA,
            crm_sync_user: None,
            marketo_api_users: Vec::new(),
            max_activity_pages: 20,
            batch_retries: 6,
            batch_retry_delay: Duration::from_secs(2),
        }
    }
}

impl EngineSettings {
    /// The pause between Marketo polls that keeps them within the daily budget: an idle poll costs two
    /// calls (lead changes, deleted leads), and half the budget is kept for the writes and reads that real
    /// changes need.
    pub fn marketo_poll_interval(&self) -> Duration {
        const IDLE_CALLS_PER_CYCLE: u64 = 2;
        let polling_budget = (self.marketo_daily_budget / 2).max(1);
        let cycles_per_day = (polling_budget / IDLE_CALLS_PER_CYCLE).max(1);
        let interval = Duration::from_secs_f64(86_400.0 / cycles_per_day as f64);
        interval.max(self.poll_interval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_sets_the_minimum_interval() {
        let mut s = EngineSettings {
            poll_interval: Duration::from_millis(100),
            ..EngineSettings::default()
        };
        // 25,000 calls for polling = 12,500 idle cycles a day ≈ one every 6.9 s.
        let full = s.marketo_poll_interval();
        assert!(
            full > Duration::from_secs(6) && full < Duration::from_secs(7),
            "{full:?}"
        );
        s.marketo_daily_budget = 5_000;
        assert!(s.marketo_poll_interval() > full * 9);
        s.marketo_daily_budget = 10_000_000;
        assert_eq!(s.marketo_poll_interval(), Duration::from_millis(100));
    }
}
