//! The network model: reliable ordered connections (as over TCP) between clients and servers.
//!
//! - Every node has one uplink, a FIFO: a message of L bytes leaves when the uplink is free and
//!   occupies it for L / bandwidth (the serialisation delay), so a client pushing shares to ten
//!   servers pays for every byte once, in order.
//! - A message arrives one-way latency (plus jitter, plus any delay spike) after it has been put
//!   on the wire. Arrivals on one direction of one connection never overtake each other.
//! - Packet loss is what TCP makes of it: a lost segment is retransmitted after a timeout, so
//!   the message (and, by ordering, everything behind it) arrives late, never not at all.
//! - A partition holds bytes until it heals (TCP retransmits), so a long partition shows up as a
//!   request timeout in the operation, a short one as a delay.
//! - A reset ends a connection: its epoch changes, so anything still in flight on the old epoch is
//!   dropped on arrival, and the next message pays one round trip to reconnect.

use lafs_core::time::{Duration, Instant};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Which way a message travels on a client–server connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    ToServer = 0,
    ToClient = 1,
}

/// Static parameters of the network of one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetConfig {
    pub clients: usize,
    pub servers: usize,
    /// One-way latency of each client–server link, `[client][server]`, both directions.
    pub latency: Vec<Vec<Duration>>,
    /// Each message is delayed by a further uniform draw from `0..=jitter`.
    pub jitter: Duration,
    /// Chance, in parts per million, that a message loses a segment and waits for TCP's
    /// retransmission timeout (max(200 ms, 2 RTT)).
    pub loss_ppm: u32,
    /// Uplink bandwidth of each client, bytes per second.
    pub client_uplink: u64,
    /// Uplink bandwidth of each server, bytes per second.
    pub server_uplink: u64,
}

impl NetConfig {
    /// Every link with the same latency.
    pub fn uniform(
        clients: usize,
        servers: usize,
        latency: Duration,
        client_uplink: u64,
        server_uplink: u64,
    ) -> Self {
        NetConfig {
            clients,
            servers,
            latency: vec![vec![latency; servers]; clients],
            jitter: Duration::ZERO,
            loss_ppm: 0,
            client_uplink,
            server_uplink,
        }
    }
}

#[derive(Clone, Debug)]
struct Conn {
    epoch: u32,
    /// After a reset the next message must wait for a new handshake.
    needs_connect: bool,
    ready_at: Instant,
    last_arrival: [Instant; 2],
    partitioned_until: Instant,
}

/// Connections, uplinks and their faults.
#[derive(Debug)]
pub struct Network {
    config: NetConfig,
    rng: ChaCha8Rng,
    client_uplink_free: Vec<Instant>,
    server_uplink_free: Vec<Instant>,
    conns: Vec<Conn>,
    /// Extra latency on every link of a server until the given time.
    spikes: Vec<(Instant, Duration)>,
}

/// Time for `len` bytes to pass through a link of `bytes_per_sec`, rounded up to a microsecond.
pub fn serialisation_delay(len: u64, bytes_per_sec: u64) -> Duration {
    let bps = u128::from(bytes_per_sec.max(1));
    let us = (u128::from(len) * 1_000_000).div_ceil(bps);
    Duration(u64::try_from(us).unwrap_or(u64::MAX))
}

impl Network {
    pub fn new(config: NetConfig, rng: ChaCha8Rng) -> Self {
        let conn = Conn {
            epoch: 0,
            needs_connect: false,
            ready_at: Instant(0),
            last_arrival: [Instant(0); 2],
            partitioned_until: Instant(0),
        };
        Network {
            client_uplink_free: vec![Instant(0); config.clients],
            server_uplink_free: vec![Instant(0); config.servers],
            conns: vec![conn; config.clients * config.servers],
            spikes: vec![(Instant(0), Duration::ZERO); config.servers],
            config,
            rng,
        }
    }

    pub fn config(&self) -> &NetConfig {
        &self.config
    }

    fn conn(&self, client: usize, server: usize) -> &Conn {
        &self.conns[client * self.config.servers + server]
    }

    fn conn_mut(&mut self, client: usize, server: usize) -> &mut Conn {
        &mut self.conns[client * self.config.servers + server]
    }

    /// The link's round-trip time without jitter or faults.
    pub fn rtt(&self, client: usize, server: usize) -> Duration {
        Duration(self.config.latency[client][server].0 * 2)
    }

    pub fn latency(&self, client: usize, server: usize) -> Duration {
        self.config.latency[client][server]
    }

    /// The connection's current epoch; messages of older epochs are dropped.
    pub fn epoch(&self, client: usize, server: usize) -> u32 {
        self.conn(client, server).epoch
    }

    /// Ends the connection; returns the epoch that ended.
    pub fn reset(&mut self, client: usize, server: usize) -> u32 {
        let conn = self.conn_mut(client, server);
        let old = conn.epoch;
        conn.epoch += 1;
        conn.needs_connect = true;
        old
    }

    /// Holds the link's bytes until `until` (both directions).
    pub fn partition(&mut self, client: usize, server: usize, until: Instant) {
        let conn = self.conn_mut(client, server);
        conn.partitioned_until = conn.partitioned_until.max(until);
    }

