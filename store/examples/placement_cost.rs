//! Where should a share live? Times committing one share (create, write, commit, wait until
//! durable) as a database row and as a file, at several sizes, interleaved so that disk noise
//! hits both alike. The store's `small_share_max` is chosen from this table
//! (docs/benchmarks.md, "Where small shares live").
//!
//! `cargo run --release -p lafs-store --example placement_cost -- [ROUNDS] [DIR]`

use std::path::PathBuf;
use std::time::Instant;

use lafs_core::store::{Lease, ShareStore};
use lafs_core::time::Instant as LafsInstant;
use lafs_store::disk_store::{DiskShareStore, DiskStoreConfig};

fn p50(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().map_or(100, |s| s.parse().expect("ROUNDS"));
    let dir: PathBuf = args.next().map_or_else(
        || std::env::temp_dir().join("lafs-placement-cost"),
        PathBuf::from,
    );
    let _ = std::fs::remove_dir_all(&dir);
    let open = |name: &str, small_share_max: u64| {
        DiskShareStore::open(
            &dir.join(name),
            DiskStoreConfig {
                reserved_space: 0,
                small_share_max,
                ..DiskStoreConfig::default()
            },
        )
        .expect("open")
    };
    let mut rows = open("rows", u64::MAX);
    let mut files = open("files", 0);
    let lease = Lease {
        renew_secret: [1; 32],
        cancel_secret: [2; 32],
        expires: LafsInstant(1),
    };
    let commit = |s: &mut DiskShareStore, i: u64, size: usize| -> f64 {
        let mut si = [0u8; 16];
        si[..8].copy_from_slice(&i.to_be_bytes());
        let data = vec![(i % 251) as u8; size];
        let t = Instant::now();
        s.create_share(&si, 0, size as u64, lease).expect("create");
        s.write_share(&si, 0, 0, &data).expect("write");
        s.commit_share(&si, 0, size as u64).expect("commit");
        if let Some(ticket) = s.durability_ticket() {
            ticket.wait().expect("sync");
        }
        t.elapsed().as_secs_f64() * 1e3
    };
    println!("| share size | as a row, p50 | as a file, p50 |");
    println!("|---|---|---|");
    let mut i = 0u64;
    for size in [1_000usize, 4_000, 16_000, 64_000, 256_000, 1_000_000] {
        let (mut r, mut f) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            i += 1;
            r.push(commit(&mut rows, i, size));
            f.push(commit(&mut files, i, size));
        }
        println!("| {size} B | {:.2} ms | {:.2} ms |", p50(r), p50(f));
    }
    drop((rows, files));
    let _ = std::fs::remove_dir_all(&dir);
}
