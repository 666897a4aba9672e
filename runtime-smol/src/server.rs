//! A storage server as one future: [`Server::run`] accepts connections and answers their
//! requests until the future is dropped (or its task cancelled).
//!
//! The future carries its own small executor for the connection tasks and the janitor (which
//! aborts idle uploads), so it needs nothing from the program around it: `.await` it, spawn it
//! on any executor, or `block_on` it on a thread of its own. Dropping it closes the listener
//! and every connection at once, which is what a crashed server looks like to its clients.
//!
//! Concurrency model: the [`StorageServer`] sits behind one mutex, held only while
//! `handle_request` runs (never across an await), so connections are answered one request at a
//! time, in order per connection, exactly as in lafs-runtime-std. Store calls run on the thread
//! polling the future; a disk store's deferred sync (its durability ticket) is waited for on
//! smol's blocking pool, outside the lock, before the answer is written.

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use async_io::{Async, Timer};
use lafs_core::server::{ConnectionId, StorageServer};
use lafs_core::server_frames::{encode_response, ConnectionFrames};
use lafs_core::store::ShareStore;
use lafs_core::wire::{Request, Response};
use smol::io::AsyncWriteExt;
use smol::Executor;

use crate::clock;
use crate::connection::Chunks;
use crate::sync::{lock, Arc, Mutex};

/// Longest the janitor sleeps between checks, so a new upload's idle deadline is noticed
/// within this time.
const JANITOR_MAX_SLEEP: Duration = Duration::from_secs(1);

/// A storage server bound to a listening socket, ready to [`run`](Server::run).
#[derive(Debug)]
pub struct Server<S: ShareStore> {
    listener: Async<TcpListener>,
    state: Arc<Mutex<StorageServer<S>>>,
}

impl<S: ShareStore + Send + 'static> Server<S> {
    /// Listen on `addr` (e.g. `127.0.0.1:0`).
    pub fn bind(addr: SocketAddr, server: StorageServer<S>) -> std::io::Result<Server<S>> {
        Self::from_listener(TcpListener::bind(addr)?, server)
    }

    /// Serve on a listener the caller bound (it is switched to non-blocking mode).
    pub fn from_listener(
        listener: TcpListener,
        server: StorageServer<S>,
    ) -> std::io::Result<Server<S>> {
        Ok(Server {
            listener: Async::new(listener)?,
            state: Arc::new(Mutex::new(server)),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.get_ref().local_addr()
    }

    /// Accept and serve connections until this future is dropped. Returns only if accepting
    /// fails for good (a transient failure such as running out of file descriptors is logged
    /// and retried).
    pub async fn run(self) -> std::io::Result<()> {
        let ex = Executor::new();
        let Server { listener, state } = self;
        ex.spawn(janitor(Arc::clone(&state))).detach();
        ex.run(async {
            let mut next_conn = 0u64;
            loop {
                // Not `Async::accept`: this future is polled whenever any connection's task
                // wakes the executor, and that would try an `accept` (and re-arm the listener)
                // each time; waiting for readiness first costs nothing on such a poll.
                let stream = match listener.get_ref().accept() {
                    Ok((stream, _)) => Async::new(stream),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => match listener.readable().await {
                        Ok(()) => continue,
                        Err(e) => Err(e),
                    },
                    Err(e) => Err(e),
                };
                let stream = match stream {
                    Ok(stream) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        Timer::after(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let conn = ConnectionId(next_conn);
                next_conn += 1;
                let state = Arc::clone(&state);
                ex.spawn(async move {
                    serve_connection(&state, conn, stream).await;
                    if let Err(e) = lock(&state).handle_disconnect(conn) {
                        tracing::warn!(conn = conn.0, error = %e, "aborting a closed connection's uploads failed");
                    }
                })
                .detach();
            }
        })
        .await
    }
}

/// Read frames and answer each as soon as it is handled (never holding more than one reply),
/// until the peer hangs up, the stream fails, or framing is lost.
async fn serve_connection<S: ShareStore>(
    state: &Mutex<StorageServer<S>>,
    conn: ConnectionId,
    stream: Async<TcpStream>,
) {
    let _ = stream.get_ref().set_nodelay(true);
    let mut frames = ConnectionFrames::new();
    let mut chunks = Chunks::new();
    let mut io: &Async<TcpStream> = &stream;
    while let Some(bytes) = chunks.next(&stream).await {
        frames.push(bytes);
        loop {
            let (id, request) = match frames.next_request() {
                Ok(Some(next)) => next,
                Ok(None) => break,
                Err(why) => return tracing::debug!(conn = conn.0, %why, "closing"),
            };
            let response = match request {
                Ok(request) => answer(state, conn, request).await,
                Err(malformed) => malformed,
            };
            if io.write_all(&encode_response(id, &response)).await.is_err() {
                return;
            }
        }
    }
}

/// Handle one request under the lock; then, outside it and off the executor, wait until its
/// changes are durable if the store defers its syncs (group commit, see lafs-runtime-std's
/// server), so other connections go on meanwhile.
async fn answer<S: ShareStore>(
    state: &Mutex<StorageServer<S>>,
    conn: ConnectionId,
    request: Request,
) -> Response {
    let mut pending = lock(state).answer(clock::now(), conn, request);
    let waited = match pending.ticket() {
        Some(ticket) => smol::unblock(move || ticket.wait()).await,
        None => Ok(()),
    };
    pending.after_wait(waited)
}

/// Abort idle uploads when the server's timer says so.
async fn janitor<S: ShareStore>(state: Arc<Mutex<StorageServer<S>>>) {
    loop {
        let wait = lock(&state).janitor_sleep(clock::now(), JANITOR_MAX_SLEEP);
        Timer::after(wait).await;
        if let Err(e) = lock(&state).handle_timeout(clock::now()) {
            tracing::warn!(error = %e, "aborting idle uploads failed");
        }
    }
}
