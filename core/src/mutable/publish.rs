//! Publish: write a new version of a mutable file (or create one) with test-and-set writes.
//!
//! Round trips: creating a file is one (every share written with a "must not exist" test, in
//! parallel). Updating with a warm servermap (from a recent retrieve or publish) is one: each
//! share holder gets one `MutableWrite` whose test names the checkstring the map saw. Cold, one
//! more round trip maps the servers first (and, for a big SDMF file whose private key lies beyond
//! the first read, one to fetch the key).
//!
//! Uncoordinated writers never corrupt a file: a write whose test fails is not applied, and the
//! publish reports [`PublishError::Conflict`]; the caller re-reads and retries. Shares are
//! placed where the map found shares of the file (overwriting old and bad ones), the rest on the
//! servers with the fewest shares, in ring order. The new version is encoded whole in memory
//! (mutable files are expected to be small: directories, documents); MDMF streaming publish is
//! not built.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::layout::{MutableFormat, Prefix};
use super::requests::Requests;
use super::retrieve::DEFAULT_INITIAL_READ;
use super::servermap::{FileKeys, MapQuery, ServerMap, SigningKey};
use super::share::{encode_version, own_share_header, EncodedVersion, ShareError};
use crate::cap::Cap;
use crate::crypto::drbg::Drbg;
use crate::crypto::rsa_keys::MutableKey;
use crate::crypto::ssk_write_enabler;
use crate::op::{derivation_node_id, FileLeaseSecrets, RequestId};
use crate::placement::{permuted_order, ServerDescriptor, ServerId};
use crate::time::{Duration, Instant};
use crate::wire::{
    DataVector, ErrorKind, MutableShareWrite, ReadRange, Request, Response, TestVector,
};

#[derive(Clone, Debug)]
pub struct PublishConfig {
    /// Shares needed to read (new files; updates keep the file's own k and N).
    pub k: u8,
    /// Shares written.
    pub n: u8,
    pub initial_read: u64,
    pub request_timeout: Duration,
}

impl Default for PublishConfig {
    fn default() -> Self {
        PublishConfig {
            k: 3,
            n: 10,
            initial_read: DEFAULT_INITIAL_READ,
            request_timeout: Duration::from_secs(60),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    #[error("another writer changed the file at the same time (uncoordinated write): nothing of ours was mixed into its version; read the file again and retry")]
    Conflict { seqnum: u64 },
    #[error("only {placed} shares could be placed, {needed} are needed to read the file ({servers} servers usable)")]
    NotEnoughServers {
        placed: usize,
        needed: usize,
        servers: usize,
    },
    #[error("a read-only cap cannot write")]
    ReadOnly,
    #[error("no shares of this file were found ({answered} servers answered): nothing to update")]
    NotFound { answered: usize },
    #[error("could not recover the file's signing key from its shares")]
    NoSigningKey,
    #[error(
        "server {server} refused the write enabler: the slot belongs to another file or writer"
    )]
    WriteEnablerRefused { server: ServerId },
    #[error("cannot encode the file: {0}")]
    Encode(ShareError),
}

#[derive(Clone, Debug)]
pub struct PublishResult {
    /// The file's write cap.
    pub cap: Cap,
    pub version: Prefix,
    /// Shares written (server, share number).
    pub placed: Vec<(ServerId, u16)>,
    /// A map of the file as it now is, for a one-round-trip next update.
    pub map: ServerMap,
    pub requests: u64,
}

#[derive(Clone, Debug)]
pub enum PublishEvent {
    Done(Box<PublishResult>),
    Failed(PublishError),
}

/// The publish state machine (five-call API; see `op`).
#[derive(Debug)]
pub struct Publish {
    config: PublishConfig,
    keys: FileKeys,
    contents: Vec<u8>,
    servers: Vec<ServerId>,
    reqs: Requests,
    query: Option<MapQuery>,
    map: ServerMap,
    rng: Drbg,
    leases: FileLeaseSecrets,
    encoded: Option<EncodedVersion>,
    writes: BTreeMap<RequestId, (ServerId, Vec<u16>)>,
    placed: Vec<(ServerId, u16)>,
    conflict: bool,
    refused: Option<ServerId>,
    events: VecDeque<PublishEvent>,
    finished: bool,
}

impl Publish {
    /// Create a new mutable file holding `contents`, signed with `key` (a fresh key from a key
    /// pool: never reuse one). `seed` must be unpredictable (salts and signature randomness).
    #[allow(clippy::too_many_arguments)]
    pub fn create(
        now: Instant,
        config: PublishConfig,
        format: MutableFormat,
        key: MutableKey,
        contents: Vec<u8>,
        servers: &[ServerDescriptor],
        lease_secret: &[u8],
        seed: [u8; 32],
    ) -> Publish {
        let keys = FileKeys::from_key(format, &key);
        let map = ServerMap {
            signing_key: SigningKey::Ready(Box::new(key)),
            ..ServerMap::default()
        };
        let mut p = Publish::new(config, keys, contents, servers, lease_secret, seed);
        p.map = map;
        p.write(now);
        p
    }

