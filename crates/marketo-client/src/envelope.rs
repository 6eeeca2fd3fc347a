//! The response envelope every REST call answers with (HTTP 200 even for failures), and record-level
//! results. Codes are quoted strings on the wire; we accept numbers too because some gateways re-encode.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::error::Error;

/// One `{"code","message"}` entry of `errors` or of a record's `reasons`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ApiError {
    #[serde(deserialize_with = "string_or_number")]
    pub code: String,
    #[serde(default)]
    pub message: String,
}

/// A decoded successful envelope.
#[derive(Clone, Debug)]
pub struct Page<T> {
    pub request_id: Option<String>,
    /// `result`; an absent `result` (empty activity pages, merge) decodes as empty.
    pub result: Vec<T>,
    pub next_page_token: Option<String>,
    /// `moreResult`; absent is treated as false.
    pub more_result: bool,
    /// Warnings as strings (objects are rendered as `code: message`).
    pub warnings: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEnvelope<T> {
    request_id: Option<String>,
    success: Option<bool>,
    #[serde(default = "Option::default")]
    result: Option<Vec<T>>,
    next_page_token: Option<String>,
    more_result: Option<bool>,
    #[serde(default)]
    errors: Vec<ApiError>,
    #[serde(default)]
    warnings: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FailureEnvelope {
    request_id: Option<String>,
    success: Option<bool>,
    #[serde(default)]
    errors: Vec<ApiError>,
}

/// A failed envelope: the first error (clients act on `errors[0]`) plus the request id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub request_id: Option<String>,
    pub error: ApiError,
}

/// What a body decoded to.
#[derive(Debug)]
pub enum Decoded<T> {
    Success(Page<T>),
    Failure(Failure),
}

/// Decodes an envelope body. `path` only labels decode errors.
pub fn decode<T: DeserializeOwned>(path: &str, body: &[u8]) -> Result<Decoded<T>, Error> {
    match serde_json::from_slice::<RawEnvelope<T>>(body) {
        Ok(raw) => Ok(from_raw(path, raw)?),
        Err(typed_err) => {
            // A failure envelope may still carry a `result` of another shape; look at it loosely.
            if let Ok(failure) = serde_json::from_slice::<FailureEnvelope>(body)
                && failure.success == Some(false)
            {
                return Ok(Decoded::Failure(Failure {
                    request_id: failure.request_id,
                    error: first_error(failure.errors),
                }));
            }
            Err(Error::Decode {
                path: path.to_owned(),
                message: format!("{typed_err}; body starts with {}", snippet(body)),
            })
        }
    }
}

fn from_raw<T>(path: &str, raw: RawEnvelope<T>) -> Result<Decoded<T>, Error> {
    match raw.success {
        Some(true) => Ok(Decoded::Success(Page {
            request_id: raw.request_id,
            result: raw.result.unwrap_or_default(),
            next_page_token: raw.next_page_token.filter(|t| !t.is_empty()),
            more_result: raw.more_result.unwrap_or(false),
            warnings: raw.warnings.into_iter().map(warning_text).collect(),
        })),
        Some(false) => Ok(Decoded::Failure(Failure {
            request_id: raw.request_id,
            error: first_error(raw.errors),
        })),
        None => Err(Error::Decode {
            path: path.to_owned(),
            message: "the envelope has no `success` property".into(),
        }),
    }
}

fn first_error(errors: Vec<ApiError>) -> ApiError {
    errors.into_iter().next().unwrap_or(ApiError {
        code: String::new(),
        message: "success:false without errors".into(),
    })
}

fn warning_text(value: Value) -> String {
    match value {
        Value::String(s) => s,
        Value::Object(map) => {
            let code = map.get("code").map(value_text).unwrap_or_default();
            let message = map.get("message").map(value_text).unwrap_or_default();
            format!("{code}: {message}")
        }
        other => other.to_string(),
    }
}

fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The first bytes of a body, for error messages (bodies never carry our secrets).
pub fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]);
    format!("{text:?}")
}

