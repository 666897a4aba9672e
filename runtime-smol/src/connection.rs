//! One client connection to one storage server, shared by every operation of a
//! [`GridClient`](crate::GridClient).
//!
//! Shared between tasks: the socket (an `Async<TcpStream>`, read only by the connection's reader
//! task), the write lock (a frame is written whole while holding it, so frames of different
//! operations never interleave), and the [`RouteTable`] that hands each answer to the operation
//! waiting for it. The reader task runs on smol's global executor, so a connection keeps
//! delivering answers whichever executor (or `block_on`) polls the operations.

use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use async_io::{Async, Timer};
use lafs_core::op::RequestId;
use lafs_core::placement::ServerId;
use lafs_core::wire::{encode_request, Frame, FrameDecoder, Request};
use smol::channel::Sender;
use smol::future::FutureExt;
use smol::io::{AsyncReadExt, AsyncWriteExt};

use crate::routes::RouteTable;
use crate::sync::Arc;

/// Socket read buffer per connection.
const READ_CHUNK: usize = 256 * 1024;

pub(crate) use lafs_core::client::Input;

/// A live (or dead, see [`Connection::is_closed`]) connection to one server.
#[derive(Debug)]
pub(crate) struct Connection {
    server: ServerId,
    addr: SocketAddr,
    stream: Arc<Async<TcpStream>>,
    routes: Arc<RouteTable<Sender<Input>>>,
    write_lock: smol::lock::Mutex<()>,
    write_timeout: Duration,
}

/// The connection was closed before the request could be registered; the caller reports the
/// loss to its operation.
#[derive(Debug)]
pub(crate) struct SendFailed;

impl Connection {
    /// Connect to `server` at `addr` (giving up after `connect_timeout`) and start its reader.
    pub(crate) async fn open(
        server: ServerId,
        addr: SocketAddr,
        connect_timeout: Duration,
        write_timeout: Duration,
    ) -> std::io::Result<Arc<Connection>> {
        let connect = Async::<TcpStream>::connect(addr);
        let timeout = async {
            Timer::after(connect_timeout).await;
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connection timed out",
            ))
        };
        let stream = connect.or(timeout).await?;
        stream.get_ref().set_nodelay(true)?;
        let stream = Arc::new(stream);
        let routes = Arc::new(RouteTable::new());
        smol::spawn(read_loop(
            server,
            addr,
            Arc::clone(&stream),
            Arc::clone(&routes),
        ))
        .detach();
        Ok(Arc::new(Connection {
            server,
            addr,
            stream,
            routes,
            write_lock: smol::lock::Mutex::new(()),
            write_timeout,
        }))
    }

    pub(crate) fn server(&self) -> ServerId {
        self.server
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.routes.is_closed()
    }

    /// Send `request` for operation `op` (its id `id`); the answer arrives on `tx`. Returns the
    /// frame's size. A failed or stuck write closes the connection, so `tx` then gets `Lost`.
    pub(crate) async fn send(
        &self,
        op: u64,
        id: RequestId,
        request: &Request,
        tx: &Sender<Input>,
    ) -> Result<usize, SendFailed> {
        let wire_id = self.routes.register(op, id, tx.clone()).ok_or(SendFailed)?;
        let frame = encode_request(wire_id, request);
        let _guard = self.write_lock.lock().await;
        let write = async {
            let mut writer: &Async<TcpStream> = &self.stream;
            writer.write_all(&frame).await
        };
        let limit = self.write_timeout;
        let timeout = async {
            Timer::after(limit).await;
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "write timed out",
            ))
        };
        if let Err(e) = write.or(timeout).await {
            tracing::debug!(addr = %self.addr, error = %e, "write failed; closing connection");
            self.shutdown();
        }
        Ok(frame.len())
    }

    /// Operation `op` has ended: late answers to it are dropped.
    pub(crate) fn forget_op(&self, op: u64) {
        self.routes.forget_op(op);
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

/// Read answers and hand each to its operation until the socket ends or framing is lost; then
/// close the route table and tell the operations still waiting.
async fn read_loop(
    server: ServerId,
    addr: SocketAddr,
    stream: Arc<Async<TcpStream>>,
    routes: Arc<RouteTable<Sender<Input>>>,
) {
    let mut decoder = FrameDecoder::new();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut reader: &Async<TcpStream> = &stream;
    'read: loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        decoder.push(&buf[..n]);
        loop {
            let before = decoder.buffered();
            match decoder.pop() {
                Ok(None) => break,
                Ok(Some(Frame::Response { id, response })) => {
                    if let Some((op_id, tx)) = routes.complete(id) {
                        // The operation may have ended meanwhile; then nobody listens.
                        let _ = tx.try_send(Input::Response {
                            server,
                            id: op_id,
                            response,
                            wire_bytes: before - decoder.buffered(),
                        });
                    }
                }
                Ok(Some(Frame::Request { .. })) => {
                    tracing::warn!(%addr, "server sent a request frame; closing");
                    break 'read;
                }
                Err(e) => {
                    // An answer we cannot read would leave its operation waiting: any decoding
                    // error ends the connection.
                    tracing::warn!(%addr, error = %e, "bad frame from server; closing");
                    break 'read;
                }
            }
        }
    }
    let _ = stream.get_ref().shutdown(Shutdown::Both);
    for tx in routes.close() {
        let _ = tx.try_send(Input::Lost { server });
    }
}
