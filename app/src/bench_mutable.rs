//! The mutable-file and directory rows of `lafs bench`: SDMF and MDMF create, warm update,
//! mkdir, adding a child to a 200-entry directory, and listing it, each with mean, p50 and p95
//! next to their targets and Tahoe 1.20's figures (docs/benchmarks.md).
//!
//! Keys come from a key pool filled before the timed loops start, as a long-running client's
//! pool would be, so creation never waits for RSA generation (the time to generate one key is
//! printed too).

use std::io::Write;
use std::time::{Duration, Instant};

use lafs_core::cap::Cap;
use lafs_core::crypto::key_source::{KeySource, KeySourceError};
use lafs_core::crypto::rsa_keys::MutableKey;
use lafs_core::dirnode::ops::LinkOptions;
use lafs_core::dirnode::{ChildCap, Overwrite};
use lafs_core::mutable::layout::MutableFormat;
use lafs_core::mutable::PublishConfig;

use crate::cli::CliError;
use crate::dir_paths;
use lafs_runtime_std::keypool::KeyPool;
use lafs_runtime_std::net::{GridClient, ReadSeek};

/// Iterations of each timed operation.
pub const ITERATIONS: usize = 40;
/// Children in the directory that add-child and list are measured on.
pub const DIR_ENTRIES: usize = 200;

/// Mean, p50 and p95 of a list of milliseconds.
#[derive(Clone, Copy, Debug)]
pub struct Summary {
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
}

