//! The disk share store against real files, real fsync and real SQLite: the `ShareStore`
//! contract, restarts, SIGKILL at random moments, leases and garbage collection, space limits.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration as StdDuration, Instant as StdInstant};

use lafs_core::server::{ConnectionId, ServerConfig, StorageServer, LEASE_DURATION};
use lafs_core::store::{Lease, ShareInfo, ShareStore, StoreError};
use lafs_core::time::Instant;
use lafs_core::wire::{
    LeaseSecrets, ReadRange, Refusal, Request, Response, ShareRead, ShareWrite, ShareWriteOutcome,
    StorageIndex,
};
use lafs_store::db::StoreDb;
use lafs_store::disk_store::{CancelReport, DiskShareStore, DiskStoreConfig, GcReport};
use lafs_store::leases::{hash_secret, StoredLease};
use rand::Rng;

const SI: StorageIndex = [7; 16];

/// No reserve (test machines have little disk), generous limits; every renewal recorded (the
/// tests' expiries are microseconds apart).
fn config() -> DiskStoreConfig {
    DiskStoreConfig {
        reserved_space: 0,
        max_share_size: 1 << 30,
        capacity: None,
        expire_leases: false,
        lease_renewal_granularity: std::time::Duration::ZERO,
        ..DiskStoreConfig::default()
    }
}

/// As [`config`], but every share in a file (the large-share path).
fn files_config() -> DiskStoreConfig {
    DiskStoreConfig {
        small_share_max: 0,
        ..config()
    }
}

fn with_capacity(capacity: u64, max_share_size: u64) -> DiskStoreConfig {
    DiskStoreConfig {
        capacity: Some(capacity),
        max_share_size,
        ..config()
    }
}

fn open(dir: &Path, config: DiskStoreConfig) -> DiskShareStore {
    DiskShareStore::open(dir, config).expect("open the store")
}

fn lease(secret: u8, expires: u64) -> Lease {
    Lease {
        renew_secret: [secret; 32],
        cancel_secret: [secret.wrapping_add(1); 32],
        expires: Instant(expires),
    }
}

/// The lease as the store reports it: digests in place of the secrets.
fn stored(secret: u8, expires: u64) -> Lease {
    StoredLease::from_lease(&lease(secret, expires)).to_lease()
}

fn put(store: &mut DiskShareStore, si: &StorageIndex, shnum: u16, data: &[u8], l: Lease) {
    store.create_share(si, shnum, data.len() as u64, l).unwrap();
    store.write_share(si, shnum, 0, data).unwrap();
    store.commit_share(si, shnum, data.len() as u64).unwrap();
}

fn incoming_entries(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("shares").join("incoming"))
        .unwrap()
        .count()
}

#[test]
fn in_progress_shares_are_invisible_until_committed() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path(), files_config());
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
    // An upload in progress cannot be created twice either.
    s.create_share(&SI, 4, 10, lease(1, 10)).unwrap();
    assert_eq!(
        s.create_share(&SI, 4, 10, lease(1, 10)),
        Err(StoreError::AlreadyExists)
    );
    // The file sits where Tahoe puts it, holding exactly the share data.
    let name = lafs_core::base32::encode(&SI);
    let path = dir
        .path()
        .join("shares")
        .join(&name[..2])
        .join(&name)
        .join("3");
    assert_eq!(std::fs::read(path).unwrap(), want);
}

#[test]
fn commit_truncates_to_the_written_length_and_zero_fills_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path(), config());
    s.create_share(&SI, 0, 1000, lease(1, 0)).unwrap();
    // Out of order, with a hole.
    s.write_share(&SI, 0, 20, b"tail").unwrap();
    s.write_share(&SI, 0, 0, b"head").unwrap();
    s.commit_share(&SI, 0, 30).unwrap();
    let got = s.read_share(&SI, 0, 0, 1000).unwrap();
    let mut want = b"head".to_vec();
    want.resize(20, 0);
    want.extend_from_slice(b"tail");
    want.resize(30, 0);
    assert_eq!(got, want);
    assert_eq!(s.space_used(), 30);
}

#[test]
fn space_counts_allocations_then_committed_lengths() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path(), with_capacity(1000, 600));
    assert_eq!(s.max_share_size(), 600);
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
    s.write_share(&SI, 0, 0, &[5; 50]).unwrap();
    s.commit_share(&SI, 0, 50).unwrap();
    assert_eq!((s.space_used(), s.space_available()), (50, 950));
    s.create_share(&SI, 1, 400, lease(1, 0)).unwrap();
    s.abort_share(&SI, 1).unwrap();
    assert_eq!(s.space_used(), 50);
    assert_eq!(s.uploads_in_progress(), 0);
    assert_eq!(incoming_entries(dir.path()), 0, "an abort leaves no files");
}

#[test]
fn writes_and_commits_stay_inside_the_allocation() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path(), config());
    s.create_share(&SI, 0, 10, lease(1, 0)).unwrap();
    assert_eq!(
        s.write_share(&SI, 0, 8, b"abc"),
        Err(StoreError::OutOfBounds {
            end: 11,
            allocated: 10
        })
    );
    assert!(matches!(
        s.write_share(&SI, 0, u64::MAX, b"a"),
        Err(StoreError::OutOfBounds { .. })
    ));
    s.write_share(&SI, 0, 7, b"abc").unwrap();
    assert_eq!(
        s.commit_share(&SI, 0, 11),
        Err(StoreError::OutOfBounds {
            end: 11,
            allocated: 10
        })
    );
    s.commit_share(&SI, 0, 10).unwrap();
    assert_eq!(s.read_share(&SI, 0, 7, 10).unwrap(), b"abc");
}

#[test]
fn unknown_shares_are_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path(), config());
    assert_eq!(s.list_shares(&SI).unwrap(), vec![]);
    assert_eq!(s.read_share(&SI, 0, 0, 1), Err(StoreError::NotFound));
    assert_eq!(s.write_share(&SI, 0, 0, b"x"), Err(StoreError::NotFound));
    assert_eq!(s.commit_share(&SI, 0, 0), Err(StoreError::NotFound));
    assert_eq!(s.abort_share(&SI, 0), Err(StoreError::NotFound));
    assert_eq!(s.add_lease(&SI, 0, lease(1, 1)), Err(StoreError::NotFound));
    assert_eq!(s.leases(&SI, 0), Err(StoreError::NotFound));
}

