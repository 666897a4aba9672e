//! The client side as futures: every operation of lafs-core's client engine
//! ([`lafs_core::client`]) run inside the future that awaits it, over shared TCP connections.
//!
//! A [`GridClient`] opens one connection per server the first time an operation needs it and
//! keeps it for later operations; any number of operations may run at once, from any tasks on
//! any executor (connections multiplex them with their own wire-level request ids). An
//! operation is a lafs-core [`Task`]: this module only sends its transmits, reads or writes
//! local data when it asks, and awaits answers or the task's deadline. Encoding, decoding and
//! hashing happen on the thread that polls the operation's future.

use std::collections::BTreeMap;
use std::io::SeekFrom;
use std::time::Duration;

use async_io::Timer;
use lafs_core::cap::Cap;
pub use lafs_core::client::{
    ClientConfig, ClientError, DownloadReport, MutableReadReport, MutableWriteReport, ServerEntry,
    Stage, TransferProgress, TransferStats, UploadReport,
};
use lafs_core::client::{
    ClientState, DirOperation, DirTask, DownloadPlan, Reach, Step, Task, VerifiedSignatures,
};
use lafs_core::crypto::key_source::KeySource;
use lafs_core::crypto::rsa_keys::MutableKey;
use lafs_core::dirnode::ops::{DirCache, Found, LinkOptions, Linked};
use lafs_core::dirnode::{Child, ChildCap, Directory, Overwrite};
use lafs_core::mutable::layout::MutableFormat;
use lafs_core::mutable::{PublishConfig, ServerMap};
use lafs_core::placement::ServerId;
use lafs_core::server_status::GridStatusReport;
use smol::channel::{Receiver, Sender};
use smol::future::FutureExt;
use smol::io::{AsyncRead, AsyncReadExt, AsyncSeek, AsyncSeekExt, AsyncWrite, AsyncWriteExt};

use crate::clock;
use crate::connection::{Connection, Input};
use crate::sync::{lock, Arc, AtomicU64, Mutex, Ordering};

/// Bytes of directory state a client remembers (server maps and decoded tables of the
/// writeable directories it used last): a few hundred typical directories.
const DIR_CACHE_BYTES: usize = 16 << 20;

/// Anything an upload can read twice (once to hash, once to send).
pub trait AsyncReadSeek: AsyncRead + AsyncSeek + Unpin + Send {}
impl<T: AsyncRead + AsyncSeek + Unpin + Send + ?Sized> AsyncReadSeek for T {}

/// Where a download's verified plaintext goes.
pub trait AsyncSink: AsyncWrite + Unpin + Send {}
impl<T: AsyncWrite + Unpin + Send + ?Sized> AsyncSink for T {}

/// A client of a grid of storage servers reached over TCP, for async programs.
#[derive(Debug)]
pub struct GridClient {
    state: ClientState,
    /// Live connections, opened lazily and reused by every operation.
    table: Mutex<BTreeMap<ServerId, Arc<Connection>>>,
    next_op: AtomicU64,
    connections_opened: AtomicU64,
    verified: Mutex<VerifiedSignatures>,
    /// Remembered directory states, shared by every operation of this client.
    dirs: Mutex<DirCache>,
}

