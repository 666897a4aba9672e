//! A [`ShareStore`] on the local filesystem: share files in Tahoe's directory layout, leases in
//! SQLite ([`crate::leases`]).
//!
//! Layout under the storage directory:
//!
//! ```text
//! shares/<p>/<SI>/<shnum>             committed shares
//! shares/incoming/<p>/<SI>/<shnum>    uploads in progress
//! leases.db (+ -wal, -shm)            leases of committed shares
//! lock                                held (flock) while a store has the directory open
//! ```
//!
//! `<SI>` is the 26-character base32 storage index, `<p>` its first two characters, `<shnum>`
//! the share number in decimal, as in Tahoe (spec §8.4).
//!
//! **A share file holds the share data only**: the same bytes as the data area of Tahoe's
//! immutable container, without its 12-byte header or trailing lease records, because leases
//! live in SQLite. Such files are not readable by Tahoe's server as they stand (a converter
//! would add the container header).
//!
//! Crash safety: an upload is written under `incoming/`; [`ShareStore::commit_share`] truncates
//! it to its length, fsyncs it, records its leases (SQLite, synchronous), renames it into place
//! and fsyncs the directory it landed in (and any directory it had to create). A crash at any
//! instant leaves either no share or the whole committed share, never a torn one; what was in
//! `incoming/` is deleted when the store is opened again, and lease rows of shares that never
//! landed are pruned then. `commit_share` returns only once the share is durable.
//!
//! Space: used = bytes of committed shares + allocations of uploads in progress. New
//! allocations must fit both the optional configured capacity and the filesystem's free space
//! less `reserved_space` (less the not-yet-written part of open allocations); otherwise
//! `create_share` fails with [`StoreError::NoSpace`].
//!
//! Time: the `Instant`s given to this store (lease expiries, `now`) follow the runtime-std
//! convention, microseconds since the Unix epoch ([`crate::clock::now`]), and are stored as such.
//!
//! Garbage collection is off by default, as in Tahoe: [`DiskShareStore::collect_garbage`] does
//! nothing unless [`DiskStoreConfig::expire_leases`] is set. It deletes shares whose leases have
//! all expired; shares with no lease rows at all (copied in by hand, or whose `leases.db` was
//! lost) are never collected.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use lafs_core::base32;
use lafs_core::store::{Lease, ShareInfo, ShareStore, StoreError};
use lafs_core::time::Instant;
use lafs_core::wire::StorageIndex;

use crate::leases::{hash_secret, merge_lease, LeaseDb, StoredLease};

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
}

