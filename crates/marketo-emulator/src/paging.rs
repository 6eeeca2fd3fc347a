//! Opaque, stable, resumable paging tokens: base32 (RFC 4648, no padding) of `"<datetime>,<position>"`,
//! the shape of Marketo's older activity tokens (`2008-11-06T00:00:00.000+0000,0`).

use crate::envelope::ApiError;

const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

fn encode32(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len() * 8 / 5 + 1);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &byte in data {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

fn decode32(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for c in text.trim_end_matches('=').bytes() {
        let v = ALPHABET.iter().position(|&a| a == c.to_ascii_uppercase())? as u32;
        buffer = (buffer << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(((buffer >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}

/// A token for "after `position`" (an activity id or a record id), stamped with `secs`.
pub fn encode(secs: i64, position: i64) -> String {
    let stamp = chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3f+0000");
    encode32(format!("{stamp},{position}").as_bytes())
}

/// The position inside a token; 1003 for anything we did not issue.
pub fn decode(token: &str) -> Result<i64, ApiError> {
    let invalid = || ApiError::invalid_data(format!("Invalid next page token '{token}'"));
    let bytes = decode32(token.trim()).ok_or_else(invalid)?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let (_, position) = text.rsplit_once(',').ok_or_else(invalid)?;
    position
        .parse::<i64>()
        .ok()
        .filter(|p| *p >= 0)
        .ok_or_else(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let token = encode(1_226_000_000, 12345);
        assert!(token.bytes().all(|b| ALPHABET.contains(&b)));
        assert_eq!(decode(&token), Ok(12345));
        assert!(decode("not-a-token!").is_err());
        assert!(decode("GEZDG").is_err());
        // The doc's example decodes to "2008-11-06T00:00:00.000+0000,0".
        assert_eq!(
            String::from_utf8(
                decode32(&encode32(b"2008-11-06T00:00:00.000+0000,0")).unwrap_or_default()
            ),
            Ok("2008-11-06T00:00:00.000+0000,0".to_string())
        );
    }
}
