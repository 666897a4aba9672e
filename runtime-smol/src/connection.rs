//! One client connection to one storage server, shared by every operation of a
//! [`GridClient`](crate::GridClient).
//!
//! Shared between tasks: the socket (an `Async<TcpStream>`, read only by the connection's reader
//! task), the write lock (a frame is written whole while holding it, so frames of different
//! operations never interleave), and lafs-core's [`Routes`] behind a mutex, which hands each
//! answer to the operation waiting for it (every use is one call under the lock, so the
//! invariant lafs-core states for it holds; lafs-runtime-std model-checks the same pattern).
//! The reader task runs on smol's global executor, so a connection keeps delivering answers
//! whichever executor (or `block_on`) polls the operations.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use async_io::{Async, Timer};
use lafs_core::client::{Answers, ClientConfig, OpId, Routes, ServerLink};
use lafs_core::op::Transmit;
use lafs_core::placement::ServerId;
use lafs_core::wire::encode_request;
use smol::channel::Sender;
use smol::future::FutureExt;
use smol::io::AsyncWriteExt;
use std::ops::DerefMut;

use crate::sync::{lock, Arc, Mutex};

pub(crate) use lafs_core::client::Input;

type SharedRoutes = Arc<Mutex<Routes<Sender<Input>>>>;

/// A live (or dead, see [`ServerLink::is_closed`]) connection to one server.
#[derive(Debug)]
pub(crate) struct Connection {
    addr: SocketAddr,
    stream: Arc<Async<TcpStream>>,
    routes: SharedRoutes,
    write_lock: smol::lock::Mutex<()>,
    write_timeout: Duration,
}

impl ServerLink for Connection {
    type Sink = Sender<Input>;
    fn routes(&self) -> impl DerefMut<Target = Routes<Self::Sink>> + '_ {
        lock(&self.routes)
    }
}

impl Connection {
    /// Connect to `server` at `addr` (giving up after the connect timeout) and start its reader.
    pub(crate) async fn open(
        server: ServerId,
        addr: SocketAddr,
        config: &ClientConfig,
    ) -> std::io::Result<Arc<Connection>> {
        let connect = Async::<TcpStream>::connect(addr);
        let stream = connect.or(timed_out(config.connect_timeout)).await?;
        stream.get_ref().set_nodelay(true)?;
        let stream = Arc::new(stream);
        let routes = SharedRoutes::default();
        let reader = read_loop(server, addr, Arc::clone(&stream), Arc::clone(&routes));
        smol::spawn(reader).detach();
        Ok(Arc::new(Connection {
            addr,
            stream,
            routes,
            write_lock: smol::lock::Mutex::new(()),
            write_timeout: config.write_timeout(),
        }))
    }

    /// Send `t` for operation `op`; the answer arrives on `tx`. Returns the frame's size, or
    /// `None` if the connection was already closed (the caller reports the loss itself). A
    /// failed or stuck write closes the connection, so `tx` then gets `Lost`.
    pub(crate) async fn send(&self, op: OpId, t: &Transmit, tx: &Sender<Input>) -> Option<usize> {
        let wire_id = self.routes().register(op, t.id, tx.clone())?;
        let frame = encode_request(wire_id, &t.request);
        let _guard = self.write_lock.lock().await;
        // Most frames fit in the socket's buffer: write at once, arming no timeout (arming a
        // timer wakes the thread that polls the reactor), and await only for the rest.
        let mut direct: &TcpStream = self.stream.get_ref();
        let written = match direct.write(&frame) {
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                Ok(0)
            }
            other => other,
        };
        let rest = async {
            let mut writer: &Async<TcpStream> = &self.stream;
            writer.write_all(&frame[written?..]).await
        };
        if let Err(e) = rest.or(timed_out(self.write_timeout)).await {
            tracing::debug!(addr = %self.addr, error = %e, "write failed; closing connection");
            self.shutdown();
        }
        Some(frame.len())
    }

    /// Close the socket; the reader task then tells every operation with requests in flight.
    pub(crate) fn shutdown(&self) {
        let _ = self.stream.get_ref().shutdown(Shutdown::Both);
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// An error once `limit` has passed (raced against the I/O it bounds).
async fn timed_out<T>(limit: Duration) -> std::io::Result<T> {
    Timer::after(limit).await;
    Err(ErrorKind::TimedOut.into())
}

/// Read answers and hand each to its operation until the socket ends or framing is lost; then
/// close the routes and tell the operations still waiting.
async fn read_loop(
    server: ServerId,
    addr: SocketAddr,
    stream: Arc<Async<TcpStream>>,
    routes: SharedRoutes,
) {
    let mut answers = Answers::new(server);
    let mut chunks = Chunks::new();
    // The operation may have ended meanwhile; then nobody listens.
    let deliver = |tx: Sender<Input>, input| drop(tx.try_send(input));
    while let Some(bytes) = chunks.next(&stream).await {
        let complete = |wire| lock(&routes).complete(wire);
        if let Err(why) = answers.route(bytes, complete, deliver) {
            tracing::warn!(%addr, %why, "closing the connection");
            break;
        }
    }
    let _ = stream.get_ref().shutdown(Shutdown::Both);
    answers.lost(lock(&routes).close(), deliver);
}

/// A socket read in chunks of up to 256 KiB.
#[derive(Debug)]
pub(crate) struct Chunks {
    buf: Vec<u8>,
    /// The last read took all the socket had.
    drained: bool,
}

impl Chunks {
    pub(crate) fn new() -> Chunks {
        Chunks {
            buf: vec![0u8; 256 * 1024],
            drained: false,
        }
    }

    /// The next bytes from `io`, or `None` once it has ended or failed. After a read that
    /// drained the socket this waits for readiness first, sparing the read that would only
    /// find nothing yet.
    pub(crate) async fn next(&mut self, io: &Async<TcpStream>) -> Option<&[u8]> {
        loop {
            if self.drained {
                io.readable().await.ok()?;
            }
            match io.get_ref().read(&mut self.buf) {
                Ok(0) => return None,
                Ok(n) => {
                    self.drained = n < self.buf.len();
                    return Some(&self.buf[..n]);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => self.drained = true,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
    }
}
