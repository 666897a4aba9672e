//! Bookkeeping every mutable-file operation shares: request ids, the outbox, and per-request
//! deadlines that turn a silent server into a lost one.

use std::collections::{BTreeMap, VecDeque};

use crate::op::{RequestId, Transmit};
use crate::placement::ServerId;
use crate::time::{Duration, Instant};
use crate::wire::Request;

#[derive(Debug)]
struct Pending {
    server: ServerId,
    deadline: Instant,
}

#[derive(Debug)]
pub(crate) struct Requests {
    next_id: RequestId,
    pending: BTreeMap<RequestId, Pending>,
    outbox: VecDeque<Transmit>,
    timeout: Duration,
    /// Requests sent so far (for reports).
    pub sent: u64,
}

impl Requests {
    pub fn new(timeout: Duration) -> Requests {
        Requests {
            next_id: 0,
            pending: BTreeMap::new(),
            outbox: VecDeque::new(),
            timeout,
            sent: 0,
        }
    }

    pub fn send(&mut self, now: Instant, to: ServerId, request: Request) -> RequestId {
        let id = self.next_id;
        self.next_id += 1;
        self.sent += 1;
        self.pending.insert(
            id,
            Pending {
                server: to,
                deadline: now + self.timeout,
            },
        );
        self.outbox.push_back(Transmit { to, id, request });
        id
    }

    /// Marks `id` answered by `from`; false for an id we are not waiting for (late or forged).
    pub fn answered(&mut self, id: RequestId, from: ServerId) -> bool {
        match self.pending.get(&id) {
            Some(p) if p.server == from => {
                self.pending.remove(&id);
                true
            }
            _ => false,
        }
    }

    /// Sends a request that expects no answer (a corruption advisory): it gets an id but no
    /// deadline, so it never holds the operation open.
    pub fn notify(&mut self, to: ServerId, request: Request) {
        let id = self.next_id;
        self.next_id += 1;
        self.sent += 1;
        self.outbox.push_back(Transmit { to, id, request });
    }

    /// Forgets everything in flight to `server`, returning those request ids.
    pub fn lost(&mut self, server: ServerId) -> Vec<RequestId> {
        let ids: Vec<RequestId> = self
            .pending
            .iter()
            .filter(|(_, p)| p.server == server)
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            self.pending.remove(id);
        }
        self.outbox.retain(|t| t.to != server);
        ids
    }

    /// Servers with a request past its deadline.
    pub fn expired(&self, now: Instant) -> Vec<ServerId> {
        let mut out: Vec<ServerId> = self
            .pending
            .values()
            .filter(|p| p.deadline <= now)
            .map(|p| p.server)
            .collect();
        out.sort();
        out.dedup();
        out
    }

    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.outbox.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.deadline).min()
    }

    /// Drops everything: the operation is over.
    pub fn clear(&mut self) {
        self.pending.clear();
        self.outbox.clear();
    }
}
