//! In-place writes to an MDMF file: replace bytes inside the file and rewrite only the segments
//! they touch (plus every share's hashes and signature, which must change with any byte).
//!
//! Round trips: a map (skipped with a warm one), one read of every holder's hash trees together
//! with the boundary segments' blocks (when the write does not cover them whole), and one
//! test-and-set write per server carrying the new header, signature, share hash chain, block
//! hash tree and only the affected blocks. The file's length cannot change this way: growing or
//! shrinking a file is a full publish.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::layout::{MutableFormat, Prefix, Span, SALT_LEN};
use super::publish::{PublishConfig, PublishResult};
use super::requests::Requests;
use super::servermap::{FileKeys, MapQuery, ServerMap};
use super::share::{
    block_leaf, check_share_hashes, codec, crypt_segment, decode_segment, sign, verified_block,
    ShareError,
};
use crate::codec::Codec;
use crate::crypto::drbg::Drbg;
use crate::crypto::ssk_write_enabler;
use crate::hashtree::{Hash, HashTree};
use crate::mutable::layout::encode_chain;
use crate::op::{derivation_node_id, FileLeaseSecrets, RequestId};
use crate::placement::{permuted_order, ServerDescriptor, ServerId};
use crate::time::Instant;
use crate::wire::{
    DataVector, ErrorKind, MutableShareWrite, ReadRange, Request, Response, TestVector,
};

/// Why an in-place write failed. Nothing was written unless the message says so.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ModifyError {
    #[error("a read-only cap cannot write")]
    ReadOnly,
    #[error("in-place writes need an MDMF file; rewrite an SDMF file whole")]
    NotMdmf,
    #[error(
        "an in-place write must be non-empty and lie inside the file ({length} bytes at \
         {offset}, file of {file_size} bytes); grow or shrink a file by rewriting it"
    )]
    OutOfBounds {
        offset: u64,
        length: u64,
        file_size: u64,
    },
    #[error("no shares of this file were found ({answered} servers answered): nothing to update")]
    NotFound { answered: usize },
    #[error("could not recover the file's signing key from its shares")]
    NoSigningKey,
    #[error(
        "only {reachable} of the file's {n} shares were reachable with good hashes; an in-place \
         write needs all of them (rewrite the file instead)"
    )]
    SharesUnreachable { reachable: usize, n: u8 },
    #[error("segment {segment}, which the write only partly covers, could not be read")]
    BoundaryUnreadable { segment: u64 },
    #[error(
        "the file's signature is {theirs} bytes where ours is {ours}; it cannot be edited in place"
    )]
    SignatureSize { theirs: usize, ours: usize },
    #[error("cannot encode the file: {0}")]
    Encode(ShareError),
    #[error("another writer changed the file at the same time (uncoordinated write): read the file again and retry")]
    Conflict { seqnum: u64 },
    #[error("only {placed} shares could be written, {needed} are needed to read the file ({servers} servers usable)")]
    NotEnoughServers {
        placed: usize,
        needed: usize,
        servers: usize,
    },
    #[error(
        "server {server} refused the write enabler: the slot belongs to another file or writer"
    )]
    WriteEnablerRefused { server: ServerId },
}

#[derive(Clone, Debug)]
pub enum ModifyEvent {
    Done(Box<PublishResult>),
    Failed(ModifyError),
}

/// A holder's share hash chain, block hash tree, and boundary blocks by segment.
#[derive(Debug)]
struct Fetched {
    chain: Vec<u8>,
    tree: Vec<u8>,
    blocks: BTreeMap<u64, Vec<u8>>,
}

/// A read request: which share, and what each range is (a boundary segment's block, or hashes).
type Asked = ((ServerId, u16), Vec<(Option<u64>, Span)>);

#[derive(Debug)]
enum Phase {
    Mapping(Box<MapQuery>),
    Reading,
    Writing,
    Done,
}

