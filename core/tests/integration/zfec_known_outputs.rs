//! Our `Zfec` against outputs recorded from the real zfec (tests/data/zfec_vectors.json, made by
//! tests/data/gen_zfec_vectors.py): encoding must be byte-identical, and decoding from primaries,
//! secondaries only, or mixed subsets in any order must give the input back.

use lafs_core::codec::zfec::Zfec;
use lafs_core::codec::Codec;
use serde_json::Value;

struct Vector {
    k: usize,
    n: usize,
    block_len: usize,
    input: Vec<Vec<u8>>,
    encoded: Vec<Vec<u8>>,
}

fn hex_list(v: &Value, field: &str, at: usize) -> Vec<Vec<u8>> {
    v[field]
        .as_array()
        .unwrap_or_else(|| panic!("vector {at}: `{field}` is not an array"))
        .iter()
        .map(|h| {
            let s = h
                .as_str()
                .unwrap_or_else(|| panic!("vector {at}: `{field}` holds a non-string"));
            hex::decode(s).unwrap_or_else(|e| panic!("vector {at}: bad hex in `{field}`: {e}"))
        })
        .collect()
}

fn load() -> Vec<Vector> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/zfec_vectors.json");
    // Test-only fixture read; the core itself never touches files.
    #[allow(clippy::disallowed_methods)]
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "cannot read {path}: {e}. The zfec known-output vectors are committed with the \
             repository; regenerate them with `python3 core/tests/data/gen_zfec_vectors.py` \
             (needs `pip install zfec`)"
        )
    });
    let doc: Value = serde_json::from_str(&text).expect("zfec_vectors.json is not valid JSON");
    let vectors = doc["vectors"]
        .as_array()
        .expect("zfec_vectors.json has no `vectors` array");
    assert!(!vectors.is_empty(), "zfec_vectors.json holds no vectors");
    vectors
        .iter()
        .enumerate()
        .map(|(at, v)| {
            let num = |f: &str| {
                v[f].as_u64()
                    .unwrap_or_else(|| panic!("vector {at}: `{f}` is not a number"))
                    as usize
            };
            let vector = Vector {
                k: num("k"),
                n: num("n"),
                block_len: num("block_len"),
                input: hex_list(v, "input_blocks", at),
                encoded: hex_list(v, "encoded_blocks", at),
            };
            assert_eq!(vector.input.len(), vector.k, "vector {at}: input count");
            assert_eq!(vector.encoded.len(), vector.n, "vector {at}: output count");
            vector
        })
        .collect()
}

/// Deterministic share subsets to decode from: primaries, the top k (secondary-only whenever
/// n >= 2k), everything reversed, and a few scrambled ones from a fixed LCG.
fn subsets(k: usize, n: usize) -> Vec<Vec<usize>> {
    let mut out = vec![
        (0..k).collect::<Vec<_>>(),
        (n - k..n).rev().collect(),
        (0..n).rev().collect(),
    ];
    let mut state: u64 = (k as u64) << 32 | n as u64;
    for _ in 0..4 {
        let mut all: Vec<usize> = (0..n).collect();
        for i in 0..k {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let j = i + ((state >> 33) as usize) % (n - i);
            all.swap(i, j);
        }
        all.truncate(k);
        out.push(all);
    }
    out
}

#[test]
fn encode_matches_real_zfec() {
    let vectors = load();
    for v in &vectors {
        let codec = Zfec::new(v.k, v.n).expect("valid parameters");
        let segment = v.input.concat();
        let got = codec.encode(&segment).expect("encode");
        for (i, (g, want)) in got.iter().zip(&v.encoded).enumerate() {
            assert_eq!(
                g, want,
                "{}-of-{} block_len {}: share {i} differs from zfec",
                v.k, v.n, v.block_len
            );
        }
        assert_eq!(got.len(), v.n);
    }
}

#[test]
fn decode_recovers_input_from_zfec_shares() {
    for v in &load() {
        let codec = Zfec::new(v.k, v.n).expect("valid parameters");
        let segment = v.input.concat();
        for which in subsets(v.k, v.n) {
            let shares: Vec<(usize, &[u8])> = which
                .iter()
                .map(|&i| (i, v.encoded[i].as_slice()))
                .collect();
            let got = codec
                .decode(v.block_len, &shares)
                .unwrap_or_else(|e| panic!("{}-of-{} from {which:?}: {e}", v.k, v.n));
            assert_eq!(
                got, segment,
                "{}-of-{} block_len {} from shares {which:?}",
                v.k, v.n, v.block_len
            );
        }
    }
}

#[test]
fn vector_table_covers_the_required_geometries() {
    let vectors = load();
    for (k, n) in [
        (1, 1),
        (1, 3),
        (2, 2),
        (3, 10),
        (25, 50),
        (25, 100),
        (101, 256),
        (255, 256),
    ] {
        assert!(
            vectors
                .iter()
                .any(|v| v.k == k && v.n == n && v.block_len > 0),
            "no non-empty vector for {k}-of-{n}"
        );
    }
}
