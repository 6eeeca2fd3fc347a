//! Conflicts: both sides changed the same field since the last cycle, to different values.
//!
//! The field's [`ConflictPolicy`] picks the winner; the loser's side is overwritten with the winner's value
//! and a [`ConflictRecord`] keeps both values and the outcome. Tie-breaks (equal timestamps for
//! `newest_wins`, both or neither empty for `keep_non_empty`) fall back to the entity's default policy —
//! Marketo on leads, Dynamics everywhere else — so every conflict has exactly one deterministic winner.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::mapping::ConflictPolicy;
use crate::record::{CrmEntity, Side};

/// One side's competing change.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    /// The value is null or an empty string.
    pub empty: bool,
    /// When the change happened (`modifiedon`, the activity date), if known.
    pub at: Option<DateTime<Utc>>,
}

/// Picks the winning side for one conflicting field.
pub fn resolve(
    policy: ConflictPolicy,
    entity: CrmEntity,
    crm: Candidate,
    marketo: Candidate,
) -> Side {
    let fallback = || match ConflictPolicy::default_for(entity) {
        ConflictPolicy::MarketoWins => Side::Marketo,
        _ => Side::Crm,
    };
    match policy {
        ConflictPolicy::MarketoWins => Side::Marketo,
        ConflictPolicy::DynamicsWins => Side::Crm,
        ConflictPolicy::NewestWins => match (crm.at, marketo.at) {
            (Some(c), Some(m)) if c > m => Side::Crm,
            (Some(c), Some(m)) if m > c => Side::Marketo,
            _ => fallback(),
        },
        ConflictPolicy::KeepNonEmpty => match (crm.empty, marketo.empty) {
            (false, true) => Side::Crm,
            (true, false) => Side::Marketo,
            _ => fallback(),
        },
    }
}

/// A resolved conflict, as logged in the state store and shown by `mdsync status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConflictRecord {
    pub entity: CrmEntity,
    pub crm_id: Uuid,
    pub marketo_id: Option<i64>,
    pub crm_field: String,
    pub marketo_field: String,
    pub crm_value: Value,
    pub marketo_value: Value,
    pub policy: ConflictPolicy,
    /// The side whose value was kept.
    pub outcome: Side,
    pub at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn c(empty: bool, secs: Option<i64>) -> Candidate {
        Candidate {
            empty,
            at: secs.map(|s| Utc.timestamp_opt(s, 0).single().unwrap_or_default()),
        }
    }

    #[test]
    fn policy_table() {
        use ConflictPolicy::*;
        use CrmEntity::*;
        // (policy, entity, crm, marketo, winner)
        let table = [
            (
                MarketoWins,
                Contact,
                c(false, Some(2)),
                c(false, Some(1)),
                Side::Marketo,
            ),
            (
                DynamicsWins,
                Lead,
                c(false, Some(1)),
                c(false, Some(2)),
                Side::Crm,
            ),
            (
                NewestWins,
                Lead,
                c(false, Some(2)),
                c(false, Some(1)),
                Side::Crm,
            ),
            (
                NewestWins,
                Contact,
                c(false, Some(1)),
                c(false, Some(2)),
                Side::Marketo,
            ),
            (
                NewestWins,
                Lead,
                c(false, Some(1)),
                c(false, Some(1)),
                Side::Marketo,
            ),
            (
                NewestWins,
                Contact,
                c(false, Some(1)),
                c(false, Some(1)),
                Side::Crm,
            ),
            (
                NewestWins,
                Contact,
                c(false, None),
                c(false, Some(1)),
                Side::Crm,
            ),
            (
                NewestWins,
                Lead,
                c(false, Some(5)),
                c(false, None),
                Side::Marketo,
            ),
            (KeepNonEmpty, Lead, c(false, None), c(true, None), Side::Crm),
            (
                KeepNonEmpty,
                Contact,
                c(true, None),
                c(false, None),
                Side::Marketo,
            ),
            (
                KeepNonEmpty,
                Lead,
                c(false, None),
                c(false, None),
                Side::Marketo,
            ),
            (
                KeepNonEmpty,
                Contact,
                c(true, None),
                c(true, None),
                Side::Crm,
            ),
        ];
        for (policy, entity, crm, marketo, want) in table {
            assert_eq!(
                resolve(policy, entity, crm, marketo),
                want,
                "{policy:?} {entity} {crm:?} {marketo:?}"
            );
        }
    }
}
