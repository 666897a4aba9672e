//! The storage server's request handling, without I/O.
//!
//! [`StorageServer`] turns one decoded [`Request`] from one connection into one [`Response`],
//! keeping shares in a [`ShareStore`]. The runtime owns the sockets: it decodes frames, calls
//! [`StorageServer::handle_request`] with the current time and the connection's id, encodes the
//! reply, and tells the server when a connection ends. The rules it enforces are listed in the
//! [`wire`](crate::wire) module docs.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::store::{Lease, ShareStore, StoreError};
use crate::time::{Duration, Instant};
use crate::wire::{
    ErrorKind, LeaseSecrets, ReadRange, Refusal, Request, Response, ShareRead, ShareWrite,
    ShareWriteOutcome, StorageIndex, DEFAULT_MAX_FRAME_LEN, PROTOCOL_VERSION,
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
    /// Largest encoded `ImmutableRead` reply; larger ones are `Error(ResponseTooLarge)`. Keep it
    /// at or below the clients' frame limit.
    pub max_response_size: u64,
    /// How many corruption advisories are kept (oldest dropped first).
    pub max_advisories: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            lease_duration: LEASE_DURATION,
            upload_idle_timeout: UPLOAD_IDLE_TIMEOUT,
            max_response_size: u64::from(DEFAULT_MAX_FRAME_LEN),
            max_advisories: 1000,
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

fn store_failure(e: StoreError) -> Response {
    error(ErrorKind::StoreFailure, e.to_string())
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

    /// Answers one request from connection `conn` at time `now`.
    pub fn handle_request(&mut self, now: Instant, conn: ConnectionId, req: Request) -> Response {
        match req {
            Request::GetVersion => Response::Version {
                protocol: u32::from(PROTOCOL_VERSION),
                max_share_size: self.store.max_share_size(),
                available_space: self.store.space_available(),
                used_space: self.store.space_used(),
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
            Request::MutableRead { .. } | Request::MutableWrite { .. } => Response::Error {
                kind: ErrorKind::BadRequest,
                message: "this server does not store mutable files yet".into(),
            },
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
        if writes.iter().any(|w| w.allocate) {
            for &shnum in &committed {
                if let Err(e) = self.store.add_lease(si, shnum, lease) {
                    return store_failure(e);
                }
            }
        }
        let mut results: Vec<(u16, ShareWriteOutcome)> = Vec::new();
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
            let outcome = self.write_one(&ctx, &committed, w);
            if outcome == (ShareWriteOutcome::Written { committed: true }) {
                committed.insert(w.shnum);
            }
            match slot {
                Some(i) => results[i].1 = outcome,
                None => {
                    slots.insert(w.shnum, results.len());
                    results.push((w.shnum, outcome));
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
    ) -> ShareWriteOutcome {
        let key = (*ctx.si, w.shnum);
        let ours = match self.uploads.get(&key) {
            Some(up) if up.conn != ctx.conn => {
                return ShareWriteOutcome::Refused(Refusal::InProgressElsewhere)
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
            ShareWriteOutcome::Refused(refusal)
        };
        if w.shnum >= ctx.total_shares {
            return refuse(self, Refusal::BadShareNumber);
        }
        if !ours {
            if committed.contains(&w.shnum) {
                return ShareWriteOutcome::AlreadyHave;
            }
            if !w.allocate {
                return ShareWriteOutcome::Refused(Refusal::NotAllocated);
            }
            if let Err(e) = self
                .store
                .create_share(ctx.si, w.shnum, ctx.allocated_size, ctx.lease)
            {
                return ShareWriteOutcome::Refused(match e {
                    StoreError::NoSpace { available, .. } => Refusal::NoSpace { available },
                    StoreError::TooLarge { max, .. } => Refusal::TooLarge {
                        max_share_size: max,
                    },
                    // Unknown to us but present in the store: an upload left from before a
                    // restart, or one the store manages itself.
                    StoreError::AlreadyExists => Refusal::InProgressElsewhere,
                    other => Refusal::StoreFailure(other.to_string()),
                });
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
            return ShareWriteOutcome::Refused(Refusal::NotAllocated);
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
            return ShareWriteOutcome::Refused(Refusal::NotAllocated);
        };
        if !w.data.is_empty() {
            up.written_end = up.written_end.max(end);
        }
        up.last_write = ctx.now;
        if !w.close {
            return ShareWriteOutcome::Written { committed: false };
        }
        let length = up.written_end;
        match self.store.commit_share(ctx.si, w.shnum, length) {
            Ok(()) => {
                self.uploads.remove(&key);
                ShareWriteOutcome::Written { committed: true }
            }
            Err(e) => refuse(self, Refusal::StoreFailure(e.to_string())),
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
        let chunk_len = |share_len: u64, r: &ReadRange| {
            r.offset
                .saturating_add(r.length)
                .min(share_len)
                .saturating_sub(r.offset)
        };
        let limit = self.config.max_response_size;
        let mut size: u64 = 1 + 4 + 4 + 2 * held.len() as u64;
        'sizing: for s in &selected {
            size = size.saturating_add(14);
            for r in ranges {
                size = size.saturating_add(4 + chunk_len(s.length, r));
                // Every chunk costs at least 4 bytes, so a hostile range list stops here soon.
                if size > limit {
                    break 'sizing;
                }
            }
        }
        if size > limit {
            return error(
                ErrorKind::ResponseTooLarge,
                format!("reply would exceed the limit of {limit} bytes"),
            );
        }
        let mut shares = Vec::with_capacity(selected.len());
        for s in &selected {
            let mut chunks = Vec::with_capacity(ranges.len());
            for r in ranges {
                if chunk_len(s.length, r) == 0 {
                    chunks.push(Vec::new());
                    continue;
                }
                match self.store.read_share(si, s.shnum, r.offset, r.length) {
                    Ok(bytes) => chunks.push(bytes),
                    Err(e) => return store_failure(e),
                }
            }
            shares.push(ShareRead {
                shnum: s.shnum,
                share_len: s.length,
                chunks,
            });
        }
        Response::ImmutableRead {
            shares,
            held: held.iter().map(|s| s.shnum).collect(),
        }
    }

    fn add_lease(&mut self, now: Instant, si: &StorageIndex, secrets: &LeaseSecrets) -> Response {
        let held = match self.store.list_shares(si) {
            Ok(h) => h,
            Err(e) => return store_failure(e),
        };
        if held.is_empty() {
            return error(ErrorKind::NotFound, "no shares held for this storage index");
        }
        let lease = self.lease(now, secrets);
        for s in held {
            if let Err(e) = self.store.add_lease(si, s.shnum, lease) {
                return store_failure(e);
            }
        }
        Response::Done
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
        let held = match self.store.list_shares(&storage_index) {
            Ok(h) => h.iter().any(|s| s.shnum == shnum),
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
                protocol: 1,
                max_share_size: 60,
                available_space: 40,
                used_space: 60
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
