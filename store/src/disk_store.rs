//! A [`ShareStore`] on the local filesystem: small shares as rows of the store database, large
//! ones as files in Tahoe's directory layout, every share indexed and every lease recorded in
//! the database ([`crate::db`]).
//!
//! Layout under the storage directory (the format is described in `docs/storage.md`):
//!
//! ```text
//! leases.db (+ -wal, -shm)            the store database: share index, small shares, leases
//! shares/<p>/<SI>/<shnum>             shares kept in files
//! shares/incoming/<SI>.<shnum>        large uploads in progress
//! shares/incoming/<SI>.<shnum>.mutable   a mutable share's next version being written
//! quarantine/                         damaged share files, moved aside on open
//! lock                                held (flock) while a store has the directory open
//! ```
//!
//! `<SI>` is the 26-character base32 storage index, `<p>` its first two characters, `<shnum>`
//! the share number in decimal, as in Tahoe (spec §8.4).
//!
//! **Where a share lives.** An upload allocated at most [`DiskStoreConfig::small_share_max`]
//! bytes is buffered in memory and committed as a row; larger uploads are written to a file
//! under `incoming/`, synced and renamed into place. A new mutable share whose size stays
//! within the limit is a row, rewritten whole by each write; it moves to a file (a Tahoe
//! container, [`crate::container`]) if a write grows it past the limit, and a share in a file
//! stays in a file. Shares found as files in a storage directory written before the index
//! existed are indexed where they are on the first open.
//!
//! **Commit cost.** Committing small shares creates no file: their rows and leases go into the
//! database in one transaction, one append to the write-ahead log. The log is synced by group
//! commit ([`crate::group_commit`]): [`ShareStore::durability_ticket`] tells the server what to
//! wait for before answering, and one sync serves every request that committed meanwhile.
//!
//! **Crash safety.** Every change either lands whole or not at all:
//! - a row change is a database transaction;
//! - a mutable share in a file is changed copy-on-write: the next version is written beside it
//!   under `incoming/`, synced, and renamed over it, so a crash (or a full disk) at any step
//!   leaves the old version or the new one, never a torn one;
//! - a file gets its index row before it is renamed into place (a row whose file is missing is
//!   pruned on open: the share never landed) and loses it after its file is removed;
//! - `incoming/` is wiped on open.
//!
//! Space: used = bytes of shares (a row's data, a file's length) + allocations of uploads in
//! progress. Both the size limit and the space limit are checked in one place
//! ([`DiskShareStore::admit`]): the configured capacity, and the filesystem's free space less
//! `reserved_space` (less the not-yet-written part of open allocations).
//!
//! Time: the `Instant`s given to this store (lease expiries, `now`) follow the runtimes'
//! convention, microseconds since the Unix epoch, and are stored as such.
//!
//! Garbage collection is off by default, as in Tahoe: [`DiskShareStore::collect_garbage`] does
//! nothing unless [`DiskStoreConfig::expire_leases`] is set. It deletes shares whose leases have
//! all expired; shares with no lease rows at all are never collected.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lafs_core::base32;
use lafs_core::store::{
    plan_mutable_changes, DurabilityTicket, EnablerRecord, Lease, MutableShareChange,
    MutableShareInfo, ShareInfo, ShareStore, StoreError,
};
use lafs_core::time::Instant;
use lafs_core::wire::StorageIndex;

use crate::container::{self, is_mutable_magic, ShareFile};
use crate::db::StoreDb;
use crate::durable_fs::{
    create_dirs, create_dirs_durably, io_error, list_bucket, read_dir_names, remove_empty_dirs,
    sync_dirs, sync_together,
};
use crate::leases::{hash_secret, merge_lease, remove_leases, replace_leases, StoredLease};
use crate::share_index::{delete_share, put_share, IndexedShare, ShareRow};

/// The default [`DiskStoreConfig::small_share_max`]: shares up to this size are database rows.
/// Measured in `docs/benchmarks.md` ("Where small shares live").
pub const SMALL_SHARE_MAX: u64 = 64 << 10;

/// Tunables of a [`DiskShareStore`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskStoreConfig {
    /// Bytes that must stay free on the filesystem (Tahoe's `reserved_space`).
    pub reserved_space: u64,
    /// Largest share accepted.
    pub max_share_size: u64,
    /// Most bytes the store may hold, if set (besides the filesystem's own limit).
    pub capacity: Option<u64>,
    /// Whether [`DiskShareStore::collect_garbage`] deletes shares whose leases all expired.
    pub expire_leases: bool,
    /// A renewal moving a lease's expiry later by no more than this is skipped (no write, no
    /// sync): see [`crate::db::StoreDb::set_renewal_granularity`].
    pub lease_renewal_granularity: std::time::Duration,
    /// Shares up to this many bytes are kept as database rows, larger ones as files.
    pub small_share_max: u64,
}

impl Default for DiskStoreConfig {
    /// 1 GiB reserved (what Tahoe's `create-node` writes), shares up to 1 TiB, no capacity limit
    /// beyond the disk, no garbage collection (Tahoe's default), small shares up to 64 KiB.
    fn default() -> Self {
        DiskStoreConfig {
            reserved_space: 1 << 30,
            max_share_size: 1 << 40,
            capacity: None,
            expire_leases: false,
            lease_renewal_granularity: crate::leases::RENEWAL_GRANULARITY,
            small_share_max: SMALL_SHARE_MAX,
        }
    }
}

/// What one garbage-collection pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    pub shares_deleted: u64,
    pub bytes_freed: u64,
}

/// What cancelling a lease did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CancelReport {
    pub leases_cancelled: u64,
    /// Shares deleted because their last lease was cancelled (as Tahoe does).
    pub shares_deleted: u64,
    pub bytes_freed: u64,
}

/// What opening a store found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Share files indexed because the directory predates the index (0 once migrated).
    pub files_indexed: u64,
    /// Index rows dropped because their file is missing (a crash before it landed).
    pub rows_pruned: u64,
    /// Damaged share files moved to `quarantine/`.
    pub quarantined: u64,
}

/// Environment variable naming a step at which the process aborts, as a power cut or
/// `kill -9` would stop it there: how the crash tests reach every step of a write. Read once;
/// unset (always, outside those tests) it costs one comparison per step.
pub const CRASH_AT_ENV: &str = "LAFS_STORE_CRASH_AT";

/// The steps of a mutable write, in order, that [`CRASH_AT_ENV`] can name.
pub const MUTABLE_WRITE_STEPS: [&str; 5] = [
    "mutable-composed",
    "mutable-synced",
    "mutable-files-placed",
    "mutable-rows-written",
    "mutable-rows-durable",
];

