//! A pool of RSA keys generated ahead of time, so creating a mutable file never waits for RSA.
//!
//! Background producer threads keep up to `capacity` keys ready and start the next one as soon as
//! a key is taken. [`PoolHandle::take`] returns a ready key at once, or blocks until a producer
//! finishes one. Every generated key is moved out of the pool exactly once, so no key is ever
//! handed out twice. Dropping the [`Pool`] shuts it down: waiting takers get
//! [`KeySourceError::Closed`] and the threads exit after the key each is working on (RSA
//! generation cannot be interrupted); [`Pool::shutdown`] also waits for that.
//!
//! How many producers run: [`KeyPool::rsa`] starts one per core
//! (`std::thread::available_parallelism`, at most `capacity`). The first producer tops the pool
//! up whenever it is not full; the others, helpers, start a key only while the pool is *low*
//! (fewer than half of `capacity` ready, so an empty pool always counts), which is when takers
//! are waiting or soon will be. So a burst that drains the pool is refilled on every core, and a
//! pool that lost one key is topped up by one thread without taking the other cores. Keys being
//! made count towards `capacity`, so the pool never holds more than `capacity`. If any producer
//! fails (or panics) all of them stop after their current key; takers get the ready keys, then
//! the error.
//!
//! The hand-off is generic over what is produced so the loom tests (which model every
//! interleaving with `--cfg loom`) run it with a cheap counter instead of RSA.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use lafs_core::crypto::key_source::{generate_key, KeySource, KeySourceError};
use lafs_core::crypto::rsa_keys::MutableKey;

use crate::sync::{thread, Arc, Condvar, Mutex, MutexGuard};

/// Keys kept ready when nothing else is configured: enough for a burst of directory creations
/// while the producers catch up.
pub const DEFAULT_CAPACITY: usize = 4;

/// What a pool has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Items the producers have made.
    pub generated: u64,
    /// Items handed out.
    pub taken: u64,
    /// Takes that found the pool empty and had to wait.
    pub waits: u64,
    /// Items ready now.
    pub ready: usize,
    /// Items being made now (at most one per producer thread).
    pub generating: usize,
    /// Time spent generating, summed over the producers (so it can exceed wall-clock time).
    pub generation_time: Duration,
}

impl PoolStats {
    /// Mean time to generate one item, once one was made.
    pub fn mean_generation_time(&self) -> Option<Duration> {
        let n = u32::try_from(self.generated).ok().filter(|&n| n > 0)?;
        Some(self.generation_time / n)
    }
}

struct State<T> {
    ready: VecDeque<T>,
    capacity: usize,
    /// Items the producers are making now; they count towards `capacity`.
    generating: usize,
    /// Set by the owner: stop producing, fail takers.
    shutdown: bool,
    /// Producer threads not yet exited; each decrements it as it exits, however it exits.
    producers_alive: usize,
    /// Why a producer stopped, if one failed; every producer stops then.
    failure: Option<String>,
    stats: PoolStats,
}

impl<T> State<T> {
    /// Whether a producer should start an item now: the first producer whenever the pool has
    /// room, a helper only while it is low (under half full).
    fn should_start(&self, helper: bool) -> bool {
        let room = self.ready.len() + self.generating < self.capacity;
        let low = self.ready.len() * 2 < self.capacity;
        room && (!helper || low)
    }

    fn stopping(&self) -> bool {
        self.shutdown || self.failure.is_some()
    }
}

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Signalled when an item arrives or a producer stops.
    item_ready: Condvar,
    /// Signalled (to all producers: each waits for its own condition) when an item is taken or
    /// the producers should stop.
    space_free: Condvar,
}

impl<T> Shared<T> {
    /// The state; a panic while holding the lock leaves it consistent (every update is a single
    /// step), so a poisoned lock is used as is.
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Owns the producer threads; dropping it shuts the pool down.
pub struct Pool<T: Send + 'static> {
    handle: PoolHandle<T>,
    producers: Vec<thread::JoinHandle<()>>,
}

/// A clonable way to take from a pool, usable from any thread.
pub struct PoolHandle<T: Send + 'static> {
    shared: Arc<Shared<T>>,
}

