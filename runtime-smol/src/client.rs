//! The client side: immutable uploads and downloads as futures, driving lafs-core's sans-IO
//! `Upload` and `Download` with the drain rule.
//!
//! A [`GridClient`] opens one connection per server the first time an operation needs it and
//! keeps it for later operations; any number of operations may run at once, from any tasks on
//! any executor (connections multiplex them with their own wire-level request ids). Each
//! operation runs inside the future that awaits it: encoding, decoding and hashing happen on the
//! thread that polls that future, exactly as lafs-runtime-std runs them on the caller's thread.

use std::collections::{BTreeMap, BTreeSet};
use std::io::SeekFrom;
use std::net::SocketAddr;
use std::time::Duration;

use async_io::Timer;
use lafs_core::cap::Cap;
pub use lafs_core::client::TransferStats;
use lafs_core::client::{Driven, Output, StatsCounter};
use lafs_core::crypto::convergent_key_hasher;
use lafs_core::immutable::download::{
    ChkFile, Download, DownloadConfig, DownloadError, DownloadEvent,
};
use lafs_core::immutable::params::{effective_segment_size, LIT_THRESHOLD};
use lafs_core::immutable::upload::{Upload, UploadConfig, UploadError, UploadEvent};
use lafs_core::op::{ClientOp, Transmit};
use lafs_core::placement::{ServerDescriptor, ServerId};
use smol::channel::{Receiver, Sender};
use smol::future::FutureExt;
use smol::io::{AsyncRead, AsyncReadExt, AsyncSeek, AsyncSeekExt, AsyncWrite, AsyncWriteExt};

use crate::clock;
use crate::connection::{Connection, Input};
use crate::sync::{lock, Arc, AtomicU64, Mutex, Ordering};

/// How the client finds one storage server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerEntry {
    pub id: ServerId,
    pub addr: SocketAddr,
    /// The server's permutation seed, which orders it on each file's ring (lafs servers use
    /// their id).
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

/// A finished upload.
#[derive(Clone, Debug)]
pub struct UploadReport {
    pub cap: Cap,
    pub size: u64,
    /// Wall time, including the hashing pass.
    pub elapsed: Duration,
    /// Servers-of-happiness achieved (0 for LIT caps).
    pub happiness: usize,
    /// Shares per server (written now or found already there).
    pub shares: BTreeMap<ServerId, BTreeSet<u16>>,
    pub stats: TransferStats,
    /// Servers that failed, refused or were lost along the way; the upload worked around them.
    pub server_problems: Vec<(ServerId, String)>,
}

