//! The placement planner: which share numbers to ask which servers to store, and when to stop.
//!
//! A small pure state machine that the upload state machine drives (tahoe-formats.md §7.3, with
//! one request per server and no separate "what do you already have" round):
//!
//! 1. [`Planner::new`] takes the servers in ring order (see [`super::permuted_order`]; callers that
//!    follow Tahoe pass the first `2 * n` of them) and the encoding parameters.
//! 2. [`Planner::initial`] proposes one share per server walking the ring; with fewer servers than
//!    shares it wraps around, giving the extra shares to the least-loaded servers.
//! 3. For every answer the caller reports an [`Outcome`] through [`Planner::on_outcome`], which
//!    returns new requests: shares that lost their home go to the next unused server on the ring,
//!    and only when no unused server remains to the least-loaded server still accepting shares.
//!    If the shares that do have homes are bunched on too few servers (happiness below `happy`),
//!    the planner also asks for extra copies where one more copy raises happiness.
//! 4. [`Planner::status`] says `InProgress` while any request is unanswered, then `Done` or
//!    `Failed`. Like Tahoe, placement succeeds when happiness reaches `happy` once no further
//!    server can be tried, even if some shares found no home ([`Placement::homeless`]).
//!
//! At most one request per server is in flight: a server that still owes an answer gets nothing
//! new until it answers (a share needing a home waits for it). Placement fails early, without
//! waiting for outstanding answers, once too few servers remain that could ever hold a share. Once `Done`, the planner proposes nothing more (shares are being
//! written, so a late newcomer would miss earlier segments); a later [`Outcome::Disconnected`]
//! only removes that server's shares and turns the status to `Failed` if happiness drops below
//! `happy`, as Tahoe does when a writer is lost during the push.
//!
//! Everything is ordered (ring positions, `BTreeMap`/`BTreeSet`): same inputs, same outputs.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::happiness::{augment_through_new_edge, match_servers};
use super::ring::{permuted_order, ServerDescriptor, ServerId};

/// The largest number of shares a file can have (share numbers are `u16`).
pub const MAX_SHARES: usize = 1 << 16;

/// Encoding parameters that matter for placement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlacementParams {
    /// Shares needed to recover the file (`shares.needed`); reported in errors only.
    pub k: usize,
    /// Shares produced, numbered `0..n` (`shares.total`).
    pub n: usize,
    /// Servers-of-happiness the placement must reach (`shares.happy`).
    pub happy: usize,
}

/// A request to send: ask `server` to allocate `shares` (Tahoe's `allocate_buckets`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    /// The server to ask.
    pub server: ServerId,
    /// The share numbers to ask it to store.
    pub shares: BTreeSet<u16>,
}

/// Why a server would not take shares. Any reason stops the planner asking that server for more;
/// the reason itself is for the caller's logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefusalReason {
    /// Not enough free space (Tahoe's server silently leaves the share out of `allocated`).
    Full,
    /// The share is larger than the server's `maximum-immutable-share-size`.
    TooLarge,
    /// The server did not answer in time; it may still be there, but we stop asking it.
    TimedOut,
    /// Any other error the server reported.
    Error(String),
}

/// What happened to a request (or to a server). Shares in an outcome that were never asked of
/// that server are ignored, except in `AlreadyHave`/`Answered::already_have`, which always count
/// (Tahoe's servers report every share they hold for the storage index, not just those asked).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The server allocated space for these shares: we will write them there.
    Accepted(BTreeSet<u16>),
    /// The server already holds these shares: they count towards placement and happiness.
    AlreadyHave(BTreeSet<u16>),
    /// The server will not take these shares; it gets no further new shares for this upload.
    Refused {
        /// The refused share numbers.
        shares: BTreeSet<u16>,
        /// Why.
        reason: RefusalReason,
    },
    /// The server is gone: everything it held or was asked for is lost to this upload, and it is
    /// never asked again.
    Disconnected,
    /// A complete answer to one request, as Tahoe's `allocate_buckets` returns it: every asked
    /// share that is in neither set was refused for lack of space.
    Answered {
        /// Shares the server allocated for us to write.
        allocated: BTreeSet<u16>,
        /// Every share the server already holds.
        already_have: BTreeSet<u16>,
    },
}

/// The result of a successful placement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Shares to write, per server (space allocated for us).
    pub writers: BTreeMap<ServerId, BTreeSet<u16>>,
    /// Shares that were already on a server (their leases should be renewed, nothing written).
    pub existing: BTreeMap<ServerId, BTreeSet<u16>>,
    /// Servers-of-happiness of `writers` ∪ `existing`.
    pub happiness: usize,
    /// Shares that found no server (allowed once happiness is reached and no server is left).
    pub homeless: BTreeSet<u16>,
}

impl Placement {
    /// Every share held per server, written or already there.
    pub fn share_map(&self) -> BTreeMap<ServerId, BTreeSet<u16>> {
        let mut map = self.existing.clone();
        for (server, shares) in &self.writers {
            map.entry(*server).or_default().extend(shares);
        }
        map
    }
}

/// Where placement stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Requests are still unanswered.
    InProgress,
    /// Enough servers hold shares; write to [`Placement::writers`].
    Done(Placement),
    /// Placement cannot reach `happy`; abort any allocated writers ([`Planner::writers`]), and
    /// any buckets allocated by answers still in flight (the planner ignores those answers).
    Failed(PlacementError),
}