/// Accepts `"606"` or `606`.
pub(crate) fn string_or_number<'de, D: Deserializer<'de>>(de: D) -> Result<String, D::Error> {
    match Value::deserialize(de)? {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(serde::de::Error::custom(format!(
            "expected a string or number, got {other}"
        ))),
    }
}

/// Accepts `"1078"`, `1078` or null/absent.
pub(crate) fn opt_string_or_number<'de, D: Deserializer<'de>>(
    de: D,
) -> Result<Option<String>, D::Error> {
    match Option::<Value>::deserialize(de)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(serde::de::Error::custom(format!(
            "expected a string or number, got {other}"
        ))),
    }
}

/// Accepts `5`, `"5"` or null/absent.
pub(crate) fn opt_i64_lenient<'de, D: Deserializer<'de>>(de: D) -> Result<Option<i64>, D::Error> {
    match Option::<Value>::deserialize(de)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("{n} is not an integer"))),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => s
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("{s:?} is not an integer"))),
        Some(other) => Err(serde::de::Error::custom(format!(
            "expected an integer, got {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_with_paging() {
        let body = br#"{"requestId":"e42b#14272d07d78","success":true,"result":[{"id":1}],
            "nextPageToken":"ABC=","moreResult":true,"warnings":["No assets found"]}"#;
        let Decoded::Success(page) = decode::<Value>("/x", body).unwrap() else {
            panic!("expected success")
        };
        assert_eq!(page.request_id.as_deref(), Some("e42b#14272d07d78"));
        assert_eq!(page.result.len(), 1);
        assert_eq!(page.next_page_token.as_deref(), Some("ABC="));
        assert!(page.more_result);
        assert_eq!(page.warnings, vec!["No assets found".to_string()]);
    }

    #[test]
    fn missing_result_is_an_empty_page() {
        let body = br#"{"requestId":"a#b","success":true,"nextPageToken":"T","moreResult":true}"#;
        let Decoded::Success(page) = decode::<Value>("/x", body).unwrap() else {
            panic!("expected success")
        };
        assert!(page.result.is_empty());
        assert!(page.more_result);
    }

    #[test]
    fn failure_takes_the_first_error_with_string_or_numeric_code() {
        let body = br#"{"requestId":"1#2","success":false,"errors":[{"code":"606","message":"Max rate limit '100' exceeded with in '20' secs"},{"code":"x","message":"y"}]}"#;
        let Decoded::Failure(f) = decode::<Value>("/x", body).unwrap() else {
            panic!("expected failure")
        };
        assert_eq!(f.error.code, "606");
        assert_eq!(f.request_id.as_deref(), Some("1#2"));
        let body = br#"{"success":false,"errors":[{"code":601,"message":"Access token invalid"}]}"#;
        let Decoded::Failure(f) = decode::<Value>("/x", body).unwrap() else {
            panic!("expected failure")
        };
        assert_eq!(f.error.code, "601");
    }

    #[test]
    fn failure_with_an_oddly_shaped_result_still_decodes_as_failure() {
        #[derive(Debug, Deserialize)]
        struct Strict {
            #[allow(dead_code)]
            id: i64,
        }
        let body = br#"{"success":false,"result":[{"id":"not a number"}],"errors":[{"code":"1003","message":"bad"}]}"#;
        let Decoded::Failure(f) = decode::<Strict>("/x", body).unwrap() else {
            panic!("expected failure")
        };
        assert_eq!(f.error.code, "1003");
    }

    #[test]
    fn garbage_is_a_decode_error_naming_the_path() {
        let err = decode::<Value>("/rest/v1/leads.json", b"<html>bad gateway</html>").unwrap_err();
        assert!(matches!(err, Error::Decode { ref path, .. } if path == "/rest/v1/leads.json"));
        let err = decode::<Value>("/p", br#"{"result":[]}"#).unwrap_err();
        assert!(err.to_string().contains("success"), "{err}");
    }

    #[test]
    fn object_warnings_become_text() {
        let body = br#"{"success":true,"result":[],"warnings":[{"code":"1","message":"m"}]}"#;
        let Decoded::Success(page) = decode::<Value>("/x", body).unwrap() else {
            panic!("expected success")
        };
        assert_eq!(page.warnings, vec!["1: m".to_string()]);
    }
}
