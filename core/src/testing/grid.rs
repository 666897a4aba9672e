//! An in-memory grid that pumps messages between one operation and N storage servers, counting
//! round trips: every batch of requests the operation emits before it sees any answer is one
//! round (they would travel in parallel), and its answers come back together.

use std::collections::{BTreeMap, BTreeSet};

use crate::cap::Cap;
use crate::client::{Driven, Output};
use crate::crypto::rsa_keys::MutableKey;
use crate::dirnode::ops::DirConfig;
use crate::immutable::download::{ChkFile, Download, DownloadConfig, DownloadError, DownloadEvent};
use crate::immutable::encode::convergent_key;
use crate::immutable::upload::{Upload, UploadConfig, UploadError, UploadEvent, UploadResult};
use crate::mutable::layout::MutableFormat;
use crate::mutable::{
    FileKeys, ModifyError, ModifyEvent, Publish, PublishConfig, PublishError, PublishEvent,
    PublishResult, Retrieve, RetrieveConfig, RetrieveError, RetrieveEvent, RetrieveResult,
    ServerMap,
};
use crate::op::ClientOp;
use crate::placement::{ServerDescriptor, ServerId};
use crate::server::{ConnectionId, ServerConfig, StorageServer};
use crate::store::{Lease, MemoryShareStore, ShareStore};
use crate::time::Instant;
use crate::wire::{Request, Response};

pub const SECRET: &[u8] = b"convergence secret for tests....";
pub const LEASE_SECRET: &[u8] = b"lease secret for tests..........";

/// How a server behaves during one operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Drops the connection on the first request it receives after `after_rounds` rounds.
    DisconnectAfter { after_rounds: usize },
}

#[derive(Debug)]
pub struct Grid {
    pub servers: BTreeMap<ServerId, StorageServer<MemoryShareStore>>,
    pub descriptors: Vec<ServerDescriptor>,
    pub faults: BTreeMap<ServerId, Fault>,
    /// Shares deleted from every server once this many rounds have been delivered:
    /// `(round, storage index, share number)`.
    pub vanish: Vec<(usize, [u8; 16], u16)>,
    pub now: Instant,
}

/// What an operation did on the grid.
#[derive(Debug, Default)]
pub struct Run {
    pub rounds: usize,
    pub messages: usize,
    pub max_bytes_held: usize,
}

