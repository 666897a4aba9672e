//! Rename and move: relink a child under another name, in the same directory (one edit, one
//! round trip with a remembered state) or in another directory.
//!
//! Between two directories the new link is made first and the old one removed after, so a
//! failure in between leaves the child linked twice, never lost. The child keeps its user
//! metadata; Tahoe's link times restart at the move.

use std::collections::VecDeque;

use crate::cap::Cap;
use crate::dirnode::metadata::TAHOE_KEY;
use crate::dirnode::{Access, EditError, Overwrite};
use crate::op::{ClientOp, RequestId, Transmit};
use crate::placement::ServerId;
use crate::time::Instant;
use crate::wire::Response;

use super::cache::{DirCache, Remembered};
use super::ctx::{earliest, Ctx, DirConfig};
use super::edit::{Change, Edit};
use super::error::{show_path, DirOpError};
use super::progress::DirProgress;
use super::read::dir_cap;
use super::subops::{SubDone, SubId};
use super::walk::{Reached, Walk, WalkStatus};

#[derive(Debug)]
pub enum MoveEvent {
    Progress(DirProgress),
    Done,
    Failed(DirOpError),
}

#[derive(Debug)]
enum Phase {
    Walking {
        from: Box<Walk>,
        /// `None` when both names are in one directory.
        to: Option<Box<Walk>>,
        from_done: Option<Box<Reached>>,
        to_done: Option<Box<Reached>>,
    },
    Renaming(Box<Edit>),
    /// Linking at the destination; then the source link is removed.
    Adding {
        edit: Box<Edit>,
        source: Cap,
        source_state: Option<Box<Remembered>>,
    },
    Removing(Box<Edit>),
    Over,
}

/// Moving one link.
#[derive(Debug)]
pub struct Move {
    ctx: Ctx,
    from: Vec<String>,
    to: Vec<String>,
    overwrite: Overwrite,
    phase: Phase,
    events: VecDeque<MoveEvent>,
}

impl Move {
    /// Renames `from` to `to` within the directory `dir_path` below `root`.
    #[allow(clippy::too_many_arguments)]
    pub fn rename(
        now: Instant,
        config: DirConfig,
        seed: [u8; 32],
        cache: &mut DirCache,
        root: Cap,
        dir_path: Vec<String>,
        from: String,
        to: String,
        overwrite: Overwrite,
    ) -> Move {
        let mut from_path = dir_path.clone();
        from_path.push(from);
        let mut to_path = dir_path;
        to_path.push(to);
        Move::new(
            now,
            config,
            seed,
            cache,
            (root.clone(), from_path),
            (root, to_path),
            overwrite,
        )
    }

    /// Moves the link `from` = (root, path) to `to` = (root, path).
    pub fn new(
        now: Instant,
        config: DirConfig,
        seed: [u8; 32],
        cache: &mut DirCache,
        from: (Cap, Vec<String>),
        to: (Cap, Vec<String>),
        overwrite: Overwrite,
    ) -> Move {
        let mut ctx = Ctx::new(config, seed);
        ctx.borrow_signatures(cache);
        let (from_root, from) = from;
        let (to_root, to) = to;
        let mut error = None;
        if from.is_empty() {
            error = Some(DirOpError::NeedsName {
                path: show_path(&from),
                what: "moved",
            });
        } else if to.is_empty() {
            error = Some(DirOpError::NeedsName {
                path: show_path(&to),
                what: "replaced",
            });
        }
        let phase = if error.is_some() {
            Phase::Over
        } else {
            let from_dirs = from[..from.len() - 1].to_vec();
            let to_dirs = to[..to.len() - 1].to_vec();
            if from_root == to_root && from_dirs == to_dirs {
                // One directory: one edit, from its remembered state when there is one.
                let walk = Walk::new(now, &mut ctx, cache, from_root, from_dirs, false, None);
                Phase::Walking {
                    from: Box::new(walk),
                    to: None,
                    from_done: None,
                    to_done: None,
                }
            } else {
                // The source is read fresh (the child must exist now); both walks side by side.
                let from_walk = Walk::new(now, &mut ctx, cache, from_root, from_dirs, true, None);
                let to_walk = Walk::new(now, &mut ctx, cache, to_root, to_dirs, false, None);
                Phase::Walking {
                    from: Box::new(from_walk),
                    to: Some(Box::new(to_walk)),
                    from_done: None,
                    to_done: None,
                }
            }
        };
        let mut op = Move {
            ctx,
            from,
            to,
            overwrite,
            phase,
            events: VecDeque::new(),
        };
        match error {
            Some(e) => op.events.push_back(MoveEvent::Failed(e)),
            None => op.pump(now),
        }
        op
    }

