//! Remembered states of writeable directories: the server map and contents each was last read
//! or written with, so the next edit of it publishes at once (one round trip) and path walks can
//! guess which directories to read side by side.
//!
//! The cache is bounded by an estimate of the bytes it holds (each directory's packed table plus
//! the share heads in its map) and evicts the least recently used directory first. It is a plain
//! single-threaded value: a runtime sharing it between tasks wraps it as it sees fit.
//!
//! An operation that may edit a directory *takes* its state out when it starts, and puts the
//! state it ends with back when it is done: two concurrent edits of one directory therefore never
//! start from the same map (the second one reads afresh; test-and-set sorts out the rest).

use std::collections::BTreeMap;

use crate::cap::Cap;
use crate::client::VerifiedSignatures;
use crate::dirnode::{Child, ChildCap, Directory};
use crate::mutable::ServerMap;

/// What is remembered of one writeable directory.
#[derive(Clone, Debug)]
pub struct Remembered {
    pub map: ServerMap,
    pub dir: Directory,
}

impl Remembered {
    /// Bytes this state is estimated to hold: the packed table, the share heads of the map and a
    /// fixed allowance per share and per entry for the structures around them.
    pub fn estimated_bytes(&self) -> usize {
        const PER_SHARE: usize = 512;
        const PER_ENTRY: usize = 256;
        let heads: usize = self
            .map
            .shares
            .values()
            .map(|s| s.head.len() + PER_SHARE)
            .sum();
        let bad: usize = self
            .map
            .bad
            .values()
            .map(|(_, b)| b.len() + PER_SHARE)
            .sum();
        self.dir.pack().len() + self.dir.len() * PER_ENTRY + heads + bad
    }
}

/// States to give back to the cache when the operation ends: the newest per directory, or
/// `None` to forget one found malformed.
#[derive(Debug, Default)]
pub(crate) struct Memo {
    states: BTreeMap<Cap, Option<Remembered>>,
}

impl Memo {
    pub fn remember(&mut self, cap: Cap, state: Remembered) {
        self.states.insert(cap, Some(state));
    }

    /// Gives back a state taken from the cache and left unused, unless something newer about
    /// that directory was learned meanwhile.
    pub fn give_back(&mut self, cap: Cap, state: Remembered) {
        self.states.entry(cap).or_insert(Some(state));
    }

    pub fn forget(&mut self, cap: Cap) {
        self.states.insert(cap, None);
    }

    pub fn return_to(&mut self, cache: &mut DirCache) {
        for (cap, state) in std::mem::take(&mut self.states) {
            match state {
                Some(state) => cache.put(cap, state),
                None => cache.forget(&cap),
            }
        }
    }
}

#[derive(Debug)]
struct Entry {
    state: Remembered,
    bytes: usize,
    used: u64,
}

/// Remembered directory states, bounded by bytes with least-recently-used eviction.
pub struct DirCache {
    limit: usize,
    bytes: usize,
    clock: u64,
    entries: BTreeMap<Cap, Entry>,
    /// Last use -> directory, oldest first.
    by_use: BTreeMap<u64, Cap>,
    /// Signatures of directory versions verified before (lent to each operation, merged back).
    signatures: VerifiedSignatures,
}

impl std::fmt::Debug for DirCache {
    /// Counts only: the keys are caps, which are secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirCache")
            .field("directories", &self.entries.len())
            .field("bytes", &self.bytes)
            .field("limit", &self.limit)
            .finish()
    }
}

impl Default for DirCache {
    fn default() -> Self {
        DirCache::new(DirCache::DEFAULT_LIMIT)
    }
}

impl DirCache {
    /// 16 MiB: a few hundred directories of a few hundred entries each.
    pub const DEFAULT_LIMIT: usize = 16 << 20;

    /// A cache holding at most about `limit` bytes of states.
    pub fn new(limit: usize) -> DirCache {
        DirCache {
            limit,
            bytes: 0,
            clock: 0,
            entries: BTreeMap::new(),
            by_use: BTreeMap::new(),
            signatures: VerifiedSignatures::default(),
        }
    }

