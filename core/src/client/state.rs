//! The pure half of a grid client, shared by every runtime: its configuration and servers, the
//! signatures it has verified, and how each operation's [`Task`](super::Task) is made. A
//! runtime adds connections, a clock, randomness and local I/O.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::cap::Cap;
use crate::crypto::convergent_key_hasher;
use crate::crypto::rsa_keys::MutableKey;
use crate::immutable::download::{clip_range, ChkFile, Download};
use crate::immutable::params::{effective_segment_size, LIT_THRESHOLD};
use crate::immutable::upload::Upload;
use crate::mutable::layout::MutableFormat;
use crate::mutable::share::SignatureCache;
use crate::mutable::{
    FileKeys, Modify, Publish, PublishConfig, Retrieve, RetrieveConfig, ServerMap,
};
use crate::placement::{ServerDescriptor, ServerId};
use crate::server_status::GridStatus;
use crate::time::Instant;

use super::report::{ClientConfig, ClientError, DownloadReport, ServerEntry};
use super::stats::TransferStats;
use super::task::{DirTask, DownloadTask, PublishTask, RetrieveTask, StatusTask, UploadTask};
use crate::dirnode::ops::{
    DirCache, DirConfig, Link, LinkOptions, List, Lookup, Mkdir, MkdirAt, Move, Unlink,
};
use crate::dirnode::{ChildCap, Overwrite};

/// Files whose verified signatures are remembered (all forgotten when full: a bound, not a
/// policy; a directory tree in active use is far smaller).
const VERIFIED_FILES: usize = 4096;

/// Signature pairs remembered per file, one per version: the lowest sequence numbers go first
/// (a signed prefix starts with its format byte and sequence number, so the set's order is
/// theirs).
const VERIFIED_PER_FILE: usize = 4;

/// Signatures already verified, per mutable file (by its key's fingerprint), so repeated reads
/// of a directory skip the RSA check of a version they have seen.
#[derive(Clone, Debug, Default)]
pub struct VerifiedSignatures {
    files: BTreeMap<[u8; 32], SignatureCache>,
}

impl VerifiedSignatures {
    /// What earlier reads of the file with this fingerprint verified.
    pub fn get(&self, fingerprint: &[u8; 32]) -> SignatureCache {
        self.files.get(fingerprint).cloned().unwrap_or_default()
    }

    /// Files with remembered signatures.
    pub fn files(&self) -> usize {
        self.files.len()
    }

    /// Add everything `other` remembers.
    pub fn merge(&mut self, other: VerifiedSignatures) {
        for (fingerprint, verified) in other.files {
            self.remember(fingerprint, &verified);
        }
    }

    /// Remember what a read of the file with this fingerprint verified.
    pub fn remember(&mut self, fingerprint: [u8; 32], verified: &SignatureCache) {
        if verified.is_empty() {
            return;
        }
        if self.files.len() >= VERIFIED_FILES && !self.files.contains_key(&fingerprint) {
            self.files.clear();
        }
        let known = self.files.entry(fingerprint).or_default();
        known.extend(verified.iter().cloned());
        while known.len() > VERIFIED_PER_FILE {
            known.pop_first();
        }
    }
}

/// Bytes of directory state a client remembers (server maps and decoded tables of the
/// writeable directories it used last): a few hundred typical directories.
const DIR_CACHE_BYTES: usize = 16 << 20;

/// What a client remembers across its operations (a runtime keeps it behind one lock).
#[derive(Debug)]
pub struct ClientMemory {
    /// Directory states, lent to each directory operation ([`DirStart`]).
    pub dirs: DirCache,
    /// Signatures its mutable reads verified ([`ClientState::read_mutable`]).
    pub verified: VerifiedSignatures,
}

impl Default for ClientMemory {
    fn default() -> Self {
        ClientMemory {
            dirs: DirCache::new(DIR_CACHE_BYTES),
            verified: VerifiedSignatures::default(),
        }
    }
}

/// What a download of a cap needs: nothing from the network (a LIT cap's bytes), or a task.
#[derive(Debug)]
pub enum DownloadPlan {
    /// The bytes, straight from the cap, and the report to give.
    Literal(Vec<u8>, DownloadReport),
    Fetch(Box<DownloadTask>),
}

/// A client's configuration and servers, and the tasks it makes.
#[derive(Clone, Debug)]
pub struct ClientState {
    config: ClientConfig,
    descriptors: Vec<ServerDescriptor>,
    addrs: BTreeMap<ServerId, SocketAddr>,
}