/// Why placement cannot succeed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlacementError {
    /// The encoding parameters are impossible.
    InvalidParameters {
        /// Shares needed.
        k: usize,
        /// Shares total.
        n: usize,
        /// Happiness wanted.
        happy: usize,
    },
    /// Too few distinct servers would take or already had shares.
    NotEnoughServers {
        /// `shares.happy`: distinct servers needed, each holding a different share.
        needed_happy: usize,
        /// Servers the planner was given.
        known: usize,
        /// Servers that answered and are still connected.
        reachable: usize,
        /// Servers that accepted or already held at least one share.
        accepting: usize,
        /// Servers that refused shares (full, share too large, error or timeout).
        refusing: usize,
        /// The servers-of-happiness actually reached.
        happiness: usize,
    },
}

impl fmt::Display for PlacementError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PlacementError::InvalidParameters { k, n, happy } => write!(
                f,
                "invalid encoding parameters needed={k}, total={n}, happy={happy}: \
                 they must satisfy 1 <= needed <= total <= {MAX_SHARES} and 1 <= happy <= total"
            ),
            PlacementError::NotEnoughServers {
                needed_happy,
                known,
                reachable,
                accepting,
                refusing,
                happiness,
            } => {
                if known < needed_happy {
                    write!(
                        f,
                        "not enough storage servers: shares.happy = {needed_happy} needs shares \
                         on at least {needed_happy} different servers, but only {known} \
                         storage server(s) are connected; connect more storage servers or lower \
                         shares.happy"
                    )
                } else {
                    write!(
                        f,
                        "not enough storage servers accepted shares: shares.happy = \
                         {needed_happy} needs {needed_happy} different servers each holding a \
                         different share, but only {happiness} could be arranged ({known} \
                         server(s) known, {reachable} reachable, {accepting} accepted or already \
                         held shares, {refusing} refused); free space on full servers, add \
                         storage servers, or lower shares.happy"
                    )
                }
            }
        }
    }
}

impl std::error::Error for PlacementError {}

/// What the planner knows about one server on the ring.
#[derive(Clone, Debug, Default)]
struct ServerState {
    /// Shares it allocated for us.
    accepted: BTreeSet<u16>,
    /// Shares it already had.
    existing: BTreeSet<u16>,
    /// Shares asked for and not yet answered.
    pending: BTreeSet<u16>,
    /// We sent it a request, or it told us what it holds.
    contacted: bool,
    /// It answered at least once.
    answered: bool,
    /// It refused something: it keeps what it holds but gets nothing new.
    read_only: bool,
    /// It disconnected: it holds nothing for us and gets nothing new.
    gone: bool,
}

impl ServerState {
    fn holds(&self, share: u16) -> bool {
        self.accepted.contains(&share) || self.existing.contains(&share)
    }

    fn held(&self) -> impl Iterator<Item = u16> + '_ {
        self.accepted.union(&self.existing).copied()
    }

    fn holds_any(&self) -> bool {
        !self.accepted.is_empty() || !self.existing.is_empty()
    }

    /// Never asked and never heard from: the ring's next candidates.
    fn fresh(&self) -> bool {
        !self.contacted && !self.gone && !self.read_only
    }

    /// Could be asked for more shares now.
    fn can_take_more(&self) -> bool {
        !self.gone && !self.read_only && self.pending.is_empty()
    }

    /// Could still end up holding a share: bounds the happiness we can ever reach.
    fn may_hold(&self) -> bool {
        !self.gone && (!self.read_only || self.holds_any() || !self.pending.is_empty())
    }

    fn load(&self) -> usize {
        self.accepted.len() + self.existing.len() + self.pending.len()
    }
}

/// The placement state machine; see the module documentation for the protocol.
#[derive(Clone, Debug)]
pub struct Planner {
    params: PlacementParams,
    ring: Vec<ServerId>,
    index: BTreeMap<ServerId, usize>,
    servers: Vec<ServerState>,
    /// Every server before this ring position has been contacted or is gone.
    next_fresh: usize,
    started: bool,
    settled: bool,
    failed: Option<PlacementError>,
}

impl Planner {
    /// A planner for servers in ring order (duplicates are dropped, first position kept).
    ///
    /// Fails only for impossible parameters; too few servers is reported by [`Planner::status`]
    /// (already `Failed` before any request when `happy` exceeds the number of servers).
    pub fn new(ring: &[ServerId], params: PlacementParams) -> Result<Planner, PlacementError> {
        let PlacementParams { k, n, happy } = params;
        if k == 0 || k > n || n > MAX_SHARES || happy == 0 || happy > n {
            return Err(PlacementError::InvalidParameters { k, n, happy });
        }
        let mut index = BTreeMap::new();
        let mut order = Vec::with_capacity(ring.len());
        for id in ring {
            if !index.contains_key(id) {
                index.insert(*id, order.len());
                order.push(*id);
            }
        }
        let mut planner = Planner {
            params,
            servers: vec![ServerState::default(); order.len()],
            ring: order,
            index,
            next_fresh: 0,
            started: false,
            settled: false,
            failed: None,
        };
        if planner.ring.len() < happy {
            planner.failed = Some(planner.not_enough());
        }
        Ok(planner)
    }

    /// Like [`Planner::new`], ordering `servers` on the ring of `storage_index` first.
    pub fn for_storage_index(
        storage_index: &[u8; 16],
        servers: &[ServerDescriptor],
        params: PlacementParams,
    ) -> Result<Planner, PlacementError> {
        Planner::new(&permuted_order(storage_index, servers), params)
    }

    /// The servers in ring order, as the planner walks them.
    pub fn ring(&self) -> &[ServerId] {
        &self.ring
    }

    /// The encoding parameters.
    pub fn params(&self) -> PlacementParams {
        self.params
    }

