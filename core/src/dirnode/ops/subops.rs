//! Sub-operations inside a directory operation: one table from the outer request ids the driver
//! sees to (sub-operation, inner id), so reads and publishes started by the same directory
//! operation never collide however many run at once.
//!
//! Each sub-operation numbers its requests from zero; the outer operation hands the driver its
//! own numbers instead and translates answers back. A finished sub-operation leaves the table
//! with its routes, so a late answer to it is dropped rather than misdelivered.

use crate::op::ClientOp as _;
use std::collections::{BTreeMap, VecDeque};

use crate::crypto::drbg::Drbg;
use crate::crypto::rsa_keys::MutableKey;
use crate::immutable::download::{ChkFile, Download, DownloadError, DownloadEvent};
use crate::mutable::layout::MutableFormat;
use crate::mutable::{
    FileKeys, Publish, PublishError, PublishEvent, PublishResult, Retrieve, RetrieveError,
    RetrieveEvent, ServerMap,
};
use crate::op::{RequestId, Transmit};
use crate::placement::ServerId;
use crate::time::Instant;
use crate::wire::Response;

use super::ctx::DirConfig;
use crate::client::VerifiedSignatures;

/// Names one sub-operation of a directory operation.
pub(crate) type SubId = u32;

/// A running sub-operation, with the plaintext it delivered so far.
#[derive(Debug)]
enum Sub {
    /// `fingerprint`: the file's key fingerprint, under which its verified signatures are kept.
    Retrieve {
        op: Box<Retrieve>,
        data: Vec<u8>,
        fingerprint: [u8; 32],
    },
    Publish(Box<Publish>),
    Download {
        op: Box<Download>,
        data: Vec<u8>,
    },
}

/// How a sub-operation ended.
#[derive(Debug)]
pub(crate) enum SubDone {
    /// A mutable file's whole plaintext and the map its read built.
    Retrieved(Result<(Vec<u8>, ServerMap), RetrieveError>),
    Published(Result<PublishResult, PublishError>),
    /// An immutable file's whole plaintext.
    Downloaded(Result<Vec<u8>, DownloadError>),
}

/// The sub-operations of one directory operation and their request-id routes.
#[derive(Debug)]
pub(crate) struct SubOps {
    config: DirConfig,
    /// Seeds for publishes (salts and signature randomness), one per publish.
    seeds: Drbg,
    subs: BTreeMap<SubId, Sub>,
    next_sub: SubId,
    /// Outer request id -> (sub-operation, its own id for that request).
    routes: BTreeMap<RequestId, (SubId, RequestId)>,
    next_id: RequestId,
    /// Signatures verified before (lent by the client's cache for this operation): a read of
    /// a version seen before skips the RSA check.
    pub trusted: VerifiedSignatures,
    outbox: VecDeque<Transmit>,
    finished: Vec<(SubId, SubDone)>,
}

impl SubOps {
    pub fn new(config: DirConfig, seeds: Drbg) -> SubOps {
        SubOps {
            config,
            seeds,
            subs: BTreeMap::new(),
            next_sub: 0,
            routes: BTreeMap::new(),
            next_id: 0,
            trusted: VerifiedSignatures::default(),
            outbox: VecDeque::new(),
            finished: Vec::new(),
        }
    }

    /// Reads the whole of a mutable file.
    pub fn retrieve(&mut self, now: Instant, keys: FileKeys) -> SubId {
        let fingerprint = keys.fingerprint;
        let mut op = Retrieve::new(
            now,
            self.config.retrieve.clone(),
            keys,
            &self.config.servers,
            None,
        );
        op.trust_verified(&self.trusted.get(&fingerprint));
        self.add(Sub::Retrieve {
            op: Box::new(op),
            data: Vec::new(),
            fingerprint,
        })
    }

    /// Replaces a mutable file's contents (one round trip with a warm `map`).
    pub fn update(
        &mut self,
        now: Instant,
        keys: FileKeys,
        contents: Vec<u8>,
        map: Option<ServerMap>,
    ) -> SubId {
        let seed = self.seeds.array();
        let op = Publish::update(
            now,
            self.config.publish.clone(),
            keys,
            contents,
            &self.config.servers,
            map,
            &self.config.lease_secret,
            seed,
        );
        self.add(Sub::Publish(Box::new(op)))
    }

