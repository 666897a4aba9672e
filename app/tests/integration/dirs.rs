//! Directories on a loopback grid: nested paths, read-only refusal, malformed tables, concurrent
//! writers, and what the cache saves in round trips.

use lafs::local_grid::LocalGrid;
use lafs_core::cap::Cap;
use lafs_core::crypto::key_source::FixtureKeys;
use lafs_core::dirnode::{ChildCap, EditError, Overwrite};
use lafs_core::mutable::layout::MutableFormat;
use lafs_runtime_std::dirs::{DirClient, DirError};
use lafs_runtime_std::net::{ClientConfig, GridClient};

fn keys() -> Box<FixtureKeys> {
    let pem = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/data/rsa-2048-fixture-keys.pem"
    ))
    .unwrap();
    Box::new(FixtureKeys::from_pem_bundle(&pem))
}

fn config() -> ClientConfig {
    let mut config = ClientConfig::new(b"convergence".to_vec(), b"lease secret".to_vec());
    config.upload.params.happy = 5;
    config
}

fn path(p: &str) -> Vec<String> {
    p.split('/')
        .filter(|c| !c.is_empty())
        .map(String::from)
        .collect()
}

fn names(dirs: &mut DirClient<'_>, cap: &Cap) -> Vec<String> {
    dirs.list(cap)
        .unwrap()
        .list()
        .map(|(n, _)| n.to_string())
        .collect()
}

fn put(dirs: &mut DirClient<'_>, root: &Cap, p: &str, data: &[u8]) -> Cap {
    dirs.put_file(
        root,
        &path(p),
        data.len() as u64,
        &mut std::io::Cursor::new(data.to_vec()),
        Overwrite::OnlyFiles,
        false,
    )
    .unwrap()
    .cap
}

fn fetch(grid: &GridClient, cap: &ChildCap) -> Vec<u8> {
    let ChildCap::Known(cap) = cap else {
        panic!("unknown cap")
    };
    let mut out = Vec::new();
    grid.download(cap, &mut out, &mut |_| {}).unwrap();
    out
}