impl<T: Send + 'static> Clone for PoolHandle<T> {
    fn clone(&self) -> Self {
        PoolHandle {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T: Send + 'static> std::fmt::Debug for Pool<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("producers", &self.producers.len())
            .field("stats", &self.handle.stats())
            .finish()
    }
}

impl<T: Send + 'static> std::fmt::Debug for PoolHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolHandle")
            .field("stats", &self.stats())
            .finish()
    }
}

/// The RSA key pool of the std runtime.
pub type KeyPool = Pool<MutableKey>;

impl Pool<MutableKey> {
    /// A pool of `capacity` (at least 1) 2048-bit, e = 65537 keys made from OS randomness, with
    /// one producer per core (at most `capacity`; see the module doc for when the extra ones
    /// run).
    pub fn rsa(capacity: usize) -> KeyPool {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let producers = cores.min(capacity).max(1);
        Pool::spawn_each(
            capacity,
            (0..producers)
                .map(|_| || generate_key(&mut getrandom::SysRng).map_err(|e| e.to_string()))
                .collect(),
        )
    }
}

/// Decrements `producers_alive` and wakes takers when a producer thread ends, including by
/// panic, so a taker never waits on producers that are gone. A panic stops the other producers
/// as a failure does.
struct ProducerExit<T>(Arc<Shared<T>>);

impl<T> Drop for ProducerExit<T> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.producers_alive -= 1;
        if std::thread::panicking() && state.failure.is_none() {
            state.failure = Some("the generator panicked".into());
        }
        drop(state);
        self.0.item_ready.notify_all();
        self.0.space_free.notify_all();
    }
}

impl<T: Send + 'static> Pool<T> {
    /// Start a pool of `capacity` items (at least 1) made by `generate` on one background
    /// thread. If `generate` fails the producer stops and takers get the error.
    pub fn spawn<G>(capacity: usize, generate: G) -> Pool<T>
    where
        G: FnMut() -> Result<T, String> + Send + 'static,
    {
        Pool::spawn_each(capacity, vec![generate])
    }

    /// Start a pool of `capacity` items (at least 1) with one producer thread per generator: the
    /// first tops the pool up, the others help only while it is under half full (module doc). If
    /// any generator fails, every producer stops and takers get the error once the ready items
    /// are gone. An empty `generators` is a pool that only ever says `Closed`.
    pub fn spawn_each<G>(capacity: usize, generators: Vec<G>) -> Pool<T>
    where
        G: FnMut() -> Result<T, String> + Send + 'static,
    {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                ready: VecDeque::new(),
                capacity: capacity.max(1),
                generating: 0,
                shutdown: false,
                producers_alive: generators.len(),
                failure: None,
                stats: PoolStats::default(),
            }),
            item_ready: Condvar::new(),
            space_free: Condvar::new(),
        });
        let producers = generators
            .into_iter()
            .enumerate()
            .map(|(index, generate)| {
                let for_thread = Arc::clone(&shared);
                thread::spawn(move || produce(for_thread, index > 0, generate))
            })
            .collect();
        Pool {
            handle: PoolHandle { shared },
            producers,
        }
    }

    /// A handle for other threads; it fails with `Closed` once the pool is dropped.
    pub fn handle(&self) -> PoolHandle<T> {
        self.handle.clone()
    }

    /// See [`PoolHandle::take`].
    pub fn take(&self) -> Result<T, KeySourceError> {
        self.handle.take()
    }

    /// See [`PoolHandle::try_take`].
    pub fn try_take(&self) -> Option<T> {
        self.handle.try_take()
    }

    pub fn stats(&self) -> PoolStats {
        self.handle.stats()
    }

    /// Stop the pool and wait for the producer threads to exit (at most one generation each,
    /// side by side).
    pub fn shutdown(mut self) {
        self.signal_shutdown();
        for producer in self.producers.drain(..) {
            // A panic in a generator was already turned into a failure for takers.
            let _ = producer.join();
        }
    }

    fn signal_shutdown(&self) {
        let shared = &self.handle.shared;
        let mut state = shared.lock();
        state.shutdown = true;
        // Ready items are dropped here: nobody can take them any more.
        state.ready.clear();
        drop(state);
        shared.item_ready.notify_all();
        shared.space_free.notify_all();
    }
}

