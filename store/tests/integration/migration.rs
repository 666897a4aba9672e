//! A storage directory written before the share index (schema 1, every share a file) opens
//! without losing a share: the files are indexed where they are, leases kept, the upload the
//! crash interrupted dropped.

use std::path::Path;

use lafs_core::store::{MutableShareChange, ShareInfo, ShareStore};
use lafs_core::wire::{DataVector, StorageIndex};
use lafs_store::disk_store::{DiskShareStore, DiskStoreConfig};
use lafs_store::leases::StoredLease;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Byte `i` of a fixture share (see store/tests/fixtures/README.md).
fn bytes(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn lease(secret: u8, expires: u64) -> lafs_core::store::Lease {
    StoredLease::from_lease(&lafs_core::store::Lease {
        renew_secret: [secret; 32],
        cancel_secret: [secret ^ 0xff; 32],
        expires: lafs_core::time::Instant(expires),
    })
    .to_lease()
}

fn config() -> DiskStoreConfig {
    DiskStoreConfig {
        reserved_space: 0,
        ..DiskStoreConfig::default()
    }
}

#[test]
fn a_store_written_before_the_index_opens_with_every_share() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1-store");
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture, dir.path());
    let mut s = DiskShareStore::open(dir.path(), config()).unwrap();
    assert_eq!(s.open_report().files_indexed, 6);
    let one: StorageIndex = [1; 16];
    assert_eq!(
        s.list_shares(&one).unwrap(),
        [0u16, 3, 7].map(|shnum| ShareInfo {
            shnum,
            length: 1000
        })
    );
    for shnum in [0u16, 3, 7] {
        let data = s.read_share(&one, shnum, 0, 1000).unwrap();
        assert_eq!(data, bytes(1 ^ shnum as u8, 1000), "share {shnum}");
    }
    assert_eq!(s.leases(&one, 0).unwrap(), vec![lease(1, 1_000_000)]);
    assert_eq!(s.leases(&one, 3).unwrap().len(), 2);
    let two: StorageIndex = [2; 16];
    assert_eq!(
        s.read_share(&two, 2, 0, 200_000).unwrap(),
        bytes(2 ^ 2, 100_000)
    );
    let three: StorageIndex = [3; 16];
    let held = s.list_mutable_shares(&three).unwrap();
    assert_eq!(held.len(), 2);
    assert_eq!(held[0].enabler.write_enabler, [0x11; 32]);
    assert_eq!(held[0].enabler.node_id, [0x22; 20]);
    assert_eq!(
        s.read_mutable_share(&three, 0, 0, 9999).unwrap(),
        bytes(31, 3000)
    );
    assert_eq!(
        s.read_mutable_share(&three, 1, 0, 9999).unwrap(),
        bytes(41, 3000)
    );
    assert_eq!(s.leases(&three, 1).unwrap(), vec![lease(3, 3_000_000)]);
    // The interrupted upload is gone, and nothing else is held.
    assert_eq!(s.list_shares(&[4; 16]).unwrap(), vec![]);
    assert_eq!(s.shares_held(), 6);
    let files: u64 = 3 * 1000 + 100_000 + 2 * (468 + 3000 + 4);
    assert_eq!(s.space_used(), files);

    // A migrated mutable share is written as any other (copy-on-write, it stays a file).
    let w = [DataVector {
        offset: 3000,
        data: b"more".to_vec(),
    }];
    let enabler = held[0].enabler;
    s.write_mutable_shares(
        &three,
        &enabler,
        &[MutableShareChange {
            shnum: 0,
            writes: &w,
            new_length: None,
        }],
    )
    .unwrap();
    let mut want = bytes(31, 3000);
    want.extend_from_slice(b"more");
    assert_eq!(s.read_mutable_share(&three, 0, 0, 9999).unwrap(), want);
    assert!(s.share_path(&three, 0).is_file());

    // Reopened: already migrated, nothing to index again, everything still there.
    drop(s);
    let s = DiskShareStore::open(dir.path(), config()).unwrap();
    assert_eq!(s.open_report().files_indexed, 0);
    assert_eq!(s.shares_held(), 6);
    assert_eq!(s.read_mutable_share(&three, 0, 0, 9999).unwrap(), want);
    assert_eq!(s.read_share(&one, 7, 0, 1000).unwrap(), bytes(1 ^ 7, 1000));
}
