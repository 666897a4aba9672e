//! The `lafs` command-line tool.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lafs_runtime_std::cli::{self, GridCommand, NodeCommand, Target};
use lafs_runtime_std::debug::DebugCommand;

/// lafs: an encrypted, erasure-coded storage grid compatible with Tahoe-LAFS formats.
///
/// With no configuration, `put` and `get` use an embedded local grid (10 storage servers on
/// loopback, shares kept in $LAFS_HOME or the user's data directory). Logs go to stderr; set
/// RUST_LOG=info (or debug) to see them.
#[derive(Parser, Debug)]
#[command(name = "lafs", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Upload a file and print its capability (the string that both names and decrypts it).
    Put {
        file: PathBuf,
        #[command(flatten)]
        target: Target,
    },
    /// Download a file by its capability, to stdout or to -o FILE.
    Get {
        cap: String,
        /// Write here instead of stdout (written to a temporary name, renamed when verified).
        #[arg(short, long)]
        output: Option<PathBuf>,
        #[command(flatten)]
        target: Target,
    },
    /// Show lafs working: a local grid, a generated file up and down, then n-k servers stopped
    /// and the file read again.
    Demo {
        /// Size of the generated file in MiB.
        #[arg(long, default_value_t = 32)]
        size_mb: u64,
    },
    /// Measure lafs on loopback (5 storage-server processes + this client) and print a table to
    /// compare with Tahoe's figures. Takes about a minute with the defaults.
    Bench {
        /// 1 kB files for the latency rows.
        #[arg(long, default_value_t = 200)]
        small_files: usize,
        /// Size of the throughput file, in MB (10^6 bytes).
        #[arg(long, default_value_t = 100)]
        big_mb: u64,
        /// Size of the upload whose client peak RSS is reported, in MB.
        #[arg(long, default_value_t = 1000)]
        huge_mb: u64,
    },
    /// Create or run a node directory.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Run a local grid for other processes.
    #[command(subcommand)]
    Grid(GridCommand),
    /// Inspect capabilities and compute Tahoe derivations offline (no grid needed).
    #[command(subcommand)]
    Debug(DebugCommand),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let result = match cli.command {
        Command::Put { file, target } => {
            cli::put(&file, &target, &mut out).map_err(|e| e.to_string())
        }
        Command::Get {
            cap,
            output,
            target,
        } => cli::get(&cap, output.as_deref(), &target, &mut out).map_err(|e| e.to_string()),
        Command::Demo { size_mb } => cli::demo(size_mb, &mut out).map_err(|e| e.to_string()),
        Command::Bench {
            small_files,
            big_mb,
            huge_mb,
        } => {
            let options = lafs_runtime_std::bench::BenchOptions {
                small_files: small_files.max(1),
                big_mb,
                huge_mb,
            };
            lafs_runtime_std::bench::run(options, &mut out).map_err(|e| e.to_string())
        }
        Command::Node(cmd) => cli::node_command(cmd, &mut out).map_err(|e| e.to_string()),
        Command::Grid(cmd) => cli::grid_command(cmd, &mut out).map_err(|e| e.to_string()),
        Command::Debug(cmd) => {
            lafs_runtime_std::debug::run(cmd, &mut out).map_err(|e| e.to_string())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lafs: {e}");
            ExitCode::FAILURE
        }
    }
}