impl Default for DiskStoreConfig {
    /// 1 GiB reserved (what Tahoe's `create-node` writes), shares up to 1 TiB, no capacity limit
    /// beyond the disk, no garbage collection (Tahoe's default).
    fn default() -> Self {
        DiskStoreConfig {
            reserved_space: 1 << 30,
            max_share_size: 1 << 40,
            capacity: None,
            expire_leases: false,
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

/// An upload in progress.
#[derive(Debug)]
struct Upload {
    path: PathBuf,
    allocated: u64,
    /// End of the highest byte written.
    written_end: u64,
    leases: Vec<StoredLease>,
}

/// Shares as files in a storage directory, leases in SQLite. See the module docs.
#[derive(Debug)]
pub struct DiskShareStore {
    root: PathBuf,
    shares: PathBuf,
    incoming: PathBuf,
    config: DiskStoreConfig,
    db: LeaseDb,
    /// Held open for its flock: one store per directory.
    _lock: File,
    committed_bytes: u64,
    allocated_bytes: u64,
    uploads: BTreeMap<(StorageIndex, u16), Upload>,
}

fn io_error(action: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Io(format!("{action} {}: {e}", path.display()))
}

/// Fsyncs a directory so that entries created, renamed or removed in it are durable.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("syncing directory", dir, e))
}

/// Creates `dir` and its missing parents below `base` (which must exist), fsyncing the parent of
/// each directory created so the new entries survive a crash.
fn create_dirs_durably(base: &Path, dir: &Path) -> Result<(), StoreError> {
    if dir.is_dir() {
        return Ok(());
    }
    let Ok(rel) = dir.strip_prefix(base) else {
        return Err(StoreError::Io(format!(
            "{} is not under {}",
            dir.display(),
            base.display()
        )));
    };
    let mut current = base.to_path_buf();
    for part in rel.components() {
        let parent = current.clone();
        current.push(part);
        match fs::create_dir(&current) {
            Ok(()) => sync_dir(&parent)?,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_error("creating directory", &current, e)),
        }
    }
    Ok(())
}

/// Removes `dir` and then its parents up to (not including) `stop`, while they are empty.
/// Best effort: an empty directory left behind costs nothing.
fn remove_empty_dirs(dir: &Path, stop: &Path) {
    let mut current = dir;
    while current != stop && current.starts_with(stop) {
        if fs::remove_dir(current).is_err() {
            return;
        }
        match current.parent() {
            Some(p) => current = p,
            None => return,
        }
    }
}

/// The share number a file name denotes: canonical decimal only (`"7"`, not `"07"`).
fn parse_shnum(name: &str) -> Option<u16> {
    let n: u16 = name.parse().ok()?;
    (n.to_string() == name).then_some(n)
}

impl DiskShareStore {
    /// Opens (creating if needed) the store in `dir`: takes the directory's lock, deletes
    /// leftovers of interrupted uploads, counts the committed shares and prunes lease rows of
    /// shares that are not there.
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
        let db = LeaseDb::open(&root.join("leases.db"))?;
        let mut store = DiskShareStore {
            root,
            shares,
            incoming,
            config,
            db,
            _lock: lock,
            committed_bytes: 0,
            allocated_bytes: 0,
            uploads: BTreeMap::new(),
        };
        let held = store.all_shares()?;
        store.committed_bytes = held.iter().map(|&(_, _, len)| len).sum();
        // Rows of shares that never landed (a crash between the lease write and the rename) or
        // were removed by hand.
        let present: BTreeSet<(StorageIndex, u16)> =
            held.iter().map(|&(si, n, _)| (si, n)).collect();
        for (si, shnum) in store.db.shares_with_leases()? {
            if !present.contains(&(si, shnum)) {
                store.db.remove_share(&si, shnum)?;
            }
        }
        Ok(store)
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

    fn incoming_bucket(&self, si: &StorageIndex) -> PathBuf {
        let name = base32::encode(si);
        self.incoming.join(&name[..2]).join(&name)
    }

    /// Path of a committed share.
    pub fn share_path(&self, si: &StorageIndex, shnum: u16) -> PathBuf {
        self.bucket(si).join(shnum.to_string())
    }

    /// Length of a committed share, or `None` if it is not here.
    fn committed_len(&self, si: &StorageIndex, shnum: u16) -> Result<Option<u64>, StoreError> {
        let path = self.share_path(si, shnum);
        match fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(_) => Err(StoreError::Io(format!(
                "{}: expected a share file, found something else",
                path.display()
            ))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error("reading metadata of", &path, e)),
        }
    }

