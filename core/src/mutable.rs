//! Mutable files (SDMF and MDMF, Tahoe's formats): share layout, encoding, and the servermap,
//! retrieve and publish state machines.

pub mod layout;
pub mod share;

pub use layout::{LayoutError, MutableFormat, Offsets, Prefix, Span};
