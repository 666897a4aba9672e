//! Turns at editing a directory, for the threads sharing one [`super::GridClient`].
//!
//! Two threads editing one directory at once would race each other on the servers: both start
//! from the same version, one publish wins, the other is refused and must read again and retry,
//! and many writers to one folder (a gateway's workers adding files to it) can run out of
//! attempts. So edits through one client of the same parent directory take turns; writers in
//! other processes are still sorted out by test-and-set on the servers. The parent is named by
//! the root and the path to it as the caller gave them (known before the walk), so two
//! different paths to one directory do not share a turn: they only cost a retry.

use std::collections::HashSet;

use lafs_core::cap::Cap;

use super::server::lock;
use crate::sync::{Condvar, Mutex};

/// The directory an edit changes: a root and the names leading from it to the parent.
type Parent = (Cap, Vec<String>);

/// The directories being edited now; waiters sleep on one condition variable (few threads
/// ever wait, so waking them all when any turn ends is cheap).
#[derive(Debug, Default)]
pub(super) struct EditTurns {
    editing: Mutex<HashSet<Parent>>,
    ended: Condvar,
}

/// A turn at editing one directory; the next edit of it may start once this is dropped.
pub(super) struct Turn<'t> {
    turns: &'t EditTurns,
    parent: Option<Parent>,
}

impl EditTurns {
    /// Wait for the turn at editing the directory that `path` below `root` names.
    pub(super) fn take(&self, root: &Cap, path: &[String]) -> Turn<'_> {
        let parent = (root.clone(), path.to_vec());
        let mut editing = lock(&self.editing);
        while editing.contains(&parent) {
            editing = self
                .ended
                .wait(editing)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        editing.insert(parent.clone());
        Turn {
            turns: self,
            parent: Some(parent),
        }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if let Some(parent) = self.parent.take() {
            lock(&self.turns.editing).remove(&parent);
            self.turns.ended.notify_all();
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn root() -> Cap {
        Cap::parse("URI:LIT:nbswy3dp").unwrap()
    }

    #[test]
    fn one_turn_per_directory_and_other_directories_go_on() {
        let turns = EditTurns::default();
        let (inside, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..50 {
                        let _turn = turns.take(&root(), &["a".to_string()]);
                        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        // Another directory's turn is free while this one is held.
                        drop(turns.take(&root(), &["b".to_string()]));
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                });
            }
        });
        assert_eq!(
            most.load(Ordering::SeqCst),
            1,
            "two edits of one directory overlapped"
        );
        assert!(lock(&turns.editing).is_empty(), "ended turns are forgotten");
    }
}
