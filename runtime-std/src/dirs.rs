//! Directories on a grid: make, list, look up paths, link, unlink and move children, driving
//! lafs-core's `dirnode` (Tahoe's child table) over [`GridClient`]'s mutable files.
//!
//! Every change is a read-modify-write of one directory: read it (one round trip, which also
//! gives a warm server map), change the decoded [`Directory`], publish it with that map (one
//! round trip, test-and-set on every server). A [`DirClient`] remembers the map and contents of
//! each writeable directory it last read or wrote, so the next edit of the same directory skips
//! the read: one round trip. If someone else changed the directory meanwhile, the servers refuse
//! the publish ([`PublishError::Conflict`]); the client then drops what it remembered, reads the
//! directory again and reapplies the edit, a few times before giving up. A refused edit (a name
//! that exists, a read-only directory, a malformed table) publishes nothing.
//!
//! Keys for new directories come from the [`KeySource`] the client is given: a
//! [`crate::keypool::KeyPool`] makes creation independent of RSA generation time.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lafs_core::cap::{Cap, DirCap};
use lafs_core::crypto::key_source::{KeySource, KeySourceError};
use lafs_core::dirnode::{
    Access, Child, ChildCap, Directory, DirnodeError, EditError, Metadata, Overwrite, PathError,
};
use lafs_core::mutable::layout::MutableFormat;
use lafs_core::mutable::{PublishConfig, PublishError, ServerMap};

use crate::net::{ClientError, GridClient, ReadSeek, UploadReport};
use crate::sync::{Arc, Mutex, MutexGuard};

/// How many times an edit is tried when other writers keep changing the directory (with a
/// random pause, growing to at most 64 ms, between tries).
pub const MAX_ATTEMPTS: u32 = 16;

/// Why a directory operation failed. Nothing stored was changed unless the message says so.
/// Messages never quote caps (they are secrets and errors get logged).
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    #[error(transparent)]
    Client(#[from] ClientError),
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
    #[error("{path} already exists")]
    Exists { path: String },
    #[error("a verify cap can neither list nor change a directory")]
    VerifyCap,
    #[error("{path}: a path needs at least one name here (the directory itself cannot be {what})")]
    NeedsName { path: String, what: &'static str },
    #[error("{path}: its cap is of a kind this version does not know, so it cannot be opened")]
    UnknownCap { path: String },
    #[error("no key for a new directory: {0}")]
    Keys(#[from] KeySourceError),
    #[error(
        "{path} kept changing under us: {attempts} attempts each found another writer's newer \
         version; nothing of ours was written, try again"
    )]
    TooManyConflicts { path: String, attempts: u32 },
}

/// What a directory client has done, for tests and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirStats {
    /// Sequential round trips of every read, publish and upload, summed.
    pub round_trips: u64,
    /// Directory reads (each one round trip for a directory of a few hundred entries).
    pub reads: u64,
    /// Directory publishes that succeeded.
    pub publishes: u64,
    /// Publishes refused because another writer got there first (each was retried).
    pub conflicts: u64,
}

/// The last known state of a writeable directory.
struct Cached {
    map: ServerMap,
    dir: Directory,
}

/// A path or child found by [`DirClient::lookup`].
#[derive(Clone, Debug, PartialEq)]
pub struct Found {
    /// What the path names (the directory itself for an empty path).
    pub cap: ChildCap,
    /// The link's metadata (none for the directory itself).
    pub metadata: Option<Metadata>,
}

/// The remembered state of recently used writeable directories, shareable between the
/// directory clients of several threads (a gateway's workers): whichever edits a directory
/// next starts from the newest state any of them saw. An edit takes the entry out while it
/// works, so two concurrent edits of one directory never start from the same remembered map
/// (the second reads afresh, and test-and-set sorts out the rest).
///
/// Edits of one directory through clients sharing a cache also take turns (a lock per
/// directory): they would otherwise race each other on the servers, each conflict costing a
/// re-read and a retry, until many writers to one directory (a gateway's workers adding files
/// to one folder) run out of attempts. Writers in other processes are still sorted out by
/// test-and-set.
#[derive(Clone, Default)]
pub struct DirCache {
    states: Arc<Mutex<HashMap<Cap, Cached>>>,
    /// One lock per directory being edited, with how many edits hold or await it (removed
    /// at zero).
    editing: Arc<Mutex<HashMap<Cap, TurnLock>>>,
}

/// A directory's edit lock and its number of holders and waiters.
type TurnLock = (Arc<Mutex<()>>, usize);

