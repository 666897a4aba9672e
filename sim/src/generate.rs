//! Random plans: one seed gives the grid, the workload and the faults of a run.
//!
//! Workload and faults come from separate streams ([`crate::rng`]), so two seeds with the same
//! workload stream but different fault streams never happen by accident, and changing the fault
//! mix leaves every seed's workload as it was.

use lafs_core::immutable::EncodingParams;
use lafs_core::mutable::layout::{MutableFormat, MDMF_MAX_SEGMENT_SIZE};
use lafs_core::time::{Duration, Instant};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::net::NetConfig;
use crate::plan::{Fault, OpSpec, Plan, PlannedFault, PlannedOp, SimParams, Start};
use crate::rng::{exponential, sub_rng, Concern};

/// The knobs of a random sweep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadConfig {
    /// Operations per run.
    pub ops: usize,
    /// Mean file size (sizes are exponential, at least 1 byte).
    pub mean_size: u64,
    /// Largest file.
    pub max_size: u64,
    /// Mean gap between operation starts (exponential).
    pub mean_gap: Duration,
    /// Inject faults (at a rate drawn per seed; some seeds stay fault-free).
    pub faults: bool,
    /// Mutable-file operations per run (creates, updates, concurrent updates, reads), on top
    /// of `ops`; 0 for an immutable-only workload.
    pub mutable_ops: usize,
    /// Directory operations per run (creates, links of uploaded files, unlinks, listings, and
    /// bursts of links into one directory from several clients), on top of the others; 0 for
    /// none.
    pub dir_ops: usize,
    /// Further operations per run, on top of the others: ranged downloads of uploaded files,
    /// in-place modifies of MDMF files, grid status queries, directory lookups and renames; 0
    /// for none.
    pub more_ops: usize,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig {
            ops: 24,
            mean_size: 64 * 1024,
            max_size: 1 << 20,
            mean_gap: Duration::from_millis(100),
            faults: true,
            mutable_ops: 12,
            dir_ops: 10,
            more_ops: 6,
        }
    }
}

fn millis(rng: &mut ChaCha8Rng, lo: u64, hi: u64) -> Duration {
    Duration::from_micros(rng.gen_range(lo * 1000..=hi * 1000))
}

/// Uniform on a log scale between `lo` and `hi`.
fn log_uniform(rng: &mut ChaCha8Rng, lo: u64, hi: u64) -> u64 {
    let (a, b) = ((lo as f64).ln(), (hi as f64).ln());
    rng.gen_range(a..=b).exp() as u64
}

