//! A [`ShareStore`] on the local filesystem: share files in Tahoe's directory layout, leases in
//! SQLite ([`crate::leases`]).
//!
//! Layout under the storage directory:
//!
//! ```text
//! shares/<p>/<SI>/<shnum>             committed immutable shares and mutable shares
//! shares/incoming/<SI>.<shnum>        uploads in progress
//! shares/incoming/<SI>.<shnum>.mutable   a new mutable share being written
//! leases.db (+ -wal, -shm)            leases of committed and mutable shares
//! lock                                held (flock) while a store has the directory open
//! ```
//!
//! `<SI>` is the 26-character base32 storage index, `<p>` its first two characters, `<shnum>`
//! the share number in decimal, as in Tahoe (spec §8.4). Files being written sit flat in
//! `incoming/` (Tahoe nests them as `incoming/<p>/<SI>/<shnum>`): creating and removing two
//! directories per share cost more than the rest of a small write (see the write path below),
//! and nothing outside this store reads `incoming/`, which is wiped on open (as Tahoe does).
//!
//! **An immutable share file holds the share data only**: the same bytes as the data area of
//! Tahoe's immutable container, without its 12-byte header or trailing lease records, because
//! leases live in SQLite. Such files are not readable by Tahoe's server as they stand (a converter
//! would add the container header).
//!
//! **A mutable share file is Tahoe's mutable container** (spec §8.7), v2 for the files we create:
//! 32-byte magic, the 20-byte node id that recorded the write enabler, the 32-byte write
//! enabler, data length and extra-lease offset (`u64` big-endian), four 92-byte lease slots, the
//! data at offset 468, then the extra-lease block (a `u32` count and its leases). Our leases live
//! in SQLite, so the lease slots we write are zero and the extra-lease count is 0; lease records
//! in containers copied from Tahoe are kept (moved along when the data grows) but not honoured.
//! The two kinds share the directory tree and are told apart by the magic: an immutable share
//! starts with its version (0, 0, 0, 1 or 2), and an upload whose bytes would begin with the
//! mutable magic is refused at commit. A storage index holds shares of one kind only.
//!
//! A mutable write changes an existing share in place and fsyncs it, as Tahoe does: a crash in
//! the middle may leave that share torn (the client's signature check catches it and a repair
//! rewrites it), never a share of another index. A new mutable share is written whole under
//! `incoming/`, fsynced and renamed into place; creating or deleting one fsyncs its directory.
//! All the shares one write changes are written first, then synced together, then the new ones
//! renamed into place with one sync of their bucket.
//!
//! Crash safety: an upload is written under `incoming/`; [`ShareStore::commit_shares`] (and
//! `commit_share`, a batch of one) truncates each share to its length, then in parallel
//! fdatasyncs every file (on scoped threads) and records all their leases in one SQLite
//! transaction (synchronous, so durable when it returns); only when both are done does it create
//! the bucket directory if needed, rename the shares into it, and fsync the bucket (and the
//! parent of any directory it created) once for the whole batch. A crash at any instant leaves
//! either no share or the whole committed share, never a torn one: a name can only reach a file
//! whose bytes were already durable. What was in `incoming/` is deleted when the store is opened
//! again, and lease rows of shares that never landed are pruned then. `commit_shares` returns
//! only once its shares are durable.
//!
//! The write path, by cost (measured in `docs/benchmarks.md`, "Disk store write path"): every
//! inode created costs the most here (on this project's machine, ext4 without a journal, an
//! allocation scans past recently deleted inodes: 0.1-1 ms each), then every sync (0.12 ms
//! quiet, several ms while other programs write). So a 1 kB upload of two shares to a new
//! storage index creates three inodes (two files, one bucket directory) and removes none, and
//! waits for two rounds of syncs: {both files, the lease transaction} together, then {the
//! bucket, the prefix directory if it was new} together. Directory syncs are deferred until
//! after the renames, never repeated for one directory in a batch, and `incoming/` is never
//! synced (nothing in it needs to survive a crash). The lease database keeps
//! `synchronous=FULL`: WAL with `synchronous=NORMAL` would skip the log sync at commit, and no
//! share sync covers it (an fsync of a share file says nothing about the WAL file's pages), so
//! an acknowledged lease could be lost on power failure.
//!
//! Space: used = bytes of committed share files (mutable containers count whole) + allocations
//! of uploads in progress. New
//! allocations must fit both the optional configured capacity and the filesystem's free space
//! less `reserved_space` (less the not-yet-written part of open allocations); otherwise
//! `create_share` fails with [`StoreError::NoSpace`].
//!
//! Time: the `Instant`s given to this store (lease expiries, `now`) follow the runtimes'
//! convention, microseconds since the Unix epoch, and are stored as such.
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
use lafs_core::store::{
    plan_mutable_changes, EnablerRecord, Lease, MutableShareChange, MutableShareInfo, ShareInfo,
    ShareStore, StoreError,
};
use lafs_core::time::Instant;
use lafs_core::wire::StorageIndex;

