//! The immutable upload and download state machines in process: 10 in-memory storage servers,
//! no network, one thread, one file (default 100 MiB; `LAFS_BENCH_MIB` changes it). Prints a
//! table per codec. MB = 10^6 bytes.
//!
//! Run: `cargo bench -p lafs-core --bench chk_pipeline`
//!
//! Columns: key = the convergent-key pass over the plaintext; upload = encrypt, encode, hash and
//! hand every share to the servers (including the servers' own handling, timed separately as
//! `server`); download = fetch, verify, decode, decrypt and compare with the input.

// Benchmarks time themselves with the wall clock, which the core's purity lists forbid.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::time::{Duration, Instant};

use lafs_core::codec::CodecKind;
use lafs_core::crypto::convergent_key_hasher;
use lafs_core::immutable::download::{ChkFile, Download, DownloadConfig, DownloadEvent};
use lafs_core::immutable::params::effective_segment_size;
use lafs_core::immutable::upload::{Upload, UploadConfig, UploadEvent};
use lafs_core::op::ClientOp;
use lafs_core::placement::{ServerDescriptor, ServerId};
use lafs_core::server::{ConnectionId, ServerConfig, StorageServer};
use lafs_core::store::MemoryShareStore;
use lafs_core::time::Instant as CoreInstant;
use lafs_core::wire::Request;

struct Servers {
    list: Vec<(ServerId, StorageServer<MemoryShareStore>)>,
    busy: Duration,
    rounds: usize,
}

impl Servers {
    fn new(n: usize) -> Servers {
        let list = (0..n)
            .map(|i| {
                let mut id = [0u8; 32];
                id[0] = i as u8 + 1;
                let store = MemoryShareStore::new(1 << 40, 1 << 40);
                (
                    ServerId(id),
                    StorageServer::new(store, ServerConfig::default()),
                )
            })
            .collect();
        Servers {
            list,
            busy: Duration::ZERO,
            rounds: 0,
        }
    }

    fn descriptors(&self) -> Vec<ServerDescriptor> {
        self.list
            .iter()
            .map(|(id, _)| ServerDescriptor {
                id: *id,
                permutation_seed: id.0.to_vec(),
            })
            .collect()
    }

    /// Deliver everything `op` wants to send and feed the answers back.
    fn pump<O: ClientOp>(&mut self, op: &mut O) {
        let mut batch = Vec::new();
        while let Some(t) = op.poll_transmit() {
            batch.push(t);
        }
        if batch
            .iter()
            .any(|t| !matches!(t.request, Request::AdviseCorrupt { .. }))
        {
            self.rounds += 1;
        }
        for t in batch {
            let started = Instant::now();
            let server = &mut self
                .list
                .iter_mut()
                .find(|(id, _)| *id == t.to)
                .expect("known server")
                .1;
            let response = server.handle_request(CoreInstant(1), ConnectionId(0), t.request);
            self.busy += started.elapsed();
            op.handle_input(CoreInstant(1), t.to, t.id, response);
        }
    }
}

/// Deterministic pseudo-random bytes, so runs are comparable and nothing compresses (seed 1 of
/// the suites' generator: the same bytes these benches always used).
fn test_data(len: usize) -> Vec<u8> {
    lafs_core::testing::grid::test_data(len, 1)
}

fn mbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

fn main() {
    let mib: usize = std::env::var("LAFS_BENCH_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let data = test_data(mib << 20);
    println!("in-process CHK pipeline, {mib} MiB file, 3-of-10 happy 7, 1 MiB segments, 10 memory servers, 1 thread");
    println!();
    println!("| codec | key pass MB/s | upload MB/s (excl. key) | upload MB/s (incl. key) | server share of upload | download MB/s | peak held upload | peak held download | round trips up/down |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for codec in [CodecKind::Zfec, CodecKind::NovelPoly] {
        let config = UploadConfig {
            codec,
            ..UploadConfig::default()
        };
        let p = config.params;

        let started = Instant::now();
        let mut hasher = convergent_key_hasher(
            b"bench convergence secret",
            p.k,
            p.n,
            effective_segment_size(data.len() as u64, p.k, p.max_segment_size),
        );
        hasher.update(&data);
        let key = hasher.finish();
        let key_time = started.elapsed();

        let mut servers = Servers::new(10);
        let descriptors = servers.descriptors();
        let started = Instant::now();
        let mut up = Upload::new(
            CoreInstant(1),
            config,
            key,
            data.len() as u64,
            &descriptors,
            b"bench lease secret",
        );
        let mut held_up = 0;
        let cap = 'upload: loop {
            while let Some(ev) = up.poll_event() {
                match ev {
                    UploadEvent::NeedSegment { offset, length, .. } => up.provide_segment(
                        CoreInstant(1),
                        &data[offset as usize..(offset + length) as usize],
                    ),
                    UploadEvent::Done(r) => break 'upload r.cap,
                    UploadEvent::Failed(e) => panic!("upload failed: {e}"),
                    _ => {}
                }
                held_up = held_up.max(up.bytes_held());
            }
            servers.pump(&mut up);
        };
        let up_time = started.elapsed();
        let (server_busy, up_rounds) = (servers.busy, servers.rounds);
        servers.rounds = 0;

        let file = ChkFile::from_cap(&cap).expect("a CHK cap");
        let started = Instant::now();
        let mut down = Download::new(
            CoreInstant(1),
            DownloadConfig::default(),
            file,
            &descriptors,
        );
        let mut held_down = 0;
        'download: loop {
            while let Some(ev) = down.poll_event() {
                match ev {
                    DownloadEvent::Data { offset, bytes } => {
                        assert!(
                            bytes == data[offset as usize..offset as usize + bytes.len()],
                            "bytes differ"
                        );
                    }
                    DownloadEvent::Done { .. } => break 'download,
                    DownloadEvent::Failed(e) => panic!("download failed: {e}"),
                    _ => {}
                }
            }
            held_down = held_down.max(down.bytes_held());
            servers.pump(&mut down);
        }
        let down_time = started.elapsed();
        println!(
            "| {codec:?} | {:.0} | {:.0} | {:.0} | {:.0}% | {:.0} | {:.1} MiB | {:.1} KiB | {} / {} |",
            mbps(data.len(), key_time),
            mbps(data.len(), up_time),
            mbps(data.len(), up_time + key_time),
            100.0 * server_busy.as_secs_f64() / up_time.as_secs_f64(),
            mbps(data.len(), down_time),
            held_up as f64 / (1 << 20) as f64,
            held_down as f64 / 1024.0,
            up_rounds,
            servers.rounds,
        );
    }
}
