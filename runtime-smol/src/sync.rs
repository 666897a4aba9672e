//! The synchronisation primitives this runtime shares between tasks and threads, switched to
//! loom's model-checked versions under `--cfg loom`.
//!
//! Shared structures import from here rather than `std::sync`, so
//! `RUSTFLAGS="--cfg loom" cargo test -p lafs-runtime-smol --release loom` explores their
//! interleavings. Under loom only the loom tests are meaningful (sockets do not run inside a
//! loom model).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{Arc, Mutex, MutexGuard};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::{Arc, Mutex, MutexGuard};

/// Lock a mutex, carrying on with the data if a thread panicked while holding it: every
/// critical section in this crate leaves its data consistent between statements that can panic.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
