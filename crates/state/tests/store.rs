//! The SQLite state store against real database files in temp dirs.

use chrono::{DateTime, TimeZone, Utc};
use mdsync_state::{
    Backlog, CursorUpdate, CycleCommit, CycleStatus, DeadLetterQuery, ExportFormat, NewDeadLetter,
    SCHEMA_VERSION, SqliteStateStore, StateError, StateStore,
};
use mdsync_sync_core::conflict::ConflictRecord;
use mdsync_sync_core::fingerprint::Fingerprint;
use mdsync_sync_core::link::{FieldFingerprint, Link, LinkChange, StateEffects};
use mdsync_sync_core::mapping::ConflictPolicy;
use mdsync_sync_core::record::{CrmEntity, Flow, MarketoObject, Side};
use mdsync_sync_core::sync_filter::FilterValue;
use serde_json::json;
use uuid::Uuid;

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 0)
        .single()
        .expect("valid time")
}

fn person_link(n: u128, marketo_id: i64) -> Link {
    Link {
        object: MarketoObject::Person,
        crm_entity: CrmEntity::Lead,
        crm_id: Uuid::from_u128(n),
        marketo_id: Some(marketo_id),
        filter: FilterValue::Missing,
        created_at: t(0),
    }
}

fn fp(n: u128, side: Side, field: &str, v: i64) -> FieldFingerprint {
    FieldFingerprint {
        crm_id: Uuid::from_u128(n),
        side,
        field: field.into(),
        fingerprint: Fingerprint(v),
    }
}

fn cursor(scope: &str, value: &str) -> CursorUpdate {
    CursorUpdate {
        scope: scope.into(),
        side: Side::Crm,
        value: value.into(),
    }
}

fn dead_letter(n: u128, code: &str) -> NewDeadLetter {
    NewDeadLetter {
        entity: CrmEntity::Lead,
        crm_id: Some(Uuid::from_u128(n)),
        marketo_id: Some(n as i64),
        operation: "update".into(),
        direction: Flow::ToMarketo,
        code: code.into(),
        message: format!("lead {n}: field `lastname`: too long"),
        payload: json!({"lastname": "x".repeat(10), "n": n as u64}),
    }
}

#[test]
fn state_persists_across_reopen() -> Result<(), StateError> {
    let dir = tempfile::tempdir().map_err(|e| StateError::Export(e.to_string()))?;
    let path = dir.path().join("state.db");
    {
        let mut store = SqliteStateStore::open(&path)?;
        let commit = CycleCommit {
            cursors: vec![cursor(
                "lead",
                "https://org/api/data/v9.2/leads?$deltatoken=1",
            )],
            effects: StateEffects {
                links: vec![
                    LinkChange::Upsert(person_link(1, 101)),
                    LinkChange::Upsert(person_link(2, 102)),
                ],
                fingerprints: vec![
                    fp(1, Side::Crm, "firstname", 11),
                    fp(1, Side::Marketo, "firstName", 12),
                ],
            },
            dead_letters: vec![dead_letter(3, "1003")],
            resolved_dead_letters: vec![],
            conflicts: vec![ConflictRecord {
                entity: CrmEntity::Lead,
                crm_id: Uuid::from_u128(1),
                marketo_id: Some(101),
                crm_field: "firstname".into(),
                marketo_field: "firstName".into(),
                crm_value: json!("Ada"),
                marketo_value: json!("Adah"),
                policy: ConflictPolicy::MarketoWins,
                outcome: Side::Marketo,
                at: t(5),
            }],
            backlog: vec![Backlog {
                entity: CrmEntity::Lead,
                direction: Flow::ToMarketo,
                pending_inserts: 3,
                pending_updates: 4,
                oldest: Some(t(1)),
                updated_at: t(5),
            }],
        };
        store.commit_cycle(&commit, t(5))?;
        let id = store.start_cycle("incremental", t(6))?;
        store.finish_cycle(
            id,
            t(7),
            CycleStatus::Completed,
            &json!([{"entity": "lead", "creates": 2}]),
            None,
        )?;
    }
    let store = SqliteStateStore::open(&path)?;
    assert_eq!(store.schema_version()?, SCHEMA_VERSION);
    let c = store.cursor("lead", Side::Crm)?.expect("cursor persisted");
    assert_eq!(c.value, "https://org/api/data/v9.2/leads?$deltatoken=1");
    assert_eq!(c.updated_at, t(5));
    assert!(store.cursor("lead", Side::Marketo)?.is_none());

    let links =
        store.links_by_crm_ids(&[Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(9)])?;
    assert_eq!(links.len(), 2);
    assert!(links.contains(&person_link(1, 101)));
    let by_mk = store.links_by_marketo_ids(MarketoObject::Person, &[102, 999])?;
    assert_eq!(by_mk, vec![person_link(2, 102)]);
    assert!(
        store
            .links_by_marketo_ids(MarketoObject::Company, &[102])?
            .is_empty()
    );
    assert_eq!(store.link_count(Some(CrmEntity::Lead))?, 2);
    assert_eq!(store.link_count(Some(CrmEntity::Contact))?, 0);

    let mut fps = store.fingerprints(&[Uuid::from_u128(1)])?;
    fps.sort_by(|a, b| a.field.cmp(&b.field));
    assert_eq!(
        fps,
        vec![
            fp(1, Side::Marketo, "firstName", 12),
            fp(1, Side::Crm, "firstname", 11)
        ]
    );

    let conflicts = store.conflicts(0, 10)?;
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].conflict.marketo_value, json!("Adah"));
    assert_eq!(conflicts[0].conflict.outcome, Side::Marketo);
    assert_eq!(conflicts[0].conflict.policy, ConflictPolicy::MarketoWins);

    let backlog = store.backlog()?;
    assert_eq!(
        (
            backlog.len(),
            backlog[0].pending_inserts,
            backlog[0].pending_updates
        ),
        (1, 3, 4)
    );

    let cycles = store.cycles(5)?;
    assert_eq!(cycles.len(), 1);
    assert_eq!(cycles[0].status, CycleStatus::Completed);
    assert_eq!(cycles[0].counts, json!([{"entity": "lead", "creates": 2}]));
    assert_eq!(cycles[0].finished_at, Some(t(7)));
    Ok(())
}

