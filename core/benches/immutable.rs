//! Where the time of an immutable upload and download goes: the same in-process pipeline as
//! `chk_pipeline` (10 in-memory storage servers, one thread, 3-of-10 happy 7, 1 MiB segments),
//! with the driver timing each side of every call, followed by each step of the CHK encoder and
//! decoder timed on its own over the same file. `chk_pipeline` gives the headline table; this one
//! says which step to make faster. MB = 10^6 bytes.
//!
//! Run: `cargo bench -p lafs-core --bench immutable`
//! Knobs: `LAFS_BENCH_MIB` (file size, default 100), `LAFS_BENCH_CODEC` (`zfec`, `novelpoly`,
//! default both).

// Benchmarks time themselves with the wall clock and read their knobs from the environment,
// both of which the core's purity lists (core/clippy.toml) forbid in library code.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lafs_core::codec::zfec::Zfec;
use lafs_core::codec::{Codec, CodecKind};
use lafs_core::crypto::{
    block_hash, ciphertext_hasher, ciphertext_segment_hash, convergent_key_hasher, AesCtr,
};
use lafs_core::immutable::download::{ChkFile, Download, DownloadConfig, DownloadEvent};
use lafs_core::immutable::encode::ChkEncoder;
use lafs_core::immutable::params::{effective_segment_size, Geometry};
use lafs_core::immutable::upload::{Upload, UploadConfig, UploadEvent};
use lafs_core::op::ClientOp;
use lafs_core::placement::{ServerDescriptor, ServerId};
use lafs_core::server::{ConnectionId, ServerConfig, StorageServer};
use lafs_core::store::MemoryShareStore;
use lafs_core::time::Instant as CoreInstant;
use lafs_core::wire::Request;

const NOW: CoreInstant = CoreInstant(1);

/// Wall time (and, when counted, minor page faults) spent in each part of a run, in the order
/// first seen.
#[derive(Default)]
struct Phases {
    rows: Vec<(&'static str, Duration, u64)>,
    count_faults: bool,
    /// Time spent reading the fault counter (a few microseconds a read), which callers subtract
    /// from their wall-clock totals.
    overhead: Duration,
}

impl Phases {
    fn counting_faults() -> Phases {
        Phases {
            count_faults: minor_faults().is_some(),
            ..Phases::default()
        }
    }

    fn time<T>(&mut self, name: &'static str, f: impl FnOnce() -> T) -> T {
        let read_started = Instant::now();
        let faults = self.count_faults.then(minor_faults).flatten();
        let started = Instant::now();
        let out = f();
        let elapsed = started.elapsed();
        let faults = faults.and_then(|f0| Some(minor_faults()? - f0));
        self.overhead += read_started.elapsed() - elapsed;
        self.add(name, elapsed, faults.unwrap_or(0));
        out
    }

    fn add(&mut self, name: &'static str, d: Duration, faults: u64) {
        match self.rows.iter_mut().find(|(n, _, _)| *n == name) {
            Some((_, total, f)) => {
                *total += d;
                *f += faults;
            }
            None => self.rows.push((name, d, faults)),
        }
    }

    fn total(&self) -> Duration {
        self.rows.iter().map(|(_, d, _)| *d).sum()
    }

    /// One table row per phase: seconds, share of `whole`, MB/s of file bytes, page faults.
    fn print(&self, title: &str, whole: Duration, file_bytes: usize) {
        println!();
        println!("{title}");
        println!();
        if self.count_faults {
            println!("| phase | s | share | file MB/s if alone | minor page faults |");
            println!("|---|---|---|---|---|");
        } else {
            println!("| phase | s | share | file MB/s if alone |");
            println!("|---|---|---|---|");
        }
        for (name, d, faults) in &self.rows {
            let faults = if self.count_faults {
                format!(" {faults} |")
            } else {
                String::new()
            };
            println!(
                "| {name} | {:.3} | {:.0} % | {:.0} |{faults}",
                d.as_secs_f64(),
                100.0 * d.as_secs_f64() / whole.as_secs_f64(),
                mbps(file_bytes, *d),
            );
        }
    }
}

/// Minor page faults of this process so far (Linux; `None` elsewhere): fresh memory costs a
/// fault per 4 KiB page on first touch, which is much of the in-memory servers' time.
fn minor_faults() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; minflt is field 10 overall.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(7)?.parse().ok()
}