impl<T: Send + 'static> Drop for Pool<T> {
    /// Signals shutdown without joining, so dropping never waits for an RSA generation; the
    /// threads exit as soon as their current items are done.
    fn drop(&mut self) {
        self.signal_shutdown();
    }
}

/// One producer thread: waits until it should start an item (`helper`: only while the pool is
/// low), makes it outside the lock, and adds it unless the pool stopped meanwhile.
fn produce<T, G>(shared: Arc<Shared<T>>, helper: bool, mut generate: G)
where
    G: FnMut() -> Result<T, String>,
{
    let _exit = ProducerExit(Arc::clone(&shared));
    loop {
        let mut state = shared.lock();
        while !state.stopping() && !state.should_start(helper) {
            state = shared
                .space_free
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
        if state.stopping() {
            return;
        }
        state.generating += 1;
        drop(state);

        let started = Instant::now();
        let made = generate();
        let spent = started.elapsed();

        let mut state = shared.lock();
        state.generating -= 1;
        match made {
            Ok(item) if !state.shutdown => {
                state.ready.push_back(item);
                state.stats.generated += 1;
                state.stats.generation_time += spent;
                let failed = state.failure.is_some();
                drop(state);
                shared.item_ready.notify_one();
                if failed {
                    return;
                }
            }
            Ok(_) => return,
            Err(message) => {
                // The first failure is the one takers see; the other producers stop too.
                state.failure.get_or_insert(message);
                drop(state);
                shared.space_free.notify_all();
                return;
            }
        }
    }
}

impl<T: Send + 'static> PoolHandle<T> {
    /// A ready item, or wait for a producer to make one. Fails with `Closed` once the pool is
    /// shut down and with `Generation` if a producer failed and no ready item is left.
    pub fn take(&self) -> Result<T, KeySourceError> {
        let shared = &*self.shared;
        let mut state = shared.lock();
        let mut waited = false;
        loop {
            if state.shutdown {
                return Err(KeySourceError::Closed);
            }
            if let Some(item) = state.ready.pop_front() {
                state.stats.taken += 1;
                drop(state);
                // Each producer waits for its own condition (helpers for a low pool), so all
                // are woken to check.
                shared.space_free.notify_all();
                return Ok(item);
            }
            if state.producers_alive == 0 {
                return Err(match &state.failure {
                    Some(message) => KeySourceError::Generation(message.clone()),
                    None => KeySourceError::Closed,
                });
            }
            if !waited {
                state.stats.waits += 1;
                waited = true;
            }
            state = shared
                .item_ready
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// A ready item if there is one, without waiting.
    pub fn try_take(&self) -> Option<T> {
        let mut state = self.shared.lock();
        if state.shutdown {
            return None;
        }
        let item = state.ready.pop_front()?;
        state.stats.taken += 1;
        drop(state);
        self.shared.space_free.notify_all();
        Some(item)
    }

    pub fn stats(&self) -> PoolStats {
        let state = self.shared.lock();
        PoolStats {
            ready: state.ready.len(),
            generating: state.generating,
            ..state.stats
        }
    }
}

impl KeySource for PoolHandle<MutableKey> {
    fn next_key(&mut self) -> Result<MutableKey, KeySourceError> {
        self.take()
    }

    /// A ready key, or `None` if the pool is empty (the caller may generate its own).
    fn ready_key(&mut self) -> Option<Result<MutableKey, KeySourceError>> {
        self.try_take().map(Ok)
    }
}

impl KeySource for Pool<MutableKey> {
    fn next_key(&mut self) -> Result<MutableKey, KeySourceError> {
        self.take()
    }

    fn ready_key(&mut self) -> Option<Result<MutableKey, KeySourceError>> {
        self.try_take().map(Ok)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    /// A counter generator, slow enough that takers really wait.
    fn counting(delay: Duration) -> impl FnMut() -> Result<u64, String> + Send + 'static {
        let next = std::sync::Arc::new(AtomicU64::new(0));
        move || {
            std::thread::sleep(delay);
            Ok(next.fetch_add(1, Ordering::SeqCst))
        }
    }

    fn wait_until_full<T: Send + 'static>(pool: &Pool<T>, capacity: usize) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while pool.stats().ready < capacity {
            assert!(Instant::now() < deadline, "pool never filled");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn items_come_out_once_each_and_in_order() {
        let pool = Pool::spawn(3, counting(Duration::from_millis(1)));
        let taken: Vec<u64> = (0..20).map(|_| pool.take().unwrap()).collect();
        assert_eq!(taken, (0..20).collect::<Vec<_>>());
        let stats = pool.stats();
        assert_eq!(stats.taken, 20);
        assert!(stats.generated >= 20);
    }

    /// Four threads take 50 items each from `pool`; no item is handed out twice.
    fn takes_on_four_threads_never_share_an_item(pool: &Pool<u64>) {
        let takers: Vec<_> = (0..4)
            .map(|_| {
                let handle = pool.handle();
                std::thread::spawn(move || (0..50).map(|_| handle.take().unwrap()).collect())
            })
            .collect();
        let mut all = BTreeSet::new();
        for taker in takers {
            let items: Vec<u64> = taker.join().unwrap();
            for item in items {
                assert!(all.insert(item), "item {item} handed out twice");
            }
        }
        assert_eq!(all.len(), 200);
    }

    #[test]
    fn takers_on_many_threads_never_share_an_item() {
        let pool = Pool::spawn(2, counting(Duration::ZERO));
        takes_on_four_threads_never_share_an_item(&pool);
    }

    #[test]
    fn the_pool_refills_to_capacity_and_stops_there() {
        let pool = Pool::spawn(4, counting(Duration::ZERO));
        wait_until_full(&pool, 4);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(pool.stats().generated, 4, "producer ran past capacity");
        pool.take().unwrap();
        wait_until_full(&pool, 4);
        assert_eq!(pool.stats().generated, 5);
    }

    #[test]
    fn dropping_the_pool_fails_a_waiting_taker_and_later_takes() {
        // A producer that never finishes while the test runs, and exits when it ends.
        let (test_over, stuck) = std::sync::mpsc::channel::<()>();
        let pool = Pool::spawn(1, move || -> Result<u64, String> {
            let _ = stuck.recv();
            Err("test over".into())
        });
        let handle = pool.handle();
        let waiter = {
            let handle = handle.clone();
            std::thread::spawn(move || handle.take())
        };
        while pool.stats().waits == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(pool);
        assert_eq!(waiter.join().unwrap(), Err(KeySourceError::Closed));
        assert_eq!(handle.take(), Err(KeySourceError::Closed));
        drop(test_over);
    }

    #[test]
    fn shutdown_joins_the_producer_promptly() {
        let pool = Pool::spawn(2, counting(Duration::from_millis(10)));
        wait_until_full(&pool, 2);
        let started = Instant::now();
        pool.shutdown();
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_failing_generator_is_reported_to_takers() {
        let mut calls = 0;
        let pool = Pool::spawn(2, move || {
            calls += 1;
            if calls == 1 {
                Ok(1u8)
            } else {
                Err("entropy source unavailable".to_string())
            }
        });
        assert_eq!(pool.take(), Ok(1));
        assert_eq!(
            pool.take(),
            Err(KeySourceError::Generation(
                "entropy source unavailable".into()
            ))
        );
    }

    #[test]
    fn a_panicking_generator_does_not_strand_takers() {
        let pool: Pool<u8> = Pool::spawn(1, || panic!("generator bug"));
        assert!(matches!(pool.take(), Err(KeySourceError::Generation(_))));
    }

    /// A generator that sleeps `delay` per item and records in `busy`/`most_busy` how many
    /// generations ran at once; producer `id`'s items are `id * 1_000_000 + n`.
    fn tracked(
        id: u64,
        delay: Duration,
        busy: &std::sync::Arc<AtomicU64>,
        most_busy: &std::sync::Arc<AtomicU64>,
    ) -> impl FnMut() -> Result<u64, String> + Send + 'static {
        let (busy, most_busy) = (busy.clone(), most_busy.clone());
        let mut next = id * 1_000_000;
        move || {
            let now = busy.fetch_add(1, Ordering::SeqCst) + 1;
            most_busy.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(delay);
            busy.fetch_sub(1, Ordering::SeqCst);
            next += 1;
            Ok(next)
        }
    }

    #[test]
    fn a_low_pool_refills_on_every_producer_and_a_top_up_uses_one() {
        let busy = std::sync::Arc::new(AtomicU64::new(0));
        let most_busy = std::sync::Arc::new(AtomicU64::new(0));
        let delay = Duration::from_millis(100);
        let pool = Pool::spawn_each(
            4,
            (0..2)
                .map(|id| tracked(id, delay, &busy, &most_busy))
                .collect(),
        );
        // Empty at start: both producers work.
        wait_until_full(&pool, 4);
        assert_eq!(
            most_busy.load(Ordering::SeqCst),
            2,
            "the empty pool had one producer"
        );
        assert_eq!(pool.stats().generated, 4);

        // One key taken leaves 3 of 4 ready, not low: only the first producer tops up.
        most_busy.store(0, Ordering::SeqCst);
        pool.take().unwrap();
        wait_until_full(&pool, 4);
        assert_eq!(most_busy.load(Ordering::SeqCst), 1, "a top-up used helpers");

        // Three taken leaves 1 of 4: low, so both work again.
        most_busy.store(0, Ordering::SeqCst);
        for _ in 0..3 {
            pool.take().unwrap();
        }
        wait_until_full(&pool, 4);
        assert_eq!(
            most_busy.load(Ordering::SeqCst),
            2,
            "the low pool had one producer"
        );
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(pool.stats().generated, 8, "producers ran past capacity");
        pool.shutdown();
    }

    #[test]
    fn many_producers_hand_out_each_item_once_and_stay_within_capacity() {
        let busy = std::sync::Arc::new(AtomicU64::new(0));
        let most_busy = std::sync::Arc::new(AtomicU64::new(0));
        let pool = Pool::spawn_each(
            3,
            (0..4)
                .map(|id| tracked(id, Duration::ZERO, &busy, &most_busy))
                .collect(),
        );
        wait_until_full(&pool, 3);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(pool.stats().generated, 3, "producers ran past capacity");
        assert!(most_busy.load(Ordering::SeqCst) <= 3);

        takes_on_four_threads_never_share_an_item(&pool);
        let started = Instant::now();
        pool.shutdown();
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn one_failing_producer_stops_them_all_and_takers_get_its_error() {
        let slow_but_fine = move || -> Result<u64, String> {
            std::thread::sleep(Duration::from_millis(20));
            Ok(1)
        };
        let failing = || -> Result<u64, String> { Err("entropy source unavailable".into()) };
        let generators: Vec<Box<dyn FnMut() -> Result<u64, String> + Send>> =
            vec![Box::new(failing), Box::new(slow_but_fine)];
        let pool = Pool::spawn_each(2, generators);
        // The helper may finish one item it had started; after that, only the error.
        let mut items = 0;
        let error = loop {
            match pool.take() {
                Ok(_) => items += 1,
                Err(e) => break e,
            }
        };
        assert!(items <= 1, "producers kept going after a failure");
        assert_eq!(
            error,
            KeySourceError::Generation("entropy source unavailable".into())
        );
        pool.shutdown();
    }

    #[test]
    fn rsa_pool_gives_distinct_valid_keys_and_a_warm_take_is_fast() {
        let mut pool = KeyPool::rsa(2);
        wait_until_full(&pool, 2);
        let mut fingerprints = BTreeSet::new();
        let mut fastest_warm_take = Duration::MAX;
        for _ in 0..2 {
            let started = Instant::now();
            let key = pool.next_key().unwrap();
            fastest_warm_take = fastest_warm_take.min(started.elapsed());
            assert!(
                fingerprints.insert(key.fingerprint()),
                "key handed out twice"
            );
        }
        assert_eq!(pool.stats().waits, 0, "a take from a full pool waited");
        // Generation takes hundreds of milliseconds here; a warm take is a queue pop. The
        // fastest of two keeps a busy shared machine from failing the test.
        assert!(
            fastest_warm_take < Duration::from_millis(1),
            "warm take took {fastest_warm_take:?}"
        );
        for _ in 0..2 {
            let key = pool.take().unwrap();
            assert!(
                fingerprints.insert(key.fingerprint()),
                "key handed out twice"
            );
        }
        let stats = pool.stats();
        assert_eq!(stats.taken, 4);
        assert!(stats.generated >= 4);
        assert!(stats.mean_generation_time().is_some());
        pool.shutdown();
    }
}
