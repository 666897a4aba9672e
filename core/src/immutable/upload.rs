//! The immutable upload state machine.
//!
//! Round trips are the design target:
//! - A file that fits in one segment is ONE request per server: allocate, write the whole share
//!   (header, block, hash trees, extension block) and close, all in one `ImmutableWrite`, servers
//!   answered in parallel. Refusals are re-planned onto the next servers on the ring.
//! - A larger file sends segment 0 with the allocations, waits for placement to settle (the only
//!   barrier: until then segment 0's blocks are kept so refused shares can move), then streams
//!   the remaining segments behind a per-server window of unacknowledged bytes, closing each share
//!   with its last write.
//!
//! Plaintext enters one segment at a time: the upload emits [`UploadEvent::NeedSegment`] and the
//! caller answers with [`Upload::provide_segment`]. The convergent key needs a pass over the whole
//! plaintext first, so the caller computes it (e.g. with
//! [`crate::crypto::convergent_key_hasher`]) and passes it in.
//!
//! Calls, grouped as everywhere in the core: getters (`storage_index`, `bytes_held`), `handle_*`
//! for responses, lost servers and timers, mutators (`provide_segment`, `cancel`), and `poll_*`
//! (transmit, then event, then timeout).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use crate::cap::Cap;
use crate::codec::{Codec, CodecError, CodecKind};
use crate::crypto::storage_index_from_key;
use crate::immutable::encode::{ChkEncoder, EncodeError, EncodedFile};
use crate::immutable::layout::ShareLayout;
use crate::immutable::params::{EncodingParams, Geometry, ParamsError, LIT_THRESHOLD};
use crate::op::{FileLeaseSecrets, RequestId, Transmit};
use crate::placement::{
    permuted_order, Assignment, Outcome, PlacementError, PlacementParams, Planner, RefusalReason,
    ServerDescriptor, ServerId, Status,
};
use crate::time::{Duration, Instant};
use crate::wire::{Request, Response, ShareWrite, ShareWriteOutcome, StorageIndex};

/// How an upload behaves; `Default` is Tahoe's 3-of-10, happy 7, 1 MiB segments, zfec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UploadConfig {
    pub params: EncodingParams,
    pub codec: CodecKind,
    /// Bytes sent to one server and not yet acknowledged before the upload stops asking for more
    /// plaintext. Size it to the bandwidth-delay product (8 MiB covers 1 Gb/s at 60 ms).
    pub window_bytes: u64,
    /// A request unanswered this long counts as a lost server.
    pub request_timeout: Duration,
}

