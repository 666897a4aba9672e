//! Group commit for the store database: many transactions, one sync.
//!
//! The database connection runs with `synchronous=OFF`: a transaction's COMMIT appends its pages
//! to the write-ahead log (`leases.db-wal`) with a plain write, which costs microseconds and
//! makes the change visible, but not durable. Each commit takes a sequence number from
//! [`WalSync::staged`]. Whoever must know that change is durable (a storage server about to
//! answer, or the store itself before it renames a file into place) calls
//! [`WalSync::wait_durable`]: the first caller becomes the leader and fdatasyncs the log once
//! for every commit made so far; callers arriving meanwhile wait for that sync or lead the next
//! one. Under load one sync acknowledges many clients' writes; with one client it costs the same
//! single sync that `synchronous=FULL` would.
//!
//! Why this is as safe as `synchronous=FULL`: a WAL frame is only replayed after a crash if its
//! checksum chain, which starts in the log's header, is intact and ends in a commit frame; the
//! fdatasync of the whole file makes the header and every frame up to the last commit durable
//! together. Nothing is acknowledged before that sync returns. Checkpoints (copying the log into
//! the database file, after which SQLite starts overwriting the log from its beginning) run on a
//! second connection with `synchronous=FULL`, which syncs the log before copying and the database
//! after, so frames are only overwritten once their pages are durable in the database file. The
//! writing connection never checkpoints (`wal_autocheckpoint=0`) and, when the store closes,
//! switches to `synchronous=FULL` so that its closing checkpoint is synced too.
//!
//! A failed sync poisons the log: every later wait fails, so no later change is acknowledged
//! either (after a failed fsync the kernel may have dropped the dirty pages; retrying could
//! report success for data that is gone). The store must be reopened.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use lafs_core::store::{DurableLog, StoreError};
use rusqlite::Connection;

/// A checkpoint runs after a sync that leaves the log longer than this.
const CHECKPOINT_AFTER_BYTES: u64 = 4 << 20;

#[derive(Debug, Default)]
struct SyncState {
    /// Sequence number of the latest commit written to the log.
    staged: u64,
    /// Every commit up to this one is durable.
    durable: u64,
    /// A leader is syncing now.
    syncing: bool,
    /// Why the log can no longer be trusted, once a sync has failed.
    failed: Option<String>,
    /// Syncs done (for statistics and tests).
    syncs: u64,
}

/// The write-ahead log of one store database, and who is syncing it.
#[derive(Debug)]
pub struct WalSync {
    state: Mutex<SyncState>,
    synced: Condvar,
    wal: File,
    wal_path: PathBuf,
    /// The checkpointing connection (`synchronous=FULL`); held only by the leader.
    checkpointer: Mutex<Connection>,
}

fn lock(m: &Mutex<SyncState>) -> MutexGuard<'_, SyncState> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl WalSync {
    /// Opens the log of the database at `db_path` (which must be open in WAL mode, so that its
    /// log exists) with a connection of its own for checkpoints.
    pub fn open(db_path: &Path) -> Result<WalSync, StoreError> {
        let wal_path = PathBuf::from(format!("{}-wal", db_path.display()));
        let wal = File::open(&wal_path)
            .map_err(|e| StoreError::Io(format!("opening the log {}: {e}", wal_path.display())))?;
        let checkpointer = Connection::open(db_path)
            .and_then(|c| {
                c.execute_batch("PRAGMA synchronous=FULL; PRAGMA wal_autocheckpoint=0;")?;
                c.busy_timeout(std::time::Duration::from_secs(5))?;
                Ok(c)
            })
            .map_err(|e| {
                StoreError::Io(format!("opening {} to checkpoint: {e}", db_path.display()))
            })?;
        Ok(WalSync {
            state: Mutex::new(SyncState::default()),
            synced: Condvar::new(),
            wal,
            wal_path,
            checkpointer: Mutex::new(checkpointer),
        })
    }

    /// Records that a commit was written to the log; its sequence number.
    pub fn staged(&self) -> u64 {
        let mut state = lock(&self.state);
        state.staged += 1;
        state.staged
    }

    /// The latest commit's sequence number, if it is not yet known to be durable.
    pub fn pending(&self) -> Option<u64> {
        let state = lock(&self.state);
        (state.staged > state.durable || state.failed.is_some()).then_some(state.staged)
    }

    /// Makes every commit so far durable before returning (the store's own barrier, used
    /// before a file is renamed into place under a name the database already gave it).
    pub fn sync_now(&self) -> Result<(), StoreError> {
        let seq = lock(&self.state).staged;
        self.wait_durable(seq)
    }

    /// Syncs done so far.
    pub fn syncs(&self) -> u64 {
        lock(&self.state).syncs
    }

    /// Copies the log into the database file if it has grown long (best effort: a busy
    /// database is checkpointed after a later sync).
    fn maybe_checkpoint(&self) {
        let long = self
            .wal
            .metadata()
            .is_ok_and(|m| m.len() > CHECKPOINT_AFTER_BYTES);
        if !long {
            return;
        }
        let Ok(conn) = self.checkpointer.try_lock() else {
            return; // another leader is at it
        };
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(log = %self.wal_path.display(), "checkpoint failed: {e}");
        }
    }
}

