//! Mkdir: create a new, empty, unlinked directory (SDMF `URI:DIR2:` or MDMF `URI:DIR2-MDMF:`).
//! One round trip once the key is there; the key comes from the caller (`NeedKey`, answered by
//! [`Mkdir::provide_key`]), so the operation never waits on key generation itself.

use std::collections::VecDeque;

use crate::cap::Cap;
use crate::crypto::rsa_keys::MutableKey;
use crate::dirnode::Directory;
use crate::mutable::layout::MutableFormat;
use crate::op::{ClientOp, RequestId, Transmit};
use crate::placement::ServerId;
use crate::time::Instant;
use crate::wire::Response;

use super::cache::{DirCache, Remembered};
use super::ctx::{Ctx, DirConfig};
use super::error::DirOpError;
use super::progress::DirProgress;
use super::read::access_of;
use super::subops::{SubDone, SubId};

#[derive(Debug)]
pub enum MkdirEvent {
    Progress(DirProgress),
    /// Call [`Mkdir::provide_key`] with a fresh key (or [`Mkdir::key_unavailable`]).
    NeedKey,
    /// The new directory's write cap.
    Done(Cap),
    Failed(DirOpError),
}

#[derive(Debug)]
enum Phase {
    NeedKey,
    Creating(SubId),
    Over,
}

/// Creating one directory.
#[derive(Debug)]
pub struct Mkdir {
    ctx: Ctx,
    format: MutableFormat,
    phase: Phase,
    events: VecDeque<MkdirEvent>,
}

impl Mkdir {
    pub fn new(_now: Instant, config: DirConfig, seed: [u8; 32], format: MutableFormat) -> Mkdir {
        Mkdir {
            ctx: Ctx::new(config, seed),
            format,
            phase: Phase::NeedKey,
            events: VecDeque::from([MkdirEvent::NeedKey]),
        }
    }

    /// A fresh key (never used for another file) for the new directory.
    pub fn provide_key(&mut self, now: Instant, key: MutableKey) {
        if matches!(self.phase, Phase::NeedKey) {
            let id = self.ctx.subs.create(now, self.format, key, Vec::new());
            self.phase = Phase::Creating(id);
            self.pump(now);
        }
    }

    /// No key can be had: the operation fails, having written nothing.
    pub fn key_unavailable(&mut self, reason: impl Into<String>) {
        if matches!(self.phase, Phase::NeedKey) {
            self.finish(Err(DirOpError::NoKey {
                reason: reason.into(),
            }));
        }
    }

    pub fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Over)
    }

    /// Gives the cache the new directory's state (call once it is finished).
    pub fn return_to(&mut self, cache: &mut DirCache) {
        self.ctx.return_to(cache);
    }

    fn finish(&mut self, outcome: Result<Cap, DirOpError>) {
        self.phase = Phase::Over;
        self.ctx.subs.clear();
        self.events.push_back(match outcome {
            Ok(cap) => MkdirEvent::Done(cap),
            Err(e) => MkdirEvent::Failed(e),
        });
    }

    fn pump(&mut self, _now: Instant) {
        for (id, done) in self.ctx.subs.take_finished() {
            let (Phase::Creating(c), SubDone::Published(result)) = (&self.phase, done) else {
                continue;
            };
            if *c != id {
                continue;
            }
            let outcome = result
                .map_err(|source| DirOpError::Create { source })
                .and_then(|r| {
                    let cap = Cap::directory(r.cap).map_err(|_| DirOpError::UnknownCap {
                        path: "the new directory".into(),
                    })?;
                    let dir = Directory::new(access_of(&cap, &[])?);
                    self.ctx
                        .memo
                        .remember(cap.clone(), Remembered { map: r.map, dir });
                    self.ctx.progress.push_back(DirProgress::Created);
                    Ok(cap)
                });
            while let Some(p) = self.ctx.progress.pop_front() {
                self.events.push_back(MkdirEvent::Progress(p));
            }
            self.finish(outcome);
        }
    }
}

impl ClientOp for Mkdir {
    type Event = MkdirEvent;

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
        self.pump(now);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.ctx.subs.poll_transmit()
    }

    fn poll_event(&mut self) -> Option<MkdirEvent> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.ctx.subs.poll_timeout()
    }
}
