//! lafs-sim: deterministic simulation of a lafs grid in virtual time.
//!
//! Not built yet: it arrives with the simulator issue. This crate exists so the workspace has the
//! shape the design fixes, and its `clippy.toml` already holds it to the core's purity rules.