/// Aborts the process if [`CRASH_AT_ENV`] names `step`.
fn crash_point(step: &str) {
    static CRASH_AT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    if CRASH_AT
        .get_or_init(|| std::env::var(CRASH_AT_ENV).ok())
        .as_deref()
        == Some(step)
    {
        std::process::abort();
    }
}

/// Most free database pages one garbage-collection pass gives back to the filesystem (16 MiB
/// of 4 KiB pages).
const GC_RELEASE_PAGES: u32 = 4096;

/// Most uploads in progress that keep their file open between calls; later ones reopen it for
/// each write, so that thousands of idle allocations cannot exhaust the descriptors.
const MAX_OPEN_UPLOADS: usize = 256;

/// Where an upload's bytes wait for their commit.
#[derive(Debug)]
enum Pending {
    /// A small share: in memory (nothing of an upload needs to survive a crash).
    Memory(Vec<u8>),
    /// A large share: a file under `incoming/`, kept open unless too many uploads are.
    File { path: PathBuf, file: Option<File> },
}

/// An upload in progress.
#[derive(Debug)]
struct Upload {
    bytes: Pending,
    allocated: u64,
    /// End of the highest byte written.
    written_end: u64,
    leases: Vec<StoredLease>,
}

/// One mutable share's next version while a write is composed.
enum Draft {
    /// Deleted (or never there).
    Gone,
    /// Data to keep as a row.
    Bytes {
        data: Vec<u8>,
        enabler: EnablerRecord,
    },
    /// A container file under `incoming/`, to rename into place.
    Container { tmp: PathBuf, file: File },
}

/// Where a mutable share was before a write.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Was {
    Absent,
    Row,
    File,
}

/// Small shares as database rows, large ones as files, all indexed. See the module docs.
#[derive(Debug)]
pub struct DiskShareStore {
    root: PathBuf,
    shares: PathBuf,
    incoming: PathBuf,
    config: DiskStoreConfig,
    db: StoreDb,
    /// Held open for its flock: one store per directory.
    _lock: File,
    committed_bytes: u64,
    committed_shares: u64,
    allocated_bytes: u64,
    uploads: BTreeMap<(StorageIndex, u16), Upload>,
    opened: OpenReport,
    /// Rows found damaged by a read (which cannot change the store): left out of listings at
    /// once, moved to `quarantined_shares` by the next call that can write.
    damaged: std::sync::Mutex<BTreeSet<(StorageIndex, u16)>>,
}

