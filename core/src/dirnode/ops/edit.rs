//! One read-modify-write of one directory, retried when another writer got there first.
//!
//! With a remembered state the change is applied and published at once (one round trip);
//! without, the directory is read first (two). When the servers refuse the publish because the
//! directory changed ([`PublishError::Conflict`]) the state is dropped, and after a random pause
//! (a timer, see [`super::backoff`]) the directory is read again and the change reapplied, up to
//! [`MAX_ATTEMPTS`] times.
//!
//! A refused publish may still have reached some servers, so a re-read can already show the
//! change: each [`Change`] recognises its own effect on a retry, so a change is never applied
//! twice; the table is still published again then, because the partly written version may lose
//! to a competing one of the same sequence number on the next reader's servers. A refused change (the name exists, the directory is
//! read-only) publishes nothing at all.

use crate::cap::Cap;
use crate::dirnode::metadata::Metadata;
use crate::dirnode::{Access, Child, ChildCap, Directory, EditError, Overwrite};
use crate::mutable::{FileKeys, PublishError};
use crate::time::Instant;

use super::backoff::MAX_ATTEMPTS;
use super::cache::Remembered;
use super::ctx::{link_time, Ctx};
use super::error::{show_path, DirOpError};
use super::progress::DirProgress;
use super::read::{self, dir_cap, Reading};
use super::subops::{SubDone, SubId};

/// What to change in a directory.
#[derive(Clone, Debug)]
pub(crate) enum Change {
    /// Link `cap` as `name` (metadata: replaces the user keys, see [`Directory::add`]).
    Add {
        name: String,
        cap: ChildCap,
        metadata: Option<Metadata>,
        overwrite: Overwrite,
    },
    Remove {
        name: String,
    },
    Rename {
        from: String,
        to: String,
        overwrite: Overwrite,
    },
    /// Link a directory just made as `name`, unless someone else linked a directory there
    /// meanwhile: theirs is then used and nothing is published.
    LinkNewDir {
        name: String,
        cap: Cap,
    },
}

/// What a change did.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Changed {
    /// Linked; what the name linked before, if anything.
    Added {
        replaced: Option<Child>,
    },
    Removed(Child),
    /// Renamed; the cap that moved.
    Renamed {
        moved: ChildCap,
    },
    /// The directory now linked under the name (ours, or one another writer made).
    LinkedDir(Cap),
}

impl Change {
    /// Applies the change to `dir`. `earlier`: what an earlier, conflicted attempt did (if it
    /// got as far as publishing), to recognise its effect. Returns the outcome and whether `dir`
    /// changed (nothing to publish otherwise).
    fn apply(
        &self,
        dir: &mut Directory,
        earlier: Option<&Changed>,
        now: f64,
    ) -> Result<(Changed, bool), DirOpError> {
        let edit = |source| DirOpError::Edit {
            path: String::new(),
            source,
        };
        match self {
            Change::Add {
                name,
                cap,
                metadata,
                overwrite,
            } => {
                if let (Some(Changed::Added { replaced }), Some(there)) = (earlier, dir.get(name)) {
                    if &there.cap == cap {
                        return Ok((
                            Changed::Added {
                                replaced: replaced.clone(),
                            },
                            false,
                        ));
                    }
                }
                let replaced = dir.get(name).cloned();
                dir.add(name, cap.clone(), metadata.as_ref(), *overwrite, now)
                    .map_err(edit)?;
                Ok((Changed::Added { replaced }, true))
            }
            Change::Remove { name } => match dir.remove(name) {
                Ok(child) => Ok((Changed::Removed(child), true)),
                // The conflicted attempt reached enough servers: it is already gone.
                Err(EditError::NoSuchChild { .. })
                    if matches!(earlier, Some(Changed::Removed(_))) =>
                {
                    Ok((earlier.cloned().expect("matched above"), false))
                }
                Err(e) => Err(edit(e)),
            },
            Change::Rename {
                from,
                to,
                overwrite,
            } => {
                if let Some(Changed::Renamed { moved }) = earlier {
                    let landed = dir.get(to).is_some_and(|c| &c.cap == moved);
                    if dir.get(from).is_none() && landed {
                        // Moved by the earlier attempt: its child is at `to`, nothing at `from`.
                        return Ok((earlier.cloned().expect("matched above"), false));
                    }
                }
                let moved = dir.get(from).map(|c| c.cap.clone());
                dir.rename(from, to, *overwrite, now).map_err(edit)?;
                let changed = from != to;
                match moved {
                    Some(moved) => Ok((Changed::Renamed { moved }, changed)),
                    None => Err(edit(EditError::NoSuchChild { name: from.clone() })),
                }
            }
            Change::LinkNewDir { name, cap } => match dir.get(name) {
                Some(Child {
                    cap: ChildCap::Known(there @ Cap::Directory(_)),
                    ..
                }) => Ok((Changed::LinkedDir(there.clone()), false)),
                Some(_) => Err(edit(EditError::ExistingChild { name: name.clone() })),
                None => {
                    dir.add(name, ChildCap::Known(cap.clone()), None, Overwrite::No, now)
                        .map_err(edit)?;
                    Ok((Changed::LinkedDir(cap.clone()), true))
                }
            },
        }
    }
}

