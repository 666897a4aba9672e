//! Directory operations (lafs-core `dirnode::ops`) over the in-memory grid: what each operation
//! does, what it costs in round trips, how racing writers are sorted out, and every way it can
//! fail (the failures of runtime-std's blocking `DirError`, one test or more each).

use std::collections::BTreeMap;

use lafs_core::cap::Cap;
use lafs_core::client::{DirEvent, DirOperation};
use lafs_core::crypto::key_source::{FixtureKeys, KeySource};
use lafs_core::dirnode::metadata::{link_created, link_modified};
use lafs_core::dirnode::ops::{
    DirCache, DirOpError, DirProgress, Found, Link, LinkEvent, LinkOptions, Linked, List, Lookup,
    Mkdir, MkdirAt, MkdirAtEvent, MkdirEvent, Move, Unlink, MAX_ATTEMPTS,
};
use lafs_core::dirnode::{
    split_path, Access, Child, ChildCap, Directory, DirnodeError, EditError, JsonObject, Overwrite,
    PathError,
};
use lafs_core::immutable::upload::UploadConfig;
use lafs_core::mutable::layout::MutableFormat;
use lafs_core::mutable::{PublishError, RetrieveError};
use lafs_core::op::{ClientOp, Transmit};
use lafs_core::placement::ServerId;
use lafs_core::testing::grid::{Grid, Run};
use lafs_core::testing::keys::fixture_keys;
use lafs_core::time::Instant;
use lafs_core::wire::Request;

/// A grid and the keys every client on it draws from (fixture keys: never handed out twice).
struct World {
    grid: Grid,
    keys: FixtureKeys,
    seeds: u64,
}

impl World {
    fn new() -> World {
        World {
            grid: Grid::new(10),
            keys: fixture_keys(),
            seeds: 0,
        }
    }

    fn seed(&mut self) -> [u8; 32] {
        self.seeds += 1;
        let mut s = [0u8; 32];
        s[..8].copy_from_slice(&self.seeds.to_be_bytes());
        s
    }

    /// Drive any directory operation to its end: key requests are answered from the fixture
    /// keys (and counted), and the cache gets what the operation learned.
    fn drive<O: DirOperation>(
        &mut self,
        cache: &mut DirCache,
        mut op: O,
    ) -> (Result<O::Output, DirOpError>, Run, usize) {
        let keys = &mut self.keys;
        let mut asked = 0;
        let (result, run) = self.grid.drive(
            &mut op,
            |_| 0,
            |op, now, ev| match O::classify(ev) {
                DirEvent::NeedKey => {
                    asked += 1;
                    op.provide_key(now, keys.next_key().unwrap());
                    None
                }
                DirEvent::Done(v) => Some(Ok(v)),
                DirEvent::Failed(e) => Some(Err(e)),
                DirEvent::Progress => None,
            },
        );
        op.return_to(cache);
        (result, run, asked)
    }

    fn mkdir(&mut self, cache: &mut DirCache, format: MutableFormat) -> (Cap, Run) {
        let op = Mkdir::new(self.grid.now, self.grid.dir_config(), self.seed(), format);
        let (result, run, _) = self.drive(cache, op);
        (result.expect("mkdir"), run)
    }

    fn list(&mut self, cache: &mut DirCache, cap: &Cap) -> (Result<Directory, DirOpError>, Run) {
        let op = List::new(
            self.grid.now,
            self.grid.dir_config(),
            self.seed(),
            cache,
            cap.clone(),
        );
        let (result, run, _) = self.drive(cache, op);
        (result, run)
    }

    fn lookup(
        &mut self,
        cache: &mut DirCache,
        root: &Cap,
        path: &str,
    ) -> (Result<Found, DirOpError>, Run) {
        self.lookup_path(cache, root, path_of(path))
    }

    fn lookup_path(
        &mut self,
        cache: &mut DirCache,
        root: &Cap,
        path: Vec<String>,
    ) -> (Result<Found, DirOpError>, Run) {
        let op = Lookup::new(
            self.grid.now,
            self.grid.dir_config(),
            self.seed(),
            cache,
            root.clone(),
            path,
        );
        let (result, run, _) = self.drive(cache, op);
        (result, run)
    }

    /// Links `cap` at `path`; returns the outcome, the run and how many keys were asked for.
    fn link_with(
        &mut self,
        cache: &mut DirCache,
        root: &Cap,
        path: Vec<String>,
        cap: ChildCap,
        options: LinkOptions,
    ) -> (Result<Linked, DirOpError>, Run, usize) {
        let op = Link::new(
            self.grid.now,
            self.grid.dir_config(),
            self.seed(),
            cache,
            root.clone(),
            path,
            cap,
            options,
        );
        self.drive(cache, op)
    }

    fn link(
        &mut self,
        cache: &mut DirCache,
        root: &Cap,
        path: &str,
        cap: &Cap,
    ) -> (Result<Linked, DirOpError>, Run) {
        let (result, run, _) = self.link_with(
            cache,
            root,
            path_of(path),
            ChildCap::Known(cap.clone()),
            LinkOptions::default(),
        );
        (result, run)
    }

    fn put(
        &mut self,
        cache: &mut DirCache,
        root: &Cap,
        path: &str,
        cap: &Cap,
        overwrite: Overwrite,
        parents: bool,
    ) -> (Result<Linked, DirOpError>, Run, usize) {
        let op = Link::put_into_path(
            self.grid.now,
            self.grid.dir_config(),
            self.seed(),
            cache,
            root.clone(),
            path_of(path),
            cap.clone(),
            overwrite,
            parents,
        );
        self.drive(cache, op)
    }

    fn mkdir_at(
        &mut self,
        cache: &mut DirCache,
        root: &Cap,
        path: &str,
        parents: bool,
    ) -> (Result<Cap, DirOpError>, Run, usize) {
        let op = MkdirAt::new(
            self.grid.now,
            self.grid.dir_config(),
            self.seed(),
            cache,
            root.clone(),
            path_of(path),
            MutableFormat::Sdmf,
            parents,
        );
        self.drive(cache, op)
    }

    fn unlink(
        &mut self,
        cache: &mut DirCache,
        root: &Cap,
        path: &str,
    ) -> (Result<Child, DirOpError>, Run) {
        let op = Unlink::new(
            self.grid.now,
            self.grid.dir_config(),
            self.seed(),
            cache,
            root.clone(),
            path_of(path),
        );
        let (result, run, _) = self.drive(cache, op);
        (result, run)
    }

    fn mv(
        &mut self,
        cache: &mut DirCache,
        root: &Cap,
        from: &str,
        to: &str,
        overwrite: Overwrite,
    ) -> (Result<(), DirOpError>, Run) {
        let op = Move::new(
            self.grid.now,
            self.grid.dir_config(),
            self.seed(),
            cache,
            (root.clone(), path_of(from)),
            (root.clone(), path_of(to)),
            overwrite,
        );
        let (result, run, _) = self.drive(cache, op);
        (result, run)
    }