#[test]
fn failing_commit_leaves_cursor_and_state_unchanged() -> Result<(), StateError> {
    let dir = tempfile::tempdir().map_err(|e| StateError::Export(e.to_string()))?;
    let path = dir.path().join("state.db");
    let mut store = SqliteStateStore::open(&path)?;
    store.commit_cycle(
        &CycleCommit {
            cursors: vec![cursor("lead", "token-1")],
            effects: StateEffects {
                links: vec![LinkChange::Upsert(person_link(1, 101))],
                fingerprints: vec![fp(1, Side::Crm, "firstname", 1)],
            },
            ..CycleCommit::default()
        },
        t(1),
    )?;
    // The second batch's last fingerprint violates a constraint (empty field name): the statement fails
    // mid-transaction, after links and other fingerprints were already written.
    let bad = CycleCommit {
        cursors: vec![cursor("lead", "token-2")],
        effects: StateEffects {
            links: vec![
                LinkChange::Upsert(person_link(2, 102)),
                LinkChange::Remove {
                    crm_entity: CrmEntity::Lead,
                    crm_id: Uuid::from_u128(1),
                },
            ],
            fingerprints: vec![fp(2, Side::Crm, "firstname", 2), fp(2, Side::Crm, "", 3)],
        },
        dead_letters: vec![dead_letter(2, "1003")],
        ..CycleCommit::default()
    };
    assert!(matches!(
        store.commit_cycle(&bad, t(2)),
        Err(StateError::Sqlite(_))
    ));
    drop(store);

    let store = SqliteStateStore::open(&path)?;
    assert_eq!(
        store.cursor("lead", Side::Crm)?.map(|c| c.value),
        Some("token-1".to_owned())
    );
    assert_eq!(
        store.links_by_crm_ids(&[Uuid::from_u128(1), Uuid::from_u128(2)])?,
        vec![person_link(1, 101)]
    );
    assert_eq!(
        store.fingerprints(&[Uuid::from_u128(1), Uuid::from_u128(2)])?,
        vec![fp(1, Side::Crm, "firstname", 1)]
    );
    assert_eq!(store.dead_letter_count(true)?, 0);
    Ok(())
}

#[test]
fn uncommitted_transaction_of_a_killed_writer_is_not_visible()
-> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("state.db");
    let mut store = SqliteStateStore::open(&path)?;
    store.commit_cycle(
        &CycleCommit {
            cursors: vec![cursor("contact", "a")],
            ..CycleCommit::default()
        },
        t(1),
    )?;
    {
        // Another writer on the same file starts moving the cursor and dies before COMMIT.
        let mut raw = rusqlite::Connection::open(&path)?;
        let tx = raw.transaction()?;
        tx.execute("UPDATE cursors SET value = 'b' WHERE scope = 'contact'", [])?;
        drop(tx);
    }
    drop(store);
    let store = SqliteStateStore::open(&path)?;
    assert_eq!(
        store.cursor("contact", Side::Crm)?.map(|c| c.value),
        Some("a".to_owned())
    );
    Ok(())
}