#[test]
fn leases_renew_by_renew_secret_and_never_shorten() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path(), config());
    // On an upload in progress (kept in memory)...
    s.create_share(&SI, 0, 1, lease(1, 100)).unwrap();
    s.add_lease(&SI, 0, lease(1, 50)).unwrap();
    s.add_lease(&SI, 0, lease(2, 70)).unwrap();
    s.add_lease(&SI, 0, lease(2, 90)).unwrap();
    assert_eq!(
        s.leases(&SI, 0).unwrap(),
        vec![stored(1, 100), stored(2, 90)]
    );
    // ...carried into the database at commit, and renewed there.
    s.commit_share(&SI, 0, 1).unwrap();
    s.add_lease(&SI, 0, lease(2, 200)).unwrap();
    s.add_lease(&SI, 0, lease(1, 10)).unwrap();
    s.add_lease(&SI, 0, lease(3, 5)).unwrap();
    let mut got = s.leases(&SI, 0).unwrap();
    got.sort_by_key(|l| l.expires);
    assert_eq!(got, vec![stored(3, 5), stored(1, 100), stored(2, 200)]);
    // The secrets themselves are not what is kept.
    assert!(got.iter().all(|l| l.renew_secret != [1; 32]));
    assert_eq!(s.add_lease(&SI, 1, lease(1, 1)), Err(StoreError::NotFound));
}

#[test]
fn storage_server_uploads_and_reads_through_the_disk_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), config());
    let mut server = StorageServer::new(store, ServerConfig::default());
    let t0 = Instant(1_700_000_000_000_000);
    let secrets = LeaseSecrets {
        renew: [1; 32],
        cancel: [2; 32],
    };
    let share =
        |n: u16| -> Vec<u8> { (0..5000u32).map(|i| (i * 7 + u32::from(n)) as u8).collect() };
    let writes = (0..3)
        .map(|n| ShareWrite {
            shnum: n,
            allocate: true,
            offset: 0,
            data: share(n),
            close: true,
        })
        .collect();
    let resp = server.handle_request(
        t0,
        ConnectionId(1),
        Request::ImmutableWrite {
            storage_index: SI,
            lease: secrets,
            allocated_size: 6000,
            total_shares: 10,
            writes,
        },
    );
    const COMMITTED: ShareWriteOutcome = ShareWriteOutcome::Written { committed: true };
    assert_eq!(
        resp,
        Response::ImmutableWrite {
            results: vec![(0, COMMITTED), (1, COMMITTED), (2, COMMITTED)],
            held: vec![0, 1, 2],
        }
    );
    let resp = server.handle_request(
        t0,
        ConnectionId(2),
        Request::ImmutableRead {
            storage_index: SI,
            shnums: vec![],
            max_shares: 2,
            ranges: vec![
                ReadRange {
                    offset: 0,
                    length: 10,
                },
                ReadRange {
                    offset: 4990,
                    length: 100,
                },
            ],
        },
    );
    let read = |n: u16| ShareRead {
        shnum: n,
        share_len: 5000,
        chunks: vec![share(n)[..10].to_vec(), share(n)[4990..].to_vec()],
    };
    assert_eq!(
        resp,
        Response::ImmutableRead {
            shares: vec![read(0), read(1)],
            held: vec![0, 1, 2],
        }
    );
    let leases = server.store().leases(&SI, 1).unwrap();
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].expires, t0 + LEASE_DURATION);
    assert_eq!(leases[0].renew_secret, hash_secret(&[1; 32]));
}

#[test]
fn restart_keeps_committed_shares_and_leases_and_drops_uploads() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = open(dir.path(), files_config());
        put(&mut s, &SI, 0, b"committed share", lease(1, 100));
        s.add_lease(&SI, 0, lease(2, 200)).unwrap();
        s.create_share(&SI, 1, 5000, lease(1, 100)).unwrap();
        s.write_share(&SI, 1, 0, &[9; 3000]).unwrap();
        s.create_share(&[8; 16], 0, 70, lease(1, 100)).unwrap();
        assert_eq!(s.space_used(), 15 + 5000 + 70);
        assert_eq!(
            s.shares_held(),
            1,
            "uploads in progress are not shares held"
        );
        assert!(incoming_entries(dir.path()) > 0);
        // Dropped without aborting: as a crash or a shutdown would leave it.
    }
    let mut s = open(dir.path(), files_config());
    assert_eq!(
        s.list_shares(&SI).unwrap(),
        vec![ShareInfo {
            shnum: 0,
            length: 15
        }]
    );
    assert_eq!(s.read_share(&SI, 0, 0, 100).unwrap(), b"committed share");
    let mut leases = s.leases(&SI, 0).unwrap();
    leases.sort_by_key(|l| l.expires);
    assert_eq!(leases, vec![stored(1, 100), stored(2, 200)]);
    // The uploads are gone with their space and their leases, and can start again.
    assert_eq!(s.space_used(), 15);
    assert_eq!(s.shares_held(), 1, "counted again from the tree on open");
    assert_eq!(s.uploads_in_progress(), 0);
    assert_eq!(incoming_entries(dir.path()), 0);
    assert_eq!(s.leases(&SI, 1), Err(StoreError::NotFound));
    assert_eq!(s.write_share(&SI, 1, 0, b"x"), Err(StoreError::NotFound));
    put(&mut s, &SI, 1, b"again", lease(3, 1));
    assert_eq!(s.space_used(), 20);
    assert_eq!(s.shares_held(), 2);
    assert_eq!(
        s.all_shares().unwrap(),
        vec![(SI, 0, 15), (SI, 1, 5)],
        "every committed share is found by a walk of the tree"
    );
}

#[test]
fn lease_rows_of_shares_that_never_landed_are_pruned_on_open() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path(), config()));
    {
        // As a crash between the lease write and the rename leaves it.
        let mut db = StoreDb::open(&dir.path().join("leases.db")).unwrap();
        db.add_or_renew(&SI, 4, &StoredLease::from_lease(&lease(1, 1)))
            .unwrap();
    }
    let mut s = open(dir.path(), config());
    assert_eq!(s.leases(&SI, 4), Err(StoreError::NotFound));
    // A new upload of that share starts with only its own lease.
    put(&mut s, &SI, 4, b"x", lease(2, 5));
    assert_eq!(s.leases(&SI, 4).unwrap(), vec![stored(2, 5)]);
}

#[test]
fn cancel_needs_the_right_secret_and_deletes_shares_left_without_lease() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path(), config());
    put(&mut s, &SI, 0, &[1; 100], lease(1, 100));
    put(&mut s, &SI, 1, &[1; 50], lease(1, 100));
    s.add_lease(&SI, 1, lease(5, 100)).unwrap();
    assert_eq!(s.cancel_lease(&SI, &[9; 32]), Err(StoreError::NotFound));
    // The renew secret is not the cancel secret.
    assert_eq!(s.cancel_lease(&SI, &[1; 32]), Err(StoreError::NotFound));
    assert_eq!(
        s.cancel_lease(&[0; 16], &[2; 32]),
        Err(StoreError::NotFound)
    );
    let report = s.cancel_lease(&SI, &[2; 32]).unwrap();
    assert_eq!(
        report,
        CancelReport {
            leases_cancelled: 2,
            shares_deleted: 1,
            bytes_freed: 100,
        }
    );
    assert_eq!(
        s.list_shares(&SI).unwrap(),
        vec![ShareInfo {
            shnum: 1,
            length: 50
        }]
    );
    assert_eq!(s.leases(&SI, 1).unwrap(), vec![stored(5, 100)]);
    assert_eq!(s.space_used(), 50);
    assert_eq!(s.cancel_lease(&SI, &[2; 32]), Err(StoreError::NotFound));
}

