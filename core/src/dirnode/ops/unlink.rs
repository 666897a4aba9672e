//! Unlink: remove the link a path names, returning what it linked. The object itself stays on
//! the grid for anyone holding its cap.

use std::collections::VecDeque;

use crate::cap::Cap;
use crate::dirnode::Child;
use crate::op::{ClientOp, RequestId, Transmit};
use crate::placement::ServerId;
use crate::time::Instant;
use crate::wire::Response;

use super::cache::DirCache;
use super::ctx::{Ctx, DirConfig};
use super::edit::{Change, Changed, Edit};
use super::error::{show_path, DirOpError};
use super::progress::DirProgress;
use super::walk::{Walk, WalkStatus};
use super::walk_edit::Phase;

#[derive(Debug)]
pub enum UnlinkEvent {
    Progress(DirProgress),
    /// The link removed.
    Done(Child),
    Failed(DirOpError),
}

/// Removing one link.
#[derive(Debug)]
pub struct Unlink {
    ctx: Ctx,
    dirs: Vec<String>,
    name: String,
    phase: Phase,
    events: VecDeque<UnlinkEvent>,
}

impl Unlink {
    /// Removes the link `path` below `root`.
    pub fn new(
        now: Instant,
        config: DirConfig,
        seed: [u8; 32],
        cache: &mut DirCache,
        root: Cap,
        path: Vec<String>,
    ) -> Unlink {
        let mut ctx = Ctx::new(config, seed);
        ctx.borrow_signatures(cache);
        let (name, dirs, phase) = match path.split_last() {
            None => (String::new(), Vec::new(), Phase::Over),
            Some((name, dirs)) => {
                let walk = Walk::new(now, &mut ctx, cache, root, dirs.to_vec(), false, None);
                (name.clone(), dirs.to_vec(), Phase::Walking(Box::new(walk)))
            }
        };
        let mut op = Unlink {
            ctx,
            dirs,
            name,
            phase,
            events: VecDeque::new(),
        };
        if path.is_empty() {
            op.events
                .push_back(UnlinkEvent::Failed(DirOpError::NeedsName {
                    path: show_path(&path),
                    what: "removed",
                }));
        }
        op.pump(now);
        op
    }

    pub fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Over)
    }

    /// Gives the cache what this operation learned (call once it is finished).
    pub fn return_to(&mut self, cache: &mut DirCache) {
        self.ctx.return_to(cache);
    }

    fn finish(&mut self, outcome: Result<Child, DirOpError>) {
        if let Phase::Walking(walk) = &mut self.phase {
            walk.give_back(&mut self.ctx);
        }
        self.phase = Phase::Over;
        self.ctx.subs.clear();
        self.events.push_back(match outcome {
            Ok(child) => UnlinkEvent::Done(child),
            Err(e) => UnlinkEvent::Failed(e),
        });
    }

    fn step(&mut self, now: Instant) {
        loop {
            match &mut self.phase {
                Phase::Walking(walk) => match walk.status() {
                    WalkStatus::Pending | WalkStatus::NeedKey => return,
                    WalkStatus::Done(Err(e)) => return self.finish(Err(e)),
                    WalkStatus::Done(Ok(reached)) => {
                        let change = Change::Remove {
                            name: self.name.clone(),
                        };
                        let edit = Edit::new(
                            now,
                            &mut self.ctx,
                            reached.cap,
                            self.dirs.clone(),
                            change,
                            reached.state,
                        );
                        self.phase = Phase::Editing(Box::new(edit));
                    }
                },
                Phase::Editing(edit) => {
                    return match edit.outcome() {
                        None => {}
                        Some(Ok(Changed::Removed(child))) => self.finish(Ok(child)),
                        Some(Ok(_)) => self.finish(Err(DirOpError::NotFound {
                            path: show_path(&[self.dirs.clone(), vec![self.name.clone()]].concat()),
                        })),
                        Some(Err(e)) => self.finish(Err(e)),
                    }
                }
                Phase::Over => return,
            }
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
                self.phase.on_done(now, &mut self.ctx, id, done);
            }
        }
        while let Some(p) = self.ctx.progress.pop_front() {
            self.events.push_back(UnlinkEvent::Progress(p));
        }
    }
}

impl ClientOp for Unlink {
    type Event = UnlinkEvent;

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
        self.phase.handle_timeout(now, &mut self.ctx);
        self.pump(now);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.ctx.subs.poll_transmit()
    }

    fn poll_event(&mut self) -> Option<UnlinkEvent> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.phase.poll_timeout(&self.ctx)
    }
}
