//! Lookup: what a path names below a root. Every directory on the way is read fresh; those the
//! cache can guess are read side by side, so a path through remembered directories costs one
//! round trip whatever its depth.

use std::collections::VecDeque;

use crate::cap::Cap;
use crate::dirnode::{ChildCap, Metadata};
use crate::op::{ClientOp, RequestId, Transmit};
use crate::placement::ServerId;
use crate::time::Instant;
use crate::wire::Response;

use super::cache::DirCache;
use super::ctx::{earliest, Ctx, DirConfig};
use super::error::{show_path, DirOpError};
use super::progress::DirProgress;
use super::read::access_of;
use super::walk::{Walk, WalkStatus};

/// What a path names.
#[derive(Clone, Debug, PartialEq)]
pub struct Found {
    /// The object (the root itself for an empty path).
    pub cap: ChildCap,
    /// The link's metadata (none for the root itself).
    pub metadata: Option<Metadata>,
}

#[derive(Debug)]
pub enum LookupEvent {
    Progress(DirProgress),
    Done(Found),
    Failed(DirOpError),
}

/// Resolving a path.
#[derive(Debug)]
pub struct Lookup {
    ctx: Ctx,
    path: Vec<String>,
    walk: Option<Walk>,
    events: VecDeque<LookupEvent>,
    over: bool,
}

impl Lookup {
    /// Looks up `path` (from [`crate::dirnode::split_path`]) below the directory `root`.
    pub fn new(
        now: Instant,
        config: DirConfig,
        seed: [u8; 32],
        cache: &mut DirCache,
        root: Cap,
        path: Vec<String>,
    ) -> Lookup {
        let mut ctx = Ctx::new(config, seed);
        ctx.borrow_signatures(cache);
        let walk = path.split_last().map(|(_, dirs)| {
            Walk::new(
                now,
                &mut ctx,
                cache,
                root.clone(),
                dirs.to_vec(),
                true,
                None,
            )
        });
        let mut op = Lookup {
            ctx,
            path,
            walk,
            events: VecDeque::new(),
            over: false,
        };
        if op.walk.is_none() {
            // The root itself: nothing to read, but a verify cap names nothing usable.
            let found = Found {
                cap: ChildCap::Known(root.clone()),
                metadata: None,
            };
            let outcome = match &root {
                Cap::Directory(_) => access_of(&root, &[]).map(|_| found),
                _ => Ok(found),
            };
            op.finish(outcome);
        }
        op.pump(now);
        op
    }

    pub fn is_finished(&self) -> bool {
        self.over
    }

    /// Gives the cache what this operation learned (call once it is finished).
    pub fn return_to(&mut self, cache: &mut DirCache) {
        self.ctx.return_to(cache);
    }

    fn finish(&mut self, outcome: Result<Found, DirOpError>) {
        self.over = true;
        self.ctx.subs.clear();
        self.events.push_back(match outcome {
            Ok(found) => LookupEvent::Done(found),
            Err(e) => LookupEvent::Failed(e),
        });
    }

    fn pump(&mut self, now: Instant) {
        if let Some(walk) = self.walk.as_mut() {
            loop {
                let finished = self.ctx.subs.take_finished();
                if finished.is_empty() {
                    break;
                }
                for (id, done) in finished {
                    walk.on_done(now, &mut self.ctx, id, done);
                }
            }
        }
        while let Some(p) = self.ctx.progress.pop_front() {
            self.events.push_back(LookupEvent::Progress(p));
        }
        if self.over {
            return;
        }
        let Some(walk) = self.walk.as_mut() else {
            return;
        };
        if let WalkStatus::Done(outcome) = walk.status() {
            let outcome = outcome.and_then(|reached| {
                let last = self.path.last().cloned().unwrap_or_default();
                reached
                    .dir
                    .as_ref()
                    .and_then(|dir| dir.get(&last))
                    .map(|child| Found {
                        cap: child.cap.clone(),
                        metadata: Some(child.metadata.clone()),
                    })
                    .ok_or_else(|| DirOpError::NotFound {
                        path: show_path(&self.path),
                    })
            });
            self.finish(outcome);
        }
    }
}

impl ClientOp for Lookup {
    type Event = LookupEvent;

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
        if let Some(walk) = self.walk.as_mut() {
            walk.handle_timeout(now, &mut self.ctx);
        }
        self.pump(now);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.ctx.subs.poll_transmit()
    }

    fn poll_event(&mut self) -> Option<LookupEvent> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.over {
            return None;
        }
        let walk = self.walk.as_ref().and_then(Walk::poll_timeout);
        earliest(self.ctx.subs.poll_timeout(), walk)
    }
}
