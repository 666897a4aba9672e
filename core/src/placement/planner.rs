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
//! new until it answers. Once `Done`, the planner proposes nothing more (shares are being
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

/// Why a server would not take shares; kept for diagnostics.
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
    /// Placement cannot reach `happy`; abort any allocated writers ([`Planner::writers`]).
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

    /// Never asked and holding nothing: the ring's next candidates.
    fn fresh(&self) -> bool {
        !self.contacted && !self.gone
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
        match outcome {
            Outcome::Accepted(shares) => {
                for sh in shares {
                    if s.pending.remove(&sh) {
                        s.accepted.insert(sh);
                    }
                }
                s.answered = true;
            }
            Outcome::AlreadyHave(shares) => {
                Self::note_existing(s, shares, n);
            }
            Outcome::Refused { shares, reason: _ } => {
                for sh in shares {
                    s.pending.remove(&sh);
                }
                s.answered = true;
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
        s.answered = true;
        s.contacted = true;
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
