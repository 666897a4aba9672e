//! What the gateway has done: operations and bytes by kind, latency histograms, round trips,
//! and this process's CPU time and memory, served at `/statistics?t=json|openmetrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::procstat;
use lafs_runtime_std::sync::Mutex;

/// What a request did, for counting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OpKind {
    /// Immutable upload (`PUT /uri`, `PUT /uri/DIRCAP/name`, form upload).
    Upload,
    /// Immutable download (`GET /uri/CAP`).
    Download,
    MutableCreate,
    MutableUpdate,
    MutableRead,
    Mkdir,
    /// Directory listing or `t=json` description.
    List,
    /// Adding a link (`t=uri`).
    Link,
    Unlink,
    /// Pages and statistics.
    Page,
}

impl OpKind {
    pub const ALL: [OpKind; 10] = [
        OpKind::Upload,
        OpKind::Download,
        OpKind::MutableCreate,
        OpKind::MutableUpdate,
        OpKind::MutableRead,
        OpKind::Mkdir,
        OpKind::List,
        OpKind::Link,
        OpKind::Unlink,
        OpKind::Page,
    ];

    pub fn name(self) -> &'static str {
        match self {
            OpKind::Upload => "upload",
            OpKind::Download => "download",
            OpKind::MutableCreate => "mutable_create",
            OpKind::MutableUpdate => "mutable_update",
            OpKind::MutableRead => "mutable_read",
            OpKind::Mkdir => "mkdir",
            OpKind::List => "list",
            OpKind::Link => "link",
            OpKind::Unlink => "unlink",
            OpKind::Page => "page",
        }
    }
}

/// An OpenMetrics counter family: name, help, and the field it reports.
type Family = (&'static str, &'static str, fn(&OpStats) -> u64);

/// Upper bounds of the latency buckets, in microseconds (the last bucket is unbounded).
pub const LATENCY_BOUNDS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// Counts of latencies per bucket.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Histogram {
    /// `counts[i]` counts latencies <= `LATENCY_BOUNDS_US[i]` and above the bound before;
    /// the extra last entry counts the rest.
    pub counts: [u64; LATENCY_BOUNDS_US.len() + 1],
    pub sum_us: u64,
}

impl Histogram {
    pub fn record(&mut self, latency: Duration) {
        let us = latency.as_micros().min(u128::from(u64::MAX)) as u64;
        let i = LATENCY_BOUNDS_US.partition_point(|&b| b < us);
        self.counts[i] += 1;
        self.sum_us = self.sum_us.saturating_add(us);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The bucket bound under which the fraction `q` of latencies fall (an upper estimate),
    /// in microseconds; `None` when empty or past the last bound.
    pub fn quantile_bound_us(&self, q: f64) -> Option<u64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let wanted = (q * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= wanted {
                return LATENCY_BOUNDS_US.get(i).copied();
            }
        }
        None
    }
}

/// Totals for one kind of operation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpStats {
    pub count: u64,
    pub failures: u64,
    /// Request body bytes taken in (uploads) and response body bytes sent (downloads).
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Sequential round trips to storage servers, summed over the operations that reported them.
    pub round_trips: u64,
    pub latency: Histogram,
}

/// One finished request, as counted.
#[derive(Clone, Copy, Debug, Default)]
pub struct Outcome {
    pub ok: bool,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub round_trips: u64,
}

/// The gateway's statistics, shared by its worker threads.
#[derive(Debug)]
pub struct Stats {
    started: Instant,
    ops: Mutex<BTreeMap<OpKind, OpStats>>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new()
    }
}

