//! Where the time of a small mutable write and read goes (criterion): RSA-PSS signing, the
//! signature check, and encoding a whole version (encrypt, zfec, hash trees, sign) of a 1 KiB
//! SDMF file and a 200-entry-directory-sized one. Network and key generation are excluded:
//! keys come from the runtime's pool, round trips are measured by `lafs bench`.

use criterion::{criterion_group, criterion_main, Criterion};
use lafs_core::crypto::drbg::Drbg;
use lafs_core::crypto::key_source::{FixtureKeys, KeySource};
use lafs_core::mutable::layout::MutableFormat;
use lafs_core::mutable::share::{check_header, encode_version, sign, verify_signature};
use std::hint::black_box;

fn mutable(c: &mut Criterion) {
    #[allow(clippy::disallowed_methods)] // a bench reading its fixture; the library does no I/O
    let pem = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/data/rsa-2048-fixture-keys.pem"
    ))
    .expect("fixture keys");
    let key = FixtureKeys::from_pem_bundle(&pem)
        .next_key()
        .expect("a key");
    let mut rng = Drbg::new([3; 32]);
    let mut group = c.benchmark_group("mutable");
    let message = [7u8; 75];
    let sig = sign(&key, &message, &mut rng);
    group.bench_function("rsa-pss-sign", |b| {
        b.iter(|| sign(&key, black_box(&message), &mut rng))
    });
    group.bench_function("rsa-pss-verify", |b| {
        b.iter(|| verify_signature(key.public_spki_der(), black_box(&sig), &message))
    });
    for (name, len) in [("1KiB", 1024usize), ("70KiB", 70 * 1024)] {
        let data = vec![0x42u8; len];
        group.bench_function(format!("encode-sdmf-{name}"), |b| {
            b.iter(|| {
                encode_version(
                    MutableFormat::Sdmf,
                    3,
                    10,
                    2,
                    &key,
                    black_box(&data),
                    &mut rng,
                )
            })
        });
        let v = encode_version(MutableFormat::Sdmf, 3, 10, 2, &key, &data, &mut rng).unwrap();
        group.bench_function(format!("check-header-{name}"), |b| {
            b.iter(|| check_header(black_box(&v.shares[0]), &key.fingerprint()))
        });
    }
    group.finish();
}

criterion_group!(benches, mutable);
criterion_main!(benches);
