//! Uploads and downloads through real TCP sockets on 127.0.0.1: ten storage servers started with
//! `serve`, one `GridClient`.
//!
//! Run with `--nocapture` to see the measured latency and throughput.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use lafs_core::cap::Cap;
use lafs_core::placement::{permuted_order, ServerDescriptor, ServerId};
use lafs_core::server::{ServerConfig, StorageServer};
use lafs_core::store::MemoryShareStore;
use lafs_core::time::Duration as CoreDuration;
use lafs_core::wire::{
    encode_request, ErrorKind, Frame, FrameDecoder, Request, Response, PROTOCOL_VERSION,
};
use lafs_runtime_std::net::{
    serve, ClientConfig, ClientError, GridClient, ServerEntry, ServerHandle, Stage,
    TransferProgress,
};

struct TestGrid {
    servers: Vec<ServerHandle>,
    entries: Vec<ServerEntry>,
}

fn server_id(i: usize) -> ServerId {
    let mut id = [0u8; 32];
    id[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
    id[8] = 0x5a;
    ServerId(id)
}

impl TestGrid {
    fn start(n: usize) -> TestGrid {
        let mut servers = Vec::new();
        let mut entries = Vec::new();
        for i in 0..n {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let server = StorageServer::new(
                MemoryShareStore::new(1 << 40, 1 << 40),
                ServerConfig::default(),
            );
            let handle = serve(listener, server);
            entries.push(ServerEntry {
                id: server_id(i),
                addr: handle.local_addr(),
                permutation_seed: server_id(i).0.to_vec(),
            });
            servers.push(handle);
        }
        TestGrid { servers, entries }
    }

    fn client(&self) -> GridClient {
        let mut config = ClientConfig::new(
            b"convergence secret for net tests".to_vec(),
            b"lease secret for net tests......".to_vec(),
        );
        // Bounded waits, so a bug shows up as a failure rather than a hang.
        config.upload.request_timeout = CoreDuration::from_secs(20);
        config.download.request_timeout = CoreDuration::from_secs(20);
        config.connect_timeout = Duration::from_secs(2);
        GridClient::new(self.entries.clone(), config)
    }

    fn accepted(&self) -> u64 {
        self.servers.iter().map(|s| s.connections_accepted()).sum()
    }
}

/// Deterministic pseudo-random bytes (xorshift64).
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn no_progress() -> impl FnMut(TransferProgress) {
    |_| {}
}

fn download(client: &GridClient, cap: &Cap) -> Vec<u8> {
    let mut out = Vec::new();
    client
        .download(cap, &mut out, &mut no_progress())
        .expect("download");
    out
}

#[test]
fn files_of_every_size_class_round_trip_through_sockets() {
    let grid = TestGrid::start(10);
    let client = grid.client();
    for (len, seed) in [(20, 1), (1000, 2), ((1 << 20) + 1, 3), (3 << 20, 4)] {
        let original = data(len, seed);
        let report = client
            .upload_bytes(&original, &mut no_progress())
            .expect("upload");
        assert_eq!(report.size, len as u64);
        if len > 55 {
            assert!(matches!(report.cap, Cap::ChkRead { .. }));
            assert_eq!(report.happiness, 10);
        }
        assert_eq!(download(&client, &report.cap), original, "{len} bytes");
    }
}

#[test]
fn one_segment_upload_and_download_each_take_one_round_trip() {
    let grid = TestGrid::start(10);
    let client = grid.client();
    let original = data(1000, 7);
    let up = client
        .upload_bytes(&original, &mut no_progress())
        .expect("upload");
    assert_eq!(up.stats.round_trips, 1);
    assert_eq!(up.stats.messages_sent, 10, "one message per server");
    assert!(up.stats.bytes_sent > 1000 && up.stats.bytes_received > 0);

    let mut out = Vec::new();
    let down = client
        .download(&up.cap, &mut out, &mut no_progress())
        .expect("download");
    assert_eq!(out, original);
    assert_eq!(down.stats.round_trips, 1);
    assert_eq!(down.size, 1000);
    assert!(down.stats.bytes_received > 1000 / 3);

    // Uploading it again finds the shares already there: still one round trip.
    let again = client
        .upload_bytes(&original, &mut no_progress())
        .expect("re-upload");
    assert_eq!(again.cap, up.cap);
    assert_eq!(again.stats.round_trips, 1);
}

#[test]
fn download_still_works_with_three_of_ten_servers_gone() {
    let mut grid = TestGrid::start(10);
    let client = grid.client();
    let original = data((1 << 20) + 1, 11);
    let report = client
        .upload_bytes(&original, &mut no_progress())
        .expect("upload");
    for server in &mut grid.servers[..3] {
        server.shutdown();
    }
    assert_eq!(download(&client, &report.cap), original);
    // A fresh client, which has to discover that the dead servers refuse connections.
    assert_eq!(download(&grid.client(), &report.cap), original);
}

#[test]
fn a_server_shut_down_mid_upload_is_tolerated() {
    let mut grid = TestGrid::start(10);
    let client = grid.client();
    let original = data(8 << 20, 12);
    let victim_id = grid.entries[4].id;
    let mut victim = Some(grid.servers.remove(4));
    let mut progress = |p: TransferProgress| {
        // After two of eight segments went out: the victim holds unfinished shares.
        if p.stage == Stage::Uploading && p.done >= 2 << 20 {
            if let Some(mut server) = victim.take() {
                server.shutdown();
            }
        }
    };
    let report = client
        .upload_bytes(&original, &mut progress)
        .expect("upload with one server lost");
    assert!(
        victim.is_none(),
        "the server was shut down during the upload"
    );
    assert!(!report.shares.contains_key(&victim_id));
    assert_eq!(report.happiness, 9);
    assert!(report.server_problems.iter().all(|(s, _)| *s == victim_id));
    assert!(!report.server_problems.is_empty());
    assert_eq!(download(&client, &report.cap), original);
}

#[test]
fn many_sequential_operations_reuse_one_connection_per_server() {
    let grid = TestGrid::start(10);
    let client = grid.client();
    for i in 0..20 {
        let original = data(1000 + i, 100 + i as u64);
        let report = client
            .upload_bytes(&original, &mut no_progress())
            .expect("upload");
        assert_eq!(download(&client, &report.cap), original);
    }
    assert_eq!(client.connections_opened(), 10);
    assert_eq!(grid.accepted(), 10);
}

#[test]
fn concurrent_operations_share_connections_without_mixing_answers() {
    let grid = TestGrid::start(10);
    let client = grid.client();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let client = &client;
            s.spawn(move || {
                for i in 0..5u64 {
                    let original = data(2000 + (t * 10 + i) as usize * 100, 1000 + t * 10 + i);
                    let report = client
                        .upload_bytes(&original, &mut no_progress())
                        .expect("upload");
                    assert_eq!(download(client, &report.cap), original);
                }
            });
        }
    });
    assert!(grid.accepted() >= 10);
}

