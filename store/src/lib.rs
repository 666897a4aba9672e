//! lafs-store: the disk [`ShareStore`](lafs_core::store::ShareStore) that storage servers of every
//! runtime use.
//!
//! - [`disk_store`]: share files in Tahoe's directory layout, crash-safe commits (fsync + rename);
//! - [`leases`]: their leases, in SQLite.
//!
//! Nothing here knows about sockets, threads of a runtime or clocks: times arrive as lafs-core
//! `Instant`s (the runtimes' convention: microseconds since the Unix epoch). Calls block on disk
//! I/O, so an async runtime runs them off its executor.

pub mod disk_store;
pub mod leases;