    /// Adds `extra` latency to every link of `server` until `until`.
    pub fn delay_spike(&mut self, server: usize, extra: Duration, until: Instant) {
        self.spikes[server] = (until, extra);
    }

    /// Ends every partition and delay spike (before the final fault-free checks).
    pub fn heal_all(&mut self, now: Instant) {
        for conn in &mut self.conns {
            conn.partitioned_until = conn.partitioned_until.min(now);
        }
        for spike in &mut self.spikes {
            *spike = (now, Duration::ZERO);
        }
    }

    /// Puts `len` bytes on the connection at `now`; returns the connection's epoch and the
    /// message's arrival time.
    pub fn send(
        &mut self,
        now: Instant,
        client: usize,
        server: usize,
        dir: Dir,
        len: u64,
    ) -> (u32, Instant) {
        let latency = self.config.latency[client][server];
        let rtt = Duration(latency.0 * 2);
        let jitter = if self.config.jitter.0 > 0 {
            Duration(self.rng.gen_range(0..=self.config.jitter.0))
        } else {
            Duration::ZERO
        };
        let retransmit = if self.config.loss_ppm > 0
            && self.rng.gen_range(0..1_000_000u32) < self.config.loss_ppm
        {
            Duration(rtt.0.max(100_000) * 2)
        } else {
            Duration::ZERO
        };
        let (spike_until, spike) = self.spikes[server];
        let spike = if spike_until > now {
            spike
        } else {
            Duration::ZERO
        };
        let (uplink_free, bandwidth) = match dir {
            Dir::ToServer => (
                &mut self.client_uplink_free[client],
                self.config.client_uplink,
            ),
            Dir::ToClient => (
                &mut self.server_uplink_free[server],
                self.config.server_uplink,
            ),
        };
        let conn = &mut self.conns[client * self.config.servers + server];
        if dir == Dir::ToServer && conn.needs_connect {
            conn.needs_connect = false;
            conn.ready_at = now + rtt;
        }
        let start = now.max(*uplink_free).max(conn.ready_at);
        let sent = start + serialisation_delay(len, bandwidth);
        *uplink_free = sent;
        let mut arrival = sent + latency + jitter + spike + retransmit;
        if conn.partitioned_until > now {
            arrival = arrival.max(conn.partitioned_until + latency);
        }
        let last = &mut conn.last_arrival[dir as usize];
        arrival = arrival.max(*last);
        *last = arrival;
        (conn.epoch, arrival)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{sub_rng, Concern};

    fn net(jitter: u64) -> Network {
        let mut c = NetConfig::uniform(1, 2, Duration::from_millis(7), 1_000, 1_000_000);
        c.jitter = Duration(jitter);
        Network::new(c, sub_rng(1, Concern::Network))
    }

    #[test]
    fn uplink_serialises_messages_to_different_servers() {
        let mut n = net(0);
        // 100 bytes at 1000 B/s = 100 ms on the wire each, then 7 ms of latency.
        let (_, a) = n.send(Instant(0), 0, 0, Dir::ToServer, 100);
        let (_, b) = n.send(Instant(0), 0, 1, Dir::ToServer, 100);
        assert_eq!(a, Instant(107_000));
        assert_eq!(b, Instant(207_000));
        // The server's fast uplink answers without queueing behind the client's.
        let (_, r) = n.send(a, 0, 0, Dir::ToClient, 100);
        assert_eq!(r, Instant(107_000 + 100 + 7_000));
    }

    #[test]
    fn arrivals_on_one_connection_stay_in_order_despite_jitter() {
        let mut n = net(50_000);
        let mut last = Instant(0);
        for i in 0..200 {
            let (_, at) = n.send(Instant(i * 10), 0, 0, Dir::ToClient, 1);
            assert!(at >= last);
            last = at;
        }
    }

    #[test]
    fn partitions_hold_bytes_and_resets_cost_a_handshake() {
        let mut n = net(0);
        n.partition(0, 1, Instant(1_000_000));
        let (_, at) = n.send(Instant(0), 0, 1, Dir::ToClient, 0);
        assert_eq!(at, Instant(1_007_000));
        let old = n.reset(0, 0);
        assert_eq!(n.epoch(0, 0), old + 1);
        let (epoch, at) = n.send(Instant(2_000_000), 0, 0, Dir::ToServer, 0);
        assert_eq!(epoch, old + 1);
        assert_eq!(at, Instant(2_000_000 + 14_000 + 7_000));
    }

    #[test]
    fn losses_delay_by_a_retransmission_timeout() {
        let mut c = NetConfig::uniform(1, 1, Duration::from_millis(7), 1_000_000, 1_000_000);
        c.loss_ppm = 1_000_000;
        let mut n = Network::new(c, sub_rng(1, Concern::Network));
        let (_, at) = n.send(Instant(0), 0, 0, Dir::ToServer, 0);
        assert_eq!(at, Instant(7_000 + 200_000));
    }

    #[test]
    fn serialisation_rounds_up() {
        assert_eq!(serialisation_delay(1, 3), Duration(333_334));
        assert_eq!(serialisation_delay(78_000, 78_000), Duration::from_secs(1));
        assert_eq!(serialisation_delay(0, 0), Duration::ZERO);
    }
}
