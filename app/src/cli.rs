//! The `lafs` commands other than `debug`: transfers, directories and aliases, nodes, local
//! grids and the demo.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use lafs_core::cap::Cap;
use rand::RngCore;
use serde_json::json;

use crate::aliases::{AliasError, Aliases, DEFAULT_ALIAS};
use crate::dir_paths;
use crate::gateway::Gateway;
use crate::local_grid::{self, LocalGrid, LocalGridError, RunningServer, DEFAULT_SERVERS};
use crate::node::{self, NodeDir, NodeError, NodeKind};
use crate::progress::Progress;
use lafs_core::dirnode::ops::DirOpError;
use lafs_core::dirnode::{ChildCap, EditError, Metadata, Overwrite};
use lafs_core::mutable::layout::MutableFormat;
use lafs_runtime_std::keypool::KeyPool;
use lafs_runtime_std::net::{ClientError, GridClient, ReadSeek, TransferProgress};

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
        /// Where to serve the web gateway (Tahoe's web API and a welcome page) for this grid;
        /// port 0 picks a free port. `--web none` serves no gateway.
        #[arg(long, default_value = "127.0.0.1:3456", value_name = "ADDR")]
        web: String,
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
    #[error(transparent)]
    Alias(#[from] AliasError),
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
struct GridAccess {
    client: GridClient,
    _grid: Option<LocalGrid>,
}

fn open_grid(target: &Target) -> Result<GridAccess, CliError> {
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
            Ok(GridAccess {
                client: GridClient::new(local_grid::entries(&servers), config),
                _grid: None,
            })
        }
        None => {
            let grid = LocalGrid::start(&home.join("grid"), DEFAULT_SERVERS)?;
            tracing::info!(home = %home.display(), "using the embedded local grid");
            Ok(GridAccess {
                client: grid.client(config),
                _grid: Some(grid),
            })
        }
    }
}

fn progress_sink(progress: &mut Progress) -> impl FnMut(TransferProgress) + '_ {
    move |p: TransferProgress| progress.set(p.done)
}

/// `lafs put FILE [DEST]`: without DEST, print the new file's cap; with DEST (`ALIAS:path`,
/// `DIRCAP/path`, or a path under the default alias), also link the file there.
pub fn put(
    file: &Path,
    dest: Option<&str>,
    target: &Target,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    if let Some(dest) = dest {
        return put_into(file, dest, target, out);
    }
    let access = open_grid(target)?;
    let size = std::fs::metadata(file)
        .map_err(|source| CliError::Io {
            path: file.to_path_buf(),
            source,
        })?
        .len();
    let mut bar = Progress::new("upload", size, target.json);
    let report = access
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

/// `lafs get SRC [-o FILE]`: SRC is a file cap, or a path in a directory (`ALIAS:path`,
/// `DIRCAP/path`, or a path under the default alias).
pub fn get(
    src: &str,
    output: Option<&Path>,
    target: &Target,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let src = src.trim();
    if src.starts_with("URI:") && !src.contains('/') {
        let cap = Cap::parse(src)?;
        check_readable_file(&cap, src)?;
        let access = open_grid(target)?;
        return get_cap(&access, &cap, output, target, out);
    }
    let (root, path) = resolve_path(target, src)?;
    let access = open_grid(target)?;
    let found = access.client.lookup(&root, &path)?;
    let ChildCap::Known(cap) = found.cap else {
        return Err(CliError::Usage(format!(
            "{src}: its cap is of a kind this version does not know"
        )));
    };
    check_readable_file(&cap, src)?;
    get_cap(&access, &cap, output, target, out)
}

fn check_readable_file(cap: &Cap, src: &str) -> Result<(), CliError> {
    if cap.is_directory() {
        return Err(CliError::Usage(format!(
            "{} is a directory; list it with `lafs ls`",
            if src.starts_with("URI:") && !src.contains('/') {
                "this cap"
            } else {
                src
            }
        )));
    }
    if cap.is_verify_cap() {
        return Err(CliError::Usage(format!(
            "a {} verify cap cannot read the file; use its read cap",
            cap.kind_name()
        )));
    }
    Ok(())
}

/// Write the file `cap` to `output` (via a temporary name) or to `out`.
fn get_cap(
    access: &GridAccess,
    cap: &Cap,
    output: Option<&Path>,
    target: &Target,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    if cap.is_mutable() {
        let (bytes, report) = access.client.read_mutable(cap, None)?;
        match output {
            Some(path) => write_file_atomically(path, &bytes)?,
            None => out.write_all(&bytes).map_err(stdout_err)?,
        }
        if target.json {
            let v = json!({
                "size": report.file_size,
                "seqnum": report.seqnum,
                "elapsed_ms": report.elapsed.as_secs_f64() * 1e3,
                "round_trips": report.stats.round_trips,
            });
            eprintln!("{v}");
        }
        return Ok(());
    }
    let size = match cap {
        Cap::ChkRead { size, .. } => *size,
        Cap::Lit { data } => data.len() as u64,
        other => {
            return Err(CliError::Usage(format!(
                "{} caps are not files lafs get can read",
                other.kind_name()
            )))
        }
    };
    let cap = cap.clone();
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
            let result = access
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
        None => access
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
                let servers = node::read_grid(&node.grid_path())?;
                if servers.is_empty() {
                    return Err(CliError::Usage(format!(
                        "{} lists no storage servers; a client node needs a grid to serve",
                        node.grid_path().display()
                    )));
                }
                let listen = node.config.client.web_listen.clone();
                let gateway = Gateway::for_client_node(&node, &servers, &listen).map_err(|e| {
                    CliError::Usage(format!("cannot start the web gateway on {listen}: {e}"))
                })?;
                let banner = format!(
                    "web gateway on {} for {} storage servers (Ctrl-C stops)\n",
                    gateway.url(),
                    servers.len()
                );
                if let Err(e) = out.write_all(banner.as_bytes()).and_then(|()| out.flush()) {
                    tracing::warn!(error = %e, "could not print the gateway banner; serving anyway");
                }
                park_forever()
            }
            let listen = node.config.storage.listen.clone();
            let server = RunningServer::start(node, &listen)?;
            // One write, and a reader that goes away after the first line must not stop the
            // server: it keeps serving whether or not anyone reads this banner.
            let banner = format!(
                "serving on {} (Ctrl-C stops); grid-file entry:\n{}",
                server.handle.local_addr(),
                node::format_grid(&[server.grid_entry()])
            );
            if let Err(e) = out.write_all(banner.as_bytes()).and_then(|()| out.flush()) {
                tracing::warn!(error = %e, "could not print the server banner; serving anyway");
            }
            park_forever()
        }
    }
}

