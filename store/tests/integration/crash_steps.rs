//! A mutable write interrupted at every step (the process dies there, as under `kill -9` or a
//! power cut) leaves each share at exactly its old or its new version, for every way a share
//! can change place: a row rewritten, a file replaced, a row grown into a file, a new file, a
//! file deleted.

use std::path::Path;
use std::process::{Command, Stdio};

use lafs_core::store::{MutableShareChange, ShareStore, StoreError};
use lafs_core::wire::{DataVector, StorageIndex};
use lafs_store::disk_store::{DiskShareStore, DiskStoreConfig, CRASH_AT_ENV, MUTABLE_WRITE_STEPS};

use crate::support::ENABLER;

const DIR_ENV: &str = "LAFS_CRASH_STEPS_DIR";
const SCENARIO_ENV: &str = "LAFS_CRASH_STEPS_SCENARIO";
const VERSION_ENV: &str = "LAFS_CRASH_STEPS_VERSION";
const SI: StorageIndex = [9; 16];
/// How each scenario keeps shares, and each share's data at versions 0 and 1 (`None`: absent).
struct Scenario {
    name: &'static str,
    small_share_max: u64,
    shares: &'static [(u16, Option<usize>, Option<usize>)],
}

const SCENARIOS: [Scenario; 5] = [
    Scenario {
        name: "rows rewritten",
        small_share_max: 64 << 10,
        shares: &[(0, Some(1000), Some(1000)), (1, Some(1000), Some(1200))],
    },
    Scenario {
        name: "files replaced",
        small_share_max: 0,
        shares: &[(0, Some(1000), Some(1000)), (1, Some(1000), Some(900))],
    },
    Scenario {
        name: "a row grown into a file",
        small_share_max: 2000,
        shares: &[(0, Some(1000), Some(3000)), (1, Some(1000), Some(1000))],
    },
    Scenario {
        name: "a new file",
        small_share_max: 0,
        shares: &[(0, Some(1000), Some(1000)), (2, None, Some(5000))],
    },
    Scenario {
        name: "a file deleted",
        small_share_max: 0,
        shares: &[(0, Some(1000), Some(1000)), (1, Some(1000), None)],
    },
];

fn data(shnum: u16, version: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8) ^ (shnum as u8).wrapping_mul(17) ^ version.wrapping_mul(0x5b))
        .collect()
}

fn open(dir: &Path, scenario: &Scenario) -> DiskShareStore {
    DiskShareStore::open(
        dir,
        DiskStoreConfig {
            reserved_space: 0,
            small_share_max: scenario.small_share_max,
            ..DiskStoreConfig::default()
        },
    )
    .unwrap()
}

/// Writes version `version` of every share of the scenario in one write, as a server would
/// (and waits for it to be durable, as a server does before answering).
fn write_version(s: &mut DiskShareStore, scenario: &Scenario, version: u8) {
    let bodies: Vec<(u16, Option<Vec<u8>>)> = scenario
        .shares
        .iter()
        .map(|&(shnum, v0, v1)| {
            let len = if version == 0 { v0 } else { v1 };
            (shnum, len.map(|len| data(shnum, version, len)))
        })
        .collect();
    let writes: Vec<(u16, Vec<DataVector>, Option<u64>)> = bodies
        .into_iter()
        // A share absent at version 0 is not written then; absent at version 1, deleted.
        .filter(|(_, body)| body.is_some() || version == 1)
        .map(|(shnum, body)| match body {
            Some(body) => {
                let len = body.len() as u64;
                (
                    shnum,
                    vec![DataVector {
                        offset: 0,
                        data: body,
                    }],
                    Some(len),
                )
            }
            None => (shnum, Vec::new(), Some(0)),
        })
        .collect();
    let changes: Vec<MutableShareChange<'_>> = writes
        .iter()
        .map(|(shnum, w, new_length)| MutableShareChange {
            shnum: *shnum,
            writes: w,
            new_length: *new_length,
        })
        .collect();
    s.write_mutable_shares(&SI, &ENABLER, &changes).unwrap();
    if let Some(ticket) = s.durability_ticket() {
        ticket.wait().unwrap();
    }
}

/// Not a test on its own: run as a child process by
/// `a_mutable_write_killed_at_any_step_leaves_each_share_old_or_new`.
#[test]
fn crash_steps_child_writes_a_version() {
    let (Some(dir), Some(name), Some(version)) = (
        std::env::var_os(DIR_ENV),
        std::env::var(SCENARIO_ENV).ok(),
        std::env::var(VERSION_ENV).ok(),
    ) else {
        return;
    };
    let scenario = SCENARIOS.iter().find(|s| s.name == name).unwrap();
    let mut s = open(Path::new(&dir), scenario);
    write_version(&mut s, scenario, version.parse().unwrap());
}

fn run_child(dir: &Path, scenario: &Scenario, version: u8, crash_at: Option<&str>) -> bool {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "crash_steps::crash_steps_child_writes_a_version",
        "--exact",
        "--test-threads=1",
    ])
    .env(DIR_ENV, dir)
    .env(SCENARIO_ENV, scenario.name)
    .env(VERSION_ENV, version.to_string())
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    if let Some(step) = crash_at {
        cmd.env(CRASH_AT_ENV, step);
    }
    cmd.status().unwrap().success()
}

#[test]
fn a_mutable_write_killed_at_any_step_leaves_each_share_old_or_new() {
    let mut reached = 0;
    for scenario in &SCENARIOS {
        for step in MUTABLE_WRITE_STEPS {
            let dir = tempfile::tempdir().unwrap();
            assert!(
                run_child(dir.path(), scenario, 0, None),
                "{}: setup",
                scenario.name
            );
            let finished = run_child(dir.path(), scenario, 1, Some(step));
            reached += usize::from(!finished);
            let s = open(dir.path(), scenario);
            for &(shnum, v0, v1) in scenario.shares {
                let got = match s.read_mutable_share(&SI, shnum, 0, u64::MAX) {
                    Ok(bytes) => Some(bytes),
                    Err(StoreError::NotFound) => None,
                    Err(e) => panic!("{} at {step}: share {shnum}: {e}", scenario.name),
                };
                let old = v0.map(|len| data(shnum, 0, len));
                let new = v1.map(|len| data(shnum, 1, len));
                assert!(
                    got == old || got == new,
                    "{} killed at {step}: share {shnum} is neither version ({:?} bytes)",
                    scenario.name,
                    got.as_ref().map(Vec::len)
                );
                if finished {
                    assert_eq!(got, new, "{}: a finished write landed", scenario.name);
                }
            }
            assert_eq!(
                std::fs::read_dir(dir.path().join("shares/incoming"))
                    .unwrap()
                    .count(),
                0
            );
        }
    }
    // Every scenario passes the first three steps; rows-written and rows-durable are reached
    // where rows or new files are written.
    assert!(
        reached >= SCENARIOS.len() * 3,
        "only {reached} crashes happened"
    );
    eprintln!("{reached} writes killed part way, every share old or new");
}
