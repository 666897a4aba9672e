//! Throughput of the zfec codec on 1 MiB segments, counted in segment bytes.
//!
//! For 3-of-10 (Tahoe's default) and 25-of-50:
//! - `encode`: all n blocks from a segment (primaries are copies, parity is computed);
//! - `encode-into-reused`: the same into buffers kept across iterations (`Zfec::encode_into`),
//!   i.e. the codec without the allocator: fresh 350 KiB blocks come from mmap and page-fault;
//! - `decode-primaries`: from shares 0..k, the systematic fast path (a copy);
//! - `decode-secondaries`: from the last k shares, so every primary is reconstructed (for
//!   25-of-50 these are all parity shares; for 3-of-10 too);
//! - `decode-into-reused-secondaries`: the same into a reused output buffer.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lafs_core::codec::zfec::Zfec;
use lafs_core::codec::Codec;
use std::hint::black_box;

const SEGMENT: usize = 1 << 20;

fn segment(k: usize) -> Vec<u8> {
    let len = SEGMENT - SEGMENT % k;
    // Cheap deterministic filler; the codec's speed does not depend on the bytes.
    (0..len)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

fn bench_geometry(c: &mut Criterion, k: usize, n: usize) {
    let codec = Zfec::new(k, n).expect("valid parameters");
    let seg = segment(k);
    let block_len = seg.len() / k;
    let blocks = codec.encode(&seg).expect("encode");

    let mut group = c.benchmark_group(format!("zfec-{k}-of-{n}"));
    group.throughput(Throughput::Bytes(seg.len() as u64));
    group.bench_function("encode", |b| {
        b.iter(|| codec.encode(black_box(&seg)).expect("encode"))
    });
    let mut reused = Vec::new();
    group.bench_function("encode-into-reused", |b| {
        b.iter(|| {
            codec
                .encode_into(black_box(&seg), &mut reused)
                .expect("encode")
        })
    });
    let primaries: Vec<(usize, &[u8])> = (0..k).map(|i| (i, blocks[i].as_slice())).collect();
    group.bench_function("decode-primaries", |b| {
        b.iter(|| {
            codec
                .decode(block_len, black_box(&primaries))
                .expect("decode")
        })
    });
    let secondaries: Vec<(usize, &[u8])> = (n - k..n).map(|i| (i, blocks[i].as_slice())).collect();
    group.bench_function("decode-secondaries", |b| {
        b.iter(|| {
            codec
                .decode(block_len, black_box(&secondaries))
                .expect("decode")
        })
    });
    let mut out = Vec::new();
    group.bench_function("decode-into-reused-secondaries", |b| {
        b.iter(|| {
            codec
                .decode_into(block_len, black_box(&secondaries), &mut out)
                .expect("decode")
        })
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    bench_geometry(c, 3, 10);
    bench_geometry(c, 25, 50);
}

criterion_group!(zfec, benches);
criterion_main!(zfec);
