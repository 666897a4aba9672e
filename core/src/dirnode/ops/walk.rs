//! Walking a path of directories below a root, reading remembered levels side by side.
//!
//! Each directory on the way must be read fresh, since someone may have relinked a name. Read
//! one after another that is a round trip per level; but when the cache remembers the root
//! linking `path[0]` to some directory, which links `path[1]`, and so on, those guessed
//! directories can all be read at once. A guess is used only once its parent's fresh read links
//! it under that name; the first wrong guess drops itself and every guess below it, and the walk
//! continues one level at a time from there.
//!
//! With `create`, a missing directory on the way is made (after a `NeedKey`) and linked into its
//! parent; if another writer linked a directory under that name meanwhile, theirs is used.

use std::collections::BTreeMap;

use crate::cap::Cap;
use crate::crypto::rsa_keys::MutableKey;
use crate::dirnode::path::check_new_name;
use crate::dirnode::{ChildCap, Directory};
use crate::mutable::layout::MutableFormat;
use crate::time::Instant;

use super::cache::{DirCache, Remembered};
use super::ctx::Ctx;
use super::edit::{Change, Changed, Edit};
use super::error::{kind_of, show_path, DirOpError};
use super::progress::DirProgress;
use super::read::{self, access_of, Fetched, Reading};
use super::subops::{SubDone, SubId};

/// Where a walk ended.
#[derive(Debug)]
pub(crate) struct Reached {
    /// The directory `path` names.
    pub cap: Cap,
    /// Its contents, when the walk was asked to read it.
    pub dir: Option<Directory>,
    /// Its state for an edit: read fresh, just made, or taken from the cache.
    pub state: Option<Remembered>,
}

/// Returned by value and consumed at once, never stored: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum WalkStatus {
    Pending,
    /// A directory must be made: answer with [`Walk::provide_key`].
    NeedKey,
    Done(Result<Reached, DirOpError>),
}

#[derive(Debug)]
enum LevelRead {
    Running(SubId),
    Ready(Box<Result<Fetched, DirOpError>>),
}

#[derive(Debug)]
enum Making {
    Idle,
    NeedKey,
    Creating(SubId),
    Linking {
        made: Cap,
        state: Box<Remembered>,
        edit: Box<Edit>,
    },
}

/// A path walk in progress.
#[derive(Debug)]
pub(crate) struct Walk {
    path: Vec<String>,
    read_last: bool,
    create: Option<MutableFormat>,
    /// `here` is the directory reached after `path[..level]`.
    level: usize,
    here: Cap,
    /// `guesses[j]`: the directory believed to be at level `j` (`guesses[0]` is the root).
    guesses: Vec<Cap>,
    reads: BTreeMap<usize, LevelRead>,
    /// The remembered state of the guessed last directory, taken from the cache for an edit.
    taken: Option<(Cap, Remembered)>,
    /// The fresh state of `here` while a missing child of it is made.
    current: Option<Remembered>,
    making: Making,
    outcome: Option<Result<Reached, DirOpError>>,
}

impl Walk {
    /// Walks `path` below `root`. `read_last`: read the directory reached too (else its state
    /// is taken from the cache when remembered, for an edit). `create`: make missing
    /// directories in that format.
    pub fn new(
        now: Instant,
        ctx: &mut Ctx,
        cache: &mut DirCache,
        root: Cap,
        path: Vec<String>,
        read_last: bool,
        create: Option<MutableFormat>,
    ) -> Walk {
        let mut guesses = vec![root.clone()];
        while guesses.len() <= path.len() {
            let j = guesses.len() - 1;
            let next = cache
                .peek(&guesses[j])
                .and_then(|d| d.get(&path[j]))
                .and_then(|c| match &c.cap {
                    ChildCap::Known(cap @ Cap::Directory(_)) => Some(cap.clone()),
                    _ => None,
                });
            match next {
                Some(cap) => guesses.push(cap),
                None => break,
            }
        }
        let taken = match guesses.get(path.len()) {
            Some(last) if !read_last => cache.take(last).map(|s| (last.clone(), s)),
            _ => None,
        };
        let mut walk = Walk {
            read_last,
            create,
            level: 0,
            here: root,
            reads: BTreeMap::new(),
            taken,
            current: None,
            making: Making::Idle,
            outcome: None,
            path,
            guesses,
        };
        // A component no link could have (empty, `.`, `..`, with `/`) is refused before any read.
        if let Some(Err(e)) = walk
            .path
            .iter()
            .map(|c| check_new_name(c))
            .find(Result::is_err)
        {
            walk.outcome = Some(Err(DirOpError::Path(e)));
            return walk;
        }
        let levels = walk.path.len() + usize::from(read_last);
        for j in 0..levels.min(walk.guesses.len()) {
            let cap = walk.guesses[j].clone();
            walk.start_level(now, ctx, j, &cap);
        }
        walk.advance(now, ctx);
        walk
    }

