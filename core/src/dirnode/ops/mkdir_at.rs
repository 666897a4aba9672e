//! Mkdir at a path: make a new directory and link it as the last name of a path, refusing a
//! name already taken; with `parents` (`mkdir -p`), missing directories on the way are made too.
//!
//! The name is checked before a key is asked for or anything is written: from the parent's
//! remembered state when there is one, else by reading the parent (that read is also the state
//! the link is published over). The link itself is checked again against the state it is
//! published over, so a name taken meanwhile is still refused.

use std::collections::VecDeque;

use crate::cap::Cap;
use crate::crypto::rsa_keys::MutableKey;
use crate::dirnode::{Access, ChildCap, Directory, EditError, Overwrite};
use crate::mutable::layout::MutableFormat;
use crate::op::{ClientOp, RequestId, Transmit};
use crate::placement::ServerId;
use crate::time::Instant;
use crate::wire::Response;

use super::cache::{DirCache, Remembered};
use super::ctx::{earliest, Ctx, DirConfig};
use super::edit::{Change, Edit};
use super::error::{show_path, DirOpError};
use super::progress::DirProgress;
use super::read::{self, access_of, dir_cap, Reading};
use super::subops::{SubDone, SubId};
use super::walk::{Walk, WalkStatus};

#[derive(Debug)]
pub enum MkdirAtEvent {
    Progress(DirProgress),
    /// A directory must be made (the new one, or a missing parent): call
    /// [`MkdirAt::provide_key`].
    NeedKey,
    /// The new directory's write cap.
    Done(Cap),
    Failed(DirOpError),
}

#[derive(Debug)]
enum Phase {
    Walking(Box<Walk>),
    /// Reading the parent to check the name.
    Checking {
        parent: Cap,
        id: SubId,
    },
    NeedKey {
        parent: Cap,
        state: Remembered,
    },
    Creating {
        parent: Cap,
        state: Remembered,
        id: SubId,
    },
    Linking {
        made: Cap,
        edit: Box<Edit>,
    },
    Over,
}

/// Making a directory at a path.
#[derive(Debug)]
pub struct MkdirAt {
    ctx: Ctx,
    dirs: Vec<String>,
    name: String,
    format: MutableFormat,
    phase: Phase,
    asked_key: bool,
    events: VecDeque<MkdirAtEvent>,
}

