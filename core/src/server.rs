//! The storage server's request handling, without I/O.
//!
//! [`StorageServer`] turns one decoded [`Request`] from one connection into one [`Response`],
//! keeping shares in a [`ShareStore`]. The runtime owns the sockets: it decodes frames, calls
//! [`StorageServer::handle_request`] with the current time and the connection's id, encodes the
//! reply, and tells the server when a connection ends. The rules it enforces are listed in the
//! [`wire`](crate::wire) module docs.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::base32;
use crate::store::{
    secrets_equal, DurabilityTicket, EnablerRecord, Lease, MutableShareChange, ShareStore,
    StoreError,
};
use crate::time::{Duration, Instant};
use crate::wire::{
    ErrorKind, LeaseSecrets, MutableShareWrite, ReadRange, Refusal, Request, Response, ShareRead,
    ShareWrite, ShareWriteOutcome, StorageIndex, TestVector, DEFAULT_MAX_FRAME_LEN,
    PROTOCOL_VERSION,
};

/// Tahoe's lease duration: every add or renew sets expiry to now + 31 days.
pub const LEASE_DURATION: Duration = Duration::from_secs(31 * 24 * 60 * 60);
/// Tahoe aborts an upload after 30 minutes without a write.
pub const UPLOAD_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Longest corruption reason kept (Tahoe's HTTP API allows 32765 characters).
pub const MAX_ADVISORY_REASON: usize = 32_765;
/// Most share numbers a file may have (`total_shares` limit), as in Tahoe.
pub const MAX_TOTAL_SHARES: u16 = 256;

/// Identifies one client connection, assigned by the runtime; uploads belong to a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnectionId(pub u64);

/// Tunables of a [`StorageServer`].
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Lifetime of a lease from its last add or renew.
    pub lease_duration: Duration,
    /// An upload with no write for this long is aborted by [`StorageServer::handle_timeout`].
    pub upload_idle_timeout: Duration,
    /// Largest encoded `ImmutableRead`, `MutableRead` or `MutableWrite` reply; larger ones are
    /// `Error(ResponseTooLarge)`. Keep it at or below the clients' frame limit.
    pub max_response_size: u64,
    /// How many corruption advisories are kept (oldest dropped first).
    pub max_advisories: usize,
    /// The 20-byte id recorded with the write enabler of every mutable share this server
    /// creates, and named when a write presents the wrong enabler. Tahoe records its tub id;
    /// runtimes should set [`derivation_node_id`](crate::op::derivation_node_id) of the server's
    /// id, the one clients derive write enablers from. All zeros by default.
    pub node_id: [u8; 20],
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            lease_duration: LEASE_DURATION,
            upload_idle_timeout: UPLOAD_IDLE_TIMEOUT,
            max_response_size: u64::from(DEFAULT_MAX_FRAME_LEN),
            max_advisories: 1000,
            node_id: [0; 20],
        }
    }
}

/// A client's report that a share failed verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorruptionAdvisory {
    pub at: Instant,
    pub connection: ConnectionId,
    pub storage_index: StorageIndex,
    pub shnum: u16,
    pub reason: String,
}

/// An upload in progress, owned by one connection.
#[derive(Clone, Debug)]
struct Upload {
    conn: ConnectionId,
    allocated_size: u64,
    /// End of the highest byte written so far: the share's length if closed now.
    written_end: u64,
    renew_secret: [u8; 32],
    last_write: Instant,
}

/// Storage-server logic over a [`ShareStore`].
#[derive(Debug)]
pub struct StorageServer<S: ShareStore> {
    store: S,
    config: ServerConfig,
    uploads: BTreeMap<(StorageIndex, u16), Upload>,
    advisories: VecDeque<CorruptionAdvisory>,
}

fn error(kind: ErrorKind, message: impl Into<String>) -> Response {
    Response::Error {
        kind,
        message: message.into(),
    }
}

/// An answer that may have to wait until the changes behind it are durable (a store that
/// defers its syncs, see [`crate::store::ShareStore::durability_ticket`]). A runtime takes it
/// under its lock with [`StorageServer::answer`], releases the lock, waits on
/// [`Pending::ticket`] if there is one, and sends [`Pending::after_wait`].
#[derive(Debug)]
pub struct Pending {
    response: Response,
    ticket: Option<DurabilityTicket>,
}

impl Pending {
    /// What to wait on before answering (`None`: nothing to wait for).
    pub fn ticket(&mut self) -> Option<DurabilityTicket> {
        self.ticket.take()
    }

    /// The answer once the wait returned `waited` (`Ok` also when there was nothing to wait
    /// for): changes that could not be made durable are a store failure, whatever the handler
    /// said.
    pub fn after_wait(self, waited: Result<(), StoreError>) -> Response {
        match waited {
            Ok(()) => self.response,
            Err(e) => store_failure(e),
        }
    }

    /// Waits on this thread, then the answer.
    pub fn wait(mut self) -> Response {
        let waited = self.ticket().map_or(Ok(()), |t| t.wait());
        self.after_wait(waited)
    }
}

fn store_failure(e: StoreError) -> Response {
    error(ErrorKind::StoreFailure, e.to_string())
}

/// Bytes a range of a share of `share_len` bytes reads (cut at the end, empty past it).
fn chunk_len(share_len: u64, r: &ReadRange) -> u64 {
    r.offset
        .saturating_add(r.length)
        .min(share_len)
        .saturating_sub(r.offset)
}

/// Encoded size of a reply of `base` bytes plus the `ranges` of shares of the given lengths, or
/// `None` once it exceeds `limit` (checked as it goes, so a hostile range list is cheap).
fn reply_size(
    base: u64,
    share_lens: impl IntoIterator<Item = u64>,
    ranges: &[ReadRange],
    limit: u64,
) -> Option<u64> {
    let mut size = base;
    for len in share_lens {
        // shnum, share_len, chunk count
        size = size.saturating_add(14);
        for r in ranges {
            // Every chunk costs at least its 4-byte count.
            size = size.saturating_add(4 + chunk_len(len, r));
            if size > limit {
                return None;
            }
        }
        if size > limit {
            return None;
        }
    }
    (size <= limit).then_some(size)
}

fn too_large(limit: u64) -> Response {
    error(
        ErrorKind::ResponseTooLarge,
        format!("reply would exceed the limit of {limit} bytes"),
    )
}

/// Reads `ranges` from one share of `share_len` bytes with `read(offset, length)`, skipping the
/// store for ranges that read nothing.
fn read_chunks(
    share_len: u64,
    ranges: &[ReadRange],
    mut read: impl FnMut(u64, u64) -> Result<Vec<u8>, StoreError>,
) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut chunks = Vec::with_capacity(ranges.len());
    for r in ranges {
        if chunk_len(share_len, r) == 0 {
            chunks.push(Vec::new());
        } else {
            chunks.push(read(r.offset, r.length)?);
        }
    }
    Ok(chunks)
}

impl<S: ShareStore> StorageServer<S> {
    pub fn new(store: S, config: ServerConfig) -> Self {
        StorageServer {
            store,
            config,
            uploads: BTreeMap::new(),
            advisories: VecDeque::new(),
        }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// Direct access for tests, the simulator's fault injection and maintenance (e.g. lease GC).
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Number of uploads in progress on all connections.
    pub fn uploads_in_progress(&self) -> usize {
        self.uploads.len()
    }

    /// Corruption advisories received, oldest first.
    pub fn advisories(&self) -> impl Iterator<Item = &CorruptionAdvisory> {
        self.advisories.iter()
    }

    /// [`StorageServer::handle_request`], with what the store says to wait on before the
    /// answer may be sent.
    pub fn answer(&mut self, now: Instant, conn: ConnectionId, req: Request) -> Pending {
        let response = self.handle_request(now, conn, req);
        Pending {
            response,
            ticket: self.store.durability_ticket(),
        }
    }

    /// Answers one request from connection `conn` at time `now`.
    pub fn handle_request(&mut self, now: Instant, conn: ConnectionId, req: Request) -> Response {
        match req {
            Request::GetVersion => Response::Version {
                protocol: u32::from(PROTOCOL_VERSION),
                max_share_size: self.store.max_share_size(),
                available_space: self.store.space_available(),
                used_space: self.store.space_used(),
                shares_held: self.store.shares_held(),
            },
            Request::ImmutableWrite {
                storage_index,
                lease,
                allocated_size,
                total_shares,
                writes,
            } => self.immutable_write(
                now,
                conn,
                &storage_index,
                &lease,
                allocated_size,
                total_shares,
                &writes,
            ),
            Request::ImmutableAbort {
                storage_index,
                shnums,
            } => self.immutable_abort(conn, &storage_index, &shnums),
            Request::ImmutableRead {
                storage_index,
                shnums,
                max_shares,
                ranges,
            } => self.immutable_read(&storage_index, &shnums, max_shares, &ranges),
            Request::AddLease {
                storage_index,
                lease,
            } => self.add_lease(now, &storage_index, &lease),
            Request::AdviseCorrupt {
                storage_index,
                shnum,
                reason,
            } => self.advise_corrupt(now, conn, storage_index, shnum, reason),
            Request::MutableRead {
                storage_index,
                shnums,
                ranges,
            } => self.mutable_read(&storage_index, &shnums, &ranges),
            Request::MutableWrite {
                storage_index,
                write_enabler,
                lease,
                shares,
                read_ranges,
            } => self.mutable_write(
                now,
                &storage_index,
                &write_enabler,
                &lease,
                &shares,
                &read_ranges,
            ),
        }
    }

    /// Aborts every unfinished upload of a connection that has ended.
    ///
    /// All of them are aborted even if the store fails on some; the first failure is returned
    /// so the runtime can log it.
    pub fn handle_disconnect(&mut self, conn: ConnectionId) -> Result<(), StoreError> {
        self.abort_where(|up| up.conn == conn)
    }

    /// Aborts uploads idle for longer than [`ServerConfig::upload_idle_timeout`].
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), StoreError> {
        let idle = self.config.upload_idle_timeout;
        self.abort_where(|up| up.last_write + idle <= now)
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has work, if any upload is open.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let idle = self.config.upload_idle_timeout;
        self.uploads.values().map(|up| up.last_write + idle).min()
    }

