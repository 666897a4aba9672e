//! Through the web gateway versus straight from the client library: 1 kB upload and download
//! latency and 100 MB throughput, on 5 storage servers with disk stores (fsync on every share)
//! and a gateway, all in this process over loopback, 3-of-10 with happiness 5 (the shape of
//! the Tahoe 1.20 baselines in docs/benchmarks.md). Each upload sends fresh bytes (convergent encryption would make a
//! repeat free).
//!
//! `cargo bench -p lafs --bench gateway -- [--small N] [--mb M]`. Prints a markdown
//! table to compare with docs/benchmarks.md.

use std::io::Read;
use std::time::{Duration, Instant};

use lafs::gateway::{Gateway, GatewayConfig, SharedKeys};
use lafs::local_grid::{self, LocalGrid};
use lafs_core::crypto::key_source::RngKeys;
use lafs_runtime_std::net::ClientConfig;
use lafs_runtime_std::sync::{Arc, Mutex};

struct Options {
    small: usize,
    mb: usize,
}

fn options() -> Options {
    let mut o = Options {
        small: 200,
        mb: 100,
    };
    let args: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < args.len() {
        let value = args.get(i + 1).and_then(|v| v.parse().ok());
        match args[i].as_str() {
            "--small" => o.small = value.unwrap_or(o.small),
            "--mb" => o.mb = value.unwrap_or(o.mb),
            _ => {} // cargo bench passes --bench
        }
        i += 1;
    }
    o
}

fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
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

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// (p50, mean, p95) in ms.
fn summary(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    (at(0.5), v.iter().sum::<f64>() / v.len() as f64, at(0.95))
}

fn main() {
    let o = options();
    let dir = tempfile::tempdir().unwrap();
    let grid = LocalGrid::start(&dir.path().join("grid"), 5).unwrap();
    let mut config = ClientConfig::new(b"bench convergence".to_vec(), b"bench lease".to_vec());
    config.upload.params.happy = 5;
    let keys: SharedKeys = Arc::new(Mutex::new(Box::new(RngKeys::new(getrandom::SysRng))));
    let gateway = Gateway::start(
        GatewayConfig {
            listen: "127.0.0.1:0".into(),
            spool_dir: Some(dir.path().to_path_buf()),
            ..GatewayConfig::default()
        },
        grid.client(config.clone()),
        local_grid::entries(&grid.grid()),
        keys,
    )
    .unwrap();
    let base = format!("http://{}", gateway.local_addr());
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(600))
        .build();
    let direct = grid.client(config);

    // Warm the connections both ways.
    let warm = agent
        .put(&format!("{base}/uri"))
        .send_bytes(&data(1000, 0))
        .unwrap();
    let _ = warm.into_string();
    direct.upload_bytes(&data(1000, 1), &mut |_| {}).unwrap();

    let (mut up_web, mut down_web, mut up_direct, mut down_direct) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..o.small {
        let body = data(1000, 1000 + i as u64);
        let t = Instant::now();
        let cap = agent
            .put(&format!("{base}/uri"))
            .send_bytes(&body)
            .unwrap()
            .into_string()
            .unwrap();
        up_web.push(ms(t.elapsed()));
        let t = Instant::now();
        let mut got = Vec::new();
        agent
            .get(&format!("{base}/uri/{cap}"))
            .call()
            .unwrap()
            .into_reader()
            .read_to_end(&mut got)
            .unwrap();
        down_web.push(ms(t.elapsed()));
        assert_eq!(got, body);

        let body = data(1000, 100_000 + i as u64);
        let t = Instant::now();
        let report = direct.upload_bytes(&body, &mut |_| {}).unwrap();
        up_direct.push(ms(t.elapsed()));
        let t = Instant::now();
        let mut got = Vec::new();
        direct.download(&report.cap, &mut got, &mut |_| {}).unwrap();
        down_direct.push(ms(t.elapsed()));
    }

    let big = data(o.mb * 1_000_000, 42);
    let t = Instant::now();
    let cap = agent
        .put(&format!("{base}/uri"))
        .send_bytes(&big)
        .unwrap()
        .into_string()
        .unwrap();
    let up_big_web = t.elapsed();
    let t = Instant::now();
    let mut reader = agent
        .get(&format!("{base}/uri/{cap}"))
        .call()
        .unwrap()
        .into_reader();
    let mut got = Vec::with_capacity(big.len());
    reader.read_to_end(&mut got).unwrap();
    let down_big_web = t.elapsed();
    assert!(got == big, "the 100 MB download differs");
    drop(got);
    let big = data(o.mb * 1_000_000, 43);
    let t = Instant::now();
    let report = direct.upload_bytes(&big, &mut |_| {}).unwrap();
    let up_big_direct = t.elapsed();
    let t = Instant::now();
    let mut sink = std::io::sink();
    direct
        .download(&report.cap, &mut sink, &mut |_| {})
        .unwrap();
    let down_big_direct = t.elapsed();

    let mbps = |d: Duration| o.mb as f64 / d.as_secs_f64();
    let row = |name: &str, web: (f64, f64, f64), direct: (f64, f64, f64), target: &str| {
        println!(
            "| {name} | {:.2} / {:.2} / {:.2} ms | {:.2} / {:.2} / {:.2} ms | {target} |",
            web.0, web.1, web.2, direct.0, direct.1, direct.2
        );
    };
    println!(
        "\n{} x 1 kB and {} MB, 5 storage servers (disk stores) + gateway in one process, loopback, 3-of-10, happy 5\n",
        o.small, o.mb
    );
    println!("| measure | through the gateway (p50 / mean / p95) | client library, no HTTP | target (gateway) |");
    println!("|---|---|---|---|");
    row(
        "1 kB upload",
        summary(up_web),
        summary(up_direct),
        "p50 <= 1 ms",
    );
    row(
        "1 kB download",
        summary(down_web),
        summary(down_direct),
        "p50 <= 0.5 ms",
    );
    println!(
        "| {} MB upload | {:.1} MB/s | {:.1} MB/s | >= 200 MB/s |",
        o.mb,
        mbps(up_big_web),
        mbps(up_big_direct)
    );
    println!(
        "| {} MB download | {:.1} MB/s | {:.1} MB/s | >= 400 MB/s |",
        o.mb,
        mbps(down_big_web),
        mbps(down_big_direct)
    );
    let stats: serde_json::Value = serde_json::from_str(
        &agent
            .get(&format!("{base}/statistics?t=json"))
            .call()
            .unwrap()
            .into_string()
            .unwrap(),
    )
    .unwrap();
    println!(
        "\nround trips per gateway upload: {:.2}; process peak RSS {} MiB (servers, gateway and the bench's own {} MB buffers together)",
        stats["counters"]["gateway.upload.round_trips"].as_f64().unwrap_or(0.0)
            / stats["counters"]["gateway.upload.count"].as_f64().unwrap_or(1.0),
        stats["stats"]["process.peak_rss_bytes"].as_u64().unwrap_or(0) >> 20,
        o.mb
    );
}
