//! Where a storage server keeps shares: the [`ShareStore`] trait and an in-memory
//! implementation.
//!
//! The trait is deliberately small and synchronous so that the server logic
//! ([`crate::server`]) stays pure: the disk store in runtime-std and [`MemoryShareStore`] (used by
//! tests and the simulator) both sit behind it.
//!
//! An immutable share is first *in progress* (created with an allocated size, written at
//! offsets), then *committed* (durable, immutable, readable) or aborted. In-progress shares are
//! invisible to readers.
//!
//! A mutable share (a *slot* share, Tahoe's `MutableShareFile`) is changed in place by
//! [`ShareStore::write_mutable_shares`] and records the write enabler of the first write that
//! created it. Mutable and immutable shares are kept apart: the immutable calls never see a
//! mutable share and the mutable calls never see an immutable one, and a storage index holds
//! shares of one kind only ([`StoreError::KindConflict`] otherwise).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::time::Instant;
use crate::wire::{DataVector, StorageIndex};

/// Most an in-memory share reserves at allocation; bigger shares grow as they are written.
const MAX_UPFRONT_RESERVE: u64 = 64 << 20;

/// A lease on one share: the share is kept at least until `expires` (if garbage collection is on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    pub renew_secret: [u8; 32],
    pub cancel_secret: [u8; 32],
    pub expires: Instant,
}

/// A committed share: its number and length in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShareInfo {
    pub shnum: u16,
    pub length: u64,
}

/// The write enabler recorded in a mutable share, and who recorded it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnablerRecord {
    pub write_enabler: [u8; 32],
    /// 20-byte id of the server that recorded it (Tahoe's tub id), kept so that a share moved to
    /// another server can say where its enabler came from.
    pub node_id: [u8; 20],
}

/// A mutable share: its number, data length and recorded write enabler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MutableShareInfo {
    pub shnum: u16,
    pub length: u64,
    pub enabler: EnablerRecord,
}

/// What [`ShareStore::write_mutable_shares`] does to one share: the writes in order (a gap
/// before a write past the end reads as zeros), then `new_length` (`Some(0)` deletes the share,
/// a shorter length truncates it, a longer one is ignored).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MutableShareChange<'a> {
    pub shnum: u16,
    pub writes: &'a [DataVector],
    pub new_length: Option<u64>,
}

impl MutableShareChange<'_> {
    /// The share's data length after this change, given its length before (`None`: absent);
    /// `None` if the share is deleted or never created. Fails with `TooLarge` if a write would
    /// end past `max_share_size` (or past `u64::MAX`).
    pub fn length_after(
        &self,
        before: Option<u64>,
        max_share_size: u64,
    ) -> Result<Option<u64>, StoreError> {
        if self.new_length == Some(0) {
            return Ok(None);
        }
        let mut len = before.unwrap_or(0);
        for w in self.writes {
            // As in Tahoe, even an empty write extends the share to its offset.
            let end = w
                .offset
                .checked_add(w.data.len() as u64)
                .ok_or(StoreError::TooLarge {
                    size: u64::MAX,
                    max: max_share_size,
                })?;
            if end > max_share_size {
                return Err(StoreError::TooLarge {
                    size: end,
                    max: max_share_size,
                });
            }
            len = len.max(end);
        }
        Ok(Some(self.new_length.map_or(len, |n| n.min(len))))
    }
}

/// Share number -> its data length before and after a list of changes (`None`: absent).
pub type LengthPlan = BTreeMap<u16, (Option<u64>, Option<u64>)>;

/// The data length of each share a list of changes touches, before and after, applying the
/// changes in order; `before` gives the lengths of the shares that exist.
pub fn plan_mutable_changes(
    before: &BTreeMap<u16, u64>,
    changes: &[MutableShareChange<'_>],
    max_share_size: u64,
) -> Result<LengthPlan, StoreError> {
    let mut plan = LengthPlan::new();
    for c in changes {
        let old = before.get(&c.shnum).copied();
        let entry = plan.entry(c.shnum).or_insert((old, old));
        entry.1 = c.length_after(entry.1, max_share_size)?;
    }
    Ok(plan)
}

/// Compares two secrets in time independent of where they differ.
pub fn secrets_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why a store operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("not enough space: {needed} bytes needed, {available} available")]
    NoSpace { needed: u64, available: u64 },
    #[error("share of {size} bytes exceeds the maximum share size of {max} bytes")]
    TooLarge { size: u64, max: u64 },
    #[error("no such share")]
    NotFound,
    #[error("the share already exists (committed or in progress)")]
    AlreadyExists,
    #[error("write ending at byte {end} exceeds the allocation of {allocated} bytes")]
    OutOfBounds { end: u64, allocated: u64 },
    #[error("storage I/O failed: {0}")]
    Io(String),
    /// The storage index holds shares of the other kind (mutable vs immutable).
    #[error("{0}")]
    KindConflict(String),
}