/// `lafs grid up`
pub fn grid_command(cmd: GridCommand, out: &mut dyn Write) -> Result<(), CliError> {
    match cmd {
        GridCommand::Up { servers, dir, web } => {
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
            // Keep the gateway alive for as long as the grid.
            let _gateway = if web == "none" {
                None
            } else {
                let mut client_node = local_grid::client_node(&local_grid::default_home())?;
                // On a grid of fewer servers than the client's happiness no upload could
                // succeed: this grid's own gateway asks for as many servers as it has.
                let encoding = &mut client_node.config.client;
                encoding.shares_happy = encoding.shares_happy.min(servers);
                let (k, n, happy) = (
                    encoding.shares_needed,
                    encoding.shares_total,
                    encoding.shares_happy,
                );
                let gateway =
                    Gateway::for_client_node(&client_node, &grid.grid(), &web).map_err(|e| {
                        CliError::Usage(format!("cannot start the web gateway on {web}: {e}"))
                    })?;
                writeln!(
                    out,
                    "web gateway on {} (shares {k}-of-{n}, happy {happy})",
                    gateway.url()
                )
                .map_err(stdout_err)?;
                Some(gateway)
            };
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

/// The format of a new directory.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DirFormat {
    /// `URI:DIR2:` (SDMF, Tahoe's default for directories).
    #[default]
    Sdmf,
    /// `URI:DIR2-MDMF:`.
    Mdmf,
}

impl From<DirFormat> for MutableFormat {
    fn from(f: DirFormat) -> MutableFormat {
        match f {
            DirFormat::Sdmf => MutableFormat::Sdmf,
            DirFormat::Mdmf => MutableFormat::Mdmf,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum AliasCommand {
    /// Give the directory DIRCAP the short name NAME, so `NAME:a/b` means the path a/b in it.
    Add {
        name: String,
        dircap: String,
        #[command(flatten)]
        target: Target,
    },
    /// Make a new directory and give it the name NAME.
    Create {
        name: String,
        /// The new directory's format.
        #[arg(long, value_enum, default_value_t = DirFormat::Sdmf)]
        format: DirFormat,
        #[command(flatten)]
        target: Target,
    },
    /// Print every alias and its cap (`name: cap`, as in Tahoe's aliases file).
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Forget an alias (the directory itself is untouched).
    Remove {
        name: String,
        #[command(flatten)]
        target: Target,
    },
}

/// The node directory whose aliases a command uses: --node, else the embedded client node.
fn alias_node(target: &Target) -> Result<PathBuf, CliError> {
    match &target.node {
        Some(dir) => Ok(NodeDir::open(dir)?.dir),
        None => Ok(local_grid::client_node(&local_grid::default_home())?.dir),
    }
}

fn load_aliases(target: &Target) -> Result<Aliases, CliError> {
    Ok(Aliases::load(&alias_node(target)?)?)
}

/// The directory cap and child names `arg` points at.
fn resolve_path(target: &Target, arg: &str) -> Result<(Cap, Vec<String>), CliError> {
    let t = load_aliases(target)?.resolve(arg.trim())?;
    Ok((t.cap, t.path))
}

/// The default `tahoe:` when a command takes an optional path.
fn path_or_default(target: &Target, arg: Option<&str>) -> Result<(Cap, Vec<String>), CliError> {
    match arg {
        Some(arg) => resolve_path(target, arg),
        None => {
            let aliases = load_aliases(target)?;
            match aliases.get(DEFAULT_ALIAS) {
                Some(cap) => Ok((cap.clone(), Vec::new())),
                None => Err(CliError::Usage(format!(
                    "no path given and no default alias \"{DEFAULT_ALIAS}\"; name a directory \
                     (ALIAS:path or a dircap) or make one with `lafs alias create {DEFAULT_ALIAS}`"
                ))),
            }
        }
    }
}

fn write_file_atomically(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let tmp = path.with_extension("lafs-partial");
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| CliError::Io { path: p, source }
    };
    if let Err(e) = std::fs::write(&tmp, bytes) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(&tmp)(e));
    }
    std::fs::rename(&tmp, path).map_err(io(path))
}

fn file_name_of(file: &Path) -> Result<String, CliError> {
    file.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .ok_or_else(|| {
            CliError::Usage(format!(
                "{} has no usable file name; give the name in DEST",
                file.display()
            ))
        })
}

/// `lafs put FILE DEST`
fn put_into(file: &Path, dest: &str, target: &Target, out: &mut dyn Write) -> Result<(), CliError> {
    let (root, mut path) = resolve_path(target, dest)?;
    if path.is_empty() || dest.ends_with('/') {
        path.push(file_name_of(file)?);
    }
    let mut reader = File::open(file).map_err(|source| CliError::Io {
        path: file.to_path_buf(),
        source,
    })?;
    let size = reader
        .metadata()
        .map_err(|source| CliError::Io {
            path: file.to_path_buf(),
            source,
        })?
        .len();
    let access = open_grid(target)?;
    let mut keys = dir_paths::spot_keys();
    let mut put = |path: &[String], reader: &mut File| {
        access.client.metered(|grid| {
            let source = (size, reader as &mut dyn ReadSeek);
            dir_paths::put_file(
                grid,
                &root,
                path,
                source,
                Overwrite::OnlyFiles,
                false,
                &mut keys,
            )
        })
    };
    let (report, round_trips) = match put(&path, &mut reader) {
        // DEST names a directory: put the file into it under its own name.
        (
            Err(ClientError::Dir(DirOpError::Edit {
                source: EditError::ExistingDirectory { .. },
                ..
            })),
            _,
        ) => {
            path.push(file_name_of(file)?);
            put(&path, &mut reader)
        }
        other => other,
    };
    let (report, _) = report?;
    if target.json {
        let v = json!({
            "cap": report.cap.to_string(),
            "size": report.size,
            "path": path.join("/"),
            "elapsed_ms": report.elapsed.as_secs_f64() * 1e3,
            "round_trips": round_trips,
        });
        writeln!(out, "{v}").map_err(stdout_err)?;
    } else {
        writeln!(out, "{}", report.cap).map_err(stdout_err)?;
    }
    Ok(())
}

/// `lafs mkdir [PATH]`: a new directory, linked at PATH if given; prints its write cap.
pub fn mkdir(
    path: Option<&str>,
    format: DirFormat,
    parents: bool,
    target: &Target,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let place = path.map(|p| resolve_path(target, p)).transpose()?;
    if let Some((_, names)) = &place {
        if names.is_empty() {
            return Err(CliError::Usage(
                "that path is an existing directory; name the new one below it (ALIAS:name)".into(),
            ));
        }
    }
    // Generate the key while the grid starts.
    let pool = KeyPool::rsa(1);
    let access = open_grid(target)?;
    let mut keys = pool.handle();
    let (cap, round_trips) = access.client.metered(|grid| match &place {
        Some((root, names)) => grid.mkdir_at(root, names, format.into(), parents, &mut keys),
        None => grid.mkdir(format.into(), &mut keys),
    });
    print_cap(&cap?, round_trips, target, out)
}

fn print_cap(
    cap: &Cap,
    round_trips: u64,
    target: &Target,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    if target.json {
        let v = json!({ "cap": cap.to_string(), "round_trips": round_trips });
        writeln!(out, "{v}").map_err(stdout_err)
    } else {
        writeln!(out, "{cap}").map_err(stdout_err)
    }
}

/// A UTC time as `YYYY-MM-DD HH:MM:SS` from seconds since the epoch.
pub fn format_utc(seconds: f64) -> String {
    let secs = seconds.max(0.0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Tahoe-style mode letters: `d` for directories, `rw`/`r-` for what the link allows.
fn mode_of(cap: &ChildCap) -> &'static str {
    match cap {
        ChildCap::Known(c) if c.is_directory() && c.is_readonly() => "dr-x",
        ChildCap::Known(c) if c.is_directory() => "drwx",
        ChildCap::Known(c) if c.is_mutable() && !c.is_readonly() => "-rw-",
        ChildCap::Known(_) => "-r--",
        ChildCap::Unknown(_) => "?---",
    }
}

fn size_of(cap: &ChildCap) -> Option<u64> {
    match cap {
        ChildCap::Known(Cap::ChkRead { size, .. }) => Some(*size),
        ChildCap::Known(Cap::Lit { data }) => Some(data.len() as u64),
        _ => None,
    }
}

fn entry_json(name: &str, cap: &ChildCap, metadata: Option<&Metadata>) -> serde_json::Value {
    let kind = match cap {
        ChildCap::Known(c) if c.is_directory() => "dirnode",
        ChildCap::Known(_) => "filenode",
        ChildCap::Unknown(_) => "unknown",
    };
    let text = |b: Option<Vec<u8>>| b.map(|b| String::from_utf8_lossy(&b).into_owned());
    let metadata = metadata.map(|m| {
        serde_json::from_str::<serde_json::Value>(&m.to_python_json())
            .unwrap_or_else(|_| serde_json::Value::String(m.to_python_json()))
    });
    json!({
        "name": name,
        "type": kind,
        "mutable": matches!(cap, ChildCap::Known(c) if c.is_mutable()),
        "rw_uri": text(cap.write_uri()),
        "ro_uri": text(cap.read_uri()),
        "size": size_of(cap),
        "metadata": metadata,
    })
}

fn long_line(name: &str, cap: &ChildCap, metadata: Option<&Metadata>) -> String {
    let size = size_of(cap).map_or_else(|| "-".to_string(), |s| s.to_string());
    let when = metadata
        .and_then(lafs_core::dirnode::metadata::link_modified)
        .map_or_else(|| "-".to_string(), format_utc);
    format!("{} {size:>12} {when:>19} {name}", mode_of(cap))
}

/// `lafs ls [-l|--json] [PATH]`
pub fn ls(
    path: Option<&str>,
    long: bool,
    show_caps: bool,
    target: &Target,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let (root, names) = path_or_default(target, path)?;
    let access = open_grid(target)?;
    let found = access.client.lookup(&root, &names)?;
    let dir = match &found.cap {
        ChildCap::Known(cap) if cap.is_directory() => access.client.list_directory(cap)?,
        // A file: describe that one entry.
        other => {
            let name = names.last().cloned().unwrap_or_default();
            let line = if target.json {
                entry_json(&name, other, found.metadata.as_ref()).to_string()
            } else if long {
                long_line(&name, other, found.metadata.as_ref())
            } else {
                name
            };
            return writeln!(out, "{line}").map_err(stdout_err);
        }
    };
    for skipped in dir.skipped() {
        eprintln!(
            "lafs: warning: entry {} ({:?}) was left out: {}",
            skipped.index, skipped.name, skipped.reason
        );
    }
    if target.json {
        let children: Vec<serde_json::Value> = dir
            .list()
            .map(|(name, child)| entry_json(name, &child.cap, Some(&child.metadata)))
            .collect();
        let v = json!({ "type": "dirnode", "children": children });
        return writeln!(out, "{v}").map_err(stdout_err);
    }
    for (name, child) in dir.list() {
        let mut line = if long {
            long_line(name, &child.cap, Some(&child.metadata))
        } else {
            name.to_string()
        };
        if show_caps {
            let cap = child.cap.write_uri().or_else(|| child.cap.read_uri());
            line.push(' ');
            line.push_str(&String::from_utf8_lossy(&cap.unwrap_or_default()));
        }
        writeln!(out, "{line}").map_err(stdout_err)?;
    }
    Ok(())
}

/// `lafs mv FROM TO`: rename or move a link. If TO is an existing directory (or ends in '/'),
/// the child moves into it under its own name. Files at TO are replaced, directories never.
pub fn mv(from: &str, to: &str, target: &Target, out: &mut dyn Write) -> Result<(), CliError> {
    let (from_root, from_path) = resolve_path(target, from)?;
    let (to_root, mut to_path) = resolve_path(target, to)?;
    let Some(name) = from_path.last().cloned() else {
        return Err(CliError::Usage(format!(
            "{from} is a whole directory, not a link in one; name the child to move"
        )));
    };
    let access = open_grid(target)?;
    let (moved, round_trips) = access.client.metered(|grid| {
        let into = to_path.is_empty()
            || to.ends_with('/')
            || matches!(grid.lookup(&to_root, &to_path), Ok(f) if f.cap.is_directory());
        if into {
            to_path.push(name);
        }
        grid.move_link(
            (&from_root, &from_path),
            (&to_root, &to_path),
            Overwrite::OnlyFiles,
        )
    });
    moved?;
    if target.json {
        let v = json!({ "moved_to": to_path.join("/"), "round_trips": round_trips });
        writeln!(out, "{v}").map_err(stdout_err)?;
    }
    Ok(())
}

/// `lafs rm PATH`: unlink a child (its data stays on the grid for anyone holding its cap).
pub fn rm(path: &str, target: &Target, out: &mut dyn Write) -> Result<(), CliError> {
    let (root, names) = resolve_path(target, path)?;
    if names.is_empty() {
        return Err(CliError::Usage(format!(
            "{path} is a whole directory, not a link in one; name the child to remove"
        )));
    }
    let access = open_grid(target)?;
    let removed = access.client.unlink(&root, &names)?;
    if target.json {
        let v = entry_json(&names.join("/"), &removed.cap, Some(&removed.metadata));
        writeln!(out, "{v}").map_err(stdout_err)?;
    }
    Ok(())
}

/// `lafs alias ...`
pub fn alias_command(cmd: AliasCommand, out: &mut dyn Write) -> Result<(), CliError> {
    match cmd {
        AliasCommand::Add {
            name,
            dircap,
            target,
        } => {
            let cap = Cap::parse(dircap.trim())?;
            let mut aliases = load_aliases(&target)?;
            aliases.add(&name, &cap)?;
            writeln!(out, "alias {name} added").map_err(stdout_err)
        }
        AliasCommand::Create {
            name,
            format,
            target,
        } => {
            let mut aliases = load_aliases(&target)?;
            crate::aliases::check_name(&name)?;
            if aliases.get(&name).is_some() {
                return Err(AliasError::Duplicate(name).into());
            }
            let pool = KeyPool::rsa(1);
            let access = open_grid(&target)?;
            let cap = access.client.mkdir(format.into(), &mut pool.handle())?;
            aliases.add(&name, &cap)?;
            writeln!(out, "alias {name} created").map_err(stdout_err)
        }
        AliasCommand::List { target } => {
            let aliases = load_aliases(&target)?;
            if target.json {
                let map: serde_json::Map<String, serde_json::Value> = aliases
                    .list()
                    .map(|(n, c)| (n.to_string(), json!(c.to_string())))
                    .collect();
                writeln!(out, "{}", serde_json::Value::Object(map)).map_err(stdout_err)
            } else {
                for (name, cap) in aliases.list() {
                    writeln!(out, "{name}: {cap}").map_err(stdout_err)?;
                }
                Ok(())
            }
        }
        AliasCommand::Remove { name, target } => {
            let mut aliases = load_aliases(&target)?;
            aliases.remove(&name)?;
            writeln!(out, "alias {name} removed").map_err(stdout_err)
        }
    }
}
