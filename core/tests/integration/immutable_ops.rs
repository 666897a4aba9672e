//! Immutable upload and download through the in-memory grid: round-trip counts, memory bound,
//! refusals, lost servers, corruption, and the edge cases of sizes and parameters.

use lafs_core::cap::Cap;
use lafs_core::codec::CodecKind;
use lafs_core::immutable::download::{DownloadConfig, DownloadError, DownloadEvent};
use lafs_core::immutable::params::EncodingParams;
use lafs_core::immutable::upload::{UploadConfig, UploadError};
use lafs_core::placement::PlacementError;
use lafs_core::testing::grid::{server_id, test_data, Fault, Grid, SECRET};

fn config(k: usize, happy: usize, n: usize, seg: u64) -> UploadConfig {
    UploadConfig {
        params: EncodingParams {
            k,
            happy,
            n,
            max_segment_size: seg,
        },
        ..UploadConfig::default()
    }
}

fn dl_config(seg: u64) -> DownloadConfig {
    DownloadConfig {
        segment_size_guess: seg,
        ..DownloadConfig::default()
    }
}

#[test]
fn one_segment_file_uploads_and_downloads_in_one_round_trip_each() {
    for size in [56usize, 1000, 100_000, 1 << 20] {
        let mut grid = Grid::new(10);
        let data = test_data(size, size as u64);
        let (result, up) = grid.upload(&data, UploadConfig::default());
        let result = result.expect("upload succeeds");
        assert_eq!(up.rounds, 1, "upload of {size} bytes");
        assert_eq!(up.messages, 10, "one message per server");
        assert_eq!(result.happiness, 10);
        let (got, down, _) = grid.download(&result.cap, DownloadConfig::default());
        assert_eq!(got.expect("download succeeds"), data);
        assert_eq!(down.rounds, 1, "download of {size} bytes");
        assert_eq!(down.messages, 3, "k servers asked");
    }
}

#[test]
fn caps_from_the_grid_match_tahoes_encoder() {
    // The upload state machine must produce the same cap as the offline encoder (which the
    // vectors prove identical to Tahoe's).
    let data = test_data(300_000, 7);
    let mut grid = Grid::new(10);
    let cfg = config(3, 7, 10, 131_072);
    let (result, _) = grid.upload(&data, cfg);
    let codec = CodecKind::Zfec.build(3, 10).unwrap();
    let key = lafs_core::immutable::encode::convergent_key(&data, SECRET, 3, 10, 131_072);
    let (file, shares) =
        lafs_core::immutable::encode::encode_in_memory(&key, &data, 131_072, &codec).unwrap();
    let cap = result.unwrap().cap;
    assert!(matches!(cap, Cap::ChkRead { ueb_hash, .. } if ueb_hash == file.ueb_hash));
    let si = lafs_core::crypto::storage_index_from_key(&key);
    let stored: Vec<Vec<u8>> = (0..10u16)
        .map(|sh| {
            grid.servers
                .values()
                .find_map(|s| s.store().share_bytes(&si, sh).map(<[u8]>::to_vec))
                .unwrap()
        })
        .collect();
    assert_eq!(
        stored, shares,
        "stored shares are the offline encoder's bytes"
    );
}

#[test]
fn large_files_stream_without_a_barrier_per_segment_and_hold_one_segment() {
    let seg = 64 * 1024;
    let data = test_data(100 * seg as usize, 3);
    let mut grid = Grid::new(10);
    let (result, up) = grid.upload(&data, config(3, 7, 10, seg));
    let result = result.expect("upload succeeds");
    // allocation + segment 0, then the other 99 segments pipelined inside the 8 MiB window
    assert_eq!(up.rounds, 2);
    let blocks = 10 * seg.div_ceil(3) as usize;
    let hashes = 32 * 100 * 11;
    assert!(
        up.max_bytes_held <= seg as usize + blocks + hashes,
        "upload held {} bytes",
        up.max_bytes_held
    );

    let (got, down, _) = grid.download(&result.cap, dl_config(seg));
    assert_eq!(got.unwrap(), data);
    assert_eq!(down.rounds, 100, "one round trip per segment");
    let trees = 3 * 32 * 255 + 32 * 255;
    assert!(
        down.max_bytes_held <= 3 * seg.div_ceil(3) as usize + trees + 4096,
        "download held {}",
        down.max_bytes_held
    );
}

