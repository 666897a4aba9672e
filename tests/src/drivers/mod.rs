//! One small driver trait for the end-to-end suite (`tests/tests/integration/e2e.rs`), implemented over
//! every way lafs-core can be run: threads and blocking sockets ([`on_std`]), smol futures
//! ([`on_smol`]) and the simulator's virtual time ([`on_sim`]).
//!
//! The suite is written once against [`Driver`]. Files are named by a number and their bytes
//! come from [`contents`] (the simulator's own file generator), so every driver uploads the
//! same bytes and the simulator can check them itself. Servers are numbered `0..servers`.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use lafs_core::cap::Cap;
use lafs_core::codec::CodecKind;
use lafs_core::immutable::EncodingParams;
use lafs_core::mutable::layout::MutableFormat;
use lafs_core::placement::ServerId;
use lafs_core::store::{
    EnablerRecord, Lease, MutableShareChange, MutableShareInfo, ShareInfo, ShareStore, StoreError,
};
use lafs_core::wire::StorageIndex;

pub mod on_sim;
pub mod on_smol;
pub mod on_std;

/// The seed every driver's file contents come from.
pub const CONTENT_SEED: u64 = 7;

/// The bytes of test file `file` (`size` bytes): the same for every driver.
pub fn contents(file: usize, size: u64) -> Vec<u8> {
    lafs_sim::rng::file_bytes(CONTENT_SEED, file as u64, size as usize)
}

/// The grid a scenario runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setup {
    pub servers: usize,
    pub encoding: EncodingParams,
    pub codec: CodecKind,
}

impl Setup {
    /// `servers` servers, 3-of-10 shares with happiness 7, 64 KiB segments.
    pub fn new(servers: usize) -> Setup {
        Setup {
            servers,
            encoding: EncodingParams {
                k: 3,
                happy: 7,
                n: 10,
                max_segment_size: 64 * 1024,
            },
            codec: CodecKind::Zfec,
        }
    }
}

/// What an acknowledged upload left on the grid (empty for a file small enough for a LIT cap,
/// whose bytes travel in the cap).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uploaded {
    /// Servers (by number) that hold at least one committed share of the file.
    pub holders: BTreeSet<usize>,
}

/// What a successful download returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    /// The plaintext, verified by the client.
    pub bytes: Vec<u8>,
    /// Shares the download found corrupt (and dropped).
    pub corrupt_shares: usize,
}

/// One operation of a concurrent batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Upload { file: usize, size: u64 },
    Download { file: usize },
}

/// How an operation of a concurrent batch ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpResult {
    Uploaded(Result<Uploaded, String>),
    Downloaded(Result<Fetched, String>),
}

/// A grid plus a client, driven by one runtime. Errors are the operation's message.
pub trait Driver: Sized {
    const NAME: &'static str;

    /// Start `setup.servers` empty servers and a client for them.
    fn start(setup: Setup) -> Self;

    /// Whether this driver can upload with `codec`.
    fn supports(codec: CodecKind) -> bool;

    /// Upload file `file` ([`contents`] of `size` bytes).
    fn upload(&mut self, file: usize, size: u64) -> Result<Uploaded, String>;

    /// Upload file `file`, killing server `server` (its process, as far as clients can tell)
    /// while the upload is half-way through. The server stays down until [`Driver::restart`].
    fn upload_killing(&mut self, file: usize, size: u64, server: usize)
        -> Result<Uploaded, String>;

    /// Download file `file` (uploaded earlier through this driver).
    fn download(&mut self, file: usize) -> Result<Fetched, String>;

    /// Run `ops` at the same time; results in the same order.
    fn concurrently(&mut self, ops: &[Op]) -> Vec<OpResult>;

    /// Kill server `server`; its committed shares stay on its disk.
    fn stop(&mut self, server: usize);

    /// Start a stopped server again, on the same address with the same disk.
    fn restart(&mut self, server: usize);

    /// Flip a byte in the middle of the share(s) of `file` held by `server`.
    fn corrupt(&mut self, server: usize, file: usize);

    /// From now on `server` has no space for new shares.
    fn fill(&mut self, server: usize);

    /// Create mutable file `file` (numbered apart from immutable files) holding
    /// [`mutable_contents`]`(file, 0, size)`, signed with the next fixture key.
    fn create_mutable(
        &mut self,
        file: usize,
        format: MutableFormat,
        size: u64,
    ) -> Result<(), String>;

    /// Publish the next version of mutable file `file`: [`mutable_contents`]`(file, n, size)`
    /// for its `n`-th publish, reusing the map of the client's last operation on it.
    fn update_mutable(&mut self, file: usize, size: u64) -> Result<(), String>;

    /// Read mutable file `file`: whole, or `range` = (offset, length).
    fn read_mutable(&mut self, file: usize, range: Option<(u64, u64)>) -> Result<Vec<u8>, String>;
}