    fn start_level(&mut self, now: Instant, ctx: &mut Ctx, level: usize, cap: &Cap) {
        let read = match read::start(now, ctx, cap, &self.path[..level]) {
            Reading::Running(id) => LevelRead::Running(id),
            Reading::Now(result) => LevelRead::Ready(result),
        };
        self.reads.insert(level, read);
    }

    pub fn status(&mut self) -> WalkStatus {
        if let Some(outcome) = self.outcome.take() {
            return WalkStatus::Done(outcome);
        }
        match self.making {
            Making::NeedKey => WalkStatus::NeedKey,
            _ => WalkStatus::Pending,
        }
    }

    /// The key for the directory the walk must make.
    pub fn provide_key(&mut self, now: Instant, ctx: &mut Ctx, key: MutableKey) {
        if let (Making::NeedKey, Some(format)) = (&self.making, self.create) {
            self.making = Making::Creating(ctx.subs.create(now, format, key, Vec::new()));
        }
    }

    /// No key can be had: the walk fails.
    pub fn key_unavailable(&mut self, reason: String) {
        if matches!(self.making, Making::NeedKey) {
            self.making = Making::Idle;
            self.outcome = Some(Err(DirOpError::NoKey { reason }));
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.making {
            Making::Linking { edit, .. } => edit.poll_timeout(),
            _ => None,
        }
    }

    pub fn handle_timeout(&mut self, now: Instant, ctx: &mut Ctx) {
        if let Making::Linking { edit, .. } = &mut self.making {
            edit.handle_timeout(now, ctx);
            self.after_link(now, ctx);
        }
    }

    /// Whether the sub-operation `id` is one of this walk's.
    pub fn owns(&self, id: SubId) -> bool {
        let reading = self
            .reads
            .values()
            .any(|r| matches!(r, LevelRead::Running(r) if *r == id));
        reading
            || match &self.making {
                Making::Creating(c) => *c == id,
                Making::Linking { edit, .. } => edit.owns(id),
                _ => false,
            }
    }

    /// Takes a finished sub-operation if it is this walk's; false otherwise.
    pub fn on_done(&mut self, now: Instant, ctx: &mut Ctx, id: SubId, done: SubDone) -> bool {
        let level = self
            .reads
            .iter()
            .find(|(_, r)| matches!(r, LevelRead::Running(r) if *r == id))
            .map(|(j, _)| *j);
        if let Some(j) = level {
            let cap = self.cap_at(j);
            let result = read::finish(ctx, &cap, &self.path[..j], done);
            self.reads.insert(j, LevelRead::Ready(Box::new(result)));
            self.advance(now, ctx);
            return true;
        }
        match &mut self.making {
            Making::Creating(c) if *c == id => {
                self.made(now, ctx, done);
                self.advance(now, ctx);
                true
            }
            Making::Linking { edit, .. } => {
                if !edit.on_done(now, ctx, id, done) {
                    return false;
                }
                self.after_link(now, ctx);
                true
            }
            _ => false,
        }
    }

    /// The directory read at `level`: `here` at the current level, else the guess.
    fn cap_at(&self, level: usize) -> Cap {
        if level == self.level {
            self.here.clone()
        } else {
            self.guesses
                .get(level)
                .cloned()
                .unwrap_or_else(|| self.here.clone())
        }
    }

    /// Moves down to `cap`, dropping guesses (and their reads) that it contradicts.
    fn descend(&mut self, ctx: &mut Ctx, cap: Cap) {
        self.level += 1;
        if self.guesses.get(self.level) != Some(&cap) {
            for (_, read) in self.reads.split_off(&self.level) {
                if let LevelRead::Running(id) = read {
                    ctx.subs.cancel(id);
                }
            }
            self.guesses.truncate(self.level);
        }
        self.here = cap;
    }

    fn made(&mut self, now: Instant, ctx: &mut Ctx, done: SubDone) {
        let result = match done {
            SubDone::Published(Ok(result)) => result,
            SubDone::Published(Err(source)) => {
                self.making = Making::Idle;
                self.outcome = Some(Err(DirOpError::Create { source }));
                return;
            }
            _ => return,
        };
        ctx.progress.push_back(DirProgress::Created);
        let made = match Cap::directory(result.cap) {
            Ok(cap) => cap,
            Err(_) => {
                self.making = Making::Idle;
                self.outcome = Some(Err(DirOpError::UnknownCap {
                    path: show_path(&self.path[..=self.level]),
                }));
                return;
            }
        };
        let access = match access_of(&made, &self.path[..=self.level]) {
            Ok(a) => a,
            Err(e) => {
                self.making = Making::Idle;
                self.outcome = Some(Err(e));
                return;
            }
        };
        let state = Remembered {
            map: result.map,
            dir: Directory::new(access),
        };
        let change = Change::LinkNewDir {
            name: self.path[self.level].clone(),
            cap: made.clone(),
        };
        let edit = Edit::new(
            now,
            ctx,
            self.here.clone(),
            self.path[..self.level].to_vec(),
            change,
            self.current.take(),
        );
        self.making = Making::Linking {
            made,
            state: Box::new(state),
            edit: Box::new(edit),
        };
        self.after_link(now, ctx);
    }

    fn after_link(&mut self, now: Instant, ctx: &mut Ctx) {
        let Making::Linking { edit, .. } = &mut self.making else {
            return;
        };
        let Some(outcome) = edit.outcome() else {
            return;
        };
        let Making::Linking { made, state, .. } = std::mem::replace(&mut self.making, Making::Idle)
        else {
            return;
        };
        match outcome {
            Ok(Changed::LinkedDir(linked)) => {
                let ours = linked == made;
                self.descend(ctx, linked.clone());
                if ours {
                    // Just made: its (empty) contents and map are known without a read.
                    if self.level < self.path.len() + usize::from(self.read_last) {
                        self.reads.insert(
                            self.level,
                            LevelRead::Ready(Box::new(Ok(Fetched {
                                dir: state.dir,
                                map: Some(state.map),
                            }))),
                        );
                    } else {
                        if let Some((cap, old)) = self.taken.take() {
                            ctx.memo.give_back(cap, old);
                        }
                        self.taken = Some((linked, *state));
                    }
                }
            }
            Ok(_) => {}
            Err(e) => self.outcome = Some(Err(e)),
        }
        self.advance(now, ctx);
    }

    fn advance(&mut self, now: Instant, ctx: &mut Ctx) {
        while self.outcome.is_none() && matches!(self.making, Making::Idle) {
            let at_end = self.level == self.path.len();
            if at_end && !self.read_last {
                let state = match self.taken.take() {
                    Some((cap, state)) if cap == self.here => Some(state),
                    Some((cap, state)) => {
                        ctx.memo.give_back(cap, state);
                        None
                    }
                    None => None,
                };
                self.outcome = Some(Ok(Reached {
                    cap: self.here.clone(),
                    dir: None,
                    state,
                }));
                return;
            }
            let fetched = match self.reads.remove(&self.level) {
                None => {
                    let here = self.here.clone();
                    self.start_level(now, ctx, self.level, &here);
                    continue;
                }
                Some(LevelRead::Running(id)) => {
                    self.reads.insert(self.level, LevelRead::Running(id));
                    return;
                }
                Some(LevelRead::Ready(read)) => match *read {
                    Err(e) => {
                        self.outcome = Some(Err(e));
                        return;
                    }
                    Ok(fetched) => fetched,
                },
            };
            if at_end {
                let state = fetched.map.map(|map| Remembered {
                    map,
                    dir: fetched.dir.clone(),
                });
                if let Some(state) = &state {
                    ctx.memo.remember(self.here.clone(), state.clone());
                }
                self.outcome = Some(Ok(Reached {
                    cap: self.here.clone(),
                    dir: Some(fetched.dir),
                    state,
                }));
                return;
            }
            let so_far = &self.path[..=self.level];
            match fetched
                .dir
                .get(&self.path[self.level])
                .map(|c| c.cap.clone())
            {
                Some(ChildCap::Known(cap @ Cap::Directory(_))) => {
                    if let Some(map) = fetched.map {
                        let state = Remembered {
                            map,
                            dir: fetched.dir,
                        };
                        ctx.memo.remember(self.here.clone(), state);
                    }
                    self.descend(ctx, cap);
                }
                Some(other) => {
                    self.outcome = Some(Err(DirOpError::NotADirectory {
                        path: show_path(so_far),
                        kind: kind_of(&other),
                    }));
                }
                None if self.create.is_some() => match fetched.map {
                    Some(map) => {
                        self.current = Some(Remembered {
                            map,
                            dir: fetched.dir,
                        });
                        self.making = Making::NeedKey;
                    }
                    None => {
                        // Refused before a key is spent on a directory that could not be linked.
                        let here = &self.path[..self.level];
                        let kind =
                            read::dir_cap(&self.here, here).map_or("DIR2", |d| d.kind_name());
                        self.outcome = Some(Err(DirOpError::ReadOnly {
                            path: show_path(here),
                            kind,
                        }));
                    }
                },
                None => {
                    self.outcome = Some(Err(DirOpError::NotFound {
                        path: show_path(so_far),
                    }));
                }
            }
        }
    }

    /// Hands back, at the end of the operation, a state taken from the cache and never used.
    pub fn give_back(&mut self, ctx: &mut Ctx) {
        if let Some((cap, state)) = self.taken.take() {
            ctx.memo.give_back(cap, state);
        }
    }
}
