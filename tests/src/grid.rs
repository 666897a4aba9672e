//! The in-memory grid pump lives in lafs-core (feature `testing`) so lafs-core's own tests
//! run every client operation; suites here use it through this path.

pub use lafs_core::testing::grid::*;