#[test]
fn garbage_collection_is_off_by_default() {
    assert!(!DiskStoreConfig::default().expire_leases);
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path(), config());
    put(&mut s, &SI, 0, &[1; 100], lease(1, 100));
    assert_eq!(
        s.collect_garbage(Instant(u64::MAX)).unwrap(),
        GcReport::default()
    );
    assert_eq!(s.read_share(&SI, 0, 0, 1).unwrap(), vec![1]);
}

#[test]
fn garbage_collection_deletes_shares_whose_leases_all_expired() {
    let dir = tempfile::tempdir().unwrap();
    let gc = DiskStoreConfig {
        expire_leases: true,
        ..config()
    };
    let mut s = open(dir.path(), gc.clone());
    let other: StorageIndex = [8; 16];
    put(&mut s, &SI, 0, &[1; 100], lease(1, 100));
    put(&mut s, &SI, 1, &[1; 30], lease(1, 100));
    s.add_lease(&SI, 1, lease(2, 300)).unwrap();
    put(&mut s, &other, 0, &[1; 7], lease(1, 100));
    // Renewal keeps a share alive.
    s.add_lease(&other, 0, lease(1, 500)).unwrap();
    // An upload in progress whose lease expired is not garbage.
    s.create_share(&SI, 2, 10, lease(1, 1)).unwrap();
    assert_eq!(s.collect_garbage(Instant(99)).unwrap(), GcReport::default());
    let report = s.collect_garbage(Instant(100)).unwrap();
    assert_eq!(
        report,
        GcReport {
            shares_deleted: 1,
            bytes_freed: 100
        }
    );
    assert_eq!(s.space_used(), 30 + 7 + 10);
    assert_eq!(s.shares_held(), 2);
    assert_eq!(s.read_share(&SI, 0, 0, 1), Err(StoreError::NotFound));
    assert_eq!(s.list_shares(&SI).unwrap().len(), 1);
    s.commit_share(&SI, 2, 0).unwrap();
    drop(s);
    // After a restart the expiries are still known.
    let mut s = open(dir.path(), gc);
    let report = s.collect_garbage(Instant(1000)).unwrap();
    assert_eq!(
        report,
        GcReport {
            shares_deleted: 3,
            bytes_freed: 37
        }
    );
    assert_eq!(s.space_used(), 0);
    assert_eq!(s.shares_held(), 0);
    assert_eq!(s.all_shares().unwrap(), vec![]);
    assert_eq!(
        std::fs::read_dir(dir.path().join("shares"))
            .unwrap()
            .count(),
        1,
        "only incoming/ is left: empty bucket directories are removed"
    );
}

#[test]
fn a_full_store_refuses_new_shares_with_a_clear_reason() {
    let dir = tempfile::tempdir().unwrap();
    // Full by configured capacity.
    let mut s = open(dir.path(), with_capacity(1000, 1000));
    put(&mut s, &SI, 0, &[1; 900], lease(1, 0));
    let err = s.create_share(&SI, 1, 200, lease(1, 0)).unwrap_err();
    assert_eq!(
        err,
        StoreError::NoSpace {
            needed: 200,
            available: 100
        }
    );
    assert!(err.to_string().contains("200 bytes needed, 100 available"));
    drop(s);
    // Full because the filesystem's free space is all reserved.
    let reserved = DiskStoreConfig {
        reserved_space: u64::MAX,
        ..config()
    };
    let s = open(dir.path(), reserved);
    assert_eq!(s.space_available(), 0);
    let mut server = StorageServer::new(s, ServerConfig::default());
    let resp = server.handle_request(
        Instant(0),
        ConnectionId(1),
        Request::ImmutableWrite {
            storage_index: SI,
            lease: LeaseSecrets {
                renew: [1; 32],
                cancel: [2; 32],
            },
            allocated_size: 10,
            total_shares: 10,
            writes: vec![ShareWrite {
                shnum: 1,
                allocate: true,
                offset: 0,
                data: vec![1; 10],
                close: true,
            }],
        },
    );
    assert_eq!(
        resp,
        Response::ImmutableWrite {
            results: vec![(
                1,
                ShareWriteOutcome::Refused(Refusal::NoSpace { available: 0 })
            )],
            held: vec![0],
        }
    );
}

// ---- crash safety -------------------------------------------------------------------------

const CRASH_DIR_ENV: &str = "LAFS_DISK_STORE_CRASH_DIR";
const CRASH_GEN_ENV: &str = "LAFS_DISK_STORE_CRASH_GEN";

/// Length of a share in the crash test: a function of its name.
fn crash_share_len(si: &StorageIndex, shnum: u16) -> u64 {
    let seed = u64::from_le_bytes(si[..8].try_into().unwrap()) ^ u64::from(shnum);
    1 + seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) % 60_000
}

/// Byte `i` of a share in the crash test: a function of its name and position.
fn crash_share_byte(si: &StorageIndex, shnum: u16, i: u64) -> u8 {
    let x = (i ^ (u64::from(si[1]) << 40) ^ (u64::from(si[2]) << 48) ^ (u64::from(shnum) << 32))
        .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (x >> 56) as u8
}

fn crash_share(si: &StorageIndex, shnum: u16) -> Vec<u8> {
    (0..crash_share_len(si, shnum))
        .map(|i| crash_share_byte(si, shnum, i))
        .collect()
}

