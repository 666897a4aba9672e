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

use super::connection::{Connection, Input};
use super::server::lock;
use super::turns::{EditTurns, Turn};
use crate::clock;
use crate::sync::{Arc, Mutex};

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
    table: Mutex<ConnectionTable<Arc<Connection>>>,
    /// Directory states and verified signatures, shared by every operation of this client.
    memory: Mutex<ClientMemory>,
    /// Edits of one directory from this client's threads take turns.
    turns: EditTurns,
}

/// Local data an operation reads or writes while it runs.
type LocalData<'a> =
    lafs_core::client::LocalData<'a, dyn ReadSeek + 'a, dyn Write + 'a, dyn KeySource + 'a>;

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
        let mut task = self.state.status(clock::now(), timeout.into());
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
        let made = self
            .state
            .read_mutable(clock::now(), cap, range, &lock(&self.memory).verified);
        let (mut task, fingerprint) = made?;
        let mut out = Vec::new();
        let report = self.run(&mut task, LocalData::Sink(&mut out), &mut |_| {})?;
        lock(&self.memory)
            .verified
            .remember(fingerprint, &report.map.verified);
        Ok((out, report))
    }

    /// A new, unlinked directory (its write cap), with a key from `keys`.
    pub fn mkdir(
        &self,
        format: MutableFormat,
        keys: &mut dyn KeySource,
    ) -> Result<Cap, ClientError> {
        self.dir(LocalData::Keys(keys), |s, at| s.mkdir(at, format))
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
        self.dir(LocalData::Keys(keys), |s, at| {
            s.mkdir_at(at, root, path, format, parents)
        })
    }

    /// The entries of the directory `cap`.
    pub fn list_directory(&self, cap: &Cap) -> Result<Directory, ClientError> {
        self.dir(LocalData::None, |s, at| s.list(at, cap.clone()))
    }

    /// What `path` below `root` names.
    pub fn lookup(&self, root: &Cap, path: &[String]) -> Result<Found, ClientError> {
        let (root, path) = (root.clone(), path.to_vec());
        self.dir(LocalData::None, |s, at| s.lookup(at, root, path))
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
        let (root, path) = (root.clone(), path.to_vec());
        self.dir(LocalData::Keys(keys), |s, at| {
            s.link(at, root, path, child, options)
        })
    }

    /// What `path` below `root` links according to this client's remembered directories
    /// alone (no I/O): `None` when they do not reach that far. A guess for choosing how to
    /// write there; the write itself checks again.
    pub fn remembered_child(&self, root: &Cap, path: &[String]) -> Option<Option<Child>> {
        lock(&self.memory).dirs.remembered_at(root, path)
    }

    /// Remove the link at `path` below `root`; returns what it linked.
    pub fn unlink(&self, root: &Cap, path: &[String]) -> Result<Child, ClientError> {
        let _turn = self.turn(root, path);
        let (root, path) = (root.clone(), path.to_vec());
        self.dir(LocalData::None, |s, at| s.unlink(at, root, path))
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
        let from = (from.0.clone(), from.1.to_vec());
        let to = (to.0.clone(), to.1.to_vec());
        self.dir(LocalData::None, |s, at| {
            s.move_link(at, from, to, overwrite)
        })
    }

    /// The turn at editing the directory holding `path`'s last name (see [`super::turns`]).
    fn turn(&self, root: &Cap, path: &[String]) -> Turn<'_> {
        let parent = path.split_last().map_or(&[][..], |(_, dirs)| dirs);
        self.turns.take(root, parent)
    }

    /// Make a directory task from a fresh start and run it; the shared cache gets what it
    /// learned, whatever the outcome.
    fn dir<O: DirOperation>(
        &self,
        data: LocalData<'_>,
        make: impl FnOnce(&ClientState, DirStart<'_>) -> DirTask<O>,
    ) -> Result<O::Output, ClientError> {
        let (now, seed) = (clock::now(), fresh_seed());
        let mut task = make(
            &self.state,
            DirStart {
                now,
                cache: &mut lock(&self.memory).dirs,
                seed,
            },
        );
        let outcome = self.run(&mut task, data, &mut |_| {});
        task.return_to(&mut lock(&self.memory).dirs);
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
                Step::Transmit(t) => {
                    let sent = session.send(&t);
                    task.transmitted(clock::now(), t.to, sent);
                }
                Step::NeedSegment { offset, length } => {
                    let read = read_range(data.source(), offset, length, &mut buf);
                    task.segment_read(clock::now(), read.map(|()| &buf[..]));
                }
                Step::Data { bytes, .. } => {
                    let written = data.sink().map_or(Ok(()), |out| out.write_all(&bytes));
                    task.data_written(clock::now(), written);
                }
                Step::Progress(p) => progress(p),
                Step::NeedKey => task.key_from(clock::now(), data.keys()),
                Step::Problem { server, problem } => {
                    tracing::info!(%server, %problem, "server problem");
                }
                Step::Wait(deadline) => {
                    let input = session.wait(deadline);
                    task.waited(clock::now(), deadline, input)?;
                }
                Step::Finished(outcome) => {
                    let trips = u64::from(task.stats().round_trips);
                    METERED.with(|m| m.set(m.get().map(|n| n + trips)));
                    return outcome.map_err(|e| session.links.failure(e));
                }
            }
        }
    }

    /// The live connection to `server`, opening one if there is none (or the last one broke).
    fn connection(&self, server: ServerId) -> std::io::Result<Arc<Connection>> {
        if let Some(c) = lock(&self.table).live(&server) {
            return Ok(c);
        }
        let addr = self.state.addr(&server)?;
        // Connect without holding the table lock, so one slow server does not hold up others.
        let fresh = Connection::open(server, addr, self.state.config()).inspect_err(|e| {
            tracing::info!(%server, %addr, error = %e, "cannot connect to storage server");
        })?;
        let (conn, to_close) = lock(&self.table).install(server, fresh);
        if let Some(c) = to_close {
            c.close_and_join();
        }
        Ok(conn)
    }
}

