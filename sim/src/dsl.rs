//! The old DSL experiment, re-run in virtual time.
//!
//! Tahoe's performance notes measured uploads from a home DSL line to three servers: 14 ms RTT,
//! 78 kB/s client uplink. A 1 kB file took 820–900 ms (about 60 RTT) and per-file time fitted
//! A + size/B with A = 790 ms and B = 23.4 kB/s. Here the same setting runs through lafs-core's
//! upload state machine: sequential 1 kB uploads, then a size sweep fitted by least squares.

use std::fmt;

use lafs_core::immutable::EncodingParams;
use lafs_core::time::{Duration, Instant};

use crate::net::NetConfig;
use crate::plan::{OpSpec, Plan, PlannedOp, SimParams, Start};
use crate::report::OpKind;
use crate::world::Sim;

/// The setting of the experiment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DslSetup {
    pub servers: usize,
    pub rtt: Duration,
    /// Client uplink, bytes per second.
    pub client_uplink: u64,
    /// Server uplink, bytes per second (the servers sat in a data centre).
    pub server_uplink: u64,
    pub encoding: EncodingParams,
}

impl Default for DslSetup {
    fn default() -> Self {
        DslSetup {
            servers: 3,
            rtt: Duration::from_millis(14),
            client_uplink: 78_000,
            server_uplink: 10_000_000,
            // 3-of-10 as Tahoe's default; happy 3 because there are only three servers, so each
            // server holds three or four shares. 128 KiB segments, Tahoe's default at the time.
            encoding: EncodingParams {
                k: 3,
                happy: 3,
                n: 10,
                max_segment_size: 128 * 1024,
            },
        }
    }
}

/// One line of the result table.
#[derive(Clone, Debug, PartialEq)]
pub struct DslRow {
    pub files: usize,
    pub size: u64,
    /// Mean time per file, sequential uploads.
    pub per_file: Duration,
    /// Bytes the client put on the wire per file (requests, all servers).
    pub bytes_per_file: u64,
}

/// The whole experiment.
#[derive(Clone, Debug, PartialEq)]
pub struct DslReport {
    pub setup: DslSetup,
    pub sequential: Vec<DslRow>,
    pub sizes: Vec<DslRow>,
    /// Fitted per-file time = a + size / b: `a` in microseconds, `b` in bytes per second.
    pub a_micros: f64,
    pub b_bytes_per_sec: f64,
}

impl DslSetup {
    /// Mean time of `files` sequential uploads of `size`-byte files (all different).
    pub fn sequential_uploads(&self, files: usize, size: u64) -> DslRow {
        let plan = Plan {
            seed: 0,
            params: SimParams {
                encoding: self.encoding,
                window_bytes: 8 << 20,
                request_timeout: Duration::from_secs(60),
                op_deadline: Duration::from_secs(3600),
                server_capacity: 1 << 40,
                final_check: false,
                codec: lafs_core::codec::CodecKind::Zfec,
            },
            net: NetConfig::uniform(
                1,
                self.servers,
                Duration(self.rtt.0 / 2),
                self.client_uplink,
                self.server_uplink,
            ),
            files: vec![size; files],
            ops: (0..files)
                .map(|file| PlannedOp {
                    start: if file == 0 {
                        Start::At(Instant(0))
                    } else {
                        Start::AfterPrevious
                    },
                    client: 0,
                    spec: OpSpec::Upload { file },
                })
                .collect(),
            faults: Vec::new(),
            dir_calls: Vec::new(),
        };
        let report = Sim::run(&plan);
        let uploads: Vec<_> = report
            .timings
            .iter()
            .filter(|t| t.kind == OpKind::Upload && t.ok)
            .collect();
        assert_eq!(
            uploads.len(),
            files,
            "fault-free DSL uploads must all succeed"
        );
        // Sequential: from the first start to the last end.
        let total = uploads.iter().map(|t| t.end.0).max().unwrap_or(0)
            - uploads.iter().map(|t| t.start.0).min().unwrap_or(0);
        DslRow {
            files,
            size,
            per_file: Duration(total / files as u64),
            bytes_per_file: report.bytes_to_servers / files as u64,
        }
    }