/// Not a test on its own: run as a child process by
/// `sigkill_at_random_moments_never_leaves_a_torn_share`, it writes shares until it is killed.
#[test]
fn crash_child_writes_shares_until_killed() {
    let (Some(dir), Some(generation)) = (
        std::env::var_os(CRASH_DIR_ENV),
        std::env::var(CRASH_GEN_ENV).ok(),
    ) else {
        return;
    };
    let generation: u8 = generation.parse().unwrap();
    // Shares up to 60,000 bytes: about half become rows, half files.
    let both = DiskStoreConfig {
        small_share_max: 30_000,
        ..config()
    };
    let mut s = open(Path::new(&dir), both);
    for i in 0u32.. {
        let mut si = [0u8; 16];
        si[0] = generation;
        si[1..5].copy_from_slice(&i.to_be_bytes());
        for shnum in 0..(i % 3 + 1) as u16 {
            let data = crash_share(&si, shnum);
            let slack = u64::from(i % 5) * 100;
            s.create_share(&si, shnum, data.len() as u64 + slack, lease(1, 1))
                .unwrap();
            // Some uploads out of order (holes until the end), most in order.
            let mut chunks: Vec<(usize, &[u8])> = data
                .chunks(8192)
                .enumerate()
                .map(|(k, c)| (k * 8192, c))
                .collect();
            if i % 4 == 1 {
                chunks.reverse();
            }
            for (offset, chunk) in chunks {
                s.write_share(&si, shnum, offset as u64, chunk).unwrap();
            }
            if i % 7 == 3 {
                s.abort_share(&si, shnum).unwrap();
            } else if i % 3 != 2 {
                s.commit_share(&si, shnum, data.len() as u64).unwrap();
                if i % 2 == 0 {
                    s.add_lease(&si, shnum, lease(2, 2)).unwrap();
                }
            }
        }
        // Every third index commits its shares in one batch (as a storage server commits the
        // shares one request closes).
        if i % 3 == 2 && i % 7 != 3 {
            let batch: Vec<(u16, u64)> = (0..(i % 3 + 1) as u16)
                .map(|n| (n, crash_share_len(&si, n)))
                .collect();
            for result in s.commit_shares(&si, &batch) {
                result.unwrap();
            }
            let shnums: Vec<u16> = batch.iter().map(|&(n, _)| n).collect();
            s.add_leases(&si, &shnums, lease(2, 2)).unwrap();
        }
        // A slot of two mutable shares: created together, then rewritten in place.
        let mut msi = si;
        msi[0] |= 0x80;
        for version in 0..2u8 {
            let data0 = crash_mutable(&msi, 0, version);
            let data1 = crash_mutable(&msi, 1, version);
            let w0 = [dv(0, &data0)];
            let w1 = [dv(0, &data1)];
            s.write_mutable_shares(
                &msi,
                &RECORD,
                &[
                    MutableShareChange {
                        shnum: 0,
                        writes: &w0,
                        new_length: None,
                    },
                    MutableShareChange {
                        shnum: 1,
                        writes: &w1,
                        new_length: None,
                    },
                ],
            )
            .unwrap();
            s.add_leases(&msi, &[0, 1], lease(1, 1)).unwrap();
        }
    }
}

/// Version `version` of a mutable share in the crash test (every version has the same length).
fn crash_mutable(si: &StorageIndex, shnum: u16, version: u8) -> Vec<u8> {
    (0..crash_share_len(si, shnum))
        .map(|i| crash_share_byte(si, shnum, i) ^ version.wrapping_mul(0x5b))
        .collect()
}

#[test]
fn sigkill_at_random_moments_never_leaves_a_torn_share() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::thread_rng();
    let mut committed_total = 0;
    // Issue 15 asks for at least 50 kills per CI run against the store (with the kills at every
    // step of a mutable write in crash_steps.rs, this test's are the random half).
    for generation in 1..=40u8 {
        let mut child = Command::new(&exe)
            .args([
                "disk_store::crash_child_writes_shares_until_killed",
                "--exact",
                "--test-threads=1",
            ])
            .env(CRASH_DIR_ENV, dir.path())
            .env(CRASH_GEN_ENV, generation.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(StdDuration::from_millis(rng.gen_range(20..200)));
        // The child never ends on its own: had it died, the store would have been left alone.
        assert!(child.try_wait().unwrap().is_none(), "the writer died early");
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let s = open(dir.path(), config());
        assert_eq!(incoming_entries(dir.path()), 0);
        let all = s.all_shares().unwrap();
        let mut bytes = 0;
        let mut shares = Vec::new();
        for &(si, shnum, len) in &all {
            if si[0] & 0x80 == 0 {
                shares.push((si, shnum, len));
                continue;
            }
            // A mutable share: whole, at one of its versions (a kill never tears one).
            let data = mdata(&s, &si, shnum);
            assert!(
                data == crash_mutable(&si, shnum, 0) || data == crash_mutable(&si, shnum, 1),
                "torn mutable share {si:?}/{shnum}"
            );
            bytes += len;
        }
        for &(si, shnum, len) in &shares {
            assert!(si[0] <= generation);
            assert!(si[0] & 0x80 == 0);
            assert_eq!(
                len,
                crash_share_len(&si, shnum),
                "torn share {si:?}/{shnum}"
            );
            let data = s.read_share(&si, shnum, 0, len).unwrap();
            assert!(
                data == crash_share(&si, shnum),
                "wrong bytes in {si:?}/{shnum}"
            );
            assert!(
                !s.leases(&si, shnum).unwrap().is_empty(),
                "share without lease"
            );
            bytes += len;
        }
        assert_eq!(s.space_used(), bytes);
        committed_total = shares.len();
        eprintln!("after kill {generation}: {committed_total} shares, {bytes} bytes, all intact");
    }
    assert!(committed_total > 0, "the writer never committed a share");
}

// ---- cost ---------------------------------------------------------------------------------

#[test]
fn commit_cost_per_share_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path(), config());
    let mut times = Vec::new();
    for i in 0..40u8 {
        let si = [i; 16];
        s.create_share(&si, 0, 4096, lease(1, 1)).unwrap();
        s.write_share(&si, 0, 0, &[i; 4096]).unwrap();
        let t = StdInstant::now();
        s.commit_share(&si, 0, 4096).unwrap();
        times.push(t.elapsed());
    }
    times.sort();
    eprintln!(
        "commit_share of a 4 KiB share (fsync file + SQLite + rename + fsync dir): \
         p50 {:?}, p90 {:?}, max {:?}",
        times[times.len() / 2],
        times[times.len() * 9 / 10],
        times[times.len() - 1]
    );
}

// ---- mutable shares ----

use lafs_core::store::{EnablerRecord, MutableShareChange, MutableShareInfo};
use lafs_core::wire::{DataVector, MutableShareWrite, TestVector};

const WE: [u8; 32] = [0xee; 32];
const NODE: [u8; 20] = [0x42; 20];
const RECORD: EnablerRecord = EnablerRecord {
    write_enabler: WE,
    node_id: NODE,
};
const MUTABLE_V2_MAGIC: &[u8; 32] = b"Tahoe mutable container v2\n\xc3\x55\x21\x99\x25";

fn dv(offset: u64, data: &[u8]) -> DataVector {
    DataVector {
        offset,
        data: data.to_vec(),
    }
}

/// Applies one share's writes (and new length) to a mutable share of `si`.
fn mwrite(
    store: &mut DiskShareStore,
    si: &StorageIndex,
    shnum: u16,
    writes: &[DataVector],
    new_length: Option<u64>,
) -> Result<(), StoreError> {
    store.write_mutable_shares(
        si,
        &RECORD,
        &[MutableShareChange {
            shnum,
            writes,
            new_length,
        }],
    )
}

