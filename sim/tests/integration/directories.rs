//! The directory invariants, each shown to hold on real runs and to fire when broken: an
//! acknowledged link is never lost; concurrent writers of one directory end with every
//! acknowledged child linked; a retried edit never applies twice.

use lafs_core::cap::Cap;
use lafs_core::time::Duration;
use lafs_sim::dir_model::{DirModel, EditOutcome};
use lafs_sim::net::NetConfig;
use lafs_sim::{OpSpec, Plan, PlannedOp, Sim, Start, Violation};

use crate::common::*;

fn at(p: &mut Plan, ms_at: u64, client: usize, spec: OpSpec) {
    p.ops.push(PlannedOp {
        start: Start::At(ms(ms_at)),
        client,
        spec,
    });
}

fn link(dir: usize, name: u32, file: usize) -> OpSpec {
    OpSpec::DirLink { dir, name, file }
}

/// Three clients on five servers: files 0..3 uploaded and directory 0 made in the first
/// seconds.
fn three_writers() -> Plan {
    let mut p = plan(5, 3, vec![4_000, 5_000, 6_000]);
    p.net = NetConfig::uniform(3, 5, Duration::from_millis(10), 10_000_000, 50_000_000);
    for f in 0..3 {
        at(&mut p, 0, f, OpSpec::Upload { file: f });
    }
    at(&mut p, 0, 0, OpSpec::DirCreate { dir: 0 });
    p
}

fn lost_links(violations: &[Violation]) -> Vec<u32> {
    violations
        .iter()
        .filter_map(|v| match v {
            Violation::LostLink { name, .. } => Some(*name),
            _ => None,
        })
        .collect()
}

fn lit(b: u8) -> Cap {
    Cap::Lit { data: vec![b; 3] }
}

#[test]
fn an_acknowledged_link_is_never_lost_and_a_rollback_that_loses_it_is_caught() {
    let mut p = three_writers();
    at(&mut p, 3_000, 1, link(0, 1, 1));
    at(&mut p, 3_000, 2, OpSpec::DirLookup { dir: 0, name: 1 });
    at(&mut p, 6_000, 0, OpSpec::DirLookup { dir: 0, name: 1 });
    let clean = Sim::run(&p);
    assert_clean(&clean);
    assert_eq!(
        clean.lookups_checked, 1,
        "the lookup racing the link is not checked"
    );
    assert_eq!(clean.dir_listings_checked, 1);

    // Every server's disk goes back to how it was before the link: the link is gone.
    let mut sim = Sim::new(&p, false);
    sim.run_until(Some(ms(2_500)));
    let before: Vec<_> = (0..5).map(|s| sim.store(s).clone()).collect();
    sim.run_until(Some(ms(5_000)));
    for (s, store) in before.into_iter().enumerate() {
        *sim.store_mut(s) = store;
    }
    let report = sim.run_to_end();
    assert_eq!(
        lost_links(&report.violations),
        [1],
        "{:?}",
        report.violations
    );
    assert!(
        report
            .violations
            .iter()
            .any(|v| matches!(v, Violation::WrongLookup { name: 1, .. })),
        "the later lookup finds nothing: {:?}",
        report.violations
    );
}

#[test]
fn concurrent_writers_of_one_directory_end_with_every_acknowledged_child_linked() {
    let mut p = three_writers();
    // Warm caches first, so the racing edits publish at once and conflict.
    for c in 0..3 {
        at(&mut p, 2_000, c, OpSpec::DirList { dir: 0 });
    }
    for c in 0..3 {
        at(&mut p, 4_000 + c as u64, c, link(0, c as u32, c));
    }
    at(
        &mut p,
        6_000,
        1,
        OpSpec::DirMove {
            dir: 0,
            from: 0,
            to: 4,
        },
    );
    at(&mut p, 6_001, 2, OpSpec::DirUnlink { dir: 0, name: 1 });
    at(&mut p, 6_002, 0, link(0, 5, 2));
    let report = Sim::run(&p);
    assert_clean(&report);
    assert!(report.dir_retries >= 2, "retries: {}", report.dir_retries);
    assert_eq!(report.by_op["link"].ok, 4);
    assert_eq!((report.by_op["move"].ok, report.by_op["unlink"].ok), (1, 1));
    assert_eq!(report.dir_listings_checked, 1);

    // The check fires when one of the racing links is missing at the end.
    let mut model = DirModel::default();
    let edits: Vec<_> = (0..3).map(|n| model.start_edit(n)).collect();
    for (n, edit) in edits.iter().enumerate() {
        let linked = EditOutcome::Linked {
            cap: lit(n as u8),
            replaced: None,
        };
        assert_eq!(model.end_edit(n, 0, edit, &linked), None);
    }
    let listing = [(0, Some(lit(0))), (2, Some(lit(2)))].into();
    assert_eq!(lost_links(&model.check_listing(0, &listing)), [1]);
}

#[test]
fn a_retried_edit_that_applied_twice_is_caught() {
    let mut model = DirModel::default();
    let first = model.start_edit(7);
    let linked = EditOutcome::Linked {
        cap: lit(1),
        replaced: None,
    };
    assert_eq!(model.end_edit(0, 0, &first, &linked), None);
    let wrong = |v: Option<Violation>| matches!(v, Some(Violation::WrongEditOutcome { .. }));

    // A link whose retry did not recognise its landed attempt replaces its own cap.
    let mut m = DirModel::default();
    let e = m.start_edit(7);
    let twice = EditOutcome::Linked {
        cap: lit(1),
        replaced: Some(lit(1)),
    };
    assert!(wrong(m.end_edit(1, 0, &e, &twice)));

    // An unlink refused because its own earlier attempt already removed the name.
    let e = model.start_edit(7);
    assert!(wrong(model.end_edit(2, 0, &e, &EditOutcome::NoSuchChild)));
    // (That refusal left the name unknown: settle it again.)
    let e = model.start_edit(7);
    assert_eq!(model.end_edit(3, 0, &e, &linked), None);

    // A retried unlink that removed a link other than the one the name held.
    let e = model.start_edit(7);
    let other = EditOutcome::Removed { removed: lit(2) };
    assert!(wrong(model.end_edit(4, 0, &e, &other)));
    let e = model.start_edit(7);
    assert_eq!(model.end_edit(5, 0, &e, &linked), None);

    // A move whose retry moved a name that linked nothing.
    let mut m = DirModel::default();
    let from = m.start_edit(1);
    assert!(wrong(m.end_edit(5, 0, &from, &EditOutcome::MovedAway)));

    // The right outcomes pass, and an overlapping edit is not judged.
    let e = model.start_edit(7);
    let removed = EditOutcome::Removed { removed: lit(1) };
    assert_eq!(model.end_edit(6, 0, &e, &removed), None);
    let a = model.start_edit(7);
    let b = model.start_edit(7);
    assert_eq!(model.end_edit(7, 0, &a, &EditOutcome::NoSuchChild), None);
    assert_eq!(model.end_edit(8, 0, &b, &linked), None);
}
