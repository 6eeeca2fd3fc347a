//! Which failures are worth another attempt, and how long to wait before it.
//!
//! Marketo reports most transient trouble inside an HTTP 200 envelope, so status-based retry logic
//! (what Airbyte does) misses 606/615; we classify on the envelope code first.

use std::time::Duration;

use crate::error::Error;

/// What to do after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// 601/602: drop the cached token, authenticate again and repeat the call.
    Reauthenticate,
    /// Transient: retry after exponential backoff, or after `at_least` when the server said how long.
    Retry { at_least: Option<Duration> },
    /// 606: the rolling rate window is full; pause every caller for the window length.
    WaitRateWindow(Duration),
    /// Not retryable.
    Fail,
}

/// The default rolling window of Marketo's rate limit.
pub const DEFAULT_RATE_WINDOW: Duration = Duration::from_secs(20);

/// Classifies an error of one attempt.
pub fn classify(error: &Error) -> Disposition {
    match error {
        Error::Api { code, message, .. } => classify_code(code, message),
        Error::Http {
            status,
            retry_after,
            ..
        } => match *status {
            429 => Disposition::Retry {
                at_least: *retry_after,
            },
            500..=599 => Disposition::Retry {
                at_least: *retry_after,
            },
            _ => Disposition::Fail,
        },
        Error::Transport { source, .. } => {
            if source.is_timeout() || source.is_connect() || source.is_request() || source.is_body()
            {
                Disposition::Retry { at_least: None }
            } else {
                Disposition::Fail
            }
        }
        _ => Disposition::Fail,
    }
}

/// Classifies an envelope error code (never 607/1029: those become their own fatal variants first).
pub fn classify_code(code: &str, message: &str) -> Disposition {
    match code {
        "601" | "602" => Disposition::Reauthenticate,
        "606" => Disposition::WaitRateWindow(rate_window_from_message(message)),
        // 604 timed out, 608 unavailable, 611 system error, 614 invalid subscription (transient),
        // 615 concurrency, 713 transient, 719 lock wait timeout.
        "604" | "608" | "611" | "614" | "615" | "713" | "719" => {
            Disposition::Retry { at_least: None }
        }
        _ => Disposition::Fail,
    }
}

/// Reads the window from `Max rate limit '100' exceeded with in '20' secs`; 20 s when absent.
pub fn rate_window_from_message(message: &str) -> Duration {
    let mut quoted = message.split('\'').skip(1).step_by(2);
    let _limit = quoted.next();
    quoted
        .next()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|secs| *secs > 0 && *secs <= 3600)
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_RATE_WINDOW)
}

/// Exponential backoff with full jitter in `[base*2^(n-1) / 2, base*2^(n-1)]`, capped at `max`.
/// `attempt` counts retries from 1.
pub fn backoff(attempt: u32, base: Duration, max: Duration, jitter: f64) -> Duration {
    let exp = attempt.saturating_sub(1).min(20);
    let ceiling = base.saturating_mul(1u32 << exp).min(max);
    let jitter = jitter.clamp(0.0, 1.0);
    // Half fixed, half jittered: never zero, never above the ceiling.
    ceiling.mul_f64(0.5 + 0.5 * jitter)
}

/// Parses `Retry-After` as delta-seconds (the only form the services we talk to send).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let secs: f64 = value.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(3600.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_classified_like_the_error_code_table() {
        assert_eq!(classify_code("601", ""), Disposition::Reauthenticate);
        assert_eq!(classify_code("602", ""), Disposition::Reauthenticate);
        for code in ["604", "608", "611", "615", "713"] {
            assert_eq!(
                classify_code(code, ""),
                Disposition::Retry { at_least: None },
                "{code}"
            );
        }
        for code in ["603", "605", "609", "610", "612", "1003", "1006", "702"] {
            assert_eq!(classify_code(code, ""), Disposition::Fail, "{code}");
        }
        assert_eq!(
            classify_code("606", "Max rate limit '100' exceeded with in '20' secs"),
            Disposition::WaitRateWindow(Duration::from_secs(20))
        );
    }

    #[test]
    fn rate_window_is_read_from_the_message() {
        assert_eq!(
            rate_window_from_message("Max rate limit '5' exceeded with in '2' secs"),
            Duration::from_secs(2)
        );
        assert_eq!(rate_window_from_message("whatever"), DEFAULT_RATE_WINDOW);
        assert_eq!(
            rate_window_from_message("Max rate limit '100' exceeded with in 'x' secs"),
            DEFAULT_RATE_WINDOW
        );
    }

    #[test]
    fn http_statuses() {
        let http = |status, retry_after| Error::Http {
            status,
            path: "/p".into(),
            body: String::new(),
            retry_after,
        };
        assert_eq!(
            classify(&http(502, None)),
            Disposition::Retry { at_least: None }
        );
        assert_eq!(
            classify(&http(429, Some(Duration::from_secs(3)))),
            Disposition::Retry {
                at_least: Some(Duration::from_secs(3))
            }
        );
        assert_eq!(classify(&http(413, None)), Disposition::Fail);
        assert_eq!(classify(&http(404, None)), Disposition::Fail);
    }

    #[test]
    fn quota_errors_are_never_retried() {
        let daily = Error::DailyQuota {
            message: "Daily quota reached".into(),
            request_id: None,
        };
        let bulk = Error::BulkQuota {
            message: "Too many jobs in queue".into(),
            request_id: None,
        };
        assert_eq!(classify(&daily), Disposition::Fail);
        assert_eq!(classify(&bulk), Disposition::Fail);
        assert!(daily.is_fatal() && bulk.is_fatal());
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        assert_eq!(backoff(1, base, max, 1.0), Duration::from_millis(100));
        assert_eq!(backoff(2, base, max, 1.0), Duration::from_millis(200));
        assert_eq!(backoff(3, base, max, 0.0), Duration::from_millis(200));
        assert_eq!(backoff(10, base, max, 1.0), max);
        assert_eq!(backoff(u32::MAX, base, max, 1.0), max);
    }

    #[test]
    fn retry_after_delta_seconds() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