fn mdata(store: &DiskShareStore, si: &StorageIndex, shnum: u16) -> Vec<u8> {
    store
        .read_mutable_share(si, shnum, 0, u64::MAX)
        .expect("read the mutable share")
}

fn mserver(store: DiskShareStore) -> StorageServer<DiskShareStore> {
    StorageServer::new(
        store,
        ServerConfig {
            node_id: NODE,
            ..ServerConfig::default()
        },
    )
}

fn slot_write(
    server: &mut StorageServer<DiskShareStore>,
    we: [u8; 32],
    shares: Vec<MutableShareWrite>,
    read_ranges: Vec<ReadRange>,
) -> Response {
    server.handle_request(
        Instant(1_000),
        ConnectionId(1),
        Request::MutableWrite {
            storage_index: SI,
            write_enabler: we,
            lease: LeaseSecrets {
                renew: [1; 32],
                cancel: [2; 32],
            },
            shares,
            read_ranges,
        },
    )
}

fn share_write(
    shnum: u16,
    expect: Option<&[u8]>,
    data: &[u8],
    new_length: Option<u64>,
) -> MutableShareWrite {
    MutableShareWrite {
        shnum,
        tests: expect
            .map(|e| TestVector {
                offset: 0,
                length: e.len().max(1) as u64,
                specimen: e.to_vec(),
            })
            .into_iter()
            .collect(),
        writes: vec![dv(0, data)],
        new_length,
    }
}

#[test]
fn mutable_shares_are_tahoe_v2_containers_with_empty_lease_slots() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path(), files_config());
    mwrite(&mut s, &SI, 3, &[dv(0, b"hello mutable")], None).unwrap();
    let raw = std::fs::read(s.share_path(&SI, 3)).unwrap();
    assert_eq!(raw.len(), 468 + 13 + 4);
    assert_eq!(&raw[..32], MUTABLE_V2_MAGIC);
    assert_eq!(&raw[32..52], &NODE);
    assert_eq!(&raw[52..84], &WE);
    assert_eq!(raw[84..92], 13u64.to_be_bytes());
    assert_eq!(raw[92..100], (468u64 + 13).to_be_bytes());
    assert!(
        raw[100..468].iter().all(|&b| b == 0),
        "lease slots stay empty"
    );
    assert_eq!(&raw[468..481], b"hello mutable");
    assert_eq!(&raw[481..], &[0, 0, 0, 0]);
    assert_eq!(
        s.list_mutable_shares(&SI).unwrap(),
        vec![MutableShareInfo {
            shnum: 3,
            length: 13,
            enabler: RECORD
        }]
    );
    assert_eq!(s.space_used(), raw.len() as u64);
    assert_eq!(incoming_entries(dir.path()), 0);
}

#[test]
fn mutable_writes_zero_fill_truncate_regrow_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path(), files_config());
    mwrite(&mut s, &SI, 0, &[dv(4, b"xy")], None).unwrap();
    assert_eq!(mdata(&s, &SI, 0), b"\0\0\0\0xy");
    // In place, same size.
    mwrite(&mut s, &SI, 0, &[dv(0, b"ab")], None).unwrap();
    assert_eq!(mdata(&s, &SI, 0), b"ab\0\0xy");
    // Writes in order, then a truncation; a longer new_length is ignored.
    mwrite(&mut s, &SI, 0, &[dv(0, b"abcdefgh"), dv(2, b"C")], Some(5)).unwrap();
    assert_eq!(mdata(&s, &SI, 0), b"abCde");
    mwrite(&mut s, &SI, 0, &[], Some(50)).unwrap();
    assert_eq!(mdata(&s, &SI, 0), b"abCde");
    // Growing again exposes zeros where the truncated bytes were.
    mwrite(&mut s, &SI, 0, &[dv(7, b"!")], None).unwrap();
    assert_eq!(mdata(&s, &SI, 0), b"abCde\0\0!");
    assert_eq!(s.read_mutable_share(&SI, 0, 6, 100).unwrap(), b"\0!");
    assert_eq!(s.read_mutable_share(&SI, 0, 60, 1).unwrap(), b"");
    let file_len = std::fs::metadata(s.share_path(&SI, 0)).unwrap().len();
    assert_eq!(file_len, 468 + 8 + 4);
    assert_eq!(s.space_used(), file_len);
    assert_eq!(s.shares_held(), 1, "rewrites in place do not add shares");
    // A second share, then both deleted: the bucket directory goes too.
    mwrite(&mut s, &SI, 1, &[dv(0, b"one")], None).unwrap();
    assert_eq!(s.shares_held(), 2);
    mwrite(&mut s, &SI, 0, &[dv(0, b"zz")], Some(0)).unwrap();
    assert_eq!(
        s.read_mutable_share(&SI, 0, 0, 1),
        Err(StoreError::NotFound)
    );
    mwrite(&mut s, &SI, 1, &[], Some(0)).unwrap();
    assert_eq!(s.list_mutable_shares(&SI).unwrap(), vec![]);
    assert!(!s.share_path(&SI, 1).parent().unwrap().exists());
    assert_eq!(s.space_used(), 0);
    assert_eq!(s.shares_held(), 0);
    // Deleting what is not there creates nothing.
    mwrite(&mut s, &SI, 9, &[dv(0, b"x")], Some(0)).unwrap();
    assert_eq!(s.shares_held(), 0);
    assert_eq!(s.list_mutable_shares(&SI).unwrap(), vec![]);
}

#[test]
fn a_mutable_write_that_does_not_fit_changes_nothing_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let in_files = DiskStoreConfig {
        small_share_max: 0,
        ..with_capacity(1_000, 100)
    };
    let mut s = open(dir.path(), in_files);
    mwrite(&mut s, &SI, 0, &[dv(0, b"0123456789")], None).unwrap();
    let path = s.share_path(&SI, 0);
    let before = std::fs::read(&path).unwrap();
    let used = s.space_used();
    assert!(matches!(
        mwrite(&mut s, &SI, 0, &[dv(95, b"0123456789")], None),
        Err(StoreError::TooLarge { .. })
    ));
    // Two new containers of 472 + 50 bytes do not fit in the 518 bytes left.
    let two = [
        MutableShareChange {
            shnum: 1,
            writes: &[dv(0, &[1; 50])],
            new_length: None,
        },
        MutableShareChange {
            shnum: 2,
            writes: &[dv(0, &[2; 50])],
            new_length: None,
        },
    ];
    assert!(matches!(
        s.write_mutable_shares(&SI, &RECORD, &two),
        Err(StoreError::NoSpace { .. })
    ));
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert_eq!(s.list_mutable_shares(&SI).unwrap().len(), 1);
    assert_eq!(s.space_used(), used);
}

