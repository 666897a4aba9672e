//! The client side as futures: every operation of lafs-core's client engine
//! ([`lafs_core::client`]) run inside the future that awaits it, over shared TCP connections.
//!
//! A [`GridClient`] opens one connection per server the first time an operation needs it and
//! keeps it for later operations; any number of operations may run at once, from any tasks on
//! any executor (connections multiplex them with their own wire-level request ids). An
//! operation is a lafs-core [`Task`]: this module only sends its transmits, reads or writes
//! local data when it asks, and awaits answers or the task's deadline. Encoding, decoding and
//! hashing happen on the thread that polls the operation's future.

use std::io::SeekFrom;
use std::time::Duration;

use async_io::Timer;
use lafs_core::cap::Cap;
pub use lafs_core::client::{
    ClientConfig, ClientError, DownloadReport, MutableReadReport, MutableWriteReport, ServerEntry,
    Stage, TransferProgress, TransferStats, UploadReport,
};
use lafs_core::client::{
    ClientMemory, ClientState, ConnectionTable, DirOperation, DirStart, DirTask, DownloadPlan,
    OpLinks, Pick, Step, Task,
};
use lafs_core::crypto::key_source::KeySource;
use lafs_core::crypto::rsa_keys::MutableKey;
use lafs_core::dirnode::ops::{Found, LinkOptions, Linked};
use lafs_core::dirnode::{Child, ChildCap, Directory, Overwrite};
use lafs_core::mutable::layout::MutableFormat;
use lafs_core::mutable::{PublishConfig, ServerMap};
use lafs_core::op::Transmit;
use lafs_core::placement::ServerId;
use lafs_core::server_status::GridStatusReport;
use lafs_core::time::Instant;
use smol::channel::{Receiver, Sender};
use smol::future::FutureExt;
use smol::io::{AsyncRead, AsyncReadExt, AsyncSeek, AsyncSeekExt, AsyncWrite, AsyncWriteExt};

use crate::clock;
use crate::connection::{Connection, Input};
use crate::sync::{lock, Arc, Mutex};
use crate::turns::{EditTurns, Turn};

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
    table: Mutex<ConnectionTable<Arc<Connection>>>,
    /// Directory states and verified signatures, shared by every operation of this client.
    memory: Mutex<ClientMemory>,
    /// Edits of one directory from this client's tasks take turns.
    turns: EditTurns,
}

/// Local data an operation reads or writes while it runs.
type LocalData<'a> = lafs_core::client::LocalData<
    'a,
    dyn AsyncReadSeek + 'a,
    dyn AsyncSink + 'a,
    dyn KeySource + Send + 'a,
>;

impl GridClient {
    pub fn new(servers: Vec<ServerEntry>, config: ClientConfig) -> GridClient {
        GridClient {
            state: ClientState::new(&servers, config),
            table: Mutex::new(ConnectionTable::new()),
            memory: Mutex::new(ClientMemory::default()),
            turns: EditTurns::default(),
        }
    }

    pub fn config(&self) -> &ClientConfig {
        self.state.config()
    }

    /// TCP connections opened since the client was created (a measure of connection reuse).
    pub fn connections_opened(&self) -> u64 {
        lock(&self.table).opened()
    }

    /// Ask every storage server for its version, space used and available and shares held, all
    /// at once (one round trip); servers silent for `timeout` are reported as timed out.
    pub async fn grid_status(&self, timeout: Duration) -> Result<GridStatusReport, ClientError> {
        let mut task = self.state.status(clock::now(), timeout.into());
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
        let made = self
            .state
            .read_mutable(clock::now(), cap, range, &lock(&self.memory).verified);
        let (mut task, fingerprint) = made?;
        let mut out = Vec::new();
        let report = self.run(&mut task, LocalData::Sink(&mut out)).await?;
        lock(&self.memory)
            .verified
            .remember(fingerprint, &report.map.verified);
        Ok((out, report))
    }

    /// A new, unlinked directory (its write cap), with a key from `keys`.
    pub async fn mkdir(
        &self,
        format: MutableFormat,
        keys: &mut (dyn KeySource + Send),
    ) -> Result<Cap, ClientError> {
        let task = self.dir_task(|s, at| s.mkdir(at, format));
        self.run_dir(task, LocalData::Keys(keys)).await
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
        let _turn = self.turn(root, path).await;
        let (root, path) = (root.clone(), path.to_vec());
        let task = self.dir_task(|s, at| s.mkdir_at(at, root, path, format, parents));
        self.run_dir(task, LocalData::Keys(keys)).await
    }

