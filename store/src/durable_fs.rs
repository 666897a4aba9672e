//! Filesystem steps of the disk store, each with what makes it durable: directory syncs,
//! syncs of many files at once, directory creation and cleanup, share-file names.

use std::fs::{self, File};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use lafs_core::store::StoreError;

/// A failed filesystem step as a store error: a full disk is `NoSpace` (the amount is unknown
/// when the disk itself refused, so both fields are 0), anything else `Io` with the path.
pub fn io_error(action: &str, path: &Path, e: std::io::Error) -> StoreError {
    if e.kind() == ErrorKind::StorageFull || e.kind() == ErrorKind::QuotaExceeded {
        return StoreError::NoSpace {
            needed: 0,
            available: 0,
        };
    }
    StoreError::Io(format!("{action} {}: {e}", path.display()))
}

/// Fsyncs a directory so that entries created, renamed or removed in it are durable.
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("syncing directory", dir, e))
}

/// Creates the missing directories from below `base` down to `dir` (`base` must exist) without
/// syncing anything, and adds to `to_sync` the parent of each directory it created: syncing
/// those (and `dir` after renaming into it) makes the new entries durable. Deferring the syncs
/// lets one batch of renames share them, and the order does not matter for safety: until every
/// sync has returned nothing is acknowledged, and a share renamed into a directory whose own
/// entry was lost in a crash is simply not there.
pub fn create_dirs(base: &Path, dir: &Path, to_sync: &mut Vec<PathBuf>) -> Result<(), StoreError> {
    if dir.is_dir() {
        return Ok(());
    }
    let Ok(rel) = dir.strip_prefix(base) else {
        return Err(StoreError::Io(format!(
            "{} is not under {}",
            dir.display(),
            base.display()
        )));
    };
    let mut current = base.to_path_buf();
    for part in rel.components() {
        let parent = current.clone();
        current.push(part);
        match fs::create_dir(&current) {
            Ok(()) => {
                if !to_sync.contains(&parent) {
                    to_sync.push(parent);
                }
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_error("creating directory", &current, e)),
        }
    }
    Ok(())
}

/// Most threads one batch of syncs runs on (each blocks in the kernel, using no CPU).
const MAX_SYNC_THREADS: usize = 8;

/// Runs `sync` on every item, several at once on scoped threads (the device sees the flushes
/// together instead of one after another), and returns the results in order. Runs on the
/// calling thread alone when there is one item or a thread cannot be started.
pub fn sync_together<T: Sync>(
    items: &[T],
    sync: impl Fn(&T) -> Result<(), StoreError> + Sync,
) -> Vec<Result<(), StoreError>> {
    if items.len() <= 1 {
        return items.iter().map(&sync).collect();
    }
    let per_thread = items.len().div_ceil(MAX_SYNC_THREADS);
    let sync = &sync;
    std::thread::scope(|scope| {
        let mut chunks = items.chunks(per_thread);
        let first = chunks.next().unwrap_or(&[]);
        let spawned: Vec<_> = chunks
            .map(|chunk| {
                let handle = std::thread::Builder::new()
                    .name("lafs-sync".into())
                    .spawn_scoped(scope, move || chunk.iter().map(sync).collect::<Vec<_>>());
                (chunk, handle)
            })
            .collect();
        let mut out: Vec<_> = first.iter().map(sync).collect();
        for (chunk, handle) in spawned {
            match handle {
                Ok(h) => match h.join() {
                    Ok(results) => out.extend(results),
                    Err(_) => out.extend(
                        chunk
                            .iter()
                            .map(|_| Err(StoreError::Io("a sync thread failed".into()))),
                    ),
                },
                Err(_) => out.extend(chunk.iter().map(sync)),
            }
        }
        out
    })
}

/// Syncs each directory of `dirs` (together, see [`sync_together`]); the first failure.
pub fn sync_dirs(dirs: &[PathBuf]) -> Result<(), StoreError> {
    sync_together(dirs, |d| sync_dir(d)).into_iter().collect()
}

/// Creates `dir` and its missing parents below `base` (which must exist), fsyncing the parent of
/// each directory created so the new entries survive a crash.
pub fn create_dirs_durably(base: &Path, dir: &Path) -> Result<(), StoreError> {
    let mut to_sync = Vec::new();
    create_dirs(base, dir, &mut to_sync)?;
    sync_dirs(&to_sync)
}

/// Fsyncs `dir`, or its nearest existing ancestor up to `stop` if it was removed.
pub fn sync_nearest_dir(dir: &Path, stop: &Path) -> Result<(), StoreError> {
    let mut current = dir;
    while !current.is_dir() && current != stop {
        match current.parent() {
            Some(p) => current = p,
            None => break,
        }
    }
    sync_dir(current)
}

/// Removes `dir` and then its parents up to (not including) `stop`, while they are empty.
/// Best effort: an empty directory left behind costs nothing.
pub fn remove_empty_dirs(dir: &Path, stop: &Path) {
    let mut current = dir;
    while current != stop && current.starts_with(stop) {
        if fs::remove_dir(current).is_err() {
            return;
        }
        match current.parent() {
            Some(p) => current = p,
            None => return,
        }
    }
}

/// The share number a file name denotes: canonical decimal only (`"7"`, not `"07"`).
pub fn parse_shnum(name: &str) -> Option<u16> {
    let n: u16 = name.parse().ok()?;
    (n.to_string() == name).then_some(n)
}

/// Names of the entries of a directory that are valid UTF-8 (others cannot be ours).
pub fn read_dir_names(dir: &Path) -> Result<Vec<String>, StoreError> {
    let entries = fs::read_dir(dir).map_err(|e| io_error("listing", dir, e))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error("listing", dir, e))?;
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    Ok(names)
}

/// Share files in a bucket directory, ascending by share number; a missing directory is empty.
pub fn list_bucket(dir: &Path) -> Result<Vec<(u16, u64)>, StoreError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error("listing", dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error("listing", dir, e))?;
        let Some(shnum) = entry.file_name().to_str().and_then(parse_shnum) else {
            continue;
        };
        let meta = entry
            .metadata()
            .map_err(|e| io_error("reading metadata of", &entry.path(), e))?;
        if meta.is_file() {
            out.push((shnum, meta.len()));
        }
    }
    out.sort_unstable();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_numbers_are_canonical_decimal() {
        assert_eq!(parse_shnum("0"), Some(0));
        assert_eq!(parse_shnum("255"), Some(255));
        assert_eq!(parse_shnum("65535"), Some(65535));
        for bad in ["", "07", "+7", "-1", "65536", "x", " 1"] {
            assert_eq!(parse_shnum(bad), None, "{bad:?}");
        }
    }
}
