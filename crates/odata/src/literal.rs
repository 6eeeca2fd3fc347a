//! OData v4 primitive literals as Dataverse accepts them in `$filter`, keys and function parameters.

use std::fmt;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde_json::Value;
use uuid::Uuid;
use winnow::combinator::{alt, cut_err, delimited, not, opt, preceded, repeat, terminated};
use winnow::error::{StrContext, StrContextValue};
use winnow::prelude::*;
use winnow::stream::LocatingSlice;
use winnow::token::{one_of, take_while};

use crate::error::{ODataError, char_position};

/// Parser input: the text plus its offset, so errors can report ODataLib's positions.
pub(crate) type Input<'a> = LocatingSlice<&'a str>;

/// Label on the string-literal parser so the caller can report an unterminated string.
pub(crate) const UNTERMINATED_STRING: &str = "unterminated string literal";

/// A primitive OData literal.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// Integer without fraction or exponent that fits in 64 bits.
    Int(i64),
    /// Any other number (`1.5`, `1e3`, `12.5M`).
    Decimal(f64),
    /// `'text'` with `''` as the escaped quote.
    String(String),
    /// Bare `00000000-0000-0000-0000-000000000000`.
    Guid(Uuid),
    /// `2021-04-28T15:19:30Z`, optional fractional seconds and offset; normalised to UTC.
    DateTimeOffset(DateTime<Utc>),
    /// `2021-04-28`
    Date(NaiveDate),
}

impl Literal {
    /// Parses a complete literal, e.g. a parameter alias value or a key value.
    pub fn parse(text: &str) -> Result<Literal, ODataError> {
        let trimmed = text.trim_matches(|c| c == ' ' || c == '\t');
        literal.parse(LocatingSlice::new(trimmed)).map_err(|e| {
            let pos = char_position(trimmed, e.offset());
            if e.inner()
                .context()
                .any(|c| matches!(c, StrContext::Label(l) if *l == UNTERMINATED_STRING))
            {
                ODataError::query(format!(
                    "There is an unterminated string literal at position {pos} in '{trimmed}'."
                ))
            } else {
                ODataError::syntax_error(pos, trimmed)
            }
        })
    }

    /// The JSON value a row would hold for this literal (dates as `YYYY-MM-DDTHH:MM:SSZ`, GUIDs lowercase).
    pub fn to_json(&self) -> Value {
        match self {
            Literal::Null => Value::Null,
            Literal::Bool(b) => Value::Bool(*b),
            Literal::Int(i) => Value::from(*i),
            Literal::Decimal(d) => {
                serde_json::Number::from_f64(*d).map_or(Value::Null, Value::Number)
            }
            Literal::String(s) => Value::String(s.clone()),
            Literal::Guid(g) => Value::String(g.hyphenated().to_string()),
            Literal::DateTimeOffset(d) => {
                Value::String(d.to_rfc3339_opts(SecondsFormat::AutoSi, true))
            }
            Literal::Date(d) => Value::String(d.format("%Y-%m-%d").to_string()),
        }
    }

    /// The literal as a plain string when it is textual (strings, GUIDs, dates), for key lookups.
    pub fn as_text(&self) -> Option<String> {
        match self {
            Literal::String(s) => Some(s.clone()),
            Literal::Guid(_) | Literal::DateTimeOffset(_) | Literal::Date(_) => {
                self.to_json().as_str().map(str::to_owned)
            }
            _ => None,
        }
    }
}

/// Renders OData literal syntax (strings quoted with `''` escaping), the inverse of [`Literal::parse`].
impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Null => f.write_str("null"),
            Literal::Bool(b) => write!(f, "{b}"),
            Literal::Int(i) => write!(f, "{i}"),
            Literal::Decimal(d) => write!(f, "{d:?}"),
            Literal::String(s) => write!(f, "'{}'", s.replace('\'', "''")),
            Literal::Guid(g) => write!(f, "{}", g.hyphenated()),
            Literal::DateTimeOffset(d) => {
                f.write_str(&d.to_rfc3339_opts(SecondsFormat::AutoSi, true))
            }
            Literal::Date(d) => write!(f, "{}", d.format("%Y-%m-%d")),
        }
    }
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// A keyword that is not the prefix of a longer identifier (`null` but not `nullable`).
pub(crate) fn keyword<'a>(
    word: &'static str,
) -> impl Parser<Input<'a>, &'a str, winnow::error::ErrMode<winnow::error::ContextError>> {
    terminated(word, not(one_of(is_ident_char)))
}

