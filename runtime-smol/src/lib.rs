//! lafs-runtime-smol: the smol/async-io driver for lafs-core.
//!
//! Not built yet: it arrives with the runtime-smol issue. This crate exists so the workspace has
//! the shape the design fixes; it exports nothing.
