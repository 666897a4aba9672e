//! Link: make a path below a root name a cap (a file already uploaded, or any other object),
//! with Tahoe's overwrite policy; optionally making missing directories on the way (`-p`, as
//! Tahoe's web API does for `PUT /uri/DIRCAP/a/b/name`). Put-into-path is this operation with
//! parents made ([`Link::put_into_path`]); it reports the link it replaced.
//!
//! Round trips: one when the parent is the root and its state is remembered; one more per level
//! that must be read (levels the cache can guess are read side by side); two for a cold edit.

use std::collections::VecDeque;

use crate::cap::Cap;
use crate::crypto::rsa_keys::MutableKey;
use crate::dirnode::{Child, ChildCap, Metadata, Overwrite};
use crate::mutable::layout::MutableFormat;
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

/// How to link.
#[derive(Clone, Debug)]
pub struct LinkOptions {
    /// User metadata for the link (replacing an existing link's user keys); `None` keeps them.
    pub metadata: Option<Metadata>,
    pub overwrite: Overwrite,
    /// Make missing directories on the way, in this format.
    pub parents: Option<MutableFormat>,
}

impl LinkOptions {
    /// Putting a file at a path: no metadata of its own, replacing as `overwrite` allows, and
    /// with `parents`, missing directories made as SDMF (as Tahoe's web API does).
    pub fn put(overwrite: Overwrite, parents: bool) -> LinkOptions {
        LinkOptions {
            metadata: None,
            overwrite,
            parents: parents.then_some(MutableFormat::Sdmf),
        }
    }
}

impl Default for LinkOptions {
    fn default() -> Self {
        LinkOptions {
            metadata: None,
            overwrite: Overwrite::No,
            parents: None,
        }
    }
}

/// A finished link.
#[derive(Clone, Debug, PartialEq)]
pub struct Linked {
    /// What the name linked before, when the link replaced one.
    pub replaced: Option<Child>,
}

#[derive(Debug)]
pub enum LinkEvent {
    Progress(DirProgress),
    /// A missing directory on the way must be made: call [`Link::provide_key`].
    NeedKey,
    Done(Linked),
    Failed(DirOpError),
}

/// Linking a cap at a path.
#[derive(Debug)]
pub struct Link {
    ctx: Ctx,
    dirs: Vec<String>,
    name: String,
    cap: ChildCap,
    options: LinkOptions,
    phase: Phase,
    asked_key: bool,
    events: VecDeque<LinkEvent>,
}

impl Link {
    /// Links `cap` as `path` below `root`: the last name is the new link.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        now: Instant,
        config: DirConfig,
        seed: [u8; 32],
        cache: &mut DirCache,
        root: Cap,
        path: Vec<String>,
        cap: ChildCap,
        options: LinkOptions,
    ) -> Link {
        let mut ctx = Ctx::new(config, seed);
        ctx.borrow_signatures(cache);
        let (name, dirs, phase, error) = match path.split_last() {
            None => (
                String::new(),
                Vec::new(),
                Phase::Over,
                Some(DirOpError::NeedsName {
                    path: show_path(&path),
                    what: "linked",
                }),
            ),
            Some((name, dirs)) => {
                let walk = Walk::new(
                    now,
                    &mut ctx,
                    cache,
                    root,
                    dirs.to_vec(),
                    false,
                    options.parents,
                );
                (
                    name.clone(),
                    dirs.to_vec(),
                    Phase::Walking(Box::new(walk)),
                    None,
                )
            }
        };
        let mut op = Link {
            ctx,
            dirs,
            name,
            cap,
            options,
            phase,
            asked_key: false,
            events: VecDeque::new(),
        };
        match error {
            Some(e) => op.events.push_back(LinkEvent::Failed(e)),
            None => op.pump(now),
        }
        op
    }

    /// Links an already uploaded file's `cap` as `path`, making missing directories (SDMF)
    /// when `parents`, and replacing an existing link as `overwrite` allows.
    #[allow(clippy::too_many_arguments)]
    pub fn put_into_path(
        now: Instant,
        config: DirConfig,
        seed: [u8; 32],
        cache: &mut DirCache,
        root: Cap,
        path: Vec<String>,
        cap: Cap,
        overwrite: Overwrite,
        parents: bool,
    ) -> Link {
        let options = LinkOptions::put(overwrite, parents);
        Link::new(
            now,
            config,
            seed,
            cache,
            root,
            path,
            ChildCap::Known(cap),
            options,
        )
    }

    /// A fresh key for a directory the walk must make.
    pub fn provide_key(&mut self, now: Instant, key: MutableKey) {
        if let Phase::Walking(walk) = &mut self.phase {
            walk.provide_key(now, &mut self.ctx, key);
            self.asked_key = false;
            self.pump(now);
        }
    }

    /// No key can be had: the operation fails (directories made so far stay linked).
    pub fn key_unavailable(&mut self, now: Instant, reason: impl Into<String>) {
        if let Phase::Walking(walk) = &mut self.phase {
            walk.key_unavailable(reason.into());
            self.pump(now);
        }
    }

    pub fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Over)
    }

    /// Gives the cache what this operation learned (call once it is finished).
    pub fn return_to(&mut self, cache: &mut DirCache) {
        self.ctx.return_to(cache);
    }

    fn finish(&mut self, outcome: Result<Linked, DirOpError>) {
        if let Phase::Walking(walk) = &mut self.phase {
            walk.give_back(&mut self.ctx);
        }
        self.phase = Phase::Over;
        self.ctx.subs.clear();
        self.events.push_back(match outcome {
            Ok(linked) => LinkEvent::Done(linked),
            Err(e) => LinkEvent::Failed(e),
        });
    }

    fn step(&mut self, now: Instant) {
        loop {
            match &mut self.phase {
                Phase::Walking(walk) => match walk.status() {
                    WalkStatus::Pending => return,
                    WalkStatus::NeedKey => {
                        if !self.asked_key {
                            self.asked_key = true;
                            self.events.push_back(LinkEvent::NeedKey);
                        }
                        return;
                    }
                    WalkStatus::Done(Err(e)) => return self.finish(Err(e)),
                    WalkStatus::Done(Ok(reached)) => {
                        let change = Change::Add {
                            name: self.name.clone(),
                            cap: self.cap.clone(),
                            metadata: self.options.metadata.clone(),
                            overwrite: self.options.overwrite,
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
                        Some(Ok(Changed::Added { replaced })) => {
                            self.finish(Ok(Linked { replaced }))
                        }
                        Some(Ok(_)) => self.finish(Ok(Linked { replaced: None })),
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
            self.events.push_back(LinkEvent::Progress(p));
        }
    }
}

impl ClientOp for Link {
    type Event = LinkEvent;

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

    fn poll_event(&mut self) -> Option<LinkEvent> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.phase.poll_timeout(&self.ctx)
    }
}
