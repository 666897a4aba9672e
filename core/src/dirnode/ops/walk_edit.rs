//! The phases of an operation that walks to a directory and then changes it (link, unlink):
//! where finished sub-operations, timers and deadlines go in each phase, written once.

use crate::time::Instant;

use super::ctx::{earliest, Ctx};
use super::edit::Edit;
use super::subops::{SubDone, SubId};
use super::walk::Walk;

#[derive(Debug)]
pub(crate) enum Phase {
    Walking(Box<Walk>),
    Editing(Box<Edit>),
    Over,
}

impl Phase {
    /// Hand a finished sub-operation to the phase that started it.
    pub(crate) fn on_done(&mut self, now: Instant, ctx: &mut Ctx, id: SubId, done: SubDone) {
        match self {
            Phase::Walking(walk) => {
                walk.on_done(now, ctx, id, done);
            }
            Phase::Editing(edit) => {
                edit.on_done(now, ctx, id, done);
            }
            Phase::Over => {}
        }
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant, ctx: &mut Ctx) {
        match self {
            Phase::Walking(walk) => walk.handle_timeout(now, ctx),
            Phase::Editing(edit) => edit.handle_timeout(now, ctx),
            Phase::Over => {}
        }
    }

    /// The operation's next deadline: its sub-operations' or the phase's own (none once over).
    pub(crate) fn poll_timeout(&self, ctx: &Ctx) -> Option<Instant> {
        let own = match self {
            Phase::Walking(walk) => walk.poll_timeout(),
            Phase::Editing(edit) => edit.poll_timeout(),
            Phase::Over => return None,
        };
        earliest(ctx.subs.poll_timeout(), own)
    }
}
