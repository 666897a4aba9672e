//! One client connection to one storage server, shared by every operation of a
//! [`GridClient`](super::GridClient).
//!
//! Shared structures (the whole of the client's cross-thread state, kept small for model
//! checking):
//! - `writer: Mutex<TcpStream>`: a frame is written whole under this lock, so frames of
//!   different operations never interleave.
//! - `routes: Mutex<Routes>`: lafs-core's [`Routes`], the wire-level request ids in flight on
//!   this connection, each mapped to the operation's channel and the operation's own
//!   [`RequestId`](lafs_core::op::RequestId), plus the `closed` flag. The reader thread takes a
//!   route out when its answer arrives ([`Answers`]).
//!
//! Every use of `routes` is one call under its lock, so lafs-core's invariant holds here: a
//! request ever sent gets exactly one of its response, a `Lost` notice to its operation, or a
//! refused registration (the sender reports the loss), or its operation has gone and dropped
//! its routes. The loom tests below check it, and the client's connection table, under this
//! crate's locks.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::mpsc::Sender;
use std::thread::JoinHandle;

use lafs_core::client::{Answers, ClientConfig, OpId, Routes, ServerLink};
use lafs_core::op::Transmit;
use lafs_core::placement::ServerId;
use lafs_core::wire::encode_request;
use std::ops::DerefMut;

use super::server::lock;
use crate::sync::{Arc, Mutex};

pub(crate) use lafs_core::client::Input;

/// A live (or dead, see [`ServerLink::is_closed`]) connection to one server.
#[derive(Debug)]
pub(crate) struct Connection {
    server: ServerId,
    addr: SocketAddr,
    writer: Mutex<TcpStream>,
    /// A handle used only to shut the socket down, so closing never waits for a blocked write.
    control: TcpStream,
    routes: Mutex<Routes<Sender<Input>>>,
    reader: Mutex<Option<JoinHandle<()>>>,
}

impl ServerLink for Connection {
    type Sink = Sender<Input>;
    fn routes(&self) -> impl DerefMut<Target = Routes<Self::Sink>> + '_ {
        lock(&self.routes)
    }
}

impl Connection {
    /// Connect to `server` at `addr` and start its reader thread.
    pub(crate) fn open(
        server: ServerId,
        addr: SocketAddr,
        config: &ClientConfig,
    ) -> std::io::Result<Arc<Connection>> {
        let stream = TcpStream::connect_timeout(&addr, config.connect_timeout)?;
        stream.set_nodelay(true)?;
        let write_timeout = config.write_timeout();
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
            routes: Mutex::new(Routes::new()),
            reader: Mutex::new(None),
        });
        let for_reader = Arc::clone(&conn);
        let handle = std::thread::Builder::new()
            .name(format!("lafs-client-{addr}"))
            .spawn(move || for_reader.read_loop(read_half))?;
        *lock(&conn.reader) = Some(handle);
        Ok(conn)
    }

    /// Send `t` for operation `op`; the answer arrives on `tx`. Returns the frame's size, or
    /// `None` if the connection was already closed (the caller reports the loss itself). A
    /// failed write closes the connection, so `tx` then gets `Lost`.
    pub(crate) fn send(&self, op: OpId, t: &Transmit, tx: &Sender<Input>) -> Option<usize> {
        let wire_id = self.routes().register(op, t.id, tx.clone())?;
        let frame = encode_request(wire_id, &t.request);
        let written = lock(&self.writer).write_all(&frame);
        if let Err(e) = written {
            tracing::debug!(addr = %self.addr, error = %e, "write failed; closing connection");
            self.shutdown();
        }
        Some(frame.len())
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
        let mut answers = Answers::new(self.server);
        let mut chunks = Chunks::new();
        // The operation may have ended meanwhile; then nobody listens.
        let deliver = |tx: Sender<Input>, input| drop(tx.send(input));
        while let Some(bytes) = chunks.next(&mut stream) {
            let complete = |wire| lock(&self.routes).complete(wire);
            if let Err(why) = answers.route(bytes, complete, deliver) {
                tracing::warn!(addr = %self.addr, %why, "closing the connection");
                break;
            }
        }
        let _ = stream.shutdown(Shutdown::Both);
        answers.lost(lock(&self.routes).close(), deliver);
    }
}

