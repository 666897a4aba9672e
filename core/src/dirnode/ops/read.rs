//! Reading one directory: the file that holds it (a mutable file through Retrieve, an immutable
//! one through Download, a literal one in the cap itself), decoded with the access its cap
//! grants.

use crate::cap::{Cap, DirCap};
use crate::dirnode::{Access, ChildCap, Directory};
use crate::immutable::download::ChkFile;
use crate::mutable::{FileKeys, ServerMap};
use crate::time::Instant;

use super::ctx::Ctx;
use super::error::{kind_of, show_path, DirOpError};
use super::progress::DirProgress;
use super::subops::{SubDone, SubId};

/// A directory as read.
#[derive(Debug)]
pub(crate) struct Fetched {
    pub dir: Directory,
    /// The warm map for an edit, when the cap can write.
    pub map: Option<ServerMap>,
}

/// A read started: done already (literal directories, unusable caps) or running.
#[derive(Debug)]
pub(crate) enum Reading {
    Now(Box<Result<Fetched, DirOpError>>),
    Running(SubId),
}

/// The directory cap inside `cap`, or why `cap` is not one (named by `path`).
pub(crate) fn dir_cap(cap: &Cap, path: &[String]) -> Result<DirCap, DirOpError> {
    match cap {
        Cap::Directory(d) => Ok(d.clone()),
        other => Err(DirOpError::NotADirectory {
            path: show_path(path),
            kind: kind_of(&ChildCap::Known(other.clone())),
        }),
    }
}

/// The access `cap` grants to its directory.
pub(crate) fn access_of(cap: &Cap, path: &[String]) -> Result<Access, DirOpError> {
    Access::for_cap(&dir_cap(cap, path)?).ok_or(DirOpError::VerifyCap)
}

/// Starts reading the directory `cap` (at `path` below the operation's root, for messages).
pub(crate) fn start(now: Instant, ctx: &mut Ctx, cap: &Cap, path: &[String]) -> Reading {
    let d = match dir_cap(cap, path) {
        Ok(d) => d,
        Err(e) => return Reading::Now(Box::new(Err(e))),
    };
    let Some(access) = Access::for_cap(&d) else {
        return Reading::Now(Box::new(Err(DirOpError::VerifyCap)));
    };
    match d.file_cap() {
        Cap::Lit { data } => Reading::Now(Box::new(
            Directory::unpack(data, access)
                .map(|dir| Fetched { dir, map: None })
                .map_err(|source| DirOpError::Malformed {
                    path: show_path(path),
                    source,
                }),
        )),
        chk @ Cap::ChkRead { .. } => match ChkFile::from_cap(chk) {
            Some(file) => Reading::Running(ctx.subs.download(now, file)),
            None => Reading::Now(Box::new(Err(DirOpError::UnknownCap {
                path: show_path(path),
            }))),
        },
        file => match FileKeys::from_cap(file) {
            Ok(keys) => Reading::Running(ctx.subs.retrieve(now, keys)),
            Err(_) => Reading::Now(Box::new(Err(DirOpError::UnknownCap {
                path: show_path(path),
            }))),
        },
    }
}

/// Decodes a finished read of `cap`. A writeable directory found malformed is forgotten by the
/// cache, so no later edit starts from its old state.
pub(crate) fn finish(
    ctx: &mut Ctx,
    cap: &Cap,
    path: &[String],
    done: SubDone,
) -> Result<Fetched, DirOpError> {
    let access = access_of(cap, path)?;
    let (bytes, map) = match done {
        SubDone::Retrieved(Ok((bytes, map))) => (bytes, Some(map)),
        SubDone::Retrieved(Err(source)) => {
            return Err(DirOpError::Read {
                path: show_path(path),
                source,
            })
        }
        SubDone::Downloaded(Ok(bytes)) => (bytes, None),
        SubDone::Downloaded(Err(source)) => {
            return Err(DirOpError::Download {
                path: show_path(path),
                source,
            })
        }
        SubDone::Published(_) => {
            // Not a read's outcome; only a bug in the caller's bookkeeping could bring it here.
            return Err(DirOpError::UnknownCap {
                path: show_path(path),
            });
        }
    };
    ctx.progress.push_back(DirProgress::Read {
        path: show_path(path),
    });
    match Directory::unpack(&bytes, access) {
        Ok(dir) => {
            let writeable = matches!(access, Access::ReadWrite { .. });
            Ok(Fetched {
                dir,
                map: map.filter(|_| writeable),
            })
        }
        Err(source) => {
            ctx.memo.forget(cap.clone());
            Err(DirOpError::Malformed {
                path: show_path(path),
                source,
            })
        }
    }
}