#[test]
fn an_unreachable_grid_is_reported_with_its_addresses() {
    // Ports that were just bound and released: nothing listens there.
    let entries: Vec<ServerEntry> = (0..10)
        .map(|i| {
            let addr = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("bind");
            ServerEntry {
                id: server_id(i),
                addr,
                permutation_seed: server_id(i).0.to_vec(),
            }
        })
        .collect();
    let client = GridClient::new(
        entries.clone(),
        ClientConfig::new(b"c".to_vec(), b"l".to_vec()),
    );
    let err = client
        .upload_bytes(&data(5000, 1), &mut no_progress())
        .expect_err("nothing to upload to");
    let ClientError::Unreachable(list) = &err else {
        panic!("expected Unreachable, got {err}");
    };
    assert_eq!(list.len(), 10);
    let text = err.to_string();
    for e in &entries {
        assert!(text.contains(&e.addr.to_string()), "{text}");
    }
}

#[test]
fn server_answers_a_malformed_request_and_closes_on_lost_framing() {
    let grid = TestGrid::start(1);
    let mut sock = TcpStream::connect(grid.entries[0].addr).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    // A well-formed frame whose payload is an unknown message tag.
    let mut frame = vec![PROTOCOL_VERSION, 0];
    frame.extend_from_slice(&42u64.to_be_bytes());
    frame.extend_from_slice(&1u32.to_be_bytes());
    frame.push(0xee);
    sock.write_all(&frame).expect("write");
    // Then a good request on the same connection.
    sock.write_all(&encode_request(43, &Request::GetVersion))
        .expect("write");
    let mut decoder = FrameDecoder::new();
    let mut frames = Vec::new();
    let mut buf = [0u8; 4096];
    while frames.len() < 2 {
        let n = sock.read(&mut buf).expect("read");
        assert!(n > 0, "server closed early");
        decoder.push(&buf[..n]);
        while let Some(f) = decoder.pop().expect("frame") {
            frames.push(f);
        }
    }
    assert!(matches!(
        &frames[0],
        Frame::Response {
            id: 42,
            response: Response::Error {
                kind: ErrorKind::BadRequest,
                ..
            }
        }
    ));
    assert!(matches!(
        &frames[1],
        Frame::Response {
            id: 43,
            response: Response::Version { .. }
        }
    ));
    // A wrong protocol version loses the framing: the server hangs up.
    sock.write_all(&[PROTOCOL_VERSION + 1; 14]).expect("write");
    let n = sock.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "connection closed");
}

