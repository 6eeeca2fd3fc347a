//! State shared by every request: the store, the org's fixed ids and credentials, settings,
//! limits, and the kit's fault registry and counters.

use std::sync::Arc;

use mdsync_emulator_kit::{FaultRegistry, RequestCounters};

use crate::limits::Limits;
use crate::org::OrgIds;
use crate::store::Store;

pub struct Shared {
    store: Store,
    pub ids: OrgIds,
    pub config: crate::Config,
    pub limits: Limits,
    pub faults: FaultRegistry,
    pub counters: RequestCounters,
}

impl Shared {
    pub fn new(
        store: Store,
        ids: OrgIds,
        config: crate::Config,
        faults: FaultRegistry,
        counters: RequestCounters,
    ) -> Arc<Self> {
        let mut settings = config.limits.clone();
        settings.enabled = config.limits_enabled;
        Arc::new(Shared {
            store,
            ids,
            limits: Limits::new(settings),
            config,
            faults,
            counters,
        })
    }
    pub fn store(&self) -> &Store {
        &self.store
    }
}
