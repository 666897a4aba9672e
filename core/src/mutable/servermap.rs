//! The servermap: which servers hold which shares of which version of a mutable file, learned by
//! reading the head of every share in one round trip.
//!
//! [`MapQuery`] is the part of retrieve and publish that builds a map: it asks every server for
//! the first `initial_read` bytes of each share it holds, checks each header (key fingerprint and
//! signature) and, for write caps, decrypts the private key when the read reached it (fetching
//! it with one more read otherwise, which only big SDMF files need).

use std::collections::{BTreeMap, BTreeSet};

use super::layout::{MutableFormat, Prefix};
use super::requests::Requests;
use super::share::{
    check_header_cached, decrypt_private_key, ShareError, SignatureCache, SignedHeader,
};
use crate::cap::Cap;
use crate::crypto::rsa_keys::MutableKey;
use crate::crypto::{ssk_readkey, ssk_storage_index};
use crate::op::RequestId;
use crate::placement::ServerId;
use crate::time::Instant;
use crate::wire::{ReadRange, Request, Response, ShareRead, StorageIndex};

/// The keys a mutable cap gives, and its format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileKeys {
    pub format: MutableFormat,
    /// Present for write caps only.
    pub writekey: Option<[u8; 16]>,
    pub readkey: [u8; 16],
    pub storage_index: StorageIndex,
    pub fingerprint: [u8; 32],
}

/// Why a cap cannot name a readable mutable file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CapKindError {
    #[error("{0} is not a mutable file cap (use an SSK or MDMF read or write cap)")]
    NotMutable(&'static str),
    #[error("a verify cap cannot read a file's contents")]
    VerifyCap,
}

impl FileKeys {
    /// From an SSK/MDMF write or read cap, or a directory cap stored in one.
    pub fn from_cap(cap: &Cap) -> Result<FileKeys, CapKindError> {
        let (format, writekey, readkey, fingerprint) = match cap.file_cap() {
            Cap::SskWrite {
                writekey,
                fingerprint,
            } => (
                MutableFormat::Sdmf,
                Some(*writekey),
                ssk_readkey(writekey),
                *fingerprint,
            ),
            Cap::MdmfWrite {
                writekey,
                fingerprint,
            } => (
                MutableFormat::Mdmf,
                Some(*writekey),
                ssk_readkey(writekey),
                *fingerprint,
            ),
            Cap::SskRead {
                readkey,
                fingerprint,
            } => (MutableFormat::Sdmf, None, *readkey, *fingerprint),
            Cap::MdmfRead {
                readkey,
                fingerprint,
            } => (MutableFormat::Mdmf, None, *readkey, *fingerprint),
            Cap::SskVerify { .. } | Cap::MdmfVerify { .. } => return Err(CapKindError::VerifyCap),
            other => return Err(CapKindError::NotMutable(other.kind_name())),
        };
        Ok(FileKeys {
            format,
            writekey,
            readkey,
            storage_index: ssk_storage_index(&readkey),
            fingerprint,
        })
    }

    /// The keys of a file made with `key`.
    pub fn from_key(format: MutableFormat, key: &MutableKey) -> FileKeys {
        let writekey = key.writekey();
        let readkey = ssk_readkey(&writekey);
        FileKeys {
            format,
            writekey: Some(writekey),
            readkey,
            storage_index: ssk_storage_index(&readkey),
            fingerprint: key.fingerprint(),
        }
    }

    /// The write cap (write caps) or read cap.
    pub fn cap(&self) -> Cap {
        match (self.format, self.writekey) {
            (MutableFormat::Sdmf, Some(writekey)) => Cap::SskWrite {
                writekey,
                fingerprint: self.fingerprint,
            },
            (MutableFormat::Mdmf, Some(writekey)) => Cap::MdmfWrite {
                writekey,
                fingerprint: self.fingerprint,
            },
            (MutableFormat::Sdmf, None) => Cap::SskRead {
                readkey: self.readkey,
                fingerprint: self.fingerprint,
            },
            (MutableFormat::Mdmf, None) => Cap::MdmfRead {
                readkey: self.readkey,
                fingerprint: self.fingerprint,
            },
        }
    }
}

