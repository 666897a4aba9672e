//! Embedding lafs-core in a program that already has its own event loop: an upload, a
//! download and a directory edit driven by nothing but lafs-core, std's non-blocking sockets and a hand-written
//! poll loop. No lafs runtime runs on the client side; lafs-runtime-std only starts the five
//! storage servers the client talks to.
//!
//! The whole embedding is lafs-core's `client::Driven` around an operation: `poll_output` says
//! what to do next (send a request, act on an event, or wait until a deadline), and the loop
//! feeds back answers (`handle_response`), broken connections (`handle_server_lost`) and
//! deadlines passed (`handle_timeout`). The drain rule is inside `poll_output`.
//!
//! Run: `cargo run -p lafs-tests --example foreign_event_loop`

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use lafs_core::cap::Cap;
use lafs_core::client::{Driven, Output, TransferStats};
use lafs_core::crypto::key_source::KeySource;
use lafs_core::dirnode::ops::{
    DirCache, DirConfig, Link, LinkEvent, LinkOptions, List, ListEvent, Mkdir, MkdirEvent,
};
use lafs_core::dirnode::ChildCap;
use lafs_core::immutable::download::{ChkFile, Download, DownloadConfig, DownloadEvent};
use lafs_core::immutable::encode::convergent_key;
use lafs_core::immutable::upload::{Upload, UploadConfig, UploadEvent};
use lafs_core::immutable::EncodingParams;
use lafs_core::mutable::layout::MutableFormat;
use lafs_core::op::ClientOp;
use lafs_core::placement::{ServerDescriptor, ServerId};
use lafs_core::server::{ServerConfig, StorageServer};
use lafs_core::store::MemoryShareStore;
use lafs_core::time::Instant;
use lafs_core::wire::{encode_request, Frame, FrameDecoder};

/// The embedding program's clock: microseconds since it started (the core only compares its
/// own instants, so any monotonic origin will do).
struct Clock(std::time::Instant);

impl Clock {
    fn now(&self) -> Instant {
        Instant(self.0.elapsed().as_micros() as u64)
    }
}

/// One non-blocking connection with its unsent bytes and undecoded input.
struct Conn {
    stream: TcpStream,
    out: Vec<u8>,
    decoder: FrameDecoder,
}

/// The program's own event loop: a table of sockets and a readiness sweep.
struct EventLoop {
    clock: Clock,
    addrs: BTreeMap<ServerId, SocketAddr>,
    conns: BTreeMap<ServerId, Conn>,
}

/// What happened to an operation during one sweep.
enum Outcome<T> {
    Running,
    Finished(T),
}

impl EventLoop {
    /// Run `op` to the end; `on_event` handles each event and says when the op is finished.
    fn run<O: ClientOp, T>(
        &mut self,
        op: &mut O,
        mut on_event: impl FnMut(&mut O, Instant, O::Event) -> Outcome<T>,
    ) -> (T, TransferStats) {
        let mut driven = Driven::new(op);
        loop {
            let deadline = match driven.poll_output() {
                Output::Transmit(t) => {
                    // One operation at a time here, so its own request ids can be the wire ids.
                    let frame = encode_request(t.id, &t.request);
                    match self.conn(t.to) {
                        Some(c) => {
                            c.out.extend_from_slice(&frame);
                            driven.handle_sent(t.to, frame.len());
                        }
                        None => driven.handle_server_lost(self.clock.now(), t.to),
                    }
                    continue;
                }
                Output::Event(ev) => {
                    let now = self.clock.now();
                    if let Outcome::Finished(r) = on_event(&mut **driven.op_mut(), now, ev) {
                        return (r, driven.stats());
                    }
                    continue;
                }
                Output::Wait(deadline) => deadline,
                Output::Stalled => panic!("the operation stalled (a lafs-core bug)"),
            };
            // Sweep the sockets; feed answers and breakages to the operation.
            let progressed = self.sweep(&mut driven);
            if deadline.is_some_and(|t| t <= self.clock.now()) {
                driven.handle_timeout(self.clock.now());
            } else if !progressed {
                // Nothing ready: wait a little, never past the operation's timer.
                let wait = deadline.map_or(Duration::from_millis(1), |t| {
                    Duration::from_micros(t.saturating_since(self.clock.now()).as_micros())
                        .min(Duration::from_millis(1))
                });
                std::thread::sleep(wait);
            }
        }
    }