#[derive(Debug)]
enum Phase {
    Reading(SubId),
    Publishing {
        id: SubId,
        dir: Directory,
        value: Changed,
    },
    /// Backing off after a conflict until this instant.
    Waiting(Instant),
    Over(Option<Result<Changed, DirOpError>>),
}

/// A change to one directory in progress.
#[derive(Debug)]
pub(crate) struct Edit {
    cap: Cap,
    path: Vec<String>,
    change: Change,
    /// Attempts made so far (the one running included).
    attempt: u32,
    earlier: Option<Changed>,
    /// The state being edited came from memory, not from a read by this edit: it may be
    /// stale, so a refusal based on it is checked against a fresh read.
    remembered: bool,
    phase: Phase,
    pub conflicts: u32,
}

impl Edit {
    /// Starts changing the directory `cap` (at `path`, for messages), from `start` when the
    /// caller holds its state (taken from the cache or just read).
    pub fn new(
        now: Instant,
        ctx: &mut Ctx,
        cap: Cap,
        path: Vec<String>,
        change: Change,
        start: Option<Remembered>,
    ) -> Edit {
        let mut e = Edit {
            cap,
            path,
            change,
            attempt: 1,
            earlier: None,
            remembered: false,
            phase: Phase::Over(None),
            conflicts: 0,
        };
        if let Err(err) = e.check_writeable() {
            if let Some(state) = start {
                ctx.memo.give_back(e.cap.clone(), state);
            }
            e.phase = Phase::Over(Some(Err(err)));
            return e;
        }
        match start {
            Some(state) => {
                e.remembered = true;
                e.apply(now, ctx, state)
            }
            None => e.read(now, ctx),
        }
        e
    }

    fn check_writeable(&self) -> Result<(), DirOpError> {
        let d = dir_cap(&self.cap, &self.path)?;
        match Access::for_cap(&d) {
            Some(Access::ReadWrite { .. }) => Ok(()),
            Some(_) => Err(DirOpError::ReadOnly {
                path: show_path(&self.path),
                kind: d.kind_name(),
            }),
            None => Err(DirOpError::VerifyCap),
        }
    }

    /// The outcome, once over (taken: asked once).
    pub fn outcome(&mut self) -> Option<Result<Changed, DirOpError>> {
        match &mut self.phase {
            Phase::Over(outcome) => outcome.take(),
            _ => None,
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Waiting(at) => Some(at),
            _ => None,
        }
    }

    pub fn handle_timeout(&mut self, now: Instant, ctx: &mut Ctx) {
        if matches!(self.phase, Phase::Waiting(at) if at <= now) {
            self.read(now, ctx);
        }
    }

    fn finish(&mut self, outcome: Result<Changed, DirOpError>) {
        self.phase = Phase::Over(Some(outcome));
    }

    fn read(&mut self, now: Instant, ctx: &mut Ctx) {
        self.remembered = false;
        match read::start(now, ctx, &self.cap, &self.path) {
            Reading::Running(id) => self.phase = Phase::Reading(id),
            Reading::Now(result) => self.read_done(now, ctx, *result),
        }
    }