/// The plan of seed `seed`.
pub fn random_plan(seed: u64, cfg: &WorkloadConfig) -> Plan {
    let mut grid = sub_rng(seed, Concern::Grid);
    let servers = grid.gen_range(4..=12usize);
    let clients = grid.gen_range(1..=3usize);
    let k = 3;
    let happy = grid.gen_range(k..=servers.min(7));
    let base: Vec<u64> = (0..servers)
        .map(|_| grid.gen_range(1_000..=40_000))
        .collect();
    let latency = (0..clients)
        .map(|_| {
            let extra = grid.gen_range(0..=10_000);
            base.iter().map(|b| Duration(b + extra)).collect()
        })
        .collect();
    let net = NetConfig {
        clients,
        servers,
        latency,
        jitter: Duration(grid.gen_range(0..=3_000)),
        loss_ppm: if grid.gen_bool(0.3) {
            grid.gen_range(0..=20_000)
        } else {
            0
        },
        client_uplink: log_uniform(&mut grid, 500_000, 50_000_000),
        server_uplink: log_uniform(&mut grid, 5_000_000, 100_000_000),
    };
    let server_capacity = if grid.gen_bool(0.15) {
        grid.gen_range(256 * 1024..4 << 20)
    } else {
        1 << 40
    };
    let params = SimParams {
        encoding: EncodingParams {
            k,
            happy,
            n: 10,
            max_segment_size: 32 * 1024,
        },
        server_capacity,
        ..SimParams::default()
    };

    let mut work = sub_rng(seed, Concern::Workload);
    let mut files = Vec::new();
    let mut ops = Vec::new();
    let mut t = 0f64;
    for i in 0..cfg.ops {
        let client = work.gen_range(0..clients);
        let roll: f64 = work.gen();
        let spec = if i == 0 || roll < 0.55 || (roll < 0.65 && files.is_empty()) {
            let size = (exponential(&mut work, cfg.mean_size as f64) as u64).clamp(1, cfg.max_size);
            files.push(size);
            OpSpec::Upload {
                file: files.len() - 1,
            }
        } else if roll < 0.65 {
            OpSpec::Upload {
                file: work.gen_range(0..files.len()),
            }
        } else {
            OpSpec::DownloadAny
        };
        ops.push(PlannedOp {
            start: Start::At(Instant(t as u64)),
            client,
            spec,
        });
        t += exponential(&mut work, cfg.mean_gap.0 as f64);
    }

    let span = t;
    ops.extend(mutable_ops(seed, cfg, clients, span));
    let uploads: Vec<usize> = ops
        .iter()
        .filter_map(|o| match o.spec {
            OpSpec::Upload { file } => Some(file),
            _ => None,
        })
        .collect();
    ops.extend(dir_ops(seed, cfg, clients, span, &uploads));
    let more = more_ops(seed, cfg, clients, span, &ops, &files);
    ops.extend(more);
    // Start order (stable: the immutable ops keep theirs).
    ops.sort_by_key(|o| match o.start {
        Start::At(t) => t,
        Start::AfterPrevious => Instant(0),
    });

    let mut faults = Vec::new();
    if cfg.faults {
        let mut f = sub_rng(seed, Concern::Faults);
        // Some seeds run clean, most get a few faults, some get many.
        let expected: f64 = match f.gen_range(0..10) {
            0 | 1 => 0.0,
            2..=7 => f.gen_range(1.0..6.0),
            _ => f.gen_range(6.0..20.0),
        };
        let span = t + 2_000_000.0;
        if expected > 0.0 {
            let mut at = exponential(&mut f, span / expected);
            while at < span {
                faults.push(PlannedFault {
                    at: Instant(at as u64),
                    fault: random_fault(&mut f, clients, servers),
                });
                at += exponential(&mut f, span / expected);
            }
        }
    }
    Plan {
        seed,
        params,
        net,
        files,
        ops,
        faults,
        dir_calls: Vec::new(),
    }
}

/// Mutable files per run at most (each spends one of the 64 fixture keys).
const MUTABLE_FILES: usize = 3;

/// A size for a new version of a file in `format`: SDMF up to 48 KiB; MDMF small, or (one in
/// three) over one 128 KiB segment, up to three segments.
fn mutable_size(m: &mut ChaCha8Rng, format: MutableFormat) -> u64 {
    match format {
        MutableFormat::Sdmf => log_uniform(m, 1, 48 * 1024).max(1),
        MutableFormat::Mdmf if m.gen_bool(1.0 / 3.0) => {
            m.gen_range(MDMF_MAX_SEGMENT_SIZE + 1..=3 * MDMF_MAX_SEGMENT_SIZE)
        }
        MutableFormat::Mdmf => log_uniform(m, 1, 64 * 1024).max(1),
    }
}

/// Directories per run, at most.
const DIRS: usize = 2;
/// Names a run's links use per directory, at most (few, so edits of one name meet).
const NAMES: u32 = 6;