/// One share whose header checked out.
#[derive(Clone, PartialEq, Eq)]
pub struct SeenShare {
    pub header: SignedHeader,
    /// The share's bytes from offset 0, as far as they were read.
    pub head: Vec<u8>,
    pub share_len: u64,
}

/// What a servermap update learned.
#[derive(Clone, Default)]
pub struct ServerMap {
    /// Shares with a valid header, by server and share number.
    pub shares: BTreeMap<(ServerId, u16), SeenShare>,
    /// Shares that failed their checks, with the checkstring-length bytes they start with (a
    /// publish must name those bytes in its test to overwrite them).
    pub bad: BTreeMap<(ServerId, u16), (ShareError, Vec<u8>)>,
    /// Servers that answered.
    pub answered: BTreeSet<ServerId>,
    /// Servers that did not answer (lost, timed out, or refused).
    pub failed: BTreeSet<ServerId>,
    /// The signing key of a write cap's holder, as found in the shares.
    pub signing_key: SigningKey,
    /// (signed prefix, signature) pairs verified under this file's key: a later read can
    /// trust them without another RSA verification ([`crate::mutable::Retrieve::trust_verified`]).
    pub verified: SignatureCache,
}

/// A write cap holder's signing key, decrypted from the shares only when a write needs it:
/// parsing an RSA private key costs more than the rest of a small read, and most reads of a
/// directory (through its write cap) never write.
#[derive(Clone, Default)]
pub enum SigningKey {
    /// None found (a read cap, or no share carried one yet).
    #[default]
    Absent,
    /// Encrypted keys as stored in the shares (distinct byte strings; normally one), with what
    /// decrypts and checks them.
    Encrypted {
        candidates: Vec<Vec<u8>>,
        writekey: [u8; 16],
        fingerprint: [u8; 32],
    },
    Ready(Box<MutableKey>),
}

impl std::fmt::Debug for SigningKey {
    /// Says which state, never a key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SigningKey::Absent => f.write_str("Absent"),
            SigningKey::Encrypted { candidates, .. } => {
                write!(f, "Encrypted({} candidates)", candidates.len())
            }
            SigningKey::Ready(_) => f.write_str("Ready"),
        }
    }
}

impl ServerMap {
    /// Whether a signing key was found (it may still be undecrypted).
    pub fn has_signing_key(&self) -> bool {
        !matches!(self.signing_key, SigningKey::Absent)
    }

    /// The signing key, decrypting it now if needed (once: the result is kept). `None` if no
    /// share held one that decrypts under the write key and matches the cap's fingerprint.
    pub fn signing_key(&mut self) -> Option<MutableKey> {
        if let SigningKey::Encrypted {
            candidates,
            writekey,
            fingerprint,
        } = &self.signing_key
        {
            self.signing_key = candidates
                .iter()
                .filter_map(|enc| decrypt_private_key(enc, writekey).ok())
                .find(|key| key.fingerprint() == *fingerprint)
                .map_or(SigningKey::Absent, |key| SigningKey::Ready(Box::new(key)));
        }
        match &self.signing_key {
            SigningKey::Ready(key) => Some((**key).clone()),
            _ => None,
        }
    }
}

impl std::fmt::Debug for SeenShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = &self.header.prefix;
        write!(
            f,
            "seq {} {}-of-{} len {} ({} read)",
            p.seqnum,
            p.k,
            p.n,
            self.share_len,
            self.head.len()
        )
    }
}

