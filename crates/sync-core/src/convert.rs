//! Type conversion between Dataverse attribute values and Marketo field values.
//!
//! Every value goes through a neutral [`Scalar`]: decoded with the source side's field type, encoded with the
//! target side's. The same decoding normalises values for fingerprints, so `"42"` (how Marketo activities
//! report numbers) and `42` (how the REST API returns them) are the same value.

use std::fmt;

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Number, Value};
use uuid::Uuid;

use crate::record::CrmEntity;

/// One option of a Dataverse choice (option set) attribute.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptionValue {
    pub value: i64,
    pub label: String,
}

/// A Dataverse attribute type, as far as conversion cares (from `AttributeMetadata`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CrmFieldType {
    /// String or Memo, with `MaxLength` when known.
    String { max_length: Option<usize> },
    /// Picklist, State or Status: integer values with labels.
    Choice { options: Vec<OptionValue> },
    /// Two Options.
    Boolean,
    /// Whole number (Edm.Int32).
    Integer,
    /// Edm.Int64.
    BigInt,
    /// Decimal, Double or Money.
    Decimal,
    /// Date and time (UTC on the wire).
    DateTime,
    /// Date only (`yyyy-MM-dd`).
    DateOnly,
    /// Uniqueidentifier or a lookup's `_x_value`.
    Guid,
}

/// A Marketo field `dataType` (from describe).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MarketoFieldType {
    /// string, email, phone, url, text, textarea…, with `length` when known.
    String {
        max_length: Option<usize>,
    },
    Boolean,
    /// integer, score, reference.
    Integer,
    /// float, currency, percent.
    Float,
    Date,
    DateTime,
}

impl MarketoFieldType {
    /// Maps a describe `dataType` and `length` to a conversion type.
    pub fn from_describe(data_type: &str, length: Option<usize>) -> MarketoFieldType {
        match data_type.to_ascii_lowercase().as_str() {
            "boolean" => MarketoFieldType::Boolean,
            "integer" | "score" | "reference" => MarketoFieldType::Integer,
            "float" | "currency" | "percent" => MarketoFieldType::Float,
            "date" => MarketoFieldType::Date,
            "datetime" => MarketoFieldType::DateTime,
            "text" | "textarea" => MarketoFieldType::String { max_length: None },
            _ => MarketoFieldType::String { max_length: length },
        }
    }
}

/// A value decoded from either side, before encoding for the other.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    Null,
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Date(NaiveDate),
    DateTime(DateTime<Utc>),
    /// A choice value with its label when the metadata has it.
    Choice {
        value: i64,
        label: Option<String>,
    },
}

impl Scalar {
    /// A canonical JSON form, used for fingerprints and cross-side equality.
    pub fn canonical(&self) -> Value {
        match self {
            Scalar::Null => Value::Null,
            Scalar::Text(s) => Value::String(s.clone()),
            Scalar::Int(i) => Value::from(*i),
            Scalar::Float(f) => float_value(*f),
            Scalar::Bool(b) => Value::Bool(*b),
            Scalar::Date(d) => Value::String(d.format("%Y-%m-%d").to_string()),
            Scalar::DateTime(dt) => Value::String(dt.to_rfc3339_opts(SecondsFormat::Secs, true)),
            Scalar::Choice { value, .. } => Value::from(*value),
        }
    }

    pub fn is_empty(&self) -> bool {
        matches!(self, Scalar::Null) || matches!(self, Scalar::Text(s) if s.is_empty())
    }
}

/// Floats that are whole numbers become integers so that `5`, `5.0` and `"5"` agree.
fn float_value(f: f64) -> Value {
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        Value::from(f as i64)
    } else {
        Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)
    }
}

