//! Marketo timestamps: second precision, emitted as `2015-03-17T00:18:40Z`.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};

/// Seconds since the epoch, now.
pub fn now() -> i64 {
    Utc::now().timestamp()
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// `2015-03-17T00:18:40Z`.
pub fn format(secs: i64) -> String {
    Utc.timestamp_opt(secs, 0)
        .single()
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Parses the ISO-8601 shapes clients send (`Z`, `+0000`, `+00:00`, fractions, or a bare date).
pub fn parse(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(text) {
        return Some(dt.timestamp());
    }
    for pattern in [
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%dT%H:%M:%S%z",
        "%Y-%m-%d %H:%M:%S%z",
    ] {
        if let Ok(dt) = DateTime::parse_from_str(text, pattern) {
            return Some(dt.timestamp());
        }
    }
    for pattern in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
    ] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(text, pattern) {
            return Some(dt.and_utc().timestamp());
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|dt| dt.and_utc().timestamp())
}

/// The quota day (Marketo resets at 00:00 US Central; fixed UTC-6 here).
pub fn quota_day(secs: i64) -> String {
    Utc.timestamp_opt(secs - 6 * 3600, 0)
        .single()
        .unwrap_or_default()
        .format("%Y-%m-%d")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_client_shapes() {
        let expected = 1_426_551_520;
        assert_eq!(parse("2015-03-17T00:18:40Z"), Some(expected));
        assert_eq!(parse("2015-03-17T00:18:40+0000"), Some(expected));
        assert_eq!(parse("2015-03-17T01:18:40+01:00"), Some(expected));
        assert_eq!(parse("2015-03-17T00:18:40.000Z"), Some(expected));
        assert_eq!(parse("2015-03-17T00:18:40"), Some(expected));
        assert_eq!(parse("not a date"), None);
        assert_eq!(format(expected), "2015-03-17T00:18:40Z");
    }
}
