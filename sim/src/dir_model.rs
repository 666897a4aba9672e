//! What the simulator knows of one directory: for each name, what it must link as far as
//! acknowledgements tell, and the checks of listings, lookups and edit outcomes against that.
//!
//! A name is *settled* by an edit acknowledged while no other edit of the name ran or started
//! before it ended; any other edit leaves it unknown until the next such acknowledgement. Only
//! settled names are checked, and nothing is checked in a directory once an edit may have left
//! competing versions behind ([`DirModel::poisoned`]).

use std::collections::BTreeMap;

use lafs_core::cap::Cap;

use crate::report::Violation;

/// One directory.
#[derive(Debug, Default)]
pub struct DirModel {
    pub cap: Option<Cap>,
    /// A create is running or done (the key is spent then).
    pub creating: bool,
    names: BTreeMap<u32, NameState>,
    /// An edit failed part-way through its publish (its write may still land late), or ran
    /// after faults had split the servers: versions of one sequence number may compete, so
    /// nothing about this directory is checked any more.
    pub poisoned: bool,
}

/// What one edit of one name saw at its start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameEdit {
    pub name: u32,
    /// The name's start count including this edit.
    starts: u64,
    /// No other edit of the name was running when this one started.
    alone: bool,
    /// What the name was settled to at the start (`None`: unknown).
    before: Option<Option<Cap>>,
}

/// What an acknowledged or refused edit says it did to its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EditOutcome {
    /// Linked `cap`, replacing `replaced` (what the name linked before, if anything).
    Linked { cap: Cap, replaced: Option<Cap> },
    /// Removed the link, which was to `removed`.
    Removed { removed: Cap },
    /// Moved the link from this name to another.
    MovedAway,
    /// Linked what was moved here from `from`'s name (`from` is that name's edit).
    MovedHere { from: NameEdit },
    /// Refused: the name links nothing.
    NoSuchChild,
    /// Failed any other way (nothing known about what it did).
    Failed,
}

#[derive(Debug)]
struct NameState {
    /// Edits of this name running now.
    running: usize,
    /// Edits of this name started so far.
    starts: u64,
    /// The operation whose acknowledgement settled the name.
    settled_by: Option<usize>,
    /// `Some(cap)` / `Some(None)`: linked to `cap` / absent; `None`: unknown.
    settled: Option<Option<Cap>>,
}

impl Default for NameState {
    fn default() -> Self {
        // A name no edit has touched is absent.
        NameState {
            running: 0,
            starts: 0,
            settled: Some(None),
            settled_by: None,
        }
    }
}

impl DirModel {
    /// An edit of `name` starts.
    pub fn start_edit(&mut self, name: u32) -> NameEdit {
        let s = self.names.entry(name).or_default();
        let alone = s.running == 0;
        let before = if alone { s.settled.clone() } else { None };
        s.running += 1;
        s.starts += 1;
        s.settled = None;
        NameEdit {
            name,
            starts: s.starts,
            alone,
            before,
        }
    }

    /// Whether `edit` ran alone on its name: none running when it started, none started since.
    fn ran_alone(&self, edit: &NameEdit) -> bool {
        edit.alone && self.names.get(&edit.name).map(|s| s.starts) == Some(edit.starts)
    }

    /// An edit of `edit.name` by operation `op` ended with `outcome`. Returns the violation its
    /// outcome shows, if any (checked only for an edit that ran alone in an unpoisoned
    /// directory), and settles the name when the edit ran alone and was acknowledged.
    pub fn end_edit(
        &mut self,
        op: usize,
        dir: usize,
        edit: &NameEdit,
        outcome: &EditOutcome,
    ) -> Option<Violation> {
        let alone = self.ran_alone(edit);
        let violation = (alone && !self.poisoned)
            .then(|| self.check_outcome(edit, outcome))
            .flatten()
            .map(|detail| Violation::WrongEditOutcome {
                op,
                dir,
                name: edit.name,
                detail,
            });
        let now_links = match outcome {
            EditOutcome::Linked { cap, .. } => Some(Some(cap.clone())),
            EditOutcome::Removed { .. } | EditOutcome::MovedAway => Some(None),
            EditOutcome::MovedHere { from } if self.ran_alone(from) => from.before.clone(),
            EditOutcome::MovedHere { .. } | EditOutcome::NoSuchChild | EditOutcome::Failed => None,
        };
        let s = self.names.entry(edit.name).or_default();
        s.running = s.running.saturating_sub(1);
        if let (true, Some(links)) = (alone, now_links) {
            s.settled = Some(links);
            s.settled_by = Some(op);
        }
        violation
    }

