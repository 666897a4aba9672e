//! Where an upload's shares go: the permuted ring, servers-of-happiness, and the placement planner.
//!
//! Three concepts, one submodule each (spec: tahoe-formats.md §7):
//! - [`ring`]: the per-file server order, `SHA1(storage_index || permutation_seed)` ascending, so that
//!   uploaders and downloaders of the same file independently look at the same servers first;
//! - [`mod@happiness`]: the upload health metric, the size of a maximum bipartite matching between
//!   servers and the share numbers they hold;
//! - [`planner`]: a pure state machine that assigns share numbers to servers, reacts to their
//!   answers (accepted, already have, refused, disconnected) and decides success or failure.

pub mod happiness;
pub mod planner;
pub mod ring;

pub use happiness::{happiness, maximum_matching};
pub use planner::{
    Assignment, Outcome, Placement, PlacementError, PlacementParams, Planner, RefusalReason,
    Status, MAX_SHARES,
};
pub use ring::{permuted_order, permuted_order_preferring, ring_key, ServerDescriptor, ServerId};
