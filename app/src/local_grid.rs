//! A grid of storage nodes in this process, on loopback: the embedded default that `lafs put`
//! and `lafs get` use with no configuration, and what `lafs grid up` serves to others.
//!
//! Each server is a real node directory (`server-NN/`, with its identity and an on-disk share
//! store), so shares survive restarts and every run finds its servers on the same ring. Ports
//! are picked fresh at every start.

use std::net::TcpListener;
use std::path::{Path, PathBuf};

use lafs_core::server::{ServerConfig, StorageServer};

use crate::node::{GridServer, NodeDir, NodeError, NodeKind};
use lafs_runtime_std::net::{serve, ClientConfig, GridClient, ServerEntry, ServerHandle};
use lafs_store::disk_store::{DiskShareStore, DiskStoreConfig};

/// Servers in the embedded default grid (Tahoe's default n).
pub const DEFAULT_SERVERS: usize = 10;

/// Why a local grid could not start.
#[derive(Debug, thiserror::Error)]
pub enum LocalGridError {
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error("storage for {path}: {message}")]
    Store { path: PathBuf, message: String },
    #[error("cannot listen on 127.0.0.1: {0}")]
    Listen(std::io::Error),
}

/// Where the embedded default grid lives: `$LAFS_HOME`, else the user's data directory.
pub fn default_home() -> PathBuf {
    if let Some(home) = std::env::var_os("LAFS_HOME") {
        return PathBuf::from(home);
    }
    dirs::data_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("lafs")
}

/// Open (creating on first use) the client node directory under `home`.
pub fn client_node(home: &Path) -> Result<NodeDir, NodeError> {
    let dir = home.join("client");
    match NodeDir::open(&dir) {
        Err(NodeError::NotANode(_)) => NodeDir::create(&dir, NodeKind::Client, "embedded client"),
        other => other,
    }
}

/// The client configuration a node directory describes.
pub fn client_config(node: &NodeDir) -> ClientConfig {
    let mut config = ClientConfig::new(
        node.identity.convergence_secret.to_vec(),
        node.identity.lease_secret.to_vec(),
    );
    config.upload.params = node.config.client.encoding();
    if node.config.client.codec == "novelpoly" {
        config.upload.codec = lafs_core::codec::CodecKind::NovelPoly;
    }
    config.download.segment_size_guess = node.config.client.max_segment_size;
    config
}

/// One running storage node.
#[derive(Debug)]
pub struct RunningServer {
    pub node: NodeDir,
    pub handle: ServerHandle,
}

impl RunningServer {
    /// Start the storage node in `node` on `listen` (e.g. "127.0.0.1:0").
    pub fn start(node: NodeDir, listen: &str) -> Result<RunningServer, LocalGridError> {
        let storage = node.storage_dir();
        let s = &node.config.storage;
        let config = DiskStoreConfig {
            reserved_space: s.reserved_space,
            max_share_size: s.max_share_size,
            expire_leases: s.expire_leases,
            ..DiskStoreConfig::default()
        };
        let store = DiskShareStore::open(&storage, config).map_err(|e| LocalGridError::Store {
            path: storage.clone(),
            message: e.to_string(),
        })?;
        // What the open found is worth an operator's eye: a migration, or damage set aside.
        let opened = store.open_report();
        if opened != Default::default() {
            tracing::warn!(
                storage = %storage.display(),
                files_indexed = opened.files_indexed,
                rows_pruned = opened.rows_pruned,
                quarantined = opened.quarantined,
                "storage opened: share files indexed (migration), rows of shares that never \
                 landed dropped, damaged files moved to quarantine/"
            );
        }
        let listener = TcpListener::bind(listen).map_err(LocalGridError::Listen)?;
        // Mutable shares record the id clients derive write enablers from.
        let server_config = ServerConfig {
            node_id: lafs_core::op::derivation_node_id(&node.identity.node_id),
            ..ServerConfig::default()
        };
        let handle = serve(listener, StorageServer::new(store, server_config));
        Ok(RunningServer { node, handle })
    }

    pub fn grid_entry(&self) -> GridServer {
        GridServer {
            id: self.node.identity.node_id,
            address: self.handle.local_addr(),
        }
    }
}

/// Storage nodes running in this process.
#[derive(Debug)]
pub struct LocalGrid {
    pub dir: PathBuf,
    pub servers: Vec<RunningServer>,
}

impl LocalGrid {
    /// Start `count` storage nodes under `dir/server-NN` (created on first use) on loopback.
    pub fn start(dir: &Path, count: usize) -> Result<LocalGrid, LocalGridError> {
        let mut servers = Vec::with_capacity(count);
        for i in 0..count {
            let node_dir = dir.join(format!("server-{i:02}"));
            let node = match NodeDir::open(&node_dir) {
                Err(NodeError::NotANode(_)) => {
                    NodeDir::create(&node_dir, NodeKind::Storage, &format!("local server {i}"))?
                }
                other => other?,
            };
            servers.push(RunningServer::start(node, "127.0.0.1:0")?);
        }
        Ok(LocalGrid {
            dir: dir.to_path_buf(),
            servers,
        })
    }

    /// The grid-file view of the running servers.
    pub fn grid(&self) -> Vec<GridServer> {
        self.servers.iter().map(RunningServer::grid_entry).collect()
    }

    /// A client for this grid.
    pub fn client(&self, config: ClientConfig) -> GridClient {
        GridClient::new(entries(&self.grid()), config)
    }

    /// Stop server `i` (it stays in the grid list, unreachable, as a crashed server would).
    pub fn stop(&mut self, i: usize) {
        if let Some(s) = self.servers.get_mut(i) {
            s.handle.shutdown();
        }
    }

    pub fn shutdown(&mut self) {
        for s in &mut self.servers {
            s.handle.shutdown();
        }
    }
}

impl Drop for LocalGrid {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Client-side entries for grid-file servers (lafs servers use their id as permutation seed).
pub fn entries(grid: &[GridServer]) -> Vec<ServerEntry> {
    grid.iter()
        .map(|s| ServerEntry {
            id: s.id,
            addr: s.address,
            permutation_seed: s.id.0.to_vec(),
        })
        .collect()
}