    /// The sequence number of a mutable directory's current version.
    fn seqnum(&mut self, dir: &Cap) -> u64 {
        let (got, _, _) = self.grid.retrieve(dir, None);
        got.expect("readable").1.version.seqnum
    }

    /// A small immutable file on the grid.
    fn file(&mut self, seed: u64) -> Cap {
        let data = lafs_core::testing::grid::test_data(200, seed);
        self.grid
            .upload(&data, UploadConfig::default())
            .0
            .expect("upload")
            .cap
    }
}

fn path_of(path: &str) -> Vec<String> {
    split_path(path).expect("test paths are valid")
}

fn names(dir: &Directory) -> Vec<&str> {
    dir.list().map(|(n, _)| n).collect()
}

fn child_cap(found: &Found) -> Cap {
    match &found.cap {
        ChildCap::Known(c) => c.clone(),
        ChildCap::Unknown(_) => panic!("unknown cap"),
    }
}

// ---- what each operation does ----

#[test]
fn reads_remember_verified_signatures_so_a_version_is_checked_once() {
    let mut w = World::new();
    let mut cache = DirCache::default();
    let (cap, _) = w.mkdir(&mut cache, MutableFormat::Sdmf);
    // A read-only cap: its state is never remembered, so every list reads the grid.
    let ro = cap.read_only().unwrap();
    let mut cache = DirCache::default();
    assert_eq!(cache.signatures().files(), 0);
    w.list(&mut cache, &ro).0.unwrap();
    assert_eq!(
        cache.signatures().files(),
        1,
        "the list's verified signature is kept for the next read"
    );
    w.list(&mut cache, &ro).0.unwrap();
    assert_eq!(cache.signatures().files(), 1, "and given back after it");
}

#[test]
fn mkdir_makes_an_empty_directory_in_one_round_trip_in_both_formats() {
    let mut w = World::new();
    for (format, kind) in [
        (MutableFormat::Sdmf, "DIR2"),
        (MutableFormat::Mdmf, "DIR2-MDMF"),
    ] {
        let mut cache = DirCache::default();
        let (cap, run) = w.mkdir(&mut cache, format);
        assert_eq!(run.rounds, 1, "{format:?}");
        let Cap::Directory(d) = &cap else {
            panic!("not a directory cap")
        };
        assert_eq!(d.kind_name(), kind);
        assert!(cache.contains(&cap), "the new directory is remembered");
        let (listed, run) = w.list(&mut DirCache::default(), &cap);
        assert!(listed.unwrap().is_empty());
        assert_eq!(run.rounds, 1);
    }
}

