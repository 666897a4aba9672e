//! The e2e driver over lafs-runtime-std: threaded TCP storage servers (`serve`) over disk stores
//! in a temporary directory, and the blocking `GridClient`.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lafs_core::cap::Cap;
use lafs_core::codec::CodecKind;
use lafs_core::server::{ServerConfig, StorageServer};
use lafs_core::time::Duration as CoreDuration;
use lafs_runtime_std::net::{
    serve, ClientConfig, GridClient, ServerEntry, ServerHandle, Stage, UploadReport,
};
use lafs_store::disk_store::{DiskShareStore, DiskStoreConfig};

use lafs_core::crypto::key_source::{FixtureKeys, KeySource};
use lafs_core::mutable::layout::MutableFormat;
use lafs_core::mutable::PublishConfig;

use lafs_core::dirnode::{ChildCap, Overwrite};

use super::{
    contents, corrupt_disk_shares, corrupt_notes, file_link, holders, known_cap, mutable_contents,
    names, path, server_id, DirDriver, Driver, Fetched, FillableStore, MutableFile, Op, OpResult,
    Setup, Uploaded,
};

/// Secrets shared by the real-socket drivers (so both make the same caps).
pub const CONVERGENCE: &[u8] = b"e2e convergence secret..........";
pub const LEASE: &[u8] = b"e2e lease secret................";

/// One storage server: its disk, its address, whether it is full, and its handle while running.
#[derive(Debug)]
struct Node {
    dir: PathBuf,
    addr: SocketAddr,
    full: Arc<AtomicBool>,
    handle: Option<ServerHandle>,
}

impl Node {
    fn start(&mut self) {
        let store = DiskShareStore::open(&self.dir, disk_config()).expect("open disk store");
        let store = FillableStore {
            inner: store,
            full: Arc::clone(&self.full),
        };
        let listener = TcpListener::bind(self.addr).expect("bind the server's address again");
        self.addr = listener.local_addr().expect("local addr");
        self.handle = Some(serve(
            listener,
            StorageServer::new(store, ServerConfig::default()),
        ));
    }

    fn stop(&mut self) {
        // Dropping the handle joins every server thread and drops the store (its lock too).
        self.handle.take();
    }
}

/// Disk stores that keep no free-space reserve (test machines have little disk).
pub fn disk_config() -> DiskStoreConfig {
    DiskStoreConfig {
        reserved_space: 0,
        ..DiskStoreConfig::default()
    }
}

/// A grid of runtime-std servers and a runtime-std client.
#[derive(Debug)]
pub struct StdDriver {
    _tmp: tempfile::TempDir,
    nodes: Vec<Node>,
    client: GridClient,
    caps: BTreeMap<usize, Cap>,
    keys: FixtureKeys,
    mutables: BTreeMap<usize, MutableFile>,
}

/// Client settings for a setup (short timeouts so a dead server costs seconds, not minutes).
pub fn client_config(setup: Setup) -> ClientConfig {
    let mut c = ClientConfig::new(CONVERGENCE.to_vec(), LEASE.to_vec());
    c.upload.params = setup.encoding;
    c.upload.codec = setup.codec;
    c.upload.request_timeout = CoreDuration::from_secs(5);
    c.download.segment_size_guess = setup.encoding.max_segment_size;
    c.download.request_timeout = CoreDuration::from_secs(5);
    c.connect_timeout = Duration::from_secs(2);
    c
}

impl StdDriver {
    fn report(&mut self, file: usize, r: UploadReport) -> Uploaded {
        self.caps.insert(file, r.cap);
        Uploaded {
            holders: holders(self.nodes.len(), r.shares.keys()),
        }
    }
}

fn fetch(client: &GridClient, cap: Option<&Cap>) -> Result<Fetched, String> {
    let cap = cap.ok_or("no acknowledged upload of this file")?;
    let mut bytes = Vec::new();
    let r = client
        .download(cap, &mut bytes, &mut |_| {})
        .map_err(|e| e.to_string())?;
    Ok(Fetched {
        bytes,
        corrupt_shares: corrupt_notes(&r.server_problems),
    })
}

impl Driver for StdDriver {
    const NAME: &'static str = "runtime-std";

