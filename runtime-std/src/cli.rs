//! The `lafs` commands other than `debug`: transfers, nodes, local grids and the demo.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use lafs_core::cap::Cap;
use rand::RngCore;
use serde_json::json;

use crate::local_grid::{self, LocalGrid, LocalGridError, RunningServer, DEFAULT_SERVERS};
use crate::net::{ClientError, GridClient, TransferProgress};
use crate::node::{self, NodeDir, NodeError, NodeKind};
use crate::progress::Progress;

/// Which grid a transfer uses.
#[derive(Args, Debug, Clone, Default)]
pub struct Target {
    /// A grid file listing storage servers (see `lafs grid up`). Without it and without
    /// --node, lafs starts its embedded local grid (in $LAFS_HOME or the user's data directory).
    #[arg(long, value_name = "FILE")]
    pub grid: Option<PathBuf>,
    /// A client node directory (`lafs node create --client`): its secrets, encoding settings and
    /// grid file.
    #[arg(long, value_name = "DIR")]
    pub node: Option<PathBuf>,
    /// Print a JSON object instead of plain text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum NodeCommand {
    /// Create a node directory with fresh secrets and a commented lafs.toml.
    Create {
        /// A storage node (holds shares for others).
        #[arg(long, conflicts_with = "client", required_unless_present = "client")]
        storage: bool,
        /// A client node (uploads and downloads).
        #[arg(long)]
        client: bool,
        /// A name shown in logs.
        #[arg(long, default_value = "")]
        nickname: String,
        dir: PathBuf,
    },
    /// Run a storage node until interrupted (Ctrl-C); prints its grid-file entry.
    Run { dir: PathBuf },
}