    /// Every committed share: storage index, share number, length. Names that are not shares
    /// (anything but `<p>/<SI>/<decimal>`) are ignored.
    pub fn all_shares(&self) -> Result<Vec<(StorageIndex, u16, u64)>, StoreError> {
        let mut out = Vec::new();
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
                let bucket_dir = prefix_dir.join(&bucket);
                for (shnum, len) in list_bucket(&bucket_dir)? {
                    out.push((si, shnum, len));
                }
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Number of uploads in progress.
    pub fn uploads_in_progress(&self) -> usize {
        self.uploads.len()
    }

    /// Cancels the leases on shares of `si` whose cancel secret is `cancel_secret`. A committed
    /// share left with no lease is deleted, as in Tahoe. `NotFound` if no lease matched. Uploads
    /// in progress are not affected.
    pub fn cancel_lease(
        &mut self,
        si: &StorageIndex,
        cancel_secret: &[u8; 32],
    ) -> Result<CancelReport, StoreError> {
        let before: BTreeMap<u16, u64> = self
            .list_shares(si)?
            .into_iter()
            .map(|s| (s.shnum, s.length))
            .collect();
        let mut report = CancelReport::default();
        let mut cancelled = 0;
        for (shnum, left) in self.db.cancel(si, &hash_secret(cancel_secret))? {
            // Count only leases of shares that are here (stale rows are not leases anyone holds).
            let Some(&length) = before.get(&shnum) else {
                continue;
            };
            cancelled += 1;
            if left == 0 && !self.uploads.contains_key(&(*si, shnum)) {
                self.delete_committed(si, shnum, length)?;
                report.shares_deleted += 1;
                report.bytes_freed += length;
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
            match self.committed_len(&si, shnum)? {
                Some(length) => {
                    self.delete_committed(&si, shnum, length)?;
                    report.shares_deleted += 1;
                    report.bytes_freed += length;
                }
                None => self.db.remove_share(&si, shnum)?,
            }
        }
        Ok(report)
    }

    /// Removes a committed share's file, then its lease rows (a crash in between leaves rows
    /// that the next open prunes).
    fn delete_committed(
        &mut self,
        si: &StorageIndex,
        shnum: u16,
        length: u64,
    ) -> Result<(), StoreError> {
        let path = self.share_path(si, shnum);
        match fs::remove_file(&path) {
            Ok(()) => self.committed_bytes = self.committed_bytes.saturating_sub(length),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("deleting share", &path, e)),
        }
        self.db.remove_share(si, shnum)?;
        remove_empty_dirs(&self.bucket(si), &self.shares);
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
            .map_err(|e| io_error("reading free space of", &self.root, e))?;
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
}

/// Names of the entries of a directory that are valid UTF-8 (others cannot be ours).
fn read_dir_names(dir: &Path) -> Result<Vec<String>, StoreError> {
    let entries = fs::read_dir(dir).map_err(|e| io_error("listing", dir, e))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error("listing", dir, e))?;
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    Ok(names)
}

/// Share files in a bucket directory, ascending by share number; a missing directory is empty.
fn list_bucket(dir: &Path) -> Result<Vec<(u16, u64)>, StoreError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error("listing", dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error("listing", dir, e))?;
        let Some(shnum) = entry.file_name().to_str().and_then(parse_shnum) else {
            continue;
        };
        let meta = entry
            .metadata()
            .map_err(|e| io_error("reading metadata of", &entry.path(), e))?;
        if meta.is_file() {
            out.push((shnum, meta.len()));
        }
    }
    out.sort_unstable();
    Ok(out)
}

impl ShareStore for DiskShareStore {
    fn list_shares(&self, si: &StorageIndex) -> Result<Vec<ShareInfo>, StoreError> {
        Ok(list_bucket(&self.bucket(si))?
            .into_iter()
            .map(|(shnum, length)| ShareInfo { shnum, length })
            .collect())
    }

    fn read_share(
        &self,
        si: &StorageIndex,
        shnum: u16,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>, StoreError> {
        let path = self.share_path(si, shnum);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(StoreError::NotFound),
            Err(e) => return Err(io_error("opening share", &path, e)),
        };
        let len = file
            .metadata()
            .map_err(|e| io_error("reading metadata of", &path, e))?
            .len();
        let start = offset.min(len);
        let end = offset.saturating_add(length).min(len).max(start);
        let Ok(count) = usize::try_from(end - start) else {
            return Err(StoreError::Io(format!(
                "{}: a read of {} bytes does not fit in memory",
                path.display(),
                end - start
            )));
        };
        let mut buf = vec![0u8; count];
        file.read_exact_at(&mut buf, start)
            .map_err(|e| io_error("reading share", &path, e))?;
        Ok(buf)
    }

    fn create_share(
        &mut self,
        si: &StorageIndex,
        shnum: u16,
        allocated_size: u64,
        lease: Lease,
    ) -> Result<(), StoreError> {
        if self.uploads.contains_key(&(*si, shnum)) || self.committed_len(si, shnum)?.is_some() {
            return Err(StoreError::AlreadyExists);
        }
        if allocated_size > self.config.max_share_size {
            return Err(StoreError::TooLarge {
                size: allocated_size,
                max: self.config.max_share_size,
            });
        }
        let available = self.available()?;
        if allocated_size > available {
            return Err(StoreError::NoSpace {
                needed: allocated_size,
                available,
            });
        }
        let dir = self.incoming_bucket(si);
        // Uploads need no durable directories: incoming/ is wiped on open anyway.
        fs::create_dir_all(&dir).map_err(|e| io_error("creating directory", &dir, e))?;
        let path = dir.join(shnum.to_string());
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| io_error("creating upload", &path, e))?;
        self.allocated_bytes += allocated_size;
        self.uploads.insert(
            (*si, shnum),
            Upload {
                path,
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
        let upload = self.upload(si, shnum)?;
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
        let path = &upload.path;
        OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|f| f.write_all_at(data, offset))
            .map_err(|e| io_error("writing upload", path, e))?;
        if let Some(upload) = self.uploads.get_mut(&(*si, shnum)) {
            upload.written_end = upload.written_end.max(end);
        }
        Ok(())
    }

