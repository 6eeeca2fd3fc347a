//! Value comparison with Dataverse (SQL Server) semantics, shared by `$filter` evaluation and `$orderby`.
//!
//! Rows hold JSON: strings compare case-insensitively, GUID and date strings compare as GUIDs/instants when
//! the other side is one, numbers compare numerically across integer/float, and null is smaller than
//! everything for sorting but incomparable for `gt`/`ge`/`lt`/`le`.

use std::cmp::Ordering;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::literal::{Literal, parse_instant};

/// A value reduced to what comparison needs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Num(f64),
    Text(&'a str),
    Guid(Uuid),
    Instant(DateTime<Utc>),
    Date(NaiveDate),
    /// Arrays/objects: never equal to anything.
    Other,
}

impl<'a> Scalar<'a> {
    pub(crate) fn from_json(v: Option<&'a Value>) -> Scalar<'a> {
        match v {
            None | Some(Value::Null) => Scalar::Null,
            Some(Value::Bool(b)) => Scalar::Bool(*b),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(i) => Scalar::Int(i),
                None => n.as_f64().map_or(Scalar::Other, Scalar::Num),
            },
            Some(Value::String(s)) => Scalar::Text(s),
            Some(_) => Scalar::Other,
        }
    }

    pub(crate) fn from_literal(l: &'a Literal) -> Scalar<'a> {
        match l {
            Literal::Null => Scalar::Null,
            Literal::Bool(b) => Scalar::Bool(*b),
            Literal::Int(i) => Scalar::Int(*i),
            Literal::Decimal(d) => Scalar::Num(*d),
            Literal::String(s) => Scalar::Text(s),
            Literal::Guid(g) => Scalar::Guid(*g),
            Literal::DateTimeOffset(d) => Scalar::Instant(*d),
            Literal::Date(d) => Scalar::Date(*d),
        }
    }

    pub(crate) fn is_null(&self) -> bool {
        matches!(self, Scalar::Null)
    }

    /// The value as an instant when it is one or a text/date that reads as one (dates at midnight UTC).
    pub(crate) fn as_instant(&self) -> Option<DateTime<Utc>> {
        match self {
            Scalar::Instant(d) => Some(*d),
            Scalar::Date(d) => d.and_hms_opt(0, 0, 0).map(|n| n.and_utc()),
            Scalar::Text(t) => text_instant(t),
            _ => None,
        }
    }

    /// The value as a calendar date (UTC).
    pub(crate) fn as_date(&self) -> Option<NaiveDate> {
        match self {
            Scalar::Date(d) => Some(*d),
            Scalar::Text(t) => NaiveDate::parse_from_str(t, "%Y-%m-%d")
                .ok()
                .or_else(|| text_instant(t).map(|i| i.date_naive())),
            other => other.as_instant().map(|i| i.date_naive()),
        }
    }

    pub(crate) fn as_guid(&self) -> Option<Uuid> {
        match self {
            Scalar::Guid(g) => Some(*g),
            Scalar::Text(t) => Uuid::parse_str(t.trim_matches(|c| c == '{' || c == '}')).ok(),
            _ => None,
        }
    }

    pub(crate) fn as_f64(&self) -> Option<f64> {
        match self {
            Scalar::Int(i) => Some(*i as f64),
            Scalar::Num(n) => Some(*n),
            Scalar::Text(t) => t.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
            _ => None,
        }
    }

    /// Text form used by `contains`/`startswith`/`endswith` on non-string columns.
    pub(crate) fn as_text(&self) -> Option<String> {
        match self {
            Scalar::Text(t) => Some((*t).to_owned()),
            Scalar::Int(i) => Some(i.to_string()),
            Scalar::Num(n) => Some(n.to_string()),
            Scalar::Bool(b) => Some(if *b { "1" } else { "0" }.to_owned()),
            Scalar::Guid(g) => Some(g.hyphenated().to_string()),
            _ => None,
        }
    }
}

fn text_instant(t: &str) -> Option<DateTime<Utc>> {
    // Cheap shape check first: most text columns are not dates.
    let b = t.as_bytes();
    if b.len() < 10 || !b[0].is_ascii_digit() || b.get(4) != Some(&b'-') {
        return None;
    }
    if b.len() == 10 {
        return NaiveDate::parse_from_str(t, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|n| n.and_utc());
    }
    parse_instant(t)
}

fn caseless_cmp(a: &str, b: &str) -> Ordering {
    if a.is_ascii() && b.is_ascii() {
        return a
            .bytes()
            .map(|c| c.to_ascii_lowercase())
            .cmp(b.bytes().map(|c| c.to_ascii_lowercase()));
    }
    a.chars()
        .flat_map(char::to_lowercase)
        .cmp(b.chars().flat_map(char::to_lowercase))
}

/// Orders two non-null scalars; `None` when they are of incomparable kinds.
pub(crate) fn compare(a: &Scalar<'_>, b: &Scalar<'_>) -> Option<Ordering> {
    use Scalar::*;
    match (a, b) {
        (Null, Null) => Some(Ordering::Equal),
        (Null, _) | (_, Null) | (Other, _) | (_, Other) => None,
        (Bool(x), Bool(y)) => Some(x.cmp(y)),
        (Int(x), Int(y)) => Some(x.cmp(y)),
        (Int(_) | Num(_), Int(_) | Num(_)) => a.as_f64()?.partial_cmp(&b.as_f64()?),
        (Guid(x), Guid(y)) => Some(x.cmp(y)),
        (Guid(_), Text(_)) | (Text(_), Guid(_)) => Some(a.as_guid()?.cmp(&b.as_guid()?)),
        (Date(_), Date(_) | Text(_) | Instant(_)) | (Text(_) | Instant(_), Date(_)) => {
            Some(a.as_date()?.cmp(&b.as_date()?))
        }
        (Instant(_), Instant(_) | Text(_)) | (Text(_), Instant(_)) => {
            Some(a.as_instant()?.cmp(&b.as_instant()?))
        }
        (Int(_) | Num(_), Text(_)) | (Text(_), Int(_) | Num(_)) => {
            a.as_f64()?.partial_cmp(&b.as_f64()?)
        }
        (Text(x), Text(y)) => match (text_instant(x), text_instant(y)) {
            (Some(ix), Some(iy)) => Some(ix.cmp(&iy)),
            _ => Some(caseless_cmp(x, y)),
        },
        _ => None,
    }
}

/// `eq` semantics: null equals only null; incomparable kinds are unequal.
pub(crate) fn equals(a: &Scalar<'_>, b: &Scalar<'_>) -> bool {
    compare(a, b) == Some(Ordering::Equal)
}

fn kind_rank(s: &Scalar<'_>) -> u8 {
    match s {
        Scalar::Null => 0,
        Scalar::Bool(_) => 1,
        Scalar::Int(_) | Scalar::Num(_) => 2,
        Scalar::Instant(_) | Scalar::Date(_) => 3,
        Scalar::Guid(_) => 4,
        Scalar::Text(_) => 5,
        Scalar::Other => 6,
    }
}

/// Total order for sorting: nulls first (SQL Server ascending), then [`compare`], then by kind.
pub(crate) fn sort_order(a: &Scalar<'_>, b: &Scalar<'_>) -> Ordering {
    match (a.is_null(), b.is_null()) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Less,
        (false, true) => return Ordering::Greater,
        _ => {}
    }
    compare(a, b).unwrap_or_else(|| kind_rank(a).cmp(&kind_rank(b)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn s(v: &Value) -> Scalar<'_> {
        Scalar::from_json(Some(v))
    }

    #[test]
    fn comparison_table() {
        let g = Literal::parse("5D2CC2A2-0F62-4AE3-9A1E-1B3C4D5E6F70").unwrap();
        let d = Literal::parse("2021-04-28T15:19:30Z").unwrap();
        let day = Literal::parse("2021-04-28").unwrap();
        let cases: Vec<(Value, Scalar<'_>, Option<Ordering>)> = vec![
            (json!("ABC"), Scalar::Text("abc"), Some(Ordering::Equal)),
            (json!("abd"), Scalar::Text("ABC"), Some(Ordering::Greater)),
            (json!(3), Scalar::Num(3.0), Some(Ordering::Equal)),
            (json!(2.5), Scalar::Int(3), Some(Ordering::Less)),
            (
                json!(i64::MAX),
                Scalar::Int(i64::MAX - 1),
                Some(Ordering::Greater),
            ),
            (json!(true), Scalar::Bool(true), Some(Ordering::Equal)),
            (
                json!("5d2cc2a2-0f62-4ae3-9a1e-1b3c4d5e6f70"),
                Scalar::from_literal(&g),
                Some(Ordering::Equal),
            ),
            (json!("not-a-guid"), Scalar::from_literal(&g), None),
            (
                json!("2021-04-28T15:19:31Z"),
                Scalar::from_literal(&d),
                Some(Ordering::Greater),
            ),
            (
                json!("2021-04-28T15:19:30Z"),
                Scalar::Text("2021-04-28T17:19:30+02:00"),
                Some(Ordering::Equal),
            ),
            (
                json!("2021-04-28T23:59:59Z"),
                Scalar::from_literal(&day),
                Some(Ordering::Equal),
            ),
            (
                json!("2021-04-27T23:59:59Z"),
                Scalar::from_literal(&day),
                Some(Ordering::Less),
            ),
            (json!("12"), Scalar::Int(12), Some(Ordering::Equal)),
            (json!(null), Scalar::Int(1), None),
            (json!(null), Scalar::Null, Some(Ordering::Equal)),
            (json!([1]), Scalar::Int(1), None),
            (json!(true), Scalar::Int(1), None),
        ];
        for (value, other, expected) in &cases {
            assert_eq!(compare(&s(value), other), *expected, "{value} vs {other:?}");
        }
    }

    #[test]
    fn sorting_puts_nulls_first() {
        let mut values = [json!("b"), json!(null), json!("A"), json!(1)];
        values.sort_by(|a, b| sort_order(&s(a), &s(b)));
        assert_eq!(values, [json!(null), json!(1), json!("A"), json!("b")]);
    }
}