/// The directory part of a workload, from its own random stream over about `span`
/// microseconds: each directory is made first; then links of uploaded files under a few names
/// (skipped until the file is acknowledged), unlinks, listings, and bursts of two or three
/// links into one directory from different clients within a few milliseconds.
fn dir_ops(
    seed: u64,
    cfg: &WorkloadConfig,
    clients: usize,
    span: f64,
    uploads: &[usize],
) -> Vec<PlannedOp> {
    let mut out = Vec::new();
    if cfg.dir_ops == 0 || uploads.is_empty() {
        return out;
    }
    let mut d = sub_rng(seed, Concern::Directory);
    let dirs = d.gen_range(1..=DIRS.min(cfg.dir_ops));
    let mean_gap = (span / cfg.dir_ops as f64).max(1_000.0);
    let mut t = d.gen_range(0.0..=mean_gap);
    let at = |t: f64| Start::At(Instant(t as u64));
    for dir in 0..dirs {
        out.push(PlannedOp {
            start: at(t),
            client: d.gen_range(0..clients),
            spec: OpSpec::DirCreate { dir },
        });
        t += exponential(&mut d, mean_gap);
    }
    while out.len() < cfg.dir_ops {
        let dir = d.gen_range(0..dirs);
        let file = uploads[d.gen_range(0..uploads.len())];
        let roll: f64 = d.gen();
        if roll < 0.4 {
            out.push(PlannedOp {
                start: at(t),
                client: d.gen_range(0..clients),
                spec: OpSpec::DirLink {
                    dir,
                    name: d.gen_range(0..NAMES),
                    file,
                },
            });
        } else if roll < 0.55 {
            out.push(PlannedOp {
                start: at(t),
                client: d.gen_range(0..clients),
                spec: OpSpec::DirUnlink {
                    dir,
                    name: d.gen_range(0..NAMES),
                },
            });
        } else if roll < 0.75 {
            out.push(PlannedOp {
                start: at(t),
                client: d.gen_range(0..clients),
                spec: OpSpec::DirList { dir },
            });
        } else {
            // Concurrent writers of one directory, mostly under different names.
            let writers = d.gen_range(2..=3usize);
            let first = d.gen_range(0..clients);
            for w in 0..writers {
                out.push(PlannedOp {
                    start: at(t + d.gen_range(0.0..5_000.0)),
                    client: (first + w) % clients,
                    spec: OpSpec::DirLink {
                        dir,
                        name: d.gen_range(0..NAMES),
                        file: uploads[d.gen_range(0..uploads.len())],
                    },
                });
            }
        }
        t += exponential(&mut d, mean_gap);
    }
    out
}

/// The rest of a workload, from its own random stream over about `span` microseconds:
/// ranged downloads of planned uploads, small in-place modifies of MDMF files (inside the
/// size they were created with), grid status queries, and lookups and renames among a
/// directory's names. Each is skipped at run time while what it needs is not acknowledged.
fn more_ops(
    seed: u64,
    cfg: &WorkloadConfig,
    clients: usize,
    span: f64,
    planned: &[PlannedOp],
    files: &[u64],
) -> Vec<PlannedOp> {
    let mut out = Vec::new();
    if cfg.more_ops == 0 {
        return out;
    }
    let mut uploads = Vec::new();
    let mut mdmf = Vec::new();
    let mut dirs = Vec::new();
    for o in planned {
        match o.spec {
            OpSpec::Upload { file } if !uploads.contains(&file) => uploads.push(file),
            OpSpec::MutableCreate {
                file,
                format: MutableFormat::Mdmf,
                size,
            } => mdmf.push((file, size)),
            OpSpec::DirCreate { dir } => dirs.push(dir),
            _ => {}
        }
    }
    let mut r = sub_rng(seed, Concern::More);
    let mean_gap = (span / cfg.more_ops as f64).max(1_000.0);
    let mut t = r.gen_range(0.0..=mean_gap);
    for _ in 0..cfg.more_ops {
        let spec = match r.gen_range(0..10) {
            0..=2 if !uploads.is_empty() => {
                let file = uploads[r.gen_range(0..uploads.len())];
                let size = files[file];
                let offset = r.gen_range(0..size.max(1));
                OpSpec::DownloadRange {
                    file,
                    offset,
                    length: log_uniform(&mut r, 1, size.max(2)),
                }
            }
            3..=4 if !mdmf.is_empty() => {
                let (file, size) = mdmf[r.gen_range(0..mdmf.len())];
                let offset = r.gen_range(0..size);
                OpSpec::MutableModify {
                    file,
                    offset,
                    size: r.gen_range(1..=(size - offset).min(4_096)),
                }
            }
            6..=7 if !dirs.is_empty() => OpSpec::DirLookup {
                dir: dirs[r.gen_range(0..dirs.len())],
                name: r.gen_range(0..NAMES),
            },
            8..=9 if !dirs.is_empty() => {
                let from = r.gen_range(0..NAMES);
                OpSpec::DirMove {
                    dir: dirs[r.gen_range(0..dirs.len())],
                    from,
                    to: (from + r.gen_range(1..NAMES)) % NAMES,
                }
            }
            _ => OpSpec::GridStatus,
        };
        out.push(PlannedOp {
            start: Start::At(Instant(t as u64)),
            client: r.gen_range(0..clients),
            spec,
        });
        t += exponential(&mut r, mean_gap);
    }
    out
}

