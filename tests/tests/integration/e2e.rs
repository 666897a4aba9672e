//! The end-to-end suite, written once against `lafs_tests::drivers::Driver` and run over every
//! driver: lafs-runtime-std (threads), lafs-runtime-smol (futures) and lafs-sim (virtual time).
//!
//! Each scenario is what a user of the grid relies on: files of every size come back
//! byte-exact; a server dying mid-upload, a corrupted share, a full server, or servers
//! restarting cost nothing but time; many operations at once each get their own bytes; mutable
//! files (SDMF and MDMF) read back each version written, whole or in part, also with a server
//! down.

use lafs_core::codec::CodecKind;
use lafs_core::mutable::layout::MutableFormat;
use lafs_tests::drivers::on_sim::SimDriver;
use lafs_tests::drivers::on_smol::SmolDriver;
use lafs_tests::drivers::on_std::StdDriver;
use lafs_tests::drivers::{contents, mutable_contents, DirDriver, Driver, Op, OpResult, Setup};

/// Check a download against the file's contents without printing megabytes on failure.
fn assert_bytes<D: Driver>(what: &str, file: usize, size: u64, got: &[u8]) {
    let want = contents(file, size);
    assert_eq!(got.len(), want.len(), "{}: {what}: length", D::NAME);
    if let Some(i) = got.iter().zip(&want).position(|(a, b)| a != b) {
        panic!("{}: {what}: first wrong byte at offset {i}", D::NAME);
    }
}

fn small_and_large_files<D: Driver>() {
    let setup = Setup::new(10);
    let mut d = D::start(setup);
    // LIT (in the cap), one segment, several segments, many segments.
    let sizes = [30u64, 20_000, 300_000, 2_000_000];
    for (file, &size) in sizes.iter().enumerate() {
        let up = d
            .upload(file, size)
            .unwrap_or_else(|e| panic!("{}: upload of {size} bytes: {e}", D::NAME));
        if size > 56 {
            assert!(
                up.holders.len() >= setup.encoding.happy,
                "{}: {size} bytes on only {:?}",
                D::NAME,
                up.holders
            );
        }
    }
    for (file, &size) in sizes.iter().enumerate() {
        let got = d
            .download(file)
            .unwrap_or_else(|e| panic!("{}: download of {size} bytes: {e}", D::NAME));
        assert_bytes::<D>("download", file, size, &got.bytes);
        assert_eq!(got.corrupt_shares, 0);
    }
}

fn both_codecs<D: Driver>() {
    let mut ran = 0;
    for codec in [CodecKind::Zfec, CodecKind::NovelPoly] {
        if !D::supports(codec) {
            eprintln!("{}: no {codec:?} uploads (see the driver's docs)", D::NAME);
            continue;
        }
        let mut setup = Setup::new(10);
        setup.codec = codec;
        let mut d = D::start(setup);
        d.upload(0, 250_000)
            .unwrap_or_else(|e| panic!("{}: {codec:?} upload: {e}", D::NAME));
        let got = d
            .download(0)
            .unwrap_or_else(|e| panic!("{}: {codec:?} download: {e}", D::NAME));
        assert_bytes::<D>("download", 0, 250_000, &got.bytes);
        ran += 1;
    }
    assert!(ran >= 1);
}

fn server_killed_mid_upload<D: Driver>() {
    let setup = Setup::new(10);
    let mut d = D::start(setup);
    let size = 1_500_000;
    let up = d.upload_killing(0, size, 4).unwrap_or_else(|e| {
        panic!(
            "{}: one dead server of ten must not fail the upload: {e}",
            D::NAME
        )
    });
    assert!(
        !up.holders.contains(&4),
        "{}: the killed server cannot hold committed shares: {:?}",
        D::NAME,
        up.holders
    );
    assert!(up.holders.len() >= setup.encoding.happy, "{:?}", up.holders);
    let got = d.download(0).expect("download with the server still down");
    assert_bytes::<D>("download", 0, size, &got.bytes);
    d.restart(4);
    let got = d.download(0).expect("download after the restart");
    assert_bytes::<D>("download after restart", 0, size, &got.bytes);
}

fn corrupted_shares_are_caught_and_never_returned<D: Driver>() {
    let mut d = D::start(Setup::new(10));
    let size = 40_000; // one segment: a download reads whole shares
    d.upload(0, size).expect("upload");
    // n - k = 7 servers get a bad share; the 3 good ones must be found.
    for server in 0..7 {
        d.corrupt(server, 0);
    }
    let got = d
        .download(0)
        .unwrap_or_else(|e| panic!("{}: 3 good shares remain: {e}", D::NAME));
    assert_bytes::<D>("download", 0, size, &got.bytes);
    assert!(
        got.corrupt_shares >= 1,
        "{}: corruption was not noticed",
        D::NAME
    );
}