#[test]
fn small_windows_throttle_the_stream() {
    let seg = 16 * 1024;
    let data = test_data(20 * seg as usize, 4);
    let mut grid = Grid::new(10);
    let mut cfg = config(3, 7, 10, seg);
    cfg.window_bytes = 3 * seg.div_ceil(3);
    let (result, up) = grid.upload(&data, cfg);
    assert!(result.is_ok());
    assert!(up.rounds > 2 && up.rounds <= 21, "rounds {}", up.rounds);
}

#[test]
fn a_wrong_segment_size_guess_costs_one_round_trip_not_correctness() {
    let data = test_data(300_000, 5);
    let mut grid = Grid::new(10);
    let (result, _) = grid.upload(&data, config(3, 7, 10, 131_072));
    // Guessing 64 KiB segments for a file written with 128 KiB ones misplaces block 0 and the
    // hash trees: one extra round trip, then one per remaining segment.
    let cap = result.unwrap().cap;
    let (got, down, _) = grid.download(&cap, dl_config(65_536));
    assert_eq!(got.unwrap(), data);
    assert_eq!(down.rounds, 4);
    // Guessing a segment larger than the file reads whole shares: one round trip in all.
    let (got, down, _) = grid.download(&cap, dl_config(1 << 20));
    assert_eq!(got.unwrap(), data);
    assert_eq!(down.rounds, 1);
}

#[test]
fn full_servers_are_replaced_by_the_next_on_the_ring() {
    let mut grid = Grid::new(12);
    for i in [0, 3] {
        grid.store_mut(&server_id(i)).set_capacity(0);
    }
    let data = test_data(5000, 9);
    let (result, up) = grid.upload(&data, UploadConfig::default());
    let result = result.expect("upload succeeds despite two full servers");
    assert_eq!(result.happiness, 10);
    assert!(
        !result.shares.contains_key(&server_id(0)) && !result.shares.contains_key(&server_id(3))
    );
    assert!(
        up.rounds <= 2,
        "refusals are re-planned in one more round, got {}",
        up.rounds
    );
    let (got, _, _) = grid.download(&result.cap, DownloadConfig::default());
    assert_eq!(got.unwrap(), data);
}

