//! The web gateway: the part of Tahoe-LAFS's web API that tools and scripts use, served over
//! HTTP by a client node. The gateway does the encryption, hashing and erasure coding; storage
//! servers only store.
//!
//! Threads: one accept thread (tiny_http's) and `workers` request threads, all scoped inside
//! one gateway thread that owns the [`GridClient`]. Workers share the client's connections and
//! its remembered directory states (so an edit of a directory any worker wrote last costs one
//! round trip, and edits of one directory take turns instead of conflicting); each serves one
//! request at a time from start to finish.
//!
//! Memory: request bodies of immutable uploads are spooled to a temporary file (the convergent
//! key needs a first pass over the whole file) and then read back one segment at a time;
//! downloads are streamed to the socket one segment at a time. Mutable files and directories
//! are held whole, as the mutable publish is (see README's known limits).
//!
//! No request can take the gateway down: handlers return [`web::WebError`]s, and a panic in
//! one is caught, answered with 500 and logged.

pub mod api;
pub mod multipart;
pub mod servers;
pub mod stats;
pub mod web;
pub mod welcome;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::thread::JoinHandle;

use lafs_core::crypto::key_source::{generate_key, KeySource, KeySourceError};
use lafs_core::crypto::rsa_keys::MutableKey;

use crate::local_grid;
use crate::node::{GridServer, NodeDir};
use lafs_runtime_std::keypool::KeyPool;
use lafs_runtime_std::net::{GridClient, ServerEntry};
use lafs_runtime_std::sync::{Arc, Mutex, Ordering};
pub use stats::{OpKind, Stats};

/// Limits and tunables of a gateway.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Address to listen on (`127.0.0.1:3456` is Tahoe's default web port; port 0 picks one).
    pub listen: String,
    /// Requests served at once (each holds at most a segment or so in memory).
    pub workers: usize,
    /// Where request bodies of immutable uploads are spooled (the system temp dir if `None`).
    pub spool_dir: Option<PathBuf>,
    /// Largest immutable upload accepted, in bytes (413 beyond it).
    pub max_immutable_upload: u64,
    /// Largest mutable file written through the gateway (held in memory while published).
    pub max_mutable_upload: u64,
    /// Largest small body (a cap for `t=uri`, JSON).
    pub max_small_body: u64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: "127.0.0.1:3456".into(),
            workers: 16,
            spool_dir: None,
            max_immutable_upload: 1 << 40,
            max_mutable_upload: 64 << 20,
            max_small_body: 64 << 10,
        }
    }
}

/// RSA keys kept ready for new mutable files and directories (each takes ~0.3 s to make).
pub const KEY_POOL_SIZE: usize = 8;

/// Where new mutable files' RSA keys come from, shared by every worker.
pub type SharedKeys = Arc<Mutex<Box<dyn KeySource + Send>>>;

/// A worker's view of the shared keys, as the [`KeySource`] its directory client uses.
struct KeysRef<'a>(&'a SharedKeys);

impl KeySource for KeysRef<'_> {
    /// A ready key from the shared source; if it has none ready (the pool ran dry in a burst
    /// of creations), one made on this worker's thread, outside the shared lock. Waiting
    /// workers then generate side by side instead of queueing behind the pool's producers
    /// (one per core), which on a busy machine get a small share of the CPU (16 load clients
    /// making directories at once waited over a minute for a single producer).
    fn next_key(&mut self) -> Result<MutableKey, KeySourceError> {
        let ready = self.0.lock().unwrap_or_else(|e| e.into_inner()).ready_key();
        match ready {
            Some(key) => key,
            None => generate_key(&mut getrandom::SysRng),
        }
    }
}

/// A running gateway. Dropping it stops it.
pub struct Gateway {
    addr: SocketAddr,
    server: Arc<tiny_http::Server>,
    stopping: Arc<AtomicBool>,
    workers: usize,
    stats: Arc<Stats>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").field("addr", &self.addr).finish()
    }
}

/// A listening socket for the gateway with TCP_NODELAY set, which Linux passes on to every
/// accepted connection. tiny_http writes a response's headers and body through a 1 kB buffer,
/// so a small reply leaves in two writes; with Nagle's algorithm on, the second waits for the
/// client's delayed ACK of the first (40 ms on Linux), which made a 1 kB download take 43 ms
/// instead of under 1.
fn listen_no_delay(listen: &str) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let addr = std::net::ToSocketAddrs::to_socket_addrs(listen)?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{listen} names no address")))?;
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_nodelay(true)?;
    socket
        .bind(&addr.into())
        .map_err(|e| std::io::Error::new(e.kind(), format!("listening on {listen}: {e}")))?;
    socket.listen(1024)?;
    Ok(socket.into())
}

