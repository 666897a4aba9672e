//! The engine: real lafs-core clients and storage servers exchanging messages in virtual time.
//!
//! Every client operation is a lafs-core state machine driven by the drain rule: after each
//! `handle_*` call (and each mutator) the engine drains `poll_transmit` and `poll_event` until
//! both are empty, then arms one timer at `poll_timeout`. Every storage server is a
//! `StorageServer` over a `MemoryShareStore`. Messages travel through [`crate::net`], faults
//! come from the plan, and the invariants are checked as the run goes and at its end.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use lafs_core::cap::Cap;
use lafs_core::client::{DirEvent, DirOperation, Driven, Output};
use lafs_core::crypto::key_source::{FixtureKeys, KeySource};
use lafs_core::crypto::rsa_keys::MutableKey;
use lafs_core::dirnode::ops::{
    DirCache, DirConfig, DirOpError, DirProgress, Found, Link, LinkEvent, LinkOptions, Linked,
    List, Lookup, Mkdir, MkdirAt, MkdirAtEvent, Move, MoveEvent, Unlink, UnlinkEvent,
};
use lafs_core::dirnode::{Child, ChildCap, Directory, EditError, Overwrite};
use lafs_core::hashtree::Hash;
use lafs_core::immutable::download::{
    clip_range, ChkFile, Download, DownloadConfig, DownloadEvent,
};
use lafs_core::immutable::encode::convergent_key;
use lafs_core::immutable::upload::{Upload, UploadConfig, UploadEvent};
use lafs_core::mutable::layout::{parse_header, MutableFormat};
use lafs_core::mutable::{
    FileKeys, Modify, ModifyError, ModifyEvent, Publish, PublishConfig, PublishError, PublishEvent,
    PublishResult, Retrieve, RetrieveConfig, RetrieveEvent, RetrieveResult, ServerMap,
};
use lafs_core::op::{ClientOp, RequestId, Transmit};
use lafs_core::placement::{ServerDescriptor, ServerId};
use lafs_core::server::{ConnectionId, ServerConfig, StorageServer};
use lafs_core::server_status::{GridStatus, GridStatusReport, ServerState as StatusState};
use lafs_core::store::{MemoryShareStore, ShareStore};
use lafs_core::time::{Duration, Instant};
use lafs_core::wire::{encode_request, encode_response, Request, Response, StorageIndex};
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::dir_model::{DirModel, EditOutcome, NameEdit};
use crate::keys::fixture_keys;
use crate::net::{Dir, Network};
use crate::plan::{DirCall, Fault, OpSpec, Plan, SimParams, Start};
use crate::queue::EventQueue;
use crate::report::{OpKind, OpTiming, RunReport, Violation};
use crate::rng::{file_bytes, sub_rng, Concern};
use crate::trace::Trace;

const CONVERGENCE_SECRET: &[u8] = b"lafs-sim convergence secret.....";
const LEASE_SECRET: &[u8] = b"lafs-sim lease secret...........";
/// Mixed into the seed for the contents of mutable versions and for publish randomness.
const MUTABLE_CONTENT_SALT: u64 = 0x6d75_7461_626c_6531;
const PUBLISH_SEED_SALT: u64 = 0x7075_626c_6973_6831;
const DIR_SEED_SALT: u64 = 0x6469_7265_6374_6f72;
/// Bytes of directory state each simulated client remembers.
const DIR_CACHE_BYTES: usize = 1 << 20;

/// The bytes the `attempt`-th publish (0 = the create) of mutable file `file` writes in a run
/// with `seed`, so a test outside the simulator can expect the same contents.
pub fn mutable_bytes(seed: u64, file: usize, attempt: usize, size: u64) -> Vec<u8> {
    let tag = ((file as u64) << 32) | attempt as u64;
    file_bytes(seed ^ MUTABLE_CONTENT_SALT, tag, size as usize)
}
/// Modifies' bytes are numbered from here among a file's publishes (no run makes this many).
const MODIFY_ATTEMPTS: usize = 1 << 20;
/// A run that has not settled after this many events is reported, not waited for.
const EVENT_BUDGET: u64 = 20_000_000;

/// The id of simulated server `i`.
pub fn server_id(i: usize) -> ServerId {
    let mut id = [0u8; 32];
    id[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
    id[8] = 0x5e;
    ServerId(id)
}

#[derive(Debug)]
enum Ev {
    Start(usize),
    ToServer {
        client: usize,
        server: usize,
        epoch: u32,
        op: usize,
        id: RequestId,
        request: Request,
    },
    ToClient {
        client: usize,
        server: usize,
        epoch: u32,
        op: usize,
        id: RequestId,
        response: Response,
    },
    /// The operation learns that its connection to the server broke.
    Lost {
        op: usize,
        server: usize,
    },
    Timer {
        op: usize,
    },
    Deadline {
        op: usize,
    },
    Fault(Fault),
    Restart {
        server: usize,
    },
    DiskRestore {
        server: usize,
    },
    DiskHealthy {
        server: usize,
    },
}

#[derive(Debug)]
enum Machine {
    Idle,
    Upload(Box<Upload>),
    Download(Box<Download>),
    Publish(Box<Publish>),
    Modify(Box<Modify>),
    Retrieve(Box<Retrieve>),
    Status(Box<GridStatus>),
    Mkdir(Box<Mkdir>),
    MkdirAt(Box<MkdirAt>),
    Link(Box<Link>),
    Unlink(Box<Unlink>),
    List(Box<List>),
    Lookup(Box<Lookup>),
    Move(Box<Move>),
}

/// What a directory operation produced.
#[derive(Debug)]
enum DirDone {
    Made(Cap),
    Linked(Linked),
    Removed(Child),
    Listed(Directory),
    Found(Found),
    Moved,
}

#[derive(Debug)]
enum MachineEvent {
    Upload(UploadEvent),
    Download(DownloadEvent),
    /// From a publish or an in-place modify.
    Publish(PublishEvent),
    Modify(ModifyEvent),
    Retrieve(RetrieveEvent),
    Status(GridStatusReport),
    /// A directory operation's event; `conflict`: it is about to retry after a conflict.
    Dir {
        event: DirEvent<DirDone>,
        conflict: bool,
    },
}

/// A directory operation's event as the engine sees it.
fn dir_event<O: DirOperation>(
    event: O::Event,
    conflict: bool,
    done: impl FnOnce(O::Output) -> DirDone,
) -> MachineEvent {
    let event = match O::classify(event) {
        DirEvent::Progress => DirEvent::Progress,
        DirEvent::NeedKey => DirEvent::NeedKey,
        DirEvent::Done(v) => DirEvent::Done(done(v)),
        DirEvent::Failed(e) => DirEvent::Failed(e),
    };
    MachineEvent::Dir { event, conflict }
}

fn is_conflict(p: &DirProgress) -> bool {
    matches!(p, DirProgress::Conflict { .. })
}

/// Runs `$body` with `$m` bound to whichever state machine `$machine` holds; `$idle` if none.
macro_rules! with_machine {
    ($machine:expr, $m:ident => $body:expr, idle => $idle:expr) => {
        match $machine {
            Machine::Idle => $idle,
            Machine::Upload($m) => $body,
            Machine::Download($m) => $body,
            Machine::Publish($m) => $body,
            Machine::Modify($m) => $body,
            Machine::Retrieve($m) => $body,
            Machine::Status($m) => $body,
            Machine::Mkdir($m) => $body,
            Machine::MkdirAt($m) => $body,
            Machine::Link($m) => $body,
            Machine::Unlink($m) => $body,
            Machine::List($m) => $body,
            Machine::Lookup($m) => $body,
            Machine::Move($m) => $body,
        }
    };
}

impl ClientOp for Machine {
    type Event = MachineEvent;

    fn poll_transmit(&mut self) -> Option<Transmit> {
        with_machine!(self, m => m.poll_transmit(), idle => None)
    }
    fn poll_event(&mut self) -> Option<MachineEvent> {
        match self {
            Machine::Idle => None,
            Machine::Upload(m) => m.poll_event().map(MachineEvent::Upload),
            Machine::Download(m) => m.poll_event().map(MachineEvent::Download),
            Machine::Publish(m) => m.poll_event().map(MachineEvent::Publish),
            Machine::Modify(m) => m.poll_event().map(MachineEvent::Modify),
            Machine::Retrieve(m) => m.poll_event().map(MachineEvent::Retrieve),
            Machine::Status(m) => m.poll_event().map(MachineEvent::Status),
            Machine::Mkdir(m) => m
                .poll_event()
                .map(|e| dir_event::<Mkdir>(e, false, DirDone::Made)),
            Machine::MkdirAt(m) => m.poll_event().map(|e| {
                let c = matches!(&e, MkdirAtEvent::Progress(p) if is_conflict(p));
                dir_event::<MkdirAt>(e, c, DirDone::Made)
            }),
            Machine::Link(m) => m.poll_event().map(|e| {
                let c = matches!(&e, LinkEvent::Progress(p) if is_conflict(p));
                dir_event::<Link>(e, c, DirDone::Linked)
            }),
            Machine::Unlink(m) => m.poll_event().map(|e| {
                let c = matches!(&e, UnlinkEvent::Progress(p) if is_conflict(p));
                dir_event::<Unlink>(e, c, DirDone::Removed)
            }),
            Machine::List(m) => m
                .poll_event()
                .map(|e| dir_event::<List>(e, false, DirDone::Listed)),
            Machine::Lookup(m) => m
                .poll_event()
                .map(|e| dir_event::<Lookup>(e, false, DirDone::Found)),
            Machine::Move(m) => m.poll_event().map(|e| {
                let c = matches!(&e, MoveEvent::Progress(p) if is_conflict(p));
                dir_event::<Move>(e, c, |()| DirDone::Moved)
            }),
        }
    }
    fn poll_timeout(&self) -> Option<Instant> {
        with_machine!(self, m => m.poll_timeout(), idle => None)
    }
    fn handle_input(&mut self, now: Instant, from: ServerId, id: RequestId, r: Response) {
        with_machine!(self, m => m.handle_input(now, from, id, r), idle => ())
    }
    fn handle_server_lost(&mut self, now: Instant, server: ServerId) {
        with_machine!(self, m => m.handle_server_lost(now, server), idle => ())
    }
    fn handle_timeout(&mut self, now: Instant) {
        with_machine!(self, m => m.handle_timeout(now), idle => ())
    }
}

impl Machine {
    fn cancel(&mut self, now: Instant) {
        match self {
            Machine::Idle => {}
            Machine::Upload(m) => m.cancel(now),
            Machine::Download(m) => m.cancel(),
            // Mutable, status and directory operations have nothing to abort: dropping them
            // is enough.
            Machine::Publish(_)
            | Machine::Modify(_)
            | Machine::Retrieve(_)
            | Machine::Status(_)
            | Machine::Mkdir(_)
            | Machine::MkdirAt(_)
            | Machine::Link(_)
            | Machine::Unlink(_)
            | Machine::List(_)
            | Machine::Lookup(_)
            | Machine::Move(_) => {}
        }
    }

    /// Hands a directory operation the key it asked for (or tells it none is left).
    fn provide_dir_key(&mut self, now: Instant, key: Result<MutableKey, String>) {
        fn give<O: DirOperation>(op: &mut O, now: Instant, key: Result<MutableKey, String>) {
            match key {
                Ok(key) => op.provide_key(now, key),
                Err(reason) => op.key_unavailable(now, reason),
            }
        }
        match self {
            Machine::Mkdir(m) => give(m.as_mut(), now, key),
            Machine::MkdirAt(m) => give(m.as_mut(), now, key),
            Machine::Link(m) => give(m.as_mut(), now, key),
            _ => {}
        }
    }

    /// Gives `cache` what a directory operation learned.
    fn return_dir_states(&mut self, cache: &mut DirCache) {
        match self {
            Machine::Mkdir(m) => DirOperation::return_to(m.as_mut(), cache),
            Machine::MkdirAt(m) => m.return_to(cache),
            Machine::Link(m) => m.return_to(cache),
            Machine::Unlink(m) => m.return_to(cache),
            Machine::List(m) => m.return_to(cache),
            Machine::Lookup(m) => m.return_to(cache),
            Machine::Move(m) => m.return_to(cache),
            _ => {}
        }
    }
}

#[derive(Debug)]
struct OpState {
    client: usize,
    start: Start,
    spec: OpSpec,
    kind: OpKind,
    file: Option<usize>,
    machine: Machine,
    started: Option<Instant>,
    finished: Option<Instant>,
    /// The instant of the timer event armed for this op, if any.
    timer_at: Option<Instant>,
    /// (server, connection epoch) pairs this op has sent on: told when they break.
    used: BTreeSet<(usize, u32)>,
    delivered: u64,
    /// Summary of the last event the machine emitted (for hang reports).
    last_event: String,
    /// Bytes moved (mutable ops; immutable ones report their file's size).
    size: Option<u64>,
    /// Publishes: the index of the contents they write in their file's `attempts`.
    attempt: Option<usize>,
    /// Mutable reads: the plaintext released so far.
    read: Vec<u8>,
    /// Mutable reads: the newest version acknowledged before the read started.
    floor: Option<Acked>,
    /// Mutable reads: faults injected before the read started, and whether a disk was failing
    /// then (a read that overlaps faults may legitimately fall back to an older version).
    faults_at_start: u64,
    disk_errors_at_start: bool,
    /// Directory edits: how each name edited saw the start (a move edits two).
    name_edits: Vec<NameEdit>,
    /// Directory lookups: the name's start count and settled link at the start, if settled.
    lookup: Option<(u64, Option<Cap>)>,
    /// Downloads: where the wanted bytes end.
    end: u64,
    /// Not run: what it needed was not there (counted apart from failures).
    skipped: bool,
    /// Directory edits: a conflict made it retry.
    retried: bool,
    /// The longest a request of this op took to reach its server (queueing in the client's
    /// uplink behind other operations' bytes included).
    slowest_request: Duration,
    /// Modifies: the index of their patch in their file's `patches`, and the contents that
    /// patch made of the versions known so far (indices in `attempts`).
    patch: Option<usize>,
    candidates: Vec<usize>,
}

impl OpState {
    fn new(client: usize, start: Start, spec: OpSpec, kind: OpKind) -> OpState {
        OpState {
            client,
            start,
            spec,
            kind,
            file: None,
            machine: Machine::Idle,
            started: None,
            finished: None,
            timer_at: None,
            used: BTreeSet::new(),
            delivered: 0,
            last_event: String::new(),
            size: None,
            attempt: None,
            read: Vec::new(),
            floor: None,
            faults_at_start: 0,
            disk_errors_at_start: false,
            name_edits: Vec::new(),
            lookup: None,
            end: 0,
            skipped: false,
            retried: false,
            slowest_request: Duration::ZERO,
            patch: None,
            candidates: Vec::new(),
        }
    }
}

/// An acknowledged mutable version.
#[derive(Clone, Debug)]
struct Acked {
    seqnum: u64,
    root: Hash,
    k: u8,
}

/// What the simulator knows of one mutable file (numbered apart from immutable files).
#[derive(Debug, Default)]
struct MutableState {
    /// Set when a create starts (the key is spent then).
    keys: Option<FileKeys>,
    /// A create was acknowledged: updates and reads may run.
    created: bool,
    /// The contents of every publish attempted, acknowledged or not: a publish that failed
    /// (a lost race, too few servers) may still have left whole versions on some servers.
    attempts: Vec<Arc<[u8]>>,
    /// Versions whose contents are known: (seqnum, root hash) -> index in `attempts`. From
    /// acknowledged publishes, and from whole reads of an unacknowledged one.
    versions: BTreeMap<(u64, Hash), usize>,
    /// Acknowledged versions, in acknowledgement order.
    acked: Vec<Acked>,
    /// Each client's servermap from its last successful operation on the file.
    maps: BTreeMap<usize, ServerMap>,
    /// Publishes of this file now running.
    publishing: usize,
    /// In-place modifies started: (offset, bytes). A modify's version is one of the contents
    /// known when it ended with its bytes written over.
    patches: Vec<(u64, Arc<[u8]>)>,
    /// Versions acknowledged to a modify: the indices in `attempts` of the contents they may
    /// hold (each known version with the modify's bytes written over).
    modified: BTreeMap<(u64, Hash), Vec<usize>>,
}

/// What a [`DirCall`] returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DirResult {
    /// A new directory's cap, or the cap a lookup found.
    Cap(Cap),
    /// A listing's names, in order.
    Names(Vec<String>),
    /// A link, unlink or move was made.
    Done,
}

