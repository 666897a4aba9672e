//! Asking every storage server how it is: protocol version, limits, space used and available,
//! shares held. One round trip: a `GetVersion` goes to each server at once, and the operation
//! ends when every server has answered, been lost, or missed the deadline.
//!
//! Gateways use it for their welcome page and `/statistics` (storage nodes themselves serve no
//! web pages, so this is how their figures reach a user).

use std::collections::BTreeMap;

use crate::op::{RequestId, Transmit};
use crate::placement::ServerId;
use crate::time::{Duration, Instant};
use crate::wire::{Request, Response};

/// What one server said, or why it said nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerState {
    /// It answered the version request.
    Answered(ServerFigures),
    /// The connection to it could not be made or broke.
    Unreachable,
    /// No answer before the deadline.
    TimedOut,
    /// It answered with an error or with something other than a version.
    Failed(String),
}

/// A server's own figures, from its version answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerFigures {
    pub protocol: u32,
    pub max_share_size: u64,
    pub available_space: u64,
    pub used_space: u64,
    pub shares_held: u64,
}

/// The one event: every server's state, in the order the servers were given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GridStatusReport {
    pub servers: Vec<(ServerId, ServerState)>,
}

/// The status query as a five-call state machine (see [`crate::op::ClientOp`]).
#[derive(Debug)]
pub struct GridStatus {
    order: Vec<ServerId>,
    /// Request id -> server, for requests not yet settled.
    pending: BTreeMap<RequestId, ServerId>,
    states: BTreeMap<ServerId, ServerState>,
    transmits: Vec<Transmit>,
    deadline: Instant,
    report: Option<GridStatusReport>,
}

impl GridStatus {
    /// Ask each of `servers` (duplicates are asked once), giving up on any that has not
    /// answered `timeout` after `now`.
    pub fn new(now: Instant, servers: &[ServerId], timeout: Duration) -> GridStatus {
        let mut order = Vec::new();
        for s in servers {
            if !order.contains(s) {
                order.push(*s);
            }
        }
        let mut status = GridStatus {
            pending: BTreeMap::new(),
            states: BTreeMap::new(),
            transmits: Vec::new(),
            deadline: now + timeout,
            report: None,
            order,
        };
        for (id, server) in status.order.iter().enumerate() {
            let id = id as RequestId;
            status.pending.insert(id, *server);
            status.transmits.push(Transmit {
                to: *server,
                id,
                request: Request::GetVersion,
            });
        }
        // Pop from the back: keep the servers' order on the wire.
        status.transmits.reverse();
        status.finish_if_settled();
        status
    }

    fn finish_if_settled(&mut self) {
        if !self.pending.is_empty() || self.states.len() < self.order.len() {
            return;
        }
        let servers = self
            .order
            .iter()
            .map(|s| (*s, self.states.remove(s).unwrap_or(ServerState::TimedOut)))
            .collect();
        self.report = Some(GridStatusReport { servers });
    }
}

impl crate::op::ClientOp for GridStatus {
    type Event = GridStatusReport;

    fn handle_input(&mut self, _now: Instant, from: ServerId, id: RequestId, resp: Response) {
        if self.pending.get(&id) != Some(&from) {
            return; // not ours, or already settled
        }
        self.pending.remove(&id);
        let state = match resp {
            Response::Version {
                protocol,
                max_share_size,
                available_space,
                used_space,
                shares_held,
            } => ServerState::Answered(ServerFigures {
                protocol,
                max_share_size,
                available_space,
                used_space,
                shares_held,
            }),
            Response::Error { kind, message } => {
                ServerState::Failed(format!("{kind:?}: {message}"))
            }
            other => ServerState::Failed(format!("unexpected answer {other:?}")),
        };
        self.states.insert(from, state);
        self.finish_if_settled();
    }

    fn handle_server_lost(&mut self, _now: Instant, server: ServerId) {
        let lost: Vec<RequestId> = self
            .pending
            .iter()
            .filter(|(_, s)| **s == server)
            .map(|(id, _)| *id)
            .collect();
        for id in lost {
            self.pending.remove(&id);
            self.states.insert(server, ServerState::Unreachable);
        }
        self.finish_if_settled();
    }