/// Where a store that defers its syncs says when its changes are durable (group commit: one
/// sync covers every change made while the previous one ran). Implemented by the disk store;
/// runtimes call it after releasing the server's lock, so clients share a sync instead of
/// queueing for one each.
pub trait DurableLog: Send + Sync + std::fmt::Debug {
    /// Returns once every change up to `seq` is durable (syncing if nobody else is), or why
    /// that cannot be: then those changes must not be acknowledged.
    fn wait_durable(&self, seq: u64) -> Result<(), StoreError>;
}

/// A point in a [`DurableLog`]: "every change made so far".
#[derive(Clone, Debug)]
pub struct DurabilityTicket {
    pub seq: u64,
    pub log: Arc<dyn DurableLog>,
}

impl DurabilityTicket {
    /// Waits until the changes this ticket covers are durable.
    pub fn wait(&self) -> Result<(), StoreError> {
        self.log.wait_durable(self.seq)
    }
}

/// Synchronous storage of shares, keyed by storage index and share number.
///
/// A store may make a change visible before it is durable (see
/// [`ShareStore::durability_ticket`]); a runtime then answers no request before the ticket
/// taken after handling it has been waited on, so no client is ever told of a change, or shown
/// one, that a crash could still undo.
pub trait ShareStore {
    /// Committed shares held for `si`, ascending by share number (empty if none).
    fn list_shares(&self, si: &StorageIndex) -> Result<Vec<ShareInfo>, StoreError>;

