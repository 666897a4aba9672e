//! The client engine: what every driver of client operations needs besides sockets and a clock,
//! written once.
//!
//! - [`driven`]: one operation plus its network accounting, with the drain rule folded into a
//!   single [`Driven::poll_output`] call (transmits, then events, then how long to wait);
//! - [`routes`]: a connection's wire-level request ids mapped to (operation, request), with
//!   loss fan-out when the connection breaks;
//! - [`stats`]: round-trip depth and bytes of one operation.
//!
//! A runtime opens and closes connections, moves frames, sleeps until the deadline
//! `poll_output` gives, and passes the application's requests in and results out.

pub mod driven;
pub mod routes;
pub mod stats;

pub use driven::{Driven, Output};
pub use routes::{OpId, Routes};
pub use stats::{StatsCounter, TransferStats};
