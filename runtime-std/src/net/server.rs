//! A storage server on blocking TCP: one accept thread, one thread per connection, one janitor.
//!
//! Concurrency model: the [`StorageServer`] sits behind one `Mutex`. A connection thread holds
//! the lock only while `handle_request` runs, never while it reads or writes the socket, so a
//! slow client cannot stall others; requests of different connections are handled one at a
//! time, which is correct by construction (the core is a single-threaded state machine). A store
//! that defers its syncs (the disk store's group commit) hands out a durability ticket; the
//! thread waits on it after releasing the lock and before answering, so the disk's sync latency
//! is never spent holding the lock and one sync serves every connection waiting at the time.
//!
//! Shutdown: [`ServerHandle::shutdown`] marks the registry closing, shuts down every open socket
//! (which wakes their blocked reads), wakes the accept thread with a connection to itself, and
//! joins every thread. The closing flag and the socket list share one lock, so a connection
//! accepted during shutdown is either closed by it or refused by the accept thread, never left
//! open.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{self, RecvTimeoutError};
// `Arc<dyn Control>` needs std's `Arc` (loom's cannot coerce to a trait object); everything the
// threads share inside it comes from the loom shim.
use std::sync::{Arc, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use lafs_core::server::{ConnectionId, StorageServer};
use lafs_core::server_frames::ConnectionFrames;
use lafs_core::store::ShareStore;

use super::connection::Chunks;
use crate::clock;
use crate::sync::{AtomicU64, Mutex, MutexGuard, Ordering};

/// Longest the janitor sleeps between checks, so a shutdown or a new upload's idle deadline is
/// noticed within this time.
const JANITOR_MAX_SLEEP: Duration = Duration::from_secs(1);

/// Lock a mutex, carrying on with the data if another thread panicked while holding it: every
/// critical section here leaves the data consistent between statements that can panic.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Open connections, and whether the server is shutting down (one lock for both: see module doc).
/// `T` is a second handle to each open connection's socket, to shut it down from outside.
#[derive(Debug)]
struct Registry<T = TcpStream> {
    closing: bool,
    streams: BTreeMap<u64, T>,
}

impl<T> Default for Registry<T> {
    fn default() -> Self {
        Registry {
            closing: false,
            streams: BTreeMap::new(),
        }
    }
}

impl<T> Registry<T> {
    /// Record connection `conn`, unless the server is closing (then the caller drops it).
    fn register(&mut self, conn: u64, stream: T) -> Result<(), T> {
        if self.closing {
            return Err(stream);
        }
        self.streams.insert(conn, stream);
        Ok(())
    }

    /// Mark the server closing; returns the open connections to shut down, or `None` if it
    /// was already closing.
    fn close(&mut self) -> Option<impl Iterator<Item = &T>> {
        if self.closing {
            return None;
        }
        self.closing = true;
        Some(self.streams.values())
    }
}

/// State shared by the accept, connection and janitor threads.
struct Shared<S: ShareStore> {
    server: Mutex<StorageServer<S>>,
    registry: Mutex<Registry>,
    accepted: AtomicU64,
    /// Dropping the sender wakes the janitor for good.
    janitor_stop: Mutex<Option<mpsc::Sender<()>>>,
}

/// What a [`ServerHandle`] needs from the threads' shared state, without its store type.
trait Control: Send + Sync {
    fn accepted(&self) -> u64;
    /// Close the registry and every connection, stop the janitor, wake the accept thread.
    fn stop(&self, local_addr: SocketAddr);
}

impl<S: ShareStore + Send> Control for Shared<S> {
    fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    fn stop(&self, local_addr: SocketAddr) {
        {
            let mut reg = lock(&self.registry);
            let Some(open) = reg.close() else {
                return;
            };
            for s in open {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
        lock(&self.janitor_stop).take();
        // Wake the blocked accept(); it sees `closing` and returns.
        let _ = TcpStream::connect_timeout(&wake_addr(local_addr), Duration::from_secs(1));
    }
}

/// A running storage server; dropping it shuts the server down.
pub struct ServerHandle {
    local_addr: SocketAddr,
    control: Arc<dyn Control>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("local_addr", &self.local_addr)
            .field("running", &!self.threads.is_empty())
            .finish()
    }
}

impl ServerHandle {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Connections accepted since the server started.
    pub fn connections_accepted(&self) -> u64 {
        self.control.accepted()
    }

    /// Stop accepting, close every connection (their unfinished uploads are aborted), and join
    /// every thread. Idempotent.
    pub fn shutdown(&mut self) {
        self.control.stop(self.local_addr);
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                tracing::error!(addr = %self.local_addr, "a storage server thread panicked");
            }
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Serve `server` on `listener` until the returned handle is shut down or dropped.
///
/// Requests are answered in order per connection; every connection's unfinished uploads are
/// aborted when it ends; uploads idle past the server's timeout are aborted by a janitor thread.
///
/// # Panics
/// If the OS refuses to start the accept or janitor thread (connection threads that cannot
/// start only cost their connection).
pub fn serve<S: ShareStore + Send + 'static>(
    listener: TcpListener,
    server: StorageServer<S>,
) -> ServerHandle {
    let local_addr = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
    let (janitor_stop, janitor_rx) = mpsc::channel::<()>();
    let shared = Arc::new(Shared {
        server: Mutex::new(server),
        registry: Mutex::new(Registry::default()),
        accepted: AtomicU64::new(0),
        janitor_stop: Mutex::new(Some(janitor_stop)),
    });

    let accept_shared = Arc::clone(&shared);
    let accept_thread = std::thread::Builder::new()
        .name(format!("lafs-accept-{local_addr}"))
        .spawn(move || accept_loop(listener, accept_shared))
        .expect("spawn accept thread");
    let janitor_shared = Arc::clone(&shared);
    let janitor_thread = std::thread::Builder::new()
        .name(format!("lafs-janitor-{local_addr}"))
        .spawn(move || janitor(janitor_shared, janitor_rx))
        .expect("spawn janitor thread");

    ServerHandle {
        local_addr,
        control: shared,
        threads: vec![accept_thread, janitor_thread],
    }
}

/// Where to connect to reach our own listener (an unspecified bind address means loopback).
fn wake_addr(addr: SocketAddr) -> SocketAddr {
    let mut a = addr;
    if a.ip().is_unspecified() {
        a.set_ip(match a {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    a
}

fn accept_loop<S: ShareStore + Send + 'static>(listener: TcpListener, shared: Arc<Shared<S>>) {
    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    let mut next_conn = 0u64;
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) => {
                if lock(&shared.registry).closing {
                    break;
                }
                tracing::warn!(error = %e, "accept failed");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let conn = next_conn;
        next_conn += 1;
        {
            let mut reg = lock(&shared.registry);
            if reg.closing {
                break;
            }
            match stream.try_clone() {
                Ok(s) => {
                    if reg.register(conn, s).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot register connection");
                    continue;
                }
            };
        }
        shared.accepted.fetch_add(1, Ordering::Relaxed);
        let conn_shared = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name(format!("lafs-conn-{conn}"))
            .spawn(move || {
                serve_connection(&conn_shared, ConnectionId(conn), stream);
                lock(&conn_shared.registry).streams.remove(&conn);
                let result = lock(&conn_shared.server).handle_disconnect(ConnectionId(conn));
                if let Err(e) = result {
                    tracing::warn!(conn, error = %e, "aborting a closed connection's uploads failed");
                }
            });
        match spawned {
            Ok(h) => workers.push(h),
            Err(e) => {
                tracing::error!(error = %e, "cannot spawn a connection thread");
                if let Some(s) = lock(&shared.registry).streams.remove(&conn) {
                    let _ = s.shutdown(Shutdown::Both);
                }
            }
        }
        workers.retain(|h| !h.is_finished());
    }
    drop(listener);
    for h in workers {
        let _ = h.join();
    }
}

/// Read frames and answer each as soon as it is handled, until the peer hangs up, the stream
/// fails, or framing is lost.
fn serve_connection<S: ShareStore>(shared: &Shared<S>, conn: ConnectionId, mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut frames = ConnectionFrames::new();
    let mut chunks = Chunks::new();
    let answer = |request| {
        let pending = lock(&shared.server).answer(clock::now(), conn, request);
        // Outside the lock: requests of other connections go on while this one waits for its
        // changes' sync, and the sync they need next covers all of theirs at once.
        pending.wait()
    };
    while let Some(bytes) = chunks.next(&mut stream) {
        frames.push(bytes);
        loop {
            match frames.next_reply(answer) {
                Ok(Some(reply)) if stream.write_all(&reply).is_ok() => {}
                Ok(Some(_)) => return,
                Ok(None) => break,
                Err(why) => return tracing::debug!(conn = conn.0, %why, "closing"),
            }
        }
    }
}

/// Abort idle uploads when the server's timer says so, until shutdown.
fn janitor<S: ShareStore>(shared: Arc<Shared<S>>, stop: mpsc::Receiver<()>) {
    loop {
        let wait = lock(&shared.server).janitor_sleep(clock::now(), JANITOR_MAX_SLEEP);
        match stop.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        if let Err(e) = lock(&shared.server).handle_timeout(clock::now()) {
            tracing::warn!(error = %e, "aborting idle uploads failed");
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::sync::{Arc as LoomArc, AtomicBool};

    /// A socket handle that records being shut down.
    #[derive(Debug)]
    struct FakeStream(LoomArc<AtomicBool>);

    /// The accept thread registering a connection races shutdown: the connection is either
    /// refused (the accept thread drops it) or shut down by the stop, never left open.
    #[test]
    fn loom_registry_register_races_close() {
        loom::model(|| {
            let registry = LoomArc::new(Mutex::new(Registry::<FakeStream>::default()));
            let shut = LoomArc::new(AtomicBool::new(false));
            let accept = {
                let registry = LoomArc::clone(&registry);
                let shut = LoomArc::clone(&shut);
                loom::thread::spawn(move || {
                    lock(&registry)
                        .register(0, FakeStream(LoomArc::clone(&shut)))
                        .is_ok()
                })
            };
            if let Some(open) = lock(&registry).close() {
                for s in open {
                    s.0.store(true, Ordering::SeqCst);
                }
            }
            let registered = accept.join().expect("accept");
            assert_eq!(
                registered,
                shut.load(Ordering::SeqCst),
                "a registered connection is shut down by the stop; a refused one never was"
            );
            assert!(lock(&registry).close().is_none(), "stop is idempotent");
        });
    }
}
