//! The `lafs` application: everything a user runs, on top of the runtime-std driver and the disk
//! store.
//!
//! - [`cli`]: the command-line tool's commands (`put`, `get`, directories, aliases, nodes, grids);
//! - [`node`]: node directories (`lafs.toml`, identity, secrets) and grid files;
//! - [`local_grid`]: storage nodes in this process on loopback (the embedded default grid);
//! - [`gateway`]: Tahoe's web API, statistics and the welcome page;
//! - [`load`], [`bench`], [`bench_mutable`], [`procstat`]: the load generator and benchmarks;
//! - [`aliases`], [`progress`], [`debug`]: Tahoe's alias file, progress bars, offline derivations;
//! - [`dir_paths`]: looking before writing at a path, and uploading a file into a path.

pub mod aliases;
pub mod bench;
pub mod bench_mutable;
pub mod cli;
pub mod debug;
pub mod dir_paths;
pub mod gateway;
pub mod load;
pub mod local_grid;
pub mod node;
pub mod procstat;
pub mod progress;
