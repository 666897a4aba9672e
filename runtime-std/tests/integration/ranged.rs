//! Ranged downloads (`GridClient::download_range`) through real TCP sockets on 127.0.0.1: ten
//! storage servers started with `serve`, one `GridClient`.
//!
//! Run with `--nocapture` to see round trips and bytes for a 1-byte range of a 10 MB file.

use std::net::TcpListener;
use std::time::Duration;

use lafs_core::cap::Cap;
use lafs_core::immutable::download::DownloadError;
use lafs_core::placement::ServerId;
use lafs_core::server::{ServerConfig, StorageServer};
use lafs_core::store::MemoryShareStore;
use lafs_core::time::Duration as CoreDuration;
use lafs_runtime_std::net::{
    serve, ClientConfig, ClientError, DownloadReport, GridClient, ServerEntry, ServerHandle, Stage,
    TransferProgress,
};

struct TestGrid {
    _servers: Vec<ServerHandle>,
    entries: Vec<ServerEntry>,
}

fn server_id(i: usize) -> ServerId {
    let mut id = [0u8; 32];
    id[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
    id[8] = 0x3c;
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
        TestGrid {
            _servers: servers,
            entries,
        }
    }

    fn client(&self) -> GridClient {
        let mut config = ClientConfig::new(
            b"convergence secret for ranges...".to_vec(),
            b"lease secret for ranges.........".to_vec(),
        );
        config.upload.request_timeout = CoreDuration::from_secs(20);
        config.download.request_timeout = CoreDuration::from_secs(20);
        config.connect_timeout = Duration::from_secs(2);
        GridClient::new(self.entries.clone(), config)
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

fn range(
    client: &GridClient,
    cap: &Cap,
    offset: u64,
    length: u64,
) -> Result<(Vec<u8>, DownloadReport, Vec<TransferProgress>), ClientError> {
    let mut out = Vec::new();
    let mut progress = Vec::new();
    let report = client.download_range(cap, offset, length, &mut out, &mut |p| progress.push(p))?;
    assert_eq!(
        report.size,
        out.len() as u64,
        "the report counts bytes written"
    );
    Ok((out, report, progress))
}

#[test]
fn ranges_of_a_ten_megabyte_file_over_tcp() {
    let grid = TestGrid::start(10);
    let client = grid.client();
    let size = 10_000_000usize;
    let original = data(size, 1);
    let cap = client
        .upload_bytes(&original, &mut |_| {})
        .expect("upload")
        .cap;

    let mut whole = Vec::new();
    let whole_report = client
        .download(&cap, &mut whole, &mut |_| {})
        .expect("download");
    assert!(whole == original);

    let mid = size as u64 / 2;
    let (one, report, progress) = range(&client, &cap, mid, 1).expect("1-byte range");
    assert_eq!(one, original[mid as usize..mid as usize + 1]);
    println!(
        "10 MB file over TCP: whole download {} round trips, {} bytes received, {} requests; \
         1 byte at {mid}: {} round trip(s), {} bytes received, {} requests",
        whole_report.stats.round_trips,
        whole_report.stats.bytes_received,
        whole_report.stats.messages_sent,
        report.stats.round_trips,
        report.stats.bytes_received,
        report.stats.messages_sent,
    );
    assert_eq!(
        report.stats.round_trips, 1,
        "as segment 0 of a whole download"
    );
    assert_eq!(
        report.stats.messages_sent, 3,
        "one request to each of k servers"
    );
    // One 1 MiB segment's k blocks (~1 MiB in all) plus headers and hash trees, not the file.
    assert!(
        report.stats.bytes_received < 1_100_000,
        "{}",
        report.stats.bytes_received
    );
    assert!(report.stats.bytes_received * 8 < whole_report.stats.bytes_received);
    assert_eq!(
        progress.last(),
        Some(&TransferProgress {
            stage: Stage::Downloading,
            done: 1,
            total: 1
        })
    );

    let seg = 1u64 << 20;
    let seg = seg + (3 - seg % 3) % 3; // segments are a multiple of k long
    for (offset, length) in [
        (0, seg),
        (seg, seg),
        (3 * seg - 100, 200),
        (2 * seg + 7, 3 * seg),
        (9 * seg, size as u64 - 9 * seg),
        (size as u64 - 1, 1),
        (0, size as u64),
    ] {
        let (got, report, _) = range(&client, &cap, offset, length).expect("range");
        let end = (offset + length) as usize;
        assert!(
            got == original[offset as usize..end],
            "({offset}, {length})"
        );
        let segments = (end as u64 - 1) / seg - offset / seg + 1;
        assert_eq!(
            u64::from(report.stats.round_trips),
            segments,
            "({offset}, {length})"
        );
    }

    // A range running past the end is cut; one starting past it is recognisably unsatisfiable.
    let (tail, report, _) = range(&client, &cap, size as u64 - 10, 1000).expect("past the end");
    assert!(tail == original[size - 10..]);
    assert_eq!(report.size, 10);
    for (offset, length) in [(size as u64, 1), (size as u64 + 5, 10)] {
        match range(&client, &cap, offset, length) {
            Err(ClientError::Download(DownloadError::RangeNotSatisfiable {
                offset: o,
                size: s,
            })) => {
                assert_eq!((o, s), (offset, size as u64));
            }
            other => panic!("({offset}, {length}): {:?}", other.map(|r| r.1)),
        }
    }
    let (empty, report, _) = range(&client, &cap, 5, 0).expect("empty range");
    assert!(empty.is_empty());
    assert_eq!(report.stats.messages_sent, 0);
}

#[test]
fn lit_caps_are_sliced() {
    let grid = TestGrid::start(3);
    let client = grid.client();
    let original = b"a small file that fits in its cap".to_vec();
    let cap = client
        .upload_bytes(&original, &mut |_| {})
        .expect("upload")
        .cap;
    assert!(matches!(cap, Cap::Lit { .. }));
    let len = original.len() as u64;
    for (offset, length) in [(0, len), (2, 5), (len - 1, 1), (10, 1000), (len, 0)] {
        let (got, report, _) = range(&client, &cap, offset, length).expect("LIT range");
        let end = (offset + length).min(len) as usize;
        assert_eq!(got, original[offset as usize..end]);
        assert_eq!(report.stats.messages_sent, 0);
    }
    assert!(matches!(
        range(&client, &cap, len, 1),
        Err(ClientError::Download(
            DownloadError::RangeNotSatisfiable { .. }
        ))
    ));
}

#[test]
fn mutable_caps_are_refused() {
    let grid = TestGrid::start(1);
    let client = grid.client();
    let cap = Cap::SskRead {
        readkey: [1; 16],
        fingerprint: [2; 32],
    };
    assert!(matches!(
        range(&client, &cap, 0, 1),
        Err(ClientError::NotImmutableFile(_))
    ));
}
