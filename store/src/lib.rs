//! lafs-store: the disk [`ShareStore`](lafs_core::store::ShareStore) that storage servers of every
//! runtime use.
//!
//! - [`disk_store`]: the store: small shares as database rows, large ones as files in Tahoe's
//!   directory layout, crash-safe commits;
//! - [`db`]: the store database (SQLite): [`share_index`] (every share, small shares' bytes) and
//!   [`leases`];
//! - [`group_commit`]: one sync of the database log for many commits;
//! - [`container`]: Tahoe's mutable share container, for mutable shares kept in files;
//! - [`durable_fs`]: filesystem steps and what makes each durable.
//!
//! Nothing here knows about sockets, threads of a runtime or clocks: times arrive as lafs-core
//! `Instant`s (the runtimes' convention: microseconds since the Unix epoch). Calls block on disk
//! I/O, so an async runtime runs them off its executor.

pub mod container;
pub mod db;
pub mod disk_store;
pub mod durable_fs;
pub mod group_commit;
pub mod leases;
pub mod share_index;