#[test]
fn nested_paths_link_move_and_remove() {
    let tmp = tempfile::tempdir().unwrap();
    let grid = LocalGrid::start(tmp.path(), 5).unwrap();
    let client = grid.client(config());
    let mut dirs = DirClient::new(&client, keys());

    let root = dirs.mkdir(MutableFormat::Sdmf).unwrap();
    assert!(root.to_string().starts_with("URI:DIR2:"), "{root}");
    let docs = dirs
        .mkdir_at(&root, &path("docs"), MutableFormat::Mdmf, false)
        .unwrap();
    assert!(docs.to_string().starts_with("URI:DIR2-MDMF:"), "{docs}");
    // Intermediate directories are made only when asked.
    let err = dirs
        .mkdir_at(&root, &path("a/b/c"), MutableFormat::Sdmf, false)
        .unwrap_err();
    assert!(matches!(err, DirError::NotFound { .. }), "{err}");
    dirs.mkdir_at(&root, &path("a/b/c"), MutableFormat::Sdmf, true)
        .unwrap();
    let err = dirs
        .mkdir_at(&root, &path("a/b"), MutableFormat::Sdmf, false)
        .unwrap_err();
    assert!(matches!(err, DirError::Exists { .. }), "{err}");

    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    put(&mut dirs, &root, "docs/report.bin", &big);
    put(&mut dirs, &root, "a/b/c/note.txt", b"small note");
    assert_eq!(names(&mut dirs, &root), ["a", "docs"]);
    let found = dirs.lookup(&root, &path("docs/report.bin")).unwrap();
    assert_eq!(fetch(&client, &found.cap), big);
    let found = dirs.lookup(&root, &path("a/b/c/note.txt")).unwrap();
    assert_eq!(fetch(&client, &found.cap), b"small note");

    // A path under a file, a missing child: clear errors.
    let err = dirs.lookup(&root, &path("docs/report.bin/x")).unwrap_err();
    assert!(err.to_string().contains("is not a directory"), "{err}");
    let err = dirs.lookup(&root, &path("docs/missing")).unwrap_err();
    assert_eq!(err.to_string(), "\"docs/missing\" does not exist");

    // Rename within a directory, then move between directories; metadata moves along.
    dirs.rename(
        &root,
        &path("docs/report.bin"),
        &root,
        &path("docs/q3.bin"),
        Overwrite::No,
    )
    .unwrap();
    assert_eq!(names(&mut dirs, &docs), ["q3.bin"]);
    dirs.rename(
        &root,
        &path("docs/q3.bin"),
        &root,
        &path("a/b/q3.bin"),
        Overwrite::No,
    )
    .unwrap();
    assert!(names(&mut dirs, &docs).is_empty());
    let moved = dirs.lookup(&root, &path("a/b/q3.bin")).unwrap();
    assert_eq!(fetch(&client, &moved.cap), big);

    // Overwrite rules: a file may not silently replace a file unless asked; never a directory.
    let err = dirs
        .put_file(
            &root,
            &path("a/b/c"),
            3,
            &mut std::io::Cursor::new(b"xyz".to_vec()),
            Overwrite::OnlyFiles,
            false,
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            DirError::Edit {
                source: EditError::ExistingDirectory { .. },
                ..
            }
        ),
        "{err}"
    );
    let removed = dirs.unlink(&root, &path("a/b/q3.bin")).unwrap();
    assert_eq!(fetch(&client, &removed.cap), big);
    assert_eq!(names(&mut dirs, &root.clone()), ["a", "docs"]);
    let err = dirs.unlink(&root, &path("a/b/q3.bin")).unwrap_err();
    assert!(err.to_string().contains("no child named"), "{err}");

    // A second client (no cache) sees everything.
    let other = grid.client(config());
    let mut fresh = DirClient::new(&other, keys());
    let found = fresh.lookup(&root, &path("a/b/c/note.txt")).unwrap();
    assert_eq!(fetch(&other, &found.cap), b"small note");
}

#[test]
fn read_only_directories_list_but_refuse_every_change() {
    let tmp = tempfile::tempdir().unwrap();
    let grid = LocalGrid::start(tmp.path(), 5).unwrap();
    let client = grid.client(config());
    let mut dirs = DirClient::new(&client, keys());
    let root = dirs.mkdir(MutableFormat::Sdmf).unwrap();
    let sub = dirs
        .mkdir_at(&root, &path("sub"), MutableFormat::Sdmf, false)
        .unwrap();
    put(&mut dirs, &root, "f", b"hello");
    let before = client.read_mutable(&root, None).unwrap();

    let ro = root.read_only().unwrap();
    assert!(ro.to_string().starts_with("URI:DIR2-RO:"), "{ro}");
    assert_eq!(names(&mut dirs, &ro), ["f", "sub"]);
    // Children seen through a read-only directory are read-only too.
    let child = dirs.lookup(&ro, &path("sub")).unwrap();
    assert_eq!(child.cap, ChildCap::Known(sub.read_only().unwrap()));

    let refusals = [
        dirs.link(
            &ro,
            &path("g"),
            ChildCap::Known(sub.clone()),
            None,
            Overwrite::Yes,
        )
        .unwrap_err(),
        dirs.unlink(&ro, &path("f")).unwrap_err(),
        dirs.rename(&ro, &path("f"), &ro, &path("g"), Overwrite::No)
            .unwrap_err(),
        dirs.mkdir_at(&ro, &path("new"), MutableFormat::Sdmf, false)
            .unwrap_err(),
        dirs.put_file(
            &ro,
            &path("x"),
            1,
            &mut std::io::Cursor::new(b"x".to_vec()),
            Overwrite::Yes,
            false,
        )
        .unwrap_err(),
        // Through the read-only view, the subdirectory is read-only as well.
        dirs.unlink(&ro, &path("sub/anything")).unwrap_err(),
    ];
    for err in refusals {
        assert!(
            matches!(err, DirError::ReadOnly { .. }),
            "expected a read-only refusal, got: {err}"
        );
        assert!(err.to_string().contains("read-only"), "{err}");
    }
    let after = client.read_mutable(&root, None).unwrap();
    assert_eq!(after.1.seqnum, before.1.seqnum, "nothing was published");
    assert_eq!(after.0, before.0);
}