/// A socket read in chunks of up to 256 KiB.
#[derive(Debug)]
pub(crate) struct Chunks {
    buf: Vec<u8>,
}

impl Chunks {
    pub(crate) fn new() -> Chunks {
        Chunks {
            buf: vec![0u8; 256 * 1024],
        }
    }

    /// The next bytes from `stream`, or `None` once it has ended or failed.
    pub(crate) fn next(&mut self, stream: &mut TcpStream) -> Option<&[u8]> {
        loop {
            match stream.read(&mut self.buf) {
                Ok(0) => return None,
                Ok(n) => return Some(&self.buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use lafs_core::client::ConnectionTable;

    use super::*;
    use crate::sync::{AtomicU64, Ordering};

    /// Two operations sending while the reader thread closes the connection: every request is
    /// decided exactly once (a loss notice, or a refused registration the sender reports).
    #[test]
    fn loom_routes_register_races_close() {
        loom::model(|| {
            let routes = Arc::new(Mutex::new(Routes::<Arc<AtomicU64>>::new()));
            let outcomes: Vec<Arc<AtomicU64>> =
                (0..2).map(|_| Arc::new(AtomicU64::new(0))).collect();
            let sender = {
                let routes = Arc::clone(&routes);
                let outcomes = outcomes.clone();
                loom::thread::spawn(move || {
                    for (op, outcome) in outcomes.iter().enumerate() {
                        let sink = Arc::clone(outcome);
                        if lock(&routes).register(op as u64, 0, sink).is_none() {
                            outcome.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                })
            };
            let orphans = lock(&routes).close();
            for (_, notice) in orphans {
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
            let routes = Arc::new(Mutex::new(Routes::<u8>::new()));
            let wire = lock(&routes).register(1, 0, 9).expect("open");
            let reader = {
                let routes = Arc::clone(&routes);
                loom::thread::spawn(move || lock(&routes).complete(wire))
            };
            lock(&routes).forget_op(1);
            let delivered = reader.join().expect("reader");
            assert!(delivered.is_none() || delivered == Some((1, 0, 9)));
            assert_eq!(lock(&routes).complete(wire), None);
            assert!(lock(&routes).close().is_empty());
        });
    }

    #[derive(Debug)]
    struct FakeConn {
        routes: Mutex<Routes<()>>,
    }

    impl ServerLink for FakeConn {
        type Sink = ();
        fn routes(&self) -> impl DerefMut<Target = Routes<()>> + '_ {
            lock(&self.routes)
        }
    }

    /// Two operations open a connection to the same server at once: both end up using the same
    /// one, the other is handed back for closing, and the table holds the winner.
    #[test]
    fn loom_connection_table_install_race() {
        loom::model(|| {
            let table = Arc::new(Mutex::new(ConnectionTable::new()));
            let fresh = || {
                Arc::new(FakeConn {
                    routes: Mutex::new(Routes::new()),
                })
            };
            let other = {
                let table = Arc::clone(&table);
                let conn = fresh();
                loom::thread::spawn(move || lock(&table).install(ServerId([1; 32]), conn))
            };
            let (mine, my_loser) = lock(&table).install(ServerId([1; 32]), fresh());
            let (theirs, their_loser) = other.join().expect("other");
            assert!(Arc::ptr_eq(&mine, &theirs), "one connection per server");
            let losers: Vec<_> = my_loser.into_iter().chain(their_loser).collect();
            assert_eq!(losers.len(), 1, "exactly one connection to close");
            assert!(!Arc::ptr_eq(&losers[0], &mine));
            let held = lock(&table).live(&ServerId([1; 32])).expect("held");
            assert!(Arc::ptr_eq(&held, &mine));
        });
    }
}