    /// Creates a mutable file signed with `key`.
    pub fn create(
        &mut self,
        now: Instant,
        format: MutableFormat,
        key: MutableKey,
        contents: Vec<u8>,
    ) -> SubId {
        let seed = self.seeds.array();
        let op = Publish::create(
            now,
            self.config.publish.clone(),
            format,
            key,
            contents,
            &self.config.servers,
            &self.config.lease_secret,
            seed,
        );
        self.add(Sub::Publish(Box::new(op)))
    }

    /// Reads the whole of an immutable (CHK) file.
    pub fn download(&mut self, now: Instant, file: ChkFile) -> SubId {
        let op = Download::new(now, self.config.download, file, &self.config.servers);
        self.add(Sub::Download {
            op: Box::new(op),
            data: Vec::new(),
        })
    }

    fn add(&mut self, sub: Sub) -> SubId {
        let id = self.next_sub;
        self.next_sub += 1;
        self.subs.insert(id, sub);
        self.pump(id);
        id
    }

    /// Stops a sub-operation whose outcome is no longer wanted; its answers will be dropped.
    pub fn cancel(&mut self, id: SubId) {
        self.subs.remove(&id);
        self.routes.retain(|_, (sub, _)| *sub != id);
        self.finished.retain(|(sub, _)| *sub != id);
    }

    /// Stops everything: the directory operation is over.
    pub fn clear(&mut self) {
        self.subs.clear();
        self.routes.clear();
        self.outbox.clear();
        self.finished.clear();
    }

    /// Sub-operations that ended since the last call, in the order they ended.
    pub fn take_finished(&mut self) -> Vec<(SubId, SubDone)> {
        std::mem::take(&mut self.finished)
    }

    pub fn handle_input(&mut self, now: Instant, from: ServerId, id: RequestId, r: Response) {
        let Some((sub, inner)) = self.routes.remove(&id) else {
            return;
        };
        if let Some(op) = self.subs.get_mut(&sub) {
            match op {
                Sub::Retrieve { op, .. } => op.handle_input(now, from, inner, r),
                Sub::Publish(op) => op.handle_input(now, from, inner, r),
                Sub::Download { op, .. } => op.handle_input(now, from, inner, r),
            }
            self.pump(sub);
        }
    }