#[test]
fn mutable_and_immutable_shares_are_kept_apart_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path(), config());
    let imm: StorageIndex = [1; 16];
    put(&mut s, &imm, 0, &[0, 0, 0, 2, 9, 9], lease(1, 10));
    assert!(matches!(
        mwrite(&mut s, &imm, 1, &[dv(0, b"m")], None),
        Err(StoreError::KindConflict(_))
    ));
    assert_eq!(s.list_mutable_shares(&imm).unwrap(), vec![]);
    assert_eq!(
        s.read_mutable_share(&imm, 0, 0, 1),
        Err(StoreError::NotFound)
    );
    mwrite(&mut s, &SI, 0, &[dv(0, b"mutable")], None).unwrap();
    assert_eq!(s.list_shares(&SI).unwrap(), vec![]);
    assert_eq!(s.read_share(&SI, 0, 0, 10), Err(StoreError::NotFound));
    assert!(matches!(
        s.create_share(&SI, 1, 10, lease(1, 10)),
        Err(StoreError::KindConflict(_))
    ));
    // An upload that would look like a mutable container is refused at commit.
    let sneaky: StorageIndex = [2; 16];
    s.create_share(&sneaky, 0, 40, lease(1, 10)).unwrap();
    s.write_share(&sneaky, 0, 0, MUTABLE_V2_MAGIC).unwrap();
    assert!(matches!(
        s.commit_share(&sneaky, 0, 40),
        Err(StoreError::KindConflict(_))
    ));
    assert_eq!(s.list_shares(&sneaky).unwrap(), vec![]);
}

#[test]
fn slots_enablers_data_and_leases_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = mserver(open(dir.path(), config()));
    let r = slot_write(
        &mut server,
        WE,
        vec![
            share_write(0, Some(b""), b"zero-v1", None),
            share_write(5, Some(b""), b"five-v1", None),
        ],
        vec![],
    );
    assert_eq!(
        r,
        Response::MutableWrite {
            applied: true,
            reads: vec![]
        }
    );
    let used = server.store().space_used();
    drop(server);
    let mut server = mserver(open(dir.path(), config()));
    assert_eq!(server.store().space_used(), used);
    let held = server.store().list_mutable_shares(&SI).unwrap();
    assert_eq!(
        held.iter()
            .map(|h| (h.shnum, h.length, h.enabler))
            .collect::<Vec<_>>(),
        vec![(0, 7, RECORD), (5, 7, RECORD)]
    );
    assert_eq!(server.store().leases(&SI, 5).unwrap().len(), 1);
    // The recorded enabler is still enforced, naming the node that recorded it.
    match slot_write(
        &mut server,
        [9; 32],
        vec![share_write(0, None, b"x", None)],
        vec![],
    ) {
        Response::Error {
            kind: lafs_core::wire::ErrorKind::BadWriteEnabler,
            message,
        } => assert!(
            message.contains(&lafs_core::base32::encode(&NODE)),
            "{message}"
        ),
        other => panic!("{other:?}"),
    }
    // Test-and-set: of two writers expecting v1, exactly one wins; the loser sees v2.
    let a = slot_write(
        &mut server,
        WE,
        vec![share_write(0, Some(b"zero-v1"), b"zero-v2A", None)],
        vec![ReadRange {
            offset: 0,
            length: 100,
        }],
    );
    let b = slot_write(
        &mut server,
        WE,
        vec![share_write(0, Some(b"zero-v1"), b"zero-v2B", None)],
        vec![ReadRange {
            offset: 0,
            length: 100,
        }],
    );
    // The winner's reads were taken before its writes.
    assert_eq!(
        a,
        Response::MutableWrite {
            applied: true,
            reads: vec![
                ShareRead {
                    shnum: 0,
                    share_len: 7,
                    chunks: vec![b"zero-v1".to_vec()]
                },
                ShareRead {
                    shnum: 5,
                    share_len: 7,
                    chunks: vec![b"five-v1".to_vec()]
                },
            ]
        }
    );
    assert!(matches!(
        &b,
        Response::MutableWrite { applied: false, reads } if reads[0].chunks[0] == b"zero-v2A"
    ));
    drop(server);
    let s = open(dir.path(), config());
    assert_eq!(mdata(&s, &SI, 0), b"zero-v2A");
}

#[test]
fn add_lease_and_cancel_work_on_mutable_shares() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = mserver(open(dir.path(), config()));
    slot_write(
        &mut server,
        WE,
        vec![share_write(0, None, b"data", None)],
        vec![],
    );
    let r = server.handle_request(
        Instant(2_000),
        ConnectionId(1),
        Request::AddLease {
            storage_index: SI,
            lease: LeaseSecrets {
                renew: [3; 32],
                cancel: [4; 32],
            },
        },
    );
    assert_eq!(r, Response::Done);
    assert_eq!(server.store().leases(&SI, 0).unwrap().len(), 2);
    let s = server.store_mut();
    s.cancel_lease(&SI, &[4; 32]).unwrap();
    let report = s.cancel_lease(&SI, &[2; 32]).unwrap();
    assert_eq!(report.shares_deleted, 1);
    assert_eq!(s.list_mutable_shares(&SI).unwrap(), vec![]);
    assert_eq!(s.space_used(), 0);
}

