//! lafs-runtime-smol: lafs-core driven by smol and async-io, for async programs.
//!
//! - [`GridClient`]: every client operation of lafs-core's engine as a future over reused TCP
//!   connections: immutable uploads and downloads (whole or ranged), mutable files (create,
//!   update, in-place modify, read), directories (mkdir, mkdir -p, list, lookup, link, unlink,
//!   move), grid status. Operations may run concurrently from any tasks on any executor.
//! - [`Server`]: a storage server as one self-contained future (`Server::bind(..)?.run()`),
//!   serving any [`lafs_core::store::ShareStore`]; drop it to stop it.
//!
//! Both speak lafs-core's framed protocol, so they interoperate with lafs-runtime-std's client
//! and server, and run the same lafs-core tasks as lafs-runtime-std (the drain rule, accounting
//! and reports live in `lafs_core::client`). Time is [`clock::now`]: microseconds
//! since the Unix epoch, as in lafs-runtime-std. `examples/smol_grid.rs` runs a grid and a
//! client inside one smol program.
//!
//! ```no_run
//! use lafs_core::server::{ServerConfig, StorageServer};
//! use lafs_core::store::MemoryShareStore;
//! use lafs_runtime_smol::{ClientConfig, GridClient, Server, ServerEntry};
//!
//! smol::block_on(async {
//!     let store = MemoryShareStore::new(1 << 30, 1 << 30);
//!     let server = Server::bind(
//!         "127.0.0.1:0".parse().unwrap(),
//!         StorageServer::new(store, ServerConfig::default()),
//!     )?;
//!     let addr = server.local_addr()?;
//!     let _running = smol::spawn(server.run()); // dropping the task stops the server
//!     let id = lafs_core::placement::ServerId([7; 32]);
//!     let entry = ServerEntry { id, addr, permutation_seed: id.0.to_vec() };
//!     let mut config = ClientConfig::new(b"convergence".to_vec(), b"lease".to_vec());
//!     config.upload.params.happy = 1;
//!     let client = GridClient::new(vec![entry], config);
//!     let cap = client.upload_bytes(&[42; 10_000]).await?.cap;
//!     let (bytes, _) = client.download_bytes(&cap).await?;
//!     assert_eq!(bytes, vec![42; 10_000]);
//!     Ok::<_, Box<dyn std::error::Error>>(())
//! })
//! .unwrap();
//! ```

//! Under `--cfg loom` only the `sync` shim is compiled: the structures shared between tasks
//! and threads are lafs-core's behind that shim's locks, one call per critical section, the
//! pattern lafs-runtime-std model-checks (smol's own building blocks do not build under loom).

#[cfg(not(loom))]
pub mod client;
#[cfg(not(loom))]
pub mod clock;
#[cfg(not(loom))]
mod connection;
#[cfg(not(loom))]
pub mod server;
mod sync;
#[cfg(not(loom))]
mod turns;

#[cfg(not(loom))]
pub use client::{
    AsyncReadSeek, AsyncSink, ClientConfig, ClientError, DownloadReport, GridClient,
    MutableReadReport, MutableWriteReport, ServerEntry, Stage, TransferProgress, TransferStats,
    UploadReport,
};
#[cfg(not(loom))]
pub use server::Server;
