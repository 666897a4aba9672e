//! The e2e driver over lafs-runtime-smol: each storage server is a `Server::run` future over a
//! disk store, `block_on`-ed on a thread of its own (one way to embed it), and the client is
//! the async `GridClient`, its operations spawned as tasks on smol's executor.

use std::collections::BTreeMap;
use std::io::SeekFrom;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread::JoinHandle;

use ::smol::channel::Sender;
use ::smol::future::FutureExt;
use ::smol::io::{AsyncRead, AsyncSeek, Cursor};
use lafs_core::cap::Cap;
use lafs_core::codec::CodecKind;
use lafs_core::server::{ServerConfig, StorageServer};
use lafs_runtime_smol::{ClientConfig, GridClient, Server, ServerEntry, UploadReport};
use lafs_store::disk_store::DiskShareStore;

use super::on_std::{disk_config, storage_index};
use lafs_core::crypto::key_source::{FixtureKeys, KeySource};
use lafs_core::mutable::layout::MutableFormat;
use lafs_core::mutable::PublishConfig;

use lafs_core::dirnode::{ChildCap, Overwrite};

use super::{
    contents, corrupt_disk_shares, corrupt_notes, file_link, holders, known_cap, mutable_contents,
    names, path, server_id, DirDriver, Driver, Fetched, FillableStore, MutableFile, Op, OpResult,
    Setup, Uploaded,
};

/// One storage server: its disk, address, fullness, and the thread running it.
#[derive(Debug)]
struct Node {
    dir: PathBuf,
    addr: SocketAddr,
    full: Arc<AtomicBool>,
    /// Dropping it stops the server (its future is dropped on its thread).
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Node {
    fn start(&mut self) {
        // A killed server's thread may still be dropping its store: wait for it.
        self.join();
        let store = DiskShareStore::open(&self.dir, disk_config()).expect("open disk store");
        let store = FillableStore {
            inner: store,
            full: Arc::clone(&self.full),
        };
        let listener = TcpListener::bind(self.addr).expect("bind the server's address again");
        let server =
            Server::from_listener(listener, StorageServer::new(store, ServerConfig::default()))
                .expect("async listener");
        self.addr = server.local_addr().expect("local addr");
        let (tx, rx) = ::smol::channel::bounded::<()>(1);
        self.stop = Some(tx);
        self.thread = Some(std::thread::spawn(move || {
            let stopped = async {
                let _ = rx.recv().await;
                Ok(())
            };
            let _ = ::smol::block_on(server.run().or(stopped));
        }));
    }

    /// Signal the server to stop (it drops every connection at once) without waiting.
    fn kill(&mut self) {
        self.stop.take();
    }

    fn join(&mut self) {
        self.kill();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A grid of runtime-smol servers and a runtime-smol client.
#[derive(Debug)]
pub struct SmolDriver {
    _tmp: tempfile::TempDir,
    nodes: Vec<Node>,
    client: Arc<GridClient>,
    caps: BTreeMap<usize, Cap>,
    keys: FixtureKeys,
    mutables: BTreeMap<usize, MutableFile>,
}

/// The same client settings as the std driver's (both runtimes share lafs-core's type).
fn client_config(setup: Setup) -> ClientConfig {
    super::on_std::client_config(setup)
}

impl SmolDriver {
    fn report(&mut self, file: usize, r: UploadReport) -> Uploaded {
        self.caps.insert(file, r.cap);
        Uploaded {
            holders: holders(self.nodes.len(), r.shares.keys()),
        }
    }
}

async fn fetch(client: &GridClient, cap: Option<Cap>) -> Result<Fetched, String> {
    let cap = cap.ok_or("no acknowledged upload of this file")?;
    let (bytes, r) = client
        .download_bytes(&cap)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Fetched {
        bytes,
        corrupt_shares: corrupt_notes(&r.server_problems),
    })
}

/// An upload source that kills a server when the upload reads the second half of the file
/// (after the hashing pass, segments are read on demand, so this is half-way through sending).
struct KillAtHalf<'a> {
    inner: Cursor<&'a [u8]>,
    seeks: usize,
    node: &'a mut Node,
}

impl AsyncRead for KillAtHalf<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncSeek for KillAtHalf<'_> {
    fn poll_seek(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        pos: SeekFrom,
    ) -> Poll<std::io::Result<u64>> {
        self.seeks += 1;
        let len = self.inner.get_ref().len() as u64;
        // Seek 1 starts the hashing pass; later seeks fetch segments to send.
        if let SeekFrom::Start(offset) = pos {
            if self.seeks > 1 && offset * 2 >= len {
                self.node.kill();
            }
        }
        Pin::new(&mut self.inner).poll_seek(cx, pos)
    }
}

impl Driver for SmolDriver {
    const NAME: &'static str = "runtime-smol";

