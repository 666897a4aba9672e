//! Writes the v1 store fixture (temporary generator, see store/tests/fixtures/README.md).
use lafs_core::store::{EnablerRecord, Lease, MutableShareChange, ShareStore};
use lafs_core::time::Instant;
use lafs_core::wire::DataVector;
use lafs_store::disk_store::{DiskShareStore, DiskStoreConfig};

fn lease(secret: u8, expires: u64) -> Lease {
    Lease { renew_secret: [secret; 32], cancel_secret: [secret ^ 0xff; 32], expires: Instant(expires) }
}
fn bytes(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}
fn main() {
    let dir = std::env::args().nth(1).expect("dir");
    let mut s = DiskShareStore::open(std::path::Path::new(&dir), DiskStoreConfig { reserved_space: 0, ..Default::default() }).unwrap();
    // Immutable: index 1 with shares 0, 3, 7 of 1000 bytes, index 2 with share 2 of 100000 bytes.
    for (si_byte, shnum, len) in [(1u8, 0u16, 1000usize), (1, 3, 1000), (1, 7, 1000), (2, 2, 100_000)] {
        let si = [si_byte; 16];
        let data = bytes(si_byte ^ shnum as u8, len);
        s.create_share(&si, shnum, len as u64, lease(1, 1_000_000)).unwrap();
        s.write_share(&si, shnum, 0, &data).unwrap();
        s.commit_share(&si, shnum, len as u64).unwrap();
    }
    s.add_lease(&[1u8; 16], 3, lease(2, 2_000_000)).unwrap();
    // An upload left in progress.
    s.create_share(&[4u8; 16], 0, 500, lease(1, 1)).unwrap();
    s.write_share(&[4u8; 16], 0, 0, &[9; 100]).unwrap();
    // Mutable: index 3 with shares 0 and 1 (3000 bytes), written twice.
    let enabler = EnablerRecord { write_enabler: [0x11; 32], node_id: [0x22; 20] };
    for round in 0..2u8 {
        let d0 = bytes(30 + round, 3000);
        let d1 = bytes(40 + round, 3000);
        let w0 = [DataVector { offset: 0, data: d0 }];
        let w1 = [DataVector { offset: 0, data: d1 }];
        s.write_mutable_shares(&[3u8; 16], &enabler, &[
            MutableShareChange { shnum: 0, writes: &w0, new_length: None },
            MutableShareChange { shnum: 1, writes: &w1, new_length: None },
        ]).unwrap();
    }
    s.add_leases(&[3u8; 16], &[0, 1], lease(3, 3_000_000)).unwrap();
    std::mem::forget(s); // as a crash leaves it: the upload stays in incoming/
}
