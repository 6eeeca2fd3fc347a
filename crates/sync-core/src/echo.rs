//! Echo suppression: telling mdsync's own writes, coming back through change capture, from real edits.
//!
//! # What counts as an echo
//!
//! Both services report mdsync's writes as changes (a Dataverse delta row, a Marketo Change Data Value
//! activity). Sending them back would loop forever, so each incoming **field** is judged by these rules,
//! in this order:
//!
//! 1. **Fingerprint match (both sides).** The state store keeps the fingerprint of the value mdsync last
//!    wrote to, or read from, each side for each linked record and field. An incoming value whose
//!    fingerprint equals the stored one is an echo (or nothing new): dropped, whoever made the change.
//! 2. **Own Marketo API user (rule b).** A Marketo field change whose activity names mdsync's API user as
//!    `Modifying User` is never sent to Dynamics, even when its value differs from the fingerprint (it is
//!    then a write mdsync made that the state store had not recorded yet, e.g. before a crash). Marketo
//!    attributes every field change to exactly one actor, so this rule is exact.
//! 3. **Known fingerprint, different value → real edit.** A Dynamics field whose value differs from the
//!    stored fingerprint is a real edit **even when the row's `_modifiedby_value` is the sync user**:
//!    Dataverse only reports the row's last modifier, so a human edit that landed just before or after a
//!    sync-user write arrives in a row "modified by" the sync user and must still sync.
//! 4. **Sync user row, no fingerprint (rule a, the seed's rule).** A Dynamics field of a row last modified
//!    by the sync user, for which mdsync has no fingerprint, is not sent to Marketo: nothing shows that
//!    anyone but the sync user touched it.
//! 5. Anything else (a human's row without a fingerprint, a Marketo change by anyone else) is a real edit.
//!
//! The initial load and a No → Yes sync-filter transition bypass these rules: they send the whole record.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::fingerprint::Fingerprint;
use crate::record::ChangeActor;

/// Who mdsync is on each side.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncIdentity {
    /// The Dynamics sync user's `systemuserid`.
    pub crm_sync_user: Uuid,
    /// mdsync's Marketo API user(s), as they appear in `Modifying User` (the API user's email).
    pub marketo_api_users: Vec<String>,
}

/// Why an incoming field is not sent on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EchoReason {
    /// Rule 1: equal to what mdsync last wrote or read.
    SameAsFingerprint,
    /// Rule 2: written by mdsync's own Marketo API user.
    OwnApiUser,
    /// Rule 4: a sync-user row with nothing showing a human edit.
    SyncUserRow,
}

/// The judgement on one incoming field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    RealEdit,
    Echo(EchoReason),
}

impl Verdict {
    pub fn is_real_edit(self) -> bool {
        self == Verdict::RealEdit
    }
}

/// Judges one field of a Dynamics row (rules 1, 3, 4, 5).
pub fn judge_crm_field(
    row_by_sync_user: bool,
    stored: Option<Fingerprint>,
    incoming: Fingerprint,
) -> Verdict {
    match stored {
        Some(fp) if fp == incoming => Verdict::Echo(EchoReason::SameAsFingerprint),
        Some(_) => Verdict::RealEdit,
        None if row_by_sync_user => Verdict::Echo(EchoReason::SyncUserRow),
        None => Verdict::RealEdit,
    }
}

/// Judges one field change from Marketo (rules 1, 2, 5).
pub fn judge_marketo_field(
    actor: ChangeActor,
    stored: Option<Fingerprint>,
    incoming: Fingerprint,
) -> Verdict {
    if stored == Some(incoming) {
        return Verdict::Echo(EchoReason::SameAsFingerprint);
    }
    match actor {
        ChangeActor::SyncUser => Verdict::Echo(EchoReason::OwnApiUser),
        ChangeActor::Other => Verdict::RealEdit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Fingerprint = Fingerprint(1);
    const B: Fingerprint = Fingerprint(2);

    #[test]
    fn crm_rules_table() {
        // (row by sync user, stored, incoming, verdict)
        let table = [
            (
                true,
                Some(A),
                A,
                Verdict::Echo(EchoReason::SameAsFingerprint),
            ),
            (
                false,
                Some(A),
                A,
                Verdict::Echo(EchoReason::SameAsFingerprint),
            ),
            (true, Some(A), B, Verdict::RealEdit),
            (false, Some(A), B, Verdict::RealEdit),
            (true, None, A, Verdict::Echo(EchoReason::SyncUserRow)),
            (false, None, A, Verdict::RealEdit),
        ];
        for (by_sync, stored, incoming, want) in table {
            assert_eq!(
                judge_crm_field(by_sync, stored, incoming),
                want,
                "{by_sync} {stored:?} {incoming:?}"
            );
        }
    }

    #[test]
    fn marketo_rules_table() {
        let table = [
            (
                ChangeActor::SyncUser,
                Some(A),
                A,
                Verdict::Echo(EchoReason::SameAsFingerprint),
            ),
            (
                ChangeActor::Other,
                Some(A),
                A,
                Verdict::Echo(EchoReason::SameAsFingerprint),
            ),
            (
                ChangeActor::SyncUser,
                Some(A),
                B,
                Verdict::Echo(EchoReason::OwnApiUser),
            ),
            (
                ChangeActor::SyncUser,
                None,
                B,
                Verdict::Echo(EchoReason::OwnApiUser),
            ),
            (ChangeActor::Other, Some(A), B, Verdict::RealEdit),
            (ChangeActor::Other, None, B, Verdict::RealEdit),
        ];
        for (actor, stored, incoming, want) in table {
            assert_eq!(
                judge_marketo_field(actor, stored, incoming),
                want,
                "{actor:?} {stored:?} {incoming:?}"
            );
        }
    }
}
