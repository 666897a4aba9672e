//! Scripted scenarios: one fault each, with what a user of the grid must see.

use crate::common;

use common::*;
use lafs_core::time::Duration;
use lafs_sim::report::OpKind;
use lafs_sim::{Fault, Sim};

#[test]
fn a_crash_mid_upload_loses_only_uncommitted_shares() {
    let mut p = plan(10, 7, vec![64 * 1024, 1 << 20]);
    upload(&mut p, ms(0), 0);
    upload(&mut p, ms(1000), 1);
    // 1 MiB x 10/3 through a 10 MB/s uplink takes ~350 ms: crash server 4 in the middle.
    fault(
        &mut p,
        ms(1150),
        Fault::Crash {
            server: 4,
            loud: true,
            down_for: secs(3),
        },
    );
    let mut sim = Sim::new(&p, false);
    let report = sim.run_to_end();
    assert_clean(&report);
    assert!(op(&report, OpKind::Upload, 0).ok);
    assert!(
        op(&report, OpKind::Upload, 1).ok,
        "one lost server of ten keeps happiness >= 7"
    );
    assert_eq!(
        sim.store(4).in_progress_count(),
        0,
        "the crash aborted uploads in progress"
    );
    assert_eq!(
        sim.good_share_count(0),
        10,
        "committed shares survive the crash"
    );
    assert_eq!(sim.good_share_count(1), 9);
    assert_eq!(report.final_checks, 2);
}

#[test]
fn corrupted_shares_are_detected_and_never_returned() {
    let mut p = plan(5, 3, vec![100_000]);
    upload(&mut p, ms(0), 0);
    for i in 0..7 {
        fault(
            &mut p,
            ms(3000 + i),
            Fault::Corrupt {
                server: None,
                file: Some(0),
            },
        );
    }
    download(&mut p, ms(4000), 0);
    let report = Sim::run(&p);
    assert_clean(&report);
    assert!(report.corrupt_shares_detected >= 1, "{report:?}");
    // Whether or not enough good shares were left, no wrong byte came out (checked per Data
    // event by the engine, so a clean report says so).
    assert_eq!(
        report.downloads_ok + report.downloads_failed,
        1 + report.final_checks
    );
}

#[test]
fn losing_more_than_n_minus_k_shares_fails_cleanly() {
    let mut p = plan(5, 3, vec![100_000]);
    upload(&mut p, ms(0), 0);
    for i in 0..8 {
        fault(
            &mut p,
            ms(3000 + i),
            Fault::LoseShare {
                server: None,
                file: Some(0),
            },
        );
    }
    download(&mut p, ms(4000), 0);
    let mut sim = Sim::new(&p, false);
    let report = sim.run_to_end();
    assert_clean(&report);
    assert_eq!(sim.good_share_count(0), 2);
    let d = op(&report, OpKind::Download, 0);
    assert!(!d.ok);
    assert!(
        d.duration() < Duration::from_secs(1),
        "fails as soon as shares run out"
    );
    assert_eq!(report.unrecoverable_files, 1);
    assert_eq!(report.final_checks, 0);
    assert!(report
        .failure_reasons
        .keys()
        .any(|k| k.starts_with("download: not enough shares")));
}

#[test]
fn a_partition_that_heals_only_delays_the_upload() {
    let mut p = plan(6, 6, vec![50_000]);
    for server in 0..6 {
        fault(
            &mut p,
            ms(0),
            Fault::Partition {
                client: None,
                server,
                duration: secs(2),
            },
        );
    }
    upload(&mut p, ms(1), 0);
    let report = Sim::run(&p);
    assert_clean(&report);
    let u = op(&report, OpKind::Upload, 0);
    assert!(u.ok);
    assert!(
        u.duration() >= Duration::from_millis(1990),
        "{:?}",
        u.duration()
    );
    assert!(u.duration() < Duration::from_secs(3));
}

#[test]
fn a_long_partition_times_out_instead_of_hanging() {
    let mut p = plan(6, 4, vec![50_000]);
    for server in 0..3 {
        fault(
            &mut p,
            ms(0),
            Fault::Partition {
                client: None,
                server,
                duration: secs(30),
            },
        );
    }
    upload(&mut p, ms(1), 0);
    let report = Sim::run(&p);
    assert_clean(&report);
    let u = op(&report, OpKind::Upload, 0);
    assert!(!u.ok, "only 3 servers reachable, happy is 4");
    let timeout = p.params.request_timeout;
    assert!(u.duration() >= timeout && u.duration() < Duration(timeout.0 + 1_000_000));
}

#[test]
fn a_silent_crash_is_noticed_by_the_request_timeout() {
    let mut p = plan(4, 3, vec![20_000]);
    fault(
        &mut p,
        ms(0),
        Fault::Crash {
            server: 1,
            loud: false,
            down_for: secs(60),
        },
    );
    upload(&mut p, ms(1), 0);
    let report = Sim::run(&p);
    assert_clean(&report);
    let u = op(&report, OpKind::Upload, 0);
    assert!(u.ok, "three live servers still give happiness 3");
    assert!(u.duration() >= p.params.request_timeout);
}

#[test]
fn full_disks_refuse_uploads_until_space_returns() {
    let mut p = plan(5, 3, vec![20_000, 20_000]);
    // Something on disk first, so "full" means capacity = space used > 0.
    upload(&mut p, ms(0), 0);
    for server in 0..5 {
        fault(
            &mut p,
            ms(1000),
            Fault::DiskFull {
                server,
                duration: secs(10),
            },
        );
    }
    upload(&mut p, ms(2000), 1);
    let report = Sim::run(&p);
    assert_clean(&report);
    let u = op(&report, OpKind::Upload, 1);
    assert!(!u.ok);
    assert!(
        u.duration() < Duration::from_secs(1),
        "a refusal is an answer, not a timeout"
    );

    // Once space is back, the same file uploads.
    let mut p2 = p.clone();
    upload(&mut p2, ms(20_000), 1);
    let report = Sim::run(&p2);
    assert_clean(&report);
    assert!(report
        .timings
        .iter()
        .any(|t| t.kind == OpKind::Upload && t.file == 1 && t.ok));
}

#[test]
fn disk_errors_fail_a_download_cleanly() {
    let mut p = plan(4, 3, vec![40_000]);
    upload(&mut p, ms(0), 0);
    for server in 0..4 {
        fault(
            &mut p,
            ms(1000),
            Fault::DiskErrors {
                server,
                duration: secs(2),
            },
        );
    }
    download(&mut p, ms(1000), 0);
    let report = Sim::run(&p);
    assert_clean(&report);
    assert!(!op(&report, OpKind::Download, 0).ok);
    assert_eq!(report.final_checks, 1, "the shares were intact all along");
}

#[test]
fn a_reset_mid_upload_is_survivable() {
    let mut p = plan(10, 7, vec![300_000]);
    upload(&mut p, ms(0), 0);
    fault(
        &mut p,
        ms(40),
        Fault::Reset {
            client: 0,
            server: 2,
        },
    );
    let mut sim = Sim::new(&p, false);
    let report = sim.run_to_end();
    assert_clean(&report);
    assert!(op(&report, OpKind::Upload, 0).ok);
    assert_eq!(
        sim.store(2).in_progress_count(),
        0,
        "the reset aborted server 2's part"
    );
}