    fn read_done(
        &mut self,
        now: Instant,
        ctx: &mut Ctx,
        result: Result<read::Fetched, DirOpError>,
    ) {
        match result {
            Ok(read::Fetched {
                dir,
                map: Some(map),
            }) => self.apply(now, ctx, Remembered { map, dir }),
            Ok(_) => {
                let kind = dir_cap(&self.cap, &self.path).map_or("DIR2", |d| d.kind_name());
                self.finish(Err(DirOpError::ReadOnly {
                    path: show_path(&self.path),
                    kind,
                }))
            }
            Err(e) => self.finish(Err(e)),
        }
    }

    /// Applies the change to `state` and publishes it (or finishes, if nothing changes).
    fn apply(&mut self, now: Instant, ctx: &mut Ctx, state: Remembered) {
        let Remembered { map, mut dir } = state;
        match self
            .change
            .apply(&mut dir, self.earlier.as_ref(), link_time(now))
        {
            // Refused on a remembered state: another client may have changed the directory
            // since (linked the name an unlink wants), so read it afresh and decide again.
            Err(_) if self.remembered => self.read(now, ctx),
            Err(mut e) => {
                // Refused: nothing is published, and the state stays good for the next edit.
                if let DirOpError::Edit { path, .. } = &mut e {
                    *path = show_path(&self.path);
                }
                if let (
                    Change::LinkNewDir { name, .. },
                    DirOpError::Edit {
                        source: EditError::ExistingChild { .. },
                        ..
                    },
                ) = (&self.change, &e)
                {
                    let mut path = self.path.clone();
                    path.push(name.clone());
                    e = DirOpError::Exists {
                        path: show_path(&path),
                    };
                }
                ctx.memo.remember(self.cap.clone(), Remembered { map, dir });
                self.finish(Err(e));
            }
            // Nothing to change, and no earlier attempt of ours published anything.
            Ok((value, false)) if self.earlier.is_none() => {
                ctx.memo.remember(self.cap.clone(), Remembered { map, dir });
                self.finish(Ok(value));
            }
            // Changed now, or changed already by our earlier, conflicted attempt. That attempt
            // may have landed on only some servers, as a version competing with another
            // writer's of the same sequence number; the read may have picked it, but the next
            // writer's read may pick the other. So the table is published again as a newer
            // version everywhere, even when it already holds the change.
            Ok((value, _)) => {
                let keys = match FileKeys::from_cap(&self.cap) {
                    Ok(keys) => keys,
                    Err(_) => {
                        return self.finish(Err(DirOpError::UnknownCap {
                            path: show_path(&self.path),
                        }))
                    }
                };
                let id = ctx.subs.update(now, keys, dir.pack(), Some(map));
                self.earlier = Some(value.clone());
                self.phase = Phase::Publishing { id, dir, value };
            }
        }
    }

    /// Whether the sub-operation `id` is this edit's.
    pub fn owns(&self, id: SubId) -> bool {
        match &self.phase {
            Phase::Reading(r) => *r == id,
            Phase::Publishing { id: p, .. } => *p == id,
            _ => false,
        }
    }

