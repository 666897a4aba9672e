//! Parity of the two runtimes: the same measurements as `lafs bench`'s 1 kB latency and 100 MB
//! throughput rows, once with lafs-runtime-std (threaded servers, blocking client) and once with
//! lafs-runtime-smol (each server's future `block_on`-ed on its own thread, async client), on
//! 5 storage servers in this process over loopback, 3-of-10 with happiness 5.
//!
//! `cargo bench -p lafs-runtime-smol --bench parity -- [--small N] [--mb M] [--memory]
//! [--rounds R] [--only std|smol]` (`--memory`: in-memory stores instead of disk stores that
//! fsync every share, to show the runtimes' own overhead without the disk's; `--rounds`: how
//! many alternating rounds to keep the best of, 2 by default; `--only`: one runtime, e.g. under
//! `perf stat`). Prints a markdown table.

use std::net::TcpListener;
use std::time::Instant;

use lafs_core::server::{ServerConfig, StorageServer};
use lafs_core::store::{MemoryShareStore, ShareStore};
use lafs_runtime_std::net as std_net;
use lafs_store::disk_store::{DiskShareStore, DiskStoreConfig};

const SERVERS: usize = 5;

struct Options {
    small: usize,
    mb: u64,
    memory: bool,
    rounds: usize,
    only: Option<String>,
}

fn options() -> Options {
    let mut o = Options {
        small: 200,
        mb: 100,
        memory: false,
        rounds: 2,
        only: None,
    };
    let args: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < args.len() {
        match args[i].as_str() {
            "--small" => {
                i += 1;
                o.small = args.get(i).and_then(|v| v.parse().ok()).unwrap_or(o.small);
            }
            "--mb" => {
                i += 1;
                o.mb = args.get(i).and_then(|v| v.parse().ok()).unwrap_or(o.mb);
            }
            "--memory" => o.memory = true,
            "--rounds" => {
                i += 1;
                o.rounds = args.get(i).and_then(|v| v.parse().ok()).unwrap_or(o.rounds);
            }
            "--only" => {
                i += 1;
                o.only = args.get(i).cloned();
            }
            _ => {} // cargo bench passes --bench
        }
        i += 1;
    }
    o
}

fn id(i: usize) -> lafs_core::placement::ServerId {
    lafs_core::placement::ServerId([i as u8 + 1; 32])
}

fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A store for one server: fsynced disk shares under `dir`, or memory.
enum AnyStore {
    Disk(Box<DiskShareStore>),
    Memory(MemoryShareStore),
}

fn store(memory: bool, dir: &std::path::Path) -> AnyStore {
    if memory {
        AnyStore::Memory(MemoryShareStore::new(1 << 40, 1 << 40))
    } else {
        let config = DiskStoreConfig {
            reserved_space: 0,
            ..DiskStoreConfig::default()
        };
        AnyStore::Disk(Box::new(
            DiskShareStore::open(dir, config).expect("disk store"),
        ))
    }
}

/// Latency samples (ms) and throughput (MB/s) of one runtime.
struct Figures {
    up_p50: f64,
    down_p50: f64,
    up_mbps: f64,
    down_mbps: f64,
}

fn p50(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn mbps(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / secs / 1e6
}

fn params() -> lafs_core::immutable::upload::UploadConfig {
    let mut c = lafs_core::immutable::upload::UploadConfig::default();
    c.params.happy = SERVERS;
    c
}

fn run_std(o: &Options, dir: &std::path::Path) -> Figures {
    let mut handles = Vec::new();
    let mut entries = Vec::new();
    for i in 0..SERVERS {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let handle = match store(o.memory, &dir.join(format!("std-{i}"))) {
            AnyStore::Disk(s) => {
                std_net::serve(listener, StorageServer::new(*s, ServerConfig::default()))
            }
            AnyStore::Memory(s) => {
                std_net::serve(listener, StorageServer::new(s, ServerConfig::default()))
            }
        };
        entries.push(std_net::ServerEntry {
            id: id(i),
            addr: handle.local_addr(),
            permutation_seed: id(i).0.to_vec(),
        });
        handles.push(handle);
    }
    let mut config = std_net::ClientConfig::new(b"parity".to_vec(), b"lease".to_vec());
    config.upload = params();
    let client = std_net::GridClient::new(entries, config);
    let (mut up, mut down) = (Vec::new(), Vec::new());
    for i in 0..o.small {
        let bytes = data(1000, i as u64);
        let t = Instant::now();
        let cap = client
            .upload_bytes(&bytes, &mut |_| {})
            .expect("upload")
            .cap;
        up.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let mut out = Vec::new();
        client
            .download(&cap, &mut out, &mut |_| {})
            .expect("download");
        down.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(out == bytes);
    }
    let big = data((o.mb * 1_000_000) as usize, 99);
    let t = Instant::now();
    let cap = client.upload_bytes(&big, &mut |_| {}).expect("upload").cap;
    let up_s = t.elapsed().as_secs_f64();
    let mut out = Vec::with_capacity(big.len());
    let t = Instant::now();
    client
        .download(&cap, &mut out, &mut |_| {})
        .expect("download");
    let down_s = t.elapsed().as_secs_f64();
    assert!(out == big);
    Figures {
        up_p50: p50(up),
        down_p50: p50(down),
        up_mbps: mbps(big.len() as u64, up_s),
        down_mbps: mbps(big.len() as u64, down_s),
    }
}

/// Start a smol server on its own thread; dropping the sender stops it.
fn smol_server<S: ShareStore + Send + 'static>(
    s: S,
) -> (
    std::net::SocketAddr,
    smol::channel::Sender<()>,
    std::thread::JoinHandle<()>,
) {
    use smol::future::FutureExt;
    let server = lafs_runtime_smol::Server::bind(
        "127.0.0.1:0".parse().expect("addr"),
        StorageServer::new(s, ServerConfig::default()),
    )
    .expect("bind");
    let addr = server.local_addr().expect("addr");
    let (tx, rx) = smol::channel::bounded::<()>(1);
    let thread = std::thread::spawn(move || {
        let stop = async {
            let _ = rx.recv().await;
            Ok(())
        };
        let _ = smol::block_on(server.run().or(stop));
    });
    (addr, tx, thread)
}