    pub fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Over)
    }

    /// Gives the cache what this operation learned (call once it is finished).
    pub fn return_to(&mut self, cache: &mut DirCache) {
        self.ctx.return_to(cache);
    }

    fn source_dirs(&self) -> Vec<String> {
        self.from[..self.from.len() - 1].to_vec()
    }

    fn dest_dirs(&self) -> Vec<String> {
        self.to[..self.to.len() - 1].to_vec()
    }

    fn name(path: &[String]) -> String {
        path.last().cloned().unwrap_or_default()
    }

    fn finish(&mut self, outcome: Result<(), DirOpError>) {
        match std::mem::replace(&mut self.phase, Phase::Over) {
            Phase::Walking {
                mut from,
                to,
                from_done,
                to_done,
            } => {
                from.give_back(&mut self.ctx);
                if let Some(mut to) = to {
                    to.give_back(&mut self.ctx);
                }
                for reached in [from_done, to_done].into_iter().flatten() {
                    if let Some(state) = reached.state {
                        self.ctx.memo.give_back(reached.cap, state);
                    }
                }
            }
            Phase::Adding {
                source,
                source_state: Some(state),
                ..
            } => self.ctx.memo.give_back(source, *state),
            _ => {}
        }
        self.ctx.subs.clear();
        self.events.push_back(match outcome {
            Ok(()) => MoveEvent::Done,
            Err(e) => MoveEvent::Failed(e),
        });
    }

    /// Both walks are done: decide how to move.
    fn walked(&mut self, now: Instant, from: Reached, to: Option<Reached>) {
        let Some(to) = to else {
            return self.rename_in(now, from.cap, from.state);
        };
        if from.cap == to.cap {
            // Two paths to one directory: a rename there, from the fresh read.
            if let Some(state) = to.state {
                self.ctx.memo.give_back(to.cap, state);
            }
            return self.rename_in(now, from.cap, from.state);
        }
        let from_dirs = self.source_dirs();
        match dir_cap(&from.cap, &from_dirs).map(|d| (Access::for_cap(&d), d.kind_name())) {
            Ok((Some(Access::ReadWrite { .. }), _)) => {}
            Ok((Some(_), kind)) => {
                return self.finish(Err(DirOpError::ReadOnly {
                    path: show_path(&from_dirs),
                    kind,
                }))
            }
            Ok((None, _)) => return self.finish(Err(DirOpError::VerifyCap)),
            Err(e) => return self.finish(Err(e)),
        }
        let child = from
            .dir
            .as_ref()
            .and_then(|d| d.get(&Self::name(&self.from)))
            .cloned();
        let Some(child) = child else {
            if let Some(state) = from.state {
                self.ctx.memo.give_back(from.cap, state);
            }
            return self.finish(Err(DirOpError::NotFound {
                path: show_path(&self.from),
            }));
        };
        let mut user = child.metadata.clone();
        user.remove(TAHOE_KEY);
        let change = Change::Add {
            name: Self::name(&self.to),
            cap: child.cap,
            metadata: Some(user),
            overwrite: self.overwrite,
        };
        let to_dirs = self.dest_dirs();
        let edit = Edit::new(now, &mut self.ctx, to.cap, to_dirs, change, to.state);
        self.phase = Phase::Adding {
            edit: Box::new(edit),
            source: from.cap,
            source_state: from.state.map(Box::new),
        };
    }

    fn rename_in(&mut self, now: Instant, dir: Cap, state: Option<Remembered>) {
        let change = Change::Rename {
            from: Self::name(&self.from),
            to: Self::name(&self.to),
            overwrite: self.overwrite,
        };
        let from_dirs = self.source_dirs();
        let edit = Edit::new(now, &mut self.ctx, dir, from_dirs, change, state);
        self.phase = Phase::Renaming(Box::new(edit));
    }

    fn step(&mut self, now: Instant) {
        loop {
            match &mut self.phase {
                Phase::Walking {
                    from,
                    to,
                    from_done,
                    to_done,
                } => {
                    if from_done.is_none() {
                        match from.status() {
                            WalkStatus::Done(Ok(r)) => *from_done = Some(Box::new(r)),
                            WalkStatus::Done(Err(e)) => return self.finish(Err(e)),
                            _ => {}
                        }
                    }
                    if let Some(to) = to {
                        if to_done.is_none() {
                            match to.status() {
                                WalkStatus::Done(Ok(r)) => *to_done = Some(Box::new(r)),
                                WalkStatus::Done(Err(e)) => return self.finish(Err(e)),
                                _ => {}
                            }
                        }
                    }
                    let ready = from_done.is_some() && (to.is_none() || to_done.is_some());
                    if !ready {
                        return;
                    }
                    let (Some(f), t) = (from_done.take(), to_done.take()) else {
                        return;
                    };
                    self.walked(now, *f, t.map(|t| *t));
                }
                Phase::Renaming(edit) => {
                    return match edit.outcome() {
                        None => {}
                        Some(result) => self.finish(result.map(|_| ())),
                    }
                }
                Phase::Adding {
                    edit,
                    source,
                    source_state,
                } => {
                    let Some(result) = edit.outcome() else {
                        return;
                    };
                    if let Err(e) = result {
                        return self.finish(Err(e));
                    }
                    let (source, state) = (source.clone(), source_state.take().map(|s| *s));
                    let change = Change::Remove {
                        name: Self::name(&self.from),
                    };
                    let from_dirs = self.source_dirs();
                    let edit = Edit::new(now, &mut self.ctx, source, from_dirs, change, state);
                    self.phase = Phase::Removing(Box::new(edit));
                }
                Phase::Removing(edit) => {
                    return match edit.outcome() {
                        None => {}
                        // Someone else removed it meanwhile: it is moved all the same.
                        Some(Err(DirOpError::Edit {
                            source: EditError::NoSuchChild { .. },
                            ..
                        })) => self.finish(Ok(())),
                        Some(result) => self.finish(result.map(|_| ())),
                    };
                }
                Phase::Over => return,
            }
        }
    }

    fn on_done(&mut self, now: Instant, id: SubId, done: SubDone) {
        match &mut self.phase {
            Phase::Walking { from, to, .. } => {
                if from.owns(id) {
                    from.on_done(now, &mut self.ctx, id, done);
                } else if let Some(to) = to {
                    to.on_done(now, &mut self.ctx, id, done);
                }
            }
            Phase::Renaming(edit) | Phase::Removing(edit) | Phase::Adding { edit, .. } => {
                edit.on_done(now, &mut self.ctx, id, done);
            }
            Phase::Over => {}
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
            self.events.push_back(MoveEvent::Progress(p));
        }
    }
}

impl ClientOp for Move {
    type Event = MoveEvent;

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
            Phase::Walking { from, to, .. } => {
                from.handle_timeout(now, &mut self.ctx);
                if let Some(to) = to {
                    to.handle_timeout(now, &mut self.ctx);
                }
            }
            Phase::Renaming(edit) | Phase::Removing(edit) | Phase::Adding { edit, .. } => {
                edit.handle_timeout(now, &mut self.ctx)
            }
            Phase::Over => {}
        }
        self.pump(now);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.ctx.subs.poll_transmit()
    }

    fn poll_event(&mut self) -> Option<MoveEvent> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let own = match &self.phase {
            Phase::Walking { from, to, .. } => earliest(
                from.poll_timeout(),
                to.as_ref().and_then(|t| t.poll_timeout()),
            ),
            Phase::Renaming(edit) | Phase::Removing(edit) | Phase::Adding { edit, .. } => {
                edit.poll_timeout()
            }
            Phase::Over => return None,
        };
        earliest(self.ctx.subs.poll_timeout(), own)
    }
}