#[test]
fn not_enough_servers_says_how_many_were_needed_reachable_and_accepting() {
    let mut grid = Grid::new(5);
    let (result, _) = grid.upload(&test_data(1000, 1), UploadConfig::default());
    let err = result.unwrap_err();
    assert!(
        matches!(
            err,
            UploadError::Placement(PlacementError::NotEnoughServers {
                needed_happy: 7,
                ..
            })
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains('7') && text.contains('5'),
        "message names the counts: {text}"
    );

    let mut grid = Grid::new(10);
    for i in 0..5 {
        grid.store_mut(&server_id(i)).set_capacity(0);
    }
    let (result, _) = grid.upload(&test_data(1000, 1), UploadConfig::default());
    assert!(matches!(
        result,
        Err(UploadError::Placement(
            PlacementError::NotEnoughServers { .. }
        ))
    ));
}

#[test]
fn a_server_lost_mid_upload_is_tolerated_while_happiness_holds() {
    let seg = 32 * 1024;
    let data = test_data(10 * seg as usize, 11);
    let mut grid = Grid::new(10);
    grid.faults
        .insert(server_id(2), Fault::DisconnectAfter { after_rounds: 1 });
    let (result, _) = grid.upload(&data, config(3, 7, 10, seg));
    let result = result.expect("nine servers keep happiness >= 7");
    assert!(!result.shares.contains_key(&server_id(2)));
    assert_eq!(result.happiness, 9);
    grid.faults.clear();
    let (got, _, _) = grid.download(&result.cap, dl_config(seg));
    assert_eq!(got.unwrap(), data);
}

#[test]
fn losing_too_many_servers_mid_upload_fails_cleanly() {
    let seg = 32 * 1024;
    let mut grid = Grid::new(10);
    for i in 0..4 {
        grid.faults
            .insert(server_id(i), Fault::DisconnectAfter { after_rounds: 1 });
    }
    let (result, _) = grid.upload(&test_data(10 * seg as usize, 12), config(3, 7, 10, seg));
    assert!(
        matches!(result, Err(UploadError::Placement(_))),
        "{result:?}"
    );
}

fn upload_default(grid: &mut Grid, data: &[u8]) -> Cap {
    grid.upload(data, UploadConfig::default())
        .0
        .expect("upload")
        .cap
}

#[test]
fn a_corrupted_share_is_reported_and_another_used() {
    let data = test_data(50_000, 13);
    let mut grid = Grid::new(10);
    let cap = upload_default(&mut grid, &data);
    let si = cap_storage_index(&cap);
    // Flip a byte in the block data of shares 0..2, the ones a download tries first.
    let mut corrupted = 0;
    for id in (0..10).map(server_id) {
        let store = grid.store_mut(&id);
        for sh in 0..10u16 {
            if sh < 3 && store.corrupt_share(&si, sh, 0x24 + 100, 0x01) {
                corrupted += 1;
            }
        }
    }
    assert_eq!(corrupted, 3, "shares 0..2 corrupted");
    let (got, down, events) = grid.download(&cap, DownloadConfig::default());
    assert_eq!(got.expect("download succeeds from the other shares"), data);
    let bad: Vec<u16> = events
        .iter()
        .filter_map(|e| {
            if let DownloadEvent::CorruptShare { shnum, .. } = e {
                Some(*shnum)
            } else {
                None
            }
        })
        .collect();
    assert!(
        !bad.is_empty() && bad.iter().all(|sh| *sh < 3),
        "corrupt shares reported: {bad:?}"
    );
    assert!(down.rounds <= 3, "rounds {}", down.rounds);
    let advisories: usize = grid.servers.values().map(|s| s.advisories().count()).sum();
    assert_eq!(
        advisories,
        bad.len(),
        "each corrupt share was reported to its server"
    );
}

fn cap_storage_index(cap: &Cap) -> [u8; 16] {
    cap.storage_index().expect("CHK caps have a storage index")
}

#[test]
fn fewer_than_k_good_shares_says_how_many_were_found_and_good() {
    let data = test_data(5_000, 17);
    let mut grid = Grid::new(10);
    let cap = upload_default(&mut grid, &data);
    let si = cap_storage_index(&cap);
    for id in (0..10).map(server_id) {
        let store = grid.store_mut(&id);
        for sh in 0..10u16 {
            if sh >= 4 {
                store.delete_share(&si, sh);
            } else if sh >= 2 {
                store.corrupt_share(&si, sh, 0x24 + 10, 0x80);
            }
        }
    }
    let (got, _, _) = grid.download(&cap, DownloadConfig::default());
    match got {
        Err(
            e @ DownloadError::NotEnoughShares {
                needed: 3,
                found: 4,
                good: 2,
                corrupt: 2,
                ..
            },
        ) => {
            let text = e.to_string();
            assert!(
                text.contains("need 3")
                    && text.contains("found 4")
                    && text.contains("2 of them good"),
                "{text}"
            );
        }
        other => panic!("expected NotEnoughShares, got {other:?}"),
    }
}

#[test]
fn edge_sizes_and_parameters() {
    let seg = 4096u64;
    let cases: Vec<(usize, usize, usize, usize)> = vec![
        // (size, k, happy, n)
        (0, 3, 7, 10),
        (1, 3, 7, 10),
        (55, 3, 7, 10),
        (56, 3, 7, 10),
        (seg as usize, 3, 7, 10),
        (seg as usize + 1, 3, 7, 10),
        (3 * seg as usize, 3, 7, 10),
        (10_000, 1, 5, 5),
        (10_000, 5, 5, 5),
        (10_000, 1, 1, 1),
        (10_000, 7, 10, 10),
    ];
    for (size, k, happy, n) in cases {
        let data = test_data(size, size as u64 + 1);
        let mut grid = Grid::new(10);
        let (result, up) = grid.upload(&data, config(k, happy, n, seg));
        let result = result.unwrap_or_else(|e| panic!("{size} bytes {k}-of-{n}: {e}"));
        if size <= 55 {
            assert!(matches!(&result.cap, Cap::Lit { data: d } if *d == data));
            assert_eq!(up.rounds, 0, "LIT files use no servers");
        }
        let (got, _, _) = grid.download(&result.cap, dl_config(seg));
        assert_eq!(got.unwrap(), data, "{size} bytes {k}-of-{n}");
    }
}

#[test]
fn happy_above_the_server_count_fails_before_sending_anything() {
    let mut grid = Grid::new(3);
    let (result, up) = grid.upload(&test_data(1000, 2), config(2, 4, 5, 4096));
    assert!(matches!(result, Err(UploadError::Placement(_))));
    assert_eq!(up.messages, 0);
}

#[test]
fn novelpoly_files_round_trip_and_say_so_in_their_extension_block() {
    let seg = 8192;
    for size in [1000usize, 5 * seg as usize + 7] {
        let data = test_data(size, 21);
        let mut grid = Grid::new(10);
        let mut cfg = config(3, 7, 10, seg);
        cfg.codec = CodecKind::NovelPoly;
        let (result, _) = grid.upload(&data, cfg);
        let cap = result.expect("novelpoly upload").cap;
        let (got, down, _) = grid.download(&cap, dl_config(seg));
        assert_eq!(got.unwrap(), data);
        if size < seg as usize {
            assert_eq!(down.rounds, 1);
        }
    }
}

#[test]
fn fewer_servers_than_shares_double_up() {
    let mut grid = Grid::new(4);
    let data = test_data(20_000, 23);
    let (result, up) = grid.upload(&data, config(3, 4, 10, 65_536));
    let result = result.expect("4 servers, happy 4");
    assert_eq!(
        up.rounds, 1,
        "shares doubled up on servers still go in one message each"
    );
    assert_eq!(up.messages, 4);
    assert_eq!(result.shares.values().map(|s| s.len()).sum::<usize>(), 10);
    let (got, _, _) = grid.download(&result.cap, DownloadConfig::default());
    assert_eq!(got.unwrap(), data);
}

#[test]
fn uploading_the_same_file_again_finds_the_shares_already_there() {
    let data = test_data(30_000, 29);
    let mut grid = Grid::new(10);
    let first = upload_default(&mut grid, &data);
    let (again, run) = grid.upload(&data, UploadConfig::default());
    let again = again.expect("second upload succeeds");
    assert_eq!(again.cap, first, "convergent encryption gives the same cap");
    assert_eq!(run.rounds, 1);
    assert_eq!(again.happiness, 10);
    let stored: usize = grid
        .servers
        .values()
        .map(|s| s.store().all_shares().len())
        .sum();
    assert_eq!(stored, 10, "no share was stored twice");
}

mod garbage_servers {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Servers holding garbage under the right storage index never make a download panic or
        /// return wrong bytes: it either succeeds from the good shares or fails with an error.
        #[test]
        fn garbage_shares_are_rejected(garbage in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..8)) {
            let data = test_data(20_000, 31);
            let mut grid = Grid::new(10);
            let cap = upload_default(&mut grid, &data);
            let si = cap_storage_index(&cap);
            for (i, junk) in garbage.iter().enumerate() {
                let sh = i as u16;
                for id in (0..10).map(server_id) {
                    grid.store_mut(&id).delete_share(&si, sh);
                }
                if !junk.is_empty() {
                    grid.put_share(&server_id(i), &si, sh, junk);
                }
            }
            let (got, _, _) = grid.download(&cap, DownloadConfig::default());
            match got {
                Ok(bytes) => prop_assert_eq!(bytes, data),
                Err(DownloadError::NotEnoughShares { .. }) => prop_assert!(garbage.len() > 7),
                Err(e) => prop_assert!(false, "unexpected error {e}"),
            }
        }

        /// Shares cut short anywhere are dropped as corrupt; the download never stalls.
        #[test]
        fn truncated_shares_are_dropped(cuts in proptest::collection::vec(0usize..8000, 1..4)) {
            let data = test_data(20_000, 37);
            let mut grid = Grid::new(10);
            let cap = upload_default(&mut grid, &data);
            let si = cap_storage_index(&cap);
            for (i, cut) in cuts.iter().enumerate() {
                let sh = i as u16;
                let holder = (0..10).map(server_id).find(|id| grid.store_mut(id).share_bytes(&si, sh).is_some()).unwrap();
                let bytes = grid.store_mut(&holder).share_bytes(&si, sh).unwrap().to_vec();
                grid.store_mut(&holder).delete_share(&si, sh);
                let keep = cut % bytes.len();
                if keep > 0 {
                    grid.put_share(&holder, &si, sh, &bytes[..keep]);
                }
            }
            let (got, _, _) = grid.download(&cap, DownloadConfig::default());
            match got {
                Ok(bytes) => prop_assert_eq!(bytes, data),
                Err(e) => prop_assert!(false, "three truncated shares of ten must not stop a download: {e}"),
            }
        }
    }
}