/// Why a value does not fit.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ConvertCause {
    #[error("value is {actual} characters long, the target holds at most {max}")]
    TooLong { max: usize, actual: usize },
    #[error("{0} is not a number")]
    NotANumber(String),
    #[error("{value} is out of range ({min}..={max})")]
    OutOfRange { value: String, min: i64, max: i64 },
    #[error("{0} is not a whole number")]
    NotWhole(String),
    #[error("{0} is not a boolean")]
    NotABoolean(String),
    #[error("{0} is not a date (yyyy-mm-dd)")]
    BadDate(String),
    #[error("{0} is not a date-time (ISO 8601)")]
    BadDateTime(String),
    #[error("{0:?} is not one of the option set's labels or values")]
    UnknownOption(String),
    #[error("{0} is not a GUID")]
    BadGuid(String),
    #[error("a {0} value cannot be stored in this field")]
    Incompatible(&'static str),
}

/// Which record a conversion error belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordRef {
    Crm(Uuid),
    Marketo(i64),
}

impl fmt::Display for RecordRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordRef::Crm(id) => write!(f, "{id}"),
            RecordRef::Marketo(id) => write!(f, "Marketo person {id}"),
        }
    }
}

/// A value of one record's field that could not be converted; the record goes to the dead-letter list.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{entity} {record}: field `{field}`: {cause}")]
pub struct ConvertError {
    pub entity: CrmEntity,
    pub record: RecordRef,
    pub field: String,
    pub cause: ConvertCause,
}

fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(d) = DateTime::parse_from_rfc3339(s) {
        return Some(d.with_timezone(&Utc));
    }
    // Marketo also writes `+0000` offsets and sometimes no offset at all (UTC).
    if let Ok(d) = DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%z") {
        return Some(d.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"] {
        if let Ok(n) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(n.and_utc());
        }
    }
    None
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

fn number_of(v: &Value) -> Result<f64, ConvertCause> {
    match v {
        Value::Number(n) => n
            .as_f64()
            .ok_or_else(|| ConvertCause::NotANumber(n.to_string())),
        Value::String(s) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .ok_or_else(|| ConvertCause::NotANumber(describe(v))),
        Value::Bool(b) => Ok(if *b { 1.0 } else { 0.0 }),
        _ => Err(ConvertCause::NotANumber(describe(v))),
    }
}

fn int_of(v: &Value) -> Result<i64, ConvertCause> {
    if let Some(i) = v.as_i64() {
        return Ok(i);
    }
    if let Value::String(s) = v
        && let Ok(i) = s.trim().parse::<i64>()
    {
        return Ok(i);
    }
    let f = number_of(v)?;
    if f.fract() != 0.0 {
        return Err(ConvertCause::NotWhole(describe(v)));
    }
    if f.abs() >= 9.2e18 {
        return Err(ConvertCause::OutOfRange {
            value: describe(v),
            min: i64::MIN,
            max: i64::MAX,
        });
    }
    Ok(f as i64)
}

/// Text of a JSON value for string targets (numbers and booleans in their JSON spelling).
fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn is_nullish(v: &Value) -> bool {
    matches!(v, Value::Null) || matches!(v, Value::String(s) if s.is_empty())
}

