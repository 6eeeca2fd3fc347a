//! One row per record for fingerprints: a compact map `field id → fingerprint` for both sides.
//!
//! Fingerprints used to be one row per (record, side, field) — thirty rows per synced lead, which made
//! state writes the slowest part of an initial load. Field names repeat across every record, so they are
//! interned in `fp_fields` (a handful of rows) and each record's map is a blob of
//! `varint(field id) ‖ fingerprint (8 bytes, big endian)` entries sorted by field id.

use std::collections::{BTreeMap, HashMap};

use mdsync_sync_core::record::Side;
use rusqlite::{Connection, params};

use crate::error::StateError;

/// A record's fingerprints keyed by interned field id.
pub type FpMap = BTreeMap<u32, i64>;

/// Encodes a map (sorted by field id) into the stored blob.
pub fn encode(map: &FpMap) -> Vec<u8> {
    let mut out = Vec::with_capacity(map.len() * 10);
    for (&id, &fp) in map {
        let mut v = id;
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
        out.extend_from_slice(&fp.to_be_bytes());
    }
    out
}

/// Decodes a stored blob; a truncated or malformed blob is corruption.
pub fn decode(blob: &[u8]) -> Result<FpMap, StateError> {
    let corrupt = || StateError::Corrupt {
        what: "fingerprint map",
        value: format!("{} bytes", blob.len()),
    };
    let mut map = FpMap::new();
    let mut i = 0;
    while i < blob.len() {
        let mut id: u32 = 0;
        let mut shift = 0;
        loop {
            let byte = *blob.get(i).ok_or_else(corrupt)?;
            i += 1;
            if shift > 28 {
                return Err(corrupt());
            }
            id |= u32::from(byte & 0x7f) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                break;
            }
        }
        let bytes: [u8; 8] = blob
            .get(i..i + 8)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(corrupt)?;
        i += 8;
        map.insert(id, i64::from_be_bytes(bytes));
    }
    Ok(map)
}

/// The interned field names (both directions), loaded at open and grown as new fields appear.
#[derive(Debug, Default)]
pub struct FieldDictionary {
    ids: HashMap<(Side, String), u32>,
    names: HashMap<u32, (Side, String)>,
}

impl FieldDictionary {
    pub fn load(conn: &Connection) -> Result<FieldDictionary, StateError> {
        let mut dict = FieldDictionary::default();
        let mut stmt = conn.prepare("SELECT id, side, field FROM fp_fields")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        for row in rows {
            let (id, side, field) = row?;
            let side = match side.as_str() {
                "crm" => Side::Crm,
                "marketo" => Side::Marketo,
                _ => {
                    return Err(StateError::Corrupt {
                        what: "side",
                        value: side,
                    });
                }
            };
            let id = u32::try_from(id).map_err(|_| StateError::Corrupt {
                what: "field id",
                value: id.to_string(),
            })?;
            dict.insert(id, side, field);
        }
        Ok(dict)
    }

    pub fn insert(&mut self, id: u32, side: Side, field: String) {
        self.ids.insert((side, field.clone()), id);
        self.names.insert(id, (side, field));
    }

    pub fn id(&self, side: Side, field: &str) -> Option<u32> {
        // Avoids allocating for the common hit: the dictionary is tiny, a scan of its keys would do too.
        self.ids.get(&(side, field.to_owned())).copied()
    }

    pub fn name(&self, id: u32) -> Option<&(Side, String)> {
        self.names.get(&id)
    }

    /// Interns a new field inside the caller's transaction (so it rolls back with it); the caller adds
    /// the returned id to the dictionary once the transaction committed.
    pub fn intern(conn: &Connection, side: Side, field: &str) -> Result<u32, StateError> {
        conn.prepare_cached("INSERT OR IGNORE INTO fp_fields (side, field) VALUES (?1, ?2)")?
            .execute(params![side.as_str(), field])?;
        let id: i64 = conn
            .prepare_cached("SELECT id FROM fp_fields WHERE side = ?1 AND field = ?2")?
            .query_row(params![side.as_str(), field], |r| r.get(0))?;
        u32::try_from(id).map_err(|_| StateError::Corrupt {
            what: "field id",
            value: id.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_round_trip() {
        let mut map = FpMap::new();
        for (id, fp) in [
            (1u32, -1i64),
            (127, i64::MAX),
            (128, 0),
            (300_000, i64::MIN),
        ] {
            map.insert(id, fp);
        }
        let blob = encode(&map);
        assert_eq!(blob.len(), 1 + 8 + 1 + 8 + 2 + 8 + 3 + 8);
        assert_eq!(decode(&blob).ok(), Some(map));
        assert!(decode(&blob[..blob.len() - 1]).is_err());
        assert_eq!(decode(&[]).ok(), Some(FpMap::new()));
    }
}