/// A turn at editing one directory, given back when dropped.
struct EditTurn<'c> {
    cache: &'c DirCache,
    cap: Cap,
    lock: Arc<Mutex<()>>,
}

impl EditTurn<'_> {
    /// Run `f` holding the turn.
    fn hold<T>(&self, f: impl FnOnce() -> T) -> T {
        let _held = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        f()
    }
}

impl Drop for EditTurn<'_> {
    fn drop(&mut self) {
        let mut editing = self.cache.editing.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, users)) = editing.get_mut(&self.cap) {
            *users -= 1;
            if *users == 0 {
                editing.remove(&self.cap);
            }
        }
    }
}

impl DirCache {
    pub fn new() -> DirCache {
        DirCache::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Cap, Cached>> {
        self.states.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The turn at editing `cap` (to [`EditTurn::hold`] while reading, editing, publishing).
    fn turn(&self, cap: &Cap) -> EditTurn<'_> {
        let mut editing = self.editing.lock().unwrap_or_else(|e| e.into_inner());
        let (lock, users) = editing
            .entry(cap.clone())
            .or_insert_with(|| (Arc::new(Mutex::new(())), 0));
        *users += 1;
        let lock = Arc::clone(lock);
        drop(editing);
        EditTurn {
            cache: self,
            cap: cap.clone(),
            lock,
        }
    }

    fn insert(&self, cap: Cap, c: Cached) {
        self.lock().insert(cap, c);
    }

    fn remove(&self, cap: &Cap) -> Option<Cached> {
        self.lock().remove(cap)
    }

    /// Directories remembered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Debug for DirCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirCache")
            .field("cached", &self.len())
            .finish()
    }
}

/// Directory operations over one grid client, with a cache of recently used directories.
pub struct DirClient<'a> {
    grid: &'a GridClient,
    keys: Box<dyn KeySource + 'a>,
    cache: DirCache,
    stats: DirStats,
}

impl std::fmt::Debug for DirClient<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirClient")
            .field("cached", &self.cache.len())
            .field("stats", &self.stats)
            .finish()
    }
}

/// Seconds since the epoch, as Tahoe records link times.
pub fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `name/name/...` for messages (`<root>` for the directory itself).
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

fn dir_cap(cap: &Cap, path: &[String]) -> Result<DirCap, DirError> {
    match cap {
        Cap::Directory(d) => Ok(d.clone()),
        other => Err(DirError::NotADirectory {
            path: show_path(path),
            kind: kind_of(&ChildCap::Known(other.clone())),
        }),
    }
}

fn is_conflict(e: &ClientError) -> bool {
    matches!(e, ClientError::Publish(PublishError::Conflict { .. }))
}

/// A short random pause before retrying a conflicted edit, so two writers stop colliding.
fn backoff(attempt: u32) {
    use rand::Rng;
    let max_us = 2_000u64 << attempt.min(5);
    std::thread::sleep(Duration::from_micros(
        rand::thread_rng().gen_range(0..max_us),
    ));
}

/// A directory as read from the grid.
struct Fetched {
    dir: Directory,
    /// The warm map for an edit, when the cap can write.
    map: Option<ServerMap>,
    round_trips: u64,
    /// Reads from the grid it took (none for a LIT directory).
    reads: u64,
}

/// Read and decode a directory from the grid. Needs only the grid and the cache (it forgets a
/// directory found malformed), so several can run at once on other threads.
fn fetch_dir(
    grid: &GridClient,
    cache: &DirCache,
    dircap: &Cap,
    path: &[String],
) -> Result<Fetched, DirError> {
    let d = dir_cap(dircap, path)?;
    let access = Access::for_cap(&d).ok_or(DirError::VerifyCap)?;
    let malformed = |source| DirError::Malformed {
        path: show_path(path),
        source,
    };
    match d.file_cap() {
        Cap::Lit { data } => Ok(Fetched {
            dir: Directory::unpack(data, access).map_err(malformed)?,
            map: None,
            round_trips: 0,
            reads: 0,
        }),
        chk @ Cap::ChkRead { .. } => {
            let mut bytes = Vec::new();
            let report = grid.download(chk, &mut bytes, &mut |_| {})?;
            Ok(Fetched {
                dir: Directory::unpack(&bytes, access).map_err(malformed)?,
                map: None,
                round_trips: u64::from(report.stats.round_trips),
                reads: 1,
            })
        }
        _ => {
            let (bytes, report) = grid.read_mutable(dircap, None)?;
            let dir = match Directory::unpack(&bytes, access) {
                Ok(dir) => dir,
                Err(e) => {
                    cache.remove(dircap);
                    return Err(malformed(e));
                }
            };
            let writeable = matches!(access, Access::ReadWrite { .. });
            Ok(Fetched {
                dir,
                map: writeable.then_some(report.map),
                round_trips: u64::from(report.stats.round_trips),
                reads: 1,
            })
        }
    }
}

