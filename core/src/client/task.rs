//! Client operations as the application sees them: a core operation plus what turns its events
//! into a report, one [`Task`] per kind. A runtime drives every task with one loop: send each
//! [`Step::Transmit`], read or write local data when asked ([`Step::NeedSegment`],
//! [`Step::Data`]), wait when told, and hand back the [`Step::Finished`] result. Everything
//! else (accounting, the drain rule, problem lists, reports, error mapping, and what each I/O
//! outcome means for the task: [`Task::transmitted`], [`Task::segment_read`],
//! [`Task::data_written`], [`Task::key_from`], [`Task::waited`]) is here, once.

use std::time::Duration;

use crate::crypto::key_source::KeySource;
use crate::crypto::rsa_keys::MutableKey;
use crate::dirnode::ops::DirCache;
use crate::immutable::download::{Download, DownloadEvent};
use crate::immutable::upload::{Upload, UploadEvent};
use crate::mutable::{ModifyEvent, PublishEvent, PublishResult, RetrieveEvent};
use crate::op::{ClientOp, RequestId, Transmit};
use crate::placement::ServerId;
use crate::server_status::{GridStatus, GridStatusReport};
use crate::time::Instant;
use crate::wire::Response;

use super::dir_task::{DirEvent, DirOperation};
use super::driven::{Driven, Output};
use super::report::{
    ClientError, DownloadReport, MutableReadReport, MutableWriteReport, Stage, TransferProgress,
    UploadReport,
};
use super::stats::TransferStats;

/// What a task asks of its runtime next.
#[derive(Debug)]
pub enum Step<R> {
    /// Send this request; then [`Task::handle_sent`], or [`Task::handle_server_lost`] if it
    /// could not go.
    Transmit(Transmit),
    /// Read `[offset, offset + length)` of the data being uploaded and pass it to
    /// [`Task::provide_segment`] (or [`Task::fail_local`] if it cannot be read).
    NeedSegment {
        offset: u64,
        length: u64,
    },
    /// Verified plaintext, in order: write it out (or [`Task::fail_local`]).
    Data {
        offset: u64,
        bytes: Vec<u8>,
    },
    Progress(TransferProgress),
    /// A directory must be made: pass a fresh RSA key to [`Task::provide_key`] (or
    /// [`Task::key_unavailable`]).
    NeedKey,
    /// A server misbehaved or was lost; the task works around it (the runtime may log it).
    Problem {
        server: ServerId,
        problem: String,
    },
    /// Nothing to do until an answer arrives or, if given, this instant passes
    /// ([`Task::handle_timeout`]).
    Wait(Option<Instant>),
    /// The end. Whatever the operation queued with its result has been handed out first.
    Finished(Result<R, ClientError>),
}

