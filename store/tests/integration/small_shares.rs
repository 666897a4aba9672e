//! Small shares as database rows: no file per share, visible at once, durable after one group
//! sync; a row grown past the limit becomes a file; damaged files are set aside.

use std::path::Path;

use lafs_core::store::{MutableShareChange, ShareStore};
use lafs_core::wire::StorageIndex;
use lafs_store::disk_store::{DiskShareStore, DiskStoreConfig};

use crate::support::{lease, mwrite, ENABLER};

fn config(small_share_max: u64) -> DiskStoreConfig {
    DiskStoreConfig {
        reserved_space: 0,
        small_share_max,
        ..DiskStoreConfig::default()
    }
}

fn si(i: u8) -> StorageIndex {
    [i; 16]
}

/// Entries under `shares/` other than `incoming/` (bucket prefixes).
fn share_dirs(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("shares"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name() != "incoming")
        .count()
}

#[test]
fn small_shares_create_no_files_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = DiskShareStore::open(dir.path(), config(64 << 10)).unwrap();
    for i in 0..20u8 {
        for shnum in 0..2u16 {
            s.create_share(&si(i), shnum, 1000, lease()).unwrap();
            s.write_share(&si(i), shnum, 10, &[i; 990]).unwrap();
        }
        for r in s.commit_shares(&si(i), &[(0, 1000), (1, 500)]) {
            r.unwrap();
        }
        mwrite(&mut s, &si(100 + i), 0, 0, &[i; 3000]).unwrap();
    }
    assert_eq!(share_dirs(dir.path()), 0, "no share became a file");
    assert_eq!(s.shares_held(), 60);
    assert_eq!(s.space_used(), 20 * (1000 + 500 + 3000));
    drop(s);
    let s = DiskShareStore::open(dir.path(), config(64 << 10)).unwrap();
    assert_eq!(s.shares_held(), 60);
    assert_eq!(s.space_used(), 20 * (1000 + 500 + 3000));
    let mut want = vec![0u8; 10];
    want.extend_from_slice(&[7; 990]);
    assert_eq!(s.read_share(&si(7), 0, 0, 5000).unwrap(), want);
    assert_eq!(s.read_share(&si(7), 1, 0, 5000).unwrap(), want[..500]);
    assert_eq!(s.read_share(&si(7), 0, 995, 10).unwrap(), [7; 5]);
    assert_eq!(
        s.read_mutable_share(&si(107), 0, 0, 5000).unwrap(),
        [7; 3000]
    );
}

#[test]
fn a_commit_is_visible_at_once_and_durable_after_one_shared_sync() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = DiskShareStore::open(dir.path(), config(64 << 10)).unwrap();
    assert!(
        s.durability_ticket().is_none(),
        "nothing pending after open"
    );
    let syncs = s.log_syncs();
    for i in 0..5u8 {
        s.create_share(&si(i), 0, 100, lease()).unwrap();
        s.write_share(&si(i), 0, 0, &[i; 100]).unwrap();
        s.commit_share(&si(i), 0, 100).unwrap();
        assert_eq!(s.read_share(&si(i), 0, 0, 100).unwrap(), [i; 100]);
    }
    assert_eq!(
        s.log_syncs(),
        syncs,
        "no sync yet: five commits wait for one"
    );
    let ticket = s.durability_ticket().expect("commits pending");
    ticket.wait().unwrap();
    assert_eq!(s.log_syncs(), syncs + 1);
    assert!(s.durability_ticket().is_none());
}

#[test]
fn a_mutable_row_moves_to_a_file_when_it_grows_past_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = DiskShareStore::open(dir.path(), config(2000)).unwrap();
    let slot = si(3);
    mwrite(&mut s, &slot, 0, 0, &[1; 1500]).unwrap();
    assert!(!s.share_path(&slot, 0).exists());
    mwrite(&mut s, &slot, 0, 2500, b"tail").unwrap();
    let path = s.share_path(&slot, 0);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 468 + 2504 + 4);
    let mut want = vec![1u8; 1500];
    want.resize(2500, 0);
    want.extend_from_slice(b"tail");
    assert_eq!(s.read_mutable_share(&slot, 0, 0, 9999).unwrap(), want);
    assert_eq!(s.list_mutable_shares(&slot).unwrap()[0].length, 2504);
    assert_eq!(s.space_used(), 468 + 2504 + 4);
    // Shrunk again, it stays a file.
    s.write_mutable_shares(
        &slot,
        &ENABLER,
        &[MutableShareChange {
            shnum: 0,
            writes: &[],
            new_length: Some(10),
        }],
    )
    .unwrap();
    assert!(path.is_file());
    assert_eq!(s.read_mutable_share(&slot, 0, 0, 9999).unwrap(), [1; 10]);
    drop(s);
    let s = DiskShareStore::open(dir.path(), config(2000)).unwrap();
    assert_eq!(s.read_mutable_share(&slot, 0, 0, 9999).unwrap(), [1; 10]);
    assert_eq!(s.space_used(), 468 + 10 + 4);
}