/// Any literal, most specific syntax first (a GUID or date also starts with digits).
pub(crate) fn literal(i: &mut Input<'_>) -> ModalResult<Literal> {
    alt((
        keyword("null").value(Literal::Null),
        keyword("true").value(Literal::Bool(true)),
        keyword("false").value(Literal::Bool(false)),
        string.map(Literal::String),
        guid.map(Literal::Guid),
        datetime_offset.map(Literal::DateTimeOffset),
        date.map(Literal::Date),
        number,
    ))
    .parse_next(i)
}

/// `'...'` with `''` escapes; unterminated strings fail with a cut so the position is reported.
pub(crate) fn string(i: &mut Input<'_>) -> ModalResult<String> {
    preceded(
        '\'',
        cut_err(terminated(
            repeat(0.., alt(("''".value('\''), one_of(|c| c != '\'')))).fold(
                String::new,
                |mut s, c| {
                    s.push(c);
                    s
                },
            ),
            '\'',
        ))
        .context(StrContext::Label(UNTERMINATED_STRING)),
    )
    .parse_next(i)
}

fn hex<'a>(
    n: usize,
) -> impl Parser<Input<'a>, &'a str, winnow::error::ErrMode<winnow::error::ContextError>> {
    take_while(n, |c: char| c.is_ascii_hexdigit())
}

pub(crate) fn guid(i: &mut Input<'_>) -> ModalResult<Uuid> {
    terminated(
        (hex(8), '-', hex(4), '-', hex(4), '-', hex(4), '-', hex(12)).take(),
        not(one_of(is_ident_char)),
    )
    .try_map(|s: &str| Uuid::parse_str(s))
    .parse_next(i)
}

fn digits<'a>(
    n: impl Into<winnow::stream::Range>,
) -> impl Parser<Input<'a>, &'a str, winnow::error::ErrMode<winnow::error::ContextError>> {
    take_while(n, |c: char| c.is_ascii_digit())
}

fn date_text<'a>(i: &mut Input<'a>) -> ModalResult<&'a str> {
    (opt('-'), digits(4), '-', digits(2), '-', digits(2))
        .take()
        .parse_next(i)
}

