//! Mutable files over real sockets and the disk store: create, read, update warm and cold,
//! concurrent writers, and a restart between write and read.

use lafs::local_grid::LocalGrid;
use lafs_core::crypto::key_source::{FixtureKeys, KeySource};
use lafs_core::mutable::layout::MutableFormat;
use lafs_core::mutable::{PublishConfig, PublishError};
use lafs_runtime_std::net::{ClientConfig, ClientError};

fn keys() -> FixtureKeys {
    let pem = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/data/rsa-2048-fixture-keys.pem"
    ))
    .unwrap();
    FixtureKeys::from_pem_bundle(&pem)
}

fn config() -> ClientConfig {
    ClientConfig::new(b"convergence".to_vec(), b"lease secret".to_vec())
}

#[test]
fn create_read_update_over_tcp_and_disk() {
    let dir = tempfile::tempdir().unwrap();
    let mut grid = LocalGrid::start(dir.path(), 5).unwrap();
    let client = grid.client(config());
    let mut keys = keys();
    for format in [MutableFormat::Sdmf, MutableFormat::Mdmf] {
        let v1: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let made = client
            .create_mutable(
                format,
                keys.next_key().unwrap(),
                v1.clone(),
                PublishConfig::default(),
            )
            .unwrap();
        assert_eq!(made.stats.round_trips, 1, "{format:?} create");
        assert_eq!(made.seqnum, 1);
        let (got, read) = client.read_mutable(&made.cap, None).unwrap();
        assert_eq!(got, v1);
        // Warm update: one round trip.
        let up = client
            .update_mutable(&made.cap, b"version two".to_vec(), Some(read.map))
            .unwrap();
        assert_eq!(up.stats.round_trips, 1);
        assert_eq!(up.seqnum, 2);
        // Cold update from a second client.
        let other = grid.client(config());
        let up3 = other
            .update_mutable(&made.cap, b"version three".to_vec(), None)
            .unwrap();
        assert_eq!(up3.seqnum, 3);
        // The first client's map is now stale: its write is refused, nothing is mixed.
        let stale = client.update_mutable(&made.cap, b"stale".to_vec(), Some(up.map));
        assert!(
            matches!(
                stale,
                Err(ClientError::Publish(PublishError::Conflict { .. }))
            ),
            "{stale:?}"
        );
        let ro = made.cap.read_only().unwrap();
        assert_eq!(client.read_mutable(&ro, None).unwrap().0, b"version three");
    }
    grid.shutdown();
}

#[test]
fn mutable_files_survive_a_grid_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut grid = LocalGrid::start(dir.path(), 4).unwrap();
    let made = grid
        .client(config())
        .create_mutable(
            MutableFormat::Sdmf,
            keys().next_key().unwrap(),
            b"durable".to_vec(),
            PublishConfig::default(),
        )
        .unwrap();
    grid.shutdown();
    drop(grid);
    let mut grid = LocalGrid::start(dir.path(), 4).unwrap();
    let client = grid.client(config());
    assert_eq!(client.read_mutable(&made.cap, None).unwrap().0, b"durable");
    client
        .update_mutable(&made.cap, b"changed after restart".to_vec(), None)
        .unwrap();
    assert_eq!(
        client.read_mutable(&made.cap, None).unwrap().0,
        b"changed after restart"
    );
    grid.shutdown();
}