    /// The connection to `server`, opening it on first use.
    fn conn(&mut self, server: ServerId) -> Option<&mut Conn> {
        if !self.conns.contains_key(&server) {
            let addr = self.addrs.get(&server)?;
            let stream = TcpStream::connect_timeout(addr, Duration::from_secs(2)).ok()?;
            stream.set_nodelay(true).ok()?;
            stream.set_nonblocking(true).ok()?;
            self.conns.insert(
                server,
                Conn {
                    stream,
                    out: Vec::new(),
                    decoder: FrameDecoder::new(),
                },
            );
        }
        self.conns.get_mut(&server)
    }

    /// Write what each socket will take, read what each has; returns whether anything moved.
    fn sweep<O: ClientOp>(&mut self, op: &mut Driven<O>) -> bool {
        let mut progressed = false;
        let mut lost = Vec::new();
        let mut buf = vec![0u8; 256 * 1024];
        for (server, c) in &mut self.conns {
            while !c.out.is_empty() {
                match c.stream.write(&c.out) {
                    Ok(0) => break,
                    Ok(n) => {
                        c.out.drain(..n);
                        progressed = true;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {
                        lost.push(*server);
                        break;
                    }
                }
            }
            loop {
                match c.stream.read(&mut buf) {
                    Ok(0) => {
                        lost.push(*server);
                        break;
                    }
                    Ok(n) => {
                        c.decoder.push(&buf[..n]);
                        progressed = true;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {
                        lost.push(*server);
                        break;
                    }
                }
            }
            loop {
                let before = c.decoder.buffered();
                match c.decoder.pop() {
                    Ok(Some(Frame::Response { id, response })) => {
                        let bytes = before - c.decoder.buffered();
                        op.handle_response(self.clock.now(), *server, id, response, bytes)
                    }
                    Ok(None) => break,
                    Ok(Some(Frame::Request { .. })) | Err(_) => {
                        lost.push(*server);
                        break;
                    }
                }
            }
        }
        for server in lost {
            self.conns.remove(&server);
            op.handle_server_lost(self.clock.now(), server);
            progressed = true;
        }
        progressed
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Five storage servers (threads of lafs-runtime-std) on loopback.
    let mut servers = Vec::new();
    let mut addrs = BTreeMap::new();
    let mut descriptors = Vec::new();
    for i in 0..5u8 {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let handle = lafs_runtime_std::net::serve(
            listener,
            StorageServer::new(
                MemoryShareStore::new(1 << 30, 1 << 30),
                ServerConfig::default(),
            ),
        );
        let id = ServerId([i + 1; 32]);
        addrs.insert(id, handle.local_addr());
        descriptors.push(ServerDescriptor {
            id,
            permutation_seed: id.0.to_vec(),
        });
        servers.push(handle);
    }
    let mut event_loop = EventLoop {
        clock: Clock(std::time::Instant::now()),
        addrs,
        conns: BTreeMap::new(),
    };

    // Upload 1 MB, 3-of-5, every server holding a share.
    let params = EncodingParams {
        k: 3,
        happy: 5,
        n: 5,
        max_segment_size: 128 * 1024,
    };
    let file: Vec<u8> = (0..1_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let key = convergent_key(
        &file,
        b"embedder's secret",
        params.k,
        params.n,
        params.max_segment_size,
    );
    let config = UploadConfig {
        params,
        ..UploadConfig::default()
    };
    let now = event_loop.clock.now();
    let mut upload = Upload::new(
        now,
        config,
        key,
        file.len() as u64,
        &descriptors,
        b"lease secret",
    );
    let (cap, up_stats) = event_loop.run(&mut upload, |op, now, ev| match ev {
        UploadEvent::NeedSegment { offset, length, .. } => {
            op.provide_segment(now, &file[offset as usize..(offset + length) as usize]);
            Outcome::Running
        }
        UploadEvent::Done(result) => Outcome::Finished(Ok(result.cap)),
        UploadEvent::Failed(e) => Outcome::Finished(Err(e)),
        _ => Outcome::Running,
    });
    let cap: Cap = cap?;
    println!(
        "uploaded {} bytes in {} round trips: {cap}",
        file.len(),
        up_stats.round_trips
    );

    // Download it again over the same sockets.
    let chk = ChkFile::from_cap(&cap).ok_or("not a CHK cap")?;
    let config = DownloadConfig {
        segment_size_guess: params.max_segment_size,
        ..DownloadConfig::default()
    };
    let mut download = Download::new(event_loop.clock.now(), config, chk, &descriptors);
    let mut got = Vec::new();
    let (done, down_stats) = event_loop.run(&mut download, |_, _, ev| match ev {
        DownloadEvent::Data { bytes, .. } => {
            got.extend_from_slice(&bytes);
            Outcome::Running
        }
        DownloadEvent::Done { .. } => Outcome::Finished(Ok(())),
        DownloadEvent::Failed(e) => Outcome::Finished(Err(e)),
        _ => Outcome::Running,
    });
    done?;
    if got != file {
        return Err("downloaded bytes differ from the upload".into());
    }
    println!(
        "downloaded and verified {} bytes in {} round trips over {} sockets of our own",
        got.len(),
        down_stats.round_trips,
        event_loop.conns.len()
    );

    // A directory edit through the same loop: make a directory (the operation asks for an RSA
    // key, which the embedder supplies) and link the file into it, then list it.
    let mut keys = lafs_tests::keys::fixture_keys();
    let dir_config = DirConfig::new(descriptors.clone(), b"lease secret".to_vec());
    let mut cache = DirCache::new(1 << 20);
    let mut mkdir = Mkdir::new(
        event_loop.clock.now(),
        dir_config.clone(),
        [1; 32],
        MutableFormat::Sdmf,
    );
    let (dir, _) = event_loop.run(&mut mkdir, |op, now, ev| match ev {
        MkdirEvent::NeedKey => {
            op.provide_key(now, keys.next_key().expect("a fixture key"));
            Outcome::Running
        }
        MkdirEvent::Done(cap) => Outcome::Finished(Ok(cap)),
        MkdirEvent::Failed(e) => Outcome::Finished(Err(e)),
        MkdirEvent::Progress(_) => Outcome::Running,
    });
    let dir = dir?;
    mkdir.return_to(&mut cache);
    let mut link = Link::new(
        event_loop.clock.now(),
        dir_config.clone(),
        [2; 32],
        &mut cache,
        dir.clone(),
        vec!["file.bin".to_string()],
        ChildCap::Known(cap.clone()),
        LinkOptions::default(),
    );
    let (linked, link_stats) = event_loop.run(&mut link, |_, _, ev| match ev {
        LinkEvent::Done(_) => Outcome::Finished(Ok(())),
        LinkEvent::Failed(e) => Outcome::Finished(Err(e)),
        LinkEvent::NeedKey | LinkEvent::Progress(_) => Outcome::Running,
    });
    linked?;
    link.return_to(&mut cache);
    let mut list = List::new(event_loop.clock.now(), dir_config, [3; 32], &mut cache, dir);
    let (listing, _) = event_loop.run(&mut list, |_, _, ev| match ev {
        ListEvent::Done(d) => Outcome::Finished(Ok(d)),
        ListEvent::Failed(e) => Outcome::Finished(Err(e)),
        ListEvent::Progress(_) => Outcome::Running,
    });
    let listing = listing?;
    match listing.get("file.bin").map(|c| &c.cap) {
        Some(ChildCap::Known(linked_cap)) if *linked_cap == cap => {}
        _ => return Err("the directory does not link the uploaded file".into()),
    }
    println!(
        "made a directory and linked the file in {} round trip(s) (remembered map)",
        link_stats.round_trips
    );
    drop(servers);
    Ok(())
}