fn date(i: &mut Input<'_>) -> ModalResult<NaiveDate> {
    terminated(
        date_text,
        not(one_of(|c: char| is_ident_char(c) || c == ':' || c == '.')),
    )
    .try_map(|s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d"))
    .parse_next(i)
}

fn datetime_offset(i: &mut Input<'_>) -> ModalResult<DateTime<Utc>> {
    let text = (
        date_text,
        one_of(['T', 't']),
        digits(2),
        ':',
        digits(2),
        opt((':', digits(2), opt(('.', digits(1..=12))))),
        alt((
            one_of(['Z', 'z']).void(),
            (one_of(['+', '-']), digits(2), ':', digits(2)).void(),
        )),
    )
        .take()
        .parse_next(i)?;
    not(one_of(is_ident_char)).parse_next(i)?;
    parse_instant(text).ok_or_else(|| {
        winnow::error::ErrMode::Backtrack(
            winnow::error::ContextError::new().add_expected("datetimeoffset"),
        )
    })
}

trait AddExpected {
    fn add_expected(self, what: &'static str) -> Self;
}

impl AddExpected for winnow::error::ContextError {
    fn add_expected(mut self, what: &'static str) -> Self {
        self.push(StrContext::Expected(StrContextValue::Description(what)));
        self
    }
}

/// Parses the instant forms OData and Dataverse rows use (`Z`, offsets, optional seconds/fraction).
pub(crate) fn parse_instant(text: &str) -> Option<DateTime<Utc>> {
    let normalised = text.replace(['t'], "T").replace('z', "Z");
    if let Ok(d) = DateTime::parse_from_rfc3339(&normalised) {
        return Some(d.with_timezone(&Utc));
    }
    // Without seconds: `2021-04-28T15:19Z`.
    for fmt in ["%Y-%m-%dT%H:%M%#z", "%Y-%m-%dT%H:%MZ"] {
        if let Ok(d) = DateTime::parse_from_str(&normalised, fmt) {
            return Some(d.with_timezone(&Utc));
        }
        if let Ok(d) = chrono::NaiveDateTime::parse_from_str(&normalised, fmt) {
            return Some(d.and_utc());
        }
    }
    None
}

fn number(i: &mut Input<'_>) -> ModalResult<Literal> {
    let (text, suffix) = (
        (
            opt(one_of(['-', '+'])),
            digits(1..),
            opt(('.', digits(1..))),
            opt((one_of(['e', 'E']), opt(one_of(['-', '+'])), digits(1..))),
        )
            .take(),
        terminated(
            opt(one_of(['m', 'M', 'd', 'D', 'f', 'F', 'l', 'L'])),
            not(one_of(is_ident_char)),
        ),
    )
        .parse_next(i)?;
    let is_integral = !text.contains(['.', 'e', 'E'])
        && !matches!(suffix, Some('m' | 'M' | 'd' | 'D' | 'f' | 'F'));
    if is_integral && let Ok(v) = text.parse::<i64>() {
        return Ok(Literal::Int(v));
    }
    text.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .map(Literal::Decimal)
        .ok_or_else(|| {
            winnow::error::ErrMode::Backtrack(
                winnow::error::ContextError::new().add_expected("number"),
            )
        })
}

/// A JSON-style or OData-style collection of literals: `["a","b"]`, `['a','b']`, `[1,2]`.
pub(crate) fn literal_list(i: &mut Input<'_>) -> ModalResult<Vec<Literal>> {
    let ws = || take_while(0.., [' ', '\t']);
    delimited(
        ('[', ws()),
        winnow::combinator::separated(
            0..,
            delimited(ws(), alt((json_string.map(Literal::String), literal)), ws()),
            ',',
        ),
        (ws(), ']'),
    )
    .parse_next(i)
}

/// A double-quoted JSON string (Dataverse accepts these inside `PropertyValues=[...]`).
fn json_string(i: &mut Input<'_>) -> ModalResult<String> {
    let raw = (
        '"',
        repeat::<_, _, (), _, _>(
            0..,
            alt((
                ('\\', winnow::token::any).void(),
                one_of(|c| c != '"' && c != '\\').void(),
            )),
        ),
        '"',
    )
        .take()
        .parse_next(i)?;
    serde_json::from_str::<String>(raw).map_err(|_| {
        winnow::error::ErrMode::Backtrack(
            winnow::error::ContextError::new().add_expected("json string"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn guid(s: &str) -> Literal {
        Literal::Guid(Uuid::parse_str(s).unwrap())
    }

    #[test]
    fn parses_every_literal_form() {
        let cases: Vec<(&str, Literal)> = vec![
            ("null", Literal::Null),
            ("true", Literal::Bool(true)),
            ("false", Literal::Bool(false)),
            ("0", Literal::Int(0)),
            ("42", Literal::Int(42)),
            ("-17", Literal::Int(-17)),
            ("1.5", Literal::Decimal(1.5)),
            ("-0.25", Literal::Decimal(-0.25)),
            ("1.5M", Literal::Decimal(1.5)),
            ("10m", Literal::Decimal(10.0)),
            ("2e3", Literal::Decimal(2000.0)),
            ("12L", Literal::Int(12)),
            ("99999999999999999999", Literal::Decimal(1e20)),
            ("'abc'", Literal::String("abc".into())),
            ("''", Literal::String(String::new())),
            ("'O''Neil'", Literal::String("O'Neil".into())),
            ("'a b%_[x]'", Literal::String("a b%_[x]".into())),
            ("'é€'", Literal::String("é€".into())),
            (
                "5d2cc2a2-0f62-4ae3-9a1e-1b3c4d5e6f70",
                guid("5d2cc2a2-0f62-4ae3-9a1e-1b3c4d5e6f70"),
            ),
            (
                "5D2CC2A2-0F62-4AE3-9A1E-1B3C4D5E6F70",
                guid("5d2cc2a2-0f62-4ae3-9a1e-1b3c4d5e6f70"),
            ),
            (
                "2021-04-28",
                Literal::Date(NaiveDate::from_ymd_opt(2021, 4, 28).unwrap()),
            ),
            (
                "2021-04-28T15:19:30Z",
                Literal::DateTimeOffset(Utc.with_ymd_and_hms(2021, 4, 28, 15, 19, 30).unwrap()),
            ),
            (
                "2021-04-28T15:19:30.5Z",
                Literal::DateTimeOffset(
                    Utc.with_ymd_and_hms(2021, 4, 28, 15, 19, 30).unwrap()
                        + chrono::Duration::milliseconds(500),
                ),
            ),
            (
                "2021-04-28T17:19:30+02:00",
                Literal::DateTimeOffset(Utc.with_ymd_and_hms(2021, 4, 28, 15, 19, 30).unwrap()),
            ),
            (
                "2021-04-28T10:19:30-05:00",
                Literal::DateTimeOffset(Utc.with_ymd_and_hms(2021, 4, 28, 15, 19, 30).unwrap()),
            ),
            (
                "2021-04-28T15:19Z",
                Literal::DateTimeOffset(Utc.with_ymd_and_hms(2021, 4, 28, 15, 19, 0).unwrap()),
            ),
            ("  7 ", Literal::Int(7)),
        ];
        for (text, expected) in cases {
            assert_eq!(Literal::parse(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn rejects_malformed_literals_with_positions() {
        let cases = [
            (
                "'abc",
                "There is an unterminated string literal at position 4 in ''abc'.",
            ),
            ("abc", "Syntax error at position 0 in 'abc'."),
            ("12abc", "Syntax error at position 2 in '12abc'."),
            ("2021-13-45", "Syntax error at position 4 in '2021-13-45'."),
            ("nullable", "Syntax error at position 0 in 'nullable'."),
            ("'a' 'b'", "Syntax error at position 3 in ''a' 'b''."),
            ("", "Syntax error at position 0 in ''."),
        ];
        for (text, message) in cases {
            let err = Literal::parse(text).unwrap_err();
            assert_eq!(err.message, message, "{text}");
            assert_eq!(err.code, "0x80060888");
            assert_eq!(err.status, 400);
        }
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "null",
            "true",
            "42",
            "1.5",
            "'O''Neil'",
            "5d2cc2a2-0f62-4ae3-9a1e-1b3c4d5e6f70",
            "2021-04-28",
            "2021-04-28T15:19:30Z",
        ] {
            let lit = Literal::parse(text).unwrap();
            assert_eq!(lit.to_string(), text);
            assert_eq!(Literal::parse(&lit.to_string()).unwrap(), lit);
        }
    }

    #[test]
    fn json_forms_match_stored_rows() {
        assert_eq!(
            Literal::parse("2021-04-28T17:19:30+02:00")
                .unwrap()
                .to_json(),
            "2021-04-28T15:19:30Z"
        );
        assert_eq!(
            Literal::parse("5D2CC2A2-0F62-4AE3-9A1E-1B3C4D5E6F70")
                .unwrap()
                .to_json(),
            "5d2cc2a2-0f62-4ae3-9a1e-1b3c4d5e6f70"
        );
        assert_eq!(Literal::Int(3).to_json(), 3);
        assert_eq!(Literal::String("x".into()).as_text().as_deref(), Some("x"));
        assert_eq!(Literal::Int(3).as_text(), None);
    }

    #[test]
    fn lists_accept_json_and_odata_strings() {
        let mut input = LocatingSlice::new(r#"["a", 'b', 3, "c\"d"]"#);
        assert_eq!(
            literal_list(&mut input).unwrap(),
            vec![
                Literal::String("a".into()),
                Literal::String("b".into()),
                Literal::Int(3),
                Literal::String("c\"d".into())
            ]
        );
    }
}
