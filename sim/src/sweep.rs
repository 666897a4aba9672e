//! Running many seeds and adding up what they found.

use std::collections::BTreeMap;

use crate::generate::{random_plan, WorkloadConfig};
use crate::report::{OpCounts, OpKind, RunReport, Violation};
use crate::world::Sim;

/// Runs the random plan of `seed`.
pub fn run_seed(seed: u64, cfg: &WorkloadConfig) -> RunReport {
    Sim::run(&random_plan(seed, cfg))
}

/// The one-line command that replays `seed` of a sweep with `cfg` (with its event trace).
pub fn repro_command(seed: u64, cfg: &WorkloadConfig) -> String {
    let mut cmd = format!("SIM_SEED={seed} cargo run -p lafs-sim --release -- run --trace");
    let d = WorkloadConfig::default();
    if cfg.ops != d.ops {
        cmd += &format!(" --ops {}", cfg.ops);
    }
    if cfg.mean_size != d.mean_size {
        cmd += &format!(" --mean-size {}", cfg.mean_size);
    }
    if cfg.max_size != d.max_size {
        cmd += &format!(" --max-size {}", cfg.max_size);
    }
    if cfg.mutable_ops != d.mutable_ops {
        cmd += &format!(" --mutable-ops {}", cfg.mutable_ops);
    }
    if cfg.dir_ops != d.dir_ops {
        cmd += &format!(" --dir-ops {}", cfg.dir_ops);
    }
    if cfg.more_ops != d.more_ops {
        cmd += &format!(" --more-ops {}", cfg.more_ops);
    }
    if !cfg.faults {
        cmd += " --no-faults";
    }
    cmd
}

/// Totals over a sweep.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SweepSummary {
    pub runs: u64,
    pub operations: u64,
    pub uploads_ok: u64,
    pub uploads_failed: u64,
    pub downloads_ok: u64,
    pub downloads_failed: u64,
    pub final_checks: u64,
    pub unrecoverable_files: u64,
    pub corrupt_shares_detected: u64,
    pub publishes_ok: u64,
    pub publishes_failed: u64,
    pub conflicts: u64,
    pub concurrent_publishes: u64,
    pub retrieves_ok: u64,
    pub retrieves_failed: u64,
    pub mutable_skipped: u64,
    pub dir_edits_ok: u64,
    pub dir_edits_failed: u64,
    pub dir_lists_ok: u64,
    pub dir_lists_failed: u64,
    pub dir_skipped: u64,
    pub dir_listings_checked: u64,
    pub dir_retries: u64,
    pub lookups_checked: u64,
    /// Planned operations by kind: ok, failed, skipped.
    pub by_op: BTreeMap<&'static str, OpCounts>,
    pub faults: BTreeMap<&'static str, u64>,
    pub events: u64,
    pub virtual_micros: u64,
    /// Latencies of successful uploads and downloads: (virtual ms, RTTs of their run).
    pub upload_latency: Vec<(f64, f64)>,
    pub download_latency: Vec<(f64, f64)>,
    /// Why operations failed, with counts.
    pub failure_reasons: BTreeMap<String, u64>,
    /// Seeds that broke an invariant in a way no known bug explains, with what broke.
    pub failures: Vec<(u64, Vec<Violation>)>,
    /// Violations matching a known lafs-core bug: the bug, and the seeds that hit it.
    pub known_bugs: BTreeMap<&'static str, Vec<u64>>,
}

impl SweepSummary {
    pub fn add(&mut self, r: &RunReport) {
        self.runs += 1;
        self.operations += r.operations();
        self.uploads_ok += r.uploads_ok;
        self.uploads_failed += r.uploads_failed;
        self.downloads_ok += r.downloads_ok;
        self.downloads_failed += r.downloads_failed;
        self.final_checks += r.final_checks;
        self.unrecoverable_files += r.unrecoverable_files;
        self.corrupt_shares_detected += r.corrupt_shares_detected;
        self.publishes_ok += r.publishes_ok;
        self.publishes_failed += r.publishes_failed;
        self.conflicts += r.conflicts;
        self.concurrent_publishes += r.concurrent_publishes;
        self.retrieves_ok += r.retrieves_ok;
        self.retrieves_failed += r.retrieves_failed;
        self.mutable_skipped += r.mutable_skipped;
        self.dir_edits_ok += r.dir_edits_ok;
        self.dir_edits_failed += r.dir_edits_failed;
        self.dir_lists_ok += r.dir_lists_ok;
        self.dir_lists_failed += r.dir_lists_failed;
        self.dir_skipped += r.dir_skipped;
        self.dir_listings_checked += r.dir_listings_checked;
        self.dir_retries += r.dir_retries;
        self.lookups_checked += r.lookups_checked;
        for (k, v) in &r.by_op {
            self.by_op.entry(k).or_default().add(v);
        }
        for (k, v) in &r.faults {
            *self.faults.entry(k).or_default() += v;
        }
        self.events += r.events;
        self.virtual_micros += r.end.0;
        let rtt = r.mean_rtt.0.max(1) as f64;
        for t in r.timings.iter().filter(|t| t.ok) {
            let us = t.duration().0 as f64;
            let sample = (us / 1000.0, us / rtt);
            match t.kind {
                OpKind::Upload => self.upload_latency.push(sample),
                OpKind::Download => self.download_latency.push(sample),
                OpKind::FinalCheck
                | OpKind::Publish
                | OpKind::Retrieve
                | OpKind::DirEdit
                | OpKind::DirList
                | OpKind::Status => {}
            }
        }
        for (k, v) in &r.failure_reasons {
            *self.failure_reasons.entry(k.clone()).or_default() += v;
        }
        let unknown: Vec<Violation> = r.unknown_violations().cloned().collect();
        if !unknown.is_empty() {
            self.failures.push((r.seed, unknown));
        }
        for v in &r.violations {
            if let Some(bug) = v.known_core_bug() {
                let seeds = self.known_bugs.entry(bug).or_default();
                if seeds.last() != Some(&r.seed) {
                    seeds.push(r.seed);
                }
            }
        }
    }