#[test]
fn a_malformed_directory_is_a_clear_error_and_edits_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let grid = LocalGrid::start(tmp.path(), 5).unwrap();
    let client = grid.client(config());
    let mut dirs = DirClient::new(&client, keys());
    let root = dirs.mkdir(MutableFormat::Sdmf).unwrap();
    put(&mut dirs, &root, "f", b"hello");
    // Someone writes garbage into the directory's file.
    let garbage = b"12:not a table,99:truncated".to_vec();
    client.update_mutable(&root, garbage.clone(), None).unwrap();
    let seqnum = client.read_mutable(&root, None).unwrap().1.seqnum;

    let err = dirs.list(&root).unwrap_err();
    assert!(matches!(err, DirError::Malformed { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("not a valid directory") && text.contains("nothing was changed"),
        "{text}"
    );
    assert!(!text.contains("URI:"), "errors never quote caps: {text}");
    let edits = [
        dirs.link(
            &root,
            &path("g"),
            ChildCap::Known(root.read_only().unwrap()),
            None,
            Overwrite::Yes,
        )
        .unwrap_err(),
        dirs.unlink(&root, &path("f")).unwrap_err(),
        dirs.mkdir_at(&root, &path("d"), MutableFormat::Sdmf, false)
            .unwrap_err(),
    ];
    for err in edits {
        assert!(matches!(err, DirError::Malformed { .. }), "{err}");
    }
    let (bytes, report) = client.read_mutable(&root, None).unwrap();
    assert_eq!(bytes, garbage, "the stored bytes are untouched");
    assert_eq!(report.seqnum, seqnum);
    // A lookup under a non-directory cap names the problem.
    let file = client.upload_bytes(&[7u8; 2000], &mut |_| {}).unwrap().cap;
    let err = dirs.list(&file).unwrap_err();
    assert!(err.to_string().contains("is not a directory"), "{err}");
}

#[test]
fn concurrent_edits_from_two_clients_all_land() {
    let tmp = tempfile::tempdir().unwrap();
    let grid = LocalGrid::start(tmp.path(), 5).unwrap();
    let root = {
        let client = grid.client(config());
        let made = DirClient::new(&client, keys())
            .mkdir(MutableFormat::Sdmf)
            .unwrap();
        made
    };
    let leaf = Cap::parse("URI:LIT:nbswy3dp").unwrap();
    let per_writer = 12;
    let conflicts: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|w| {
                let (grid, root, leaf) = (&grid, &root, &leaf);
                s.spawn(move || {
                    let client = grid.client(config());
                    let mut dirs = DirClient::new(&client, keys());
                    for i in 0..per_writer {
                        dirs.link(
                            root,
                            &[format!("w{w}-{i:02}")],
                            ChildCap::Known(leaf.clone()),
                            None,
                            Overwrite::No,
                        )
                        .unwrap();
                    }
                    dirs.stats().conflicts
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let client = grid.client(config());
    let mut dirs = DirClient::new(&client, keys());
    let listed = names(&mut dirs, &root);
    assert_eq!(listed.len(), 2 * per_writer, "{listed:?}");
    eprintln!("{conflicts} conflicts retried");
}

#[test]
fn cached_edits_cost_one_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let grid = LocalGrid::start(tmp.path(), 5).unwrap();
    let client = grid.client(config());
    let mut dirs = DirClient::new(&client, keys());
    let leaf = ChildCap::Known(Cap::parse("URI:LIT:nbswy3dp").unwrap());

    let before = dirs.stats();
    let root = dirs.mkdir(MutableFormat::Sdmf).unwrap();
    assert_eq!(dirs.stats().round_trips - before.round_trips, 1, "mkdir");
    for i in 0..5 {
        let before = dirs.stats();
        dirs.link(&root, &[format!("c{i}")], leaf.clone(), None, Overwrite::No)
            .unwrap();
        let after = dirs.stats();
        assert_eq!(after.round_trips - before.round_trips, 1, "edit {i}");
        assert_eq!(after.reads, before.reads, "no read for a cached edit");
    }
    // Upload + link into a remembered directory: the upload's round trip plus one publish.
    let before = dirs.stats();
    let data = vec![5u8; 5000];
    dirs.put_file(
        &root,
        &path("uploaded.bin"),
        data.len() as u64,
        &mut std::io::Cursor::new(data),
        Overwrite::No,
        false,
    )
    .unwrap();
    assert_eq!(dirs.stats().round_trips - before.round_trips, 2, "put_file");
    dirs.unlink(&root, &path("uploaded.bin")).unwrap();
    // Cold: one read plus one publish.
    dirs.clear_cache();
    let before = dirs.stats();
    dirs.unlink(&root, &path("c0")).unwrap();
    assert_eq!(dirs.stats().round_trips - before.round_trips, 2);
    // Listing reads the grid: one round trip, and warms the cache for the next edit.
    dirs.clear_cache();
    let before = dirs.stats();
    assert_eq!(dirs.list(&root).unwrap().len(), 4);
    dirs.unlink(&root, &path("c1")).unwrap();
    assert_eq!(dirs.stats().round_trips - before.round_trips, 2);

    // Another writer makes the cache stale: the edit conflicts, re-reads and lands.
    let other = grid.client(config());
    DirClient::new(&other, keys())
        .link(&root, &path("theirs"), leaf.clone(), None, Overwrite::No)
        .unwrap();
    let before = dirs.stats();
    dirs.link(&root, &path("ours"), leaf, None, Overwrite::No)
        .unwrap();
    let after = dirs.stats();
    assert_eq!(after.conflicts - before.conflicts, 1);
    assert_eq!(
        names(&mut dirs, &root),
        ["c2", "c3", "c4", "ours", "theirs"]
    );
}

#[test]
fn remembered_paths_are_read_in_one_round_trip_and_a_stale_guess_is_never_used() {
    let tmp = tempfile::tempdir().unwrap();
    let grid = LocalGrid::start(tmp.path(), 5).unwrap();
    let client = grid.client(config());
    let mut dirs = DirClient::new(&client, keys());
    let root = dirs.mkdir(MutableFormat::Sdmf).unwrap();
    dirs.mkdir_at(&root, &path("a"), MutableFormat::Sdmf, false)
        .unwrap();
    dirs.mkdir_at(&root, &path("a/b"), MutableFormat::Sdmf, false)
        .unwrap();
    let old = put(&mut dirs, &root, "a/b/f", b"old contents");

    // Every directory on the path is remembered: root, a and b are read side by side.
    let before = dirs.stats();
    let found = dirs.lookup(&root, &path("a/b/f")).unwrap();
    let after = dirs.stats();
    assert_eq!(found.cap, ChildCap::Known(old.clone()));
    assert_eq!(
        after.reads - before.reads,
        3,
        "each directory is read fresh"
    );
    assert_eq!(after.round_trips - before.round_trips, 1, "all at once");

    // Cold, the same lookup reads one level after another.
    dirs.clear_cache();
    let before = dirs.stats();
    assert_eq!(
        dirs.lookup(&root, &path("a/b/f")).unwrap().cap,
        ChildCap::Known(old)
    );
    assert_eq!(dirs.stats().round_trips - before.round_trips, 3);

    // Another client relinks "a" to a new directory holding a different "b/f": the
    // remembered chain is now wrong, and the answer must come from the new one.
    let other_client = grid.client(config());
    let mut other = DirClient::new(&other_client, keys());
    // The fixture keys come in one order: skip the three our client used.
    for _ in 0..3 {
        other.next_key().unwrap();
    }
    let fresh = other.mkdir(MutableFormat::Sdmf).unwrap();
    other
        .mkdir_at(&fresh, &path("b"), MutableFormat::Sdmf, false)
        .unwrap();
    let new = put(&mut other, &fresh, "b/f", b"new contents");
    other
        .link(
            &root,
            &path("a"),
            ChildCap::Known(fresh),
            None,
            Overwrite::Yes,
        )
        .unwrap();
    let found = dirs.lookup(&root, &path("a/b/f")).unwrap();
    assert_eq!(found.cap, ChildCap::Known(new.clone()));
    assert_eq!(fetch(&client, &found.cap), b"new contents");
    // And the next lookup guesses along the new chain.
    let before = dirs.stats();
    assert_eq!(
        dirs.lookup(&root, &path("a/b/f")).unwrap().cap,
        ChildCap::Known(new)
    );
    assert_eq!(dirs.stats().round_trips - before.round_trips, 1);
}

#[test]
fn an_upload_into_a_remembered_path_confirms_the_path_while_it_uploads() {
    let tmp = tempfile::tempdir().unwrap();
    let grid = LocalGrid::start(tmp.path(), 5).unwrap();
    let client = grid.client(config());
    let mut dirs = DirClient::new(&client, keys());
    let root = dirs.mkdir(MutableFormat::Sdmf).unwrap();
    dirs.mkdir_at(&root, &path("a"), MutableFormat::Sdmf, false)
        .unwrap();
    put(&mut dirs, &root, "a/first", b"first");

    // The root is read (to confirm "a") at the same time as the upload, then "a" is edited
    // from its remembered state: two round trips deep, as an upload into the root itself.
    let before = dirs.stats();
    let cap = put(&mut dirs, &root, "a/second", &[3u8; 4000]);
    let after = dirs.stats();
    assert_eq!(after.round_trips - before.round_trips, 2);
    assert_eq!(after.reads - before.reads, 1, "the root, read fresh");
    let found = dirs.lookup(&root, &path("a/second")).unwrap();
    assert_eq!(found.cap, ChildCap::Known(cap));

    // Someone relinks "a" elsewhere: the guess is wrong, and the file lands in the new "a".
    let other_client = grid.client(config());
    let mut other = DirClient::new(&other_client, keys());
    for _ in 0..2 {
        other.next_key().unwrap(); // the fixture keys our client used
    }
    let fresh = other.mkdir(MutableFormat::Sdmf).unwrap();
    other
        .link(
            &root,
            &path("a"),
            ChildCap::Known(fresh.clone()),
            None,
            Overwrite::Yes,
        )
        .unwrap();
    let cap = put(&mut dirs, &root, "a/third", b"third");
    assert_eq!(names(&mut dirs, &fresh), vec!["third".to_string()]);
    assert_eq!(fetch(&client, &ChildCap::Known(cap)), b"third");
}

#[test]
fn writers_sharing_a_cache_take_turns_on_a_directory_instead_of_conflicting() {
    use lafs_runtime_std::dirs::DirCache;
    let tmp = tempfile::tempdir().unwrap();
    let grid = LocalGrid::start(tmp.path(), 5).unwrap();
    let client = grid.client(config());
    let cache = DirCache::new();
    let root = DirClient::sharing(&client, keys(), cache.clone())
        .mkdir(MutableFormat::Sdmf)
        .unwrap();
    let leaf = ChildCap::Known(Cap::parse("URI:LIT:nbswy3dp").unwrap());
    let (writers, each) = (8, 6);
    let conflicts: u64 = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let (client, cache, root, leaf) = (&client, cache.clone(), &root, &leaf);
                scope.spawn(move || {
                    let mut dirs = DirClient::sharing(client, keys(), cache);
                    for i in 0..each {
                        dirs.link(
                            root,
                            &[format!("w{w}-{i}")],
                            leaf.clone(),
                            None,
                            Overwrite::No,
                        )
                        .unwrap();
                    }
                    dirs.stats().conflicts
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(
        conflicts, 0,
        "edits through one cache never race each other"
    );
    let mut dirs = DirClient::new(&client, keys());
    assert_eq!(names(&mut dirs, &root).len(), writers * each);
}
