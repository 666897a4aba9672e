//! Throughput of the hashing and encryption primitives on 1 MiB inputs (criterion).
//! This machine's limits (docs/benchmarks.md): SHA-256 ~2.0 GB/s, AES-128-CTR ~7 GB/s.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lafs_core::crypto::{sha256d, tagged_hash, AesCtr};
use std::hint::black_box;

fn primitives(c: &mut Criterion) {
    let data = vec![0x5au8; 1 << 20];
    let mut group = c.benchmark_group("primitives-1MiB");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.bench_function("sha256d", |b| b.iter(|| sha256d(black_box(&data))));
    group.bench_function("tagged-sha256d", |b| {
        b.iter(|| tagged_hash(b"allmydata_encoded_subshare_v1", black_box(&data)))
    });
    let mut buf = data.clone();
    group.bench_function("aes128-ctr", |b| {
        b.iter(|| AesCtr::new(&[7; 16]).apply(black_box(&mut buf)))
    });
    group.finish();
}

criterion_group!(benches, primitives);
criterion_main!(benches);
