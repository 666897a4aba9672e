//! A pool of RSA keys generated ahead of time, so creating a mutable file never waits for RSA.
//!
//! One background thread keeps up to `capacity` keys ready and starts the next one as soon as a
//! key is taken. [`PoolHandle::take`] returns a ready key at once, or blocks until the producer
//! finishes one. Every generated key is moved out of the pool exactly once, so no key is ever
//! handed out twice. Dropping the [`Pool`] shuts it down: waiting takers get
//! [`KeySourceError::Closed`] and the thread exits after the key it is working on (RSA
//! generation cannot be interrupted); [`Pool::shutdown`] also waits for that.
//!
//! The hand-off is generic over what is produced so the loom tests (which model every
//! interleaving with `--cfg loom`) run it with a cheap counter instead of RSA.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use lafs_core::crypto::key_source::{generate_key, KeySource, KeySourceError};
use lafs_core::crypto::rsa_keys::MutableKey;

use crate::sync::{thread, Arc, Condvar, Mutex, MutexGuard};

/// Keys kept ready when nothing else is configured: enough for a burst of directory creations
/// while the producer catches up.
pub const DEFAULT_CAPACITY: usize = 4;

/// What a pool has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Items the producer has made.
    pub generated: u64,
    /// Items handed out.
    pub taken: u64,
    /// Takes that found the pool empty and had to wait.
    pub waits: u64,
    /// Items ready now.
    pub ready: usize,
    /// Time spent generating, summed.
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
    /// Set by the owner: stop producing, fail takers.
    shutdown: bool,
    /// Cleared by the producer thread as it exits, however it exits.
    producer_alive: bool,
    /// Why the producer stopped, if it failed.
    failure: Option<String>,
    stats: PoolStats,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Signalled when an item arrives or the producer stops.
    item_ready: Condvar,
    /// Signalled when space frees up or shutdown is asked.
    space_free: Condvar,
}

impl<T> Shared<T> {
    /// The state; a panic while holding the lock leaves it consistent (every update is a single
    /// step), so a poisoned lock is used as is.
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Owns the producer thread; dropping it shuts the pool down.
pub struct Pool<T: Send + 'static> {
    handle: PoolHandle<T>,
    producer: Option<thread::JoinHandle<()>>,
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
    /// A pool of `capacity` (at least 1) 2048-bit, e = 65537 keys made from OS randomness.
    pub fn rsa(capacity: usize) -> KeyPool {
        Pool::spawn(capacity, || {
            generate_key(&mut getrandom::SysRng).map_err(|e| e.to_string())
        })
    }
}

/// Clears `producer_alive` and wakes takers when the producer thread ends, including by panic,
/// so a taker never waits on a producer that is gone.
struct ProducerExit<T>(Arc<Shared<T>>);

impl<T> Drop for ProducerExit<T> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.producer_alive = false;
        if std::thread::panicking() && state.failure.is_none() {
            state.failure = Some("the generator panicked".into());
        }
        drop(state);
        self.0.item_ready.notify_all();
    }
}

impl<T: Send + 'static> Pool<T> {
    /// Start a pool of `capacity` items (at least 1) made by `generate` on one background
    /// thread. If `generate` fails the producer stops and takers get the error.
    pub fn spawn<G>(capacity: usize, generate: G) -> Pool<T>
    where
        G: FnMut() -> Result<T, String> + Send + 'static,
    {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                ready: VecDeque::new(),
                capacity: capacity.max(1),
                shutdown: false,
                producer_alive: true,
                failure: None,
                stats: PoolStats::default(),
            }),
            item_ready: Condvar::new(),
            space_free: Condvar::new(),
        });
        let for_thread = Arc::clone(&shared);
        let producer = thread::spawn(move || produce(for_thread, generate));
        Pool {
            handle: PoolHandle { shared },
            producer: Some(producer),
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

    /// Stop the pool and wait for the producer thread to exit (at most one generation).
    pub fn shutdown(mut self) {
        self.signal_shutdown();
        if let Some(producer) = self.producer.take() {
            // A panic in the generator was already turned into a failure for takers.
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
    /// thread exits as soon as its current item is done.
    fn drop(&mut self) {
        self.signal_shutdown();
    }
}

fn produce<T, G>(shared: Arc<Shared<T>>, mut generate: G)
where
    G: FnMut() -> Result<T, String>,
{
    let _exit = ProducerExit(Arc::clone(&shared));
    loop {
        let mut state = shared.lock();
        while state.ready.len() >= state.capacity && !state.shutdown {
            state = shared
                .space_free
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
        if state.shutdown {
            return;
        }
        drop(state);

        let started = Instant::now();
        let made = generate();
        let spent = started.elapsed();

        let mut state = shared.lock();
        match made {
            Ok(item) if !state.shutdown => {
                state.ready.push_back(item);
                state.stats.generated += 1;
                state.stats.generation_time += spent;
                drop(state);
                shared.item_ready.notify_one();
            }
            Ok(_) => return,
            Err(message) => {
                state.failure = Some(message);
                return;
            }
        }
    }
}

impl<T: Send + 'static> PoolHandle<T> {
    /// A ready item, or wait for the producer to make one. Fails with `Closed` once the pool is
    /// shut down and with `Generation` if the producer failed.
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
                shared.space_free.notify_one();
                return Ok(item);
            }
            if !state.producer_alive {
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
        self.shared.space_free.notify_one();
        Some(item)
    }

    pub fn stats(&self) -> PoolStats {
        let state = self.shared.lock();
        PoolStats {
            ready: state.ready.len(),
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

    #[test]
    fn takers_on_many_threads_never_share_an_item() {
        let pool = Pool::spawn(2, counting(Duration::ZERO));
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
