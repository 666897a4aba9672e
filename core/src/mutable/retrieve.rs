//! Retrieve: read the newest recoverable version of a mutable file (or a byte range of it).
//!
//! Round trips: one to map the servers (every server's share heads; for a small file this
//! already holds every byte needed), then one per segment whose blocks the heads did not cover.
//! Only the segments covering the requested range are fetched. Every block is checked against
//! the share's hash trees, which chain to the signed root hash, before it is decoded; a bad share
//! is reported and replaced by another share of the same version. Readers never mix versions:
//! the version is chosen once, and if it becomes unreadable after data went out the retrieve
//! fails instead of switching.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::layout::{Prefix, Span};
use super::requests::Requests;
use super::servermap::{FileKeys, MapQuery, ServerMap};
use super::share::{
    check_share_hashes, decode_segment, verified_block, ShareError, SignatureCache,
};
use crate::hashtree::Hash;
use crate::op::RequestId;
use crate::placement::{permuted_order, ServerDescriptor, ServerId};
use crate::time::{Duration, Instant};
use crate::wire::{ReadRange, Request, Response};

/// Bytes of each share read by the first round trip: enough for the header, keys, signature and
/// hashes of any share, and every block of a small file (a directory of a few hundred entries).
pub const DEFAULT_INITIAL_READ: u64 = 64 * 1024;

#[derive(Clone, Debug)]
pub struct RetrieveConfig {
    pub initial_read: u64,
    /// A request unanswered this long counts as a lost server.
    pub request_timeout: Duration,
}

