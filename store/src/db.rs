//! The store database (`leases.db` in the storage directory): the index of every committed
//! share, the bytes of small shares ([`crate::share_index`]), and every lease
//! ([`crate::leases`]).
//!
//! SQLite in WAL mode. Writes are transactions committed with `synchronous=OFF` and made
//! durable by group commit ([`crate::group_commit`]): a caller that must know a change is
//! durable waits on the store's [`WalSync`].
//!
//! Schema versions (`PRAGMA user_version`):
//! - 1: `leases` only; every share a file under `shares/`.
//! - 2: adds `shares`. Opening a version-1 database (or a directory with no database) adds the
//!   table and indexes the share files found under `shares/` once ([`StoreDb::needs_scan`]);
//!   the files stay where they are.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lafs_core::store::StoreError;
use rusqlite::{Connection, OptionalExtension, Transaction};

use crate::group_commit::WalSync;

/// Schema version in `PRAGMA user_version`; a database from a newer lafs is refused.
const SCHEMA_VERSION: i64 = 2;

/// How long SQLite waits for a lock held by someone else before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The database of one storage directory.
pub struct StoreDb {
    pub(crate) conn: Connection,
    pub(crate) path: PathBuf,
    /// See [`StoreDb::set_renewal_granularity`] (microseconds, as stored).
    pub(crate) renewal_granularity_us: i64,
    wal: Arc<WalSync>,
    /// The database predates the share index: the share files must be indexed.
    needs_scan: bool,
}

impl std::fmt::Debug for StoreDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreDb").field("path", &self.path).finish()
    }
}

impl StoreDb {
    /// Opens (creating if needed) the database at `path`, upgrading its schema.
    pub fn open(path: &Path) -> Result<StoreDb, StoreError> {
        let conn = Connection::open(path).map_err(|e| db_error(path, "opening", e))?;
        let err = |action: &str, e| db_error(path, action, e);
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| err("configuring", e))?;
        // journal_mode answers with the mode in force, so it is a query, not an execute.
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(|e| err("enabling WAL on", e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Io(format!(
                "{}: SQLite refused WAL mode (got {mode})",
                path.display()
            )));
        }
        // Syncs are ours (group commit); checkpoints are the checkpointer's.
        conn.execute_batch("PRAGMA synchronous=OFF; PRAGMA wal_autocheckpoint=0;")
            .map_err(|e| err("configuring", e))?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| err("reading the schema version of", e))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Io(format!(
                "{}: store database schema version {version} is newer than this lafs \
                 understands ({SCHEMA_VERSION})",
                path.display()
            )));
        }
        // Pages freed by deletions go back to the filesystem when asked
        // ([`StoreDb::release_free_pages`]); only takes effect on a new database.
        conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL;")
            .map_err(|e| err("configuring", e))?;
        conn.execute_batch(
            "BEGIN;
             CREATE TABLE IF NOT EXISTS leases (
                 storage_index BLOB NOT NULL,
                 shnum INTEGER NOT NULL,
                 renew_hash BLOB NOT NULL,
                 cancel_hash BLOB NOT NULL,
                 expires_us INTEGER NOT NULL,
                 PRIMARY KEY (storage_index, shnum, renew_hash)
             ) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS shares (
                 storage_index BLOB NOT NULL,
                 shnum INTEGER NOT NULL,
                 mutable INTEGER NOT NULL,
                 in_file INTEGER NOT NULL,
                 length INTEGER NOT NULL,
                 stored_bytes INTEGER NOT NULL,
                 write_enabler BLOB,
                 node_id BLOB,
                 data BLOB,
                 checksum BLOB,
                 PRIMARY KEY (storage_index, shnum)
             );
             -- Rows whose data no longer matched its checksum, set aside for an operator.
             CREATE TABLE IF NOT EXISTS quarantined_shares AS SELECT * FROM shares WHERE 0;
             -- What an open reads, without reading the rows' data: the shares in files, and
             -- every share's size (a covering index for the sum).
             CREATE INDEX IF NOT EXISTS shares_in_files ON shares (storage_index, shnum)
                 WHERE in_file = 1;
             CREATE INDEX IF NOT EXISTS shares_sizes ON shares (stored_bytes);
             PRAGMA user_version = 2;
             COMMIT;",
        )
        .map_err(|e| err("creating the schema of", e))?;
        let wal = Arc::new(WalSync::open(path)?);
        // The schema change is durable before anything relies on it.
        wal.staged();
        wal.sync_now()?;
        // The log's directory entry, created with the database, must survive a crash too.
        if let Some(dir) = path.parent() {
            let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
        }
        Ok(StoreDb {
            conn,
            path: path.to_path_buf(),
            renewal_granularity_us: 0,
            wal,
            needs_scan: version < SCHEMA_VERSION,
        })
    }

    /// Whether the share files must be indexed (the database predates the index).
    pub fn needs_scan(&self) -> bool {
        self.needs_scan
    }

    /// The log to wait on for durability.
    pub fn wal(&self) -> &Arc<WalSync> {
        &self.wal
    }

    /// Runs `f` in one write transaction and commits it (visible now, durable after the next
    /// group sync). A failure rolls everything back.
    pub(crate) fn write<T>(
        &mut self,
        action: &str,
        f: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let before = self.conn.total_changes();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| db_error(&self.path, action, e))?;
        let out = f(&tx).map_err(|e| db_error(&self.path, action, e))?;
        tx.commit().map_err(|e| db_error(&self.path, action, e))?;
        // A transaction that changed nothing wrote nothing to the log: nothing to sync.
        if self.conn.total_changes() != before {
            self.wal.staged();
        }
        Ok(out)
    }

    /// Bytes of database pages that deletions freed: SQLite reuses them for new rows, so they
    /// count as free space.
    pub fn free_page_bytes(&self) -> Result<u64, StoreError> {
        self.conn
            .query_row(
                "SELECT (SELECT freelist_count FROM pragma_freelist_count)
                      * (SELECT page_size FROM pragma_page_size)",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|b| b.max(0) as u64)
            .map_err(|e| self.err("reading the free pages of", e))
    }

    /// Gives up to `pages` free pages back to the filesystem (a database created with
    /// incremental auto-vacuum; older ones keep reusing them instead).
    pub fn release_free_pages(&mut self, pages: u32) -> Result<(), StoreError> {
        self.write("releasing free pages of", |tx| {
            tx.query_row(&format!("PRAGMA incremental_vacuum({pages})"), [], |_| {
                Ok(())
            })
            .optional()
            .map(|_| ())
        })
    }

    pub(crate) fn err(&self, action: &str, e: rusqlite::Error) -> StoreError {
        db_error(&self.path, action, e)
    }
}

impl Drop for StoreDb {
    /// The connection's closing checkpoint copies the log into the database file and deletes
    /// the log: with `synchronous=FULL` it syncs the file first.
    fn drop(&mut self) {
        let _ = self.conn.execute_batch("PRAGMA synchronous=FULL;");
    }
}

pub(crate) fn db_error(path: &Path, action: &str, e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DiskFull => {
            StoreError::NoSpace {
                needed: 0,
                available: 0,
            }
        }
        e => StoreError::Io(format!("{action} store database {}: {e}", path.display())),
    }
}