use crate::leases::{hash_secret, merge_lease, LeaseDb, StoredLease};

/// Magic of Tahoe's mutable container v1 (read, never created).
const MUTABLE_MAGIC_V1: &[u8; 32] = b"Tahoe mutable container v1\n\x75\x09\x44\x03\x8e";
/// Magic of Tahoe's mutable container v2 (its last 5 bytes are a tagged hash, spec §8.7).
const MUTABLE_MAGIC_V2: &[u8; 32] = b"Tahoe mutable container v2\n\xc3\x55\x21\x99\x25";
/// Magic, node id, write enabler, data length, extra-lease offset.
const MUTABLE_HEADER_LEN: usize = 100;
/// Where a mutable container's data starts: the header and four 92-byte lease slots.
const MUTABLE_DATA_OFFSET: u64 = 468;
const DATA_LENGTH_FIELD: u64 = 84;
/// Size of an empty extra-lease block (its `u32` count).
const EMPTY_LEASE_BLOCK: u64 = 4;
const MUTABLE_LEASE_LEN: u64 = 92;

fn is_mutable_magic(bytes: &[u8]) -> bool {
    bytes.len() >= 32 && (&bytes[..32] == MUTABLE_MAGIC_V1 || &bytes[..32] == MUTABLE_MAGIC_V2)
}

/// The fixed header of a mutable container.
#[derive(Clone, Copy, Debug)]
struct MutableHeader {
    enabler: EnablerRecord,
    data_len: u64,
    extra_lease_offset: u64,
}

impl MutableHeader {
    fn parse(bytes: &[u8; MUTABLE_HEADER_LEN]) -> Self {
        let mut node_id = [0u8; 20];
        node_id.copy_from_slice(&bytes[32..52]);
        let mut write_enabler = [0u8; 32];
        write_enabler.copy_from_slice(&bytes[52..84]);
        let be = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            u64::from_be_bytes(b)
        };
        MutableHeader {
            enabler: EnablerRecord {
                write_enabler,
                node_id,
            },
            data_len: be(84),
            extra_lease_offset: be(92),
        }
    }

    /// A new v2 header for `data_len` bytes with the extra-lease block right after the data.
    fn encode_new(enabler: &EnablerRecord, data_len: u64) -> [u8; MUTABLE_HEADER_LEN] {
        let mut out = [0u8; MUTABLE_HEADER_LEN];
        out[..32].copy_from_slice(MUTABLE_MAGIC_V2);
        out[32..52].copy_from_slice(&enabler.node_id);
        out[52..84].copy_from_slice(&enabler.write_enabler);
        out[84..92].copy_from_slice(&data_len.to_be_bytes());
        out[92..100].copy_from_slice(&(MUTABLE_DATA_OFFSET + data_len).to_be_bytes());
        out
    }
}

/// What a share file holds, judged by its first bytes.
enum ShareFile {
    Immutable,
    Mutable(MutableHeader),
}

/// Reads enough of a share file of `file_len` bytes to tell its kind, and a mutable
/// container's header (checked against the file's length).
fn sniff(file: &File, path: &Path, file_len: u64) -> Result<ShareFile, StoreError> {
    if file_len < 32 {
        return Ok(ShareFile::Immutable);
    }
    let mut magic = [0u8; 32];
    file.read_exact_at(&mut magic, 0)
        .map_err(|e| io_error("reading share", path, e))?;
    if !is_mutable_magic(&magic) {
        return Ok(ShareFile::Immutable);
    }
    let damaged = |what: &str| {
        StoreError::Io(format!(
            "{}: damaged mutable container: {what}",
            path.display()
        ))
    };
    if file_len < MUTABLE_DATA_OFFSET {
        return Err(damaged("shorter than its header and lease slots"));
    }
    let mut bytes = [0u8; MUTABLE_HEADER_LEN];
    file.read_exact_at(&mut bytes, 0)
        .map_err(|e| io_error("reading share", path, e))?;
    let header = MutableHeader::parse(&bytes);
    if MUTABLE_DATA_OFFSET
        .checked_add(header.data_len)
        .is_none_or(|end| end > file_len)
    {
        return Err(damaged("its data length reaches past the end of the file"));
    }
    Ok(ShareFile::Mutable(header))
}

