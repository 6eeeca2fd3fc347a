//! The state store behind a mutex, reached from async code through `spawn_blocking` (SQLite commits
//! fsync; they must not stall the runtime's workers).

use std::sync::Arc;

use mdsync_state::StateStore;
use parking_lot::Mutex;

use crate::error::EngineError;

/// A shareable handle on the engine's state store.
#[derive(Clone)]
pub struct SharedStore(Arc<Mutex<Box<dyn StateStore>>>);

impl SharedStore {
    pub fn new(store: Box<dyn StateStore>) -> SharedStore {
        SharedStore(Arc::new(Mutex::new(store)))
    }

    /// Runs `f` on a blocking thread with the store locked.
    pub async fn with<R, F>(&self, f: F) -> Result<R, EngineError>
    where
        F: FnOnce(&mut dyn StateStore) -> Result<R, mdsync_state::StateError> + Send + 'static,
        R: Send + 'static,
    {
        let inner = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || {
            let mut guard = inner.lock();
            f(guard.as_mut())
        })
        .await
        .map_err(|e| EngineError::Task(e.to_string()))?
        .map_err(EngineError::from)
    }
}