/// Decodes a Dataverse attribute value.
pub fn decode_crm(v: &Value, ty: &CrmFieldType) -> Result<Scalar, ConvertCause> {
    if is_nullish(v) {
        return Ok(Scalar::Null);
    }
    Ok(match ty {
        CrmFieldType::String { .. } => Scalar::Text(text_of(v)),
        CrmFieldType::Choice { options } => {
            let value = int_of(v)?;
            Scalar::Choice {
                value,
                label: options
                    .iter()
                    .find(|o| o.value == value)
                    .map(|o| o.label.clone()),
            }
        }
        CrmFieldType::Boolean => Scalar::Bool(match v {
            Value::Bool(b) => *b,
            Value::String(s) => {
                parse_bool(s).ok_or_else(|| ConvertCause::NotABoolean(describe(v)))?
            }
            Value::Number(n) => n
                .as_i64()
                .map(|i| i != 0)
                .ok_or_else(|| ConvertCause::NotABoolean(describe(v)))?,
            _ => return Err(ConvertCause::NotABoolean(describe(v))),
        }),
        CrmFieldType::Integer | CrmFieldType::BigInt => Scalar::Int(int_of(v)?),
        CrmFieldType::Decimal => Scalar::Float(number_of(v)?),
        CrmFieldType::DateTime => match v {
            Value::String(s) => Scalar::DateTime(
                parse_datetime(s).ok_or_else(|| ConvertCause::BadDateTime(describe(v)))?,
            ),
            _ => return Err(ConvertCause::BadDateTime(describe(v))),
        },
        CrmFieldType::DateOnly => match v {
            Value::String(s) => Scalar::Date(
                NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .ok()
                    .or_else(|| parse_datetime(s).map(|d| d.date_naive()))
                    .ok_or_else(|| ConvertCause::BadDate(describe(v)))?,
            ),
            _ => return Err(ConvertCause::BadDate(describe(v))),
        },
        CrmFieldType::Guid => match v {
            Value::String(s) => Scalar::Text(
                Uuid::parse_str(s)
                    .map_err(|_| ConvertCause::BadGuid(describe(v)))?
                    .to_string(),
            ),
            _ => return Err(ConvertCause::BadGuid(describe(v))),
        },
    })
}

/// Decodes a Marketo field value (typed REST JSON or the strings of lead-change activities).
pub fn decode_marketo(v: &Value, ty: &MarketoFieldType) -> Result<Scalar, ConvertCause> {
    if is_nullish(v) {
        return Ok(Scalar::Null);
    }
    Ok(match ty {
        MarketoFieldType::String { .. } => Scalar::Text(text_of(v)),
        MarketoFieldType::Boolean => Scalar::Bool(match v {
            Value::Bool(b) => *b,
            Value::String(s) => {
                parse_bool(s).ok_or_else(|| ConvertCause::NotABoolean(describe(v)))?
            }
            Value::Number(n) => n
                .as_i64()
                .map(|i| i != 0)
                .ok_or_else(|| ConvertCause::NotABoolean(describe(v)))?,
            _ => return Err(ConvertCause::NotABoolean(describe(v))),
        }),
        MarketoFieldType::Integer => Scalar::Int(int_of(v)?),
        MarketoFieldType::Float => Scalar::Float(number_of(v)?),
        MarketoFieldType::Date => match v {
            Value::String(s) => Scalar::Date(
                NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .ok()
                    .or_else(|| parse_datetime(s).map(|d| d.date_naive()))
                    .ok_or_else(|| ConvertCause::BadDate(describe(v)))?,
            ),
            _ => return Err(ConvertCause::BadDate(describe(v))),
        },
        MarketoFieldType::DateTime => match v {
            Value::String(s) => Scalar::DateTime(
                parse_datetime(s).ok_or_else(|| ConvertCause::BadDateTime(describe(v)))?,
            ),
            _ => return Err(ConvertCause::BadDateTime(describe(v))),
        },
    })
}

fn check_len(s: String, max: Option<usize>) -> Result<Value, ConvertCause> {
    let actual = s.chars().count();
    match max {
        Some(max) if actual > max => Err(ConvertCause::TooLong { max, actual }),
        _ => Ok(Value::String(s)),
    }
}

/// Text spelling of a scalar for string targets: choice labels, ISO dates, plain numbers.
fn scalar_text(s: &Scalar) -> String {
    match s {
        Scalar::Null => String::new(),
        Scalar::Text(t) => t.clone(),
        Scalar::Choice { value, label } => label.clone().unwrap_or_else(|| value.to_string()),
        other => text_of(&other.canonical()),
    }
}

