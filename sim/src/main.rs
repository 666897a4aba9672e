//! `lafs-sim`: sweeps of seeded simulation runs, single-seed replays, and the DSL experiment.
//!
//! The binary is the one place that touches the host: it reads `SIM_SEED` / `SIM_SEEDS` and
//! measures wall time to report simulated operations per wall-second. Each such use carries a
//! local `#[allow]` for the purity lints of `clippy.toml`; the simulation itself stays pure.

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use lafs_sim::dsl::DslSetup;
use lafs_sim::seeds::{parse_seed, parse_seed_range};
use lafs_sim::{random_plan, repro_command, run_seed, Sim, SweepSummary, WorkloadConfig};

#[derive(Parser, Debug)]
#[command(
    name = "lafs-sim",
    about = "Deterministic simulation of a lafs grid in virtual time",
    long_about = "Deterministic simulation of a lafs grid in virtual time.\n\n\
        Without a subcommand: replays SIM_SEED if it is set, else sweeps SIM_SEEDS (default 0..200)."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run many seeds with a progress bar; print a summary and a repro line per failing seed.
    Sweep {
        /// Seeds to run, `A..B` (half-open) or `A..=B`; default `SIM_SEEDS`, else 0..200.
        #[arg(long)]
        seeds: Option<String>,
        #[command(flatten)]
        workload: WorkloadArgs,
    },
    /// Run one seed and print its report (and, with --trace, every event).
    Run {
        /// The seed; default `SIM_SEED`, else 0.
        #[arg(long)]
        seed: Option<u64>,
        /// Print the event trace.
        #[arg(long)]
        trace: bool,
        #[command(flatten)]
        workload: WorkloadArgs,
    },
    /// Re-run the Tahoe DSL performance experiment (3 servers, 14 ms RTT, 78 kB/s uplink).
    Dsl,
}

#[derive(Args, Debug, Clone)]
struct WorkloadArgs {
    /// Operations per run.
    #[arg(long, default_value_t = WorkloadConfig::default().ops)]
    ops: usize,
    /// Mean file size in bytes (exponential).
    #[arg(long, default_value_t = WorkloadConfig::default().mean_size)]
    mean_size: u64,
    /// Largest file size in bytes.
    #[arg(long, default_value_t = WorkloadConfig::default().max_size)]
    max_size: u64,
    /// Mutable-file operations per run (creates, updates, racing updates, reads); 0 for none.
    #[arg(long, default_value_t = WorkloadConfig::default().mutable_ops)]
    mutable_ops: usize,
    /// Directory operations per run (creates, links, racing links, unlinks, listings); 0 for
    /// none.
    #[arg(long, default_value_t = WorkloadConfig::default().dir_ops)]
    dir_ops: usize,
    /// Further operations per run (ranged downloads, in-place modifies of MDMF files, grid
    /// status queries, directory lookups and renames); 0 for none.
    #[arg(long, default_value_t = WorkloadConfig::default().more_ops)]
    more_ops: usize,
    /// Run without injected faults.
    #[arg(long)]
    no_faults: bool,
}

impl WorkloadArgs {
    fn config(&self) -> WorkloadConfig {
        WorkloadConfig {
            ops: self.ops,
            mean_size: self.mean_size,
            max_size: self.max_size.max(1),
            faults: !self.no_faults,
            mutable_ops: self.mutable_ops,
            dir_ops: self.dir_ops,
            more_ops: self.more_ops,
            ..WorkloadConfig::default()
        }
    }
}

impl Default for WorkloadArgs {
    fn default() -> Self {
        let d = WorkloadConfig::default();
        WorkloadArgs {
            ops: d.ops,
            mean_size: d.mean_size,
            max_size: d.max_size,
            mutable_ops: d.mutable_ops,
            dir_ops: d.dir_ops,
            more_ops: d.more_ops,
            no_faults: false,
        }
    }
}

/// Reads an environment variable. The binary is the simulator's edge: the library never reads
/// the environment, so replaying a seed cannot depend on anything but the seed.
#[allow(clippy::disallowed_methods)]
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Wall-clock stopwatch, used only to report simulated operations per wall-second.
#[allow(clippy::disallowed_types, clippy::disallowed_methods)]
struct Stopwatch(std::time::Instant);

