//! When to try a request again and how long to wait: pure decisions, so they are tested without a server.
//!
//! - 429: wait `Retry-After` (seconds or HTTP-date); above `max_retry_after` give up at once and hand the
//!   wait to the caller; without the header fall back to backoff.
//! - 5xx, timeouts, connection failures: jittered exponential backoff, bounded by `max_retries`. Requests
//!   that are not idempotent (a create, an action, `$batch`) are retried only when the service certainly did
//!   not run them: a 429, a 503, or a failure to connect.
//! - Every other 4xx fails at once (401 is handled by the caller: one token refresh, then fail).

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;

/// Retry limits, copied from [`crate::ClientConfig`].
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub max_retry_after: Duration,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

/// What one attempt produced, reduced to what the decision needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Status {
        status: u16,
        retry_after: Option<Duration>,
    },
    Timeout,
    /// Could not connect: the request never reached the service.
    ConnectFailed,
    /// The connection broke after the request may have been sent.
    Broken,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    RetryAfter(Duration),
    Fail,
}

impl RetryPolicy {
    /// `retries_done` = retries already spent (0 after the first attempt).
    pub fn decide(&self, outcome: Outcome, retries_done: u32, idempotent: bool) -> Decision {
        if retries_done >= self.max_retries {
            return Decision::Fail;
        }
        match outcome {
            Outcome::Status {
                status: 429,
                retry_after,
            } => match retry_after {
                Some(wait) if wait > self.max_retry_after => Decision::Fail,
                Some(wait) => Decision::RetryAfter(wait),
                None => Decision::RetryAfter(self.backoff(retries_done)),
            },
            Outcome::Status {
                status: 503,
                retry_after,
            } => Decision::RetryAfter(match retry_after {
                Some(wait) if wait <= self.max_retry_after => wait,
                _ => self.backoff(retries_done),
            }),
            Outcome::Status { status, .. } if (500..=599).contains(&status) && idempotent => {
                Decision::RetryAfter(self.backoff(retries_done))
            }
            Outcome::ConnectFailed => Decision::RetryAfter(self.backoff(retries_done)),
            Outcome::Timeout | Outcome::Broken if idempotent => {
                Decision::RetryAfter(self.backoff(retries_done))
            }
            _ => Decision::Fail,
        }
    }

    /// "Equal jitter": half the exponential step fixed, half random, so retries spread but still back off.
    pub fn backoff(&self, retries_done: u32) -> Duration {
        let step = self
            .backoff_base
            .saturating_mul(1u32.checked_shl(retries_done.min(20)).unwrap_or(u32::MAX))
            .min(self.backoff_max);
        let half = step / 2;
        let jitter_ms = half.as_millis() as u64;
        let extra = if jitter_ms == 0 {
            0
        } else {
            rand::rng().random_range(0..=jitter_ms)
        };
        half + Duration::from_millis(extra)
    }
}

/// Parses `Retry-After`: delta-seconds (fractions tolerated) or an HTTP-date relative to `now`.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs.min(86_400.0)));
    }
    let date = DateTime::parse_from_rfc2822(value).ok()?;
    let wait = date.with_timezone(&Utc) - now;
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_retries: 3,
            max_retry_after: Duration::from_secs(60),
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
        }
    }

    #[test]
    fn throttling_waits_what_the_service_asks() {
        let p = policy();
        let outcome = Outcome::Status {
            status: 429,
            retry_after: Some(Duration::from_secs(2)),
        };
        assert_eq!(
            p.decide(outcome, 0, false),
            Decision::RetryAfter(Duration::from_secs(2))
        );
        assert_eq!(
            p.decide(outcome, 2, true),
            Decision::RetryAfter(Duration::from_secs(2))
        );
        assert_eq!(p.decide(outcome, 3, true), Decision::Fail, "budget spent");
    }

    #[test]
    fn a_wait_beyond_the_cap_is_handed_to_the_caller() {
        let outcome = Outcome::Status {
            status: 429,
            retry_after: Some(Duration::from_secs(61)),
        };
        assert_eq!(policy().decide(outcome, 0, true), Decision::Fail);
    }

    #[test]
    fn throttling_without_retry_after_backs_off() {
        let outcome = Outcome::Status {
            status: 429,
            retry_after: None,
        };
        match policy().decide(outcome, 1, true) {
            Decision::RetryAfter(wait) => {
                assert!(
                    wait >= Duration::from_millis(100) && wait <= Duration::from_millis(200),
                    "{wait:?}"
                )
            }
            Decision::Fail => panic!("429 must be retried"),
        }
    }

    #[test]
    fn server_errors_and_timeouts_retry_only_when_safe() {
        let p = policy();
        let s500 = Outcome::Status {
            status: 500,
            retry_after: None,
        };
        assert!(matches!(p.decide(s500, 0, true), Decision::RetryAfter(_)));
        assert_eq!(p.decide(s500, 0, false), Decision::Fail);
        assert!(matches!(
            p.decide(Outcome::Timeout, 0, true),
            Decision::RetryAfter(_)
        ));
        assert_eq!(p.decide(Outcome::Timeout, 0, false), Decision::Fail);
        assert!(matches!(
            p.decide(Outcome::ConnectFailed, 0, false),
            Decision::RetryAfter(_)
        ));
        let s503 = Outcome::Status {
            status: 503,
            retry_after: None,
        };
        assert!(matches!(p.decide(s503, 0, false), Decision::RetryAfter(_)));
    }

    #[test]
    fn client_errors_never_retry() {
        for status in [400, 401, 403, 404, 405, 412, 413] {
            let outcome = Outcome::Status {
                status,
                retry_after: None,
            };
            assert_eq!(
                policy().decide(outcome, 0, true),
                Decision::Fail,
                "{status}"
            );
        }
    }

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let p = policy();
        for retries in 0..30 {
            let step = (100u64 << retries.min(20)).min(1000);
            let wait = p.backoff(retries).as_millis() as u64;
            assert!(
                wait >= step / 2 && wait <= step,
                "retry {retries}: {wait} not in [{}, {step}]",
                step / 2
            );
        }
    }

    #[test]
    fn retry_after_accepts_seconds_fractions_and_dates() {
        let now = DateTime::parse_from_rfc3339("2024-05-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("1.5", now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_retry_after("Wed, 01 May 2024 10:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 01 May 2024 09:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("-3", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