impl std::fmt::Debug for ServerMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerMap")
            .field("shares", &self.shares)
            .field(
                "bad",
                &self
                    .bad
                    .iter()
                    .map(|(k, (e, _))| (k, e))
                    .collect::<Vec<_>>(),
            )
            .field("answered", &self.answered.len())
            .field("failed", &self.failed)
            .field("has_signing_key", &self.has_signing_key())
            .finish()
    }
}

impl ServerMap {
    /// Every version seen, with the distinct share numbers seen of each.
    pub fn versions(&self) -> BTreeMap<&Prefix, BTreeSet<u16>> {
        let mut out: BTreeMap<&Prefix, BTreeSet<u16>> = BTreeMap::new();
        for ((_, shnum), seen) in &self.shares {
            out.entry(&seen.header.prefix).or_default().insert(*shnum);
        }
        out
    }

    /// Versions with at least k distinct shares, best first (highest seqnum, then root hash).
    pub fn recoverable_versions(&self) -> Vec<Prefix> {
        let mut v: Vec<Prefix> = self
            .versions()
            .into_iter()
            .filter(|(p, shares)| shares.len() >= usize::from(p.k))
            .map(|(p, _)| p.clone())
            .collect();
        v.sort_by_key(|p| std::cmp::Reverse((p.seqnum, p.root_hash)));
        v
    }

    pub fn best_recoverable(&self) -> Option<Prefix> {
        self.recoverable_versions().into_iter().next()
    }

    /// Highest sequence number of any share seen (0 for a file with no shares).
    pub fn highest_seqnum(&self) -> u64 {
        self.shares
            .values()
            .map(|s| s.header.prefix.seqnum)
            .max()
            .unwrap_or(0)
    }

    /// Share holders of one version.
    pub fn holders(&self, version: &Prefix) -> Vec<(ServerId, u16)> {
        self.shares
            .iter()
            .filter(|(_, s)| s.header.prefix == *version)
            .map(|(k, _)| *k)
            .collect()
    }

    /// Record that a share now holds `header` (after our own successful write).
    pub(crate) fn record_written(
        &mut self,
        server: ServerId,
        shnum: u16,
        share: &[u8],
        header: SignedHeader,
        keep: usize,
    ) {
        self.bad.remove(&(server, shnum));
        self.shares.insert(
            (server, shnum),
            SeenShare {
                header,
                head: share[..share.len().min(keep)].to_vec(),
                share_len: share.len() as u64,
            },
        );
    }
}

/// Builds a [`ServerMap`] by reading every share's head from every server.
#[derive(Debug)]
pub(crate) struct MapQuery {
    keys: FileKeys,
    initial_read: u64,
    pub map: ServerMap,
    /// Requests for the encrypted private key, by request id.
    key_reads: BTreeSet<RequestId>,
    /// Shares already asked for their private key.
    key_tried: BTreeSet<(ServerId, u16)>,
}

impl MapQuery {
    pub fn new(keys: FileKeys, initial_read: u64) -> MapQuery {
        MapQuery {
            keys,
            initial_read,
            map: ServerMap::default(),
            key_reads: BTreeSet::new(),
            key_tried: BTreeSet::new(),
        }
    }

    /// Sends the first read to every server.
    pub fn start(&mut self, now: Instant, servers: &[ServerId], reqs: &mut Requests) {
        for &server in servers {
            reqs.send(
                now,
                server,
                Request::MutableRead {
                    storage_index: self.keys.storage_index,
                    shnums: Vec::new(),
                    ranges: vec![ReadRange {
                        offset: 0,
                        length: self.initial_read,
                    }],
                },
            );
        }
    }

    /// Takes the answer to one of this query's requests.
    pub fn handle(
        &mut self,
        now: Instant,
        from: ServerId,
        id: RequestId,
        response: Response,
        reqs: &mut Requests,
    ) {
        let is_key_read = self.key_reads.remove(&id);
        match response {
            Response::MutableRead { shares } => {
                self.map.answered.insert(from);
                if is_key_read {
                    self.take_key(&shares);
                } else {
                    for share in shares {
                        self.absorb(from, share);
                    }
                }
            }
            _ => {
                self.map.failed.insert(from);
            }
        }
        self.maybe_fetch_key(now, reqs);
    }

