//! lafs-tests: suites that exercise lafs from the outside: Tahoe's test vectors (formats and
//! real Tahoe shares) and the end-to-end suite, which runs the same scenarios on every driver
//! (runtime-std, runtime-smol and the simulator: [`drivers`]). The in-memory grid and fixture
//! keys come from lafs-core's `testing` feature ([`grid`], [`keys`]).

pub mod drivers;
pub mod grid;
pub mod keys;

use std::path::PathBuf;

/// Path of a file under `tests/vectors/`.
pub fn vector_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("vectors")
        .join(name)
}

/// Read a vectors file; a missing file is a failure with a message saying what to restore.
pub fn read_vector_file(name: &str) -> Vec<u8> {
    let path = vector_path(name);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!("test vectors missing: {} ({e}); restore tests/vectors/ from shared/vectors (see SOURCE.md)", path.display())
    })
}

/// Parse a JSON vectors file.
pub fn read_vector_json(name: &str) -> serde_json::Value {
    serde_json::from_slice(&read_vector_file(name))
        .unwrap_or_else(|e| panic!("{name} is not valid JSON: {e}"))
}

/// Expand a plaintext recipe: repeat the seed and cut to `length` (Tahoe's `stretch`).
pub fn expand_plaintext(recipe: &serde_json::Value) -> Vec<u8> {
    let seed =
        hex::decode(recipe["seed_hex"].as_str().expect("seed_hex")).expect("seed_hex is hex");
    let length = recipe["length"].as_u64().expect("length") as usize;
    seed.iter().copied().cycle().take(length).collect()
}
