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
use lafs_core::codec::CodecKind;
use lafs_core::immutable::download::{ChkFile, Download, DownloadConfig, DownloadEvent};
use lafs_core::immutable::encode::convergent_key;
use lafs_core::immutable::upload::{Upload, UploadConfig, UploadEvent};
use lafs_core::op::{RequestId, Transmit};
use lafs_core::placement::{ServerDescriptor, ServerId};
use lafs_core::server::{ConnectionId, ServerConfig, StorageServer};
use lafs_core::store::{MemoryShareStore, ShareStore};
use lafs_core::time::{Duration, Instant};
use lafs_core::wire::{encode_request, encode_response, Request, Response, StorageIndex};
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::net::{Dir, Network};
use crate::plan::{Fault, OpSpec, Plan, SimParams, Start};
use crate::queue::EventQueue;
use crate::report::{OpKind, OpTiming, RunReport, Violation};
use crate::rng::{file_bytes, sub_rng, Concern};
use crate::trace::Trace;

const CONVERGENCE_SECRET: &[u8] = b"lafs-sim convergence secret.....";
const LEASE_SECRET: &[u8] = b"lafs-sim lease secret...........";
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
}

#[derive(Debug)]
enum MachineEvent {
    Upload(UploadEvent),
    Download(DownloadEvent),
}

impl Machine {
    fn poll_transmit(&mut self) -> Option<Transmit> {
        match self {
            Machine::Idle => None,
            Machine::Upload(m) => m.poll_transmit(),
            Machine::Download(m) => m.poll_transmit(),
        }
    }
    fn poll_event(&mut self) -> Option<MachineEvent> {
        match self {
            Machine::Idle => None,
            Machine::Upload(m) => m.poll_event().map(MachineEvent::Upload),
            Machine::Download(m) => m.poll_event().map(MachineEvent::Download),
        }
    }
    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Machine::Idle => None,
            Machine::Upload(m) => m.poll_timeout(),
            Machine::Download(m) => m.poll_timeout(),
        }
    }
    fn handle_input(&mut self, now: Instant, from: ServerId, id: RequestId, r: Response) {
        match self {
            Machine::Idle => {}
            Machine::Upload(m) => m.handle_input(now, from, id, r),
            Machine::Download(m) => m.handle_input(now, from, id, r),
        }
    }
    fn handle_server_lost(&mut self, now: Instant, server: ServerId) {
        match self {
            Machine::Idle => {}
            Machine::Upload(m) => m.handle_server_lost(now, server),
            Machine::Download(m) => m.handle_server_lost(now, server),
        }
    }
    fn handle_timeout(&mut self, now: Instant) {
        match self {
            Machine::Idle => {}
            Machine::Upload(m) => m.handle_timeout(now),
            Machine::Download(m) => m.handle_timeout(now),
        }
    }
    fn cancel(&mut self, now: Instant) {
        match self {
            Machine::Idle => {}
            Machine::Upload(m) => m.cancel(now),
            Machine::Download(m) => m.cancel(),
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
            sim.ops.push(OpState {
                client: op.client,
                start: op.start,
                spec: op.spec,
                kind: match op.spec {
                    OpSpec::Upload { .. } => OpKind::Upload,
                    _ => OpKind::Download,
                },
                file: None,
                machine: Machine::Idle,
                started: None,
                finished: None,
                timer_at: None,
                used: BTreeSet::new(),
                delivered: 0,
                last_event: String::new(),
            });
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
        while let Some((at, seq, ev)) = self.queue.pop() {
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
        let file = match self.ops[op].spec {
            OpSpec::Upload { file } | OpSpec::Download { file } => Some(file),
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
            OpKind::Upload => {
                let data = self.file_data(file);
                let p = self.params.encoding;
                let key = *self.files[file].key.get_or_insert_with(|| {
                    convergent_key(&data, CONVERGENCE_SECRET, p.k, p.n, p.max_segment_size)
                });
                let config = UploadConfig {
                    params: p,
                    codec: CodecKind::Zfec,
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

    /// The drain rule: transmits and events until both are empty, then one timer.
    fn drain(&mut self, op: usize) {
        let mut machine = std::mem::replace(&mut self.ops[op].machine, Machine::Idle);
        loop {
            let mut progressed = false;
            while let Some(t) = machine.poll_transmit() {
                progressed = true;
                self.transmit(op, t);
            }
            while let Some(ev) = machine.poll_event() {
                progressed = true;
                self.on_event(op, &mut machine, ev);
            }
            if !progressed {
                break;
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
        let s = &mut self.servers[server];
        let conn = ConnectionId(((client as u64) << 32) | u64::from(epoch));
        let response = s.server.handle_request(now, conn, request);
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
        self.report.timings.push(OpTiming {
            kind: o.kind,
            file,
            size: self.files.get(file).map_or(0, |f| f.size),
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
            self.ops.push(OpState {
                client: 0,
                start: Start::At(self.now),
                spec: OpSpec::Download { file },
                kind: OpKind::FinalCheck,
                file: None,
                machine: Machine::Idle,
                started: None,
                finished: None,
                timer_at: None,
                used: BTreeSet::new(),
                delivered: 0,
                last_event: String::new(),
            });
            self.report.final_checks += 1;
            self.queue.push(self.now, Ev::Start(op));
        }
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
    }
}