fn mbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

/// Deterministic pseudo-random bytes, so runs are comparable and nothing compresses (seed 1 of
/// the suites' generator: the same bytes these benches always used).
fn test_data(len: usize) -> Vec<u8> {
    lafs_core::testing::grid::test_data(len, 1)
}

struct Grid {
    servers: Vec<(ServerId, StorageServer<MemoryShareStore>)>,
    /// Batches of requests delivered: with batched delivery, the times the client waited for
    /// answers before it could go on (round trips on a network).
    round_trips: usize,
    /// Most share bytes sitting in one batch of requests the client queued before delivery.
    peak_batch_bytes: usize,
}

impl Grid {
    fn new(n: u8) -> Grid {
        let servers = (1..=n)
            .map(|i| {
                let mut id = [0u8; 32];
                id[0] = i;
                let store = MemoryShareStore::new(1 << 40, 1 << 40);
                (
                    ServerId(id),
                    StorageServer::new(store, ServerConfig::default()),
                )
            })
            .collect();
        Grid {
            servers,
            round_trips: 0,
            peak_batch_bytes: 0,
        }
    }

    fn descriptors(&self) -> Vec<ServerDescriptor> {
        self.servers
            .iter()
            .map(|(id, _)| ServerDescriptor {
                id: *id,
                permutation_seed: id.0.to_vec(),
            })
            .collect()
    }

    /// Deliver every request `op` has queued and feed the answers back, timing the server's
    /// handling (which includes freeing the request's buffers) apart from the client's.
    fn pump<O: ClientOp>(&mut self, op: &mut O, phases: &mut Phases) {
        let batch: Vec<_> = phases.time("client: poll_transmit", || {
            std::iter::from_fn(|| op.poll_transmit()).collect()
        });
        if !batch.is_empty() {
            self.round_trips += 1;
        }
        let bytes: usize = batch
            .iter()
            .map(|t| match &t.request {
                Request::ImmutableWrite { writes, .. } => writes.iter().map(|w| w.data.len()).sum(),
                _ => 0,
            })
            .sum();
        self.peak_batch_bytes = self.peak_batch_bytes.max(bytes);
        for t in batch {
            let Some((_, server)) = self.servers.iter_mut().find(|(id, _)| *id == t.to) else {
                panic!("request to an unknown server");
            };
            let response = phases.time("server: handle_request", || {
                server.handle_request(NOW, ConnectionId(0), t.request)
            });
            phases.time("client: handle_input", || {
                op.handle_input(NOW, t.to, t.id, response)
            });
        }
    }
}

struct Run {
    key_pass: Duration,
    upload: Duration,
    upload_phases: Phases,
    upload_round_trips: usize,
    upload_peak_batch: usize,
    upload_faults: Option<u64>,
    upload_peak: usize,
    download: Duration,
    download_phases: Phases,
    download_round_trips: usize,
    download_faults: Option<u64>,
    download_peak: usize,
}

