//! Mutable files in the simulator, scripted: updates are seen by later reads, racing writers
//! with stale maps lose cleanly (Conflict) and recover by re-reading, MDMF range reads cross
//! segment boundaries, and faults during publishes break no invariant.

use crate::common;

use common::*;
use lafs_core::mutable::layout::MutableFormat;
use lafs_core::time::Duration;
use lafs_sim::net::NetConfig;
use lafs_sim::report::OpKind;
use lafs_sim::{Fault, OpSpec, Plan, PlannedOp, Sim, Start};

/// `clients` clients and `servers` servers 10 ms apart, 3-of-10, no immutable files.
fn grid(clients: usize, servers: usize) -> Plan {
    let mut p = plan(servers, 3, Vec::new());
    p.net = NetConfig::uniform(
        clients,
        servers,
        Duration::from_millis(10),
        10_000_000,
        50_000_000,
    );
    p
}

fn at(p: &mut Plan, ms_at: u64, client: usize, spec: OpSpec) {
    p.ops.push(PlannedOp {
        start: Start::At(ms(ms_at)),
        client,
        spec,
    });
}

fn create(format: MutableFormat, size: u64) -> OpSpec {
    OpSpec::MutableCreate {
        file: 0,
        format,
        size,
    }
}

fn update(size: u64, warm: bool) -> OpSpec {
    OpSpec::MutableUpdate {
        file: 0,
        size,
        warm,
    }
}

const READ: OpSpec = OpSpec::MutableRead {
    file: 0,
    range: None,
};

fn publishes(report: &lafs_sim::RunReport) -> Vec<bool> {
    report
        .timings
        .iter()
        .filter(|t| t.kind == OpKind::Publish)
        .map(|t| t.ok)
        .collect()
}

#[test]
fn reads_see_each_acknowledged_update() {
    for format in [MutableFormat::Sdmf, MutableFormat::Mdmf] {
        let mut p = grid(1, 5);
        at(&mut p, 0, 0, create(format, 3_000));
        at(&mut p, 2_000, 0, READ);
        at(&mut p, 4_000, 0, update(7_000, false));
        at(&mut p, 6_000, 0, READ);
        at(&mut p, 8_000, 0, update(500, true));
        at(&mut p, 10_000, 0, READ);
        let report = Sim::run(&p);
        // A read returning the bytes of an older version would be a LostWrite violation,
        // bytes of no single version a TornRead.
        assert_clean(&report);
        assert_eq!(publishes(&report), [true, true, true], "{format:?}");
        assert_eq!(report.retrieves_ok, 4, "three reads and the final check");
        let sizes: Vec<u64> = report
            .timings
            .iter()
            .filter(|t| t.kind == OpKind::Retrieve)
            .map(|t| t.size)
            .collect();
        assert_eq!(sizes, [3_000, 7_000, 500], "{format:?}");
    }
}

#[test]
fn racing_writers_with_stale_maps_conflict_and_the_loser_recovers() {
    let mut p = grid(3, 6);
    at(&mut p, 0, 0, create(MutableFormat::Mdmf, 20_000));
    // Every client reads: each now holds a map of version 1.
    for c in 0..3 {
        at(&mut p, 2_000 + c as u64, c, READ);
    }
    // Three writers within 2 ms, each trusting its (soon stale) map.
    for c in 0..3 {
        at(&mut p, 5_000 + c as u64, c, update(10_000 + c as u64, true));
    }
    // A reader in the middle of the race, then the losers retry cold.
    at(&mut p, 5_010, 0, READ);
    at(&mut p, 8_000, 1, update(12_345, false));
    at(&mut p, 10_000, 2, READ);
    let report = Sim::run(&p);
    assert_clean(&report);
    assert!(report.conflicts >= 1, "{report:?}");
    assert_eq!(report.concurrent_publishes, 2);
    let ok = publishes(&report);
    assert_eq!(ok.len(), 5);
    assert!(
        ok[0] && ok[4],
        "the create and the cold retry succeed: {ok:?}"
    );
    // The last read sees the retry (seqnum 3): anything older would be a LostWrite.
    let last = report
        .timings
        .iter()
        .rfind(|t| t.kind == OpKind::Retrieve)
        .expect("a read");
    assert!(last.ok);
    assert_eq!(last.size, 12_345);
}

#[test]
fn mdmf_range_reads_across_segments_and_past_the_end() {
    let size = 300_000;
    let mut p = grid(1, 7);
    at(&mut p, 0, 0, create(MutableFormat::Mdmf, size));
    let ranges = [
        (0, 10),
        (131_000, 2_000),
        (262_100, 37_900),
        (299_990, 100),
        (400_000, 10),
    ];
    for (i, r) in ranges.iter().enumerate() {
        at(
            &mut p,
            5_000 + 1_000 * i as u64,
            0,
            OpSpec::MutableRead {
                file: 0,
                range: Some(*r),
            },
        );
    }
    let report = Sim::run(&p);
    assert_clean(&report);
    let sizes: Vec<u64> = report
        .timings
        .iter()
        .filter(|t| t.kind == OpKind::Retrieve)
        .map(|t| t.size)
        .collect();
    assert_eq!(sizes, [10, 2_000, 37_900, 10, 0]);
}

#[test]
fn crashes_and_corruption_during_updates_break_no_invariant() {
    let mut p = grid(2, 8);
    at(&mut p, 0, 0, create(MutableFormat::Sdmf, 4_000));
    at(&mut p, 1_000, 1, READ);
    for i in 0..6 {
        at(
            &mut p,
            2_000 + 1_500 * i,
            (i % 2) as usize,
            update(1_000 + i, i % 3 != 0),
        );
        at(&mut p, 2_700 + 1_500 * i, ((i + 1) % 2) as usize, READ);
    }
    fault(
        &mut p,
        ms(2_001),
        Fault::Crash {
            server: 0,
            loud: false,
            down_for: secs(3),
        },
    );
    fault(
        &mut p,
        ms(4_000),
        Fault::Corrupt {
            server: Some(3),
            file: None,
        },
    );
    fault(
        &mut p,
        ms(6_000),
        Fault::LoseShare {
            server: Some(5),
            file: None,
        },
    );
    fault(
        &mut p,
        ms(7_000),
        Fault::Crash {
            server: 2,
            loud: true,
            down_for: secs(2),
        },
    );
    let report = Sim::run(&p);
    assert_clean(&report);
    assert!(report.publishes_ok >= 2, "{report:?}");
    assert!(report.retrieves_ok >= 1, "{report:?}");
    assert!(report.final_checks >= 1);
}