    /// Where placement stands.
    pub fn status(&self) -> Status {
        if let Some(e) = &self.failed {
            Status::Failed(e.clone())
        } else if self.settled {
            Status::Done(self.placement())
        } else {
            Status::InProgress
        }
    }

    /// Servers-of-happiness of the shares confirmed so far (accepted or already there).
    pub fn happiness(&self) -> usize {
        match_servers(&self.adjacency(false)).size
    }

    /// Shares allocated for us per server so far: what to write on success, or abort on failure.
    pub fn writers(&self) -> BTreeMap<ServerId, BTreeSet<u16>> {
        self.collect(|s| &s.accepted)
    }

    /// Requests sent and not fully answered yet, per server.
    pub fn in_flight(&self) -> BTreeMap<ServerId, BTreeSet<u16>> {
        self.collect(|s| &s.pending)
    }

    /// The first requests to send. Later calls return nothing.
    pub fn initial(&mut self) -> Vec<Assignment> {
        if self.started {
            return Vec::new();
        }
        self.started = true;
        self.step()
    }

    /// Records what `server` answered (or that it disconnected) and returns the requests to send
    /// next. Outcomes for servers not on the ring are ignored.
    ///
    /// Before [`Planner::initial`], outcomes describe what is known in advance (shares found by a
    /// `get_buckets` probe, servers known to be full or read-only); they are recorded and the
    /// initial proposal takes them into account.
    pub fn on_outcome(&mut self, server: ServerId, outcome: Outcome) -> Vec<Assignment> {
        let Some(&i) = self.index.get(&server) else {
            return Vec::new();
        };
        if self.failed.is_some() {
            return Vec::new();
        }
        if self.settled {
            // Placement is final; only a loss still matters.
            if outcome == Outcome::Disconnected {
                self.disconnect(i);
                if self.happiness() < self.params.happy {
                    self.failed = Some(self.not_enough());
                }
            }
            return Vec::new();
        }
        self.apply(i, outcome);
        if self.started {
            self.step()
        } else {
            Vec::new()
        }
    }

    fn apply(&mut self, i: usize, outcome: Outcome) {
        let n = self.params.n;
        let s = &mut self.servers[i];
        if s.gone {
            return;
        }
        if outcome != Outcome::Disconnected {
            s.answered = true;
            s.contacted = true;
        }
        match outcome {
            Outcome::Accepted(shares) => {
                for sh in shares {
                    if s.pending.remove(&sh) {
                        s.accepted.insert(sh);
                    }
                }
            }
            Outcome::AlreadyHave(shares) => {
                Self::note_existing(s, shares, n);
            }
            Outcome::Refused { shares, reason: _ } => {
                for sh in shares {
                    s.pending.remove(&sh);
                }
                s.read_only = true;
            }
            Outcome::Answered {
                allocated,
                already_have,
            } => {
                Self::note_existing(s, already_have, n);
                for sh in allocated {
                    if s.pending.remove(&sh) {
                        s.accepted.insert(sh);
                    }
                }
                if !s.pending.is_empty() {
                    s.pending.clear();
                    s.read_only = true;
                }
            }
            Outcome::Disconnected => self.disconnect(i),
        }
    }

    fn note_existing(s: &mut ServerState, shares: BTreeSet<u16>, n: usize) {
        for sh in shares {
            if usize::from(sh) < n {
                s.pending.remove(&sh);
                if !s.accepted.contains(&sh) {
                    s.existing.insert(sh);
                }
            }
        }
    }

    fn disconnect(&mut self, i: usize) {
        let s = &mut self.servers[i];
        *s = ServerState {
            contacted: true,
            gone: true,
            ..ServerState::default()
        };
    }

    /// Plans the next requests, marks them in flight, and settles when nothing is left to wait for.
    fn step(&mut self) -> Vec<Assignment> {
        if self.failed.is_some() || self.settled {
            return Vec::new();
        }
        let reachable_bound = self.servers.iter().filter(|s| s.may_hold()).count();
        if reachable_bound < self.params.happy {
            self.failed = Some(self.not_enough());
            return Vec::new();
        }
        let proposed = self.propose();
        let mut out = Vec::with_capacity(proposed.len());
        for (i, shares) in proposed {
            let s = &mut self.servers[i];
            s.contacted = true;
            s.pending.extend(&shares);
            out.push(Assignment {
                server: self.ring[i],
                shares,
            });
        }
        if self.servers.iter().all(|s| s.pending.is_empty()) {
            if self.happiness() >= self.params.happy {
                self.settled = true;
            } else {
                self.failed = Some(self.not_enough());
            }
        }
        out
    }

    /// The ring position of the next never-contacted server, which is then no longer fresh.
    fn take_fresh(&mut self) -> Option<usize> {
        while self.next_fresh < self.servers.len() {
            let i = self.next_fresh;
            self.next_fresh += 1;
            if self.servers[i].fresh() {
                self.servers[i].contacted = true;
                return Some(i);
            }
        }
        None
    }

