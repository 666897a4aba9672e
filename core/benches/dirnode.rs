//! Directory operations on a 200-entry directory, excluding network and RSA signing (criterion).
//!
//! Targets: adding a child p50 <= 3 ms (Tahoe: 120 ms), listing <= 1 ms (Tahoe:
//! 35 ms). "Add" here is the whole pure part of a read-modify-write: unpack the current table,
//! add one child, pack the new table. "List" is unpack plus walking every child.

use criterion::{criterion_group, criterion_main, Criterion};
use lafs_core::cap::Cap;
use lafs_core::dirnode::{Access, ChildCap, Directory, JsonObject, JsonValue};
use std::hint::black_box;

const WK: [u8; 16] = [0x42; 16];

fn key(i: usize, salt: u8) -> [u8; 16] {
    let mut k = [salt; 16];
    k[..8].copy_from_slice(&(i as u64).to_le_bytes());
    k
}

fn child(i: usize) -> ChildCap {
    let (k, h) = (key(i, 1), [i as u8; 32]);
    let cap = match i % 5 {
        0 => Cap::ChkRead {
            key: k,
            ueb_hash: h,
            needed: 3,
            total: 10,
            size: 1_000_000 + i as u64,
        },
        1 => Cap::SskWrite {
            writekey: k,
            fingerprint: h,
        },
        2 => Cap::directory(Cap::SskWrite {
            writekey: k,
            fingerprint: h,
        })
        .unwrap(),
        3 => Cap::MdmfRead {
            readkey: k,
            fingerprint: h,
        },
        _ => Cap::Lit {
            data: b"small file".to_vec(),
        },
    };
    ChildCap::from_cap(cap)
}

/// The packed table of a read-write directory with 200 children, as a client would fetch it.
fn table_200() -> Vec<u8> {
    let mut dir = Directory::new(Access::ReadWrite { writekey: WK });
    for i in 0..200 {
        let mut user = JsonObject::new();
        user.insert("size", JsonValue::Int(1000 * i as i64));
        user.insert("mtime", JsonValue::Float(1.7e9 + i as f64 * 0.25));
        dir.add(
            &format!("file-{i:03}.dat"),
            child(i),
            Some(&user),
            false,
            1.7e9 + i as f64,
        )
        .unwrap();
    }
    dir.pack()
}

fn add_one(table: &[u8]) -> Vec<u8> {
    let mut dir = Directory::unpack(table, Access::ReadWrite { writekey: WK }).unwrap();
    dir.add("new-child", child(1001), None, false, 1.8e9)
        .unwrap();
    dir.pack()
}

fn list(table: &[u8]) -> usize {
    let dir = Directory::unpack(table, Access::ReadWrite { writekey: WK }).unwrap();
    dir.list()
        .map(|(name, c)| name.len() + c.metadata.len())
        .sum()
}

/// A plain median over many runs, printed once so the p50 can be read next to the targets.
#[allow(clippy::disallowed_types, clippy::disallowed_methods)] // a bench reads the clock
fn print_p50(table: &[u8]) {
    use std::time::Instant;
    let median_us = |f: &dyn Fn()| {
        let mut t: Vec<f64> = (0..301)
            .map(|_| {
                let start = Instant::now();
                f();
                start.elapsed().as_secs_f64() * 1e6
            })
            .collect();
        t.sort_by(f64::total_cmp);
        t[t.len() / 2]
    };
    let add = median_us(&|| {
        black_box(add_one(black_box(table)));
    });
    let ls = median_us(&|| {
        black_box(list(black_box(table)));
    });
    println!(
        "dirnode 200 entries ({} bytes): add p50 {add:.0} us (target 3000 us, Tahoe 120000 us); \
         list p50 {ls:.0} us (target 1000 us, Tahoe 35000 us)",
        table.len()
    );
}

fn dirnode(c: &mut Criterion) {
    let table = table_200();
    print_p50(&table);
    let mut group = c.benchmark_group("dirnode-200");
    group.bench_function("unpack+add+pack", |b| b.iter(|| add_one(black_box(&table))));
    group.bench_function("unpack+list", |b| b.iter(|| list(black_box(&table))));
    let dir = Directory::unpack(&table, Access::ReadWrite { writekey: WK }).unwrap();
    group.bench_function("pack-all-fresh", |b| {
        b.iter(|| {
            let fresh = Directory::with_children(
                dir.access(),
                dir.list().map(|(n, c)| (n.to_string(), c.clone())),
            )
            .unwrap();
            black_box(fresh.pack())
        })
    });
    group.finish();
}

criterion_group!(benches, dirnode);
criterion_main!(benches);