impl Gateway {
    /// Serve the web API for `servers` (the grid) with `client`, creating mutable files and
    /// directories with keys from `keys`.
    pub fn start(
        config: GatewayConfig,
        client: GridClient,
        servers: Vec<ServerEntry>,
        keys: SharedKeys,
    ) -> std::io::Result<Gateway> {
        let server = tiny_http::Server::from_listener(listen_no_delay(&config.listen)?, None)
            .map_err(|e| std::io::Error::other(format!("listening on {}: {e}", config.listen)))?;
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| std::io::Error::other("the gateway is not on an IP socket"))?;
        let server = Arc::new(server);
        let stopping = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Stats::new());
        let workers = config.workers.max(1);
        let shared = (server.clone(), stopping.clone(), stats.clone());
        let thread = std::thread::Builder::new()
            .name("lafs-gateway".into())
            .spawn(move || {
                let (server, stopping, stats) = shared;
                let info = api::GridInfo { servers };
                std::thread::scope(|scope| {
                    for i in 0..workers {
                        let (server, stopping, stats) = (&server, &stopping, &stats);
                        let (client, keys, config, info) = (&client, &keys, &config, &info);
                        let spawned = std::thread::Builder::new()
                            .name(format!("lafs-web-{i}"))
                            .spawn_scoped(scope, move || {
                                let mut worker = api::Worker::new(
                                    client,
                                    Box::new(KeysRef(keys)),
                                    config,
                                    stats,
                                    info,
                                );
                                loop {
                                    match server.recv() {
                                        Ok(request) => worker.serve(request),
                                        Err(_) if stopping.load(Ordering::SeqCst) => return,
                                        Err(e) => {
                                            tracing::warn!(error = %e, "gateway: accept failed")
                                        }
                                    }
                                }
                            });
                        if let Err(e) = spawned {
                            tracing::error!(error = %e, "gateway: could not start a worker");
                        }
                    }
                });
            })?;
        Ok(Gateway {
            addr,
            server,
            stopping,
            workers,
            stats,
            thread: Some(thread),
        })
    }

    /// The gateway of the client node `node` for the grid `servers`, listening on `listen`,
    /// with keys for new mutable files from a background key pool.
    pub fn for_client_node(
        node: &NodeDir,
        servers: &[GridServer],
        listen: &str,
    ) -> std::io::Result<Gateway> {
        let entries = local_grid::entries(servers);
        let client = GridClient::new(entries.clone(), local_grid::client_config(node));
        let keys: SharedKeys = Arc::new(Mutex::new(Box::new(KeyPool::rsa(KEY_POOL_SIZE))));
        let config = GatewayConfig {
            listen: listen.to_string(),
            ..GatewayConfig::default()
        };
        Gateway::start(config, client, entries, keys)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR/`
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Stop accepting, let every worker finish its request, and wait for them.
    pub fn shutdown(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.stopping.store(true, Ordering::SeqCst);
            for _ in 0..self.workers {
                self.server.unblock();
            }
            if thread.join().is_err() {
                tracing::error!("gateway thread panicked");
            }
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use lafs_runtime_std::keypool::Pool;

    #[test]
    fn workers_make_their_own_keys_when_the_pool_has_none_ready() {
        // A pool whose producer never delivers: every key must come from the workers.
        let (stop, stalled) = std::sync::mpsc::channel::<()>();
        let pool: Pool<MutableKey> = Pool::spawn(4, move || {
            let _ = stalled.recv();
            Err("stopped".to_string())
        });
        let keys: SharedKeys = Arc::new(Mutex::new(Box::new(pool)));
        let fingerprints: Vec<[u8; 32]> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..3)
                .map(|_| scope.spawn(|| KeysRef(&keys).next_key().unwrap().fingerprint()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let distinct: std::collections::BTreeSet<_> = fingerprints.iter().collect();
        assert_eq!(distinct.len(), 3, "each worker made a key of its own");
        drop(stop);
    }

    #[test]
    fn a_ready_key_comes_from_the_shared_source() {
        let pem = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/data/rsa-2048-fixture-keys.pem"
        ))
        .unwrap();
        let mut fixture = lafs_core::crypto::key_source::FixtureKeys::from_pem_bundle(&pem);
        let first = fixture.next_key().unwrap().fingerprint();
        let keys: SharedKeys = Arc::new(Mutex::new(Box::new(
            lafs_core::crypto::key_source::FixtureKeys::from_pem_bundle(&pem),
        )));
        assert_eq!(KeysRef(&keys).next_key().unwrap().fingerprint(), first);
    }
}
