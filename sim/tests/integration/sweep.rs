//! The bounded sweep CI runs, and the determinism check.
//!
//! `SIM_SEEDS=A..B cargo test -p lafs-sim --release --test sweep` sweeps exactly that range;
//! `SIM_SEED=N` runs one seed. Default: seeds 0..200 (a few seconds).

use lafs_sim::seeds::{parse_seed, parse_seed_range};
use lafs_sim::{random_plan, repro_command, run_seed, Sim, SweepSummary, WorkloadConfig};

/// The seeds to sweep, from the environment (the test harness is the simulator's edge).
#[allow(clippy::disallowed_methods)]
fn seeds_from_env() -> std::ops::Range<u64> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    if let Some(seed) = var("SIM_SEED") {
        let s = parse_seed(&seed).expect("SIM_SEED");
        return s..s + 1;
    }
    match var("SIM_SEEDS") {
        Some(spec) => parse_seed_range(&spec).expect("SIM_SEEDS"),
        None => 0..200,
    }
}

#[test]
fn sweep() {
    let cfg = WorkloadConfig::default();
    let seeds = seeds_from_env();
    let mut summary = SweepSummary::default();
    for seed in seeds.clone() {
        summary.add(&run_seed(seed, &cfg));
    }
    eprintln!(
        "sweep of seeds {}..{}:\n{}",
        seeds.start,
        seeds.end,
        summary.table()
    );
    for (bug, hit) in &summary.known_bugs {
        eprintln!("known lafs-core bug ({bug}): seeds {hit:?}");
    }
    assert!(summary.operations > 0);
    if seeds.end - seeds.start >= 100 {
        // Mutable files are part of every sweep: publishes, lost races, reads.
        assert!(summary.publishes_ok > 0, "{}", summary.table());
        assert!(summary.conflicts > 0, "{}", summary.table());
        assert!(summary.retrieves_ok > 0, "{}", summary.table());
    }
    if !summary.failures.is_empty() {
        let lines: Vec<String> = summary
            .failures
            .iter()
            .map(|(seed, v)| format!("{}    # {}", repro_command(*seed, &cfg), v[0]))
            .collect();
        panic!(
            "{} seed(s) broke an invariant; each line replays one:\n{}",
            summary.failures.len(),
            lines.join("\n")
        );
    }
}

#[test]
fn one_seed_twice_gives_the_same_trace() {
    let cfg = WorkloadConfig::default();
    for seed in [3, 41] {
        let plan = random_plan(seed, &cfg);
        let (a, lines_a) = Sim::run_traced(&plan);
        let (b, lines_b) = Sim::run_traced(&plan);
        assert_eq!(a.trace_hash, b.trace_hash, "seed {seed}");
        assert_eq!(lines_a, lines_b, "seed {seed}");
        assert_eq!(a, b, "seed {seed}");
        // Tracing lines or not does not change the run.
        assert_eq!(Sim::run(&plan), a, "seed {seed}");
        assert!(a.events > 100);
        // The replayed runs include mutable publishes and reads.
        assert!(
            a.publishes_ok > 0 && a.retrieves_ok > 0,
            "seed {seed}: {a:?}"
        );
    }
}

#[test]
fn different_seeds_give_different_runs() {
    let cfg = WorkloadConfig::default();
    let hashes: std::collections::BTreeSet<u64> =
        (0..10).map(|s| run_seed(s, &cfg).trace_hash).collect();
    assert_eq!(hashes.len(), 10);
}