/// The in-place write state machine (five-call API; events are [`ModifyEvent`]s).
#[derive(Debug)]
pub struct Modify {
    keys: FileKeys,
    offset: u64,
    data: Vec<u8>,
    servers: Vec<ServerId>,
    reqs: Requests,
    phase: Phase,
    map: ServerMap,
    version: Option<Prefix>,
    /// Segments the write touches, first and last.
    segments: (u64, u64),
    /// Per holder: (chain bytes, tree bytes, boundary blocks by segment).
    fetched: BTreeMap<(ServerId, u16), Fetched>,
    asked: BTreeMap<RequestId, Asked>,
    writes: BTreeMap<RequestId, (ServerId, Vec<u16>)>,
    placed: Vec<(ServerId, u16)>,
    conflict: bool,
    error: Option<ModifyError>,
    /// The new version's signature, for the warm map in the result.
    new_signature: Vec<u8>,
    new_version: Option<Prefix>,
    rng: Drbg,
    leases: FileLeaseSecrets,
    events: VecDeque<ModifyEvent>,
}

impl Modify {
    /// Replace `data.len()` bytes of the MDMF file at `offset` (the range must lie inside the
    /// file). `map`: a warm map with the signing key (from a read or write of this file).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        now: Instant,
        config: PublishConfig,
        keys: FileKeys,
        offset: u64,
        data: Vec<u8>,
        servers: &[ServerDescriptor],
        map: Option<ServerMap>,
        lease_secret: &[u8],
        seed: [u8; 32],
    ) -> Modify {
        let si = keys.storage_index;
        let mut m = Modify {
            servers: permuted_order(&si, servers),
            reqs: Requests::new(config.request_timeout),
            phase: Phase::Done,
            map: ServerMap::default(),
            version: None,
            segments: (0, 0),
            fetched: BTreeMap::new(),
            asked: BTreeMap::new(),
            writes: BTreeMap::new(),
            placed: Vec::new(),
            conflict: false,
            error: None,
            new_signature: Vec::new(),
            new_version: None,
            rng: Drbg::new(seed),
            leases: FileLeaseSecrets::new(lease_secret, &si),
            events: VecDeque::new(),
            keys,
            offset,
            data,
        };
        if m.keys.writekey.is_none() {
            m.fail(ModifyError::ReadOnly);
            return m;
        }
        if m.keys.format != MutableFormat::Mdmf {
            m.fail(ModifyError::NotMdmf);
            return m;
        }
        match map {
            Some(map) if map.has_signing_key() && map.best_recoverable().is_some() => {
                m.map = map;
                m.read(now);
            }
            _ => {
                let mut q = MapQuery::new(m.keys.clone(), config.initial_read);
                let servers = m.servers.clone();
                q.start(now, &servers, &mut m.reqs);
                m.phase = Phase::Mapping(Box::new(q));
            }
        }
        m
    }

    // ---- handle_* ----

    // ---- poll_* ----

    // ---- internals ----

    fn fail(&mut self, e: ModifyError) {
        self.phase = Phase::Done;
        self.reqs.clear();
        self.events.push_back(ModifyEvent::Failed(e));
    }

    fn after_map(&mut self, now: Instant) {
        let Phase::Mapping(q) = &self.phase else {
            return;
        };
        if !q.finished(&self.reqs) {
            return;
        }
        let Phase::Mapping(q) = std::mem::replace(&mut self.phase, Phase::Done) else {
            return;
        };
        self.map = q.map;
        if !self.map.has_signing_key() {
            let answered = self.map.answered.len();
            return self.fail(if self.map.shares.is_empty() {
                ModifyError::NotFound { answered }
            } else {
                ModifyError::NoSigningKey
            });
        }
        self.read(now);
    }

    /// Asks every holder of the best version for its hashes, and k of them for the blocks of
    /// the boundary segments the write only partly covers.
    fn read(&mut self, now: Instant) {
        let Some(v) = self.map.best_recoverable() else {
            let answered = self.map.answered.len();
            return self.fail(ModifyError::NotFound { answered });
        };
        let end = self.offset.saturating_add(self.data.len() as u64);
        if end > v.data_length || self.data.is_empty() {
            return self.fail(ModifyError::OutOfBounds {
                offset: self.offset,
                length: self.data.len() as u64,
                file_size: v.data_length,
            });
        }
        self.segments = (self.offset / v.segment_size, (end - 1) / v.segment_size);
        let partial: BTreeSet<u64> = [self.segments.0, self.segments.1]
            .into_iter()
            .filter(|&s| {
                let start = s * v.segment_size;
                self.offset > start || end < start + v.segment_len(s)
            })
            .collect();
        let holders = self.map.holders(&v);
        let mut with_blocks: BTreeSet<u16> = BTreeSet::new();
        for key in &holders {
            let header = &self.map.shares[key].header;
            let mut spans: Vec<(Option<u64>, Span)> = vec![
                (None, header.offsets.share_hash_chain),
                (None, header.offsets.block_hash_tree),
            ];
            if with_blocks.len() < usize::from(v.k) && with_blocks.insert(key.1) {
                for &s in &partial {
                    spans.push((Some(s), header.offsets.block(&v, s)));
                }
            }
            let ranges = spans
                .iter()
                .map(|(_, sp)| ReadRange {
                    offset: sp.offset,
                    length: sp.len,
                })
                .chain([ReadRange {
                    offset: 0,
                    length: v.checkstring().len() as u64,
                }])
                .collect();
            let id = self.reqs.send(
                now,
                key.0,
                Request::MutableRead {
                    storage_index: self.keys.storage_index,
                    shnums: vec![key.1],
                    ranges,
                },
            );
            self.asked.insert(id, (*key, spans));
        }
        self.version = Some(v);
        self.phase = Phase::Reading;
    }

    fn take_read(&mut self, id: RequestId, response: Response) {
        let (Some((key, spans)), Some(v)) = (self.asked.remove(&id), self.version.as_ref()) else {
            return;
        };
        let Response::MutableRead { shares } = response else {
            return;
        };
        let Some(read) = shares.into_iter().find(|s| s.shnum == key.1) else {
            return;
        };
        if read.chunks.last() != Some(&v.checkstring()) || read.chunks.len() != spans.len() + 1 {
            // Rewritten since the map: the write's test would fail anyway.
            self.conflict = true;
            return;
        }
        let mut chain = Vec::new();
        let mut tree = Vec::new();
        let mut blocks = BTreeMap::new();
        for (i, ((seg, _), bytes)) in spans.iter().zip(read.chunks).enumerate() {
            match (i, seg) {
                (0, _) => chain = bytes,
                (1, _) => tree = bytes,
                (_, Some(s)) => {
                    blocks.insert(*s, bytes);
                }
                _ => {}
            }
        }
        self.fetched.insert(
            key,
            Fetched {
                chain,
                tree,
                blocks,
            },
        );
    }

    /// Builds the new version from the verified old hashes and sends the writes.
    fn write(&mut self, now: Instant) {
        let Some(v) = self.version.clone() else {
            return;
        };
        if self.conflict {
            return self.fail(ModifyError::Conflict {
                seqnum: v.seqnum + 1,
            });
        }
        // Verify every holder's hashes; keep the leaves of the good ones.
        let mut leaves: BTreeMap<(ServerId, u16), Vec<Hash>> = BTreeMap::new();
        for (key, f) in &self.fetched {
            if let Ok(l) = check_share_hashes(&v, key.1, &f.chain, &f.tree) {
                leaves.insert(*key, l);
            }
        }
        let mut by_shnum: BTreeMap<u16, Vec<Hash>> = BTreeMap::new();
        for ((_, shnum), l) in &leaves {
            by_shnum.entry(*shnum).or_insert_with(|| l.clone());
        }
        if by_shnum.len() < usize::from(v.n) {
            // Every share's block-tree root goes into the new share hash tree.
            return self.fail(ModifyError::SharesUnreachable {
                reachable: by_shnum.len(),
                n: v.n,
            });
        }
        // Old plaintext of the partly covered boundary segments.
        let mut old: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
        for s in [self.segments.0, self.segments.1] {
            if old.contains_key(&s) {
                continue;
            }
            let mut blocks: Vec<(usize, Vec<u8>)> = Vec::new();
            let mut salt = [0u8; SALT_LEN];
            for (key, f) in &self.fetched {
                let (Some(entry), Some(l)) = (f.blocks.get(&s), leaves.get(key)) else {
                    continue;
                };
                if let Some((sa, b)) = verified_block(&v, l, s, entry) {
                    salt = sa;
                    blocks.push((usize::from(key.1), b.to_vec()));
                }
            }
            if blocks.is_empty() {
                continue; // covered whole: not needed
            }
            let refs: Vec<(usize, &[u8])> =
                blocks.iter().map(|(i, b)| (*i, b.as_slice())).collect();
            match decode_segment(&v, &self.keys.readkey, s, &salt, &refs) {
                Ok(p) => {
                    old.insert(s, p);
                }
                Err(e) => return self.fail(ModifyError::Encode(e)),
            }
        }
        let Some(key) = self.map.signing_key() else {
            return self.fail(ModifyError::NoSigningKey);
        };
        let codec = match codec(v.k, v.n) {
            Ok(c) => c,
            Err(e) => return self.fail(ModifyError::Encode(e)),
        };
        let end = self.offset + self.data.len() as u64;
        let mut new_blocks: BTreeMap<u64, ([u8; SALT_LEN], Vec<Vec<u8>>)> = BTreeMap::new();
        let mut salts = self.rng.fork(b"in-place segment salts");
        for s in self.segments.0..=self.segments.1 {
            let start = s * v.segment_size;
            let len = v.segment_len(s) as usize;
            let mut plain = old.remove(&s).unwrap_or_else(|| vec![0; len]);
            if plain.len() != len {
                return self.fail(ModifyError::BoundaryUnreadable { segment: s });
            }
            let from = self.offset.max(start);
            let to = end.min(start + len as u64);
            plain[(from - start) as usize..(to - start) as usize].copy_from_slice(
                &self.data[(from - self.offset) as usize..(to - self.offset) as usize],
            );
            let salt: [u8; SALT_LEN] = salts.array();
            let piece = v.block_len(s) as usize;
            let mut segment = vec![0u8; piece * usize::from(v.k)];
            segment[..len].copy_from_slice(&plain);
            crypt_segment(&self.keys.readkey, &salt, &mut segment[..len]);
            match codec.encode(&segment) {
                Ok(blocks) => {
                    new_blocks.insert(s, (salt, blocks));
                }
                Err(_) => {
                    let why = ShareError::Unsupported("segment could not be encoded");
                    return self.fail(ModifyError::Encode(why));
                }
            }
        }
        // New leaves per share, trees, root, signature.
        let mut trees: BTreeMap<u16, HashTree> = BTreeMap::new();
        for (shnum, mut l) in by_shnum {
            for (s, (salt, blocks)) in &new_blocks {
                l[*s as usize] = block_leaf(v.format, salt, &blocks[usize::from(shnum)]);
            }
            trees.insert(shnum, HashTree::new(&l));
        }
        let roots: Vec<Hash> = trees.values().map(HashTree::root).collect();
        let share_tree = HashTree::new(&roots);
        let mut prefix = v.clone();
        prefix.seqnum = self.map.highest_seqnum() + 1;
        prefix.root_hash = share_tree.root();
        let signature = sign(&key, &prefix.signed_bytes(), &mut self.rng.fork(b"pss"));
        let writekey = self.keys.writekey.expect("checked in new");
        let checkstring = v.checkstring();
        let mut by_server: BTreeMap<ServerId, Vec<MutableShareWrite>> = BTreeMap::new();
        for key in leaves.keys() {
            let header = &self.map.shares[key].header;
            if header.signature.len() != signature.len() {
                return self.fail(ModifyError::SignatureSize {
                    theirs: header.signature.len(),
                    ours: signature.len(),
                });
            }
            let offsets = &header.offsets;
            let mut writes = vec![
                DataVector {
                    offset: 0,
                    data: offsets.header_bytes(&prefix),
                },
                DataVector {
                    offset: offsets.signature.offset,
                    data: signature.clone(),
                },
                DataVector {
                    offset: offsets.share_hash_chain.offset,
                    data: encode_chain(&share_tree.proof(usize::from(key.1), false)),
                },
                DataVector {
                    offset: offsets.block_hash_tree.offset,
                    data: trees[&key.1].to_bytes(),
                },
            ];
            for (s, (salt, blocks)) in &new_blocks {
                let mut entry = salt.to_vec();
                entry.extend_from_slice(&blocks[usize::from(key.1)]);
                writes.push(DataVector {
                    offset: offsets.block(&prefix, *s).offset,
                    data: entry,
                });
            }
            by_server.entry(key.0).or_default().push(MutableShareWrite {
                shnum: key.1,
                tests: vec![TestVector {
                    offset: 0,
                    length: checkstring.len() as u64,
                    specimen: checkstring.clone(),
                }],
                writes,
                new_length: None,
            });
        }
        for (server, shares) in by_server {
            let node = derivation_node_id(&server);
            let shnums = shares.iter().map(|s| s.shnum).collect();
            let id = self.reqs.send(
                now,
                server,
                Request::MutableWrite {
                    storage_index: self.keys.storage_index,
                    write_enabler: ssk_write_enabler(&writekey, &node),
                    lease: self.leases.for_server(&server),
                    shares,
                    read_ranges: vec![],
                },
            );
            self.writes.insert(id, (server, shnums));
        }
        self.new_version = Some(prefix);
        self.new_signature = signature;
        self.phase = Phase::Writing;
    }

    fn maybe_finish(&mut self) {
        if !self.writes.is_empty() || !matches!(self.phase, Phase::Writing) {
            return;
        }
        let Some(version) = self.new_version.clone() else {
            return;
        };
        if self.conflict {
            return self.fail(ModifyError::Conflict {
                seqnum: version.seqnum,
            });
        }
        if let Some(e) = self.error.take() {
            return self.fail(e);
        }
        let distinct: BTreeSet<u16> = self.placed.iter().map(|(_, s)| *s).collect();
        if distinct.len() < usize::from(version.k) {
            let servers = self.servers.len() - self.map.failed.len().min(self.servers.len());
            return self.fail(ModifyError::NotEnoughServers {
                placed: distinct.len(),
                needed: usize::from(version.k),
                servers,
            });
        }
        // The map now describes the new version where we wrote it. Of each head only the
        // header is known to be current (chains and blocks changed), so only it is kept.
        let placed: BTreeSet<(ServerId, u16)> = self.placed.iter().copied().collect();
        for key in &placed {
            if let Some(seen) = self.map.shares.get_mut(key) {
                seen.head = seen.header.offsets.header_bytes(&version);
                seen.header.prefix = version.clone();
                seen.header.signature = self.new_signature.clone();
            }
        }
        self.map.shares.retain(|k, _| placed.contains(k));
        self.phase = Phase::Done;
        self.reqs.clear();
        self.events
            .push_back(ModifyEvent::Done(Box::new(PublishResult {
                cap: self.keys.cap(),
                version,
                placed: std::mem::take(&mut self.placed),
                map: std::mem::take(&mut self.map),
                requests: self.reqs.sent,
            })));
    }
}