fn percentile(mut xs: Vec<Duration>, p: f64) -> Duration {
    xs.sort();
    xs[((xs.len() - 1) as f64 * p).round() as usize]
}

/// Measurements for the record (printed, not asserted beyond correctness).
#[test]
fn measure_latency_and_throughput() {
    let grid = TestGrid::start(10);
    let client = grid.client();
    // Warm up the connections so the numbers measure operations, not TCP handshakes.
    let warm = client
        .upload_bytes(&data(1000, 9999), &mut no_progress())
        .expect("upload");
    download(&client, &warm.cap);

    let runs = 50;
    let mut ups = Vec::new();
    let mut downs = Vec::new();
    for i in 0..runs {
        let original = data(1000, 5000 + i);
        let t = Instant::now();
        let report = client
            .upload_bytes(&original, &mut no_progress())
            .expect("upload");
        ups.push(t.elapsed());
        let t = Instant::now();
        let got = download(&client, &report.cap);
        downs.push(t.elapsed());
        assert_eq!(got, original);
    }

    let big = data(20 << 20, 77);
    let t = Instant::now();
    let report = client
        .upload_bytes(&big, &mut no_progress())
        .expect("upload 20 MiB");
    let up_time = t.elapsed();
    let t = Instant::now();
    let got = download(&client, &report.cap);
    let down_time = t.elapsed();
    assert_eq!(got, big);

    let mib_s = |d: Duration| 20.0 / d.as_secs_f64();
    println!(
        "1 kB over 10 local servers, {runs} runs: upload p50 {:?} (p90 {:?}), download p50 {:?} (p90 {:?})",
        percentile(ups.clone(), 0.5),
        percentile(ups, 0.9),
        percentile(downs.clone(), 0.5),
        percentile(downs, 0.9),
    );
    println!(
        "20 MiB: upload {:?} ({:.1} MiB/s, {} round trips, {} messages, {} bytes sent), download {:?} ({:.1} MiB/s)",
        up_time,
        mib_s(up_time),
        report.stats.round_trips,
        report.stats.messages_sent,
        report.stats.bytes_sent,
        down_time,
        mib_s(down_time),
    );
}

