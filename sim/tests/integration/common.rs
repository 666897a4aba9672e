//! Helpers shared by the scenario and regression tests.
#![allow(dead_code)]

use lafs_core::immutable::EncodingParams;
use lafs_core::time::{Duration, Instant};
use lafs_sim::net::NetConfig;
use lafs_sim::report::{OpKind, OpTiming};
use lafs_sim::{Fault, OpSpec, Plan, PlannedFault, PlannedOp, RunReport, SimParams, Start};

pub fn ms(t: u64) -> Instant {
    Instant(t * 1000)
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A one-client grid of `servers` servers, 10 ms one-way, 10 MB/s client uplink, 3-of-10.
pub fn plan(servers: usize, happy: usize, files: Vec<u64>) -> Plan {
    Plan {
        seed: 1,
        params: SimParams {
            encoding: EncodingParams {
                k: 3,
                happy,
                n: 10,
                max_segment_size: 32 * 1024,
            },
            ..SimParams::default()
        },
        net: NetConfig::uniform(
            1,
            servers,
            Duration::from_millis(10),
            10_000_000,
            50_000_000,
        ),
        files,
        ops: Vec::new(),
        faults: Vec::new(),
        dir_calls: Vec::new(),
    }
}

pub fn upload(plan: &mut Plan, at: Instant, file: usize) {
    plan.ops.push(PlannedOp {
        start: Start::At(at),
        client: 0,
        spec: OpSpec::Upload { file },
    });
}

pub fn download(plan: &mut Plan, at: Instant, file: usize) {
    plan.ops.push(PlannedOp {
        start: Start::At(at),
        client: 0,
        spec: OpSpec::Download { file },
    });
}

pub fn fault(plan: &mut Plan, at: Instant, fault: Fault) {
    plan.faults.push(PlannedFault { at, fault });
}

/// The timing of the `nth` operation of `kind` on `file` (plan order of completion).
pub fn op(report: &RunReport, kind: OpKind, file: usize) -> OpTiming {
    report
        .timings
        .iter()
        .find(|t| t.kind == kind && t.file == file)
        .cloned()
        .unwrap_or_else(|| panic!("no {kind:?} of file {file} in {:?}", report.timings))
}

pub fn assert_clean(report: &RunReport) {
    assert!(
        report.violations.is_empty(),
        "violations: {:#?}",
        report.violations
    );
}
