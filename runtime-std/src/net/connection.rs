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
use std::thread::JoinHandle;
use std::time::Duration;

use lafs_core::client::Routes;
use lafs_core::op::RequestId;
use lafs_core::placement::ServerId;
use lafs_core::wire::{encode_request, Frame, FrameDecoder, Request};

use super::server::lock;
use crate::sync::{Arc, Mutex};

/// Socket read buffer per connection.
const READ_CHUNK: usize = 256 * 1024;

pub(crate) use lafs_core::client::Input;

/// The completion hand-off of one connection: lafs-core's [`Routes`] (wire ids, loss fan-out)
/// behind the lock its sender threads and its reader thread share; the loom tests below check
/// the module doc's invariant. `T` is what reaches an operation (its channel's sender).
#[derive(Debug)]
pub(crate) struct RouteTable<T> {
    inner: Mutex<Routes<T>>,
}

impl<T> RouteTable<T> {
    pub(crate) fn new() -> Self {
        RouteTable {
            inner: Mutex::new(Routes::new()),
        }
    }

    /// Register request `id` of operation `op`: its wire id, or `None` once closed.
    pub(crate) fn register(&self, op: u64, id: RequestId, sink: T) -> Option<u64> {
        lock(&self.inner).register(op, id, sink)
    }

    /// The answer to `wire_id` arrived: the operation's id for it and where it goes.
    pub(crate) fn complete(&self, wire_id: u64) -> Option<(RequestId, T)> {
        lock(&self.inner)
            .complete(wire_id)
            .map(|(_, id, sink)| (id, sink))
    }

    /// Refuse later registrations and take what is in flight: one sink per operation.
    pub(crate) fn close(&self) -> Vec<T> {
        let orphans = lock(&self.inner).close();
        orphans.into_iter().map(|(_, sink)| sink).collect()
    }

    pub(crate) fn is_closed(&self) -> bool {
        lock(&self.inner).is_closed()
    }

    /// Operation `op` has ended: drop its routes (late answers are dropped).
    pub(crate) fn forget_op(&self, op: u64) {
        lock(&self.inner).forget_op(op);
    }
}

/// Something a connection table holds: it knows its server and whether it is closed.
pub(crate) trait Live {
    fn server(&self) -> ServerId;
    fn is_closed(&self) -> bool;
}

/// Put a freshly opened connection into a client's table unless a live one to the same server
/// is there already. Returns the connection to use and the one to close (the loser, or the dead
/// connection it replaced), which the caller closes after the table lock is released.
pub(crate) fn install<C: Live>(
    table: &Mutex<BTreeMap<ServerId, Arc<C>>>,
    fresh: Arc<C>,
) -> (Arc<C>, Option<Arc<C>>) {
    let mut table = lock(table);
    match table.get(&fresh.server()) {
        Some(existing) if !existing.is_closed() => (Arc::clone(existing), Some(fresh)),
        _ => {
            let old = table.insert(fresh.server(), Arc::clone(&fresh));
            (fresh, old)
        }
    }
}

/// A live (or dead, see [`Connection::is_closed`]) connection to one server.
#[derive(Debug)]
pub(crate) struct Connection {
    server: ServerId,
    addr: SocketAddr,
    writer: Mutex<TcpStream>,
    /// A handle used only to shut the socket down, so closing never waits for a blocked write.
    control: TcpStream,
    routes: RouteTable<Sender<Input>>,
    reader: Mutex<Option<JoinHandle<()>>>,
}

/// Why a request could not be handed to the socket.
#[derive(Debug)]
pub(crate) struct SendFailed;

impl Live for Connection {
    fn server(&self) -> ServerId {
        self.server
    }
    fn is_closed(&self) -> bool {
        Connection::is_closed(self)
    }
}

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
            routes: RouteTable::new(),
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
        self.routes.is_closed()
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
        let wire_id = self.routes.register(op, id, tx.clone()).ok_or(SendFailed)?;
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
        self.routes.forget_op(op);
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
                        if let Some((op_id, tx)) = self.routes.complete(id) {
                            // The operation may have ended meanwhile; then nobody listens.
                            let _ = tx.send(Input::Response {
                                server: self.server,
                                id: op_id,
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
        // One notice per operation is enough: it loses every request to this server at once.
        for tx in self.routes.close() {
            let _ = tx.send(Input::Lost {
                server: self.server,
            });
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::sync::{AtomicBool, AtomicU64, Ordering};

    /// Two operations sending while the reader thread closes the connection: every request is
    /// decided exactly once (a loss notice, or a refused registration the sender reports).
    #[test]
    fn loom_routes_register_races_close() {
        loom::model(|| {
            let table = Arc::new(RouteTable::<Arc<AtomicU64>>::new());
            let outcomes: Vec<Arc<AtomicU64>> =
                (0..2).map(|_| Arc::new(AtomicU64::new(0))).collect();
            let sender = {
                let table = Arc::clone(&table);
                let outcomes = outcomes.clone();
                loom::thread::spawn(move || {
                    for (op, outcome) in outcomes.iter().enumerate() {
                        if table.register(op as u64, 0, Arc::clone(outcome)).is_none() {
                            outcome.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                })
            };
            for notice in table.close() {
                notice.fetch_add(1, Ordering::SeqCst);
            }
            sender.join().expect("sender");
            for o in &outcomes {
                assert_eq!(o.load(Ordering::SeqCst), 1, "decided exactly once");
            }
        });
    }

    /// The reader delivering an answer races the operation ending: the answer goes out at most
    /// once and nothing is left behind.
    #[test]
    fn loom_routes_complete_races_forget() {
        loom::model(|| {
            let table = Arc::new(RouteTable::<u8>::new());
            let wire = table.register(1, 0, 9).expect("open");
            let reader = {
                let table = Arc::clone(&table);
                loom::thread::spawn(move || table.complete(wire))
            };
            table.forget_op(1);
            let delivered = reader.join().expect("reader");
            assert!(delivered.is_none() || delivered == Some((0, 9)));
            assert_eq!(table.complete(wire), None);
            assert!(table.close().is_empty());
        });
    }

    #[derive(Debug)]
    struct FakeConn {
        server: ServerId,
        closed: AtomicBool,
    }

    impl Live for FakeConn {
        fn server(&self) -> ServerId {
            self.server
        }
        fn is_closed(&self) -> bool {
            self.closed.load(Ordering::SeqCst)
        }
    }

    /// Two operations open a connection to the same server at once: both end up using the same
    /// one, the other is handed back for closing, and the table holds the winner.
    #[test]
    fn loom_connection_table_install_race() {
        loom::model(|| {
            let table = Arc::new(Mutex::new(BTreeMap::new()));
            let fresh = || {
                Arc::new(FakeConn {
                    server: ServerId([1; 32]),
                    closed: AtomicBool::new(false),
                })
            };
            let other = {
                let table = Arc::clone(&table);
                let conn = fresh();
                loom::thread::spawn(move || install(&table, conn))
            };
            let (mine, my_loser) = install(&table, fresh());
            let (theirs, their_loser) = other.join().expect("other");
            assert!(Arc::ptr_eq(&mine, &theirs), "one connection per server");
            let losers: Vec<_> = my_loser.into_iter().chain(their_loser).collect();
            assert_eq!(losers.len(), 1, "exactly one connection to close");
            assert!(!Arc::ptr_eq(&losers[0], &mine));
            let held = lock(&table).get(&ServerId([1; 32])).cloned().expect("held");
            assert!(Arc::ptr_eq(&held, &mine));
        });
    }
}