    fn handle_timeout(&mut self, now: Instant) {
        if now < self.deadline {
            return;
        }
        for (_, server) in std::mem::take(&mut self.pending) {
            self.states.insert(server, ServerState::TimedOut);
        }
        self.finish_if_settled();
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop()
    }

    fn poll_event(&mut self) -> Option<GridStatusReport> {
        self.report.take()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        (!self.pending.is_empty()).then_some(self.deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::ClientOp as _;
    use crate::wire::ErrorKind;

    fn id(n: u8) -> ServerId {
        ServerId([n; 32])
    }

    fn version(used: u64, held: u64) -> Response {
        Response::Version {
            protocol: 2,
            max_share_size: 1 << 30,
            available_space: 1000,
            used_space: used,
            shares_held: held,
        }
    }

    fn drain(s: &mut GridStatus) -> Vec<Transmit> {
        std::iter::from_fn(|| s.poll_transmit()).collect()
    }

    #[test]
    fn every_server_is_asked_once_and_each_outcome_is_reported_in_order() {
        let t0 = Instant::from_micros(0);
        let mut s = GridStatus::new(
            t0,
            &[id(1), id(2), id(3), id(2), id(4)],
            Duration::from_secs(1),
        );
        let sent = drain(&mut s);
        assert_eq!(
            sent.iter().map(|t| t.to).collect::<Vec<_>>(),
            vec![id(1), id(2), id(3), id(4)]
        );
        assert!(sent.iter().all(|t| t.request == Request::GetVersion));
        assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(1)));
        s.handle_input(t0, id(1), sent[0].id, version(10, 2));
        s.handle_server_lost(t0, id(2));
        s.handle_input(
            t0,
            id(3),
            sent[2].id,
            Response::Error {
                kind: ErrorKind::StoreFailure,
                message: "disk".into(),
            },
        );
        assert_eq!(s.poll_event(), None, "server 4 has not answered");
        // Early timer: nothing changes.
        s.handle_timeout(t0 + Duration::from_millis(10));
        assert_eq!(s.poll_event(), None);
        s.handle_timeout(t0 + Duration::from_secs(1));
        let report = s.poll_event().expect("settled");
        assert_eq!(report.servers.len(), 4);
        assert_eq!(
            report.servers[0],
            (
                id(1),
                ServerState::Answered(ServerFigures {
                    protocol: 2,
                    max_share_size: 1 << 30,
                    available_space: 1000,
                    used_space: 10,
                    shares_held: 2,
                })
            )
        );
        assert_eq!(report.servers[1], (id(2), ServerState::Unreachable));
        assert!(matches!(report.servers[2].1, ServerState::Failed(ref m) if m.contains("disk")));
        assert_eq!(report.servers[3], (id(4), ServerState::TimedOut));
        assert_eq!(s.poll_timeout(), None);
        assert_eq!(s.poll_event(), None, "one report only");
    }

    #[test]
    fn answers_from_the_wrong_server_or_twice_are_ignored() {
        let t0 = Instant::from_micros(0);
        let mut s = GridStatus::new(t0, &[id(1), id(2)], Duration::from_secs(1));
        let sent = drain(&mut s);
        s.handle_input(t0, id(2), sent[0].id, version(1, 1)); // id 0 belongs to server 1
        s.handle_input(t0, id(1), sent[0].id, version(5, 5));
        s.handle_input(t0, id(1), sent[0].id, version(9, 9));
        s.handle_input(t0, id(2), sent[1].id, version(7, 7));
        let report = s.poll_event().expect("both answered");
        let used: Vec<u64> = report
            .servers
            .iter()
            .map(|(_, st)| match st {
                ServerState::Answered(f) => f.used_space,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(used, vec![5, 7]);
    }

    #[test]
    fn no_servers_report_at_once() {
        let mut s = GridStatus::new(Instant::from_micros(5), &[], Duration::from_secs(1));
        assert_eq!(s.poll_transmit(), None);
        assert_eq!(s.poll_event(), Some(GridStatusReport { servers: vec![] }));
        assert_eq!(s.poll_timeout(), None);
    }
}