/// A "server" that accepts connections and never answers, until dropped.
struct SilentServer {
    addr: std::net::SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SilentServer {
    fn start() -> SilentServer {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => held.push(s),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        SilentServer {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn a_server_that_never_answers_times_out_and_is_worked_around() {
    let mut grid = TestGrid::start(9);
    let silent = SilentServer::start();
    grid.entries.push(ServerEntry {
        id: server_id(9),
        addr: silent.addr,
        permutation_seed: server_id(9).0.to_vec(),
    });
    let mut config = ClientConfig::new(b"c".to_vec(), b"l".to_vec());
    config.upload.request_timeout = CoreDuration::from_millis(300);
    config.download.request_timeout = CoreDuration::from_millis(300);
    let client = GridClient::new(grid.entries.clone(), config);

    let original = data(5000, 31);
    let t = Instant::now();
    let report = client
        .upload_bytes(&original, &mut no_progress())
        .expect("upload");
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "waited for the timeout"
    );
    assert!(!report.shares.contains_key(&server_id(9)));
    assert_eq!(report.happiness, 9);
    assert!(
        report
            .server_problems
            .iter()
            .any(|(s, p)| *s == server_id(9) && p.contains("timed out")),
        "{:?}",
        report.server_problems
    );
    assert_eq!(download(&client, &report.cap), original);
}

#[test]
fn upload_from_a_file_on_disk_reports_progress() {
    let grid = TestGrid::start(10);
    let client = grid.client();
    let original = data((2 << 20) + 5, 41);
    let path = std::env::temp_dir().join(format!("lafs-net-test-{}.bin", std::process::id()));
    std::fs::write(&path, &original).expect("write temp file");
    let mut seen = Vec::new();
    let report = client.upload_path(&path, &mut |p| seen.push(p));
    let _ = std::fs::remove_file(&path);
    let report = report.expect("upload");
    let last_hash = seen
        .iter()
        .rfind(|p| p.stage == Stage::Hashing)
        .expect("hashing");
    let last_up = seen
        .iter()
        .rfind(|p| p.stage == Stage::Uploading)
        .expect("uploading");
    assert_eq!(
        (last_hash.done, last_up.done),
        (original.len() as u64, original.len() as u64)
    );
    assert_eq!(download(&client, &report.cap), original);

    let missing = client.upload_path(&path, &mut no_progress());
    assert!(
        matches!(missing, Err(ClientError::Io { .. })),
        "{missing:?}"
    );
}

#[test]
fn the_janitor_aborts_uploads_left_idle() {
    use lafs_core::wire::{LeaseSecrets, ShareWrite, ShareWriteOutcome};
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let config = ServerConfig {
        upload_idle_timeout: CoreDuration::from_millis(100),
        ..ServerConfig::default()
    };
    let _server = serve(
        listener.try_clone().expect("clone"),
        StorageServer::new(MemoryShareStore::new(1 << 30, 1 << 30), config),
    );
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let write = |allocate: bool| Request::ImmutableWrite {
        storage_index: [9; 16],
        lease: LeaseSecrets {
            renew: [1; 32],
            cancel: [2; 32],
        },
        allocated_size: 100,
        total_shares: 10,
        writes: vec![ShareWrite {
            shnum: 0,
            allocate,
            offset: 0,
            data: vec![7; 10],
            close: false,
        }],
    };
    let ask = |sock: &mut TcpStream, id: u64, req: &Request| -> Response {
        sock.write_all(&encode_request(id, req)).expect("write");
        let mut decoder = FrameDecoder::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = sock.read(&mut buf).expect("read");
            assert!(n > 0, "server closed");
            decoder.push(&buf[..n]);
            if let Some(Frame::Response { response, .. }) = decoder.pop().expect("frame") {
                return response;
            }
        }
    };
    let outcome = |r: Response| match r {
        Response::ImmutableWrite { results, .. } => results[0].1.clone(),
        other => panic!("unexpected {other:?}"),
    };
    let mut first = TcpStream::connect(addr).expect("connect");
    let mut second = TcpStream::connect(addr).expect("connect");
    assert_eq!(
        outcome(ask(&mut first, 1, &write(true))),
        ShareWriteOutcome::Written { committed: false }
    );
    assert!(matches!(
        outcome(ask(&mut second, 1, &write(true))),
        ShareWriteOutcome::Refused(_)
    ));
    // The first connection stays open but idle; the janitor (waking at least every second)
    // aborts its upload, so the share can be allocated again.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        std::thread::sleep(Duration::from_millis(100));
        match outcome(ask(&mut second, 2, &write(true))) {
            ShareWriteOutcome::Written { .. } => break,
            other => assert!(Instant::now() < deadline, "still {other:?}"),
        }
    }
    drop(first);
}

#[test]
fn servers_shut_down_mid_download_are_replaced() {
    let mut grid = TestGrid::start(10);
    let client = grid.client();
    let original = data(8 << 20, 51);
    let report = client
        .upload_bytes(&original, &mut no_progress())
        .expect("upload");
    // Shut down the three servers first on the file's ring (the ones the download reads from)
    // after two segments arrived; the download must carry on from the other seven.
    let descriptors: Vec<ServerDescriptor> = grid
        .entries
        .iter()
        .map(|e| ServerDescriptor {
            id: e.id,
            permutation_seed: e.permutation_seed.clone(),
        })
        .collect();
    let ring = permuted_order(&report.cap.storage_index().expect("CHK"), &descriptors);
    let mut victims = Vec::new();
    for id in &ring[..3] {
        let i = grid
            .entries
            .iter()
            .position(|e| e.id == *id)
            .expect("known");
        grid.entries.remove(i);
        victims.push(grid.servers.remove(i));
    }
    let mut out = Vec::new();
    let mut progress = |p: TransferProgress| {
        if p.done >= 2 << 20 {
            for v in &mut victims {
                v.shutdown();
            }
        }
    };
    let down = client
        .download(&report.cap, &mut out, &mut progress)
        .expect("download with half the grid gone");
    assert_eq!(out, original);
    let lost: BTreeSet<ServerId> = down.server_problems.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        lost,
        ring[..3].iter().copied().collect(),
        "{:?}",
        down.server_problems
    );
}
