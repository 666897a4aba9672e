//! What a run found: counts, timings, the trace hash, and invariant violations.

use std::collections::BTreeMap;
use std::fmt;

use lafs_core::time::{Duration, Instant};

/// A broken invariant. Any of these is a bug in lafs-core or in the simulator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// A download released bytes that differ from what was uploaded.
    WrongBytes { op: usize, file: usize, offset: u64 },
    /// A download said Done without delivering exactly the file's bytes, in order.
    BadDone {
        op: usize,
        file: usize,
        delivered: u64,
        size: u64,
    },
    /// An operation was still running at its deadline.
    Hang {
        op: usize,
        kind: OpKind,
        started: Instant,
        /// The operation's `poll_timeout` at the deadline: `None` means it waited for nothing.
        timer: Option<Instant>,
        /// The last event the operation emitted.
        last_event: String,
    },
    /// An upload was acknowledged but a share it claims is not committed on that server.
    AckedShareMissing {
        op: usize,
        file: usize,
        server: usize,
        shnum: u16,
    },
    /// An upload was acknowledged with less than the requested happiness.
    Unhappy {
        op: usize,
        happiness: usize,
        happy: usize,
    },
    /// An acknowledged file with at least k good shares could not be downloaded fault-free.
    Unretrievable {
        file: usize,
        good_shares: usize,
        error: String,
    },
    /// A download failed although no fault had happened yet and its file was intact.
    FaultFreeDownloadFailed {
        op: usize,
        file: usize,
        error: String,
    },
    /// The run did not settle within the event budget.
    Runaway { events: u64 },
    /// A mutable read released bytes that are not exactly (the requested range of) one version
    /// some publish wrote: a mix of versions, or bytes nobody wrote.
    TornRead {
        op: usize,
        file: usize,
        seqnum: u64,
        detail: String,
    },
    /// A mutable read returned a version older than one acknowledged before the read started,
    /// although at least k good shares of the acknowledged version sat on servers the read
    /// heard from.
    LostWrite {
        op: usize,
        file: usize,
        got_seqnum: u64,
        acked_seqnum: u64,
        good_shares: usize,
    },
    /// A publish was acknowledged but a share it claims to have placed holds neither its
    /// version nor a newer one (and no fault deleted or corrupted it).
    MutableAckedShareMissing {
        op: usize,
        file: usize,
        server: usize,
        shnum: u16,
    },
    /// A directory's final fault-free listing disagrees with a link (or unlink) that was
    /// acknowledged with no other edit of that name running or left unfinished: an
    /// acknowledged link was lost, or an acknowledged unlink came back.
    LostLink {
        dir: usize,
        name: u32,
        detail: String,
    },
    /// An edit ran alone on its names of a directory no fault touched, yet its outcome (what
    /// it reports replacing or removing, or why it was refused) contradicts what the names were
    /// acknowledged to link when it started: a retried edit applied twice (a link replacing its
    /// own cap, an unlink or move refused for a name its own earlier attempt removed, or
    /// removing something else), or an edit decided on a stale remembered state.
    WrongEditOutcome {
        op: usize,
        dir: usize,
        name: u32,
        detail: String,
    },
    /// A lookup of a settled name, in a directory no fault touched and with no edit of the
    /// name running, disagrees with what the name was last acknowledged to link.
    WrongLookup {
        op: usize,
        dir: usize,
        name: u32,
        detail: String,
    },
    /// A status query that ran while no fault struck did not report server `server` as
    /// answering (or left it out).
    StatusMissedServer {
        op: usize,
        server: usize,
        state: String,
    },
    /// After healing every fault, a directory that was acknowledged could not be listed.
    DirUnreadable { dir: usize, error: String },
    /// After healing every fault, a mutable file whose newest acknowledged version kept at
    /// least k good shares could not be read.
    MutableUnretrievable {
        file: usize,
        acked_seqnum: u64,
        good_shares: usize,
        error: String,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::WrongBytes { op, file, offset } => write!(
                f,
                "op {op}: download of file {file} returned wrong bytes at offset {offset}"
            ),
            Violation::BadDone {
                op,
                file,
                delivered,
                size,
            } => write!(
                f,
                "op {op}: download of file {file} finished after {delivered} of {size} bytes"
            ),
            Violation::Hang {
                op,
                kind,
                started,
                timer,
                last_event,
            } => write!(
                f,
                "op {op} ({kind:?}, started at {} ms) did not finish by its deadline; \
                 poll_timeout {}; last event: {last_event}",
                started.0 / 1000,
                match timer {
                    Some(t) => format!("{} ms", t.0 / 1000),
                    None => "None (waiting for nothing)".into(),
                }
            ),
            Violation::AckedShareMissing {
                op,
                file,
                server,
                shnum,
            } => write!(
                f,
                "op {op}: upload of file {file} acknowledged share {shnum} on server {server}, \
                 which does not hold it committed"
            ),
            Violation::Unhappy {
                op,
                happiness,
                happy,
            } => write!(
                f,
                "op {op}: upload acknowledged with happiness {happiness} < {happy}"
            ),
            Violation::Unretrievable {
                file,
                good_shares,
                error,
            } => write!(
                f,
                "file {file}: acknowledged, {good_shares} good shares survive, but a fault-free \
                 download failed: {error}"
            ),
            Violation::FaultFreeDownloadFailed { op, file, error } => write!(
                f,
                "op {op}: download of intact file {file} failed before any fault: {error}"
            ),
            Violation::Runaway { events } => write!(f, "run did not settle after {events} events"),
            Violation::TornRead {
                op,
                file,
                seqnum,
                detail,
            } => write!(
                f,
                "op {op}: read of mutable file {file} (version {seqnum}) is not one written \
                 version: {detail}"
            ),
            Violation::LostWrite {
                op,
                file,
                got_seqnum,
                acked_seqnum,
                good_shares,
            } => write!(
                f,
                "op {op}: read of mutable file {file} returned version {got_seqnum}, older than \
                 acknowledged version {acked_seqnum} with {good_shares} good shares on servers \
                 that answered"
            ),
            Violation::MutableAckedShareMissing {
                op,
                file,
                server,
                shnum,
            } => write!(
                f,
                "op {op}: publish of mutable file {file} acknowledged share {shnum} on server \
                 {server}, which holds neither that version nor a newer one"
            ),
            Violation::LostLink { dir, name, detail } => {
                write!(f, "directory {dir}, name {name}: {detail}")
            }
            Violation::WrongEditOutcome {
                op,
                dir,
                name,
                detail,
            } => write!(f, "op {op}: directory {dir}, name {name}: {detail}"),
            Violation::WrongLookup {
                op,
                dir,
                name,
                detail,
            } => write!(
                f,
                "op {op}: lookup in directory {dir} of name {name}: {detail}"
            ),
            Violation::StatusMissedServer { op, server, state } => write!(
                f,
                "op {op}: fault-free status query reported server {server} as {state}"
            ),
            Violation::DirUnreadable { dir, error } => write!(
                f,
                "directory {dir}: acknowledged, but a fault-free listing failed: {error}"
            ),
            Violation::MutableUnretrievable {
                file,
                acked_seqnum,
                good_shares,
                error,
            } => write!(
                f,
                "mutable file {file}: version {acked_seqnum} acknowledged, {good_shares} good \
                 shares survive, but a fault-free read failed: {error}"
            ),
        }
    }
}

