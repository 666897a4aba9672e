//! Progress reports every directory operation emits as it goes.

use crate::time::Instant;

/// Steps a directory operation reports as it goes (for logs and progress displays). Paths are
/// shown as names, never caps.
#[derive(Clone, Debug, PartialEq)]
pub enum DirProgress {
    /// A directory was read from the grid.
    Read { path: String },
    /// A new version of a directory was published.
    Published { path: String },
    /// Another writer changed the directory first; it will be read again and the change
    /// reapplied at `retry_at`.
    Conflict {
        path: String,
        attempt: u32,
        retry_at: Instant,
    },
    /// A new, still unlinked directory was created.
    Created,
}
