//! What several of the store's test files need alike.

use lafs_core::store::{EnablerRecord, Lease, MutableShareChange, ShareStore, StoreError};
use lafs_core::time::Instant;
use lafs_core::wire::{DataVector, StorageIndex};
use lafs_store::disk_store::DiskShareStore;

/// The write enabler the tests' mutable shares record.
pub const ENABLER: EnablerRecord = EnablerRecord {
    write_enabler: [5; 32],
    node_id: [6; 20],
};

/// A lease that expired long ago (the tests that use it never collect garbage).
pub fn lease() -> Lease {
    Lease {
        renew_secret: [1; 32],
        cancel_secret: [2; 32],
        expires: Instant(1),
    }
}

/// Writes `data` at `offset` of mutable share `shnum` of `si`.
pub fn mwrite(
    s: &mut DiskShareStore,
    si: &StorageIndex,
    shnum: u16,
    offset: u64,
    data: &[u8],
) -> Result<(), StoreError> {
    let w = [DataVector {
        offset,
        data: data.to_vec(),
    }];
    s.write_mutable_shares(
        si,
        &ENABLER,
        &[MutableShareChange {
            shnum,
            writes: &w,
            new_length: None,
        }],
    )
}
