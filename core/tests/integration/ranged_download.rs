//! Ranged reads of immutable files through the in-memory grid: the bytes are the slice asked
//! for, only the blocks of the segments covering the range are requested, a range in the middle
//! of a big file costs one round trip, and corruption is still caught.

use std::collections::BTreeSet;

use lafs_core::cap::Cap;
use lafs_core::codec::CodecKind;
use lafs_core::immutable::download::{
    clip_range, ChkFile, Download, DownloadConfig, DownloadError, DownloadEvent,
};
use lafs_core::immutable::params::{EncodingParams, Geometry};
use lafs_core::immutable::upload::UploadConfig;
use lafs_core::op::{ClientOp, RequestId, Transmit};
use lafs_core::placement::ServerId;
use lafs_core::testing::grid::{server_id, test_data, Grid, Run};
use lafs_core::time::Instant;
use lafs_core::wire::{ReadRange, Request, Response};
use proptest::prelude::*;

const K: usize = 3;
const N: usize = 10;
/// A multiple of k, so segments are exactly this long.
const SEG: u64 = 30_000;
/// Ten whole segments and a partial eleventh.
const SIZE: u64 = 10 * SEG + 12_345;

fn upload_config(seg: u64, codec: CodecKind) -> UploadConfig {
    UploadConfig {
        params: EncodingParams {
            k: K,
            happy: 7,
            n: N,
            max_segment_size: seg,
        },
        codec,
        ..UploadConfig::default()
    }
}

fn dl_config(seg: u64) -> DownloadConfig {
    DownloadConfig {
        segment_size_guess: seg,
        ..DownloadConfig::default()
    }
}

/// A download that records what it asked for and how many share bytes came back.
struct Recorded {
    op: Download,
    /// Every `ImmutableRead` sent: to whom and which byte ranges of the share.
    reads: Vec<(ServerId, Vec<ReadRange>)>,
    /// Share bytes received (chunk payloads, no framing).
    received: u64,
}

impl ClientOp for Recorded {
    type Event = DownloadEvent;
    fn handle_input(&mut self, now: Instant, from: ServerId, id: RequestId, response: Response) {
        if let Response::ImmutableRead { shares, .. } = &response {
            self.received += shares
                .iter()
                .flat_map(|s| &s.chunks)
                .map(|c| c.len() as u64)
                .sum::<u64>();
        }
        self.op.handle_input(now, from, id, response);
    }
    fn handle_server_lost(&mut self, now: Instant, server: ServerId) {
        self.op.handle_server_lost(now, server);
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.op.handle_timeout(now);
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        let t = self.op.poll_transmit()?;
        if let Request::ImmutableRead { ranges, .. } = &t.request {
            self.reads.push((t.to, ranges.clone()));
        }
        Some(t)
    }
    fn poll_event(&mut self) -> Option<DownloadEvent> {
        self.op.poll_event()
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.op.poll_timeout()
    }
}

/// What one ranged download did.
struct Ranged {
    result: Result<Vec<u8>, DownloadError>,
    run: Run,
    events: Vec<DownloadEvent>,
    reads: Vec<(ServerId, Vec<ReadRange>)>,
    received: u64,
}