/// The whole pipeline with every call timed.
///
/// `eager`: deliver each segment's requests as soon as `provide_segment` queued them (a runtime
/// writing to sockets at once) instead of after the upload has no more events (a batch per
/// round trip, as a runtime waiting on replies sees it: up to `window_bytes` per server).
fn pipeline(codec: CodecKind, data: &[u8], eager: bool) -> Run {
    let config = UploadConfig {
        codec,
        ..UploadConfig::default()
    };
    let p = config.params;
    let started = Instant::now();
    let segment_size = effective_segment_size(data.len() as u64, p.k, p.max_segment_size);
    let mut hasher = convergent_key_hasher(b"bench convergence secret", p.k, p.n, segment_size);
    hasher.update(data);
    let key = hasher.finish();
    let key_pass = started.elapsed();

    let mut grid = Grid::new(10);
    let descriptors = grid.descriptors();
    let mut phases = Phases::counting_faults();
    let faults = minor_faults();
    let started = Instant::now();
    let mut up = phases.time("client: Upload::new", || {
        Upload::new(
            NOW,
            config,
            key,
            data.len() as u64,
            &descriptors,
            b"bench lease secret",
        )
    });
    let mut upload_peak = 0;
    let cap = 'upload: loop {
        while let Some(event) = up.poll_event() {
            match event {
                UploadEvent::NeedSegment { offset, length, .. } => {
                    let segment = &data[offset as usize..(offset + length) as usize];
                    phases.time("client: provide_segment (encrypt, hash, encode)", || {
                        up.provide_segment(NOW, segment)
                    });
                    if eager {
                        grid.pump(&mut up, &mut phases);
                    }
                }
                UploadEvent::Done(result) => break 'upload result.cap,
                UploadEvent::Failed(e) => panic!("upload failed: {e}"),
                _ => {}
            }
            upload_peak = upload_peak.max(up.bytes_held());
        }
        grid.pump(&mut up, &mut phases);
    };
    let upload = started.elapsed() - phases.overhead;
    let upload_faults = faults.and_then(|f0| Some(minor_faults()? - f0));
    let upload_round_trips = std::mem::take(&mut grid.round_trips);
    let upload_peak_batch = grid.peak_batch_bytes;

    let file = ChkFile::from_cap(&cap).expect("a CHK cap");
    let mut down_phases = Phases::counting_faults();
    let faults = minor_faults();
    let started = Instant::now();
    let mut down = Download::new(NOW, DownloadConfig::default(), file, &descriptors);
    let mut download_peak = 0;
    'download: loop {
        while let Some(event) = down.poll_event() {
            match event {
                DownloadEvent::Data { offset, bytes } => {
                    let start = offset as usize;
                    let same = down_phases.time("bench: compare with the input", || {
                        data.get(start..start + bytes.len()) == Some(&bytes[..])
                    });
                    assert!(same, "downloaded bytes at {offset} differ from the input");
                }
                DownloadEvent::Done { .. } => break 'download,
                DownloadEvent::Failed(e) => panic!("download failed: {e}"),
                _ => {}
            }
        }
        download_peak = download_peak.max(down.bytes_held());
        grid.pump(&mut down, &mut down_phases);
    }
    let download = started.elapsed() - down_phases.overhead;
    let download_faults = faults.and_then(|f0| Some(minor_faults()? - f0));
    Run {
        key_pass,
        upload,
        upload_phases: phases,
        upload_round_trips,
        upload_peak_batch,
        upload_faults,
        upload_peak,
        download,
        download_phases: down_phases,
        download_round_trips: grid.round_trips,
        download_faults,
        download_peak,
    }
}