/// The SDMF and MDMF share files Tahoe 1.20 wrote, copied into our tree, read as Tahoe wrote
/// them; and a write that grows one moves its extra-lease block as Tahoe would.
#[test]
fn tahoe_written_mutable_containers_are_read_and_written() {
    let vectors = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors/tahoe-shares");
    let cases = [
        ("sdmf-2000-b", "273trqb3phgwy44aep47sxkzuy"),
        ("mdmf-300000-bar", "47kidcetkhzlw2eies3v7k2c2e"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (case, si_b32) in cases {
        let si: StorageIndex = lafs_core::base32::decode_array(si_b32).unwrap();
        for server in std::fs::read_dir(vectors.join(case)).unwrap() {
            let server = server.unwrap().path();
            // One store per Tahoe server, as the shares were spread.
            let root = dir.path().join(case).join(server.file_name().unwrap());
            let bucket = root.join("shares").join(&si_b32[..2]).join(si_b32);
            std::fs::create_dir_all(&bucket).unwrap();
            for share in std::fs::read_dir(&server).unwrap() {
                let share = share.unwrap().path();
                let name = share.file_name().unwrap().to_owned();
                std::fs::copy(&share, bucket.join(&name)).unwrap();
                let shnum: u16 = name.to_str().unwrap().parse().unwrap();
                files.push((root.clone(), si, shnum, std::fs::read(&share).unwrap()));
            }
        }
    }
    assert!(files.len() >= 20, "{} files", files.len());
    // Each store opened once: reopening races with the crash test's child processes, which
    // may briefly hold a duplicate of the directory lock between fork and exec.
    let roots: std::collections::BTreeSet<_> = files.iter().map(|f| f.0.clone()).collect();
    for root in roots {
        let s = open(&root, config());
        for (_, si, shnum, raw) in files.iter().filter(|f| f.0 == root) {
            let data_len = u64::from_be_bytes(raw[84..92].try_into().unwrap());
            let held = s.list_mutable_shares(si).unwrap();
            let info = held
                .iter()
                .find(|h| h.shnum == *shnum)
                .unwrap_or_else(|| panic!("{root:?} share {shnum}: only {held:?}"));
            assert_eq!(info.length, data_len);
            assert_eq!(&info.enabler.node_id[..], &raw[32..52]);
            assert_eq!(&info.enabler.write_enabler[..], &raw[52..84]);
            assert_eq!(
                mdata(&s, si, *shnum),
                &raw[468..468 + data_len as usize],
                "{root:?} share {shnum}"
            );
            assert_eq!(s.list_shares(si).unwrap(), vec![]);
        }
    }
    // Grow one share: the data lands, Tahoe's lease slots stay, and the extra-lease block moves
    // to just after the new data.
    let (root, si, shnum, raw) = &files[0];
    let mut s = open(root, config());
    let data_len = u64::from_be_bytes(raw[84..92].try_into().unwrap());
    let enabler = EnablerRecord {
        write_enabler: raw[52..84].try_into().unwrap(),
        node_id: raw[32..52].try_into().unwrap(),
    };
    s.write_mutable_shares(
        si,
        &enabler,
        &[MutableShareChange {
            shnum: *shnum,
            writes: &[dv(data_len + 10, b"tail")],
            new_length: None,
        }],
    )
    .unwrap();
    let new_len = data_len + 14;
    let after = std::fs::read(s.share_path(si, *shnum)).unwrap();
    assert_eq!(&after[..84], &raw[..84]);
    assert_eq!(after[84..92], new_len.to_be_bytes());
    assert_eq!(after[92..100], (468 + new_len).to_be_bytes());
    assert_eq!(&after[100..468], &raw[100..468]);
    let old_block_at = u64::from_be_bytes(raw[92..100].try_into().unwrap()) as usize;
    assert_eq!(&after[468 + new_len as usize..], &raw[old_block_at..]);
    let mut want = raw[468..468 + data_len as usize].to_vec();
    want.extend_from_slice(&[0; 10]);
    want.extend_from_slice(b"tail");
    assert_eq!(mdata(&s, si, *shnum), want);
}

// ---- batches ---------------------------------------------------------------------------------

fn share_path(dir: &Path, si: &StorageIndex, shnum: u16) -> std::path::PathBuf {
    let name = lafs_core::base32::encode(si);
    dir.join("shares")
        .join(&name[..2])
        .join(&name)
        .join(shnum.to_string())
}

#[test]
fn a_batch_commit_lands_the_good_shares_and_reports_the_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path(), files_config());
    for shnum in 0..4u16 {
        s.create_share(&SI, shnum, 100, lease(shnum as u8 + 1, 10))
            .unwrap();
        s.write_share(&SI, shnum, 0, &[shnum as u8; 50]).unwrap();
    }
    s.add_lease(&SI, 2, lease(9, 20)).unwrap();
    let results = s.commit_shares(
        &SI,
        &[
            (0, 50),
            (1, 101), // past its allocation
            (2, 60),  // extended with zeros
            (9, 10),  // never created
            (0, 50),  // named twice: the first entry committed it
            (3, 40),  // cut
        ],
    );
    assert_eq!(
        results,
        vec![
            Ok(()),
            Err(StoreError::OutOfBounds {
                end: 101,
                allocated: 100
            }),
            Ok(()),
            Err(StoreError::NotFound),
            Err(StoreError::NotFound),
            Ok(()),
        ]
    );
    let lengths: Vec<(u16, u64)> = s
        .list_shares(&SI)
        .unwrap()
        .iter()
        .map(|i| (i.shnum, i.length))
        .collect();
    assert_eq!(lengths, vec![(0, 50), (2, 60), (3, 40)]);
    let mut two = vec![2u8; 50];
    two.extend([0; 10]);
    assert_eq!(std::fs::read(share_path(dir.path(), &SI, 2)).unwrap(), two);
    assert_eq!(
        std::fs::read(share_path(dir.path(), &SI, 3)).unwrap(),
        [3u8; 40]
    );
    assert_eq!(
        s.leases(&SI, 2).unwrap(),
        vec![stored(3, 10), stored(9, 20)]
    );
    assert_eq!(s.leases(&SI, 0).unwrap(), vec![stored(1, 10)]);
    // The refused share is still in progress and can commit within its allocation.
    assert_eq!(s.uploads_in_progress(), 1);
    assert_eq!(s.space_used(), 50 + 60 + 40 + 100);
    s.commit_share(&SI, 1, 50).unwrap();
    assert_eq!(s.space_used(), 200);
    assert_eq!(incoming_entries(dir.path()), 0);
    drop(s);
    // Everything, leases included, is there after a restart.
    let s = open(dir.path(), files_config());
    assert_eq!(s.all_shares().unwrap().len(), 4);
    assert_eq!(s.leases(&SI, 3).unwrap(), vec![stored(4, 10)]);
}

#[test]
fn uploads_in_progress_leave_no_directories_behind() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path(), files_config());
    let other: StorageIndex = [0x55; 16];
    s.create_share(&SI, 0, 10, lease(1, 1)).unwrap();
    s.create_share(&other, 3, 10, lease(1, 1)).unwrap();
    s.write_share(&other, 3, 0, b"0123456789").unwrap();
    // Uploads sit flat in incoming/, one file each.
    assert_eq!(incoming_entries(dir.path()), 2);
    s.abort_share(&SI, 0).unwrap();
    s.commit_share(&other, 3, 10).unwrap();
    assert_eq!(incoming_entries(dir.path()), 0);
    assert_eq!(
        std::fs::read(share_path(dir.path(), &other, 3)).unwrap(),
        b"0123456789"
    );
}

/// A storage index of its own for each upload of the test below.
fn index_of(shnum: u16) -> StorageIndex {
    let mut si = [0; 16];
    si[0] = (shnum % 251) as u8;
    si[1] = (shnum / 251) as u8;
    for (i, b) in si.iter_mut().enumerate().skip(2) {
        *b = i as u8 - 1;
    }
    si
}