impl crate::op::ClientOp for Modify {
    type Event = ModifyEvent;

    fn handle_input(&mut self, now: Instant, from: ServerId, id: RequestId, response: Response) {
        if matches!(self.phase, Phase::Done) || !self.reqs.answered(id, from) {
            return;
        }
        match &mut self.phase {
            Phase::Mapping(q) => {
                q.handle(now, from, id, response, &mut self.reqs);
                self.after_map(now);
            }
            Phase::Reading => {
                self.take_read(id, response);
                if self.reqs.in_flight() == 0 {
                    self.write(now);
                }
            }
            Phase::Writing => {
                if let Some((server, shnums)) = self.writes.remove(&id) {
                    match response {
                        Response::MutableWrite { applied: true, .. } => {
                            self.placed.extend(shnums.into_iter().map(|s| (server, s)))
                        }
                        Response::MutableWrite { applied: false, .. } => self.conflict = true,
                        Response::Error {
                            kind: ErrorKind::BadWriteEnabler,
                            ..
                        } => self.error = Some(ModifyError::WriteEnablerRefused { server }),
                        // Any other answer: the server failed this write, as in a publish.
                        _ => {
                            self.map.failed.insert(server);
                        }
                    }
                }
                self.maybe_finish();
            }
            Phase::Done => {}
        }
    }

    fn handle_server_lost(&mut self, now: Instant, server: ServerId) {
        let ids = self.reqs.lost(server);
        match &mut self.phase {
            Phase::Mapping(q) => {
                q.lost(now, server, &ids, &mut self.reqs);
                self.after_map(now);
            }
            Phase::Reading => {
                for id in ids {
                    self.asked.remove(&id);
                }
                self.fetched.retain(|(s, _), _| *s != server);
                if self.reqs.in_flight() == 0 {
                    self.write(now);
                }
            }
            Phase::Writing => {
                for id in ids {
                    self.writes.remove(&id);
                }
                self.maybe_finish();
            }
            Phase::Done => {}
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        for server in self.reqs.expired(now) {
            self.handle_server_lost(now, server);
        }
    }

    fn poll_transmit(&mut self) -> Option<crate::op::Transmit> {
        self.reqs.poll_transmit()
    }

    fn poll_event(&mut self) -> Option<ModifyEvent> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.reqs.poll_timeout()
    }
}