impl Default for RetrieveConfig {
    fn default() -> Self {
        RetrieveConfig {
            initial_read: DEFAULT_INITIAL_READ,
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// Why a retrieve failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RetrieveError {
    #[error("no shares of this file were found ({answered} of {asked} servers answered)")]
    NoShares { asked: usize, answered: usize },
    #[error("no version of this file has enough good shares: the best has {found} of the {needed} needed ({bad} shares were bad)")]
    NotEnoughShares {
        seqnum: u64,
        needed: usize,
        found: usize,
        bad: usize,
    },
    #[error("version {seqnum} lost too many shares while it was being read ({needed} needed); nothing of another version was mixed in — retry the read")]
    VersionLost { seqnum: u64, needed: usize },
}

/// What a finished retrieve read.
#[derive(Clone, Debug)]
pub struct RetrieveResult {
    /// The version read.
    pub version: Prefix,
    /// The map the retrieve built (reusable for a publish: one round trip saved).
    pub map: ServerMap,
    /// Requests sent.
    pub requests: u64,
}

#[derive(Clone, Debug)]
pub enum RetrieveEvent {
    /// Verified plaintext at `offset` of the file; in order.
    Data {
        offset: u64,
        bytes: Vec<u8>,
    },
    /// A share failed verification and was dropped (the server was told).
    CorruptShare {
        server: ServerId,
        shnum: u16,
        error: ShareError,
    },
    Done(Box<RetrieveResult>),
    Failed(RetrieveError),
}

#[derive(Debug, Default)]
struct ShareState {
    /// Verified block-tree leaves, once the chain and tree were checked.
    leaves: Option<Vec<Hash>>,
    /// Ranges fetched after the first read.
    fetched: Vec<(u64, Vec<u8>)>,
    /// A request for this share is in flight.
    waiting: bool,
}

/// The retrieve state machine (five-call API; see `op`).
#[derive(Debug)]
pub struct Retrieve {
    keys: FileKeys,
    servers: Vec<ServerId>,
    reqs: Requests,
    query: Option<MapQuery>,
    map: ServerMap,
    /// Versions still to try, best first; the current one is `version`.
    fallbacks: VecDeque<Prefix>,
    version: Option<Prefix>,
    /// Requested plaintext range (start, end), clipped to the file once known.
    want: (u64, Option<u64>),
    segment: u64,
    last_segment: Option<u64>,
    shares: BTreeMap<(ServerId, u16), ShareState>,
    dropped: BTreeSet<(ServerId, u16)>,
    chosen: Vec<(ServerId, u16)>,
    /// What each read request asked for.
    asked: BTreeMap<RequestId, ((ServerId, u16), Vec<Span>)>,
    emitted: bool,
    events: VecDeque<RetrieveEvent>,
    finished: bool,
}

impl Retrieve {
    /// Read the whole file, or `range` = (offset, length) of it.
    pub fn new(
        now: Instant,
        config: RetrieveConfig,
        keys: FileKeys,
        servers: &[ServerDescriptor],
        range: Option<(u64, u64)>,
    ) -> Retrieve {
        let ring = permuted_order(&keys.storage_index, servers);
        let want = match range {
            Some((offset, len)) => (offset, Some(offset.saturating_add(len))),
            None => (0, None),
        };
        let mut r = Retrieve {
            query: Some(MapQuery::new(keys.clone(), config.initial_read)),
            keys,
            reqs: Requests::new(config.request_timeout),
            servers: ring,
            map: ServerMap::default(),
            fallbacks: VecDeque::new(),
            version: None,
            want,
            segment: 0,
            last_segment: None,
            shares: BTreeMap::new(),
            dropped: BTreeSet::new(),
            chosen: Vec::new(),
            asked: BTreeMap::new(),
            emitted: false,
            events: VecDeque::new(),
            finished: false,
        };
        let servers = r.servers.clone();
        if let Some(q) = r.query.as_mut() {
            q.start(now, &servers, &mut r.reqs);
        }
        r
    }

    /// Trust `verified`, pairs an earlier read of this same file (this cap's key) verified,
    /// so shares carrying them skip the RSA check. Call before the first input. Pairs from
    /// another file must never be given: the cache is what stands in for the signature check.
    pub fn trust_verified(&mut self, verified: &SignatureCache) {
        if let Some(q) = self.query.as_mut() {
            q.map.verified.extend(verified.iter().cloned());
        }
    }

    // ---- getters ----

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    // ---- handle_* ----

    // ---- poll_* ----

    // ---- internals ----

    fn fail(&mut self, e: RetrieveError) {
        self.finished = true;
        self.reqs.clear();
        self.events.push_back(RetrieveEvent::Failed(e));
    }

    fn take_read(&mut self, from: ServerId, id: RequestId, response: Response) {
        let Some((key, spans)) = self.asked.remove(&id) else {
            return;
        };
        if let Some(st) = self.shares.get_mut(&key) {
            st.waiting = false;
        }
        let Some(version) = self.version.clone() else {
            return;
        };
        let Response::MutableRead { shares } = response else {
            self.drop_share(key, None);
            self.map.failed.insert(from);
            return;
        };
        let Some(read) = shares.into_iter().find(|s| s.shnum == key.1) else {
            // The share is gone since the map was made.
            self.drop_share(key, None);
            return;
        };
        let mut chunks = read.chunks.into_iter();
        // The last range re-reads the checkstring: a share rewritten meanwhile is not mixed in.
        let checkstring = version.checkstring();
        let pieces: Vec<Vec<u8>> = chunks.by_ref().take(spans.len()).collect();
        if chunks.next().as_deref() != Some(checkstring.as_slice()) {
            self.drop_share(key, None);
            return;
        }
        for (span, bytes) in spans.iter().zip(pieces) {
            if bytes.len() as u64 != span.len {
                let error = ShareError::Truncated {
                    needed: span.end(),
                    got: span.offset + bytes.len() as u64,
                };
                self.drop_share(key, Some(error));
                return;
            }
            if let Some(st) = self.shares.get_mut(&key) {
                st.fetched.push((span.offset, bytes));
            }
        }
    }

    /// Stops using a share; `error` means it was bad (reported to the user and the server).
    fn drop_share(&mut self, key: (ServerId, u16), error: Option<ShareError>) {
        self.dropped.insert(key);
        self.chosen.retain(|c| *c != key);
        self.shares.remove(&key);
        if let Some(error) = error {
            self.reqs.notify(
                key.0,
                Request::AdviseCorrupt {
                    storage_index: self.keys.storage_index,
                    shnum: key.1,
                    reason: format!("mutable share failed verification: {error}"),
                },
            );
            self.events.push_back(RetrieveEvent::CorruptShare {
                server: key.0,
                shnum: key.1,
                error,
            });
        }
    }

    /// Bytes of `span` of a share, from its first read or later fetches.
    fn bytes_of(&self, key: (ServerId, u16), span: Span) -> Option<&[u8]> {
        if span.len == 0 {
            return Some(&[]);
        }
        if let Some(b) = self.map.shares.get(&key).and_then(|s| span.slice(&s.head)) {
            return Some(b);
        }
        let st = self.shares.get(&key)?;
        st.fetched
            .iter()
            .find(|(off, b)| *off <= span.offset && span.end() <= off + b.len() as u64)
            .map(|(off, b)| &b[(span.offset - off) as usize..(span.end() - off) as usize])
    }

    fn step(&mut self, now: Instant) {
        if self.finished {
            return;
        }
        if let Some(q) = &self.query {
            if !q.finished(&self.reqs) {
                return;
            }
            let q = self.query.take().expect("checked above");
            self.map = q.map;
            if self.map.shares.is_empty() {
                let asked = self.servers.len();
                let answered = self.map.answered.len();
                if self.map.bad.is_empty() {
                    return self.fail(RetrieveError::NoShares { asked, answered });
                }
            }
            self.fallbacks = self.map.recoverable_versions().into();
            if !self.next_version() {
                return;
            }
        }
        loop {
            let Some(version) = self.version.clone() else {
                return;
            };
            let last = self.last_segment;
            if last.is_none_or(|l| self.segment > l) {
                return self.finish(version);
            }
            let k = usize::from(version.k);
            self.choose_shares(&version);
            if self.chosen.len() < k {
                if self.emitted {
                    return self.fail(RetrieveError::VersionLost {
                        seqnum: version.seqnum,
                        needed: k,
                    });
                }
                if !self.next_version() {
                    return;
                }
                continue;
            }
            // Ask for whatever the chosen shares still lack.
            let mut complete = true;
            for key in self.chosen.clone() {
                let header = &self.map.shares[&key].header;
                let mut needed = Vec::new();
                let st = self.shares.entry(key).or_default();
                if st.leaves.is_none() {
                    needed.push(header.offsets.share_hash_chain);
                    needed.push(header.offsets.block_hash_tree);
                }
                needed.push(header.offsets.block(&version, self.segment));
                let waiting = st.waiting;
                let missing: Vec<Span> = needed
                    .into_iter()
                    .filter(|s| self.bytes_of(key, *s).is_none())
                    .collect();
                if missing.is_empty() {
                    continue;
                }
                complete = false;
                if waiting {
                    continue;
                }
                let mut ranges: Vec<ReadRange> = missing
                    .iter()
                    .map(|s| ReadRange {
                        offset: s.offset,
                        length: s.len,
                    })
                    .collect();
                ranges.push(ReadRange {
                    offset: 0,
                    length: version.checkstring().len() as u64,
                });
                let id = self.reqs.send(
                    now,
                    key.0,
                    Request::MutableRead {
                        storage_index: self.keys.storage_index,
                        shnums: vec![key.1],
                        ranges,
                    },
                );
                self.asked.insert(id, (key, missing));
                if let Some(st) = self.shares.get_mut(&key) {
                    st.waiting = true;
                }
            }
            if !complete {
                return;
            }
            match self.decode_current(&version) {
                Ok(Some(plain)) => {
                    self.deliver(&version, plain);
                    self.segment += 1;
                    for st in self.shares.values_mut() {
                        st.fetched.clear();
                    }
                }
                Ok(None) => continue, // a share was dropped; choose again
                Err(()) => return,
            }
        }
    }

    /// Switches to the next recoverable version; false (after failing) if there is none.
    fn next_version(&mut self) -> bool {
        let Some(v) = self.fallbacks.pop_front() else {
            let versions = self.map.versions();
            let (seqnum, needed, found) = versions
                .iter()
                .max_by_key(|(p, s)| (s.len(), p.seqnum))
                .map(|(p, s)| (p.seqnum, usize::from(p.k), s.len()))
                .unwrap_or((0, 1, 0));
            let bad = self.map.bad.len() + self.dropped.len();
            self.fail(RetrieveError::NotEnoughShares {
                seqnum,
                needed,
                found,
                bad,
            });
            return false;
        };
        let size = v.data_length;
        let start = self.want.0.min(size);
        let end = self.want.1.unwrap_or(size).min(size);
        self.want = (start, Some(end));
        self.segment = start.checked_div(v.segment_size).unwrap_or(0);
        self.last_segment = if end <= start || v.segment_size == 0 {
            None
        } else {
            Some((end - 1) / v.segment_size)
        };
        self.chosen.clear();
        self.shares.clear();
        self.version = Some(v);
        true
    }

    fn choose_shares(&mut self, version: &Prefix) {
        let k = usize::from(version.k);
        let mut have: BTreeSet<u16> = self.chosen.iter().map(|(_, n)| *n).collect();
        let mut used_servers: BTreeSet<ServerId> = self.chosen.iter().map(|(s, _)| *s).collect();
        let candidates: Vec<(ServerId, u16)> = self
            .map
            .holders(version)
            .into_iter()
            .filter(|key| !self.dropped.contains(key) && !self.map.failed.contains(&key.0))
            .collect();
        // Prefer one share per server, in ring order, then any.
        for spread in [true, false] {
            for server in &self.servers {
                for key in candidates.iter().filter(|(s, _)| s == server) {
                    if self.chosen.len() >= k {
                        return;
                    }
                    if have.contains(&key.1) || (spread && used_servers.contains(&key.0)) {
                        continue;
                    }
                    have.insert(key.1);
                    used_servers.insert(key.0);
                    self.chosen.push(*key);
                }
            }
        }
    }

    /// Verifies the chosen shares' hashes and blocks and decodes the current segment.
    /// `Ok(None)`: a share was bad and dropped.
    fn decode_current(&mut self, version: &Prefix) -> Result<Option<Vec<u8>>, ()> {
        let s = self.segment;
        let mut blocks: Vec<(usize, Vec<u8>)> = Vec::new();
        let mut salt = [0u8; 16];
        for key in self.chosen.clone() {
            let header = self.map.shares[&key].header.clone();
            if self.shares.get(&key).is_none_or(|st| st.leaves.is_none()) {
                let chain = self
                    .bytes_of(key, header.offsets.share_hash_chain)
                    .unwrap_or(&[]);
                let tree = self
                    .bytes_of(key, header.offsets.block_hash_tree)
                    .unwrap_or(&[]);
                match check_share_hashes(version, key.1, chain, tree) {
                    Ok(leaves) => self.shares.entry(key).or_default().leaves = Some(leaves),
                    Err(e) => {
                        self.drop_share(key, Some(e));
                        return Ok(None);
                    }
                }
            }
            let entry = self
                .bytes_of(key, header.offsets.block(version, s))
                .unwrap_or(&[])
                .to_vec();
            let leaves = self.shares[&key].leaves.as_deref().unwrap_or(&[]);
            match verified_block(version, leaves, s, &entry) {
                Some((sa, b)) => {
                    salt = sa;
                    blocks.push((usize::from(key.1), b.to_vec()));
                }
                None => {
                    self.drop_share(key, Some(ShareError::BadBlock { segment: s }));
                    return Ok(None);
                }
            }
        }
        let refs: Vec<(usize, &[u8])> = blocks.iter().map(|(i, b)| (*i, b.as_slice())).collect();
        match decode_segment(version, &self.keys.readkey, s, &salt, &refs) {
            Ok(plain) => Ok(Some(plain)),
            Err(_) => {
                // Verified blocks that do not decode mean the signed parameters are unusable.
                self.fail(RetrieveError::NotEnoughShares {
                    seqnum: version.seqnum,
                    needed: usize::from(version.k),
                    found: 0,
                    bad: blocks.len(),
                });
                Err(())
            }
        }
    }

    fn deliver(&mut self, version: &Prefix, plain: Vec<u8>) {
        let seg_start = self.segment * version.segment_size;
        let (start, end) = (self.want.0, self.want.1.unwrap_or(version.data_length));
        let from = start.max(seg_start) - seg_start;
        let to = end.min(seg_start + plain.len() as u64) - seg_start;
        if from < to {
            self.emitted = true;
            self.events.push_back(RetrieveEvent::Data {
                offset: seg_start + from,
                bytes: plain[from as usize..to as usize].to_vec(),
            });
        }
    }

    fn finish(&mut self, version: Prefix) {
        self.finished = true;
        self.reqs.clear();
        self.events
            .push_back(RetrieveEvent::Done(Box::new(RetrieveResult {
                version,
                map: std::mem::take(&mut self.map),
                requests: self.reqs.sent,
            })));
    }
}

impl crate::op::ClientOp for Retrieve {
    type Event = RetrieveEvent;

    fn handle_input(&mut self, now: Instant, from: ServerId, id: RequestId, response: Response) {
        if self.finished || !self.reqs.answered(id, from) {
            return;
        }
        if let Some(q) = self.query.as_mut() {
            q.handle(now, from, id, response, &mut self.reqs);
        } else {
            self.take_read(from, id, response);
        }
        self.step(now);
    }

    fn handle_server_lost(&mut self, now: Instant, server: ServerId) {
        if self.finished {
            return;
        }
        let ids = self.reqs.lost(server);
        if let Some(q) = self.query.as_mut() {
            q.lost(now, server, &ids, &mut self.reqs);
        }
        for id in ids {
            self.asked.remove(&id);
        }
        let on_server: Vec<(ServerId, u16)> = self
            .chosen
            .iter()
            .filter(|(s, _)| *s == server)
            .copied()
            .collect();
        for key in on_server {
            self.drop_share(key, None);
        }
        self.map.failed.insert(server);
        self.step(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        for server in self.reqs.expired(now) {
            self.handle_server_lost(now, server);
        }
    }

    fn poll_transmit(&mut self) -> Option<crate::op::Transmit> {
        self.reqs.poll_transmit()
    }

    fn poll_event(&mut self) -> Option<RetrieveEvent> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.reqs.poll_timeout()
    }
}