/// Local data an operation reads or writes while it runs.
enum LocalData<'a> {
    /// The operation sends no data of its own.
    None,
    /// An upload's plaintext.
    Source(&'a mut dyn AsyncReadSeek),
    /// Where verified plaintext goes.
    Sink(&'a mut dyn AsyncSink),
    /// Where keys for new directories come from.
    Keys(&'a mut (dyn KeySource + Send)),
}

impl GridClient {
    pub fn new(servers: Vec<ServerEntry>, config: ClientConfig) -> GridClient {
        GridClient {
            state: ClientState::new(&servers, config),
            table: Mutex::new(BTreeMap::new()),
            next_op: AtomicU64::new(0),
            connections_opened: AtomicU64::new(0),
            verified: Mutex::new(VerifiedSignatures::default()),
            dirs: Mutex::new(DirCache::new(DIR_CACHE_BYTES)),
        }
    }

    pub fn config(&self) -> &ClientConfig {
        self.state.config()
    }

    /// TCP connections opened since the client was created (a measure of connection reuse).
    pub fn connections_opened(&self) -> u64 {
        self.connections_opened.load(Ordering::Relaxed)
    }

    /// Ask every storage server for its version, space used and available and shares held, all
    /// at once (one round trip); servers silent for `timeout` are reported as timed out.
    pub async fn grid_status(&self, timeout: Duration) -> Result<GridStatusReport, ClientError> {
        let mut task = self
            .state
            .status(clock::now(), lafs_core::time::Duration::from(timeout));
        self.run(&mut task, LocalData::None).await
    }

    /// Upload `data`.
    pub async fn upload_bytes(&self, data: &[u8]) -> Result<UploadReport, ClientError> {
        self.upload_reader(data.len() as u64, &mut smol::io::Cursor::new(data))
            .await
    }

    /// Upload the first `size` bytes of `reader`: one pass to compute the convergent key, a
    /// second reading each segment when the upload asks for it.
    pub async fn upload_reader(
        &self,
        size: u64,
        reader: &mut dyn AsyncReadSeek,
    ) -> Result<UploadReport, ClientError> {
        let started = std::time::Instant::now();
        let key = if self.state.needs_key(size) {
            self.convergent_key(size, reader)
                .await
                .map_err(|e| ClientError::io("reading the data to upload", e))?
        } else {
            [0u8; 16]
        };
        let mut task = self
            .state
            .upload(clock::now(), key, size, started.elapsed());
        self.run(&mut task, LocalData::Source(reader)).await
    }

    /// Download the immutable file `cap` into `out`, verified segment by segment.
    pub async fn download(
        &self,
        cap: &Cap,
        out: &mut dyn AsyncSink,
    ) -> Result<DownloadReport, ClientError> {
        self.download_part(cap, None, out).await
    }

    /// Download bytes `[offset, offset + length)` of the immutable file `cap` into `out`,
    /// fetching and verifying only the segments that cover them; a range running past the end
    /// is cut there, one starting past it fails before any request is sent.
    pub async fn download_range(
        &self,
        cap: &Cap,
        offset: u64,
        length: u64,
        out: &mut dyn AsyncSink,
    ) -> Result<DownloadReport, ClientError> {
        self.download_part(cap, Some((offset, length)), out).await
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

    async fn download_part(
        &self,
        cap: &Cap,
        range: Option<(u64, u64)>,
        out: &mut dyn AsyncSink,
    ) -> Result<DownloadReport, ClientError> {
        match self.state.download(clock::now(), cap, range)? {
            DownloadPlan::Literal(bytes, report) => {
                let written = async {
                    out.write_all(&bytes).await?;
                    out.flush().await
                };
                written
                    .await
                    .map_err(|e| ClientError::io("writing the downloaded data", e))?;
                Ok(report)
            }
            DownloadPlan::Fetch(mut task) => self.run(&mut *task, LocalData::Sink(out)).await,
        }
    }

    /// Create a mutable file holding `contents`, signed with `key` (keys must never be reused).
    pub async fn create_mutable(
        &self,
        format: MutableFormat,
        key: MutableKey,
        contents: Vec<u8>,
        config: PublishConfig,
    ) -> Result<MutableWriteReport, ClientError> {
        let mut task =
            self.state
                .create_mutable(clock::now(), format, key, contents, config, fresh_seed());
        self.run(&mut task, LocalData::None).await
    }

    /// Replace the contents of the mutable file `cap`; with `map` from a recent read or write of
    /// it, one round trip.
    pub async fn update_mutable(
        &self,
        cap: &Cap,
        contents: Vec<u8>,
        map: Option<ServerMap>,
    ) -> Result<MutableWriteReport, ClientError> {
        let mut task = self
            .state
            .update_mutable(clock::now(), cap, contents, map, fresh_seed())?;
        self.run(&mut task, LocalData::None).await
    }

    /// Overwrite `data.len()` bytes at `offset` of the MDMF file `cap` in place.
    pub async fn modify_mutable(
        &self,
        cap: &Cap,
        offset: u64,
        data: Vec<u8>,
        map: Option<ServerMap>,
    ) -> Result<MutableWriteReport, ClientError> {
        let mut task =
            self.state
                .modify_mutable(clock::now(), cap, offset, data, map, fresh_seed())?;
        self.run(&mut task, LocalData::None).await
    }

    /// Read the newest version of the mutable file `cap` (or `range` = (offset, length) of it).
    pub async fn read_mutable(
        &self,
        cap: &Cap,
        range: Option<(u64, u64)>,
    ) -> Result<(Vec<u8>, MutableReadReport), ClientError> {
        let (mut task, fingerprint) = {
            let verified = lock(&self.verified);
            self.state
                .read_mutable(clock::now(), cap, range, &verified)?
        };
        let mut out = Vec::new();
        let report = self.run(&mut task, LocalData::Sink(&mut out)).await?;
        lock(&self.verified).remember(fingerprint, &report.map.verified);
        Ok((out, report))
    }

    /// A new, unlinked directory (its write cap), with a key from `keys`.
    pub async fn mkdir(
        &self,
        format: MutableFormat,
        keys: &mut (dyn KeySource + Send),
    ) -> Result<Cap, ClientError> {
        let mut task = self.state.mkdir(clock::now(), format, fresh_seed());
        self.run_dir(&mut task, LocalData::Keys(keys)).await
    }

    /// A new directory linked at `path` below `root`; `parents` makes missing ones on the way.
    pub async fn mkdir_at(
        &self,
        root: &Cap,
        path: &[String],
        format: MutableFormat,
        parents: bool,
        keys: &mut (dyn KeySource + Send),
    ) -> Result<Cap, ClientError> {
        let mut task = self.state.mkdir_at(
            clock::now(),
            &mut lock(&self.dirs),
            root.clone(),
            path.to_vec(),
            format,
            parents,
            fresh_seed(),
        );
        self.run_dir(&mut task, LocalData::Keys(keys)).await
    }

    /// The entries of the directory `cap`.
    pub async fn list_directory(&self, cap: &Cap) -> Result<Directory, ClientError> {
        let mut task = self.state.list(
            clock::now(),
            &mut lock(&self.dirs),
            cap.clone(),
            fresh_seed(),
        );
        self.run_dir(&mut task, LocalData::None).await
    }

    /// What `path` below `root` names.
    pub async fn lookup(&self, root: &Cap, path: &[String]) -> Result<Found, ClientError> {
        let mut task = self.state.lookup(
            clock::now(),
            &mut lock(&self.dirs),
            root.clone(),
            path.to_vec(),
            fresh_seed(),
        );
        self.run_dir(&mut task, LocalData::None).await
    }

    /// Link `child` at `path` below `root` (keys are used only if `options` makes parents).
    pub async fn link(
        &self,
        root: &Cap,
        path: &[String],
        child: ChildCap,
        options: LinkOptions,
        keys: &mut (dyn KeySource + Send),
    ) -> Result<Linked, ClientError> {
        let mut task = self.state.link(
            clock::now(),
            &mut lock(&self.dirs),
            root.clone(),
            path.to_vec(),
            child,
            options,
            fresh_seed(),
        );
        self.run_dir(&mut task, LocalData::Keys(keys)).await
    }

    /// What `path` below `root` links according to this client's remembered directories
    /// alone (no I/O): `None` when they do not reach that far. A guess for choosing how to
    /// write there; the write itself checks again.
    pub fn remembered_child(&self, root: &Cap, path: &[String]) -> Option<Option<Child>> {
        lock(&self.dirs).remembered_at(root, path)
    }

    /// Remove the link at `path` below `root`; returns what it linked.
    pub async fn unlink(&self, root: &Cap, path: &[String]) -> Result<Child, ClientError> {
        let mut task = self.state.unlink(
            clock::now(),
            &mut lock(&self.dirs),
            root.clone(),
            path.to_vec(),
            fresh_seed(),
        );
        self.run_dir(&mut task, LocalData::None).await
    }

    /// Move the link at `from` to `to` (each a root and a path): a rename within one directory
    /// or a move between two.
    pub async fn move_link(
        &self,
        from: (&Cap, &[String]),
        to: (&Cap, &[String]),
        overwrite: Overwrite,
    ) -> Result<(), ClientError> {
        let mut task = self.state.move_link(
            clock::now(),
            &mut lock(&self.dirs),
            (from.0.clone(), from.1.to_vec()),
            (to.0.clone(), to.1.to_vec()),
            overwrite,
            fresh_seed(),
        );
        self.run_dir(&mut task, LocalData::None).await
    }

    /// Run a directory task and give the shared cache what it learned, whatever the outcome.
    async fn run_dir<O: DirOperation>(
        &self,
        task: &mut DirTask<O>,
        data: LocalData<'_>,
    ) -> Result<O::Output, ClientError> {
        let outcome = self.run(task, data).await;
        task.return_to(&mut lock(&self.dirs));
        outcome
    }

    /// Pass 1 of an upload: hash the whole plaintext into its convergent key.
    async fn convergent_key(
        &self,
        size: u64,
        reader: &mut dyn AsyncReadSeek,
    ) -> std::io::Result<[u8; 16]> {
        let mut hasher = self.state.key_hasher(size);
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

    /// Run `task` to its end inside this future: the whole of this runtime's part in an
    /// operation.
    async fn run<T: Task>(
        &self,
        task: &mut T,
        mut data: LocalData<'_>,
    ) -> Result<T::Report, ClientError> {
        let mut session = Session::new(self);
        let mut buf = Vec::new();
        loop {
            match task.poll_step() {
                Step::Transmit(t) => match session.connection(t.to).await {
                    Some(conn) => {
                        match conn.send(session.op, t.id, &t.request, &session.tx).await {
                            Ok(bytes) => task.handle_sent(t.to, bytes),
                            Err(_) => task.handle_server_lost(clock::now(), t.to),
                        }
                    }
                    None => task.handle_server_lost(clock::now(), t.to),
                },
                Step::NeedSegment { offset, length } => {
                    let read = match &mut data {
                        LocalData::Source(reader) => {
                            read_range(&mut **reader, offset, length, &mut buf).await
                        }
                        _ => Err(std::io::ErrorKind::Unsupported.into()),
                    };
                    match read {
                        Ok(()) => task.provide_segment(clock::now(), &buf),
                        Err(e) => task.fail_local(
                            clock::now(),
                            ClientError::io("reading the data to upload", e),
                        ),
                    }
                }
                Step::Data { bytes, .. } => {
                    let written = match &mut data {
                        LocalData::Sink(out) => out.write_all(&bytes).await,
                        _ => Ok(()),
                    };
                    if let Err(e) = written {
                        task.fail_local(
                            clock::now(),
                            ClientError::io("writing the downloaded data", e),
                        );
                    }
                }
                Step::Progress(_) => {}
                Step::NeedKey => {
                    let key = match &mut data {
                        LocalData::Keys(keys) => keys.next_key().map_err(|e| e.to_string()),
                        _ => Err("this operation was given no key source".to_string()),
                    };
                    match key {
                        Ok(key) => task.provide_key(clock::now(), key),
                        Err(why) => task.key_unavailable(clock::now(), why),
                    }
                }
                Step::Problem { server, problem } => {
                    tracing::info!(%server, %problem, "server problem");
                }
                Step::Wait(Some(deadline)) => {
                    let wait = clock::until(clock::now(), deadline);
                    let answer = async { session.rx.recv().await.ok() };
                    let timer = async {
                        Timer::after(wait).await;
                        None
                    };
                    match answer.or(timer).await {
                        Some(input) => task.handle_input(clock::now(), input),
                        None => task.handle_timeout(clock::now()),
                    }
                }
                // Requests in flight but no timer to bound the wait: only answers already
                // queued can move it on (lafs-core's operations time their requests).
                Step::Wait(None) => match session.rx.try_recv() {
                    Ok(input) => task.handle_input(clock::now(), input),
                    Err(_) => return Err(ClientError::Stalled("operation")),
                },
                Step::Finished(outcome) => {
                    if let LocalData::Sink(out) = &mut data {
                        if outcome.is_ok() {
                            out.flush()
                                .await
                                .map_err(|e| ClientError::io("writing the downloaded data", e))?;
                        }
                    }
                    return outcome.map_err(|e| session.reach.failure(e));
                }
            }
        }
    }

    /// The live connection to `server`, opening one if there is none (or the last one broke).
    async fn connection(&self, server: ServerId) -> std::io::Result<Arc<Connection>> {
        if let Some(c) = lock(&self.table).get(&server) {
            if !c.is_closed() {
                return Ok(Arc::clone(c));
            }
        }
        let addr = self.state.addr(&server).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "server not in the grid list")
        })?;
        let config = self.state.config();
        // Connect without holding the table lock, so one slow server does not hold up others.
        let conn =
            Connection::open(server, addr, config.connect_timeout, config.write_timeout()).await?;
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

/// Fresh unpredictable bytes for a publish's salts and signature.
fn fresh_seed() -> [u8; 32] {
    use rand::RngCore;
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    seed
}

/// Read exactly `[offset, offset + length)` of `reader` into `buf`.
async fn read_range(
    reader: &mut dyn AsyncReadSeek,
    offset: u64,
    length: u64,
    buf: &mut Vec<u8>,
) -> std::io::Result<()> {
    let len = usize::try_from(length)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "segment too large"))?;
    buf.resize(len, 0);
    reader.seek(SeekFrom::Start(offset)).await?;
    reader.read_exact(buf).await
}

/// One operation's view of the network: its channel, the connections it used, whom it reached.
struct Session<'a> {
    client: &'a GridClient,
    /// This operation's number, distinct across the client's operations.
    op: u64,
    tx: Sender<Input>,
    rx: Receiver<Input>,
    used: BTreeMap<ServerId, Arc<Connection>>,
    reach: Reach,
}

impl<'a> Session<'a> {
    fn new(client: &'a GridClient) -> Session<'a> {
        let (tx, rx) = smol::channel::unbounded();
        Session {
            client,
            op: client.next_op.fetch_add(1, Ordering::Relaxed),
            tx,
            rx,
            used: BTreeMap::new(),
            reach: Reach::default(),
        }
    }

    /// This operation's connection to `server`, or `None` if it cannot be reached.
    async fn connection(&mut self, server: ServerId) -> Option<Arc<Connection>> {
        if let Some(c) = self.used.get(&server) {
            if !c.is_closed() {
                return Some(Arc::clone(c));
            }
        }
        if self.reach.is_unreachable(&server) {
            return None;
        }
        match self.client.connection(server).await {
            Ok(c) => {
                self.reach.reached(server);
                if let Some(old) = self.used.insert(server, Arc::clone(&c)) {
                    old.forget_op(self.op);
                }
                Some(c)
            }
            Err(e) => {
                let addr = self
                    .client
                    .state
                    .addr(&server)
                    .unwrap_or_else(|| std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
                tracing::info!(%server, %addr, error = %e, "cannot connect to storage server");
                self.reach.unreachable(server, addr, e.to_string());
                None
            }
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
