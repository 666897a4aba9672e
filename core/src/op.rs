//! Types shared by every client-side state machine: immutable upload and download, mutable
//! publish, retrieve and modify, grid status, and the directory operations.
//!
//! Each operation follows the same five-call shape ([`ClientOp`], see `docs/architecture.md`):
//! `handle_input` / `handle_timeout` for what arrives, `poll_transmit` / `poll_event` /
//! `poll_timeout` for what the driver must do next. The driver's loop ("drain rule": after any
//! `handle_*` or mutator call, drain `poll_transmit` and `poll_event` until both return `None`,
//! then sleep until `poll_timeout`) is written once, in [`crate::client::Driven::poll_output`];
//! drivers call that instead of draining by hand.

use crate::placement::ServerId;
use crate::time::Instant;
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

/// One client's lease secrets for one file, from which each server's lease secrets derive
/// (Tahoe's client → file → bucket chain), so every operation renews the same leases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileLeaseSecrets {
    renewal: [u8; 32],
    cancel: [u8; 32],
}

impl FileLeaseSecrets {
    /// From the node's lease secret (Tahoe's `private/secret`) and the file's storage index.
    pub fn new(lease_secret: &[u8], storage_index: &[u8; 16]) -> FileLeaseSecrets {
        use crate::crypto::{
            client_cancel_secret, client_renewal_secret, file_cancel_secret, file_renewal_secret,
        };
        FileLeaseSecrets {
            renewal: file_renewal_secret(&client_renewal_secret(lease_secret), storage_index),
            cancel: file_cancel_secret(&client_cancel_secret(lease_secret), storage_index),
        }
    }

    /// The lease secrets presented to `server`.
    pub fn for_server(&self, server: &ServerId) -> crate::wire::LeaseSecrets {
        use crate::crypto::{bucket_cancel_secret, bucket_renewal_secret};
        let node = derivation_node_id(server);
        crate::wire::LeaseSecrets {
            renew: bucket_renewal_secret(&self.renewal, &node),
            cancel: bucket_cancel_secret(&self.cancel, &node),
        }
    }
}

/// The calls every client operation shares, so one driver loop can run any of them.
///
/// Every operation implements it directly; operation-specific mutators (`provide_segment`,
/// `cancel`) are inherent methods, called when the operation's events say so.
pub trait ClientOp {
    type Event;
    /// A server answered request `id`.
    fn handle_input(
        &mut self,
        now: Instant,
        from: ServerId,
        id: RequestId,
        response: crate::wire::Response,
    );
    /// The connection to `server` broke: everything in flight to it is lost.
    fn handle_server_lost(&mut self, now: Instant, server: ServerId);
    /// `poll_timeout`'s instant has passed.
    fn handle_timeout(&mut self, now: Instant);
    fn poll_transmit(&mut self) -> Option<Transmit>;
    fn poll_event(&mut self) -> Option<Self::Event>;
    fn poll_timeout(&self) -> Option<Instant>;
}

/// A borrowed operation is driven like an owned one (a driver can then hand it back to its
/// owner between stretches).
impl<T: ClientOp + ?Sized> ClientOp for &mut T {
    type Event = T::Event;
    fn handle_input(
        &mut self,
        now: Instant,
        from: ServerId,
        id: RequestId,
        response: crate::wire::Response,
    ) {
        (**self).handle_input(now, from, id, response)
    }
    fn handle_server_lost(&mut self, now: Instant, server: ServerId) {
        (**self).handle_server_lost(now, server)
    }
    fn handle_timeout(&mut self, now: Instant) {
        (**self).handle_timeout(now)
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        (**self).poll_transmit()
    }
    fn poll_event(&mut self) -> Option<Self::Event> {
        (**self).poll_event()
    }
    fn poll_timeout(&self) -> Option<Instant> {
        (**self).poll_timeout()
    }
}