pub fn server_id(i: usize) -> ServerId {
    let mut id = [0u8; 32];
    id[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
    id[8] = 0xa5;
    ServerId(id)
}

impl Grid {
    pub fn new(servers: usize) -> Grid {
        Self::with_capacity(servers, 1 << 40)
    }

    pub fn with_capacity(servers: usize, capacity: u64) -> Grid {
        let mut grid = Grid {
            servers: BTreeMap::new(),
            descriptors: Vec::new(),
            faults: BTreeMap::new(),
            vanish: Vec::new(),
            now: Instant(1),
        };
        for i in 0..servers {
            let id = server_id(i);
            grid.servers.insert(
                id,
                StorageServer::new(
                    MemoryShareStore::new(capacity, 1 << 40),
                    ServerConfig::default(),
                ),
            );
            grid.descriptors.push(ServerDescriptor {
                id,
                permutation_seed: id.0.to_vec(),
            });
        }
        grid
    }

    /// A grid whose servers have the given ids (and use them as permutation seeds).
    pub fn with_ids(ids: &[ServerId]) -> Grid {
        let mut grid = Grid::new(0);
        for &id in ids {
            grid.servers.insert(
                id,
                StorageServer::new(
                    MemoryShareStore::new(1 << 40, 1 << 40),
                    ServerConfig::default(),
                ),
            );
            grid.descriptors.push(ServerDescriptor {
                id,
                permutation_seed: id.0.to_vec(),
            });
        }
        grid
    }

    /// Place a committed share on a server, as if an earlier upload had written it.
    pub fn put_share(&mut self, server: &ServerId, si: &[u8; 16], shnum: u16, bytes: &[u8]) {
        let lease = Lease {
            renew_secret: [1; 32],
            cancel_secret: [2; 32],
            expires: Instant(u64::MAX),
        };
        let store = self.store_mut(server);
        store
            .create_share(si, shnum, bytes.len() as u64, lease)
            .expect("create");
        store.write_share(si, shnum, 0, bytes).expect("write");
        store
            .commit_share(si, shnum, bytes.len() as u64)
            .expect("commit");
    }

    pub fn store_mut(&mut self, id: &ServerId) -> &mut MemoryShareStore {
        self.servers.get_mut(id).expect("server").store_mut()
    }

    /// Deliver one batch; returns the answers, or `None` for a server that dropped the connection.
    fn deliver(
        &mut self,
        batch: Vec<(ServerId, u64, Request)>,
        round: usize,
    ) -> Vec<(ServerId, u64, Option<Response>)> {
        let due: Vec<(usize, [u8; 16], u16)> = self
            .vanish
            .iter()
            .copied()
            .filter(|(r, ..)| round > *r)
            .collect();
        self.vanish.retain(|(r, ..)| round <= *r);
        for (_, si, shnum) in due {
            for server in self.servers.values_mut() {
                server.store_mut().delete_share(&si, shnum);
            }
        }
        let mut dropped = BTreeSet::new();
        let mut out = Vec::new();
        for (to, id, request) in batch {
            let disconnect = matches!(self.faults.get(&to), Some(Fault::DisconnectAfter { after_rounds }) if round > *after_rounds);
            if disconnect || dropped.contains(&to) {
                if dropped.insert(to) {
                    let _ = self
                        .servers
                        .get_mut(&to)
                        .expect("server")
                        .handle_disconnect(ConnectionId(0));
                    out.push((to, id, None));
                }
                continue;
            }
            let server = self.servers.get_mut(&to).expect("known server");
            let response = server.handle_request(self.now, ConnectionId(0), request);
            out.push((to, id, Some(response)));
        }
        out
    }

    /// The directory operations' view of this grid (its servers and the tests' lease secret).
    pub fn dir_config(&self) -> DirConfig {
        DirConfig::new(self.descriptors.clone(), LEASE_SECRET.to_vec())
    }

    /// Has server `to` answer one request now, with no faults: for tests that interleave the
    /// requests of several operations themselves.
    pub fn answer(&mut self, to: ServerId, request: Request) -> Response {
        self.servers
            .get_mut(&to)
            .expect("known server")
            .handle_request(self.now, ConnectionId(0), request)
    }

    /// Drive `op` to completion. `on_event` handles each event (and may call the op's mutators);
    /// it returns `Some(result)` when the operation is over. Requests that expect no answer
    /// (corruption advisories) do not count as a round trip.
    pub fn drive<O: ClientOp, R>(
        &mut self,
        op: &mut O,
        bytes_held: impl Fn(&O) -> usize,
        mut on_event: impl FnMut(&mut O, Instant, O::Event) -> Option<R>,
    ) -> (R, Run) {
        let mut run = Run::default();
        let mut driven = Driven::new(op);
        let mut result = None;
        loop {
            // One round: everything the operation sends before it must wait is one batch.
            let mut batch = Vec::new();
            let deadline = loop {
                match driven.poll_output() {
                    Output::Transmit(t) => batch.push((t.to, t.id, t.request)),
                    Output::Event(ev) => {
                        if let Some(r) = on_event(&mut **driven.op_mut(), self.now, ev) {
                            result = Some(r);
                        }
                        run.max_bytes_held = run.max_bytes_held.max(bytes_held(*driven.op()));
                    }
                    Output::Wait(deadline) => break deadline,
                    Output::Stalled => break None,
                }
            };
            run.max_bytes_held = run.max_bytes_held.max(bytes_held(*driven.op()));
            if batch.is_empty() {
                if let Some(r) = result {
                    return (r, run);
                }
                self.now = deadline.expect("operation stalled with nothing to send and no timer");
                driven.handle_timeout(self.now);
                continue;
            }
            if batch
                .iter()
                .any(|(_, _, r)| !matches!(r, Request::AdviseCorrupt { .. }))
            {
                run.rounds += 1;
            }
            run.messages += batch.len();
            for (from, id, response) in self.deliver(batch, run.rounds) {
                match response {
                    Some(r) => driven.handle_response(self.now, from, id, r, 0),
                    None => driven.handle_server_lost(self.now, from),
                }
            }
        }
    }

    /// Upload `data` with `config`; the key is convergent as Tahoe's.
    pub fn upload(
        &mut self,
        data: &[u8],
        config: UploadConfig,
    ) -> (Result<UploadResult, UploadError>, Run) {
        let p = config.params;
        let key = convergent_key(data, SECRET, p.k, p.n, p.max_segment_size);
        let mut op = Upload::new(
            self.now,
            config,
            key,
            data.len() as u64,
            &self.descriptors,
            LEASE_SECRET,
        );
        self.drive(&mut op, Upload::bytes_held, |op, now, ev| match ev {
            UploadEvent::NeedSegment { offset, length, .. } => {
                op.provide_segment(now, &data[offset as usize..(offset + length) as usize]);
                None
            }
            UploadEvent::Done(r) => Some(Ok(r)),
            UploadEvent::Failed(e) => Some(Err(e)),
            _ => None,
        })
    }

    /// Download a cap; returns the bytes, the run, and every event seen.
    pub fn download(
        &mut self,
        cap: &Cap,
        config: DownloadConfig,
    ) -> (Result<Vec<u8>, DownloadError>, Run, Vec<DownloadEvent>) {
        let file = match cap {
            Cap::Lit { data } => return (Ok(data.clone()), Run::default(), Vec::new()),
            other => ChkFile::from_cap(other)
                .unwrap_or_else(|| panic!("not an immutable file cap: {other}")),
        };
        let mut op = Download::new(self.now, config, file, &self.descriptors);
        let mut out = Vec::new();
        let mut events = Vec::new();
        let (result, run) = self.drive(&mut op, Download::bytes_held, |_, _, ev| {
            let result = match &ev {
                DownloadEvent::Data { offset, bytes } => {
                    assert_eq!(*offset as usize, out.len(), "segments arrive in order");
                    out.extend_from_slice(bytes);
                    None
                }
                DownloadEvent::Done { .. } => Some(Ok(())),
                DownloadEvent::Failed(e) => Some(Err(e.clone())),
                _ => None,
            };
            events.push(ev);
            result
        });
        (result.map(|()| out), run, events)
    }
}

impl Grid {
    /// Create a mutable file holding `data`, 3-of-10.
    pub fn create_mutable(
        &mut self,
        format: MutableFormat,
        key: MutableKey,
        data: &[u8],
    ) -> (Result<PublishResult, PublishError>, Run) {
        self.create_mutable_with(format, key, data, PublishConfig::default())
    }

    /// Create a mutable file holding `data` with the given encoding.
    pub fn create_mutable_with(
        &mut self,
        format: MutableFormat,
        key: MutableKey,
        data: &[u8],
        config: PublishConfig,
    ) -> (Result<PublishResult, PublishError>, Run) {
        let mut op = Publish::create(
            self.now,
            config,
            format,
            key,
            data.to_vec(),
            &self.descriptors,
            LEASE_SECRET,
            [data.len() as u8; 32],
        );
        self.drive(&mut op, |_| 0, |_, _, ev| Some(publish_outcome(ev)))
    }

    /// Replace a mutable file's contents, with a servermap from an earlier operation or cold.
    pub fn update_mutable(
        &mut self,
        cap: &Cap,
        data: &[u8],
        map: Option<ServerMap>,
    ) -> (Result<PublishResult, PublishError>, Run) {
        let keys = FileKeys::from_cap(cap).expect("mutable cap");
        let mut op = Publish::update(
            self.now,
            PublishConfig::default(),
            keys,
            data.to_vec(),
            &self.descriptors,
            map,
            LEASE_SECRET,
            [data.len() as u8 ^ 0x5a; 32],
        );
        self.drive(&mut op, |_| 0, |_, _, ev| Some(publish_outcome(ev)))
    }

    /// Overwrite `data.len()` bytes of an MDMF file at `offset`, in place.
    pub fn modify_mutable(
        &mut self,
        cap: &Cap,
        offset: u64,
        data: &[u8],
        map: Option<ServerMap>,
    ) -> (Result<PublishResult, ModifyError>, Run) {
        let keys = FileKeys::from_cap(cap).expect("mutable cap");
        let mut op = crate::mutable::Modify::new(
            self.now,
            PublishConfig::default(),
            keys,
            offset,
            data.to_vec(),
            &self.descriptors,
            map,
            LEASE_SECRET,
            [offset as u8 ^ 0x33; 32],
        );
        self.drive(
            &mut op,
            |_| 0,
            |_, _, ev| {
                Some(match ev {
                    ModifyEvent::Done(r) => Ok(*r),
                    ModifyEvent::Failed(e) => Err(e),
                })
            },
        )
    }

    /// Read a mutable file (or `range` of it); returns the bytes, the run, and every event.
    #[allow(clippy::type_complexity)]
    pub fn retrieve(
        &mut self,
        cap: &Cap,
        range: Option<(u64, u64)>,
    ) -> (
        Result<(Vec<u8>, RetrieveResult), RetrieveError>,
        Run,
        Vec<RetrieveEvent>,
    ) {
        let keys = FileKeys::from_cap(cap).expect("mutable cap");
        let mut op = Retrieve::new(
            self.now,
            RetrieveConfig::default(),
            keys,
            &self.descriptors,
            range,
        );
        let mut out = Vec::new();
        let mut events = Vec::new();
        let start = range.map_or(0, |r| r.0);
        let (result, run) = self.drive(
            &mut op,
            |_| 0,
            |_, _, ev| {
                let result = match &ev {
                    RetrieveEvent::Data { offset, bytes } => {
                        assert_eq!(
                            *offset as usize,
                            start as usize + out.len(),
                            "data arrives in order"
                        );
                        out.extend_from_slice(bytes);
                        None
                    }
                    RetrieveEvent::Done(r) => Some(Ok((**r).clone())),
                    RetrieveEvent::Failed(e) => Some(Err(e.clone())),
                    RetrieveEvent::CorruptShare { .. } => None,
                };
                events.push(ev);
                result
            },
        );
        (result.map(|r| (out, r)), run, events)
    }
}

fn publish_outcome(ev: PublishEvent) -> Result<PublishResult, PublishError> {
    match ev {
        PublishEvent::Done(r) => Ok(*r),
        PublishEvent::Failed(e) => Err(e),
    }
}

/// Deterministic pseudo-random bytes (xorshift), so tests need no RNG crate.
pub fn test_data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}
