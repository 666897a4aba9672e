//! Mutable files (SDMF and MDMF) over the in-memory grid: contents, round-trip counts, version
//! rules under concurrent writers, and integrity failures.

use lafs_core::cap::Cap;
use lafs_core::crypto::key_source::{FixtureKeys, KeySource};
use lafs_core::mutable::layout::MutableFormat;
use lafs_core::mutable::{FileKeys, ModifyError, PublishError, RetrieveError, RetrieveEvent};
use lafs_core::testing::grid::{server_id, test_data, Grid};
use lafs_core::testing::keys::fixture_keys;

fn si_of(cap: &Cap) -> [u8; 16] {
    FileKeys::from_cap(cap).unwrap().storage_index
}

fn keys() -> FixtureKeys {
    fixture_keys()
}

#[test]
fn create_then_read_is_one_round_trip_each_for_small_files() {
    let mut keys = keys();
    for format in [MutableFormat::Sdmf, MutableFormat::Mdmf] {
        let mut grid = Grid::new(10);
        let data = test_data(5000, 1);
        let (made, run) = grid.create_mutable(format, keys.next_key().unwrap(), &data);
        let made = made.unwrap();
        assert_eq!(run.rounds, 1, "{format:?} create");
        assert_eq!(made.placed.len(), 10);
        assert_eq!(made.version.seqnum, 1);
        let (got, run, _) = grid.retrieve(&made.cap, None);
        let (bytes, result) = got.unwrap();
        assert_eq!(bytes, data);
        assert_eq!(run.rounds, 1, "{format:?} read");
        assert_eq!(result.version.seqnum, 1);
        // The read cap reads it too, and cannot write.
        let ro = made.cap.read_only().unwrap();
        assert_eq!(grid.retrieve(&ro, None).0.unwrap().0, data);
        assert_eq!(
            grid.update_mutable(&ro, b"nope", None).0.unwrap_err(),
            PublishError::ReadOnly
        );
    }
}

#[test]
fn update_is_one_round_trip_warm_and_two_cold() {
    let mut grid = Grid::new(10);
    let v1 = test_data(3000, 2);
    let made = grid
        .create_mutable(MutableFormat::Sdmf, keys().next_key().unwrap(), &v1)
        .0
        .unwrap();
    // Warm: the map from the create.
    let v2 = test_data(4000, 3);
    let (r, run) = grid.update_mutable(&made.cap, &v2, Some(made.map));
    let r = r.unwrap();
    assert_eq!(run.rounds, 1, "warm update");
    assert_eq!(r.version.seqnum, 2);
    // Cold: no map; the key comes from the shares.
    let v3 = test_data(100, 4);
    let (r3, run) = grid.update_mutable(&made.cap, &v3, None);
    assert_eq!(run.rounds, 2, "cold update");
    assert_eq!(r3.unwrap().version.seqnum, 3);
    // A read's map is warm too: read-modify-write is two round trips.
    let (got, _, _) = grid.retrieve(&made.cap, None);
    let (bytes, read) = got.unwrap();
    assert_eq!(bytes, v3);
    let (r4, run) = grid.update_mutable(&made.cap, b"four", Some(read.map));
    assert_eq!(run.rounds, 1);
    assert_eq!(r4.unwrap().version.seqnum, 4);
    assert_eq!(grid.retrieve(&made.cap, None).0.unwrap().0, b"four");
}

#[test]
fn mdmf_large_file_reads_by_segment_and_ranges_touch_only_their_segments() {
    let mut grid = Grid::new(10);
    let data = test_data(1_000_000, 5);
    let made = grid
        .create_mutable(MutableFormat::Mdmf, keys().next_key().unwrap(), &data)
        .0
        .unwrap();
    let segments = made.version.num_segments();
    assert_eq!(segments, 8);
    let (got, run, _) = grid.retrieve(&made.cap, None);
    assert_eq!(got.unwrap().0, data);
    // The map, then one round per segment (the first also brings the block hash tree, which
    // MDMF stores after the data).
    assert_eq!(run.rounds as u64, segments + 1);
    // A range inside segment 5 costs the map plus one round.
    let seg = made.version.segment_size;
    let (got, run, _) = grid.retrieve(&made.cap, Some((5 * seg + 10, 1000)));
    assert_eq!(
        got.unwrap().0,
        data[(5 * seg + 10) as usize..(5 * seg + 1010) as usize]
    );
    assert_eq!(run.rounds, 2);
    // Ranges past the end are cut; an empty range reads nothing.
    let (got, _, _) = grid.retrieve(&made.cap, Some((999_990, 100)));
    assert_eq!(got.unwrap().0, data[999_990..]);
    let (got, _, _) = grid.retrieve(&made.cap, Some((2_000_000, 10)));
    assert!(got.unwrap().0.is_empty());
}

