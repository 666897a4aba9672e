//! List: read one directory (always from the grid: one round trip for a small mutable one, none
//! for a literal one). A writeable directory's state is remembered for the next edit.

use std::collections::VecDeque;

use crate::cap::Cap;
use crate::dirnode::Directory;
use crate::op::{ClientOp, RequestId, Transmit};
use crate::placement::ServerId;
use crate::time::Instant;
use crate::wire::Response;

use super::cache::DirCache;
use super::ctx::{earliest, Ctx, DirConfig};
use super::error::DirOpError;
use super::progress::DirProgress;
use super::walk::{Walk, WalkStatus};

#[derive(Debug)]
pub enum ListEvent {
    Progress(DirProgress),
    Done(Directory),
    Failed(DirOpError),
}

/// Reading one directory's entries.
#[derive(Debug)]
pub struct List {
    ctx: Ctx,
    walk: Walk,
    events: VecDeque<ListEvent>,
    over: bool,
}

impl List {
    /// Reads the directory `cap`. `seed` makes the operation's randomness reproducible.
    pub fn new(
        now: Instant,
        config: DirConfig,
        seed: [u8; 32],
        cache: &mut DirCache,
        cap: Cap,
    ) -> List {
        let mut ctx = Ctx::new(config, seed);
        ctx.borrow_signatures(cache);
        let walk = Walk::new(now, &mut ctx, cache, cap, Vec::new(), true, None);
        let mut op = List {
            ctx,
            walk,
            events: VecDeque::new(),
            over: false,
        };
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

    fn pump(&mut self, now: Instant) {
        loop {
            let finished = self.ctx.subs.take_finished();
            if finished.is_empty() {
                break;
            }
            for (id, done) in finished {
                self.walk.on_done(now, &mut self.ctx, id, done);
            }
        }
        while let Some(p) = self.ctx.progress.pop_front() {
            self.events.push_back(ListEvent::Progress(p));
        }
        if self.over {
            return;
        }
        if let WalkStatus::Done(outcome) = self.walk.status() {
            self.over = true;
            self.ctx.subs.clear();
            self.events.push_back(match outcome {
                Ok(reached) => match reached.dir {
                    Some(dir) => ListEvent::Done(dir),
                    None => ListEvent::Failed(DirOpError::VerifyCap),
                },
                Err(e) => ListEvent::Failed(e),
            });
        }
    }
}

impl ClientOp for List {
    type Event = ListEvent;

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
        self.walk.handle_timeout(now, &mut self.ctx);
        self.pump(now);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.ctx.subs.poll_transmit()
    }

    fn poll_event(&mut self) -> Option<ListEvent> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.over {
            return None;
        }
        earliest(self.ctx.subs.poll_timeout(), self.walk.poll_timeout())
    }
}
