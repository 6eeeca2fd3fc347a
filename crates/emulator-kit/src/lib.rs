//! Shared plumbing for the emulators: serving, fault injection, request counters, limits, SQLite files.
//!
//! Typical wiring (order matters: the panic catcher is innermost so counters and faults still see the
//! request, counters are outermost so faulted requests are counted too):
//!
//! ```ignore
//! let app = mdsync_emulator_kit::instrument(router, faults.clone(), counters.clone(), render_500);
//! let handle = mdsync_emulator_kit::serve(addr, app).await?;
//! ```

pub mod admin;
pub mod counters;
pub mod faults;
pub mod limits;
pub mod panic;
pub mod server;
pub mod sqlite;

pub use admin::{admin_error, admin_routes};
pub use counters::{CounterLayer, RequestCounters, counter_layer};
pub use faults::{Fault, FaultLayer, FaultRegistry, FaultRenderer, fault_layer};
pub use limits::{ConcurrencyGate, ConcurrencyGuard, SlidingWindow};
pub use panic::{PanicRenderer, catch_panic_layer};
pub use server::{ServerHandle, serve};
pub use sqlite::{checkpoint, configure, open_database};

/// Path prefix of every emulator test-surface route; never faulted, excluded from [`RequestCounters::total`].
pub const ADMIN_PREFIX: &str = "/_emulator/";

/// Applies the kit's middleware in the recommended order and merges [`admin_routes`] into `router`.
///
/// Layers (outermost first): counters, faults, panic catcher. The emulator's own routes must already be
/// in `router`; anything merged afterwards is not instrumented.
pub fn instrument(
    router: axum::Router,
    faults: FaultRegistry,
    counters: RequestCounters,
    render_500: fn() -> axum::response::Response,
) -> axum::Router {
    router
        .merge(admin_routes(faults.clone(), counters.clone()))
        .layer(catch_panic_layer(render_500))
        .layer(fault_layer(faults))
        .layer(counter_layer(counters))
}