#[derive(Debug)]
struct FileState {
    size: u64,
    data: Option<Arc<[u8]>>,
    key: Option<[u8; 16]>,
    cap: Option<Cap>,
}

impl FileState {
    fn storage_index(&self) -> Option<StorageIndex> {
        self.key
            .map(|k| lafs_core::crypto::storage_index_from_key(&k))
    }
}

#[derive(Debug)]
struct ServerState {
    server: StorageServer<MemoryShareStore>,
    /// `Some(loud)` while crashed.
    down: Option<bool>,
    down_until: Instant,
    stalled_until: Instant,
    slow_until: Instant,
    slow_extra: Duration,
    disk_full_until: Instant,
    disk_errors_until: Instant,
}

/// One simulated run of a [`Plan`].
#[derive(Debug)]
pub struct Sim {
    seed: u64,
    params: SimParams,
    now: Instant,
    queue: EventQueue<Ev>,
    net: Network,
    fault_rng: ChaCha8Rng,
    workload_rng: ChaCha8Rng,
    servers: Vec<ServerState>,
    descriptors: Vec<ServerDescriptor>,
    server_ix: BTreeMap<ServerId, usize>,
    files: Vec<FileState>,
    mfiles: Vec<MutableState>,
    /// Directories (numbered apart from files) and what is known of their links.
    dirs: Vec<DirModel>,
    /// Scripted directory calls and what each one's operation returned.
    dir_calls: Vec<DirCall>,
    dir_results: BTreeMap<usize, Result<DirResult, String>>,
    /// Each client's remembered directory states.
    dir_caches: Vec<DirCache>,
    /// The run's RSA keys for mutable files (fixed, so runs replay).
    keys: FixtureKeys,
    ops: Vec<OpState>,
    /// Shares whose bytes a fault changed: (server, storage index, share number).
    corrupted: BTreeSet<(usize, StorageIndex, u16)>,
    /// Shares a fault deleted.
    deleted: BTreeSet<(usize, StorageIndex, u16)>,
    /// When the first fault was injected, if any.
    first_fault: Option<Instant>,
    report: RunReport,
    trace: Trace,
}

impl Sim {
    /// Builds the grid of `plan`; `keep_trace` also records a readable line per event.
    pub fn new(plan: &Plan, keep_trace: bool) -> Sim {
        let servers = (0..plan.net.servers)
            .map(|_| ServerState {
                server: StorageServer::new(
                    MemoryShareStore::new(plan.params.server_capacity, 1 << 40),
                    ServerConfig::default(),
                ),
                down: None,
                down_until: Instant(0),
                stalled_until: Instant(0),
                slow_until: Instant(0),
                slow_extra: Duration::ZERO,
                disk_full_until: Instant(0),
                disk_errors_until: Instant(0),
            })
            .collect();
        let descriptors: Vec<ServerDescriptor> = (0..plan.net.servers)
            .map(|i| ServerDescriptor {
                id: server_id(i),
                permutation_seed: server_id(i).0.to_vec(),
            })
            .collect();
        let server_ix = descriptors
            .iter()
            .enumerate()
            .map(|(i, d)| (d.id, i))
            .collect();
        let mut sim = Sim {
            seed: plan.seed,
            params: plan.params.clone(),
            now: Instant(0),
            queue: EventQueue::new(),
            net: Network::new(plan.net.clone(), sub_rng(plan.seed, Concern::Network)),
            fault_rng: sub_rng(plan.seed, Concern::Faults),
            workload_rng: sub_rng(plan.seed, Concern::Workload),
            servers,
            descriptors,
            server_ix,
            files: plan
                .files
                .iter()
                .map(|&size| FileState {
                    size,
                    data: None,
                    key: None,
                    cap: None,
                })
                .collect(),
            mfiles: Vec::new(),
            dirs: Vec::new(),
            dir_calls: plan.dir_calls.clone(),
            dir_results: BTreeMap::new(),
            dir_caches: (0..plan.net.clients)
                .map(|_| DirCache::new(DIR_CACHE_BYTES))
                .collect(),
            keys: fixture_keys(),
            ops: Vec::new(),
            corrupted: BTreeSet::new(),
            deleted: BTreeSet::new(),
            first_fault: None,
            report: RunReport {
                seed: plan.seed,
                servers: plan.net.servers,
                mean_rtt: mean_rtt(&plan.net),
                ..RunReport::default()
            },
            trace: Trace::new(keep_trace),
        };
        for (i, op) in plan.ops.iter().enumerate() {
            let kind = match op.spec {
                OpSpec::Upload { .. } => OpKind::Upload,
                OpSpec::MutableCreate { .. }
                | OpSpec::MutableUpdate { .. }
                | OpSpec::MutableModify { .. } => OpKind::Publish,
                OpSpec::MutableRead { .. } => OpKind::Retrieve,
                OpSpec::Download { .. } | OpSpec::DownloadAny | OpSpec::DownloadRange { .. } => {
                    OpKind::Download
                }
                OpSpec::GridStatus => OpKind::Status,
                OpSpec::DirCreate { .. }
                | OpSpec::DirLink { .. }
                | OpSpec::DirUnlink { .. }
                | OpSpec::DirMove { .. }
                | OpSpec::DirCall { .. } => OpKind::DirEdit,
                OpSpec::DirList { .. } | OpSpec::DirLookup { .. } => OpKind::DirList,
            };
            sim.ops
                .push(OpState::new(op.client, op.start, op.spec, kind));
            match op.start {
                Start::At(t) => sim.queue.push(t, Ev::Start(i)),
                Start::AfterPrevious if i == 0 => sim.queue.push(Instant(0), Ev::Start(i)),
                Start::AfterPrevious => {}
            }
        }
        for f in &plan.faults {
            sim.queue.push(f.at, Ev::Fault(f.fault));
        }
        sim
    }

    /// Runs `plan` to the end, checks the invariants, and reports.
    pub fn run(plan: &Plan) -> RunReport {
        Sim::new(plan, false).run_to_end()
    }

    /// Like [`Sim::run`], also returning a readable line per event.
    pub fn run_traced(plan: &Plan) -> (RunReport, Vec<String>) {
        let mut sim = Sim::new(plan, true);
        let report = sim.run_to_end();
        let trace = std::mem::replace(&mut sim.trace, Trace::new(false));
        (report, trace.into_lines())
    }

    /// Runs every event, then (if the plan asks) heals all faults and downloads every
    /// acknowledged file that still has k good shares. The grid stays inspectable afterwards.
    pub fn run_to_end(&mut self) -> RunReport {
        self.run_queue();
        if self.params.final_check {
            self.heal_all();
            self.start_final_checks();
            self.run_queue();
        }
        // The last operation's end (the queue itself drains at the last op deadline).
        self.report.end = self
            .report
            .timings
            .iter()
            .map(|t| t.end)
            .max()
            .unwrap_or(self.now);
        self.report.trace_hash = self.trace.hash();
        self.report.clone()
    }

    /// What plan operation `op` (a mutable read) delivered, if it finished.
    pub fn read_bytes(&self, op: usize) -> Option<&[u8]> {
        let o = self.ops.get(op)?;
        o.finished.is_some().then_some(o.read.as_slice())
    }

