//! Continuous mode: cycles back to back with a short pause; Dataverse is polled every cycle, Marketo as
//! often as the daily budget allows. Throttling and outages slow the loop down, they never end it.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::engine::{CycleOptions, Engine};
use crate::error::EngineError;
use crate::report::CycleReport;

impl Engine {
    /// Runs cycles until `shutdown` resolves. `each` sees every cycle's outcome. Returns an error only
    /// for failures no wait can fix (the state store, a missing setup).
    pub async fn run<F>(
        &self,
        shutdown: F,
        mut each: impl FnMut(&Result<CycleReport, EngineError>),
    ) -> Result<(), EngineError>
    where
        F: Future<Output = ()>,
    {
        futures::pin_mut!(shutdown);
        let marketo_every = self.settings.marketo_poll_interval();
        let mut last_marketo: Option<Instant> = None;
        let mut backoff = self.settings.poll_interval;
        loop {
            let due = last_marketo.is_none_or(|t| t.elapsed() >= marketo_every);
            let options = CycleOptions {
                dry_run: false,
                skip_marketo: !due,
                progress: None,
            };
            let result = tokio::select! {
                r = self.run_cycle(options) => r,
                () = &mut shutdown => return Ok(()),
            };
            each(&result);
            let pause = match &result {
                Ok(_) => {
                    if due {
                        last_marketo = Some(Instant::now());
                    }
                    backoff = self.settings.poll_interval;
                    // `interval_seconds = 0` must not turn into a busy loop against Dataverse.
                    self.settings.poll_interval.max(Duration::from_millis(100))
                }
                Err(e) if e.is_transient() || is_quota(e) => {
                    tracing::warn!(error = %e, wait_s = backoff.as_secs_f64(), "Cycle failed; trying again later");
                    let wait = backoff;
                    backoff = (backoff * 2).clamp(Duration::from_secs(1), Duration::from_secs(300));
                    wait
                }
                Err(EngineError::Dataverse(_))
                | Err(EngineError::Marketo(_))
                | Err(EngineError::Protocol(_)) => {
                    tracing::error!(error = %result.as_ref().err().map(ToString::to_string).unwrap_or_default(), "Cycle failed");
                    let wait = backoff;
                    backoff = (backoff * 2).clamp(Duration::from_secs(1), Duration::from_secs(300));
                    wait
                }
                Err(_) => {
                    return result.map(drop);
                }
            };
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = &mut shutdown => return Ok(()),
            }
        }
    }
}

/// The daily quota or mdsync's budget is spent: wait for the reset instead of failing.
fn is_quota(e: &EngineError) -> bool {
    matches!(
        e,
        EngineError::Marketo(
            mdsync_marketo_client::Error::DailyQuota { .. }
                | mdsync_marketo_client::Error::BudgetExhausted { .. }
        )
    )
}
