//! Per-field fingerprints: a stable hash of a field's normalised value on one side.
//!
//! The state store keeps, for every linked record, the fingerprint of what mdsync last wrote to or read from
//! each side. Comparing an incoming value with it tells an echo of mdsync's own write (equal) from a real
//! edit (different) without storing the values themselves.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::convert::{self, CrmFieldType, MarketoFieldType, Scalar};

/// A 64-bit hash of a normalised value (the first 8 bytes of SHA-256 of its canonical JSON).
///
/// Stable across runs, platforms and versions of this crate: changing the hashing would turn every stored
/// fingerprint into a false "real edit", so the scheme is versioned by its input prefix (`v1:`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Fingerprint(pub i64);

impl Fingerprint {
    /// Fingerprint of an already-decoded value.
    pub fn of_scalar(s: &Scalar) -> Fingerprint {
        Fingerprint::of_canonical(&s.canonical())
    }

    /// Fingerprint of a Dataverse value; the type normalises spellings (`"5"` vs `5`, offsets in date-times).
    /// A value that does not decode with its type is hashed as it is.
    pub fn of_crm(v: &Value, ty: Option<&CrmFieldType>) -> Fingerprint {
        if v.is_object() || v.is_array() {
            return Fingerprint::of_canonical(v);
        }
        let scalar = ty
            .and_then(|t| convert::decode_crm(v, t).ok())
            .unwrap_or_else(|| convert::raw_scalar(v));
        Fingerprint::of_scalar(&scalar)
    }

    /// Fingerprint of a Marketo value (REST JSON or lead-change strings alike).
    pub fn of_marketo(v: &Value, ty: Option<&MarketoFieldType>) -> Fingerprint {
        if v.is_object() || v.is_array() {
            return Fingerprint::of_canonical(v);
        }
        let scalar = ty
            .and_then(|t| convert::decode_marketo(v, t).ok())
            .unwrap_or_else(|| convert::raw_scalar(v));
        Fingerprint::of_scalar(&scalar)
    }

    fn of_canonical(v: &Value) -> Fingerprint {
        let mut text = String::from("v1:");
        canonical_json(v, &mut text);
        let digest = Sha256::digest(text.as_bytes());
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&digest[..8]);
        Fingerprint(i64::from_be_bytes(bytes))
    }

    /// Hex spelling for logs and exports.
    pub fn to_hex(self) -> String {
        hex::encode(self.0.to_be_bytes())
    }
}

/// JSON with object keys sorted, so map order never changes a fingerprint.
fn canonical_json(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                canonical_json(&map[*k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fingerprints_are_stable_known_values() {
        // Pinned: a change here would invalidate every fingerprint users have stored.
        assert_eq!(
            Fingerprint::of_marketo(&json!("Ada"), None).to_hex(),
            Fingerprint::of_crm(&json!("Ada"), None).to_hex()
        );
        let pinned = Fingerprint::of_canonical(&json!("Ada")).to_hex();
        let mut text = String::from("v1:");
        canonical_json(&json!("Ada"), &mut text);
        assert_eq!(text, "v1:\"Ada\"");
        assert_eq!(pinned.len(), 16);
        assert_eq!(pinned, hex::encode(&Sha256::digest(b"v1:\"Ada\"")[..8]));
    }

    #[test]
    fn normalisation_by_type() {
        let int = MarketoFieldType::Integer;
        assert_eq!(
            Fingerprint::of_marketo(&json!("42"), Some(&int)),
            Fingerprint::of_marketo(&json!(42), Some(&int))
        );
        let dt = MarketoFieldType::DateTime;
        assert_eq!(
            Fingerprint::of_marketo(&json!("2024-05-01T12:00:00+0200"), Some(&dt)),
            Fingerprint::of_marketo(&json!("2024-05-01T10:00:00Z"), Some(&dt))
        );
        let b = MarketoFieldType::Boolean;
        assert_eq!(
            Fingerprint::of_marketo(&json!("true"), Some(&b)),
            Fingerprint::of_marketo(&json!(true), Some(&b))
        );
        assert_eq!(
            Fingerprint::of_crm(&json!(""), None),
            Fingerprint::of_crm(&json!(null), None)
        );
        assert_ne!(
            Fingerprint::of_crm(&json!("a"), None),
            Fingerprint::of_crm(&json!("A"), None)
        );
        assert_eq!(
            Fingerprint::of_crm(&json!({"b": 1, "a": 2}), None),
            Fingerprint::of_crm(&json!({"a": 2, "b": 1}), None)
        );
        assert_eq!(
            Fingerprint::of_crm(&json!(5.0), Some(&CrmFieldType::Decimal)),
            Fingerprint::of_crm(&json!(5), Some(&CrmFieldType::Decimal))
        );
    }
}
