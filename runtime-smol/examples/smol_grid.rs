//! Embedding lafs in your own smol program: start five storage servers as tasks, upload a file
//! through a `GridClient`, read it back, then stop two servers and read it again.
//!
//! Run: `cargo run -p lafs-runtime-smol --example smol_grid`

use std::sync::Arc;

use lafs_core::placement::ServerId;
use lafs_core::server::{ServerConfig, StorageServer};
use lafs_core::store::MemoryShareStore;
use lafs_runtime_smol::{ClientConfig, GridClient, Server, ServerEntry};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    smol::block_on(async {
        // Servers: each is one future; here each runs as a task on smol's global executor.
        let mut servers = Vec::new();
        let mut entries = Vec::new();
        for i in 0..5u8 {
            let store = MemoryShareStore::new(1 << 30, 1 << 30);
            let server = Server::bind(
                "127.0.0.1:0".parse()?,
                StorageServer::new(store, ServerConfig::default()),
            )?;
            let id = ServerId([i + 1; 32]);
            entries.push(ServerEntry {
                id,
                addr: server.local_addr()?,
                permutation_seed: id.0.to_vec(),
            });
            servers.push(Some(smol::spawn(server.run())));
        }

        // Client: 3-of-5 shares, every server must hold one.
        let mut config = ClientConfig::new(b"example convergence".to_vec(), b"lease".to_vec());
        config.upload.params.n = 5;
        config.upload.params.happy = 5;
        let client = Arc::new(GridClient::new(entries, config));

        let file: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let up = client.upload_bytes(&file).await?;
        println!(
            "uploaded {} bytes in {:?} ({} round trips): {}",
            up.size, up.elapsed, up.stats.round_trips, up.cap
        );

        // Operations are ordinary futures: run two downloads at once.
        let a = smol::spawn({
            let (client, cap) = (Arc::clone(&client), up.cap.clone());
            async move { client.download_bytes(&cap).await }
        });
        let (b, _) = client.download_bytes(&up.cap).await?;
        let (a, report) = a.await?;
        assert!(
            a == file && b == file,
            "downloads must return the uploaded bytes"
        );
        println!("downloaded twice concurrently, {:?} each", report.elapsed);

        // Dropping (cancelling) a server's task is a crash: connections close at once.
        for s in servers.iter_mut().take(2) {
            if let Some(task) = s.take() {
                task.cancel().await;
            }
        }
        let (again, report) = client.download_bytes(&up.cap).await?;
        assert!(again == file);
        println!(
            "with 2 of 5 servers down: downloaded again, {} server problem(s) worked around",
            report.server_problems.len()
        );
        Ok(())
    })
}