fn a_full_server_is_worked_around<D: Driver>() {
    let setup = Setup::new(10);
    let mut d = D::start(setup);
    d.fill(0);
    d.fill(1);
    let size = 400_000;
    let up = d
        .upload(0, size)
        .unwrap_or_else(|e| panic!("{}: 8 servers with room, happy 7: {e}", D::NAME));
    assert!(
        !up.holders.contains(&0) && !up.holders.contains(&1),
        "{}: full servers got shares: {:?}",
        D::NAME,
        up.holders
    );
    assert!(up.holders.len() >= setup.encoding.happy);
    let got = d.download(0).expect("download");
    assert_bytes::<D>("download", 0, size, &got.bytes);
}

fn servers_restart_between_upload_and_download<D: Driver>() {
    let setup = Setup::new(10);
    let mut d = D::start(setup);
    let size = 700_000;
    d.upload(0, size).expect("upload");
    for s in 0..setup.servers {
        d.stop(s);
    }
    assert!(
        d.download(0).is_err(),
        "{}: nothing can be read with every server down",
        D::NAME
    );
    for s in 0..setup.servers {
        d.restart(s);
    }
    let got = d
        .download(0)
        .unwrap_or_else(|e| panic!("{}: shares must survive a restart: {e}", D::NAME));
    assert_bytes::<D>("download", 0, size, &got.bytes);
}

fn more_concurrent_operations_than_servers<D: Driver>() {
    let mut setup = Setup::new(5);
    setup.encoding.happy = 5;
    let mut d = D::start(setup);
    let size = |file: usize| 20_000 + 37_123 * file as u64;
    let uploads: Vec<Op> = (0..12)
        .map(|file| Op::Upload {
            file,
            size: size(file),
        })
        .collect();
    for (file, r) in d.concurrently(&uploads).into_iter().enumerate() {
        match r {
            OpResult::Uploaded(Ok(up)) => assert_eq!(up.holders.len(), 5, "file {file}"),
            other => panic!("{}: upload {file}: {other:?}", D::NAME),
        }
    }
    // Downloads of those files alongside uploads of new ones.
    let mixed: Vec<Op> = (0..12)
        .map(|i| {
            if i % 2 == 0 {
                Op::Download { file: i }
            } else {
                Op::Upload {
                    file: 12 + i,
                    size: size(12 + i),
                }
            }
        })
        .collect();
    for (i, r) in d.concurrently(&mixed).into_iter().enumerate() {
        match r {
            OpResult::Downloaded(Ok(got)) => {
                assert_bytes::<D>("concurrent download", i, size(i), &got.bytes)
            }
            OpResult::Uploaded(Ok(_)) => {}
            other => panic!("{}: operation {i}: {other:?}", D::NAME),
        }
    }
    for file in (1..12).step_by(2).map(|i| 12 + i) {
        let got = d.download(file).expect("download of a concurrent upload");
        assert_bytes::<D>("download", file, size(file), &got.bytes);
    }
}

fn mutable_files_create_update_and_read<D: Driver>() {
    let mut setup = Setup::new(5);
    setup.encoding.happy = 5;
    let mut d = D::start(setup);
    for (file, format) in [(0, MutableFormat::Sdmf), (1, MutableFormat::Mdmf)] {
        d.create_mutable(file, format, 5_000)
            .unwrap_or_else(|e| panic!("{}: create {format:?}: {e}", D::NAME));
        let got = d.read_mutable(file, None).expect("read after create");
        assert_eq!(
            got,
            mutable_contents(file, 0, 5_000),
            "{}: {format:?}",
            D::NAME
        );
        // A new version of another length, then the new bytes, whole and in part.
        d.update_mutable(file, 7_000)
            .unwrap_or_else(|e| panic!("{}: update {format:?}: {e}", D::NAME));
        let want = mutable_contents(file, 1, 7_000);
        let got = d.read_mutable(file, None).expect("read after update");
        assert_eq!(got, want, "{}: {format:?} after update", D::NAME);
        let part = d
            .read_mutable(file, Some((6_500, 1_000)))
            .expect("range read");
        assert_eq!(
            part,
            want[6_500..],
            "{}: {format:?} range cut at the end",
            D::NAME
        );
    }
}

