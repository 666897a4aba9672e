//! lafs-core: the pure protocol core of lafs.
//!
//! Everything here is deterministic computation: formats (capabilities, share layouts, extension
//! blocks), cryptographic derivations, hash trees, erasure codecs, and the state machines that run
//! uploads and downloads. Nothing here reads a clock, spawns a thread, opens a socket or a file, or
//! asks the OS for randomness; runtimes pass `now` and randomness in and carry messages out
//! (see `docs/architecture.md` and `core/clippy.toml`, which enforces this).

pub mod base32;
pub mod cap;
pub mod client;
pub mod codec;
pub mod crypto;
pub mod dirnode;
pub mod hashtree;
pub mod immutable;
pub mod mutable;
pub mod netstring;
pub mod op;
pub mod placement;
pub mod server;
pub mod server_frames;
pub mod server_status;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod time;
pub mod wire;
