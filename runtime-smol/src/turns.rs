//! Turns at editing a directory, for the tasks sharing one [`crate::GridClient`].
//!
//! Many tasks editing one directory at once would race each other on the servers: every publish
//! but one is refused, re-read and retried, and enough writers to one folder run out of
//! attempts. So edits through one client of the same parent directory (named by the root and
//! the path the caller gave) wait for each other on an async lock; writers in other processes
//! are still sorted out by test-and-set. lafs-runtime-std does the same with threads.

use std::collections::HashMap;

use lafs_core::cap::Cap;
use smol::lock::{Mutex as AsyncMutex, MutexGuardArc};

use crate::sync::{lock, Arc, Mutex};

/// The directory an edit changes: a root and the names leading from it to the parent.
type Parent = (Cap, Vec<String>);

/// One async lock per directory being edited or waited for; an entry goes when its last user
/// does, so the table holds only directories in use.
#[derive(Debug, Default)]
pub(crate) struct EditTurns {
    editing: Mutex<HashMap<Parent, Arc<AsyncMutex<()>>>>,
}

/// A turn at editing one directory; the next edit of it may start once this is dropped.
pub(crate) struct Turn<'t> {
    turns: &'t EditTurns,
    parent: Parent,
    held: Option<MutexGuardArc<()>>,
}

impl EditTurns {
    /// Wait for the turn at editing the directory that `path` below `root` names.
    pub(crate) async fn take(&self, root: &Cap, path: &[String]) -> Turn<'_> {
        let parent = (root.clone(), path.to_vec());
        let entry = Arc::clone(lock(&self.editing).entry(parent.clone()).or_default());
        // Hold the Arc while waiting, so the entry is not removed under a waiter.
        let held = entry.lock_arc().await;
        Turn {
            turns: self,
            parent,
            held: Some(held),
        }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        drop(self.held.take());
        let mut editing = lock(&self.turns.editing);
        // Only the table's own reference left: no edit holds or awaits this directory.
        if editing
            .get(&self.parent)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            editing.remove(&self.parent);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn one_turn_per_directory_and_other_directories_go_on() {
        let turns = EditTurns::default();
        let root = Cap::parse("URI:LIT:nbswy3dp").unwrap();
        let (inside, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let ex = smol::Executor::new();
        smol::block_on(ex.run(async {
            let tasks: Vec<_> = (0..4)
                .map(|_| {
                    let (turns, root, inside, most) = (&turns, &root, &inside, &most);
                    ex.spawn(async move {
                        for _ in 0..50 {
                            let _turn = turns.take(root, &["a".to_string()]).await;
                            let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::SeqCst);
                            // Another directory's turn is free while this one is held.
                            drop(turns.take(root, &["b".to_string()]).await);
                            smol::future::yield_now().await;
                            inside.fetch_sub(1, Ordering::SeqCst);
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await;
            }
        }));
        assert_eq!(
            most.load(Ordering::SeqCst),
            1,
            "two edits of one directory overlapped"
        );
        assert!(lock(&turns.editing).is_empty(), "ended turns are forgotten");
    }
}