    pub fn lost(&mut self, now: Instant, server: ServerId, ids: &[RequestId], reqs: &mut Requests) {
        for id in ids {
            self.key_reads.remove(id);
        }
        if !self.map.answered.contains(&server) {
            self.map.failed.insert(server);
        }
        self.maybe_fetch_key(now, reqs);
    }

    fn absorb(&mut self, server: ServerId, read: ShareRead) {
        let head = read.chunks.into_iter().next().unwrap_or_default();
        let key = (server, read.shnum);
        let checkstring = head[..head.len().min(self.keys.format.checkstring_len())].to_vec();
        let checked =
            check_header_cached(&head, &self.keys.fingerprint, Some(&mut self.map.verified))
                .and_then(|h| {
                    if read.shnum >= u16::from(h.prefix.n) {
                        Err(ShareError::Unsupported(
                            "share number not below the share count N",
                        ))
                    } else {
                        Ok(h)
                    }
                });
        match checked {
            Ok(header) => {
                self.try_decrypt_key(&header, &head);
                self.map.shares.insert(
                    key,
                    SeenShare {
                        header,
                        head,
                        share_len: read.share_len,
                    },
                );
            }
            Err(e) => {
                self.map.bad.insert(key, (e, checkstring));
            }
        }
    }

    /// Keep the share's encrypted signing key, to decrypt if a write needs it.
    fn try_decrypt_key(&mut self, header: &SignedHeader, head: &[u8]) {
        let (Some(writekey), Some(enc)) =
            (self.keys.writekey, header.offsets.enc_privkey.slice(head))
        else {
            return;
        };
        match &mut self.map.signing_key {
            SigningKey::Ready(_) => {}
            SigningKey::Encrypted { candidates, .. } => {
                if !candidates.iter().any(|c| c == enc) {
                    candidates.push(enc.to_vec());
                }
            }
            absent @ SigningKey::Absent => {
                *absent = SigningKey::Encrypted {
                    candidates: vec![enc.to_vec()],
                    writekey,
                    fingerprint: self.keys.fingerprint,
                };
            }
        }
    }

    fn take_key(&mut self, shares: &[ShareRead]) {
        let Some(writekey) = self.keys.writekey else {
            return;
        };
        for share in shares {
            if let Some(enc) = share.chunks.first() {
                if let Ok(key) = decrypt_private_key(enc, &writekey) {
                    if key.fingerprint() == self.keys.fingerprint {
                        self.map.signing_key = SigningKey::Ready(Box::new(key));
                        return;
                    }
                }
            }
        }
    }

    /// Once every first read is in, a write cap without its key asks one share holder for it.
    fn maybe_fetch_key(&mut self, now: Instant, reqs: &mut Requests) {
        if self.keys.writekey.is_none()
            || self.map.has_signing_key()
            || !self.key_reads.is_empty()
            || reqs.in_flight() > 0
        {
            return;
        }
        let candidate = self
            .map
            .shares
            .iter()
            .map(|((s, n), seen)| (*s, *n, seen.header.offsets.enc_privkey))
            .find(|(s, n, _)| !self.map.failed.contains(s) && !self.key_tried.contains(&(*s, *n)));
        if let Some((server, shnum, span)) = candidate {
            self.key_tried.insert((server, shnum));
            let id = reqs.send(
                now,
                server,
                Request::MutableRead {
                    storage_index: self.keys.storage_index,
                    shnums: vec![shnum],
                    ranges: vec![ReadRange {
                        offset: span.offset,
                        length: span.len,
                    }],
                },
            );
            self.key_reads.insert(id);
        }
    }

    /// True when nothing this query sent is still unanswered.
    pub fn finished(&self, reqs: &Requests) -> bool {
        reqs.in_flight() == 0
    }
}