/// What kind of operation a timing is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    Upload,
    Download,
    /// A fault-free download (or mutable read) at the end of a run.
    FinalCheck,
    /// A mutable create or update.
    Publish,
    /// A mutable read (whole or a range).
    Retrieve,
    /// A directory create, link, unlink or move.
    DirEdit,
    /// A directory listing or lookup.
    DirList,
    /// A grid status query.
    Status,
}

/// How the operations of one kind ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpCounts {
    pub ok: u64,
    pub failed: u64,
    /// Not run: what it needed was not acknowledged yet (or no key was left).
    pub skipped: u64,
}

impl OpCounts {
    pub fn add(&mut self, other: &OpCounts) {
        self.ok += other.ok;
        self.failed += other.failed;
        self.skipped += other.skipped;
    }
}

/// How one operation went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpTiming {
    pub kind: OpKind,
    pub file: usize,
    pub size: u64,
    pub start: Instant,
    pub end: Instant,
    pub ok: bool,
}

impl OpTiming {
    pub fn duration(&self) -> Duration {
        self.end - self.start
    }
}

/// Summary of one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunReport {
    pub seed: u64,
    pub servers: usize,
    pub uploads_ok: u64,
    pub uploads_failed: u64,
    pub downloads_ok: u64,
    pub downloads_failed: u64,
    /// Downloads of "any acknowledged file" when none was acknowledged yet.
    pub downloads_skipped: u64,
    /// Fault-free downloads at the end (each one an acknowledged file with >= k good shares).
    pub final_checks: u64,
    /// Acknowledged files that lost too many shares to be checked (expected under faults).
    pub unrecoverable_files: u64,
    /// `CorruptShare` events: integrity failures the downloads and mutable reads caught.
    pub corrupt_shares_detected: u64,
    /// Mutable publishes (creates and updates) acknowledged / failed.
    pub publishes_ok: u64,
    pub publishes_failed: u64,
    /// Of the failed publishes, those that lost a race with another writer (`Conflict`).
    pub conflicts: u64,
    /// Updates that started while another publish of the same file was running.
    pub concurrent_publishes: u64,
    /// Mutable reads (final checks included) that finished / failed.
    pub retrieves_ok: u64,
    pub retrieves_failed: u64,
    /// Mutable operations skipped: the file was not created (yet), or no fixture key was left.
    pub mutable_skipped: u64,
    /// Directory creates, links and unlinks acknowledged / failed.
    pub dir_edits_ok: u64,
    pub dir_edits_failed: u64,
    /// Directory listings that succeeded / failed.
    pub dir_lists_ok: u64,
    pub dir_lists_failed: u64,
    /// Directory operations skipped (directory or file not acknowledged yet, keys used up).
    pub dir_skipped: u64,
    /// Final listings checked against every settled link (directories whose edits ran before
    /// any fault and never failed part-way).
    pub dir_listings_checked: u64,
    /// Planned operations by kind ([`crate::OpSpec::name`]): ok, failed, skipped. Final checks
    /// are counted apart (`final_checks`).
    pub by_op: BTreeMap<&'static str, OpCounts>,
    /// Directory edits that a conflict made retry at least once.
    pub dir_retries: u64,
    /// Lookups checked against the model of their directory.
    pub lookups_checked: u64,
    /// Faults injected, by kind.
    pub faults: BTreeMap<&'static str, u64>,
    pub violations: Vec<Violation>,
    /// Why operations failed (first words of the error), with counts: failures are allowed
    /// under faults, but their reasons should make sense.
    pub failure_reasons: BTreeMap<String, u64>,
    pub events: u64,
    pub messages: u64,
    /// Bytes on the wire, both directions (frames as encoded by `lafs_core::wire`).
    pub bytes: u64,
    /// Of those, bytes clients sent to servers.
    pub bytes_to_servers: u64,
    /// When the last operation (final checks included) ended.
    pub end: Instant,
    /// Mean round-trip time over all client–server links (to express latencies in RTTs).
    pub mean_rtt: Duration,
    /// Hash of every event processed, in order: equal for equal runs.
    pub trace_hash: u64,
    pub timings: Vec<OpTiming>,
}

