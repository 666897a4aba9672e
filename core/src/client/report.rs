//! What a client operation tells its caller: configuration in, reports and errors out. Shared by
//! every runtime, so an application sees the same types whichever one it uses.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use crate::cap::Cap;
use crate::immutable::download::{DownloadConfig, DownloadError};
use crate::immutable::upload::{UploadConfig, UploadError};
use crate::mutable::{PublishError, RetrieveError, ServerMap};
use crate::placement::{ServerDescriptor, ServerId};

use super::stats::TransferStats;

/// How a client finds one storage server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerEntry {
    pub id: ServerId,
    pub addr: SocketAddr,
    /// The server's announced permutation seed (decoded), which orders it on each file's ring.
    pub permutation_seed: Vec<u8>,
}

impl ServerEntry {
    /// What placement needs of it.
    pub fn descriptor(&self) -> ServerDescriptor {
        ServerDescriptor {
            id: self.id,
            permutation_seed: self.permutation_seed.clone(),
        }
    }
}

/// A client's secrets and tunables.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Mixed into convergent keys, so only clients sharing it deduplicate each other's files.
    pub convergence_secret: Vec<u8>,
    /// The node's lease secret; per-file and per-server lease secrets derive from it.
    pub lease_secret: Vec<u8>,
    pub upload: UploadConfig,
    pub download: DownloadConfig,
    /// How long to wait for a TCP connection before counting the server as lost.
    pub connect_timeout: Duration,
}

impl ClientConfig {
    /// Tahoe's defaults (3-of-10, happy 7, 1 MiB segments) with the given secrets.
    pub fn new(convergence_secret: Vec<u8>, lease_secret: Vec<u8>) -> ClientConfig {
        ClientConfig {
            convergence_secret,
            lease_secret,
            upload: UploadConfig::default(),
            download: DownloadConfig::default(),
            connect_timeout: Duration::from_secs(10),
        }
    }

    /// How long a write to a server may block before the connection counts as broken.
    pub fn write_timeout(&self) -> Duration {
        let longest = self
            .upload
            .request_timeout
            .max(self.download.request_timeout);
        Duration::from_micros(longest.as_micros())
    }
}

/// Which part of a transfer a [`TransferProgress`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Reading the file once to compute its convergent key.
    Hashing,
    /// Encoding and sending the file's segments.
    Uploading,
    /// Receiving and writing verified plaintext.
    Downloading,
}

/// How far a transfer has got: `done` of `total` plaintext bytes in `stage`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransferProgress {
    pub stage: Stage,
    pub done: u64,
    pub total: u64,
}

/// A finished upload.
#[derive(Clone, Debug)]
pub struct UploadReport {
    /// The file's read cap.
    pub cap: Cap,
    /// Plaintext bytes.
    pub size: u64,
    /// Wall time, including the hashing pass.
    pub elapsed: Duration,
    /// Servers-of-happiness achieved (0 for LIT caps).
    pub happiness: usize,
    /// Shares per server (written now or found already there).
    pub shares: BTreeMap<ServerId, BTreeSet<u16>>,
    pub stats: TransferStats,
    /// Servers that failed, refused or were lost along the way, with what happened; the
    /// operation worked around them.
    pub server_problems: Vec<(ServerId, String)>,
}

/// A finished download.
#[derive(Clone, Debug)]
pub struct DownloadReport {
    /// Plaintext bytes written.
    pub size: u64,
    pub elapsed: Duration,
    pub stats: TransferStats,
    /// Servers lost or misbehaving along the way (including corrupt shares), with what happened.
    pub server_problems: Vec<(ServerId, String)>,
}

/// A finished write of a mutable file (create, update or in-place modify).
#[derive(Clone, Debug)]
pub struct MutableWriteReport {
    /// The file's write cap.
    pub cap: Cap,
    /// The version written.
    pub seqnum: u64,
    /// Shares written, by server.
    pub placed: Vec<(ServerId, u16)>,
    pub elapsed: Duration,
    pub stats: TransferStats,
    /// The map after the write: pass it to the next update of this file to save a round trip.
    pub map: ServerMap,
}

/// A finished read of a mutable file.
#[derive(Clone, Debug)]
pub struct MutableReadReport {
    /// The version read.
    pub seqnum: u64,
    /// The file's whole size (the read may have been of a range).
    pub file_size: u64,
    pub elapsed: Duration,
    pub stats: TransferStats,
    /// Corrupt shares skipped, with what was wrong.
    pub server_problems: Vec<(ServerId, String)>,
    /// Warm map for a following update (write caps: includes the signing key).
    pub map: ServerMap,
}

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("upload failed: {0}")]
    Upload(#[from] UploadError),
    #[error("download failed: {0}")]
    Download(#[from] DownloadError),
    #[error("{what}: {source}")]
    Io {
        /// What the client was doing with the local data.
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot reach any storage server: {}", list_unreachable(.0))]
    Unreachable(Vec<(SocketAddr, String)>),
    #[error("{0} caps cannot be downloaded as immutable files")]
    NotImmutableFile(&'static str),
    #[error("{0}")]
    NotMutableFile(String),
    #[error("mutable write failed: {0}")]
    Publish(#[from] PublishError),
    #[error("in-place write failed: {0}")]
    Modify(#[from] crate::mutable::ModifyError),
    #[error("mutable read failed: {0}")]
    Retrieve(#[from] RetrieveError),
    #[error(transparent)]
    Dir(#[from] crate::dirnode::ops::DirOpError),
    #[error("the {0} stalled with nothing in flight and no timer (a lafs-core bug)")]
    Stalled(&'static str),
}

impl ClientError {
    /// A failure reading or writing local data while doing `what`.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> ClientError {
        ClientError::Io {
            what: what.into(),
            source,
        }
    }
}

fn list_unreachable(list: &[(SocketAddr, String)]) -> String {
    list.iter()
        .map(|(addr, e)| format!("{addr} ({e})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Which servers an operation reached and which it could not connect to, so a failure where
/// none answered says so instead of blaming the file.
#[derive(Clone, Debug, Default)]
pub struct Reach {
    reached: BTreeSet<ServerId>,
    unreachable: BTreeMap<ServerId, (SocketAddr, String)>,
}

impl Reach {
    pub fn reached(&mut self, server: ServerId) {
        self.reached.insert(server);
    }

    pub fn unreachable(&mut self, server: ServerId, addr: SocketAddr, why: String) {
        self.unreachable.insert(server, (addr, why));
    }

    /// Whether connecting to `server` already failed during this operation.
    pub fn is_unreachable(&self, server: &ServerId) -> bool {
        self.unreachable.contains_key(server)
    }

    /// The error to report for a failed operation: "unreachable" if no server was reached.
    pub fn failure(&self, e: ClientError) -> ClientError {
        if self.reached.is_empty() && !self.unreachable.is_empty() {
            ClientError::Unreachable(self.unreachable.values().cloned().collect())
        } else {
            e
        }
    }
}
