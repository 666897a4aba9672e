//! Directories (dirnodes) in Tahoe's format: the child table that is a directory's plaintext,
//! and the in-memory operations on it (tahoe-formats.md §6).
//!
//! A directory is a file whose plaintext is the packed child table: a mutable SDMF/MDMF file for
//! `URI:DIR2:`/`URI:DIR2-MDMF:` caps, an immutable one for `URI:DIR2-CHK:`/`URI:DIR2-LIT:`.
//! Fetching and publishing that file is the mutable/immutable code's job; this module turns the
//! bytes into a [`Directory`] and back, byte-identical to Tahoe:
//!
//! ```text
//! plaintext = netstring(entry) for each child, sorted by NFC name
//! entry     = netstring(name) || netstring(read cap) || netstring(encrypted write cap)
//!             || netstring(metadata as Python's json.dumps writes it)
//! ```
//!
//! A typical read-modify-write: [`Directory::unpack`] the current plaintext with the
//! [`Access`] the directory cap grants, [`Directory::add`]/[`Directory::remove`]/
//! [`Directory::rename`] with the caller's clock reading, then [`Directory::pack`] and publish.
//! A malformed table gives a [`DirnodeError`] before anything is changed.

pub mod access;
pub mod child;
pub mod edit;
pub mod entry;
pub mod json;
pub mod metadata;
pub mod ops;
pub mod path;
pub mod table;

pub use access::Access;
pub use child::{CapConstraintError, ChildCap, UnknownCap};
pub use edit::{EditError, Overwrite};
pub use json::{JsonError, JsonObject, JsonValue};
pub use metadata::Metadata;
pub use path::{split_path, PathError, Step};
pub use table::{
    pack_children, unpack_children, Child, Directory, DirnodeError, SkipReason, SkippedEntry,
};