impl Drop for GridClient {
    fn drop(&mut self) {
        let table = lock(&self.table).take_all();
        for conn in table {
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

/// Read exactly `[offset, offset + length)` of an upload's plaintext into `buf`.
fn read_range(
    source: Option<&mut (dyn ReadSeek + '_)>,
    offset: u64,
    length: u64,
    buf: &mut Vec<u8>,
) -> std::io::Result<()> {
    let reader = source.ok_or(std::io::ErrorKind::Unsupported)?;
    buf.resize(
        usize::try_from(length).map_err(|_| std::io::ErrorKind::InvalidInput)?,
        0,
    );
    reader.seek(SeekFrom::Start(offset))?;
    reader.read_exact(buf)
}

/// One operation's view of the network: its channel and its connections.
struct Session<'a> {
    client: &'a GridClient,
    links: OpLinks<Arc<Connection>>,
    tx: Sender<Input>,
    rx: Receiver<Input>,
}

impl<'a> Session<'a> {
    fn new(client: &'a GridClient) -> Session<'a> {
        let (tx, rx) = mpsc::channel();
        let op = lock(&client.table).next_op();
        Session {
            client,
            links: OpLinks::new(op),
            tx,
            rx,
        }
    }

    /// Send `t` over this operation's connection to its server: the frame's size, or `None`
    /// if it could not go.
    fn send(&mut self, t: &Transmit) -> Option<usize> {
        let conn = match self.links.pick(t.to) {
            Pick::Use(c) => c,
            Pick::Unreachable => return None,
            Pick::Open => {
                let got = self.client.connection(t.to).map_err(|e| e.to_string());
                self.links
                    .opened(t.to, self.client.state.addr(&t.to).ok(), got)?
            }
        };
        conn.send(self.links.op(), t, &self.tx)
    }

    /// The next answer or loss, waiting until `deadline` (without one, only what is queued).
    fn wait(&self, deadline: Option<Instant>) -> Option<Input> {
        match deadline {
            Some(d) => self.rx.recv_timeout(clock::now().until(d)).ok(),
            None => self.rx.try_recv().ok(),
        }
    }
}
