//! Directory operations as sans-IO state machines: list, look up, make, link, unlink, rename and
//! move, each implementing [`crate::op::ClientOp`] so any runtime or the simulator can drive it.
//!
//! Every operation is built from the mutable-file state machines ([`crate::mutable::Retrieve`],
//! [`crate::mutable::Publish`]) and, for immutable directories, [`crate::immutable::download`],
//! run as sub-operations behind one request-id table ([`subops`]). Three pieces are shared:
//!
//! - [`walk`]: resolves the directories of a path, reading the levels it can guess from the
//!   [`DirCache`] side by side (one round trip for a remembered path) and trusting a guess only
//!   when its parent's fresh read links it; optionally making missing directories (`-p`).
//! - [`edit`]: one read-modify-write of one directory, with test-and-set conflicts retried after
//!   a re-read, a timer-driven backoff and a bounded number of attempts. A refused edit
//!   publishes nothing, and a retry never applies a change twice.
//! - [`cache`]: the remembered (server map, contents) of writeable directories, bounded by bytes;
//!   an operation takes the states it may edit when it starts and hands back what it learned
//!   when it ends ([`DirCache::take`], `return_to`).
//!
//! Nothing here reads a clock or the OS: link times come from the `now` each call is given,
//! jitter and publish salts from the caller's seed, and keys for new directories from the caller
//! (a `NeedKey` event answered by `provide_key`).

pub mod backoff;
pub mod cache;
pub(crate) mod ctx;
pub(crate) mod edit;
pub mod error;
pub mod link;
pub mod list;
pub mod lookup;
pub mod mkdir;
pub mod mkdir_at;
pub mod progress;
pub(crate) mod read;
pub mod rename;
pub(crate) mod subops;
pub mod unlink;
pub(crate) mod walk;
pub(crate) mod walk_edit;
pub use backoff::MAX_ATTEMPTS;
pub use cache::{DirCache, Remembered};
pub use ctx::DirConfig;
pub use error::{kind_of, show_path, DirOpError};
pub use link::{Link, LinkEvent, LinkOptions, Linked};
pub use list::{List, ListEvent};
pub use lookup::{Found, Lookup, LookupEvent};
pub use mkdir::{Mkdir, MkdirEvent};
pub use mkdir_at::{MkdirAt, MkdirAtEvent};
pub use progress::DirProgress;
pub use rename::{Move, MoveEvent};
pub use unlink::{Unlink, UnlinkEvent};
