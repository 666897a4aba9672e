//! What the CLI and the gateway add to the grid client's directory operations: a cheap look at
//! what a path links before writing there, and "upload a file and link it at a path".

use lafs_core::cap::Cap;
use lafs_core::crypto::key_source::{KeySource, RngKeys};
use lafs_core::dirnode::ops::{show_path, DirOpError, LinkOptions};
use lafs_core::dirnode::{Child, ChildCap, Overwrite};
use lafs_runtime_std::net::{ClientError, GridClient, ReadSeek, UploadReport};

/// Keys for operations that normally make no directory: generated on the spot if one is ever
/// asked for (a key pool would spend a background thread on keys nobody uses).
pub fn spot_keys() -> RngKeys<getrandom::SysRng> {
    RngKeys::new(getrandom::SysRng)
}

/// What `path` below `root` links now: from the client's remembered directories when they
/// reach that far (no round trip), else looked up. For choosing how to write there (update a
/// mutable file in place, answer 200 or 201): the write itself checks again. A missing
/// directory on the way counts as nothing linked.
pub fn peek(grid: &GridClient, root: &Cap, path: &[String]) -> Result<Option<Child>, ClientError> {
    if let Some(guess) = grid.remembered_child(root, path) {
        return Ok(guess);
    }
    match grid.lookup(root, path) {
        Ok(found) => Ok(Some(Child {
            cap: found.cap,
            metadata: found.metadata.unwrap_or_default(),
        })),
        Err(ClientError::Dir(DirOpError::NotFound { .. })) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A client error if `overwrite` forbids replacing `existing` at `path` (so nothing is uploaded
/// only to be refused at the link).
pub fn check_replaceable(
    path: &[String],
    existing: Option<&Child>,
    overwrite: Overwrite,
) -> Result<(), ClientError> {
    let (Some(existing), Some((name, dirs))) = (existing, path.split_last()) else {
        return Ok(());
    };
    match overwrite.refusal(name, &existing.cap) {
        Some(refused) => Err(ClientError::Dir(DirOpError::Edit {
            path: show_path(dirs),
            source: refused,
        })),
        None => Ok(()),
    }
}

/// Upload `size` bytes of `reader` as an immutable file and link it as `path` below `root`,
/// replacing a link as `overwrite` allows; with `parents`, missing directories on the way are
/// made (SDMF, keys from `keys`). A link the policy forbids is refused before anything is
/// uploaded. Returns the upload and the link it replaced.
pub fn put_file(
    grid: &GridClient,
    root: &Cap,
    path: &[String],
    (size, reader): (u64, &mut dyn ReadSeek),
    overwrite: Overwrite,
    parents: bool,
    keys: &mut dyn KeySource,
) -> Result<(UploadReport, Option<Child>), ClientError> {
    let existing = peek(grid, root, path)?;
    check_replaceable(path, existing.as_ref(), overwrite)?;
    let report = grid.upload_reader(size, reader, &mut |_| {})?;
    let options = LinkOptions::put(overwrite, parents);
    let link = ChildCap::Known(report.cap.clone());
    let linked = grid.link(root, path, link, options, keys)?;
    Ok((report, linked.replaced))
}
