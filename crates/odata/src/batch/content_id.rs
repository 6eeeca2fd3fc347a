//! Content-ID references (`$1`) inside a change set: in request URLs and in `@odata.bind` / `@odata.id`
//! values of JSON bodies.

use std::collections::HashMap;

use serde_json::Value;

use crate::error::ODataError;
use crate::key::split_request_target;

/// URIs of entities created by earlier parts of the current change set, by Content-ID.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContentIds {
    uris: HashMap<String, String>,
}

fn missing(reference: &str) -> ODataError {
    ODataError::batch(format!(
        "Content-ID Reference: '{reference}' does not exist in the batch context."
    ))
}

/// Splits `$12/rest` into (`12`, `/rest`) when `s` starts with a Content-ID reference.
fn reference(s: &str) -> Option<(&str, &str)> {
    let rest = s.strip_prefix('$')?;
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    if digits == 0 {
        return None;
    }
    let (id, tail) = rest.split_at(digits);
    (tail.is_empty() || tail.starts_with('/') || tail.starts_with('?')).then_some((id, tail))
}

impl ContentIds {
    /// An empty map (one per change set).
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that the part with `content_id` created the entity at `uri` (e.g.
    /// `http://host/api/data/v9.2/contacts(<id>)` or `contacts(<id>)`); a leading `$` is ignored.
    pub fn insert(&mut self, content_id: &str, uri: impl Into<String>) {
        self.uris
            .insert(content_id.trim_start_matches('$').to_owned(), uri.into());
    }

    /// The URI recorded for `content_id`.
    pub fn get(&self, content_id: &str) -> Option<&str> {
        self.uris
            .get(content_id.trim_start_matches('$'))
            .map(String::as_str)
    }

    /// Rewrites a request target starting with `$n` (bare, or after the service root) to the recorded
    /// URI; other targets are returned unchanged.
    pub fn resolve_url(&self, url: &str) -> Result<String, ODataError> {
        let target = split_request_target(url);
        let Some((id, tail)) = reference(target.path) else {
            return Ok(url.to_owned());
        };
        let uri = self
            .uris
            .get(id)
            .ok_or_else(|| missing(&format!("${id}")))?;
        Ok(match target.query {
            Some(q) => format!("{uri}{tail}?{q}"),
            None => format!("{uri}{tail}"),
        })
    }

    /// Replaces `$n` references in `*@odata.bind` and `@odata.id` values, at any depth (deep insert).
    pub fn resolve_json(&self, value: &mut Value) -> Result<(), ODataError> {
        match value {
            Value::Object(map) => {
                for (key, v) in map.iter_mut() {
                    if key.ends_with("@odata.bind") || key == "@odata.id" {
                        self.resolve_reference_value(v)?;
                    } else {
                        self.resolve_json(v)?;
                    }
                }
                Ok(())
            }
            Value::Array(items) => items.iter_mut().try_for_each(|v| self.resolve_json(v)),
            _ => Ok(()),
        }
    }

    fn resolve_reference_value(&self, v: &mut Value) -> Result<(), ODataError> {
        match v {
            Value::String(s) if reference(s.trim_start_matches('/')).is_some() => {
                *s = self.resolve_url(s.trim_start_matches('/'))?;
                Ok(())
            }
            Value::Array(items) => items
                .iter_mut()
                .try_for_each(|i| self.resolve_reference_value(i)),
            _ => Ok(()),
        }
    }

    /// [`Self::resolve_json`] on a raw body; bodies that are not JSON are returned unchanged.
    pub fn resolve_body(&self, body: &[u8]) -> Result<Vec<u8>, ODataError> {
        if !body.windows(1).any(|w| w[0] == b'$') {
            return Ok(body.to_vec());
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(mut v) => {
                self.resolve_json(&mut v)?;
                Ok(v.to_string().into_bytes())
            }
            Err(_) => Ok(body.to_vec()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ids() -> ContentIds {
        let mut ids = ContentIds::new();
        ids.insert(
            "1",
            "http://h/api/data/v9.2/contacts(11111111-1111-1111-1111-111111111111)",
        );
        ids.insert("$2", "accounts(22222222-2222-2222-2222-222222222222)");
        ids
    }

    #[test]
    fn resolves_urls() {
        let ids = ids();
        let cases = [
            (
                "$1",
                "http://h/api/data/v9.2/contacts(11111111-1111-1111-1111-111111111111)",
            ),
            (
                "$1/lastname",
                "http://h/api/data/v9.2/contacts(11111111-1111-1111-1111-111111111111)/lastname",
            ),
            (
                "$2/primarycontactid/$ref",
                "accounts(22222222-2222-2222-2222-222222222222)/primarycontactid/$ref",
            ),
            (
                "$2?$select=name",
                "accounts(22222222-2222-2222-2222-222222222222)?$select=name",
            ),
            (
                "http://h/api/data/v9.2/$2",
                "accounts(22222222-2222-2222-2222-222222222222)",
            ),
            ("/api/data/v9.2/accounts", "/api/data/v9.2/accounts"),
            ("accounts", "accounts"),
            ("$batch", "$batch"),
            ("$metadata", "$metadata"),
        ];
        for (url, expected) in cases {
            assert_eq!(ids.resolve_url(url).unwrap(), expected, "{url}");
        }
        for url in ["$3", "$3/name", "http://h/api/data/v9.2/$9"] {
            let err = ids.resolve_url(url).unwrap_err();
            assert_eq!(err.status, 400);
            assert!(
                err.message.starts_with("Content-ID Reference: '$"),
                "{}",
                err.message
            );
        }
        assert_eq!(
            ids.resolve_url("$3").unwrap_err().message,
            "Content-ID Reference: '$3' does not exist in the batch context."
        );
    }

    #[test]
    fn resolves_json_bodies() {
        let ids = ids();
        let mut body = json!({
            "name": "$1",
            "primarycontactid@odata.bind": "$1",
            "parentaccountid@odata.bind": "/$2",
            "other@odata.bind": "/accounts(33333333-3333-3333-3333-333333333333)",
            "Account_Tasks@odata.bind": ["$1", "/tasks(x)"],
            "contact_customer_accounts": [{ "parentcustomerid_account@odata.bind": "$2" }],
        });
        ids.resolve_json(&mut body).unwrap();
        assert_eq!(
            body,
            json!({
                "name": "$1",
                "primarycontactid@odata.bind": "http://h/api/data/v9.2/contacts(11111111-1111-1111-1111-111111111111)",
                "parentaccountid@odata.bind": "accounts(22222222-2222-2222-2222-222222222222)",
                "other@odata.bind": "/accounts(33333333-3333-3333-3333-333333333333)",
                "Account_Tasks@odata.bind": ["http://h/api/data/v9.2/contacts(11111111-1111-1111-1111-111111111111)", "/tasks(x)"],
                "contact_customer_accounts": [{ "parentcustomerid_account@odata.bind": "accounts(22222222-2222-2222-2222-222222222222)" }],
            })
        );
        let mut r = json!({"@odata.id": "$2"});
        ids.resolve_json(&mut r).unwrap();
        assert_eq!(
            r,
            json!({"@odata.id": "accounts(22222222-2222-2222-2222-222222222222)"})
        );
        let mut forward = json!({"x@odata.bind": "$5"});
        assert_eq!(
            ids.resolve_json(&mut forward).unwrap_err().message,
            "Content-ID Reference: '$5' does not exist in the batch context."
        );
        assert_eq!(ids.resolve_body(b"not json $1").unwrap(), b"not json $1");
        assert_eq!(ids.resolve_body(b"{\"a\":1}").unwrap(), b"{\"a\":1}");
        assert_eq!(
            ids.resolve_body(b"{\"@odata.id\":\"$2\"}").unwrap(),
            b"{\"@odata.id\":\"accounts(22222222-2222-2222-2222-222222222222)\"}"
        );
    }
}
