//! The `lafs` command-line tool.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// lafs: an encrypted, erasure-coded storage grid compatible with Tahoe-LAFS formats.
///
/// Built so far: `lafs debug`, which checks capabilities and derivations without a grid. Nodes,
/// `put`, `get` and the local grid are not built yet (see README).
#[derive(Parser, Debug)]
#[command(name = "lafs", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Inspect capabilities and compute Tahoe derivations offline (no grid needed).
    #[command(subcommand)]
    Debug(lafs_runtime_std::debug::DebugCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Debug(cmd) => lafs_runtime_std::debug::run(cmd, &mut std::io::stdout().lock()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lafs: {e}");
            ExitCode::FAILURE
        }
    }
}
