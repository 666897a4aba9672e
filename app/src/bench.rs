//! `lafs bench`: the node-level benchmark, printed as a table to compare with the Tahoe 1.20
//! baselines and this machine's limits in docs/benchmarks.md.
//!
//! Storage servers run as separate `lafs node run` processes (so their RSS and CPU can be read
//! from /proc); the client runs in this process. Files are generated on the fly by a seekable
//! pseudo-random reader, so a 1 GB upload never holds the file in memory.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lafs_core::cap::Cap;

use crate::cli::CliError;
use crate::local_grid;
use crate::node::{self, GridServer, NodeDir, NodeKind};
use crate::procstat;
use lafs_runtime_std::net::{ClientConfig, GridClient};

/// Deterministic pseudo-random bytes that can be re-read from any offset (for the two upload
/// passes) without being held in memory.
#[derive(Debug)]
struct GeneratedFile {
    seed: u64,
    len: u64,
    pos: u64,
}

impl GeneratedFile {
    fn byte_at(&self, i: u64) -> u8 {
        let mut x = (i / 8) ^ self.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^= x >> 31;
        (x >> ((i % 8) * 8)) as u8
    }
}

impl Read for GeneratedFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min((self.len - self.pos.min(self.len)) as usize);
        for (j, b) in buf[..n].iter_mut().enumerate() {
            *b = self.byte_at(self.pos + j as u64);
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for GeneratedFile {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.pos = match pos {
            SeekFrom::Start(p) => p,
            SeekFrom::End(d) => self.len.saturating_add_signed(d),
            SeekFrom::Current(d) => self.pos.saturating_add_signed(d),
        };
        Ok(self.pos)
    }
}

/// Counts bytes written and checks them against the generator, without storing them.
struct Checker<'a> {
    expected: &'a GeneratedFile,
    at: u64,
    ok: bool,
}

impl std::io::Write for Checker<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for (j, b) in buf.iter().enumerate() {
            if *b != self.expected.byte_at(self.at + j as u64) {
                self.ok = false;
            }
        }
        self.at += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A `lafs node run` child process, killed when dropped.
#[derive(Debug)]
pub(crate) struct NodeProcess {
    child: Child,
}

impl NodeProcess {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kill it now and wait for it.
    pub(crate) fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    procstat::process(pid).rss_bytes.map(|b| b / 1024)
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    procstat::process(pid).peak_rss_bytes.map(|b| b / 1024)
}

/// User + system CPU seconds of a process.
fn cpu_seconds(pid: u32) -> Option<f64> {
    procstat::process(pid).cpu_time.map(|t| t.as_secs_f64())
}

/// Run `lafs node run NODE_DIR` as a child of this process (the same executable) and return it
/// with the first line of its banner (storage: "serving on ADDR ...", client: "web gateway on
/// URL ..."). Its stderr goes to ours.
pub(crate) fn spawn_node(node_dir: &Path) -> Result<(NodeProcess, String), CliError> {
    let exe = std::env::current_exe().map_err(|source| CliError::Io {
        path: "lafs".into(),
        source,
    })?;
    let mut child = Command::new(&exe)
        .args(["node", "run"])
        .arg(node_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|source| CliError::Io {
            path: exe.clone(),
            source,
        })?;
    let stdout = child.stdout.take();
    // From here on the child is killed if anything fails.
    let process = NodeProcess { child };
    let stdout = stdout.ok_or_else(|| CliError::Usage("no stdout from lafs node run".into()))?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|source| CliError::Io {
            path: node_dir.to_path_buf(),
            source,
        })?;
    Ok((process, line))
}

/// Start `count` storage nodes (directories DIR/server-I) as separate processes.
pub(crate) fn start_servers(
    dir: &Path,
    count: usize,
) -> Result<(Vec<NodeProcess>, Vec<GridServer>), CliError> {
    let mut procs = Vec::new();
    let mut grid = Vec::new();
    for i in 0..count {
        let node_dir = dir.join(format!("server-{i}"));
        let node = NodeDir::create(&node_dir, NodeKind::Storage, &format!("bench {i}"))?;
        let (process, line) = spawn_node(&node_dir)?;
        let addr = line
            .split_whitespace()
            .nth(2)
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| {
                CliError::Usage(format!("server {i} did not report its address: {line:?}"))
            })?;
        grid.push(GridServer {
            id: node.identity.node_id,
            address: addr,
        });
        procs.push(process);
    }
    Ok((procs, grid))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn stats_ms(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (
        v.iter().sum::<f64>() / v.len() as f64,
        percentile(&v, 0.5),
        percentile(&v, 0.95),
    )
}

fn least_squares(points: &[(f64, f64)]) -> (f64, f64) {
    let n = points.len() as f64;
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let sxy: f64 = points.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = points.iter().map(|(x, _)| (x - mx) * (x - mx)).sum();
    let slope = sxy / sxx;
    (my - slope * mx, slope)
}

/// Options of `lafs bench`. (The mutable-file and directory rows are in `bench_mutable`.)
#[derive(Clone, Copy, Debug)]
pub struct BenchOptions {
    pub small_files: usize,
    pub big_mb: u64,
    pub huge_mb: u64,
}