    /// What is wrong with `outcome`, given the name's settled state when the edit started.
    fn check_outcome(&self, edit: &NameEdit, outcome: &EditOutcome) -> Option<String> {
        let before = edit.before.as_ref()?;
        let show = |c: &Option<Cap>| match c {
            Some(_) if c == before => "what it linked".to_string(),
            Some(cap) => cap.kind_name().to_string(),
            None => "nothing".to_string(),
        };
        match outcome {
            // Linking the cap the name holds already: whether it replaced that link or found
            // its own earlier attempt there cannot be told apart, and does not matter.
            EditOutcome::Linked {
                cap,
                replaced: None,
            } if before.as_ref() == Some(cap) => None,
            EditOutcome::Linked { cap, replaced } if replaced != before => {
                Some(if replaced.as_ref() == Some(cap) {
                    "a link reports replacing its own cap: its retry applied it again".to_string()
                } else {
                    format!(
                        "a link reports replacing {} while the name linked {}",
                        show(replaced),
                        show(before)
                    )
                })
            }
            EditOutcome::Removed { removed } if before.as_ref() != Some(removed) => Some(format!(
                "an unlink removed a link other than the one the name held ({})",
                show(before)
            )),
            EditOutcome::MovedAway if before.is_none() => Some(
                "a move reports moving a name that linked nothing: its retry moved something \
                 else"
                    .to_string(),
            ),
            EditOutcome::NoSuchChild if before.is_some() => Some(
                "an edit was refused for a missing name that was linked when it started: its \
                 own earlier attempt removed it, or it decided on a stale state"
                    .to_string(),
            ),
            _ => None,
        }
    }

    /// Violations of a fault-free final `listing` (name -> linked cap, `None` for a child of
    /// an unknown kind) against every settled name.
    pub fn check_listing(
        &self,
        dir: usize,
        listing: &BTreeMap<u32, Option<Cap>>,
    ) -> Vec<Violation> {
        let mut out = Vec::new();
        if self.poisoned {
            return out;
        }
        for (&name, state) in &self.names {
            let Some(want) = &state.settled else {
                continue;
            };
            let got = listing.get(&name);
            let detail = match (want, got) {
                (Some(cap), Some(Some(have))) if have == cap => continue,
                (None, None) => continue,
                (Some(_), None) => "an acknowledged link is missing",
                (Some(_), Some(_)) => "an acknowledged link points elsewhere",
                (None, Some(_)) => "an acknowledged unlink came back",
            };
            let detail = match state.settled_by {
                Some(by) => format!("{detail} (acknowledged to op {by})"),
                None => detail.to_string(),
            };
            out.push(Violation::LostLink { dir, name, detail });
        }
        out
    }

    /// A lookup of `name` starts: what [`DirModel::check_lookup`] needs (`None`: nothing to
    /// check, the name is unsettled or being edited).
    pub fn lookup_start(&self, name: u32) -> Option<(u64, Option<Cap>)> {
        let s = self.names.get(&name);
        let settled = s.map_or(Some(None), |s| s.settled.clone())?;
        let (starts, running) = s.map_or((0, 0), |s| (s.starts, s.running));
        (running == 0).then_some((starts, settled))
    }

    /// A lookup of `name` that started with `start` found `found` (`None`: no such name).
    /// Checked only if no edit of the name started meanwhile and the directory is unpoisoned.
    pub fn check_lookup(
        &self,
        op: usize,
        dir: usize,
        name: u32,
        start: &(u64, Option<Cap>),
        found: Option<&Cap>,
    ) -> Option<Violation> {
        let starts = self.names.get(&name).map_or(0, |s| s.starts);
        if self.poisoned || starts != start.0 || found == start.1.as_ref() {
            return None;
        }
        let detail = match (&start.1, found) {
            (Some(_), None) => "found nothing where an acknowledged link is",
            (None, Some(_)) => "found a link the name does not hold",
            _ => "found a cap other than the acknowledged one",
        };
        Some(Violation::WrongLookup {
            op,
            dir,
            name,
            detail: detail.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(b: u8) -> Cap {
        Cap::Lit { data: vec![b] }
    }

    #[test]
    fn an_edit_alone_settles_its_name_and_overlapping_ones_do_not() {
        let mut d = DirModel::default();
        let a = d.start_edit(1);
        let linked = EditOutcome::Linked {
            cap: cap(1),
            replaced: None,
        };
        assert_eq!(d.end_edit(0, 0, &a, &linked), None);
        assert_eq!(d.lookup_start(1), Some((1, Some(cap(1)))));
        let b = d.start_edit(1);
        let c = d.start_edit(1);
        assert_eq!(d.lookup_start(1), None);
        let removed = EditOutcome::Removed { removed: cap(1) };
        assert_eq!(d.end_edit(1, 0, &b, &removed), None);
        assert_eq!(d.end_edit(2, 0, &c, &EditOutcome::Failed), None);
        assert_eq!(d.lookup_start(1), None, "unknown after overlapping edits");
    }
}