#[test]
fn a_share_that_vanishes_between_segments_is_replaced() {
    let seg = 8192u64;
    let data = test_data(6 * seg as usize, 41);
    let mut grid = Grid::new(10);
    let cap = grid
        .upload(&data, config(3, 7, 10, seg))
        .0
        .expect("upload")
        .cap;
    let si = cap_storage_index(&cap);
    // After the first round trip (segment 0 read), share 0 disappears from every server.
    grid.vanish.push((1, si, 0));
    let (got, down, _) = grid.download(&cap, dl_config(seg));
    assert_eq!(got.expect("download finishes from other shares"), data);
    assert!(grid.vanish.is_empty(), "the share was removed mid-download");
    assert!(down.rounds <= 8, "rounds {}", down.rounds);
}

#[test]
fn re_uploading_a_multi_segment_file_completes() {
    // Found by lafs-sim (seed 0): with every share already stored no writer is left, and the
    // upload must finish after its last segment instead of waiting for an answer that never comes.
    let seg = 8192u64;
    let data = test_data(5 * seg as usize + 3, 43);
    let mut grid = Grid::new(10);
    let first = grid
        .upload(&data, config(3, 7, 10, seg))
        .0
        .expect("first upload")
        .cap;
    let (again, run) = grid.upload(&data, config(3, 7, 10, seg));
    assert_eq!(again.expect("second upload completes").cap, first);
    assert_eq!(run.rounds, 1, "placement finds every share already there");
}

#[test]
fn a_cap_with_a_wrong_size_fails_without_blaming_any_share() {
    let data = test_data(10_000, 47);
    let mut grid = Grid::new(10);
    let Cap::ChkRead {
        key,
        ueb_hash,
        needed,
        total,
        size,
    } = upload_default(&mut grid, &data)
    else {
        panic!("CHK cap expected")
    };
    let wrong = Cap::ChkRead {
        key,
        ueb_hash,
        needed,
        total,
        size: size + 1,
    };
    let (got, _, events) = grid.download(&wrong, DownloadConfig::default());
    assert!(
        matches!(got, Err(DownloadError::CapMismatch("size"))),
        "{got:?}"
    );
    assert!(!events
        .iter()
        .any(|e| matches!(e, DownloadEvent::CorruptShare { .. })));
    assert_eq!(
        grid.servers
            .values()
            .map(|s| s.advisories().count())
            .sum::<usize>(),
        0
    );
}