/// Run the benchmark and print the table.
pub fn run(options: BenchOptions, out: &mut dyn std::io::Write) -> Result<(), CliError> {
    let dir = std::env::temp_dir().join(format!("lafs-bench-{}", std::process::id()));
    let result = run_in(&dir, options, out);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run_in(dir: &Path, o: BenchOptions, out: &mut dyn std::io::Write) -> Result<(), CliError> {
    let io = |source| CliError::Io {
        path: PathBuf::from("<stdout>"),
        source,
    };
    let (procs, grid) = start_servers(dir, 5)?;
    let client_node = NodeDir::create(&dir.join("client"), NodeKind::Client, "bench")?;
    let mut config: ClientConfig = local_grid::client_config(&client_node);
    config.upload.params.happy = 5;
    let client = GridClient::new(local_grid::entries(&grid), config);
    node::write_grid(&dir.join("grid.toml"), &grid)?;
    let mut none = |_| {};

    // idle servers first
    std::thread::sleep(Duration::from_millis(300));
    let idle_rss: Vec<u64> = procs.iter().filter_map(|p| rss_kib(p.pid())).collect();
    let cpu_before: Vec<f64> = procs.iter().filter_map(|p| cpu_seconds(p.pid())).collect();
    std::thread::sleep(Duration::from_secs(1));
    let cpu_after: Vec<f64> = procs.iter().filter_map(|p| cpu_seconds(p.pid())).collect();
    let idle_cpu = cpu_after
        .iter()
        .zip(&cpu_before)
        .map(|(a, b)| a - b)
        .fold(0.0, f64::max)
        * 100.0;

    // The disk's own floor, before the transfers leave it writing back.
    let io_at = |source| CliError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let floor = fsync_floor_ms(dir, 1).map_err(io_at)?;
    let floor5 = fsync_floor_ms(dir, 5).map_err(io_at)?;

    // 1 kB files: latency and round trips
    let (mut up_ms, mut down_ms, mut caps) = (Vec::new(), Vec::new(), Vec::new());
    let (mut up_rt, mut down_rt) = (0u64, 0u64);
    for i in 0..o.small_files {
        let mut f = GeneratedFile {
            seed: 1_000 + i as u64,
            len: 1000,
            pos: 0,
        };
        let t = Instant::now();
        let r = client.upload_reader(1000, &mut f, &mut none)?;
        up_ms.push(t.elapsed().as_secs_f64() * 1e3);
        up_rt += u64::from(r.stats.round_trips);
        caps.push((r.cap, f));
    }
    for (cap, f) in &caps {
        let mut check = Checker {
            expected: f,
            at: 0,
            ok: true,
        };
        let t = Instant::now();
        let r = client.download(cap, &mut check, &mut none)?;
        down_ms.push(t.elapsed().as_secs_f64() * 1e3);
        down_rt += u64::from(r.stats.round_trips);
        if !check.ok {
            return Err(CliError::DemoMismatch);
        }
    }

    // throughput and the per-file fit
    let mut fit_up = Vec::new();
    let mut fit_down = Vec::new();
    let mut transfer = |bytes: u64, seed: u64| -> Result<(f64, f64, Cap), CliError> {
        let mut f = GeneratedFile {
            seed,
            len: bytes,
            pos: 0,
        };
        let t = Instant::now();
        let r = client.upload_reader(bytes, &mut f, &mut none)?;
        let up = t.elapsed().as_secs_f64();
        let mut check = Checker {
            expected: &f,
            at: 0,
            ok: true,
        };
        let t = Instant::now();
        client.download(&r.cap, &mut check, &mut none)?;
        let down = t.elapsed().as_secs_f64();
        if !check.ok || check.at != bytes {
            return Err(CliError::DemoMismatch);
        }
        Ok((up, down, r.cap))
    };
    for (i, size) in [10_000u64, 100_000, 1_000_000, 10_000_000]
        .into_iter()
        .enumerate()
    {
        let (u, d, _) = transfer(size, 50_000 + i as u64)?;
        fit_up.push((size as f64, u));
        fit_down.push((size as f64, d));
    }
    let big = o.big_mb * 1_000_000;
    let (big_up, big_down, _) = transfer(big, 7)?;
    fit_up.push((big as f64, big_up));
    fit_down.push((big as f64, big_down));

    // client peak RSS over a huge upload (one segment at a time)
    let rss_before = rss_kib(std::process::id()).unwrap_or(0);
    let huge = o.huge_mb * 1_000_000;
    let mut f = GeneratedFile {
        seed: 9,
        len: huge,
        pos: 0,
    };
    let t = Instant::now();
    client.upload_reader(huge, &mut f, &mut none)?;
    let huge_s = t.elapsed().as_secs_f64();
    let peak = peak_rss_kib(std::process::id()).unwrap_or(0);
    let loaded_rss: Vec<u64> = procs.iter().filter_map(|p| rss_kib(p.pid())).collect();

    let (a_up, s_up) = least_squares(&fit_up);
    let (a_down, s_down) = least_squares(&fit_down);
    let (um, u50, u95) = stats_ms(up_ms);
    let (dm, d50, d95) = stats_ms(down_ms);
    let n = o.small_files as f64;
    let mib = |kib: u64| kib as f64 / 1024.0;
    let rows = [
        format!("| disk fsync floor: append 1 kB + fdatasync, p50 (same disk, same run) | {floor:.3} ms | | | |"),
        format!("| the same on 5 files at once (the 5 servers share this disk), p50 | {floor5:.3} ms | | | |"),
        format!("| 1 kB upload latency mean / p50 / p95 | {um:.2} / {u50:.2} / {u95:.2} ms, {:.1} round trips | p50 <= 1 ms | {} | Tahoe 21.3 ms (Foolscap) |", up_rt as f64 / n, met(u50 <= 1.0)),
        format!("| 1 kB upload p50 / fsync floor (one file; 5 at once) | {:.1}x; {:.1}x | <= 5x | {} | |", u50 / floor, u50 / floor5, met(u50 / floor <= 5.0)),
        format!("| 1 kB download latency mean / p50 / p95 | {dm:.2} / {d50:.2} / {d95:.2} ms, {:.1} round trips | p50 <= 0.3 ms | {} | Tahoe 7.7 ms |", down_rt as f64 / n, met(d50 <= 0.3)),
        format!("| {} MB upload | {:.0} MB/s | >= 200 MB/s | {} | Tahoe 36.8 MB/s |", o.big_mb, big as f64 / big_up / 1e6, met(big as f64 / big_up / 1e6 >= 200.0)),
        format!("| {} MB download | {:.0} MB/s | >= 400 MB/s | {} | Tahoe 127 MB/s |", o.big_mb, big as f64 / big_down / 1e6, met(big as f64 / big_down / 1e6 >= 400.0)),
        format!("| per-file fit, upload | A {:.2} ms, B {:.0} MB/s | | | Tahoe A 25 ms, B 44 MB/s |", a_up * 1e3, 1.0 / s_up / 1e6),
        format!("| per-file fit, download | A {:.2} ms, B {:.0} MB/s | | | Tahoe A 9 ms, B 124 MB/s |", a_down * 1e3, 1.0 / s_down / 1e6),
        format!("| idle storage-server RSS (max of 5) | {:.1} MiB | <= 8 MiB | {} | Tahoe ~91 MiB |", mib(*idle_rss.iter().max().unwrap_or(&0)), met(mib(*idle_rss.iter().max().unwrap_or(&0)) <= 8.0)),
        format!("| storage-server RSS after the uploads (max) | {:.1} MiB | | | |", mib(*loaded_rss.iter().max().unwrap_or(&0))),
        format!("| idle storage-server CPU (max of 5, over 1 s) | {idle_cpu:.1} % | ~0 | {} | Tahoe 0-1.5 % |", met(idle_cpu < 1.0)),
        format!("| client peak RSS, {} MB upload ({:.0} MB/s) | {:.1} MiB (before: {:.1} MiB) | <= 32 MiB | {} | Tahoe 115 MiB (100 MB) |", o.huge_mb, huge as f64 / huge_s / 1e6, mib(peak), mib(rss_before), met(mib(peak) <= 32.0)),
    ];
    writeln!(out, "lafs bench: 5 storage servers (separate processes) + client on 127.0.0.1, 3-of-10 happy 5, shares fsynced before acknowledgement; MB = 10^6 bytes").map_err(io)?;
    writeln!(out).map_err(io)?;
    writeln!(
        out,
        "| measure | lafs | target | | baseline (shared/baselines.md) |"
    )
    .map_err(io)?;
    writeln!(out, "|---|---|---|---|---|").map_err(io)?;
    for r in rows {
        writeln!(out, "{r}").map_err(io)?;
    }
    crate::bench_mutable::run(&client, out)
}

/// The disk's cost of making small writes durable, in `dir` (the grid's own disk): p50 of
/// appending 1 kB to an open file and fdatasyncing it, with `files` files doing so at once
/// (one per storage server sharing this disk; the round ends when the last sync returns). No
/// store can acknowledge a durable write faster; the 1 kB upload row is read against it.
fn fsync_floor_ms(dir: &Path, files: usize) -> std::io::Result<f64> {
    use std::io::Write as _;
    let paths: Vec<PathBuf> = (0..files)
        .map(|i| dir.join(format!("fsync-floor-{i}")))
        .collect();
    let mut handles = paths
        .iter()
        .map(|p| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    let block = [0x5au8; 1000];
    let mut ms = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        std::thread::scope(|scope| {
            let syncs: Vec<_> = handles
                .iter_mut()
                .map(|f| {
                    scope.spawn(move || {
                        f.write_all(&block)?;
                        f.sync_data()
                    })
                })
                .collect();
            syncs.into_iter().try_for_each(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("sync thread panicked")))
            })
        })?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    drop(handles);
    for p in &paths {
        std::fs::remove_file(p)?;
    }
    Ok(stats_ms(ms).1)
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "missed"
    }
}
