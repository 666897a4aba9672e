//! lafs-runtime-std: drives lafs-core with std threads and blocking sockets, and hosts the `lafs`
//! command-line tool.
//!
//! Built so far: the `lafs debug` commands (capability parsing and derivations), node
//! directories, and TCP between clients and storage servers (`net`, time from `clock`). Shares on disk
//! live in `disk_store` (files in Tahoe's layout) with their leases in `leases` (SQLite).

pub mod aliases;
pub mod bench;
pub mod bench_mutable;
pub mod cli;
pub mod clock;
pub mod debug;
pub mod dirs;
pub mod disk_store;
pub mod gateway;
pub mod keypool;
pub mod leases;
pub mod load;
pub mod local_grid;
pub mod net;
pub mod node;
pub mod procstat;
pub mod progress;
pub mod sync;
