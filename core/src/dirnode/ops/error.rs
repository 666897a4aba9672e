//! Why a directory operation failed, in words a user can act on.
//!
//! Messages name paths (as the user typed them, relative to the root they gave) and kinds of
//! caps, never a cap itself: caps are secrets and errors end up in logs. Nothing stored was
//! changed unless the message says so.

use crate::cap::Cap;
use crate::dirnode::{ChildCap, DirnodeError, EditError, PathError};
use crate::immutable::download::DownloadError;
use crate::mutable::{PublishError, RetrieveError};

/// Why a directory operation failed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum DirOpError {
    #[error(
        "{path} could not be read: {source}; check that enough storage servers are connected, \
         then try again"
    )]
    Read {
        path: String,
        #[source]
        source: RetrieveError,
    },
    #[error(
        "{path} (an immutable directory) could not be read: {source}; check that enough \
         storage servers are connected, then try again"
    )]
    Download {
        path: String,
        #[source]
        source: DownloadError,
    },
    #[error("{path} could not be written: {source}")]
    Publish {
        path: String,
        #[source]
        source: PublishError,
    },
    #[error("the new directory could not be created: {source}")]
    Create {
        #[source]
        source: PublishError,
    },
    #[error(
        "{path} is not a valid directory: {source}; it was left as it is (nothing was changed)"
    )]
    Malformed {
        path: String,
        #[source]
        source: DirnodeError,
    },
    #[error("{path}: {source}")]
    Edit {
        path: String,
        #[source]
        source: EditError,
    },
    #[error("bad path: {0}")]
    Path(#[from] PathError),
    #[error(
        "{path} is read-only (reached through a {kind} read cap); use its write cap to change it"
    )]
    ReadOnly { path: String, kind: &'static str },
    #[error("{path} is not a directory (it is a {kind})")]
    NotADirectory { path: String, kind: String },
    #[error("{path} does not exist")]
    NotFound { path: String },
    #[error("{path} already exists; choose another name or remove it first")]
    Exists { path: String },
    #[error("a verify cap can neither list nor change a directory; use its read or write cap")]
    VerifyCap,
    #[error("{path}: a path needs at least one name here (the directory itself cannot be {what})")]
    NeedsName { path: String, what: &'static str },
    #[error("{path}: its cap is of a kind this version does not know, so it cannot be opened")]
    UnknownCap { path: String },
    #[error("no key for a new directory: {reason}; nothing was linked, try again later")]
    NoKey { reason: String },
    #[error(
        "{path} kept changing under us: {attempts} attempts each found another writer's newer \
         version; nothing of ours was written, try again"
    )]
    TooManyConflicts { path: String, attempts: u32 },
}

/// `"a/b/c"` for messages (`the directory` for the root itself).
pub fn show_path(path: &[String]) -> String {
    if path.is_empty() {
        "the directory".to_string()
    } else {
        format!("{:?}", path.join("/"))
    }
}

/// What a child cap is, in words.
pub fn kind_of(cap: &ChildCap) -> String {
    match cap {
        ChildCap::Known(Cap::Directory(d)) => format!("{} directory", d.kind_name()),
        ChildCap::Known(c) if c.is_mutable() => format!("{} mutable file", c.kind_name()),
        ChildCap::Known(c) => format!("{} file", c.kind_name()),
        ChildCap::Unknown(_) => "cap of an unknown kind".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_paths_and_kinds_but_never_caps() {
        let file = Cap::parse(
            "URI:SSK:vfvcbdfbszyrsaxchgevhmmlii:euw4iw7bbnkrrwpzuburbhppuxhc3gwxv26f6imekhz7zyw2ojnq",
        )
        .unwrap();
        let e = DirOpError::NotADirectory {
            path: show_path(&["a".into(), "b".into()]),
            kind: kind_of(&ChildCap::from_cap(file)),
        };
        let text = e.to_string();
        assert_eq!(
            text,
            "\"a/b\" is not a directory (it is a SSK mutable file)"
        );
        assert!(!text.contains("URI:"));
        assert_eq!(show_path(&[]), "the directory");
    }
}