/// The mutable part of a workload, from its own random stream over about `span` microseconds:
/// each file is created first; then reads (MDMF ones sometimes of a range), single updates
/// (with the writer's last map, or cold) and bursts of two or three updates of one file from
/// different clients within a few milliseconds, with stale maps, sometimes with a read among
/// them.
fn mutable_ops(seed: u64, cfg: &WorkloadConfig, clients: usize, span: f64) -> Vec<PlannedOp> {
    let mut out = Vec::new();
    if cfg.mutable_ops == 0 {
        return out;
    }
    let mut m = sub_rng(seed, Concern::Mutable);
    let files = m.gen_range(1..=MUTABLE_FILES.min(cfg.mutable_ops));
    let mut formats = Vec::new();
    let mut largest = Vec::new();
    let mut created_at = Vec::new();
    let mean_gap = (span / cfg.mutable_ops as f64).max(1_000.0);
    let mut t = m.gen_range(0.0..=mean_gap);
    let at = |t: f64| Start::At(Instant(t as u64));
    for file in 0..files {
        let format = if m.gen_bool(0.5) {
            MutableFormat::Sdmf
        } else {
            MutableFormat::Mdmf
        };
        let size = mutable_size(&mut m, format);
        formats.push(format);
        largest.push(size);
        created_at.push(t);
        out.push(PlannedOp {
            start: at(t),
            client: m.gen_range(0..clients),
            spec: OpSpec::MutableCreate { file, format, size },
        });
        t += exponential(&mut m, mean_gap);
    }
    while out.len() < cfg.mutable_ops {
        // Mostly files whose create had time to finish (later ones are skipped if not).
        let ready = created_at.iter().filter(|&&c| c + 300_000.0 <= t).count();
        let file = m.gen_range(0..ready.max(1));
        let format = formats[file];
        let roll: f64 = m.gen();
        if roll < 0.4 {
            let range = (format == MutableFormat::Mdmf && m.gen_bool(0.5)).then(|| {
                // Some ranges start or end past the end of the file.
                let offset = m.gen_range(0..=largest[file] + 100);
                (offset, m.gen_range(1..=largest[file].max(1)))
            });
            out.push(PlannedOp {
                start: at(t),
                client: m.gen_range(0..clients),
                spec: OpSpec::MutableRead { file, range },
            });
        } else if roll < 0.7 {
            let size = mutable_size(&mut m, format);
            largest[file] = largest[file].max(size);
            out.push(PlannedOp {
                start: at(t),
                client: m.gen_range(0..clients),
                spec: OpSpec::MutableUpdate {
                    file,
                    size,
                    warm: m.gen_bool(0.6),
                },
            });
        } else {
            // Concurrent writers: distinct clients where there are enough.
            let writers = m.gen_range(2..=3usize);
            let first = m.gen_range(0..clients);
            for w in 0..writers {
                let size = mutable_size(&mut m, format);
                largest[file] = largest[file].max(size);
                out.push(PlannedOp {
                    start: at(t + m.gen_range(0.0..5_000.0)),
                    client: (first + w) % clients,
                    spec: OpSpec::MutableUpdate {
                        file,
                        size,
                        warm: m.gen_bool(0.7),
                    },
                });
            }
            if m.gen_bool(0.5) {
                out.push(PlannedOp {
                    start: at(t + m.gen_range(0.0..50_000.0)),
                    client: m.gen_range(0..clients),
                    spec: OpSpec::MutableRead { file, range: None },
                });
            }
        }
        t += exponential(&mut m, mean_gap);
    }
    out
}

