//! Building resource paths and query strings: entity sets, record keys, OData literals.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;
use uuid::Uuid;

use crate::error::{DataverseError, ErrorKind};

/// What `encodeURIComponent` leaves alone; everything else in a query value is percent-encoded (spaces as
/// `%20`, never `+`, which OData would read literally).
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// Percent-encodes a query option value.
pub fn encode_component(value: &str) -> String {
    utf8_percent_encode(value, COMPONENT).to_string()
}

/// Identifies one row: its primary key, or an alternate key's column values.
#[derive(Clone, Debug, PartialEq)]
pub enum RecordKey {
    Id(Uuid),
    /// `(accountnumber='ABC')`, `(firstname='Joe',emailaddress1='a@b.c')`; strings are quoted, numbers,
    /// booleans and GUID-typed lookup values (`_x_value`) are sent bare.
    Alternate(Vec<(String, Value)>),
}

impl From<Uuid> for RecordKey {
    fn from(id: Uuid) -> Self {
        RecordKey::Id(id)
    }
}

impl From<&Uuid> for RecordKey {
    fn from(id: &Uuid) -> Self {
        RecordKey::Id(*id)
    }
}

impl RecordKey {
    /// An alternate key of string columns.
    pub fn alternate<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        RecordKey::Alternate(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), Value::String(v.into())))
                .collect(),
        )
    }

    /// The text between the parentheses, URL-encoded.
    pub(crate) fn segment(&self) -> String {
        match self {
            RecordKey::Id(id) => id.to_string(),
            RecordKey::Alternate(pairs) => pairs
                .iter()
                .map(|(name, value)| {
                    let literal = match value {
                        // Lookup keys (`_x_value`) take a bare GUID.
                        Value::String(s) if name.starts_with('_') && Uuid::parse_str(s).is_ok() => {
                            s.clone()
                        }
                        other => literal(other),
                    };
                    format!("{name}={}", encode_component(&literal))
                })
                .collect::<Vec<_>>()
                .join(","),
        }
    }

    /// For messages: `accounts(<id>)`.
    pub(crate) fn describe(&self, entity_set: &str) -> String {
        match self {
            RecordKey::Id(id) => format!("{entity_set}({id})"),
            RecordKey::Alternate(pairs) => {
                let keys: Vec<String> = pairs
                    .iter()
                    .map(|(k, v)| format!("{k}={}", literal(v)))
                    .collect();
                format!("{entity_set}({})", keys.join(","))
            }
        }
    }
}

/// An OData literal: strings single-quoted with `''` escaping, everything else as JSON text.
pub fn literal(value: &Value) -> String {
    match value {
        Value::String(s) => format!("'{}'", s.replace('\'', "''")),
        other => other.to_string(),
    }
}

/// Entity sets, navigation properties and operation names are identifiers; refusing anything else keeps a
/// stray `?`, `/` or `(` from changing which resource a call touches.
pub(crate) fn check_name(name: &str, what: &str, operation: &str) -> Result<(), DataverseError> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(DataverseError::new(
            ErrorKind::InvalidInput,
            operation,
            format!("{what} {name:?} is not a valid identifier"),
        ))
    }
}

/// `entity_set(key)`, checked.
pub(crate) fn record_path(
    entity_set: &str,
    key: &RecordKey,
    operation: &str,
) -> Result<String, DataverseError> {
    check_name(entity_set, "entity set", operation)?;
    Ok(format!("{entity_set}({})", key.segment()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_render_like_the_web_api_expects() {
        let id = Uuid::parse_str("a1b2c3d4-0000-0000-0000-000000000001").unwrap();
        assert_eq!(
            record_path("accounts", &id.into(), "t").unwrap(),
            format!("accounts({id})")
        );
        let key = RecordKey::alternate([("accountnumber", "O'Neil & Co")]);
        assert_eq!(key.segment(), "accountnumber='O''Neil%20%26%20Co'");
        let key = RecordKey::Alternate(vec![
            ("_primarycontactid_value".into(), json!(id.to_string())),
            ("number".into(), json!(7)),
        ]);
        assert_eq!(
            key.segment(),
            format!("_primarycontactid_value={id},number=7")
        );
        assert_eq!(
            key.describe("accounts"),
            format!("accounts(_primarycontactid_value='{id}',number=7)")
        );
    }

    #[test]
    fn names_with_path_characters_are_refused() {
        assert!(check_name("new_synctomkto", "column", "t").is_ok());
        assert!(check_name("Microsoft.Dynamics.CRM.WhoAmI", "function", "t").is_ok());
        for bad in ["", "accounts?x", "a/b", "a(b)", "a b"] {
            assert_eq!(
                check_name(bad, "entity set", "t").unwrap_err().kind(),
                ErrorKind::InvalidInput
            );
        }
    }

    #[test]
    fn query_values_encode_spaces_as_percent_20() {
        assert_eq!(
            encode_component("name eq 'a+b' and x ge 2024-01-01T00:00:00Z"),
            "name%20eq%20'a%2Bb'%20and%20x%20ge%202024-01-01T00%3A00%3A00Z"
        );
    }
}