#[test]
fn link_list_lookup_with_link_times_from_now() {
    let mut w = World::new();
    let mut cache = DirCache::default();
    let (root, _) = w.mkdir(&mut cache, MutableFormat::Sdmf);
    let file = w.file(1);
    // Runtimes give microseconds since the Unix epoch.
    w.grid.now = Instant(1_700_000_000_500_000);
    let (linked, _) = w.link(&mut cache, &root, "f", &file);
    assert_eq!(linked.unwrap().replaced, None);
    let (dir, _) = w.list(&mut DirCache::default(), &root);
    let dir = dir.unwrap();
    assert_eq!(names(&dir), ["f"]);
    let child = dir.get("f").unwrap();
    assert_eq!(child.cap, ChildCap::Known(file.clone()));
    assert_eq!(link_created(&child.metadata), Some(1_700_000_000.5));
    assert_eq!(link_modified(&child.metadata), Some(1_700_000_000.5));
    let (found, _) = w.lookup(&mut cache, &root, "f");
    let found = found.unwrap();
    assert_eq!(child_cap(&found), file);
    assert_eq!(found.metadata.as_ref(), Some(&child.metadata));
    // The empty path names the root itself.
    let (found, run) = w.lookup(&mut cache, &root, "");
    assert_eq!(found.unwrap().cap, ChildCap::Known(root.clone()));
    assert_eq!(run.rounds, 0);
    // User metadata goes in with the link.
    let user = JsonObject::parse(br#"{"note": "hi"}"#).unwrap();
    let options = LinkOptions {
        metadata: Some(user),
        ..LinkOptions::default()
    };
    let (linked, _, _) = w.link_with(
        &mut cache,
        &root,
        path_of("g"),
        ChildCap::Known(file),
        options,
    );
    linked.unwrap();
    let (found, _) = w.lookup(&mut cache, &root, "g");
    let meta = found.unwrap().metadata.unwrap();
    assert_eq!(
        meta.get("note"),
        Some(&lafs_core::dirnode::JsonValue::String("hi".into()))
    );
}

#[test]
fn mkdir_p_makes_missing_parents_and_mkdir_refuses_an_existing_name() {
    let mut w = World::new();
    let mut cache = DirCache::default();
    let (root, _) = w.mkdir(&mut cache, MutableFormat::Sdmf);
    // Without -p a missing parent is an error, and nothing was made.
    let (err, _, asked) = w.mkdir_at(&mut cache, &root, "a/b/c", false);
    assert!(
        matches!(err, Err(DirOpError::NotFound { ref path }) if path == "\"a\""),
        "{err:?}"
    );
    assert_eq!(asked, 0, "no key is spent on a refused mkdir");
    let (made, _, asked) = w.mkdir_at(&mut cache, &root, "a/b/c", true);
    let made = made.unwrap();
    assert_eq!(asked, 3, "a, b and c are new");
    let (found, _) = w.lookup(&mut DirCache::default(), &root, "a/b/c");
    assert_eq!(child_cap(&found.unwrap()), made);
    // Again: the name exists now.
    let (again, _, asked) = w.mkdir_at(&mut cache, &root, "a/b/c", true);
    assert!(
        matches!(again, Err(DirOpError::Exists { ref path }) if path == "\"a/b/c\""),
        "{again:?}"
    );
    assert_eq!(asked, 0);
    // -p through existing directories makes only the last one.
    let (_, _, asked) = w.mkdir_at(&mut cache, &root, "a/b/d", true);
    assert_eq!(asked, 1);
    let b = child_cap(&w.lookup(&mut cache, &root, "a/b").0.unwrap());
    let (dir, _) = w.list(&mut cache, &b);
    assert_eq!(names(&dir.unwrap()), ["c", "d"]);
}

#[test]
fn put_into_path_makes_parents_and_replaces_only_as_the_policy_allows() {
    let mut w = World::new();
    let mut cache = DirCache::default();
    let (root, _) = w.mkdir(&mut cache, MutableFormat::Sdmf);
    let (one, two) = (w.file(1), w.file(2));
    let (put, _, asked) = w.put(&mut cache, &root, "x/y/f", &one, Overwrite::No, true);
    assert_eq!(put.unwrap().replaced, None);
    assert_eq!(asked, 2);
    let y = child_cap(&w.lookup(&mut cache, &root, "x/y").0.unwrap());
    let before = w.seqnum(&y);
    // Refused: nothing is published.
    let (refused, _, _) = w.put(&mut cache, &root, "x/y/f", &two, Overwrite::No, true);
    assert!(
        matches!(
            refused,
            Err(DirOpError::Edit {
                source: EditError::ExistingChild { .. },
                ..
            })
        ),
        "{refused:?}"
    );
    assert_eq!(w.seqnum(&y), before, "a refused edit publishes nothing");
    // Replaced: the old link is reported.
    let (replaced, _, _) = w.put(&mut cache, &root, "x/y/f", &two, Overwrite::Yes, false);
    let old = replaced.unwrap().replaced.expect("replaced a link");
    assert_eq!(old.cap, ChildCap::Known(one));
    assert_eq!(
        child_cap(&w.lookup(&mut cache, &root, "x/y/f").0.unwrap()),
        two
    );
    // Files only: a directory is never replaced by a file.
    let (kept, _, _) = w.put(&mut cache, &root, "x/y", &two, Overwrite::OnlyFiles, false);
    assert!(
        matches!(
            kept,
            Err(DirOpError::Edit {
                source: EditError::ExistingDirectory { .. },
                ..
            })
        ),
        "{kept:?}"
    );
    // Without parents, a missing directory is an error.
    let (missing, _, asked) = w.put(&mut cache, &root, "nope/f", &two, Overwrite::No, false);
    assert!(matches!(missing, Err(DirOpError::NotFound { .. })));
    assert_eq!(asked, 0);
}

#[test]
fn unlink_removes_the_link_and_returns_it() {
    let mut w = World::new();
    let mut cache = DirCache::default();
    let (root, _) = w.mkdir(&mut cache, MutableFormat::Mdmf);
    let file = w.file(3);
    w.put(&mut cache, &root, "d/f", &file, Overwrite::No, true)
        .0
        .unwrap();
    let (removed, _) = w.unlink(&mut cache, &root, "d/f");
    assert_eq!(removed.unwrap().cap, ChildCap::Known(file));
    let d = child_cap(&w.lookup(&mut cache, &root, "d").0.unwrap());
    assert!(w.list(&mut cache, &d).0.unwrap().is_empty());
    let (again, _) = w.unlink(&mut cache, &root, "d/f");
    assert!(
        matches!(
            again,
            Err(DirOpError::Edit {
                source: EditError::NoSuchChild { .. },
                ..
            })
        ),
        "{again:?}"
    );
}

#[test]
fn rename_within_a_directory_is_one_warm_round_trip_and_keeps_user_metadata() {
    let mut w = World::new();
    let mut cache = DirCache::default();
    let (root, _) = w.mkdir(&mut cache, MutableFormat::Sdmf);
    let file = w.file(4);
    let user = JsonObject::parse(br#"{"k": 1}"#).unwrap();
    let options = LinkOptions {
        metadata: Some(user),
        ..LinkOptions::default()
    };
    w.link_with(
        &mut cache,
        &root,
        path_of("a"),
        ChildCap::Known(file.clone()),
        options,
    )
    .0
    .unwrap();
    let (moved, run) = w.mv(&mut cache, &root, "a", "b", Overwrite::No);
    moved.unwrap();
    assert_eq!(run.rounds, 1);
    let dir = w.list(&mut cache, &root).0.unwrap();
    assert_eq!(names(&dir), ["b"]);
    let b = dir.get("b").unwrap();
    assert_eq!(b.cap, ChildCap::Known(file));
    assert_eq!(
        b.metadata.get("k"),
        Some(&lafs_core::dirnode::JsonValue::Int(1))
    );
    // Refused onto an existing name.
    let new_file = w.file(5);
    w.link(&mut cache, &root, "c", &new_file).0.unwrap();
    let (refused, _) = w.mv(&mut cache, &root, "b", "c", Overwrite::No);
    assert!(matches!(
        refused,
        Err(DirOpError::Edit {
            source: EditError::ExistingChild { .. },
            ..
        })
    ));
    // Missing source.
    let (missing, _) = w.mv(&mut cache, &root, "zz", "y", Overwrite::No);
    assert!(matches!(
        missing,
        Err(DirOpError::Edit {
            source: EditError::NoSuchChild { .. },
            ..
        })
    ));
}

#[test]
fn move_between_directories_links_at_the_destination_and_unlinks_the_source() {
    let mut w = World::new();
    let mut cache = DirCache::default();
    let (root, _) = w.mkdir(&mut cache, MutableFormat::Sdmf);
    let file = w.file(6);
    w.put(&mut cache, &root, "src/f", &file, Overwrite::No, true)
        .0
        .unwrap();
    w.mkdir_at(&mut cache, &root, "dst", false).0.unwrap();
    let (moved, _) = w.mv(&mut cache, &root, "src/f", "dst/g", Overwrite::No);
    moved.unwrap();
    let mut fresh = DirCache::default();
    assert_eq!(
        child_cap(&w.lookup(&mut fresh, &root, "dst/g").0.unwrap()),
        file
    );
    assert!(matches!(
        w.lookup(&mut fresh, &root, "src/f").0,
        Err(DirOpError::NotFound { .. })
    ));
    // Between two roots: another tree entirely.
    let (other, _) = w.mkdir(&mut cache, MutableFormat::Mdmf);
    let op = Move::new(
        w.grid.now,
        w.grid.dir_config(),
        w.seed(),
        &mut cache,
        (root.clone(), path_of("dst/g")),
        (other.clone(), path_of("h")),
        Overwrite::No,
    );
    w.drive(&mut cache, op).0.unwrap();
    assert_eq!(
        child_cap(&w.lookup(&mut fresh, &other, "h").0.unwrap()),
        file
    );
    // A source that is not there is reported, and the destination was not touched.
    let before = w.seqnum(&other);
    let op = Move::new(
        w.grid.now,
        w.grid.dir_config(),
        w.seed(),
        &mut cache,
        (root.clone(), path_of("dst/g")),
        (other.clone(), path_of("i")),
        Overwrite::No,
    );
    let (missing, _, _) = w.drive(&mut cache, op);
    assert!(
        matches!(missing, Err(DirOpError::NotFound { ref path }) if path == "\"dst/g\""),
        "{missing:?}"
    );
    assert_eq!(w.seqnum(&other), before);
}

#[test]
fn literal_directories_list_without_round_trips_and_refuse_edits() {
    let mut w = World::new();
    let mut dir = Directory::new(Access::Immutable);
    dir.add(
        "hello",
        ChildCap::Known(Cap::Lit {
            data: b"hi".to_vec(),
        }),
        None,
        false,
        1.0,
    )
    .unwrap();
    let lit = Cap::directory(Cap::Lit { data: dir.pack() }).unwrap();
    let mut cache = DirCache::default();
    let (listed, run) = w.list(&mut cache, &lit);
    assert_eq!(names(&listed.unwrap()), ["hello"]);
    assert_eq!(run.rounds, 0);
    let new_file = w.file(9);
    let (refused, run) = w.link(&mut cache, &lit, "x", &new_file);
    assert!(
        matches!(
            refused,
            Err(DirOpError::ReadOnly {
                kind: "DIR2-LIT",
                ..
            })
        ),
        "{refused:?}"
    );
    assert_eq!(run.rounds, 0);
}

// ---- round trips ----

#[test]
fn a_refusal_on_a_stale_remembered_state_is_checked_against_a_fresh_read() {
    let mut w = World::new();
    let mut stale = DirCache::default();
    let (root, _) = w.mkdir(&mut stale, MutableFormat::Sdmf);
    // Another client links a name the first client's remembered state lacks.
    let mut other = DirCache::default();
    let file = w.file(1);
    w.link(&mut other, &root, "a", &file).0.unwrap();
    // Refused on the remembered state, both succeed after reading afresh.
    let (removed, run) = w.unlink(&mut stale, &root, "a");
    assert_eq!(removed.unwrap().cap, ChildCap::Known(file));
    assert_eq!(run.rounds, 2, "read, publish");
    let mut stale = DirCache::default();
    let (root2, _) = w.mkdir(&mut stale, MutableFormat::Sdmf);
    let file = w.file(3);
    w.link(&mut other, &root2, "c", &file).0.unwrap();
    w.mv(&mut stale, &root2, "c", "d", Overwrite::No).0.unwrap();
    let dir = w.list(&mut DirCache::default(), &root2).0.unwrap();
    assert_eq!(names(&dir), ["d"]);
    // A name missing from a fresh read is still refused.
    let (again, _) = w.unlink(&mut stale, &root2, "c");
    assert!(
        matches!(
            again,
            Err(DirOpError::Edit {
                source: EditError::NoSuchChild { .. },
                ..
            })
        ),
        "{again:?}"
    );
}

#[test]
fn an_edit_costs_one_round_trip_with_a_remembered_map_and_two_cold() {
    let mut w = World::new();
    let mut cache = DirCache::default();
    let (root, _) = w.mkdir(&mut cache, MutableFormat::Sdmf);
    let new_file = w.file(1);
    let (linked, run) = w.link(&mut cache, &root, "warm", &new_file);
    linked.unwrap();
    assert_eq!(run.rounds, 1, "warm: the map from mkdir");
    let mut other = DirCache::default();
    let new_file = w.file(2);
    let (linked, run) = w.link(&mut other, &root, "cold", &new_file);
    linked.unwrap();
    assert_eq!(run.rounds, 2, "cold: read, then publish");
    let new_file = w.file(3);
    let (linked, run) = w.link(&mut other, &root, "warm-again", &new_file);
    linked.unwrap();
    assert_eq!(run.rounds, 1, "the publish left a warm map");
    // The first cache's map is stale now: its edit conflicts, re-reads and still succeeds.
    let new_file = w.file(4);
    let (linked, run) = w.link(&mut cache, &root, "stale", &new_file);
    linked.unwrap();
    assert_eq!(run.rounds, 3, "publish (refused), read, publish");
    let dir = w.list(&mut DirCache::default(), &root).0.unwrap();
    assert_eq!(names(&dir), ["cold", "stale", "warm", "warm-again"]);
}

#[test]
fn a_lookup_through_remembered_directories_is_one_round_trip() {
    let mut w = World::new();
    let mut cache = DirCache::default();
    let (root, _) = w.mkdir(&mut cache, MutableFormat::Sdmf);
    let file = w.file(7);
    w.put(&mut cache, &root, "a/b/c/f", &file, Overwrite::No, true)
        .0
        .unwrap();
    let (found, run) = w.lookup(&mut cache, &root, "a/b/c/f");
    assert_eq!(child_cap(&found.unwrap()), file);
    assert_eq!(run.rounds, 1, "root, a, b and c read side by side");
    let mut cold = DirCache::default();
    let (found, run) = w.lookup(&mut cold, &root, "a/b/c/f");
    assert_eq!(child_cap(&found.unwrap()), file);
    assert_eq!(run.rounds, 4, "one level after another");
    let (_, run) = w.lookup(&mut cold, &root, "a/b/c/f");
    assert_eq!(run.rounds, 1, "remembered now");
}

#[test]
fn a_stale_guess_is_never_used_when_its_parent_no_longer_links_it() {
    let mut w = World::new();
    let mut mine = DirCache::default();
    let (root, _) = w.mkdir(&mut mine, MutableFormat::Sdmf);
    let (old, new) = (w.file(1), w.file(2));
    w.put(&mut mine, &root, "a/b/f", &old, Overwrite::No, true)
        .0
        .unwrap();
    w.lookup(&mut mine, &root, "a/b/f").0.unwrap();
    // Another client moves `a` away and makes a new `a/b/f`.
    let mut theirs = DirCache::default();
    w.mv(&mut theirs, &root, "a", "old-a", Overwrite::No)
        .0
        .unwrap();
    w.put(&mut theirs, &root, "a/b/f", &new, Overwrite::No, true)
        .0
        .unwrap();
    // My remembered chain leads to the old `a`: the fresh read of the root overrules it.
    let (found, run) = w.lookup(&mut mine, &root, "a/b/f");
    assert_eq!(child_cap(&found.unwrap()), new);
    assert!(run.rounds > 1, "the wrong guesses cost extra levels");
    let (found, _) = w.lookup(&mut mine, &root, "old-a/b/f");
    assert_eq!(child_cap(&found.unwrap()), old);
}

// ---- the cache ----

#[test]
fn a_full_cache_evicts_the_least_recently_used_directory_by_bytes() {
    let mut w = World::new();
    let mut scratch = DirCache::default();
    let dirs: Vec<Cap> = (0..3)
        .map(|_| w.mkdir(&mut scratch, MutableFormat::Sdmf).0)
        .collect();
    let mut one = DirCache::default();
    w.list(&mut one, &dirs[0]).0.unwrap();
    let size = one.bytes();
    assert!(size > 0);
    let mut cache = DirCache::new(size * 2 + size / 2);
    for d in &dirs {
        w.list(&mut cache, d).0.unwrap();
        assert!(cache.bytes() <= cache.limit());
    }
    assert_eq!(cache.len(), 2);
    assert!(!cache.contains(&dirs[0]), "the oldest went");
    assert!(cache.contains(&dirs[1]) && cache.contains(&dirs[2]));
    // The evicted directory's next edit reads first; a remembered one's does not.
    let new_file = w.file(1);
    let (_, run) = w.link(&mut cache, &dirs[2], "f", &new_file);
    assert_eq!(run.rounds, 1);
    let new_file = w.file(2);
    let (_, run) = w.link(&mut cache, &dirs[0], "f", &new_file);
    assert_eq!(run.rounds, 2);
    assert!(cache.bytes() <= cache.limit());
}

#[test]
fn an_edit_takes_the_state_out_of_the_cache_so_a_concurrent_edit_reads_afresh() {
    let mut w = World::new();
    let mut cache = DirCache::default();
    let (root, _) = w.mkdir(&mut cache, MutableFormat::Sdmf);
    let file = w.file(1);
    let first = Link::new(
        w.grid.now,
        w.grid.dir_config(),
        w.seed(),
        &mut cache,
        root.clone(),
        path_of("one"),
        ChildCap::Known(file.clone()),
        LinkOptions::default(),
    );
    assert!(!cache.contains(&root), "taken by the first edit");
    let second = Link::new(
        w.grid.now,
        w.grid.dir_config(),
        w.seed(),
        &mut cache,
        root.clone(),
        path_of("two"),
        ChildCap::Known(file),
        LinkOptions::default(),
    );
    let (a, run_a, _) = w.drive(&mut cache, first);
    a.unwrap();
    assert_eq!(run_a.rounds, 1);
    let (b, run_b, _) = w.drive(&mut cache, second);
    b.unwrap();
    assert_eq!(run_b.rounds, 2, "the second started without a map");
    assert_eq!(names(&w.list(&mut cache, &root).0.unwrap()), ["one", "two"]);
}

// ---- racing writers ----

/// Runs two operations on one grid round by round: both send, then each server answers the
/// requests it received, `a_first(server)` saying whose it handles first. Timers fire when
/// neither has anything to send.
fn race<A: ClientOp, B: ClientOp, RA, RB>(
    grid: &mut Grid,
    a: &mut A,
    b: &mut B,
    mut on_a: impl FnMut(&mut A, Instant, A::Event) -> Option<RA>,
    mut on_b: impl FnMut(&mut B, Instant, B::Event) -> Option<RB>,
    a_first: impl Fn(ServerId) -> bool,
) -> (RA, RB) {
    let (mut ra, mut rb) = (None, None);
    loop {
        while let Some(ev) = a.poll_event() {
            if let Some(r) = on_a(a, grid.now, ev) {
                ra = Some(r);
            }
        }
        while let Some(ev) = b.poll_event() {
            if let Some(r) = on_b(b, grid.now, ev) {
                rb = Some(r);
            }
        }
        if let (Some(_), Some(_)) = (&ra, &rb) {
            return (ra.expect("matched"), rb.expect("matched"));
        }
        let batch_a: Vec<Transmit> = std::iter::from_fn(|| a.poll_transmit()).collect();
        let batch_b: Vec<Transmit> = std::iter::from_fn(|| b.poll_transmit()).collect();
        if batch_a.is_empty() && batch_b.is_empty() {
            let next = [
                ra.is_none().then(|| a.poll_timeout()).flatten(),
                rb.is_none().then(|| b.poll_timeout()).flatten(),
            ]
            .into_iter()
            .flatten()
            .min()
            .expect("both stalled with nothing to send and no timer");
            grid.now = grid.now.max(next);
            if ra.is_none() && a.poll_timeout().is_some_and(|t| t <= grid.now) {
                a.handle_timeout(grid.now);
            }
            if rb.is_none() && b.poll_timeout().is_some_and(|t| t <= grid.now) {
                b.handle_timeout(grid.now);
            }
            continue;
        }
        let mut by_server: BTreeMap<ServerId, (Vec<Transmit>, Vec<Transmit>)> = BTreeMap::new();
        for t in batch_a {
            by_server.entry(t.to).or_default().0.push(t);
        }
        for t in batch_b {
            by_server.entry(t.to).or_default().1.push(t);
        }
        let (mut answers_a, mut answers_b) = (Vec::new(), Vec::new());
        for (server, (for_a, for_b)) in by_server {
            let mut serve = |ts: Vec<Transmit>, out: &mut Vec<_>| {
                for t in ts {
                    out.push((t.to, t.id, grid.answer(server, t.request)));
                }
            };
            if a_first(server) {
                serve(for_a, &mut answers_a);
                serve(for_b, &mut answers_b);
            } else {
                serve(for_b, &mut answers_b);
                serve(for_a, &mut answers_a);
            }
        }
        for (from, id, r) in answers_a {
            a.handle_input(grid.now, from, id, r);
        }
        for (from, id, r) in answers_b {
            b.handle_input(grid.now, from, id, r);
        }
    }
}

/// Two clients that both remember the same version of `root` start linking at once.
fn racing_links(w: &mut World, root: &Cap, a_first: impl Fn(ServerId) -> bool) -> RaceReport {
    let (mut cache_a, mut cache_b) = (DirCache::default(), DirCache::default());
    w.list(&mut cache_a, root).0.unwrap();
    w.list(&mut cache_b, root).0.unwrap();
    let (fa, fb) = (w.file(10), w.file(11));
    let mut a = Link::new(
        w.grid.now,
        w.grid.dir_config(),
        w.seed(),
        &mut cache_a,
        root.clone(),
        path_of("from-a"),
        ChildCap::Known(fa),
        LinkOptions::default(),
    );
    let mut b = Link::new(
        w.grid.now,
        w.grid.dir_config(),
        w.seed(),
        &mut cache_b,
        root.clone(),
        path_of("from-b"),
        ChildCap::Known(fb),
        LinkOptions::default(),
    );
    let mut report = RaceReport::default();
    let conflicts = std::cell::RefCell::new(Vec::new());
    let publishes = std::cell::RefCell::new(Vec::new());
    let (ra, rb) = race(
        &mut w.grid,
        &mut a,
        &mut b,
        |op, _now, ev| match ev {
            LinkEvent::Progress(DirProgress::Conflict { retry_at, .. }) => {
                // The backoff is a timer: nothing to send, the op asks to be woken at retry_at.
                conflicts
                    .borrow_mut()
                    .push(('a', retry_at, op.poll_timeout()));
                None
            }
            LinkEvent::Progress(DirProgress::Published { .. }) => {
                publishes.borrow_mut().push('a');
                None
            }
            LinkEvent::Done(l) => Some(Ok(l)),
            LinkEvent::Failed(e) => Some(Err(e)),
            _ => None,
        },
        |op, _now, ev| match ev {
            LinkEvent::Progress(DirProgress::Conflict { retry_at, .. }) => {
                conflicts
                    .borrow_mut()
                    .push(('b', retry_at, op.poll_timeout()));
                None
            }
            LinkEvent::Progress(DirProgress::Published { .. }) => {
                publishes.borrow_mut().push('b');
                None
            }
            LinkEvent::Done(l) => Some(Ok(l)),
            LinkEvent::Failed(e) => Some(Err(e)),
            _ => None,
        },
        a_first,
    );
    ra.unwrap();
    rb.unwrap();
    report.conflicts = conflicts.into_inner();
    report.publishes = publishes.into_inner();
    report
}

#[derive(Default)]
struct RaceReport {
    /// (writer, retry_at, the op's poll_timeout right after the conflict)
    conflicts: Vec<(char, Instant, Option<Instant>)>,
    publishes: Vec<char>,
}

#[test]
fn two_writers_racing_on_one_directory_both_end_linked_through_conflict_retry() {
    let mut w = World::new();
    let mut cache = DirCache::default();
    let (root, _) = w.mkdir(&mut cache, MutableFormat::Sdmf);
    let start = w.grid.now;
    let before = w.seqnum(&root);
    // Every server sees a's write first: b's whole publish is refused.
    let report = racing_links(&mut w, &root, |_| true);
    assert_eq!(report.conflicts.len(), 1, "b conflicted once");
    let (who, retry_at, timer) = report.conflicts[0];
    assert_eq!(who, 'b');
    assert!(retry_at > start, "the retry waits");
    assert_eq!(timer, Some(retry_at), "the backoff is the op's timer");
    assert!(w.grid.now >= retry_at, "the driver had to advance time");
    assert_eq!(report.publishes, ['a', 'b']);
    let dir = w.list(&mut DirCache::default(), &root).0.unwrap();
    assert_eq!(names(&dir), ["from-a", "from-b"]);
    assert_eq!(
        w.seqnum(&root),
        before + 2,
        "one version per writer, none wasted"
    );
}

#[test]
fn writers_splitting_the_servers_both_conflict_and_no_edit_applies_twice() {
    let mut w = World::new();
    let mut cache = DirCache::default();
    let (root, _) = w.mkdir(&mut cache, MutableFormat::Sdmf);
    // Half the servers take a's write, half b's: both publishes are refused somewhere, and
    // each writer's version may be readable afterwards.
    let ids: Vec<ServerId> = w.grid.descriptors.iter().map(|d| d.id).collect();
    let half: Vec<ServerId> = ids[..5].to_vec();
    let report = racing_links(&mut w, &root, move |s| half.contains(&s));
    assert!(
        report.conflicts.iter().any(|c| c.0 == 'a') && report.conflicts.iter().any(|c| c.0 == 'b'),
        "both conflicted: {:?}",
        report.conflicts
    );
    for (_, retry_at, timer) in &report.conflicts {
        assert_eq!(timer, &Some(*retry_at));
    }
    let dir = w.list(&mut DirCache::default(), &root).0.unwrap();
    assert_eq!(names(&dir), ["from-a", "from-b"], "both linked, each once");
}

#[test]
fn an_edit_that_always_loses_gives_up_after_max_attempts_having_written_nothing() {
    let mut w = World::new();
    let mut cache = DirCache::default();
    let (root, _) = w.mkdir(&mut cache, MutableFormat::Sdmf);
    let new_file = w.file(1);
    let mut op = Link::new(
        w.grid.now,
        w.grid.dir_config(),
        w.seed(),
        &mut cache,
        root.clone(),
        path_of("never"),
        ChildCap::Known(new_file),
        LinkOptions::default(),
    );
    let mut conflicts = 0;
    let mut writes = 0;
    let error = 'outer: loop {
        while let Some(ev) = op.poll_event() {
            match ev {
                LinkEvent::Failed(e) => break 'outer e,
                LinkEvent::Done(_) => panic!("the edit cannot win"),
                LinkEvent::Progress(DirProgress::Conflict { .. }) => conflicts += 1,
                _ => {}
            }
        }
        let batch: Vec<Transmit> = std::iter::from_fn(|| op.poll_transmit()).collect();
        if batch.is_empty() {
            w.grid.now = op.poll_timeout().expect("a retry timer");
            op.handle_timeout(w.grid.now);
            continue;
        }
        if batch
            .iter()
            .any(|t| matches!(t.request, Request::MutableWrite { .. }))
        {
            // Another writer publishes just before each of our writes arrives.
            writes += 1;
            let (current, _, _) = w.grid.retrieve(&root, None);
            let (bytes, read) = current.unwrap();
            w.grid
                .update_mutable(&root, &bytes, Some(read.map))
                .0
                .unwrap();
        }
        for t in batch {
            let r = w.grid.answer(t.to, t.request);
            op.handle_input(w.grid.now, t.to, t.id, r);
        }
    };
    assert_eq!(
        error,
        DirOpError::TooManyConflicts {
            path: "the directory".into(),
            attempts: MAX_ATTEMPTS
        }
    );
    assert_eq!(writes, MAX_ATTEMPTS, "one publish per attempt");
    assert_eq!(
        conflicts,
        MAX_ATTEMPTS - 1,
        "each lost attempt but the last is retried"
    );
    assert!(error.to_string().contains("try again"));
    let dir = w.list(&mut DirCache::default(), &root).0.unwrap();
    assert!(dir.get("never").is_none(), "nothing of ours was written");
    op.return_to(&mut cache);
    assert!(!cache.contains(&root), "a stale state is not remembered");
}

// ---- failures (each DirError case of runtime-std's blocking client) ----

#[test]
fn unreadable_directories_report_read_errors() {
    // DirError::Client (a failed read): no shares anywhere.
    let mut w = World::new();
    let never_made = Cap::directory(Cap::SskWrite {
        writekey: [7; 16],
        fingerprint: [7; 32],
    })
    .unwrap();
    let (err, _) = w.list(&mut DirCache::default(), &never_made);
    assert!(
        matches!(
            err,
            Err(DirOpError::Read {
                source: RetrieveError::NoShares { .. },
                ..
            })
        ),
        "{err:?}"
    );
    let text = err.unwrap_err().to_string();
    assert!(!text.contains("URI:"), "{text}");
}

#[test]
fn creating_without_servers_reports_a_create_error() {
    // DirError::Client (a failed publish of a new directory).
    let mut w = World::new();
    w.grid = Grid::new(0);
    let mut op = Mkdir::new(
        w.grid.now,
        w.grid.dir_config(),
        w.seed(),
        MutableFormat::Sdmf,
    );
    assert!(matches!(op.poll_event(), Some(MkdirEvent::NeedKey)));
    op.provide_key(w.grid.now, w.keys.next_key().unwrap());
    let failed = std::iter::from_fn(|| op.poll_event())
        .find_map(|ev| match ev {
            MkdirEvent::Failed(e) => Some(e),
            _ => None,
        })
        .expect("failed");
    assert!(matches!(
        failed,
        DirOpError::Create {
            source: PublishError::NotEnoughServers { .. }
        }
    ));
}

#[test]
fn a_malformed_table_is_reported_and_never_edited() {
    // DirError::Malformed.
    let mut w = World::new();
    let made = w
        .grid
        .create_mutable(MutableFormat::Sdmf, w.keys.next_key().unwrap(), b"5:abc,")
        .0
        .unwrap();
    let dir = Cap::directory(made.cap).unwrap();
    let mut cache = DirCache::default();
    let (err, _) = w.list(&mut cache, &dir);
    assert!(
        matches!(
            err,
            Err(DirOpError::Malformed {
                source: DirnodeError::Framing { .. },
                ..
            })
        ),
        "{err:?}"
    );
    assert!(
        !cache.contains(&dir),
        "a malformed directory is not remembered"
    );
    let before = w.seqnum(&dir);
    let new_file = w.file(1);
    let (err, _) = w.link(&mut cache, &dir, "x", &new_file);
    assert!(matches!(err, Err(DirOpError::Malformed { .. })), "{err:?}");
    assert_eq!(w.seqnum(&dir), before, "nothing published");
}

#[test]
fn bad_paths_and_bad_names_are_refused_before_any_read() {
    // DirError::Path and DirError::Edit (a bad name), DirError::NeedsName.
    let mut w = World::new();
    let mut cache = DirCache::default();
    let (root, _) = w.mkdir(&mut cache, MutableFormat::Sdmf);
    let (err, run) = w.lookup_path(&mut cache, &root, vec!["a".into(), "..".into(), "b".into()]);
    assert!(
        matches!(err, Err(DirOpError::Path(PathError::DotComponent { .. }))),
        "{err:?}"
    );
    assert_eq!(run.rounds, 0);
    let new_file = w.file(1);
    let (err, _, _) = w.link_with(
        &mut cache,
        &root,
        vec!["a/b".into()],
        ChildCap::Known(new_file),
        LinkOptions::default(),
    );
    assert!(
        matches!(
            err,
            Err(DirOpError::Edit {
                source: EditError::Name(PathError::SlashInName { .. }),
                ..
            })
        ),
        "{err:?}"
    );
    let new_file = w.file(1);
    let (err, _, _) = w.link_with(
        &mut cache,
        &root,
        Vec::new(),
        ChildCap::Known(new_file),
        LinkOptions::default(),
    );
    assert!(matches!(
        err,
        Err(DirOpError::NeedsName { what: "linked", .. })
    ));
    let (err, _) = w.unlink(&mut cache, &root, "");
    assert!(matches!(
        err,
        Err(DirOpError::NeedsName {
            what: "removed",
            ..
        })
    ));
    let (err, _, _) = w.mkdir_at(&mut cache, &root, "", true);
    assert!(matches!(
        err,
        Err(DirOpError::NeedsName { what: "made", .. })
    ));
    let (err, _) = w.mv(&mut cache, &root, "", "x", Overwrite::No);
    assert!(matches!(
        err,
        Err(DirOpError::NeedsName { what: "moved", .. })
    ));
}

#[test]
fn read_caps_can_list_and_look_up_but_not_change() {
    // DirError::ReadOnly.
    let mut w = World::new();
    let mut cache = DirCache::default();
    let (root, _) = w.mkdir(&mut cache, MutableFormat::Mdmf);
    let file = w.file(1);
    w.put(&mut cache, &root, "sub/f", &file, Overwrite::No, true)
        .0
        .unwrap();
    let ro = root.read_only().unwrap();
    let (found, _) = w.lookup(&mut cache, &ro, "sub/f");
    assert_eq!(child_cap(&found.unwrap()), file);
    let before = w.seqnum(&root);
    let (err, run) = w.link(&mut cache, &ro, "x", &file);
    assert_eq!(
        err.unwrap_err(),
        DirOpError::ReadOnly {
            path: "the directory".into(),
            kind: "DIR2-MDMF-RO"
        }
    );
    assert_eq!(run.rounds, 0);
    // Through a read-only root, the children are read-only too.
    let (err, _) = w.unlink(&mut cache, &ro, "sub/f");
    assert!(matches!(err, Err(DirOpError::ReadOnly { .. })), "{err:?}");
    let (err, _, asked) = w.mkdir_at(&mut cache, &ro, "new", false);
    assert!(matches!(err, Err(DirOpError::ReadOnly { .. })), "{err:?}");
    assert_eq!(asked, 0);
    let (err, _) = w.mv(&mut cache, &ro, "sub/f", "g", Overwrite::No);
    assert!(matches!(err, Err(DirOpError::ReadOnly { .. })), "{err:?}");
    // Making parents below a read-only directory is refused before a key is spent.
    let (err, _, asked) = w.put(&mut cache, &ro, "new/f", &file, Overwrite::No, true);
    assert!(matches!(err, Err(DirOpError::ReadOnly { .. })), "{err:?}");
    assert_eq!(asked, 0);
    assert_eq!(w.seqnum(&root), before, "nothing published");
}

#[test]
fn paths_through_files_and_missing_names_are_reported() {
    // DirError::NotADirectory, DirError::NotFound, DirError::Exists (mkdir over a file).
    let mut w = World::new();
    let mut cache = DirCache::default();
    let (root, _) = w.mkdir(&mut cache, MutableFormat::Sdmf);
    let file = w.file(1);
    w.link(&mut cache, &root, "f", &file).0.unwrap();
    let (err, _) = w.lookup(&mut cache, &root, "f/x");
    assert_eq!(
        err.unwrap_err(),
        DirOpError::NotADirectory {
            path: "\"f\"".into(),
            kind: "CHK file".into()
        }
    );
    let (err, _) = w.list(&mut cache, &file);
    assert!(matches!(err, Err(DirOpError::NotADirectory { .. })));
    let (err, _) = w.lookup(&mut cache, &root, "missing");
    assert_eq!(
        err.unwrap_err(),
        DirOpError::NotFound {
            path: "\"missing\"".into()
        }
    );
    let (err, _, _) = w.mkdir_at(&mut cache, &root, "f", false);
    assert!(matches!(err, Err(DirOpError::Exists { .. })), "{err:?}");
    // -p through a file.
    let (err, _, asked) = w.put(&mut cache, &root, "f/g", &file, Overwrite::No, true);
    assert!(
        matches!(err, Err(DirOpError::NotADirectory { .. })),
        "{err:?}"
    );
    assert_eq!(asked, 0);
}

#[test]
fn verify_caps_can_neither_list_nor_change() {
    // DirError::VerifyCap.
    let mut w = World::new();
    let mut cache = DirCache::default();
    let (root, _) = w.mkdir(&mut cache, MutableFormat::Sdmf);
    let verify = root.verify_cap().unwrap();
    assert!(matches!(
        w.list(&mut cache, &verify).0,
        Err(DirOpError::VerifyCap)
    ));
    assert!(matches!(
        w.lookup(&mut cache, &verify, "").0,
        Err(DirOpError::VerifyCap)
    ));
    let new_file = w.file(1);
    let (err, _) = w.link(&mut cache, &verify, "x", &new_file);
    assert!(matches!(err, Err(DirOpError::VerifyCap)), "{err:?}");
}

#[test]
fn a_path_through_a_cap_of_an_unknown_kind_goes_no_further() {
    // DirError::UnknownCap: a link to a future kind of cap cannot be opened as a directory.
    let mut w = World::new();
    let mut cache = DirCache::default();
    let (root, _) = w.mkdir(&mut cache, MutableFormat::Sdmf);
    let unknown = ChildCap::from_caps(None, Some(b"ro.x-future:abc"), false).unwrap();
    w.link_with(
        &mut cache,
        &root,
        path_of("future"),
        unknown,
        LinkOptions::default(),
    )
    .0
    .unwrap();
    let (err, _) = w.lookup(&mut cache, &root, "future/x");
    assert_eq!(
        err.unwrap_err(),
        DirOpError::NotADirectory {
            path: "\"future\"".into(),
            kind: "cap of an unknown kind".into()
        }
    );
}

#[test]
fn no_key_for_a_new_directory_fails_having_linked_nothing() {
    // DirError::Keys.
    let mut w = World::new();
    let mut cache = DirCache::default();
    let (root, _) = w.mkdir(&mut cache, MutableFormat::Sdmf);
    let mut op = MkdirAt::new(
        w.grid.now,
        w.grid.dir_config(),
        w.seed(),
        &mut cache,
        root.clone(),
        path_of("d"),
        MutableFormat::Sdmf,
        false,
    );
    let (err, _) = w.grid.drive(
        &mut op,
        |_| 0,
        |op, now, ev| match ev {
            MkdirAtEvent::NeedKey => {
                op.key_unavailable(now, "the key pool is empty");
                None
            }
            MkdirAtEvent::Failed(e) => Some(e),
            MkdirAtEvent::Done(_) => panic!("made without a key"),
            MkdirAtEvent::Progress(_) => None,
        },
    );
    assert!(matches!(err, DirOpError::NoKey { .. }), "{err:?}");
    op.return_to(&mut cache);
    assert!(w.list(&mut cache, &root).0.unwrap().is_empty());
    // The same through put-into-path's missing parents.
    let new_file = w.file(1);
    let op = Link::put_into_path(
        w.grid.now,
        w.grid.dir_config(),
        w.seed(),
        &mut cache,
        root.clone(),
        path_of("p/f"),
        new_file,
        Overwrite::No,
        true,
    );
    let mut op = op;
    let (err, _) = w.grid.drive(
        &mut op,
        |_| 0,
        |op, now, ev| match ev {
            LinkEvent::NeedKey => {
                op.key_unavailable(now, "no keys");
                None
            }
            LinkEvent::Failed(e) => Some(e),
            LinkEvent::Done(_) => panic!("linked without a key"),
            LinkEvent::Progress(_) => None,
        },
    );
    assert!(matches!(err, DirOpError::NoKey { .. }), "{err:?}");
}

// ---- robustness and determinism ----

#[test]
fn an_edit_survives_a_server_dropping_its_connection() {
    let mut w = World::new();
    let mut cache = DirCache::default();
    let (root, _) = w.mkdir(&mut cache, MutableFormat::Sdmf);
    let file = w.file(1);
    let lost = w.grid.descriptors[3].id;
    w.grid.faults.insert(
        lost,
        lafs_core::testing::grid::Fault::DisconnectAfter { after_rounds: 0 },
    );
    let mut cold = DirCache::default();
    let (linked, _) = w.link(&mut cold, &root, "f", &file);
    linked.unwrap();
    w.grid.faults.clear();
    let (found, _) = w.lookup(&mut DirCache::default(), &root, "f");
    assert_eq!(child_cap(&found.unwrap()), file);
}

/// Makes a directory and links one file with fixed seeds; returns the version published.
fn publish_with_seed(seed: [u8; 32]) -> lafs_core::mutable::layout::Prefix {
    let mut w = World::new();
    let mut cache = DirCache::default();
    let (root, _) = w.mkdir(&mut cache, MutableFormat::Sdmf);
    let file = w.file(1);
    let op = Link::new(
        w.grid.now,
        w.grid.dir_config(),
        seed,
        &mut cache,
        root.clone(),
        path_of("f"),
        ChildCap::Known(file),
        LinkOptions::default(),
    );
    w.drive(&mut cache, op).0.unwrap();
    w.grid.retrieve(&root, None).0.unwrap().1.version
}

#[test]
fn the_same_seed_publishes_the_same_bytes_and_another_seed_does_not() {
    let a = publish_with_seed([1; 32]);
    assert_eq!(
        a,
        publish_with_seed([1; 32]),
        "no hidden randomness or clock"
    );
    assert_ne!(a, publish_with_seed([2; 32]), "salts come from the seed");
}

#[test]
fn immutable_directories_are_read_through_download_and_refuse_edits() {
    let mut w = World::new();
    let file = w.file(1);
    let mut dir = Directory::new(Access::Immutable);
    for i in 0..40 {
        dir.add(
            &format!("entry-{i:02}"),
            ChildCap::Known(file.clone()),
            None,
            false,
            1.0,
        )
        .unwrap();
    }
    let packed = dir.pack();
    let chk = w
        .grid
        .upload(&packed, UploadConfig::default())
        .0
        .expect("upload")
        .cap;
    let root = Cap::directory(chk).unwrap();
    let mut cache = DirCache::default();
    let (listed, run) = w.list(&mut cache, &root);
    assert_eq!(listed.unwrap().len(), 40);
    assert!(run.rounds >= 1);
    assert!(
        cache.is_empty(),
        "immutable directories have no map to remember"
    );
    let (found, _) = w.lookup(&mut cache, &root, "entry-07");
    assert_eq!(child_cap(&found.unwrap()), file);
    let (err, _) = w.unlink(&mut cache, &root, "entry-07");
    assert!(
        matches!(
            err,
            Err(DirOpError::ReadOnly {
                kind: "DIR2-CHK",
                ..
            })
        ),
        "{err:?}"
    );
}
