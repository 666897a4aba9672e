//! The smol runtime over real TCP on 127.0.0.1: smol storage servers, the smol client, and both
//! mixed with lafs-runtime-std's client and server (same wire protocol, same clock convention).

use std::net::TcpListener;
use std::time::Duration;

use lafs_core::cap::Cap;
use lafs_core::placement::ServerId;
use lafs_core::server::{ServerConfig, StorageServer};
use lafs_core::store::MemoryShareStore;
use lafs_core::time::Duration as CoreDuration;
use lafs_runtime_smol::{ClientConfig, ClientError, GridClient, Server, ServerEntry};
use smol::Task;

fn server_id(i: usize) -> ServerId {
    let mut id = [0u8; 32];
    id[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
    id[8] = 0x3c;
    ServerId(id)
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

/// `n` smol storage servers on loopback, each a task on smol's global executor.
struct SmolGrid {
    tasks: Vec<Option<Task<std::io::Result<()>>>>,
    entries: Vec<ServerEntry>,
}

impl SmolGrid {
    fn start(n: usize) -> SmolGrid {
        let mut tasks = Vec::new();
        let mut entries = Vec::new();
        for i in 0..n {
            let server = Server::bind(
                "127.0.0.1:0".parse().expect("addr"),
                StorageServer::new(
                    MemoryShareStore::new(1 << 40, 1 << 40),
                    ServerConfig::default(),
                ),
            )
            .expect("bind");
            entries.push(ServerEntry {
                id: server_id(i),
                addr: server.local_addr().expect("addr"),
                permutation_seed: server_id(i).0.to_vec(),
            });
            tasks.push(Some(smol::spawn(server.run())));
        }
        SmolGrid { tasks, entries }
    }

    /// Kill server `i`: its future is cancelled, closing its listener and connections.
    async fn kill(&mut self, i: usize) {
        if let Some(task) = self.tasks[i].take() {
            task.cancel().await;
        }
    }
}

fn config() -> ClientConfig {
    let mut c = ClientConfig::new(
        b"convergence secret for smol tests".to_vec(),
        b"lease secret for smol tests......".to_vec(),
    );
    c.upload.params.max_segment_size = 64 * 1024;
    c.download.segment_size_guess = 64 * 1024;
    c.upload.request_timeout = CoreDuration::from_secs(5);
    c.download.request_timeout = CoreDuration::from_secs(5);
    c.connect_timeout = Duration::from_secs(2);
    c
}

#[test]
fn small_and_multi_segment_files_round_trip_with_the_promised_round_trips() {
    smol::block_on(async {
        let grid = SmolGrid::start(10);
        let client = GridClient::new(grid.entries.clone(), config());
        for (len, max_up_rt, max_down_rt) in [(30usize, 0, 0), (20_000, 1, 1), (300_000, 2, 6)] {
            let bytes = data(len, 1);
            let up = client.upload_bytes(&bytes).await.expect("upload");
            assert_eq!(up.size, len as u64);
            if len > 56 {
                assert!(matches!(up.cap, Cap::ChkRead { .. }));
                assert_eq!(up.happiness, 10, "ten servers, ten shares");
            }
            assert!(up.stats.round_trips <= max_up_rt, "{len}: {:?}", up.stats);
            let (got, down) = client.download_bytes(&up.cap).await.expect("download");
            assert!(got == bytes, "{len} bytes came back different");
            assert!(
                down.stats.round_trips <= max_down_rt,
                "{len}: {:?}",
                down.stats
            );
        }
        assert_eq!(client.connections_opened(), 10, "connections are reused");
    });
}

#[test]
fn concurrent_operations_share_connections_and_each_gets_its_own_bytes() {
    smol::block_on(async {
        let grid = SmolGrid::start(5);
        let mut c = config();
        c.upload.params.happy = 5;
        let client = std::sync::Arc::new(GridClient::new(grid.entries.clone(), c));
        let tasks: Vec<_> = (0..12u8)
            .map(|i| {
                let client = std::sync::Arc::clone(&client);
                smol::spawn(async move {
                    let bytes = data(10_000 + 7_919 * usize::from(i), i);
                    let cap = client.upload_bytes(&bytes).await.expect("upload").cap;
                    let (got, _) = client.download_bytes(&cap).await.expect("download");
                    assert!(got == bytes, "operation {i} got another file's bytes");
                })
            })
            .collect();
        for t in tasks {
            t.await;
        }
        assert!(client.connections_opened() <= 12 * 5);
    });
}

#[test]
fn a_download_survives_losing_n_minus_k_servers_and_fails_cleanly_past_that() {
    smol::block_on(async {
        let mut grid = SmolGrid::start(10);
        let client = GridClient::new(grid.entries.clone(), config());
        let bytes = data(150_000, 3);
        let cap = client.upload_bytes(&bytes).await.expect("upload").cap;
        for i in 0..7 {
            grid.kill(i).await;
        }
        let (got, report) = client.download_bytes(&cap).await.expect("3 of 10 remain");
        assert!(got == bytes);
        assert!(report.server_problems.len() <= 7);
        grid.kill(7).await;
        let err = client
            .download_bytes(&cap)
            .await
            .expect_err("2 of 10 remain");
        assert!(matches!(err, ClientError::Download(_)), "{err}");
    });
}

#[test]
fn no_reachable_server_is_reported_as_unreachable() {
    smol::block_on(async {
        let mut grid = SmolGrid::start(3);
        for i in 0..3 {
            grid.kill(i).await;
        }
        let mut c = config();
        c.upload.params.happy = 3;
        let client = GridClient::new(grid.entries.clone(), c);
        let err = client
            .upload_bytes(&data(5_000, 4))
            .await
            .expect_err("nobody listens");
        assert!(
            matches!(err, ClientError::Unreachable(ref l) if l.len() == 3),
            "{err}"
        );
    });
}

#[test]
fn smol_and_std_runtimes_interoperate_both_ways() {
    // std servers, smol client
    let mut std_servers = Vec::new();
    let mut entries = Vec::new();
    for i in 0..4 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let handle = lafs_runtime_std::net::serve(
            listener,
            StorageServer::new(
                MemoryShareStore::new(1 << 40, 1 << 40),
                ServerConfig::default(),
            ),
        );
        entries.push(ServerEntry {
            id: server_id(i),
            addr: handle.local_addr(),
            permutation_seed: server_id(i).0.to_vec(),
        });
        std_servers.push(handle);
    }
    let mut c = config();
    c.upload.params.happy = 4;
    let bytes = data(200_000, 5);
    let cap = smol::block_on(async {
        let client = GridClient::new(entries.clone(), c.clone());
        client.upload_bytes(&bytes).await.expect("smol upload").cap
    });
    // ...read back by the std client
    let std_entries: Vec<_> = entries
        .iter()
        .map(|e| lafs_runtime_std::net::ServerEntry {
            id: e.id,
            addr: e.addr,
            permutation_seed: e.permutation_seed.clone(),
        })
        .collect();
    let mut std_config = lafs_runtime_std::net::ClientConfig::new(
        c.convergence_secret.clone(),
        c.lease_secret.clone(),
    );
    std_config.upload = c.upload;
    std_config.download = c.download;
    let std_client =
        lafs_runtime_std::net::GridClient::new(std_entries.clone(), std_config.clone());
    let mut out = Vec::new();
    std_client
        .download(&cap, &mut out, &mut |_| {})
        .expect("std download");
    assert!(out == bytes);

    // smol servers, std client
    let grid = SmolGrid::start(4);
    let std_entries: Vec<_> = grid
        .entries
        .iter()
        .map(|e| lafs_runtime_std::net::ServerEntry {
            id: e.id,
            addr: e.addr,
            permutation_seed: e.permutation_seed.clone(),
        })
        .collect();
    let std_client = lafs_runtime_std::net::GridClient::new(std_entries, std_config);
    let report = std_client
        .upload_bytes(&bytes, &mut |_| {})
        .expect("std upload to smol servers");
    assert_eq!(report.cap, cap, "same secret, same params: same cap");
    let mut out = Vec::new();
    std_client
        .download(&report.cap, &mut out, &mut |_| {})
        .expect("std download from smol servers");
    assert!(out == bytes);
}

#[test]
fn ranged_downloads_fetch_one_segment_and_refuse_ranges_past_the_end() {
    smol::block_on(async {
        let grid = SmolGrid::start(10);
        let client = GridClient::new(grid.entries.clone(), config());
        let bytes = data(300_000, 4);
        let cap = client.upload_bytes(&bytes).await.expect("upload").cap;
        let mut part = Vec::new();
        let r = client
            .download_range(&cap, 150_000, 1_000, &mut part)
            .await
            .expect("range");
        assert_eq!(part, bytes[150_000..151_000]);
        assert_eq!(r.stats.round_trips, 1, "one segment, one round trip");
        let mut tail = Vec::new();
        let r = client
            .download_range(&cap, 299_500, 10_000, &mut tail)
            .await
            .expect("a range past the end is cut there");
        assert_eq!((tail.as_slice(), r.size), (&bytes[299_500..], 500));
        let err = client
            .download_range(&cap, 300_001, 1, &mut Vec::new())
            .await
            .expect_err("starts past the end");
        assert!(matches!(err, ClientError::Download(_)), "{err}");
    });
}

#[test]
fn mutable_files_are_created_updated_modified_in_place_and_read() {
    use lafs_core::crypto::key_source::KeySource;
    use lafs_core::mutable::layout::MutableFormat;
    use lafs_core::mutable::PublishConfig;
    smol::block_on(async {
        let grid = SmolGrid::start(10);
        let client = GridClient::new(grid.entries.clone(), config());
        let mut keys = lafs_sim_keys();
        let v1 = data(200_000, 5);
        let created = client
            .create_mutable(
                MutableFormat::Mdmf,
                keys.next_key().expect("key"),
                v1.clone(),
                PublishConfig::default(),
            )
            .await
            .expect("create");
        assert_eq!(created.stats.round_trips, 1, "a create is one round trip");
        let (got, read) = client.read_mutable(&created.cap, None).await.expect("read");
        assert_eq!((got == v1, read.seqnum), (true, 1));
        // In place: 10 bytes in the middle; the rest is untouched.
        let modified = client
            .modify_mutable(&created.cap, 100_000, vec![0xee; 10], Some(read.map))
            .await
            .expect("modify");
        let mut want = v1.clone();
        want[100_000..100_010].fill(0xee);
        let (got, read) = client.read_mutable(&created.cap, None).await.expect("read");
        assert!(got == want, "the in-place write changed only its 10 bytes");
        assert_eq!(read.seqnum, modified.seqnum);
        let v3 = data(1_000, 6);
        client
            .update_mutable(&created.cap, v3.clone(), Some(read.map))
            .await
            .expect("update");
        let (got, _) = client
            .read_mutable(&created.cap, Some((990, 100)))
            .await
            .expect("range read");
        assert_eq!(got, v3[990..]);
        let err = client
            .read_mutable(&Cap::Lit { data: vec![1] }, None)
            .await
            .expect_err("not a mutable cap");
        assert!(matches!(err, ClientError::NotMutableFile(_)), "{err}");
    });
}

#[test]
fn grid_status_reports_every_server_and_one_that_is_gone() {
    use lafs_core::server_status::ServerState;
    smol::block_on(async {
        let mut grid = SmolGrid::start(4);
        let mut c = config();
        c.upload.params.happy = 4;
        let client = GridClient::new(grid.entries.clone(), c);
        client.upload_bytes(&data(20_000, 7)).await.expect("upload");
        grid.kill(3).await;
        let status = client
            .grid_status(Duration::from_secs(2))
            .await
            .expect("status");
        assert_eq!(status.servers.len(), 4);
        let answered = status
            .servers
            .iter()
            .filter(|(_, s)| matches!(s, ServerState::Answered(_)))
            .count();
        assert_eq!(answered, 3, "{:?}", status.servers);
    });
}

/// The repository's fixed RSA test keys (no key generation in tests).
fn lafs_sim_keys() -> lafs_core::crypto::key_source::FixtureKeys {
    let pem = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/data/rsa-2048-fixture-keys.pem"
    ))
    .expect("fixture keys");
    lafs_core::crypto::key_source::FixtureKeys::from_pem_bundle(&pem)
}