#[test]
fn many_open_uploads_still_write_and_commit() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path(), config());
    // More uploads than keep their file open between calls.
    let n = 300u16;
    for shnum in 0..n {
        let si = index_of(shnum);
        s.create_share(&si, shnum, 8, lease(1, 1)).unwrap();
    }
    for shnum in 0..n {
        let si = index_of(shnum);
        s.write_share(&si, shnum, 0, &shnum.to_be_bytes()).unwrap();
        s.commit_share(&si, shnum, 2).unwrap();
        assert_eq!(s.read_share(&si, shnum, 0, 2).unwrap(), shnum.to_be_bytes());
    }
    assert_eq!(s.all_shares().unwrap().len(), usize::from(n));
}

#[test]
fn add_leases_renews_every_share_named_and_stops_at_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path(), config());
    put(&mut s, &SI, 0, b"a", lease(1, 10));
    put(&mut s, &SI, 1, b"b", lease(1, 10));
    s.create_share(&SI, 2, 5, lease(1, 10)).unwrap();
    s.add_leases(&SI, &[0, 2, 1], lease(1, 30)).unwrap();
    for shnum in 0..3 {
        assert_eq!(s.leases(&SI, shnum).unwrap(), vec![stored(1, 30)]);
    }
    assert_eq!(
        s.add_leases(&SI, &[0, 7, 1], lease(2, 40)),
        Err(StoreError::NotFound)
    );
    assert_eq!(
        s.leases(&SI, 0).unwrap(),
        vec![stored(1, 30), stored(2, 40)]
    );
    assert_eq!(s.leases(&SI, 1).unwrap(), vec![stored(1, 30)]);
}

#[test]
fn a_mutable_batch_creates_changes_and_deletes_shares_together() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(dir.path(), files_config());
    let (a, b, c) = ([dv(0, b"one")], [dv(0, b"two")], [dv(3, b"+")]);
    let change = |shnum, writes, new_length| MutableShareChange {
        shnum,
        writes,
        new_length,
    };
    s.write_mutable_shares(
        &SI,
        &RECORD,
        &[change(0, &a[..], None), change(1, &b[..], None)],
    )
    .unwrap();
    assert_eq!(incoming_entries(dir.path()), 0);
    // A share named twice takes both changes in order; another is deleted; a third is new.
    s.write_mutable_shares(
        &SI,
        &RECORD,
        &[
            change(2, &a[..], None),
            change(2, &c[..], None),
            change(1, &[], Some(0)),
            change(0, &c[..], None),
        ],
    )
    .unwrap();
    assert_eq!(mdata(&s, &SI, 0), b"one+");
    assert_eq!(mdata(&s, &SI, 2), b"one+");
    assert_eq!(
        s.read_mutable_share(&SI, 1, 0, 9),
        Err(StoreError::NotFound)
    );
    assert_eq!(incoming_entries(dir.path()), 0);
    let used = s.space_used();
    drop(s);
    let s = open(dir.path(), files_config());
    assert_eq!(s.space_used(), used);
    assert_eq!(mdata(&s, &SI, 2), b"one+");
    assert_eq!(
        std::fs::read(share_path(dir.path(), &SI, 2)).unwrap()[..32],
        MUTABLE_V2_MAGIC[..]
    );
}

// ---- write-path timing (run by hand) ----------------------------------------------------------

/// The requests one storage server sees for a 1 kB upload or a small mutable publish on a
/// 3-of-10 grid of five servers: two shares each.
fn timing_requests(si: StorageIndex, round: u32) -> [Request; 3] {
    let secrets = LeaseSecrets {
        renew: [1; 32],
        cancel: [2; 32],
    };
    let immutable = Request::ImmutableWrite {
        storage_index: si,
        lease: secrets,
        allocated_size: 1200,
        total_shares: 10,
        writes: (0..2)
            .map(|n| ShareWrite {
                shnum: n,
                allocate: true,
                offset: 0,
                data: vec![n as u8 + 1; 1200],
                close: true,
            })
            .collect(),
    };
    let mut msi = si;
    msi[15] ^= 0xff;
    let create = Request::MutableWrite {
        storage_index: msi,
        write_enabler: WE,
        lease: secrets,
        shares: (0..2)
            .map(|n| share_write(n, Some(&[]), &[round as u8; 1500], None))
            .collect(),
        read_ranges: vec![],
    };
    let update = Request::MutableWrite {
        storage_index: msi,
        write_enabler: WE,
        lease: secrets,
        shares: (0..2)
            .map(|n| {
                share_write(
                    n,
                    Some(&[round as u8; 1500]),
                    &[round as u8 + 1; 1500],
                    None,
                )
            })
            .collect(),
        read_ranges: vec![],
    };
    [immutable, create, update]
}

fn p50_p90(mut times: Vec<StdDuration>) -> String {
    times.sort();
    format!(
        "p50 {:>7.3} ms, p90 {:>7.3} ms",
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[times.len() * 9 / 10].as_secs_f64() * 1e3
    )
}

/// `cargo test --release -p lafs-store --test disk_store write_path_timing -- --ignored
/// --nocapture`: per-request latency of the three small writes, on one store and on five stores
/// written at once (as the five servers of `lafs bench`). LAFS_TIMING_ROUNDS sets the rounds.
#[test]
#[ignore = "a timing report, not a check (it asserts nothing and CI never fails on timing); run by hand"]
fn write_path_timing() {
    let rounds: u32 = std::env::var("LAFS_TIMING_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(100);
    for servers in [1usize, 5] {
        let dirs: Vec<_> = (0..servers).map(|_| tempfile::tempdir().unwrap()).collect();
        let barrier = std::sync::Barrier::new(servers);
        let results: Vec<[Vec<StdDuration>; 3]> = std::thread::scope(|scope| {
            let handles: Vec<_> = dirs
                .iter()
                .map(|dir| {
                    let barrier = &barrier;
                    scope.spawn(move || {
                        let mut server = mserver(open(dir.path(), config()));
                        let mut times: [Vec<StdDuration>; 3] = Default::default();
                        for round in 0..rounds {
                            let mut si = [0u8; 16];
                            si[..4].copy_from_slice(&round.to_be_bytes());
                            for (kind, req) in timing_requests(si, round).into_iter().enumerate() {
                                barrier.wait();
                                let t = StdInstant::now();
                                let resp =
                                    server.handle_request(Instant(1_000), ConnectionId(1), req);
                                times[kind].push(t.elapsed());
                                assert!(
                                    matches!(
                                        resp,
                                        Response::ImmutableWrite { .. }
                                            | Response::MutableWrite { applied: true, .. }
                                    ),
                                    "{resp:?}"
                                );
                            }
                        }
                        times
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (kind, name) in [
            "1 kB immutable, 2 shares",
            "mutable create, 2 shares",
            "mutable update, 2 shares",
        ]
        .iter()
        .enumerate()
        {
            let all: Vec<StdDuration> = results.iter().flat_map(|r| r[kind].clone()).collect();
            eprintln!("{servers} store(s): {name:<26} {}", p50_p90(all));
        }
    }
}
