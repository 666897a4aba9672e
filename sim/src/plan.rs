//! What one run does: the grid, the network, the operations and the faults.
//!
//! A [`Plan`] is plain data, so a scripted scenario is written by hand and a random one is
//! generated from a seed ([`crate::generate`]); both run through the same engine.

use lafs_core::cap::Cap;
use lafs_core::immutable::EncodingParams;
use lafs_core::mutable::layout::MutableFormat;
use lafs_core::time::{Duration, Instant};

use crate::net::NetConfig;

/// Client and server settings shared by every operation of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimParams {
    pub encoding: EncodingParams,
    /// Unacknowledged bytes per server an upload may have in flight.
    pub window_bytes: u64,
    /// A request unanswered this long counts as a lost server (in the operation).
    pub request_timeout: Duration,
    /// Every operation must end (Done or Failed) within this much virtual time of its start;
    /// one that does not is a hang.
    pub op_deadline: Duration,
    /// Bytes each server's store can hold.
    pub server_capacity: u64,
    /// Download each acknowledged file again at the end, fault-free, when enough good shares
    /// survive, and compare its bytes.
    pub final_check: bool,
    /// The erasure code uploads use (downloads read it from each file's extension block).
    pub codec: lafs_core::codec::CodecKind,
}

impl Default for SimParams {
    fn default() -> Self {
        SimParams {
            encoding: EncodingParams {
                k: 3,
                happy: 7,
                n: 10,
                max_segment_size: 32 * 1024,
            },
            window_bytes: 128 * 1024,
            request_timeout: Duration::from_secs(5),
            op_deadline: Duration::from_secs(300),
            server_capacity: 1 << 40,
            final_check: true,
            codec: lafs_core::codec::CodecKind::Zfec,
        }
    }
}

/// When an operation starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    At(Instant),
    /// As soon as the previous operation of the plan has ended (for sequential runs).
    AfterPrevious,
}

/// What an operation does. Files are numbered by their index in [`Plan::files`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpSpec {
    /// Download `length` bytes at `offset` of file `file` (cut at its end; a range starting
    /// past the end is refused before any request). Skipped until the file was acknowledged.
    DownloadRange {
        file: usize,
        offset: u64,
        length: u64,
    },
    Upload {
        file: usize,
    },
    Download {
        file: usize,
    },
    /// Download a file picked (by the workload RNG) among those acknowledged so far; skipped
    /// if there is none.
    DownloadAny,
    /// Create mutable file number `file` (mutable files are numbered apart from immutable ones)
    /// holding `size` fresh bytes, signed with the run's next fixture key. Skipped if the file
    /// was created already or the fixture keys are used up.
    MutableCreate {
        file: usize,
        format: MutableFormat,
        size: u64,
    },
    /// Publish a new version of `size` fresh bytes. `warm`: reuse the servermap of this
    /// client's last operation on the file (possibly stale: another writer may have published
    /// since), else map the servers first. Skipped until a create of the file was acknowledged.
    MutableUpdate {
        file: usize,
        size: u64,
        warm: bool,
    },
    /// Read the mutable file: whole, or `range` = (offset, length). Skipped until a create of
    /// the file was acknowledged.
    MutableRead {
        file: usize,
        range: Option<(u64, u64)>,
    },
    /// Overwrite `size` fresh bytes at `offset` of MDMF mutable file `file` in place (the
    /// file's length stays; a range past its end is refused). Skipped until a create of the
    /// file was acknowledged.
    MutableModify {
        file: usize,
        offset: u64,
        size: u64,
    },
    /// Ask every server for its status.
    GridStatus,
    /// Make directory number `dir` (numbered apart from files) with the run's next fixture
    /// key. Skipped if it was made already or the keys are used up.
    DirCreate {
        dir: usize,
    },
    /// Link immutable file `file` as name `name` in directory `dir`, replacing what the name
    /// linked. Skipped until both the directory and the file were acknowledged.
    DirLink {
        dir: usize,
        name: u32,
        file: usize,
    },
    /// Remove the link `name` from directory `dir` (fails if there is none). Skipped until the
    /// directory was acknowledged.
    DirUnlink {
        dir: usize,
        name: u32,
    },
    /// List directory `dir`. Skipped until it was acknowledged.
    DirList {
        dir: usize,
    },
    /// Look up the link `name` in directory `dir`. Skipped until it was acknowledged.
    DirLookup {
        dir: usize,
        name: u32,
    },
    /// Rename the link `from` of directory `dir` to `to`, replacing what `to` linked (fails
    /// if `from` links nothing). Skipped until the directory was acknowledged.
    DirMove {
        dir: usize,
        from: u32,
        to: u32,
    },
    /// Directory call number `call` of [`Plan::dir_calls`]: by path and cap, as a user makes
    /// it. The model does not follow these; read the outcome with `Sim::dir_outcome`.
    DirCall {
        call: usize,
    },
}