impl Stats {
    pub fn new() -> Stats {
        Stats {
            started: Instant::now(),
            ops: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn record(&self, kind: OpKind, latency: Duration, outcome: Outcome) {
        let mut ops = self.ops.lock().unwrap_or_else(|e| e.into_inner());
        let s = ops.entry(kind).or_default();
        s.count += 1;
        if !outcome.ok {
            s.failures += 1;
        }
        s.bytes_in += outcome.bytes_in;
        s.bytes_out += outcome.bytes_out;
        s.round_trips += outcome.round_trips;
        s.latency.record(latency);
    }

    /// A copy of the counters.
    pub fn snapshot(&self) -> BTreeMap<OpKind, OpStats> {
        self.ops.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// `/statistics?t=json`: Tahoe's two top-level maps (`stats`, `counters`) with lafs's own
    /// names inside, plus per-kind latency histograms.
    pub fn to_json(&self, extra: &serde_json::Map<String, serde_json::Value>) -> serde_json::Value {
        let process = procstat::this_process();
        let mut stats = serde_json::Map::new();
        let mut counters = serde_json::Map::new();
        let mut latency = serde_json::Map::new();
        stats.insert("node.uptime".into(), self.uptime().as_secs_f64().into());
        if let Some(rss) = process.rss_bytes {
            stats.insert("process.rss_bytes".into(), rss.into());
        }
        if let Some(peak) = process.peak_rss_bytes {
            stats.insert("process.peak_rss_bytes".into(), peak.into());
        }
        if let Some(cpu) = process.cpu_time {
            stats.insert("process.cpu_seconds".into(), cpu.as_secs_f64().into());
        }
        for (k, v) in extra {
            stats.insert(k.clone(), v.clone());
        }
        for (kind, s) in self.snapshot() {
            let n = kind.name();
            counters.insert(format!("gateway.{n}.count"), s.count.into());
            counters.insert(format!("gateway.{n}.failures"), s.failures.into());
            counters.insert(format!("gateway.{n}.bytes_in"), s.bytes_in.into());
            counters.insert(format!("gateway.{n}.bytes_out"), s.bytes_out.into());
            counters.insert(format!("gateway.{n}.round_trips"), s.round_trips.into());
            let buckets: Vec<serde_json::Value> = LATENCY_BOUNDS_US
                .iter()
                .map(|b| serde_json::Value::from(*b))
                .chain(std::iter::once(serde_json::Value::Null))
                .zip(s.latency.counts.iter())
                .map(|(le, c)| serde_json::json!({ "le_us": le, "count": c }))
                .collect();
            latency.insert(
                n.into(),
                serde_json::json!({
                    "count": s.latency.count(),
                    "sum_us": s.latency.sum_us,
                    "p50_us_at_most": s.latency.quantile_bound_us(0.5),
                    "p99_us_at_most": s.latency.quantile_bound_us(0.99),
                    "buckets": buckets,
                }),
            );
        }
        serde_json::json!({ "stats": stats, "counters": counters, "latency": latency })
    }

    /// `/statistics?t=openmetrics`: the same figures in the OpenMetrics text format.
    /// `extra`: more metric families, already in the text format, placed before `# EOF`.
    pub fn to_openmetrics(&self, extra: &str) -> String {
        let process = procstat::this_process();
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, value: f64| {
            let _ = writeln!(
                out,
                "# TYPE {name} gauge\n# HELP {name} {help}\n{name} {value}"
            );
        };
        gauge(
            "lafs_uptime_seconds",
            "Seconds since the node started.",
            self.uptime().as_secs_f64(),
        );
        if let Some(rss) = process.rss_bytes {
            gauge(
                "lafs_process_resident_memory_bytes",
                "Resident set size.",
                rss as f64,
            );
        }
        if let Some(cpu) = process.cpu_time {
            gauge(
                "lafs_process_cpu_seconds",
                "User plus system CPU time.",
                cpu.as_secs_f64(),
            );
        }
        let ops = self.snapshot();
        let families: [Family; 5] = [
            (
                "lafs_gateway_operations",
                "Requests served, by kind.",
                |s| s.count,
            ),
            (
                "lafs_gateway_failures",
                "Requests that failed, by kind.",
                |s| s.failures,
            ),
            (
                "lafs_gateway_bytes_in",
                "Request body bytes taken in, by kind.",
                |s| s.bytes_in,
            ),
            (
                "lafs_gateway_bytes_out",
                "Response body bytes sent, by kind.",
                |s| s.bytes_out,
            ),
            (
                "lafs_gateway_round_trips",
                "Sequential round trips to storage servers, by kind.",
                |s| s.round_trips,
            ),
        ];
        for (name, help, get) in families {
            let _ = writeln!(out, "# TYPE {name} counter\n# HELP {name} {help}");
            for (kind, s) in &ops {
                let _ = writeln!(out, "{name}_total{{kind=\"{}\"}} {}", kind.name(), get(s));
            }
        }
        let name = "lafs_gateway_latency_seconds";
        let _ = writeln!(
            out,
            "# TYPE {name} histogram\n# HELP {name} Request latency, by kind."
        );
        for (kind, s) in &ops {
            let mut cumulative = 0;
            for (i, c) in s.latency.counts.iter().enumerate() {
                cumulative += c;
                let le = LATENCY_BOUNDS_US
                    .get(i)
                    .map_or_else(|| "+Inf".to_string(), |b| format!("{}", *b as f64 / 1e6));
                let _ = writeln!(
                    out,
                    "{name}_bucket{{kind=\"{}\",le=\"{le}\"}} {cumulative}",
                    kind.name()
                );
            }
            let _ = writeln!(out, "{name}_count{{kind=\"{}\"}} {cumulative}", kind.name());
            let _ = writeln!(
                out,
                "{name}_sum{{kind=\"{}\"}} {}",
                kind.name(),
                s.latency.sum_us as f64 / 1e6
            );
        }
        out.push_str(extra);
        out.push_str("# EOF\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_and_quantiles() {
        let mut h = Histogram::default();
        for us in [50, 90, 300, 800, 20_000_000] {
            h.record(Duration::from_micros(us));
        }
        assert_eq!(h.count(), 5);
        assert_eq!(h.counts[0], 2);
        assert_eq!(h.counts[2], 1);
        assert_eq!(h.counts[3], 1);
        assert_eq!(h.counts[LATENCY_BOUNDS_US.len()], 1);
        assert_eq!(h.quantile_bound_us(0.5), Some(500));
        assert_eq!(h.quantile_bound_us(0.4), Some(100));
        assert_eq!(h.quantile_bound_us(1.0), None);
        assert_eq!(Histogram::default().quantile_bound_us(0.5), None);
    }

    #[test]
    fn json_and_openmetrics_carry_the_counts() {
        let s = Stats::new();
        let ok = Outcome {
            ok: true,
            bytes_in: 1000,
            bytes_out: 0,
            round_trips: 2,
        };
        s.record(OpKind::Upload, Duration::from_micros(700), ok);
        s.record(
            OpKind::Upload,
            Duration::from_micros(70),
            Outcome { ok: false, ..ok },
        );
        let j = s.to_json(&serde_json::Map::new());
        assert_eq!(j["counters"]["gateway.upload.count"], 2);
        assert_eq!(j["counters"]["gateway.upload.failures"], 1);
        assert_eq!(j["counters"]["gateway.upload.bytes_in"], 2000);
        assert_eq!(j["latency"]["upload"]["count"], 2);
        let m = s.to_openmetrics("");
        assert!(m.contains("lafs_gateway_operations_total{kind=\"upload\"} 2"));
        assert!(m.contains("lafs_gateway_latency_seconds_bucket{kind=\"upload\",le=\"+Inf\"} 2"));
        assert!(m.ends_with("# EOF\n"));
    }
}