/// The local data an operation reads or writes while it runs, as the runtime holds it: `R`
/// reads an upload's plaintext, `W` takes a download's, `K` makes keys for new directories.
#[derive(Debug)]
pub enum LocalData<'a, R: ?Sized, W: ?Sized, K: ?Sized> {
    /// The operation reads and writes no data of its own.
    None,
    Source(&'a mut R),
    Sink(&'a mut W),
    Keys(&'a mut K),
}

impl<R: ?Sized, W: ?Sized, K: ?Sized> LocalData<'_, R, W, K> {
    pub fn source(&mut self) -> Option<&mut R> {
        match self {
            LocalData::Source(r) => Some(&mut **r),
            _ => None,
        }
    }

    pub fn sink(&mut self) -> Option<&mut W> {
        match self {
            LocalData::Sink(w) => Some(&mut **w),
            _ => None,
        }
    }

    pub fn keys(&mut self) -> Option<&mut K> {
        match self {
            LocalData::Keys(k) => Some(&mut **k),
            _ => None,
        }
    }
}

/// What a connection hands to the operation waiting on it.
#[derive(Debug)]
pub enum Input {
    /// The answer to the operation's request `id`; `wire_bytes` is the frame's size.
    Response {
        server: ServerId,
        id: RequestId,
        response: Response,
        wire_bytes: usize,
    },
    /// The connection broke with requests of this operation in flight.
    Lost { server: ServerId },
}

/// A client operation as its runtime drives it (see the module doc).
pub trait Task {
    type Report;
    /// What to do next; call again after each step is dealt with.
    fn poll_step(&mut self) -> Step<Self::Report>;
    fn handle_response(
        &mut self,
        now: Instant,
        from: ServerId,
        id: RequestId,
        response: Response,
        wire_bytes: usize,
    );
    fn handle_server_lost(&mut self, now: Instant, server: ServerId);
    fn handle_timeout(&mut self, now: Instant);
    /// The last transmit to `to` went out in a frame of `wire_bytes`.
    fn handle_sent(&mut self, to: ServerId, wire_bytes: usize);
    /// The data a [`Step::NeedSegment`] asked for.
    fn provide_segment(&mut self, now: Instant, bytes: &[u8]);
    /// Reading or writing local data failed: the task stops (telling servers what they need to
    /// know) and finishes with `error`.
    fn fail_local(&mut self, now: Instant, error: ClientError);
    /// The key a [`Step::NeedKey`] asked for.
    fn provide_key(&mut self, now: Instant, key: MutableKey);
    /// No key can be had for a [`Step::NeedKey`]: the task fails without making the directory.
    fn key_unavailable(&mut self, now: Instant, reason: String);
    fn stats(&self) -> TransferStats;

    /// An answer or a loss from a connection.
    fn handle_input(&mut self, now: Instant, input: Input) {
        match input {
            Input::Response {
                server,
                id,
                response,
                wire_bytes,
            } => self.handle_response(now, server, id, response, wire_bytes),
            Input::Lost { server } => self.handle_server_lost(now, server),
        }
    }
    // What each I/O outcome of a step means, so every runtime decides it alike.

    /// A [`Step::Transmit`] to `to` went out in a frame of `sent` bytes, or (`None`) could not
    /// be sent: the server counts as lost.
    fn transmitted(&mut self, now: Instant, to: ServerId, sent: Option<usize>) {
        match sent {
            Some(wire_bytes) => self.handle_sent(to, wire_bytes),
            None => self.handle_server_lost(now, to),
        }
    }

    /// The bytes a [`Step::NeedSegment`] asked for, or why they could not be read.
    fn segment_read(&mut self, now: Instant, read: std::io::Result<&[u8]>) {
        match read {
            Ok(bytes) => self.provide_segment(now, bytes),
            Err(e) => self.fail_local(now, ClientError::io("reading the data to upload", e)),
        }
    }

    /// Whether the plaintext of a [`Step::Data`] was written out.
    fn data_written(&mut self, now: Instant, written: std::io::Result<()>) {
        if let Err(e) = written {
            self.fail_local(now, ClientError::io("writing the downloaded data", e));
        }
    }

    /// Answer a [`Step::NeedKey`] from `keys` (`None`: the operation was given no key source).
    fn key_from(&mut self, now: Instant, keys: Option<&mut (dyn KeySource + '_)>) {
        let key = match keys {
            Some(keys) => keys.next_key().map_err(|e| e.to_string()),
            None => Err("this operation was given no key source".to_string()),
        };
        match key {
            Ok(key) => self.provide_key(now, key),
            Err(why) => self.key_unavailable(now, why),
        }
    }

    /// The end of a [`Step::Wait`] for `deadline`: what arrived, or `None` if nothing did. With
    /// no deadline the runtime only takes what is already queued (requests in flight but no
    /// timer: lafs-core's operations time their requests, so this does not happen), and
    /// nothing queued means the operation has stalled.
    fn waited(
        &mut self,
        now: Instant,
        deadline: Option<Instant>,
        input: Option<Input>,
    ) -> Result<(), ClientError> {
        match (input, deadline) {
            (Some(input), _) => self.handle_input(now, input),
            (None, Some(_)) => self.handle_timeout(now),
            (None, None) => return Err(ClientError::Stalled("operation")),
        }
        Ok(())
    }
}

use sealed::{Events, Run};

/// What every task shares, out of the public API (the tasks' common machinery).
mod sealed {
    use super::*;

    /// The state every task shares: its operation, timing, problems and outcome.
    #[derive(Debug)]
    pub struct Run<O, R> {
        pub(super) driven: Driven<O>,
        pub(super) started: Instant,
        pub(super) latest: Instant,
        pub(super) problems: Vec<(ServerId, String)>,
        pub(super) outcome: Option<Result<R, ClientError>>,
        /// A local failure overrides whatever the cancelled operation reports.
        pub(super) local_failure: Option<ClientError>,
        /// Progress to report before anything else.
        pub(super) progress: Option<TransferProgress>,
        pub(super) what: &'static str,
    }

    impl<O: ClientOp, R> Run<O, R> {
        pub(super) fn new(what: &'static str, now: Instant, op: O) -> Self {
            Run {
                driven: Driven::new(op),
                started: now,
                latest: now,
                problems: Vec::new(),
                outcome: None,
                local_failure: None,
                progress: None,
                what,
            }
        }

        pub(super) fn elapsed(&self) -> Duration {
            Duration::from_micros(self.latest.saturating_since(self.started).as_micros())
        }

        pub(super) fn problem(&mut self, server: ServerId, problem: String) -> Option<Step<R>> {
            self.problems.push((server, problem.clone()));
            Some(Step::Problem { server, problem })
        }

        pub(super) fn finish(&mut self, outcome: Result<R, ClientError>) -> Option<Step<R>> {
            if self.outcome.is_none() {
                self.outcome = Some(outcome);
            }
            None
        }
    }

    /// How one kind of task turns its operation's events into steps (the rest is shared).
    pub trait Events {
        type Op: ClientOp;
        type Report;
        fn run(&mut self) -> &mut Run<Self::Op, Self::Report>;
        fn run_ref(&self) -> &Run<Self::Op, Self::Report>;
        /// A step for the runtime, or `None` to go on (a result is recorded with `Run::finish`).
        fn on_event(&mut self, event: <Self::Op as ClientOp>::Event) -> Option<Step<Self::Report>>;
        /// Local data failed: stop the operation.
        fn cancel(&mut self, now: Instant);
        fn provide(&mut self, _now: Instant, _bytes: &[u8]) {}
        fn key(&mut self, _now: Instant, _key: Result<MutableKey, String>) {}
    }
}

impl<T: Events> Task for T {
    type Report = T::Report;

    fn poll_step(&mut self) -> Step<T::Report> {
        if let Some(p) = self.run().progress.take() {
            return Step::Progress(p);
        }
        loop {
            match self.run().driven.poll_output() {
                Output::Transmit(t) => return Step::Transmit(t),
                Output::Event(e) => {
                    if let Some(step) = self.on_event(e) {
                        return step;
                    }
                }
                waiting => {
                    let run = self.run();
                    if let Some(e) = run.local_failure.take() {
                        run.outcome = None;
                        return Step::Finished(Err(e));
                    }
                    if let Some(outcome) = run.outcome.take() {
                        return Step::Finished(outcome);
                    }
                    return match waiting {
                        Output::Wait(deadline) => Step::Wait(deadline),
                        _ => Step::Finished(Err(ClientError::Stalled(run.what))),
                    };
                }
            }
        }
    }

    fn handle_response(
        &mut self,
        now: Instant,
        from: ServerId,
        id: RequestId,
        response: Response,
        wire_bytes: usize,
    ) {
        let run = self.run();
        run.latest = now;
        run.driven
            .handle_response(now, from, id, response, wire_bytes);
    }

    fn handle_server_lost(&mut self, now: Instant, server: ServerId) {
        let run = self.run();
        run.latest = now;
        run.driven.handle_server_lost(now, server);
    }

    fn handle_timeout(&mut self, now: Instant) {
        let run = self.run();
        run.latest = now;
        run.driven.handle_timeout(now);
    }

    fn handle_sent(&mut self, to: ServerId, wire_bytes: usize) {
        self.run().driven.handle_sent(to, wire_bytes);
    }

    fn provide_segment(&mut self, now: Instant, bytes: &[u8]) {
        self.run().latest = now;
        self.provide(now, bytes);
    }

    fn fail_local(&mut self, now: Instant, error: ClientError) {
        let run = self.run();
        run.latest = now;
        run.local_failure = Some(error);
        self.cancel(now);
    }

    fn stats(&self) -> TransferStats {
        self.run_ref().driven.stats()
    }

    fn provide_key(&mut self, now: Instant, key: MutableKey) {
        self.run().latest = now;
        self.key(now, Ok(key));
    }

    fn key_unavailable(&mut self, now: Instant, reason: String) {
        self.run().latest = now;
        self.key(now, Err(reason));
    }
}

/// An immutable upload (after the convergent key is known).
#[derive(Debug)]
pub struct UploadTask {
    run: Run<Upload, UploadReport>,
    size: u64,
    /// Plaintext handed over so far.
    provided: u64,
    /// Wall time already spent before the upload began (the hashing pass).
    hashing: Duration,
}

impl UploadTask {
    /// `hashing` is the time the caller spent computing the key, counted in the report.
    pub fn new(now: Instant, upload: Upload, size: u64, hashing: Duration) -> UploadTask {
        UploadTask {
            run: Run::new("upload", now, upload),
            size,
            provided: 0,
            hashing,
        }
    }
}

impl Events for UploadTask {
    type Op = Upload;
    type Report = UploadReport;
    fn run(&mut self) -> &mut Run<Upload, UploadReport> {
        &mut self.run
    }
    fn run_ref(&self) -> &Run<Upload, UploadReport> {
        &self.run
    }
    fn on_event(&mut self, event: UploadEvent) -> Option<Step<UploadReport>> {
        match event {
            UploadEvent::NeedSegment { offset, length, .. } => {
                Some(Step::NeedSegment { offset, length })
            }
            UploadEvent::Progress { .. } => None,
            UploadEvent::ServerProblem { server, problem } => self.run.problem(server, problem),
            UploadEvent::Done(result) => {
                let report = UploadReport {
                    cap: result.cap,
                    size: self.size,
                    elapsed: self.hashing + self.run.elapsed(),
                    happiness: result.happiness,
                    shares: result.shares,
                    stats: self.run.driven.stats(),
                    server_problems: std::mem::take(&mut self.run.problems),
                };
                self.run.finish(Ok(report))
            }
            UploadEvent::Failed(e) => self.run.finish(Err(ClientError::Upload(e))),
        }
    }
    fn cancel(&mut self, now: Instant) {
        self.run.driven.op_mut().cancel(now);
    }
    fn provide(&mut self, now: Instant, bytes: &[u8]) {
        self.run.driven.op_mut().provide_segment(now, bytes);
        self.provided += bytes.len() as u64;
        self.run.progress = Some(TransferProgress {
            stage: Stage::Uploading,
            done: self.provided,
            total: self.size,
        });
    }
}

/// An immutable download, whole or of a range.
#[derive(Debug)]
pub struct DownloadTask {
    run: Run<Download, DownloadReport>,
    written: u64,
    /// Bytes the download will deliver (the clipped range).
    total: u64,
}

impl DownloadTask {
    /// `total` is the number of plaintext bytes the download delivers.
    pub fn new(now: Instant, download: Download, total: u64) -> DownloadTask {
        DownloadTask {
            run: Run::new("download", now, download),
            written: 0,
            total,
        }
    }
}

impl Events for DownloadTask {
    type Op = Download;
    type Report = DownloadReport;
    fn run(&mut self) -> &mut Run<Download, DownloadReport> {
        &mut self.run
    }
    fn run_ref(&self) -> &Run<Download, DownloadReport> {
        &self.run
    }
    fn on_event(&mut self, event: DownloadEvent) -> Option<Step<DownloadReport>> {
        match event {
            DownloadEvent::Data { offset, bytes } => {
                self.written += bytes.len() as u64;
                self.run.progress = Some(TransferProgress {
                    stage: Stage::Downloading,
                    done: self.written,
                    total: self.total,
                });
                Some(Step::Data { offset, bytes })
            }
            DownloadEvent::CorruptShare {
                server,
                shnum,
                error,
            } => self
                .run
                .problem(server, format!("share {shnum} is corrupt: {error}")),
            DownloadEvent::ServerProblem { server, problem } => self.run.problem(server, problem),
            DownloadEvent::Done { .. } => {
                let report = DownloadReport {
                    size: self.written,
                    elapsed: self.run.elapsed(),
                    stats: self.run.driven.stats(),
                    server_problems: std::mem::take(&mut self.run.problems),
                };
                self.run.finish(Ok(report))
            }
            DownloadEvent::Failed(e) => self.run.finish(Err(ClientError::Download(e))),
        }
    }
    fn cancel(&mut self, _now: Instant) {
        self.run.driven.op_mut().cancel();
    }
}

/// The last event of a mutable write: the new version, or the write's own error.
pub trait WriteEvent {
    fn outcome(self) -> Result<Box<PublishResult>, ClientError>;
}

impl WriteEvent for PublishEvent {
    fn outcome(self) -> Result<Box<PublishResult>, ClientError> {
        match self {
            PublishEvent::Done(r) => Ok(r),
            PublishEvent::Failed(e) => Err(ClientError::Publish(e)),
        }
    }
}

impl WriteEvent for ModifyEvent {
    fn outcome(self) -> Result<Box<PublishResult>, ClientError> {
        match self {
            ModifyEvent::Done(r) => Ok(r),
            ModifyEvent::Failed(e) => Err(ClientError::Modify(e)),
        }
    }
}

/// A mutable create, update or in-place modify.
#[derive(Debug)]
pub struct PublishTask<O> {
    run: Run<O, MutableWriteReport>,
}

impl<O: ClientOp<Event: WriteEvent>> PublishTask<O> {
    pub fn new(now: Instant, what: &'static str, op: O) -> PublishTask<O> {
        PublishTask {
            run: Run::new(what, now, op),
        }
    }
}

impl<O: ClientOp<Event: WriteEvent>> Events for PublishTask<O> {
    type Op = O;
    type Report = MutableWriteReport;
    fn run(&mut self) -> &mut Run<O, MutableWriteReport> {
        &mut self.run
    }
    fn run_ref(&self) -> &Run<O, MutableWriteReport> {
        &self.run
    }
    fn on_event(&mut self, event: O::Event) -> Option<Step<MutableWriteReport>> {
        let outcome = event.outcome().map(|r| MutableWriteReport {
            cap: r.cap,
            seqnum: r.version.seqnum,
            placed: r.placed,
            elapsed: self.run.elapsed(),
            stats: self.run.driven.stats(),
            map: r.map,
        });
        self.run.finish(outcome)
    }
    fn cancel(&mut self, _now: Instant) {}
}

/// A read of a mutable file, whole or of a range; the data comes out as [`Step::Data`].
#[derive(Debug)]
pub struct RetrieveTask {
    run: Run<crate::mutable::Retrieve, MutableReadReport>,
}

impl RetrieveTask {
    pub fn new(now: Instant, retrieve: crate::mutable::Retrieve) -> RetrieveTask {
        RetrieveTask {
            run: Run::new("mutable read", now, retrieve),
        }
    }
}

impl Events for RetrieveTask {
    type Op = crate::mutable::Retrieve;
    type Report = MutableReadReport;
    fn run(&mut self) -> &mut Run<crate::mutable::Retrieve, MutableReadReport> {
        &mut self.run
    }
    fn run_ref(&self) -> &Run<crate::mutable::Retrieve, MutableReadReport> {
        &self.run
    }
    fn on_event(&mut self, event: RetrieveEvent) -> Option<Step<MutableReadReport>> {
        match event {
            RetrieveEvent::Data { offset, bytes } => Some(Step::Data { offset, bytes }),
            RetrieveEvent::CorruptShare {
                server,
                shnum,
                error,
            } => self
                .run
                .problem(server, format!("share {shnum} is corrupt: {error}")),
            RetrieveEvent::Done(r) => {
                let report = MutableReadReport {
                    seqnum: r.version.seqnum,
                    file_size: r.version.data_length,
                    elapsed: self.run.elapsed(),
                    stats: self.run.driven.stats(),
                    server_problems: std::mem::take(&mut self.run.problems),
                    map: r.map,
                };
                self.run.finish(Ok(report))
            }
            RetrieveEvent::Failed(e) => self.run.finish(Err(ClientError::Retrieve(e))),
        }
    }
    fn cancel(&mut self, _now: Instant) {}
}

/// Every server's version, space and shares held, asked all at once.
#[derive(Debug)]
pub struct StatusTask {
    run: Run<GridStatus, GridStatusReport>,
}

impl StatusTask {
    pub fn new(now: Instant, status: GridStatus) -> StatusTask {
        StatusTask {
            run: Run::new("status query", now, status),
        }
    }
}

impl Events for StatusTask {
    type Op = GridStatus;
    type Report = GridStatusReport;
    fn run(&mut self) -> &mut Run<GridStatus, GridStatusReport> {
        &mut self.run
    }
    fn run_ref(&self) -> &Run<GridStatus, GridStatusReport> {
        &self.run
    }
    fn on_event(&mut self, report: GridStatusReport) -> Option<Step<GridStatusReport>> {
        self.run.finish(Ok(report))
    }
    fn cancel(&mut self, _now: Instant) {}
}

/// A directory operation: list, look up, make, link, unlink, rename or move.
#[derive(Debug)]
pub struct DirTask<O: DirOperation> {
    run: Run<O, O::Output>,
}

impl<O: DirOperation> DirTask<O> {
    pub fn new(now: Instant, what: &'static str, op: O) -> DirTask<O> {
        DirTask {
            run: Run::new(what, now, op),
        }
    }

    /// Give `cache` what the operation learned (call once it has finished).
    pub fn return_to(&mut self, cache: &mut DirCache) {
        self.run.driven.op_mut().return_to(cache);
    }
}

impl<O: DirOperation> Events for DirTask<O> {
    type Op = O;
    type Report = O::Output;
    fn run(&mut self) -> &mut Run<O, O::Output> {
        &mut self.run
    }
    fn run_ref(&self) -> &Run<O, O::Output> {
        &self.run
    }
    fn on_event(&mut self, event: O::Event) -> Option<Step<O::Output>> {
        match O::classify(event) {
            DirEvent::Progress => None,
            DirEvent::NeedKey => Some(Step::NeedKey),
            DirEvent::Done(v) => self.run.finish(Ok(v)),
            DirEvent::Failed(e) => self.run.finish(Err(ClientError::Dir(e))),
        }
    }
    fn cancel(&mut self, _now: Instant) {}
    fn key(&mut self, now: Instant, key: Result<MutableKey, String>) {
        let op = self.run.driven.op_mut();
        match key {
            Ok(key) => op.provide_key(now, key),
            Err(reason) => op.key_unavailable(now, reason),
        }
    }
}
