//! lafs-runtime-std: drives lafs-core with std threads and blocking sockets.
//!
//! - [`net`]: the TCP storage server (`serve`) and the blocking client (`GridClient`: immutable,
//!   mutable and ranged transfers, grid status);
//! - [`dirs`]: the directory client on top of `GridClient` (paths, edits, remembered maps);
//! - [`keypool`]: RSA keys generated ahead of time on a background thread;
//! - [`clock`]: the runtime's time (microseconds since the Unix epoch) as lafs-core `Instant`s;
//! - [`sync`]: the `std::sync` / `loom::sync` switch for every structure shared between threads.
//!
//! The disk share store is the `lafs-store` crate; the `lafs` command, gateway and load tool are
//! the `lafs` crate.

pub mod clock;
pub mod dirs;
pub mod keypool;
pub mod net;
pub mod sync;