#[test]
fn migrations_are_idempotent() -> Result<(), StateError> {
    let dir = tempfile::tempdir().map_err(|e| StateError::Export(e.to_string()))?;
    let path = dir.path().join("state.db");
    for _ in 0..3 {
        let store = SqliteStateStore::open(&path)?;
        assert_eq!(store.schema_version()?, SCHEMA_VERSION);
    }
    let conn = rusqlite::Connection::open(&path).map_err(StateError::from)?;
    let rows: i64 = conn
        .query_row("SELECT COUNT(*) FROM schema_version", [], |r| r.get(0))
        .map_err(StateError::from)?;
    assert_eq!(rows, SCHEMA_VERSION);
    // Durability settings are in force on the store's connection file.
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .map_err(StateError::from)?;
    assert_eq!(mode, "wal");
    // A database from a newer mdsync is refused, not silently used.
    conn.execute(
        "INSERT INTO schema_version (version, applied_at) VALUES (999, 'x')",
        [],
    )
    .map_err(StateError::from)?;
    drop(conn);
    let err = SqliteStateStore::open(&path).unwrap_err();
    assert!(
        err.to_string().contains("schema version 999 is newer"),
        "{err}"
    );
    Ok(())
}

#[test]
fn dead_letter_round_trip() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let mut store = SqliteStateStore::open(dir.path().join("state.db"))?;
    let commit = CycleCommit {
        dead_letters: (1..=5).map(|n| dead_letter(n, "1003")).collect(),
        ..CycleCommit::default()
    };
    store.commit_cycle(&commit, t(10))?;
    // The same record failing again: one row, attempts bumped, latest error kept.
    store.commit_cycle(
        &CycleCommit {
            dead_letters: vec![dead_letter(2, "1006")],
            ..CycleCommit::default()
        },
        t(20),
    )?;

    let all = store.dead_letters(&DeadLetterQuery::default())?;
    assert_eq!(all.len(), 5);
    let two = all
        .iter()
        .find(|d| d.crm_id == Some(Uuid::from_u128(2)))
        .expect("dead letter 2");
    assert_eq!(
        (
            two.attempts,
            two.code.as_str(),
            two.first_seen,
            two.last_seen
        ),
        (2, "1006", t(10), t(20))
    );
    assert_eq!(two.payload, json!({"lastname": "xxxxxxxxxx", "n": 2}));
    assert_eq!(two.direction, Flow::ToMarketo);
    assert_eq!(store.dead_letter(two.id)?.as_ref(), Some(two));
    assert_eq!(store.dead_letter(9999)?, None);

    // Keyset paging.
    let page1 = store.dead_letters(&DeadLetterQuery {
        limit: 2,
        ..DeadLetterQuery::default()
    })?;
    let page2 = store.dead_letters(&DeadLetterQuery {
        limit: 2,
        after_id: page1[1].id,
        ..DeadLetterQuery::default()
    })?;
    assert_eq!(page1.len() + page2.len(), 4);
    assert!(page2[0].id > page1[1].id);
    assert!(
        store
            .dead_letters(&DeadLetterQuery {
                entity: Some(CrmEntity::Contact),
                ..DeadLetterQuery::default()
            })?
            .is_empty()
    );

    // Retry bookkeeping, then resolution through a commit and directly.
    assert!(store.mark_dead_letter_retried(two.id, t(30))?);
    assert!(!store.mark_dead_letter_retried(9999, t(30))?);
    let retried = store.dead_letter(two.id)?.expect("still there");
    assert_eq!((retried.attempts, retried.retried_at), (3, Some(t(30))));
    store.commit_cycle(
        &CycleCommit {
            resolved_dead_letters: vec![two.id],
            ..CycleCommit::default()
        },
        t(40),
    )?;
    assert!(store.resolve_dead_letter(all[0].id, t(41))?);
    assert_eq!(store.dead_letter_count(false)?, 3);
    assert_eq!(store.dead_letter_count(true)?, 5);
    // A resolved record failing again opens a new dead letter.
    store.commit_cycle(
        &CycleCommit {
            dead_letters: vec![dead_letter(2, "1003")],
            ..CycleCommit::default()
        },
        t(50),
    )?;
    assert_eq!(store.dead_letter_count(false)?, 4);

    // Export: JSON array with the `errors list --json` keys, JSONL, CSV.
    let mut json_out = Vec::new();
    assert_eq!(
        store.export_dead_letters(ExportFormat::Json, false, &mut json_out)?,
        4
    );
    let parsed: serde_json::Value = serde_json::from_slice(&json_out)?;
    let arr = parsed.as_array().expect("array");
    assert_eq!(arr.len(), 4);
    for key in [
        "entity",
        "crm_id",
        "marketo_id",
        "operation",
        "direction",
        "code",
        "message",
    ] {
        assert!(arr[0].get(key).is_some(), "missing {key}");
    }
    assert_eq!(arr[0]["entity"], json!("lead"));
    assert_eq!(arr[0]["direction"], json!("to_marketo"));
    let mut jsonl = Vec::new();
    assert_eq!(
        store.export_dead_letters(ExportFormat::Jsonl, true, &mut jsonl)?,
        6
    );
    assert_eq!(String::from_utf8(jsonl)?.lines().count(), 6);
    let mut csv_out = Vec::new();
    store.export_dead_letters(ExportFormat::Csv, false, &mut csv_out)?;
    let text = String::from_utf8(csv_out)?;
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(
            "id,entity,crm_id,marketo_id,operation,direction,code,message,attempts,first_seen,last_seen,resolved,payload"
        )
    );
    assert_eq!(lines.count(), 4);
    Ok(())
}