impl MkdirAt {
    /// Makes a `format` directory as `path` below `root`; `parents`: make missing directories
    /// on the way (in the same format).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        now: Instant,
        config: DirConfig,
        seed: [u8; 32],
        cache: &mut DirCache,
        root: Cap,
        path: Vec<String>,
        format: MutableFormat,
        parents: bool,
    ) -> MkdirAt {
        let mut ctx = Ctx::new(config, seed);
        ctx.borrow_signatures(cache);
        let (name, dirs, phase) = match path.split_last() {
            None => (String::new(), Vec::new(), Phase::Over),
            Some((name, dirs)) => {
                let create = parents.then_some(format);
                let walk = Walk::new(now, &mut ctx, cache, root, dirs.to_vec(), false, create);
                (name.clone(), dirs.to_vec(), Phase::Walking(Box::new(walk)))
            }
        };
        let mut op = MkdirAt {
            ctx,
            dirs,
            name,
            format,
            phase,
            asked_key: false,
            events: VecDeque::new(),
        };
        if path.is_empty() {
            op.events
                .push_back(MkdirAtEvent::Failed(DirOpError::NeedsName {
                    path: show_path(&path),
                    what: "made",
                }));
        } else {
            op.pump(now);
        }
        op
    }

    /// A fresh key for the directory asked for by the last `NeedKey`.
    pub fn provide_key(&mut self, now: Instant, key: MutableKey) {
        match std::mem::replace(&mut self.phase, Phase::Over) {
            Phase::Walking(mut walk) => {
                walk.provide_key(now, &mut self.ctx, key);
                self.phase = Phase::Walking(walk);
            }
            Phase::NeedKey { parent, state } => {
                let id = self.ctx.subs.create(now, self.format, key, Vec::new());
                self.phase = Phase::Creating { parent, state, id };
            }
            other => self.phase = other,
        }
        self.asked_key = false;
        self.pump(now);
    }

    /// No key can be had: the operation fails.
    pub fn key_unavailable(&mut self, now: Instant, reason: impl Into<String>) {
        let reason = reason.into();
        match &mut self.phase {
            Phase::Walking(walk) => walk.key_unavailable(reason),
            Phase::NeedKey { .. } => return self.finish(Err(DirOpError::NoKey { reason })),
            _ => {}
        }
        self.pump(now);
    }

    pub fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Over)
    }

    /// Gives the cache what this operation learned (call once it is finished).
    pub fn return_to(&mut self, cache: &mut DirCache) {
        self.ctx.return_to(cache);
    }

    fn path(&self) -> Vec<String> {
        let mut path = self.dirs.clone();
        path.push(self.name.clone());
        path
    }

    fn finish(&mut self, outcome: Result<Cap, DirOpError>) {
        match std::mem::replace(&mut self.phase, Phase::Over) {
            Phase::Walking(mut walk) => walk.give_back(&mut self.ctx),
            Phase::NeedKey { parent, state } | Phase::Creating { parent, state, .. } => {
                self.ctx.memo.give_back(parent, state)
            }
            _ => {}
        }
        self.ctx.subs.clear();
        self.events.push_back(match outcome {
            Ok(cap) => MkdirAtEvent::Done(cap),
            Err(e) => MkdirAtEvent::Failed(e),
        });
    }

    /// The name must be free and the parent writeable before a key is spent.
    fn check(&mut self, parent: Cap, state: Remembered) {
        if state.dir.get(&self.name).is_some() {
            let exists = DirOpError::Exists {
                path: show_path(&self.path()),
            };
            self.ctx.memo.give_back(parent, state);
            return self.finish(Err(exists));
        }
        self.phase = Phase::NeedKey { parent, state };
    }

    fn read_parent(&mut self, now: Instant, parent: Cap) {
        match read::start(now, &mut self.ctx, &parent, &self.dirs) {
            Reading::Running(id) => self.phase = Phase::Checking { parent, id },
            Reading::Now(result) => self.checked(parent, *result),
        }
    }

    fn checked(&mut self, parent: Cap, result: Result<read::Fetched, DirOpError>) {
        match result {
            Ok(read::Fetched {
                dir,
                map: Some(map),
            }) => self.check(parent, Remembered { map, dir }),
            Ok(_) => {
                let kind = dir_cap(&parent, &self.dirs).map_or("DIR2", |d| d.kind_name());
                self.finish(Err(DirOpError::ReadOnly {
                    path: show_path(&self.dirs),
                    kind,
                }))
            }
            Err(e) => self.finish(Err(e)),
        }
    }

    fn step(&mut self, now: Instant) {
        loop {
            match &mut self.phase {
                Phase::Walking(walk) => match walk.status() {
                    WalkStatus::Pending => return,
                    WalkStatus::NeedKey => {
                        if !self.asked_key {
                            self.asked_key = true;
                            self.events.push_back(MkdirAtEvent::NeedKey);
                        }
                        return;
                    }
                    WalkStatus::Done(Err(e)) => return self.finish(Err(e)),
                    WalkStatus::Done(Ok(reached)) => {
                        let parent = reached.cap;
                        match access_of(&parent, &self.dirs) {
                            Ok(Access::ReadWrite { .. }) => {}
                            Ok(_) => {
                                let kind =
                                    dir_cap(&parent, &self.dirs).map_or("DIR2", |d| d.kind_name());
                                return self.finish(Err(DirOpError::ReadOnly {
                                    path: show_path(&self.dirs),
                                    kind,
                                }));
                            }
                            Err(e) => return self.finish(Err(e)),
                        }
                        match reached.state {
                            Some(state) => self.check(parent, state),
                            None => self.read_parent(now, parent),
                        }
                    }
                },
                Phase::NeedKey { .. } => {
                    if !self.asked_key {
                        self.asked_key = true;
                        self.events.push_back(MkdirAtEvent::NeedKey);
                    }
                    return;
                }
                Phase::Linking { made, edit } => {
                    return match edit.outcome() {
                        None => {}
                        Some(Ok(_)) => {
                            let made = made.clone();
                            self.finish(Ok(made))
                        }
                        Some(Err(DirOpError::Edit {
                            source: EditError::ExistingChild { .. },
                            ..
                        })) => self.finish(Err(DirOpError::Exists {
                            path: show_path(&self.path()),
                        })),
                        Some(Err(e)) => self.finish(Err(e)),
                    }
                }
                Phase::Checking { .. } | Phase::Creating { .. } | Phase::Over => return,
            }
        }
    }

    fn on_done(&mut self, now: Instant, id: SubId, done: SubDone) {
        match std::mem::replace(&mut self.phase, Phase::Over) {
            Phase::Walking(mut walk) => {
                walk.on_done(now, &mut self.ctx, id, done);
                self.phase = Phase::Walking(walk);
            }
            Phase::Linking { made, mut edit } => {
                edit.on_done(now, &mut self.ctx, id, done);
                self.phase = Phase::Linking { made, edit };
            }
            Phase::Checking { parent, id: c } if c == id => {
                let result = read::finish(&mut self.ctx, &parent, &self.dirs, done);
                self.checked(parent, result);
            }
            Phase::Creating {
                parent,
                state,
                id: c,
            } if c == id => {
                let result = match done {
                    SubDone::Published(Ok(r)) => r,
                    SubDone::Published(Err(source)) => {
                        self.phase = Phase::Creating { parent, state, id };
                        return self.finish(Err(DirOpError::Create { source }));
                    }
                    _ => return,
                };
                self.ctx.progress.push_back(DirProgress::Created);
                let made = match Cap::directory(result.cap) {
                    Ok(cap) => cap,
                    Err(_) => {
                        self.phase = Phase::Creating { parent, state, id };
                        return self.finish(Err(DirOpError::UnknownCap {
                            path: show_path(&self.path()),
                        }));
                    }
                };
                if let Ok(access) = access_of(&made, &self.path()) {
                    let dir = Directory::new(access);
                    self.ctx.memo.remember(
                        made.clone(),
                        Remembered {
                            map: result.map,
                            dir,
                        },
                    );
                }
                let change = Change::Add {
                    name: self.name.clone(),
                    cap: ChildCap::Known(made.clone()),
                    metadata: None,
                    overwrite: Overwrite::No,
                };
                let edit = Edit::new(
                    now,
                    &mut self.ctx,
                    parent,
                    self.dirs.clone(),
                    change,
                    Some(state),
                );
                self.phase = Phase::Linking {
                    made,
                    edit: Box::new(edit),
                };
            }
            other => self.phase = other,
        }
    }

    fn pump(&mut self, now: Instant) {
        loop {
            self.step(now);
            let finished = self.ctx.subs.take_finished();
            if finished.is_empty() {
                break;
            }
            for (id, done) in finished {
                self.on_done(now, id, done);
            }
        }
        while let Some(p) = self.ctx.progress.pop_front() {
            self.events.push_back(MkdirAtEvent::Progress(p));
        }
    }
}

impl ClientOp for MkdirAt {
    type Event = MkdirAtEvent;

    fn handle_input(&mut self, now: Instant, from: ServerId, id: RequestId, response: Response) {
        self.ctx.subs.handle_input(now, from, id, response);
        self.pump(now);
    }

    fn handle_server_lost(&mut self, now: Instant, server: ServerId) {
        self.ctx.subs.handle_server_lost(now, server);
        self.pump(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.ctx.subs.handle_timeout(now);
        match &mut self.phase {
            Phase::Walking(walk) => walk.handle_timeout(now, &mut self.ctx),
            Phase::Linking { edit, .. } => edit.handle_timeout(now, &mut self.ctx),
            _ => {}
        }
        self.pump(now);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.ctx.subs.poll_transmit()
    }

    fn poll_event(&mut self) -> Option<MkdirAtEvent> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let own = match &self.phase {
            Phase::Walking(walk) => walk.poll_timeout(),
            Phase::Linking { edit, .. } => edit.poll_timeout(),
            Phase::Over => return None,
            _ => None,
        };
        earliest(self.ctx.subs.poll_timeout(), own)
    }
}
