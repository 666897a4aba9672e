//! Mutable files (SDMF and MDMF, Tahoe's formats): share layout, encoding, and the servermap,
//! retrieve and publish state machines.

pub mod layout;
pub mod modify;
pub mod publish;
mod requests;
pub mod retrieve;
pub mod servermap;
pub mod share;

pub use layout::{LayoutError, MutableFormat, Offsets, Prefix, Span};
pub use modify::{Modify, ModifyError, ModifyEvent};
pub use publish::{Publish, PublishConfig, PublishError, PublishEvent, PublishResult};
pub use retrieve::{Retrieve, RetrieveConfig, RetrieveError, RetrieveEvent, RetrieveResult};
pub use servermap::{FileKeys, ServerMap, SigningKey};
