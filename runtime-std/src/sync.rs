//! The synchronisation primitives the runtime shares between threads, switched to loom's
//! model-checked versions under `--cfg loom`.
//!
//! Every structure shared between threads imports from here rather than `std::sync`, so
//! `RUSTFLAGS="--cfg loom" cargo test -p lafs-runtime-std --release loom` explores its
//! interleavings. Under loom only the loom tests are meaningful (real sockets and files do not run
//! inside a loom model).

#[cfg(loom)]
pub use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
#[cfg(loom)]
pub use loom::sync::{Arc, Condvar, Mutex, MutexGuard};
#[cfg(loom)]
pub use loom::thread;

#[cfg(not(loom))]
pub use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
#[cfg(not(loom))]
pub use std::sync::{Arc, Condvar, Mutex, MutexGuard};
#[cfg(not(loom))]
pub use std::thread;