    /// What plan operation `op` (a [`OpSpec::DirCall`]) returned, or why it failed; `None`
    /// if it did not run (a link of a file not acknowledged) or has not finished.
    pub fn dir_outcome(&self, op: usize) -> Option<&Result<DirResult, String>> {
        self.dir_results.get(&op)
    }

    /// The cap an upload of file `file` was acknowledged with, if any.
    pub fn file_cap(&self, file: usize) -> Option<&Cap> {
        self.files.get(file)?.cap.as_ref()
    }

    /// The store of server `i` (for scenario tests).
    pub fn store(&self, server: usize) -> &MemoryShareStore {
        self.servers[server].server.store()
    }

    /// The store of server `i`, to change behind the servers' back (for scenario tests that
    /// show an invariant check fires).
    pub fn store_mut(&mut self, server: usize) -> &mut MemoryShareStore {
        self.servers[server].server.store_mut()
    }

    /// Storage index of file `file`, once an upload of it has started.
    pub fn storage_index(&self, file: usize) -> Option<StorageIndex> {
        self.files.get(file)?.storage_index()
    }

    /// Distinct good (committed, never corrupted by a fault) shares of `file` on the grid.
    pub fn good_share_count(&self, file: usize) -> usize {
        self.good_shares(file)
    }

    fn run_queue(&mut self) {
        self.run_until(None);
    }