    /// Replace the contents of the file named by a write cap's `keys`. With `map` from a recent
    /// retrieve or publish of this file the update is one round trip.
    #[allow(clippy::too_many_arguments)]
    pub fn update(
        now: Instant,
        config: PublishConfig,
        keys: FileKeys,
        contents: Vec<u8>,
        servers: &[ServerDescriptor],
        map: Option<ServerMap>,
        lease_secret: &[u8],
        seed: [u8; 32],
    ) -> Publish {
        let initial_read = config.initial_read;
        let mut p = Publish::new(config, keys.clone(), contents, servers, lease_secret, seed);
        if keys.writekey.is_none() {
            p.fail(PublishError::ReadOnly);
            return p;
        }
        match map {
            Some(m) if m.has_signing_key() && !m.shares.is_empty() => {
                p.map = m;
                p.write(now);
            }
            _ => {
                let mut q = MapQuery::new(keys, initial_read);
                let servers = p.servers.clone();
                q.start(now, &servers, &mut p.reqs);
                p.query = Some(q);
            }
        }
        p
    }

    fn new(
        config: PublishConfig,
        keys: FileKeys,
        contents: Vec<u8>,
        servers: &[ServerDescriptor],
        lease_secret: &[u8],
        seed: [u8; 32],
    ) -> Publish {
        let si = keys.storage_index;
        Publish {
            reqs: Requests::new(config.request_timeout),
            config,
            servers: permuted_order(&si, servers),
            keys,
            contents,
            query: None,
            map: ServerMap::default(),
            rng: Drbg::new(seed),
            leases: FileLeaseSecrets::new(lease_secret, &si),
            encoded: None,
            writes: BTreeMap::new(),
            placed: Vec::new(),
            conflict: false,
            refused: None,
            events: VecDeque::new(),
            finished: false,
        }
    }

    // ---- getters ----

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    // ---- handle_* ----

    // ---- poll_* ----

    // ---- internals ----

    fn fail(&mut self, e: PublishError) {
        self.finished = true;
        self.reqs.clear();
        self.events.push_back(PublishEvent::Failed(e));
    }

    fn after_query(&mut self, now: Instant) {
        let Some(q) = &self.query else { return };
        if !q.finished(&self.reqs) {
            return;
        }
        self.map = self.query.take().expect("checked above").map;
        if self.map.shares.is_empty() && self.map.bad.is_empty() {
            let answered = self.map.answered.len();
            return self.fail(PublishError::NotFound { answered });
        }
        if !self.map.has_signing_key() {
            return self.fail(PublishError::NoSigningKey);
        }
        self.write(now);
    }

    /// Encodes the new version and sends every share holder its test-and-set write.
    fn write(&mut self, now: Instant) {
        let Some(key) = self.map.signing_key() else {
            return self.fail(PublishError::NoSigningKey);
        };
        let (k, n) = match self.map.best_recoverable() {
            Some(v) => (v.k, v.n),
            None => (self.config.k, self.config.n),
        };
        let seqnum = self.map.highest_seqnum() + 1;
        let contents = std::mem::take(&mut self.contents);
        let encoded = match encode_version(
            self.keys.format,
            k,
            n,
            seqnum,
            &key,
            &contents,
            &mut self.rng,
        ) {
            Ok(e) => e,
            Err(e) => return self.fail(PublishError::Encode(e)),
        };
        let cs_len = self.keys.format.checkstring_len();
        // (server, shnum) -> the bytes the share must start with now (empty: must not exist).
        let mut targets: BTreeMap<(ServerId, u16), Vec<u8>> = BTreeMap::new();
        for (&(server, shnum), seen) in &self.map.shares {
            if shnum < u16::from(n) && !self.map.failed.contains(&server) {
                targets.insert(
                    (server, shnum),
                    seen.head[..seen.head.len().min(cs_len)].to_vec(),
                );
            }
        }
        for (&(server, shnum), (_, start)) in &self.map.bad {
            if shnum < u16::from(n) && !self.map.failed.contains(&server) {
                targets.insert((server, shnum), start.clone());
            }
        }
        let homed: BTreeSet<u16> = targets.keys().map(|(_, s)| *s).collect();
        let usable: Vec<ServerId> = self
            .servers
            .iter()
            .filter(|s| !self.map.failed.contains(s))
            .copied()
            .collect();
        let mut load: BTreeMap<ServerId, usize> = usable.iter().map(|s| (*s, 0)).collect();
        for (server, _) in targets.keys() {
            if let Some(l) = load.get_mut(server) {
                *l += 1;
            }
        }
        for shnum in (0..u16::from(n)).filter(|s| !homed.contains(s)) {
            // Fewest shares first, ring order breaking ties.
            let Some(server) = usable
                .iter()
                .enumerate()
                .min_by_key(|(i, s)| (load[s], *i))
                .map(|(_, s)| *s)
            else {
                break;
            };
            *load.get_mut(&server).expect("usable server") += 1;
            targets.insert((server, shnum), Vec::new());
        }
        let writekey = self.keys.writekey.expect("write caps only reach here");
        let mut by_server: BTreeMap<ServerId, Vec<MutableShareWrite>> = BTreeMap::new();
        for ((server, shnum), expect) in targets {
            let share = &encoded.shares[usize::from(shnum)];
            let test = if expect.is_empty() {
                TestVector {
                    offset: 0,
                    length: 1,
                    specimen: Vec::new(),
                }
            } else {
                TestVector {
                    offset: 0,
                    length: cs_len as u64,
                    specimen: expect,
                }
            };
            by_server
                .entry(server)
                .or_default()
                .push(MutableShareWrite {
                    shnum,
                    tests: vec![test],
                    writes: vec![DataVector {
                        offset: 0,
                        data: share.clone(),
                    }],
                    new_length: Some(share.len() as u64),
                });
        }
        if by_server.is_empty() {
            return self.fail(PublishError::NotEnoughServers {
                placed: 0,
                needed: usize::from(k),
                servers: 0,
            });
        }
        for (server, shares) in by_server {
            let shnums = shares.iter().map(|s| s.shnum).collect();
            let id = self.reqs.send(
                now,
                server,
                Request::MutableWrite {
                    storage_index: self.keys.storage_index,
                    write_enabler: ssk_write_enabler(&writekey, &derivation_node_id(&server)),
                    lease: self.leases.for_server(&server),
                    shares,
                    read_ranges: vec![ReadRange {
                        offset: 0,
                        length: cs_len as u64,
                    }],
                },
            );
            self.writes.insert(id, (server, shnums));
        }
        self.encoded = Some(encoded);
    }

