//! Throughput of the `NovelPoly` wrapper next to `reed-solomon-novelpoly` called directly, so the
//! cost of exact k-of-n semantics (transposition, implicit zero shards) is visible.
//!
//! For each k-of-n on a 1 MiB segment:
//! - `wrapper/encode`, `wrapper/decode`: our codec; decode uses k shares of which about half are
//!   parity shares, so the crate's reconstruction really runs;
//! - `raw-same/…`: the crate on the transform the wrapper uses (K = next power of two >= k data
//!   shards, K + n - k outputs): the wrapper's own overhead is the gap to these;
//! - `raw-derived/…`: the crate on `derive_parameters(n, k)`, its own rounding (k rounded *down*
//!   to a power of two, so it is not a k-of-n code): what a caller of the crate alone would get.
//!
//! Throughput is always counted in segment bytes, so all rows compare per user byte.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use lafs_core::codec::novelpoly::NovelPoly;
use lafs_core::codec::Codec;
use reed_solomon_novelpoly::{CodeParams, ReedSolomon, WrappedShard};

const SEGMENT: usize = 1 << 20;

fn segment(k: usize) -> Vec<u8> {
    let len = SEGMENT - SEGMENT % k;
    // Cheap deterministic filler; the codec's speed does not depend on the bytes.
    (0..len)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// `count` share numbers out of `total`: the first half primary, the rest from the top.
fn mixed(count: usize, primaries: usize, total: usize) -> Vec<usize> {
    let low = count / 2;
    let mut v: Vec<usize> = (0..low.min(primaries)).collect();
    v.extend((total - (count - v.len())..total).rev());
    v
}

fn raw(c: &mut Criterion, label: &str, rs: &ReedSolomon, k_po2: usize, wanted: usize, seg: &[u8]) {
    let mut group = c.benchmark_group(label);
    group.throughput(Throughput::Bytes(seg.len() as u64));
    group.bench_function("encode", |b| {
        b.iter(|| {
            rs.encode::<WrappedShard>(std::hint::black_box(seg))
                .unwrap()
        })
    });
    let shards = rs.encode::<WrappedShard>(seg).unwrap();
    let mut received: Vec<Option<WrappedShard>> = vec![None; wanted];
    for p in mixed(k_po2, k_po2, wanted) {
        received[p] = Some(shards[p].clone());
    }
    group.bench_function("reconstruct", |b| {
        b.iter_batched(
            || received.clone(),
            |r| rs.reconstruct(r).unwrap(),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn bench(c: &mut Criterion) {
    for (k, n) in [(3usize, 10usize), (25, 50)] {
        let seg = segment(k);
        let codec = NovelPoly::new(k, n).unwrap();
        let mut group = c.benchmark_group(format!("{k}-of-{n}/wrapper"));
        group.throughput(Throughput::Bytes(seg.len() as u64));
        group.bench_function("encode", |b| {
            b.iter(|| codec.encode(std::hint::black_box(&seg)).unwrap())
        });
        let blocks = codec.encode(&seg).unwrap();
        let which = mixed(k, k, n);
        let shares: Vec<(usize, &[u8])> = which.iter().map(|&s| (s, &blocks[s][..])).collect();
        assert_eq!(codec.decode(seg.len() / k, &shares).unwrap(), seg);
        group.bench_function("decode", |b| {
            b.iter(|| {
                codec
                    .decode(seg.len() / k, std::hint::black_box(&shares))
                    .unwrap()
            })
        });
        group.finish();

        let kp = k.next_power_of_two();
        let wanted = kp + (n - k);
        let same = CodeParams::derive_parameters(wanted, kp).unwrap();
        raw(
            c,
            &format!("{k}-of-{n}/raw-same"),
            &same.make_encoder(),
            kp,
            wanted,
            &seg,
        );

        let derived = CodeParams::derive_parameters(n, k).unwrap();
        let label = format!("{k}-of-{n}/raw-derived-{}-of-{}", derived.k(), derived.n());
        raw(c, &label, &derived.make_encoder(), derived.k(), n, &seg);
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