/// Download `[offset, offset + length)` of `cap` (`None`: the whole file with `Download::new`).
fn ranged(grid: &mut Grid, cap: &Cap, range: Option<(u64, u64)>, config: DownloadConfig) -> Ranged {
    let file = ChkFile::from_cap(cap).expect("CHK cap");
    let op = match range {
        Some((offset, length)) => {
            Download::new_range(grid.now, config, file, &grid.descriptors, offset, length)
        }
        None => Download::new(grid.now, config, file, &grid.descriptors),
    };
    let mut op = Recorded {
        op,
        reads: Vec::new(),
        received: 0,
    };
    let start = range.map_or(0, |r| r.0);
    let mut out = Vec::new();
    let mut events = Vec::new();
    let mut done_size = None;
    let (result, run) = grid.drive(
        &mut op,
        |r| r.op.bytes_held(),
        |_, _, ev| {
            let result = match &ev {
                DownloadEvent::Data { offset, bytes } => {
                    assert_eq!(
                        *offset,
                        start + out.len() as u64,
                        "data arrives in order at its offset in the file"
                    );
                    assert!(!bytes.is_empty(), "no empty Data events");
                    out.extend_from_slice(bytes);
                    None
                }
                DownloadEvent::Done { size } => {
                    done_size = Some(*size);
                    Some(Ok(()))
                }
                DownloadEvent::Failed(e) => Some(Err(e.clone())),
                _ => None,
            };
            events.push(ev);
            result
        },
    );
    if let Some(size) = done_size {
        assert_eq!(size, out.len() as u64, "Done says how many bytes came out");
    }
    Ranged {
        result: result.map(|()| out),
        run,
        events,
        reads: op.reads,
        received: op.received,
    }
}

/// The segments whose blocks any read asked for (a range touching a block's bytes counts).
fn segments_requested(g: &Geometry, reads: &[(ServerId, Vec<ReadRange>)]) -> BTreeSet<u64> {
    // Files this size use version-1 share headers: block data starts at 0x24.
    let data = 0x24u64;
    let mut segments = BTreeSet::new();
    for (_, ranges) in reads {
        for r in ranges {
            let end = r.offset.saturating_add(r.length);
            for s in 0..g.num_segments {
                let b = data + s * g.block_size;
                if r.offset < b + g.block_len(s) && b < end {
                    segments.insert(s);
                }
            }
        }
    }
    segments
}

fn corrupt_events(events: &[DownloadEvent]) -> Vec<u16> {
    events
        .iter()
        .filter_map(|e| match e {
            DownloadEvent::CorruptShare { shnum, .. } => Some(*shnum),
            _ => None,
        })
        .collect()
}

fn setup(seed: u64) -> (Grid, Vec<u8>, Cap, Geometry) {
    let data = test_data(SIZE as usize, seed);
    let mut grid = Grid::new(N);
    let (result, _) = grid.upload(&data, upload_config(SEG, CodecKind::Zfec));
    let cap = result.expect("upload").cap;
    let codec = CodecKind::Zfec.build(K, N).unwrap();
    let g = Geometry::new(SIZE, K, N, SEG, codec.as_ref()).unwrap();
    assert_eq!((g.segment_size, g.num_segments), (SEG, 11));
    (grid, data, cap, g)
}

#[test]
fn every_kind_of_range_gives_exactly_its_slice_and_fetches_only_its_segments() {
    let (mut grid, data, cap, g) = setup(1);
    let cases: &[(&str, u64, u64)] = &[
        ("first segment exactly", 0, SEG),
        ("second segment exactly", SEG, SEG),
        ("two segments on boundaries", 3 * SEG, 2 * SEG),
        ("inside one segment", SEG + 100, 50),
        ("one byte", 7 * SEG + 1234, 1),
        ("first byte", 0, 1),
        ("across one boundary", SEG - 10, 20),
        ("across several segments", 2 * SEG + 5, 3 * SEG),
        ("the partial last segment", 10 * SEG, 12_345),
        ("inside the last segment", 10 * SEG + 100, 200),
        ("the last byte", SIZE - 1, 1),
        ("running past the end", 9 * SEG + 100, 1_000_000),
        ("everything, by length", 0, SIZE),
        ("everything and more", 0, u64::MAX),
    ];
    for &(what, offset, length) in cases {
        let r = ranged(&mut grid, &cap, Some((offset, length)), dl_config(SEG));
        let end = offset.saturating_add(length).min(SIZE);
        let got = r.result.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(
            got == data[offset as usize..end as usize],
            "{what}: bytes differ from the slice"
        );
        let (first, last) = (offset / SEG, (end - 1) / SEG);
        let wanted: BTreeSet<u64> = (first..=last).collect();
        assert_eq!(
            segments_requested(&g, &r.reads),
            wanted,
            "{what}: blocks requested"
        );
        assert_eq!(
            r.run.rounds as u64,
            last - first + 1,
            "{what}: one round trip per segment of the range"
        );
        assert!(corrupt_events(&r.events).is_empty());
    }
}

