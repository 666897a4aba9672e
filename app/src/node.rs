//! A node directory: its configuration (`lafs.toml`), identity and secrets (`private/`), and the
//! static grid file listing storage servers (the counterpart of Tahoe's static server list).
//!
//! ```text
//! DIR/lafs.toml            commented TOML, written by `lafs node create`
//! DIR/private/node_id      32 random bytes, base32 (the server id other nodes know us by)
//! DIR/private/convergence  32 random bytes, base32 (client: convergent-encryption secret)
//! DIR/private/lease_secret 32 random bytes, base32 (client: lease secrets derive from it)
//! DIR/storage/             storage node: shares and leases.db
//! ```
//!
//! A grid file (`grid.toml`) lists servers:
//! ```toml
//! [[server]]
//! id = "<52 base32 characters>"
//! address = "127.0.0.1:40123"
//! ```

use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use lafs_core::base32;
use lafs_core::immutable::params::{EncodingParams, DEFAULT_MAX_SEGMENT_SIZE};
use lafs_core::placement::{ServerDescriptor, ServerId};
use rand::RngCore;
use serde::{Deserialize, Serialize};

/// Why a node directory or grid file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: invalid configuration: {message}")]
    Config { path: PathBuf, message: String },
    #[error("{0} already holds a node (lafs.toml exists); choose another directory")]
    AlreadyExists(PathBuf),
    #[error("{0} is not a node directory (no lafs.toml); create one with `lafs node create`")]
    NotANode(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> NodeError + '_ {
    move |source| NodeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a node does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    Storage,
    Client,
}

/// `lafs.toml`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub node: NodeSection,
    #[serde(default)]
    pub storage: StorageSection,
    #[serde(default)]
    pub client: ClientSection,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    pub kind: NodeKind,
    #[serde(default)]
    pub nickname: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    /// Address to listen on; port 0 picks a free port (printed at start).
    pub listen: String,
    /// Bytes the node leaves free on its filesystem.
    pub reserved_space: u64,
    /// Largest share accepted.
    pub max_share_size: u64,
    /// Delete shares whose leases all expired (off by default, as in Tahoe).
    pub expire_leases: bool,
}

