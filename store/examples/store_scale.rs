//! How the disk store behaves at scale: fills a store with N small shares (default 100,000;
//! 2 shares of 1 kB per storage index, as a 1 kB upload leaves on each of five servers), stops
//! as a crash would (no clean close: the log is left unsynced and unmerged), then reopens it and
//! prints the open time and this process's memory.
//!
//! `cargo run --release -p lafs-store --example store_scale -- [SHARES] [DIR]` (the filling is
//! done by a child process, killed with SIGKILL once it reports). Run as root, the page cache is
//! dropped before the reopen, so the open time is a cold one.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use lafs_core::store::{Lease, ShareStore};
use lafs_core::time::Instant as LafsInstant;
use lafs_store::disk_store::{DiskShareStore, DiskStoreConfig};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn config() -> DiskStoreConfig {
    DiskStoreConfig {
        reserved_space: 0,
        ..DiskStoreConfig::default()
    }
}

/// The child: fills the store, says how long it took, then waits to be killed.
fn fill(dir: &Path, shares: u64) {
    let lease = Lease {
        renew_secret: [1; 32],
        cancel_secret: [2; 32],
        expires: LafsInstant(u64::MAX / 2),
    };
    let t = Instant::now();
    let mut s = DiskShareStore::open(dir, config()).expect("open");
    let data = vec![0x5au8; 1000];
    for i in 0..shares / 2 {
        let mut si = [0u8; 16];
        si[..8].copy_from_slice(&i.to_be_bytes());
        for shnum in 0..2 {
            s.create_share(&si, shnum, 1000, lease).expect("create");
            s.write_share(&si, shnum, 0, &data).expect("write");
        }
        for r in s.commit_shares(&si, &[(0, 1000), (1, 1000)]) {
            r.expect("commit");
        }
        // A server syncs before answering; here every 100 uploads share one sync.
        if i % 100 == 99 {
            if let Some(ticket) = s.durability_ticket() {
                ticket.wait().expect("sync");
            }
        }
    }
    if let Some(ticket) = s.durability_ticket() {
        ticket.wait().expect("sync");
    }
    println!("{} {}", s.shares_held(), t.elapsed().as_secs_f64());
    std::io::stdout().flush().expect("stdout");
    loop {
        std::thread::park();
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("--fill") {
        let dir = PathBuf::from(args.next().expect("DIR"));
        fill(&dir, args.next().expect("SHARES").parse().expect("SHARES"));
        return;
    }
    let mut args = std::env::args().skip(1);
    let shares: u64 = args.next().map_or(100_000, |s| s.parse().expect("SHARES"));
    let dir: PathBuf = args.next().map_or_else(
        || std::env::temp_dir().join("lafs-store-scale"),
        PathBuf::from,
    );
    let _ = std::fs::remove_dir_all(&dir);
    let mut child = Command::new(std::env::current_exe().expect("exe"))
        .arg("--fill")
        .arg(&dir)
        .arg(shares.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the filler");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read the filler's report");
    let mut parts = line.split_whitespace();
    let held: u64 = parts.next().and_then(|p| p.parse().ok()).expect("held");
    let filled: f64 = parts.next().and_then(|p| p.parse().ok()).expect("seconds");
    // A crash: SIGKILL, no clean close, the log not merged into the database.
    child.kill().expect("kill");
    child.wait().expect("wait");
    let db_bytes: u64 = ["leases.db", "leases.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum();
    // Cold: the page cache dropped (root only), as after a reboot.
    let cold = std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok();
    let before_open = rss_kib();
    let t = Instant::now();
    let s = DiskShareStore::open(&dir, config()).expect("reopen");
    let opened = t.elapsed();
    println!("| store of {held} shares (1 kB each, kept as rows) | |");
    println!("|---|---|");
    println!(
        "| fill, one commit per storage index, a sync per 100 | {filled:.1} s ({:.0} shares/s) |",
        held as f64 / filled
    );
    println!(
        "| database + log on disk after the kill | {:.1} MB |",
        db_bytes as f64 / 1e6
    );
    println!(
        "| open after SIGKILL, {} page cache (target <= 1 s) | {:.0} ms, {} shares found |",
        if cold { "cold" } else { "warm" },
        opened.as_secs_f64() * 1e3,
        s.shares_held()
    );
    println!(
        "| RSS of a process holding the open store (target <= 32 MiB) | {:.1} MiB ({:.1} MiB before the open) |",
        rss_kib() as f64 / 1024.0,
        before_open as f64 / 1024.0
    );
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}