#[test]
fn a_damaged_share_file_is_quarantined_and_its_neighbours_stay_usable() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = DiskShareStore::open(dir.path(), config(0)).unwrap();
    let slot = si(4);
    mwrite(&mut s, &slot, 0, 0, &[1; 100]).unwrap();
    mwrite(&mut s, &slot, 1, 0, &[2; 100]).unwrap();
    let path = s.share_path(&slot, 0);
    drop(s);
    // The header claims more data than the file holds.
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &u64::MAX.to_be_bytes(), 84).unwrap();
    drop(f);
    let mut s = DiskShareStore::open(dir.path(), config(0)).unwrap();
    assert_eq!(s.open_report().quarantined, 1);
    assert!(!path.exists());
    assert_eq!(
        std::fs::read_dir(dir.path().join("quarantine"))
            .unwrap()
            .count(),
        1
    );
    let held = s.list_mutable_shares(&slot).unwrap();
    assert_eq!(held.iter().map(|h| h.shnum).collect::<Vec<_>>(), [1]);
    assert_eq!(s.read_mutable_share(&slot, 1, 0, 999).unwrap(), [2; 100]);
    // The slot takes writes again, share 0 included (written anew).
    mwrite(&mut s, &slot, 0, 0, &[3; 50]).unwrap();
    assert_eq!(s.read_mutable_share(&slot, 0, 0, 999).unwrap(), [3; 50]);
}

#[test]
fn a_damaged_row_is_set_aside_and_the_other_shares_are_served() {
    use lafs_core::server::{ConnectionId, ServerConfig, StorageServer};
    use lafs_core::wire::{Request, Response};

    let dir = tempfile::tempdir().unwrap();
    let mut s = DiskShareStore::open(dir.path(), config(64 << 10)).unwrap();
    let si = si(8);
    for shnum in 0..3u16 {
        s.create_share(&si, shnum, 1000, lease()).unwrap();
        s.write_share(&si, shnum, 0, &[shnum as u8; 1000]).unwrap();
    }
    for r in s.commit_shares(&si, &[(0, 1000), (1, 1000), (2, 1000)]) {
        r.unwrap();
    }
    // A bad sector under share 1's row, written beside the store as a disk error would be.
    let db = rusqlite::Connection::open(dir.path().join("leases.db")).unwrap();
    db.execute(
        "UPDATE shares SET data = ?3 WHERE storage_index = ?1 AND shnum = ?2",
        rusqlite::params![&si[..], 1u16, vec![0xeeu8; 1000]],
    )
    .unwrap();
    drop(db);

    let mut server = StorageServer::new(s, ServerConfig::default());
    let read = Request::ImmutableRead {
        storage_index: si,
        shnums: vec![],
        max_shares: 10,
        ranges: vec![lafs_core::wire::ReadRange {
            offset: 0,
            length: 1000,
        }],
    };
    let Response::ImmutableRead { shares, held } =
        server.handle_request(lafs_core::time::Instant(1), ConnectionId(1), read)
    else {
        panic!("the read failed as a whole");
    };
    assert_eq!(held, vec![0, 2], "the damaged share is not offered");
    assert_eq!(shares.len(), 2);
    for share in &shares {
        assert_eq!(share.chunks[0], vec![share.shnum as u8; 1000]);
    }
    // The next call that can write sets it aside; the others stay.
    let s = server.store_mut();
    s.create_share(&[9; 16], 0, 10, lease()).unwrap();
    assert_eq!(s.damaged_rows_set_aside().unwrap(), 1);
    assert_eq!(
        s.list_shares(&si)
            .unwrap()
            .iter()
            .map(|i| i.shnum)
            .collect::<Vec<_>>(),
        [0, 2]
    );
    assert_eq!(s.shares_held(), 2);
    assert_eq!(s.read_share(&si, 2, 0, 1000).unwrap(), [2; 1000]);
}