    fn commit_share(
        &mut self,
        si: &StorageIndex,
        shnum: u16,
        length: u64,
    ) -> Result<(), StoreError> {
        let upload = self.upload(si, shnum)?;
        if length > upload.allocated {
            return Err(StoreError::OutOfBounds {
                end: length,
                allocated: upload.allocated,
            });
        }
        let from = upload.path.clone();
        let leases = upload.leases.clone();
        // 1. The data, at exactly `length` bytes (gaps and the tail read as zeros), on disk.
        OpenOptions::new()
            .write(true)
            .open(&from)
            .and_then(|f| {
                f.set_len(length)?;
                f.sync_all()
            })
            .map_err(|e| io_error("syncing upload", &from, e))?;
        // 2. Its leases, durably, before the share becomes visible: a visible share always has
        // its leases, so garbage collection can never mistake it for an abandoned one.
        self.db.set_share_leases(si, shnum, &leases)?;
        // 3. Into place, atomically, and the rename made durable.
        let bucket = self.bucket(si);
        create_dirs_durably(&self.shares, &bucket)?;
        let to = bucket.join(shnum.to_string());
        fs::rename(&from, &to).map_err(|e| io_error("renaming upload into", &to, e))?;
        let Some(upload) = self.uploads.remove(&(*si, shnum)) else {
            return Err(StoreError::NotFound);
        };
        self.allocated_bytes = self.allocated_bytes.saturating_sub(upload.allocated);
        self.committed_bytes += length;
        remove_empty_dirs(&self.incoming_bucket(si), &self.incoming);
        // The share is committed from here on (visible, and kept after a crash in all but the
        // power-loss case this sync guards); a failure is still reported.
        sync_dir(&bucket)
    }

    fn abort_share(&mut self, si: &StorageIndex, shnum: u16) -> Result<(), StoreError> {
        let Some(upload) = self.uploads.remove(&(*si, shnum)) else {
            return Err(StoreError::NotFound);
        };
        self.allocated_bytes = self.allocated_bytes.saturating_sub(upload.allocated);
        let result = match fs::remove_file(&upload.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            // The allocation is released anyway; the file goes at the next open.
            Err(e) => Err(io_error("deleting upload", &upload.path, e)),
        };
        remove_empty_dirs(&self.incoming_bucket(si), &self.incoming);
        result
    }

    fn add_lease(&mut self, si: &StorageIndex, shnum: u16, lease: Lease) -> Result<(), StoreError> {
        let stored = StoredLease::from_lease(&lease);
        if let Some(upload) = self.uploads.get_mut(&(*si, shnum)) {
            merge_lease(&mut upload.leases, stored);
            return Ok(());
        }
        if self.committed_len(si, shnum)?.is_none() {
            return Err(StoreError::NotFound);
        }
        self.db.add_or_renew(si, shnum, &stored)
    }

    /// The leases of a share. Their secret fields hold the SHA-256 digests of the secrets (see
    /// [`crate::leases`]): the secrets themselves are never stored.
    fn leases(&self, si: &StorageIndex, shnum: u16) -> Result<Vec<Lease>, StoreError> {
        if let Some(upload) = self.uploads.get(&(*si, shnum)) {
            return Ok(upload.leases.iter().map(StoredLease::to_lease).collect());
        }
        if self.committed_len(si, shnum)?.is_none() {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_numbers_are_canonical_decimal() {
        assert_eq!(parse_shnum("0"), Some(0));
        assert_eq!(parse_shnum("255"), Some(255));
        assert_eq!(parse_shnum("65535"), Some(65535));
        for bad in ["", "07", "+7", "-1", "65536", "x", " 1"] {
            assert_eq!(parse_shnum(bad), None, "{bad:?}");
        }
    }

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
