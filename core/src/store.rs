//! Where a storage server keeps immutable shares: the [`ShareStore`] trait and an in-memory
//! implementation.
//!
//! The trait is deliberately small and synchronous so that the server logic
//! ([`crate::server`]) stays pure: the disk store in runtime-std and [`MemoryShareStore`] (used by
//! tests and the simulator) both sit behind it. A share is first *in progress* (created with an
//! allocated size, written at offsets), then *committed* (durable, immutable, readable) or
//! aborted. In-progress shares are invisible to readers.

use std::collections::BTreeMap;

use crate::time::Instant;
use crate::wire::StorageIndex;

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
}

/// Synchronous storage of immutable shares, keyed by storage index and share number.
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

    /// Deletes an in-progress share and releases its allocation (`NotFound` if none).
    fn abort_share(&mut self, si: &StorageIndex, shnum: u16) -> Result<(), StoreError>;

    /// Renews the lease with the same renew secret (its expiry only moves later), or adds one.
    fn add_lease(&mut self, si: &StorageIndex, shnum: u16, lease: Lease) -> Result<(), StoreError>;

    /// The leases on a share (committed or in progress).
    fn leases(&self, si: &StorageIndex, shnum: u16) -> Result<Vec<Lease>, StoreError>;

    /// Bytes held by committed shares plus open allocations.
    fn space_used(&self) -> u64;

    /// Bytes that can still be allocated.
    fn space_available(&self) -> u64;

    /// Largest allocation `create_share` accepts.
    fn max_share_size(&self) -> u64;
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

    fn add_lease(&mut self, si: &StorageIndex, shnum: u16, lease: Lease) -> Result<(), StoreError> {
        self.check_failing()?;
        let share = self
            .shares
            .get_mut(&(*si, shnum))
            .ok_or(StoreError::NotFound)?;
        match share
            .leases
            .iter_mut()
            .find(|l| l.renew_secret == lease.renew_secret)
        {
            Some(existing) => existing.expires = existing.expires.max(lease.expires),
            None => share.leases.push(lease),
        }
        Ok(())
    }

    fn leases(&self, si: &StorageIndex, shnum: u16) -> Result<Vec<Lease>, StoreError> {
        self.shares
            .get(&(*si, shnum))
            .map(|s| s.leases.clone())
            .ok_or(StoreError::NotFound)
    }

    fn space_used(&self) -> u64 {
        self.used
    }

    fn space_available(&self) -> u64 {
        self.capacity.saturating_sub(self.used)
    }

    fn max_share_size(&self) -> u64 {
        self.max_share_size
    }
}

/// Inspection and fault injection, for tests and the simulator.
impl MemoryShareStore {
    /// Every share held: storage index, share number, bytes held, and whether it is committed.
    pub fn all_shares(&self) -> Vec<(StorageIndex, u16, u64, bool)> {
        self.shares
            .iter()
            .map(|((si, shnum), s)| {
                let committed = matches!(s.state, ShareState::Committed);
                (*si, *shnum, s.data.len() as u64, committed)
            })
            .collect()
    }

    /// The bytes of a share, committed or in progress.
    pub fn share_bytes(&self, si: &StorageIndex, shnum: u16) -> Option<&[u8]> {
        self.shares.get(&(*si, shnum)).map(|s| s.data.as_slice())
    }

    /// Number of in-progress shares.
    pub fn in_progress_count(&self) -> usize {
        self.shares
            .values()
            .filter(|s| matches!(s.state, ShareState::InProgress { .. }))
            .count()
    }

    /// Flips bits of one byte of a share (XOR with `mask`); false if there is no such byte.
    pub fn corrupt_share(&mut self, si: &StorageIndex, shnum: u16, offset: u64, mask: u8) -> bool {
        let byte = self
            .shares
            .get_mut(&(*si, shnum))
            .and_then(|s| s.data.get_mut(usize::try_from(offset).ok()?));
        match byte {
            Some(b) => {
                *b ^= mask;
                true
            }
            None => false,
        }
    }

    /// Loses a share (committed or in progress) as a failing disk would; false if absent.
    pub fn delete_share(&mut self, si: &StorageIndex, shnum: u16) -> bool {
        match self.shares.remove(&(*si, shnum)) {
            Some(s) => {
                self.used -= s.charged();
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
}
