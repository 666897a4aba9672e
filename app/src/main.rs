//! The `lafs` command-line tool.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lafs::cli::{self, AliasCommand, DirFormat, GridCommand, NodeCommand, Target};
use lafs::debug::DebugCommand;

/// lafs: an encrypted, erasure-coded storage grid compatible with Tahoe-LAFS formats.
///
/// With no configuration, every command uses an embedded local grid (10 storage servers on
/// loopback, shares kept in $LAFS_HOME or the user's data directory); --grid FILE or --node DIR
/// picks another grid. Logs go to stderr; set RUST_LOG=info (or debug) to see them.
///
/// Paths in directories are written ALIAS:a/b (see `lafs alias`), DIRCAP/a/b, or a/b for the
/// default alias `tahoe`, as in Tahoe-LAFS.
#[derive(Parser, Debug)]
#[command(name = "lafs", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Upload a file and print its capability (the string that both names and decrypts it).
    /// With DEST, also link it into a directory.
    Put {
        file: PathBuf,
        /// Where to link the file: ALIAS:path, DIRCAP/path or a path under `tahoe:`. An
        /// existing file there is replaced; if DEST is a directory (or ends in '/'), the file
        /// goes into it under its own name.
        dest: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Download a file, to stdout or to -o FILE: by its cap, or by its path in a directory.
    Get {
        /// A file cap (CHK, LIT, SSK, MDMF), or ALIAS:path / DIRCAP/path.
        src: String,
        /// Write here instead of stdout (written to a temporary name, renamed when verified).
        #[arg(short, long)]
        output: Option<PathBuf>,
        #[command(flatten)]
        target: Target,
    },
    /// Make a directory and print its write cap: unlinked with no PATH, else linked at PATH
    /// (ALIAS:path or DIRCAP/path; the directories before it must exist unless --parents).
    Mkdir {
        path: Option<String>,
        /// SDMF gives URI:DIR2: caps (Tahoe's default), MDMF gives URI:DIR2-MDMF:.
        #[arg(long, value_enum, default_value_t = DirFormat::Sdmf)]
        format: DirFormat,
        /// Also make missing directories on the way.
        #[arg(short, long)]
        parents: bool,
        #[command(flatten)]
        target: Target,
    },
    /// List a directory (default: the `tahoe:` alias), or describe one file.
    Ls {
        /// ALIAS:path, DIRCAP/path, a dircap, or a path under `tahoe:`.
        path: Option<String>,
        /// Long form: mode (d = directory, rw = writeable through this link), size for
        /// immutable files, last link change (UTC), name.
        #[arg(short, long)]
        long: bool,
        /// Also print each child's cap (write cap when the directory holds one).
        #[arg(long)]
        uri: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Rename or move a link: within a directory or between two. If TO is an existing
    /// directory (or ends in '/'), FROM moves into it under its own name. A file at TO is
    /// replaced; a directory never is.
    Mv {
        from: String,
        to: String,
        #[command(flatten)]
        target: Target,
    },
    /// Remove a link from its directory (the file stays readable by anyone holding its cap).
    Rm {
        path: String,
        #[command(flatten)]
        target: Target,
    },
    /// Short names for directory caps, kept in the client node's private/aliases (Tahoe's
    /// format): `lafs alias add docs URI:DIR2:...`, then `lafs ls docs:reports`.
    #[command(subcommand)]
    Alias(AliasCommand),
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
    /// Load a web gateway with client threads reading and writing small files (Tahoe's
    /// check_load) and report ops/s, latencies, errors and each node's CPU and memory. Without
    /// --url it starts a grid on loopback for the run (storage nodes + a gateway process).
    Load(lafs::load::LoadArgs),
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
        Command::Put { file, dest, target } => {
            cli::put(&file, dest.as_deref(), &target, &mut out).map_err(|e| e.to_string())
        }
        Command::Get {
            src,
            output,
            target,
        } => cli::get(&src, output.as_deref(), &target, &mut out).map_err(|e| e.to_string()),
        Command::Mkdir {
            path,
            format,
            parents,
            target,
        } => cli::mkdir(path.as_deref(), format, parents, &target, &mut out)
            .map_err(|e| e.to_string()),
        Command::Ls {
            path,
            long,
            uri,
            target,
        } => cli::ls(path.as_deref(), long, uri, &target, &mut out).map_err(|e| e.to_string()),
        Command::Mv { from, to, target } => {
            cli::mv(&from, &to, &target, &mut out).map_err(|e| e.to_string())
        }
        Command::Rm { path, target } => {
            cli::rm(&path, &target, &mut out).map_err(|e| e.to_string())
        }
        Command::Alias(cmd) => cli::alias_command(cmd, &mut out).map_err(|e| e.to_string()),
        Command::Demo { size_mb } => cli::demo(size_mb, &mut out).map_err(|e| e.to_string()),
        Command::Bench {
            small_files,
            big_mb,
            huge_mb,
        } => {
            let options = lafs::bench::BenchOptions {
                small_files: small_files.max(1),
                big_mb,
                huge_mb,
            };
            lafs::bench::run(options, &mut out).map_err(|e| e.to_string())
        }
        Command::Load(args) => lafs::load::run(args, &mut out).map_err(|e| e.to_string()),
        Command::Node(cmd) => cli::node_command(cmd, &mut out).map_err(|e| e.to_string()),
        Command::Grid(cmd) => cli::grid_command(cmd, &mut out).map_err(|e| e.to_string()),
        Command::Debug(cmd) => lafs::debug::run(cmd, &mut out).map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lafs: {e}");
            ExitCode::FAILURE
        }
    }
}
