//! The client side: uploads and downloads over TCP, driving lafs-core's sans-IO operations.
//!
//! A [`GridClient`] opens one connection per server the first time an operation needs it and
//! keeps it for later operations (see [`super::connection`] for what is shared between
//! threads). Each operation runs on the caller's thread: it drains the core operation's
//! transmits and events (the drain rule), then blocks on its own channel for answers until the
//! operation's next timeout.
//!
//! Request ids: the core numbers each operation's requests from 0, so two operations on one
//! connection would collide. Each connection therefore hands out its own wire-level ids and maps
//! each one back to (operation, the operation's id). Operations may run from several threads at
//! once over one `GridClient`; the tests exercise them one at a time plus one concurrent case.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

use lafs_core::cap::Cap;
pub use lafs_core::client::TransferStats;
use lafs_core::client::{Driven, Output, StatsCounter};
use lafs_core::crypto::convergent_key_hasher;
use lafs_core::immutable::download::{
    clip_range, ChkFile, Download, DownloadConfig, DownloadError, DownloadEvent,
};
use lafs_core::immutable::params::{effective_segment_size, LIT_THRESHOLD};
use lafs_core::immutable::upload::{Upload, UploadConfig, UploadError, UploadEvent};
use lafs_core::mutable::share::SignatureCache;
use lafs_core::op::{ClientOp, Transmit};
use lafs_core::placement::{ServerDescriptor, ServerId};
use lafs_core::server_status::{GridStatus, GridStatusReport};
use lafs_core::time::Instant;

mod mutable;
pub use mutable::{MutableReadReport, MutableWriteReport};

use super::connection::{install, Connection, Input};
use super::server::lock;
use crate::clock;
use crate::sync::{Arc, AtomicU64, Mutex, Ordering};

/// How the client finds one storage server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerEntry {
    pub id: ServerId,
    pub addr: SocketAddr,
    /// The server's announced permutation seed (decoded), which orders it on each file's ring.
    pub permutation_seed: Vec<u8>,
}

/// A client's secrets and tunables.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Mixed into convergent keys, so only clients sharing it deduplicate each other's files.
    pub convergence_secret: Vec<u8>,
    /// The node's lease secret; per-file and per-server lease secrets derive from it.
    pub lease_secret: Vec<u8>,
    pub upload: UploadConfig,
    pub download: DownloadConfig,
    /// How long to wait for a TCP connection before counting the server as lost.
    pub connect_timeout: Duration,
}