    fn start(setup: Setup) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut nodes = Vec::new();
        let mut entries = Vec::new();
        for i in 0..setup.servers {
            let mut node = Node {
                dir: tmp.path().join(format!("server-{i}")),
                addr: "127.0.0.1:0".parse().expect("addr"),
                full: Arc::new(AtomicBool::new(false)),
                stop: None,
                thread: None,
            };
            node.start();
            entries.push(ServerEntry {
                id: server_id(i),
                addr: node.addr,
                permutation_seed: server_id(i).0.to_vec(),
            });
            nodes.push(node);
        }
        SmolDriver {
            _tmp: tmp,
            nodes,
            client: Arc::new(GridClient::new(entries, client_config(setup))),
            caps: BTreeMap::new(),
            keys: crate::keys::fixture_keys(),
            mutables: BTreeMap::new(),
        }
    }

    fn supports(_codec: CodecKind) -> bool {
        true
    }

    fn upload(&mut self, file: usize, size: u64) -> Result<Uploaded, String> {
        let r = ::smol::block_on(self.client.upload_bytes(&contents(file, size)))
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
        let mut source = KillAtHalf {
            inner: Cursor::new(&data[..]),
            seeks: 0,
            node: &mut self.nodes[server],
        };
        let r = ::smol::block_on(self.client.upload_reader(size, &mut source))
            .map_err(|e| e.to_string())?;
        Ok(self.report(file, r))
    }

    fn download(&mut self, file: usize) -> Result<Fetched, String> {
        ::smol::block_on(fetch(&self.client, self.caps.get(&file).cloned()))
    }

    fn concurrently(&mut self, ops: &[Op]) -> Vec<OpResult> {
        let n = self.nodes.len();
        let tasks: Vec<_> = ops
            .iter()
            .map(|op| {
                let client = Arc::clone(&self.client);
                let op = *op;
                let cap = match op {
                    Op::Download { file } => self.caps.get(&file).cloned(),
                    Op::Upload { .. } => None,
                };
                ::smol::spawn(async move {
                    match op {
                        Op::Upload { file, size } => {
                            match client.upload_bytes(&contents(file, size)).await {
                                Ok(r) => (
                                    Some((file, r.cap.clone())),
                                    OpResult::Uploaded(Ok(Uploaded {
                                        holders: holders(n, r.shares.keys()),
                                    })),
                                ),
                                Err(e) => (None, OpResult::Uploaded(Err(e.to_string()))),
                            }
                        }
                        Op::Download { .. } => {
                            (None, OpResult::Downloaded(fetch(&client, cap).await))
                        }
                    }
                })
            })
            .collect();
        let results: Vec<_> = ::smol::block_on(async {
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await);
            }
            out
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
        self.nodes[server].join();
    }

    fn restart(&mut self, server: usize) {
        if self.nodes[server].stop.is_none() {
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
        let r = ::smol::block_on(self.client.create_mutable(
            format,
            key,
            contents,
            PublishConfig::default(),
        ))
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
        let r = ::smol::block_on(self.client.update_mutable(&m.cap, contents, m.map.take()))
            .map_err(|e| e.to_string())?;
        m.publishes += 1;
        m.map = Some(r.map);
        Ok(())
    }

    fn read_mutable(&mut self, file: usize, range: Option<(u64, u64)>) -> Result<Vec<u8>, String> {
        let m = self.mutables.get_mut(&file).ok_or("no such mutable file")?;
        let (bytes, r) =
            ::smol::block_on(self.client.read_mutable(&m.cap, range)).map_err(|e| e.to_string())?;
        m.map = Some(r.map);
        Ok(bytes)
    }
}

impl Drop for SmolDriver {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.join();
        }
    }
}

impl DirDriver for SmolDriver {
    fn mkdir(&mut self) -> Result<Cap, String> {
        ::smol::block_on(self.client.mkdir(MutableFormat::Sdmf, &mut self.keys))
            .map_err(|e| e.to_string())
    }

    fn mkdir_at(&mut self, root: &Cap, at: &[&str], parents: bool) -> Result<Cap, String> {
        ::smol::block_on(self.client.mkdir_at(
            root,
            &path(at),
            MutableFormat::Sdmf,
            parents,
            &mut self.keys,
        ))
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
        ::smol::block_on(self.client.link(
            root,
            &path(at),
            ChildCap::Known(cap),
            file_link(replace),
            &mut self.keys,
        ))
        .map(|_| ())
        .map_err(|e| e.to_string())
    }

    fn list(&mut self, root: &Cap, at: &[&str]) -> Result<Vec<String>, String> {
        let dir = known_cap(
            ::smol::block_on(self.client.lookup(root, &path(at))).map_err(|e| e.to_string())?,
        )?;
        let listed =
            ::smol::block_on(self.client.list_directory(&dir)).map_err(|e| e.to_string())?;
        Ok(names(&listed))
    }

    fn lookup(&mut self, root: &Cap, at: &[&str]) -> Result<Cap, String> {
        known_cap(::smol::block_on(self.client.lookup(root, &path(at))).map_err(|e| e.to_string())?)
    }

    fn unlink(&mut self, root: &Cap, at: &[&str]) -> Result<(), String> {
        ::smol::block_on(self.client.unlink(root, &path(at)))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn move_link(&mut self, root: &Cap, from: &[&str], to: &[&str]) -> Result<(), String> {
        ::smol::block_on(self.client.move_link(
            (root, &path(from)),
            (root, &path(to)),
            Overwrite::No,
        ))
        .map_err(|e| e.to_string())
    }

    fn file_cap(&self, file: usize) -> Option<Cap> {
        self.caps.get(&file).cloned()
    }
}