/// Each step `ChkEncoder::encode_segment` and the servers perform, alone, segment by segment,
/// with the encoder's buffer reuse. "store" copies each block into a per-share buffer reserved
/// at full size, as `MemoryShareStore` does (first touch of fresh pages included).
fn upload_steps(kind: CodecKind, data: &[u8]) -> Phases {
    let p = UploadConfig::default().params;
    let codec: Arc<dyn Codec> = kind.build(p.k, p.n).expect("codec");
    let g = Geometry::for_params(data.len() as u64, &p, codec.as_ref()).expect("geometry");
    let key = [7u8; 16];
    let share_size = ChkEncoder::new(&key, g, codec.clone())
        .expect("encoder")
        .layout()
        .share_size() as usize;
    let mut phases = Phases::counting_faults();
    let mut hasher = convergent_key_hasher(b"secret", p.k, p.n, g.segment_size);
    phases.time("key pass (SHA-256 over plaintext)", || hasher.update(data));
    black_box(hasher.finish());
    let mut shares: Vec<Vec<u8>> = (0..p.n).map(|_| Vec::with_capacity(share_size)).collect();
    let mut cipher = AesCtr::new(&key);
    let mut flat = ciphertext_hasher();
    let mut scratch = Vec::new();
    for s in 0..g.num_segments {
        let start = g.segment_offset(s) as usize;
        let plain = &data[start..start + g.segment_len(s) as usize];
        phases.time("copy plaintext into the segment buffer", || {
            scratch.clear();
            scratch.extend_from_slice(plain);
        });
        phases.time("AES-128-CTR", || cipher.apply(&mut scratch));
        phases.time("flat ciphertext hash", || flat.update(&scratch));
        phases.time("ciphertext segment hash", || {
            black_box(ciphertext_segment_hash(&scratch))
        });
        scratch.resize(g.padded_segment_len(s) as usize, 0);
        let blocks = phases.time("codec encode (fresh block buffers)", || {
            codec.encode(&scratch).expect("encode")
        });
        phases.time("block hashes (n/k x file)", || {
            for b in &blocks {
                black_box(block_hash(b));
            }
        });
        phases.time("store: copy blocks into share buffers", || {
            for (share, b) in shares.iter_mut().zip(&blocks) {
                share.extend_from_slice(b);
            }
        });
        phases.time("free the block buffers", || drop(blocks));
    }
    black_box(flat.finalize());
    black_box(&shares);
    if kind == CodecKind::Zfec {
        // The codec without the allocator: blocks written into buffers kept across segments.
        let zfec = Zfec::new(p.k, p.n).expect("zfec");
        let mut reused = Vec::new();
        for s in 0..g.num_segments {
            let start = g.segment_offset(s) as usize;
            scratch.clear();
            scratch.extend_from_slice(&data[start..start + g.segment_len(s) as usize]);
            scratch.resize(g.padded_segment_len(s) as usize, 0);
            phases.time("(for comparison) zfec encode_into reused buffers", || {
                zfec.encode_into(&scratch, &mut reused).expect("encode")
            });
        }
    }
    phases
}

/// Each step of a download's segment, alone: verify k blocks, decode (from the k primary shares,
/// the codec's cheapest case), check the ciphertext segment hash, decrypt. The blocks are made
/// beforehand, untimed.
fn download_steps(kind: CodecKind, data: &[u8]) -> Phases {
    let p = UploadConfig::default().params;
    let codec: Arc<dyn Codec> = kind.build(p.k, p.n).expect("codec");
    let g = Geometry::for_params(data.len() as u64, &p, codec.as_ref()).expect("geometry");
    let key = [7u8; 16];
    let mut phases = Phases::counting_faults();
    let mut scratch = Vec::new();
    for s in 0..g.num_segments {
        let start = g.segment_offset(s) as usize;
        scratch.clear();
        scratch.extend_from_slice(&data[start..start + g.segment_len(s) as usize]);
        scratch.resize(g.padded_segment_len(s) as usize, 0);
        let blocks = codec.encode(&scratch).expect("encode");
        let primaries: Vec<(usize, &[u8])> = (0..p.k).map(|i| (i, blocks[i].as_slice())).collect();
        phases.time("block hashes (k blocks = 1 x file)", || {
            for (_, b) in &primaries {
                black_box(block_hash(b));
            }
        });
        let input_block_len = g.padded_segment_len(s) as usize / p.k;
        let mut segment = phases.time("codec decode from primaries (fresh buffer)", || {
            codec.decode(input_block_len, &primaries).expect("decode")
        });
        segment.truncate(g.segment_len(s) as usize);
        phases.time("ciphertext segment hash", || {
            black_box(ciphertext_segment_hash(&segment))
        });
        phases.time("AES-128-CTR", || {
            AesCtr::at_offset(&key, g.segment_offset(s)).apply(&mut segment)
        });
    }
    phases
}

