//! The one error type of the crate: everything the emulator needs to render Dataverse's error envelope.

use serde_json::{Value, json};

/// HRESULT Dataverse returns for OData query/URI problems (syntax errors, unknown properties, bad literals).
pub const QUERY_ERROR_CODE: &str = "0x80060888";
/// HRESULT used for `$batch` framing and Content-ID problems (ODataLib reader errors surface as the
/// same OData exception code as query errors; inferred, not observed).
pub const BATCH_ERROR_CODE: &str = QUERY_ERROR_CODE;

/// An OData request error: HTTP status, hex HRESULT code string and the service's message.
///
/// Rendered with [`ODataError::to_json`] as `{"error":{"code":..,"message":..}}` so no handler formats
/// error bodies by hand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ODataError {
    /// HTTP status code of the response.
    pub status: u16,
    /// Hex HRESULT string, e.g. `0x80060888`.
    pub code: String,
    /// Human readable message, matching the real service's wording where known.
    pub message: String,
}

impl ODataError {
    /// Any error with an explicit status and code.
    pub fn new(status: u16, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
        }
    }

    /// A 400 query error (`0x80060888`), the code Dataverse uses for all OData URI parsing/binding failures.
    pub fn query(message: impl Into<String>) -> Self {
        Self::new(400, QUERY_ERROR_CODE, message)
    }

    /// ODataLib's generic `Syntax error at position {pos} in '{text}'.`
    pub fn syntax_error(position: usize, text: &str) -> Self {
        Self::query(format!("Syntax error at position {position} in '{text}'."))
    }

    /// `Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{entity}'.`
    pub fn property_not_found(name: &str, entity_logical_name: &str) -> Self {
        Self::query(format!(
            "Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{entity_logical_name}'."
        ))
    }

    /// A 400 `$batch` error with the given message.
    pub fn batch(message: impl Into<String>) -> Self {
        Self::new(400, BATCH_ERROR_CODE, message)
    }

    /// The response body Dataverse sends: `{"error":{"code":..,"message":..}}`.
    pub fn to_json(&self) -> Value {
        json!({ "error": { "code": self.code, "message": self.message } })
    }

    /// [`Self::to_json`] serialized.
    pub fn body(&self) -> String {
        self.to_json().to_string()
    }
}

/// Converts a byte offset into `text` to the character position ODataLib reports.
pub(crate) fn char_position(text: &str, byte_offset: usize) -> usize {
    let end = byte_offset.min(text.len());
    text.char_indices().take_while(|(i, _)| *i < end).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_dataverse_envelope() {
        let e = ODataError::property_not_found("Name", "account");
        assert_eq!(e.status, 400);
        assert_eq!(
            e.body(),
            r#"{"error":{"code":"0x80060888","message":"Could not find a property named 'Name' on type 'Microsoft.Dynamics.CRM.account'."}}"#
        );
    }

    #[test]
    fn positions_are_in_characters() {
        assert_eq!(char_position("héllo", 3), 2);
        assert_eq!(char_position("abc", 10), 3);
        assert_eq!(char_position("", 0), 0);
    }
}
