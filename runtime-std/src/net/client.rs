//! The client side on threads: every operation of lafs-core's client engine
//! ([`lafs_core::client`]) run on the caller's thread over shared TCP connections.
//!
//! A [`GridClient`] opens one connection per server the first time an operation needs it and
//! keeps it for later operations (see [`super::connection`] for what is shared between
//! threads). An operation is a lafs-core [`Task`]: this module only sends its transmits, reads
//! or writes local data when it asks, and blocks on the operation's own channel for answers
//! until the deadline the task gives. Operations may run from many threads at once over one
//! `GridClient`; each connection maps its wire-level request ids back to (operation, request).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;

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

use super::connection::{install, Connection, Input};
use super::server::lock;
use super::turns::{EditTurns, Turn};
use crate::clock;
use crate::sync::{Arc, AtomicU64, Mutex, Ordering};

/// Bytes of directory state a client remembers (server maps and decoded tables of the
/// writeable directories it used last): a few hundred typical directories.
const DIR_CACHE_BYTES: usize = 16 << 20;

thread_local! {
    /// Round trips of the operations finished on this thread within [`GridClient::metered`]
    /// (`None` outside it).
    static METERED: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Anything an upload can read twice (once to hash, once to send).
pub trait ReadSeek: Read + Seek {}
impl<T: Read + Seek + ?Sized> ReadSeek for T {}

/// A client of a grid of storage servers reached over TCP.
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
    /// Edits of one directory from this client's threads take turns.
    turns: EditTurns,
}