    fn start(setup: Setup) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut nodes = Vec::new();
        let mut entries = Vec::new();
        for i in 0..setup.servers {
            let mut node = Node {
                dir: tmp.path().join(format!("server-{i}")),
                addr: "127.0.0.1:0".parse().expect("addr"),
                full: Arc::new(AtomicBool::new(false)),
                handle: None,
            };
            node.start();
            entries.push(ServerEntry {
                id: server_id(i),
                addr: node.addr,
                permutation_seed: server_id(i).0.to_vec(),
            });
            nodes.push(node);
        }
        StdDriver {
            _tmp: tmp,
            nodes,
            client: GridClient::new(entries, client_config(setup)),
            caps: BTreeMap::new(),
            keys: crate::keys::fixture_keys(),
            mutables: BTreeMap::new(),
        }
    }

    fn supports(_codec: CodecKind) -> bool {
        true
    }

    fn upload(&mut self, file: usize, size: u64) -> Result<Uploaded, String> {
        let r = self
            .client
            .upload_bytes(&contents(file, size), &mut |_| {})
            .map_err(|e| e.to_string())?;
        Ok(self.report(file, r))
    }

    fn upload_killing(
        &mut self,
        file: usize,
        size: u64,
        server: usize,
    ) -> Result<Uploaded, String> {
        let data = contents(file, size);
        let node = &mut self.nodes[server];
        // The progress callback runs on the uploading thread after each segment is handed to
        // the network: kill the server when half the file has gone out.
        let r = self
            .client
            .upload_bytes(&data, &mut |p| {
                if p.stage == Stage::Uploading && p.done * 2 >= p.total {
                    node.stop();
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(self.report(file, r))
    }

    fn download(&mut self, file: usize) -> Result<Fetched, String> {
        fetch(&self.client, self.caps.get(&file))
    }

    fn concurrently(&mut self, ops: &[Op]) -> Vec<OpResult> {
        let client = &self.client;
        let caps = &self.caps;
        let n = self.nodes.len();
        let results: Vec<(Option<(usize, Cap)>, OpResult)> = std::thread::scope(|s| {
            let handles: Vec<_> = ops
                .iter()
                .map(|op| {
                    s.spawn(move || match *op {
                        Op::Upload { file, size } => {
                            match client.upload_bytes(&contents(file, size), &mut |_| {}) {
                                Ok(r) => (
                                    Some((file, r.cap.clone())),
                                    OpResult::Uploaded(Ok(Uploaded {
                                        holders: holders(n, r.shares.keys()),
                                    })),
                                ),
                                Err(e) => (None, OpResult::Uploaded(Err(e.to_string()))),
                            }
                        }
                        Op::Download { file } => {
                            (None, OpResult::Downloaded(fetch(client, caps.get(&file))))
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("operation thread panicked"))
                .collect()
        });
        results
            .into_iter()
            .map(|(cap, result)| {
                if let Some((file, cap)) = cap {
                    self.caps.insert(file, cap);
                }
                result
            })
            .collect()
    }

    fn stop(&mut self, server: usize) {
        self.nodes[server].stop();
    }

    fn restart(&mut self, server: usize) {
        if self.nodes[server].handle.is_none() {
            self.nodes[server].start();
        }
    }

    fn corrupt(&mut self, server: usize, file: usize) {
        if let Some(si) = self.caps.get(&file).and_then(storage_index) {
            corrupt_disk_shares(&self.nodes[server].dir, &si);
        }
    }

    fn fill(&mut self, server: usize) {
        self.nodes[server].full.store(true, Ordering::SeqCst);
    }

    fn create_mutable(
        &mut self,
        file: usize,
        format: MutableFormat,
        size: u64,
    ) -> Result<(), String> {
        let key = self.keys.next_key().map_err(|e| e.to_string())?;
        let contents = mutable_contents(file, 0, size);
        let r = self
            .client
            .create_mutable(format, key, contents, PublishConfig::default())
            .map_err(|e| e.to_string())?;
        self.mutables.insert(
            file,
            MutableFile {
                cap: r.cap,
                publishes: 1,
                map: Some(r.map),
            },
        );
        Ok(())
    }

    fn update_mutable(&mut self, file: usize, size: u64) -> Result<(), String> {
        let m = self.mutables.get_mut(&file).ok_or("no such mutable file")?;
        let contents = mutable_contents(file, m.publishes, size);
        let r = self
            .client
            .update_mutable(&m.cap, contents, m.map.take())
            .map_err(|e| e.to_string())?;
        m.publishes += 1;
        m.map = Some(r.map);
        Ok(())
    }

    fn read_mutable(&mut self, file: usize, range: Option<(u64, u64)>) -> Result<Vec<u8>, String> {
        let m = self.mutables.get_mut(&file).ok_or("no such mutable file")?;
        let (bytes, r) = self
            .client
            .read_mutable(&m.cap, range)
            .map_err(|e| e.to_string())?;
        m.map = Some(r.map);
        Ok(bytes)
    }
}

/// The storage index of a CHK cap.
pub fn storage_index(cap: &Cap) -> Option<lafs_core::wire::StorageIndex> {
    match cap {
        Cap::ChkRead { key, .. } => Some(lafs_core::crypto::storage_index_from_key(key)),
        _ => None,
    }
}

impl DirDriver for StdDriver {
    fn mkdir(&mut self) -> Result<Cap, String> {
        self.client
            .mkdir(MutableFormat::Sdmf, &mut self.keys)
            .map_err(|e| e.to_string())
    }

    fn mkdir_at(&mut self, root: &Cap, at: &[&str], parents: bool) -> Result<Cap, String> {
        self.client
            .mkdir_at(
                root,
                &path(at),
                MutableFormat::Sdmf,
                parents,
                &mut self.keys,
            )
            .map_err(|e| e.to_string())
    }

    fn link_file(
        &mut self,
        root: &Cap,
        at: &[&str],
        file: usize,
        replace: bool,
    ) -> Result<(), String> {
        let cap = self.caps.get(&file).cloned().ok_or("no such file")?;
        self.client
            .link(
                root,
                &path(at),
                ChildCap::Known(cap),
                file_link(replace),
                &mut self.keys,
            )
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn list(&mut self, root: &Cap, at: &[&str]) -> Result<Vec<String>, String> {
        let dir = known_cap(
            self.client
                .lookup(root, &path(at))
                .map_err(|e| e.to_string())?,
        )?;
        let listed = self
            .client
            .list_directory(&dir)
            .map_err(|e| e.to_string())?;
        Ok(names(&listed))
    }

    fn lookup(&mut self, root: &Cap, at: &[&str]) -> Result<Cap, String> {
        known_cap(
            self.client
                .lookup(root, &path(at))
                .map_err(|e| e.to_string())?,
        )
    }

    fn unlink(&mut self, root: &Cap, at: &[&str]) -> Result<(), String> {
        self.client
            .unlink(root, &path(at))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn move_link(&mut self, root: &Cap, from: &[&str], to: &[&str]) -> Result<(), String> {
        self.client
            .move_link((root, &path(from)), (root, &path(to)), Overwrite::No)
            .map_err(|e| e.to_string())
    }

    fn file_cap(&self, file: usize) -> Option<Cap> {
        self.caps.get(&file).cloned()
    }
}