/// Directories, on every driver (the simulator runs them as scripted directory calls). Paths
/// are names below a root directory; errors are the operation's message.
pub trait DirDriver: Driver {
    /// A new, unlinked directory (its write cap).
    fn mkdir(&mut self) -> Result<Cap, String>;
    /// A new directory at `path` below `root` (`parents`: make missing ones too).
    fn mkdir_at(&mut self, root: &Cap, path: &[&str], parents: bool) -> Result<Cap, String>;
    /// Link immutable file `file` (uploaded earlier through this driver) at `path`; with
    /// `replace` false an existing name is refused.
    fn link_file(
        &mut self,
        root: &Cap,
        path: &[&str],
        file: usize,
        replace: bool,
    ) -> Result<(), String>;
    /// The names in the directory at `path` below `root`.
    fn list(&mut self, root: &Cap, path: &[&str]) -> Result<Vec<String>, String>;
    /// The cap at `path` below `root`.
    fn lookup(&mut self, root: &Cap, path: &[&str]) -> Result<Cap, String>;
    /// Remove the link at `path` below `root`.
    fn unlink(&mut self, root: &Cap, path: &[&str]) -> Result<(), String>;
    /// Move the link at `from` to `to` (both below `root`).
    fn move_link(&mut self, root: &Cap, from: &[&str], to: &[&str]) -> Result<(), String>;
    /// The cap of immutable file `file`, uploaded earlier.
    fn file_cap(&self, file: usize) -> Option<Cap>;
}

