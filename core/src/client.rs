//! The client engine: what every driver of client operations needs besides sockets and a clock,
//! written once.
//!
//! - [`driven`]: one operation plus its network accounting, with the drain rule folded into a
//!   single [`Driven::poll_output`] call (transmits, then events, then how long to wait);
//! - [`routes`]: a connection's wire-level request ids mapped to (operation, request), with
//!   loss fan-out when the connection breaks;
//! - [`answers`]: a connection's reading side (frames in, each answer to its operation);
//! - [`links`]: which connection carries an operation's requests to each server (the client's
//!   table of live connections, each operation's own connections and reach);
//! - [`stats`]: round-trip depth and bytes of one operation;
//! - [`task`]: each client operation as the application sees it (data in and out, a report at
//!   the end), so a runtime drives every kind with one loop;
//! - [`state`]: the pure half of a grid client (servers, verified signatures, task making);
//! - [`report`]: the configuration, reports and errors every runtime's client shares.
//!
//! A runtime opens and closes connections, moves frames, sleeps until the deadline
//! `poll_output` gives, and passes the application's requests in and results out.

pub mod answers;
pub mod dir_task;
pub mod driven;
pub mod links;
pub mod report;
pub mod routes;
pub mod state;
pub mod stats;
pub mod task;

pub use answers::Answers;
pub use dir_task::{DirEvent, DirOperation};
pub use driven::{Driven, Output};
pub use links::{ConnectionTable, OpLinks, Pick, ServerLink};
pub use report::{
    ClientConfig, ClientError, DownloadReport, MutableReadReport, MutableWriteReport, Reach,
    ServerEntry, Stage, TransferProgress, UploadReport,
};
pub use routes::{OpId, Routes};
pub use state::{ClientMemory, ClientState, DirStart, DownloadPlan, VerifiedSignatures};
pub use stats::{StatsCounter, TransferStats};
pub use task::{
    DirTask, DownloadTask, Input, LocalData, PublishTask, RetrieveTask, StatusTask, Step, Task,
    UploadTask,
};