/// A finished download.
#[derive(Clone, Debug)]
pub struct DownloadReport {
    /// Plaintext bytes written.
    pub size: u64,
    pub elapsed: Duration,
    pub stats: TransferStats,
    /// Servers lost or misbehaving along the way (including corrupt shares).
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
        /// What the client was doing with the local data.
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot reach any storage server: {}", list_unreachable(.0))]
    Unreachable(Vec<(SocketAddr, String)>),
    #[error("{0} caps cannot be downloaded as immutable files")]
    NotImmutableFile(&'static str),
    #[error("the {0} stalled with nothing in flight and no timer (a lafs-core bug)")]
    Stalled(&'static str),
}

fn list_unreachable(list: &[(SocketAddr, String)]) -> String {
    list.iter()
        .map(|(addr, e)| format!("{addr} ({e})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A client of a grid of storage servers reached over TCP, for async programs.
#[derive(Debug)]
pub struct GridClient {
    config: ClientConfig,
    descriptors: Vec<ServerDescriptor>,
    addrs: BTreeMap<ServerId, SocketAddr>,
    /// Live connections, opened lazily and reused by every operation.
    table: Mutex<BTreeMap<ServerId, Arc<Connection>>>,
    next_op: AtomicU64,
    connections_opened: AtomicU64,
}

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
        }
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// TCP connections opened since the client was created (a measure of connection reuse).
    pub fn connections_opened(&self) -> u64 {
        self.connections_opened.load(Ordering::Relaxed)
    }

    /// Upload `data`.
    pub async fn upload_bytes(&self, data: &[u8]) -> Result<UploadReport, ClientError> {
        self.upload_reader(data.len() as u64, &mut smol::io::Cursor::new(data))
            .await
    }

    /// Upload the first `size` bytes of `reader`: one pass to compute the convergent key, a
    /// second reading each segment when the upload asks for it.
    pub async fn upload_reader<R>(
        &self,
        size: u64,
        reader: &mut R,
    ) -> Result<UploadReport, ClientError>
    where
        R: AsyncRead + AsyncSeek + Unpin,
    {
        let started = std::time::Instant::now();
        let read_err = |source| ClientError::Io {
            what: "reading the data to upload",
            source,
        };
        // LIT files carry their bytes in the cap; the key is never used.
        let key = if size <= LIT_THRESHOLD {
            [0u8; 16]
        } else {
            self.convergent_key(size, reader).await.map_err(read_err)?
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
        let mut problems = Vec::new();
        let mut buf = Vec::new();
        loop {
            match session.next_event(&mut op).await? {
                UploadEvent::NeedSegment { offset, length, .. } => {
                    if let Err(e) = read_range(reader, offset, length, &mut buf).await {
                        op.cancel(clock::now());
                        // Let the cancelled upload tell its servers to abort.
                        session.flush(&mut op).await;
                        return Err(read_err(e));
                    }
                    op.provide_segment(clock::now(), &buf);
                }
                UploadEvent::ServerProblem { server, problem } => {
                    tracing::info!(%server, %problem, "upload: server problem");
                    problems.push((server, problem));
                }
                UploadEvent::Progress { .. } => {}
                UploadEvent::Done(result) => {
                    return Ok(UploadReport {
                        cap: result.cap,
                        size,
                        elapsed: started.elapsed(),
                        happiness: result.happiness,
                        shares: result.shares,
                        stats: session.stats(),
                        server_problems: problems,
                    })
                }
                UploadEvent::Failed(e) => return Err(session.failure(ClientError::Upload(e))),
            }
        }
    }

    /// Download the immutable file `cap` into `out`, verified segment by segment.
    pub async fn download<W>(&self, cap: &Cap, out: &mut W) -> Result<DownloadReport, ClientError>
    where
        W: AsyncWrite + Unpin,
    {
        let started = std::time::Instant::now();
        let write_err = |source| ClientError::Io {
            what: "writing the downloaded data",
            source,
        };
        let file = match cap {
            Cap::Lit { data } => {
                out.write_all(data).await.map_err(write_err)?;
                out.flush().await.map_err(write_err)?;
                return Ok(DownloadReport {
                    size: data.len() as u64,
                    elapsed: started.elapsed(),
                    stats: TransferStats::default(),
                    server_problems: Vec::new(),
                });
            }
            other => {
                ChkFile::from_cap(other).ok_or(ClientError::NotImmutableFile(other.kind_name()))?
            }
        };
        let mut session = Session::new(self, "download");
        let mut op = Download::new(clock::now(), self.config.download, file, &self.descriptors);
        let mut problems = Vec::new();
        let mut written = 0u64;
        loop {
            match session.next_event(&mut op).await? {
                DownloadEvent::Data { bytes, .. } => {
                    if let Err(e) = out.write_all(&bytes).await {
                        op.cancel();
                        return Err(write_err(e));
                    }
                    written += bytes.len() as u64;
                }
                DownloadEvent::CorruptShare {
                    server,
                    shnum,
                    error,
                } => {
                    tracing::warn!(%server, shnum, %error, "download: corrupt share dropped");
                    problems.push((server, format!("share {shnum} is corrupt: {error}")));
                }
                DownloadEvent::ServerProblem { server, problem } => {
                    tracing::info!(%server, %problem, "download: server problem");
                    problems.push((server, problem));
                }
                DownloadEvent::Done { .. } => {
                    out.flush().await.map_err(write_err)?;
                    // Corruption advisories may still be queued: send them before leaving.
                    session.flush(&mut op).await;
                    return Ok(DownloadReport {
                        size: written,
                        elapsed: started.elapsed(),
                        stats: session.stats(),
                        server_problems: problems,
                    });
                }
                DownloadEvent::Failed(e) => {
                    return Err(session.failure(ClientError::Download(e)));
                }
            }
        }
    }

    /// Download `cap` into memory.
    pub async fn download_bytes(
        &self,
        cap: &Cap,
    ) -> Result<(Vec<u8>, DownloadReport), ClientError> {
        let mut out = Vec::new();
        let report = self.download(cap, &mut out).await?;
        Ok((out, report))
    }

    /// Pass 1 of an upload: hash the whole plaintext into its convergent key.
    async fn convergent_key<R>(&self, size: u64, reader: &mut R) -> std::io::Result<[u8; 16]>
    where
        R: AsyncRead + AsyncSeek + Unpin,
    {
        let p = self.config.upload.params;
        let segment = effective_segment_size(size, p.k, p.max_segment_size);
        let mut hasher = convergent_key_hasher(&self.config.convergence_secret, p.k, p.n, segment);
        reader.seek(SeekFrom::Start(0)).await?;
        let mut buf = vec![0u8; 1 << 20];
        let mut done = 0u64;
        while done < size {
            let want = (size - done).min(buf.len() as u64) as usize;
            reader.read_exact(&mut buf[..want]).await?;
            hasher.update(&buf[..want]);
            done += want as u64;
        }
        Ok(hasher.finish())
    }

    /// The live connection to `server`, opening one if there is none (or the last one broke).
    async fn connection(&self, server: ServerId) -> std::io::Result<Arc<Connection>> {
        if let Some(c) = lock(&self.table).get(&server) {
            if !c.is_closed() {
                return Ok(Arc::clone(c));
            }
        }
        let addr = *self.addrs.get(&server).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "server not in the grid list")
        })?;
        let write_timeout = clock::to_std(
            self.config
                .upload
                .request_timeout
                .max(self.config.download.request_timeout),
        );
        // Connect without holding the table lock, so one slow server does not hold up others.
        let conn =
            Connection::open(server, addr, self.config.connect_timeout, write_timeout).await?;
        self.connections_opened.fetch_add(1, Ordering::Relaxed);
        Ok(install(&self.table, conn))
    }
}

/// Put a freshly opened connection into `table` unless another task already installed a live
/// one for the same server (then the fresh one is dropped, which closes it). Returns the
/// connection to use.
fn install(
    table: &Mutex<BTreeMap<ServerId, Arc<Connection>>>,
    conn: Arc<Connection>,
) -> Arc<Connection> {
    let mut table = lock(table);
    match table.get(&conn.server()) {
        Some(existing) if !existing.is_closed() => Arc::clone(existing),
        _ => {
            table.insert(conn.server(), Arc::clone(&conn));
            conn
        }
    }
}

impl Drop for GridClient {
    fn drop(&mut self) {
        for conn in lock(&self.table).values() {
            conn.shutdown();
        }
    }
}

/// Read exactly `[offset, offset + length)` of `reader` into `buf`.
async fn read_range<R>(
    reader: &mut R,
    offset: u64,
    length: u64,
    buf: &mut Vec<u8>,
) -> std::io::Result<()>
where
    R: AsyncRead + AsyncSeek + Unpin,
{
    let len = usize::try_from(length)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "segment too large"))?;
    buf.resize(len, 0);
    reader.seek(SeekFrom::Start(offset)).await?;
    reader.read_exact(buf).await
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
        let (tx, rx) = smol::channel::unbounded();
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

    /// lafs-core's [`Driven`] outputs as a future: send every pending transmit, then return the
    /// next event; with neither, wait for an answer or the operation's timer and feed it in.
    async fn next_event<O: ClientOp>(&mut self, op: &mut O) -> Result<O::Event, ClientError> {
        let mut driven = Driven::with_counter(op, std::mem::take(&mut self.counter));
        let outcome = loop {
            match driven.poll_output() {
                Output::Transmit(t) => self.transmit(&mut driven, t).await,
                Output::Event(event) => break Ok(event),
                Output::Wait(Some(deadline)) => {
                    let wait = clock::until(clock::now(), deadline);
                    let answer = async { self.rx.recv().await.ok() };
                    let timer = async {
                        Timer::after(wait).await;
                        None
                    };
                    match answer.or(timer).await {
                        Some(input) => self.apply(&mut driven, input),
                        None => driven.handle_timeout(clock::now()),
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
        outcome
    }

    /// Send every transmit the operation has queued (it has ended or been cancelled: its
    /// remaining events no longer matter).
    async fn flush<O: ClientOp>(&mut self, op: &mut O) {
        let mut driven = Driven::with_counter(op, std::mem::take(&mut self.counter));
        loop {
            match driven.poll_output() {
                Output::Transmit(t) => self.transmit(&mut driven, t).await,
                Output::Event(_) => {}
                Output::Wait(_) | Output::Stalled => break,
            }
        }
        self.counter = driven.into_parts().1;
    }

    async fn transmit<O: ClientOp>(&mut self, driven: &mut Driven<O>, t: Transmit) {
        let Some(conn) = self.connection(t.to).await else {
            driven.handle_server_lost(clock::now(), t.to);
            return;
        };
        match conn.send(self.op, t.id, &t.request, &self.tx).await {
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
    async fn connection(&mut self, server: ServerId) -> Option<Arc<Connection>> {
        if let Some(c) = self.used.get(&server) {
            if !c.is_closed() {
                return Some(Arc::clone(c));
            }
        }
        if self.unreachable.contains_key(&server) {
            return None;
        }
        match self.client.connection(server).await {
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
