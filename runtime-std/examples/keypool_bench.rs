//! How long RSA-2048 generation takes on this machine, how long `take()` takes from a warm key
//! pool (the cost mutable-file creation pays instead), and what a share signature costs to make
//! (every mutable write) and to check (every mutable read).
//!
//! `cargo run -p lafs-runtime-std --release --example keypool_bench [GENERATIONS] [TAKES]`

use std::time::{Duration, Instant};

use lafs_core::crypto::drbg::Drbg;
use lafs_core::crypto::key_source::generate_key;
use lafs_core::mutable::share::{sign, verify_signature};
use lafs_runtime_std::keypool::{KeyPool, DEFAULT_CAPACITY};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index]
}

fn summary(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    println!(
        "{name:<28} n={:<4} mean={:>10.3?} p50={:>10.3?} p90={:>10.3?} min={:>10.3?} max={:>10.3?}",
        samples.len(),
        mean,
        percentile(&samples, 0.5),
        percentile(&samples, 0.9),
        samples[0],
        samples[samples.len() - 1],
    );
}

fn wait_full(pool: &KeyPool) {
    while pool.stats().ready < DEFAULT_CAPACITY {
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let generations: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(30);
    let takes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);

    let gen_times = (0..generations)
        .map(|_| {
            let started = Instant::now();
            generate_key(&mut getrandom::SysRng).expect("RSA generation");
            started.elapsed()
        })
        .collect();
    summary("RSA-2048 generation", gen_times);

    // RSA-PSS over a signed prefix of the size SDMF/MDMF shares carry.
    let key = generate_key(&mut getrandom::SysRng).expect("RSA generation");
    let message = [0x5au8; 123];
    let mut rng = Drbg::new([9; 32]);
    let mut signature = Vec::new();
    let sign_times = (0..100)
        .map(|_| {
            let started = Instant::now();
            signature = sign(&key, &message, &mut rng);
            started.elapsed()
        })
        .collect();
    summary("RSA-PSS sign", sign_times);
    let verify_times = (0..100)
        .map(|_| {
            let started = Instant::now();
            verify_signature(key.public_spki_der(), &signature, &message).expect("verifies");
            started.elapsed()
        })
        .collect();
    summary("RSA-PSS verify (with DER)", verify_times);

    let pool = KeyPool::rsa(DEFAULT_CAPACITY);
    let mut warm = Vec::new();
    for _ in 0..takes {
        wait_full(&pool);
        let started = Instant::now();
        pool.take().expect("take");
        warm.push(started.elapsed());
    }
    summary("take() from a warm pool", warm);

    // A burst twice the pool's size: the first takes are instant, the rest wait for the producer.
    wait_full(&pool);
    let burst = (0..2 * DEFAULT_CAPACITY)
        .map(|_| {
            let started = Instant::now();
            pool.take().expect("take");
            started.elapsed()
        })
        .collect();
    summary("take() in a burst of 2x cap", burst);

    let stats = pool.stats();
    println!(
        "pool: generated={} taken={} waits={} mean generation={:?}",
        stats.generated,
        stats.taken,
        stats.waits,
        stats.mean_generation_time().unwrap_or_default()
    );
    pool.shutdown();
}