    pub fn handle_server_lost(&mut self, now: Instant, server: ServerId) {
        let ids: Vec<SubId> = self.subs.keys().copied().collect();
        for id in ids {
            if let Some(op) = self.subs.get_mut(&id) {
                match op {
                    Sub::Retrieve { op, .. } => op.handle_server_lost(now, server),
                    Sub::Publish(op) => op.handle_server_lost(now, server),
                    Sub::Download { op, .. } => op.handle_server_lost(now, server),
                }
                self.pump(id);
            }
        }
        // Requests to the lost server will never be answered.
        self.outbox.retain(|t| t.to != server);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<SubId> = self
            .subs
            .iter()
            .filter(|(_, op)| Self::timeout_of(op).is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            if let Some(op) = self.subs.get_mut(&id) {
                match op {
                    Sub::Retrieve { op, .. } => op.handle_timeout(now),
                    Sub::Publish(op) => op.handle_timeout(now),
                    Sub::Download { op, .. } => op.handle_timeout(now),
                }
                self.pump(id);
            }
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.outbox.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.subs.values().filter_map(Self::timeout_of).min()
    }

    fn timeout_of(op: &Sub) -> Option<Instant> {
        match op {
            Sub::Retrieve { op, .. } => op.poll_timeout(),
            Sub::Publish(op) => op.poll_timeout(),
            Sub::Download { op, .. } => op.poll_timeout(),
        }
    }

    /// Moves a sub-operation's transmits to the outbox (renumbered) and collects its end.
    fn pump(&mut self, id: SubId) {
        let Some(op) = self.subs.get_mut(&id) else {
            return;
        };
        let mut ended = None;
        loop {
            let transmit = match op {
                Sub::Retrieve { op, .. } => op.poll_transmit(),
                Sub::Publish(op) => op.poll_transmit(),
                Sub::Download { op, .. } => op.poll_transmit(),
            };
            let Some(t) = transmit else { break };
            let outer = self.next_id;
            self.next_id += 1;
            self.routes.insert(outer, (id, t.id));
            self.outbox.push_back(Transmit { id: outer, ..t });
        }
        match op {
            Sub::Retrieve {
                op,
                data,
                fingerprint,
            } => {
                while let Some(ev) = op.poll_event() {
                    match ev {
                        RetrieveEvent::Data { bytes, .. } => data.extend_from_slice(&bytes),
                        RetrieveEvent::Done(r) => {
                            self.trusted.remember(*fingerprint, &r.map.verified);
                            ended = Some(SubDone::Retrieved(Ok((std::mem::take(data), r.map))))
                        }
                        RetrieveEvent::Failed(e) => ended = Some(SubDone::Retrieved(Err(e))),
                        RetrieveEvent::CorruptShare { .. } => {}
                    }
                }
            }
            Sub::Publish(op) => {
                while let Some(ev) = op.poll_event() {
                    ended = Some(SubDone::Published(match ev {
                        PublishEvent::Done(r) => Ok(*r),
                        PublishEvent::Failed(e) => Err(e),
                    }));
                }
            }
            Sub::Download { op, data } => {
                while let Some(ev) = op.poll_event() {
                    match ev {
                        DownloadEvent::Data { bytes, .. } => data.extend_from_slice(&bytes),
                        DownloadEvent::Done { .. } => {
                            ended = Some(SubDone::Downloaded(Ok(std::mem::take(data))))
                        }
                        DownloadEvent::Failed(e) => ended = Some(SubDone::Downloaded(Err(e))),
                        _ => {}
                    }
                }
            }
        }
        if let Some(done) = ended {
            self.subs.remove(&id);
            self.routes.retain(|_, (sub, _)| *sub != id);
            self.finished.push((id, done));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::ServerDescriptor;
    use crate::wire::Request;

    fn server(i: u8) -> ServerDescriptor {
        ServerDescriptor {
            id: ServerId([i; 32]),
            permutation_seed: vec![i],
        }
    }

    #[test]
    fn outer_ids_are_unique_and_route_back_to_their_sub_operation() {
        let config = DirConfig::new(vec![server(1), server(2)], b"lease".to_vec());
        let mut subs = SubOps::new(config, Drbg::new([7; 32]));
        let keys = FileKeys::from_cap(
            &crate::cap::Cap::parse(
                "URI:SSK:vfvcbdfbszyrsaxchgevhmmlii:euw4iw7bbnkrrwpzuburbhppuxhc3gwxv26f6imekhz7zyw2ojnq",
            )
            .unwrap(),
        )
        .unwrap();
        let a = subs.retrieve(Instant(0), keys.clone());
        let b = subs.retrieve(Instant(0), keys);
        assert_ne!(a, b);
        let mut sent = Vec::new();
        while let Some(t) = subs.poll_transmit() {
            assert!(matches!(t.request, Request::MutableRead { .. }));
            sent.push(t);
        }
        // Both sub-operations number their requests 0 and 1; the outer ids differ.
        let ids: std::collections::BTreeSet<_> = sent.iter().map(|t| t.id).collect();
        assert_eq!((sent.len(), ids.len()), (4, 4));
        // Every server says it holds nothing: each read ends once both of its answers came.
        for t in &sent {
            subs.handle_input(
                Instant(1),
                t.to,
                t.id,
                Response::MutableRead { shares: vec![] },
            );
        }
        let done = subs.take_finished();
        assert_eq!(done.len(), 2);
        assert!(done
            .iter()
            .all(|(_, d)| matches!(d, SubDone::Retrieved(Err(RetrieveError::NoShares { .. })))));
        // A repeated answer routes nowhere.
        subs.handle_input(
            Instant(2),
            sent[0].to,
            sent[0].id,
            Response::MutableRead { shares: vec![] },
        );
        assert!(subs.take_finished().is_empty());
        assert_eq!(subs.poll_timeout(), None);
    }
}
