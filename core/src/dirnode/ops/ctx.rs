//! What every directory operation carries: the grid it runs on ([`DirConfig`]), its running
//! sub-operations, the directory states it will hand back to the cache, its progress reports and
//! its source of backoff jitter.

use std::collections::VecDeque;

use crate::crypto::drbg::Drbg;
use crate::immutable::download::DownloadConfig;
use crate::mutable::{PublishConfig, RetrieveConfig};
use crate::placement::ServerDescriptor;
use crate::time::{Duration, Instant};

use super::cache::{DirCache, Memo};
use super::progress::DirProgress;
use super::subops::SubOps;

/// The grid a directory operation runs on and how its sub-operations behave.
#[derive(Clone, Debug)]
pub struct DirConfig {
    pub servers: Vec<ServerDescriptor>,
    /// The node's lease secret (every write renews this client's leases).
    pub lease_secret: Vec<u8>,
    pub publish: PublishConfig,
    pub retrieve: RetrieveConfig,
    pub download: DownloadConfig,
}

impl DirConfig {
    /// Default encodings and timeouts over `servers`.
    pub fn new(servers: Vec<ServerDescriptor>, lease_secret: Vec<u8>) -> DirConfig {
        DirConfig {
            servers,
            lease_secret,
            publish: PublishConfig::default(),
            retrieve: RetrieveConfig::default(),
            download: DownloadConfig::default(),
        }
    }
}

/// The working context of one directory operation.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub subs: SubOps,
    pub memo: Memo,
    pub progress: VecDeque<DirProgress>,
    /// Backoff jitter, from the caller's seed.
    pub jitter: Drbg,
}

impl Ctx {
    pub fn new(config: DirConfig, seed: [u8; 32]) -> Ctx {
        let mut root = Drbg::new(seed);
        Ctx {
            subs: SubOps::new(config, root.fork(b"dirnode ops: publish seeds")),
            memo: Memo::default(),
            progress: VecDeque::new(),
            jitter: root.fork(b"dirnode ops: backoff jitter"),
        }
    }

    /// Borrow the signatures the client verified before, for this operation's reads.
    pub fn borrow_signatures(&mut self, cache: &mut DirCache) {
        self.subs.trusted = cache.lend_signatures();
    }

    /// Give `cache` the directory states this operation leaves and the signatures it knows.
    pub fn return_to(&mut self, cache: &mut DirCache) {
        self.memo.return_to(cache);
        cache.take_back_signatures(std::mem::take(&mut self.subs.trusted));
    }

    /// A pause before retry `attempt` (1-based), drawn from the seed.
    pub fn backoff(&mut self, attempt: u32) -> Duration {
        super::backoff::delay(attempt, &mut self.jitter)
    }
}

/// Seconds since the epoch as Tahoe records link times, from the runtime's `now` (microseconds
/// since the Unix epoch by the runtimes' convention).
pub(crate) fn link_time(now: Instant) -> f64 {
    now.as_micros() as f64 / 1e6
}

/// The earlier of two optional deadlines.
pub(crate) fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}
