//! The DSL experiment's promises: a small upload costs one round trip plus pushing its bytes
//! through the uplink, and large uploads run at the uplink rate divided by the expansion n/k.

use lafs_core::time::Duration;
use lafs_sim::dsl::{least_squares, DslSetup};

#[test]
fn a_1kb_upload_is_one_round_trip_plus_its_bytes_through_the_uplink() {
    let setup = DslSetup::default();
    let row = setup.sequential_uploads(100, 1_000);
    let push = Duration(row.bytes_per_file * 1_000_000 / setup.client_uplink);
    let bound = Duration(setup.rtt.0 + push.0 + 1_000); // 1 ms of rounding slack
    assert!(
        row.per_file <= bound,
        "{} us per file, bound {} us",
        row.per_file.0,
        bound.0
    );
    assert!(row.per_file.0 > setup.rtt.0 + push.0 / 2);
}

#[test]
fn large_uploads_run_at_uplink_over_expansion() {
    let setup = DslSetup::default();
    let points: Vec<(f64, f64)> = [100_000u64, 300_000, 1_000_000]
        .iter()
        .map(|&size| {
            let row = setup.sequential_uploads(2, size);
            (size as f64, row.per_file.0 as f64)
        })
        .collect();
    let (_, slope) = least_squares(&points);
    let b = 1e6 / slope;
    let e = setup.encoding;
    let target = setup.client_uplink as f64 * e.k as f64 / e.n as f64;
    assert!(
        (b - target).abs() / target < 0.05,
        "B = {b:.0} B/s, target {target:.0} B/s"
    );
}