    fn maybe_finish(&mut self) {
        if self.finished || !self.writes.is_empty() {
            return;
        }
        let Some(encoded) = self.encoded.take() else {
            return;
        };
        let version = encoded.prefix.clone();
        if self.conflict {
            return self.fail(PublishError::Conflict {
                seqnum: version.seqnum,
            });
        }
        if let Some(server) = self.refused {
            return self.fail(PublishError::WriteEnablerRefused { server });
        }
        let distinct: BTreeSet<u16> = self.placed.iter().map(|(_, s)| *s).collect();
        if distinct.len() < usize::from(version.k) {
            let servers = self.servers.len() - self.map.failed.len().min(self.servers.len());
            return self.fail(PublishError::NotEnoughServers {
                placed: distinct.len(),
                needed: usize::from(version.k),
                servers,
            });
        }
        // The map now describes what we wrote: a later update is one round trip.
        let keep = self.config.initial_read as usize;
        for &(server, shnum) in &self.placed {
            let share = &encoded.shares[usize::from(shnum)];
            if let Ok(header) = own_share_header(share) {
                self.map.record_written(server, shnum, share, header, keep);
            }
        }
        // Shares of older versions we did not overwrite no longer describe the file.
        let placed: BTreeSet<(ServerId, u16)> = self.placed.iter().copied().collect();
        self.map
            .shares
            .retain(|k, s| placed.contains(k) || s.header.prefix.seqnum > version.seqnum);
        self.finished = true;
        self.reqs.clear();
        let result = PublishResult {
            cap: self.keys.cap(),
            version,
            placed: std::mem::take(&mut self.placed),
            map: std::mem::take(&mut self.map),
            requests: self.reqs.sent,
        };
        self.events.push_back(PublishEvent::Done(Box::new(result)));
    }
}

impl crate::op::ClientOp for Publish {
    type Event = PublishEvent;

    fn handle_input(&mut self, now: Instant, from: ServerId, id: RequestId, response: Response) {
        if self.finished || !self.reqs.answered(id, from) {
            return;
        }
        if let Some(q) = self.query.as_mut() {
            q.handle(now, from, id, response, &mut self.reqs);
            self.after_query(now);
            return;
        }
        let Some((server, shnums)) = self.writes.remove(&id) else {
            return;
        };
        match response {
            Response::MutableWrite { applied: true, .. } => {
                for shnum in shnums {
                    self.placed.push((server, shnum));
                }
            }
            Response::MutableWrite { applied: false, .. } => self.conflict = true,
            Response::Error {
                kind: ErrorKind::BadWriteEnabler,
                ..
            } => self.refused = Some(server),
            _ => {
                self.map.failed.insert(server);
            }
        }
        self.maybe_finish();
    }

    fn handle_server_lost(&mut self, now: Instant, server: ServerId) {
        if self.finished {
            return;
        }
        let ids = self.reqs.lost(server);
        if let Some(q) = self.query.as_mut() {
            q.lost(now, server, &ids, &mut self.reqs);
            self.after_query(now);
            return;
        }
        for id in ids {
            self.writes.remove(&id);
        }
        self.map.failed.insert(server);
        self.maybe_finish();
    }

    fn handle_timeout(&mut self, now: Instant) {
        for server in self.reqs.expired(now) {
            self.handle_server_lost(now, server);
        }
    }

    fn poll_transmit(&mut self) -> Option<crate::op::Transmit> {
        self.reqs.poll_transmit()
    }

    fn poll_event(&mut self) -> Option<PublishEvent> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.reqs.poll_timeout()
    }
}