    /// Runs the events due up to `until` (all of them if `None`); [`Sim::run_to_end`] goes on
    /// from there.
    pub fn run_until(&mut self, until: Option<Instant>) {
        while self
            .queue
            .next_at()
            .is_some_and(|t| until.is_none_or(|u| t <= u))
        {
            let Some((at, seq, ev)) = self.queue.pop() else {
                return;
            };
            self.now = at;
            self.report.events += 1;
            if self.report.events > EVENT_BUDGET {
                self.report.violations.push(Violation::Runaway {
                    events: self.report.events,
                });
                return;
            }
            self.trace.event(at, seq, &ev_summary(&ev));
            self.handle(ev);
        }
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Start(op) => self.start_op(op),
            Ev::ToServer {
                client,
                server,
                epoch,
                op,
                id,
                request,
            } => self.deliver_request(client, server, epoch, op, id, request),
            Ev::ToClient {
                client,
                server,
                epoch,
                op,
                id,
                response,
            } => {
                if self.net.epoch(client, server) != epoch || self.ops[op].finished.is_some() {
                    return;
                }
                let from = self.descriptors[server].id;
                let now = self.now;
                self.ops[op].machine.handle_input(now, from, id, response);
                self.drain(op);
            }
            Ev::Lost { op, server } => {
                if self.ops[op].finished.is_none() {
                    let now = self.now;
                    let id = self.descriptors[server].id;
                    self.ops[op].machine.handle_server_lost(now, id);
                    self.drain(op);
                }
            }
            Ev::Timer { op } => {
                let o = &mut self.ops[op];
                if o.timer_at != Some(self.now) || o.finished.is_some() {
                    return;
                }
                o.timer_at = None;
                if o.machine.poll_timeout().is_some_and(|t| t <= self.now) {
                    let now = self.now;
                    o.machine.handle_timeout(now);
                }
                self.drain(op);
            }
            Ev::Deadline { op } => {
                if self.ops[op].finished.is_none() {
                    let o = &mut self.ops[op];
                    self.report.violations.push(Violation::Hang {
                        op,
                        kind: o.kind,
                        started: o.started.unwrap_or_default(),
                        timer: o.machine.poll_timeout(),
                        last_event: std::mem::take(&mut o.last_event),
                    });
                    let now = self.now;
                    o.machine.cancel(now);
                    self.drain(op);
                    // Whatever the machine did, the run must move on.
                    self.end_op(op, false);
                }
            }
            Ev::Fault(f) => self.inject(f),
            Ev::Restart { server } => {
                let s = &mut self.servers[server];
                if s.down.is_some() && s.down_until <= self.now {
                    s.down = None;
                }
            }
            Ev::DiskRestore { server } => {
                if self.servers[server].disk_full_until <= self.now {
                    let cap = self.params.server_capacity;
                    self.servers[server].server.store_mut().set_capacity(cap);
                }
            }
            Ev::DiskHealthy { server } => {
                if self.servers[server].disk_errors_until <= self.now {
                    self.servers[server].server.store_mut().set_failing(false);
                }
            }
        }
    }

    // ---- operations ----

    fn file_data(&mut self, file: usize) -> Arc<[u8]> {
        let f = &mut self.files[file];
        if f.data.is_none() {
            let bytes = file_bytes(self.seed, file as u64, f.size as usize);
            f.data = Some(bytes.into());
        }
        f.data.clone().unwrap_or_else(|| Arc::from(Vec::new()))
    }

    fn start_op(&mut self, op: usize) {
        let now = self.now;
        self.ops[op].started = Some(now);
        let deadline = now + self.params.op_deadline;
        self.queue.push(deadline, Ev::Deadline { op });
        let o = &self.ops[op];
        let what = format!("op {op}: client {} runs {:?}", o.client, o.spec);
        self.trace.text(now, &what);
        match self.ops[op].spec {
            OpSpec::MutableCreate { file, format, size } => {
                return self.start_create(op, file, format, size)
            }
            OpSpec::MutableUpdate { file, size, warm } => {
                return self.start_update(op, file, size, warm)
            }
            OpSpec::MutableRead { file, range } => return self.start_read(op, file, range),
            OpSpec::MutableModify { file, offset, size } => {
                return self.start_modify(op, file, offset, size)
            }
            OpSpec::GridStatus => return self.start_status(op),
            OpSpec::DirCall { call } => return self.start_dir_call(op, call),
            OpSpec::DirCreate { .. }
            | OpSpec::DirLink { .. }
            | OpSpec::DirUnlink { .. }
            | OpSpec::DirList { .. }
            | OpSpec::DirLookup { .. }
            | OpSpec::DirMove { .. } => return self.start_dir_op(op),
            OpSpec::Upload { .. }
            | OpSpec::Download { .. }
            | OpSpec::DownloadAny
            | OpSpec::DownloadRange { .. } => {}
        }
        let file = match self.ops[op].spec {
            OpSpec::Upload { file } | OpSpec::Download { file } => Some(file),
            OpSpec::DownloadRange { file, .. } => {
                Some(file).filter(|&f| self.files.get(f).is_some_and(|f| f.cap.is_some()))
            }
            OpSpec::DownloadAny => {
                let acked: Vec<usize> = (0..self.files.len())
                    .filter(|&f| self.files[f].cap.is_some())
                    .collect();
                acked.choose(&mut self.workload_rng).copied()
            }
            _ => unreachable!("only file transfers get here"),
        };
        let Some(file) = file else {
            self.report.downloads_skipped += 1;
            self.ops[op].skipped = true;
            return self.end_op(op, false);
        };
        self.ops[op].file = Some(file);
        // The bytes a download must deliver: all, or the range cut at the end of the file.
        let size = self.files[file].size;
        let wanted = match self.ops[op].spec {
            OpSpec::DownloadRange { offset, length, .. } => clip_range(size, offset, length),
            _ => Ok(0..size),
        };
        match self.ops[op].kind {
            OpKind::Publish
            | OpKind::Retrieve
            | OpKind::DirEdit
            | OpKind::DirList
            | OpKind::Status => {}
            OpKind::Upload => {
                let data = self.file_data(file);
                let p = self.params.encoding;
                let key = *self.files[file].key.get_or_insert_with(|| {
                    convergent_key(&data, CONVERGENCE_SECRET, p.k, p.n, p.max_segment_size)
                });
                let config = UploadConfig {
                    params: p,
                    codec: self.params.codec,
                    window_bytes: self.params.window_bytes,
                    request_timeout: self.params.request_timeout,
                };
                let up = Upload::new(
                    now,
                    config,
                    key,
                    data.len() as u64,
                    &self.descriptors,
                    LEASE_SECRET,
                );
                self.ops[op].machine = Machine::Upload(Box::new(up));
            }
            OpKind::Download | OpKind::FinalCheck => {
                let cap = self.files[file].cap.clone();
                let wanted = match wanted {
                    Ok(r) => r,
                    Err(e) => {
                        // A range starting past the end: refused before any request.
                        self.report.downloads_failed += 1;
                        self.failure_reason("download", &e.to_string());
                        return self.end_op(op, false);
                    }
                };
                self.ops[op].delivered = wanted.start;
                self.ops[op].end = wanted.end;
                match cap {
                    Some(Cap::ChkRead {
                        key,
                        ueb_hash,
                        needed,
                        total,
                        size,
                    }) => {
                        let config = DownloadConfig {
                            segment_size_guess: self.params.encoding.max_segment_size,
                            request_timeout: self.params.request_timeout,
                        };
                        let chk = ChkFile {
                            key,
                            ueb_hash,
                            k: usize::from(needed),
                            n: usize::from(total),
                            size,
                        };
                        let d = Download::new_range(
                            now,
                            config,
                            chk,
                            &self.descriptors,
                            wanted.start,
                            wanted.end - wanted.start,
                        );
                        self.ops[op].machine = Machine::Download(Box::new(d));
                    }
                    Some(Cap::Lit { data }) => {
                        // The cap holds the bytes: no network, but they are still checked.
                        let want = self.file_data(file);
                        let (a, b) = (wanted.start as usize, wanted.end as usize);
                        if data.get(a..b) != want.get(a..b) {
                            self.report.violations.push(Violation::WrongBytes {
                                op,
                                file,
                                offset: 0,
                            });
                        }
                        self.report.downloads_ok += 1;
                        return self.end_op(op, true);
                    }
                    _ => {
                        self.report.downloads_skipped += 1;
                        self.ops[op].skipped = true;
                        return self.end_op(op, false);
                    }
                }
            }
        }
        self.drain(op);
    }

    /// lafs-core's drain rule ([`Driven::poll_output`]): transmits and events until it says to
    /// wait, then one timer.
    fn drain(&mut self, op: usize) {
        let mut machine = std::mem::replace(&mut self.ops[op].machine, Machine::Idle);
        let mut driven = Driven::new(&mut machine);
        loop {
            match driven.poll_output() {
                Output::Transmit(t) => self.transmit(op, t),
                Output::Event(ev) => self.on_event(op, driven.op_mut(), ev),
                Output::Wait(_) | Output::Stalled => break,
            }
        }
        if self.ops[op].finished.is_some() {
            return; // the machine is dropped; late answers are ignored
        }
        let next = machine.poll_timeout();
        let o = &mut self.ops[op];
        o.machine = machine;
        if let Some(t) = next {
            if o.timer_at.is_none_or(|armed| t < armed) {
                o.timer_at = Some(t);
                self.queue.push(t.max(self.now), Ev::Timer { op });
            }
        }
    }

    fn transmit(&mut self, op: usize, t: Transmit) {
        let server = self.server_ix[&t.to];
        let client = self.ops[op].client;
        let len = encode_request(t.id, &t.request).len() as u64;
        self.report.messages += 1;
        self.report.bytes += len;
        self.report.bytes_to_servers += len;
        self.trace.word(len);
        match self.servers[server].down {
            // Connection refused: the op hears of it one round trip later.
            Some(true) => {
                let at = self.now + self.net.rtt(client, server);
                self.queue.push(at, Ev::Lost { op, server });
            }
            // The host is gone: nothing answers; the op's request timeout must notice.
            Some(false) => {}
            None => {
                let (epoch, arrival) = self.net.send(self.now, client, server, Dir::ToServer, len);
                let o = &mut self.ops[op];
                o.used.insert((server, epoch));
                o.slowest_request = o.slowest_request.max(arrival.saturating_since(self.now));
                self.queue.push(
                    arrival,
                    Ev::ToServer {
                        client,
                        server,
                        epoch,
                        op,
                        id: t.id,
                        request: t.request,
                    },
                );
            }
        }
    }

    fn deliver_request(
        &mut self,
        client: usize,
        server: usize,
        epoch: u32,
        op: usize,
        id: RequestId,
        request: Request,
    ) {
        let now = self.now;
        if self.servers[server].down.is_some() || self.net.epoch(client, server) != epoch {
            return;
        }
        // A mutable write that is applied replaces whatever a fault did to those shares.
        let rewrites: Vec<(StorageIndex, u16)> = match &request {
            Request::MutableWrite {
                storage_index,
                shares,
                ..
            } => shares.iter().map(|w| (*storage_index, w.shnum)).collect(),
            _ => Vec::new(),
        };
        let s = &mut self.servers[server];
        let conn = ConnectionId(((client as u64) << 32) | u64::from(epoch));
        let response = s.server.handle_request(now, conn, request);
        if matches!(response, Response::MutableWrite { applied: true, .. }) {
            for (si, shnum) in rewrites {
                self.corrupted.remove(&(server, si, shnum));
                self.deleted.remove(&(server, si, shnum));
            }
        }
        let s = &mut self.servers[server];
        // A stalled server answers when the stall ends; a slow one answers late.
        let mut depart = now.max(s.stalled_until);
        if s.slow_until > now {
            depart = depart + s.slow_extra;
        }
        let len = encode_response(id, &response).len() as u64;
        self.report.messages += 1;
        self.report.bytes += len;
        self.trace.word(len);
        let (epoch, arrival) = self.net.send(depart, client, server, Dir::ToClient, len);
        self.queue.push(
            arrival,
            Ev::ToClient {
                client,
                server,
                epoch,
                op,
                id,
                response,
            },
        );
    }

    fn on_event(&mut self, op: usize, machine: &mut Machine, ev: MachineEvent) {
        let now = self.now;
        let file = self.ops[op].file.unwrap_or(0);
        let summary = event_summary(&ev);
        self.trace.text(now, &format!("op {op}: {summary}"));
        self.ops[op].last_event = summary;
        match ev {
            MachineEvent::Upload(ev) => match ev {
                UploadEvent::NeedSegment { offset, length, .. } => {
                    let data = self.file_data(file);
                    let (start, end) = (offset as usize, (offset + length) as usize);
                    if let (Machine::Upload(up), Some(seg)) = (machine, data.get(start..end)) {
                        up.provide_segment(now, seg);
                    }
                }
                UploadEvent::Done(result) => {
                    self.report.uploads_ok += 1;
                    self.check_ack(op, file, &result);
                    if self.files[file].cap.is_none() {
                        self.files[file].cap = Some(result.cap);
                    }
                    self.end_op(op, true);
                }
                UploadEvent::Failed(e) => {
                    self.report.uploads_failed += 1;
                    self.failure_reason("upload", &e.to_string());
                    self.end_op(op, false);
                }
                UploadEvent::Progress { .. } | UploadEvent::ServerProblem { .. } => {}
            },
            MachineEvent::Download(ev) => match ev {
                DownloadEvent::Data { offset, bytes } => {
                    let data = self.file_data(file);
                    let o = &mut self.ops[op];
                    let end = offset as usize + bytes.len();
                    if offset != o.delivered || data.get(offset as usize..end) != Some(&bytes[..]) {
                        self.report
                            .violations
                            .push(Violation::WrongBytes { op, file, offset });
                    }
                    o.delivered = o.delivered.max(end as u64);
                }
                DownloadEvent::CorruptShare { .. } => self.report.corrupt_shares_detected += 1,
                DownloadEvent::Done { .. } => {
                    let size = self.ops[op].end;
                    if self.ops[op].delivered != size {
                        self.report.violations.push(Violation::BadDone {
                            op,
                            file,
                            delivered: self.ops[op].delivered,
                            size,
                        });
                    }
                    self.report.downloads_ok += 1;
                    self.end_op(op, true);
                }
                DownloadEvent::Failed(e) => {
                    self.report.downloads_failed += 1;
                    self.failure_reason("download", &e.to_string());
                    let kind = self.ops[op].kind;
                    // A request that sat in the client's own saturated uplink for half the
                    // request timeout may time out with no fault at all: the client overloaded
                    // itself, as a real one on that link would.
                    let congested =
                        self.ops[op].slowest_request.0 * 2 >= self.params.request_timeout.0;
                    if kind == OpKind::Download
                        && !congested
                        && self.first_fault.is_none()
                        && self.good_shares(file) == self.params.encoding.n
                    {
                        self.report
                            .violations
                            .push(Violation::FaultFreeDownloadFailed {
                                op,
                                file,
                                error: e.to_string(),
                            });
                    }
                    if self.ops[op].kind == OpKind::FinalCheck {
                        let good = self.good_shares(file);
                        self.report.violations.push(Violation::Unretrievable {
                            file,
                            good_shares: good,
                            error: e.to_string(),
                        });
                    }
                    self.end_op(op, false);
                }
                DownloadEvent::ServerProblem { .. } => {}
            },
            MachineEvent::Publish(ev) => self.on_publish_event(
                op,
                file,
                match ev {
                    PublishEvent::Done(r) => Ok(r),
                    PublishEvent::Failed(e) => {
                        Err((matches!(e, PublishError::Conflict { .. }), e.to_string()))
                    }
                },
            ),
            MachineEvent::Modify(ev) => self.on_publish_event(
                op,
                file,
                match ev {
                    ModifyEvent::Done(r) => Ok(r),
                    ModifyEvent::Failed(e) => {
                        Err((matches!(e, ModifyError::Conflict { .. }), e.to_string()))
                    }
                },
            ),
            MachineEvent::Retrieve(ev) => self.on_retrieve_event(op, file, ev),
            MachineEvent::Status(report) => self.on_status(op, &report),
            MachineEvent::Dir { event, conflict } => match event {
                DirEvent::Progress => {
                    if conflict && !self.ops[op].retried {
                        self.ops[op].retried = true;
                        self.report.dir_retries += 1;
                    }
                }
                DirEvent::NeedKey => {
                    let key = self.keys.next_key().map_err(|e| e.to_string());
                    machine.provide_dir_key(now, key);
                }
                DirEvent::Done(done) => {
                    self.return_dir_states(op, machine);
                    self.end_dir_op(op, Ok(done));
                }
                DirEvent::Failed(e) => {
                    self.return_dir_states(op, machine);
                    self.end_dir_op(op, Err(e));
                }
            },
        }
    }

    /// An acknowledged upload must be happy, and every share it claims must be committed where
    /// it says (unless a fault deleted it since).
    fn check_ack(
        &mut self,
        op: usize,
        file: usize,
        result: &lafs_core::immutable::upload::UploadResult,
    ) {
        if !matches!(result.cap, Cap::ChkRead { .. }) {
            return;
        }
        let happy = self.params.encoding.happy;
        if result.happiness < happy {
            self.report.violations.push(Violation::Unhappy {
                op,
                happiness: result.happiness,
                happy,
            });
        }
        let Some(si) = self.files[file].storage_index() else {
            return;
        };
        for (id, shnums) in &result.shares {
            let server = self.server_ix[id];
            let held: BTreeSet<u16> = self.servers[server]
                .server
                .store()
                .list_shares(&si)
                .map(|v| v.iter().map(|s| s.shnum).collect())
                .unwrap_or_default();
            for &shnum in shnums {
                if !held.contains(&shnum) && !self.deleted.contains(&(server, si, shnum)) {
                    self.report.violations.push(Violation::AckedShareMissing {
                        op,
                        file,
                        server,
                        shnum,
                    });
                }
            }
        }
    }

    // ---- mutable files ----

    /// Fresh bytes for operation `op`'s publish salts and backoff jitter.
    fn dir_seed(&self, op: usize) -> [u8; 32] {
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&file_bytes(self.seed ^ DIR_SEED_SALT, op as u64, 32));
        seed
    }

    /// Start a directory operation, or skip it while what it needs is not acknowledged.
    fn start_dir_op(&mut self, op: usize) {
        let now = self.now;
        let spec = self.ops[op].spec;
        let client = self.ops[op].client;
        let dir = match spec {
            OpSpec::DirCreate { dir }
            | OpSpec::DirLink { dir, .. }
            | OpSpec::DirUnlink { dir, .. }
            | OpSpec::DirList { dir }
            | OpSpec::DirLookup { dir, .. }
            | OpSpec::DirMove { dir, .. } => dir,
            _ => unreachable!("start_dir_op is called for directory operations only"),
        };
        if self.dirs.len() <= dir {
            self.dirs.resize_with(dir + 1, DirModel::default);
        }
        self.ops[op].file = Some(dir);
        self.ops[op].size = Some(0);
        self.ops[op].faults_at_start = self.report.faults_injected();
        self.ops[op].disk_errors_at_start = self.servers.iter().any(|s| s.disk_errors_until > now);
        let seed = self.dir_seed(op);
        let config = self.dir_config();
        let cap = self.dirs[dir].cap.clone();
        let caches = self.dir_caches.len().max(1);
        let cache = &mut self.dir_caches[client % caches];
        let d = &mut self.dirs[dir];
        let o = &mut self.ops[op];
        let machine = match (spec, cap) {
            (OpSpec::DirCreate { .. }, None) if !d.creating => {
                d.creating = true;
                Machine::Mkdir(Box::new(Mkdir::new(now, config, seed, MutableFormat::Sdmf)))
            }
            (OpSpec::DirLink { name, file, .. }, Some(root)) => {
                let Some(file_cap) = self.files.get(file).and_then(|f| f.cap.clone()) else {
                    return self.skip_dir(op);
                };
                o.name_edits = vec![d.start_edit(name)];
                let options = LinkOptions {
                    overwrite: Overwrite::Yes,
                    ..LinkOptions::default()
                };
                Machine::Link(Box::new(Link::new(
                    now,
                    config,
                    seed,
                    cache,
                    root,
                    vec![name_of(name)],
                    ChildCap::Known(file_cap),
                    options,
                )))
            }
            (OpSpec::DirUnlink { name, .. }, Some(root)) => {
                o.name_edits = vec![d.start_edit(name)];
                Machine::Unlink(Box::new(Unlink::new(
                    now,
                    config,
                    seed,
                    cache,
                    root,
                    vec![name_of(name)],
                )))
            }
            (OpSpec::DirMove { from, to, .. }, Some(root)) => {
                o.name_edits = vec![d.start_edit(from), d.start_edit(to)];
                Machine::Move(Box::new(Move::rename(
                    now,
                    config,
                    seed,
                    cache,
                    root,
                    Vec::new(),
                    name_of(from),
                    name_of(to),
                    Overwrite::Yes,
                )))
            }
            (OpSpec::DirList { .. }, Some(root)) => {
                Machine::List(Box::new(List::new(now, config, seed, cache, root)))
            }
            (OpSpec::DirLookup { name, .. }, Some(root)) => {
                o.lookup = d.lookup_start(name);
                Machine::Lookup(Box::new(Lookup::new(
                    now,
                    config,
                    seed,
                    cache,
                    root,
                    vec![name_of(name)],
                )))
            }
            _ => return self.skip_dir(op),
        };
        self.ops[op].machine = machine;
        self.drain(op);
    }

    /// Start scripted directory call `call` (skipped if it links a file not acknowledged).
    fn start_dir_call(&mut self, op: usize, call: usize) {
        let now = self.now;
        let client = self.ops[op].client;
        self.ops[op].size = Some(0);
        let seed = self.dir_seed(op);
        let config = self.dir_config();
        let caches = self.dir_caches.len().max(1);
        let cache = &mut self.dir_caches[client % caches];
        let Some(call) = self.dir_calls.get(call).cloned() else {
            return self.skip_dir(op);
        };
        let machine = match call {
            DirCall::Mkdir => {
                Machine::Mkdir(Box::new(Mkdir::new(now, config, seed, MutableFormat::Sdmf)))
            }
            DirCall::MkdirAt {
                root,
                path,
                parents,
            } => Machine::MkdirAt(Box::new(MkdirAt::new(
                now,
                config,
                seed,
                cache,
                root,
                path,
                MutableFormat::Sdmf,
                parents,
            ))),
            DirCall::Link {
                root,
                path,
                file,
                replace,
            } => {
                let Some(file_cap) = self.files.get(file).and_then(|f| f.cap.clone()) else {
                    return self.skip_dir(op);
                };
                let options = LinkOptions {
                    overwrite: if replace {
                        Overwrite::Yes
                    } else {
                        Overwrite::No
                    },
                    ..LinkOptions::default()
                };
                let child = ChildCap::Known(file_cap);
                let link = Link::new(now, config, seed, cache, root, path, child, options);
                Machine::Link(Box::new(link))
            }
            DirCall::List { dir } => {
                Machine::List(Box::new(List::new(now, config, seed, cache, dir)))
            }
            DirCall::Lookup { root, path } => {
                Machine::Lookup(Box::new(Lookup::new(now, config, seed, cache, root, path)))
            }
            DirCall::Unlink { root, path } => {
                Machine::Unlink(Box::new(Unlink::new(now, config, seed, cache, root, path)))
            }
            DirCall::Move { root, from, to } => Machine::Move(Box::new(Move::new(
                now,
                config,
                seed,
                cache,
                (root.clone(), from),
                (root, to),
                Overwrite::No,
            ))),
        };
        self.ops[op].machine = machine;
        self.drain(op);
    }

    fn dir_config(&self) -> DirConfig {
        let mut config = DirConfig::new(self.descriptors.clone(), LEASE_SECRET.to_vec());
        config.publish = self.publish_config();
        config.retrieve.request_timeout = self.params.request_timeout;
        config.download.request_timeout = self.params.request_timeout;
        config
    }

    fn skip_dir(&mut self, op: usize) {
        self.report.dir_skipped += 1;
        self.ops[op].skipped = true;
        self.end_op(op, false);
    }

    /// Give the client's directory cache what the operation learned.
    fn return_dir_states(&mut self, op: usize, machine: &mut Machine) {
        let n = self.dir_caches.len().max(1);
        machine.return_dir_states(&mut self.dir_caches[self.ops[op].client % n]);
    }

    /// A directory operation ended.
    fn end_dir_op(&mut self, op: usize, outcome: Result<DirDone, DirOpError>) {
        if self.ops[op].finished.is_some() {
            return;
        }
        let ok = outcome.is_ok();
        let spec = self.ops[op].spec;
        let kind = self.ops[op].kind;
        match (&outcome, kind) {
            (_, OpKind::FinalCheck) => {}
            (Ok(_), OpKind::DirList) => self.report.dir_lists_ok += 1,
            (Err(_), OpKind::DirList) => self.report.dir_lists_failed += 1,
            (Ok(_), _) => self.report.dir_edits_ok += 1,
            (Err(_), _) => self.report.dir_edits_failed += 1,
        }
        // A publish that failed part-way may still land later (as an uncoordinated writer's
        // would); a refused edit or a failed read wrote nothing. Once faults have split the
        // servers (a partition, a silent crash), two writers can each publish a version of the
        // same sequence number on disjoint servers, Tahoe's uncoordinated-write problem: the
        // directory's checks stand down, as LostWrite does for mutable files.
        let may_land_late = matches!(
            outcome,
            Err(DirOpError::Publish { .. } | DirOpError::Create { .. })
        ) || self.first_fault.is_some();
        if let Err(e) = &outcome {
            *self
                .report
                .failure_reasons
                .entry(e.to_string())
                .or_default() += 1;
            if kind == OpKind::FinalCheck {
                if let OpSpec::DirList { dir } = spec {
                    self.report.violations.push(Violation::DirUnreadable {
                        dir,
                        error: e.to_string(),
                    });
                }
            }
        }
        let refused_missing = matches!(
            outcome,
            Err(DirOpError::NotFound { .. }
                | DirOpError::Edit {
                    source: EditError::NoSuchChild { .. },
                    ..
                })
        );
        let edits = std::mem::take(&mut self.ops[op].name_edits);
        let outcomes: Vec<EditOutcome> = match (spec, &outcome) {
            (OpSpec::DirLink { file, .. }, Ok(DirDone::Linked(linked))) => {
                match self.files.get(file).and_then(|f| f.cap.clone()) {
                    Some(cap) => vec![EditOutcome::Linked {
                        cap,
                        replaced: linked.replaced.as_ref().and_then(|c| known(&c.cap)),
                    }],
                    None => vec![EditOutcome::Failed],
                }
            }
            (OpSpec::DirUnlink { .. }, Ok(DirDone::Removed(child))) => {
                vec![known(&child.cap).map_or(EditOutcome::Failed, |removed| {
                    EditOutcome::Removed { removed }
                })]
            }
            (OpSpec::DirMove { .. }, Ok(_)) => match edits.first() {
                Some(from) => vec![
                    EditOutcome::MovedAway,
                    EditOutcome::MovedHere { from: from.clone() },
                ],
                None => Vec::new(),
            },
            (OpSpec::DirUnlink { .. } | OpSpec::DirMove { .. }, Err(_)) if refused_missing => {
                vec![EditOutcome::NoSuchChild, EditOutcome::Failed]
            }
            _ => vec![EditOutcome::Failed; 2],
        };
        match spec {
            OpSpec::DirCreate { dir } => {
                if let Ok(DirDone::Made(cap)) = &outcome {
                    self.dirs[dir].cap = Some(cap.clone());
                }
            }
            OpSpec::DirLink { dir, .. }
            | OpSpec::DirUnlink { dir, .. }
            | OpSpec::DirMove { dir, .. } => {
                for (edit, result) in edits.iter().zip(&outcomes) {
                    if let Some(v) = self.dirs[dir].end_edit(op, dir, edit, result) {
                        self.report.violations.push(v);
                    }
                }
                self.dirs[dir].poisoned |= may_land_late;
            }
            OpSpec::DirList { dir } => {
                if let (Ok(DirDone::Listed(listing)), OpKind::FinalCheck) = (&outcome, kind) {
                    self.check_listing(dir, listing);
                }
            }
            OpSpec::DirLookup { dir, name } => self.check_lookup(op, dir, name, &outcome),
            OpSpec::DirCall { .. } => {
                let result = match outcome {
                    Ok(DirDone::Made(cap)) => Ok(DirResult::Cap(cap)),
                    Ok(DirDone::Listed(d)) => Ok(DirResult::Names(
                        d.list().map(|(n, _)| n.to_string()).collect(),
                    )),
                    Ok(DirDone::Found(found)) => known(&found.cap)
                        .map(DirResult::Cap)
                        .ok_or_else(|| "a cap of an unknown kind".to_string()),
                    Ok(DirDone::Linked(_) | DirDone::Removed(_) | DirDone::Moved) => {
                        Ok(DirResult::Done)
                    }
                    Err(e) => Err(e.to_string()),
                };
                self.dir_results.insert(op, result);
            }
            _ => {}
        }
        self.end_op(op, ok);
    }

    /// A fault-free final listing must agree with every settled name.
    fn check_listing(&mut self, dir: usize, listing: &Directory) {
        if self.dirs[dir].poisoned {
            return;
        }
        self.report.dir_listings_checked += 1;
        let names: BTreeMap<u32, Option<Cap>> = listing
            .list()
            .filter_map(|(name, child)| Some((number_of(name)?, known(&child.cap))))
            .collect();
        let found = self.dirs[dir].check_listing(dir, &names);
        self.report.violations.extend(found);
    }

    /// A lookup of a settled name, with no fault during it, must find what the name links.
    fn check_lookup(
        &mut self,
        op: usize,
        dir: usize,
        name: u32,
        outcome: &Result<DirDone, DirOpError>,
    ) {
        let o = &self.ops[op];
        let quiet = self.report.faults_injected() == o.faults_at_start && !o.disk_errors_at_start;
        let Some(start) = o.lookup.clone().filter(|_| quiet) else {
            return;
        };
        let found = match outcome {
            Ok(DirDone::Found(found)) => known(&found.cap),
            Err(DirOpError::NotFound { .. }) => None,
            _ => return,
        };
        self.report.lookups_checked += 1;
        if let Some(v) = self.dirs[dir].check_lookup(op, dir, name, &start, found.as_ref()) {
            self.report.violations.push(v);
        }
    }

    fn skip_mutable(&mut self, op: usize) {
        self.report.mutable_skipped += 1;
        self.ops[op].skipped = true;
        self.end_op(op, false);
    }

    fn publish_config(&self) -> PublishConfig {
        let p = self.params.encoding;
        PublishConfig {
            k: u8::try_from(p.k).unwrap_or(u8::MAX),
            n: u8::try_from(p.n).unwrap_or(u8::MAX),
            request_timeout: self.params.request_timeout,
            ..PublishConfig::default()
        }
    }

    /// Fresh contents for a new publish of mutable `file`: returns their index in `attempts`.
    fn new_attempt(&mut self, op: usize, file: usize, size: u64) -> (usize, Vec<u8>, [u8; 32]) {
        let m = &mut self.mfiles[file];
        let attempt = m.attempts.len();
        let tag = ((file as u64) << 32) | attempt as u64;
        let contents = mutable_bytes(self.seed, file, attempt, size);
        m.attempts.push(Arc::from(contents.as_slice()));
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&file_bytes(self.seed ^ PUBLISH_SEED_SALT, tag, 32));
        let o = &mut self.ops[op];
        o.file = Some(file);
        o.attempt = Some(attempt);
        o.size = Some(size);
        m.publishing += 1;
        (attempt, contents, seed)
    }

    fn start_create(&mut self, op: usize, file: usize, format: MutableFormat, size: u64) {
        if self.mfiles.len() <= file {
            self.mfiles.resize_with(file + 1, MutableState::default);
        }
        if self.mfiles[file].keys.is_some() {
            return self.skip_mutable(op);
        }
        let Ok(key) = self.keys.next_key() else {
            return self.skip_mutable(op);
        };
        self.mfiles[file].keys = Some(FileKeys::from_key(format, &key));
        let (_, contents, seed) = self.new_attempt(op, file, size);
        let p = Publish::create(
            self.now,
            self.publish_config(),
            format,
            key,
            contents,
            &self.descriptors,
            LEASE_SECRET,
            seed,
        );
        self.ops[op].machine = Machine::Publish(Box::new(p));
        self.drain(op);
    }

    /// The keys of mutable `file`, once a create of it was acknowledged.
    fn created_keys(&self, file: usize) -> Option<FileKeys> {
        let m = self.mfiles.get(file)?;
        if m.created {
            m.keys.clone()
        } else {
            None
        }
    }

    fn start_update(&mut self, op: usize, file: usize, size: u64, warm: bool) {
        let Some(keys) = self.created_keys(file) else {
            return self.skip_mutable(op);
        };
        let client = self.ops[op].client;
        let map = if warm {
            self.mfiles[file].maps.get(&client).cloned()
        } else {
            None
        };
        if self.mfiles[file].publishing > 0 {
            self.report.concurrent_publishes += 1;
        }
        let (_, contents, seed) = self.new_attempt(op, file, size);
        let p = Publish::update(
            self.now,
            self.publish_config(),
            keys,
            contents,
            &self.descriptors,
            map,
            LEASE_SECRET,
            seed,
        );
        self.ops[op].machine = Machine::Publish(Box::new(p));
        self.drain(op);
    }

    fn start_modify(&mut self, op: usize, file: usize, offset: u64, size: u64) {
        let Some(keys) = self.created_keys(file) else {
            return self.skip_mutable(op);
        };
        let client = self.ops[op].client;
        let m = &mut self.mfiles[file];
        let map = m.maps.get(&client).cloned();
        // Numbered after every publish a run can make, so the bytes differ from theirs.
        let tag = MODIFY_ATTEMPTS + m.patches.len();
        let bytes = mutable_bytes(self.seed, file, tag, size);
        m.patches.push((offset, Arc::from(bytes.as_slice())));
        m.publishing += 1;
        let patch = m.patches.len() - 1;
        let candidates = self.patched(file, patch, 0);
        let mut seed = [0u8; 32];
        let seed_tag = ((file as u64) << 32) | tag as u64;
        seed.copy_from_slice(&file_bytes(self.seed ^ PUBLISH_SEED_SALT, seed_tag, 32));
        let o = &mut self.ops[op];
        o.file = Some(file);
        o.size = Some(size);
        o.patch = Some(patch);
        o.candidates = candidates;
        let modify = Modify::new(
            self.now,
            self.publish_config(),
            keys,
            offset,
            bytes,
            &self.descriptors,
            map,
            LEASE_SECRET,
            seed,
        );
        self.ops[op].machine = Machine::Modify(Box::new(modify));
        self.drain(op);
    }

    /// Patch `patch` of mutable `file` written over each known contents from index `from` on
    /// that it fits inside: adds the results to `attempts` (once each) and returns their
    /// indices.
    fn patched(&mut self, file: usize, patch: usize, from: usize) -> Vec<usize> {
        let m = &mut self.mfiles[file];
        let (offset, bytes) = m.patches[patch].clone();
        let (a, b) = (offset as usize, offset as usize + bytes.len());
        let mut out = Vec::new();
        for i in from..m.attempts.len() {
            if m.attempts[i].len() < b {
                continue;
            }
            let mut c = m.attempts[i].to_vec();
            c[a..b].copy_from_slice(&bytes);
            let at = match m.attempts.iter().position(|x| x[..] == c[..]) {
                Some(j) => j,
                None => {
                    m.attempts.push(Arc::from(c));
                    m.attempts.len() - 1
                }
            };
            if !out.contains(&at) {
                out.push(at);
            }
        }
        out
    }

    /// A modify ended: versions published while it ran may have been its base too.
    fn modify_ended(&mut self, op: usize, file: usize) -> Vec<usize> {
        let Some(patch) = self.ops[op].patch else {
            return Vec::new();
        };
        let seen = self.ops[op].candidates.iter().max().map_or(0, |i| i + 1);
        let mut all = std::mem::take(&mut self.ops[op].candidates);
        for i in self.patched(file, patch, seen) {
            if !all.contains(&i) {
                all.push(i);
            }
        }
        all
    }

    fn start_read(&mut self, op: usize, file: usize, range: Option<(u64, u64)>) {
        let Some(keys) = self.created_keys(file) else {
            return self.skip_mutable(op);
        };
        let now = self.now;
        let floor = self.newest_acked(file);
        let faults = self.report.faults_injected();
        let disk_errors = self.servers.iter().any(|s| s.disk_errors_until > now);
        let o = &mut self.ops[op];
        o.file = Some(file);
        o.floor = floor;
        o.faults_at_start = faults;
        o.disk_errors_at_start = disk_errors;
        let config = RetrieveConfig {
            request_timeout: self.params.request_timeout,
            ..RetrieveConfig::default()
        };
        let r = Retrieve::new(now, config, keys, &self.descriptors, range);
        self.ops[op].machine = Machine::Retrieve(Box::new(r));
        self.drain(op);
    }

    /// The acknowledged version of mutable `file` with the highest sequence number.
    fn newest_acked(&self, file: usize) -> Option<Acked> {
        self.mfiles
            .get(file)?
            .acked
            .iter()
            .max_by_key(|a| a.seqnum)
            .cloned()
    }

    /// Distinct share numbers of `version` of mutable `file` held intact (never corrupted by a
    /// fault) on `among` servers (all if `None`).
    fn good_mutable_shares(
        &self,
        file: usize,
        version: &Acked,
        among: Option<&BTreeSet<usize>>,
    ) -> usize {
        let Some(si) = self.mfiles[file].keys.as_ref().map(|k| k.storage_index) else {
            return 0;
        };
        let mut good = BTreeSet::new();
        for (i, s) in self.servers.iter().enumerate() {
            if among.is_some_and(|set| !set.contains(&i)) {
                continue;
            }
            let store = s.server.store();
            for (share_si, shnum, _) in store.mutable_shares() {
                if share_si != si || self.corrupted.contains(&(i, si, shnum)) {
                    continue;
                }
                let Some(bytes) = store.share_bytes(&si, shnum) else {
                    continue;
                };
                if let Ok((prefix, _)) = parse_header(bytes) {
                    if prefix.seqnum == version.seqnum && prefix.root_hash == version.root {
                        good.insert(shnum);
                    }
                }
            }
        }
        good.len()
    }

    /// A publish or in-place write ended: the new version, or (was it a conflict, why).
    fn on_publish_event(
        &mut self,
        op: usize,
        file: usize,
        outcome: Result<Box<PublishResult>, (bool, String)>,
    ) {
        let candidates = self.modify_ended(op, file);
        match outcome {
            Ok(result) => {
                self.report.publishes_ok += 1;
                let result: PublishResult = *result;
                let v = &result.version;
                let client = self.ops[op].client;
                let m = &mut self.mfiles[file];
                if let Some(attempt) = self.ops[op].attempt {
                    m.versions.insert((v.seqnum, v.root_hash), attempt);
                }
                if self.ops[op].patch.is_some() {
                    m.modified.insert((v.seqnum, v.root_hash), candidates);
                }
                m.acked.push(Acked {
                    seqnum: v.seqnum,
                    root: v.root_hash,
                    k: v.k,
                });
                m.created = true;
                self.check_publish_ack(op, file, &result);
                self.mfiles[file].maps.insert(client, result.map);
                self.end_op(op, true);
            }
            Err((conflict, why)) => {
                self.report.publishes_failed += 1;
                if conflict {
                    self.report.conflicts += 1;
                }
                self.failure_reason("publish", &why);
                // The loser of a race must re-read: its map is stale.
                let client = self.ops[op].client;
                self.mfiles[file].maps.remove(&client);
                self.end_op(op, false);
            }
        }
    }

    /// Every share an acknowledged publish claims must hold its version, or a newer one a
    /// later writer (who saw ours) put there, unless a fault deleted or corrupted it.
    fn check_publish_ack(&mut self, op: usize, file: usize, result: &PublishResult) {
        let Some(si) = self.mfiles[file].keys.as_ref().map(|k| k.storage_index) else {
            return;
        };
        let v = &result.version;
        for (id, shnum) in &result.placed {
            let Some(&server) = self.server_ix.get(id) else {
                continue;
            };
            let key = (server, si, *shnum);
            if self.deleted.contains(&key) || self.corrupted.contains(&key) {
                continue;
            }
            let held = self.servers[server].server.store().share_bytes(&si, *shnum);
            let ok = held
                .and_then(|b| parse_header(b).ok())
                .is_some_and(|(p, _)| {
                    p.seqnum > v.seqnum || (p.seqnum == v.seqnum && p.root_hash == v.root_hash)
                });
            if !ok {
                self.report
                    .violations
                    .push(Violation::MutableAckedShareMissing {
                        op,
                        file,
                        server,
                        shnum: *shnum,
                    });
            }
        }
    }

    fn on_retrieve_event(&mut self, op: usize, file: usize, ev: RetrieveEvent) {
        match ev {
            RetrieveEvent::Data { offset, bytes } => {
                let start = match self.ops[op].spec {
                    OpSpec::MutableRead {
                        range: Some((o, _)),
                        ..
                    } => o,
                    _ => 0,
                };
                let o = &mut self.ops[op];
                let expected = start + o.read.len() as u64;
                if offset != expected && o.delivered == 0 {
                    // Reported once per read; `delivered` marks it.
                    o.delivered = 1;
                    self.report.violations.push(Violation::TornRead {
                        op,
                        file,
                        seqnum: 0,
                        detail: format!("data at offset {offset}, expected {expected}"),
                    });
                }
                let o = &mut self.ops[op];
                o.read.extend_from_slice(&bytes);
            }
            RetrieveEvent::CorruptShare { .. } => self.report.corrupt_shares_detected += 1,
            RetrieveEvent::Done(result) => {
                self.report.retrieves_ok += 1;
                let result: RetrieveResult = *result;
                self.verify_read(op, file, &result);
                self.ops[op].size = Some(self.ops[op].read.len() as u64);
                if self.ops[op].kind == OpKind::Retrieve {
                    let client = self.ops[op].client;
                    self.mfiles[file].maps.insert(client, result.map);
                }
                self.end_op(op, true);
            }
            RetrieveEvent::Failed(e) => {
                self.report.retrieves_failed += 1;
                self.failure_reason("mutable read", &e.to_string());
                if self.ops[op].kind == OpKind::FinalCheck {
                    if let Some(newest) = self.newest_acked(file) {
                        let good = self.good_mutable_shares(file, &newest, None);
                        if good >= usize::from(newest.k) {
                            self.report
                                .violations
                                .push(Violation::MutableUnretrievable {
                                    file,
                                    acked_seqnum: newest.seqnum,
                                    good_shares: good,
                                    error: e.to_string(),
                                });
                        }
                    }
                }
                self.end_op(op, false);
            }
        }
    }

    /// A finished read must have released exactly (the asked range of) one version some
    /// publish wrote, and no version older than one acknowledged before it started while that
    /// one kept k good shares on the servers the read heard from.
    fn verify_read(&mut self, op: usize, file: usize, result: &RetrieveResult) {
        let v = &result.version;
        let len = v.data_length;
        let (a, b) = match self.ops[op].spec {
            OpSpec::MutableRead {
                range: Some((o, l)),
                ..
            } => (o.min(len), o.saturating_add(l).min(len)),
            _ => (0, len),
        };
        let whole = (a, b) == (0, len);
        let got = &self.ops[op].read;
        let m = &self.mfiles[file];
        let fits = |c: &[u8]| {
            c.len() as u64 == len && c.get(a as usize..b as usize) == Some(got.as_slice())
        };
        let key = (v.seqnum, v.root_hash);
        let known = m.versions.get(&key).copied();
        let modified = m.modified.get(&key);
        let matched = match (known, modified) {
            (Some(i), _) => m.attempts.get(i).is_some_and(|c| fits(c)).then_some(i),
            // A modify's version: its bytes over one of the versions it could have read.
            (None, Some(candidates)) => candidates
                .iter()
                .copied()
                .find(|&i| m.attempts.get(i).is_some_and(|c| fits(c))),
            (None, None) => m.attempts.iter().position(|c| fits(c)),
        };
        let pinned = known.is_some() || modified.is_some();
        match matched {
            Some(i) if known.is_none() && whole => {
                // An unacknowledged version, now identified: later reads must agree.
                self.mfiles[file]
                    .versions
                    .insert((v.seqnum, v.root_hash), i);
            }
            Some(_) => {}
            None => {
                let detail = if pinned {
                    format!("bytes {a}..{b} differ from what that version was published with")
                } else {
                    format!(
                        "{} bytes for {a}..{b} of a {len}-byte version match no publish",
                        got.len()
                    )
                };
                self.report.violations.push(Violation::TornRead {
                    op,
                    file,
                    seqnum: v.seqnum,
                    detail,
                });
            }
        }
        // No acknowledged write lost.
        let Some(floor) = self.ops[op].floor.clone() else {
            return;
        };
        let quiet = self.report.faults_injected() == self.ops[op].faults_at_start
            && !self.ops[op].disk_errors_at_start;
        if v.seqnum >= floor.seqnum || !quiet {
            return;
        }
        let heard: BTreeSet<usize> = result
            .map
            .answered
            .iter()
            .filter(|id| !result.map.failed.contains(id))
            .filter_map(|id| self.server_ix.get(id).copied())
            .collect();
        let good = self.good_mutable_shares(file, &floor, Some(&heard));
        if good >= usize::from(floor.k) {
            self.report.violations.push(Violation::LostWrite {
                op,
                file,
                got_seqnum: v.seqnum,
                acked_seqnum: floor.seqnum,
                good_shares: good,
            });
        }
    }

    fn start_status(&mut self, op: usize) {
        let ids: Vec<ServerId> = self.descriptors.iter().map(|d| d.id).collect();
        let status = GridStatus::new(self.now, &ids, self.params.request_timeout);
        self.ops[op].machine = Machine::Status(Box::new(status));
        self.drain(op);
    }

    /// A status query must list every server once, in order; one that ran before any fault
    /// must find every server answering.
    fn on_status(&mut self, op: usize, report: &GridStatusReport) {
        let quiet = self.first_fault.is_none();
        for (i, d) in self.descriptors.iter().enumerate() {
            let state = match report.servers.get(i) {
                Some((id, _)) if *id != d.id => "missing (another server in its place)".into(),
                None => "missing".to_string(),
                Some((_, StatusState::Answered(_))) => continue,
                Some((_, _)) if !quiet => continue,
                Some((_, other)) => format!("{other:?}"),
            };
            self.report.violations.push(Violation::StatusMissedServer {
                op,
                server: i,
                state,
            });
        }
        let answered = report
            .servers
            .iter()
            .filter(|(_, s)| matches!(s, StatusState::Answered(_)))
            .count();
        self.end_op(op, answered == self.descriptors.len());
    }

    fn failure_reason(&mut self, what: &str, error: &str) {
        // The words before the first digit or colon name the kind of failure.
        let head: String = error
            .chars()
            .take_while(|c| !c.is_ascii_digit() && *c != ':' && *c != '(')
            .collect();
        let key = format!("{what}: {}", head.trim());
        *self.report.failure_reasons.entry(key).or_default() += 1;
    }

    fn end_op(&mut self, op: usize, ok: bool) {
        let now = self.now;
        let o = &mut self.ops[op];
        if o.finished.is_some() {
            return;
        }
        o.finished = Some(now);
        o.timer_at = None;
        let file = o.file.unwrap_or(0);
        if o.attempt.is_some() || o.patch.is_some() {
            if let Some(m) = self.mfiles.get_mut(file) {
                m.publishing = m.publishing.saturating_sub(1);
            }
        }
        let size = match o.size {
            Some(size) => size,
            None => self.files.get(file).map_or(0, |f| f.size),
        };
        if o.kind != OpKind::FinalCheck {
            let counts = self.report.by_op.entry(o.spec.name()).or_default();
            match (o.skipped, ok) {
                (true, _) => counts.skipped += 1,
                (false, true) => counts.ok += 1,
                (false, false) => counts.failed += 1,
            }
        }
        self.report.timings.push(OpTiming {
            kind: o.kind,
            file,
            size,
            start: o.started.unwrap_or(now),
            end: now,
            ok,
        });
        if self
            .ops
            .get(op + 1)
            .is_some_and(|next| next.start == Start::AfterPrevious && next.started.is_none())
        {
            self.queue.push(now, Ev::Start(op + 1));
        }
    }

    // ---- faults ----

    fn count_fault(&mut self, name: &'static str) {
        self.first_fault.get_or_insert(self.now);
        *self.report.faults.entry(name).or_default() += 1;
    }

    /// Ends a connection: the server aborts its uploads on it; with `notify`, every operation
    /// that used it hears so after the given delay.
    fn reset_conn(&mut self, client: usize, server: usize, notify: Option<Duration>) {
        let old = self.net.reset(client, server);
        let conn = ConnectionId(((client as u64) << 32) | u64::from(old));
        let _ = self.servers[server].server.handle_disconnect(conn);
        let Some(delay) = notify else { return };
        let at = self.now + delay;
        for (op, o) in self.ops.iter().enumerate() {
            if o.client == client && o.finished.is_none() && o.used.contains(&(server, old)) {
                self.queue.push(at, Ev::Lost { op, server });
            }
        }
    }

    fn inject(&mut self, fault: Fault) {
        let now = self.now;
        let clients = self.net.config().clients;
        match fault {
            Fault::Crash {
                server,
                loud,
                down_for,
            } => {
                let was_down = self.servers[server].down.is_some();
                for c in 0..clients {
                    let notify = loud.then(|| self.net.latency(c, server));
                    self.reset_conn(c, server, if was_down { None } else { notify });
                }
                let s = &mut self.servers[server];
                s.down = Some(loud);
                s.down_until = s.down_until.max(now + down_for);
                let until = s.down_until;
                self.queue.push(until, Ev::Restart { server });
            }
            Fault::Reset { client, server } => {
                if self.servers[server].down.is_none() {
                    let notify = Some(self.net.latency(client, server));
                    self.reset_conn(client, server, notify);
                }
            }
            Fault::Partition {
                client,
                server,
                duration,
            } => {
                let targets: Vec<usize> = match client {
                    Some(c) => vec![c],
                    None => (0..clients).collect(),
                };
                for c in targets {
                    self.net.partition(c, server, now + duration);
                }
            }
            Fault::DelaySpike {
                server,
                extra,
                duration,
            } => self.net.delay_spike(server, extra, now + duration),
            Fault::Slow {
                server,
                extra,
                duration,
            } => {
                let s = &mut self.servers[server];
                s.slow_until = now + duration;
                s.slow_extra = extra;
            }
            Fault::Stall { server, duration } => {
                let s = &mut self.servers[server];
                s.stalled_until = s.stalled_until.max(now + duration);
            }
            Fault::DiskFull { server, duration } => {
                let s = &mut self.servers[server];
                let used = s.server.store().space_used();
                s.server.store_mut().set_capacity(used);
                s.disk_full_until = s.disk_full_until.max(now + duration);
                let until = s.disk_full_until;
                self.queue.push(until, Ev::DiskRestore { server });
            }
            Fault::DiskErrors { server, duration } => {
                let s = &mut self.servers[server];
                s.server.store_mut().set_failing(true);
                s.disk_errors_until = s.disk_errors_until.max(now + duration);
                let until = s.disk_errors_until;
                self.queue.push(until, Ev::DiskHealthy { server });
            }
            Fault::Corrupt { server, file } => {
                let Some((server, si, shnum, len)) = self.pick_share(server, file) else {
                    return; // nothing to corrupt yet
                };
                let offset = self.fault_rng.gen_range(0..len);
                let mask = self.fault_rng.gen_range(1..=255u8);
                if self.servers[server]
                    .server
                    .store_mut()
                    .corrupt_share(&si, shnum, offset, mask)
                {
                    self.corrupted.insert((server, si, shnum));
                    self.trace.text(
                        now,
                        &format!("corrupt server {server} share {shnum} byte {offset}"),
                    );
                }
            }
            Fault::LoseShare { server, file } => {
                let Some((server, si, shnum, _)) = self.pick_share(server, file) else {
                    return;
                };
                if self.servers[server]
                    .server
                    .store_mut()
                    .delete_share(&si, shnum)
                {
                    self.corrupted.remove(&(server, si, shnum));
                    self.deleted.insert((server, si, shnum));
                    self.trace
                        .text(now, &format!("lose server {server} share {shnum}"));
                }
            }
        }
        self.count_fault(fault.name());
    }

    /// A share (with at least one byte) on `server` of `file`, each picked at random if `None`.
    fn pick_share(
        &mut self,
        server: Option<usize>,
        file: Option<usize>,
    ) -> Option<(usize, StorageIndex, u16, u64)> {
        let si = match file {
            Some(f) => Some(self.files.get(f)?.storage_index()?),
            None => None,
        };
        let servers: Vec<usize> = match server {
            Some(s) => vec![s],
            None => (0..self.servers.len()).collect(),
        };
        let mut candidates = Vec::new();
        for s in servers {
            for (share_si, shnum, len, _committed) in self.servers[s].server.store().all_shares() {
                if len > 0 && si.is_none_or(|want| want == share_si) {
                    candidates.push((s, share_si, shnum, len));
                }
            }
        }
        candidates.choose(&mut self.fault_rng).copied()
    }

    // ---- the end of a run ----

    fn heal_all(&mut self) {
        let now = self.now;
        self.net.heal_all(now);
        let cap = self.params.server_capacity;
        for s in &mut self.servers {
            s.down = None;
            s.stalled_until = now;
            s.slow_until = now;
            s.server.store_mut().set_capacity(cap);
            s.server.store_mut().set_failing(false);
        }
    }

    /// Distinct share numbers of `file` committed somewhere and not corrupted by a fault.
    fn good_shares(&self, file: usize) -> usize {
        let Some(si) = self.files[file].storage_index() else {
            return 0;
        };
        let mut good = BTreeSet::new();
        for (i, s) in self.servers.iter().enumerate() {
            for info in s.server.store().list_shares(&si).unwrap_or_default() {
                if !self.corrupted.contains(&(i, si, info.shnum)) {
                    good.insert(info.shnum);
                }
            }
        }
        good.len()
    }

    /// One read of the final check, started now.
    fn start_final_check(&mut self, spec: OpSpec) {
        let op = self.ops.len();
        self.ops.push(OpState::new(
            0,
            Start::At(self.now),
            spec,
            OpKind::FinalCheck,
        ));
        self.report.final_checks += 1;
        self.queue.push(self.now, Ev::Start(op));
    }

    fn start_final_checks(&mut self) {
        let k = self.params.encoding.k;
        for file in 0..self.files.len() {
            let Some(cap) = &self.files[file].cap else {
                continue;
            };
            if matches!(cap, Cap::ChkRead { .. }) && self.good_shares(file) < k {
                self.report.unrecoverable_files += 1;
                continue;
            }
            self.start_final_check(OpSpec::Download { file });
        }
        for dir in 0..self.dirs.len() {
            if self.dirs[dir].cap.is_none() {
                continue;
            }
            self.start_final_check(OpSpec::DirList { dir });
        }
        for file in 0..self.mfiles.len() {
            let Some(newest) = self.newest_acked(file) else {
                continue;
            };
            if self.good_mutable_shares(file, &newest, None) < usize::from(newest.k) {
                self.report.unrecoverable_files += 1;
                continue;
            }
            self.start_final_check(OpSpec::MutableRead { file, range: None });
        }
    }
}