    /// Takes a finished sub-operation if it is this edit's; false otherwise.
    pub fn on_done(&mut self, now: Instant, ctx: &mut Ctx, id: SubId, done: SubDone) -> bool {
        match &self.phase {
            Phase::Reading(r) if *r == id => {
                let result = read::finish(ctx, &self.cap, &self.path, done);
                self.read_done(now, ctx, result);
                true
            }
            Phase::Publishing { id: p, .. } if *p == id => {
                let Phase::Publishing { dir, value, .. } =
                    std::mem::replace(&mut self.phase, Phase::Over(None))
                else {
                    return true;
                };
                match done {
                    SubDone::Published(Ok(result)) => {
                        ctx.progress.push_back(DirProgress::Published {
                            path: show_path(&self.path),
                        });
                        ctx.memo.remember(
                            self.cap.clone(),
                            Remembered {
                                map: result.map,
                                dir,
                            },
                        );
                        self.finish(Ok(value));
                    }
                    SubDone::Published(Err(PublishError::Conflict { .. })) => {
                        self.conflicts += 1;
                        if self.attempt >= MAX_ATTEMPTS {
                            // What we remember of it is stale: the next edit reads afresh.
                            ctx.memo.forget(self.cap.clone());
                            self.finish(Err(DirOpError::TooManyConflicts {
                                path: show_path(&self.path),
                                attempts: self.attempt,
                            }));
                            return true;
                        }
                        let retry_at = now + ctx.backoff(self.attempt);
                        self.attempt += 1;
                        ctx.progress.push_back(DirProgress::Conflict {
                            path: show_path(&self.path),
                            attempt: self.attempt,
                            retry_at,
                        });
                        self.phase = Phase::Waiting(retry_at);
                    }
                    SubDone::Published(Err(source)) => {
                        // Some servers may hold the new version now: read afresh next time.
                        ctx.memo.forget(self.cap.clone());
                        self.finish(Err(DirOpError::Publish {
                            path: show_path(&self.path),
                            source,
                        }))
                    }
                    _ => {}
                }
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(s: &str) -> ChildCap {
        ChildCap::from_cap(Cap::Lit {
            data: s.as_bytes().to_vec(),
        })
    }

    fn rw() -> Directory {
        Directory::new(Access::ReadWrite { writekey: [4; 16] })
    }

    #[test]
    fn a_retried_add_that_already_landed_changes_nothing() {
        let add = Change::Add {
            name: "f".into(),
            cap: lit("one"),
            metadata: None,
            overwrite: Overwrite::No,
        };
        let mut dir = rw();
        let (first, changed) = add.apply(&mut dir, None, 1.0).unwrap();
        assert!(changed);
        assert_eq!(first, Changed::Added { replaced: None });
        // The re-read shows our link: recognised, not refused as an existing name.
        let (again, changed) = add.apply(&mut dir, Some(&first), 2.0).unwrap();
        assert!(!changed);
        assert_eq!(again, first);
        // Without an earlier attempt the same add is refused.
        assert!(matches!(
            add.apply(&mut dir, None, 3.0),
            Err(DirOpError::Edit {
                source: EditError::ExistingChild { .. },
                ..
            })
        ));
    }

    #[test]
    fn a_retried_remove_and_rename_recognise_their_effect() {
        let mut dir = rw();
        dir.add("a", lit("a"), None, false, 1.0).unwrap();
        let remove = Change::Remove { name: "a".into() };
        let (removed, changed) = remove.apply(&mut dir, None, 1.0).unwrap();
        assert!(changed);
        let (again, changed) = remove.apply(&mut dir, Some(&removed), 2.0).unwrap();
        assert_eq!((again, changed), (removed, false));
        dir.add("b", lit("b"), None, false, 1.0).unwrap();
        let rename = Change::Rename {
            from: "b".into(),
            to: "c".into(),
            overwrite: Overwrite::No,
        };
        let (renamed, changed) = rename.apply(&mut dir, None, 1.0).unwrap();
        assert!(changed);
        assert_eq!(renamed, Changed::Renamed { moved: lit("b") });
        assert!(!rename.apply(&mut dir, Some(&renamed), 2.0).unwrap().1);
        assert!(matches!(
            rename.apply(&mut dir, None, 3.0),
            Err(DirOpError::Edit {
                source: EditError::NoSuchChild { .. },
                ..
            })
        ));
    }

    #[test]
    fn a_new_directory_yields_to_one_linked_meanwhile() {
        let theirs = Cap::directory(Cap::SskWrite {
            writekey: [1; 16],
            fingerprint: [1; 32],
        })
        .unwrap();
        let ours = Cap::directory(Cap::SskWrite {
            writekey: [2; 16],
            fingerprint: [2; 32],
        })
        .unwrap();
        let mut dir = rw();
        dir.add("d", ChildCap::from_cap(theirs.clone()), None, false, 1.0)
            .unwrap();
        let link = Change::LinkNewDir {
            name: "d".into(),
            cap: ours,
        };
        assert_eq!(
            link.apply(&mut dir, None, 2.0).unwrap(),
            (Changed::LinkedDir(theirs), false)
        );
        dir.add("f", lit("f"), None, false, 1.0).unwrap();
        let over_file = Change::LinkNewDir {
            name: "f".into(),
            cap: dir_cap_for_test(),
        };
        assert!(over_file.apply(&mut dir, None, 2.0).is_err());
    }

    fn dir_cap_for_test() -> Cap {
        Cap::directory(Cap::SskWrite {
            writekey: [3; 16],
            fingerprint: [3; 32],
        })
        .unwrap()
    }
}