#[test]
fn the_whole_file_constructor_is_unchanged() {
    let (mut grid, data, cap, g) = setup(2);
    let whole = ranged(&mut grid, &cap, None, dl_config(SEG));
    assert_eq!(whole.result.unwrap(), data);
    assert_eq!(whole.run.rounds, 11);
    assert_eq!(
        segments_requested(&g, &whole.reads),
        (0..11).collect::<BTreeSet<u64>>()
    );
    let by_range = ranged(&mut grid, &cap, Some((0, SIZE)), dl_config(SEG));
    assert_eq!(by_range.result.unwrap(), data);
    assert_eq!(by_range.reads, whole.reads, "the same requests");
    assert_eq!(by_range.received, whole.received);
}

#[test]
fn empty_and_past_end_ranges_send_nothing() {
    let (mut grid, _, cap, _) = setup(3);
    for offset in [0, 5000, SIZE] {
        let r = ranged(&mut grid, &cap, Some((offset, 0)), dl_config(SEG));
        assert_eq!(
            r.result.unwrap(),
            Vec::<u8>::new(),
            "empty range at {offset}"
        );
        assert!(r.reads.is_empty() && r.run.rounds == 0);
        assert_eq!(r.events, vec![DownloadEvent::Done { size: 0 }]);
    }
    for (offset, length) in [
        (SIZE, 1),
        (SIZE + 1, 0),
        (SIZE + 1, 10),
        (u64::MAX, u64::MAX),
    ] {
        let r = ranged(&mut grid, &cap, Some((offset, length)), dl_config(SEG));
        assert_eq!(
            r.result,
            Err(DownloadError::RangeNotSatisfiable { offset, size: SIZE }),
            "({offset}, {length})"
        );
        assert!(r.reads.is_empty() && r.run.rounds == 0);
    }
    assert_eq!(clip_range(100, 90, 50), Ok(90..100));
    assert_eq!(clip_range(100, 100, 0), Ok(100..100));
    assert!(clip_range(100, 100, 1).is_err());
    assert!(clip_range(0, 0, 1).is_err());
}

#[test]
fn one_byte_in_the_middle_of_a_ten_megabyte_file_costs_one_round_trip_and_one_segment() {
    let size = 10_000_000usize;
    let data = test_data(size, 4);
    let mut grid = Grid::new(N);
    // Tahoe's defaults here: 3-of-10, 1 MiB segments (10 segments).
    let (result, _) = grid.upload(&data, UploadConfig::default());
    let cap = result.expect("upload").cap;
    let config = DownloadConfig::default();
    let whole = ranged(&mut grid, &cap, None, config);
    assert_eq!(whole.result.unwrap(), data);
    let mid = size as u64 / 2;
    let one = ranged(&mut grid, &cap, Some((mid, 1)), config);
    assert_eq!(one.result.unwrap(), data[mid as usize..mid as usize + 1]);
    eprintln!(
        "10 MB file: whole download {} round trips, {} share bytes received, {} requests; \
         1 byte at {mid}: {} round trip(s), {} share bytes received, {} requests",
        whole.run.rounds,
        whole.received,
        whole.reads.len(),
        one.run.rounds,
        one.received,
        one.reads.len(),
    );
    assert_eq!(one.run.rounds, 1, "as segment 0 of a whole download");
    assert_eq!(one.reads.len(), K, "one request to each of k servers");
    let codec = CodecKind::Zfec.build(K, N).unwrap();
    let g = Geometry::new(size as u64, K, N, 1 << 20, codec.as_ref()).unwrap();
    assert_eq!(
        segments_requested(&g, &one.reads),
        BTreeSet::from([mid / g.segment_size])
    );
    // k blocks plus, per share, its header and the hash trees and extension block.
    let block = g.block_size;
    assert!(
        one.received < K as u64 * (block + 8 * 1024),
        "1-byte range received {} bytes",
        one.received
    );
    assert!(one.received * 8 < whole.received);
}