#[allow(clippy::disallowed_types, clippy::disallowed_methods)]
impl Stopwatch {
    fn start() -> Self {
        Stopwatch(std::time::Instant::now())
    }
    fn seconds(&self) -> f64 {
        self.0.elapsed().as_secs_f64()
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or_else(|| match env("SIM_SEED") {
        Some(_) => Command::Run {
            seed: None,
            trace: false,
            workload: WorkloadArgs::default(),
        },
        None => Command::Sweep {
            seeds: None,
            workload: WorkloadArgs::default(),
        },
    });
    match command {
        Command::Sweep { seeds, workload } => sweep(seeds, &workload.config()),
        Command::Run {
            seed,
            trace,
            workload,
        } => run_one(seed, trace, &workload.config()),
        Command::Dsl => {
            let watch = Stopwatch::start();
            let report = DslSetup::default().run();
            print!("{report}");
            println!("(simulated in {:.2} s of wall time)", watch.seconds());
            ExitCode::SUCCESS
        }
    }
}

fn sweep(seeds: Option<String>, cfg: &WorkloadConfig) -> ExitCode {
    let spec = seeds
        .or_else(|| env("SIM_SEEDS"))
        .unwrap_or_else(|| "0..200".into());
    let range = match parse_seed_range(&spec) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("lafs-sim: {e}");
            return ExitCode::from(2);
        }
    };
    let bar = ProgressBar::new(range.end - range.start);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40} {pos}/{len} seeds, {elapsed} elapsed, eta {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let watch = Stopwatch::start();
    let mut summary = SweepSummary::default();
    for seed in range.clone() {
        let report = run_seed(seed, cfg);
        for v in report.unknown_violations() {
            bar.println(format!("seed {seed}: {v}"));
        }
        summary.add(&report);
        bar.set_message(format!("{} violations", summary.violations()));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let secs = watch.seconds();
    println!(
        "lafs-sim sweep of seeds {}..{} ({} ops/run + {} mutable + {} directory, mean size {} B, \
         faults {})",
        range.start,
        range.end,
        cfg.ops,
        cfg.mutable_ops,
        cfg.dir_ops,
        cfg.mean_size,
        if cfg.faults { "on" } else { "off" }
    );
    print!("{}", summary.table());
    println!(
        "wall time {secs:.2} s: {:.0} simulated operations per wall-second, {:.1} runs/s",
        summary.operations as f64 / secs.max(1e-9),
        summary.runs as f64 / secs.max(1e-9)
    );
    for (bug, seeds) in &summary.known_bugs {
        let first: Vec<String> = seeds.iter().take(10).map(u64::to_string).collect();
        println!(
            "known bug ({bug}) hit by {} seed(s), e.g. {}; replay: {}",
            seeds.len(),
            first.join(", "),
            repro_command(seeds[0], cfg)
        );
    }
    if summary.failures.is_empty() {
        return ExitCode::SUCCESS;
    }
    println!("\nfailing seeds (each line replays one):");
    for (seed, violations) in &summary.failures {
        println!("  {}    # {}", repro_command(*seed, cfg), violations[0]);
    }
    ExitCode::FAILURE
}

fn run_one(seed: Option<u64>, trace: bool, cfg: &WorkloadConfig) -> ExitCode {
    let seed = match seed {
        Some(s) => s,
        None => match env("SIM_SEED").map(|s| parse_seed(&s)) {
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                eprintln!("lafs-sim: SIM_SEED: {e}");
                return ExitCode::from(2);
            }
            None => 0,
        },
    };
    let plan = random_plan(seed, cfg);
    let watch = Stopwatch::start();
    let (report, lines) = if trace {
        Sim::run_traced(&plan)
    } else {
        (Sim::run(&plan), Vec::new())
    };
    let secs = watch.seconds();
    for line in &lines {
        println!("{line}");
    }
    println!(
        "seed {seed}: {} servers, {} clients, k={} happy={} n={}, {} files, {} ops, {} faults planned",
        plan.net.servers,
        plan.net.clients,
        plan.params.encoding.k,
        plan.params.encoding.happy,
        plan.params.encoding.n,
        plan.files.len(),
        plan.ops.len(),
        plan.faults.len()
    );
    let mut summary = SweepSummary::default();
    summary.add(&report);
    print!("{}", summary.table());
    println!(
        "virtual end {:.3} s, trace hash {:016x}, wall {:.3} s",
        report.end.0 as f64 / 1e6,
        report.trace_hash,
        secs
    );
    if report.violations.is_empty() {
        return ExitCode::SUCCESS;
    }
    for v in &report.violations {
        match v.known_core_bug() {
            Some(bug) => println!("VIOLATION (known bug: {bug}): {v}"),
            None => println!("VIOLATION: {v}"),
        }
    }
    println!("replay: {}", repro_command(seed, cfg));
    ExitCode::FAILURE
}