#[derive(Subcommand, Debug)]
pub enum GridCommand {
    /// Serve a local grid on loopback for other processes, until interrupted. Writes DIR/grid.toml
    /// for `lafs put --grid`.
    Up {
        /// Storage servers to run.
        #[arg(long, default_value_t = DEFAULT_SERVERS)]
        servers: usize,
        /// Where the servers keep their shares (default: $LAFS_HOME/served-grid).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// What can go wrong in a command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error(transparent)]
    Grid(#[from] LocalGridError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("bad capability: {0}")]
    Cap(#[from] lafs_core::cap::CapError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Usage(String),
    #[error("the demo's download did not return the uploaded bytes")]
    DemoMismatch,
}

/// A grid to talk to, and anything this process started for it.
struct Session {
    client: GridClient,
    _grid: Option<LocalGrid>,
}

fn open_session(target: &Target) -> Result<Session, CliError> {
    let home = local_grid::default_home();
    let client_node = match &target.node {
        Some(dir) => NodeDir::open(dir)?,
        None => local_grid::client_node(&home)?,
    };
    let config = local_grid::client_config(&client_node);
    let grid_file = target
        .grid
        .clone()
        .or_else(|| target.node.as_ref().map(|_| client_node.grid_path()));
    match grid_file {
        Some(path) => {
            let servers = node::read_grid(&path)?;
            if servers.is_empty() {
                return Err(CliError::Usage(format!(
                    "{} lists no servers",
                    path.display()
                )));
            }
            Ok(Session {
                client: GridClient::new(local_grid::entries(&servers), config),
                _grid: None,
            })
        }
        None => {
            let grid = LocalGrid::start(&home.join("grid"), DEFAULT_SERVERS)?;
            tracing::info!(home = %home.display(), "using the embedded local grid");
            Ok(Session {
                client: grid.client(config),
                _grid: Some(grid),
            })
        }
    }
}

fn progress_sink(progress: &mut Progress) -> impl FnMut(TransferProgress) + '_ {
    move |p: TransferProgress| progress.set(p.done)
}

/// `lafs put FILE`
pub fn put(file: &Path, target: &Target, out: &mut dyn Write) -> Result<(), CliError> {
    let session = open_session(target)?;
    let size = std::fs::metadata(file)
        .map_err(|source| CliError::Io {
            path: file.to_path_buf(),
            source,
        })?
        .len();
    let mut bar = Progress::new("upload", size, target.json);
    let report = session
        .client
        .upload_path(file, &mut progress_sink(&mut bar))?;
    bar.finish();
    if target.json {
        let v = json!({
            "cap": report.cap.to_string(),
            "size": report.size,
            "elapsed_ms": report.elapsed.as_secs_f64() * 1e3,
            "round_trips": report.stats.round_trips,
            "happiness": report.happiness,
        });
        writeln!(out, "{v}").map_err(stdout_err)?;
    } else {
        writeln!(out, "{}", report.cap).map_err(stdout_err)?;
    }
    Ok(())
}

fn stdout_err(source: std::io::Error) -> CliError {
    CliError::Io {
        path: "<stdout>".into(),
        source,
    }
}

/// `lafs get CAP [-o FILE]`
pub fn get(
    cap: &str,
    output: Option<&Path>,
    target: &Target,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let cap = Cap::parse(cap.trim())?;
    let size = match &cap {
        Cap::ChkRead { size, .. } => *size,
        Cap::Lit { data } => data.len() as u64,
        other => {
            return Err(CliError::Usage(format!(
                "{} caps are not immutable files; lafs get reads CHK and LIT caps",
                other.kind_name()
            )))
        }
    };
    let session = open_session(target)?;
    let mut bar = Progress::new("download", size, target.json || output.is_none());
    let report = match output {
        Some(path) => {
            // Write to a temporary name and rename, so a failed download leaves no partial file.
            let tmp = path.with_extension("lafs-partial");
            let file = File::create(&tmp).map_err(|source| CliError::Io {
                path: tmp.clone(),
                source,
            })?;
            let mut writer = BufWriter::new(file);
            let result = session
                .client
                .download(&cap, &mut writer, &mut progress_sink(&mut bar));
            let flushed = writer.flush().map_err(|source| CliError::Io {
                path: tmp.clone(),
                source,
            });
            match result
                .map_err(CliError::from)
                .and_then(|r| flushed.map(|()| r))
            {
                Ok(r) => {
                    std::fs::rename(&tmp, path).map_err(|source| CliError::Io {
                        path: path.to_path_buf(),
                        source,
                    })?;
                    r
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(e);
                }
            }
        }
        None => session
            .client
            .download(&cap, out, &mut progress_sink(&mut bar))?,
    };
    bar.finish();
    if target.json {
        let v = json!({
            "size": report.size,
            "elapsed_ms": report.elapsed.as_secs_f64() * 1e3,
            "round_trips": report.stats.round_trips,
        });
        eprintln!("{v}");
    }
    Ok(())
}

/// `lafs node ...`
pub fn node_command(cmd: NodeCommand, out: &mut dyn Write) -> Result<(), CliError> {
    match cmd {
        NodeCommand::Create {
            storage,
            client: _,
            nickname,
            dir,
        } => {
            let kind = if storage {
                NodeKind::Storage
            } else {
                NodeKind::Client
            };
            let node = NodeDir::create(&dir, kind, &nickname)?;
            writeln!(
                out,
                "created {} node in {}",
                if storage { "storage" } else { "client" },
                dir.display()
            )
            .map_err(stdout_err)?;
            writeln!(
                out,
                "id {}",
                lafs_core::base32::encode(&node.identity.node_id.0)
            )
            .map_err(stdout_err)?;
            writeln!(
                out,
                "edit {} to change its settings",
                dir.join("lafs.toml").display()
            )
            .map_err(stdout_err)?;
            Ok(())
        }
        NodeCommand::Run { dir } => {
            let node = NodeDir::open(&dir)?;
            if node.config.node.kind == NodeKind::Client {
                return Err(CliError::Usage(
                    "client nodes have nothing to serve yet (the web gateway is not built); use \
                     `lafs put --node DIR` and `lafs get --node DIR`"
                        .into(),
                ));
            }
            let listen = node.config.storage.listen.clone();
            let server = RunningServer::start(node, &listen)?;
            writeln!(
                out,
                "serving on {} (Ctrl-C stops); grid-file entry:",
                server.handle.local_addr()
            )
            .map_err(stdout_err)?;
            write!(out, "{}", node::format_grid(&[server.grid_entry()])).map_err(stdout_err)?;
            out.flush().map_err(stdout_err)?;
            park_forever()
        }
    }
}

/// `lafs grid up`
pub fn grid_command(cmd: GridCommand, out: &mut dyn Write) -> Result<(), CliError> {
    match cmd {
        GridCommand::Up { servers, dir } => {
            if servers == 0 {
                return Err(CliError::Usage("--servers must be at least 1".into()));
            }
            let dir = dir.unwrap_or_else(|| local_grid::default_home().join("served-grid"));
            let grid = LocalGrid::start(&dir, servers)?;
            let path = dir.join("grid.toml");
            node::write_grid(&path, &grid.grid())?;
            writeln!(
                out,
                "{servers} storage servers on loopback; grid file {}",
                path.display()
            )
            .map_err(stdout_err)?;
            writeln!(out, "use it with: lafs put --grid {} FILE", path.display())
                .map_err(stdout_err)?;
            out.flush().map_err(stdout_err)?;
            park_forever()
        }
    }
}

fn park_forever() -> ! {
    loop {
        std::thread::park();
    }
}

/// `lafs demo`: upload a generated file to a fresh local grid, read it back, stop n-k servers,
/// read it again, and report what it cost.
pub fn demo(size_mb: u64, out: &mut dyn Write) -> Result<(), CliError> {
    let dir = std::env::temp_dir().join(format!("lafs-demo-{}", std::process::id()));
    let result = run_demo(&dir, size_mb, out);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run_demo(dir: &Path, size_mb: u64, out: &mut dyn Write) -> Result<(), CliError> {
    let mut grid = LocalGrid::start(&dir.join("grid"), DEFAULT_SERVERS)?;
    let client_node = NodeDir::create(&dir.join("client"), NodeKind::Client, "demo")?;
    let config = local_grid::client_config(&client_node);
    let (k, n) = (config.upload.params.k, config.upload.params.n);
    let client = grid.client(config);
    writeln!(
        out,
        "local grid: {} storage servers on 127.0.0.1 (shares on disk under {})",
        grid.servers.len(),
        dir.display()
    )
    .map_err(stdout_err)?;

    let size = size_mb << 20;
    let mut data = vec![0u8; size as usize];
    rand::thread_rng().fill_bytes(&mut data);
    let mut bar = Progress::new("upload", size, false);
    let up = client.upload_bytes(&data, &mut progress_sink(&mut bar))?;
    bar.finish();
    writeln!(out, "uploaded {size_mb} MiB of random bytes, {k}-of-{n}:").map_err(stdout_err)?;
    writeln!(out, "  cap {}", up.cap).map_err(stdout_err)?;
    writeln!(
        out,
        "  {:.0} MB/s, {:.1} ms, {} round trips, {} servers hold shares (happiness {})",
        size as f64 / up.elapsed.as_secs_f64() / 1e6,
        up.elapsed.as_secs_f64() * 1e3,
        up.stats.round_trips,
        up.shares.len(),
        up.happiness
    )
    .map_err(stdout_err)?;
    verify_read(
        &client,
        &up.cap,
        &data,
        "downloaded with all servers up",
        out,
    )?;

    // Stop n-k of the servers that hold shares: any k shares still rebuild the file.
    let holders: Vec<usize> = (0..grid.servers.len())
        .filter(|&i| {
            up.shares
                .contains_key(&grid.servers[i].node.identity.node_id)
        })
        .collect();
    let stop: Vec<usize> = holders
        .iter()
        .copied()
        .take(holders.len().saturating_sub(k))
        .collect();
    for &i in &stop {
        grid.stop(i);
    }
    writeln!(
        out,
        "stopped {} of the {} servers holding shares",
        stop.len(),
        holders.len()
    )
    .map_err(stdout_err)?;
    verify_read(&client, &up.cap, &data, "downloaded again", out)
}

fn verify_read(
    client: &GridClient,
    cap: &Cap,
    data: &[u8],
    label: &str,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let size = data.len() as u64;
    let mut back = Vec::with_capacity(data.len());
    let mut bar = Progress::new("download", size, false);
    let down = client.download(cap, &mut back, &mut progress_sink(&mut bar))?;
    bar.finish();
    if back != data {
        return Err(CliError::DemoMismatch);
    }
    writeln!(
        out,
        "{label}: verified {} MiB, {:.0} MB/s, {:.1} ms, {} round trips",
        size >> 20,
        size as f64 / down.elapsed.as_secs_f64() / 1e6,
        down.elapsed.as_secs_f64() * 1e3,
        down.stats.round_trips
    )
    .map_err(stdout_err)
}