#[test]
fn a_range_with_a_wrong_segment_size_guess_is_still_right() {
    let (mut grid, data, cap, _) = setup(5);
    for guess in [SEG / 2, SEG * 2, 1 << 20, 1000] {
        for (offset, length) in [
            (5 * SEG + 17, 100),
            (10 * SEG + 1, 5),
            (2 * SEG - 1, SEG + 2),
        ] {
            let r = ranged(&mut grid, &cap, Some((offset, length)), dl_config(guess));
            let end = (offset + length).min(SIZE) as usize;
            assert!(
                r.result.unwrap() == data[offset as usize..end],
                "guess {guess}, range ({offset}, {length})"
            );
            let segments = (end as u64 - 1) / SEG - offset / SEG + 1;
            // A guess too large misplaces only the block: one more round trip. One far too
            // small also misses the hash trees, so the extension block, trees and block come in
            // three more rounds (as for segment 0 of a whole-file download).
            let extra = if guess >= SEG / 2 { 1 } else { 3 };
            assert!(
                r.run.rounds as u64 <= segments + extra,
                "guess {guess}: {} rounds for {segments} segment(s)",
                r.run.rounds
            );
        }
    }
}

#[test]
fn novelpoly_ranges_give_their_slices() {
    let seg = 8192;
    let size = 5 * seg as usize + 7;
    let data = test_data(size, 6);
    let mut grid = Grid::new(N);
    let (result, _) = grid.upload(&data, upload_config(seg, CodecKind::NovelPoly));
    let cap = result.expect("novelpoly upload").cap;
    for (offset, length) in [
        (0u64, 10u64),
        (seg + 3, seg),
        (5 * seg, 7),
        (4 * seg + 1, 100),
    ] {
        let r = ranged(&mut grid, &cap, Some((offset, length)), dl_config(seg));
        let end = (offset + length).min(size as u64) as usize;
        assert!(r.result.unwrap() == data[offset as usize..end]);
    }
}

/// Flip one byte in each of shares `shnums` at `offset` (on whichever server holds them).
fn corrupt(grid: &mut Grid, cap: &Cap, shnums: &[u16], offset: u64) {
    let si = cap.storage_index().expect("CHK cap");
    let mut done = 0;
    for id in (0..N).map(server_id) {
        let store = grid.store_mut(&id);
        for &sh in shnums {
            if store.corrupt_share(&si, sh, offset, 0x01) {
                done += 1;
            }
        }
    }
    assert_eq!(done, shnums.len());
}

#[test]
fn a_corrupt_block_in_the_range_is_caught_reported_and_replaced() {
    let (mut grid, data, cap, g) = setup(7);
    let s = 6;
    // Shares 0..2 are the ones a download tries first: damage their block of segment 6.
    corrupt(&mut grid, &cap, &[0, 1, 2], 0x24 + s * g.block_size + 77);
    let (offset, length) = (s * SEG + 500, 1000);
    let r = ranged(&mut grid, &cap, Some((offset, length)), dl_config(SEG));
    assert!(r.result.unwrap() == data[offset as usize..(offset + length) as usize]);
    let bad = corrupt_events(&r.events);
    assert!(
        !bad.is_empty() && bad.iter().all(|sh| *sh < 3),
        "corrupt shares reported: {bad:?}"
    );
    let advisories: usize = grid.servers.values().map(|s| s.advisories().count()).sum();
    assert_eq!(advisories, bad.len(), "each reported to its server");
    // A range that does not touch segment 6 never reads the damaged blocks.
    let r = ranged(&mut grid, &cap, Some((2 * SEG, SEG)), dl_config(SEG));
    assert!(r.result.unwrap() == data[2 * SEG as usize..3 * SEG as usize]);
    assert!(corrupt_events(&r.events).is_empty());
}