/// Summarise `ms` (at least one sample).
pub fn summarize(mut ms: Vec<f64>) -> Summary {
    ms.sort_by(f64::total_cmp);
    let at = |p: f64| ms[((ms.len() as f64 - 1.0) * p).round() as usize];
    Summary {
        mean: ms.iter().sum::<f64>() / ms.len().max(1) as f64,
        p50: at(0.5),
        p95: at(0.95),
    }
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// One table row.
struct Row {
    measure: String,
    summary: Summary,
    round_trips: f64,
    target: Option<f64>,
    tahoe: &'static str,
}

/// Fill a pool of `capacity` keys and wait (up to a few minutes) until it is full.
fn warm_pool(capacity: usize) -> Result<(KeyPool, Duration), CliError> {
    let pool = KeyPool::rsa(capacity);
    let started = Instant::now();
    while pool.stats().ready < capacity {
        if started.elapsed() > Duration::from_secs(300) {
            return Err(CliError::Usage(
                "the key pool did not fill within 5 minutes".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let per_key = pool.stats().mean_generation_time().unwrap_or_default();
    Ok((pool, per_key))
}

/// Keys generated before the timed loops, handed out in turn. The pool that made them is shut
/// down first, so no key generation competes with the timed operations for the CPU (on a
/// 2-core machine a refilling pool takes both cores).
struct PreparedKeys(std::collections::VecDeque<MutableKey>);

impl KeySource for PreparedKeys {
    fn next_key(&mut self) -> Result<MutableKey, KeySourceError> {
        self.0.pop_front().ok_or(KeySourceError::Closed)
    }
}

fn key_err(e: KeySourceError) -> CliError {
    CliError::Usage(format!("key pool: {e}"))
}

/// Run the mutable and directory benchmarks against `client` and print their table.
pub fn run(client: &GridClient, out: &mut dyn Write) -> Result<(), CliError> {
    let io = |source| CliError::Io {
        path: "<stdout>".into(),
        source,
    };
    let n = ITERATIONS;
    // SDMF + MDMF creates, mkdirs, and the 200-entry directory.
    let (pool, per_key) = warm_pool(3 * n + 1)?;
    let mut keys = PreparedKeys(
        (0..3 * n + 1)
            .map(|_| pool.take().map_err(key_err))
            .collect::<Result<_, _>>()?,
    );
    pool.shutdown();
    let contents = vec![0x61u8; 1000];
    let mut rows = Vec::new();

    for (format, name, tahoe) in [
        (
            MutableFormat::Sdmf,
            "SDMF",
            "58 ms (Foolscap), 64 ms (HTTP)",
        ),
        (MutableFormat::Mdmf, "MDMF", "57 ms, 65 ms"),
    ] {
        let (mut ms, mut rts) = (Vec::new(), 0u64);
        for _ in 0..n {
            let t = Instant::now();
            let key = keys.next_key().map_err(key_err)?;
            let r =
                client.create_mutable(format, key, contents.clone(), PublishConfig::default())?;
            ms.push(ms_since(t));
            rts += u64::from(r.stats.round_trips);
        }
        rows.push(Row {
            measure: format!("{name} mutable create (1 kB), key from a warm pool"),
            summary: summarize(ms),
            round_trips: rts as f64 / n as f64,
            target: Some(3.0),
            tahoe,
        });
    }

    // Warm update: the map from the previous write.
    let key = keys.next_key().map_err(key_err)?;
    let made = client.create_mutable(
        MutableFormat::Sdmf,
        key,
        contents.clone(),
        PublishConfig::default(),
    )?;
    let mut map = made.map;
    let (mut ms, mut rts) = (Vec::new(), 0u64);
    for i in 0..n {
        let mut v = contents.clone();
        v[0] = i as u8;
        let t = Instant::now();
        let r = client.update_mutable(&made.cap, v, Some(map))?;
        ms.push(ms_since(t));
        rts += u64::from(r.stats.round_trips);
        map = r.map;
    }
    rows.push(Row {
        measure: "SDMF update (1 kB), warm map".into(),
        summary: summarize(ms),
        round_trips: rts as f64 / n as f64,
        target: None,
        tahoe: "",
    });

    // Each timed operation's duration and round trips.
    let timed = |f: &mut dyn FnMut(&GridClient) -> Result<(), CliError>| {
        let t = Instant::now();
        let (done, trips) = client.metered(|grid| f(grid));
        done.map(|()| (ms_since(t), trips))
    };
    let (mut ms, mut trips) = (Vec::new(), 0);
    for _ in 0..n.saturating_sub(1).max(1) {
        let (took, rt) = timed(&mut |g| Ok(g.mkdir(MutableFormat::Sdmf, &mut keys).map(drop)?))?;
        ms.push(took);
        trips += rt;
    }
    let made = ms.len() as f64;
    rows.push(Row {
        measure: "mkdir (SDMF)".into(),
        summary: summarize(ms),
        round_trips: trips as f64 / made,
        target: None,
        tahoe: "59 ms, 73 ms",
    });

    // A directory of 200 children (1 kB files), built through the same client.
    let dir = client.mkdir(MutableFormat::Sdmf, &mut keys)?;
    let mut files = Vec::with_capacity(DIR_ENTRIES + n);
    for i in 0..DIR_ENTRIES + n {
        let mut data = vec![0u8; 1000];
        data[..8].copy_from_slice(&(i as u64).to_le_bytes());
        files.push(client.upload_bytes(&data, &mut |_| {})?.cap);
    }
    let link = |grid: &GridClient, i: usize, cap: &Cap| -> Result<(), CliError> {
        let name = [format!("file-{i:04}.bin")];
        let child = ChildCap::Known(cap.clone());
        grid.link(
            &dir,
            &name,
            child,
            LinkOptions::default(),
            &mut dir_paths::spot_keys(),
        )?;
        Ok(())
    };
    for (i, cap) in files.iter().enumerate().take(DIR_ENTRIES) {
        link(client, i, cap)?;
    }
    let (mut ms, mut trips) = (Vec::new(), 0);
    for (i, cap) in files.iter().enumerate().skip(DIR_ENTRIES) {
        let (took, rt) = timed(&mut |g| link(g, i, cap))?;
        ms.push(took);
        trips += rt;
    }
    rows.push(Row {
        measure: format!("add a child to a {DIR_ENTRIES}-entry directory (link), cached map"),
        summary: summarize(ms),
        round_trips: trips as f64 / n as f64,
        target: Some(3.0),
        tahoe: "66 ms, 132 ms",
    });

    let entries = client.list_directory(&dir)?.len();
    let (mut ms, mut trips) = (Vec::new(), 0);
    for _ in 0..n {
        let (took, rt) = timed(&mut |g| {
            let listed = g.list_directory(&dir)?.len();
            if listed != entries {
                return Err(CliError::Usage(format!(
                    "bench: the directory listed {listed} entries, expected {entries}"
                )));
            }
            Ok(())
        })?;
        ms.push(took);
        trips += rt;
    }
    rows.push(Row {
        measure: format!("list a {entries}-entry directory"),
        summary: summarize(ms),
        round_trips: trips as f64 / n as f64,
        target: Some(1.0),
        tahoe: "33 ms, 48 ms (240 entries)",
    });

    // Upload a 1 kB file and link it (Tahoe's "upload 1 kB" into the directory).
    let (mut ms, mut trips) = (Vec::new(), 0);
    for i in 0..n {
        let mut data = vec![1u8; 1000];
        data[..8].copy_from_slice(&(i as u64).to_le_bytes());
        let (took, rt) = timed(&mut |g| {
            let name = [format!("upload-{i:04}.bin")];
            let source = (
                1000,
                &mut std::io::Cursor::new(data.clone()) as &mut dyn ReadSeek,
            );
            dir_paths::put_file(
                g,
                &dir,
                &name,
                source,
                Overwrite::OnlyFiles,
                false,
                &mut dir_paths::spot_keys(),
            )?;
            Ok(())
        })?;
        ms.push(took);
        trips += rt;
    }
    rows.push(Row {
        measure: format!("add a child to a {entries}-entry directory (upload 1 kB + link)"),
        summary: summarize(ms),
        round_trips: trips as f64 / n as f64,
        target: None,
        tahoe: "90 ms, 169 ms",
    });

    writeln!(out).map_err(io)?;
    writeln!(
        out,
        "mutable files and directories: {n} iterations each; RSA-2048 keys from a warm pool \
         (generating one took {:.0} ms on average); round trips per operation in brackets",
        per_key.as_secs_f64() * 1e3
    )
    .map_err(io)?;
    writeln!(out).map_err(io)?;
    writeln!(
        out,
        "| measure | lafs mean / p50 / p95 | target (p50) | | Tahoe 1.20 p50 (Foolscap, HTTP) |"
    )
    .map_err(io)?;
    writeln!(out, "|---|---|---|---|---|").map_err(io)?;
    for r in rows {
        let (target, met) = match r.target {
            Some(t) => (
                format!("<= {t} ms"),
                if r.summary.p50 <= t { "met" } else { "missed" },
            ),
            None => (String::new(), ""),
        };
        writeln!(
            out,
            "| {} | {:.2} / {:.2} / {:.2} ms [{:.1} RT] | {target} | {met} | {} |",
            r.measure, r.summary.mean, r.summary.p50, r.summary.p95, r.round_trips, r.tahoe
        )
        .map_err(io)?;
    }
    Ok(())
}