    /// Up to `length` bytes of a committed share from `offset`, cut at the share's end (empty
    /// past it). `NotFound` if the share is not committed here.
    fn read_share(
        &self,
        si: &StorageIndex,
        shnum: u16,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>, StoreError>;

    /// Starts an in-progress share with room for `allocated_size` bytes and an initial lease.
    /// The allocation counts against free space until commit or abort. Fails with
    /// `AlreadyExists`, `TooLarge` or `NoSpace`.
    fn create_share(
        &mut self,
        si: &StorageIndex,
        shnum: u16,
        allocated_size: u64,
        lease: Lease,
    ) -> Result<(), StoreError>;

    /// Writes into an in-progress share (`NotFound` if none); unwritten gaps read as zeros.
    fn write_share(
        &mut self,
        si: &StorageIndex,
        shnum: u16,
        offset: u64,
        data: &[u8],
    ) -> Result<(), StoreError>;

    /// Makes an in-progress share durable and immutable with exactly `length` bytes (at most the
    /// allocation); the rest of the allocation is released.
    fn commit_share(
        &mut self,
        si: &StorageIndex,
        shnum: u16,
        length: u64,
    ) -> Result<(), StoreError>;

    /// Commits several in-progress shares of `si` at once, each as [`ShareStore::commit_share`]
    /// would (`shares` holds share numbers and lengths); one result per entry, in order. Every
    /// share whose result is `Ok` is durable when this returns. A store can make this cheaper
    /// than one commit after another (one lease transaction, one directory sync, the syncs
    /// issued together); the default commits one after another.
    fn commit_shares(
        &mut self,
        si: &StorageIndex,
        shares: &[(u16, u64)],
    ) -> Vec<Result<(), StoreError>> {
        shares
            .iter()
            .map(|&(shnum, length)| self.commit_share(si, shnum, length))
            .collect()
    }

    /// Deletes an in-progress share and releases its allocation (`NotFound` if none).
    fn abort_share(&mut self, si: &StorageIndex, shnum: u16) -> Result<(), StoreError>;

    /// Mutable shares held for `si`, ascending by share number (empty if none).
    fn list_mutable_shares(&self, si: &StorageIndex) -> Result<Vec<MutableShareInfo>, StoreError>;

    /// Up to `length` bytes of a mutable share's data from `offset`, cut at its end. `NotFound` if
    /// there is no such mutable share.
    fn read_mutable_share(
        &self,
        si: &StorageIndex,
        shnum: u16,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>, StoreError>;

    /// Applies `changes` to the mutable shares of `si` in order (see [`MutableShareChange`]),
    /// creating missing shares with `enabler` recorded (existing shares keep theirs; checking it
    /// is the caller's job). Checked before anything changes: the resulting sizes against the
    /// maximum share size (`TooLarge`) and the free space (`NoSpace`), and that `si` holds no
    /// immutable share (`KindConflict`). An I/O failure part way may leave earlier shares of the
    /// list changed (each share's own change is as atomic as the store can make it).
    fn write_mutable_shares(
        &mut self,
        si: &StorageIndex,
        enabler: &EnablerRecord,
        changes: &[MutableShareChange<'_>],
    ) -> Result<(), StoreError>;

    /// Renews the lease with the same renew secret (its expiry only moves later), or adds one.
    /// Works on immutable (committed or in progress) and mutable shares.
    fn add_lease(&mut self, si: &StorageIndex, shnum: u16, lease: Lease) -> Result<(), StoreError>;

    /// [`ShareStore::add_lease`] on each of `shnums`, stopping at the first failure (leases
    /// added before it stay). A store can make this one durable transaction; the default adds
    /// one lease after another.
    fn add_leases(
        &mut self,
        si: &StorageIndex,
        shnums: &[u16],
        lease: Lease,
    ) -> Result<(), StoreError> {
        shnums
            .iter()
            .try_for_each(|&shnum| self.add_lease(si, shnum, lease))
    }

    /// The leases on a share (immutable committed or in progress, or mutable).
    fn leases(&self, si: &StorageIndex, shnum: u16) -> Result<Vec<Lease>, StoreError>;

    /// Bytes held by committed and mutable shares plus open allocations.
    fn space_used(&self) -> u64;

    /// Bytes that can still be allocated.
    fn space_available(&self) -> u64;

    /// Shares held: committed immutable shares plus mutable shares (uploads in progress are
    /// not counted). Kept as a running count: a server reports it on every version request.
    fn shares_held(&self) -> u64;

    /// Largest allocation `create_share` accepts.
    fn max_share_size(&self) -> u64;

    /// What to wait on before answering, if this store defers syncs: a ticket covering every
    /// change made so far. `None` (the default): each call's changes are durable when it
    /// returns.
    fn durability_ticket(&self) -> Option<DurabilityTicket> {
        None
    }
}

#[derive(Clone, Debug)]
enum ShareState {
    InProgress { allocated: u64 },
    Committed,
}

#[derive(Clone, Debug)]
struct MemShare {
    data: Vec<u8>,
    state: ShareState,
    leases: Vec<Lease>,
}

impl MemShare {
    /// Bytes this share counts against capacity.
    fn charged(&self) -> u64 {
        match self.state {
            ShareState::InProgress { allocated } => allocated,
            ShareState::Committed => self.data.len() as u64,
        }
    }
}

/// A mutable share in memory.
#[derive(Clone, Debug)]
struct MemMutable {
    data: Vec<u8>,
    enabler: EnablerRecord,
    leases: Vec<Lease>,
}

/// Adds `lease`, or renews the one with its renew secret (expiry only moves later).
fn merge_lease(leases: &mut Vec<Lease>, lease: Lease) {
    match leases
        .iter_mut()
        .find(|l| l.renew_secret == lease.renew_secret)
    {
        Some(existing) => existing.expires = existing.expires.max(lease.expires),
        None => leases.push(lease),
    }
}

/// A [`ShareStore`] in memory, with a byte capacity and a maximum share size.
///
/// Besides the trait it offers inspection and fault injection for tests and the simulator (the
/// second `impl` block); production code should use only the trait.
#[derive(Clone, Debug)]
pub struct MemoryShareStore {
    capacity: u64,
    max_share_size: u64,
    used: u64,
    shares: BTreeMap<(StorageIndex, u16), MemShare>,
    mutable: BTreeMap<(StorageIndex, u16), MemMutable>,
    failing: bool,
}

impl MemoryShareStore {
    /// A store that holds at most `capacity` bytes and shares of at most `max_share_size` bytes.
    pub fn new(capacity: u64, max_share_size: u64) -> Self {
        MemoryShareStore {
            capacity,
            max_share_size,
            used: 0,
            shares: BTreeMap::new(),
            mutable: BTreeMap::new(),
            failing: false,
        }
    }

    fn check_failing(&self) -> Result<(), StoreError> {
        if self.failing {
            Err(StoreError::Io("injected failure".into()))
        } else {
            Ok(())
        }
    }

    fn in_progress_mut(
        &mut self,
        si: &StorageIndex,
        shnum: u16,
    ) -> Result<(&mut MemShare, u64), StoreError> {
        match self.shares.get_mut(&(*si, shnum)) {
            Some(share) => match share.state {
                ShareState::InProgress { allocated } => Ok((share, allocated)),
                ShareState::Committed => Err(StoreError::NotFound),
            },
            None => Err(StoreError::NotFound),
        }
    }

    fn has_mutable(&self, si: &StorageIndex) -> bool {
        self.mutable
            .range((*si, 0)..=(*si, u16::MAX))
            .next()
            .is_some()
    }
}

impl ShareStore for MemoryShareStore {
    fn list_shares(&self, si: &StorageIndex) -> Result<Vec<ShareInfo>, StoreError> {
        Ok(self
            .shares
            .range((*si, 0)..=(*si, u16::MAX))
            .filter(|(_, s)| matches!(s.state, ShareState::Committed))
            .map(|((_, shnum), s)| ShareInfo {
                shnum: *shnum,
                length: s.data.len() as u64,
            })
            .collect())
    }

    fn read_share(
        &self,
        si: &StorageIndex,
        shnum: u16,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>, StoreError> {
        self.check_failing()?;
        let share = match self.shares.get(&(*si, shnum)) {
            Some(
                s @ MemShare {
                    state: ShareState::Committed,
                    ..
                },
            ) => s,
            _ => return Err(StoreError::NotFound),
        };
        let len = share.data.len() as u64;
        let start = offset.min(len);
        let end = offset.saturating_add(length).min(len);
        Ok(share.data[start as usize..end.max(start) as usize].to_vec())
    }

    fn create_share(
        &mut self,
        si: &StorageIndex,
        shnum: u16,
        allocated_size: u64,
        lease: Lease,
    ) -> Result<(), StoreError> {
        self.check_failing()?;
        if self.shares.contains_key(&(*si, shnum)) {
            return Err(StoreError::AlreadyExists);
        }
        if self.has_mutable(si) {
            return Err(StoreError::KindConflict(
                "the storage index holds mutable shares; an immutable share cannot join them"
                    .into(),
            ));
        }
        if allocated_size > self.max_share_size {
            return Err(StoreError::TooLarge {
                size: allocated_size,
                max: self.max_share_size,
            });
        }
        let available = self.space_available();
        if allocated_size > available {
            return Err(StoreError::NoSpace {
                needed: allocated_size,
                available,
            });
        }
        self.used += allocated_size;
        self.shares.insert(
            (*si, shnum),
            MemShare {
                // Reserve the allocation (bounded) so sequential writes never reallocate.
                data: Vec::with_capacity(allocated_size.min(MAX_UPFRONT_RESERVE) as usize),
                state: ShareState::InProgress {
                    allocated: allocated_size,
                },
                leases: vec![lease],
            },
        );
        Ok(())
    }

    fn write_share(
        &mut self,
        si: &StorageIndex,
        shnum: u16,
        offset: u64,
        data: &[u8],
    ) -> Result<(), StoreError> {
        self.check_failing()?;
        let (share, allocated) = self.in_progress_mut(si, shnum)?;
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|&end| end <= allocated)
            .ok_or(StoreError::OutOfBounds {
                end: offset.saturating_add(data.len() as u64),
                allocated,
            })?;
        if data.is_empty() {
            return Ok(());
        }
        // `end <= allocated <= capacity`, and the allocation was accepted, so this fits in memory
        // as far as the store's owner configured it.
        let (start, end) = (offset as usize, end as usize);
        if start == share.data.len() {
            // Sequential writes (the common case) append: one pass, no zero-fill first.
            share.data.extend_from_slice(data);
            return Ok(());
        }
        if share.data.len() < end {
            share.data.resize(end, 0);
        }
        share.data[start..end].copy_from_slice(data);
        Ok(())
    }

    fn commit_share(
        &mut self,
        si: &StorageIndex,
        shnum: u16,
        length: u64,
    ) -> Result<(), StoreError> {
        self.check_failing()?;
        let (share, allocated) = self.in_progress_mut(si, shnum)?;
        if length > allocated {
            return Err(StoreError::OutOfBounds {
                end: length,
                allocated,
            });
        }
        share.data.resize(length as usize, 0);
        share.state = ShareState::Committed;
        self.used = self.used - allocated + length;
        Ok(())
    }

    fn abort_share(&mut self, si: &StorageIndex, shnum: u16) -> Result<(), StoreError> {
        self.check_failing()?;
        let (_, allocated) = self.in_progress_mut(si, shnum)?;
        self.shares.remove(&(*si, shnum));
        self.used -= allocated;
        Ok(())
    }

    fn list_mutable_shares(&self, si: &StorageIndex) -> Result<Vec<MutableShareInfo>, StoreError> {
        self.check_failing()?;
        Ok(self
            .mutable
            .range((*si, 0)..=(*si, u16::MAX))
            .map(|((_, shnum), s)| MutableShareInfo {
                shnum: *shnum,
                length: s.data.len() as u64,
                enabler: s.enabler,
            })
            .collect())
    }

    fn read_mutable_share(
        &self,
        si: &StorageIndex,
        shnum: u16,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>, StoreError> {
        self.check_failing()?;
        let share = self
            .mutable
            .get(&(*si, shnum))
            .ok_or(StoreError::NotFound)?;
        let len = share.data.len() as u64;
        let start = offset.min(len);
        let end = offset.saturating_add(length).min(len).max(start);
        Ok(share.data[start as usize..end as usize].to_vec())
    }

    fn write_mutable_shares(
        &mut self,
        si: &StorageIndex,
        enabler: &EnablerRecord,
        changes: &[MutableShareChange<'_>],
    ) -> Result<(), StoreError> {
        self.check_failing()?;
        if self
            .shares
            .range((*si, 0)..=(*si, u16::MAX))
            .next()
            .is_some()
        {
            return Err(StoreError::KindConflict(
                "the storage index holds immutable shares; a mutable share cannot join them".into(),
            ));
        }
        let before: BTreeMap<u16, u64> = self
            .mutable
            .range((*si, 0)..=(*si, u16::MAX))
            .map(|((_, n), s)| (*n, s.data.len() as u64))
            .collect();
        let plan = plan_mutable_changes(&before, changes, self.max_share_size)?;
        let (mut grow, mut shrink) = (0u64, 0u64);
        for (old, new) in plan.values() {
            let (old, new) = (old.unwrap_or(0), new.unwrap_or(0));
            grow = grow.saturating_add(new.saturating_sub(old));
            shrink += old.saturating_sub(new);
        }
        let needed = grow.saturating_sub(shrink);
        let available = self.space_available();
        if needed > available {
            return Err(StoreError::NoSpace { needed, available });
        }
        for c in changes {
            let key = (*si, c.shnum);
            if c.new_length == Some(0) {
                if let Some(old) = self.mutable.remove(&key) {
                    self.used -= old.data.len() as u64;
                }
                continue;
            }
            let share = self.mutable.entry(key).or_insert_with(|| MemMutable {
                data: Vec::new(),
                enabler: *enabler,
                leases: Vec::new(),
            });
            let old_len = share.data.len() as u64;
            for w in c.writes {
                // Planned above: every end fits in u64 and within the maximum share size, which
                // the store's owner chose to fit in memory.
                let start = w.offset as usize;
                let end = start + w.data.len();
                if share.data.len() < end {
                    share.data.resize(end, 0);
                }
                share.data[start..end].copy_from_slice(&w.data);
            }
            if let Some(n) = c.new_length {
                if n < share.data.len() as u64 {
                    share.data.truncate(n as usize);
                }
            }
            self.used = self.used - old_len + share.data.len() as u64;
        }
        Ok(())
    }

    fn add_lease(&mut self, si: &StorageIndex, shnum: u16, lease: Lease) -> Result<(), StoreError> {
        self.check_failing()?;
        let leases = match self.shares.get_mut(&(*si, shnum)) {
            Some(share) => &mut share.leases,
            None => {
                &mut self
                    .mutable
                    .get_mut(&(*si, shnum))
                    .ok_or(StoreError::NotFound)?
                    .leases
            }
        };
        merge_lease(leases, lease);
        Ok(())
    }

    fn leases(&self, si: &StorageIndex, shnum: u16) -> Result<Vec<Lease>, StoreError> {
        let key = (*si, shnum);
        match (self.shares.get(&key), self.mutable.get(&key)) {
            (Some(s), _) => Ok(s.leases.clone()),
            (None, Some(m)) => Ok(m.leases.clone()),
            (None, None) => Err(StoreError::NotFound),
        }
    }

    fn space_used(&self) -> u64 {
        self.used
    }

    fn space_available(&self) -> u64 {
        self.capacity.saturating_sub(self.used)
    }

    fn shares_held(&self) -> u64 {
        let committed = self
            .shares
            .values()
            .filter(|s| matches!(s.state, ShareState::Committed))
            .count();
        (committed + self.mutable.len()) as u64
    }

    fn max_share_size(&self) -> u64 {
        self.max_share_size
    }
}

/// Inspection and fault injection, for tests and the simulator.
impl MemoryShareStore {
    /// Every share held: storage index, share number, bytes held, and whether it is committed
    /// (mutable shares count as committed; [`Self::mutable_shares`] tells them apart).
    pub fn all_shares(&self) -> Vec<(StorageIndex, u16, u64, bool)> {
        let mut out: Vec<_> = self
            .shares
            .iter()
            .map(|((si, shnum), s)| {
                let committed = matches!(s.state, ShareState::Committed);
                (*si, *shnum, s.data.len() as u64, committed)
            })
            .chain(
                self.mutable
                    .iter()
                    .map(|((si, shnum), s)| (*si, *shnum, s.data.len() as u64, true)),
            )
            .collect();
        out.sort_unstable();
        out
    }

    /// Every mutable share held: storage index, share number, data length.
    pub fn mutable_shares(&self) -> Vec<(StorageIndex, u16, u64)> {
        self.mutable
            .iter()
            .map(|((si, shnum), s)| (*si, *shnum, s.data.len() as u64))
            .collect()
    }

    /// The bytes of a share: immutable (committed or in progress) or the data of a mutable one.
    pub fn share_bytes(&self, si: &StorageIndex, shnum: u16) -> Option<&[u8]> {
        let key = (*si, shnum);
        self.shares
            .get(&key)
            .map(|s| s.data.as_slice())
            .or_else(|| self.mutable.get(&key).map(|s| s.data.as_slice()))
    }

    /// Number of in-progress shares.
    pub fn in_progress_count(&self) -> usize {
        self.shares
            .values()
            .filter(|s| matches!(s.state, ShareState::InProgress { .. }))
            .count()
    }

    /// Flips bits of one byte of a share, immutable or mutable (XOR with `mask`); false if there
    /// is no such byte.
    pub fn corrupt_share(&mut self, si: &StorageIndex, shnum: u16, offset: u64, mask: u8) -> bool {
        let key = (*si, shnum);
        let data = match self.shares.get_mut(&key) {
            Some(s) => Some(&mut s.data),
            None => self.mutable.get_mut(&key).map(|s| &mut s.data),
        };
        let byte = data.and_then(|d| d.get_mut(usize::try_from(offset).ok()?));
        match byte {
            Some(b) => {
                *b ^= mask;
                true
            }
            None => false,
        }
    }

    /// Loses a share (immutable committed or in progress, or mutable) as a failing disk would;
    /// false if absent.
    pub fn delete_share(&mut self, si: &StorageIndex, shnum: u16) -> bool {
        let key = (*si, shnum);
        if let Some(s) = self.shares.remove(&key) {
            self.used -= s.charged();
            return true;
        }
        match self.mutable.remove(&key) {
            Some(s) => {
                self.used -= s.data.len() as u64;
                true
            }
            None => false,
        }
    }

    /// Changes the capacity (a full disk: set it to the space used).
    pub fn set_capacity(&mut self, capacity: u64) {
        self.capacity = capacity;
    }

    /// While set, every operation that touches share bytes or leases fails with `Io`.
    pub fn set_failing(&mut self, failing: bool) {
        self.failing = failing;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SI: StorageIndex = [7; 16];

    fn lease(secret: u8, expires: u64) -> Lease {
        Lease {
            renew_secret: [secret; 32],
            cancel_secret: [secret.wrapping_add(1); 32],
            expires: Instant(expires),
        }
    }

    #[test]
    fn in_progress_shares_are_invisible_until_committed() {
        let mut s = MemoryShareStore::new(1000, 500);
        s.create_share(&SI, 3, 100, lease(1, 10)).unwrap();
        s.write_share(&SI, 3, 10, b"abc").unwrap();
        assert_eq!(s.list_shares(&SI).unwrap(), vec![]);
        assert_eq!(s.read_share(&SI, 3, 0, 10), Err(StoreError::NotFound));
        s.commit_share(&SI, 3, 13).unwrap();
        assert_eq!(
            s.list_shares(&SI).unwrap(),
            vec![ShareInfo {
                shnum: 3,
                length: 13
            }]
        );
        let mut want = vec![0u8; 10];
        want.extend_from_slice(b"abc");
        assert_eq!(s.read_share(&SI, 3, 0, 100).unwrap(), want);
        assert_eq!(s.read_share(&SI, 3, 12, 5).unwrap(), b"c");
        assert_eq!(s.read_share(&SI, 3, 50, 5).unwrap(), b"");
        assert_eq!(s.read_share(&SI, 3, u64::MAX, u64::MAX).unwrap(), b"");
        // Committed shares cannot be written, recreated or aborted.
        assert_eq!(s.write_share(&SI, 3, 0, b"x"), Err(StoreError::NotFound));
        assert_eq!(
            s.create_share(&SI, 3, 10, lease(1, 10)),
            Err(StoreError::AlreadyExists)
        );
        assert_eq!(s.abort_share(&SI, 3), Err(StoreError::NotFound));
    }

    #[test]
    fn space_counts_allocations_then_committed_lengths() {
        let mut s = MemoryShareStore::new(1000, 600);
        assert_eq!(
            s.create_share(&SI, 0, 601, lease(1, 0)),
            Err(StoreError::TooLarge {
                size: 601,
                max: 600
            })
        );
        s.create_share(&SI, 0, 600, lease(1, 0)).unwrap();
        assert_eq!((s.space_used(), s.space_available()), (600, 400));
        assert_eq!(
            s.create_share(&SI, 1, 401, lease(1, 0)),
            Err(StoreError::NoSpace {
                needed: 401,
                available: 400
            })
        );
        s.commit_share(&SI, 0, 50).unwrap();
        assert_eq!((s.space_used(), s.space_available()), (50, 950));
        s.create_share(&SI, 1, 400, lease(1, 0)).unwrap();
        s.abort_share(&SI, 1).unwrap();
        assert_eq!(s.space_used(), 50);
        assert!(s.delete_share(&SI, 0));
        assert_eq!(s.space_used(), 0);
    }

    #[test]
    fn writes_and_commits_stay_inside_the_allocation() {
        let mut s = MemoryShareStore::new(1000, 1000);
        s.create_share(&SI, 0, 10, lease(1, 0)).unwrap();
        assert_eq!(
            s.write_share(&SI, 0, 8, b"abc"),
            Err(StoreError::OutOfBounds {
                end: 11,
                allocated: 10
            })
        );
        assert!(s.write_share(&SI, 0, u64::MAX, b"a").is_err());
        s.write_share(&SI, 0, 7, b"abc").unwrap();
        assert!(s.commit_share(&SI, 0, 11).is_err());
        s.commit_share(&SI, 0, 10).unwrap();
    }

    #[test]
    fn leases_renew_by_renew_secret_and_never_shorten() {
        let mut s = MemoryShareStore::new(1000, 1000);
        s.create_share(&SI, 0, 1, lease(1, 100)).unwrap();
        s.add_lease(&SI, 0, lease(1, 50)).unwrap();
        s.add_lease(&SI, 0, lease(2, 70)).unwrap();
        s.add_lease(&SI, 0, lease(2, 90)).unwrap();
        assert_eq!(s.leases(&SI, 0).unwrap(), vec![lease(1, 100), lease(2, 90)]);
        assert_eq!(s.add_lease(&SI, 1, lease(1, 1)), Err(StoreError::NotFound));
    }

    #[test]
    fn corruption_and_failure_injection() {
        let mut s = MemoryShareStore::new(1000, 1000);
        s.create_share(&SI, 0, 3, lease(1, 0)).unwrap();
        s.write_share(&SI, 0, 0, b"abc").unwrap();
        s.commit_share(&SI, 0, 3).unwrap();
        assert!(s.corrupt_share(&SI, 0, 1, 0x01));
        assert!(!s.corrupt_share(&SI, 0, 3, 0x01));
        assert_eq!(s.read_share(&SI, 0, 0, 3).unwrap(), b"acc");
        s.set_failing(true);
        assert!(matches!(s.read_share(&SI, 0, 0, 3), Err(StoreError::Io(_))));
        assert!(matches!(
            s.create_share(&SI, 1, 3, lease(1, 0)),
            Err(StoreError::Io(_))
        ));
        s.set_failing(false);
        assert_eq!(s.all_shares(), vec![(SI, 0, 3, true)]);
        assert_eq!(s.in_progress_count(), 0);
    }

    const REC: EnablerRecord = EnablerRecord {
        write_enabler: [5; 32],
        node_id: [6; 20],
    };

    fn dv(offset: u64, data: &[u8]) -> DataVector {
        DataVector {
            offset,
            data: data.to_vec(),
        }
    }

    fn change<'a>(
        shnum: u16,
        writes: &'a [DataVector],
        new_length: Option<u64>,
    ) -> MutableShareChange<'a> {
        MutableShareChange {
            shnum,
            writes,
            new_length,
        }
    }

    #[test]
    fn length_after_follows_tahoes_rules() {
        let w = [dv(10, b"ab"), dv(2, b"c")];
        assert_eq!(change(0, &w, None).length_after(None, 100), Ok(Some(12)));
        assert_eq!(
            change(0, &w, None).length_after(Some(20), 100),
            Ok(Some(20))
        );
        assert_eq!(
            change(0, &w, Some(5)).length_after(Some(20), 100),
            Ok(Some(5))
        );
        assert_eq!(
            change(0, &w, Some(50)).length_after(Some(20), 100),
            Ok(Some(20))
        );
        assert_eq!(change(0, &w, Some(0)).length_after(Some(20), 100), Ok(None));
        assert_eq!(change(0, &[], None).length_after(None, 100), Ok(Some(0)));
        assert_eq!(
            change(0, &w, None).length_after(None, 11),
            Err(StoreError::TooLarge { size: 12, max: 11 })
        );
        let far = [dv(u64::MAX, b"x")];
        assert!(matches!(
            change(0, &far, None).length_after(None, u64::MAX),
            Err(StoreError::TooLarge { .. })
        ));
    }

    #[test]
    fn mutable_shares_record_the_enabler_of_their_creation() {
        let mut s = MemoryShareStore::new(1000, 100);
        s.write_mutable_shares(&SI, &REC, &[change(1, &[dv(0, b"one")], None)])
            .unwrap();
        let other = EnablerRecord {
            write_enabler: [9; 32],
            node_id: [9; 20],
        };
        // Existing shares keep theirs; new ones get the record passed in.
        s.write_mutable_shares(
            &SI,
            &other,
            &[
                change(1, &[dv(3, b"!")], None),
                change(2, &[dv(0, b"two")], None),
            ],
        )
        .unwrap();
        let held = s.list_mutable_shares(&SI).unwrap();
        assert_eq!(
            held,
            vec![
                MutableShareInfo {
                    shnum: 1,
                    length: 4,
                    enabler: REC
                },
                MutableShareInfo {
                    shnum: 2,
                    length: 3,
                    enabler: other
                },
            ]
        );
        assert_eq!(s.read_mutable_share(&SI, 1, 0, 100).unwrap(), b"one!");
        assert_eq!(s.read_mutable_share(&SI, 1, 2, 1).unwrap(), b"e");
        assert_eq!(s.read_mutable_share(&SI, 1, 9, 1).unwrap(), b"");
        assert_eq!(
            s.read_mutable_share(&SI, 3, 0, 1),
            Err(StoreError::NotFound)
        );
        // Immutable calls do not see them.
        assert_eq!(s.list_shares(&SI).unwrap(), vec![]);
        assert_eq!(s.read_share(&SI, 1, 0, 1), Err(StoreError::NotFound));
        assert_eq!(s.space_used(), 7);
    }

    #[test]
    fn a_storage_index_holds_one_kind_of_share() {
        let mut s = MemoryShareStore::new(1000, 100);
        s.create_share(&SI, 0, 3, lease(1, 0)).unwrap();
        // Even an upload in progress claims the index for immutable shares.
        assert!(matches!(
            s.write_mutable_shares(&SI, &REC, &[change(1, &[dv(0, b"m")], None)]),
            Err(StoreError::KindConflict(_))
        ));
        let other: StorageIndex = [8; 16];
        s.write_mutable_shares(&other, &REC, &[change(0, &[dv(0, b"m")], None)])
            .unwrap();
        assert!(matches!(
            s.create_share(&other, 1, 3, lease(1, 0)),
            Err(StoreError::KindConflict(_))
        ));
        assert_eq!(s.space_used(), 4);
    }

    #[test]
    fn fault_injection_reaches_mutable_shares() {
        let mut s = MemoryShareStore::new(1000, 100);
        s.write_mutable_shares(&SI, &REC, &[change(0, &[dv(0, b"abc")], None)])
            .unwrap();
        s.add_lease(&SI, 0, lease(1, 10)).unwrap();
        assert_eq!(s.leases(&SI, 0).unwrap(), vec![lease(1, 10)]);
        assert_eq!(s.all_shares(), vec![(SI, 0, 3, true)]);
        assert_eq!(s.mutable_shares(), vec![(SI, 0, 3)]);
        assert!(s.corrupt_share(&SI, 0, 1, 0x01));
        assert_eq!(s.share_bytes(&SI, 0), Some(&b"acc"[..]));
        s.set_failing(true);
        assert!(matches!(
            s.read_mutable_share(&SI, 0, 0, 3),
            Err(StoreError::Io(_))
        ));
        assert!(matches!(
            s.write_mutable_shares(&SI, &REC, &[change(0, &[dv(0, b"x")], None)]),
            Err(StoreError::Io(_))
        ));
        s.set_failing(false);
        // A full disk refuses growth but not a rewrite in place.
        s.set_capacity(3);
        assert!(matches!(
            s.write_mutable_shares(&SI, &REC, &[change(0, &[dv(3, b"d")], None)]),
            Err(StoreError::NoSpace {
                needed: 1,
                available: 0
            })
        ));
        s.write_mutable_shares(&SI, &REC, &[change(0, &[dv(0, b"xyz")], None)])
            .unwrap();
        assert!(s.delete_share(&SI, 0));
        assert_eq!(s.space_used(), 0);
        assert_eq!(s.list_mutable_shares(&SI).unwrap(), vec![]);
    }
}
