//! Mutable files over TCP: create, update and read SDMF/MDMF files by driving lafs-core's
//! `Publish` and `Retrieve` with the same session loop as immutable transfers.

use std::time::Duration;

use lafs_core::cap::Cap;
use lafs_core::crypto::rsa_keys::MutableKey;
use lafs_core::mutable::layout::MutableFormat;
use lafs_core::mutable::{
    FileKeys, Publish, PublishConfig, PublishEvent, Retrieve, RetrieveConfig, RetrieveEvent,
    ServerMap,
};
use lafs_core::placement::ServerId;

use super::{ClientError, GridClient, Session, TransferStats};
use crate::clock;

/// A finished publish (create or update).
#[derive(Clone, Debug)]
pub struct MutableWriteReport {
    /// The file's write cap.
    pub cap: Cap,
    /// The version written.
    pub seqnum: u64,
    /// Shares written, by server.
    pub placed: Vec<(ServerId, u16)>,
    pub elapsed: Duration,
    pub stats: TransferStats,
    /// The map after the write: pass it to the next update of this file to save a round trip.
    pub map: ServerMap,
}

/// A finished read of a mutable file.
#[derive(Clone, Debug)]
pub struct MutableReadReport {
    /// The version read.
    pub seqnum: u64,
    /// The file's whole size (the read may have been of a range).
    pub file_size: u64,
    pub elapsed: Duration,
    pub stats: TransferStats,
    /// Corrupt shares skipped, with what was wrong.
    pub server_problems: Vec<(ServerId, String)>,
    /// Warm map for a following update (write caps: includes the signing key).
    pub map: ServerMap,
}

/// Fresh unpredictable bytes for a publish's salts and signature.
fn publish_seed() -> [u8; 32] {
    use rand::RngCore;
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    seed
}

impl GridClient {
    /// Create a mutable file holding `contents`, signed with `key` (from a key pool; keys must
    /// never be reused).
    pub fn create_mutable(
        &self,
        format: MutableFormat,
        key: MutableKey,
        contents: Vec<u8>,
        config: PublishConfig,
    ) -> Result<MutableWriteReport, ClientError> {
        let started = std::time::Instant::now();
        let mut session = Session::new(self, "mutable create");
        let mut op = Publish::create(
            clock::now(),
            config,
            format,
            key,
            contents,
            &self.descriptors,
            &self.config.lease_secret,
            publish_seed(),
        );
        self.finish_publish(&mut session, &mut op, started)
    }

    /// Replace the contents of the mutable file `cap` (a write cap, or a directory cap over one).
    /// With `map` from a recent read or write of this file it costs one round trip.
    pub fn update_mutable(
        &self,
        cap: &Cap,
        contents: Vec<u8>,
        map: Option<ServerMap>,
    ) -> Result<MutableWriteReport, ClientError> {
        let started = std::time::Instant::now();
        let keys =
            FileKeys::from_cap(cap).map_err(|e| ClientError::NotMutableFile(e.to_string()))?;
        let mut session = Session::new(self, "mutable update");
        let mut op = Publish::update(
            clock::now(),
            PublishConfig::default(),
            keys,
            contents,
            &self.descriptors,
            map,
            &self.config.lease_secret,
            publish_seed(),
        );
        self.finish_publish(&mut session, &mut op, started)
    }

    fn finish_publish(
        &self,
        session: &mut Session<'_>,
        op: &mut Publish,
        started: std::time::Instant,
    ) -> Result<MutableWriteReport, ClientError> {
        let outcome = session.drive(op, |_, _, event| match event {
            PublishEvent::Done(r) => Some(Ok(r)),
            PublishEvent::Failed(e) => Some(Err(e)),
        })?;
        match outcome {
            Ok(r) => Ok(MutableWriteReport {
                cap: r.cap,
                seqnum: r.version.seqnum,
                placed: r.placed,
                elapsed: started.elapsed(),
                stats: session.stats(),
                map: r.map,
            }),
            Err(e) => Err(session.failure(ClientError::Publish(e))),
        }
    }

    /// Read the newest version of the mutable file `cap` (or `range` = (offset, length) of it).
    pub fn read_mutable(
        &self,
        cap: &Cap,
        range: Option<(u64, u64)>,
    ) -> Result<(Vec<u8>, MutableReadReport), ClientError> {
        let started = std::time::Instant::now();
        let keys =
            FileKeys::from_cap(cap).map_err(|e| ClientError::NotMutableFile(e.to_string()))?;
        let mut session = Session::new(self, "mutable read");
        let fingerprint = keys.fingerprint;
        let mut op = Retrieve::new(
            clock::now(),
            RetrieveConfig::default(),
            keys,
            &self.descriptors,
            range,
        );
        op.trust_verified(&self.verified_for(&fingerprint));
        let mut out = Vec::new();
        let mut problems = Vec::new();
        let outcome = session.drive(&mut op, |_, _, event| match event {
            RetrieveEvent::Data { bytes, .. } => {
                out.extend_from_slice(&bytes);
                None
            }
            RetrieveEvent::CorruptShare {
                server,
                shnum,
                error,
            } => {
                tracing::warn!(%server, shnum, %error, "mutable read: corrupt share dropped");
                problems.push((server, format!("share {shnum} is corrupt: {error}")));
                None
            }
            RetrieveEvent::Done(r) => Some(Ok(r)),
            RetrieveEvent::Failed(e) => Some(Err(e)),
        })?;
        match outcome {
            Ok(r) => Ok((out, {
                self.remember_verified(fingerprint, &r.map.verified);
                MutableReadReport {
                    seqnum: r.version.seqnum,
                    file_size: r.version.data_length,
                    elapsed: started.elapsed(),
                    stats: session.stats(),
                    server_problems: problems,
                    map: r.map,
                }
            })),
            Err(e) => Err(session.failure(ClientError::Retrieve(e))),
        }
    }
}