    pub fn faults_injected(&self) -> u64 {
        self.faults.values().sum()
    }

    /// Violations no known bug explains.
    pub fn violations(&self) -> u64 {
        self.failures.iter().map(|(_, v)| v.len() as u64).sum()
    }

    /// Seeds that hit a known lafs-core bug.
    pub fn known_bug_seeds(&self) -> u64 {
        self.known_bugs.values().map(|s| s.len() as u64).sum()
    }

    /// A plain-text table of the totals.
    pub fn table(&self) -> String {
        let mut rows = vec![
            ("runs".to_string(), self.runs.to_string()),
            ("operations".into(), self.operations.to_string()),
            (
                "  uploads ok / failed".into(),
                format!("{} / {}", self.uploads_ok, self.uploads_failed),
            ),
            (
                "  downloads ok / failed".into(),
                format!("{} / {}", self.downloads_ok, self.downloads_failed),
            ),
            (
                "  final fault-free checks".into(),
                self.final_checks.to_string(),
            ),
            (
                "  mutable publishes ok / failed".into(),
                format!("{} / {}", self.publishes_ok, self.publishes_failed),
            ),
            (
                "    conflicts (uncoordinated writes)".into(),
                self.conflicts.to_string(),
            ),
            (
                "    updates racing another publish".into(),
                self.concurrent_publishes.to_string(),
            ),
            (
                "  mutable reads ok / failed".into(),
                format!("{} / {}", self.retrieves_ok, self.retrieves_failed),
            ),
            (
                "  mutable ops skipped".into(),
                self.mutable_skipped.to_string(),
            ),
            (
                "  directory edits ok / failed".into(),
                format!("{} / {}", self.dir_edits_ok, self.dir_edits_failed),
            ),
            (
                "  directory listings ok / failed".into(),
                format!("{} / {}", self.dir_lists_ok, self.dir_lists_failed),
            ),
            (
                "  directory ops skipped".into(),
                self.dir_skipped.to_string(),
            ),
            (
                "  final listings checked link by link".into(),
                self.dir_listings_checked.to_string(),
            ),
            (
                "  directory edits retried after a conflict".into(),
                self.dir_retries.to_string(),
            ),
            (
                "  lookups checked against the model".into(),
                self.lookups_checked.to_string(),
            ),
            (
                "files below k good shares".into(),
                self.unrecoverable_files.to_string(),
            ),
            (
                "corrupt shares detected".into(),
                self.corrupt_shares_detected.to_string(),
            ),
            ("faults injected".into(), self.faults_injected().to_string()),
        ];
        rows.push(("by operation: ok / failed / skipped".into(), String::new()));
        for (k, c) in &self.by_op {
            rows.push((
                format!("  {k}"),
                format!("{} / {} / {}", c.ok, c.failed, c.skipped),
            ));
        }
        for (k, v) in &self.faults {
            rows.push((format!("  {k}"), v.to_string()));
        }
        rows.push(("operation failures".into(), String::new()));
        for (k, v) in &self.failure_reasons {
            rows.push((format!("  {k}"), v.to_string()));
        }
        for (name, samples) in [
            ("upload latency p50 / p99", &self.upload_latency),
            ("download latency p50 / p99", &self.download_latency),
        ] {
            if let (Some(p50), Some(p99)) = (percentile(samples, 0.5), percentile(samples, 0.99)) {
                rows.push((
                    name.into(),
                    format!(
                        "{:.0} ms ({:.1} RTT) / {:.0} ms ({:.1} RTT)",
                        p50.0, p50.1, p99.0, p99.1
                    ),
                ));
            }
        }
        rows.push(("events".into(), self.events.to_string()));
        rows.push((
            "virtual time".into(),
            format!("{:.1} s", self.virtual_micros as f64 / 1e6),
        ));
        rows.push(("invariant violations".into(), self.violations().to_string()));
        rows.push(("failing seeds".into(), self.failures.len().to_string()));
        rows.push((
            "seeds hitting a known core bug".into(),
            self.known_bug_seeds().to_string(),
        ));
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        rows.iter()
            .map(|(k, v)| format!("{k:<width$}  {v:>12}\n"))
            .collect()
    }
}

/// The `q` quantile of `samples` by milliseconds and, separately, by RTTs.
fn percentile(samples: &[(f64, f64)], q: f64) -> Option<(f64, f64)> {
    if samples.is_empty() {
        return None;
    }
    let pick = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[((v.len() - 1) as f64 * q).round() as usize]
    };
    Some((
        pick(samples.iter().map(|s| s.0).collect()),
        pick(samples.iter().map(|s| s.1).collect()),
    ))
}
