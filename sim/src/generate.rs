//! Random plans: one seed gives the grid, the workload and the faults of a run.
//!
//! Workload and faults come from separate streams ([`crate::rng`]), so two seeds with the same
//! workload stream but different fault streams never happen by accident, and changing the fault
//! mix leaves every seed's workload as it was.

use lafs_core::immutable::EncodingParams;
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
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig {
            ops: 24,
            mean_size: 64 * 1024,
            max_size: 1 << 20,
            mean_gap: Duration::from_millis(100),
            faults: true,
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
    }
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
}