    /// The entries of the directory `cap`.
    pub async fn list_directory(&self, cap: &Cap) -> Result<Directory, ClientError> {
        let task = self.dir_task(|s, at| s.list(at, cap.clone()));
        self.run_dir(task, LocalData::None).await
    }

    /// What `path` below `root` names.
    pub async fn lookup(&self, root: &Cap, path: &[String]) -> Result<Found, ClientError> {
        let (root, path) = (root.clone(), path.to_vec());
        let task = self.dir_task(|s, at| s.lookup(at, root, path));
        self.run_dir(task, LocalData::None).await
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
        let _turn = self.turn(root, path).await;
        let (root, path) = (root.clone(), path.to_vec());
        let task = self.dir_task(|s, at| s.link(at, root, path, child, options));
        self.run_dir(task, LocalData::Keys(keys)).await
    }

    /// What `path` below `root` links according to this client's remembered directories
    /// alone (no I/O): `None` when they do not reach that far. A guess for choosing how to
    /// write there; the write itself checks again.
    pub fn remembered_child(&self, root: &Cap, path: &[String]) -> Option<Option<Child>> {
        lock(&self.memory).dirs.remembered_at(root, path)
    }

    /// Remove the link at `path` below `root`; returns what it linked.
    pub async fn unlink(&self, root: &Cap, path: &[String]) -> Result<Child, ClientError> {
        let _turn = self.turn(root, path).await;
        let (root, path) = (root.clone(), path.to_vec());
        let task = self.dir_task(|s, at| s.unlink(at, root, path));
        self.run_dir(task, LocalData::None).await
    }

    /// Move the link at `from` to `to` (each a root and a path): a rename within one directory
    /// or a move between two.
    pub async fn move_link(
        &self,
        from: (&Cap, &[String]),
        to: (&Cap, &[String]),
        overwrite: Overwrite,
    ) -> Result<(), ClientError> {
        let _turn = self.turn(from.0, from.1).await;
        let from = (from.0.clone(), from.1.to_vec());
        let to = (to.0.clone(), to.1.to_vec());
        let task = self.dir_task(|s, at| s.move_link(at, from, to, overwrite));
        self.run_dir(task, LocalData::None).await
    }

    /// The turn at editing the directory holding `path`'s last name (see [`crate::turns`]).
    async fn turn(&self, root: &Cap, path: &[String]) -> Turn<'_> {
        let parent = path.split_last().map_or(&[][..], |(_, dirs)| dirs);
        self.turns.take(root, parent).await
    }

    /// A directory task made from a fresh start (the cache's lock is not held across awaits).
    fn dir_task<O: DirOperation>(
        &self,
        make: impl FnOnce(&ClientState, DirStart<'_>) -> DirTask<O>,
    ) -> DirTask<O> {
        let (now, seed) = (clock::now(), fresh_seed());
        make(
            &self.state,
            DirStart {
                now,
                cache: &mut lock(&self.memory).dirs,
                seed,
            },
        )
    }

    /// Run a directory task and give the shared cache what it learned, whatever the outcome.
    async fn run_dir<O: DirOperation>(
        &self,
        mut task: DirTask<O>,
        data: LocalData<'_>,
    ) -> Result<O::Output, ClientError> {
        let outcome = self.run(&mut task, data).await;
        task.return_to(&mut lock(&self.memory).dirs);
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
                Step::Transmit(t) => {
                    let sent = session.send(&t).await;
                    task.transmitted(clock::now(), t.to, sent);
                }
                Step::NeedSegment { offset, length } => {
                    let read = read_range(data.source(), offset, length, &mut buf).await;
                    task.segment_read(clock::now(), read.map(|()| &buf[..]));
                }
                Step::Data { bytes, .. } => {
                    let written = match data.sink() {
                        Some(out) => out.write_all(&bytes).await,
                        None => Ok(()),
                    };
                    task.data_written(clock::now(), written);
                }
                Step::Progress(_) => {}
                Step::NeedKey => {
                    let keys = data.keys().map(|k| k as &mut dyn KeySource);
                    task.key_from(clock::now(), keys);
                }
                Step::Problem { server, problem } => {
                    tracing::info!(%server, %problem, "server problem");
                }
                Step::Wait(deadline) => {
                    let input = session.wait(deadline).await;
                    task.waited(clock::now(), deadline, input)?;
                }
                Step::Finished(outcome) => {
                    if let (Ok(_), Some(out)) = (&outcome, data.sink()) {
                        let flushed = out.flush().await;
                        flushed.map_err(|e| ClientError::io("writing the downloaded data", e))?;
                    }
                    return outcome.map_err(|e| session.links.failure(e));
                }
            }
        }
    }

    /// The live connection to `server`, opening one if there is none (or the last one broke).
    async fn connection(&self, server: ServerId) -> std::io::Result<Arc<Connection>> {
        if let Some(c) = lock(&self.table).live(&server) {
            return Ok(c);
        }
        let addr = self.state.addr(&server)?;
        // Connect without holding the table lock, so one slow server does not hold up others.
        let opened = Connection::open(server, addr, self.state.config()).await;
        let fresh = opened.inspect_err(|e| {
            tracing::info!(%server, %addr, error = %e, "cannot connect to storage server");
        })?;
        // A loser of a race to connect is dropped, which closes it.
        Ok(lock(&self.table).install(server, fresh).0)
    }
}