    /// Runs the experiment: 100 and 1000 sequential 1 kB uploads, then sizes 1 kB – 1 MB.
    pub fn run(&self) -> DslReport {
        let sequential = vec![
            self.sequential_uploads(100, 1_000),
            self.sequential_uploads(1000, 1_000),
        ];
        let sizes: Vec<DslRow> = [1_000, 3_000, 10_000, 30_000, 100_000, 300_000, 1_000_000]
            .iter()
            .map(|&size| self.sequential_uploads(5, size))
            .collect();
        let points: Vec<(f64, f64)> = sizes
            .iter()
            .map(|r| (r.size as f64, r.per_file.0 as f64))
            .collect();
        let (a, slope) = least_squares(&points);
        DslReport {
            setup: self.clone(),
            sequential,
            sizes,
            a_micros: a,
            b_bytes_per_sec: if slope > 0.0 {
                1e6 / slope
            } else {
                f64::INFINITY
            },
        }
    }
}

/// Intercept and slope of the least-squares line through `points`.
pub fn least_squares(points: &[(f64, f64)]) -> (f64, f64) {
    let n = points.len() as f64;
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(sx, sy), (x, y)| (sx + x, sy + y));
    let (mx, my) = (sx / n, sy / n);
    let (sxy, sxx) = points.iter().fold((0.0, 0.0), |(sxy, sxx), (x, y)| {
        (sxy + (x - mx) * (y - my), sxx + (x - mx) * (x - mx))
    });
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    (my - slope * mx, slope)
}

impl fmt::Display for DslReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.setup;
        let rtt_ms = s.rtt.0 as f64 / 1000.0;
        let e = s.encoding;
        writeln!(
            f,
            "setting: {} servers, RTT {rtt_ms} ms, client uplink {} B/s, server uplink {} B/s",
            s.servers, s.client_uplink, s.server_uplink
        )?;
        writeln!(
            f,
            "encoding: {}-of-{}, happy {}, max segment {} B, zfec",
            e.k, e.n, e.happy, e.max_segment_size
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "{:<28} {:>12} {:>9} {:>14}   old Tahoe figure",
            "sequential uploads", "ms/file", "RTT", "bytes/file"
        )?;
        for r in &self.sequential {
            let ms = r.per_file.0 as f64 / 1000.0;
            writeln!(
                f,
                "{:<28} {:>12.1} {:>9.1} {:>14}   820-900 ms, ~60 RTT",
                format!("{} x {} B", r.files, r.size),
                ms,
                ms / rtt_ms,
                r.bytes_per_file
            )?;
        }
        let push_ms = 1_000.0 * e.n as f64 / e.k as f64 / s.client_uplink as f64 * 1000.0;
        writeln!(
            f,
            "target for 1 kB: 1 RTT + n/k x 1 kB through the uplink = {rtt_ms} + {push_ms:.1} = {:.1} ms",
            rtt_ms + push_ms
        )?;
        if let Some(r) = self.sequential.first() {
            let wire_ms = r.bytes_per_file as f64 / s.client_uplink as f64 * 1000.0;
            writeln!(
                f,
                "  with the real bytes on the wire ({} B: shares + hash trees + UEB + framing): \
                 {rtt_ms} + {wire_ms:.1} = {:.1} ms",
                r.bytes_per_file,
                rtt_ms + wire_ms
            )?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "{:<28} {:>12} {:>9} {:>14}",
            "size sweep (5 files each)", "ms/file", "RTT", "bytes/file"
        )?;
        for r in &self.sizes {
            let ms = r.per_file.0 as f64 / 1000.0;
            writeln!(
                f,
                "{:<28} {:>12.1} {:>9.1} {:>14}",
                format!("{} B", r.size),
                ms,
                ms / rtt_ms,
                r.bytes_per_file
            )?;
        }
        writeln!(f)?;
        let a_ms = self.a_micros / 1000.0;
        writeln!(
            f,
            "fit per-file time = A + size/B:  A = {a_ms:.1} ms ({:.1} RTT), B = {:.1} kB/s    \
             old: A = 790 ms, B = 23.4 kB/s",
            a_ms / rtt_ms,
            self.b_bytes_per_sec / 1000.0
        )?;
        writeln!(
            f,
            "B target: uplink / (n/k) = {:.1} kB/s",
            s.client_uplink as f64 * e.k as f64 / e.n as f64 / 1000.0
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_squares_recovers_a_line() {
        let pts: Vec<(f64, f64)> = (0..5).map(|x| (x as f64, 3.0 + 2.0 * x as f64)).collect();
        let (a, b) = least_squares(&pts);
        assert!((a - 3.0).abs() < 1e-9 && (b - 2.0).abs() < 1e-9);
    }
}