/// A path as the directory operations take it.
pub fn path(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

/// The names of a directory's entries, in order.
pub fn names(dir: &lafs_core::dirnode::Directory) -> Vec<String> {
    dir.list().map(|(name, _)| name.to_string()).collect()
}

/// The known cap of a looked-up child.
pub fn known_cap(found: lafs_core::dirnode::ops::Found) -> Result<Cap, String> {
    match found.cap {
        lafs_core::dirnode::ChildCap::Known(cap) => Ok(cap),
        lafs_core::dirnode::ChildCap::Unknown(_) => Err("a cap of an unknown kind".into()),
    }
}

/// The link options for linking a file, replacing an existing name or not.
pub fn file_link(replace: bool) -> lafs_core::dirnode::ops::LinkOptions {
    lafs_core::dirnode::ops::LinkOptions {
        overwrite: if replace {
            lafs_core::dirnode::Overwrite::Yes
        } else {
            lafs_core::dirnode::Overwrite::No
        },
        ..Default::default()
    }
}

/// The bytes of the `attempt`-th publish (0 = the create) of mutable test file `file`: the
/// same for every driver (the simulator's own generator).
pub fn mutable_contents(file: usize, attempt: usize, size: u64) -> Vec<u8> {
    lafs_sim::world::mutable_bytes(CONTENT_SEED, file, attempt, size)
}

/// A mutable file made through a real-socket driver: its cap, how many publishes it has had,
/// and the map of the last operation on it.
#[derive(Debug)]
pub struct MutableFile {
    pub cap: lafs_core::cap::Cap,
    pub publishes: usize,
    pub map: Option<lafs_core::mutable::ServerMap>,
}

/// The id of real-socket test server `i` (its permutation seed too).
pub fn server_id(i: usize) -> ServerId {
    let mut id = [0u8; 32];
    id[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
    id[8] = 0xe2;
    ServerId(id)
}

/// A store wrapper that can be switched to "disk full" from outside the server.
#[derive(Debug)]
pub struct FillableStore<S> {
    pub inner: S,
    pub full: Arc<AtomicBool>,
}

impl<S: ShareStore> ShareStore for FillableStore<S> {
    fn list_shares(&self, si: &StorageIndex) -> Result<Vec<ShareInfo>, StoreError> {
        self.inner.list_shares(si)
    }
    fn read_share(
        &self,
        si: &StorageIndex,
        shnum: u16,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>, StoreError> {
        self.inner.read_share(si, shnum, offset, length)
    }
    fn create_share(
        &mut self,
        si: &StorageIndex,
        shnum: u16,
        allocated_size: u64,
        lease: Lease,
    ) -> Result<(), StoreError> {
        if self.full.load(Ordering::SeqCst) {
            return Err(StoreError::NoSpace {
                needed: allocated_size,
                available: 0,
            });
        }
        self.inner.create_share(si, shnum, allocated_size, lease)
    }
    fn write_share(
        &mut self,
        si: &StorageIndex,
        shnum: u16,
        offset: u64,
        data: &[u8],
    ) -> Result<(), StoreError> {
        self.inner.write_share(si, shnum, offset, data)
    }
    fn commit_share(
        &mut self,
        si: &StorageIndex,
        shnum: u16,
        length: u64,
    ) -> Result<(), StoreError> {
        self.inner.commit_share(si, shnum, length)
    }
    fn abort_share(&mut self, si: &StorageIndex, shnum: u16) -> Result<(), StoreError> {
        self.inner.abort_share(si, shnum)
    }
    fn list_mutable_shares(&self, si: &StorageIndex) -> Result<Vec<MutableShareInfo>, StoreError> {
        self.inner.list_mutable_shares(si)
    }
    fn read_mutable_share(
        &self,
        si: &StorageIndex,
        shnum: u16,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>, StoreError> {
        self.inner.read_mutable_share(si, shnum, offset, length)
    }
    fn write_mutable_shares(
        &mut self,
        si: &StorageIndex,
        enabler: &EnablerRecord,
        changes: &[MutableShareChange<'_>],
    ) -> Result<(), StoreError> {
        if self.full.load(Ordering::SeqCst) {
            return Err(StoreError::NoSpace {
                needed: 1,
                available: 0,
            });
        }
        self.inner.write_mutable_shares(si, enabler, changes)
    }
    fn add_lease(&mut self, si: &StorageIndex, shnum: u16, lease: Lease) -> Result<(), StoreError> {
        self.inner.add_lease(si, shnum, lease)
    }
    fn leases(&self, si: &StorageIndex, shnum: u16) -> Result<Vec<Lease>, StoreError> {
        self.inner.leases(si, shnum)
    }
    fn space_used(&self) -> u64 {
        self.inner.space_used()
    }
    fn shares_held(&self) -> u64 {
        self.inner.shares_held()
    }
    fn space_available(&self) -> u64 {
        if self.full.load(Ordering::SeqCst) {
            0
        } else {
            self.inner.space_available()
        }
    }
    fn max_share_size(&self) -> u64 {
        self.inner.max_share_size()
    }
}

/// Flip one byte in the middle of every committed share of storage index `si` under the disk
/// store rooted at `store_dir`: share files (Tahoe's `shares/<prefix>/<SI>/<shnum>` tree) and
/// shares kept as rows of the store database (written through SQLite beside the running store,
/// with the row's checksum made to match, so the server serves the bad bytes as a lying or
/// buggy server would, and only the client's checks can catch them). Returns how many shares
/// were changed.
pub fn corrupt_disk_shares(store_dir: &std::path::Path, si: &StorageIndex) -> usize {
    corrupt_share_files(store_dir, si) + corrupt_share_rows(store_dir, si)
}

fn corrupt_share_files(store_dir: &std::path::Path, si: &StorageIndex) -> usize {
    let name = lafs_core::base32::encode(si);
    let bucket = store_dir.join("shares").join(&name[..2]).join(&name);
    let Ok(entries) = std::fs::read_dir(&bucket) else {
        return 0;
    };
    let mut changed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(mut bytes) = std::fs::read(&path) else {
            continue;
        };
        if bytes.is_empty() {
            continue;
        }
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x5a;
        if std::fs::write(&path, &bytes).is_ok() {
            changed += 1;
        }
    }
    changed
}

fn corrupt_share_rows(store_dir: &std::path::Path, si: &StorageIndex) -> usize {
    use sha2::Digest as _;
    let Ok(db) = rusqlite::Connection::open(store_dir.join("leases.db")) else {
        return 0;
    };
    let _ = db.busy_timeout(std::time::Duration::from_secs(5));
    let rows: Vec<(u16, Vec<u8>)> = db
        .prepare("SELECT shnum, data FROM shares WHERE storage_index = ?1 AND data IS NOT NULL")
        .and_then(|mut stmt| {
            stmt.query_map([&si[..]], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })
        .unwrap_or_default();
    let mut changed = 0;
    for (shnum, mut data) in rows {
        if data.is_empty() {
            continue;
        }
        let mid = data.len() / 2;
        data[mid] ^= 0x5a;
        // The store's row checksum: the first 16 bytes of the data's SHA-256.
        let checksum = sha2::Sha256::digest(&data)[..16].to_vec();
        let updated = db.execute(
            "UPDATE shares SET data = ?3, checksum = ?4 WHERE storage_index = ?1 AND shnum = ?2",
            rusqlite::params![&si[..], shnum, data, checksum],
        );
        if updated == Ok(1) {
            changed += 1;
        }
    }
    changed
}

/// Servers (by number, ids from [`server_id`]) named in an upload report's share map.
pub fn holders<'a>(servers: usize, ids: impl Iterator<Item = &'a ServerId>) -> BTreeSet<usize> {
    let ids: BTreeSet<&ServerId> = ids.collect();
    (0..servers)
        .filter(|i| ids.contains(&server_id(*i)))
        .collect()
}

/// Count the corrupt-share notes in a download's problem list.
pub fn corrupt_notes(problems: &[(ServerId, String)]) -> usize {
    problems
        .iter()
        .filter(|(_, p)| p.contains("is corrupt"))
        .count()
}