impl Drop for GridClient {
    fn drop(&mut self) {
        for conn in lock(&self.table).take_all() {
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

/// Read exactly `[offset, offset + length)` of an upload's data into `buf`.
async fn read_range(
    source: Option<&mut (dyn AsyncReadSeek + '_)>,
    offset: u64,
    length: u64,
    buf: &mut Vec<u8>,
) -> std::io::Result<()> {
    let reader = source.ok_or(std::io::ErrorKind::Unsupported)?;
    buf.resize(
        usize::try_from(length).map_err(|_| std::io::ErrorKind::InvalidInput)?,
        0,
    );
    reader.seek(SeekFrom::Start(offset)).await?;
    reader.read_exact(buf).await
}

/// One operation's view of the network: its channel, its connections and its timer.
struct Session<'a> {
    client: &'a GridClient,
    links: OpLinks<Arc<Connection>>,
    tx: Sender<Input>,
    rx: Receiver<Input>,
    /// Set for `armed`, the earliest deadline waited for that has not passed. Arming wakes the
    /// thread polling the reactor, so a later deadline keeps the timer (firing early only
    /// re-arms it).
    timer: Timer,
    armed: Option<Instant>,
}

impl<'a> Session<'a> {
    fn new(client: &'a GridClient) -> Session<'a> {
        let (tx, rx) = smol::channel::unbounded();
        let op = lock(&client.table).next_op();
        Session {
            client,
            links: OpLinks::new(op),
            tx,
            rx,
            timer: Timer::never(),
            armed: None,
        }
    }

    /// Send `t` over this operation's connection to its server: the frame's size, or `None`
    /// if it could not go.
    async fn send(&mut self, t: &Transmit) -> Option<usize> {
        let conn = match self.links.pick(t.to) {
            Pick::Use(c) => c,
            Pick::Unreachable => return None,
            Pick::Open => {
                let got = self.client.connection(t.to).await;
                let got = got.map_err(|e| e.to_string());
                self.links
                    .opened(t.to, self.client.state.addr(&t.to).ok(), got)?
            }
        };
        conn.send(self.links.op(), t, &self.tx).await
    }

    /// The next answer or loss, waiting until `deadline` (without one, only what is queued).
    async fn wait(&mut self, deadline: Option<Instant>) -> Option<Input> {
        if let Ok(input) = self.rx.try_recv() {
            return Some(input);
        }
        let deadline = deadline?;
        loop {
            let now = clock::now();
            if now >= deadline {
                return None;
            }
            if self.armed.is_none_or(|at| at > deadline) {
                self.timer.set_after(now.until(deadline));
                self.armed = Some(deadline);
            }
            let (rx, timer) = (&self.rx, &mut self.timer);
            let answer = async { rx.recv().await.ok() };
            let fired = async {
                timer.await;
                None
            };
            match answer.or(fired).await {
                Some(input) => return Some(input),
                None => self.armed = None,
            }
        }
    }
}
