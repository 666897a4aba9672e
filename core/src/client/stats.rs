//! What an operation cost on the network, counted the same way by every driver.

use std::collections::BTreeMap;

use crate::op::RequestId;
use crate::placement::ServerId;

/// What an operation cost on the network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransferStats {
    /// Sequential round trips: the longest chain request → response → request sent because of
    /// it → ... Each request's depth is one more than the deepest response received before it
    /// was sent (a lost connection counts as the answer to its requests); this is the maximum
    /// depth. Requests sent together before any answer are one round trip. Corruption
    /// advisories (fire and forget) do not count.
    pub round_trips: u32,
    /// Request frames sent.
    pub messages_sent: u64,
    /// Bytes of request frames sent (headers included).
    pub bytes_sent: u64,
    /// Bytes of response frames received for this operation (headers included).
    pub bytes_received: u64,
}

/// Round-trip depth and byte counts of one operation's requests in flight.
#[derive(Clone, Debug, Default)]
pub struct StatsCounter {
    stats: TransferStats,
    /// Depth of each request in flight.
    depth: BTreeMap<(ServerId, RequestId), u32>,
    deepest_answer: u32,
}

impl StatsCounter {
    /// The totals so far.
    pub fn stats(&self) -> TransferStats {
        self.stats
    }

    /// Requests sent and not yet answered or lost.
    pub fn in_flight(&self) -> usize {
        self.depth.len()
    }

    /// Request `id` went to `server` in a frame of `wire_bytes`; `counts` is false for
    /// fire-and-forget messages that add no round trip.
    pub fn sent(&mut self, server: ServerId, id: RequestId, wire_bytes: usize, counts: bool) {
        let depth = if counts { self.deepest_answer + 1 } else { 0 };
        self.stats.messages_sent += 1;
        self.stats.bytes_sent += wire_bytes as u64;
        self.stats.round_trips = self.stats.round_trips.max(depth);
        self.depth.insert((server, id), depth);
    }

    /// `wire_bytes` more bytes of request frames went out.
    pub fn add_bytes_sent(&mut self, wire_bytes: usize) {
        self.stats.bytes_sent += wire_bytes as u64;
    }

    /// The answer to request `id` arrived in a frame of `wire_bytes`.
    pub fn answered(&mut self, server: ServerId, id: RequestId, wire_bytes: usize) {
        self.stats.bytes_received += wire_bytes as u64;
        if let Some(d) = self.depth.remove(&(server, id)) {
            self.deepest_answer = self.deepest_answer.max(d);
        }
    }

    /// The connection to `server` broke: its requests count as answered (by the loss).
    pub fn lost(&mut self, server: ServerId) {
        let lost: Vec<(ServerId, RequestId)> = self
            .depth
            .range((server, 0)..=(server, RequestId::MAX))
            .map(|(k, _)| *k)
            .collect();
        for k in lost {
            if let Some(d) = self.depth.remove(&k) {
                self.deepest_answer = self.deepest_answer.max(d);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(i: u8) -> ServerId {
        ServerId([i; 32])
    }

    #[test]
    fn requests_sent_together_are_one_round_trip_and_each_answer_deepens_the_next() {
        let mut c = StatsCounter::default();
        c.sent(server(1), 0, 100, true);
        c.sent(server(2), 1, 100, true);
        assert_eq!(c.stats().round_trips, 1);
        c.answered(server(1), 0, 50);
        c.sent(server(1), 2, 10, true);
        assert_eq!(c.stats().round_trips, 2);
        assert_eq!(c.in_flight(), 2);
        c.lost(server(2));
        c.answered(server(1), 2, 5);
        assert_eq!(c.in_flight(), 0);
        let s = c.stats();
        assert_eq!(
            (s.messages_sent, s.bytes_sent, s.bytes_received),
            (3, 210, 55)
        );
    }

    #[test]
    fn advisories_add_no_round_trip() {
        let mut c = StatsCounter::default();
        c.sent(server(1), 0, 10, false);
        assert_eq!(c.stats().round_trips, 0);
        assert_eq!(c.stats().messages_sent, 1);
    }
}
