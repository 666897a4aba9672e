//! Directories on a loopback grid, through the grid client the CLI and gateway use: nested
//! paths, read-only refusal, malformed tables, concurrent writers (other clients, and threads
//! sharing one client), and what remembered directories save in round trips.

use lafs::dir_paths;
use lafs::local_grid::LocalGrid;
use lafs_core::cap::Cap;
use lafs_core::crypto::key_source::FixtureKeys;
use lafs_core::dirnode::ops::{DirOpError, LinkOptions};
use lafs_core::dirnode::{ChildCap, EditError, Overwrite};
use lafs_core::mutable::layout::MutableFormat;
use lafs_runtime_std::net::{ClientConfig, ClientError, GridClient};

fn keys() -> FixtureKeys {
    let pem = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/data/rsa-2048-fixture-keys.pem"
    ))
    .unwrap();
    FixtureKeys::from_pem_bundle(&pem)
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

fn names(grid: &GridClient, cap: &Cap) -> Vec<String> {
    grid.list_directory(cap)
        .unwrap()
        .list()
        .map(|(n, _)| n.to_string())
        .collect()
}

fn put_with(
    grid: &GridClient,
    root: &Cap,
    p: &str,
    data: &[u8],
    overwrite: Overwrite,
) -> Result<Cap, ClientError> {
    let mut reader = std::io::Cursor::new(data.to_vec());
    let source = (
        data.len() as u64,
        &mut reader as &mut dyn lafs_runtime_std::net::ReadSeek,
    );
    dir_paths::put_file(grid, root, &path(p), source, overwrite, false, &mut keys())
        .map(|(report, _)| report.cap)
}

fn put(grid: &GridClient, root: &Cap, p: &str, data: &[u8]) -> Cap {
    put_with(grid, root, p, data, Overwrite::OnlyFiles).unwrap()
}

fn link(grid: &GridClient, root: &Cap, p: &str, cap: &Cap) -> Result<(), ClientError> {
    let child = ChildCap::Known(cap.clone());
    grid.link(root, &path(p), child, LinkOptions::default(), &mut keys())
        .map(drop)
}

fn fetch(grid: &GridClient, cap: &ChildCap) -> Vec<u8> {
    let ChildCap::Known(cap) = cap else {
        panic!("unknown cap")
    };
    let mut out = Vec::new();
    grid.download(cap, &mut out, &mut |_| {}).unwrap();
    out
}

fn dir_error(e: ClientError) -> DirOpError {
    match e {
        ClientError::Dir(e) => e,
        other => panic!("expected a directory error, got: {other}"),
    }
}

#[test]
fn nested_paths_link_move_and_remove() {
    let tmp = tempfile::tempdir().unwrap();
    let grid = LocalGrid::start(tmp.path(), 5).unwrap();
    let client = grid.client(config());
    let mut keys = keys();

    let root = client.mkdir(MutableFormat::Sdmf, &mut keys).unwrap();
    assert!(root.to_string().starts_with("URI:DIR2:"), "{root}");
    let docs = client
        .mkdir_at(&root, &path("docs"), MutableFormat::Mdmf, false, &mut keys)
        .unwrap();
    assert!(docs.to_string().starts_with("URI:DIR2-MDMF:"), "{docs}");
    // Intermediate directories are made only when asked.
    let err = client
        .mkdir_at(&root, &path("a/b/c"), MutableFormat::Sdmf, false, &mut keys)
        .unwrap_err();
    assert!(matches!(dir_error(err), DirOpError::NotFound { .. }));
    client
        .mkdir_at(&root, &path("a/b/c"), MutableFormat::Sdmf, true, &mut keys)
        .unwrap();
    let err = client
        .mkdir_at(&root, &path("a/b"), MutableFormat::Sdmf, false, &mut keys)
        .unwrap_err();
    assert!(matches!(dir_error(err), DirOpError::Exists { .. }));

    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    put(&client, &root, "docs/report.bin", &big);
    put(&client, &root, "a/b/c/note.txt", b"small note");
    assert_eq!(names(&client, &root), ["a", "docs"]);
    let found = client.lookup(&root, &path("docs/report.bin")).unwrap();
    assert_eq!(fetch(&client, &found.cap), big);
    let found = client.lookup(&root, &path("a/b/c/note.txt")).unwrap();
    assert_eq!(fetch(&client, &found.cap), b"small note");

    // A path under a file, a missing child: clear errors.
    let err = client
        .lookup(&root, &path("docs/report.bin/x"))
        .unwrap_err();
    assert!(err.to_string().contains("is not a directory"), "{err}");
    let err = client.lookup(&root, &path("docs/missing")).unwrap_err();
    assert_eq!(err.to_string(), "\"docs/missing\" does not exist");

    // Rename within a directory, then move between directories.
    let (docs_report, docs_q3) = (path("docs/report.bin"), path("docs/q3.bin"));
    client
        .move_link((&root, &docs_report), (&root, &docs_q3), Overwrite::No)
        .unwrap();
    assert_eq!(names(&client, &docs), ["q3.bin"]);
    let ab_q3 = path("a/b/q3.bin");
    client
        .move_link((&root, &docs_q3), (&root, &ab_q3), Overwrite::No)
        .unwrap();
    assert!(names(&client, &docs).is_empty());
    let moved = client.lookup(&root, &ab_q3).unwrap();
    assert_eq!(fetch(&client, &moved.cap), big);

    // Overwrite rules: never a directory, and refused before anything is uploaded.
    let err = put_with(&client, &root, "a/b/c", b"xyz", Overwrite::OnlyFiles).unwrap_err();
    assert!(
        matches!(
            dir_error(err),
            DirOpError::Edit {
                source: EditError::ExistingDirectory { .. },
                ..
            }
        ),
        "a directory is never replaced by a file"
    );
    let err = put_with(&client, &root, "a/b/q3.bin", b"xyz", Overwrite::No).unwrap_err();
    assert!(err.to_string().contains("already"), "{err}");
    let removed = client.unlink(&root, &ab_q3).unwrap();
    assert_eq!(fetch(&client, &removed.cap), big);
    assert_eq!(names(&client, &root), ["a", "docs"]);
    let err = client.unlink(&root, &ab_q3).unwrap_err();
    assert!(err.to_string().contains("no child named"), "{err}");

    // A second client (nothing remembered) sees everything.
    let other = grid.client(config());
    let found = other.lookup(&root, &path("a/b/c/note.txt")).unwrap();
    assert_eq!(fetch(&other, &found.cap), b"small note");
}