fn random_fault(f: &mut ChaCha8Rng, clients: usize, servers: usize) -> Fault {
    let server = f.gen_range(0..servers);
    let maybe = |f: &mut ChaCha8Rng, n: usize| f.gen_bool(0.5).then(|| f.gen_range(0..n));
    match f.gen_range(0..100) {
        0..=14 => Fault::Crash {
            server,
            loud: f.gen_bool(0.5),
            down_for: millis(f, 200, 20_000),
        },
        15..=29 => Fault::Reset {
            client: f.gen_range(0..clients),
            server,
        },
        30..=39 => Fault::Partition {
            client: maybe(f, clients),
            server,
            duration: millis(f, 100, 12_000),
        },
        40..=49 => Fault::DelaySpike {
            server,
            extra: millis(f, 20, 800),
            duration: millis(f, 500, 5_000),
        },
        50..=59 => Fault::Slow {
            server,
            extra: millis(f, 50, 500),
            duration: millis(f, 1_000, 10_000),
        },
        60..=67 => Fault::Stall {
            server,
            duration: millis(f, 100, 8_000),
        },
        68..=75 => Fault::DiskFull {
            server,
            duration: millis(f, 1_000, 20_000),
        },
        76..=81 => Fault::DiskErrors {
            server,
            duration: millis(f, 50, 2_000),
        },
        82..=93 => Fault::Corrupt {
            server: None,
            file: None,
        },
        _ => Fault::LoseShare {
            server: None,
            file: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn plans_are_a_function_of_the_seed() {
        let cfg = WorkloadConfig::default();
        assert_eq!(random_plan(5, &cfg), random_plan(5, &cfg));
        assert_ne!(random_plan(5, &cfg), random_plan(6, &cfg));
    }

    #[test]
    fn the_fault_switch_leaves_the_workload_alone() {
        let with = random_plan(9, &WorkloadConfig::default());
        let without = random_plan(
            9,
            &WorkloadConfig {
                faults: false,
                ..WorkloadConfig::default()
            },
        );
        assert_eq!((with.ops, with.files), (without.ops, without.files));
        assert!(without.faults.is_empty());
    }

    #[test]
    fn mutable_workloads_create_first_and_race_writers() {
        let cfg = WorkloadConfig::default();
        let mut creates = 0;
        let mut multi_segment = 0;
        let mut races = 0;
        let mut ranges = 0;
        for seed in 0..50 {
            let plan = random_plan(seed, &cfg);
            let mut created = BTreeMap::new();
            let mut updates: Vec<(Instant, usize)> = Vec::new();
            for op in &plan.ops {
                let Start::At(t) = op.start else { continue };
                match op.spec {
                    OpSpec::MutableCreate { file, format, size } => {
                        creates += 1;
                        assert!(created.insert(file, t).is_none(), "seed {seed}");
                        if format == MutableFormat::Mdmf && size > MDMF_MAX_SEGMENT_SIZE {
                            multi_segment += 1;
                        }
                    }
                    OpSpec::MutableUpdate { file, .. } => {
                        assert!(created.get(&file).is_some_and(|c| *c <= t), "seed {seed}");
                        updates.push((t, file));
                    }
                    OpSpec::MutableRead { file, range } => {
                        assert!(created.get(&file).is_some_and(|c| *c <= t), "seed {seed}");
                        ranges += usize::from(range.is_some());
                    }
                    _ => {}
                }
            }
            assert!(created.len() <= MUTABLE_FILES);
            races += updates
                .windows(2)
                .filter(|w| w[0].1 == w[1].1 && w[1].0 .0 - w[0].0 .0 < 5_000)
                .count();
            // The immutable workload is what it was without mutable ops.
            let without = random_plan(
                seed,
                &WorkloadConfig {
                    mutable_ops: 0,
                    dir_ops: 0,
                    more_ops: 0,
                    ..cfg.clone()
                },
            );
            let immutable: Vec<_> = plan
                .ops
                .iter()
                .filter(|o| {
                    matches!(
                        o.spec,
                        OpSpec::Upload { .. } | OpSpec::Download { .. } | OpSpec::DownloadAny
                    )
                })
                .copied()
                .collect();
            assert_eq!(immutable, without.ops);
        }
        assert!(creates >= 50 && multi_segment > 0 && races > 10 && ranges > 0);
    }
}
