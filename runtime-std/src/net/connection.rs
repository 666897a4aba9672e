//! One client connection to one storage server, shared by every operation of a
//! [`GridClient`](super::GridClient).
//!
//! Shared structures (the whole of the client's cross-thread state, kept small for later model
//! checking):
//! - `writer: Mutex<TcpStream>`: a frame is written whole under this lock, so frames of
//!   different operations never interleave.
//! - `routes: Mutex<Routes>`: the wire-level request ids in flight on this connection, each
//!   mapped to the operation's channel and the operation's own [`RequestId`], plus the
//!   `closed` flag. The reader thread removes a route when its response arrives and delivers
//!   the response on the route's channel.
//!
//! Invariant: a route is only inserted while `closed` is false, and the reader thread sets
//! `closed` and takes every remaining route in the same critical section before telling their
//! operations the server is lost. So every request ever sent gets exactly one of: its response,
//! or a `Lost` notice to its operation (or its operation has gone and dropped its routes).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use lafs_core::op::RequestId;
use lafs_core::placement::ServerId;
use lafs_core::wire::{encode_request, Frame, FrameDecoder, Request, Response};

use super::server::lock;

/// Socket read buffer per connection.
const READ_CHUNK: usize = 256 * 1024;

/// What a connection's reader thread tells an operation.
#[derive(Debug)]
pub(crate) enum Input {
    /// The answer to the operation's request `id`; `wire_bytes` is the frame's size.
    Response {
        server: ServerId,
        id: RequestId,
        response: Response,
        wire_bytes: usize,
    },
    /// The connection broke with requests of this operation in flight.
    Lost { server: ServerId },
}

/// Where the response to one wire-level request goes.
#[derive(Debug)]
struct Route {
    /// The operation that sent it (to drop its routes when it ends).
    op: u64,
    id: RequestId,
    tx: Sender<Input>,
}

#[derive(Debug, Default)]
struct Routes {
    /// Next wire-level request id on this connection (unique per connection, never reused).
    next_wire_id: u64,
    pending: BTreeMap<u64, Route>,
    closed: bool,
}

/// A live (or dead, see [`Connection::is_closed`]) connection to one server.
#[derive(Debug)]
pub(crate) struct Connection {
    server: ServerId,
    addr: SocketAddr,
    writer: Mutex<TcpStream>,
    /// A handle used only to shut the socket down, so closing never waits for a blocked write.
    control: TcpStream,
    routes: Mutex<Routes>,
    reader: Mutex<Option<JoinHandle<()>>>,
}

/// Why a request could not be handed to the socket.
#[derive(Debug)]
pub(crate) struct SendFailed;

impl Connection {
    /// Connect to `server` at `addr` and start its reader thread.
    pub(crate) fn open(
        server: ServerId,
        addr: SocketAddr,
        connect_timeout: Duration,
        write_timeout: Duration,
    ) -> std::io::Result<Arc<Connection>> {
        let stream = TcpStream::connect_timeout(&addr, connect_timeout)?;
        stream.set_nodelay(true)?;
        if !write_timeout.is_zero() {
            stream.set_write_timeout(Some(write_timeout))?;
        }
        let read_half = stream.try_clone()?;
        let control = stream.try_clone()?;
        let conn = Arc::new(Connection {
            server,
            addr,
            writer: Mutex::new(stream),
            control,
            routes: Mutex::new(Routes::default()),
            reader: Mutex::new(None),
        });
        let for_reader = Arc::clone(&conn);
        let handle = std::thread::Builder::new()
            .name(format!("lafs-client-{addr}"))
            .spawn(move || for_reader.read_loop(read_half))?;
        *lock(&conn.reader) = Some(handle);
        Ok(conn)
    }

    pub(crate) fn is_closed(&self) -> bool {
        lock(&self.routes).closed
    }

    /// Send `request` for operation `op` (its id `id`); the answer arrives on `tx`. Returns the
    /// frame's size. A failed write closes the connection, so `tx` then gets `Lost`; a
    /// connection already closed returns `SendFailed` and the caller reports the loss itself.
    pub(crate) fn send(
        &self,
        op: u64,
        id: RequestId,
        request: &Request,
        tx: &Sender<Input>,
    ) -> Result<usize, SendFailed> {
        let wire_id = {
            let mut routes = lock(&self.routes);
            if routes.closed {
                return Err(SendFailed);
            }
            let wire_id = routes.next_wire_id;
            routes.next_wire_id += 1;
            routes.pending.insert(
                wire_id,
                Route {
                    op,
                    id,
                    tx: tx.clone(),
                },
            );
            wire_id
        };
        let frame = encode_request(wire_id, request);
        let written = lock(&self.writer).write_all(&frame);
        if let Err(e) = written {
            tracing::debug!(addr = %self.addr, error = %e, "write failed; closing connection");
            self.shutdown();
        }
        Ok(frame.len())
    }

    /// Forget the routes of operation `op` (it has ended; late answers are dropped).
    pub(crate) fn forget_op(&self, op: u64) {
        lock(&self.routes).pending.retain(|_, r| r.op != op);
    }

    /// Close the socket; the reader thread then notifies every operation with requests in
    /// flight.
    pub(crate) fn shutdown(&self) {
        let _ = self.control.shutdown(Shutdown::Both);
    }

    /// Close and wait for the reader thread.
    pub(crate) fn close_and_join(&self) {
        self.shutdown();
        let handle = lock(&self.reader).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }

    fn read_loop(&self, mut stream: TcpStream) {
        let mut decoder = FrameDecoder::new();
        let mut buf = vec![0u8; READ_CHUNK];
        'read: loop {
            let n = match stream.read(&mut buf) {
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
                        let route = lock(&self.routes).pending.remove(&id);
                        if let Some(route) = route {
                            // The operation may have ended meanwhile; then nobody listens.
                            let _ = route.tx.send(Input::Response {
                                server: self.server,
                                id: route.id,
                                response,
                                wire_bytes: before - decoder.buffered(),
                            });
                        }
                    }
                    Ok(Some(Frame::Request { .. })) => {
                        tracing::warn!(addr = %self.addr, "server sent a request frame; closing");
                        break 'read;
                    }
                    Err(e) => {
                        // A response we cannot read leaves its operation waiting forever, so any
                        // decoding error (fatal or not) ends the connection.
                        tracing::warn!(addr = %self.addr, error = %e, "bad frame from server; closing");
                        break 'read;
                    }
                }
            }
        }
        let _ = stream.shutdown(Shutdown::Both);
        let orphans = {
            let mut routes = lock(&self.routes);
            routes.closed = true;
            std::mem::take(&mut routes.pending)
        };
        // One notice per operation is enough: it loses every request to this server at once.
        let mut told = std::collections::BTreeSet::new();
        for route in orphans.into_values() {
            if told.insert(route.op) {
                let _ = route.tx.send(Input::Lost {
                    server: self.server,
                });
            }
        }
    }
}
