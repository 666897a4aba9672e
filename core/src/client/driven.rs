//! One operation with its network accounting, and the drain rule as a single call.
//!
//! A driver (a thread, a task, the simulator, someone's event loop) runs any [`ClientOp`] the
//! same way:
//!
//! ```text
//! loop {
//!     match driven.poll_output() {
//!         Output::Transmit(t) => send it; then driven.handle_sent(t.to, wire bytes)
//!                                (or driven.handle_server_lost(now, t.to) if it could not go),
//!         Output::Event(e)    => act on it (mutators through driven.op_mut()),
//!         Output::Wait(d)     => sleep until an answer arrives (handle_response /
//!                                handle_server_lost) or until d (handle_timeout),
//!         Output::Stalled     => the operation can never progress: fail it,
//!     }
//! }
//! ```
//!
//! `poll_output` hands out every transmit before any event and reports `Wait` only when both are
//! drained, so no driver can forget the drain rule. Round trips and bytes are counted here,
//! once, for every driver ([`StatsCounter`]).

use crate::op::{ClientOp, RequestId, Transmit};
use crate::placement::ServerId;
use crate::time::Instant;
use crate::wire::{Request, Response};

use super::stats::{StatsCounter, TransferStats};

/// What a driver must do next for one operation.
#[derive(Debug)]
pub enum Output<E> {
    /// Send this request; then report its frame size with [`Driven::handle_sent`], or the
    /// server as lost if it could not be sent.
    Transmit(Transmit),
    /// Something for the application (progress, data, a mutator to call, the result).
    Event(E),
    /// Nothing to do until an answer arrives or, if given, this instant passes.
    Wait(Option<Instant>),
    /// Nothing in flight, no timer, nothing to do: the operation can never progress (a bug in
    /// the operation); the driver fails it.
    Stalled,
}

/// An operation and what it cost on the network so far.
#[derive(Debug)]
pub struct Driven<O> {
    op: O,
    counter: StatsCounter,
}

impl<O: ClientOp> Driven<O> {
    pub fn new(op: O) -> Driven<O> {
        Self::with_counter(op, StatsCounter::default())
    }

    /// Go on counting into `counter` (an operation driven in several stretches, or several
    /// operations counted as one).
    pub fn with_counter(op: O, counter: StatsCounter) -> Driven<O> {
        Driven { op, counter }
    }

    pub fn into_parts(self) -> (O, StatsCounter) {
        (self.op, self.counter)
    }

    // Getters.

    pub fn op(&self) -> &O {
        &self.op
    }

    /// For the operation's own mutators (`provide_segment`, `cancel`, ...); the next
    /// `poll_output` picks up whatever they queued.
    pub fn op_mut(&mut self) -> &mut O {
        &mut self.op
    }

    pub fn into_op(self) -> O {
        self.op
    }

    pub fn stats(&self) -> TransferStats {
        self.counter.stats()
    }

    /// Requests sent and neither answered nor lost.
    pub fn in_flight(&self) -> usize {
        self.counter.in_flight()
    }

    // What arrives.

    /// A server answered request `id` in a frame of `wire_bytes`.
    pub fn handle_response(
        &mut self,
        now: Instant,
        from: ServerId,
        id: RequestId,
        response: Response,
        wire_bytes: usize,
    ) {
        self.counter.answered(from, id, wire_bytes);
        self.op.handle_input(now, from, id, response);
    }

    /// The connection to `server` broke (or a transmit to it could not be sent): everything in
    /// flight to it is lost.
    pub fn handle_server_lost(&mut self, now: Instant, server: ServerId) {
        self.counter.lost(server);
        self.op.handle_server_lost(now, server);
    }

    /// The instant of the last `Output::Wait` has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.op.handle_timeout(now);
    }

    /// The frame of the last transmit to `to` went out with `wire_bytes` bytes.
    pub fn handle_sent(&mut self, _to: ServerId, wire_bytes: usize) {
        self.counter.add_bytes_sent(wire_bytes);
    }

    // What the driver must do next.

    /// The next thing to do: every transmit first, then every event, then wait.
    pub fn poll_output(&mut self) -> Output<O::Event> {
        if let Some(t) = self.op.poll_transmit() {
            // Counted as in flight now: nothing can be answered between this call and the send.
            let counts = !matches!(t.request, Request::AdviseCorrupt { .. });
            self.counter.sent(t.to, t.id, 0, counts);
            return Output::Transmit(t);
        }
        if let Some(e) = self.op.poll_event() {
            return Output::Event(e);
        }
        match self.op.poll_timeout() {
            Some(deadline) => Output::Wait(Some(deadline)),
            None if self.counter.in_flight() > 0 => Output::Wait(None),
            None => Output::Stalled,
        }
    }
}