#[test]
fn empty_and_tiny_files_in_both_formats() {
    let mut keys = keys();
    for format in [MutableFormat::Sdmf, MutableFormat::Mdmf] {
        for data in [Vec::new(), b"x".to_vec()] {
            let mut grid = Grid::new(4);
            let made = grid
                .create_mutable(format, keys.next_key().unwrap(), &data)
                .0
                .unwrap();
            assert_eq!(grid.retrieve(&made.cap, None).0.unwrap().0, data);
        }
    }
}

#[test]
fn racing_writers_one_wins_the_other_gets_a_conflict_and_readers_see_whole_versions() {
    let mut grid = Grid::new(10);
    let made = grid
        .create_mutable(MutableFormat::Sdmf, keys().next_key().unwrap(), b"v1")
        .0
        .unwrap();
    // Both writers start from the same (now stale for one of them) map.
    let a = grid.update_mutable(&made.cap, b"writer A", Some(made.map.clone()));
    assert!(a.0.is_ok());
    let b = grid.update_mutable(&made.cap, b"writer B", Some(made.map));
    assert!(
        matches!(b.0, Err(PublishError::Conflict { .. })),
        "{:?}",
        b.0
    );
    assert_eq!(grid.retrieve(&made.cap, None).0.unwrap().0, b"writer A");
    // The loser retries cold and wins.
    let b = grid.update_mutable(&made.cap, b"writer B", None).0.unwrap();
    assert_eq!(b.version.seqnum, 3);
    assert_eq!(grid.retrieve(&made.cap, None).0.unwrap().0, b"writer B");
}

#[test]
fn a_partly_applied_race_still_reads_one_whole_version() {
    // Writer B overwrote only some shares before losing: readers get either version whole.
    let mut grid = Grid::new(10);
    let made = grid
        .create_mutable(
            MutableFormat::Mdmf,
            keys().next_key().unwrap(),
            &test_data(300_000, 9),
        )
        .0
        .unwrap();
    let stale = made.map.clone();
    // A's update lands on servers 0..5 only (the others are unreachable for it).
    let reachable: Vec<_> = grid.descriptors[..5].to_vec();
    let all = std::mem::replace(&mut grid.descriptors, reachable);
    let a = grid
        .update_mutable(&made.cap, &test_data(200_000, 10), None)
        .0
        .unwrap();
    grid.descriptors = all;
    assert!(a.placed.len() >= 3);
    // B, stale, fails where A wrote and succeeds elsewhere.
    let _ = grid.update_mutable(&made.cap, &test_data(100_000, 11), Some(stale));
    let (got, _, _) = grid.retrieve(&made.cap, None);
    let bytes = got.unwrap().0;
    assert!(
        [
            test_data(300_000, 9),
            test_data(200_000, 10),
            test_data(100_000, 11)
        ]
        .contains(&bytes),
        "read a mixture of versions ({} bytes)",
        bytes.len()
    );
}

#[test]
fn corrupt_shares_are_reported_and_replaced() {
    let mut grid = Grid::new(10);
    let data = test_data(20_000, 6);
    let made = grid
        .create_mutable(MutableFormat::Sdmf, keys().next_key().unwrap(), &data)
        .0
        .unwrap();
    let si = si_of(&made.cap);
    // Corrupt the block of several shares (well past the header) and a signature.
    let mut corrupted = 0;
    for (i, (server, shnum)) in made.placed.iter().enumerate().take(4) {
        let offset = if i == 0 { 200 } else { 2000 + i as u64 * 10 };
        assert!(grid
            .store_mut(server)
            .corrupt_share(&si, *shnum, offset, 0x40));
        corrupted += 1;
    }
    let (got, _, events) = grid.retrieve(&made.cap, None);
    assert_eq!(got.unwrap().0, data);
    let reported = events
        .iter()
        .filter(|e| matches!(e, RetrieveEvent::CorruptShare { .. }))
        .count();
    assert!(
        reported >= 1 && reported <= corrupted,
        "{reported} reported"
    );
    // Corrupt enough shares and the read fails cleanly, never returning bad bytes.
    for (server, shnum) in made.placed.iter().skip(4) {
        grid.store_mut(server)
            .corrupt_share(&si, *shnum, 2500, 0x01);
    }
    let (got, _, _) = grid.retrieve(&made.cap, None);
    assert!(
        matches!(got, Err(RetrieveError::NotEnoughShares { .. })),
        "{got:?}"
    );
}