impl OpSpec {
    /// The operation's kind, as sweep reports count them.
    pub fn name(&self) -> &'static str {
        match self {
            OpSpec::Upload { .. } => "upload",
            OpSpec::Download { .. } | OpSpec::DownloadAny => "download",
            OpSpec::DownloadRange { .. } => "download-range",
            OpSpec::MutableCreate { .. } => "mutable-create",
            OpSpec::MutableUpdate { .. } => "mutable-update",
            OpSpec::MutableModify { .. } => "mutable-modify",
            OpSpec::MutableRead { range: None, .. } => "mutable-read",
            OpSpec::MutableRead { range: Some(_), .. } => "mutable-read-range",
            OpSpec::GridStatus => "grid-status",
            OpSpec::DirCreate { .. } => "mkdir",
            OpSpec::DirLink { .. } => "link",
            OpSpec::DirUnlink { .. } => "unlink",
            OpSpec::DirList { .. } => "list",
            OpSpec::DirLookup { .. } => "lookup",
            OpSpec::DirMove { .. } => "move",
            OpSpec::DirCall { .. } => "dir-call",
        }
    }
}

/// A directory operation by cap and path (see [`OpSpec::DirCall`]). Files are named by their
/// number in [`Plan::files`] and linked by the cap their upload was acknowledged with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DirCall {
    Mkdir,
    MkdirAt {
        root: Cap,
        path: Vec<String>,
        parents: bool,
    },
    Link {
        root: Cap,
        path: Vec<String>,
        file: usize,
        replace: bool,
    },
    /// The directory `dir` itself (look up one below a root first).
    List {
        dir: Cap,
    },
    Lookup {
        root: Cap,
        path: Vec<String>,
    },
    Unlink {
        root: Cap,
        path: Vec<String>,
    },
    /// Refused if `to` links something already.
    Move {
        root: Cap,
        from: Vec<String>,
        to: Vec<String>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlannedOp {
    pub start: Start,
    pub client: usize,
    pub spec: OpSpec,
}

/// A fault. `None` targets are picked by the fault RNG when the fault fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The server process dies: connections drop, uploads in progress are lost (aborted),
    /// committed shares survive. `loud`: clients see the connections reset at once (process
    /// died, host alive); otherwise they find out only through request timeouts (host gone).
    Crash {
        server: usize,
        loud: bool,
        down_for: Duration,
    },
    /// One client's connection to one server resets.
    Reset { client: usize, server: usize },
    /// Links to `server` (from one client, or all) hold their bytes for a while.
    Partition {
        client: Option<usize>,
        server: usize,
        duration: Duration,
    },
    /// Every link of the server gets `extra` latency for a while.
    DelaySpike {
        server: usize,
        extra: Duration,
        duration: Duration,
    },
    /// The server answers `extra` late for a while.
    Slow {
        server: usize,
        extra: Duration,
        duration: Duration,
    },
    /// The server stops answering for a while, then answers everything it received.
    Stall { server: usize, duration: Duration },
    /// The server's disk is full (capacity = space used) for a while.
    DiskFull { server: usize, duration: Duration },
    /// Every store operation of the server fails with an I/O error for a while.
    DiskErrors { server: usize, duration: Duration },
    /// Flip bits of one byte of one share.
    Corrupt {
        server: Option<usize>,
        file: Option<usize>,
    },
    /// One share vanishes from a disk.
    LoseShare {
        server: Option<usize>,
        file: Option<usize>,
    },
}

impl Fault {
    /// Short name for summaries.
    pub fn name(&self) -> &'static str {
        match self {
            Fault::Crash { .. } => "crash",
            Fault::Reset { .. } => "reset",
            Fault::Partition { .. } => "partition",
            Fault::DelaySpike { .. } => "delay-spike",
            Fault::Slow { .. } => "slow",
            Fault::Stall { .. } => "stall",
            Fault::DiskFull { .. } => "disk-full",
            Fault::DiskErrors { .. } => "disk-errors",
            Fault::Corrupt { .. } => "corrupt",
            Fault::LoseShare { .. } => "lose-share",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlannedFault {
    pub at: Instant,
    pub fault: Fault,
}

/// One run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Drives the network jitter, fault targets and workload picks made while running.
    pub seed: u64,
    pub params: SimParams,
    pub net: NetConfig,
    /// Sizes of the files the operations refer to.
    pub files: Vec<u64>,
    pub ops: Vec<PlannedOp>,
    pub faults: Vec<PlannedFault>,
    /// Directory calls by path, for [`OpSpec::DirCall`] (random plans make none).
    pub dir_calls: Vec<DirCall>,
}