#[test]
fn read_only_directories_list_but_refuse_every_change() {
    let tmp = tempfile::tempdir().unwrap();
    let grid = LocalGrid::start(tmp.path(), 5).unwrap();
    let client = grid.client(config());
    let mut keys = keys();
    let root = client.mkdir(MutableFormat::Sdmf, &mut keys).unwrap();
    let sub = client
        .mkdir_at(&root, &path("sub"), MutableFormat::Sdmf, false, &mut keys)
        .unwrap();
    put(&client, &root, "f", b"hello");
    let before = client.read_mutable(&root, None).unwrap();

    let ro = root.read_only().unwrap();
    assert!(ro.to_string().starts_with("URI:DIR2-RO:"), "{ro}");
    assert_eq!(names(&client, &ro), ["f", "sub"]);
    // Children seen through a read-only directory are read-only too.
    let child = client.lookup(&ro, &path("sub")).unwrap();
    assert_eq!(child.cap, ChildCap::Known(sub.read_only().unwrap()));

    let (f, g) = (path("f"), path("g"));
    let refusals = [
        link(&client, &ro, "g", &sub).unwrap_err(),
        client.unlink(&ro, &f).unwrap_err(),
        client
            .move_link((&ro, &f), (&ro, &g), Overwrite::No)
            .unwrap_err(),
        client
            .mkdir_at(&ro, &path("new"), MutableFormat::Sdmf, false, &mut keys)
            .unwrap_err(),
        put_with(&client, &ro, "x", b"x", Overwrite::Yes).unwrap_err(),
        // Through the read-only view, the subdirectory is read-only as well.
        client.unlink(&ro, &path("sub/anything")).unwrap_err(),
    ];
    for err in refusals {
        assert!(err.to_string().contains("read-only"), "{err}");
        assert!(matches!(dir_error(err), DirOpError::ReadOnly { .. }));
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
    let mut keys = keys();
    let root = client.mkdir(MutableFormat::Sdmf, &mut keys).unwrap();
    put(&client, &root, "f", b"hello");
    // Someone writes garbage into the directory's file.
    let garbage = b"12:not a table,99:truncated".to_vec();
    client.update_mutable(&root, garbage.clone(), None).unwrap();
    let seqnum = client.read_mutable(&root, None).unwrap().1.seqnum;

    let err = client.list_directory(&root).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("not a valid directory") && text.contains("nothing was changed"),
        "{text}"
    );
    assert!(!text.contains("URI:"), "errors never quote caps: {text}");
    assert!(matches!(dir_error(err), DirOpError::Malformed { .. }));
    let edits = [
        link(&client, &root, "g", &root.read_only().unwrap()).unwrap_err(),
        client.unlink(&root, &path("f")).unwrap_err(),
        client
            .mkdir_at(&root, &path("d"), MutableFormat::Sdmf, false, &mut keys)
            .unwrap_err(),
    ];
    for err in edits {
        assert!(matches!(dir_error(err), DirOpError::Malformed { .. }));
    }
    let (bytes, report) = client.read_mutable(&root, None).unwrap();
    assert_eq!(bytes, garbage, "the stored bytes are untouched");
    assert_eq!(report.seqnum, seqnum);
    // Listing a file's cap names the problem.
    let file = client.upload_bytes(&[7u8; 2000], &mut |_| {}).unwrap().cap;
    let err = client.list_directory(&file).unwrap_err();
    assert!(err.to_string().contains("is not a directory"), "{err}");
}

