//! The wire-level request ids of one connection, shared by every operation that uses it.
//!
//! Each operation numbers its own requests from 0, so two operations on one connection would
//! collide. A connection therefore hands out its own wire ids (never reused, so a late answer
//! cannot reach a newer request) and maps each back to (operation, the operation's id).
//!
//! Invariant: a route is only registered while the table is open, and [`Routes::close`] marks
//! it closed and takes every remaining route at once. So each request gets exactly one of: its
//! response, a loss notice to its operation, or a refused registration (the sender then
//! reports the loss itself). Runtimes that share a connection between threads wrap this in
//! their lock and model-check that wrapper; the logic is here once.

use std::collections::{BTreeMap, BTreeSet};

use crate::op::RequestId;

/// Names one operation among those sharing connections.
pub type OpId = u64;

/// Where the answer to one wire-level request goes.
#[derive(Debug)]
struct Route<T> {
    op: OpId,
    id: RequestId,
    sink: T,
}

/// The routes of one connection; `T` is what reaches an operation (a channel sender, or
/// nothing when the operation id says it all).
#[derive(Debug)]
pub struct Routes<T> {
    next_wire_id: u64,
    pending: BTreeMap<u64, Route<T>>,
    closed: bool,
}

impl<T> Default for Routes<T> {
    fn default() -> Self {
        Routes {
            next_wire_id: 0,
            pending: BTreeMap::new(),
            closed: false,
        }
    }
}

impl<T> Routes<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Register request `id` of operation `op`; its wire id, or `None` once closed (nothing
    /// was registered).
    pub fn register(&mut self, op: OpId, id: RequestId, sink: T) -> Option<u64> {
        if self.closed {
            return None;
        }
        let wire_id = self.next_wire_id;
        self.next_wire_id += 1;
        self.pending.insert(wire_id, Route { op, id, sink });
        Some(wire_id)
    }

    /// The answer to `wire_id` arrived: the operation, its id for the request, and the sink.
    /// `None` for an answer nobody waits for (its operation ended, or a server's invention).
    pub fn complete(&mut self, wire_id: u64) -> Option<(OpId, RequestId, T)> {
        self.pending.remove(&wire_id).map(|r| (r.op, r.id, r.sink))
    }

    /// The connection broke: refuse later registrations and return one sink per operation
    /// that had requests in flight (each must be told the server is lost).
    pub fn close(&mut self) -> Vec<(OpId, T)> {
        self.closed = true;
        let mut told = BTreeSet::new();
        std::mem::take(&mut self.pending)
            .into_values()
            .filter(|r| told.insert(r.op))
            .map(|r| (r.op, r.sink))
            .collect()
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Requests in flight.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Operation `op` has ended: drop its routes (late answers are dropped).
    pub fn forget_op(&mut self, op: OpId) {
        self.pending.retain(|_, r| r.op != op);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_ids_are_unique_per_connection_and_map_back() {
        let mut r = Routes::new();
        let a = r.register(1, 0, 'a').unwrap();
        let b = r.register(2, 0, 'b').unwrap();
        assert_ne!(a, b);
        assert_eq!(r.complete(b), Some((2, 0, 'b')));
        assert_eq!(r.complete(b), None, "an answer is delivered once");
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn closing_tells_each_operation_once_and_refuses_later_requests() {
        let mut r = Routes::new();
        r.register(1, 0, 'x').unwrap();
        r.register(1, 1, 'x').unwrap();
        r.register(2, 0, 'y').unwrap();
        assert_eq!(r.close(), vec![(1, 'x'), (2, 'y')]);
        assert!(r.is_closed());
        assert_eq!(r.register(3, 0, 'z'), None);
        assert!(r.is_empty());
    }

    #[test]
    fn a_finished_operation_leaves_nothing_behind() {
        let mut r = Routes::new();
        let w = r.register(1, 0, ()).unwrap();
        r.register(2, 0, ()).unwrap();
        r.forget_op(1);
        assert_eq!(r.complete(w), None);
        assert_eq!(r.len(), 1);
    }
}
