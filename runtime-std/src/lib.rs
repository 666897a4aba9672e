//! lafs-runtime-std: drives lafs-core with std threads and blocking sockets.
//!
//! - [`net`]: the TCP storage server (`serve`) and the blocking client (`GridClient`: every
//!   operation of lafs-core's client engine: immutable, ranged and mutable transfers,
//!   directories, grid status);
//! - [`keypool`]: RSA keys generated ahead of time on a background thread;
//! - [`clock`]: the runtime's time (microseconds since the Unix epoch) as lafs-core `Instant`s;
//! - [`sync`]: the `std::sync` / `loom::sync` switch for every structure shared between threads.
//!
//! The disk share store is the `lafs-store` crate; the `lafs` command, gateway and load tool are
//! the `lafs` crate.

pub mod clock;
pub mod keypool;
pub mod net;
pub mod sync;