#[test]
fn concurrent_edits_from_two_clients_all_land() {
    let tmp = tempfile::tempdir().unwrap();
    let grid = LocalGrid::start(tmp.path(), 5).unwrap();
    let root = grid
        .client(config())
        .mkdir(MutableFormat::Sdmf, &mut keys())
        .unwrap();
    let leaf = Cap::parse("URI:LIT:nbswy3dp").unwrap();
    let per_writer = 12;
    std::thread::scope(|s| {
        for w in 0..2 {
            let (grid, root, leaf) = (&grid, &root, &leaf);
            s.spawn(move || {
                // Each writer its own client: they meet only on the servers.
                let client = grid.client(config());
                for i in 0..per_writer {
                    link(&client, root, &format!("w{w}-{i:02}"), leaf).unwrap();
                }
            });
        }
    });
    let listed = names(&grid.client(config()), &root);
    assert_eq!(listed.len(), 2 * per_writer, "{listed:?}");
}

#[test]
fn remembered_directories_make_edits_one_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let grid = LocalGrid::start(tmp.path(), 5).unwrap();
    let client = grid.client(config());
    let mut keys = keys();
    let leaf = Cap::parse("URI:LIT:nbswy3dp").unwrap();

    let (root, trips) = client.metered(|g| g.mkdir(MutableFormat::Sdmf, &mut keys));
    let root = root.unwrap();
    assert_eq!(trips, 1, "mkdir");
    for i in 0..5 {
        let (linked, trips) = client.metered(|g| link(g, &root, &format!("c{i}"), &leaf));
        linked.unwrap();
        assert_eq!(trips, 1, "edit {i} starts from the remembered state");
    }
    // Upload + link into a remembered directory: what the path links is known without a
    // round trip, so it is the upload's round trip plus one publish.
    let (put, trips) =
        client.metered(|g| put_with(g, &root, "uploaded.bin", &[5; 5000], Overwrite::No));
    put.unwrap();
    assert_eq!(trips, 2, "put into a remembered directory");
    // One level down: the walk reads the root and the remembered subdirectory side by side.
    client
        .mkdir_at(&root, &path("sub"), MutableFormat::Sdmf, false, &mut keys)
        .unwrap();
    let (put, trips) =
        client.metered(|g| put_with(g, &root, "sub/deep.bin", &[6; 5000], Overwrite::No));
    put.unwrap();
    assert_eq!(trips, 3, "upload, one walk of both levels, one publish");

    // A client with nothing remembered: one read plus one publish.
    let cold = grid.client(config());
    let (unlinked, trips) = cold.metered(|g| g.unlink(&root, &path("c0")));
    unlinked.unwrap();
    assert_eq!(trips, 2, "cold edit");

    // That other writer made our remembered state stale: the edit is refused, re-read and
    // reapplied, and lands.
    let (linked, trips) = client.metered(|g| link(g, &root, "ours", &leaf));
    linked.unwrap();
    assert!(
        trips >= 3,
        "a conflict costs a refusal, a read and a publish: {trips}"
    );
    assert_eq!(
        names(&client, &root),
        ["c1", "c2", "c3", "c4", "ours", "sub", "uploaded.bin"]
    );
}

#[test]
fn threads_sharing_a_client_take_turns_on_a_directory_instead_of_conflicting() {
    let tmp = tempfile::tempdir().unwrap();
    let grid = LocalGrid::start(tmp.path(), 5).unwrap();
    let client = grid.client(config());
    let root = client.mkdir(MutableFormat::Sdmf, &mut keys()).unwrap();
    let leaf = Cap::parse("URI:LIT:nbswy3dp").unwrap();
    let (writers, each) = (8, 6);
    let trips: u64 = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let (client, root, leaf) = (&client, &root, &leaf);
                scope.spawn(move || {
                    let (done, trips) = client.metered(|g| {
                        (0..each).try_for_each(|i| link(g, root, &format!("w{w}-{i}"), leaf))
                    });
                    done.unwrap();
                    trips
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    // A conflict would cost a refused publish and a re-read on top of the publish.
    assert_eq!(
        trips,
        (writers * each) as u64,
        "every edit was one publish from the state the previous one left"
    );
    assert_eq!(names(&client, &root).len(), writers * each);
}
