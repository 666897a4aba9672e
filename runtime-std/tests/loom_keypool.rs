//! Model-checks the key pool's hand-off between its producer thread and takers with loom, using
//! a counter instead of RSA so every interleaving (up to the preemption bound) runs in seconds.
//!
//! Run: `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p lafs-runtime-std
//! --release loom`. Without `--cfg loom` this file compiles to nothing.

#![cfg(loom)]

use lafs_core::crypto::key_source::KeySourceError;
use lafs_runtime_std::keypool::Pool;
use lafs_runtime_std::sync::{thread, Arc, Condvar, Mutex};

/// Few enough preemptions to finish quickly; the bugs a pool can have (lost wake-ups, double
/// hand-out) show up within two or three.
fn model<F: Fn() + Sync + Send + 'static>(body: F) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(body);
}

/// Hands out 0, 1, 2, ... ; state is local to the producer thread, so no sync is needed.
fn counter() -> impl FnMut() -> Result<u64, String> + Send + 'static {
    let mut next = 0;
    move || {
        next += 1;
        Ok(next - 1)
    }
}

/// Producer `id`'s items: 100 * id, 100 * id + 1, ... (disjoint across producers).
fn counter_from(id: u64) -> impl FnMut() -> Result<u64, String> + Send + 'static {
    let mut next = 100 * id;
    move || {
        next += 1;
        Ok(next - 1)
    }
}

#[test]
fn loom_no_item_is_handed_out_twice() {
    model(|| {
        let pool = Pool::spawn(1, counter());
        let handle = pool.handle();
        let other = thread::spawn(move || handle.take());
        let mine = pool
            .take()
            .expect("the producer is alive, so take succeeds");
        let theirs = other.join().unwrap().expect("take succeeds");
        assert_ne!(mine, theirs);
        assert_eq!(pool.stats().taken, 2);
        pool.shutdown();
    });
}

#[test]
fn loom_take_does_not_block_forever_while_the_producer_lives() {
    // Capacity 1 and three takes: the taker must wait for refills, and each refill must wake it
    // (a lost wake-up is a deadlock, which loom reports).
    model(|| {
        let pool = Pool::spawn(1, counter());
        let got: Vec<u64> = (0..3).map(|_| pool.take().unwrap()).collect();
        assert_eq!(got, [0, 1, 2]);
        pool.shutdown();
    });
}

#[test]
fn loom_shutdown_while_a_taker_waits_fails_the_taker() {
    model(|| {
        // The generator is stuck until the gate opens, which happens only after shutdown, so
        // the taker can only ever see an empty pool.
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let generator_gate = Arc::clone(&gate);
        let pool = Pool::spawn(1, move || {
            let (open, cond) = &*generator_gate;
            let mut open = open.lock().unwrap();
            while !*open {
                open = cond.wait(open).unwrap();
            }
            Ok(7u64)
        });
        let handle = pool.handle();
        let taker = thread::spawn(move || handle.take());
        drop(pool);
        {
            let (open, cond) = &*gate;
            *open.lock().unwrap() = true;
            cond.notify_all();
        }
        assert_eq!(taker.join().unwrap(), Err(KeySourceError::Closed));
    });
}

#[test]
fn loom_a_failing_producer_wakes_a_waiting_taker() {
    model(|| {
        let pool: Pool<u64> = Pool::spawn(1, || Err("no entropy".to_string()));
        let handle = pool.handle();
        let taker = thread::spawn(move || handle.take());
        assert_eq!(
            taker.join().unwrap(),
            Err(KeySourceError::Generation("no entropy".into()))
        );
        pool.shutdown();
    });
}

#[test]
fn loom_two_producers_never_hand_out_an_item_twice() {
    // Capacity 2 from empty: the helper runs beside the first producer, both pushing while the
    // owner takes. (A second taker thread too is past what loom explores in minutes; takers
    // racing each other are covered above with one producer.)
    model(|| {
        let pool = Pool::spawn_each(2, vec![counter_from(0), counter_from(1)]);
        let first = pool
            .take()
            .expect("the producers are alive, so take succeeds");
        let second = pool.take().expect("take succeeds");
        assert_ne!(first, second);
        let stats = pool.stats();
        assert_eq!(stats.taken, 2);
        assert!(stats.ready + stats.generating <= 2);
        pool.shutdown();
    });
}

#[test]
fn loom_two_producers_refill_without_a_lost_wake_up() {
    // Capacity 1: one item at a time, by whichever producer gets there first, so the second
    // take waits for a refill; neither producer may miss the wake-up or be stranded at shutdown.
    model(|| {
        let pool = Pool::spawn_each(1, vec![counter_from(0), counter_from(1)]);
        let got: Vec<u64> = (0..2).map(|_| pool.take().unwrap()).collect();
        assert_ne!(got[0], got[1]);
        pool.shutdown();
    });
}