impl Default for StorageSection {
    fn default() -> Self {
        StorageSection {
            listen: "127.0.0.1:0".into(),
            reserved_space: 1 << 30,
            max_share_size: 1 << 40,
            expire_leases: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientSection {
    pub shares_needed: usize,
    pub shares_happy: usize,
    pub shares_total: usize,
    pub max_segment_size: u64,
    /// `zfec` (Tahoe-compatible caps) or `novelpoly` (wide grids).
    pub codec: String,
    /// The grid file, relative to the node directory.
    pub grid: String,
    /// Where `lafs node run` serves the web gateway (Tahoe's web API); port 0 picks one.
    pub web_listen: String,
}

impl Default for ClientSection {
    fn default() -> Self {
        let p = EncodingParams::default();
        ClientSection {
            shares_needed: p.k,
            shares_happy: p.happy,
            shares_total: p.n,
            max_segment_size: DEFAULT_MAX_SEGMENT_SIZE,
            codec: "zfec".into(),
            grid: "grid.toml".into(),
            web_listen: "127.0.0.1:3456".into(),
        }
    }
}

impl ClientSection {
    pub fn encoding(&self) -> EncodingParams {
        EncodingParams {
            k: self.shares_needed,
            happy: self.shares_happy,
            n: self.shares_total,
            max_segment_size: self.max_segment_size,
        }
    }
}

/// The commented configuration `lafs node create` writes.
pub fn config_template(kind: NodeKind, nickname: &str) -> String {
    let s = StorageSection::default();
    let c = ClientSection::default();
    let kind_name = match kind {
        NodeKind::Storage => "storage",
        NodeKind::Client => "client",
    };
    format!(
        r#"# lafs node configuration. Edit and restart the node to apply.

[node]
# "storage" holds shares for others; "client" uploads and downloads.
kind = "{kind_name}"
nickname = "{nickname}"

[storage]
# Address to listen on (port 0: pick a free port and print it at start).
listen = "{listen}"
# Bytes to leave free on the filesystem; shares are refused beyond that.
reserved_space = {reserved}
# Largest share this node accepts, in bytes.
max_share_size = {max_share}
# Delete shares whose leases have all expired. Off by default, as in Tahoe.
expire_leases = false

[client]
# k-of-n erasure coding: any `shares_needed` of `shares_total` shares rebuild a file, and an
# upload succeeds only when `shares_happy` distinct servers hold distinct shares.
shares_needed = {k}
shares_happy = {happy}
shares_total = {n}
# Largest segment (bytes): the unit of encryption, coding and memory per transfer.
max_segment_size = {seg}
# "zfec" gives Tahoe-compatible caps; "novelpoly" supports n up to 65536.
codec = "zfec"
# The grid file listing storage servers, relative to this directory.
grid = "{grid}"
# Where `lafs node run` serves the web gateway (Tahoe's web API and a welcome page).
web_listen = "{web}"
"#,
        listen = s.listen,
        reserved = s.reserved_space,
        max_share = s.max_share_size,
        k = c.shares_needed,
        happy = c.shares_happy,
        n = c.shares_total,
        seg = c.max_segment_size,
        grid = c.grid,
        web = c.web_listen,
    )
}

/// A node's secrets and identity.
#[derive(Clone)]
pub struct Identity {
    pub node_id: ServerId,
    pub convergence_secret: [u8; 32],
    pub lease_secret: [u8; 32],
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Identity {{ node_id: {} }}",
            base32::encode(&self.node_id.0)
        ) // secrets stay out of logs
    }
}

/// An opened node directory.
#[derive(Clone, Debug)]
pub struct NodeDir {
    pub dir: PathBuf,
    pub config: NodeConfig,
    pub identity: Identity,
}

fn random32() -> [u8; 32] {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b
}

fn write_secret(path: &Path, value: &[u8; 32]) -> Result<(), NodeError> {
    let mut f = fs::File::create(path).map_err(io_err(path))?;
    f.write_all(format!("{}\n", base32::encode(value)).as_bytes())
        .map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

fn read_secret(path: &Path) -> Result<[u8; 32], NodeError> {
    let text = fs::read_to_string(path).map_err(io_err(path))?;
    let bad = |message: String| NodeError::Config {
        path: path.to_path_buf(),
        message,
    };
    base32::decode(text.trim())
        .map_err(|e| bad(e.to_string()))?
        .try_into()
        .map_err(|_| bad("expected 32 bytes".into()))
}

impl NodeDir {
    /// Create a node directory with fresh secrets and a commented configuration.
    pub fn create(dir: &Path, kind: NodeKind, nickname: &str) -> Result<NodeDir, NodeError> {
        let config_path = dir.join("lafs.toml");
        if config_path.exists() {
            return Err(NodeError::AlreadyExists(dir.to_path_buf()));
        }
        let private = dir.join("private");
        fs::create_dir_all(&private).map_err(io_err(&private))?;
        for name in ["node_id", "convergence", "lease_secret"] {
            let path = private.join(name);
            if !path.exists() {
                write_secret(&path, &random32())?;
            }
        }
        fs::write(&config_path, config_template(kind, nickname)).map_err(io_err(&config_path))?;
        Self::open(dir)
    }

    /// Open an existing node directory.
    pub fn open(dir: &Path) -> Result<NodeDir, NodeError> {
        let config_path = dir.join("lafs.toml");
        if !config_path.exists() {
            return Err(NodeError::NotANode(dir.to_path_buf()));
        }
        let text = fs::read_to_string(&config_path).map_err(io_err(&config_path))?;
        let config: NodeConfig = toml::from_str(&text).map_err(|e| NodeError::Config {
            path: config_path.clone(),
            message: e.to_string(),
        })?;
        let private = dir.join("private");
        let identity = Identity {
            node_id: ServerId(read_secret(&private.join("node_id"))?),
            convergence_secret: read_secret(&private.join("convergence"))?,
            lease_secret: read_secret(&private.join("lease_secret"))?,
        };
        Ok(NodeDir {
            dir: dir.to_path_buf(),
            config,
            identity,
        })
    }

    pub fn storage_dir(&self) -> PathBuf {
        self.dir.join("storage")
    }

    pub fn grid_path(&self) -> PathBuf {
        self.dir.join(&self.config.client.grid)
    }
}

/// One storage server in a grid file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GridServer {
    pub id: ServerId,
    pub address: SocketAddr,
}

impl GridServer {
    /// The ring descriptor: lafs servers use their id bytes as the permutation seed.
    pub fn descriptor(&self) -> ServerDescriptor {
        ServerDescriptor {
            id: self.id,
            permutation_seed: self.id.0.to_vec(),
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GridFile {
    #[serde(default)]
    server: Vec<GridFileEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GridFileEntry {
    id: String,
    address: String,
}

/// Read a grid file.
pub fn read_grid(path: &Path) -> Result<Vec<GridServer>, NodeError> {
    let text = fs::read_to_string(path).map_err(io_err(path))?;
    parse_grid(&text).map_err(|message| NodeError::Config {
        path: path.to_path_buf(),
        message,
    })
}

/// Parse grid-file text; the error says which entry is wrong.
pub fn parse_grid(text: &str) -> Result<Vec<GridServer>, String> {
    let file: GridFile = toml::from_str(text).map_err(|e| e.to_string())?;
    file.server
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let id = base32::decode(&e.id)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| {
                    format!(
                        "server {}: id must be 52 base32 characters (32 bytes)",
                        i + 1
                    )
                })?;
            let address = e.address.parse().map_err(|_| {
                format!("server {}: address {:?} is not host:port", i + 1, e.address)
            })?;
            Ok(GridServer {
                id: ServerId(id),
                address,
            })
        })
        .collect()
}

/// Grid-file text for these servers.
pub fn format_grid(servers: &[GridServer]) -> String {
    let mut out = String::from("# lafs grid: the storage servers clients use.\n");
    for s in servers {
        out.push_str(&format!(
            "\n[[server]]\nid = \"{}\"\naddress = \"{}\"\n",
            base32::encode(&s.id.0),
            s.address
        ));
    }
    out
}

/// Write a grid file atomically (temp file, fsync, rename).
pub fn write_grid(path: &Path, servers: &[GridServer]) -> Result<(), NodeError> {
    let tmp = path.with_extension("toml.tmp");
    {
        let mut f = fs::File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(format_grid(servers).as_bytes())
            .map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_parses_to_the_defaults() {
        let c: NodeConfig = toml::from_str(&config_template(NodeKind::Client, "alice")).unwrap();
        assert_eq!(c.node.kind, NodeKind::Client);
        assert_eq!(c.client, ClientSection::default());
        assert_eq!(c.storage, StorageSection::default());
    }

    #[test]
    fn grid_files_round_trip_and_bad_entries_are_named() {
        let servers = vec![
            GridServer {
                id: ServerId([7; 32]),
                address: "127.0.0.1:1234".parse().unwrap(),
            },
            GridServer {
                id: ServerId([9; 32]),
                address: "[::1]:5".parse().unwrap(),
            },
        ];
        assert_eq!(parse_grid(&format_grid(&servers)).unwrap(), servers);
        let err = parse_grid("[[server]]\nid = \"abc\"\naddress = \"x\"\n").unwrap_err();
        assert!(err.contains("server 1"), "{err}");
        assert!(parse_grid("[[server]]\nid = 1\n").is_err());
    }
}