/// Local data an operation reads or writes while it runs.
enum LocalData<'a> {
    /// The operation sends no data of its own.
    None,
    /// An upload's plaintext.
    Source(&'a mut dyn ReadSeek),
    /// Where verified plaintext goes.
    Sink(&'a mut dyn Write),
    /// Where keys for new directories come from.
    Keys(&'a mut dyn KeySource),
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
            turns: EditTurns::default(),
        }
    }

    pub fn config(&self) -> &ClientConfig {
        self.state.config()
    }

    /// TCP connections opened since the client was created (a measure of connection reuse).
    pub fn connections_opened(&self) -> u64 {
        self.connections_opened.load(Ordering::Relaxed)
    }

    /// Run `f`, also returning the round trips of the operations it ran on this thread,
    /// summed (they ran one after another). Operations of other threads are not counted, so
    /// many threads can share one client and each measure its own work.
    pub fn metered<R>(&self, f: impl FnOnce(&GridClient) -> R) -> (R, u64) {
        let outer = METERED.with(|m| m.replace(Some(0)));
        let result = f(self);
        let inner = METERED.with(|m| m.replace(outer)).unwrap_or(0);
        if let Some(total) = outer {
            METERED.with(|m| m.set(Some(total + inner)));
        }
        (result, inner)
    }

    /// Ask every storage server for its version, space used and available and shares held, all
    /// at once (one round trip); a server that has not answered within `timeout` is reported
    /// as timed out. Connections are the ones operations use (opened if needed).
    pub fn grid_status(&self, timeout: Duration) -> Result<GridStatusReport, ClientError> {
        let mut task = self.state.status(clock::now(), clock::to_core(timeout));
        self.run(&mut task, LocalData::None, &mut |_| {})
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
        let io = |source| ClientError::io(format!("opening {}", path.display()), source);
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
        let key = if self.state.needs_key(size) {
            self.convergent_key(size, reader, progress)?
        } else {
            [0u8; 16]
        };
        let mut task = self
            .state
            .upload(clock::now(), key, size, started.elapsed());
        self.run(&mut task, LocalData::Source(reader), progress)
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

    fn download_part(
        &self,
        cap: &Cap,
        range: Option<(u64, u64)>,
        out: &mut dyn Write,
        progress: &mut dyn FnMut(TransferProgress),
    ) -> Result<DownloadReport, ClientError> {
        match self.state.download(clock::now(), cap, range)? {
            DownloadPlan::Literal(bytes, report) => {
                out.write_all(&bytes)
                    .map_err(|e| ClientError::io("writing the downloaded file", e))?;
                progress(TransferProgress {
                    stage: Stage::Downloading,
                    done: report.size,
                    total: report.size,
                });
                Ok(report)
            }
            DownloadPlan::Fetch(mut task) => self.run(&mut *task, LocalData::Sink(out), progress),
        }
    }

    /// Create a mutable file holding `contents`, signed with `key` (from a key pool; keys must
    /// never be reused).
    pub fn create_mutable(
        &self,
        format: MutableFormat,
        key: MutableKey,
        contents: Vec<u8>,
        config: PublishConfig,
    ) -> Result<MutableWriteReport, ClientError> {
        let mut task =
            self.state
                .create_mutable(clock::now(), format, key, contents, config, fresh_seed());
        self.run(&mut task, LocalData::None, &mut |_| {})
    }

    /// Replace the contents of the mutable file `cap` (a write cap, or a directory cap over one).
    /// With `map` from a recent read or write of this file it costs one round trip.
    pub fn update_mutable(
        &self,
        cap: &Cap,
        contents: Vec<u8>,
        map: Option<ServerMap>,
    ) -> Result<MutableWriteReport, ClientError> {
        let mut task = self
            .state
            .update_mutable(clock::now(), cap, contents, map, fresh_seed())?;
        self.run(&mut task, LocalData::None, &mut |_| {})
    }

    /// Overwrite `data.len()` bytes at `offset` of the MDMF file `cap` in place: only the
    /// segments they touch are rewritten (the file's length cannot change).
    pub fn modify_mutable(
        &self,
        cap: &Cap,
        offset: u64,
        data: Vec<u8>,
        map: Option<ServerMap>,
    ) -> Result<MutableWriteReport, ClientError> {
        let mut task =
            self.state
                .modify_mutable(clock::now(), cap, offset, data, map, fresh_seed())?;
        self.run(&mut task, LocalData::None, &mut |_| {})
    }

    /// Read the newest version of the mutable file `cap` (or `range` = (offset, length) of it).
    pub fn read_mutable(
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
        let report = self.run(&mut task, LocalData::Sink(&mut out), &mut |_| {})?;
        lock(&self.verified).remember(fingerprint, &report.map.verified);
        Ok((out, report))
    }

    /// A new, unlinked directory (its write cap), with a key from `keys`.
    pub fn mkdir(
        &self,
        format: MutableFormat,
        keys: &mut dyn KeySource,
    ) -> Result<Cap, ClientError> {
        let mut task = self.state.mkdir(clock::now(), format, fresh_seed());
        self.run_dir(&mut task, LocalData::Keys(keys))
    }

    /// A new directory linked at `path` below `root`; `parents` makes missing ones on the way.
    pub fn mkdir_at(
        &self,
        root: &Cap,
        path: &[String],
        format: MutableFormat,
        parents: bool,
        keys: &mut dyn KeySource,
    ) -> Result<Cap, ClientError> {
        let _turn = self.turn(root, path);
        let (root, path) = (root.clone(), path.to_vec());
        let mut task = self.state.mkdir_at(
            clock::now(),
            &mut lock(&self.dirs),
            root,
            path,
            format,
            parents,
            fresh_seed(),
        );
        self.run_dir(&mut task, LocalData::Keys(keys))
    }

    /// The entries of the directory `cap`.
    pub fn list_directory(&self, cap: &Cap) -> Result<Directory, ClientError> {
        let mut task = self.state.list(
            clock::now(),
            &mut lock(&self.dirs),
            cap.clone(),
            fresh_seed(),
        );
        self.run_dir(&mut task, LocalData::None)
    }

    /// What `path` below `root` names.
    pub fn lookup(&self, root: &Cap, path: &[String]) -> Result<Found, ClientError> {
        let mut task = self.state.lookup(
            clock::now(),
            &mut lock(&self.dirs),
            root.clone(),
            path.to_vec(),
            fresh_seed(),
        );
        self.run_dir(&mut task, LocalData::None)
    }

    /// Link `child` at `path` below `root` (keys are used only if `options` makes parents).
    pub fn link(
        &self,
        root: &Cap,
        path: &[String],
        child: ChildCap,
        options: LinkOptions,
        keys: &mut dyn KeySource,
    ) -> Result<Linked, ClientError> {
        let _turn = self.turn(root, path);
        let mut task = self.state.link(
            clock::now(),
            &mut lock(&self.dirs),
            root.clone(),
            path.to_vec(),
            child,
            options,
            fresh_seed(),
        );
        self.run_dir(&mut task, LocalData::Keys(keys))
    }

    /// What `path` below `root` links according to this client's remembered directories
    /// alone (no I/O): `None` when they do not reach that far. A guess for choosing how to
    /// write there; the write itself checks again.
    pub fn remembered_child(&self, root: &Cap, path: &[String]) -> Option<Option<Child>> {
        lock(&self.dirs).remembered_at(root, path)
    }

    /// Remove the link at `path` below `root`; returns what it linked.
    pub fn unlink(&self, root: &Cap, path: &[String]) -> Result<Child, ClientError> {
        let _turn = self.turn(root, path);
        let mut task = self.state.unlink(
            clock::now(),
            &mut lock(&self.dirs),
            root.clone(),
            path.to_vec(),
            fresh_seed(),
        );
        self.run_dir(&mut task, LocalData::None)
    }

    /// Move the link at `from` to `to` (each a root and a path): a rename within one directory
    /// or a move between two.
    pub fn move_link(
        &self,
        from: (&Cap, &[String]),
        to: (&Cap, &[String]),
        overwrite: Overwrite,
    ) -> Result<(), ClientError> {
        let _turn = self.turn(from.0, from.1);
        let mut task = self.state.move_link(
            clock::now(),
            &mut lock(&self.dirs),
            (from.0.clone(), from.1.to_vec()),
            (to.0.clone(), to.1.to_vec()),
            overwrite,
            fresh_seed(),
        );
        self.run_dir(&mut task, LocalData::None)
    }

    /// The turn at editing the directory holding `path`'s last name (see [`super::turns`]).
    fn turn(&self, root: &Cap, path: &[String]) -> Turn<'_> {
        let parent = path.split_last().map_or(&[][..], |(_, dirs)| dirs);
        self.turns.take(root, parent)
    }

    /// Run a directory task and give the shared cache what it learned, whatever the outcome.
    fn run_dir<O: DirOperation>(
        &self,
        task: &mut DirTask<O>,
        data: LocalData<'_>,
    ) -> Result<O::Output, ClientError> {
        let outcome = self.run(task, data, &mut |_| {});
        task.return_to(&mut lock(&self.dirs));
        outcome
    }

    /// Pass 1 of an upload: hash the whole plaintext into its convergent key.
    fn convergent_key(
        &self,
        size: u64,
        reader: &mut dyn ReadSeek,
        progress: &mut dyn FnMut(TransferProgress),
    ) -> Result<[u8; 16], ClientError> {
        let mut hasher = self.state.key_hasher(size);
        let io = |source| ClientError::io("reading the file to upload", source);
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

    /// Run `task` to its end on this thread: the whole of this runtime's part in an operation.
    fn run<T: Task>(
        &self,
        task: &mut T,
        mut data: LocalData<'_>,
        progress: &mut dyn FnMut(TransferProgress),
    ) -> Result<T::Report, ClientError> {
        let mut session = Session::new(self);
        let mut buf = Vec::new();
        loop {
            match task.poll_step() {
                Step::Transmit(t) => match session.connection(t.to) {
                    Some(conn) => match conn.send(session.op, t.id, &t.request, &session.tx) {
                        Ok(bytes) => task.handle_sent(t.to, bytes),
                        Err(_) => task.handle_server_lost(clock::now(), t.to),
                    },
                    None => task.handle_server_lost(clock::now(), t.to),
                },
                Step::NeedSegment { offset, length } => {
                    let read = match &mut data {
                        LocalData::Source(reader) => {
                            read_range(&mut **reader, offset, length, &mut buf)
                        }
                        _ => Err(std::io::ErrorKind::Unsupported.into()),
                    };
                    match read {
                        Ok(()) => task.provide_segment(clock::now(), &buf),
                        Err(e) => task.fail_local(
                            clock::now(),
                            ClientError::io("reading the file to upload", e),
                        ),
                    }
                }
                Step::Data { bytes, .. } => {
                    let written = match &mut data {
                        LocalData::Sink(out) => out.write_all(&bytes),
                        _ => Ok(()),
                    };
                    if let Err(e) = written {
                        task.fail_local(
                            clock::now(),
                            ClientError::io("writing the downloaded file", e),
                        );
                    }
                }
                Step::Progress(p) => progress(p),
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
                Step::Wait(deadline) => {
                    let input = match deadline {
                        Some(d) => session.rx.recv_timeout(clock::until(clock::now(), d)).ok(),
                        // Requests in flight but no timer to bound the wait: only answers
                        // already queued can move it on (lafs-core's operations time their
                        // requests, so this does not happen).
                        None => session.rx.try_recv().ok(),
                    };
                    match (input, deadline) {
                        (Some(input), _) => task.handle_input(clock::now(), input),
                        (None, Some(_)) => task.handle_timeout(clock::now()),
                        (None, None) => return Err(ClientError::Stalled("operation")),
                    }
                }
                Step::Finished(outcome) => {
                    let trips = u64::from(task.stats().round_trips);
                    METERED.with(|m| m.set(m.get().map(|n| n + trips)));
                    return outcome.map_err(|e| session.reach.failure(e));
                }
            }
        }
    }

    /// The live connection to `server`, opening one if there is none (or the last one broke).
    fn connection(&self, server: ServerId) -> std::io::Result<Arc<Connection>> {
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
        let conn = Connection::open(server, addr, config.connect_timeout, config.write_timeout())?;
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

/// Fresh unpredictable bytes for a publish's salts and signature.
fn fresh_seed() -> [u8; 32] {
    use rand::RngCore;
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    seed
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
        let (tx, rx) = mpsc::channel();
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
    fn connection(&mut self, server: ServerId) -> Option<Arc<Connection>> {
        if let Some(c) = self.used.get(&server) {
            if !c.is_closed() {
                return Some(Arc::clone(c));
            }
        }
        if self.reach.is_unreachable(&server) {
            return None;
        }
        match self.client.connection(server) {
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
