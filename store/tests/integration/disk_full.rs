//! A disk that fills up under the store: on a small tmpfs of its own (root only; skipped with a
//! message elsewhere), writes the disk refuses part way fail with `NoSpace`, change nothing, and
//! succeed once space returns.

use std::path::{Path, PathBuf};
use std::process::Command;

use lafs_core::store::{MutableShareChange, ShareStore, StoreError};
use lafs_core::wire::{DataVector, StorageIndex};
use lafs_store::disk_store::{DiskShareStore, DiskStoreConfig};

use crate::support::{lease, mwrite, ENABLER};

/// A tmpfs mounted on a fresh directory, unmounted when dropped.
struct SmallDisk {
    _dir: tempfile::TempDir,
    mount: PathBuf,
}

impl SmallDisk {
    fn mount(bytes: u64) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().ok()?;
        let mount = dir.path().join("disk");
        std::fs::create_dir(&mount).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(&mount)
            .output()
            .is_ok_and(|o| o.status.success());
        ok.then_some(SmallDisk { _dir: dir, mount })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mount).status();
    }
}

/// Fills the filesystem at `dir` with a file until writes fail; the file, to delete later.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0xaa; 4096];
    while std::io::Write::write_all(&mut f, &chunk).is_ok() {}
    // Byte by byte for the last partial block.
    while std::io::Write::write_all(&mut f, &[0]).is_ok() {}
    path
}

fn check(small_share_max: u64) {
    let Some(disk) = SmallDisk::mount(8 << 20) else {
        eprintln!(
            "SKIPPED: cannot mount a tmpfs here (needs root); the disk-full test did not run"
        );
        return;
    };
    let config = DiskStoreConfig {
        reserved_space: 0,
        small_share_max,
        ..DiskStoreConfig::default()
    };
    let dir = disk.mount.join("store");
    let mut s = DiskShareStore::open(&dir, config.clone()).unwrap();
    let slot: StorageIndex = [3; 16];
    mwrite(&mut s, &slot, 0, 0, &[1; 20_000]).unwrap();
    mwrite(&mut s, &slot, 1, 0, &[1; 20_000]).unwrap();
    // A batch of uploads admitted while there was room.
    let si: StorageIndex = [4; 16];
    for shnum in 0..3u16 {
        s.create_share(&si, shnum, 30_000, lease()).unwrap();
        s.write_share(&si, shnum, 0, &[shnum as u8; 30_000])
            .unwrap();
    }
    if let Some(t) = s.durability_ticket() {
        t.wait().unwrap();
    }
    let filler = fill(&disk.mount);

    // Disk full: the whole batch is refused, nothing of it is visible.
    let batch = [(0u16, 30_000u64), (1, 30_000), (2, 30_000)];
    for r in s.commit_shares(&si, &batch) {
        assert!(matches!(r, Err(StoreError::NoSpace { .. })), "{r:?}");
    }
    assert_eq!(s.list_shares(&si).unwrap(), vec![]);
    // A mutable edit of both shares is refused and both keep their old version.
    let bodies = [vec![2u8; 40_000], vec![2u8; 40_000]];
    let w: Vec<[DataVector; 1]> = bodies
        .iter()
        .map(|b| {
            [DataVector {
                offset: 0,
                data: b.clone(),
            }]
        })
        .collect();
    let edit = [
        MutableShareChange {
            shnum: 0,
            writes: &w[0],
            new_length: None,
        },
        MutableShareChange {
            shnum: 1,
            writes: &w[1],
            new_length: None,
        },
    ];
    let r = s.write_mutable_shares(&slot, &ENABLER, &edit);
    assert!(matches!(r, Err(StoreError::NoSpace { .. })), "{r:?}");
    for shnum in 0..2 {
        assert_eq!(
            s.read_mutable_share(&slot, shnum, 0, 99_999).unwrap(),
            [1; 20_000]
        );
    }
    // No half-written next version left behind (the uploads still wait in incoming/).
    let drafts = std::fs::read_dir(dir.join("shares/incoming"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "mutable")
        })
        .count();
    assert_eq!(drafts, 0);

    // Space returns: the same writes succeed.
    std::fs::remove_file(filler).unwrap();
    for r in s.commit_shares(&si, &batch) {
        r.unwrap();
    }
    s.write_mutable_shares(&slot, &ENABLER, &edit).unwrap();
    if let Some(t) = s.durability_ticket() {
        t.wait().unwrap();
    }
    drop(s);
    let s = DiskShareStore::open(&dir, config).unwrap();
    assert_eq!(s.read_share(&si, 2, 0, 99_999).unwrap(), [2; 30_000]);
    assert_eq!(
        s.read_mutable_share(&slot, 1, 0, 99_999).unwrap(),
        [2; 40_000]
    );
}

#[test]
fn a_full_disk_refuses_row_writes_whole_and_recovers() {
    check(64 << 10);
}

#[test]
fn a_full_disk_refuses_file_writes_whole_and_recovers() {
    check(0);
}