/// The name a simulated link is stored under.
fn name_of(name: u32) -> String {
    format!("f{name}")
}

/// The number of a name made by [`name_of`].
fn number_of(name: &str) -> Option<u32> {
    name.strip_prefix('f')?.parse().ok()
}

/// A child's cap, if of a kind this version knows.
fn known(cap: &ChildCap) -> Option<Cap> {
    match cap {
        ChildCap::Known(cap) => Some(cap.clone()),
        ChildCap::Unknown(_) => None,
    }
}

fn mean_rtt(net: &crate::net::NetConfig) -> Duration {
    let links: Vec<u64> = net.latency.iter().flatten().map(|d| d.0 * 2).collect();
    Duration(links.iter().sum::<u64>() / links.len().max(1) as u64)
}

fn ev_summary(ev: &Ev) -> String {
    match ev {
        Ev::Start(op) => format!("start op {op}"),
        Ev::ToServer {
            client,
            server,
            epoch,
            op,
            id,
            request,
        } => format!(
            "c{client} -> s{server} (epoch {epoch}) op {op} #{id}: {}",
            request_summary(request)
        ),
        Ev::ToClient {
            client,
            server,
            epoch,
            op,
            id,
            response,
        } => format!(
            "s{server} -> c{client} (epoch {epoch}) op {op} #{id}: {}",
            response_summary(response)
        ),
        Ev::Lost { op, server } => format!("op {op} loses s{server}"),
        Ev::Timer { op } => format!("timer op {op}"),
        Ev::Deadline { op } => format!("deadline op {op}"),
        Ev::Fault(f) => format!("fault {f:?}"),
        Ev::Restart { server } => format!("restart s{server}"),
        Ev::DiskRestore { server } => format!("disk space back on s{server}"),
        Ev::DiskHealthy { server } => format!("disk healthy on s{server}"),
    }
}