fn scalar_int(s: &Scalar) -> Result<i64, ConvertCause> {
    match s {
        Scalar::Int(i) | Scalar::Choice { value: i, .. } => Ok(*i),
        Scalar::Bool(b) => Ok(i64::from(*b)),
        Scalar::Float(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Ok(*f as i64),
        Scalar::Float(f) => Err(ConvertCause::NotWhole(f.to_string())),
        Scalar::Text(t) => int_of(&Value::String(t.clone())),
        Scalar::Date(_) | Scalar::DateTime(_) => Err(ConvertCause::Incompatible("date")),
        Scalar::Null => Err(ConvertCause::Incompatible("null")),
    }
}

fn scalar_float(s: &Scalar) -> Result<f64, ConvertCause> {
    match s {
        Scalar::Float(f) => Ok(*f),
        Scalar::Int(i) | Scalar::Choice { value: i, .. } => Ok(*i as f64),
        Scalar::Bool(b) => Ok(if *b { 1.0 } else { 0.0 }),
        Scalar::Text(t) => number_of(&Value::String(t.clone())),
        Scalar::Date(_) | Scalar::DateTime(_) => Err(ConvertCause::Incompatible("date")),
        Scalar::Null => Err(ConvertCause::Incompatible("null")),
    }
}

fn scalar_bool(s: &Scalar) -> Result<bool, ConvertCause> {
    match s {
        Scalar::Bool(b) => Ok(*b),
        Scalar::Int(i) | Scalar::Choice { value: i, .. } => match i {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(ConvertCause::NotABoolean(i.to_string())),
        },
        Scalar::Text(t) => parse_bool(t).ok_or_else(|| ConvertCause::NotABoolean(format!("{t:?}"))),
        Scalar::Float(f) => Err(ConvertCause::NotABoolean(f.to_string())),
        Scalar::Date(_) | Scalar::DateTime(_) => Err(ConvertCause::Incompatible("date")),
        Scalar::Null => Err(ConvertCause::Incompatible("null")),
    }
}

fn scalar_datetime(s: &Scalar) -> Result<DateTime<Utc>, ConvertCause> {
    match s {
        Scalar::DateTime(d) => Ok(*d),
        Scalar::Date(d) => Ok(d
            .and_hms_opt(0, 0, 0)
            .map(|n| n.and_utc())
            .unwrap_or_default()),
        Scalar::Text(t) => {
            parse_datetime(t).ok_or_else(|| ConvertCause::BadDateTime(format!("{t:?}")))
        }
        _ => Err(ConvertCause::Incompatible("non-date")),
    }
}

fn scalar_date(s: &Scalar) -> Result<NaiveDate, ConvertCause> {
    match s {
        Scalar::Date(d) => Ok(*d),
        Scalar::DateTime(d) => Ok(d.date_naive()),
        Scalar::Text(t) => NaiveDate::parse_from_str(t, "%Y-%m-%d")
            .ok()
            .or_else(|| parse_datetime(t).map(|d| d.date_naive()))
            .ok_or_else(|| ConvertCause::BadDate(format!("{t:?}"))),
        _ => Err(ConvertCause::Incompatible("non-date")),
    }
}

fn range_checked(i: i64, min: i64, max: i64) -> Result<Value, ConvertCause> {
    if i < min || i > max {
        Err(ConvertCause::OutOfRange {
            value: i.to_string(),
            min,
            max,
        })
    } else {
        Ok(Value::from(i))
    }
}

/// Encodes a scalar as a Marketo field value.
pub fn encode_marketo(s: &Scalar, ty: &MarketoFieldType) -> Result<Value, ConvertCause> {
    if matches!(s, Scalar::Null) {
        return Ok(Value::Null);
    }
    match ty {
        MarketoFieldType::String { max_length } => check_len(scalar_text(s), *max_length),
        MarketoFieldType::Boolean => Ok(Value::Bool(scalar_bool(s)?)),
        // Marketo integers are 32-bit.
        MarketoFieldType::Integer => {
            range_checked(scalar_int(s)?, i32::MIN.into(), i32::MAX.into())
        }
        MarketoFieldType::Float => Ok(float_value(scalar_float(s)?)),
        MarketoFieldType::Date => Ok(Value::String(
            scalar_date(s)?.format("%Y-%m-%d").to_string(),
        )),
        MarketoFieldType::DateTime => Ok(Value::String(
            scalar_datetime(s)?.to_rfc3339_opts(SecondsFormat::Secs, true),
        )),
    }
}

/// Encodes a scalar as a Dataverse attribute value (no milliseconds on date-times, like the service).
pub fn encode_crm(s: &Scalar, ty: &CrmFieldType) -> Result<Value, ConvertCause> {
    if matches!(s, Scalar::Null) {
        return Ok(Value::Null);
    }
    match ty {
        CrmFieldType::String { max_length } => check_len(scalar_text(s), *max_length),
        CrmFieldType::Choice { options } => {
            let value = match s {
                Scalar::Text(t) => {
                    let t = t.trim();
                    match options.iter().find(|o| o.label.eq_ignore_ascii_case(t)) {
                        Some(o) => o.value,
                        None => t
                            .parse::<i64>()
                            .map_err(|_| ConvertCause::UnknownOption(t.to_owned()))?,
                    }
                }
                other => scalar_int(other)?,
            };
            if options.is_empty() || options.iter().any(|o| o.value == value) {
                Ok(Value::from(value))
            } else {
                Err(ConvertCause::UnknownOption(value.to_string()))
            }
        }
        CrmFieldType::Boolean => Ok(Value::Bool(scalar_bool(s)?)),
        CrmFieldType::Integer => range_checked(scalar_int(s)?, i32::MIN.into(), i32::MAX.into()),
        CrmFieldType::BigInt => Ok(Value::from(scalar_int(s)?)),
        CrmFieldType::Decimal => Ok(float_value(scalar_float(s)?)),
        CrmFieldType::DateTime => Ok(Value::String(
            scalar_datetime(s)?.to_rfc3339_opts(SecondsFormat::Secs, true),
        )),
        CrmFieldType::DateOnly => Ok(Value::String(
            scalar_date(s)?.format("%Y-%m-%d").to_string(),
        )),
        CrmFieldType::Guid => {
            let t = scalar_text(s);
            Uuid::parse_str(&t)
                .map(|u| Value::String(u.to_string()))
                .map_err(|_| ConvertCause::BadGuid(format!("{t:?}")))
        }
    }
}

/// Converts a Dataverse value for a Marketo field. Unknown types on either side pass the value through.
pub fn crm_to_marketo(
    v: &Value,
    crm: Option<&CrmFieldType>,
    marketo: Option<&MarketoFieldType>,
) -> Result<Value, ConvertCause> {
    let scalar = match crm {
        Some(t) => decode_crm(v, t)?,
        None => raw_scalar(v),
    };
    match marketo {
        Some(t) => encode_marketo(&scalar, t),
        None if crm.is_some() => Ok(match &scalar {
            Scalar::Choice { label: Some(l), .. } => Value::String(l.clone()),
            other => other.canonical(),
        }),
        None => Ok(v.clone()),
    }
}

/// Converts a Marketo value for a Dataverse attribute. Unknown types on either side pass the value through.
pub fn marketo_to_crm(
    v: &Value,
    marketo: Option<&MarketoFieldType>,
    crm: Option<&CrmFieldType>,
) -> Result<Value, ConvertCause> {
    let scalar = match marketo {
        Some(t) => decode_marketo(v, t)?,
        None => raw_scalar(v),
    };
    match crm {
        Some(t) => encode_crm(&scalar, t),
        None if marketo.is_some() => Ok(scalar.canonical()),
        None => Ok(v.clone()),
    }
}

/// A type-less decoding, for fields whose type is unknown.
pub fn raw_scalar(v: &Value) -> Scalar {
    match v {
        Value::Null => Scalar::Null,
        Value::Bool(b) => Scalar::Bool(*b),
        Value::Number(n) => n
            .as_i64()
            .map(Scalar::Int)
            .unwrap_or_else(|| Scalar::Float(n.as_f64().unwrap_or(0.0))),
        Value::String(s) if s.is_empty() => Scalar::Null,
        Value::String(s) => Scalar::Text(s.clone()),
        other => Scalar::Text(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn industry() -> CrmFieldType {
        CrmFieldType::Choice {
            options: vec![
                OptionValue {
                    value: 1,
                    label: "Accounting".into(),
                },
                OptionValue {
                    value: 7,
                    label: "Consulting".into(),
                },
            ],
        }
    }

    #[test]
    fn option_sets_become_labels_and_back() {
        let mk = MarketoFieldType::String {
            max_length: Some(255),
        };
        assert_eq!(
            crm_to_marketo(&json!(7), Some(&industry()), Some(&mk)),
            Ok(json!("Consulting"))
        );
        assert_eq!(
            marketo_to_crm(&json!("consulting"), Some(&mk), Some(&industry())),
            Ok(json!(7))
        );
        assert_eq!(
            marketo_to_crm(&json!("1"), Some(&mk), Some(&industry())),
            Ok(json!(1))
        );
        assert_eq!(
            marketo_to_crm(&json!("Farming"), Some(&mk), Some(&industry())),
            Err(ConvertCause::UnknownOption("Farming".into()))
        );
        assert_eq!(
            marketo_to_crm(&json!("99"), Some(&mk), Some(&industry())),
            Err(ConvertCause::UnknownOption("99".into()))
        );
        // An option value without a label in the metadata still converts, as its number.
        assert_eq!(
            crm_to_marketo(&json!(3), Some(&industry()), Some(&mk)),
            Ok(json!("3"))
        );
        assert_eq!(
            crm_to_marketo(
                &json!(7),
                Some(&industry()),
                Some(&MarketoFieldType::Integer)
            ),
            Ok(json!(7))
        );
    }

    #[test]
    fn dates_and_datetimes() {
        let dt = MarketoFieldType::DateTime;
        assert_eq!(
            crm_to_marketo(
                &json!("2024-05-01T10:00:00Z"),
                Some(&CrmFieldType::DateTime),
                Some(&dt)
            ),
            Ok(json!("2024-05-01T10:00:00Z"))
        );
        assert_eq!(
            marketo_to_crm(
                &json!("2024-05-01T12:00:00+0200"),
                Some(&dt),
                Some(&CrmFieldType::DateTime)
            ),
            Ok(json!("2024-05-01T10:00:00Z"))
        );
        assert_eq!(
            crm_to_marketo(
                &json!("2024-05-01T23:30:00Z"),
                Some(&CrmFieldType::DateTime),
                Some(&MarketoFieldType::Date)
            ),
            Ok(json!("2024-05-01"))
        );
        assert_eq!(
            marketo_to_crm(
                &json!("2024-05-01"),
                Some(&MarketoFieldType::Date),
                Some(&CrmFieldType::DateTime)
            ),
            Ok(json!("2024-05-01T00:00:00Z"))
        );
        assert_eq!(
            marketo_to_crm(
                &json!("May 1st"),
                Some(&MarketoFieldType::Date),
                Some(&CrmFieldType::DateOnly)
            ),
            Err(ConvertCause::BadDate("\"May 1st\"".into()))
        );
    }

    #[test]
    fn booleans_numbers_and_lengths() {
        let b = MarketoFieldType::Boolean;
        assert_eq!(
            marketo_to_crm(&json!("true"), Some(&b), Some(&CrmFieldType::Boolean)),
            Ok(json!(true))
        );
        assert_eq!(
            marketo_to_crm(&json!("0"), Some(&b), Some(&CrmFieldType::Boolean)),
            Ok(json!(false))
        );
        assert_eq!(
            marketo_to_crm(&json!("maybe"), Some(&b), Some(&CrmFieldType::Boolean)),
            Err(ConvertCause::NotABoolean("\"maybe\"".into()))
        );
        assert_eq!(
            marketo_to_crm(
                &json!("42"),
                Some(&MarketoFieldType::Integer),
                Some(&CrmFieldType::Integer)
            ),
            Ok(json!(42))
        );
        assert_eq!(
            marketo_to_crm(
                &json!("4.5"),
                Some(&MarketoFieldType::Float),
                Some(&CrmFieldType::Integer)
            ),
            Err(ConvertCause::NotWhole("4.5".into()))
        );
        assert_eq!(
            crm_to_marketo(
                &json!(5_000_000_000_i64),
                Some(&CrmFieldType::BigInt),
                Some(&MarketoFieldType::Integer)
            ),
            Err(ConvertCause::OutOfRange {
                value: "5000000000".into(),
                min: i32::MIN.into(),
                max: i32::MAX.into()
            })
        );
        assert_eq!(
            crm_to_marketo(
                &json!(1250.5),
                Some(&CrmFieldType::Decimal),
                Some(&MarketoFieldType::Float)
            ),
            Ok(json!(1250.5))
        );
        assert_eq!(
            crm_to_marketo(
                &json!(1250.0),
                Some(&CrmFieldType::Decimal),
                Some(&MarketoFieldType::Float)
            ),
            Ok(json!(1250))
        );
        assert_eq!(
            marketo_to_crm(
                &json!("abcdef"),
                Some(&MarketoFieldType::String { max_length: None }),
                Some(&CrmFieldType::String {
                    max_length: Some(5)
                })
            ),
            Err(ConvertCause::TooLong { max: 5, actual: 6 })
        );
        // Length counts characters, not bytes.
        assert_eq!(
            marketo_to_crm(
                &json!("ééééé"),
                None,
                Some(&CrmFieldType::String {
                    max_length: Some(5)
                })
            ),
            Ok(json!("ééééé"))
        );
        assert_eq!(
            crm_to_marketo(
                &json!(null),
                Some(&CrmFieldType::Integer),
                Some(&MarketoFieldType::Integer)
            ),
            Ok(json!(null))
        );
        assert_eq!(
            marketo_to_crm(
                &json!(""),
                Some(&MarketoFieldType::Integer),
                Some(&CrmFieldType::Integer)
            ),
            Ok(json!(null))
        );
        assert_eq!(
            marketo_to_crm(&json!("x"), None, Some(&CrmFieldType::Guid)),
            Err(ConvertCause::BadGuid("\"x\"".into()))
        );
    }

    #[test]
    fn unknown_types_pass_through() {
        assert_eq!(
            crm_to_marketo(&json!({"a": 1}), None, None),
            Ok(json!({"a": 1}))
        );
        assert_eq!(
            crm_to_marketo(&json!(7), Some(&industry()), None),
            Ok(json!("Consulting"))
        );
    }

    #[test]
    fn error_message_names_record_field_and_cause() {
        let e = ConvertError {
            entity: CrmEntity::Lead,
            record: RecordRef::Crm(Uuid::from_u128(1)),
            field: "lastname".into(),
            cause: ConvertCause::TooLong {
                max: 50,
                actual: 60,
            },
        };
        assert_eq!(
            e.to_string(),
            "lead 00000000-0000-0000-0000-000000000001: field `lastname`: value is 60 characters long, the target holds at most 50"
        );
        let e = ConvertError {
            entity: CrmEntity::Contact,
            record: RecordRef::Marketo(42),
            field: "doNotCall".into(),
            cause: ConvertCause::NotABoolean("\"maybe\"".into()),
        };
        assert_eq!(
            e.to_string(),
            "contact Marketo person 42: field `doNotCall`: \"maybe\" is not a boolean"
        );
    }

    #[test]
    fn describe_types() {
        assert_eq!(
            MarketoFieldType::from_describe("currency", None),
            MarketoFieldType::Float
        );
        assert_eq!(
            MarketoFieldType::from_describe("email", Some(255)),
            MarketoFieldType::String {
                max_length: Some(255)
            }
        );
        assert_eq!(
            MarketoFieldType::from_describe("reference", None),
            MarketoFieldType::Integer
        );
        assert_eq!(
            MarketoFieldType::from_describe("datetime", None),
            MarketoFieldType::DateTime
        );
    }
}