    fn touch(&mut self, cap: &Cap) {
        self.clock += 1;
        if let Some(e) = self.entries.get_mut(cap) {
            self.by_use.remove(&e.used);
            e.used = self.clock;
            self.by_use.insert(self.clock, cap.clone());
        }
    }

    /// Takes the state of `cap` out (an edit starting from it); `None` if not remembered.
    pub fn take(&mut self, cap: &Cap) -> Option<Remembered> {
        let e = self.entries.remove(cap)?;
        self.by_use.remove(&e.used);
        self.bytes -= e.bytes;
        Some(e.state)
    }

    /// The remembered contents of `cap`, counting as a use. For guesses only: they may be stale.
    pub fn peek(&mut self, cap: &Cap) -> Option<&Directory> {
        self.touch(cap);
        self.entries.get(cap).map(|e| &e.state.dir)
    }

    /// Remembers `state` for `cap`, replacing an older one and evicting the least recently used
    /// directories beyond the limit. A state larger than the whole limit is not kept.
    pub fn put(&mut self, cap: Cap, state: Remembered) {
        self.take(&cap);
        let bytes = state.estimated_bytes();
        if bytes > self.limit {
            return;
        }
        while self.bytes + bytes > self.limit {
            let Some((_, oldest)) = self.by_use.pop_first() else {
                break;
            };
            if let Some(e) = self.entries.remove(&oldest) {
                self.bytes -= e.bytes;
            }
        }
        self.clock += 1;
        self.by_use.insert(self.clock, cap.clone());
        self.bytes += bytes;
        self.entries.insert(
            cap,
            Entry {
                state,
                bytes,
                used: self.clock,
            },
        );
    }

    /// Drops what is remembered of `cap` (found malformed, or known stale).
    pub fn forget(&mut self, cap: &Cap) {
        self.take(cap);
    }

    /// What `name` links in the remembered state of `dir`, without any I/O: `None` when the
    /// directory is not remembered, `Some(None)` when it is and has no such child. For choosing
    /// how to write there (an upload's overwrite check): the edit itself is checked again
    /// against the state it publishes over, so a stale answer costs a retry at most.
    pub fn remembered_child(&mut self, dir: &Cap, name: &str) -> Option<Option<Child>> {
        self.peek(dir).map(|d| d.get(name).cloned())
    }

    /// What `path` below `root` links in the remembered states alone, without any I/O: `None`
    /// when some directory on the way is not remembered (or the path is empty), `Some(None)`
    /// when the remembered states say nothing is linked there. A guess, as
    /// [`DirCache::remembered_child`] is.
    pub fn remembered_at(&mut self, root: &Cap, path: &[String]) -> Option<Option<Child>> {
        let (name, dirs) = path.split_last()?;
        let mut dir = root.clone();
        for step in dirs {
            match self.remembered_child(&dir, step)? {
                Some(Child {
                    cap: ChildCap::Known(next),
                    ..
                }) if next.is_directory() => dir = next,
                Some(_) => return None,
                None => return Some(None),
            }
        }
        self.remembered_child(&dir, name)
    }

    /// The verified signatures, lent to an operation (a concurrent one starts without them and
    /// only verifies again).
    pub fn lend_signatures(&mut self) -> VerifiedSignatures {
        std::mem::take(&mut self.signatures)
    }

    /// The verified signatures remembered now (none while an operation has them on loan).
    pub fn signatures(&self) -> &VerifiedSignatures {
        &self.signatures
    }

    /// Signatures an operation knows at its end, merged with what others gave back meanwhile.
    pub fn take_back_signatures(&mut self, verified: VerifiedSignatures) {
        self.signatures.merge(verified);
    }

    pub fn contains(&self, cap: &Cap) -> bool {
        self.entries.contains_key(cap)
    }

    /// Directories remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Estimated bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.by_use.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dirnode::Access;

    fn dir_cap(i: u8) -> Cap {
        Cap::directory(Cap::SskWrite {
            writekey: [i; 16],
            fingerprint: [i; 32],
        })
        .unwrap()
    }

