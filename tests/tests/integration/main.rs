//! Every integration test of this crate in one binary (one link instead of one per file). The
//! client operations' own suites (immutable, ranged, mutable, directory) run in lafs-core's
//! tests, on its in-memory grid.

mod e2e;
mod tahoe_vectors;
