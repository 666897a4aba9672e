//! Real TCP between lafs clients and storage servers, on std threads and blocking sockets.
//!
//! - [`serve`] runs a [`lafs_core::server::StorageServer`] on a `TcpListener`: an accept
//!   thread, one thread per connection, a janitor for idle uploads ([`server`] module).
//! - [`GridClient`] runs every client operation of lafs-core's engine (files, mutable files,
//!   directories, grid status) over lazily opened, reused connections ([`client`]); edits of
//!   one directory from its threads take turns ([`turns`]).
//!
//! Both ends speak lafs-core's framed protocol ([`lafs_core::wire`]) with `TCP_NODELAY`, and
//! read time from [`crate::clock`] (microseconds since the Unix epoch).

pub mod client;
mod connection;
pub mod server;
mod turns;

pub use client::{
    ClientConfig, ClientError, DownloadReport, GridClient, MutableReadReport, MutableWriteReport,
    ReadSeek, ServerEntry, Stage, TransferProgress, TransferStats, UploadReport,
};
pub use server::{serve, ServerHandle};