/// The directory `path` names below `root`, reading one directory after another (no
/// directory is made); with every read, for the caller to remember. Runs on any thread.
fn resolve(
    grid: &GridClient,
    cache: &DirCache,
    root: &Cap,
    path: &[String],
) -> Result<(Cap, Vec<(Cap, Fetched)>), DirError> {
    let mut here = root.clone();
    let mut fetched = Vec::new();
    for (i, name) in path.iter().enumerate() {
        let f = fetch_dir(grid, cache, &here, &path[..i])?;
        let next = match f.dir.get(name).map(|c| &c.cap) {
            Some(ChildCap::Known(cap @ Cap::Directory(_))) => cap.clone(),
            Some(other) => {
                return Err(DirError::NotADirectory {
                    path: show_path(&path[..=i]),
                    kind: kind_of(other),
                })
            }
            None => {
                return Err(DirError::NotFound {
                    path: show_path(&path[..=i]),
                })
            }
        };
        fetched.push((here, f));
        here = next;
    }
    Ok((here, fetched))
}

impl<'a> DirClient<'a> {
    /// A directory client over `grid`, creating directories with keys from `keys`.
    pub fn new(grid: &'a GridClient, keys: Box<dyn KeySource + 'a>) -> DirClient<'a> {
        DirClient::sharing(grid, keys, DirCache::new())
    }

    /// A directory client whose remembered directories are shared through `cache` with other
    /// clients over the same grid.
    pub fn sharing(
        grid: &'a GridClient,
        keys: Box<dyn KeySource + 'a>,
        cache: DirCache,
    ) -> DirClient<'a> {
        DirClient {
            grid,
            keys,
            cache,
            stats: DirStats::default(),
        }
    }

    /// The grid client underneath.
    pub fn grid(&self) -> &'a GridClient {
        self.grid
    }

    /// Counters since this client was made.
    pub fn stats(&self) -> DirStats {
        self.stats
    }

    /// A fresh key for a new mutable file, from this client's key source.
    pub fn next_key(&mut self) -> Result<lafs_core::crypto::rsa_keys::MutableKey, KeySourceError> {
        self.keys.next_key()
    }

    /// Forget every remembered directory (the next edit of each reads it first).
    pub fn clear_cache(&mut self) {
        self.cache.lock().clear();
    }

    /// Create an empty, unlinked directory and return its write cap (`URI:DIR2:` for SDMF,
    /// `URI:DIR2-MDMF:` for MDMF). One round trip.
    pub fn mkdir(&mut self, format: MutableFormat) -> Result<Cap, DirError> {
        let key = self.keys.next_key()?;
        let report = self
            .grid
            .create_mutable(format, key, Vec::new(), PublishConfig::default())?;
        self.stats.round_trips += u64::from(report.stats.round_trips);
        self.stats.publishes += 1;
        let cap = Cap::directory(report.cap).map_err(|e| {
            ClientError::NotMutableFile(format!("the new directory's cap is unusable: {e}"))
        })?;
        if let Cap::Directory(d) = &cap {
            if let Some(access) = Access::for_cap(d) {
                let dir = Directory::new(access);
                self.cache.insert(
                    cap.clone(),
                    Cached {
                        map: report.map,
                        dir,
                    },
                );
            }
        }
        Ok(cap)
    }

    /// Read and decode a directory (always from the grid: one round trip). Writeable
    /// directories are remembered for the next edit.
    pub fn list(&mut self, dircap: &Cap) -> Result<Directory, DirError> {
        self.read(dircap, &[])
    }

    fn read(&mut self, dircap: &Cap, path: &[String]) -> Result<Directory, DirError> {
        let fetched = self.fetch(dircap, path)?;
        Ok(self.remember(dircap, fetched))
    }

    /// A fetched directory's contents, its state remembered for the next edit when writeable.
    fn remember(&mut self, dircap: &Cap, fetched: Fetched) -> Directory {
        if let Some(map) = fetched.map {
            self.cache.insert(
                dircap.clone(),
                Cached {
                    map,
                    dir: fetched.dir.clone(),
                },
            );
        }
        fetched.dir
    }

    /// [`fetch_dir`], counted.
    fn fetch(&mut self, dircap: &Cap, path: &[String]) -> Result<Fetched, DirError> {
        let fetched = fetch_dir(self.grid, &self.cache, dircap, path)?;
        self.stats.round_trips += fetched.round_trips;
        self.stats.reads += fetched.reads;
        Ok(fetched)
    }

    /// The directories `path` leads through below `root` as far as remembered states tell:
    /// `root`, then the directory the remembered `root` links as `path[0]`, and so on, up to
    /// `levels` of them. Guesses only: each is confirmed by a fresh read of its parent.
    fn guess_chain(&self, root: &Cap, path: &[String], levels: usize) -> Vec<Cap> {
        let cache = self.cache.lock();
        let mut chain = vec![root.clone()];
        while chain.len() < levels {
            let i = chain.len() - 1;
            let next = cache
                .get(&chain[i])
                .and_then(|c| c.dir.get(&path[i]))
                .and_then(|child| match &child.cap {
                    ChildCap::Known(cap @ Cap::Directory(_)) => Some(cap.clone()),
                    _ => None,
                });
            match next {
                Some(cap) => chain.push(cap),
                None => break,
            }
        }
        chain
    }

    /// Read the first `levels` directories on `path` below `root`, all at once where the chain
    /// can be guessed ([`DirClient::guess_chain`]): a path of remembered directories costs one
    /// round trip instead of one per level. Returns each guess with its read, in order.
    fn prefetch(
        &mut self,
        root: &Cap,
        path: &[String],
        levels: usize,
    ) -> VecDeque<(Cap, Result<Fetched, DirError>)> {
        let chain = self.guess_chain(root, path, levels);
        if chain.len() < 2 {
            return VecDeque::new();
        }
        let (grid, cache) = (self.grid, &self.cache);
        let results = std::thread::scope(|scope| {
            let spawned: Vec<_> = chain
                .iter()
                .enumerate()
                .skip(1)
                .map(|(i, cap)| {
                    let dir_path = &path[..i];
                    let handle = std::thread::Builder::new()
                        .name("lafs-dir-read".into())
                        .spawn_scoped(scope, move || fetch_dir(grid, cache, cap, dir_path));
                    (i, handle)
                })
                .collect();
            let mut results = vec![fetch_dir(grid, cache, &chain[0], &[])];
            for (i, handle) in spawned {
                results.push(match handle {
                    Ok(h) => h.join().unwrap_or_else(|_| {
                        Err(ClientError::Stalled("directory read (its thread panicked)").into())
                    }),
                    // No thread to spare: read it here.
                    Err(_) => fetch_dir(grid, cache, &chain[i], &path[..i]),
                });
            }
            results
        });
        // The reads ran side by side: as deep as the deepest of them.
        let deepest = results
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|f| f.round_trips)
            .max()
            .unwrap_or(0);
        self.stats.round_trips += deepest;
        self.stats.reads += results
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|f| f.reads)
            .sum::<u64>();
        chain.into_iter().zip(results).collect()
    }

    /// The directory `here` (at `path`), from `ahead` if its next read is of `here`, else read
    /// now (and the rest of `ahead`, guessed along another chain, dropped).
    fn next_read(
        &mut self,
        ahead: &mut VecDeque<(Cap, Result<Fetched, DirError>)>,
        here: &Cap,
        path: &[String],
    ) -> Result<Directory, DirError> {
        match ahead.pop_front() {
            Some((cap, fetched)) if &cap == here => Ok(self.remember(here, fetched?)),
            _ => {
                ahead.clear();
                self.read(here, path)
            }
        }
    }

    /// Apply `edit` to the directory `dircap` and publish the result: one round trip when this
    /// client holds the directory's current state, two otherwise. Retried after a fresh read
    /// when another writer changed the directory. A refused edit publishes nothing.
    ///
    /// `edit` is called again for each retry, with `true` as its second argument. A refused
    /// publish may still have reached some servers, so the fresh read can already show the
    /// edit's effect: a retried edit should accept that (as [`DirClient::link`] accepts finding
    /// the very child it links).
    pub fn modify<T>(
        &mut self,
        dircap: &Cap,
        mut edit: impl FnMut(&mut Directory, bool) -> Result<T, EditError>,
    ) -> Result<T, DirError> {
        self.modify_at(dircap, &[], &mut edit)
    }

    fn modify_at<T>(
        &mut self,
        dircap: &Cap,
        path: &[String],
        edit: &mut dyn FnMut(&mut Directory, bool) -> Result<T, EditError>,
    ) -> Result<T, DirError> {
        let cache = self.cache.clone();
        let turn = cache.turn(dircap);
        turn.hold(|| self.modify_in_turn(dircap, path, edit))
    }

    /// [`DirClient::modify_at`], once this client's turn at editing `dircap` has come.
    fn modify_in_turn<T>(
        &mut self,
        dircap: &Cap,
        path: &[String],
        edit: &mut dyn FnMut(&mut Directory, bool) -> Result<T, EditError>,
    ) -> Result<T, DirError> {
        let d = dir_cap(dircap, path)?;
        match Access::for_cap(&d) {
            Some(Access::ReadWrite { .. }) => {}
            Some(_) => {
                return Err(DirError::ReadOnly {
                    path: show_path(path),
                    kind: d.kind_name(),
                })
            }
            None => return Err(DirError::VerifyCap),
        }
        for attempt in 0..MAX_ATTEMPTS {
            let (map, mut dir) = match self.cache.remove(dircap) {
                Some(c) => (c.map, c.dir),
                None => match self.fetch(dircap, path)? {
                    Fetched {
                        dir,
                        map: Some(map),
                        ..
                    } => (map, dir),
                    Fetched { map: None, .. } => {
                        return Err(DirError::ReadOnly {
                            path: show_path(path),
                            kind: d.kind_name(),
                        })
                    }
                },
            };
            let value = match edit(&mut dir, attempt > 0) {
                Ok(v) => v,
                Err(source) => {
                    self.cache.insert(dircap.clone(), Cached { map, dir });
                    return Err(DirError::Edit {
                        path: show_path(path),
                        source,
                    });
                }
            };
            match self.grid.update_mutable(dircap, dir.pack(), Some(map)) {
                Ok(report) => {
                    self.stats.round_trips += u64::from(report.stats.round_trips);
                    self.stats.publishes += 1;
                    self.cache.insert(
                        dircap.clone(),
                        Cached {
                            map: report.map,
                            dir,
                        },
                    );
                    return Ok(value);
                }
                Err(e) if is_conflict(&e) => {
                    tracing::debug!(attempt, "directory changed by another writer; re-reading");
                    self.stats.conflicts += 1;
                    backoff(attempt);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(DirError::TooManyConflicts {
            path: show_path(path),
            attempts: MAX_ATTEMPTS,
        })
    }

    /// What `path` names below `root` (the root itself for an empty path), reading each
    /// directory on the way (those it remembers, all at once).
    pub fn lookup(&mut self, root: &Cap, path: &[String]) -> Result<Found, DirError> {
        let Some((last, parents)) = path.split_last() else {
            if let Cap::Directory(d) = root {
                Access::for_cap(d).ok_or(DirError::VerifyCap)?;
            }
            return Ok(Found {
                cap: ChildCap::Known(root.clone()),
                metadata: None,
            });
        };
        let (parent, dir) = self.walk_reading(root, parents, None, true)?;
        let dir = match dir {
            Some(dir) => dir,
            None => self.read(&parent, parents)?,
        };
        match dir.get(last) {
            Some(child) => Ok(Found {
                cap: child.cap.clone(),
                metadata: Some(child.metadata.clone()),
            }),
            None => Err(DirError::NotFound {
                path: show_path(path),
            }),
        }
    }

    /// The directory `path` names below `root`; with `create`, missing directories on the way
    /// are made (in that format) and linked.
    fn walk(
        &mut self,
        root: &Cap,
        path: &[String],
        create: Option<MutableFormat>,
    ) -> Result<Cap, DirError> {
        Ok(self.walk_reading(root, path, create, false)?.0)
    }

    /// [`DirClient::walk`]; with `read_last`, the directory reached is read too (alongside the
    /// others when guessed) and returned.
    fn walk_reading(
        &mut self,
        root: &Cap,
        path: &[String],
        create: Option<MutableFormat>,
        read_last: bool,
    ) -> Result<(Cap, Option<Directory>), DirError> {
        let mut ahead = self.prefetch(root, path, path.len() + usize::from(read_last));
        let mut here = root.clone();
        for (i, name) in path.iter().enumerate() {
            let so_far = &path[..=i];
            let dir = self.next_read(&mut ahead, &here, &path[..i])?;
            here = match dir.get(name) {
                Some(Child {
                    cap: ChildCap::Known(cap @ Cap::Directory(_)),
                    ..
                }) => cap.clone(),
                Some(child) => {
                    return Err(DirError::NotADirectory {
                        path: show_path(so_far),
                        kind: kind_of(&child.cap),
                    })
                }
                None => match create {
                    Some(format) => {
                        let made = self.mkdir(format)?;
                        let link = ChildCap::Known(made.clone());
                        let linked =
                            self.add_child(&here, &path[..i], name, &link, None, Overwrite::No);
                        match linked {
                            Ok(()) => made,
                            // Someone else made it meanwhile: use theirs.
                            Err(DirError::Edit {
                                source: EditError::ExistingChild { .. },
                                ..
                            }) => {
                                let dir = self.read(&here, &path[..i])?;
                                match dir.get(name).map(|c| &c.cap) {
                                    Some(ChildCap::Known(cap @ Cap::Directory(_))) => cap.clone(),
                                    _ => {
                                        return Err(DirError::Exists {
                                            path: show_path(so_far),
                                        })
                                    }
                                }
                            }
                            Err(e) => return Err(e),
                        }
                    }
                    None => {
                        return Err(DirError::NotFound {
                            path: show_path(so_far),
                        })
                    }
                },
            };
        }
        let last = match ahead.pop_front() {
            Some((cap, fetched)) if cap == here => Some(self.remember(&here, fetched?)),
            _ => None,
        };
        Ok((here, last))
    }

    /// Link `cap` as `name` in `dircap`; on a retry, finding that very cap already there counts
    /// as done (the conflicted publish reached enough servers).
    fn add_child(
        &mut self,
        dircap: &Cap,
        dir_path: &[String],
        name: &str,
        cap: &ChildCap,
        metadata: Option<&Metadata>,
        overwrite: Overwrite,
    ) -> Result<(), DirError> {
        let now = now_seconds();
        self.modify_at(dircap, dir_path, &mut |d, retried| {
            if retried && d.get(name).is_some_and(|c| &c.cap == cap) {
                return Ok(());
            }
            d.add(name, cap.clone(), metadata, overwrite, now)
                .map(|_| ())
        })
    }

    /// The access to `dircap` and its child `name`, from the remembered state when there is
    /// one (no round trip), else read. For checks before an edit only: the edit itself is
    /// checked again against the state it publishes over, so a stale answer costs a retry at
    /// most, never a wrong write.
    fn peek_child(
        &mut self,
        dircap: &Cap,
        dir_path: &[String],
        name: &str,
    ) -> Result<(Access, Option<Child>), DirError> {
        if let Some(c) = self.cache.lock().get(dircap) {
            return Ok((c.dir.access(), c.dir.get(name).cloned()));
        }
        let dir = self.read(dircap, dir_path)?;
        Ok((dir.access(), dir.get(name).cloned()))
    }

    /// The directory holding the last name of `path`, and that name.
    fn parent(
        &mut self,
        root: &Cap,
        path: &[String],
        create: Option<MutableFormat>,
        what: &'static str,
    ) -> Result<(Cap, String), DirError> {
        let Some((last, parents)) = path.split_last() else {
            return Err(DirError::NeedsName {
                path: show_path(path),
                what,
            });
        };
        Ok((self.walk(root, parents, create)?, last.clone()))
    }

    /// Link `cap` as `path` below `root` (the last name is the new link; the directories
    /// before it must exist).
    pub fn link(
        &mut self,
        root: &Cap,
        path: &[String],
        cap: ChildCap,
        metadata: Option<&Metadata>,
        overwrite: Overwrite,
    ) -> Result<(), DirError> {
        let (parent, name) = self.parent(root, path, None, "linked")?;
        self.add_child(
            &parent,
            &path[..path.len() - 1],
            &name,
            &cap,
            metadata,
            overwrite,
        )
    }

    /// [`DirClient::link`], making missing directories on the way (SDMF), as Tahoe's web API
    /// does for `PUT /uri/DIRCAP/a/b/name`.
    pub fn link_making_parents(
        &mut self,
        root: &Cap,
        path: &[String],
        cap: ChildCap,
        overwrite: Overwrite,
    ) -> Result<(), DirError> {
        let (parent, name) = self.parent(root, path, Some(MutableFormat::Sdmf), "linked")?;
        self.add_child(
            &parent,
            &path[..path.len() - 1],
            &name,
            &cap,
            None,
            overwrite,
        )
    }

    /// Make a new directory and link it as `path` below `root`; with `parents`, missing
    /// directories on the way are made too. Refuses an existing name. Returns the new cap.
    pub fn mkdir_at(
        &mut self,
        root: &Cap,
        path: &[String],
        format: MutableFormat,
        parents: bool,
    ) -> Result<Cap, DirError> {
        let (parent, name) = self.parent(root, path, parents.then_some(format), "made")?;
        // Refuse before spending a key when the name is taken or the parent is read-only.
        let (access, existing) = self.peek_child(&parent, &path[..path.len() - 1], &name)?;
        if !matches!(access, Access::ReadWrite { .. }) {
            return Err(DirError::ReadOnly {
                path: show_path(&path[..path.len() - 1]),
                kind: dir_cap(&parent, path)?.kind_name(),
            });
        }
        if existing.is_some() {
            return Err(DirError::Exists {
                path: show_path(path),
            });
        }
        let made = self.mkdir(format)?;
        let link = ChildCap::Known(made.clone());
        self.add_child(
            &parent,
            &path[..path.len() - 1],
            &name,
            &link,
            None,
            Overwrite::No,
        )?;
        Ok(made)
    }

    /// Upload `size` bytes of `reader` as an immutable file and link it as `path` below `root`.
    /// The directories before the last name must exist, unless `parents` (then they are made
    /// as SDMF directories).
    pub fn put_file(
        &mut self,
        root: &Cap,
        path: &[String],
        size: u64,
        reader: &mut dyn ReadSeek,
        overwrite: Overwrite,
        parents: bool,
    ) -> Result<UploadReport, DirError> {
        self.put_file_replacing(root, path, size, reader, overwrite, parents)
            .map(|(report, _)| report)
    }

    /// What `path` below `root` links to now, from the remembered state of its parent when
    /// there is one (no round trip), else read. For choosing how to write there: the write
    /// itself is checked again against the state it publishes over.
    pub fn peek(&mut self, root: &Cap, path: &[String]) -> Result<Option<Child>, DirError> {
        let (parent, name) = self.parent(root, path, None, "looked up")?;
        Ok(self.peek_child(&parent, &path[..path.len() - 1], &name)?.1)
    }

    /// [`DirClient::put_file`], also returning the link it replaced (if any).
    pub fn put_file_replacing(
        &mut self,
        root: &Cap,
        path: &[String],
        size: u64,
        reader: &mut dyn ReadSeek,
        overwrite: Overwrite,
        parents: bool,
    ) -> Result<(UploadReport, Option<Child>), DirError> {
        let create = parents.then_some(MutableFormat::Sdmf);
        let what = "replaced by a file";
        let Some((name, dirs)) = path.split_last() else {
            return Err(DirError::NeedsName {
                path: show_path(path),
                what,
            });
        };
        // When remembered directories name the parent, the path is confirmed by reading it
        // while the file uploads (the upload does not depend on it): one round trip less.
        let guessed = Some(self.guess_chain(root, dirs, dirs.len() + 1))
            .filter(|chain| chain.len() == dirs.len() + 1 && !dirs.is_empty())
            .and_then(|mut chain| chain.pop());
        if let Some(guess) = guessed {
            // Check the link can be made before uploading anything.
            let existing = self.check_replaceable(&guess, path, name, overwrite)?;
            let (grid, cache) = (self.grid, &self.cache);
            let (upload, walked) = std::thread::scope(|scope| {
                let walk = std::thread::Builder::new()
                    .name("lafs-dir-walk".into())
                    .spawn_scoped(scope, move || resolve(grid, cache, root, dirs));
                let upload = grid.upload_reader(size, reader, &mut |_| {});
                let walked = match walk {
                    Ok(h) => h.join().ok(),
                    Err(_) => None,
                };
                (upload, walked)
            });
            let report = upload?;
            let mut depth = u64::from(report.stats.round_trips);
            if let Some(Ok((cap, fetched))) = walked {
                let walk_depth = fetched.iter().map(|(_, f)| f.round_trips).sum::<u64>();
                depth = depth.max(walk_depth);
                for (dir, f) in fetched {
                    self.stats.reads += f.reads;
                    self.remember(&dir, f);
                }
                if cap == guess {
                    self.stats.round_trips += depth;
                    let link = ChildCap::Known(report.cap.clone());
                    self.add_child(&guess, dirs, name, &link, None, overwrite)?;
                    return Ok((report, existing));
                }
            }
            // The path changed (or could not be read in passing): find the parent again.
            self.stats.round_trips += depth;
            let (parent, _) = self.parent(root, path, create, what)?;
            let existing = self.check_replaceable(&parent, path, name, overwrite)?;
            let link = ChildCap::Known(report.cap.clone());
            self.add_child(&parent, dirs, name, &link, None, overwrite)?;
            return Ok((report, existing));
        }
        let (parent, _) = self.parent(root, path, create, what)?;
        // Check the link can be made before uploading anything.
        let existing = self.check_replaceable(&parent, path, name, overwrite)?;
        let report = self.grid.upload_reader(size, reader, &mut |_| {})?;
        self.stats.round_trips += u64::from(report.stats.round_trips);
        let link = ChildCap::Known(report.cap.clone());
        self.add_child(&parent, dirs, name, &link, None, overwrite)?;
        Ok((report, existing))
    }

    /// What `path`'s last name (`name`, in `parent`) links now, if a file may be linked there
    /// under `overwrite`; refuses a read-only parent or a link `overwrite` keeps.
    fn check_replaceable(
        &mut self,
        parent: &Cap,
        path: &[String],
        name: &str,
        overwrite: Overwrite,
    ) -> Result<Option<Child>, DirError> {
        let dirs = &path[..path.len() - 1];
        let (access, existing) = self.peek_child(parent, dirs, name)?;
        if !matches!(access, Access::ReadWrite { .. }) {
            return Err(DirError::ReadOnly {
                path: show_path(dirs),
                kind: dir_cap(parent, path)?.kind_name(),
            });
        }
        if let Some(existing) = &existing {
            let refused = match overwrite {
                Overwrite::No => Some(EditError::ExistingChild {
                    name: name.to_string(),
                }),
                Overwrite::OnlyFiles if existing.cap.is_directory() => {
                    Some(EditError::ExistingDirectory {
                        name: name.to_string(),
                    })
                }
                _ => None,
            };
            if let Some(source) = refused {
                return Err(DirError::Edit {
                    path: show_path(dirs),
                    source,
                });
            }
        }
        Ok(existing)
    }

    /// Remove the link `path` below `root`, returning what it linked. (The object itself stays
    /// on the grid for anyone holding its cap.)
    pub fn unlink(&mut self, root: &Cap, path: &[String]) -> Result<Child, DirError> {
        let (parent, name) = self.parent(root, path, None, "removed")?;
        let mut removed: Option<Child> = None;
        self.modify_at(&parent, &path[..path.len() - 1], &mut |d, retried| {
            match (d.remove(&name), &removed) {
                // The conflicted attempt reached enough servers: it is already gone.
                (Err(EditError::NoSuchChild { .. }), Some(child)) if retried => Ok(child.clone()),
                (result, _) => {
                    if let Ok(child) = &result {
                        removed = Some(child.clone());
                    }
                    result
                }
            }
        })
    }

    /// Move the link `from` (below `from_root`) to `to` (below `to_root`), keeping its
    /// metadata. Within one directory this is one edit; between two, the new link is made
    /// first and the old one removed after, so a failure in between leaves the child linked
    /// twice, never lost.
    pub fn rename(
        &mut self,
        from_root: &Cap,
        from: &[String],
        to_root: &Cap,
        to: &[String],
        overwrite: Overwrite,
    ) -> Result<(), DirError> {
        let (from_dir, from_name) = self.parent(from_root, from, None, "moved")?;
        let (to_dir, to_name) = self.parent(to_root, to, None, "replaced")?;
        let now = now_seconds();
        if from_dir == to_dir {
            let mut moving: Option<ChildCap> = None;
            return self.modify_at(&from_dir, &from[..from.len() - 1], &mut |d, retried| {
                if retried && d.get(&from_name).is_none() {
                    if let (Some(cap), Some(there)) = (&moving, d.get(&to_name)) {
                        if &there.cap == cap {
                            return Ok(());
                        }
                    }
                }
                moving = d.get(&from_name).map(|c| c.cap.clone());
                d.rename(&from_name, &to_name, overwrite, now)
            });
        }
        let dir = self.read(&from_dir, &from[..from.len() - 1])?;
        if !matches!(dir.access(), Access::ReadWrite { .. }) {
            return Err(DirError::ReadOnly {
                path: show_path(&from[..from.len() - 1]),
                kind: dir_cap(&from_dir, from)?.kind_name(),
            });
        }
        let child = dir.get(&from_name).cloned().ok_or(DirError::NotFound {
            path: show_path(from),
        })?;
        let mut user = child.metadata.clone();
        user.remove(lafs_core::dirnode::metadata::TAHOE_KEY);
        self.add_child(
            &to_dir,
            &to[..to.len() - 1],
            &to_name,
            &child.cap,
            Some(&user),
            overwrite,
        )?;
        match self.modify_at(&from_dir, &from[..from.len() - 1], &mut |d, _| {
            d.remove(&from_name)
        }) {
            // Someone else removed it meanwhile: it is moved all the same.
            Err(DirError::Edit {
                source: EditError::NoSuchChild { .. },
                ..
            }) => Ok(()),
            other => other.map(|_| ()),
        }
    }
}