impl ClientConfig {
    /// Tahoe's defaults (3-of-10, happy 7, 1 MiB segments) with the given secrets.
    pub fn new(convergence_secret: Vec<u8>, lease_secret: Vec<u8>) -> ClientConfig {
        ClientConfig {
            convergence_secret,
            lease_secret,
            upload: UploadConfig::default(),
            download: DownloadConfig::default(),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// Which part of a transfer a [`TransferProgress`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Reading the file once to compute its convergent key.
    Hashing,
    /// Encoding and sending the file's segments.
    Uploading,
    /// Receiving and writing verified plaintext.
    Downloading,
}

/// How far a transfer has got: `done` of `total` plaintext bytes in `stage`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransferProgress {
    pub stage: Stage,
    pub done: u64,
    pub total: u64,
}

/// A finished upload.
#[derive(Clone, Debug)]
pub struct UploadReport {
    /// The file's read cap.
    pub cap: Cap,
    /// Plaintext bytes.
    pub size: u64,
    /// Wall time, including the hashing pass.
    pub elapsed: Duration,
    /// Servers-of-happiness achieved (0 for LIT caps).
    pub happiness: usize,
    /// Shares per server (written now or found already there).
    pub shares: BTreeMap<ServerId, BTreeSet<u16>>,
    pub stats: TransferStats,
    /// Servers that failed, refused or were lost along the way, with what happened; the
    /// operation worked around them.
    pub server_problems: Vec<(ServerId, String)>,
}

/// A finished download.
#[derive(Clone, Debug)]
pub struct DownloadReport {
    /// Plaintext bytes written.
    pub size: u64,
    pub elapsed: Duration,
    pub stats: TransferStats,
    /// Servers lost or misbehaving along the way (including corrupt shares), with what happened.
    pub server_problems: Vec<(ServerId, String)>,
}

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("upload failed: {0}")]
    Upload(#[from] UploadError),
    #[error("download failed: {0}")]
    Download(#[from] DownloadError),
    #[error("{what}: {source}")]
    Io {
        /// What the client was doing with the local file.
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot reach any storage server: {}", list_unreachable(.0))]
    Unreachable(Vec<(SocketAddr, String)>),
    #[error("{0} caps cannot be downloaded as immutable files")]
    NotImmutableFile(&'static str),
    #[error("{0}")]
    NotMutableFile(String),
    #[error("mutable write failed: {0}")]
    Publish(#[from] lafs_core::mutable::PublishError),
    #[error("mutable read failed: {0}")]
    Retrieve(#[from] lafs_core::mutable::RetrieveError),
    #[error("the {0} stalled with nothing in flight and no timer (a lafs-core bug)")]
    Stalled(&'static str),
}

fn list_unreachable(list: &[(SocketAddr, String)]) -> String {
    list.iter()
        .map(|(addr, e)| format!("{addr} ({e})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Anything an upload can read twice (once to hash, once to send).
pub trait ReadSeek: Read + Seek {}
impl<T: Read + Seek + ?Sized> ReadSeek for T {}

/// A client of a grid of storage servers reached over TCP.
#[derive(Debug)]
pub struct GridClient {
    config: ClientConfig,
    descriptors: Vec<ServerDescriptor>,
    addrs: BTreeMap<ServerId, SocketAddr>,
    /// Live connections, opened lazily and reused by every operation.
    table: Mutex<BTreeMap<ServerId, Arc<Connection>>>,
    next_op: AtomicU64,
    connections_opened: AtomicU64,
    /// Signatures already verified, per mutable file (by its key's fingerprint), so repeated
    /// reads of a directory skip the RSA check of a version they have seen.
    verified: Mutex<HashMap<[u8; 32], SignatureCache>>,
}

/// Files whose verified signatures are remembered (all forgotten when full: a bound, not a
/// policy; a directory tree in active use is far smaller).
const VERIFIED_FILES: usize = 4096;

/// Signature pairs remembered per file, one per version: the lowest sequence numbers go first
/// (a signed prefix starts with its format byte and sequence number, so the set's order is
/// theirs).
const VERIFIED_PER_FILE: usize = 4;

impl GridClient {
    pub fn new(servers: Vec<ServerEntry>, config: ClientConfig) -> GridClient {
        GridClient {
            descriptors: servers
                .iter()
                .map(|s| ServerDescriptor {
                    id: s.id,
                    permutation_seed: s.permutation_seed.clone(),
                })
                .collect(),
            addrs: servers.iter().map(|s| (s.id, s.addr)).collect(),
            config,
            table: Mutex::new(BTreeMap::new()),
            next_op: AtomicU64::new(0),
            connections_opened: AtomicU64::new(0),
            verified: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Ask every storage server for its version, space used and available and shares held, all
    /// at once (one round trip); a server that has not answered within `timeout` is reported
    /// as timed out. Connections are the ones operations use (opened if needed).
    pub fn grid_status(&self, timeout: Duration) -> Result<GridStatusReport, ClientError> {
        let mut session = Session::new(self, "status query");
        let servers: Vec<ServerId> = self.descriptors.iter().map(|d| d.id).collect();
        let mut op = GridStatus::new(clock::now(), &servers, clock::to_core(timeout));
        session.drive(&mut op, |_, _, report| Some(report))
    }

    /// The signatures verified by earlier reads of the file with this key fingerprint.
    fn verified_for(&self, fingerprint: &[u8; 32]) -> SignatureCache {
        lock(&self.verified)
            .get(fingerprint)
            .cloned()
            .unwrap_or_default()
    }

    /// Remember what a read of the file with this fingerprint verified.
    fn remember_verified(&self, fingerprint: [u8; 32], verified: &SignatureCache) {
        if verified.is_empty() {
            return;
        }
        let mut all = lock(&self.verified);
        if all.len() >= VERIFIED_FILES && !all.contains_key(&fingerprint) {
            all.clear();
        }
        let known = all.entry(fingerprint).or_default();
        known.extend(verified.iter().cloned());
        while known.len() > VERIFIED_PER_FILE {
            known.pop_first();
        }
    }

    /// TCP connections opened since the client was created (a measure of connection reuse).
    pub fn connections_opened(&self) -> u64 {
        self.connections_opened.load(Ordering::Relaxed)
    }

    /// Upload `data` (a convenience over [`GridClient::upload_reader`]).
    pub fn upload_bytes(
        &self,
        data: &[u8],
        progress: &mut dyn FnMut(TransferProgress),
    ) -> Result<UploadReport, ClientError> {
        self.upload_reader(data.len() as u64, &mut std::io::Cursor::new(data), progress)
    }

    /// Upload the file at `path`.
    pub fn upload_path(
        &self,
        path: &Path,
        progress: &mut dyn FnMut(TransferProgress),
    ) -> Result<UploadReport, ClientError> {
        let io = |source| ClientError::Io {
            what: format!("opening {}", path.display()),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        self.upload_reader(size, &mut file, progress)
    }

    /// Upload the first `size` bytes of `reader`: one pass to compute the convergent key, a
    /// second reading each segment when the upload asks for it.
    pub fn upload_reader(
        &self,
        size: u64,
        reader: &mut dyn ReadSeek,
        progress: &mut dyn FnMut(TransferProgress),
    ) -> Result<UploadReport, ClientError> {
        let started = std::time::Instant::now();
        // LIT files carry their bytes in the cap; the key is never used.
        let key = if size <= LIT_THRESHOLD {
            [0u8; 16]
        } else {
            self.convergent_key(size, reader, progress)?
        };
        let mut session = Session::new(self, "upload");
        let mut op = Upload::new(
            clock::now(),
            self.config.upload,
            key,
            size,
            &self.descriptors,
            &self.config.lease_secret,
        );
        let mut read_error = None;
        let mut problems = Vec::new();
        let mut buf = Vec::new();
        let outcome = session.drive(&mut op, |op, now, event| match event {
            UploadEvent::NeedSegment { offset, length, .. } => {
                match read_range(reader, offset, length, &mut buf) {
                    Ok(()) => {
                        op.provide_segment(now, &buf);
                        progress(TransferProgress {
                            stage: Stage::Uploading,
                            done: offset + length,
                            total: size,
                        });
                    }
                    Err(e) => {
                        read_error = Some(e);
                        op.cancel(now);
                    }
                }
                None
            }
            UploadEvent::ServerProblem { server, problem } => {
                tracing::info!(%server, %problem, "upload: server problem");
                problems.push((server, problem));
                None
            }
            UploadEvent::Progress { .. } => None,
            UploadEvent::Done(result) => Some(Ok(result)),
            UploadEvent::Failed(e) => Some(Err(e)),
        })?;
        match outcome {
            Ok(result) => Ok(UploadReport {
                cap: result.cap,
                size,
                elapsed: started.elapsed(),
                happiness: result.happiness,
                shares: result.shares,
                stats: session.stats(),
                server_problems: problems,
            }),
            Err(e) => Err(match read_error {
                Some(source) => ClientError::Io {
                    what: "reading the file to upload".into(),
                    source,
                },
                None => session.failure(ClientError::Upload(e)),
            }),
        }
    }

    /// Download the immutable file `cap` into `out`, verified segment by segment.
    pub fn download(
        &self,
        cap: &Cap,
        out: &mut dyn Write,
        progress: &mut dyn FnMut(TransferProgress),
    ) -> Result<DownloadReport, ClientError> {
        self.download_part(cap, None, out, progress)
    }

    /// Download bytes `[offset, offset + length)` of the immutable file `cap` into `out`,
    /// fetching and verifying only the segments that cover them (a LIT cap's bytes are sliced).
    /// A range running past the end is cut at the end (the report's `size` says how many bytes
    /// were written); one starting past the end (or at it, asking for bytes) fails with
    /// `ClientError::Download(DownloadError::RangeNotSatisfiable { offset, size })` before any
    /// request is sent, so an HTTP gateway can answer 416 with the file's size.
    pub fn download_range(
        &self,
        cap: &Cap,
        offset: u64,
        length: u64,
        out: &mut dyn Write,
        progress: &mut dyn FnMut(TransferProgress),
    ) -> Result<DownloadReport, ClientError> {
        self.download_part(cap, Some((offset, length)), out, progress)
    }

    /// The whole file (`range` = `None`) or `(offset, length)` of it.
    fn download_part(
        &self,
        cap: &Cap,
        range: Option<(u64, u64)>,
        out: &mut dyn Write,
        progress: &mut dyn FnMut(TransferProgress),
    ) -> Result<DownloadReport, ClientError> {
        let started = std::time::Instant::now();
        let write_error = |source| ClientError::Io {
            what: "writing the downloaded file".into(),
            source,
        };
        let wanted = |size: u64| match range {
            Some((offset, length)) => clip_range(size, offset, length),
            None => Ok(0..size),
        };
        let file = match cap {
            Cap::Lit { data } => {
                let r = wanted(data.len() as u64)?;
                out.write_all(&data[r.start as usize..r.end as usize])
                    .map_err(write_error)?;
                let size = r.end - r.start;
                progress(TransferProgress {
                    stage: Stage::Downloading,
                    done: size,
                    total: size,
                });
                return Ok(DownloadReport {
                    size,
                    elapsed: started.elapsed(),
                    stats: TransferStats::default(),
                    server_problems: Vec::new(),
                });
            }
            other => {
                ChkFile::from_cap(other).ok_or(ClientError::NotImmutableFile(other.kind_name()))?
            }
        };
        let r = wanted(file.size)?;
        let total = r.end - r.start;
        let mut session = Session::new(self, "download");
        let mut op = match range {
            None => Download::new(clock::now(), self.config.download, file, &self.descriptors),
            Some(_) => Download::new_range(
                clock::now(),
                self.config.download,
                file,
                &self.descriptors,
                r.start,
                total,
            ),
        };
        let mut failure = None;
        let mut problems = Vec::new();
        let mut written = 0u64;
        let outcome = session.drive(&mut op, |op, _now, event| match event {
            DownloadEvent::Data { offset, bytes } => {
                debug_assert_eq!(offset, r.start + written, "segments arrive in order");
                match out.write_all(&bytes) {
                    Ok(()) => {
                        written += bytes.len() as u64;
                        progress(TransferProgress {
                            stage: Stage::Downloading,
                            done: written,
                            total,
                        });
                    }
                    Err(e) => {
                        failure = Some(e);
                        op.cancel();
                    }
                }
                None
            }
            DownloadEvent::CorruptShare {
                server,
                shnum,
                error,
            } => {
                tracing::warn!(%server, shnum, %error, "download: corrupt share dropped");
                problems.push((server, format!("share {shnum} is corrupt: {error}")));
                None
            }
            DownloadEvent::ServerProblem { server, problem } => {
                tracing::info!(%server, %problem, "download: server problem");
                problems.push((server, problem));
                None
            }
            DownloadEvent::Done { .. } => Some(Ok(())),
            DownloadEvent::Failed(e) => Some(Err(e)),
        })?;
        match outcome {
            Ok(()) => Ok(DownloadReport {
                size: written,
                elapsed: started.elapsed(),
                stats: session.stats(),
                server_problems: problems,
            }),
            Err(e) => Err(match failure {
                Some(source) => write_error(source),
                None => session.failure(ClientError::Download(e)),
            }),
        }
    }

    /// Pass 1 of an upload: hash the whole plaintext into its convergent key.
    fn convergent_key(
        &self,
        size: u64,
        reader: &mut dyn ReadSeek,
        progress: &mut dyn FnMut(TransferProgress),
    ) -> Result<[u8; 16], ClientError> {
        let p = self.config.upload.params;
        let segment = effective_segment_size(size, p.k, p.max_segment_size);
        let mut hasher = convergent_key_hasher(&self.config.convergence_secret, p.k, p.n, segment);
        let io = |source| ClientError::Io {
            what: "reading the file to upload".into(),
            source,
        };
        reader.seek(SeekFrom::Start(0)).map_err(io)?;
        let mut buf = vec![0u8; 1 << 20];
        let mut done = 0u64;
        while done < size {
            let want = (size - done).min(buf.len() as u64) as usize;
            reader.read_exact(&mut buf[..want]).map_err(io)?;
            hasher.update(&buf[..want]);
            done += want as u64;
            progress(TransferProgress {
                stage: Stage::Hashing,
                done,
                total: size,
            });
        }
        Ok(hasher.finish())
    }

    /// The live connection to `server`, opening one if there is none (or the last one broke).
    fn connection(&self, server: ServerId) -> std::io::Result<Arc<Connection>> {
        if let Some(c) = lock(&self.table).get(&server) {
            if !c.is_closed() {
                return Ok(Arc::clone(c));
            }
        }
        let addr = *self.addrs.get(&server).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "server not in the grid list")
        })?;
        let write_timeout = clock_std(
            self.config
                .upload
                .request_timeout
                .max(self.config.download.request_timeout),
        );
        // Connect without holding the table lock, so one slow server does not hold up others.
        let conn = Connection::open(server, addr, self.config.connect_timeout, write_timeout)?;
        self.connections_opened.fetch_add(1, Ordering::Relaxed);
        // If another thread connected first, use its connection and close ours.
        let (conn, to_close) = install(&self.table, conn);
        if let Some(c) = to_close {
            c.close_and_join();
        }
        Ok(conn)
    }
}

impl Drop for GridClient {
    fn drop(&mut self) {
        let table = std::mem::take(&mut *lock(&self.table));
        for conn in table.values() {
            conn.close_and_join();
        }
    }
}

fn clock_std(d: lafs_core::time::Duration) -> Duration {
    Duration::from_micros(d.as_micros())
}

/// Read exactly `[offset, offset + length)` of `reader` into `buf`.
fn read_range(
    reader: &mut dyn ReadSeek,
    offset: u64,
    length: u64,
    buf: &mut Vec<u8>,
) -> std::io::Result<()> {
    let len = usize::try_from(length)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "segment too large"))?;
    buf.resize(len, 0);
    reader.seek(SeekFrom::Start(offset))?;
    reader.read_exact(buf)
}

/// One operation's view of the network: its channel, the connections it used, its counters.
struct Session<'a> {
    client: &'a GridClient,
    what: &'static str,
    /// This operation's number, distinct across the client's operations.
    op: u64,
    tx: Sender<Input>,
    rx: Receiver<Input>,
    used: BTreeMap<ServerId, Arc<Connection>>,
    reached: BTreeSet<ServerId>,
    unreachable: BTreeMap<ServerId, (SocketAddr, String)>,
    counter: StatsCounter,
}

impl<'a> Session<'a> {
    fn new(client: &'a GridClient, what: &'static str) -> Session<'a> {
        let (tx, rx) = mpsc::channel();
        Session {
            client,
            what,
            op: client.next_op.fetch_add(1, Ordering::Relaxed),
            tx,
            rx,
            used: BTreeMap::new(),
            reached: BTreeSet::new(),
            unreachable: BTreeMap::new(),
            counter: StatsCounter::default(),
        }
    }

    /// What the operation has cost so far.
    fn stats(&self) -> TransferStats {
        self.counter.stats()
    }

    /// Run `op` until `on_event` returns a result, following lafs-core's [`Driven`] outputs;
    /// whatever the operation queued with its result (corruption advisories) is sent first.
    fn drive<O: ClientOp, R>(
        &mut self,
        op: &mut O,
        mut on_event: impl FnMut(&mut O, Instant, O::Event) -> Option<R>,
    ) -> Result<R, ClientError> {
        let mut driven = Driven::with_counter(op, std::mem::take(&mut self.counter));
        let mut result = None;
        let outcome = loop {
            match driven.poll_output() {
                Output::Transmit(t) => self.transmit(&mut driven, t),
                Output::Event(event) => {
                    if let Some(r) = on_event(&mut **driven.op_mut(), clock::now(), event) {
                        result = Some(r);
                    }
                }
                _ if result.is_some() => break Ok(()),
                Output::Wait(Some(deadline)) => {
                    match self.rx.recv_timeout(clock::until(clock::now(), deadline)) {
                        Ok(input) => self.apply(&mut driven, input),
                        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                            driven.handle_timeout(clock::now())
                        }
                    }
                }
                // Requests in flight but no timer to bound the wait: only answers already
                // queued can move it on (every operation of lafs-core times its requests).
                Output::Wait(None) => match self.rx.try_recv() {
                    Ok(input) => self.apply(&mut driven, input),
                    Err(_) => break Err(ClientError::Stalled(self.what)),
                },
                Output::Stalled => break Err(ClientError::Stalled(self.what)),
            }
        };
        self.counter = driven.into_parts().1;
        outcome.map(|()| result.expect("the loop ends with a result or an error"))
    }

    fn transmit<O: ClientOp>(&mut self, driven: &mut Driven<O>, t: Transmit) {
        let Some(conn) = self.connection(t.to) else {
            driven.handle_server_lost(clock::now(), t.to);
            return;
        };
        match conn.send(self.op, t.id, &t.request, &self.tx) {
            Ok(bytes) => driven.handle_sent(t.to, bytes),
            Err(_) => driven.handle_server_lost(clock::now(), t.to),
        }
    }

    fn apply<O: ClientOp>(&mut self, driven: &mut Driven<O>, input: Input) {
        match input {
            Input::Response {
                server,
                id,
                response,
                wire_bytes,
            } => driven.handle_response(clock::now(), server, id, response, wire_bytes),
            Input::Lost { server } => driven.handle_server_lost(clock::now(), server),
        }
    }

    /// This operation's connection to `server`, or `None` if it cannot be reached.
    fn connection(&mut self, server: ServerId) -> Option<Arc<Connection>> {
        if let Some(c) = self.used.get(&server) {
            if !c.is_closed() {
                return Some(Arc::clone(c));
            }
        }
        if self.unreachable.contains_key(&server) {
            return None;
        }
        match self.client.connection(server) {
            Ok(c) => {
                self.reached.insert(server);
                if let Some(old) = self.used.insert(server, Arc::clone(&c)) {
                    old.forget_op(self.op);
                }
                Some(c)
            }
            Err(e) => {
                let addr = self
                    .client
                    .addrs
                    .get(&server)
                    .copied()
                    .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
                tracing::info!(%server, %addr, error = %e, "cannot connect to storage server");
                self.unreachable.insert(server, (addr, e.to_string()));
                None
            }
        }
    }

    /// The error to report for a failed operation: "unreachable" if no server could be reached.
    fn failure(&self, e: ClientError) -> ClientError {
        if self.reached.is_empty() && !self.unreachable.is_empty() {
            ClientError::Unreachable(self.unreachable.values().cloned().collect())
        } else {
            e
        }
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        for conn in self.used.values() {
            conn.forget_op(self.op);
        }
    }
}