    /// How long a runtime's janitor sleeps from `now` before calling
    /// [`handle_timeout`](Self::handle_timeout): until the next deadline, at most `longest` (so
    /// an upload opened meanwhile is noticed).
    pub fn janitor_sleep(&self, now: Instant, longest: std::time::Duration) -> std::time::Duration {
        self.poll_timeout()
            .map_or(longest, |t| now.until(t).min(longest))
    }

    fn abort_where(&mut self, pred: impl Fn(&Upload) -> bool) -> Result<(), StoreError> {
        let doomed: Vec<(StorageIndex, u16)> = self
            .uploads
            .iter()
            .filter(|(_, up)| pred(up))
            .map(|(k, _)| *k)
            .collect();
        let mut first_error = None;
        for (si, shnum) in doomed {
            if let Err(e) = self.abort_upload(&si, shnum) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn abort_upload(&mut self, si: &StorageIndex, shnum: u16) -> Result<(), StoreError> {
        self.uploads.remove(&(*si, shnum));
        match self.store.abort_share(si, shnum) {
            // Already gone (e.g. lost by the store): nothing left to release.
            Ok(()) | Err(StoreError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn lease(&self, now: Instant, secrets: &LeaseSecrets) -> Lease {
        Lease {
            renew_secret: secrets.renew,
            cancel_secret: secrets.cancel,
            expires: now + self.config.lease_duration,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn immutable_write(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        si: &StorageIndex,
        secrets: &LeaseSecrets,
        allocated_size: u64,
        total_shares: u16,
        writes: &[ShareWrite],
    ) -> Response {
        if total_shares == 0 || total_shares > MAX_TOTAL_SHARES {
            return error(
                ErrorKind::BadRequest,
                format!("total_shares must be 1..=256, got {total_shares}"),
            );
        }
        let mut committed: BTreeSet<u16> = match self.store.list_shares(si) {
            Ok(shares) => shares.iter().map(|s| s.shnum).collect(),
            Err(e) => return store_failure(e),
        };
        let lease = self.lease(now, secrets);
        // As Tahoe's allocate_buckets: asking to allocate renews the lease on every share held.
        if writes.iter().any(|w| w.allocate) && !committed.is_empty() {
            let held: Vec<u16> = committed.iter().copied().collect();
            if let Err(e) = self.store.add_leases(si, &held, lease) {
                return store_failure(e);
            }
        }
        let mut results: Vec<(u16, ShareWriteOutcome)> = Vec::new();
        // Shares closed by this request (number, length), committed after the loop.
        let mut closing: Vec<(u16, u64)> = Vec::new();
        // Share number -> its entry in `results` (a request may name thousands of shares).
        let mut slots: BTreeMap<u16, usize> = BTreeMap::new();
        for w in writes {
            let slot = slots.get(&w.shnum).copied();
            if let Some(i) = slot {
                // A share already committed, refused or already-had earlier in this request
                // ignores its later writes.
                if results[i].1 != (ShareWriteOutcome::Written { committed: false }) {
                    continue;
                }
            }
            let ctx = WriteContext {
                now,
                conn,
                si,
                lease,
                allocated_size,
                total_shares,
            };
            let outcome = match self.write_one(&ctx, &committed, w) {
                Step::Done(outcome) => outcome,
                Step::Close { length } => {
                    // Committed together after the loop; later writes to it are ignored.
                    closing.push((w.shnum, length));
                    ShareWriteOutcome::Written { committed: true }
                }
            };
            match slot {
                Some(i) => results[i].1 = outcome,
                None => {
                    slots.insert(w.shnum, results.len());
                    results.push((w.shnum, outcome));
                }
            }
        }
        // Every share closed by this request commits in one batch: the store can make them
        // durable together (one lease transaction, one sync of their directory).
        if !closing.is_empty() {
            let done = self.store.commit_shares(si, &closing);
            for (i, &(shnum, _)) in closing.iter().enumerate() {
                let result = done.get(i).cloned().unwrap_or_else(|| {
                    Err(StoreError::Io(
                        "the store gave no result for this share".into(),
                    ))
                });
                let outcome = match result {
                    Ok(()) => {
                        self.uploads.remove(&(*si, shnum));
                        committed.insert(shnum);
                        continue;
                    }
                    Err(e) => {
                        // Best effort: the refusal is what the client needs to hear about.
                        let _ = self.abort_upload(si, shnum);
                        ShareWriteOutcome::Refused(Refusal::StoreFailure(e.to_string()))
                    }
                };
                if let Some(&i) = slots.get(&shnum) {
                    results[i].1 = outcome;
                }
            }
        }
        Response::ImmutableWrite {
            results,
            held: committed.into_iter().collect(),
        }
    }

    fn write_one(
        &mut self,
        ctx: &WriteContext<'_>,
        committed: &BTreeSet<u16>,
        w: &ShareWrite,
    ) -> Step {
        let key = (*ctx.si, w.shnum);
        let ours = match self.uploads.get(&key) {
            Some(up) if up.conn != ctx.conn => {
                return Step::Done(ShareWriteOutcome::Refused(Refusal::InProgressElsewhere))
            }
            Some(_) => true,
            None => false,
        };
        // Any refusal of a share this connection is uploading aborts that upload.
        let refuse = |server: &mut Self, refusal: Refusal| {
            if server
                .uploads
                .get(&key)
                .is_some_and(|up| up.conn == ctx.conn)
            {
                // Best effort: the refusal is what the client needs to hear about.
                let _ = server.abort_upload(ctx.si, w.shnum);
            }
            Step::Done(ShareWriteOutcome::Refused(refusal))
        };
        if w.shnum >= ctx.total_shares {
            return refuse(self, Refusal::BadShareNumber);
        }
        if !ours {
            if committed.contains(&w.shnum) {
                return Step::Done(ShareWriteOutcome::AlreadyHave);
            }
            if !w.allocate {
                return Step::Done(ShareWriteOutcome::Refused(Refusal::NotAllocated));
            }
            if let Err(e) = self
                .store
                .create_share(ctx.si, w.shnum, ctx.allocated_size, ctx.lease)
            {
                return Step::Done(ShareWriteOutcome::Refused(match e {
                    StoreError::NoSpace { available, .. } => Refusal::NoSpace { available },
                    StoreError::TooLarge { max, .. } => Refusal::TooLarge {
                        max_share_size: max,
                    },
                    // Unknown to us but present in the store: an upload left from before a
                    // restart, or one the store manages itself.
                    StoreError::AlreadyExists => Refusal::InProgressElsewhere,
                    other => Refusal::StoreFailure(other.to_string()),
                }));
            }
            self.uploads.insert(
                key,
                Upload {
                    conn: ctx.conn,
                    allocated_size: ctx.allocated_size,
                    written_end: 0,
                    renew_secret: ctx.lease.renew_secret,
                    last_write: ctx.now,
                },
            );
        }
        let Some(up) = self.uploads.get(&key) else {
            return Step::Done(ShareWriteOutcome::Refused(Refusal::NotAllocated));
        };
        if up.renew_secret != ctx.lease.renew_secret {
            return refuse(self, Refusal::WrongLeaseSecret);
        }
        let allocated_size = up.allocated_size;
        let end = match w.offset.checked_add(w.data.len() as u64) {
            Some(end) if end <= allocated_size => end,
            _ => return refuse(self, Refusal::OutOfBounds { allocated_size }),
        };
        if !w.data.is_empty() {
            if let Err(e) = self.store.write_share(ctx.si, w.shnum, w.offset, &w.data) {
                return refuse(self, Refusal::StoreFailure(e.to_string()));
            }
        }
        let Some(up) = self.uploads.get_mut(&key) else {
            return Step::Done(ShareWriteOutcome::Refused(Refusal::NotAllocated));
        };
        if !w.data.is_empty() {
            up.written_end = up.written_end.max(end);
        }
        up.last_write = ctx.now;
        if !w.close {
            return Step::Done(ShareWriteOutcome::Written { committed: false });
        }
        Step::Close {
            length: up.written_end,
        }
    }

    fn immutable_abort(
        &mut self,
        conn: ConnectionId,
        si: &StorageIndex,
        shnums: &[u16],
    ) -> Response {
        let wanted: BTreeSet<u16> = shnums.iter().copied().collect();
        let mine: Vec<u16> = self
            .uploads
            .range((*si, 0)..=(*si, u16::MAX))
            .filter(|((_, n), up)| up.conn == conn && (wanted.is_empty() || wanted.contains(n)))
            .map(|((_, n), _)| *n)
            .collect();
        let mut first_error = None;
        for shnum in mine {
            if let Err(e) = self.abort_upload(si, shnum) {
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            None => Response::Done,
            Some(e) => store_failure(e),
        }
    }

    fn immutable_read(
        &mut self,
        si: &StorageIndex,
        shnums: &[u16],
        max_shares: u16,
        ranges: &[ReadRange],
    ) -> Response {
        let held = match self.store.list_shares(si) {
            Ok(h) => h,
            Err(e) => return store_failure(e),
        };
        let wanted: BTreeSet<u16> = shnums.iter().copied().collect();
        let selected: Vec<_> = held
            .iter()
            .filter(|s| wanted.is_empty() || wanted.contains(&s.shnum))
            .take(usize::from(max_shares))
            .copied()
            .collect();
        // Size the reply exactly before reading anything, so a greedy request costs nothing.
        let limit = self.config.max_response_size;
        let base = 1 + 4 + 4 + 2 * held.len() as u64;
        if reply_size(base, selected.iter().map(|s| s.length), ranges, limit).is_none() {
            return too_large(limit);
        }
        let mut shares = Vec::with_capacity(selected.len());
        let mut unreadable = BTreeSet::new();
        for s in &selected {
            let read = |offset, length| self.store.read_share(si, s.shnum, offset, length);
            match read_chunks(s.length, ranges, read) {
                Ok(chunks) => shares.push(ShareRead {
                    shnum: s.shnum,
                    share_len: s.length,
                    chunks,
                }),
                // One damaged share does not cost the others: it is left out (the store
                // reports and sets it aside), as if it were not held.
                Err(_) => {
                    unreadable.insert(s.shnum);
                }
            }
        }
        if shares.is_empty() && !unreadable.is_empty() {
            return store_failure(StoreError::Io(format!(
                "no share of this storage index could be read ({} damaged or unreadable)",
                unreadable.len()
            )));
        }
        Response::ImmutableRead {
            shares,
            held: held
                .iter()
                .map(|s| s.shnum)
                .filter(|n| !unreadable.contains(n))
                .collect(),
        }
    }

    /// Share numbers held for `si`: its committed immutable shares, or else its mutable ones.
    fn held_shnums(&self, si: &StorageIndex) -> Result<Vec<u16>, StoreError> {
        let immutable = self.store.list_shares(si)?;
        if !immutable.is_empty() {
            return Ok(immutable.iter().map(|s| s.shnum).collect());
        }
        Ok(self
            .store
            .list_mutable_shares(si)?
            .iter()
            .map(|s| s.shnum)
            .collect())
    }

    fn add_lease(&mut self, now: Instant, si: &StorageIndex, secrets: &LeaseSecrets) -> Response {
        let held = match self.held_shnums(si) {
            Ok(h) => h,
            Err(e) => return store_failure(e),
        };
        if held.is_empty() {
            return error(ErrorKind::NotFound, "no shares held for this storage index");
        }
        let lease = self.lease(now, secrets);
        if let Err(e) = self.store.add_leases(si, &held, lease) {
            return store_failure(e);
        }
        Response::Done
    }

    fn mutable_read(
        &mut self,
        si: &StorageIndex,
        shnums: &[u16],
        ranges: &[ReadRange],
    ) -> Response {
        let held = match self.store.list_mutable_shares(si) {
            Ok(h) => h,
            Err(e) => return store_failure(e),
        };
        let wanted: BTreeSet<u16> = shnums.iter().copied().collect();
        let selected: Vec<(u16, u64)> = held
            .iter()
            .filter(|s| wanted.is_empty() || wanted.contains(&s.shnum))
            .map(|s| (s.shnum, s.length))
            .collect();
        let limit = self.config.max_response_size;
        if reply_size(1 + 4, selected.iter().map(|s| s.1), ranges, limit).is_none() {
            return too_large(limit);
        }
        match self.read_mutable(si, &selected, ranges) {
            Ok(shares) => Response::MutableRead { shares },
            Err(e) => store_failure(e),
        }
    }

    fn read_mutable(
        &self,
        si: &StorageIndex,
        shares: &[(u16, u64)],
        ranges: &[ReadRange],
    ) -> Result<Vec<ShareRead>, StoreError> {
        let mut out = Vec::with_capacity(shares.len());
        for &(shnum, share_len) in shares {
            let read = |offset, length| self.store.read_mutable_share(si, shnum, offset, length);
            out.push(ShareRead {
                shnum,
                share_len,
                chunks: read_chunks(share_len, ranges, read)?,
            });
        }
        Ok(out)
    }

    /// Whether a test vector holds on a share of `share_len` bytes (`None`: absent, reads empty).
    fn test_holds(
        &self,
        si: &StorageIndex,
        shnum: u16,
        share_len: Option<u64>,
        t: &TestVector,
    ) -> Result<bool, StoreError> {
        let range = ReadRange {
            offset: t.offset,
            length: t.length,
        };
        let n = chunk_len(share_len.unwrap_or(0), &range);
        if n != t.specimen.len() as u64 {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
        let got = self.store.read_mutable_share(si, shnum, t.offset, n)?;
        Ok(got == t.specimen)
    }

    /// Tahoe's `slot_testv_and_readv_and_writev`, in its order: write enabler, tests, reads,
    /// writes, leases.
    fn mutable_write(
        &mut self,
        now: Instant,
        si: &StorageIndex,
        write_enabler: &[u8; 32],
        secrets: &LeaseSecrets,
        writes: &[MutableShareWrite],
        read_ranges: &[ReadRange],
    ) -> Response {
        let mut named = BTreeSet::new();
        for w in writes {
            if w.shnum >= MAX_TOTAL_SHARES {
                return error(
                    ErrorKind::BadRequest,
                    format!("share number {} is not below 256", w.shnum),
                );
            }
            if !named.insert(w.shnum) {
                return error(
                    ErrorKind::BadRequest,
                    format!("share {} is named twice", w.shnum),
                );
            }
        }
        let held = match self.store.list_mutable_shares(si) {
            Ok(h) => h,
            Err(e) => return store_failure(e),
        };
        // (a) The enabler must match on every share, not just the ones written.
        if let Some(s) = held
            .iter()
            .find(|s| !secrets_equal(&s.enabler.write_enabler, write_enabler))
        {
            return error(
                ErrorKind::BadWriteEnabler,
                format!(
                    "share {} of this storage index has another write enabler. The write \
                     enabler was recorded by nodeid '{}'.",
                    s.shnum,
                    base32::encode(&s.enabler.node_id)
                ),
            );
        }
        let limit = self.config.max_response_size;
        if reply_size(1 + 1 + 4, held.iter().map(|s| s.length), read_ranges, limit).is_none() {
            return too_large(limit);
        }
        // (b) Every share's tests, a missing share reading as empty.
        let lengths: BTreeMap<u16, u64> = held.iter().map(|s| (s.shnum, s.length)).collect();
        let mut passed = true;
        'tests: for w in writes {
            for t in &w.tests {
                match self.test_holds(si, w.shnum, lengths.get(&w.shnum).copied(), t) {
                    Ok(true) => {}
                    Ok(false) => {
                        passed = false;
                        break 'tests;
                    }
                    Err(e) => return store_failure(e),
                }
            }
        }
        // (c) Reads of every existing share, before any write.
        let existing: Vec<(u16, u64)> = held.iter().map(|s| (s.shnum, s.length)).collect();
        let reads = match self.read_mutable(si, &existing, read_ranges) {
            Ok(r) => r,
            Err(e) => return store_failure(e),
        };
        if !passed {
            return Response::MutableWrite {
                applied: false,
                reads,
            };
        }
        // (d) The writes, then the lease on every share left.
        let changes: Vec<MutableShareChange<'_>> = writes
            .iter()
            .map(|w| MutableShareChange {
                shnum: w.shnum,
                writes: &w.writes,
                new_length: w.new_length,
            })
            .collect();
        let record = EnablerRecord {
            write_enabler: *write_enabler,
            node_id: self.config.node_id,
        };
        if let Err(e) = self.store.write_mutable_shares(si, &record, &changes) {
            let kind = match e {
                StoreError::NoSpace { .. } | StoreError::TooLarge { .. } => ErrorKind::NoSpace,
                StoreError::KindConflict(_) => ErrorKind::BadRequest,
                _ => ErrorKind::StoreFailure,
            };
            return error(kind, e.to_string());
        }
        let lease = self.lease(now, secrets);
        let renewed = self.store.list_mutable_shares(si).and_then(|after| {
            let shnums: Vec<u16> = after.iter().map(|s| s.shnum).collect();
            self.store.add_leases(si, &shnums, lease)
        });
        if let Err(e) = renewed {
            return error(
                ErrorKind::StoreFailure,
                format!("the writes were applied but the lease could not be renewed: {e}"),
            );
        }
        Response::MutableWrite {
            applied: true,
            reads,
        }
    }

    fn advise_corrupt(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        storage_index: StorageIndex,
        shnum: u16,
        mut reason: String,
    ) -> Response {
        // As Tahoe: advice about a share we do not hold is ignored.
        let held = match self.held_shnums(&storage_index) {
            Ok(h) => h.contains(&shnum),
            Err(e) => return store_failure(e),
        };
        if held && self.config.max_advisories > 0 {
            if reason.len() > MAX_ADVISORY_REASON {
                let mut cut = MAX_ADVISORY_REASON;
                while !reason.is_char_boundary(cut) {
                    cut -= 1;
                }
                reason.truncate(cut);
            }
            if self.advisories.len() >= self.config.max_advisories {
                self.advisories.pop_front();
            }
            self.advisories.push_back(CorruptionAdvisory {
                at: now,
                connection: conn,
                storage_index,
                shnum,
                reason,
            });
        }
        Response::Done
    }
}

/// What one share write of an `ImmutableWrite` came to: an outcome, or a close whose commit
/// waits for the end of the request (all closes of a request commit together).
enum Step {
    Done(ShareWriteOutcome),
    Close { length: u64 },
}

/// The per-request facts every share write of an `ImmutableWrite` needs.
struct WriteContext<'a> {
    now: Instant,
    conn: ConnectionId,
    si: &'a StorageIndex,
    lease: Lease,
    allocated_size: u64,
    total_shares: u16,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryShareStore;
    use crate::wire::{MutableShareWrite, TestVector};

    const SI: StorageIndex = [9; 16];
    const A: ConnectionId = ConnectionId(1);
    const B: ConnectionId = ConnectionId(2);
    const T0: Instant = Instant(1_000_000);

    fn secrets(b: u8) -> LeaseSecrets {
        LeaseSecrets {
            renew: [b; 32],
            cancel: [b ^ 0xff; 32],
        }
    }

    fn server(capacity: u64, max_share: u64) -> StorageServer<MemoryShareStore> {
        StorageServer::new(
            MemoryShareStore::new(capacity, max_share),
            ServerConfig::default(),
        )
    }

    fn write(shnum: u16, allocate: bool, offset: u64, data: &[u8], close: bool) -> ShareWrite {
        ShareWrite {
            shnum,
            allocate,
            offset,
            data: data.to_vec(),
            close,
        }
    }

    fn upload(
        s: &mut StorageServer<MemoryShareStore>,
        conn: ConnectionId,
        allocated_size: u64,
        writes: Vec<ShareWrite>,
    ) -> Response {
        s.handle_request(
            T0,
            conn,
            Request::ImmutableWrite {
                storage_index: SI,
                lease: secrets(1),
                allocated_size,
                total_shares: 10,
                writes,
            },
        )
    }

    fn outcomes(resp: Response) -> Vec<(u16, ShareWriteOutcome)> {
        match resp {
            Response::ImmutableWrite { results, .. } => results,
            other => panic!("expected a write reply, got {other:?}"),
        }
    }

    fn read(
        s: &mut StorageServer<MemoryShareStore>,
        shnums: Vec<u16>,
        max_shares: u16,
        ranges: &[(u64, u64)],
    ) -> Response {
        s.handle_request(
            T0,
            A,
            Request::ImmutableRead {
                storage_index: SI,
                shnums,
                max_shares,
                ranges: ranges
                    .iter()
                    .map(|&(offset, length)| ReadRange { offset, length })
                    .collect(),
            },
        )
    }

    const WRITTEN: ShareWriteOutcome = ShareWriteOutcome::Written { committed: false };
    const COMMITTED: ShareWriteOutcome = ShareWriteOutcome::Written { committed: true };

    #[test]
    fn one_message_upload_of_several_shares_reads_back_truncated() {
        let mut s = server(10_000, 1_000);
        let resp = upload(
            &mut s,
            A,
            10,
            vec![
                write(0, true, 0, b"share-zero", true),
                write(3, true, 0, b"three", false),
                write(3, false, 5, b"333", true),
            ],
        );
        assert_eq!(
            resp,
            Response::ImmutableWrite {
                results: vec![(0, COMMITTED), (3, COMMITTED)],
                held: vec![0, 3]
            }
        );
        assert_eq!(s.uploads_in_progress(), 0);
        // Share 3 closed shorter than allocated: its length is the highest byte written.
        assert_eq!(s.store().space_used(), 18);
        assert!(matches!(
            s.handle_request(T0, A, Request::GetVersion),
            Response::Version {
                used_space: 18,
                shares_held: 2,
                ..
            }
        ));
        let resp = read(&mut s, vec![], 10, &[(0, 4), (6, 100), (50, 1)]);
        assert_eq!(
            resp,
            Response::ImmutableRead {
                shares: vec![
                    ShareRead {
                        shnum: 0,
                        share_len: 10,
                        chunks: vec![b"shar".to_vec(), b"zero".to_vec(), vec![]]
                    },
                    ShareRead {
                        shnum: 3,
                        share_len: 8,
                        chunks: vec![b"thre".to_vec(), b"33".to_vec(), vec![]]
                    },
                ],
                held: vec![0, 3]
            }
        );
        // Filtering and max_shares.
        match read(&mut s, vec![3, 7], 10, &[(0, 1)]) {
            Response::ImmutableRead { shares, held } => {
                assert_eq!(shares.len(), 1);
                assert_eq!(shares[0].shnum, 3);
                assert_eq!(held, vec![0, 3]);
            }
            other => panic!("{other:?}"),
        }
        match read(&mut s, vec![], 1, &[]) {
            Response::ImmutableRead { shares, .. } => {
                assert_eq!(shares.len(), 1);
                assert_eq!((shares[0].shnum, shares[0].share_len), (0, 10));
            }
            other => panic!("{other:?}"),
        }
        // The allocation created a 31-day lease.
        let leases = s.store().leases(&SI, 0).unwrap();
        assert_eq!(leases.len(), 1);
        assert_eq!(leases[0].expires, T0 + LEASE_DURATION);
    }

    #[test]
    fn streamed_upload_across_messages() {
        let mut s = server(10_000, 1_000);
        let r1 = upload(&mut s, A, 9, vec![write(1, true, 0, b"abc", false)]);
        assert_eq!(outcomes(r1), vec![(1, WRITTEN)]);
        assert_eq!(s.store().space_used(), 9);
        // Not yet readable.
        assert_eq!(
            read(&mut s, vec![], 10, &[(0, 9)]),
            Response::ImmutableRead {
                shares: vec![],
                held: vec![]
            }
        );
        let r2 = upload(&mut s, A, 9, vec![write(1, false, 3, b"def", false)]);
        assert_eq!(outcomes(r2), vec![(1, WRITTEN)]);
        let r3 = upload(&mut s, A, 9, vec![write(1, false, 6, b"ghi", true)]);
        assert_eq!(outcomes(r3), vec![(1, COMMITTED)]);
        assert_eq!(s.store().share_bytes(&SI, 1), Some(&b"abcdefghi"[..]));
    }

    #[test]
    fn already_have_ignores_data_and_renews_leases() {
        let mut s = server(10_000, 1_000);
        upload(&mut s, A, 5, vec![write(2, true, 0, b"first", true)]);
        let later = T0 + Duration::from_secs(100);
        let resp = s.handle_request(
            later,
            B,
            Request::ImmutableWrite {
                storage_index: SI,
                lease: secrets(1),
                allocated_size: 5,
                total_shares: 10,
                writes: vec![
                    write(2, true, 0, b"other", true),
                    write(4, true, 0, b"x", true),
                ],
            },
        );
        assert_eq!(
            resp,
            Response::ImmutableWrite {
                results: vec![(2, ShareWriteOutcome::AlreadyHave), (4, COMMITTED)],
                held: vec![2, 4]
            }
        );
        assert_eq!(s.store().share_bytes(&SI, 2), Some(&b"first"[..]));
        let leases = s.store().leases(&SI, 2).unwrap();
        assert_eq!(leases.len(), 1);
        assert_eq!(leases[0].expires, later + LEASE_DURATION);
    }

    #[test]
    fn committed_share_is_never_overwritten() {
        let mut s = server(10_000, 1_000);
        upload(&mut s, A, 5, vec![write(0, true, 0, b"hello", true)]);
        // Neither a continuation nor a fresh allocation from the same connection touches it.
        let resp = upload(
            &mut s,
            A,
            5,
            vec![
                write(0, false, 0, b"HELLO", true),
                write(0, true, 0, b"HELLO", true),
            ],
        );
        assert_eq!(outcomes(resp), vec![(0, ShareWriteOutcome::AlreadyHave)]);
        assert_eq!(s.store().share_bytes(&SI, 0), Some(&b"hello"[..]));
        assert_eq!(s.store().space_used(), 5);
    }

    #[test]
    fn share_uploaded_by_another_connection_is_refused() {
        let mut s = server(10_000, 1_000);
        upload(&mut s, A, 5, vec![write(0, true, 0, b"he", false)]);
        let resp = upload(&mut s, B, 5, vec![write(0, true, 0, b"xx", true)]);
        assert_eq!(
            outcomes(resp),
            vec![(0, ShareWriteOutcome::Refused(Refusal::InProgressElsewhere))]
        );
        // A's upload is untouched and completes.
        let resp = upload(&mut s, A, 5, vec![write(0, false, 2, b"llo", true)]);
        assert_eq!(outcomes(resp), vec![(0, COMMITTED)]);
        assert_eq!(s.store().share_bytes(&SI, 0), Some(&b"hello"[..]));
    }

    #[test]
    fn too_large_and_full_server_refuse() {
        let mut s = server(100, 60);
        let resp = upload(&mut s, A, 61, vec![write(0, true, 0, b"x", true)]);
        assert_eq!(
            outcomes(resp),
            vec![(
                0,
                ShareWriteOutcome::Refused(Refusal::TooLarge { max_share_size: 60 })
            )]
        );
        let resp = upload(
            &mut s,
            A,
            60,
            vec![
                write(0, true, 0, b"x", false),
                write(1, true, 0, b"y", false),
            ],
        );
        assert_eq!(
            outcomes(resp),
            vec![
                (0, WRITTEN),
                (
                    1,
                    ShareWriteOutcome::Refused(Refusal::NoSpace { available: 40 })
                )
            ]
        );
        assert_eq!(
            s.handle_request(T0, A, Request::GetVersion),
            Response::Version {
                protocol: u32::from(PROTOCOL_VERSION),
                max_share_size: 60,
                available_space: 40,
                used_space: 60,
                // The 60 bytes are an allocation in progress, not a share held.
                shares_held: 0
            }
        );
        // Pipelined continuations of the refused share never create it.
        let resp = upload(&mut s, A, 60, vec![write(1, false, 1, b"z", true)]);
        assert_eq!(
            outcomes(resp),
            vec![(1, ShareWriteOutcome::Refused(Refusal::NotAllocated))]
        );
        assert_eq!(s.store().all_shares().len(), 1);
    }

    #[test]
    fn out_of_bounds_write_aborts_the_upload() {
        let mut s = server(10_000, 1_000);
        upload(&mut s, A, 4, vec![write(0, true, 0, b"ab", false)]);
        let resp = upload(&mut s, A, 4, vec![write(0, false, 2, b"cde", false)]);
        assert_eq!(
            outcomes(resp),
            vec![(
                0,
                ShareWriteOutcome::Refused(Refusal::OutOfBounds { allocated_size: 4 })
            )]
        );
        assert_eq!(s.uploads_in_progress(), 0);
        assert_eq!(s.store().space_used(), 0);
        let resp = upload(&mut s, A, 4, vec![write(1, true, u64::MAX, b"a", true)]);
        assert_eq!(
            outcomes(resp),
            vec![(
                1,
                ShareWriteOutcome::Refused(Refusal::OutOfBounds { allocated_size: 4 })
            )]
        );
        assert_eq!(s.store().all_shares(), vec![]);
    }

    #[test]
    fn disconnect_aborts_only_that_connections_uploads() {
        let mut s = server(10_000, 1_000);
        upload(
            &mut s,
            A,
            10,
            vec![
                write(0, true, 0, b"a", false),
                write(1, true, 0, b"b", true),
            ],
        );
        upload(&mut s, B, 10, vec![write(2, true, 0, b"c", false)]);
        assert_eq!(s.store().space_used(), 21);
        s.handle_disconnect(A).unwrap();
        assert_eq!(s.uploads_in_progress(), 1);
        assert_eq!(s.store().space_used(), 11);
        assert_eq!(
            s.store()
                .all_shares()
                .iter()
                .map(|(_, n, _, c)| (*n, *c))
                .collect::<Vec<_>>(),
            vec![(1, true), (2, false)]
        );
        // Another connection may now upload share 0.
        let resp = upload(&mut s, B, 10, vec![write(0, true, 0, b"z", true)]);
        assert_eq!(outcomes(resp), vec![(0, COMMITTED)]);
    }

    #[test]
    fn bad_share_numbers_and_total_shares() {
        let mut s = server(10_000, 1_000);
        let resp = upload(
            &mut s,
            A,
            4,
            vec![
                write(10, true, 0, b"a", true),
                write(9, true, 0, b"b", true),
            ],
        );
        assert_eq!(
            outcomes(resp),
            vec![
                (10, ShareWriteOutcome::Refused(Refusal::BadShareNumber)),
                (9, COMMITTED)
            ]
        );
        for total_shares in [0, 257] {
            let resp = s.handle_request(
                T0,
                A,
                Request::ImmutableWrite {
                    storage_index: SI,
                    lease: secrets(1),
                    allocated_size: 1,
                    total_shares,
                    writes: vec![write(0, true, 0, b"a", true)],
                },
            );
            assert!(matches!(
                resp,
                Response::Error {
                    kind: ErrorKind::BadRequest,
                    ..
                }
            ));
        }
    }

    #[test]
    fn reads_of_a_missing_storage_index_return_no_shares() {
        let mut s = server(10_000, 1_000);
        assert_eq!(
            read(&mut s, vec![], 10, &[(0, 100)]),
            Response::ImmutableRead {
                shares: vec![],
                held: vec![]
            }
        );
    }

    #[test]
    fn continuing_writes_need_the_allocations_renew_secret() {
        let mut s = server(10_000, 1_000);
        upload(&mut s, A, 4, vec![write(0, true, 0, b"ab", false)]);
        let resp = s.handle_request(
            T0,
            A,
            Request::ImmutableWrite {
                storage_index: SI,
                lease: secrets(2),
                allocated_size: 4,
                total_shares: 10,
                writes: vec![write(0, false, 2, b"cd", true)],
            },
        );
        assert_eq!(
            outcomes(resp),
            vec![(0, ShareWriteOutcome::Refused(Refusal::WrongLeaseSecret))]
        );
        assert_eq!(s.uploads_in_progress(), 0);
    }

    #[test]
    fn explicit_abort_touches_only_own_uploads() {
        let mut s = server(10_000, 1_000);
        upload(
            &mut s,
            A,
            4,
            vec![
                write(0, true, 0, b"a", false),
                write(1, true, 0, b"b", false),
            ],
        );
        upload(&mut s, B, 4, vec![write(2, true, 0, b"c", false)]);
        let abort = |shnums: Vec<u16>| Request::ImmutableAbort {
            storage_index: SI,
            shnums,
        };
        assert_eq!(s.handle_request(T0, A, abort(vec![1, 2])), Response::Done);
        assert_eq!(s.uploads_in_progress(), 2);
        assert_eq!(s.handle_request(T0, A, abort(vec![])), Response::Done);
        assert_eq!(s.uploads_in_progress(), 1);
        assert_eq!(s.store().space_used(), 4);
    }

    #[test]
    fn add_lease_renews_or_adds_and_rejects_unknown_index() {
        let mut s = server(10_000, 1_000);
        let add = |lease| Request::AddLease {
            storage_index: SI,
            lease,
        };
        assert!(matches!(
            s.handle_request(T0, A, add(secrets(1))),
            Response::Error {
                kind: ErrorKind::NotFound,
                ..
            }
        ));
        upload(&mut s, A, 1, vec![write(0, true, 0, b"a", true)]);
        let later = T0 + Duration::from_secs(10);
        assert_eq!(s.handle_request(later, A, add(secrets(1))), Response::Done);
        assert_eq!(s.handle_request(later, A, add(secrets(3))), Response::Done);
        let leases = s.store().leases(&SI, 0).unwrap();
        assert_eq!(leases.len(), 2);
        assert!(leases.iter().all(|l| l.expires == later + LEASE_DURATION));
    }

    #[test]
    fn idle_uploads_time_out() {
        let mut s = server(10_000, 1_000);
        assert_eq!(s.poll_timeout(), None);
        upload(&mut s, A, 4, vec![write(0, true, 0, b"a", false)]);
        let deadline = T0 + UPLOAD_IDLE_TIMEOUT;
        assert_eq!(s.poll_timeout(), Some(deadline));
        s.handle_timeout(Instant(deadline.0 - 1)).unwrap();
        assert_eq!(s.uploads_in_progress(), 1);
        s.handle_timeout(deadline).unwrap();
        assert_eq!(s.uploads_in_progress(), 0);
        assert_eq!(s.store().space_used(), 0);
    }

    #[test]
    fn oversized_read_reply_is_refused_before_reading() {
        let mut s = StorageServer::new(
            MemoryShareStore::new(10_000, 1_000),
            ServerConfig {
                max_response_size: 100,
                ..ServerConfig::default()
            },
        );
        upload(&mut s, A, 200, vec![write(0, true, 0, &[5; 200], true)]);
        assert!(matches!(
            read(&mut s, vec![], 10, &[(0, 200)]),
            Response::Error {
                kind: ErrorKind::ResponseTooLarge,
                ..
            }
        ));
        assert!(matches!(
            read(&mut s, vec![], 10, &[(0, 50)]),
            Response::ImmutableRead { .. }
        ));
    }

    #[test]
    fn corruption_advice_is_kept_for_held_shares_only() {
        let mut s = server(10_000, 1_000);
        upload(&mut s, A, 1, vec![write(0, true, 0, b"a", true)]);
        for shnum in [0, 1] {
            let resp = s.handle_request(
                T0,
                A,
                Request::AdviseCorrupt {
                    storage_index: SI,
                    shnum,
                    reason: "bad block hash".into(),
                },
            );
            assert_eq!(resp, Response::Done);
        }
        let adv: Vec<_> = s.advisories().collect();
        assert_eq!(adv.len(), 1);
        assert_eq!(
            (adv[0].shnum, adv[0].reason.as_str()),
            (0, "bad block hash")
        );
    }

    #[test]
    fn store_failures_are_reported_not_hidden() {
        let mut s = server(10_000, 1_000);
        upload(&mut s, A, 4, vec![write(0, true, 0, b"a", false)]);
        s.store_mut().set_failing(true);
        let resp = upload(&mut s, A, 4, vec![write(0, false, 1, b"b", true)]);
        assert!(matches!(
            outcomes(resp)[0].1,
            ShareWriteOutcome::Refused(Refusal::StoreFailure(_))
        ));
        s.store_mut().set_failing(false);
        assert_eq!(s.uploads_in_progress(), 0);
    }

    #[test]
    fn responses_survive_the_wire() {
        // The server's replies are encodable and decode to themselves.
        let mut s = server(10_000, 1_000);
        let resp = upload(&mut s, A, 3, vec![write(0, true, 0, b"abc", true)]);
        let frame = crate::wire::encode_response(42, &resp);
        assert_eq!(
            crate::wire::decode_frame(&frame),
            Ok(crate::wire::Frame::Response {
                id: 42,
                response: resp
            })
        );
    }

    // ---- mutable slots ----

    const WE: [u8; 32] = [0xee; 32];
    const NODE: [u8; 20] = [0x42; 20];

    fn mserver(capacity: u64, max_share: u64) -> StorageServer<MemoryShareStore> {
        StorageServer::new(
            MemoryShareStore::new(capacity, max_share),
            ServerConfig {
                node_id: NODE,
                ..ServerConfig::default()
            },
        )
    }

    fn test_eq(offset: u64, specimen: &[u8]) -> TestVector {
        TestVector {
            offset,
            length: specimen.len() as u64,
            specimen: specimen.to_vec(),
        }
    }

    fn mshare(
        shnum: u16,
        tests: Vec<TestVector>,
        writes: &[(u64, &[u8])],
        new_length: Option<u64>,
    ) -> MutableShareWrite {
        MutableShareWrite {
            shnum,
            tests,
            writes: writes
                .iter()
                .map(|&(offset, data)| crate::wire::DataVector {
                    offset,
                    data: data.to_vec(),
                })
                .collect(),
            new_length,
        }
    }

    fn mwrite_at(
        s: &mut StorageServer<MemoryShareStore>,
        now: Instant,
        we: [u8; 32],
        shares: Vec<MutableShareWrite>,
        read_ranges: &[(u64, u64)],
    ) -> Response {
        let req = Request::MutableWrite {
            storage_index: SI,
            write_enabler: we,
            lease: secrets(1),
            shares,
            read_ranges: read_ranges
                .iter()
                .map(|&(offset, length)| ReadRange { offset, length })
                .collect(),
        };
        let resp = s.handle_request(now, A, req);
        // Every reply survives the wire.
        let frame = crate::wire::encode_response(7, &resp);
        assert_eq!(
            crate::wire::decode_frame(&frame),
            Ok(crate::wire::Frame::Response {
                id: 7,
                response: resp.clone()
            })
        );
        resp
    }

    fn mwrite(
        s: &mut StorageServer<MemoryShareStore>,
        we: [u8; 32],
        shares: Vec<MutableShareWrite>,
        read_ranges: &[(u64, u64)],
    ) -> Response {
        mwrite_at(s, T0, we, shares, read_ranges)
    }

    fn mread(
        s: &mut StorageServer<MemoryShareStore>,
        shnums: Vec<u16>,
        ranges: &[(u64, u64)],
    ) -> Response {
        s.handle_request(
            T0,
            B,
            Request::MutableRead {
                storage_index: SI,
                shnums,
                ranges: ranges
                    .iter()
                    .map(|&(offset, length)| ReadRange { offset, length })
                    .collect(),
            },
        )
    }

    fn applied(resp: &Response) -> bool {
        match resp {
            Response::MutableWrite { applied, .. } => *applied,
            other => panic!("expected a mutable write reply, got {other:?}"),
        }
    }

    fn error_kind(resp: &Response) -> ErrorKind {
        match resp {
            Response::Error { kind, .. } => *kind,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    fn mdata(s: &StorageServer<MemoryShareStore>, shnum: u16) -> Option<Vec<u8>> {
        s.store().share_bytes(&SI, shnum).map(<[u8]>::to_vec)
    }

    #[test]
    fn first_write_records_the_enabler_and_later_writes_must_match_it() {
        let mut s = mserver(10_000, 1_000);
        let r = mwrite(
            &mut s,
            WE,
            vec![
                mshare(0, vec![test_eq(0, b"")], &[(0, b"zero")], None),
                mshare(1, vec![], &[(0, b"one")], None),
            ],
            &[],
        );
        assert_eq!(
            r,
            Response::MutableWrite {
                applied: true,
                reads: vec![]
            }
        );
        let held = s.store().list_mutable_shares(&SI).unwrap();
        assert_eq!(held.len(), 2);
        for h in &held {
            assert_eq!(
                h.enabler,
                EnablerRecord {
                    write_enabler: WE,
                    node_id: NODE
                }
            );
        }
        // Another enabler is refused even for a share that does not exist yet, and names the
        // node that recorded the enabler.
        let r = mwrite(
            &mut s,
            [1; 32],
            vec![mshare(5, vec![], &[(0, b"x")], None)],
            &[(0, 9)],
        );
        match &r {
            Response::Error {
                kind: ErrorKind::BadWriteEnabler,
                message,
            } => assert!(message.contains(&base32::encode(&NODE)), "{message}"),
            other => panic!("{other:?}"),
        }
        let r = mwrite(
            &mut s,
            [1; 32],
            vec![mshare(0, vec![], &[(0, b"ZERO")], None)],
            &[],
        );
        assert_eq!(error_kind(&r), ErrorKind::BadWriteEnabler);
        assert_eq!(mdata(&s, 0).unwrap(), b"zero");
        assert_eq!(mdata(&s, 5), None);
        // The right one works.
        let r = mwrite(
            &mut s,
            WE,
            vec![mshare(0, vec![], &[(0, b"ZERO")], None)],
            &[],
        );
        assert!(applied(&r));
        assert_eq!(mdata(&s, 0).unwrap(), b"ZERO");
    }

    #[test]
    fn test_and_set_lets_exactly_one_of_two_racing_writers_win() {
        let mut s = mserver(10_000, 1_000);
        let v1 = b"seq1-contents";
        assert!(applied(&mwrite(
            &mut s,
            WE,
            vec![mshare(0, vec![test_eq(0, b"")], &[(0, v1)], None)],
            &[]
        )));
        // Both writers read v1 and now try to replace it, expecting v1's checkstring.
        let a = mwrite(
            &mut s,
            WE,
            vec![mshare(
                0,
                vec![test_eq(0, b"seq1")],
                &[(0, b"seq2-writer-A")],
                None,
            )],
            &[(0, 4)],
        );
        let b = mwrite(
            &mut s,
            WE,
            vec![mshare(
                0,
                vec![test_eq(0, b"seq1")],
                &[(0, b"seq2-writer-B")],
                None,
            )],
            &[(0, 4)],
        );
        assert!(applied(&a));
        // The loser changed nothing and is shown what the slot holds now.
        assert_eq!(
            b,
            Response::MutableWrite {
                applied: false,
                reads: vec![ShareRead {
                    shnum: 0,
                    share_len: 13,
                    chunks: vec![b"seq2".to_vec()]
                }]
            }
        );
        assert_eq!(mdata(&s, 0).unwrap(), b"seq2-writer-A");
    }

    #[test]
    fn a_failed_test_on_any_share_blocks_every_write() {
        let mut s = mserver(10_000, 1_000);
        mwrite(
            &mut s,
            WE,
            vec![
                mshare(0, vec![], &[(0, b"aaaa")], None),
                mshare(1, vec![], &[(0, b"bbbb")], None),
            ],
            &[],
        );
        let r = mwrite(
            &mut s,
            WE,
            vec![
                mshare(0, vec![test_eq(0, b"aaaa")], &[(0, b"AAAA")], None),
                mshare(1, vec![test_eq(0, b"xxxx")], &[(0, b"BBBB")], None),
                // "Must not exist" fails on a share that exists...
                mshare(2, vec![test_eq(0, b"")], &[(0, b"CCCC")], None),
            ],
            &[],
        );
        assert!(!applied(&r));
        assert_eq!(mdata(&s, 0).unwrap(), b"aaaa");
        assert_eq!(mdata(&s, 2), None);
        // ...and a test past the end reads short, so it fails unless the specimen is short too.
        let r = mwrite(
            &mut s,
            WE,
            vec![mshare(0, vec![test_eq(2, b"aaa")], &[(0, b"A")], None)],
            &[],
        );
        assert!(!applied(&r));
        let r = mwrite(
            &mut s,
            WE,
            vec![mshare(
                0,
                vec![TestVector {
                    offset: 2,
                    length: 100,
                    specimen: b"aa".to_vec(),
                }],
                &[(0, b"A")],
                None,
            )],
            &[],
        );
        assert!(applied(&r));
    }

    #[test]
    fn reads_show_every_share_as_it_was_before_the_writes() {
        let mut s = mserver(10_000, 1_000);
        mwrite(
            &mut s,
            WE,
            vec![
                mshare(0, vec![], &[(0, b"old-zero")], None),
                mshare(3, vec![], &[(0, b"old-three")], None),
            ],
            &[],
        );
        let r = mwrite(
            &mut s,
            WE,
            vec![mshare(0, vec![], &[(0, b"NEW")], None)],
            &[(0, 3), (4, 100), (50, 1)],
        );
        assert_eq!(
            r,
            Response::MutableWrite {
                applied: true,
                reads: vec![
                    ShareRead {
                        shnum: 0,
                        share_len: 8,
                        chunks: vec![b"old".to_vec(), b"zero".to_vec(), vec![]]
                    },
                    ShareRead {
                        shnum: 3,
                        share_len: 9,
                        chunks: vec![b"old".to_vec(), b"three".to_vec(), vec![]]
                    },
                ]
            }
        );
        assert_eq!(mdata(&s, 0).unwrap(), b"NEW-zero");
    }

    #[test]
    fn writes_past_the_end_zero_fill_and_new_length_only_shrinks() {
        let mut s = mserver(10_000, 1_000);
        mwrite(
            &mut s,
            WE,
            vec![mshare(0, vec![], &[(4, b"xy")], None)],
            &[],
        );
        assert_eq!(mdata(&s, 0).unwrap(), b"\0\0\0\0xy");
        // Writes apply in order, then new_length truncates...
        mwrite(
            &mut s,
            WE,
            vec![mshare(0, vec![], &[(0, b"abcdefgh"), (2, b"C")], Some(5))],
            &[],
        );
        assert_eq!(mdata(&s, 0).unwrap(), b"abCde");
        // ...but never extends, and a truncated tail comes back as zeros.
        mwrite(&mut s, WE, vec![mshare(0, vec![], &[], Some(100))], &[]);
        assert_eq!(mdata(&s, 0).unwrap(), b"abCde");
        mwrite(&mut s, WE, vec![mshare(0, vec![], &[(7, b"!")], None)], &[]);
        assert_eq!(mdata(&s, 0).unwrap(), b"abCde\0\0!");
        assert_eq!(s.store().space_used(), 8);
        // An empty write past the end still extends the share (as in Tahoe).
        mwrite(&mut s, WE, vec![mshare(0, vec![], &[(10, b"")], None)], &[]);
        assert_eq!(mdata(&s, 0).unwrap().len(), 10);
    }

    #[test]
    fn new_length_zero_deletes_shares_and_then_the_slot() {
        let mut s = mserver(10_000, 1_000);
        mwrite(
            &mut s,
            WE,
            vec![
                mshare(0, vec![], &[(0, b"zero")], None),
                mshare(1, vec![], &[(0, b"one")], None),
            ],
            &[],
        );
        mwrite(
            &mut s,
            WE,
            vec![mshare(0, vec![], &[(0, b"zz")], Some(0))],
            &[],
        );
        assert_eq!(mdata(&s, 0), None);
        assert_eq!(s.store().space_used(), 3);
        // Deleting a share that is not there creates nothing.
        mwrite(
            &mut s,
            WE,
            vec![mshare(7, vec![], &[(0, b"x")], Some(0))],
            &[],
        );
        assert_eq!(mdata(&s, 7), None);
        mwrite(&mut s, WE, vec![mshare(1, vec![], &[], Some(0))], &[]);
        assert_eq!(
            mread(&mut s, vec![], &[(0, 10)]),
            Response::MutableRead { shares: vec![] }
        );
        assert_eq!(s.store().space_used(), 0);
        assert_eq!(
            error_kind(&s.handle_request(
                T0,
                A,
                Request::AddLease {
                    storage_index: SI,
                    lease: secrets(1)
                }
            )),
            ErrorKind::NotFound
        );
        // The slot is gone, so a new enabler may claim the index.
        assert!(applied(&mwrite(
            &mut s,
            [3; 32],
            vec![mshare(0, vec![], &[(0, b"n")], None)],
            &[]
        )));
    }

    #[test]
    fn a_write_that_does_not_fit_changes_nothing() {
        let mut s = mserver(20, 12);
        mwrite(
            &mut s,
            WE,
            vec![
                mshare(0, vec![], &[(0, b"0123456789")], None),
                mshare(1, vec![], &[(0, b"abc")], None),
            ],
            &[],
        );
        assert_eq!(s.store().space_used(), 13);
        // Beyond the maximum share size.
        let r = mwrite(
            &mut s,
            WE,
            vec![
                mshare(1, vec![], &[(0, b"ABC")], None),
                mshare(0, vec![], &[(12, b"x")], None),
            ],
            &[],
        );
        assert_eq!(error_kind(&r), ErrorKind::NoSpace);
        // Beyond the free space (7 bytes), though each share alone is small enough.
        let r = mwrite(
            &mut s,
            WE,
            vec![
                mshare(1, vec![], &[(0, b"ABCDEFGH")], None),
                mshare(2, vec![], &[(0, b"abcd")], None),
            ],
            &[],
        );
        assert_eq!(error_kind(&r), ErrorKind::NoSpace);
        let r = mwrite(
            &mut s,
            WE,
            vec![mshare(0, vec![], &[(u64::MAX, b"x")], None)],
            &[],
        );
        assert_eq!(error_kind(&r), ErrorKind::NoSpace);
        assert_eq!(mdata(&s, 0).unwrap(), b"0123456789");
        assert_eq!(mdata(&s, 1).unwrap(), b"abc");
        assert_eq!(mdata(&s, 2), None);
        assert_eq!(s.store().space_used(), 13);
        // Freeing in one share makes room in another within the same request.
        let r = mwrite(
            &mut s,
            WE,
            vec![
                mshare(0, vec![], &[], Some(2)),
                mshare(2, vec![], &[(0, b"abcdefghijk")], None),
            ],
            &[],
        );
        assert!(applied(&r));
        assert_eq!(s.store().space_used(), 16);
    }

    #[test]
    fn mutable_and_immutable_shares_are_kept_apart() {
        let mut s = mserver(10_000, 1_000);
        upload(&mut s, A, 3, vec![write(0, true, 0, b"imm", true)]);
        // An immutable index shows no mutable shares and refuses mutable writes.
        assert_eq!(
            mread(&mut s, vec![], &[(0, 3)]),
            Response::MutableRead { shares: vec![] }
        );
        let r = mwrite(
            &mut s,
            WE,
            vec![mshare(1, vec![], &[(0, b"mut")], None)],
            &[],
        );
        assert_eq!(error_kind(&r), ErrorKind::BadRequest);
        assert_eq!(s.store().mutable_shares(), vec![]);
        // A mutable index shows no immutable shares and refuses immutable uploads.
        let other: StorageIndex = [1; 16];
        let r = s.handle_request(
            T0,
            A,
            Request::MutableWrite {
                storage_index: other,
                write_enabler: WE,
                lease: secrets(1),
                shares: vec![mshare(0, vec![], &[(0, b"mut")], None)],
                read_ranges: vec![],
            },
        );
        assert!(applied(&r));
        let r = s.handle_request(
            T0,
            A,
            Request::ImmutableRead {
                storage_index: other,
                shnums: vec![],
                max_shares: 10,
                ranges: vec![ReadRange {
                    offset: 0,
                    length: 3,
                }],
            },
        );
        assert_eq!(
            r,
            Response::ImmutableRead {
                shares: vec![],
                held: vec![]
            }
        );
        let r = s.handle_request(
            T0,
            A,
            Request::ImmutableWrite {
                storage_index: other,
                lease: secrets(1),
                allocated_size: 3,
                total_shares: 10,
                writes: vec![write(1, true, 0, b"imm", true)],
            },
        );
        assert!(matches!(
            outcomes(r)[0].1,
            ShareWriteOutcome::Refused(Refusal::StoreFailure(_))
        ));
        assert_eq!(s.store().mutable_shares(), vec![(other, 0, 3)]);
        assert_eq!(s.store().space_used(), 6);
    }

    #[test]
    fn mutable_writes_and_add_lease_renew_leases_on_every_share() {
        let mut s = mserver(10_000, 1_000);
        mwrite(
            &mut s,
            WE,
            vec![
                mshare(0, vec![], &[(0, b"a")], None),
                mshare(1, vec![], &[(0, b"b")], None),
            ],
            &[],
        );
        let later = T0 + Duration::from_secs(100);
        // A write to share 0 renews share 1's lease too.
        mwrite_at(
            &mut s,
            later,
            WE,
            vec![mshare(0, vec![], &[(0, b"A")], None)],
            &[],
        );
        for shnum in [0, 1] {
            let leases = s.store().leases(&SI, shnum).unwrap();
            assert_eq!(leases.len(), 1);
            assert_eq!(leases[0].expires, later + LEASE_DURATION);
        }
        // A failed test renews nothing.
        let much_later = later + Duration::from_secs(100);
        let r = mwrite_at(
            &mut s,
            much_later,
            WE,
            vec![mshare(0, vec![test_eq(0, b"?")], &[], None)],
            &[],
        );
        assert!(!applied(&r));
        assert_eq!(
            s.store().leases(&SI, 0).unwrap()[0].expires,
            later + LEASE_DURATION
        );
        let r = s.handle_request(
            much_later,
            A,
            Request::AddLease {
                storage_index: SI,
                lease: secrets(2),
            },
        );
        assert_eq!(r, Response::Done);
        assert_eq!(s.store().leases(&SI, 1).unwrap().len(), 2);
    }

    #[test]
    fn mutable_requests_breaking_the_rules_are_bad_requests() {
        let mut s = mserver(10_000, 1_000);
        let r = mwrite(
            &mut s,
            WE,
            vec![mshare(256, vec![], &[(0, b"x")], None)],
            &[],
        );
        assert_eq!(error_kind(&r), ErrorKind::BadRequest);
        let r = mwrite(
            &mut s,
            WE,
            vec![
                mshare(2, vec![], &[(0, b"x")], None),
                mshare(2, vec![], &[(0, b"y")], None),
            ],
            &[],
        );
        assert_eq!(error_kind(&r), ErrorKind::BadRequest);
        assert_eq!(s.store().mutable_shares(), vec![]);
    }

    #[test]
    fn mutable_reads_filter_cut_and_respect_the_reply_limit() {
        let mut s = StorageServer::new(
            MemoryShareStore::new(10_000, 1_000),
            ServerConfig {
                max_response_size: 100,
                ..ServerConfig::default()
            },
        );
        assert_eq!(
            mread(&mut s, vec![], &[(0, 10)]),
            Response::MutableRead { shares: vec![] }
        );
        mwrite(
            &mut s,
            WE,
            vec![
                mshare(0, vec![], &[(0, &[7; 60])], None),
                mshare(4, vec![], &[(0, b"four")], None),
            ],
            &[],
        );
        assert_eq!(
            mread(&mut s, vec![4, 9], &[(2, 10), (9, 1)]),
            Response::MutableRead {
                shares: vec![ShareRead {
                    shnum: 4,
                    share_len: 4,
                    chunks: vec![b"ur".to_vec(), vec![]]
                }]
            }
        );
        assert_eq!(
            error_kind(&mread(&mut s, vec![], &[(0, 60), (0, 60)])),
            ErrorKind::ResponseTooLarge
        );
        // A write whose reads would not fit is refused before it changes anything.
        let r = mwrite(
            &mut s,
            WE,
            vec![mshare(4, vec![], &[(0, b"FOUR")], None)],
            &[(0, 90)],
        );
        assert_eq!(error_kind(&r), ErrorKind::ResponseTooLarge);
        assert_eq!(mdata(&s, 4).unwrap(), b"four");
    }

    #[test]
    fn mutable_store_failures_are_reported() {
        let mut s = mserver(10_000, 1_000);
        mwrite(&mut s, WE, vec![mshare(0, vec![], &[(0, b"a")], None)], &[]);
        s.store_mut().set_failing(true);
        let r = mwrite(&mut s, WE, vec![mshare(0, vec![], &[(0, b"b")], None)], &[]);
        assert_eq!(error_kind(&r), ErrorKind::StoreFailure);
        assert_eq!(
            error_kind(&mread(&mut s, vec![], &[(0, 1)])),
            ErrorKind::StoreFailure
        );
        s.store_mut().set_failing(false);
        assert_eq!(mdata(&s, 0).unwrap(), b"a");
    }

    proptest::proptest! {
        /// Random test-and-set traffic on one slot behaves as a model of Tahoe's rules: tests
        /// against the old bytes, reads before writes, ordered writes with zero fill, new_length
        /// only shrinking, 0 deleting; and space used is the sum of the shares' lengths.
        #[test]
        fn mutable_slot_matches_a_model(
            ops in proptest::collection::vec(
                proptest::collection::vec(
                    (
                        0u16..3,
                        proptest::option::of((0u64..12, 0u64..6)),
                        proptest::collection::vec((0u64..16, proptest::collection::vec(0u8..3, 0..5)), 0..3),
                        proptest::option::of(0u64..14),
                    ),
                    0..3,
                ),
                1..25,
            )
        ) {
            let mut s = StorageServer::new(MemoryShareStore::new(1_000, 40), ServerConfig::default());
            let mut model: BTreeMap<u16, Vec<u8>> = BTreeMap::new();
            for op in ops {
                let mut shares = Vec::new();
                let mut seen = BTreeSet::new();
                for (shnum, test, writes, new_length) in op {
                    if !seen.insert(shnum) {
                        continue;
                    }
                    // Test against the model's bytes (so it usually passes) unless told to lie.
                    let tests = test.map(|(offset, length)| {
                        let data = model.get(&shnum).cloned().unwrap_or_default();
                        let start = (offset as usize).min(data.len());
                        let end = ((offset + length) as usize).min(data.len());
                        let mut specimen = data[start..end.max(start)].to_vec();
                        if length == 5 {
                            specimen.push(9);
                        }
                        TestVector { offset, length, specimen }
                    }).into_iter().collect();
                    shares.push(MutableShareWrite {
                        shnum,
                        tests,
                        writes: writes.into_iter().map(|(offset, data)| crate::wire::DataVector { offset, data }).collect(),
                        new_length,
                    });
                }
                let resp = s.handle_request(T0, A, Request::MutableWrite {
                    storage_index: SI,
                    write_enabler: WE,
                    lease: secrets(1),
                    shares: shares.clone(),
                    read_ranges: vec![ReadRange { offset: 0, length: 100 }],
                });
                let want_reads: Vec<ShareRead> = model.iter().map(|(n, d)| ShareRead {
                    shnum: *n,
                    share_len: d.len() as u64,
                    chunks: vec![d.clone()],
                }).collect();
                let pass = shares.iter().all(|w| w.tests.iter().all(|t| {
                    let data = model.get(&w.shnum).cloned().unwrap_or_default();
                    let start = (t.offset as usize).min(data.len());
                    let end = ((t.offset + t.length) as usize).min(data.len()).max(start);
                    data[start..end] == t.specimen[..]
                }));
                proptest::prop_assert_eq!(resp, Response::MutableWrite { applied: pass, reads: want_reads });
                if pass {
                    for w in &shares {
                        if w.new_length == Some(0) {
                            model.remove(&w.shnum);
                            continue;
                        }
                        let d = model.entry(w.shnum).or_default();
                        for v in &w.writes {
                            let end = v.offset as usize + v.data.len();
                            if d.len() < end {
                                d.resize(end, 0);
                            }
                            d[v.offset as usize..end].copy_from_slice(&v.data);
                        }
                        if let Some(n) = w.new_length {
                            d.truncate(n as usize);
                        }
                    }
                }
                let used: usize = model.values().map(Vec::len).sum();
                proptest::prop_assert_eq!(s.store().space_used(), used as u64);
            }
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Write {
            conn: u8,
            si: u8,
            allocated_size: u64,
            writes: Vec<ShareWrite>,
        },
        Abort {
            conn: u8,
            si: u8,
            shnums: Vec<u16>,
        },
        Read {
            si: u8,
            max_shares: u16,
            range: (u64, u64),
        },
        Disconnect(u8),
        Wait(u64),
    }

    fn arb_op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        let write = (
            0u16..5,
            any::<bool>(),
            0u64..24,
            proptest::collection::vec(any::<u8>(), 0..12),
            any::<bool>(),
        )
            .prop_map(|(shnum, allocate, offset, data, close)| ShareWrite {
                shnum,
                allocate,
                offset,
                data,
                close,
            });
        prop_oneof![
            4 => (0u8..2, 0u8..2, 0u64..40, proptest::collection::vec(write, 0..4)).prop_map(
                |(conn, si, allocated_size, writes)| Op::Write {
                    conn,
                    si,
                    allocated_size,
                    writes
                }
            ),
            1 => (0u8..2, 0u8..2, proptest::collection::vec(0u16..5, 0..3))
                .prop_map(|(conn, si, shnums)| Op::Abort { conn, si, shnums }),
            1 => (0u8..2, 0u16..4, (0u64..30, 0u64..30)).prop_map(|(si, max_shares, range)| Op::Read {
                si,
                max_shares,
                range
            }),
            1 => (0u8..2).prop_map(Op::Disconnect),
            1 => (0u64..2_000).prop_map(Op::Wait),
        ]
    }

    proptest::proptest! {
        /// Whatever clients do: committed shares never change, space accounting matches the
        /// uploads in progress, replies survive the wire, and nothing leaks after disconnects.
        #[test]
        fn server_invariants_hold_under_random_traffic(ops in proptest::collection::vec(arb_op(), 1..40)) {
            let mut s = StorageServer::new(MemoryShareStore::new(120, 30), ServerConfig::default());
            let mut now = T0;
            let mut committed: BTreeMap<(StorageIndex, u16), Vec<u8>> = BTreeMap::new();
            for (i, op) in ops.into_iter().enumerate() {
                let (conn, req) = match op {
                    Op::Write { conn, si, allocated_size, writes } => (conn, Request::ImmutableWrite {
                        storage_index: [si; 16],
                        lease: secrets(1),
                        allocated_size,
                        total_shares: 4,
                        writes,
                    }),
                    Op::Abort { conn, si, shnums } => (conn, Request::ImmutableAbort { storage_index: [si; 16], shnums }),
                    Op::Read { si, max_shares, range } => (0, Request::ImmutableRead {
                        storage_index: [si; 16],
                        shnums: vec![],
                        max_shares,
                        ranges: vec![ReadRange { offset: range.0, length: range.1 }],
                    }),
                    Op::Disconnect(conn) => {
                        s.handle_disconnect(ConnectionId(u64::from(conn))).unwrap();
                        continue;
                    }
                    Op::Wait(secs) => {
                        now = now + Duration::from_secs(secs);
                        s.handle_timeout(now).unwrap();
                        continue;
                    }
                };
                let resp = s.handle_request(now, ConnectionId(u64::from(conn)), req.clone());
                let frame = crate::wire::encode_response(i as u64, &resp);
                proptest::prop_assert_eq!(
                    crate::wire::decode_frame(&frame),
                    Ok(crate::wire::Frame::Response { id: i as u64, response: resp.clone() })
                );
                if let Response::ImmutableRead { shares, .. } = &resp {
                    for sh in shares {
                        let Request::ImmutableRead { storage_index, ranges, .. } = &req else { unreachable!() };
                        let data = &committed[&(*storage_index, sh.shnum)];
                        let r = ranges[0];
                        let start = (r.offset as usize).min(data.len());
                        let end = ((r.offset + r.length) as usize).min(data.len()).max(start);
                        proptest::prop_assert_eq!(&sh.chunks[0], &data[start..end]);
                    }
                }
                // Committed shares never change, and new ones are recorded.
                for (si, shnum, _, is_committed) in s.store().all_shares() {
                    if !is_committed {
                        continue;
                    }
                    let bytes = s.store().share_bytes(&si, shnum).unwrap().to_vec();
                    let before = committed.entry((si, shnum)).or_insert_with(|| bytes.clone());
                    proptest::prop_assert_eq!(&*before, &bytes);
                }
                proptest::prop_assert_eq!(s.uploads_in_progress(), s.store().in_progress_count());
                proptest::prop_assert!(s.store().space_used() <= 120);
            }
            s.handle_disconnect(ConnectionId(0)).unwrap();
            s.handle_disconnect(ConnectionId(1)).unwrap();
            proptest::prop_assert_eq!(s.uploads_in_progress(), 0);
            proptest::prop_assert_eq!(s.store().in_progress_count(), 0);
            let committed_bytes: u64 = committed.values().map(|v| v.len() as u64).sum();
            proptest::prop_assert_eq!(s.store().space_used(), committed_bytes);
        }
    }
}