impl DiskShareStore {
    /// Opens (creating if needed) the store in `dir`: takes the directory's lock, deletes
    /// leftovers of interrupted uploads, indexes share files of a directory written before the
    /// index existed, prunes what a crash left half done, and counts the shares.
    pub fn open(dir: &Path, config: DiskStoreConfig) -> Result<DiskShareStore, StoreError> {
        fs::create_dir_all(dir).map_err(|e| io_error("creating directory", dir, e))?;
        let root = dir.to_path_buf();
        let lock_path = root.join("lock");
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| io_error("opening", &lock_path, e))?;
        match fs4::fs_std::FileExt::try_lock_exclusive(&lock) {
            Ok(true) => {}
            Ok(false) => {
                return Err(StoreError::Io(format!(
                    "{}: the storage directory is already open in another store or process",
                    root.display()
                )))
            }
            Err(e) => return Err(io_error("locking", &lock_path, e)),
        }
        let shares = root.join("shares");
        let incoming = shares.join("incoming");
        create_dirs_durably(&root, &shares)?;
        match fs::remove_dir_all(&incoming) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("removing interrupted uploads in", &incoming, e)),
        }
        create_dirs_durably(&shares, &incoming)?;
        let mut db = StoreDb::open(&root.join("leases.db"))?;
        db.set_renewal_granularity(config.lease_renewal_granularity);
        let mut store = DiskShareStore {
            root,
            shares,
            incoming,
            config,
            db,
            _lock: lock,
            committed_bytes: 0,
            committed_shares: 0,
            allocated_bytes: 0,
            uploads: BTreeMap::new(),
            opened: OpenReport::default(),
            damaged: Default::default(),
        };
        if store.db.needs_scan() {
            store.index_share_files()?;
        }
        store.check_share_files()?;
        store.db.prune_orphan_leases()?;
        store.db.wal().sync_now()?;
        let (count, bytes) = store.db.totals()?;
        store.committed_shares = count;
        store.committed_bytes = bytes;
        Ok(store)
    }

    /// What the last open found.
    pub fn open_report(&self) -> OpenReport {
        self.opened
    }

    /// Shares kept as rows that were found damaged and set aside (in `quarantined_shares`).
    pub fn damaged_rows_set_aside(&self) -> Result<u64, StoreError> {
        self.db.quarantined_rows()
    }

    fn damaged(&self) -> std::sync::MutexGuard<'_, BTreeSet<(StorageIndex, u16)>> {
        self.damaged
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A row read: a damaged row is remembered (and left out of listings from now on).
    fn checked_row(
        &self,
        si: &StorageIndex,
        shnum: u16,
        read: Result<Vec<u8>, StoreError>,
    ) -> Result<Vec<u8>, StoreError> {
        if let Err(e) = &read {
            if crate::share_index::is_damaged_row(e) {
                tracing::warn!(storage_index = %base32::encode(si), shnum, "{e}; setting it aside");
                self.damaged().insert((*si, shnum));
            }
        }
        read
    }

    /// Moves the rows found damaged since the last call to `quarantined_shares`.
    fn set_aside_damaged(&mut self) -> Result<(), StoreError> {
        let found: Vec<_> = std::mem::take(&mut *self.damaged()).into_iter().collect();
        for (si, shnum) in found {
            let Some(share) = self.db.share(&si, shnum)? else {
                continue;
            };
            self.db.quarantine_row(&si, shnum)?;
            self.committed_bytes = self.committed_bytes.saturating_sub(share.stored_bytes);
            self.committed_shares = self.committed_shares.saturating_sub(1);
        }
        Ok(())
    }

    fn is_damaged(&self, si: &StorageIndex, shnum: u16) -> bool {
        self.damaged().contains(&(*si, shnum))
    }

    /// Indexes every share file under `shares/` (a directory written before the index existed);
    /// damaged files are quarantined.
    fn index_share_files(&mut self) -> Result<(), StoreError> {
        let mut found = Vec::new();
        for prefix in read_dir_names(&self.shares)? {
            let prefix_dir = self.shares.join(&prefix);
            if prefix == "incoming" || prefix.len() != 2 || !prefix_dir.is_dir() {
                continue;
            }
            for bucket in read_dir_names(&prefix_dir)? {
                let Ok(si) = base32::decode_array::<16>(&bucket) else {
                    continue;
                };
                if !bucket.starts_with(&prefix) {
                    continue;
                }
                for (shnum, len) in list_bucket(&prefix_dir.join(&bucket))? {
                    found.push((si, shnum, len));
                }
            }
        }
        let mut rows = Vec::new();
        for (si, shnum, len) in found {
            let path = self.share_path(&si, shnum);
            let Some((file, _)) = container::open_share(&path)? else {
                continue;
            };
            match container::sniff(&file, &path, len) {
                Ok(ShareFile::Immutable) => rows.push((si, shnum, false, len, len)),
                Ok(ShareFile::Mutable(h)) => rows.push((si, shnum, true, h.data_len, len)),
                Err(e) => self.quarantine(&si, shnum, &e.to_string())?,
            }
        }
        self.opened.files_indexed = rows.len() as u64;
        self.db.write("indexing share files in", |tx| {
            for &(si, shnum, mutable, length, stored_bytes) in &rows {
                put_share(
                    tx,
                    &si,
                    &ShareRow {
                        shnum,
                        mutable,
                        length,
                        stored_bytes,
                        enabler: None,
                        data: None,
                    },
                )?;
            }
            Ok(())
        })
    }

    /// Drops index rows whose file is missing (the share never landed), quarantines damaged
    /// mutable containers, and refreshes what a file's row says it stores.
    fn check_share_files(&mut self) -> Result<(), StoreError> {
        let mut missing = Vec::new();
        let mut resized = Vec::new();
        for (si, shnum, stored, _) in self.db.file_shares()? {
            let path = self.share_path(&si, shnum);
            let Some((file, len)) = container::open_share(&path)? else {
                missing.push((si, shnum));
                continue;
            };
            if let Err(e) = container::sniff(&file, &path, len) {
                self.quarantine(&si, shnum, &e.to_string())?;
                continue;
            }
            if len != stored {
                resized.push((si, shnum, len));
            }
        }
        self.opened.rows_pruned = missing.len() as u64;
        self.db.write("checking the share index of", |tx| {
            for (si, shnum) in &missing {
                delete_share(tx, si, *shnum)?;
                remove_leases(tx, si, &[*shnum])?;
            }
            let mut update = tx.prepare_cached(
                "UPDATE shares SET stored_bytes = ?3 WHERE storage_index = ?1 AND shnum = ?2",
            )?;
            for (si, shnum, len) in &resized {
                update.execute(rusqlite::params![
                    &si[..],
                    shnum,
                    i64::try_from(*len).unwrap_or(i64::MAX)
                ])?;
            }
            Ok(())
        })
    }

    /// Moves a damaged share file to `quarantine/` and forgets the share, so the other shares
    /// of its storage index stay usable; an operator can inspect what was moved.
    fn quarantine(&mut self, si: &StorageIndex, shnum: u16, why: &str) -> Result<(), StoreError> {
        let dir = self.root.join("quarantine");
        create_dirs_durably(&self.root, &dir)?;
        let from = self.share_path(si, shnum);
        let to = dir.join(format!("{}.{shnum}", base32::encode(si)));
        fs::rename(&from, &to).map_err(|e| io_error("quarantining", &from, e))?;
        tracing::warn!(share = %from.display(), moved_to = %to.display(), "damaged share quarantined: {why}");
        self.opened.quarantined += 1;
        self.db.write("forgetting a damaged share in", |tx| {
            delete_share(tx, si, shnum)?;
            remove_leases(tx, si, &[shnum])
        })
    }

    /// The storage directory.
    pub fn dir(&self) -> &Path {
        &self.root
    }

    pub fn config(&self) -> &DiskStoreConfig {
        &self.config
    }

    fn bucket(&self, si: &StorageIndex) -> PathBuf {
        // 16 bytes encode to 26 ASCII characters, so the 2-character prefix slice is in range.
        let name = base32::encode(si);
        self.shares.join(&name[..2]).join(&name)
    }

    /// Where a large upload (or, with `suffix` `.mutable`, a mutable share's next version) is
    /// written before it is renamed into place: flat in `incoming/`, so that starting and
    /// finishing one creates and removes no directory.
    fn incoming_path(&self, si: &StorageIndex, shnum: u16, suffix: &str) -> PathBuf {
        self.incoming
            .join(format!("{}.{shnum}{suffix}", base32::encode(si)))
    }

    /// Path of a share kept in a file.
    pub fn share_path(&self, si: &StorageIndex, shnum: u16) -> PathBuf {
        self.bucket(si).join(shnum.to_string())
    }

    /// Every committed share: storage index, share number, bytes stored (a file's length, or a
    /// row's data length).
    pub fn all_shares(&self) -> Result<Vec<(StorageIndex, u16, u64)>, StoreError> {
        Ok(self
            .db
            .all_indexed()?
            .into_iter()
            .map(|(si, shnum, bytes, _)| (si, shnum, bytes))
            .collect())
    }

    /// Number of uploads in progress.
    pub fn uploads_in_progress(&self) -> usize {
        self.uploads.len()
    }

    /// Syncs of the database log so far (one may cover many commits).
    pub fn log_syncs(&self) -> u64 {
        self.db.wal().syncs()
    }

    /// Cancels the leases on shares of `si` whose cancel secret is `cancel_secret`. A committed or
    /// mutable share left with no lease is deleted, as in Tahoe. `NotFound` if no lease matched. Uploads
    /// in progress are not affected.
    pub fn cancel_lease(
        &mut self,
        si: &StorageIndex,
        cancel_secret: &[u8; 32],
    ) -> Result<CancelReport, StoreError> {
        let held: BTreeMap<u16, IndexedShare> = self
            .db
            .shares_of(si)?
            .into_iter()
            .map(|s| (s.shnum, s))
            .collect();
        let mut report = CancelReport::default();
        let mut cancelled = 0;
        for (shnum, left) in self.db.cancel(si, &hash_secret(cancel_secret))? {
            // Count only leases of shares that are here (stale rows are not leases anyone holds).
            let Some(share) = held.get(&shnum) else {
                continue;
            };
            cancelled += 1;
            if left == 0 && !self.uploads.contains_key(&(*si, shnum)) {
                self.delete_share(si, share)?;
                report.shares_deleted += 1;
                report.bytes_freed += share.stored_bytes;
            }
        }
        if cancelled == 0 {
            return Err(StoreError::NotFound);
        }
        report.leases_cancelled = cancelled;
        Ok(report)
    }

    /// Deletes every committed share whose leases all expired at or before `now`, if
    /// [`DiskStoreConfig::expire_leases`] is set (otherwise does nothing). Shares with no lease
    /// rows are kept.
    pub fn collect_garbage(&mut self, now: Instant) -> Result<GcReport, StoreError> {
        let mut report = GcReport::default();
        if !self.config.expire_leases {
            return Ok(report);
        }
        for (si, shnum) in self.db.expired_shares(now)? {
            if self.uploads.contains_key(&(si, shnum)) {
                continue;
            }
            match self.db.share(&si, shnum)? {
                Some(share) => {
                    self.delete_share(&si, &share)?;
                    report.shares_deleted += 1;
                    report.bytes_freed += share.stored_bytes;
                }
                None => self.db.remove_share(&si, shnum)?,
            }
        }
        if report.shares_deleted > 0 {
            // Bounded work per pass: a later pass releases the rest.
            self.db.release_free_pages(GC_RELEASE_PAGES)?;
        }
        Ok(report)
    }

    /// Deletes a committed share: its file first (if it has one), then its row and leases, so a
    /// crash in between leaves a row without a file, which the next open prunes.
    fn delete_share(&mut self, si: &StorageIndex, share: &IndexedShare) -> Result<(), StoreError> {
        if share.in_file {
            self.remove_share_file(si, share.shnum)?;
        }
        self.db.write("deleting a share from", |tx| {
            delete_share(tx, si, share.shnum)?;
            remove_leases(tx, si, &[share.shnum])
        })?;
        self.committed_bytes = self.committed_bytes.saturating_sub(share.stored_bytes);
        self.committed_shares = self.committed_shares.saturating_sub(1);
        Ok(())
    }

    /// Removes a share's file durably (its bucket synced), and the bucket if now empty.
    fn remove_share_file(&self, si: &StorageIndex, shnum: u16) -> Result<(), StoreError> {
        let path = self.share_path(si, shnum);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("deleting share", &path, e)),
        }
        let bucket = self.bucket(si);
        crate::durable_fs::sync_nearest_dir(&bucket, &self.shares)?;
        remove_empty_dirs(&bucket, &self.shares);
        Ok(())
    }

    /// The one place where size and space limits are checked: a share of `size` bytes, taking
    /// `needed` more bytes of space.
    fn admit(&self, size: u64, needed: u64) -> Result<(), StoreError> {
        if size > self.config.max_share_size {
            return Err(StoreError::TooLarge {
                size,
                max: self.config.max_share_size,
            });
        }
        if needed == 0 {
            return Ok(());
        }
        let available = self.available()?;
        if needed > available {
            return Err(StoreError::NoSpace { needed, available });
        }
        Ok(())
    }

    /// Bytes that can be allocated, or why the filesystem could not be asked.
    fn available(&self) -> Result<u64, StoreError> {
        let used = self.space_used();
        let by_capacity = self
            .config
            .capacity
            .map_or(u64::MAX, |c| c.saturating_sub(used));
        let fs_free = fs4::available_space(&self.root)
            .map_err(|e| io_error("reading free space of", &self.root, e))?
            .saturating_add(self.db.free_page_bytes()?);
        // Open allocations will take what they have not written yet.
        let pending: u64 = self
            .uploads
            .values()
            .map(|u| u.allocated.saturating_sub(u.written_end))
            .sum();
        let by_disk = fs_free
            .saturating_sub(self.config.reserved_space)
            .saturating_sub(pending);
        Ok(by_capacity.min(by_disk))
    }

    fn upload(&self, si: &StorageIndex, shnum: u16) -> Result<&Upload, StoreError> {
        self.uploads.get(&(*si, shnum)).ok_or(StoreError::NotFound)
    }

    /// The immutable share `shnum` of `si`, if committed here.
    fn immutable(&self, si: &StorageIndex, shnum: u16) -> Result<IndexedShare, StoreError> {
        match self.db.share(si, shnum)? {
            Some(s) if !s.mutable => Ok(s),
            _ => Err(StoreError::NotFound),
        }
    }

    /// The mutable shares of `si` with their data lengths and enablers (a file's header is
    /// authoritative), and where each is. A file that cannot be read as a container is left
    /// out (it is quarantined at the next open), so the others stay usable.
    fn mutable_shares(
        &self,
        si: &StorageIndex,
    ) -> Result<Vec<(MutableShareInfo, bool)>, StoreError> {
        let mut out = Vec::new();
        for share in self.db.shares_of(si)? {
            if !share.mutable {
                return Err(kind_conflict_immutable());
            }
            if self.is_damaged(si, share.shnum) {
                continue;
            }
            if !share.in_file {
                let enabler = share.enabler.ok_or_else(|| {
                    StoreError::Io("a mutable share row without its write enabler".into())
                })?;
                out.push((
                    MutableShareInfo {
                        shnum: share.shnum,
                        length: share.length,
                        enabler,
                    },
                    false,
                ));
                continue;
            }
            let path = self.share_path(si, share.shnum);
            let header = container::open_share(&path).and_then(|opened| match opened {
                Some((file, _)) => container::read_header(&file, &path),
                None => Ok(None),
            });
            match header {
                Ok(Some((h, _))) => out.push((
                    MutableShareInfo {
                        shnum: share.shnum,
                        length: h.data_len,
                        enabler: h.enabler,
                    },
                    true,
                )),
                Ok(None) => {}
                Err(e) => tracing::warn!("skipping a damaged share: {e}"),
            }
        }
        Ok(out)
    }

    /// What a mutable write's plan needs: its largest share, and the bytes stored after minus
    /// before (a row's data; a file's length, which keeps its container overhead).
    fn space_for(
        &self,
        plan: &lafs_core::store::LengthPlan,
        current: &BTreeMap<u16, (MutableShareInfo, bool)>,
        stored_now: &BTreeMap<u16, u64>,
    ) -> (u64, u64) {
        let small = self.config.small_share_max;
        let (mut grow, mut shrink, mut largest) = (0u64, 0u64, 0u64);
        for (shnum, (old, new)) in plan {
            let was_file = current.get(shnum).is_some_and(|(_, f)| *f);
            let old_stored = if old.is_some() {
                stored_now.get(shnum).copied().unwrap_or(0)
            } else {
                0
            };
            let new_stored = match new {
                None => 0,
                Some(n) if !was_file && *n <= small => *n,
                Some(n) => {
                    let overhead = match old {
                        Some(o) if was_file => old_stored.saturating_sub(*o),
                        _ => container::MUTABLE_DATA_OFFSET + container::EMPTY_LEASE_BLOCK,
                    };
                    n.saturating_add(overhead)
                }
            };
            largest = largest.max(new.unwrap_or(0));
            grow = grow.saturating_add(new_stored.saturating_sub(old_stored));
            shrink = shrink.saturating_add(old_stored.saturating_sub(new_stored));
        }
        (largest, grow.saturating_sub(shrink))
    }

    /// One mutable share's next version, from its current one and its changes in order.
    fn draft(
        &self,
        si: &StorageIndex,
        current: Option<&(MutableShareInfo, bool)>,
        enabler: &EnablerRecord,
        changes: &[&MutableShareChange<'_>],
    ) -> Result<Draft, StoreError> {
        let small = self.config.small_share_max;
        let shnum = changes[0].shnum;
        let mut draft = match current {
            None => Draft::Gone,
            Some((info, false)) => Draft::Bytes {
                data: self
                    .checked_row(si, shnum, self.db.row_bytes(si, shnum, 0, info.length))
                    .map_err(|e| annotate(e, "reading a mutable share"))?,
                enabler: info.enabler,
            },
            Some((_, true)) => {
                let tmp = self.incoming_path(si, shnum, ".mutable");
                let path = self.share_path(si, shnum);
                fs::copy(&path, &tmp).map_err(|e| io_error("copying share", &path, e))?;
                let file = open_rw(&tmp)?;
                Draft::Container { tmp, file }
            }
        };
        let mut length = current.map(|(info, _)| info.length);
        for change in changes {
            let after = change.length_after(length, self.config.max_share_size)?;
            length = after;
            let Some(after) = after else {
                if let Draft::Container { tmp, .. } = std::mem::replace(&mut draft, Draft::Gone) {
                    let _ = fs::remove_file(tmp);
                }
                continue;
            };
            draft = match draft {
                Draft::Gone if after <= small => Draft::Bytes {
                    data: Vec::new(),
                    enabler: *enabler,
                },
                Draft::Gone => self.new_container(si, shnum, enabler, &[])?,
                Draft::Bytes { data, enabler } if after > small => {
                    self.new_container(si, shnum, &enabler, &data)?
                }
                d => d,
            };
            match &mut draft {
                Draft::Bytes { data, .. } => container::apply_to_bytes(data, change, after),
                Draft::Container { tmp, file } => {
                    container::apply_change(file, tmp, change, self.config.max_share_size)?
                }
                Draft::Gone => {}
            }
        }
        // A share kept in a file stays in a file.
        if let (Some((_, true)), Draft::Bytes { data, enabler }) = (current, &draft) {
            draft = self.new_container(si, shnum, enabler, data)?;
        }
        Ok(draft)
    }

    /// A new container under `incoming/` holding `data`.
    fn new_container(
        &self,
        si: &StorageIndex,
        shnum: u16,
        enabler: &EnablerRecord,
        data: &[u8],
    ) -> Result<Draft, StoreError> {
        let tmp = self.incoming_path(si, shnum, ".mutable");
        let file = create_rw(&tmp, "creating share")?;
        container::write_new(&file, &tmp, enabler, data)?;
        Ok(Draft::Container { tmp, file })
    }

    /// Checks an upload about to commit at `length` bytes (within the allocation, and not
    /// beginning with the mutable magic).
    fn check_commit(&self, si: &StorageIndex, shnum: u16, length: u64) -> Result<(), StoreError> {
        let upload = self.upload(si, shnum)?;
        if length > upload.allocated {
            return Err(StoreError::OutOfBounds {
                end: length,
                allocated: upload.allocated,
            });
        }
        if length < 32 {
            return Ok(());
        }
        // Bytes never written read as zeros, which are not the magic.
        let mut magic = [0u8; 32];
        match &upload.bytes {
            Pending::Memory(data) => {
                let n = data.len().min(32);
                magic[..n].copy_from_slice(&data[..n]);
            }
            Pending::File { path, file } => {
                let reopened;
                let file = match file {
                    Some(f) => f,
                    None => {
                        reopened = open_rw(path)?;
                        &reopened
                    }
                };
                let mut got = 0;
                while got < magic.len() {
                    match file.read_at(&mut magic[got..], got as u64) {
                        Ok(0) => break,
                        Ok(n) => got += n,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => return Err(io_error("reading upload", path, e)),
                    }
                }
            }
        }
        if is_mutable_magic(&magic) {
            return Err(StoreError::KindConflict(
                "the share begins with the mutable container magic, so it could not be told \
                 apart from a mutable share (no valid immutable share does)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Sets a large upload's file to `length` bytes; the open file, to sync.
    fn prepare_file(
        &mut self,
        si: &StorageIndex,
        shnum: u16,
        length: u64,
    ) -> Result<File, StoreError> {
        let upload = self
            .uploads
            .get_mut(&(*si, shnum))
            .ok_or(StoreError::NotFound)?;
        let written_end = upload.written_end;
        let Pending::File { path, file } = &mut upload.bytes else {
            return Err(StoreError::NotFound);
        };
        let file = match file.take() {
            Some(f) => f,
            None => open_rw(path)?,
        };
        // The file holds exactly the bytes up to the highest one written; cut or extend it
        // only when the committed length differs.
        if length != written_end {
            file.set_len(length)
                .map_err(|e| io_error("resizing upload", path, e))?;
        }
        Ok(file)
    }
}

fn kind_conflict_immutable() -> StoreError {
    StoreError::KindConflict(
        "the storage index holds immutable shares; a mutable share cannot join them".into(),
    )
}

fn annotate(e: StoreError, what: &str) -> StoreError {
    match e {
        StoreError::Io(m) => StoreError::Io(format!("{what}: {m}")),
        e => e,
    }
}

/// Creates (or empties) a file under `incoming/` for reading and writing.
fn create_rw(path: &Path, action: &str) -> Result<File, StoreError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| io_error(action, path, e))
}

fn open_rw(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| io_error("opening", path, e))
}

impl ShareStore for DiskShareStore {
    fn list_shares(&self, si: &StorageIndex) -> Result<Vec<ShareInfo>, StoreError> {
        Ok(self
            .db
            .shares_of(si)?
            .into_iter()
            .filter(|s| !s.mutable && !self.is_damaged(si, s.shnum))
            .map(|s| ShareInfo {
                shnum: s.shnum,
                length: s.length,
            })
            .collect())
    }

    fn read_share(
        &self,
        si: &StorageIndex,
        shnum: u16,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>, StoreError> {
        let share = self.immutable(si, shnum)?;
        if !share.in_file {
            return self.checked_row(si, shnum, self.db.row_bytes(si, shnum, offset, length));
        }
        let path = self.share_path(si, shnum);
        let Some((file, len)) = container::open_share(&path)? else {
            return Err(StoreError::NotFound);
        };
        container::read_range(&file, &path, 0, len, offset, length)
    }

    fn create_share(
        &mut self,
        si: &StorageIndex,
        shnum: u16,
        allocated_size: u64,
        lease: Lease,
    ) -> Result<(), StoreError> {
        self.set_aside_damaged()?;
        let held = self.db.shares_of(si)?;
        if self.uploads.contains_key(&(*si, shnum)) || held.iter().any(|s| s.shnum == shnum) {
            return Err(StoreError::AlreadyExists);
        }
        if held.iter().any(|s| s.mutable) {
            return Err(StoreError::KindConflict(
                "the storage index holds mutable shares; an immutable share cannot join them"
                    .into(),
            ));
        }
        self.admit(allocated_size, allocated_size)?;
        let bytes = if allocated_size <= self.config.small_share_max {
            Pending::Memory(Vec::new())
        } else {
            // Nothing in incoming/ needs to be durable: it is wiped on open anyway.
            let path = self.incoming_path(si, shnum, "");
            let file = create_rw(&path, "creating upload")?;
            let open_files = self
                .uploads
                .values()
                .filter(|u| matches!(u.bytes, Pending::File { file: Some(_), .. }))
                .count();
            Pending::File {
                path,
                file: (open_files < MAX_OPEN_UPLOADS).then_some(file),
            }
        };
        self.allocated_bytes += allocated_size;
        self.uploads.insert(
            (*si, shnum),
            Upload {
                bytes,
                allocated: allocated_size,
                written_end: 0,
                leases: vec![StoredLease::from_lease(&lease)],
            },
        );
        Ok(())
    }

    fn write_share(
        &mut self,
        si: &StorageIndex,
        shnum: u16,
        offset: u64,
        data: &[u8],
    ) -> Result<(), StoreError> {
        let upload = self
            .uploads
            .get_mut(&(*si, shnum))
            .ok_or(StoreError::NotFound)?;
        let allocated = upload.allocated;
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|&end| end <= allocated)
            .ok_or(StoreError::OutOfBounds {
                end: offset.saturating_add(data.len() as u64),
                allocated,
            })?;
        if data.is_empty() {
            return Ok(());
        }
        match &upload.bytes {
            Pending::Memory(_) => {}
            Pending::File { path, file } => match file {
                Some(f) => f.write_all_at(data, offset),
                None => OpenOptions::new()
                    .write(true)
                    .open(path)
                    .and_then(|f| f.write_all_at(data, offset)),
            }
            .map_err(|e| io_error("writing upload", path, e))?,
        }
        if let Pending::Memory(buf) = &mut upload.bytes {
            // Within the allocation, which is at most `small_share_max`.
            let (start, end) = (offset as usize, end as usize);
            if buf.len() < end {
                buf.resize(end, 0);
            }
            buf[start..end].copy_from_slice(data);
        }
        upload.written_end = upload.written_end.max(end);
        Ok(())
    }

    fn commit_share(
        &mut self,
        si: &StorageIndex,
        shnum: u16,
        length: u64,
    ) -> Result<(), StoreError> {
        self.commit_shares(si, &[(shnum, length)])
            .pop()
            .unwrap_or(Err(StoreError::NotFound))
    }

    /// Small shares: their rows and leases in one transaction (durable at the next group
    /// sync). Large shares: their files synced (together), their rows and leases written and
    /// synced, then the files renamed into their bucket, which is synced once.
    fn commit_shares(
        &mut self,
        si: &StorageIndex,
        shares: &[(u16, u64)],
    ) -> Vec<Result<(), StoreError>> {
        let mut results: Vec<Result<(), StoreError>> = Vec::with_capacity(shares.len());
        let mut rows: Vec<usize> = Vec::new();
        let mut files: Vec<(usize, File)> = Vec::new();
        for (i, &(shnum, length)) in shares.iter().enumerate() {
            if shares[..i].iter().any(|&(n, _)| n == shnum) {
                // Committed by its first entry: like a second commit, not found.
                results.push(Err(StoreError::NotFound));
                continue;
            }
            let checked = self.check_commit(si, shnum, length);
            let result = match (checked, self.uploads.get(&(*si, shnum)).map(|u| &u.bytes)) {
                (Err(e), _) => Err(e),
                (Ok(()), Some(Pending::Memory(_))) => {
                    rows.push(i);
                    Ok(())
                }
                (Ok(()), _) => self.prepare_file(si, shnum, length).map(|f| {
                    files.push((i, f));
                }),
            };
            results.push(result);
        }
        // The large shares' bytes on disk first.
        let synced = sync_together(&files, |(i, f)| {
            f.sync_data().map_err(|e| {
                io_error(
                    "syncing upload",
                    Path::new(&format!("share {}", shares[*i].0)),
                    e,
                )
            })
        });
        let mut landing: Vec<usize> = Vec::new();
        for ((i, _), s) in files.iter().zip(synced) {
            match s {
                Ok(()) => landing.push(*i),
                Err(e) => results[*i] = Err(e),
            }
        }
        drop(files);
        // Every row and lease in one transaction.
        let written = {
            let uploads = &self.uploads;
            let mut entries = Vec::new();
            for &i in rows.iter().chain(&landing) {
                let (shnum, length) = shares[i];
                if let Some(u) = uploads.get(&(*si, shnum)) {
                    entries.push((i, shnum, length, u));
                }
            }
            self.db.write("committing shares to", |tx| {
                for &(_, shnum, length, u) in &entries {
                    let data = match &u.bytes {
                        Pending::Memory(buf) => {
                            let mut d = buf.clone();
                            d.resize(length as usize, 0);
                            Some(d)
                        }
                        Pending::File { .. } => None,
                    };
                    put_share(
                        tx,
                        si,
                        &ShareRow {
                            shnum,
                            mutable: false,
                            length,
                            stored_bytes: length,
                            enabler: None,
                            data: data.as_deref(),
                        },
                    )?;
                    replace_leases(tx, si, &[(shnum, u.leases.clone())])?;
                }
                Ok(())
            })
        };
        if let Err(e) = written {
            for &i in rows.iter().chain(&landing) {
                results[i] = Err(e.clone());
            }
            return results;
        }
        for &i in &rows {
            self.land(si, shares[i].0, shares[i].1);
        }
        if landing.is_empty() {
            return results;
        }
        // Rows before files: a file renamed into place always has its row.
        if let Err(e) = self.db.wal().sync_now() {
            for &i in &landing {
                results[i] = Err(e.clone());
            }
            return results;
        }
        let bucket = self.bucket(si);
        let mut to_sync = Vec::new();
        let made = create_dirs(&self.shares, &bucket, &mut to_sync);
        let mut failed = Vec::new();
        let mut landed = Vec::new();
        for i in landing {
            let (shnum, length) = shares[i];
            let renamed = made.clone().and_then(|()| {
                let Some(Upload {
                    bytes: Pending::File { path, .. },
                    ..
                }) = self.uploads.get(&(*si, shnum))
                else {
                    return Err(StoreError::NotFound);
                };
                let to = bucket.join(shnum.to_string());
                fs::rename(path, &to).map_err(|e| io_error("renaming upload into", &to, e))
            });
            match renamed {
                Ok(()) => {
                    self.land(si, shnum, length);
                    landed.push(i);
                }
                Err(e) => {
                    results[i] = Err(e);
                    failed.push(shnum);
                }
            }
        }
        // Rows of shares that did not land (the next open prunes them too).
        if !failed.is_empty() {
            let forgot = self.db.write("forgetting shares in", |tx| {
                for &shnum in &failed {
                    delete_share(tx, si, shnum)?;
                    remove_leases(tx, si, &[shnum])?;
                }
                Ok(())
            });
            if let Err(e) = forgot {
                tracing::warn!("{e}");
            }
        }
        if !landed.is_empty() {
            to_sync.push(bucket);
            if let Err(e) = sync_dirs(&to_sync) {
                for i in landed {
                    results[i] = Err(e.clone());
                }
            }
        }
        results
    }

    fn abort_share(&mut self, si: &StorageIndex, shnum: u16) -> Result<(), StoreError> {
        let Some(upload) = self.uploads.remove(&(*si, shnum)) else {
            return Err(StoreError::NotFound);
        };
        self.allocated_bytes = self.allocated_bytes.saturating_sub(upload.allocated);
        let Pending::File { path, .. } = &upload.bytes else {
            return Ok(());
        };
        match fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            // The allocation is released anyway; the file goes at the next open.
            Err(e) => Err(io_error("deleting upload", path, e)),
        }
    }

    fn list_mutable_shares(&self, si: &StorageIndex) -> Result<Vec<MutableShareInfo>, StoreError> {
        match self.mutable_shares(si) {
            Ok(shares) => Ok(shares.into_iter().map(|(info, _)| info).collect()),
            // The immutable calls see an index of the other kind as holding nothing.
            Err(StoreError::KindConflict(_)) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    fn read_mutable_share(
        &self,
        si: &StorageIndex,
        shnum: u16,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>, StoreError> {
        let share = match self.db.share(si, shnum)? {
            Some(s) if s.mutable => s,
            _ => return Err(StoreError::NotFound),
        };
        if !share.in_file {
            return self.checked_row(si, shnum, self.db.row_bytes(si, shnum, offset, length));
        }
        let path = self.share_path(si, shnum);
        let Some((file, _)) = container::open_share(&path)? else {
            return Err(StoreError::NotFound);
        };
        let Some((header, _)) = container::read_header(&file, &path)? else {
            return Err(StoreError::NotFound);
        };
        container::read_data(&file, &path, &header, offset, length)
    }

    /// Each share's next version is composed beside it (in memory for a row, as a copy for a
    /// file), then the versions land in an order that keeps every share whole at any instant
    /// (see the module docs): files replaced first, then one transaction for every row, then
    /// new files renamed into place once their rows are durable.
    fn write_mutable_shares(
        &mut self,
        si: &StorageIndex,
        enabler: &EnablerRecord,
        changes: &[MutableShareChange<'_>],
    ) -> Result<(), StoreError> {
        self.set_aside_damaged()?;
        if self
            .uploads
            .range((*si, 0)..=(*si, u16::MAX))
            .next()
            .is_some()
        {
            return Err(kind_conflict_immutable());
        }
        let current: BTreeMap<u16, (MutableShareInfo, bool)> = self
            .mutable_shares(si)?
            .into_iter()
            .map(|(info, in_file)| (info.shnum, (info, in_file)))
            .collect();
        let before: BTreeMap<u16, u64> = current.iter().map(|(n, (i, _))| (*n, i.length)).collect();
        let plan = plan_mutable_changes(&before, changes, self.config.max_share_size)?;
        let stored_now: BTreeMap<u16, u64> = self
            .db
            .shares_of(si)?
            .iter()
            .map(|s| (s.shnum, s.stored_bytes))
            .collect();
        let (largest, needed) = self.space_for(&plan, &current, &stored_now);
        self.admit(largest, needed)?;
        // Compose every touched share's next version.
        let mut drafts: Vec<(u16, Was, Draft)> = Vec::new();
        for shnum in plan.keys() {
            let mine: Vec<&MutableShareChange<'_>> =
                changes.iter().filter(|c| c.shnum == *shnum).collect();
            let cur = current.get(shnum);
            let was = match cur {
                None => Was::Absent,
                Some((_, false)) => Was::Row,
                Some((_, true)) => Was::File,
            };
            match self.draft(si, cur, enabler, &mine) {
                Ok(d) => drafts.push((*shnum, was, d)),
                Err(e) => {
                    discard(drafts);
                    let _ = fs::remove_file(self.incoming_path(si, *shnum, ".mutable"));
                    return Err(e);
                }
            }
        }
        crash_point("mutable-composed");
        // Every new container's bytes on disk.
        let containers: Vec<(&File, &Path)> = drafts
            .iter()
            .filter_map(|(_, _, d)| match d {
                Draft::Container { tmp, file } => Some((file, tmp.as_path())),
                _ => None,
            })
            .collect();
        let synced: Result<(), StoreError> = sync_together(&containers, |(f, p)| {
            f.sync_data().map_err(|e| io_error("syncing share", p, e))
        })
        .into_iter()
        .collect();
        drop(containers);
        if let Err(e) = synced {
            discard(drafts);
            return Err(e);
        }
        crash_point("mutable-synced");
        // Files replaced or removed first (their rows follow).
        let bucket = self.bucket(si);
        let mut to_sync = Vec::new();
        let mut first_error = None;
        let mut row_changes: Vec<(u16, Was, Draft, u64)> = Vec::new();
        let mut new_files: Vec<(u16, PathBuf, u64)> = Vec::new();
        for (shnum, was, draft) in drafts {
            match (&draft, was) {
                (Draft::Container { tmp, file }, Was::Row | Was::File) => {
                    let size = file.metadata().map_or(0, |m| m.len());
                    let to = self.share_path(si, shnum);
                    let placed = create_dirs(&self.shares, &bucket, &mut to_sync).and_then(|()| {
                        fs::rename(tmp, &to).map_err(|e| io_error("renaming share into", &to, e))
                    });
                    match placed {
                        Ok(()) => row_changes.push((shnum, was, draft, size)),
                        Err(e) => {
                            let _ = fs::remove_file(tmp);
                            first_error.get_or_insert(e);
                        }
                    }
                }
                (Draft::Container { tmp, file }, Was::Absent) => {
                    let size = file.metadata().map_or(0, |m| m.len());
                    new_files.push((shnum, tmp.clone(), size));
                    row_changes.push((shnum, was, draft, size));
                }
                (Draft::Gone, Was::File) => match self.remove_share_file(si, shnum) {
                    Ok(()) => row_changes.push((shnum, was, draft, 0)),
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                },
                (Draft::Gone, Was::Absent) => {}
                _ => row_changes.push((shnum, was, draft, 0)),
            }
        }
        if !to_sync.contains(&bucket)
            && row_changes
                .iter()
                .any(|(_, w, d, _)| *w != Was::Absent && matches!(d, Draft::Container { .. }))
        {
            to_sync.push(bucket.clone());
        }
        if let Err(e) = sync_dirs(&to_sync) {
            first_error.get_or_insert(e);
        }
        crash_point("mutable-files-placed");
        // Every row in one transaction.
        let written = self.db.write("writing mutable shares to", |tx| {
            for (shnum, _, draft, size) in &row_changes {
                match draft {
                    Draft::Gone => {
                        delete_share(tx, si, *shnum)?;
                        remove_leases(tx, si, &[*shnum])?;
                    }
                    Draft::Bytes { data, enabler } => put_share(
                        tx,
                        si,
                        &ShareRow {
                            shnum: *shnum,
                            mutable: true,
                            length: data.len() as u64,
                            stored_bytes: data.len() as u64,
                            enabler: Some(enabler),
                            data: Some(data),
                        },
                    )?,
                    Draft::Container { .. } => put_share(
                        tx,
                        si,
                        &ShareRow {
                            shnum: *shnum,
                            mutable: true,
                            length: plan.get(shnum).and_then(|p| p.1).unwrap_or(0),
                            stored_bytes: *size,
                            enabler: None,
                            data: None,
                        },
                    )?,
                }
            }
            Ok(())
        });
        if let Err(e) = written {
            for (_, tmp, _) in &new_files {
                let _ = fs::remove_file(tmp);
            }
            return Err(first_error.unwrap_or(e));
        }
        crash_point("mutable-rows-written");
        // The counters follow the rows just written.
        for (shnum, was, draft, size) in &row_changes {
            let old = if *was == Was::Absent {
                0
            } else {
                stored_now.get(shnum).copied().unwrap_or(0)
            };
            let new = match draft {
                Draft::Gone => 0,
                Draft::Bytes { data, .. } => data.len() as u64,
                Draft::Container { .. } => *size,
            };
            self.committed_bytes = (self.committed_bytes + new).saturating_sub(old);
            match (was, draft) {
                (Was::Absent, Draft::Gone) => {}
                (Was::Absent, _) => self.committed_shares += 1,
                (_, Draft::Gone) => self.committed_shares = self.committed_shares.saturating_sub(1),
                _ => {}
            }
        }
        // New files land once their rows are durable.
        if !new_files.is_empty() {
            let landed = self.db.wal().sync_now().and_then(|()| {
                crash_point("mutable-rows-durable");
                let mut to_sync = Vec::new();
                create_dirs(&self.shares, &bucket, &mut to_sync)?;
                for (shnum, tmp, _) in &new_files {
                    let to = self.share_path(si, *shnum);
                    fs::rename(tmp, &to).map_err(|e| io_error("renaming share into", &to, e))?;
                }
                to_sync.push(bucket.clone());
                sync_dirs(&to_sync)
            });
            if let Err(e) = landed {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn add_lease(&mut self, si: &StorageIndex, shnum: u16, lease: Lease) -> Result<(), StoreError> {
        self.add_leases(si, &[shnum], lease)
    }

    /// One transaction for every committed share named (uploads in progress keep theirs in
    /// memory); a share that is not here stops the batch there, as the trait says.
    fn add_leases(
        &mut self,
        si: &StorageIndex,
        shnums: &[u16],
        lease: Lease,
    ) -> Result<(), StoreError> {
        self.set_aside_damaged()?;
        let stored = StoredLease::from_lease(&lease);
        let held: BTreeSet<u16> = self.db.shares_of(si)?.iter().map(|s| s.shnum).collect();
        let mut committed = Vec::with_capacity(shnums.len());
        let mut failure = None;
        for &shnum in shnums {
            if let Some(upload) = self.uploads.get_mut(&(*si, shnum)) {
                merge_lease(&mut upload.leases, stored);
            } else if held.contains(&shnum) {
                committed.push(shnum);
            } else {
                failure = Some(StoreError::NotFound);
                break;
            }
        }
        if !committed.is_empty() {
            self.db.add_or_renew_shares(si, &committed, &stored)?;
        }
        failure.map_or(Ok(()), Err)
    }

    /// The leases of a share. Their secret fields hold the SHA-256 digests of the secrets (see
    /// [`crate::leases`]): the secrets themselves are never stored.
    fn leases(&self, si: &StorageIndex, shnum: u16) -> Result<Vec<Lease>, StoreError> {
        if let Some(upload) = self.uploads.get(&(*si, shnum)) {
            return Ok(upload.leases.iter().map(StoredLease::to_lease).collect());
        }
        if self.db.share(si, shnum)?.is_none() {
            return Err(StoreError::NotFound);
        }
        Ok(self
            .db
            .share_leases(si, shnum)?
            .iter()
            .map(StoredLease::to_lease)
            .collect())
    }

    fn space_used(&self) -> u64 {
        self.committed_bytes.saturating_add(self.allocated_bytes)
    }

    fn shares_held(&self) -> u64 {
        self.committed_shares
    }

    /// Zero if the filesystem cannot be asked (the failure is logged), so nothing is accepted.
    fn space_available(&self) -> u64 {
        self.available().unwrap_or_else(|e| {
            tracing::warn!("{e}");
            0
        })
    }

    fn max_share_size(&self) -> u64 {
        self.config.max_share_size
    }

    fn durability_ticket(&self) -> Option<DurabilityTicket> {
        let wal = self.db.wal();
        wal.pending().map(|seq| DurabilityTicket {
            seq,
            log: Arc::clone(wal) as Arc<dyn lafs_core::store::DurableLog>,
        })
    }
}

/// Removes the files of drafts that will not land.
fn discard(drafts: Vec<(u16, Was, Draft)>) {
    for (_, _, d) in drafts {
        if let Draft::Container { tmp, .. } = d {
            let _ = fs::remove_file(tmp);
        }
    }
}

impl DiskShareStore {
    /// Counts a committed upload and forgets it.
    fn land(&mut self, si: &StorageIndex, shnum: u16, length: u64) {
        if let Some(upload) = self.uploads.remove(&(*si, shnum)) {
            self.allocated_bytes = self.allocated_bytes.saturating_sub(upload.allocated);
        }
        self.committed_bytes += length;
        self.committed_shares += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_tahoes_layout() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskShareStore::open(dir.path(), DiskStoreConfig::default()).unwrap();
        let si = [0xffu8; 16];
        let name = base32::encode(&si);
        assert_eq!(name.len(), 26);
        assert_eq!(
            store.share_path(&si, 12),
            dir.path()
                .join("shares")
                .join(&name[..2])
                .join(&name)
                .join("12")
        );
    }

    #[test]
    fn a_second_open_of_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = DiskShareStore::open(dir.path(), DiskStoreConfig::default()).unwrap();
        let second = DiskShareStore::open(dir.path(), DiskStoreConfig::default());
        assert!(matches!(second, Err(StoreError::Io(m)) if m.contains("already open")));
        drop(first);
        DiskShareStore::open(dir.path(), DiskStoreConfig::default()).unwrap();
    }
}
