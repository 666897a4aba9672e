//! Types shared by every client-side state machine (upload, download, and later mutable ops).
//!
//! Each operation follows the same five-call shape (see `docs/architecture.md`):
//! `handle_input` / `handle_timeout` for what arrives, `poll_transmit` / `poll_event` /
//! `poll_timeout` for what the driver must do next. The driver's loop ("drain rule"): after any
//! `handle_*` or mutator call, drain `poll_transmit` and `poll_event` until both return `None`,
//! then sleep until `poll_timeout` (or the next input).

use crate::placement::ServerId;
use crate::wire::Request;

/// Names one request of one operation; the driver hands it back with the response so the
/// operation never relies on arrival order.
pub type RequestId = u64;

/// A message the driver must send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub to: ServerId,
    pub id: RequestId,
    pub request: Request,
}

/// The 20-byte node id Tahoe's lease and write-enabler derivations take: the first 20 bytes of
/// our 32-byte server id.
pub fn derivation_node_id(server: &ServerId) -> [u8; 20] {
    let mut id = [0u8; 20];
    id.copy_from_slice(&server.0[..20]);
    id
}