#[test]
fn a_share_of_another_file_or_truncated_share_is_not_trusted() {
    let mut grid = Grid::new(5);
    let mut keys = keys();
    let data = test_data(9000, 7);
    let a = grid
        .create_mutable(MutableFormat::Sdmf, keys.next_key().unwrap(), &data)
        .0
        .unwrap();
    let b = grid
        .create_mutable(MutableFormat::Sdmf, keys.next_key().unwrap(), b"other file")
        .0
        .unwrap();
    let (si_a, si_b) = (si_of(&a.cap), si_of(&b.cap));
    // Put file B's share 0 where file A's share 0 lives, and truncate A's share 1.
    let holder0 = a.placed.iter().find(|(_, n)| *n == 0).unwrap().0;
    let holder1 = a.placed.iter().find(|(_, n)| *n == 1).unwrap().0;
    let b0_holder = b.placed.iter().find(|(_, n)| *n == 0).unwrap().0;
    let b0 = grid
        .store_mut(&b0_holder)
        .share_bytes(&si_b, 0)
        .unwrap()
        .to_vec();
    let a1 = grid
        .store_mut(&holder1)
        .share_bytes(&si_a, 1)
        .unwrap()
        .to_vec();
    replace_mutable(&mut grid, holder0, si_a, 0, &b0);
    replace_mutable(&mut grid, holder1, si_a, 1, &a1[..a1.len() / 2]);
    let (got, _, _) = grid.retrieve(&a.cap, None);
    assert_eq!(got.unwrap().0, data);
}

fn replace_mutable(
    grid: &mut Grid,
    server: lafs_core::placement::ServerId,
    si: [u8; 16],
    shnum: u16,
    bytes: &[u8],
) {
    use lafs_core::store::{MutableShareChange, ShareStore};
    use lafs_core::wire::DataVector;
    let store = grid.store_mut(&server);
    let enabler = store
        .list_mutable_shares(&si)
        .unwrap()
        .into_iter()
        .find(|s| s.shnum == shnum)
        .unwrap()
        .enabler;
    let writes = [DataVector {
        offset: 0,
        data: bytes.to_vec(),
    }];
    store
        .write_mutable_shares(
            &si,
            &enabler,
            &[MutableShareChange {
                shnum,
                writes: &writes,
                new_length: Some(bytes.len() as u64),
            }],
        )
        .unwrap();
}

#[test]
fn wrong_write_enabler_changes_nothing() {
    // Two files cannot share a slot: a forged update with another writekey is refused.
    let mut grid = Grid::new(3);
    let made = grid
        .create_mutable(MutableFormat::Sdmf, keys().next_key().unwrap(), b"mine")
        .0
        .unwrap();
    let Cap::SskWrite { fingerprint, .. } = made.cap.clone() else {
        panic!()
    };
    // Same fingerprint and storage index are not derivable without the writekey, so forge the
    // request directly: a MutableWrite with a bad enabler.
    let si = si_of(&made.cap);
    let server = made.placed[0].0;
    let before = grid
        .store_mut(&server)
        .share_bytes(&si, made.placed[0].1)
        .unwrap()
        .to_vec();
    let resp = grid.servers.get_mut(&server).unwrap().handle_request(
        grid.now,
        lafs_core::server::ConnectionId(9),
        lafs_core::wire::Request::MutableWrite {
            storage_index: si,
            write_enabler: [7; 32],
            lease: lafs_core::wire::LeaseSecrets {
                renew: [1; 32],
                cancel: [2; 32],
            },
            shares: vec![lafs_core::wire::MutableShareWrite {
                shnum: made.placed[0].1,
                tests: vec![],
                writes: vec![lafs_core::wire::DataVector {
                    offset: 0,
                    data: b"vandal".to_vec(),
                }],
                new_length: None,
            }],
            read_ranges: vec![],
        },
    );
    assert!(matches!(
        resp,
        lafs_core::wire::Response::Error {
            kind: lafs_core::wire::ErrorKind::BadWriteEnabler,
            ..
        }
    ));
    assert_eq!(
        grid.store_mut(&server)
            .share_bytes(&si, made.placed[0].1)
            .unwrap(),
        before
    );
    let _ = fingerprint;
    assert_eq!(grid.retrieve(&made.cap, None).0.unwrap().0, b"mine");
}