impl Default for UploadConfig {
    fn default() -> Self {
        UploadConfig {
            params: EncodingParams::default(),
            codec: CodecKind::Zfec,
            window_bytes: 8 << 20,
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// Why an upload failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadError {
    #[error("bad encoding parameters: {0}")]
    Params(#[from] ParamsError),
    #[error("bad codec parameters: {0}")]
    Codec(#[from] CodecError),
    #[error("encoding failed: {0}")]
    Encode(#[from] EncodeError),
    #[error("{0}")]
    Placement(#[from] PlacementError),
    #[error("expected segment {expected} ({len} bytes), but was given {got} bytes (or no segment was asked for)")]
    UnexpectedPlaintext { expected: u64, len: u64, got: usize },
    #[error("upload cancelled")]
    Cancelled,
}

/// What the upload tells its driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UploadEvent {
    /// Provide this segment's plaintext with [`Upload::provide_segment`].
    NeedSegment {
        index: u64,
        offset: u64,
        length: u64,
    },
    /// Segments encoded and handed to the network so far.
    Progress {
        segments_sent: u64,
        total_segments: u64,
    },
    /// A server refused shares or was lost; the upload carries on if it can.
    ServerProblem {
        server: ServerId,
        problem: String,
    },
    /// Every share is durably stored on enough servers.
    Done(UploadResult),
    Failed(UploadError),
}

/// A finished upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadResult {
    pub cap: Cap,
    /// Shares per server (written now or found already there). Empty for LIT caps.
    pub shares: BTreeMap<ServerId, BTreeSet<u16>>,
    /// Servers-of-happiness achieved.
    pub happiness: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// A LIT file: waiting for its bytes.
    Literal,
    /// Waiting for segment 0 (placement starts with it).
    First,
    /// Allocations in flight; segment 0's blocks are kept for re-planning.
    Placing,
    /// Placement settled; streaming the remaining segments.
    Streaming,
    Finished,
}

#[derive(Clone, Debug)]
struct Pending {
    server: ServerId,
    shares: BTreeSet<u16>,
    bytes: u64,
    deadline: Instant,
    allocation: bool,
}

#[derive(Clone, Debug, Default)]
struct Writer {
    shares: BTreeSet<u16>,
    unacked: u64,
    committed: BTreeSet<u16>,
}

/// One immutable upload.
#[derive(Debug)]
pub struct Upload {
    config: UploadConfig,
    key: [u8; 16],
    size: u64,
    storage_index: StorageIndex,
    leases: FileLeaseSecrets,
    phase: Phase,
    geometry: Option<Geometry>,
    layout: Option<ShareLayout>,
    encoder: Option<ChkEncoder>,
    encoded: Option<EncodedFile>,
    planner: Option<Planner>,
    /// Segment 0's blocks while placement may still move shares.
    first_blocks: Option<Vec<Vec<u8>>>,
    writers: BTreeMap<ServerId, Writer>,
    existing: BTreeMap<ServerId, BTreeSet<u16>>,
    lost: BTreeSet<ServerId>,
    pending: BTreeMap<RequestId, Pending>,
    next_id: RequestId,
    /// The segment the caller was asked for and has not provided yet.
    asked: Option<u64>,
    segments_sent: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<UploadEvent>,
}

impl Upload {
    /// Start an upload of `size` bytes encrypted under `key` to `servers`.
    ///
    /// `lease_secret` is the node's lease secret (Tahoe's `private/secret`); per-server lease
    /// secrets are derived from it as Tahoe does.
    pub fn new(
        _now: Instant,
        config: UploadConfig,
        key: [u8; 16],
        size: u64,
        servers: &[ServerDescriptor],
        lease_secret: &[u8],
    ) -> Upload {
        let storage_index = storage_index_from_key(&key);
        let mut up = Upload {
            config,
            key,
            size,
            storage_index,
            leases: FileLeaseSecrets::new(lease_secret, &storage_index),
            phase: Phase::First,
            geometry: None,
            layout: None,
            encoder: None,
            encoded: None,
            planner: None,
            first_blocks: None,
            writers: BTreeMap::new(),
            existing: BTreeMap::new(),
            lost: BTreeSet::new(),
            pending: BTreeMap::new(),
            next_id: 0,
            asked: None,
            segments_sent: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        };
        if size <= LIT_THRESHOLD {
            up.phase = Phase::Literal;
            up.ask(0);
            return up;
        }
        if let Err(e) = up.prepare(servers) {
            up.fail(e);
            return up;
        }
        up.ask(0);
        up
    }

    fn prepare(&mut self, servers: &[ServerDescriptor]) -> Result<(), UploadError> {
        let p = self.config.params;
        p.validate()?;
        let codec: Arc<dyn Codec> = self.config.codec.build(p.k, p.n)?;
        let geometry = Geometry::for_params(self.size, &p, codec.as_ref())?;
        let encoder = ChkEncoder::new(&self.key, geometry, codec)?;
        self.layout = Some(encoder.layout());
        self.geometry = Some(geometry);
        self.encoder = Some(encoder);
        let ring = permuted_order(&self.storage_index, servers);
        let planner = Planner::new(
            &ring,
            PlacementParams {
                k: p.k,
                n: p.n,
                happy: p.happy,
            },
        )?;
        if let Status::Failed(e) = planner.status() {
            return Err(e.into());
        }
        self.planner = Some(planner);
        Ok(())
    }

    // ---- getters ----

    pub fn storage_index(&self) -> &StorageIndex {
        &self.storage_index
    }

    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Finished
    }

    /// Bytes of file data and hashes this upload holds now (for memory-bound tests): the
    /// encoder's segment buffer and hash lists, plus segment 0's blocks while placement runs.
    pub fn bytes_held(&self) -> usize {
        let first: usize = self.first_blocks.iter().flatten().map(Vec::len).sum();
        first + self.encoder.as_ref().map_or(0, ChkEncoder::bytes_held)
    }

    // ---- mutators ----

    /// Give the plaintext of the segment last asked for by [`UploadEvent::NeedSegment`].
    pub fn provide_segment(&mut self, now: Instant, plaintext: &[u8]) {
        let Some(index) = self.asked.take() else {
            if self.phase != Phase::Finished {
                self.fail(UploadError::UnexpectedPlaintext {
                    expected: self.segments_sent,
                    len: 0,
                    got: plaintext.len(),
                });
            }
            return;
        };
        if self.phase == Phase::Literal {
            if plaintext.len() as u64 != self.size {
                return self.fail(UploadError::UnexpectedPlaintext {
                    expected: 0,
                    len: self.size,
                    got: plaintext.len(),
                });
            }
            self.phase = Phase::Finished;
            let cap = Cap::Lit {
                data: plaintext.to_vec(),
            };
            self.events.push_back(UploadEvent::Done(UploadResult {
                cap,
                shares: BTreeMap::new(),
                happiness: 0,
            }));
            return;
        }
        match self.encode_and_send(now, index, plaintext) {
            // With nothing left to write (every share already stored, or every writer lost)
            // the last segment is the last event: finish here, no answer will come.
            Ok(()) => self.check_done(),
            Err(e) => self.fail(e),
        }
    }

    /// Abandon the upload: unfinished shares are aborted on their servers.
    pub fn cancel(&mut self, now: Instant) {
        if self.phase != Phase::Finished {
            self.abort_all(now);
            self.fail(UploadError::Cancelled);
        }
    }

    fn encode_and_send(
        &mut self,
        now: Instant,
        index: u64,
        plaintext: &[u8],
    ) -> Result<(), UploadError> {
        let (Some(encoder), Some(g)) = (self.encoder.as_mut(), self.geometry) else {
            return Ok(());
        };
        let blocks = encoder.encode_segment(plaintext)?;
        let last = index + 1 == g.num_segments;
        if last {
            if let Some(enc) = self.encoder.take() {
                self.encoded = Some(enc.finish()?);
            }
        }
        self.segments_sent = index + 1;
        self.events.push_back(UploadEvent::Progress {
            segments_sent: index + 1,
            total_segments: g.num_segments,
        });
        if index == 0 {
            self.first_blocks = Some(blocks);
            self.phase = Phase::Placing;
            let assignments = self
                .planner
                .as_mut()
                .map(Planner::initial)
                .unwrap_or_default();
            for a in assignments {
                self.send_allocation(now, a);
            }
            self.after_planner_step(now);
        } else {
            self.send_segment(now, index, blocks, last);
        }
        self.maybe_ask_next();
        Ok(())
    }

    // ---- sending ----

    fn send(&mut self, now: Instant, server: ServerId, writes: Vec<ShareWrite>, allocation: bool) {
        let layout = self.layout.expect("layout exists once encoding started");
        let bytes: u64 = writes.iter().map(|w| w.data.len() as u64).sum();
        let shares: BTreeSet<u16> = writes.iter().map(|w| w.shnum).collect();
        let id = self.next_id;
        self.next_id += 1;
        self.pending.insert(
            id,
            Pending {
                server,
                shares,
                bytes,
                deadline: now + self.config.request_timeout,
                allocation,
            },
        );
        self.writers.entry(server).or_default().unacked += bytes;
        let request = Request::ImmutableWrite {
            storage_index: self.storage_index,
            lease: self.leases.for_server(&server),
            allocated_size: layout.share_size(),
            total_shares: self.config.params.n as u16,
            writes,
        };
        self.transmits.push_back(Transmit {
            to: server,
            id,
            request,
        });
    }

    /// Ask `a.server` to allocate `a.shares` and write their first segment (the whole share
    /// when the file has one segment).
    fn send_allocation(&mut self, now: Instant, a: Assignment) {
        let (Some(layout), Some(blocks)) = (self.layout, self.first_blocks.as_ref()) else {
            return;
        };
        let header = layout.header.to_bytes();
        let writes = a
            .shares
            .iter()
            .map(|&sh| {
                let mut data = Vec::with_capacity(header.len() + blocks[sh as usize].len());
                data.extend_from_slice(&header);
                data.extend_from_slice(&blocks[sh as usize]);
                let close = match &self.encoded {
                    Some(file) => {
                        data.extend_from_slice(&file.share_trailer(sh as usize));
                        true
                    }
                    None => false,
                };
                ShareWrite {
                    shnum: sh,
                    allocate: true,
                    offset: 0,
                    data,
                    close,
                }
            })
            .collect();
        self.send(now, a.server, writes, true);
    }

    fn send_segment(&mut self, now: Instant, index: u64, mut blocks: Vec<Vec<u8>>, last: bool) {
        let layout = self.layout.expect("layout exists once encoding started");
        let targets: Vec<(ServerId, BTreeSet<u16>)> = self
            .writers
            .iter()
            .filter(|(s, _)| !self.lost.contains(s))
            .map(|(s, w)| (*s, w.shares.clone()))
            .collect();
        // A share normally lives on one server, so its block moves into the message; the rare
        // extra copies made for happiness get clones.
        let mut uses = vec![0usize; blocks.len()];
        for sh in targets.iter().flat_map(|(_, shares)| shares) {
            uses[usize::from(*sh)] += 1;
        }
        for (server, shares) in targets {
            if shares.is_empty() {
                continue;
            }
            let writes = shares
                .iter()
                .map(|&sh| {
                    let i = usize::from(sh);
                    uses[i] -= 1;
                    let mut data = if uses[i] == 0 {
                        std::mem::take(&mut blocks[i])
                    } else {
                        blocks[i].clone()
                    };
                    if last {
                        if let Some(file) = &self.encoded {
                            data.extend_from_slice(&file.share_trailer(sh as usize));
                        }
                    }
                    ShareWrite {
                        shnum: sh,
                        allocate: false,
                        offset: layout.block_offset(index),
                        data,
                        close: last,
                    }
                })
                .collect();
            self.send(now, server, writes, false);
        }
    }

    fn ask(&mut self, index: u64) {
        let (offset, length) = match self.geometry {
            Some(g) => (g.segment_offset(index), g.segment_len(index)),
            None => (0, self.size),
        };
        self.asked = Some(index);
        self.events.push_back(UploadEvent::NeedSegment {
            index,
            offset,
            length,
        });
    }

    /// Ask for the next segment once placement settled and every live writer has window room.
    fn maybe_ask_next(&mut self) {
        let Some(g) = self.geometry else { return };
        if self.phase != Phase::Streaming
            || self.asked.is_some()
            || self.segments_sent >= g.num_segments
        {
            return;
        }
        let window = self.config.window_bytes;
        let full = self
            .writers
            .iter()
            .any(|(s, w)| !self.lost.contains(s) && w.unacked >= window);
        if !full {
            self.ask(self.segments_sent);
        }
    }

    // ---- inputs ----

    fn server_lost(&mut self, now: Instant, server: ServerId, problem: String) {
        if !self.lost.insert(server) {
            return;
        }
        self.pending.retain(|_, p| p.server != server);
        self.events
            .push_back(UploadEvent::ServerProblem { server, problem });
        if let Some(w) = self.writers.get_mut(&server) {
            w.unacked = 0;
        }
        self.planner_outcome(now, server, Outcome::Disconnected);
    }

    fn planner_outcome(&mut self, now: Instant, server: ServerId, outcome: Outcome) {
        let Some(planner) = self.planner.as_mut() else {
            return;
        };
        let next = planner.on_outcome(server, outcome);
        for a in next {
            if self.phase == Phase::Placing {
                self.send_allocation(now, a);
            }
        }
        self.after_planner_step(now);
    }

    fn after_planner_step(&mut self, now: Instant) {
        let Some(planner) = self.planner.as_ref() else {
            return;
        };
        match planner.status() {
            Status::InProgress => {}
            Status::Done(placement) => {
                if self.phase == Phase::Placing {
                    self.phase = Phase::Streaming;
                    self.first_blocks = None;
                    // Writers the planner did not keep (e.g. lost later) must not get segments.
                    for (server, w) in self.writers.iter_mut() {
                        w.shares.retain(|sh| {
                            placement
                                .writers
                                .get(server)
                                .is_some_and(|s| s.contains(sh))
                        });
                    }
                }
            }
            Status::Failed(e) => {
                self.abort_all(now);
                self.fail(UploadError::Placement(e));
            }
        }
    }

    fn abort_all(&mut self, now: Instant) {
        let targets: Vec<(ServerId, Vec<u16>)> = self
            .writers
            .iter()
            .filter(|(s, w)| !self.lost.contains(s) && !w.shares.is_empty())
            .map(|(s, w)| (*s, w.shares.difference(&w.committed).copied().collect()))
            .collect();
        for (server, shnums) in targets {
            if shnums.is_empty() {
                continue;
            }
            let id = self.next_id;
            self.next_id += 1;
            let _ = now;
            self.transmits.push_back(Transmit {
                to: server,
                id,
                request: Request::ImmutableAbort {
                    storage_index: self.storage_index,
                    shnums,
                },
            });
        }
    }

    fn check_done(&mut self) {
        let Some(g) = self.geometry else { return };
        if self.phase != Phase::Streaming || self.segments_sent < g.num_segments {
            return;
        }
        let live = self
            .writers
            .iter()
            .filter(|(s, w)| !self.lost.contains(s) && !w.shares.is_empty());
        if live.clone().any(|(_, w)| w.committed != w.shares) {
            return;
        }
        let mut shares: BTreeMap<ServerId, BTreeSet<u16>> = BTreeMap::new();
        for (s, w) in live {
            shares.entry(*s).or_default().extend(&w.shares);
        }
        for (s, sh) in &self.existing {
            if !self.lost.contains(s) {
                shares.entry(*s).or_default().extend(sh);
            }
        }
        let happiness = crate::placement::happiness(&shares);
        let p = self.config.params;
        if happiness < p.happy {
            let known = self.planner.as_ref().map_or(0, |pl| pl.ring().len());
            return self.fail(UploadError::Placement(PlacementError::NotEnoughServers {
                needed_happy: p.happy,
                known,
                reachable: known.saturating_sub(self.lost.len()),
                accepting: shares.len(),
                refusing: self.lost.len(),
                happiness,
            }));
        }
        let Some(file) = &self.encoded else { return };
        let cap = Cap::ChkRead {
            key: self.key,
            ueb_hash: file.ueb_hash,
            needed: p.k as u16,
            total: p.n as u16,
            size: self.size,
        };
        self.phase = Phase::Finished;
        self.encoded = None;
        self.events.push_back(UploadEvent::Done(UploadResult {
            cap,
            shares,
            happiness,
        }));
    }

    fn fail(&mut self, e: UploadError) {
        if self.phase == Phase::Finished {
            return;
        }
        self.phase = Phase::Finished;
        self.asked = None;
        self.first_blocks = None;
        self.encoder = None;
        self.pending.clear();
        self.events.push_back(UploadEvent::Failed(e));
    }

    // ---- polls ----
}

impl crate::op::ClientOp for Upload {
    type Event = UploadEvent;

    /// A server answered request `id`.
    fn handle_input(&mut self, now: Instant, from: ServerId, id: RequestId, response: Response) {
        let Some(p) = self.pending.remove(&id) else {
            return;
        };
        if p.server != from || self.phase == Phase::Finished {
            return;
        }
        if let Some(w) = self.writers.get_mut(&from) {
            w.unacked = w.unacked.saturating_sub(p.bytes);
        }
        match response {
            Response::ImmutableWrite { results, held } => {
                let mut written = BTreeSet::new();
                let mut committed = BTreeSet::new();
                let mut already = BTreeSet::new();
                let mut refused = Vec::new();
                for (sh, outcome) in results {
                    if !p.shares.contains(&sh) {
                        continue;
                    }
                    match outcome {
                        ShareWriteOutcome::Written { committed: c } => {
                            written.insert(sh);
                            if c {
                                committed.insert(sh);
                            }
                        }
                        ShareWriteOutcome::AlreadyHave => {
                            already.insert(sh);
                        }
                        ShareWriteOutcome::Refused(r) => refused.push(format!("share {sh}: {r:?}")),
                    }
                }
                // Shares the server holds that we did not write also count (an earlier upload).
                already.extend(held.iter().filter(|sh| !p.shares.contains(sh)));
                if !refused.is_empty() {
                    self.events.push_back(UploadEvent::ServerProblem {
                        server: from,
                        problem: refused.join("; "),
                    });
                }
                if p.allocation {
                    let writer = self.writers.entry(from).or_default();
                    writer.shares.extend(&written);
                    writer.committed.extend(&committed);
                    if !already.is_empty() {
                        self.existing.entry(from).or_default().extend(&already);
                    }
                    self.planner_outcome(
                        now,
                        from,
                        Outcome::Answered {
                            allocated: written,
                            already_have: already,
                        },
                    );
                } else if written.len() + already.iter().filter(|sh| p.shares.contains(sh)).count()
                    == p.shares.len()
                {
                    // "Already have" to a continuing write: the same file finished its upload
                    // first on this connection; the share is stored, which is all we wanted.
                    if let Some(w) = self.writers.get_mut(&from) {
                        w.committed.extend(committed);
                        w.committed
                            .extend(already.iter().filter(|sh| p.shares.contains(sh)));
                    }
                } else {
                    self.server_lost(now, from, "a write was refused mid-upload".into());
                }
            }
            Response::Error { kind, message } => {
                let problem = format!("{kind:?}: {message}");
                if p.allocation {
                    self.events.push_back(UploadEvent::ServerProblem {
                        server: from,
                        problem: problem.clone(),
                    });
                    let outcome = Outcome::Refused {
                        shares: p.shares,
                        reason: RefusalReason::Error(problem),
                    };
                    self.planner_outcome(now, from, outcome);
                } else {
                    self.server_lost(now, from, problem);
                }
            }
            other => self.server_lost(now, from, format!("unexpected response {other:?}")),
        }
        self.maybe_ask_next();
        self.check_done();
    }

    /// The connection to `server` broke: everything in flight to it is lost.
    fn handle_server_lost(&mut self, now: Instant, server: ServerId) {
        if self.phase != Phase::Finished {
            self.server_lost(now, server, "connection lost".into());
            self.maybe_ask_next();
            self.check_done();
        }
    }

    /// Call when [`Upload::poll_timeout`]'s instant has passed.
    fn handle_timeout(&mut self, now: Instant) {
        let expired: BTreeSet<ServerId> = self
            .pending
            .values()
            .filter(|p| p.deadline <= now)
            .map(|p| p.server)
            .collect();
        for server in expired {
            if self.phase != Phase::Finished {
                self.server_lost(now, server, "request timed out".into());
            }
        }
        self.maybe_ask_next();
        self.check_done();
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    fn poll_event(&mut self) -> Option<UploadEvent> {
        self.events.pop_front()
    }

    /// When [`Upload::handle_timeout`] must be called next.
    fn poll_timeout(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.deadline).min()
    }
}