    fn state(children: usize) -> Remembered {
        let mut dir = Directory::new(Access::ReadWrite { writekey: [1; 16] });
        for i in 0..children {
            dir.add(
                &format!("child-{i}"),
                ChildCap::from_cap(Cap::Lit {
                    data: b"x".to_vec(),
                }),
                None,
                false,
                1.0,
            )
            .unwrap();
        }
        Remembered {
            map: ServerMap::default(),
            dir,
        }
    }

    #[test]
    fn take_removes_and_put_replaces() {
        let mut cache = DirCache::default();
        cache.put(dir_cap(1), state(1));
        cache.put(dir_cap(1), state(2));
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.bytes(), state(2).estimated_bytes());
        assert_eq!(cache.take(&dir_cap(1)).unwrap().dir.len(), 2);
        assert!(cache.take(&dir_cap(1)).is_none(), "taken states are gone");
        assert_eq!(cache.bytes(), 0);
    }

    #[test]
    fn remembered_child_answers_only_from_what_is_remembered() {
        let mut cache = DirCache::default();
        assert_eq!(cache.remembered_child(&dir_cap(1), "child-0"), None);
        cache.put(dir_cap(1), state(1));
        assert!(matches!(
            cache.remembered_child(&dir_cap(1), "child-0"),
            Some(Some(_))
        ));
        assert_eq!(cache.remembered_child(&dir_cap(1), "other"), Some(None));
    }

    #[test]
    fn remembered_at_follows_remembered_directories_only() {
        let mut cache = DirCache::default();
        let path = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let mut root = state(1);
        root.dir
            .add("sub", ChildCap::from_cap(dir_cap(2)), None, false, 1.0)
            .unwrap();
        cache.put(dir_cap(1), root);
        assert_eq!(cache.remembered_at(&dir_cap(1), &[]), None, "no name");
        assert!(matches!(
            cache.remembered_at(&dir_cap(1), &path(&["child-0"])),
            Some(Some(_))
        ));
        // The subdirectory itself is not remembered: no guess below it.
        assert_eq!(cache.remembered_at(&dir_cap(1), &path(&["sub", "x"])), None);
        cache.put(dir_cap(2), state(1));
        assert!(matches!(
            cache.remembered_at(&dir_cap(1), &path(&["sub", "child-0"])),
            Some(Some(_))
        ));
        assert_eq!(
            cache.remembered_at(&dir_cap(1), &path(&["sub", "nothing"])),
            Some(None)
        );
        // A missing directory on the way: nothing is linked there.
        assert_eq!(
            cache.remembered_at(&dir_cap(1), &path(&["gone", "x"])),
            Some(None)
        );
        // A file on the way: the guess is left to a real lookup.
        assert_eq!(
            cache.remembered_at(&dir_cap(1), &path(&["child-0", "x"])),
            None
        );
    }

    #[test]
    fn evicts_least_recently_used_by_bytes() {
        let one = state(3).estimated_bytes();
        let mut cache = DirCache::new(one * 3);
        for i in 1..=3 {
            cache.put(dir_cap(i), state(3));
        }
        assert_eq!(cache.len(), 3);
        // Using 1 makes 2 the oldest.
        assert!(cache.peek(&dir_cap(1)).is_some());
        cache.put(dir_cap(4), state(3));
        assert!(cache.bytes() <= cache.limit());
        assert!(!cache.contains(&dir_cap(2)));
        for i in [1, 3, 4] {
            assert!(cache.contains(&dir_cap(i)), "{i}");
        }
        // A bigger state evicts as many as it needs.
        cache.put(dir_cap(5), state(6));
        assert!(cache.bytes() <= cache.limit());
        assert!(cache.contains(&dir_cap(5)));
        assert!(!cache.contains(&dir_cap(1)) && !cache.contains(&dir_cap(3)));
        // One larger than the limit is not kept at all.
        cache.put(dir_cap(6), state(40));
        assert!(!cache.contains(&dir_cap(6)));
        assert!(cache.contains(&dir_cap(5)));
    }
}