impl DurableLog for WalSync {
    fn wait_durable(&self, seq: u64) -> Result<(), StoreError> {
        let mut state = lock(&self.state);
        loop {
            if let Some(why) = &state.failed {
                return Err(StoreError::Io(why.clone()));
            }
            if state.durable >= seq {
                return Ok(());
            }
            if state.syncing {
                state = self
                    .synced
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            // Lead: everything written so far is covered by this sync.
            state.syncing = true;
            let target = state.staged;
            drop(state);
            let result = self.wal.sync_data();
            state = lock(&self.state);
            state.syncing = false;
            state.syncs += 1;
            match result {
                Ok(()) => state.durable = state.durable.max(target),
                Err(e) => {
                    state.failed = Some(format!(
                        "syncing the log {} failed ({e}); nothing written since the last \
                         successful sync is acknowledged until the store is reopened",
                        self.wal_path.display()
                    ));
                }
            }
            self.synced.notify_all();
            if state.failed.is_none() && state.durable >= seq {
                drop(state);
                self.maybe_checkpoint();
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn wal_db(dir: &Path) -> (Connection, WalSync) {
        let path = dir.join("t.db");
        let conn = Connection::open(&path).unwrap();
        conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))
            .unwrap();
        conn.execute_batch(
            "PRAGMA synchronous=OFF; PRAGMA wal_autocheckpoint=0; CREATE TABLE t (x);",
        )
        .unwrap();
        let sync = WalSync::open(&path).unwrap();
        (conn, sync)
    }

    #[test]
    fn one_sync_covers_every_commit_made_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, sync) = wal_db(dir.path());
        assert_eq!(sync.pending(), None);
        let mut last = 0;
        for i in 0..5 {
            conn.execute("INSERT INTO t VALUES (?1)", [i]).unwrap();
            last = sync.staged();
        }
        assert_eq!(sync.pending(), Some(last));
        sync.wait_durable(2).unwrap();
        assert_eq!(sync.syncs(), 1);
        // Everything up to `last` was covered by that one sync.
        sync.wait_durable(last).unwrap();
        assert_eq!(sync.syncs(), 1);
        assert_eq!(sync.pending(), None);
    }

    #[test]
    fn waiters_arriving_together_share_one_sync() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, sync) = wal_db(dir.path());
        let seqs: Vec<u64> = (0..8)
            .map(|i| {
                conn.execute("INSERT INTO t VALUES (?1)", [i]).unwrap();
                sync.staged()
            })
            .collect();
        // Whichever thread leads syncs for all eight commits; the others find them durable
        // or wait for that one sync, whatever the interleaving.
        let sync = Arc::new(sync);
        std::thread::scope(|s| {
            for seq in seqs {
                let sync = Arc::clone(&sync);
                s.spawn(move || sync.wait_durable(seq).unwrap());
            }
        });
        assert_eq!(sync.syncs(), 1);
    }
}