    fn propose(&mut self) -> BTreeMap<usize, BTreeSet<u16>> {
        let n = self.params.n;
        let mut proposed: BTreeMap<usize, BTreeSet<u16>> = BTreeMap::new();

        // (a) Give every share without a home (held or asked for nowhere) a server: fresh ones
        // first, one share each; then the least-loaded servers that can take more.
        let mut covered = vec![false; n];
        for s in self.servers.iter().filter(|s| !s.gone) {
            for sh in s.held().chain(s.pending.iter().copied()) {
                covered[usize::from(sh)] = true;
            }
        }
        let homeless: Vec<u16> = (0..n)
            .filter(|&x| !covered[x])
            .filter_map(|x| u16::try_from(x).ok())
            .collect();
        let mut by_load: BTreeSet<(usize, usize)> = self
            .servers
            .iter()
            .enumerate()
            .filter(|(_, s)| s.contacted && s.can_take_more())
            .map(|(i, s)| (s.load(), i))
            .collect();
        for share in homeless {
            if let Some(i) = self.take_fresh() {
                proposed.entry(i).or_default().insert(share);
                by_load.insert((1, i));
            } else if let Some((load, i)) = by_load.pop_first() {
                proposed.entry(i).or_default().insert(share);
                by_load.insert((load + 1, i));
            } else {
                break;
            }
        }

        // (b) If what is held or asked for cannot reach `happy` even when every request succeeds,
        // ask for extra copies where each one raises the matching by one.
        let mut adj = self.adjacency(true);
        for (&i, shares) in &proposed {
            adj[i].extend(shares);
        }
        let mut matching = match_servers(&adj);
        if matching.size >= self.params.happy {
            return proposed;
        }
        let mut matched = vec![false; n];
        for sh in matching.by_server.iter().flatten() {
            matched[usize::from(*sh)] = true;
        }
        let mut unmatched = (0..n)
            .filter(|&x| !matched[x])
            .filter_map(|x| u16::try_from(x).ok());
        while matching.size < self.params.happy {
            let Some(i) = self.take_fresh() else { break };
            let Some(share) = unmatched.next() else { break };
            proposed.entry(i).or_default().insert(share);
            adj[i].push(share);
            matching.by_server[i] = Some(share);
            matching.size += 1;
        }
        if matching.size < self.params.happy {
            let mut flexible: Vec<(usize, usize)> = self
                .servers
                .iter()
                .enumerate()
                .filter(|(_, s)| s.contacted && s.can_take_more())
                .map(|(i, s)| (s.load() + proposed.get(&i).map_or(0, BTreeSet::len), i))
                .collect();
            flexible.sort_unstable();
            let flexible: Vec<usize> = flexible.into_iter().map(|(_, i)| i).collect();
            while matching.size < self.params.happy {
                match augment_through_new_edge(&mut adj, &mut matching, n, &flexible) {
                    Some((i, share)) => {
                        proposed.entry(i).or_default().insert(share);
                    }
                    None => break,
                }
            }
        }
        proposed
    }

    /// Shares per ring position for live servers: held ones, plus in-flight ones if asked.
    fn adjacency(&self, with_pending: bool) -> Vec<Vec<u16>> {
        self.servers
            .iter()
            .map(|s| {
                if s.gone {
                    return Vec::new();
                }
                let mut v: Vec<u16> = s.held().collect();
                if with_pending {
                    v.extend(s.pending.iter().filter(|&&x| !s.holds(x)));
                }
                v
            })
            .collect()
    }

    fn collect(
        &self,
        pick: impl Fn(&ServerState) -> &BTreeSet<u16>,
    ) -> BTreeMap<ServerId, BTreeSet<u16>> {
        self.servers
            .iter()
            .zip(&self.ring)
            .filter(|(s, _)| !s.gone && !pick(s).is_empty())
            .map(|(s, id)| (*id, pick(s).clone()))
            .collect()
    }

    fn placement(&self) -> Placement {
        let writers = self.writers();
        let existing = self.collect(|s| &s.existing);
        let mut homeless: BTreeSet<u16> = (0..self.params.n)
            .filter_map(|x| u16::try_from(x).ok())
            .collect();
        for s in self.servers.iter().filter(|s| !s.gone) {
            for sh in s.held() {
                homeless.remove(&sh);
            }
        }
        Placement {
            writers,
            existing,
            happiness: self.happiness(),
            homeless,
        }
    }