impl Violation {
    /// If this violation is the signature of a known lafs-core bug, a note naming it.
    ///
    /// Known bugs are reported, not hidden: the binary and the sweep test print them apart
    /// from unknown violations, and each has a pinned regression test in `tests/regressions.rs`.
    pub fn known_core_bug(&self) -> Option<&'static str> {
        // None is open. Fixed so far: the re-upload hang of seed 0, the "already have" to a
        // continuing write of seed 34, and the lost directory link of seed 1548 (see
        // tests/regressions.rs). A bug that cannot be fixed at once gets its signature matched
        // here and a pinned, ignored regression test.
        let _ = self;
        None
    }
}

impl RunReport {
    /// Operations run (uploads, downloads, mutable publishes and reads, final checks).
    pub fn operations(&self) -> u64 {
        self.uploads_ok
            + self.uploads_failed
            + self.downloads_ok
            + self.downloads_failed
            + self.mutable_operations()
    }

    /// Mutable publishes and reads run (final checks included).
    pub fn mutable_operations(&self) -> u64 {
        self.publishes_ok + self.publishes_failed + self.retrieves_ok + self.retrieves_failed
    }

    pub fn faults_injected(&self) -> u64 {
        self.faults.values().sum()
    }

    /// Violations that match no known lafs-core bug.
    pub fn unknown_violations(&self) -> impl Iterator<Item = &Violation> {
        self.violations
            .iter()
            .filter(|v| v.known_core_bug().is_none())
    }
}
