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
use lafs_core::client::{Driven, Output};
use lafs_core::crypto::key_source::{FixtureKeys, KeySource};
use lafs_core::dirnode::ops::{
    DirCache, DirConfig, DirOpError, Link, LinkEvent, LinkOptions, List, ListEvent, Mkdir,
    MkdirEvent, Unlink, UnlinkEvent,
};
use lafs_core::dirnode::{ChildCap, Directory, Overwrite};
use lafs_core::hashtree::Hash;
use lafs_core::immutable::download::{ChkFile, Download, DownloadConfig, DownloadEvent};
use lafs_core::immutable::encode::convergent_key;
use lafs_core::immutable::upload::{Upload, UploadConfig, UploadEvent};
use lafs_core::mutable::layout::{parse_header, MutableFormat};
use lafs_core::mutable::{
    FileKeys, Publish, PublishConfig, PublishError, PublishEvent, PublishResult, Retrieve,
    RetrieveConfig, RetrieveEvent, RetrieveResult, ServerMap,
};
use lafs_core::op::{ClientOp, RequestId, Transmit};
use lafs_core::placement::{ServerDescriptor, ServerId};
use lafs_core::server::{ConnectionId, ServerConfig, StorageServer};
use lafs_core::store::{MemoryShareStore, ShareStore};
use lafs_core::time::{Duration, Instant};
use lafs_core::wire::{encode_request, encode_response, Request, Response, StorageIndex};
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::keys::fixture_keys;
use crate::net::{Dir, Network};
use crate::plan::{Fault, OpSpec, Plan, SimParams, Start};
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
    Retrieve(Box<Retrieve>),
    Mkdir(Box<Mkdir>),
    Link(Box<Link>),
    Unlink(Box<Unlink>),
    List(Box<List>),
}

#[derive(Debug)]
enum MachineEvent {
    Upload(UploadEvent),
    Download(DownloadEvent),
    Publish(PublishEvent),
    Retrieve(RetrieveEvent),
    Mkdir(MkdirEvent),
    Link(LinkEvent),
    Unlink(UnlinkEvent),
    List(ListEvent),
}