/// Opens a share file for reading with its length; `None` if there is none.
fn open_share(path: &Path) -> Result<Option<(File, u64)>, StoreError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("opening share", path, e)),
    };
    let len = file
        .metadata()
        .map_err(|e| io_error("reading metadata of", path, e))?
        .len();
    Ok(Some((file, len)))
}

/// The extra-lease block of a container (its count and records), to move along when the data
/// changes size. A block that cannot be valid (behind the data, or past the end of the file)
/// holds no lease we could use: it reads as empty.
fn read_lease_block(
    file: &File,
    path: &Path,
    header: &MutableHeader,
    file_len: u64,
) -> Result<Vec<u8>, StoreError> {
    let empty = vec![0u8; EMPTY_LEASE_BLOCK as usize];
    let at = header.extra_lease_offset;
    if at < MUTABLE_DATA_OFFSET + header.data_len || at.saturating_add(4) > file_len {
        return Ok(empty);
    }
    let mut count = [0u8; 4];
    file.read_exact_at(&mut count, at)
        .map_err(|e| io_error("reading leases of", path, e))?;
    let len = 4 + u64::from(u32::from_be_bytes(count)) * MUTABLE_LEASE_LEN;
    if at + len > file_len {
        return Ok(empty);
    }
    let mut block = vec![0u8; len as usize];
    file.read_exact_at(&mut block, at)
        .map_err(|e| io_error("reading leases of", path, e))?;
    Ok(block)
}

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
    /// sync): see [`crate::leases::LeaseDb::set_renewal_granularity`].
    pub lease_renewal_granularity: std::time::Duration,
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
            lease_renewal_granularity: crate::leases::RENEWAL_GRANULARITY,
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

/// A mutable share's change, written but not yet durable.
enum Staged {
    /// Nothing left to do (a deletion, already synced).
    Done,
    /// An existing container changed in place: to sync.
    InPlace { file: File, path: PathBuf },
    /// A new container written under `incoming/`: to sync, then rename to `path`. `size` is
    /// its file length.
    New {
        file: File,
        tmp: PathBuf,
        path: PathBuf,
        size: u64,
    },
}

/// Most uploads in progress that keep their file open between calls; later ones reopen it for
/// each write, so that thousands of idle allocations cannot exhaust the descriptors.
const MAX_OPEN_UPLOADS: usize = 256;

/// An upload in progress.
#[derive(Debug)]
struct Upload {
    path: PathBuf,
    /// The file, kept open from creation to commit (unless too many uploads are open).
    file: Option<File>,
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
    /// Committed immutable and mutable share files (a running count, see `shares_held`).
    committed_shares: u64,
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

/// Creates the missing directories from below `base` down to `dir` (`base` must exist) without
/// syncing anything, and adds to `to_sync` the parent of each directory it created: syncing
/// those (and `dir` after renaming into it) makes the new entries durable. Deferring the syncs
/// lets one batch of renames share them, and the order does not matter for safety: until every
/// sync has returned nothing is acknowledged, and a share renamed into a directory whose own
/// entry was lost in a crash is simply not there.
fn create_dirs(base: &Path, dir: &Path, to_sync: &mut Vec<PathBuf>) -> Result<(), StoreError> {
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
            Ok(()) => {
                if !to_sync.contains(&parent) {
                    to_sync.push(parent);
                }
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_error("creating directory", &current, e)),
        }
    }
    Ok(())
}

/// Most threads one batch of syncs runs on (each blocks in the kernel, using no CPU).
const MAX_SYNC_THREADS: usize = 8;

/// Runs `sync` on every item, several at once on scoped threads (the device sees the flushes
/// together instead of one after another), and returns the results in order. Runs on the
/// calling thread alone when there is one item or a thread cannot be started.
fn sync_together<T: Sync>(
    items: &[T],
    sync: impl Fn(&T) -> Result<(), StoreError> + Sync,
) -> Vec<Result<(), StoreError>> {
    if items.len() <= 1 {
        return items.iter().map(&sync).collect();
    }
    let per_thread = items.len().div_ceil(MAX_SYNC_THREADS);
    let sync = &sync;
    std::thread::scope(|scope| {
        let mut chunks = items.chunks(per_thread);
        let first = chunks.next().unwrap_or(&[]);
        let spawned: Vec<_> = chunks
            .map(|chunk| {
                let handle = std::thread::Builder::new()
                    .name("lafs-sync".into())
                    .spawn_scoped(scope, move || chunk.iter().map(sync).collect::<Vec<_>>());
                (chunk, handle)
            })
            .collect();
        let mut out: Vec<_> = first.iter().map(sync).collect();
        for (chunk, handle) in spawned {
            match handle {
                Ok(h) => match h.join() {
                    Ok(results) => out.extend(results),
                    Err(_) => out.extend(
                        chunk
                            .iter()
                            .map(|_| Err(StoreError::Io("a sync thread failed".into()))),
                    ),
                },
                Err(_) => out.extend(chunk.iter().map(sync)),
            }
        }
        out
    })
}