impl ClientState {
    pub fn new(servers: &[ServerEntry], config: ClientConfig) -> ClientState {
        ClientState {
            descriptors: servers.iter().map(ServerEntry::descriptor).collect(),
            addrs: servers.iter().map(|s| (s.id, s.addr)).collect(),
            config,
        }
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    pub fn servers(&self) -> &[ServerDescriptor] {
        &self.descriptors
    }

    /// Where `server` listens; a `NotFound` error if it is not one of ours.
    pub fn addr(&self, server: &ServerId) -> std::io::Result<SocketAddr> {
        self.addrs.get(server).copied().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "server not in the grid list")
        })
    }

    /// Whether an upload of `size` bytes needs the hashing pass (LIT files carry their bytes
    /// in the cap; the key is never used).
    pub fn needs_key(&self, size: u64) -> bool {
        size > LIT_THRESHOLD
    }

    /// The hasher of pass 1 of an upload of `size` bytes: feed it the whole plaintext.
    pub fn key_hasher(&self, size: u64) -> crate::crypto::derive::ConvergentKeyHasher {
        let p = self.config.upload.params;
        let segment = effective_segment_size(size, p.k, p.max_segment_size);
        convergent_key_hasher(&self.config.convergence_secret, p.k, p.n, segment)
    }

    /// An upload of `size` bytes under convergent `key`; `hashing` is the time pass 1 took.
    pub fn upload(&self, now: Instant, key: [u8; 16], size: u64, hashing: Duration) -> UploadTask {
        let upload = Upload::new(
            now,
            self.config.upload,
            key,
            size,
            &self.descriptors,
            &self.config.lease_secret,
        );
        UploadTask::new(now, upload, size, hashing)
    }

    /// A download of the whole immutable file `cap` (`range` = `None`) or of
    /// `(offset, length)` of it. A range starting past the end fails here, before any request.
    pub fn download(
        &self,
        now: Instant,
        cap: &Cap,
        range: Option<(u64, u64)>,
    ) -> Result<DownloadPlan, ClientError> {
        let wanted = |size: u64| match range {
            Some((offset, length)) => clip_range(size, offset, length),
            None => Ok(0..size),
        };
        let file = match cap {
            Cap::Lit { data } => {
                let r = wanted(data.len() as u64)?;
                let bytes = data[r.start as usize..r.end as usize].to_vec();
                let report = DownloadReport {
                    size: bytes.len() as u64,
                    elapsed: Duration::ZERO,
                    stats: TransferStats::default(),
                    server_problems: Vec::new(),
                };
                return Ok(DownloadPlan::Literal(bytes, report));
            }
            other => {
                ChkFile::from_cap(other).ok_or(ClientError::NotImmutableFile(other.kind_name()))?
            }
        };
        let r = wanted(file.size)?;
        let total = r.end - r.start;
        let download = match range {
            None => Download::new(now, self.config.download, file, &self.descriptors),
            Some(_) => Download::new_range(
                now,
                self.config.download,
                file,
                &self.descriptors,
                r.start,
                total,
            ),
        };
        Ok(DownloadPlan::Fetch(Box::new(DownloadTask::new(
            now, download, total,
        ))))
    }

    /// A new mutable file holding `contents`, signed with `key` (never reuse a key); `seed`
    /// must be fresh unpredictable bytes (salts and signature).
    pub fn create_mutable(
        &self,
        now: Instant,
        format: MutableFormat,
        key: MutableKey,
        contents: Vec<u8>,
        config: PublishConfig,
        seed: [u8; 32],
    ) -> PublishTask<Publish> {
        let publish = Publish::create(
            now,
            config,
            format,
            key,
            contents,
            &self.descriptors,
            &self.config.lease_secret,
            seed,
        );
        PublishTask::new(now, "mutable create", publish)
    }

    /// Replace the contents of the mutable file `cap` (a write cap, or a directory cap over
    /// one); with `map` from a recent read or write of it, one round trip.
    pub fn update_mutable(
        &self,
        now: Instant,
        cap: &Cap,
        contents: Vec<u8>,
        map: Option<ServerMap>,
        seed: [u8; 32],
    ) -> Result<PublishTask<Publish>, ClientError> {
        let keys = file_keys(cap)?;
        let publish = Publish::update(
            now,
            PublishConfig::default(),
            keys,
            contents,
            &self.descriptors,
            map,
            &self.config.lease_secret,
            seed,
        );
        Ok(PublishTask::new(now, "mutable update", publish))
    }

    /// Overwrite `data.len()` bytes at `offset` of the MDMF file `cap` in place, rewriting
    /// only the segments they touch (the file's length cannot change).
    pub fn modify_mutable(
        &self,
        now: Instant,
        cap: &Cap,
        offset: u64,
        data: Vec<u8>,
        map: Option<ServerMap>,
        seed: [u8; 32],
    ) -> Result<PublishTask<Modify>, ClientError> {
        let keys = file_keys(cap)?;
        let modify = Modify::new(
            now,
            PublishConfig::default(),
            keys,
            offset,
            data,
            &self.descriptors,
            map,
            &self.config.lease_secret,
            seed,
        );
        Ok(PublishTask::new(now, "mutable modify", modify))
    }

    /// A read of the newest version of `cap` (or `range` = (offset, length) of it), trusting
    /// the signatures in `verified` (from [`VerifiedSignatures::get`]). Also returns the file's
    /// fingerprint, under which to remember what the read verified.
    pub fn read_mutable(
        &self,
        now: Instant,
        cap: &Cap,
        range: Option<(u64, u64)>,
        verified: &VerifiedSignatures,
    ) -> Result<(RetrieveTask, [u8; 32]), ClientError> {
        let keys = file_keys(cap)?;
        let fingerprint = keys.fingerprint;
        let mut retrieve = Retrieve::new(
            now,
            RetrieveConfig::default(),
            keys,
            &self.descriptors,
            range,
        );
        retrieve.trust_verified(&verified.get(&fingerprint));
        Ok((RetrieveTask::new(now, retrieve), fingerprint))
    }

    /// Ask every server for its version, space and shares held, waiting at most `timeout`.
    pub fn status(&self, now: Instant, timeout: crate::time::Duration) -> StatusTask {
        let servers: Vec<ServerId> = self.descriptors.iter().map(|d| d.id).collect();
        StatusTask::new(now, GridStatus::new(now, &servers, timeout))
    }
}