#[test]
fn lost_servers_and_missing_files() {
    let mut grid = Grid::new(10);
    let data = test_data(10_000, 8);
    let made = grid
        .create_mutable(MutableFormat::Mdmf, keys().next_key().unwrap(), &data)
        .0
        .unwrap();
    // Seven servers vanish: three remain, enough for 3-of-10.
    for i in 0..7 {
        grid.faults.insert(
            server_id(i),
            lafs_core::testing::grid::Fault::DisconnectAfter { after_rounds: 0 },
        );
    }
    let (got, _, _) = grid.retrieve(&made.cap, None);
    assert_eq!(got.unwrap().0, data);
    // An update still places enough shares on the survivors.
    let (r, _) = grid.update_mutable(&made.cap, b"after the outage", None);
    assert!(r.is_ok(), "{r:?}");
    grid.faults.clear();
    assert_eq!(
        grid.retrieve(&made.cap, None).0.unwrap().0,
        b"after the outage"
    );
    // A file nobody stored.
    let mut unused = keys();
    unused.next_key().unwrap();
    let other = FileKeys::from_key(MutableFormat::Sdmf, &unused.next_key().unwrap()).cap();
    let (got, _, _) = grid.retrieve(&other, None);
    assert!(
        matches!(got, Err(RetrieveError::NoShares { .. })),
        "{got:?}"
    );
    let (r, _) = grid.update_mutable(&other, b"x", None);
    assert!(matches!(r, Err(PublishError::NotFound { .. })), "{r:?}");
}

#[test]
fn mdmf_in_place_writes_touch_only_their_segments() {
    let mut grid = Grid::new(10);
    let mut data = test_data(1_000_000, 12);
    let made = grid
        .create_mutable(MutableFormat::Mdmf, keys().next_key().unwrap(), &data)
        .0
        .unwrap();
    let si = si_of(&made.cap);
    let seg = made.version.segment_size;
    let before: Vec<Vec<u8>> = made
        .placed
        .iter()
        .map(|(s, n)| grid.store_mut(s).share_bytes(&si, *n).unwrap().to_vec())
        .collect();
    // Overwrite 5000 bytes straddling the boundary of segments 3 and 4, cold.
    let offset = 4 * seg - 2000;
    let patch = vec![0xEE; 5000];
    let (r, run) = grid.modify_mutable(&made.cap, offset, &patch, None);
    let r = r.unwrap();
    assert_eq!(r.version.seqnum, 2);
    assert_eq!(run.rounds, 3, "map, hashes + boundary blocks, write");
    data[offset as usize..offset as usize + 5000].copy_from_slice(&patch);
    assert_eq!(grid.retrieve(&made.cap, None).0.unwrap().0, data);
    // Only the two segments' blocks changed in each share (besides header, hashes, signature).
    let (_, header) = (0, made.map.shares.values().next().unwrap().header.clone());
    for ((server, shnum), old) in made.placed.iter().zip(&before) {
        let new = grid.store_mut(server).share_bytes(&si, *shnum).unwrap();
        assert_eq!(new.len(), old.len());
        for s in 0..made.version.num_segments() {
            let span = header.offsets.block(&made.version, s);
            let (a, b) = (span.offset as usize, span.end() as usize);
            let changed = old[a..b] != new[a..b];
            assert_eq!(changed, s == 3 || s == 4, "share {shnum} segment {s}");
        }
    }
    // A warm in-place write is two round trips (hashes, write); one inside a segment works too.
    let (r2, run) = grid.modify_mutable(&made.cap, 10, b"hello", Some(r.map));
    r2.unwrap();
    assert_eq!(run.rounds, 2);
    data[10..15].copy_from_slice(b"hello");
    assert_eq!(grid.retrieve(&made.cap, None).0.unwrap().0, data);
    // Growing the file this way is refused with a clear error and changes nothing.
    let (r3, _) = grid.modify_mutable(&made.cap, 999_999, b"xy", None);
    let err = r3.unwrap_err();
    assert!(
        matches!(
            err,
            ModifyError::OutOfBounds {
                offset: 999_999,
                length: 2,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("rewriting"), "{err}");
    assert_eq!(grid.retrieve(&made.cap, None).0.unwrap().0, data);
}