/// Syncs each directory of `dirs` (together, see [`sync_together`]); the first failure.
fn sync_dirs(dirs: &[PathBuf]) -> Result<(), StoreError> {
    sync_together(dirs, |d| sync_dir(d)).into_iter().collect()
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

/// Fsyncs `dir`, or its nearest existing ancestor up to `stop` if it was removed.
fn sync_nearest_dir(dir: &Path, stop: &Path) -> Result<(), StoreError> {
    let mut current = dir;
    while !current.is_dir() && current != stop {
        match current.parent() {
            Some(p) => current = p,
            None => break,
        }
    }
    sync_dir(current)
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
        let mut db = LeaseDb::open(&root.join("leases.db"))?;
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
        };
        let held = store.all_shares()?;
        store.committed_bytes = held.iter().map(|&(_, _, len)| len).sum();
        store.committed_shares = held.len() as u64;
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

    /// Where an upload (or, with `suffix` `.mutable`, a new mutable share) is written before
    /// it is renamed into place: flat in `incoming/`, so that starting and finishing one creates
    /// and removes no directory.
    fn incoming_path(&self, si: &StorageIndex, shnum: u16, suffix: &str) -> PathBuf {
        self.incoming
            .join(format!("{}.{shnum}{suffix}", base32::encode(si)))
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

    /// Cancels the leases on shares of `si` whose cancel secret is `cancel_secret`. A committed or
    /// mutable share left with no lease is deleted, as in Tahoe. `NotFound` if no lease matched. Uploads
    /// in progress are not affected.
    pub fn cancel_lease(
        &mut self,
        si: &StorageIndex,
        cancel_secret: &[u8; 32],
    ) -> Result<CancelReport, StoreError> {
        // Mutable or immutable: the file bytes a deletion frees.
        let before: BTreeMap<u16, u64> = list_bucket(&self.bucket(si))?.into_iter().collect();
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
            Ok(()) => {
                self.committed_bytes = self.committed_bytes.saturating_sub(length);
                self.committed_shares = self.committed_shares.saturating_sub(1);
            }
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

    /// The share files of `si` (committed immutable and mutable): number, file length, kind.
    fn bucket_files(&self, si: &StorageIndex) -> Result<Vec<(u16, u64, ShareFile)>, StoreError> {
        let bucket = self.bucket(si);
        let mut out = Vec::new();
        for (shnum, _) in list_bucket(&bucket)? {
            let path = bucket.join(shnum.to_string());
            // Gone since the listing: not a share any more.
            let Some((file, len)) = open_share(&path)? else {
                continue;
            };
            out.push((shnum, len, sniff(&file, &path, len)?));
        }
        Ok(out)
    }

    /// Writes one share's change of a mutable write (space already checked), leaving the sync
    /// (and, for a new share, the rename into place) to [`DiskShareStore::place_mutable`]. A
    /// deletion is done and synced here.
    fn stage_mutable_change(
        &mut self,
        si: &StorageIndex,
        enabler: &EnablerRecord,
        change: &MutableShareChange<'_>,
    ) -> Result<Staged, StoreError> {
        let path = self.share_path(si, change.shnum);
        let existing = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(file) => {
                let len = file
                    .metadata()
                    .map_err(|e| io_error("reading metadata of", &path, e))?
                    .len();
                match sniff(&file, &path, len)? {
                    ShareFile::Mutable(header) => Some((file, len, header)),
                    ShareFile::Immutable => {
                        return Err(StoreError::KindConflict(
                            "the storage index holds immutable shares; a mutable share cannot \
                             join them"
                                .into(),
                        ))
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(io_error("opening share", &path, e)),
        };
        if change.new_length == Some(0) {
            if let Some((file, len, _)) = existing {
                drop(file);
                self.delete_committed(si, change.shnum, len)?;
                sync_nearest_dir(&self.bucket(si), &self.shares)?;
            }
            return Ok(Staged::Done);
        }
        let before = existing.as_ref().map(|(_, _, h)| h.data_len);
        // The length the writes reach, then the one new_length leaves.
        let reach = change
            .writes
            .iter()
            .map(|w| w.offset.saturating_add(w.data.len() as u64))
            .fold(before.unwrap_or(0), u64::max);
        let after = change
            .length_after(before, self.config.max_share_size)?
            .unwrap_or(0);
        let write_data = |file: &File, path: &Path| -> Result<(), StoreError> {
            for w in change.writes {
                if !w.data.is_empty() {
                    file.write_all_at(&w.data, MUTABLE_DATA_OFFSET + w.offset)
                        .map_err(|e| io_error("writing share", path, e))?;
                }
            }
            Ok(())
        };
        match existing {
            Some((file, file_len, header)) => {
                let old = header.data_len;
                let result = if reach == old && after == old {
                    // Same size: the bytes only.
                    write_data(&file, &path)
                } else {
                    // Every step keeps the file at least as long as the header's data length,
                    // so a crash part way leaves a readable (if torn) share, never a damaged one.
                    let at = MUTABLE_DATA_OFFSET + after;
                    let mut fields = [0u8; 16];
                    fields[..8].copy_from_slice(&after.to_be_bytes());
                    fields[8..].copy_from_slice(&at.to_be_bytes());
                    read_lease_block(&file, &path, &header, file_len).and_then(|block| {
                        // Cut what lies past the data (the lease block, stale bytes of an
                        // earlier truncation) so that growing exposes zeros, as Tahoe's
                        // zero-fill does.
                        file.set_len(MUTABLE_DATA_OFFSET + old)
                            .and_then(|()| file.set_len(MUTABLE_DATA_OFFSET + reach))
                            .map_err(|e| io_error("resizing share", &path, e))?;
                        write_data(&file, &path)?;
                        file.write_all_at(&fields, DATA_LENGTH_FIELD)
                            .and_then(|()| file.set_len(at))
                            .and_then(|()| file.write_all_at(&block, at))
                            .map_err(|e| io_error("writing share", &path, e))
                    })
                };
                // Count what the file holds now, even after a failure part way.
                let new_file_len = file.metadata().map_or(file_len, |m| m.len());
                self.committed_bytes =
                    self.committed_bytes - file_len.min(self.committed_bytes) + new_file_len;
                result?;
                Ok(Staged::InPlace { file, path })
            }
            None => {
                let tmp = self.incoming_path(si, change.shnum, ".mutable");
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&tmp)
                    .map_err(|e| io_error("creating share", &tmp, e))?;
                let at = MUTABLE_DATA_OFFSET + after;
                let built = file
                    .write_all_at(&MutableHeader::encode_new(enabler, after), 0)
                    .and_then(|()| file.set_len(MUTABLE_DATA_OFFSET + reach))
                    .map_err(|e| io_error("writing share", &tmp, e))
                    .and_then(|()| write_data(&file, &tmp))
                    .and_then(|()| {
                        file.set_len(at)
                            .and_then(|()| file.write_all_at(&[0; 4], at))
                            .map_err(|e| io_error("writing share", &tmp, e))
                    });
                if let Err(e) = built {
                    // Best effort: incoming/ is wiped at the next open anyway.
                    drop(file);
                    let _ = fs::remove_file(&tmp);
                    return Err(e);
                }
                Ok(Staged::New {
                    file,
                    tmp,
                    path,
                    size: at + EMPTY_LEASE_BLOCK,
                })
            }
        }
    }

    /// Makes staged mutable changes durable: every changed or new file synced (together), then
    /// the new ones renamed into their bucket, which is synced once (with any directory that had
    /// to be created for it). Everything is attempted; the first failure is returned.
    fn place_mutable(&mut self, si: &StorageIndex, staged: Vec<Staged>) -> Result<(), StoreError> {
        let files: Vec<(&File, &Path)> = staged
            .iter()
            .filter_map(|s| match s {
                Staged::Done => None,
                Staged::InPlace { file, path } => Some((file, path.as_path())),
                Staged::New { file, tmp, .. } => Some((file, tmp.as_path())),
            })
            .collect();
        let mut synced = sync_together(&files, |(f, p)| {
            f.sync_data().map_err(|e| io_error("syncing share", p, e))
        })
        .into_iter();
        drop(files);
        let mut first_error = None;
        let mut new = Vec::new();
        for s in staged {
            let result = match &s {
                Staged::Done => continue,
                _ => synced.next().unwrap_or(Ok(())),
            };
            match (s, result) {
                (
                    Staged::New {
                        tmp, path, size, ..
                    },
                    Ok(()),
                ) => new.push((tmp, path, size)),
                (Staged::New { tmp, .. }, Err(e)) => {
                    let _ = fs::remove_file(&tmp);
                    first_error.get_or_insert(e);
                }
                (_, Err(e)) => {
                    first_error.get_or_insert(e);
                }
                (_, Ok(())) => {}
            }
        }
        if !new.is_empty() {
            let bucket = self.bucket(si);
            let mut to_sync = Vec::new();
            let mut placed = false;
            let made = create_dirs(&self.shares, &bucket, &mut to_sync);
            for (tmp, path, size) in new {
                let renamed = made.clone().and_then(|()| {
                    fs::rename(&tmp, &path).map_err(|e| io_error("renaming share into", &path, e))
                });
                match renamed {
                    Ok(()) => {
                        self.committed_bytes += size;
                        self.committed_shares += 1;
                        placed = true;
                    }
                    Err(e) => {
                        // Best effort: incoming/ is wiped at the next open anyway.
                        let _ = fs::remove_file(&tmp);
                        first_error.get_or_insert(e);
                    }
                }
            }
            if placed {
                to_sync.push(bucket);
            }
            if let Err(e) = sync_dirs(&to_sync) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Checks an upload about to commit at `length` bytes and sets its file to that length;
    /// the open file, to be synced.
    fn prepare_commit(
        &mut self,
        si: &StorageIndex,
        shnum: u16,
        length: u64,
    ) -> Result<File, StoreError> {
        let upload = self
            .uploads
            .get_mut(&(*si, shnum))
            .ok_or(StoreError::NotFound)?;
        if length > upload.allocated {
            return Err(StoreError::OutOfBounds {
                end: length,
                allocated: upload.allocated,
            });
        }
        let path = upload.path.clone();
        let path = path.as_path();
        let file = match upload.file.take() {
            Some(f) => f,
            None => OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map_err(|e| io_error("opening upload", path, e))?,
        };
        let kept = |upload: &mut Upload, file: File, e: StoreError| {
            upload.file = Some(file);
            Err(e)
        };
        if length >= 32 {
            // Bytes never written read as zeros, which are not the magic.
            let mut magic = [0u8; 32];
            let mut got = 0;
            while got < magic.len() {
                match file.read_at(&mut magic[got..], got as u64) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => {
                        let e = io_error("reading upload", path, e);
                        return kept(upload, file, e);
                    }
                }
            }
            if is_mutable_magic(&magic) {
                let e = StoreError::KindConflict(
                    "the share begins with the mutable container magic, so it could not be told \
                     apart from a mutable share (no valid immutable share does)"
                        .into(),
                );
                return kept(upload, file, e);
            }
        }
        // The file holds exactly the bytes up to the highest one written; cut or extend it
        // only when the committed length differs.
        if length != upload.written_end {
            if let Err(e) = file.set_len(length) {
                let e = io_error("resizing upload", path, e);
                return kept(upload, file, e);
            }
        }
        Ok(file)
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
        Ok(self
            .bucket_files(si)?
            .into_iter()
            .filter(|(_, _, kind)| matches!(kind, ShareFile::Immutable))
            .map(|(shnum, length, _)| ShareInfo { shnum, length })
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
        let Some((file, len)) = open_share(&path)? else {
            return Err(StoreError::NotFound);
        };
        if let ShareFile::Mutable(_) = sniff(&file, &path, len)? {
            return Err(StoreError::NotFound);
        }
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
        if self
            .bucket_files(si)?
            .iter()
            .any(|(_, _, kind)| matches!(kind, ShareFile::Mutable(_)))
        {
            return Err(StoreError::KindConflict(
                "the storage index holds mutable shares; an immutable share cannot join them"
                    .into(),
            ));
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
        // Nothing in incoming/ needs to be durable: it is wiped on open anyway.
        let path = self.incoming_path(si, shnum, "");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| io_error("creating upload", &path, e))?;
        let open_uploads = self.uploads.values().filter(|u| u.file.is_some()).count();
        self.allocated_bytes += allocated_size;
        self.uploads.insert(
            (*si, shnum),
            Upload {
                path,
                file: (open_uploads < MAX_OPEN_UPLOADS).then_some(file),
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
        match &upload.file {
            Some(file) => file.write_all_at(data, offset),
            None => OpenOptions::new()
                .write(true)
                .open(path)
                .and_then(|f| f.write_all_at(data, offset)),
        }
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
        self.commit_shares(si, &[(shnum, length)])
            .pop()
            .unwrap_or(Err(StoreError::NotFound))
    }

    /// The shares' data and their leases are made durable together (the files synced on
    /// several threads while this one writes every lease in one SQLite transaction), then the
    /// shares are renamed into their directory, which is synced once (with the directories
    /// above it that had to be created). See the module docs for why this order is safe.
    fn commit_shares(
        &mut self,
        si: &StorageIndex,
        shares: &[(u16, u64)],
    ) -> Vec<Result<(), StoreError>> {
        let mut results: Vec<Result<(), StoreError>> = Vec::with_capacity(shares.len());
        // 1. Checks, and each file at exactly its length (gaps and the tail read as zeros).
        let mut ready: Vec<(usize, File)> = Vec::new();
        for (i, &(shnum, length)) in shares.iter().enumerate() {
            if shares[..i].iter().any(|&(n, _)| n == shnum) {
                // Committed by its first entry: like a second commit, not found.
                results.push(Err(StoreError::NotFound));
                continue;
            }
            match self.prepare_commit(si, shnum, length) {
                Ok(file) => {
                    ready.push((i, file));
                    results.push(Ok(()));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        if ready.is_empty() {
            return results;
        }
        // 2. The data on disk and the leases in the database, at the same time. The leases are
        // durable before any share becomes visible: a visible share always has its leases, so
        // garbage collection can never mistake it for an abandoned one.
        let batch: Vec<(u16, Vec<StoredLease>)> = ready
            .iter()
            .map(|(i, _)| {
                let shnum = shares[*i].0;
                let leases = self
                    .uploads
                    .get(&(*si, shnum))
                    .map(|u| u.leases.clone())
                    .unwrap_or_default();
                (shnum, leases)
            })
            .collect();
        let (synced, leased) = {
            let uploads = &self.uploads;
            let db = &mut self.db;
            let items: Vec<(&File, &Path)> = ready
                .iter()
                .map(|(i, f)| {
                    let path = uploads
                        .get(&(*si, shares[*i].0))
                        .map_or(Path::new("upload"), |u| u.path.as_path());
                    (f, path)
                })
                .collect();
            std::thread::scope(|scope| {
                let files = std::thread::Builder::new()
                    .name("lafs-sync".into())
                    .spawn_scoped(scope, || {
                        sync_together(&items, |(f, p)| {
                            f.sync_data().map_err(|e| io_error("syncing upload", p, e))
                        })
                    });
                let leased = db.set_leases_of_shares(si, &batch);
                let synced = match files {
                    Ok(h) => h.join().unwrap_or_else(|_| {
                        items
                            .iter()
                            .map(|_| Err(StoreError::Io("a sync thread failed".into())))
                            .collect()
                    }),
                    Err(_) => sync_together(&items, |(f, p)| {
                        f.sync_data().map_err(|e| io_error("syncing upload", p, e))
                    }),
                };
                (synced, leased)
            })
        };
        let indexes: Vec<usize> = ready.iter().map(|(i, _)| *i).collect();
        drop(ready);
        let mut landing: Vec<usize> = Vec::new();
        let mut failed: Vec<u16> = Vec::new();
        for (i, synced) in indexes.into_iter().zip(synced) {
            match (&leased, synced) {
                (Err(e), _) => results[i] = Err(e.clone()),
                (Ok(()), Err(e)) => {
                    results[i] = Err(e);
                    failed.push(shares[i].0);
                }
                (Ok(()), Ok(())) => landing.push(i),
            }
        }
        // 3. Into place, atomically, and the renames made durable by one sync of the bucket.
        let bucket = self.bucket(si);
        let mut to_sync = Vec::new();
        if !landing.is_empty() {
            if let Err(e) = create_dirs(&self.shares, &bucket, &mut to_sync) {
                for &i in &landing {
                    results[i] = Err(e.clone());
                    failed.push(shares[i].0);
                }
                landing.clear();
            }
        }
        let mut landed = Vec::new();
        for i in landing {
            let (shnum, length) = shares[i];
            let Some(from) = self.uploads.get(&(*si, shnum)).map(|u| u.path.clone()) else {
                results[i] = Err(StoreError::NotFound);
                continue;
            };
            let to = bucket.join(shnum.to_string());
            if let Err(e) = fs::rename(&from, &to) {
                results[i] = Err(io_error("renaming upload into", &to, e));
                failed.push(shnum);
                continue;
            }
            if let Some(upload) = self.uploads.remove(&(*si, shnum)) {
                self.allocated_bytes = self.allocated_bytes.saturating_sub(upload.allocated);
            }
            self.committed_bytes += length;
            self.committed_shares += 1;
            landed.push(i);
        }
        // Rows of shares that will not land now (best effort: the next open prunes them too).
        if !failed.is_empty() {
            if let Err(e) = self.db.remove_shares(si, &failed) {
                tracing::warn!("{e}");
            }
        }
        if !landed.is_empty() {
            to_sync.push(bucket);
            // The shares are committed from here on (visible, and kept after a crash in all but
            // the power-loss case these syncs guard); a failure is still reported.
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
        match fs::remove_file(&upload.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            // The allocation is released anyway; the file goes at the next open.
            Err(e) => Err(io_error("deleting upload", &upload.path, e)),
        }
    }

    fn list_mutable_shares(&self, si: &StorageIndex) -> Result<Vec<MutableShareInfo>, StoreError> {
        Ok(self
            .bucket_files(si)?
            .into_iter()
            .filter_map(|(shnum, _, kind)| match kind {
                ShareFile::Mutable(h) => Some(MutableShareInfo {
                    shnum,
                    length: h.data_len,
                    enabler: h.enabler,
                }),
                ShareFile::Immutable => None,
            })
            .collect())
    }

    fn read_mutable_share(
        &self,
        si: &StorageIndex,
        shnum: u16,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>, StoreError> {
        let path = self.share_path(si, shnum);
        let Some((file, len)) = open_share(&path)? else {
            return Err(StoreError::NotFound);
        };
        let ShareFile::Mutable(header) = sniff(&file, &path, len)? else {
            return Err(StoreError::NotFound);
        };
        let start = offset.min(header.data_len);
        let end = offset
            .saturating_add(length)
            .min(header.data_len)
            .max(start);
        let Ok(count) = usize::try_from(end - start) else {
            return Err(StoreError::Io(format!(
                "{}: a read of {} bytes does not fit in memory",
                path.display(),
                end - start
            )));
        };
        let mut buf = vec![0u8; count];
        file.read_exact_at(&mut buf, MUTABLE_DATA_OFFSET + start)
            .map_err(|e| io_error("reading share", &path, e))?;
        Ok(buf)
    }

    fn write_mutable_shares(
        &mut self,
        si: &StorageIndex,
        enabler: &EnablerRecord,
        changes: &[MutableShareChange<'_>],
    ) -> Result<(), StoreError> {
        let conflict = || {
            StoreError::KindConflict(
                "the storage index holds immutable shares; a mutable share cannot join them".into(),
            )
        };
        if self
            .uploads
            .range((*si, 0)..=(*si, u16::MAX))
            .next()
            .is_some()
        {
            return Err(conflict());
        }
        let mut before = BTreeMap::new();
        let mut file_lens = BTreeMap::new();
        for (shnum, file_len, kind) in self.bucket_files(si)? {
            let ShareFile::Mutable(header) = kind else {
                return Err(conflict());
            };
            before.insert(shnum, header.data_len);
            file_lens.insert(shnum, file_len);
        }
        let plan = plan_mutable_changes(&before, changes, self.config.max_share_size)?;
        // File bytes after minus before; an existing container keeps its lease block, whose size
        // the file length less the data tells closely enough.
        let (mut grow, mut shrink) = (0u64, 0u64);
        for (shnum, (old, new)) in &plan {
            let old_file = file_lens.get(shnum).copied().unwrap_or(0);
            let overhead = match old {
                Some(old) => old_file.saturating_sub(*old),
                None => MUTABLE_DATA_OFFSET + EMPTY_LEASE_BLOCK,
            };
            let new_file = new.map_or(0, |n| n.saturating_add(overhead));
            grow = grow.saturating_add(new_file.saturating_sub(old_file));
            shrink = shrink.saturating_add(old_file.saturating_sub(new_file));
        }
        let needed = grow.saturating_sub(shrink);
        if needed > 0 {
            let available = self.available()?;
            if needed > available {
                return Err(StoreError::NoSpace { needed, available });
            }
        }
        // Every change is written, then all are synced together; a share named twice has its
        // first change placed before the second is written.
        let mut staged = Vec::new();
        let mut staged_shnums = BTreeSet::new();
        for change in changes {
            if !staged_shnums.insert(change.shnum) {
                self.place_mutable(si, std::mem::take(&mut staged))?;
                staged_shnums = BTreeSet::from([change.shnum]);
            }
            match self.stage_mutable_change(si, enabler, change) {
                Ok(s) => staged.push(s),
                Err(e) => {
                    // What was written before the failure is still made durable.
                    let _ = self.place_mutable(si, staged);
                    return Err(e);
                }
            }
        }
        self.place_mutable(si, staged)
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

    /// One SQLite transaction for every committed share named (uploads in progress keep theirs
    /// in memory); a share that is not here stops the batch there, as the trait says.
    fn add_leases(
        &mut self,
        si: &StorageIndex,
        shnums: &[u16],
        lease: Lease,
    ) -> Result<(), StoreError> {
        let stored = StoredLease::from_lease(&lease);
        let mut committed = Vec::with_capacity(shnums.len());
        let mut failure = None;
        for &shnum in shnums {
            if let Some(upload) = self.uploads.get_mut(&(*si, shnum)) {
                merge_lease(&mut upload.leases, stored);
                continue;
            }
            match self.committed_len(si, shnum) {
                Ok(Some(_)) => committed.push(shnum),
                Ok(None) => {
                    failure = Some(StoreError::NotFound);
                    break;
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
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