/// Runs `$body` with `$m` bound to whichever state machine `$machine` holds; `$idle` if none.
macro_rules! with_machine {
    ($machine:expr, $m:ident => $body:expr, idle => $idle:expr) => {
        match $machine {
            Machine::Idle => $idle,
            Machine::Upload($m) => $body,
            Machine::Download($m) => $body,
            Machine::Publish($m) => $body,
            Machine::Retrieve($m) => $body,
            Machine::Mkdir($m) => $body,
            Machine::Link($m) => $body,
            Machine::Unlink($m) => $body,
            Machine::List($m) => $body,
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
            Machine::Retrieve(m) => m.poll_event().map(MachineEvent::Retrieve),
            Machine::Mkdir(m) => m.poll_event().map(MachineEvent::Mkdir),
            Machine::Link(m) => m.poll_event().map(MachineEvent::Link),
            Machine::Unlink(m) => m.poll_event().map(MachineEvent::Unlink),
            Machine::List(m) => m.poll_event().map(MachineEvent::List),
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
            // Mutable and directory operations have nothing to abort: dropping them is enough.
            Machine::Publish(_)
            | Machine::Retrieve(_)
            | Machine::Mkdir(_)
            | Machine::Link(_)
            | Machine::Unlink(_)
            | Machine::List(_) => {}
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
    /// Directory edits of a name: how the name's state saw the start.
    name_edit: Option<NameEdit>,
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
            name_edit: None,
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
}

/// What the simulator knows of one directory.
#[derive(Debug, Default)]
struct DirState {
    cap: Option<Cap>,
    /// A create is running or done (the key is spent then).
    creating: bool,
    names: BTreeMap<u32, NameState>,
    /// An edit failed part-way through its publish (its write may still land late), or ran
    /// after faults had split the servers: versions of one sequence number may compete, so no
    /// listing of this directory is checked any more.
    poisoned: bool,
}

/// One edit of a directory name, as the name's state saw its start.
#[derive(Clone, Copy, Debug)]
struct NameEdit {
    /// The name's start count including this edit.
    starts: u64,
    /// No other edit of the name was running when this one started.
    alone: bool,
}

/// What one name of a directory must link, as far as acknowledgements tell.
#[derive(Debug)]
struct NameState {
    /// Edits of this name running now.
    running: usize,
    /// Edits of this name started so far.
    starts: u64,
    /// The operation whose acknowledgement settled the name.
    settled_by: Option<usize>,
    /// `Some(cap)` / `Some(None)`: linked to `cap` / absent, by an edit acknowledged while no
    /// other edit of the name ran or was left unfinished since; `None`: unknown (an edit
    /// failed or overlapped another, so either outcome is legitimate).
    settled: Option<Option<Cap>>,
}

impl Default for NameState {
    fn default() -> Self {
        // A name no edit has touched is absent.
        NameState {
            running: 0,
            starts: 0,
            settled: Some(None),
            settled_by: None,
        }
    }
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
    dirs: Vec<DirState>,
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
                OpSpec::MutableCreate { .. } | OpSpec::MutableUpdate { .. } => OpKind::Publish,
                OpSpec::MutableRead { .. } => OpKind::Retrieve,
                OpSpec::Download { .. } | OpSpec::DownloadAny => OpKind::Download,
                OpSpec::DirCreate { .. } | OpSpec::DirLink { .. } | OpSpec::DirUnlink { .. } => {
                    OpKind::DirEdit
                }
                OpSpec::DirList { .. } => OpKind::DirList,
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

    /// The store of server `i` (for scenario tests).
    /// What plan operation `op` (a mutable read) delivered, if it finished.
    pub fn read_bytes(&self, op: usize) -> Option<&[u8]> {
        let o = self.ops.get(op)?;
        o.finished.is_some().then_some(o.read.as_slice())
    }

    pub fn store(&self, server: usize) -> &MemoryShareStore {
        self.servers[server].server.store()
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

    /// Runs the events due up to `until` (all of them if `None`).
    fn run_until(&mut self, until: Option<Instant>) {
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
        match self.ops[op].spec {
            OpSpec::MutableCreate { file, format, size } => {
                return self.start_create(op, file, format, size)
            }
            OpSpec::MutableUpdate { file, size, warm } => {
                return self.start_update(op, file, size, warm)
            }
            OpSpec::MutableRead { file, range } => return self.start_read(op, file, range),
            OpSpec::DirCreate { .. }
            | OpSpec::DirLink { .. }
            | OpSpec::DirUnlink { .. }
            | OpSpec::DirList { .. } => return self.start_dir_op(op),
            OpSpec::Upload { .. } | OpSpec::Download { .. } | OpSpec::DownloadAny => {}
        }
        let file = match self.ops[op].spec {
            OpSpec::Upload { file } | OpSpec::Download { file } => Some(file),
            OpSpec::MutableCreate { .. }
            | OpSpec::MutableUpdate { .. }
            | OpSpec::MutableRead { .. }
            | OpSpec::DirCreate { .. }
            | OpSpec::DirLink { .. }
            | OpSpec::DirUnlink { .. }
            | OpSpec::DirList { .. } => None,
            OpSpec::DownloadAny => {
                let acked: Vec<usize> = (0..self.files.len())
                    .filter(|&f| self.files[f].cap.is_some())
                    .collect();
                acked.choose(&mut self.workload_rng).copied()
            }
        };
        let Some(file) = file else {
            self.report.downloads_skipped += 1;
            return self.end_op(op, false);
        };
        self.ops[op].file = Some(file);
        match self.ops[op].kind {
            OpKind::Publish | OpKind::Retrieve | OpKind::DirEdit | OpKind::DirList => {}
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
                        let d = Download::new(now, config, chk, &self.descriptors);
                        self.ops[op].machine = Machine::Download(Box::new(d));
                    }
                    Some(Cap::Lit { data }) => {
                        // The cap holds the bytes: no network, but they are still checked.
                        let want = self.file_data(file);
                        if data[..] != want[..] {
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
                self.ops[op].used.insert((server, epoch));
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
                    let size = self.files[file].size;
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
                    if kind == OpKind::Download
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
            MachineEvent::Publish(ev) => self.on_publish_event(op, file, ev),
            MachineEvent::Retrieve(ev) => self.on_retrieve_event(op, file, ev),
            MachineEvent::Mkdir(MkdirEvent::NeedKey) => {
                if let Machine::Mkdir(m) = machine {
                    match self.keys.next_key() {
                        Ok(key) => m.provide_key(now, key),
                        Err(e) => m.key_unavailable(e.to_string()),
                    }
                }
            }
            MachineEvent::Mkdir(MkdirEvent::Done(cap)) => {
                self.return_dir_states(op, machine);
                self.end_dir_op(op, Ok(Some(cap)));
            }
            MachineEvent::Link(LinkEvent::Done(_)) | MachineEvent::Unlink(UnlinkEvent::Done(_)) => {
                self.return_dir_states(op, machine);
                self.end_dir_op(op, Ok(None));
            }
            MachineEvent::List(ListEvent::Done(dir)) => {
                self.return_dir_states(op, machine);
                self.check_listing(op, &dir);
                self.end_dir_op(op, Ok(None));
            }
            MachineEvent::Mkdir(MkdirEvent::Failed(e))
            | MachineEvent::Link(LinkEvent::Failed(e))
            | MachineEvent::Unlink(UnlinkEvent::Failed(e))
            | MachineEvent::List(ListEvent::Failed(e)) => {
                self.return_dir_states(op, machine);
                self.end_dir_op(op, Err(e));
            }
            MachineEvent::Mkdir(MkdirEvent::Progress(_))
            | MachineEvent::Link(LinkEvent::Progress(_) | LinkEvent::NeedKey)
            | MachineEvent::Unlink(UnlinkEvent::Progress(_))
            | MachineEvent::List(ListEvent::Progress(_)) => {}
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

    /// Start a directory operation, or skip it while what it needs is not acknowledged.
    fn start_dir_op(&mut self, op: usize) {
        let now = self.now;
        let spec = self.ops[op].spec;
        let client = self.ops[op].client;
        let dir = match spec {
            OpSpec::DirCreate { dir }
            | OpSpec::DirLink { dir, .. }
            | OpSpec::DirUnlink { dir, .. }
            | OpSpec::DirList { dir } => dir,
            _ => unreachable!("start_dir_op is called for directory operations only"),
        };
        if self.dirs.len() <= dir {
            self.dirs.resize_with(dir + 1, DirState::default);
        }
        self.ops[op].file = Some(dir);
        self.ops[op].size = Some(0);
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&file_bytes(self.seed ^ DIR_SEED_SALT, op as u64, 32));
        let config = self.dir_config();
        let cap = self.dirs[dir].cap.clone();
        let caches = self.dir_caches.len().max(1);
        let cache = &mut self.dir_caches[client % caches];
        let machine = match (spec, cap) {
            (OpSpec::DirCreate { .. }, None) if !self.dirs[dir].creating => {
                self.dirs[dir].creating = true;
                Machine::Mkdir(Box::new(Mkdir::new(now, config, seed, MutableFormat::Sdmf)))
            }
            (OpSpec::DirLink { name, file, .. }, Some(root)) => {
                let Some(file_cap) = self.files.get(file).and_then(|f| f.cap.clone()) else {
                    return self.skip_dir(op);
                };
                self.ops[op].name_edit =
                    Some(self.dirs[dir].names.entry(name).or_default().start());
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
                self.ops[op].name_edit =
                    Some(self.dirs[dir].names.entry(name).or_default().start());
                Machine::Unlink(Box::new(Unlink::new(
                    now,
                    config,
                    seed,
                    cache,
                    root,
                    vec![name_of(name)],
                )))
            }
            (OpSpec::DirList { .. }, Some(root)) => {
                Machine::List(Box::new(List::new(now, config, seed, cache, root)))
            }
            _ => return self.skip_dir(op),
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
        self.end_op(op, false);
    }

    /// Give the client's directory cache what the operation learned.
    fn return_dir_states(&mut self, op: usize, machine: &mut Machine) {
        let n = self.dir_caches.len().max(1);
        let cache = &mut self.dir_caches[self.ops[op].client % n];
        match machine {
            Machine::Mkdir(m) => m.return_to(cache),
            Machine::Link(m) => m.return_to(cache),
            Machine::Unlink(m) => m.return_to(cache),
            Machine::List(m) => m.return_to(cache),
            _ => {}
        }
    }

    /// A directory operation ended: `Ok(Some(cap))` for a create, `Ok(None)` for others.
    fn end_dir_op(&mut self, op: usize, outcome: Result<Option<Cap>, DirOpError>) {
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
        // listing check stands down for such a directory, as LostWrite does for mutable files.
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
        match spec {
            OpSpec::DirCreate { dir } => {
                if let Ok(Some(cap)) = outcome {
                    self.dirs[dir].cap = Some(cap);
                }
            }
            OpSpec::DirLink { dir, name, file } => {
                let cap = self.files.get(file).and_then(|f| f.cap.clone());
                if let Some(edit) = self.ops[op].name_edit {
                    self.dirs[dir]
                        .names
                        .entry(name)
                        .or_default()
                        .end(op, edit, ok, cap);
                }
                self.dirs[dir].poisoned |= may_land_late;
            }
            OpSpec::DirUnlink { dir, name } => {
                if let Some(edit) = self.ops[op].name_edit {
                    self.dirs[dir]
                        .names
                        .entry(name)
                        .or_default()
                        .end(op, edit, ok, None);
                }
                self.dirs[dir].poisoned |= may_land_late;
            }
            _ => {}
        }
        self.end_op(op, ok);
    }

    /// A fault-free final listing must agree with every settled name.
    fn check_listing(&mut self, op: usize, listing: &Directory) {
        let OpSpec::DirList { dir } = self.ops[op].spec else {
            return;
        };
        if self.ops[op].kind != OpKind::FinalCheck || self.dirs[dir].poisoned {
            return;
        }
        self.report.dir_listings_checked += 1;
        for (&name, state) in &self.dirs[dir].names {
            let Some(want) = &state.settled else {
                continue;
            };
            let got = listing.get(&name_of(name)).map(|c| &c.cap);
            let detail = match (want, got) {
                (Some(cap), Some(ChildCap::Known(have))) if have == cap => continue,
                (None, None) => continue,
                (Some(_), None) => "an acknowledged link is missing",
                (Some(_), Some(_)) => "an acknowledged link points elsewhere",
                (None, Some(_)) => "an acknowledged unlink came back",
            };
            let detail = match state.settled_by {
                Some(by) => format!("{detail} (acknowledged to op {by})"),
                None => detail.to_string(),
            };
            self.report
                .violations
                .push(Violation::LostLink { dir, name, detail });
        }
    }

    fn skip_mutable(&mut self, op: usize) {
        self.report.mutable_skipped += 1;
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

    fn on_publish_event(&mut self, op: usize, file: usize, ev: PublishEvent) {
        match ev {
            PublishEvent::Done(result) => {
                self.report.publishes_ok += 1;
                let result: PublishResult = *result;
                let v = &result.version;
                let client = self.ops[op].client;
                let m = &mut self.mfiles[file];
                if let Some(attempt) = self.ops[op].attempt {
                    m.versions.insert((v.seqnum, v.root_hash), attempt);
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
            PublishEvent::Failed(e) => {
                self.report.publishes_failed += 1;
                if matches!(e, PublishError::Conflict { .. }) {
                    self.report.conflicts += 1;
                }
                self.failure_reason("publish", &e.to_string());
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
        let known = m.versions.get(&(v.seqnum, v.root_hash)).copied();
        let matched = match known {
            Some(i) => m.attempts.get(i).is_some_and(|c| fits(c)).then_some(i),
            None => m.attempts.iter().position(|c| fits(c)),
        };
        match matched {
            Some(i) if known.is_none() && whole => {
                // An unacknowledged version, now identified: later reads must agree.
                self.mfiles[file]
                    .versions
                    .insert((v.seqnum, v.root_hash), i);
            }
            Some(_) => {}
            None => {
                let detail = if known.is_some() {
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
        if o.attempt.is_some() {
            if let Some(m) = self.mfiles.get_mut(file) {
                m.publishing = m.publishing.saturating_sub(1);
            }
        }
        let size = match o.size {
            Some(size) => size,
            None => self.files.get(file).map_or(0, |f| f.size),
        };
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
            let op = self.ops.len();
            self.ops.push(OpState::new(
                0,
                Start::At(self.now),
                OpSpec::Download { file },
                OpKind::FinalCheck,
            ));
            self.report.final_checks += 1;
            self.queue.push(self.now, Ev::Start(op));
        }
        for dir in 0..self.dirs.len() {
            if self.dirs[dir].cap.is_none() {
                continue;
            }
            let op = self.ops.len();
            self.ops.push(OpState::new(
                0,
                Start::At(self.now),
                OpSpec::DirList { dir },
                OpKind::FinalCheck,
            ));
            self.report.final_checks += 1;
            self.queue.push(self.now, Ev::Start(op));
        }
        for file in 0..self.mfiles.len() {
            let Some(newest) = self.newest_acked(file) else {
                continue;
            };
            if self.good_mutable_shares(file, &newest, None) < usize::from(newest.k) {
                self.report.unrecoverable_files += 1;
                continue;
            }
            let op = self.ops.len();
            self.ops.push(OpState::new(
                0,
                Start::At(self.now),
                OpSpec::MutableRead { file, range: None },
                OpKind::FinalCheck,
            ));
            self.report.final_checks += 1;
            self.queue.push(self.now, Ev::Start(op));
        }
    }
}

impl NameState {
    /// An edit of this name starts: what `end` needs to know whether it ran alone.
    fn start(&mut self) -> NameEdit {
        let alone = self.running == 0;
        self.running += 1;
        self.starts += 1;
        self.settled = None;
        NameEdit {
            starts: self.starts,
            alone,
        }
    }

    /// An edit of this name ended. One acknowledged while no other edit of the name was
    /// running when it started or started before it ended settles the name to `linked`.
    fn end(&mut self, op: usize, edit: NameEdit, ok: bool, linked: Option<Cap>) {
        self.running = self.running.saturating_sub(1);
        if ok && edit.alone && self.starts == edit.starts {
            self.settled = Some(linked);
            self.settled_by = Some(op);
        }
    }
}

/// The name a simulated link is stored under.
fn name_of(name: u32) -> String {
    format!("f{name}")
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
        MachineEvent::Mkdir(MkdirEvent::Done(_)) => "mkdir done".to_string(),
        MachineEvent::Mkdir(MkdirEvent::NeedKey) => "mkdir needs a key".to_string(),
        MachineEvent::Mkdir(MkdirEvent::Progress(_)) => "mkdir progress".to_string(),
        MachineEvent::Mkdir(MkdirEvent::Failed(e)) => format!("mkdir failed: {e}"),
        MachineEvent::Link(LinkEvent::Done(_)) => "link done".to_string(),
        MachineEvent::Link(LinkEvent::Failed(e)) => format!("link failed: {e}"),
        MachineEvent::Link(_) => "link progress".to_string(),
        MachineEvent::Unlink(UnlinkEvent::Done(_)) => "unlink done".to_string(),
        MachineEvent::Unlink(UnlinkEvent::Failed(e)) => format!("unlink failed: {e}"),
        MachineEvent::Unlink(_) => "unlink progress".to_string(),
        MachineEvent::List(ListEvent::Done(d)) => format!("list done, {} entries", d.len()),
        MachineEvent::List(ListEvent::Failed(e)) => format!("list failed: {e}"),
        MachineEvent::List(_) => "list progress".to_string(),
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
        let cap = sim.files[0].cap.clone();
        sim.dirs[0].names.insert(
            4,
            NameState {
                running: 0,
                starts: 1,
                settled: Some(cap),
                settled_by: Some(4),
            },
        );
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