fn request_summary(r: &Request) -> String {
    match r {
        Request::ImmutableWrite { writes, .. } => {
            let parts: Vec<String> = writes
                .iter()
                .map(|w| {
                    format!(
                        "sh{}{}@{}+{}{}",
                        w.shnum,
                        if w.allocate { "(alloc)" } else { "" },
                        w.offset,
                        w.data.len(),
                        if w.close { "(close)" } else { "" }
                    )
                })
                .collect();
            format!("write [{}]", parts.join(" "))
        }
        Request::ImmutableRead { shnums, ranges, .. } => {
            format!("read shares {shnums:?} ranges {}", ranges.len())
        }
        Request::ImmutableAbort { shnums, .. } => format!("abort {shnums:?}"),
        Request::AdviseCorrupt { shnum, .. } => format!("advise corrupt sh{shnum}"),
        Request::AddLease { .. } => "add lease".into(),
        Request::GetVersion => "get version".into(),
        Request::MutableRead { shnums, ranges, .. } => {
            format!("mutable read shares {shnums:?} ranges {}", ranges.len())
        }
        Request::MutableWrite { shares, .. } => {
            let parts: Vec<String> = shares
                .iter()
                .map(|w| {
                    let bytes: usize = w.writes.iter().map(|d| d.data.len()).sum();
                    format!("sh{} tests {} +{}", w.shnum, w.tests.len(), bytes)
                })
                .collect();
            format!("mutable write [{}]", parts.join(" "))
        }
    }
}