    fn not_enough(&self) -> PlacementError {
        let live = || self.servers.iter().filter(|s| !s.gone);
        PlacementError::NotEnoughServers {
            needed_happy: self.params.happy,
            known: self.ring.len(),
            reachable: live().filter(|s| s.answered).count(),
            accepting: live().filter(|s| s.holds_any()).count(),
            refusing: live().filter(|s| s.read_only).count(),
            happiness: self.happiness(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::happiness::happiness;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    fn sid(i: usize) -> ServerId {
        let mut b = [0u8; 32];
        b[..8].copy_from_slice(&(i as u64).to_be_bytes());
        ServerId(b)
    }

    fn ring(count: usize) -> Vec<ServerId> {
        (0..count).map(sid).collect()
    }

    fn set(shares: &[u16]) -> BTreeSet<u16> {
        shares.iter().copied().collect()
    }

    fn params(k: usize, n: usize, happy: usize) -> PlacementParams {
        PlacementParams { k, n, happy }
    }

    fn requests(a: &[Assignment]) -> Vec<(ServerId, Vec<u16>)> {
        a.iter()
            .map(|x| (x.server, x.shares.iter().copied().collect()))
            .collect()
    }

    fn accept_all(p: &mut Planner, reqs: Vec<Assignment>) -> Vec<Assignment> {
        let mut next = Vec::new();
        for r in reqs {
            next.extend(p.on_outcome(r.server, Outcome::Accepted(r.shares)));
        }
        next
    }

    fn done(p: &Planner) -> Placement {
        match p.status() {
            Status::Done(pl) => pl,
            other => panic!("expected Done, got {other:?}"),
        }
    }

    fn failed(p: &Planner) -> PlacementError {
        match p.status() {
            Status::Failed(e) => e,
            other => panic!("expected Failed, got {other:?}"),
        }
    }

    #[test]
    fn rejects_impossible_parameters() {
        for (k, n, h) in [
            (0, 3, 1),
            (4, 3, 2),
            (2, 3, 0),
            (2, 3, 4),
            (1, MAX_SHARES + 1, 1),
        ] {
            let e = Planner::new(&ring(10), params(k, n, h)).unwrap_err();
            assert_eq!(e, PlacementError::InvalidParameters { k, n, happy: h });
            assert!(e.to_string().contains("invalid encoding parameters"));
        }
    }

    #[test]
    fn one_share_per_server_walking_the_ring() {
        let mut p = Planner::new(&ring(12), params(3, 10, 7)).unwrap();
        let reqs = p.initial();
        let expected: Vec<_> = (0..10).map(|i| (sid(i), vec![i as u16])).collect();
        assert_eq!(requests(&reqs), expected);
        assert!(p.initial().is_empty(), "initial proposes only once");
        assert_eq!(p.status(), Status::InProgress);
        assert!(accept_all(&mut p, reqs).is_empty());
        let pl = done(&p);
        assert_eq!(pl.happiness, 10);
        assert!(pl.homeless.is_empty());
        assert!(pl.existing.is_empty());
        assert_eq!(pl.writers.len(), 10);
        assert_eq!(pl.writers[&sid(4)], set(&[4]));
    }

    #[test]
    fn fewer_servers_than_shares_wraps_around() {
        let mut p = Planner::new(&ring(3), params(3, 10, 3)).unwrap();
        let reqs = p.initial();
        assert_eq!(
            requests(&reqs),
            vec![
                (sid(0), vec![0, 3, 6, 9]),
                (sid(1), vec![1, 4, 7]),
                (sid(2), vec![2, 5, 8]),
            ]
        );
        accept_all(&mut p, reqs);
        let pl = done(&p);
        assert_eq!(pl.happiness, 3);
        assert_eq!(
            pl.share_map().values().map(BTreeSet::len).sum::<usize>(),
            10
        );
    }

    #[test]
    fn k_equals_n_equals_one() {
        let mut p = Planner::new(&ring(5), params(1, 1, 1)).unwrap();
        let reqs = p.initial();
        assert_eq!(requests(&reqs), vec![(sid(0), vec![0])]);
        accept_all(&mut p, reqs);
        assert_eq!(done(&p).happiness, 1);
    }

    #[test]
    fn one_server_takes_every_share_with_happiness_one() {
        let mut p = Planner::new(&ring(1), params(3, 10, 1)).unwrap();
        let reqs = p.initial();
        assert_eq!(requests(&reqs), vec![(sid(0), (0..10).collect())]);
        accept_all(&mut p, reqs);
        let pl = done(&p);
        assert_eq!(pl.happiness, 1);
        assert_eq!(pl.writers[&sid(0)].len(), 10);
    }

    #[test]
    fn happy_above_server_count_fails_before_any_request() {
        let mut p = Planner::new(&ring(5), params(3, 10, 7)).unwrap();
        let e = failed(&p);
        assert!(p.initial().is_empty());
        assert_eq!(
            e,
            PlacementError::NotEnoughServers {
                needed_happy: 7,
                known: 5,
                reachable: 0,
                accepting: 0,
                refusing: 0,
                happiness: 0
            }
        );
        let msg = e.to_string();
        assert!(msg.contains("shares.happy = 7"), "{msg}");
        assert!(
            msg.contains("only 5 storage server(s) are connected"),
            "{msg}"
        );
        assert!(msg.contains("connect more storage servers"), "{msg}");
    }

    #[test]
    fn refused_share_moves_to_the_next_unused_server() {
        let mut p = Planner::new(&ring(12), params(3, 10, 10)).unwrap();
        let reqs = p.initial();
        let mut next = Vec::new();
        for r in reqs {
            let o = if r.server == sid(3) {
                Outcome::Refused {
                    shares: r.shares,
                    reason: RefusalReason::Full,
                }
            } else {
                Outcome::Accepted(r.shares)
            };
            next.extend(p.on_outcome(r.server, o));
        }
        assert_eq!(requests(&next), vec![(sid(10), vec![3])]);
        assert_eq!(p.status(), Status::InProgress);
        accept_all(&mut p, next);
        let pl = done(&p);
        assert_eq!(pl.happiness, 10);
        assert!(!pl.writers.contains_key(&sid(3)));
        assert_eq!(pl.writers[&sid(10)], set(&[3]));
    }

    #[test]
    fn answered_without_allocation_means_full() {
        let mut p = Planner::new(&ring(4), params(1, 3, 2)).unwrap();
        let reqs = p.initial();
        assert_eq!(reqs.len(), 3);
        let next = p.on_outcome(
            sid(1),
            Outcome::Answered {
                allocated: BTreeSet::new(),
                already_have: BTreeSet::new(),
            },
        );
        assert_eq!(requests(&next), vec![(sid(3), vec![1])]);
        // No fresh server is left, and the servers that could take share 1 still owe answers:
        // it waits rather than double-booking a server.
        let next = p.on_outcome(sid(3), Outcome::Disconnected);
        assert!(next.is_empty());
        assert_eq!(p.in_flight().len(), 2);
        // The full server 1 is never asked again; server 0 gets share 1 once it is free.
        let next = p.on_outcome(sid(0), Outcome::Accepted(set(&[0])));
        assert_eq!(requests(&next), vec![(sid(0), vec![1])]);
        assert!(p
            .on_outcome(sid(0), Outcome::Accepted(set(&[1])))
            .is_empty());
        assert_eq!(p.status(), Status::InProgress);
        assert!(p
            .on_outcome(sid(2), Outcome::Accepted(set(&[2])))
            .is_empty());
        let pl = done(&p);
        assert_eq!(pl.happiness, 2);
        assert!(pl.homeless.is_empty());
        assert_eq!(pl.writers[&sid(0)], set(&[0, 1]));
    }

    #[test]
    fn disconnect_midway_rehomes_accepted_and_pending_shares() {
        let mut p = Planner::new(&ring(8), params(2, 4, 4)).unwrap();
        let reqs = p.initial();
        assert_eq!(reqs.len(), 4);
        assert!(p
            .on_outcome(sid(0), Outcome::Accepted(set(&[0])))
            .is_empty());
        let next = p.on_outcome(sid(0), Outcome::Disconnected);
        assert_eq!(requests(&next), vec![(sid(4), vec![0])]);
        let next = p.on_outcome(sid(1), Outcome::Disconnected);
        assert_eq!(requests(&next), vec![(sid(5), vec![1])]);
        for (s, sh) in [(2, 2), (3, 3), (4, 0), (5, 1)] {
            assert!(p
                .on_outcome(sid(s), Outcome::Accepted(set(&[sh])))
                .is_empty());
        }
        let pl = done(&p);
        assert_eq!(pl.happiness, 4);
        assert_eq!(
            pl.writers.keys().copied().collect::<Vec<_>>(),
            vec![sid(2), sid(3), sid(4), sid(5)]
        );
    }

    #[test]
    fn disconnect_after_done_only_lowers_happiness() {
        let mut p = Planner::new(&ring(6), params(2, 4, 3)).unwrap();
        let reqs = p.initial();
        accept_all(&mut p, reqs);
        assert_eq!(done(&p).happiness, 4);
        // No replacement is proposed once writing may have begun.
        assert!(p.on_outcome(sid(0), Outcome::Disconnected).is_empty());
        let pl = done(&p);
        assert_eq!(pl.happiness, 3);
        assert_eq!(pl.homeless, set(&[0]));
        assert!(p.on_outcome(sid(1), Outcome::Disconnected).is_empty());
        let e = failed(&p);
        assert!(matches!(
            e,
            PlacementError::NotEnoughServers { happiness: 2, .. }
        ));
        // Failure is final.
        assert!(p
            .on_outcome(sid(5), Outcome::Accepted(set(&[0])))
            .is_empty());
        assert!(matches!(p.status(), Status::Failed(_)));
    }

    #[test]
    fn already_held_shares_count_and_are_not_rewritten() {
        let mut p = Planner::new(&ring(4), params(2, 4, 4)).unwrap();
        let _ = p.initial();
        // Server 0 was asked for share 0 and reports holding 0 and 3 (Tahoe reports all it has).
        let next = p.on_outcome(
            sid(0),
            Outcome::Answered {
                allocated: BTreeSet::new(),
                already_have: set(&[0, 3]),
            },
        );
        assert!(next.is_empty());
        for s in 1..4u16 {
            let _ = p.on_outcome(sid(usize::from(s)), Outcome::Accepted(set(&[s])));
        }
        let pl = done(&p);
        assert_eq!(pl.existing, [(sid(0), set(&[0, 3]))].into_iter().collect());
        assert!(!pl.writers.contains_key(&sid(0)));
        assert_eq!(pl.happiness, 4);
    }

    /// Shares bunched on one server: the refused share already lives on server 0, so nothing is
    /// homeless, yet happiness is 3 < 4 until an extra copy goes to the unused server 4.
    #[test]
    fn bunched_existing_shares_get_an_extra_copy_on_a_fresh_server() {
        let mut p = Planner::new(&ring(5), params(2, 4, 4)).unwrap();
        let reqs = p.initial();
        assert_eq!(reqs.len(), 4);
        let _ = p.on_outcome(
            sid(0),
            Outcome::Answered {
                allocated: BTreeSet::new(),
                already_have: set(&[0, 3]),
            },
        );
        let _ = p.on_outcome(sid(1), Outcome::Accepted(set(&[1])));
        let _ = p.on_outcome(sid(2), Outcome::Accepted(set(&[2])));
        let next = p.on_outcome(
            sid(3),
            Outcome::Refused {
                shares: set(&[3]),
                reason: RefusalReason::TooLarge,
            },
        );
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].server, sid(4));
        assert_eq!(next[0].shares.len(), 1);
        assert!(next[0].shares.is_subset(&set(&[0, 3])));
        accept_all(&mut p, next);
        assert_eq!(done(&p).happiness, 4);
    }

    /// Known in advance: W holds 0, read-only R1 holds 0, read-only R2 holds 1 and 2. Happiness is
    /// 2; only moving R1's share into the count (W takes share 2) reaches 3.
    #[test]
    fn redistributes_through_an_augmenting_path() {
        let mut p = Planner::new(&ring(3), params(1, 3, 3)).unwrap();
        let read_only = || Outcome::Refused {
            shares: BTreeSet::new(),
            reason: RefusalReason::Full,
        };
        assert!(p
            .on_outcome(sid(0), Outcome::AlreadyHave(set(&[0])))
            .is_empty());
        assert!(p
            .on_outcome(sid(1), Outcome::AlreadyHave(set(&[0])))
            .is_empty());
        assert!(p.on_outcome(sid(1), read_only()).is_empty());
        assert!(p
            .on_outcome(sid(2), Outcome::AlreadyHave(set(&[1, 2])))
            .is_empty());
        assert!(p.on_outcome(sid(2), read_only()).is_empty());
        assert_eq!(p.happiness(), 2);
        let reqs = p.initial();
        assert_eq!(requests(&reqs), vec![(sid(0), vec![2])]);
        accept_all(&mut p, reqs);
        let pl = done(&p);
        assert_eq!(pl.happiness, 3);
        assert_eq!(pl.writers, [(sid(0), set(&[2]))].into_iter().collect());
    }

    #[test]
    fn servers_known_full_in_advance_are_skipped() {
        let mut p = Planner::new(&ring(4), params(1, 2, 2)).unwrap();
        let full = Outcome::Refused {
            shares: BTreeSet::new(),
            reason: RefusalReason::TooLarge,
        };
        assert!(p.on_outcome(sid(0), full).is_empty());
        let reqs = p.initial();
        assert_eq!(requests(&reqs), vec![(sid(1), vec![0]), (sid(2), vec![1])]);
    }

    #[test]
    fn every_server_refusing_fails_with_counts() {
        let mut p = Planner::new(&ring(6), params(3, 4, 3)).unwrap();
        let mut queue: VecDeque<Assignment> = p.initial().into();
        let mut asked = Vec::new();
        while let Some(r) = queue.pop_front() {
            asked.push(r.server);
            let o = Outcome::Refused {
                shares: r.shares,
                reason: RefusalReason::Error("disk error".into()),
            };
            queue.extend(p.on_outcome(r.server, o));
        }
        // Every server was asked once, in ring order; once four had refused, the two still owing
        // answers could not make happiness 3, so placement failed without waiting for them.
        assert_eq!(asked, ring(6));
        let e = failed(&p);
        assert_eq!(
            e,
            PlacementError::NotEnoughServers {
                needed_happy: 3,
                known: 6,
                reachable: 4,
                accepting: 0,
                refusing: 4,
                happiness: 0
            }
        );
        let msg = e.to_string();
        assert!(msg.contains("only 0 could be arranged"), "{msg}");
        assert!(msg.contains("4 reachable, 0 accepted"), "{msg}");
        assert!(msg.contains("free space on full servers"), "{msg}");
    }

    #[test]
    fn fails_as_soon_as_too_few_servers_remain_possible() {
        let mut p = Planner::new(&ring(3), params(1, 3, 3)).unwrap();
        let _ = p.initial();
        assert!(p.on_outcome(sid(1), Outcome::Disconnected).is_empty());
        // Two requests are still unanswered, but three servers can no longer be reached.
        assert!(matches!(p.status(), Status::Failed(_)));
    }

    #[test]
    fn ignores_unknown_servers_and_unasked_shares() {
        let mut p = Planner::new(&ring(3), params(1, 3, 3)).unwrap();
        let reqs = p.initial();
        assert!(p.on_outcome(sid(99), Outcome::Disconnected).is_empty());
        // Server 0 "accepts" share 2 it was never asked for: not counted.
        let _ = p.on_outcome(sid(0), Outcome::Accepted(set(&[0, 2])));
        assert_eq!(p.writers()[&sid(0)], set(&[0]));
        // Already-have shares outside 0..n are ignored.
        let _ = p.on_outcome(sid(1), Outcome::AlreadyHave(set(&[7])));
        assert_eq!(p.in_flight().len(), 2);
        accept_all(&mut p, reqs[1..].to_vec());
        assert_eq!(done(&p).happiness, 3);
    }

    #[test]
    fn for_storage_index_uses_the_permuted_ring() {
        let servers: Vec<ServerDescriptor> = (0..5)
            .map(|i| ServerDescriptor {
                id: sid(i),
                permutation_seed: vec![b'0' + i as u8],
            })
            .collect();
        let si = [3u8; 16];
        let p = Planner::for_storage_index(&si, &servers, params(1, 2, 1)).unwrap();
        assert_eq!(p.ring(), permuted_order(&si, &servers).as_slice());
    }

    /// Drives a planner to the end against servers that accept iff `accepts(ring position)`,
    /// answering in FIFO order; returns the number of requests sent.
    fn drive(p: &mut Planner, accepts: impl Fn(usize) -> bool) -> usize {
        let mut queue: VecDeque<Assignment> = p.initial().into();
        let mut sent = queue.len();
        while let Some(r) = queue.pop_front() {
            let i = usize::from_be_bytes(r.server.0[..8].try_into().unwrap_or([0; 8]));
            let outcome = if accepts(i) {
                Outcome::Accepted(r.shares)
            } else {
                Outcome::Answered {
                    allocated: BTreeSet::new(),
                    already_have: BTreeSet::new(),
                }
            };
            let next = p.on_outcome(r.server, outcome);
            sent += next.len();
            queue.extend(next);
        }
        sent
    }

    /// Wide grid: 3000 servers, two in three full, 256 shares. Every share ends up on its own
    /// accepting server, with one extra request per full server met on the way.
    #[test]
    fn wide_grid_with_many_full_servers() {
        let mut p = Planner::new(&ring(3000), params(100, 256, 200)).unwrap();
        let sent = drive(&mut p, |i| i % 3 == 0);
        let pl = done(&p);
        assert_eq!(pl.happiness, 256);
        assert!(pl.homeless.is_empty());
        let index = |id: &ServerId| u64::from_be_bytes(id.0[..8].try_into().unwrap_or([0; 8]));
        assert!(pl.writers.keys().all(|id| index(id) % 3 == 0));
        assert_eq!(sent, 256 * 3 - 2);
    }

    /// Only the last ten of 2000 servers have space: the planner walks the whole ring.
    #[test]
    fn walks_a_long_ring_of_full_servers() {
        let mut p = Planner::new(&ring(2000), params(3, 10, 10)).unwrap();
        let sent = drive(&mut p, |i| i >= 1990);
        assert_eq!(done(&p).happiness, 10);
        assert_eq!(sent, 2000);
    }

    /// How a simulated server answers every request.
    #[derive(Clone, Debug)]
    enum Behaviour {
        /// Allocates everything asked that it does not already hold.
        Accepts { has: BTreeSet<u16> },
        /// Allocates nothing (full), reports what it holds.
        Full { has: BTreeSet<u16> },
        /// Drops off the network when asked.
        Vanishes,
    }

    fn behaviour(n: u16) -> impl Strategy<Value = Behaviour> {
        let has = prop::collection::btree_set(0..n, 0..3);
        prop_oneof![
            3 => has.clone().prop_map(|has| Behaviour::Accepts { has }),
            2 => has.prop_map(|has| Behaviour::Full { has }),
            1 => Just(Behaviour::Vanishes),
        ]
    }

    /// The best happiness any placement could reach with these servers.
    fn best_possible(servers: &[Behaviour], n: u16) -> usize {
        let layout: BTreeMap<usize, BTreeSet<u16>> = servers
            .iter()
            .enumerate()
            .map(|(i, b)| match b {
                Behaviour::Accepts { .. } => (i, (0..n).collect()),
                Behaviour::Full { has } => (i, has.clone()),
                Behaviour::Vanishes => (i, BTreeSet::new()),
            })
            .collect();
        happiness(&layout)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Against servers with fixed behaviour, answered in a random order, the planner never
        /// double-books a server, tries fresh servers first, always terminates, and succeeds
        /// exactly when some placement could reach `happy`.
        #[test]
        fn succeeds_exactly_when_happiness_is_reachable(
            (n, k, happy, servers) in (1u16..9).prop_flat_map(|n| {
                (Just(n), 1..=n, 1..=n, prop::collection::vec(behaviour(n), 0..12))
            }),
            picks in prop::collection::vec(any::<u16>(), 64),
        ) {
            let (n_, k_, happy_) = (usize::from(n), usize::from(k), usize::from(happy));
            let ids = ring(servers.len());
            let mut p = Planner::new(&ids, params(k_, n_, happy_)).unwrap();
            let mut outstanding: Vec<Assignment> = Vec::new();
            let mut contacted: BTreeSet<usize> = BTreeSet::new();
            let mut dead: BTreeSet<usize> = BTreeSet::new();
            let mut batch = p.initial();
            let mut rounds = 0;
            loop {
                let batch_had_repeat = batch.iter().any(|a| contacted.contains(&(a.server.0[7] as usize)));
                for a in &batch {
                    let i = usize::from(a.server.0[7]);
                    prop_assert!(!dead.contains(&i), "asked a server that refused or vanished");
                    prop_assert!(outstanding.iter().all(|o| o.server != a.server), "two requests in flight");
                    prop_assert!(!a.shares.is_empty());
                    prop_assert!(a.shares.iter().all(|&s| s < n));
                    contacted.insert(i);
                }
                if batch_had_repeat {
                    prop_assert!((0..servers.len()).all(|i| contacted.contains(&i)),
                        "asked a server twice while another was never asked");
                }
                outstanding.extend(batch);
                if outstanding.is_empty() {
                    break;
                }
                rounds += 1;
                prop_assert!(rounds < 1000);
                let pick = usize::from(picks[rounds % picks.len()]) % outstanding.len();
                let req = outstanding.remove(pick);
                let i = usize::from(req.server.0[7]);
                let outcome = match &servers[i] {
                    Behaviour::Accepts { has } => Outcome::Answered {
                        allocated: req.shares.difference(has).copied().collect(),
                        already_have: has.clone(),
                    },
                    Behaviour::Full { has } => {
                        if !req.shares.is_subset(has) {
                            dead.insert(i);
                        }
                        Outcome::Answered { allocated: BTreeSet::new(), already_have: has.clone() }
                    }
                    Behaviour::Vanishes => {
                        dead.insert(i);
                        Outcome::Disconnected
                    }
                };
                batch = p.on_outcome(req.server, outcome);
                if matches!(p.status(), Status::Failed(_)) {
                    prop_assert!(batch.is_empty());
                    break;
                }
            }
            let best = best_possible(&servers, n);
            match p.status() {
                Status::Done(pl) => {
                    prop_assert!(best >= happy_);
                    prop_assert!(pl.happiness >= happy_);
                    prop_assert_eq!(pl.happiness, happiness(&pl.share_map()));
                    for (id, shares) in &pl.writers {
                        let i = usize::from(id.0[7]);
                        let accepts = matches!(servers[i], Behaviour::Accepts { .. });
                        prop_assert!(accepts, "wrote to a server that does not accept");
                        prop_assert!(shares.iter().all(|&s| s < n));
                    }
                    if servers.iter().any(|b| matches!(b, Behaviour::Accepts { .. })) {
                        prop_assert!(pl.homeless.is_empty(), "an accepting server was left unused");
                    }
                }
                Status::Failed(PlacementError::NotEnoughServers { happiness: h, .. }) => {
                    prop_assert!(best < happy_, "failed at {} though {} was reachable", h, best);
                }
                other => prop_assert!(false, "unexpected final status {:?}", other),
            }
        }

        /// With every server accepting and at least n of them, placement takes exactly one
        /// request per share, each to a distinct server in ring order.
        #[test]
        fn all_accepting_uses_one_request_per_share(n in 1usize..40, extra in 0usize..10) {
            let mut p = Planner::new(&ring(n + extra), params(1, n, n)).unwrap();
            let reqs = p.initial();
            prop_assert_eq!(reqs.len(), n);
            for (i, r) in reqs.iter().enumerate() {
                prop_assert_eq!(r.server, sid(i));
                prop_assert_eq!(&r.shares, &set(&[i as u16]));
            }
            prop_assert!(accept_all(&mut p, reqs).is_empty());
            prop_assert_eq!(done(&p).happiness, n);
        }
    }
}
