//! The completion hand-off of one client connection: which operation waits for each wire-level
//! request in flight, shared by the operations that send (any task, any thread) and the
//! connection's reader task that delivers answers.
//!
//! Invariant (model-checked by the loom tests below): a route is only registered while the
//! table is open, and [`RouteTable::close`] marks it closed and takes every remaining route in
//! one critical section. So each request gets exactly one of: its response, a loss notice for
//! its operation, or a refused registration (the sender then reports the loss itself). An
//! operation that has ended drops its routes with [`RouteTable::forget_op`]; late answers go
//! nowhere.

// Under loom only the tests use this module.
#![cfg_attr(loom, allow(dead_code))]

use lafs_core::client::Routes;
use lafs_core::op::RequestId;

use crate::sync::{lock, Mutex};

/// lafs-core's [`Routes`] of one connection behind the lock its senders and its reader task
/// share; `T` is what reaches an operation (a channel sender).
#[derive(Debug)]
pub(crate) struct RouteTable<T> {
    inner: Mutex<Routes<T>>,
}

impl<T> RouteTable<T> {
    pub(crate) fn new() -> Self {
        RouteTable {
            inner: Mutex::new(Routes::new()),
        }
    }

    /// Register request `id` of operation `op`; returns its wire id, or `None` if the
    /// connection is already closed (nothing was registered).
    pub(crate) fn register(&self, op: u64, id: RequestId, sink: T) -> Option<u64> {
        lock(&self.inner).register(op, id, sink)
    }

    /// The answer to `wire_id` arrived: the operation's id for it and where it goes.
    pub(crate) fn complete(&self, wire_id: u64) -> Option<(RequestId, T)> {
        let done = lock(&self.inner).complete(wire_id);
        done.map(|(_, id, sink)| (id, sink))
    }

    /// Mark closed and take every route: one sink per operation with requests in flight.
    pub(crate) fn close(&self) -> Vec<T> {
        let orphans = lock(&self.inner).close();
        orphans.into_iter().map(|(_, sink)| sink).collect()
    }

    pub(crate) fn is_closed(&self) -> bool {
        lock(&self.inner).is_closed()
    }

    /// The operation has ended: drop its routes so late answers go nowhere.
    pub(crate) fn forget_op(&self, op: u64) {
        lock(&self.inner).forget_op(op);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn answers_reach_their_operation_once_and_close_tells_each_operation_once() {
        let table = RouteTable::new();
        let a0 = table.register(1, 0, "a").expect("open");
        let a1 = table.register(1, 1, "a").expect("open");
        let b0 = table.register(2, 0, "b").expect("open");
        assert_ne!(a0, a1);
        assert_eq!(table.complete(a1), Some((1, "a")));
        assert_eq!(table.complete(a1), None, "one answer per request");
        table.forget_op(2);
        assert_eq!(table.complete(b0), None, "an ended operation hears nothing");
        let _ = table.register(3, 7, "c");
        let mut told = table.close();
        told.sort_unstable();
        assert_eq!(told, vec!["a", "c"]);
        assert!(table.is_closed());
        assert_eq!(table.register(4, 0, "d"), None, "closed tables refuse");
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::sync::{Arc, AtomicU64, Ordering};

    /// Counts how many times a request's fate was decided.
    type Outcome = Arc<AtomicU64>;

    /// Two operations sending while the reader closes the connection: every request is decided
    /// exactly once (a loss notice, or a refused registration the sender reports itself).
    #[test]
    fn loom_register_races_close() {
        loom::model(|| {
            let table = Arc::new(RouteTable::<Outcome>::new());
            let outcomes: Vec<Outcome> = (0..2).map(|_| Arc::new(AtomicU64::new(0))).collect();
            let sender = {
                let table = Arc::clone(&table);
                let outcomes = outcomes.clone();
                loom::thread::spawn(move || {
                    for (op, outcome) in outcomes.iter().enumerate() {
                        if table.register(op as u64, 0, Arc::clone(outcome)).is_none() {
                            outcome.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                })
            };
            for notice in table.close() {
                notice.fetch_add(1, Ordering::SeqCst);
            }
            sender.join().expect("sender");
            for o in &outcomes {
                assert_eq!(o.load(Ordering::SeqCst), 1, "decided exactly once");
            }
        });
    }

    /// The reader delivering an answer races the operation ending: the answer is taken by at
    /// most one side and never after the operation forgot it.
    #[test]
    fn loom_complete_races_forget() {
        loom::model(|| {
            let table = Arc::new(RouteTable::<u8>::new());
            let wire = table.register(1, 0, 9).expect("open");
            let reader = {
                let table = Arc::clone(&table);
                loom::thread::spawn(move || table.complete(wire))
            };
            table.forget_op(1);
            let delivered = reader.join().expect("reader");
            assert!(delivered.is_none() || delivered == Some((0, 9)));
            assert_eq!(table.complete(wire), None, "nothing left behind");
            assert!(table.close().is_empty());
        });
    }
}