#[test]
fn corrupt_hash_tree_nodes_on_the_ranges_path_are_caught() {
    let (mut grid, data, cap, g) = setup(8);
    let h = lafs_core::immutable::layout::ShareLayout::new(&g, 0).header;
    let leaves = 16u64; // 11 segments padded to 16 leaves
    let s = 6u64;
    // Segment 6's own leaf is computed, never read; its sibling (segment 7's leaf) is the first
    // node of its proof.
    let sibling = leaves - 1 + s + 1;

    // That node of the block tree of shares 0..2: those shares are dropped as corrupt.
    corrupt(
        &mut grid,
        &cap,
        &[0, 1, 2],
        h.block_hashes + 32 * sibling + 3,
    );
    let (offset, length) = (s * SEG + 10, 20);
    let r = ranged(&mut grid, &cap, Some((offset, length)), dl_config(SEG));
    assert!(r.result.unwrap() == data[offset as usize..(offset + length) as usize]);
    let bad = corrupt_events(&r.events);
    assert!(!bad.is_empty() && bad.iter().all(|sh| *sh < 3), "{bad:?}");

    // That node of the ciphertext tree in every share: segment 6 cannot be proven,
    // so the read fails rather than release unverified bytes.
    let (mut grid, _, same_cap, _) = setup(8);
    assert_eq!(same_cap, cap);
    let all: Vec<u16> = (0..N as u16).collect();
    corrupt(
        &mut grid,
        &cap,
        &all,
        h.crypttext_hash_tree + 32 * sibling + 3,
    );
    let r = ranged(&mut grid, &cap, Some((offset, length)), dl_config(SEG));
    assert!(
        matches!(
            r.result,
            Err(DownloadError::Integrity(
                lafs_core::immutable::verify::IntegrityError::BadSegment { segment: 6, .. }
            ))
        ),
        "{:?}",
        r.result.map(|b| b.len())
    );
    // ... while a range elsewhere (whose path avoids that leaf) still reads.
    let r = ranged(&mut grid, &cap, Some((SEG, 10)), dl_config(SEG));
    assert!(r.result.unwrap() == data[SEG as usize..SEG as usize + 10]);
}

#[test]
fn a_ranged_read_holds_one_segment_at_most() {
    let (mut grid, data, cap, _) = setup(9);
    let r = ranged(&mut grid, &cap, Some((SEG / 2, 8 * SEG)), dl_config(SEG));
    assert!(r.result.unwrap() == data[SEG as usize / 2..SEG as usize / 2 + 8 * SEG as usize]);
    let trees = 4 * 32 * 31;
    assert!(
        r.run.max_bytes_held <= K * SEG.div_ceil(K as u64) as usize + trees + 4096,
        "held {}",
        r.run.max_bytes_held
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn any_range_of_a_small_file_is_its_slice(offset in 0u64..5200, length in 0u64..6000) {
        let seg = 999u64;
        let size = 5 * seg + 123;
        let data = test_data(size as usize, 10);
        let mut grid = Grid::new(N);
        let (result, _) = grid.upload(&data, upload_config(seg, CodecKind::Zfec));
        let cap = result.expect("upload").cap;
        let r = ranged(&mut grid, &cap, Some((offset, length)), dl_config(seg));
        match clip_range(size, offset, length) {
            Ok(want) => {
                prop_assert!(r.result.unwrap() == data[want.start as usize..want.end as usize]);
                let segments = if want.is_empty() { 0 } else { (want.end - 1) / seg - want.start / seg + 1 };
                prop_assert_eq!(r.run.rounds as u64, segments);
            }
            Err(e) => prop_assert_eq!(r.result, Err(e)),
        }
    }
}