#[test]
fn relinking_moves_a_marketo_id_and_remove_drops_fingerprints()
-> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let mut store = SqliteStateStore::open(dir.path().join("state.db"))?;
    store.commit_cycle(
        &CycleCommit {
            effects: StateEffects {
                links: vec![LinkChange::Upsert(person_link(1, 500))],
                fingerprints: vec![fp(1, Side::Crm, "firstname", 1)],
            },
            ..CycleCommit::default()
        },
        t(1),
    )?;
    // Qualify: the lead's person now belongs to a contact.
    let contact = Link {
        crm_entity: CrmEntity::Contact,
        crm_id: Uuid::from_u128(7),
        ..person_link(7, 500)
    };
    store.commit_cycle(
        &CycleCommit {
            effects: StateEffects {
                links: vec![
                    LinkChange::Remove {
                        crm_entity: CrmEntity::Lead,
                        crm_id: Uuid::from_u128(1),
                    },
                    LinkChange::Upsert(contact.clone()),
                ],
                fingerprints: vec![],
            },
            ..CycleCommit::default()
        },
        t(2),
    )?;
    assert_eq!(
        store.links_by_marketo_ids(MarketoObject::Person, &[500])?,
        vec![contact.clone()]
    );
    assert!(store.fingerprints(&[Uuid::from_u128(1)])?.is_empty());
    // Upserting without a Marketo id keeps the known one; the filter state follows the record.
    let stopped = Link {
        marketo_id: None,
        filter: FilterValue::False,
        ..contact.clone()
    };
    store.commit_cycle(
        &CycleCommit {
            effects: StateEffects {
                links: vec![LinkChange::Upsert(stopped)],
                fingerprints: vec![],
            },
            ..CycleCommit::default()
        },
        t(3),
    )?;
    let now = store.links_by_crm_ids(&[Uuid::from_u128(7)])?;
    assert_eq!(
        now,
        vec![Link {
            filter: FilterValue::False,
            ..contact
        }]
    );
    // Pages of links.
    let page = store.links_page(CrmEntity::Contact, None, 10)?;
    assert_eq!(page.len(), 1);
    assert!(
        store
            .links_page(CrmEntity::Contact, Some(Uuid::from_u128(7)), 10)?
            .is_empty()
    );
    Ok(())
}

#[test]
fn bulk_lookups_cross_the_parameter_chunk_size() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let mut store = SqliteStateStore::open(dir.path().join("state.db"))?;
    let links: Vec<LinkChange> = (1..=1200u128)
        .map(|n| LinkChange::Upsert(person_link(n, n as i64)))
        .collect();
    store.commit_cycle(
        &CycleCommit {
            effects: StateEffects {
                links,
                fingerprints: vec![],
            },
            ..CycleCommit::default()
        },
        t(1),
    )?;
    let ids: Vec<Uuid> = (1..=1300u128).map(Uuid::from_u128).collect();
    assert_eq!(store.links_by_crm_ids(&ids)?.len(), 1200);
    let mk: Vec<i64> = (1..=1300).collect();
    assert_eq!(
        store
            .links_by_marketo_ids(MarketoObject::Person, &mk)?
            .len(),
        1200
    );
    assert_eq!(store.link_count(None)?, 1200);
    Ok(())
}

#[test]
fn store_is_usable_as_a_trait_object() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let mut store: Box<dyn StateStore> =
        Box::new(SqliteStateStore::open(dir.path().join("state.db"))?);
    store.commit_cycle(
        &CycleCommit {
            cursors: vec![cursor("leadchanges", "tok")],
            ..CycleCommit::default()
        },
        t(1),
    )?;
    assert_eq!(
        store.cursor("leadchanges", Side::Crm)?.map(|c| c.value),
        Some("tok".to_owned())
    );
    let id = store.start_cycle("initial", t(2))?;
    assert_eq!(store.cycles(1)?[0].status, CycleStatus::Running);
    store.finish_cycle(
        id,
        t(3),
        CycleStatus::Failed,
        &json!(null),
        Some("Marketo unreachable"),
    )?;
    assert_eq!(
        store.cycles(1)?[0].error.as_deref(),
        Some("Marketo unreachable")
    );
    Ok(())
}
