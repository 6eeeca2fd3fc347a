//! The custom sync filter `new_synctomkto` (marketo-dynamics-sync.md §4).
//!
//! A record is skipped only when the flag is explicitly No; a missing attribute, null or Yes all sync.
//! No → Yes creates or updates the record in Marketo at once; Yes → No stops syncing it and deletes
//! nothing (the Marketo person goes stale). Qualify and merge follow Marketo's published tables.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The filter attribute's logical name.
pub const FILTER_FIELD: &str = "new_synctomkto";

/// The flag as read from a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterValue {
    /// The row does not carry the attribute (not created, not selected).
    Missing,
    Null,
    True,
    False,
}

impl FilterValue {
    /// Reads the flag from a row's value. Only an explicit `false` (or `0`, as some exports spell Two
    /// Options) is No; anything else syncs.
    pub fn from_field(v: Option<&Value>) -> FilterValue {
        match v {
            None => FilterValue::Missing,
            Some(Value::Null) => FilterValue::Null,
            Some(Value::Bool(false)) => FilterValue::False,
            Some(Value::Number(n)) if n.as_i64() == Some(0) => FilterValue::False,
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => FilterValue::False,
            Some(_) => FilterValue::True,
        }
    }

    /// Whether a record with this flag syncs.
    pub fn syncs(self) -> bool {
        self != FilterValue::False
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FilterValue::Missing => "missing",
            FilterValue::Null => "null",
            FilterValue::True => "true",
            FilterValue::False => "false",
        }
    }
}

impl std::str::FromStr for FilterValue {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "missing" => Ok(FilterValue::Missing),
            "null" => Ok(FilterValue::Null),
            "true" => Ok(FilterValue::True),
            "false" => Ok(FilterValue::False),
            other => Err(format!("unknown filter value `{other}`")),
        }
    }
}

/// What a flag change means for a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterTransition {
    /// Syncing before and now: normal incremental rules.
    Syncing,
    /// Previously No (or never seen), now syncing: create or update now with every mapped field.
    StartSync,
    /// Previously syncing, now No: stop, delete nothing.
    StopSync,
    /// No before and now: skip.
    Skipped,
}

/// Compares the flag remembered on the link (`None` when never linked) with the incoming one.
pub fn transition(previous: Option<FilterValue>, current: FilterValue) -> FilterTransition {
    match (previous.map(FilterValue::syncs), current.syncs()) {
        (Some(true), true) => FilterTransition::Syncing,
        (Some(false), true) => FilterTransition::StartSync,
        (None, true) => FilterTransition::StartSync,
        (Some(true), false) => FilterTransition::StopSync,
        (Some(false) | None, false) => FilterTransition::Skipped,
    }
}

/// What happens in Marketo when a lead is qualified into a contact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QualifyOutcome {
    /// The lead's person is updated (e.g. its status becomes Qualified).
    pub update_lead: bool,
    /// How the new contact reaches Marketo.
    pub contact: QualifiedContact,
}

/// The contact side of a qualification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QualifiedContact {
    /// Not synced.
    NotSynced,
    /// The lead's Marketo person becomes the contact (relinked, `msftType` = Contact).
    TakesOverLeadPerson,
    /// A new Marketo person is created for the contact.
    NewPerson,
}

/// Marketo's Qualify table [S39] (lead flag / contact flag): F/F nothing syncs; T/T the contact syncs;
/// F/T a new contact is created in Marketo; T/F the lead is updated but the contact is not synced.
pub fn qualify(lead: FilterValue, contact: FilterValue) -> QualifyOutcome {
    match (lead.syncs(), contact.syncs()) {
        (false, false) => QualifyOutcome {
            update_lead: false,
            contact: QualifiedContact::NotSynced,
        },
        (true, true) => QualifyOutcome {
            update_lead: false,
            contact: QualifiedContact::TakesOverLeadPerson,
        },
        (false, true) => QualifyOutcome {
            update_lead: false,
            contact: QualifiedContact::NewPerson,
        },
        (true, false) => QualifyOutcome {
            update_lead: true,
            contact: QualifiedContact::NotSynced,
        },
    }
}

/// Marketo's Merge rule [S40]: the winning record's flag decides, whatever the loser's flag was.
pub fn merge(winner: FilterValue, _loser: FilterValue) -> bool {
    winner.syncs()
}

#[cfg(test)]
mod tests {
    use super::*;
    use FilterValue::*;
    use serde_json::json;

    #[test]
    fn only_explicit_false_skips() {
        let table = [
            (None, Missing, true),
            (Some(json!(null)), Null, true),
            (Some(json!(true)), True, true),
            (Some(json!(false)), False, false),
            (Some(json!(0)), False, false),
            (Some(json!(1)), True, true),
            (Some(json!("false")), False, false),
        ];
        for (raw, value, syncs) in table {
            assert_eq!(FilterValue::from_field(raw.as_ref()), value, "{raw:?}");
            assert_eq!(value.syncs(), syncs, "{value:?}");
            assert_eq!(value.as_str().parse::<FilterValue>(), Ok(value));
        }
    }

    #[test]
    fn transitions() {
        let table = [
            (Some(True), True, FilterTransition::Syncing),
            (Some(Missing), Null, FilterTransition::Syncing),
            (Some(False), True, FilterTransition::StartSync),
            (Some(False), Missing, FilterTransition::StartSync),
            (None, True, FilterTransition::StartSync),
            (Some(True), False, FilterTransition::StopSync),
            (Some(Null), False, FilterTransition::StopSync),
            (Some(False), False, FilterTransition::Skipped),
            (None, False, FilterTransition::Skipped),
        ];
        for (prev, cur, want) in table {
            assert_eq!(transition(prev, cur), want, "{prev:?} -> {cur:?}");
        }
    }

    #[test]
    fn qualify_table() {
        let table = [
            (False, False, false, QualifiedContact::NotSynced),
            (True, True, false, QualifiedContact::TakesOverLeadPerson),
            (False, True, false, QualifiedContact::NewPerson),
            (True, False, true, QualifiedContact::NotSynced),
            (Missing, Null, false, QualifiedContact::TakesOverLeadPerson),
        ];
        for (lead, contact, update_lead, want) in table {
            assert_eq!(
                qualify(lead, contact),
                QualifyOutcome {
                    update_lead,
                    contact: want
                },
                "{lead:?}/{contact:?}"
            );
        }
    }

    #[test]
    fn merge_winner_decides() {
        for loser in [True, False, Null, Missing] {
            assert!(merge(True, loser));
            assert!(!merge(False, loser));
            assert!(merge(Missing, loser));
        }
    }
}