/// What a directory operation starts from besides its own arguments: the time, the client's
/// remembered directories (states it may edit are taken out while it runs; give them back with
/// [`DirTask::return_to`]) and fresh unpredictable bytes (publish salts, backoff jitter).
#[derive(Debug)]
pub struct DirStart<'a> {
    pub now: Instant,
    pub cache: &'a mut DirCache,
    pub seed: [u8; 32],
}

/// Directory operations.
impl ClientState {
    fn dir_config(&self) -> DirConfig {
        let mut config = DirConfig::new(self.descriptors.clone(), self.config.lease_secret.clone());
        config.download = self.config.download;
        config
    }

    /// A new, unlinked directory.
    pub fn mkdir(&self, at: DirStart<'_>, format: MutableFormat) -> DirTask<Mkdir> {
        let op = Mkdir::new(at.now, self.dir_config(), at.seed, format);
        DirTask::new(at.now, "mkdir", op)
    }

    /// A new directory linked at `path` below `root`; `parents` makes missing ones too.
    pub fn mkdir_at(
        &self,
        at: DirStart<'_>,
        root: Cap,
        path: Vec<String>,
        format: MutableFormat,
        parents: bool,
    ) -> DirTask<MkdirAt> {
        let config = self.dir_config();
        let op = MkdirAt::new(
            at.now, config, at.seed, at.cache, root, path, format, parents,
        );
        DirTask::new(at.now, "mkdir", op)
    }

    /// The entries of the directory `cap`.
    pub fn list(&self, at: DirStart<'_>, cap: Cap) -> DirTask<List> {
        let op = List::new(at.now, self.dir_config(), at.seed, at.cache, cap);
        DirTask::new(at.now, "list", op)
    }

    /// What `path` below `root` names (the directory itself for an empty path).
    pub fn lookup(&self, at: DirStart<'_>, root: Cap, path: Vec<String>) -> DirTask<Lookup> {
        let op = Lookup::new(at.now, self.dir_config(), at.seed, at.cache, root, path);
        DirTask::new(at.now, "lookup", op)
    }

    /// Link `child` at `path` below `root`.
    pub fn link(
        &self,
        at: DirStart<'_>,
        root: Cap,
        path: Vec<String>,
        child: ChildCap,
        options: LinkOptions,
    ) -> DirTask<Link> {
        let config = self.dir_config();
        let op = Link::new(
            at.now, config, at.seed, at.cache, root, path, child, options,
        );
        DirTask::new(at.now, "link", op)
    }

    /// Remove the link at `path` below `root`.
    pub fn unlink(&self, at: DirStart<'_>, root: Cap, path: Vec<String>) -> DirTask<Unlink> {
        let op = Unlink::new(at.now, self.dir_config(), at.seed, at.cache, root, path);
        DirTask::new(at.now, "unlink", op)
    }

    /// Move the link `from` = (root, path) to `to` = (root, path), within one directory (a
    /// rename) or between two.
    pub fn move_link(
        &self,
        at: DirStart<'_>,
        from: (Cap, Vec<String>),
        to: (Cap, Vec<String>),
        overwrite: Overwrite,
    ) -> DirTask<Move> {
        let op = Move::new(
            at.now,
            self.dir_config(),
            at.seed,
            at.cache,
            from,
            to,
            overwrite,
        );
        DirTask::new(at.now, "move", op)
    }
}

fn file_keys(cap: &Cap) -> Result<FileKeys, ClientError> {
    FileKeys::from_cap(cap).map_err(|e| ClientError::NotMutableFile(e.to_string()))
}