fn main() {
    let mib: usize = std::env::var("LAFS_BENCH_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let only = std::env::var("LAFS_BENCH_CODEC").unwrap_or_default();
    let codecs: Vec<CodecKind> = [CodecKind::Zfec, CodecKind::NovelPoly]
        .into_iter()
        .filter(|c| only.is_empty() || format!("{c:?}").eq_ignore_ascii_case(&only))
        .collect();
    let data = test_data(mib << 20);
    println!(
        "immutable pipeline profile: {mib} MiB file, 3-of-10 happy 7, 1 MiB segments, \
         10 memory servers, 1 thread; MB = 10^6 bytes"
    );
    for codec in codecs {
        let runs = [pipeline(codec, &data, false), pipeline(codec, &data, true)];
        println!();
        println!("## {codec:?}");
        println!();
        println!("| measure | batched delivery | eager delivery |");
        println!("|---|---|---|");
        let row = |name: &str, f: &dyn Fn(&Run) -> String| {
            println!("| {name} | {} | {} |", f(&runs[0]), f(&runs[1]));
        };
        let n = data.len();
        row("upload incl. key pass, MB/s", &|r| {
            format!("{:.0}", mbps(n, r.key_pass + r.upload))
        });
        row("upload excl. key pass, MB/s", &|r| {
            format!("{:.0}", mbps(n, r.upload))
        });
        row("key pass alone, MB/s", &|r| {
            format!("{:.0}", mbps(n, r.key_pass))
        });
        row("download, MB/s", &|r| format!("{:.0}", mbps(n, r.download)));
        row("storage servers' share of upload time", &|r| {
            let server = r
                .upload_phases
                .rows
                .iter()
                .filter(|(name, _, _)| name.starts_with("server"))
                .map(|(_, d, _)| d.as_secs_f64())
                .sum::<f64>();
            format!("{:.0} %", 100.0 * server / r.upload.as_secs_f64())
        });
        row("peak bytes_held upload / download", &|r| {
            format!(
                "{:.1} MiB / {:.1} KiB",
                r.upload_peak as f64 / (1 << 20) as f64,
                r.download_peak as f64 / 1024.0
            )
        });
        row("peak share bytes queued in one request batch", &|r| {
            format!("{:.1} MiB", r.upload_peak_batch as f64 / (1 << 20) as f64)
        });
        row("request batches upload / download", &|r| {
            format!("{} / {}", r.upload_round_trips, r.download_round_trips)
        });
        row(
            "minor page faults upload / download",
            &|r| match (r.upload_faults, r.download_faults) {
                (Some(up), Some(down)) => format!("{up} / {down}"),
                _ => "n/a".into(),
            },
        );
        for (run, how) in runs.into_iter().zip(["batched", "eager"]) {
            let mut up = run.upload_phases;
            up.add("driver and event loop (rest)", run.upload - up.total(), 0);
            up.print(
                &format!(
                    "upload ({how} delivery), {:.3} s excl. key pass, split by call",
                    run.upload.as_secs_f64()
                ),
                run.upload,
                n,
            );
            if how == "batched" {
                let mut down = run.download_phases;
                down.add(
                    "driver and event loop (rest)",
                    run.download - down.total(),
                    0,
                );
                down.print(
                    &format!(
                        "download, {:.3} s, split by call",
                        run.download.as_secs_f64()
                    ),
                    run.download,
                    n,
                );
            }
        }
        let steps = upload_steps(codec, &data);
        let encoder_total = steps
            .rows
            .iter()
            .filter(|(n, _, _)| !n.starts_with('('))
            .map(|(_, d, _)| *d)
            .sum();
        steps.print(
            &format!(
                "upload steps timed alone (sum without the comparison row: {:.3} s, \
                 {:.0} MB/s)",
                Duration::as_secs_f64(&encoder_total),
                mbps(data.len(), encoder_total)
            ),
            encoder_total,
            data.len(),
        );
        let steps = download_steps(codec, &data);
        let total = steps.total();
        steps.print(
            &format!(
                "download steps timed alone (sum: {:.3} s, {:.0} MB/s)",
                total.as_secs_f64(),
                mbps(data.len(), total)
            ),
            total,
            data.len(),
        );
    }
}