fn response_summary(r: &Response) -> String {
    match r {
        Response::ImmutableWrite { results, held } => format!("written {results:?} held {held:?}"),
        Response::ImmutableRead { shares, held } => {
            let got: Vec<(u16, usize)> = shares
                .iter()
                .map(|s| (s.shnum, s.chunks.iter().map(Vec::len).sum()))
                .collect();
            format!("read {got:?} held {held:?}")
        }
        Response::Done => "done".into(),
        Response::Error { kind, message } => format!("error {kind:?}: {message}"),
        Response::Version { .. } => "version".into(),
        Response::MutableRead { shares } => {
            let got: Vec<(u16, usize)> = shares
                .iter()
                .map(|s| (s.shnum, s.chunks.iter().map(Vec::len).sum()))
                .collect();
            format!("mutable read {got:?}")
        }
        Response::MutableWrite { applied, reads } => {
            format!(
                "mutable write applied {applied}, {} shares read",
                reads.len()
            )
        }
    }
}

fn event_summary(ev: &MachineEvent) -> String {
    match ev {
        MachineEvent::Dir { event, conflict } => match event {
            DirEvent::Progress if *conflict => "directory edit conflicted, will retry".into(),
            DirEvent::Progress => "directory progress".into(),
            DirEvent::NeedKey => "directory op needs a key".into(),
            DirEvent::Done(DirDone::Listed(d)) => format!("list done, {} entries", d.len()),
            DirEvent::Done(d) => format!("directory op done: {d:?}"),
            DirEvent::Failed(e) => format!("directory op failed: {e}"),
        },
        MachineEvent::Status(r) => format!("status of {} servers", r.servers.len()),
        MachineEvent::Upload(UploadEvent::NeedSegment { index, .. }) => {
            format!("upload needs segment {index}")
        }
        MachineEvent::Upload(UploadEvent::Done(r)) => {
            format!("upload done, happiness {}", r.happiness)
        }
        MachineEvent::Upload(e) => format!("upload {e:?}"),
        MachineEvent::Download(DownloadEvent::Data { offset, bytes }) => {
            format!("download data {}+{}", offset, bytes.len())
        }
        MachineEvent::Download(e) => format!("download {e:?}"),
        MachineEvent::Publish(PublishEvent::Done(r)) => format!(
            "publish done, version {} ({} shares placed)",
            r.version.seqnum,
            r.placed.len()
        ),
        MachineEvent::Publish(PublishEvent::Failed(e)) => format!("publish failed: {e}"),
        MachineEvent::Modify(ModifyEvent::Done(r)) => format!(
            "in-place write done, version {} ({} shares placed)",
            r.version.seqnum,
            r.placed.len()
        ),
        MachineEvent::Modify(ModifyEvent::Failed(e)) => format!("in-place write failed: {e}"),
        MachineEvent::Retrieve(RetrieveEvent::Data { offset, bytes }) => {
            format!("retrieve data {}+{}", offset, bytes.len())
        }
        MachineEvent::Retrieve(RetrieveEvent::CorruptShare {
            server,
            shnum,
            error,
        }) => format!("retrieve: corrupt share {shnum} on {server:?}: {error}"),
        MachineEvent::Retrieve(RetrieveEvent::Done(r)) => format!(
            "retrieve done, version {} ({} bytes)",
            r.version.seqnum, r.version.data_length
        ),
        MachineEvent::Retrieve(RetrieveEvent::Failed(e)) => format!("retrieve failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::NetConfig;
    use crate::plan::PlannedOp;

    /// One client, five servers 10 ms away, and the given ops.
    fn mutable_plan(ops: Vec<(u64, OpSpec)>) -> Plan {
        Plan {
            seed: 7,
            params: SimParams {
                encoding: lafs_core::immutable::EncodingParams {
                    k: 3,
                    happy: 3,
                    n: 10,
                    max_segment_size: 32 * 1024,
                },
                ..SimParams::default()
            },
            net: NetConfig::uniform(1, 5, Duration::from_millis(10), 10_000_000, 50_000_000),
            files: Vec::new(),
            ops: ops
                .into_iter()
                .map(|(ms, spec)| PlannedOp {
                    start: Start::At(Instant(ms * 1000)),
                    client: 0,
                    spec,
                })
                .collect(),
            faults: Vec::new(),
            dir_calls: Vec::new(),
        }
    }

    fn create(format: MutableFormat, size: u64) -> OpSpec {
        OpSpec::MutableCreate {
            file: 0,
            format,
            size,
        }
    }

    /// Files 0..3 uploaded, directory 0 made, then three clients linking into it at once
    /// under different names, an unlink, and a listing.
    fn directory_plan() -> Plan {
        let mut plan = mutable_plan(Vec::new());
        plan.net = NetConfig::uniform(3, 5, Duration::from_millis(10), 10_000_000, 50_000_000);
        plan.files = vec![4_000, 5_000, 6_000];
        let op = |ms: u64, client: usize, spec: OpSpec| PlannedOp {
            start: Start::At(Instant(ms * 1000)),
            client,
            spec,
        };
        plan.ops = vec![
            op(0, 0, OpSpec::Upload { file: 0 }),
            op(0, 1, OpSpec::Upload { file: 1 }),
            op(0, 2, OpSpec::Upload { file: 2 }),
            op(0, 0, OpSpec::DirCreate { dir: 0 }),
            op(
                2_000,
                0,
                OpSpec::DirLink {
                    dir: 0,
                    name: 1,
                    file: 0,
                },
            ),
            op(
                2_001,
                1,
                OpSpec::DirLink {
                    dir: 0,
                    name: 2,
                    file: 1,
                },
            ),
            op(
                2_002,
                2,
                OpSpec::DirLink {
                    dir: 0,
                    name: 3,
                    file: 2,
                },
            ),
            op(4_000, 1, OpSpec::DirUnlink { dir: 0, name: 2 }),
            op(6_000, 2, OpSpec::DirList { dir: 0 }),
        ];
        plan
    }

    #[test]
    fn concurrent_writers_of_one_directory_all_end_linked() {
        let report = Sim::new(&directory_plan(), false).run_to_end();
        assert!(report.violations.is_empty(), "{:?}", report.violations);
        assert_eq!(report.dir_edits_ok, 5, "create, three links, an unlink");
        assert_eq!(report.dir_lists_ok, 1);
        assert_eq!(report.final_checks, 4, "three files and the directory");
    }

    #[test]
    fn a_listing_missing_an_acknowledged_link_is_a_lost_link() {
        let mut sim = Sim::new(&directory_plan(), false);
        sim.run_until(Some(Instant(5_000_000)));
        assert_eq!(sim.report.dir_edits_ok, 5);
        // Pretend name 4 had been linked and acknowledged: the final listing lacks it.
        let cap = sim.files[0].cap.clone().expect("file 0 acknowledged");
        let edit = sim.dirs[0].start_edit(4);
        let linked = EditOutcome::Linked {
            cap,
            replaced: None,
        };
        assert_eq!(sim.dirs[0].end_edit(4, 0, &edit, &linked), None);
        let report = sim.run_to_end();
        assert!(
            matches!(
                report.violations.as_slice(),
                [Violation::LostLink {
                    dir: 0,
                    name: 4,
                    ..
                }]
            ),
            "{:?}",
            report.violations
        );
    }

    #[test]
    fn a_read_of_bytes_no_publish_wrote_is_a_torn_read() {
        let plan = mutable_plan(vec![
            (0, create(MutableFormat::Sdmf, 5_000)),
            (
                5_000,
                OpSpec::MutableRead {
                    file: 0,
                    range: None,
                },
            ),
        ]);
        let mut sim = Sim::new(&plan, false);
        sim.run_until(Some(Instant(4_000_000)));
        assert!(sim.mfiles[0].created);
        // Pretend the create had written other bytes: the read's bytes then match nothing.
        let mut other = sim.mfiles[0].attempts[0].to_vec();
        other[4_000] ^= 1;
        sim.mfiles[0].attempts[0] = other.into();
        let report = sim.run_to_end();
        assert!(
            matches!(
                report.violations.first(),
                Some(Violation::TornRead {
                    op: 1,
                    file: 0,
                    seqnum: 1,
                    ..
                })
            ),
            "{:?}",
            report.violations
        );
    }

    #[test]
    fn a_range_read_is_checked_against_its_slice_of_the_version() {
        let size = 2 * lafs_core::mutable::layout::MDMF_MAX_SEGMENT_SIZE + 10;
        let plan = mutable_plan(vec![
            (0, create(MutableFormat::Mdmf, size)),
            (
                5_000,
                OpSpec::MutableRead {
                    file: 0,
                    range: Some((131_000, 2_000)),
                },
            ),
        ]);
        let clean = Sim::run(&plan);
        assert!(clean.violations.is_empty(), "{:?}", clean.violations);
        assert_eq!(clean.retrieves_ok, 2, "the range read and the final check");
        // A byte inside the range differs: caught; one outside it: not the read's business.
        for (at, torn) in [(132_000, true), (10, false)] {
            let mut sim = Sim::new(&plan, false);
            sim.run_until(Some(Instant(4_000_000)));
            let mut other = sim.mfiles[0].attempts[0].to_vec();
            other[at] ^= 1;
            sim.mfiles[0].attempts[0] = other.into();
            let report = sim.run_to_end();
            let tears = report
                .violations
                .iter()
                .filter(|v| matches!(v, Violation::TornRead { op: 1, .. }))
                .count();
            assert_eq!(tears, usize::from(torn), "{:?}", report.violations);
        }
    }

    #[test]
    fn good_mutable_shares_counts_intact_shares_of_one_version() {
        let plan = mutable_plan(vec![
            (0, create(MutableFormat::Sdmf, 1_000)),
            (
                3_000,
                OpSpec::MutableUpdate {
                    file: 0,
                    size: 2_000,
                    warm: true,
                },
            ),
        ]);
        let mut sim = Sim::new(&plan, false);
        sim.run_until(Some(Instant(2_000_000)));
        let v1 = sim.newest_acked(0).expect("create acknowledged");
        assert_eq!(sim.good_mutable_shares(0, &v1, None), 10);
        sim.inject(Fault::Corrupt {
            server: Some(0),
            file: None,
        });
        assert_eq!(sim.good_mutable_shares(0, &v1, None), 9);
        let only: BTreeSet<usize> = [1].into();
        assert_eq!(sim.good_mutable_shares(0, &v1, Some(&only)), 2);
        let report = sim.run_to_end();
        assert!(report.violations.is_empty(), "{:?}", report.violations);
        let v2 = sim.newest_acked(0).expect("update acknowledged");
        assert_eq!(v2.seqnum, 2);
        assert_eq!(sim.good_mutable_shares(0, &v1, None), 0, "all overwritten");
        assert_eq!(sim.good_mutable_shares(0, &v2, None), 10);
    }
}
