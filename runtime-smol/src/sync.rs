//! The synchronisation primitives this runtime shares between tasks and threads, switched to
//! loom's model-checked versions under `--cfg loom`.
//!
//! Shared structures import from here rather than `std::sync`. Today they are lafs-core's
//! (routes, the connection table) behind these locks, one call per critical section: the
//! pattern lafs-runtime-std's loom tests check, so this crate has none of its own and under
//! loom compiles only this module.

#![cfg_attr(loom, allow(unused_imports, dead_code))]

#[cfg(loom)]
pub(crate) use loom::sync::{Arc, Mutex, MutexGuard};

#[cfg(not(loom))]
pub(crate) use std::sync::{Arc, Mutex, MutexGuard};

/// Lock a mutex, carrying on with the data if a thread panicked while holding it: every
/// critical section in this crate leaves its data consistent between statements that can panic.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
