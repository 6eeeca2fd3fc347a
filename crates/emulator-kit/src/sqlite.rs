//! The emulators' storage files: always on disk (never in memory) so RSS stays bounded by the page cache.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

/// Page cache per connection, in KiB (SQLite's negative `cache_size` unit).
const CACHE_KIB: i64 = 16 * 1024;

/// Opens `<dir>/<file_name>` when `dir` is Some (persistent, the directory is created if missing), else a
/// fresh temp file (kept alive by the returned TempDir) — never an in-memory database, so RSS does not grow
/// with stored records. Sets WAL, synchronous=NORMAL, a bounded page cache, foreign_keys on, busy_timeout.
pub fn open_database(
    dir: Option<&Path>,
    file_name: &str,
) -> Result<(Connection, Option<tempfile::TempDir>), rusqlite::Error> {
    let (path, temp) = match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|_| rusqlite::Error::InvalidPath(dir.to_path_buf()))?;
            (dir.join(file_name), None)
        }
        None => {
            let temp = tempfile::Builder::new()
                .prefix("mdsync-emulator-")
                .tempdir()
                .map_err(|_| rusqlite::Error::InvalidPath(std::env::temp_dir()))?;
            (temp.path().join(file_name), Some(temp))
        }
    };
    let conn = Connection::open(&path)?;
    configure(&conn)?;
    Ok((conn, temp))
}

/// Applies the kit's pragmas to another connection on the same file (e.g. a reader connection).
pub fn configure(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.busy_timeout(Duration::from_secs(5))?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(mode, "SQLite refused WAL journal mode");
    }
    conn.execute_batch(&format!(
        "PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;
         PRAGMA temp_store = FILE;
         PRAGMA cache_size = -{CACHE_KIB};"
    ))?;
    Ok(())
}

/// Flushes the WAL into the main file (call on shutdown so a copied state dir is self-contained).
pub fn checkpoint(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
}