fn mutable_files_survive_a_server_restart<D: Driver>() {
    let mut setup = Setup::new(5);
    setup.encoding.happy = 5;
    let mut d = D::start(setup);
    d.create_mutable(0, MutableFormat::Mdmf, 3_000)
        .expect("create");
    d.update_mutable(0, 3_000).expect("update");
    d.stop(2);
    // k of n shares are enough to read, and to know the newest version.
    let got = d.read_mutable(0, None).expect("read with a server down");
    assert_eq!(got, mutable_contents(0, 1, 3_000), "{}", D::NAME);
    d.restart(2);
    d.update_mutable(0, 4_000)
        .expect("update after the restart");
    let got = d.read_mutable(0, None).expect("read after the restart");
    assert_eq!(got, mutable_contents(0, 2, 4_000), "{}", D::NAME);
}

fn directories_make_link_list_rename_move_and_unlink<D: DirDriver>() {
    let mut setup = Setup::new(5);
    setup.encoding.happy = 5;
    let mut d = D::start(setup);
    d.upload(0, 50_000).expect("upload");
    let root = d.mkdir().expect("mkdir");
    assert_eq!(d.list(&root, &[]).expect("list"), Vec::<String>::new());
    d.mkdir_at(&root, &["a", "b"], true).expect("mkdir -p a/b");
    d.link_file(&root, &["a", "b", "f"], 0, false)
        .expect("link");
    assert_eq!(d.list(&root, &["a", "b"]).expect("list a/b"), ["f"]);
    // The link reaches the file: its cap downloads the uploaded bytes.
    let cap = d.lookup(&root, &["a", "b", "f"]).expect("lookup");
    assert_eq!(Some(cap), d.file_cap(0), "{}", D::NAME);
    let err = d
        .link_file(&root, &["a", "b", "f"], 0, false)
        .expect_err("an existing name is refused without replace");
    assert!(err.contains("exists"), "{}: {err}", D::NAME);
    d.move_link(&root, &["a", "b", "f"], &["a", "b", "g"])
        .expect("rename");
    d.move_link(&root, &["a", "b", "g"], &["a", "g"])
        .expect("move to the parent");
    assert_eq!(d.list(&root, &["a"]).expect("list a"), ["b", "g"]);
    assert_eq!(
        d.list(&root, &["a", "b"]).expect("list a/b"),
        Vec::<String>::new()
    );
    d.unlink(&root, &["a", "g"]).expect("unlink");
    assert_eq!(d.list(&root, &["a"]).expect("list a"), ["b"]);
    let err = d
        .unlink(&root, &["a", "g"])
        .expect_err("nothing left to unlink");
    assert!(err.contains("no child named \"g\""), "{}: {err}", D::NAME);
    let err = d
        .mkdir_at(&root, &["x", "y"], false)
        .expect_err("no parent x without -p");
    assert!(err.contains("does not exist"), "{}: {err}", D::NAME);
}

macro_rules! dir_suite {
    ($name:ident, $driver:ty) => {
        mod $name {
            use super::*;

            #[test]
            fn directories_make_link_list_rename_move_and_unlink() {
                super::directories_make_link_list_rename_move_and_unlink::<$driver>();
            }
        }
    };
}

dir_suite!(std_threads_dirs, StdDriver);
dir_suite!(smol_tasks_dirs, SmolDriver);
dir_suite!(sim_dirs, SimDriver);

macro_rules! suite {
    ($name:ident, $driver:ty) => {
        mod $name {
            use super::*;

            #[test]
            fn small_and_large_files() {
                super::small_and_large_files::<$driver>();
            }
            #[test]
            fn both_codecs() {
                super::both_codecs::<$driver>();
            }
            #[test]
            fn server_killed_mid_upload() {
                super::server_killed_mid_upload::<$driver>();
            }
            #[test]
            fn corrupted_shares_are_caught_and_never_returned() {
                super::corrupted_shares_are_caught_and_never_returned::<$driver>();
            }
            #[test]
            fn a_full_server_is_worked_around() {
                super::a_full_server_is_worked_around::<$driver>();
            }
            #[test]
            fn servers_restart_between_upload_and_download() {
                super::servers_restart_between_upload_and_download::<$driver>();
            }
            #[test]
            fn more_concurrent_operations_than_servers() {
                super::more_concurrent_operations_than_servers::<$driver>();
            }
            #[test]
            fn mutable_files_create_update_and_read() {
                super::mutable_files_create_update_and_read::<$driver>();
            }
            #[test]
            fn mutable_files_survive_a_server_restart() {
                super::mutable_files_survive_a_server_restart::<$driver>();
            }
        }
    };
}

suite!(std_threads, StdDriver);
suite!(smol_tasks, SmolDriver);
suite!(sim_virtual_time, SimDriver);