fn run_smol(o: &Options, dir: &std::path::Path) -> Figures {
    let mut running = Vec::new();
    let mut entries = Vec::new();
    for i in 0..SERVERS {
        let (addr, stop, thread) = match store(o.memory, &dir.join(format!("smol-{i}"))) {
            AnyStore::Disk(s) => smol_server(*s),
            AnyStore::Memory(s) => smol_server(s),
        };
        entries.push(lafs_runtime_smol::ServerEntry {
            id: id(i),
            addr,
            permutation_seed: id(i).0.to_vec(),
        });
        running.push((stop, thread));
    }
    let mut config = lafs_runtime_smol::ClientConfig::new(b"parity".to_vec(), b"lease".to_vec());
    config.upload = params();
    let client = std::sync::Arc::new(lafs_runtime_smol::GridClient::new(entries, config));
    // The workload runs as a task on smol's executor, next to the connections' reader tasks
    // (answers then reach the operation without crossing threads).
    let small = o.small;
    let mb = o.mb;
    let workload = std::sync::Arc::clone(&client);
    let figures = smol::block_on(smol::spawn(async move {
        let client = workload;
        let (mut up, mut down) = (Vec::new(), Vec::new());
        for i in 0..small {
            let bytes = data(1000, i as u64);
            let t = Instant::now();
            let cap = client.upload_bytes(&bytes).await.expect("upload").cap;
            up.push(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            let (out, _) = client.download_bytes(&cap).await.expect("download");
            down.push(t.elapsed().as_secs_f64() * 1e3);
            assert!(out == bytes);
        }
        let big = data((mb * 1_000_000) as usize, 99);
        let t = Instant::now();
        let cap = client.upload_bytes(&big).await.expect("upload").cap;
        let up_s = t.elapsed().as_secs_f64();
        let mut out = Vec::with_capacity(big.len());
        let t = Instant::now();
        client.download(&cap, &mut out).await.expect("download");
        let down_s = t.elapsed().as_secs_f64();
        assert!(out == big);
        Figures {
            up_p50: p50(up),
            down_p50: p50(down),
            up_mbps: mbps(big.len() as u64, up_s),
            down_mbps: mbps(big.len() as u64, down_s),
        }
    }));
    drop(client);
    for (stop, thread) in running {
        drop(stop);
        let _ = thread.join();
    }
    figures
}

fn main() {
    let o = options();
    let tmp = tempfile::tempdir().expect("tempdir");
    // Alternate the runtimes so drift on a shared machine hits both alike.
    let mut std_runs = Vec::new();
    let mut smol_runs = Vec::new();
    for round in 0..o.rounds {
        if o.only.as_deref() != Some("smol") {
            std_runs.push(run_std(&o, &tmp.path().join(format!("r{round}"))));
        }
        if o.only.as_deref() != Some("std") {
            smol_runs.push(run_smol(&o, &tmp.path().join(format!("r{round}"))));
        }
    }
    let best = |runs: &[Figures], f: fn(&Figures) -> f64, lower: bool| {
        runs.iter()
            .map(f)
            .fold(if lower { f64::MAX } else { 0.0 }, |a, b| {
                if lower {
                    a.min(b)
                } else {
                    a.max(b)
                }
            })
    };
    let store = if o.memory {
        "memory stores"
    } else {
        "disk stores (fsync per share)"
    };
    println!(
        "parity: {SERVERS} servers in-process on 127.0.0.1, {store}, 3-of-10 happy {SERVERS}, \
         {} x 1 kB files, {} MB file; best of {} alternating rounds",
        o.small, o.mb, o.rounds
    );
    println!();
    println!("| measure | runtime-std | runtime-smol | smol vs std |");
    println!("|---|---|---|---|");
    type Row = (&'static str, fn(&Figures) -> f64, bool, &'static str);
    let rows: [Row; 4] = [
        ("1 kB upload latency p50", |f| f.up_p50, true, "ms"),
        ("1 kB download latency p50", |f| f.down_p50, true, "ms"),
        ("upload throughput", |f| f.up_mbps, false, "MB/s"),
        ("download throughput", |f| f.down_mbps, false, "MB/s"),
    ];
    for (name, f, lower, unit) in rows {
        let a = best(&std_runs, f, lower);
        let b = best(&smol_runs, f, lower);
        if std_runs.is_empty() || smol_runs.is_empty() {
            let (who, v) = if std_runs.is_empty() {
                ("smol", b)
            } else {
                ("std", a)
            };
            println!("| {name} | {who} {v:.3} {unit} |");
            continue;
        }
        // Positive: smol is worse by that much.
        let worse = if lower { b / a - 1.0 } else { a / b - 1.0 };
        println!(
            "| {name} | {a:.2} {unit} | {b:.2} {unit} | {} |",
            if worse > 0.0 {
                format!("{:.1} % worse", worse * 100.0)
            } else {
                format!("{:.1} % better", -worse * 100.0)
            }
        );
    }
}
