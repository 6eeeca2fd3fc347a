//! SlidingWindow / ConcurrencyGate semantics and the SQLite files.

use std::time::{Duration, Instant};

use mdsync_emulator_kit::{ConcurrencyGate, SlidingWindow, checkpoint, open_database};

#[test]
fn sliding_window_admits_max_then_reports_retry_after_until_oldest_hit_expires() {
    let window = SlidingWindow::new(3, Duration::from_secs(10));
    let t0 = Instant::now();
    assert_eq!(window.remaining_at("u1", t0), 3);
    assert_eq!(window.try_hit_at("u1", t0), Ok(()));
    assert_eq!(window.try_hit_at("u1", t0 + Duration::from_secs(2)), Ok(()));
    assert_eq!(window.try_hit_at("u1", t0 + Duration::from_secs(4)), Ok(()));
    assert_eq!(window.remaining_at("u1", t0 + Duration::from_secs(4)), 0);
    assert_eq!(
        window.try_hit_at("u1", t0 + Duration::from_secs(4)),
        Err(Duration::from_secs(6))
    );
    // Rejected hits are not recorded.
    assert_eq!(
        window.try_hit_at("u1", t0 + Duration::from_secs(9)),
        Err(Duration::from_secs(1))
    );
    // Keys are independent.
    assert_eq!(window.try_hit_at("u2", t0 + Duration::from_secs(9)), Ok(()));
    assert_eq!(window.remaining_at("u2", t0 + Duration::from_secs(9)), 2);
    // The first hit leaves the window exactly `window` after it happened.
    assert_eq!(window.remaining_at("u1", t0 + Duration::from_secs(10)), 1);
    assert_eq!(
        window.try_hit_at("u1", t0 + Duration::from_secs(10)),
        Ok(())
    );
    assert_eq!(
        window.try_hit_at("u1", t0 + Duration::from_secs(11)),
        Err(Duration::from_secs(1))
    );
    window.reset();
    assert_eq!(window.remaining("u1"), 3);
    assert_eq!(window.try_hit("u1"), Ok(()));
    assert_eq!(window.remaining("u1"), 2);
}

#[test]
fn sliding_window_with_zero_max_never_admits() {
    let window = SlidingWindow::new(0, Duration::from_secs(1));
    assert_eq!(window.try_hit("k"), Err(Duration::from_secs(1)));
    assert_eq!(window.remaining("k"), 0);
}

#[test]
fn sliding_window_forgets_idle_keys() {
    let window = SlidingWindow::new(1, Duration::from_millis(10));
    let t0 = Instant::now();
    for i in 0..3000 {
        assert_eq!(
            window.try_hit_at(&format!("k{i}"), t0 + Duration::from_millis(i)),
            Ok(())
        );
    }
    // Old keys were pruned but still behave as fresh.
    assert_eq!(window.remaining_at("k0", t0 + Duration::from_secs(10)), 1);
    assert_eq!(
        window.try_hit_at("k2999", t0 + Duration::from_millis(2999)),
        Err(Duration::from_millis(10))
    );
}

#[test]
fn concurrency_gate_limits_in_flight_per_key_and_releases_on_drop() {
    let gate = ConcurrencyGate::new(2);
    let a = gate.try_enter("user").expect("first");
    let b = gate.try_enter("user").expect("second");
    assert_eq!(gate.in_flight("user"), 2);
    assert!(gate.try_enter("user").is_none(), "third is over the limit");
    assert_eq!(gate.in_flight("user"), 2, "a refused entry takes no slot");
    let other = gate.try_enter("other").expect("keys are independent");
    drop(a);
    assert_eq!(gate.in_flight("user"), 1);
    let c = gate.try_enter("user").expect("slot freed by drop");
    drop((b, c, other));
    assert_eq!(gate.in_flight("user"), 0);
    assert_eq!(gate.in_flight("other"), 0);

    let closed = ConcurrencyGate::new(0);
    assert!(closed.try_enter("user").is_none());
}

#[test]
fn concurrency_gate_guards_work_across_threads() {
    let gate = std::sync::Arc::new(ConcurrencyGate::new(3));
    let guards: Vec<_> = (0..3).map(|_| gate.try_enter("k").unwrap()).collect();
    let gate2 = gate.clone();
    std::thread::spawn(move || assert!(gate2.try_enter("k").is_none()))
        .join()
        .unwrap();
    std::thread::spawn(move || drop(guards)).join().unwrap();
    assert_eq!(gate.in_flight("k"), 0);
}

#[test]
fn persistent_database_survives_reopen_with_pragmas_set() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("state").join("nested");
    {
        let (conn, temp) = open_database(Some(&dir), "dataverse.db").unwrap();
        assert!(temp.is_none(), "persistent databases need no temp dir");
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let fk: i64 = conn
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(fk, 1);
        let sync: i64 = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 1, "NORMAL");
        let cache: i64 = conn
            .query_row("PRAGMA cache_size", [], |r| r.get(0))
            .unwrap();
        assert!(cache < 0, "bounded cache in KiB: {cache}");
        let busy: i64 = conn
            .query_row("PRAGMA busy_timeout", [], |r| r.get(0))
            .unwrap();
        assert!(busy > 0);
        conn.execute_batch(
            "CREATE TABLE parent(id INTEGER PRIMARY KEY);
             CREATE TABLE child(id INTEGER PRIMARY KEY, parent INTEGER REFERENCES parent(id));
             INSERT INTO parent(id) VALUES (7);
             INSERT INTO child(id, parent) VALUES (1, 7);",
        )
        .unwrap();
        assert!(
            conn.execute("INSERT INTO child(id, parent) VALUES (2, 99)", [])
                .is_err(),
            "foreign keys enforced"
        );
        checkpoint(&conn).unwrap();
    }
    assert!(dir.join("dataverse.db").is_file());
    let (conn, _) = open_database(Some(&dir), "dataverse.db").unwrap();
    let parent: i64 = conn
        .query_row("SELECT parent FROM child WHERE id = 1", [], |r| r.get(0))
        .unwrap();
    assert_eq!(parent, 7);
}

#[test]
fn temp_database_is_a_fresh_file_removed_with_its_tempdir() {
    let (conn, temp) = open_database(None, "marketo.db").unwrap();
    let temp = temp.expect("temp store keeps a TempDir alive");
    let path = temp.path().join("marketo.db");
    let file: String = conn
        .query_row("PRAGMA database_list", [], |r| r.get(2))
        .unwrap();
    assert_eq!(std::path::Path::new(&file), path, "on disk, not in memory");
    conn.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    assert!(path.is_file());

    let (other, other_temp) = open_database(None, "marketo.db").unwrap();
    let tables: i64 = other
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .unwrap();
    assert_eq!(tables, 0, "each temp store starts empty");
    assert_ne!(other_temp.unwrap().path(), temp.path());

    drop(conn);
    drop(temp);
    assert!(!path.exists(), "temp store removed when its TempDir drops");
}

#[test]
fn unusable_state_dir_is_an_error_not_a_panic() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    assert!(open_database(Some(&file), "x.db").is_err());
}
