//! The immutable download state machine.
//!
//! Round trips: the first request to each of k servers (in ring order, in parallel) asks for any
//! one share it holds and reads, in the same reply, everything needed for segment 0: for a file
//! whose share fits the guess of one segment, the whole share; otherwise the header, the first
//! block and the tail of the share (hash trees and extension block), placed by guessing the
//! layout from the cap's size and the default segment size. A right guess makes a one-segment
//! download ONE round trip; a wrong guess costs one more, never correctness. Each later segment
//! is one round trip to the k servers holding the chosen shares.
//!
//! Nothing is released before it is verified: the extension block against the cap, each share's
//! hash chain against the share root, each block against its share's block tree, and each
//! decoded segment against the ciphertext tree. A share that fails is reported to its server
//! (`AdviseCorrupt`), dropped, and replaced by another share, from servers already known to hold
//! more shares or from servers further along the ring.
//!
//! Plaintext leaves one segment at a time as [`DownloadEvent::Data`]; the download keeps at most
//! one segment's blocks plus each share's hash trees.
//!
//! Ranged reads ([`Download::new_range`]): only the segments overlapping the byte range are
//! fetched, decoded and verified. The first request to each server asks for the header, the
//! first wanted segment's block and the tail (hash trees, extension block) in one reply, so a
//! range in the middle of a large file costs the same single round trip as segment 0 of a
//! whole-file download; each further segment of the range is one more. The block tree, share
//! hash chain and ciphertext tree check a segment in the middle of the file as they check
//! segment 0 (only the nodes on its path are used), and the ciphertext is cut to the range and
//! decrypted at its offset in the AES-CTR stream.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use crate::codec::{Codec, CodecError, CodecKind};
use crate::crypto::{storage_index_from_key, AesCtr};
use crate::hashtree::Hash;
use crate::immutable::layout::{LayoutError, ShareLayout};
use crate::immutable::params::{Geometry, DEFAULT_MAX_SEGMENT_SIZE, LIT_THRESHOLD};
use crate::immutable::share::{Range, ShareRegions, SparseShare};
use crate::immutable::ueb::{Ueb, UebError, MAX_UEB_LEN};
use crate::immutable::verify::{verify_ueb, FileVerifier, IntegrityError, ShareVerifier};
use crate::op::{RequestId, Transmit};
use crate::placement::{permuted_order, ServerDescriptor, ServerId};
use crate::time::{Duration, Instant};
use crate::wire::{ReadRange, Request, Response, StorageIndex};

/// How a download behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DownloadConfig {
    /// The segment size assumed when guessing where a share's parts lie (the uploader's default).
    pub segment_size_guess: u64,
    /// A request unanswered this long counts as a lost server.
    pub request_timeout: Duration,
}

impl Default for DownloadConfig {
    fn default() -> Self {
        DownloadConfig {
            segment_size_guess: DEFAULT_MAX_SEGMENT_SIZE,
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// What the cap says about the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChkFile {
    pub key: [u8; 16],
    pub ueb_hash: [u8; 32],
    pub k: usize,
    pub n: usize,
    pub size: u64,
}

impl ChkFile {
    /// What a CHK read cap says about its file; `None` for any other kind of cap.
    pub fn from_cap(cap: &crate::cap::Cap) -> Option<ChkFile> {
        match cap {
            crate::cap::Cap::ChkRead {
                key,
                ueb_hash,
                needed,
                total,
                size,
            } => Some(ChkFile {
                key: *key,
                ueb_hash: *ueb_hash,
                k: usize::from(*needed),
                n: usize::from(*total),
                size: *size,
            }),
            _ => None,
        }
    }
}

/// Why a download failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DownloadError {
    #[error(
        "not enough shares: need {needed}, found {found} distinct share(s) on {servers_asked} server(s) asked, \
         {good} of them good{}",
        if *.corrupt > 0 { format!(" ({} corrupt)", .corrupt) } else { String::new() }
    )]
    NotEnoughShares {
        needed: usize,
        found: usize,
        good: usize,
        corrupt: usize,
        servers_asked: usize,
    },
    #[error("the file's data is inconsistent: {0}")]
    Integrity(#[from] IntegrityError),
    #[error("the file was written with a codec this build does not know: {0}")]
    Codec(#[from] CodecError),
    #[error("the cap is invalid: {0}")]
    BadCap(&'static str),
    #[error("the cap does not match the file it names: its {0} is wrong (is the cap mistyped?)")]
    CapMismatch(&'static str),
    #[error("the range starts at byte {offset}, past the end of the {size}-byte file")]
    RangeNotSatisfiable { offset: u64, size: u64 },
    #[error("download cancelled")]
    Cancelled,
}

/// The bytes `[offset, offset + length)` of a `size`-byte file, cut at its end. A range that
/// starts past the end (or at the end, asking for bytes) is [`DownloadError::RangeNotSatisfiable`];
/// an empty range at or before the end is fine.
pub fn clip_range(
    size: u64,
    offset: u64,
    length: u64,
) -> Result<std::ops::Range<u64>, DownloadError> {
    if offset > size || (offset == size && length > 0) {
        return Err(DownloadError::RangeNotSatisfiable { offset, size });
    }
    Ok(offset..offset.saturating_add(length).min(size))
}

/// What the download tells its driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DownloadEvent {
    /// Verified plaintext at `offset`; segments arrive in order.
    Data {
        offset: u64,
        bytes: Vec<u8>,
    },
    /// A share failed verification and was dropped (the server was told).
    CorruptShare {
        server: ServerId,
        shnum: u16,
        error: IntegrityError,
    },
    /// A server was lost or failed; the download carries on if it can.
    ServerProblem {
        server: ServerId,
        problem: String,
    },
    /// All `size` bytes were delivered: the whole file, or the (clipped) range asked for.
    Done {
        size: u64,
    },
    Failed(DownloadError),
}

#[derive(Clone, Debug)]
struct Pending {
    server: ServerId,
    /// The share this request fetches parts of; `None` for discovery (any share).
    shnum: Option<u16>,
    ranges: Vec<ReadRange>,
    deadline: Instant,
}

#[derive(Debug)]
struct Share {
    server: ServerId,
    data: SparseShare,
    regions: Option<ShareRegions>,
    verifier: Option<ShareVerifier>,
    block_tree: Option<Vec<Hash>>,
    /// Segments whose block passed verification (only the current one is kept in `data`).
    verified_segment: Option<u64>,
    fetching: bool,
}

#[derive(Debug, Default)]
struct ServerInfo {
    /// Shares the server says it holds.
    held: BTreeSet<u16>,
    asked: bool,
    busy: bool,
}

/// One immutable download.
#[derive(Debug)]
pub struct Download {
    config: DownloadConfig,
    file: ChkFile,
    storage_index: StorageIndex,
    ring: Vec<ServerId>,
    servers: BTreeMap<ServerId, ServerInfo>,
    lost: BTreeSet<ServerId>,
    /// Shares being used or kept in reserve, by share number.
    shares: BTreeMap<u16, Share>,
    corrupt: BTreeSet<u16>,
    ueb: Option<Ueb>,
    geometry: Option<Geometry>,
    codec: Option<Arc<dyn Codec>>,
    file_verifier: Option<FileVerifier>,
    crypttext_tree: Option<Vec<Hash>>,
    /// The plaintext bytes wanted, `[start, end)`, within the file and not empty.
    start: u64,
    end: u64,
    /// The segment being fetched (the first one of the range until the real geometry is known,
    /// as far as the guessed geometry says).
    segment: u64,
    pending: BTreeMap<RequestId, Pending>,
    next_id: RequestId,
    finished: bool,
    transmits: VecDeque<Transmit>,
    events: VecDeque<DownloadEvent>,
}

impl Download {
    /// Start downloading `file` from `servers` (ordered on the file's ring internally).
    pub fn new(
        now: Instant,
        config: DownloadConfig,
        file: ChkFile,
        servers: &[ServerDescriptor],
    ) -> Download {
        Self::new_range(now, config, file, servers, 0, file.size)
    }

    /// Start downloading bytes `[offset, offset + length)` of `file`: only the segments that
    /// overlap them are fetched, and only those bytes come out as [`DownloadEvent::Data`] (at
    /// their offsets in the file). A range running past the end is cut at the end; one starting
    /// past it fails with [`DownloadError::RangeNotSatisfiable`] (see [`clip_range`]). An empty
    /// range finishes at once, with no request sent.
    pub fn new_range(
        now: Instant,
        config: DownloadConfig,
        file: ChkFile,
        servers: &[ServerDescriptor],
        offset: u64,
        length: u64,
    ) -> Download {
        let storage_index = storage_index_from_key(&file.key);
        let ring = permuted_order(&storage_index, servers);
        let mut d = Download {
            config,
            file,
            storage_index,
            servers: ring.iter().map(|s| (*s, ServerInfo::default())).collect(),
            ring,
            lost: BTreeSet::new(),
            shares: BTreeMap::new(),
            corrupt: BTreeSet::new(),
            ueb: None,
            geometry: None,
            codec: None,
            file_verifier: None,
            crypttext_tree: None,
            start: 0,
            end: 0,
            segment: 0,
            pending: BTreeMap::new(),
            next_id: 0,
            finished: false,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        };
        if file.k == 0 || file.k > file.n || file.n > 256 {
            d.fail(DownloadError::BadCap("need 1 <= k <= n <= 256"));
        } else if file.size <= LIT_THRESHOLD {
            d.fail(DownloadError::BadCap(
                "files this small are LIT caps; they hold their data and need no download",
            ));
        } else {
            match clip_range(file.size, offset, length) {
                Err(e) => d.fail(e),
                Ok(r) if r.is_empty() => {
                    d.finished = true;
                    d.events.push_back(DownloadEvent::Done { size: 0 });
                }
                Ok(r) => {
                    (d.start, d.end) = (r.start, r.end);
                    d.segment = d.guessed_geometry().map_or(0, |g| r.start / g.segment_size);
                    d.step(now);
                }
            }
        }
        d
    }

    // ---- getters ----

    pub fn storage_index(&self) -> &StorageIndex {
        &self.storage_index
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Bytes of share data and hashes held now (for memory-bound tests).
    pub fn bytes_held(&self) -> usize {
        self.shares
            .values()
            .map(|s| s.data.bytes_held() + s.block_tree.as_ref().map_or(0, |t| t.len() * 32))
            .sum::<usize>()
            + self.crypttext_tree.as_ref().map_or(0, |t| t.len() * 32)
    }

    // ---- mutators ----

    pub fn cancel(&mut self) {
        self.fail(DownloadError::Cancelled);
    }

    // ---- inputs ----

    fn lose_server(&mut self, server: ServerId, why: &str) {
        if self.finished || !self.lost.insert(server) {
            return;
        }
        self.pending.retain(|_, p| p.server != server);
        self.shares.retain(|_, s| s.server != server);
        self.events.push_back(DownloadEvent::ServerProblem {
            server,
            problem: why.to_string(),
        });
    }

    // ---- the engine ----

    /// Advance as far as the known bytes allow, then ask for what is missing.
    fn step(&mut self, now: Instant) {
        while !self.finished {
            if let Err(e) = self.verify_ready_shares() {
                return self.fail(e);
            }
            match self.try_decode_segment() {
                Ok(true) => continue,
                Ok(false) => break,
                Err(e) => return self.fail(e),
            }
        }
        if self.finished {
            return;
        }
        self.request_missing(now);
        if self.pending.is_empty() && !self.finished {
            let good = self.shares.len();
            self.fail(DownloadError::NotEnoughShares {
                needed: self.file.k,
                found: good + self.corrupt.len(),
                good,
                corrupt: self.corrupt.len(),
                servers_asked: self.servers.values().filter(|s| s.asked).count(),
            });
        }
    }

    /// The shares in use: the lowest k share numbers we hold (others wait in reserve).
    fn active(&self) -> Vec<u16> {
        self.shares.keys().copied().take(self.file.k).collect()
    }

    /// Run every check whose inputs have arrived; drop shares that fail.
    fn verify_ready_shares(&mut self) -> Result<(), DownloadError> {
        for sh in self.active() {
            if let Err(e) = self.verify_share(sh) {
                match e {
                    ShareCheck::Corrupt(error) => self.drop_corrupt(sh, error),
                    ShareCheck::Fatal(e) => return Err(e),
                    ShareCheck::Missing => {}
                }
            }
        }
        Ok(())
    }

    fn verify_share(&mut self, sh: u16) -> Result<(), ShareCheck> {
        let file = self.file;
        let share = self.shares.get_mut(&sh).ok_or(ShareCheck::Missing)?;
        if share.regions.is_none() {
            share.regions =
                ShareRegions::from_sparse(&share.data).map_err(|e| layout_error(sh, e))?;
        }
        let regions = share.regions.ok_or(ShareCheck::Missing)?;
        // A share shorter than its own header says can never complete: drop it rather than
        // asking again for bytes the server does not have.
        let claimed_end = match regions.ueb(&share.data) {
            Some(ueb) if ueb.length as usize >= MAX_UEB_LEN => {
                return Err(ShareCheck::Corrupt(IntegrityError::Ueb(UebError::TooLong(
                    ueb.length as usize,
                ))))
            }
            Some(ueb) => ueb.end(),
            None => regions.ueb_length_field().end(),
        };
        if share.data.share_len.is_some_and(|len| len < claimed_end) {
            return Err(ShareCheck::Corrupt(IntegrityError::Truncated {
                shnum: sh.into(),
                what: "share",
            }));
        }
        if self.ueb.is_none() {
            let range = regions.ueb(&share.data).ok_or(ShareCheck::Missing)?;
            let bytes = share.data.get(range).ok_or(ShareCheck::Missing)?;
            if bytes.len() as u64 != range.length {
                return Err(ShareCheck::Corrupt(IntegrityError::Truncated {
                    shnum: sh.into(),
                    what: "extension block",
                }));
            }
            let ueb = verify_ueb(bytes, &file.ueb_hash, file.k, file.n, file.size).map_err(
                |e| match e {
                    // The block matched the cap's hash, so it is authentic: the cap's own k, n or
                    // size fields are wrong (a mistyped cap), and no share is to blame.
                    IntegrityError::UebDisagreesWithCap(what) => {
                        ShareCheck::Fatal(DownloadError::CapMismatch(what))
                    }
                    other => ShareCheck::Corrupt(other),
                },
            )?;
            let codec = CodecKind::from_name(&ueb.codec_name)
                .and_then(|kind| kind.build(file.k, file.n))
                .map_err(|e| ShareCheck::Fatal(e.into()))?;
            let geometry =
                Geometry::new(file.size, file.k, file.n, ueb.segment_size, codec.as_ref())
                    .map_err(|_| ShareCheck::Fatal(DownloadError::BadCap("geometry")))?;
            if geometry.segment_size != ueb.segment_size
                || geometry.padded_tail_size != ueb.padded_tail_size
            {
                return Err(ShareCheck::Fatal(
                    IntegrityError::UebDisagreesWithCap("segment size").into(),
                ));
            }
            self.file_verifier = Some(FileVerifier::new(&ueb));
            // Nothing was decoded yet: start at the range's first segment of the real layout.
            self.segment = self.start / geometry.segment_size;
            self.geometry = Some(geometry);
            self.codec = Some(codec);
            self.ueb = Some(ueb);
        }
        let g = self.geometry.ok_or(ShareCheck::Missing)?;
        if regions.header.block_size != g.block_size
            || regions.header.data_size != g.share_data_size()
        {
            return Err(layout_error(
                sh,
                LayoutError::BadOffsets("block or data size disagrees with the file"),
            ));
        }
        if self.crypttext_tree.is_none() {
            let bytes = share
                .data
                .get(regions.crypttext_tree())
                .ok_or(ShareCheck::Missing)?;
            self.crypttext_tree = Some(ShareRegions::parse_tree(bytes));
        }
        if share.verifier.is_none() {
            let tree_bytes = share
                .data
                .get(regions.block_tree())
                .ok_or(ShareCheck::Missing)?;
            let chain_bytes = share
                .data
                .get(regions.share_hashes())
                .ok_or(ShareCheck::Missing)?;
            let tree = ShareRegions::parse_tree(tree_bytes);
            let chain =
                ShareRegions::parse_share_hashes(chain_bytes).map_err(|e| layout_error(sh, e))?;
            let root = *tree
                .first()
                .ok_or(ShareCheck::Corrupt(IntegrityError::Truncated {
                    shnum: sh.into(),
                    what: "block hash tree",
                }))?;
            let verifier = self
                .file_verifier
                .as_mut()
                .ok_or(ShareCheck::Missing)?
                .verify_share(sh.into(), g.num_segments, root, &chain)
                .map_err(ShareCheck::Corrupt)?;
            share.verifier = Some(verifier);
            share.block_tree = Some(tree);
        }
        if share.verified_segment != Some(self.segment) {
            let s = self.segment;
            let block = share
                .data
                .get(regions.block(s, g.block_len(s)))
                .ok_or(ShareCheck::Missing)?;
            if block.len() as u64 != g.block_len(s) {
                return Err(ShareCheck::Corrupt(IntegrityError::Truncated {
                    shnum: sh.into(),
                    what: "block",
                }));
            }
            let tree = share.block_tree.as_deref().unwrap_or_default();
            share
                .verifier
                .as_mut()
                .ok_or(ShareCheck::Missing)?
                .verify_block(s, block, tree)
                .map_err(ShareCheck::Corrupt)?;
            share.verified_segment = Some(s);
        }
        Ok(())
    }

    fn drop_corrupt(&mut self, sh: u16, error: IntegrityError) {
        let Some(share) = self.shares.remove(&sh) else {
            return;
        };
        self.corrupt.insert(sh);
        let id = self.next_id;
        self.next_id += 1;
        self.transmits.push_back(Transmit {
            to: share.server,
            id,
            request: Request::AdviseCorrupt {
                storage_index: self.storage_index,
                shnum: sh,
                reason: error.to_string(),
            },
        });
        self.events.push_back(DownloadEvent::CorruptShare {
            server: share.server,
            shnum: sh,
            error,
        });
    }

    /// Decode the current segment if k verified blocks are here. Returns whether it did.
    fn try_decode_segment(&mut self) -> Result<bool, DownloadError> {
        let (Some(g), Some(codec)) = (self.geometry, self.codec.clone()) else {
            return Ok(false);
        };
        let s = self.segment;
        if s > self.last_segment(&g) {
            return Ok(false);
        }
        let ready: Vec<u16> = self
            .active()
            .into_iter()
            .filter(|sh| self.shares[sh].verified_segment == Some(s))
            .collect();
        if ready.len() < self.file.k {
            return Ok(false);
        }
        let mut blocks: Vec<(usize, &[u8])> = Vec::with_capacity(ready.len());
        for sh in &ready {
            let share = &self.shares[sh];
            let Some(regions) = share.regions else {
                return Ok(false);
            };
            let Some(block) = share.data.get(regions.block(s, g.block_len(s))) else {
                return Ok(false);
            };
            blocks.push((usize::from(*sh), block));
        }
        let input_block_len = (g.padded_segment_len(s) / g.k as u64) as usize;
        let mut segment = codec.decode(input_block_len, &blocks)?;
        segment.truncate(g.segment_len(s) as usize);
        let tree = self.crypttext_tree.as_deref().unwrap_or_default();
        self.file_verifier
            .as_mut()
            .map(|v| v.verify_segment(s, &segment, tree))
            .transpose()?;
        // Keep the part of the segment inside the range, and decrypt it where it lies in the
        // key stream.
        let seg_start = g.segment_offset(s);
        let from = self.start.max(seg_start);
        let to = self.end.min(seg_start + segment.len() as u64);
        segment.truncate((to - seg_start) as usize);
        segment.drain(..(from - seg_start) as usize);
        AesCtr::at_offset(&self.file.key, from).apply(&mut segment);
        for sh in &ready {
            if let Some(share) = self.shares.get_mut(sh) {
                if let Some(regions) = share.regions {
                    share.data.forget(regions.block(s, g.block_len(s)));
                }
            }
        }
        self.events.push_back(DownloadEvent::Data {
            offset: from,
            bytes: segment,
        });
        self.segment += 1;
        if self.segment > self.last_segment(&g) {
            self.finished = true;
            self.pending.clear();
            self.events.push_back(DownloadEvent::Done {
                size: self.end - self.start,
            });
        }
        Ok(true)
    }

    /// Send requests for whatever the active shares still lack, and find more shares if fewer
    /// than k are in hand.
    fn request_missing(&mut self, now: Instant) {
        for sh in self.active() {
            let missing = self.missing_ranges(sh);
            let share = &self.shares[&sh];
            if missing.is_empty() || share.fetching {
                continue;
            }
            let server = share.server;
            if let Some(s) = self.shares.get_mut(&sh) {
                s.fetching = true;
            }
            self.send_read(now, server, Some(sh), vec![sh], missing);
        }
        let mut short = self.file.k.saturating_sub(self.shares.len());
        let in_discovery = self.pending.values().filter(|p| p.shnum.is_none()).count();
        short = short.saturating_sub(in_discovery);
        while short > 0 {
            if !self.discover_one(now) {
                break;
            }
            short -= 1;
        }
    }

    /// Ask one more server for a share we do not have: first servers known to hold one, then
    /// servers not asked yet, in ring order.
    fn discover_one(&mut self, now: Instant) -> bool {
        let unwanted = |sh: &u16| self.shares.contains_key(sh) || self.corrupt.contains(sh);
        let known = self.ring.iter().find(|s| {
            let info = &self.servers[*s];
            !self.lost.contains(*s) && !info.busy && info.held.iter().any(|sh| !unwanted(sh))
        });
        let target = known.or_else(|| {
            self.ring.iter().find(|s| {
                !self.lost.contains(*s) && !self.servers[*s].asked && !self.servers[*s].busy
            })
        });
        let Some(&server) = target else { return false };
        let wanted: Vec<u16> = (0..self.file.n as u16).filter(|sh| !unwanted(sh)).collect();
        let ranges = self.first_ranges();
        if let Some(info) = self.servers.get_mut(&server) {
            info.asked = true;
        }
        self.send_read(now, server, None, wanted, ranges);
        true
    }

    fn send_read(
        &mut self,
        now: Instant,
        server: ServerId,
        shnum: Option<u16>,
        shnums: Vec<u16>,
        ranges: Vec<ReadRange>,
    ) {
        let id = self.next_id;
        self.next_id += 1;
        if let Some(info) = self.servers.get_mut(&server) {
            info.busy = true;
        }
        self.pending.insert(
            id,
            Pending {
                server,
                shnum,
                ranges: ranges.clone(),
                deadline: now + self.config.request_timeout,
            },
        );
        let request = Request::ImmutableRead {
            storage_index: self.storage_index,
            shnums,
            max_shares: 1,
            ranges,
        };
        self.transmits.push_back(Transmit {
            to: server,
            id,
            request,
        });
    }

    /// The last segment overlapping the range.
    fn last_segment(&self, g: &Geometry) -> u64 {
        (self.end - 1) / g.segment_size
    }

    /// The file's geometry if it was uploaded with the guessed segment size (and zfec).
    fn guessed_geometry(&self) -> Option<Geometry> {
        Geometry::with_block_len(
            self.file.size,
            self.file.k,
            self.file.n,
            self.config.segment_size_guess,
            // novelpoly rounds blocks up to whole 16-bit symbols; zfec keeps them exact
            &|len| len,
        )
        .ok()
    }

    /// What to read from a share we know nothing about yet: everything segment `self.segment`
    /// needs, from the real geometry if known, else from a guess.
    fn first_ranges(&self) -> Vec<ReadRange> {
        let to_end = |offset: u64| ReadRange {
            offset,
            length: u64::MAX - offset,
        };
        let (g, exact) = match self.geometry {
            Some(g) => (g, true),
            None => match self.guessed_geometry() {
                Some(g) => (g, false),
                None => return vec![to_end(0)],
            },
        };
        if g.num_segments == 1 {
            return vec![to_end(0)];
        }
        let layout = ShareLayout::new(&g, 0);
        let s = self.segment;
        let header = ReadRange {
            offset: 0,
            length: layout.header.header_len(),
        };
        let block = ReadRange {
            offset: layout.block_offset(s),
            length: g.block_len(s),
        };
        // A guessed trailer starts a little early in case blocks were rounded up by the codec.
        let slack = if exact { 0 } else { 2 * g.num_segments + 64 };
        let trailer = to_end(layout.header.crypttext_hash_tree.saturating_sub(slack));
        if s == 0 {
            vec![
                ReadRange {
                    offset: 0,
                    length: block.offset + block.length,
                },
                trailer,
            ]
        } else {
            vec![header, block, trailer]
        }
    }

    /// Byte ranges share `sh` still lacks for the current segment.
    fn missing_ranges(&self, sh: u16) -> Vec<ReadRange> {
        let share = &self.shares[&sh];
        let Some(regions) = share.regions else {
            return if share.data.get(Range::new(0, 4)).is_none() {
                self.first_ranges()
            } else {
                Vec::new()
            };
        };
        let mut wanted = vec![regions.ueb_length_field()];
        if let Some(ueb) = regions.ueb(&share.data) {
            if self.ueb.is_none() {
                wanted.push(ueb);
            }
        }
        if share.verifier.is_none() {
            wanted.push(regions.share_hashes());
            wanted.push(regions.block_tree());
        }
        if self.crypttext_tree.is_none() {
            wanted.push(regions.crypttext_tree());
        }
        if let Some(g) = self.geometry {
            if self.segment <= self.last_segment(&g) && share.verified_segment != Some(self.segment)
            {
                wanted.push(regions.block(self.segment, g.block_len(self.segment)));
            }
        }
        wanted
            .into_iter()
            .filter(|r| r.length > 0 && share.data.get(*r).is_none())
            .map(|r| ReadRange {
                offset: r.offset,
                length: r.length,
            })
            .collect()
    }

    fn fail(&mut self, e: DownloadError) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.pending.clear();
        self.shares.clear();
        self.events.push_back(DownloadEvent::Failed(e));
    }

    // ---- polls ----
}

/// Outcome of checking one share.
enum ShareCheck {
    /// Some bytes have not arrived yet.
    Missing,
    /// The share is bad; use another.
    Corrupt(IntegrityError),
    /// The whole download cannot go on.
    Fatal(DownloadError),
}

fn layout_error(shnum: u16, source: LayoutError) -> ShareCheck {
    ShareCheck::Corrupt(IntegrityError::Layout {
        shnum: shnum.into(),
        source,
    })
}

impl crate::op::ClientOp for Download {
    type Event = DownloadEvent;

    /// A server answered request `id`.
    fn handle_input(&mut self, now: Instant, from: ServerId, id: RequestId, response: Response) {
        let Some(p) = self.pending.remove(&id) else {
            return;
        };
        if p.server != from || self.finished {
            return;
        }
        if let Some(info) = self.servers.get_mut(&from) {
            info.busy = false;
        }
        if let Some(sh) = p.shnum {
            if let Some(share) = self.shares.get_mut(&sh) {
                share.fetching = false;
            }
        }
        match response {
            Response::ImmutableRead { shares, held } => {
                if let Some(info) = self.servers.get_mut(&from) {
                    info.held = held.into_iter().collect();
                }
                // The server no longer has a share we were reading: forget it (asking again
                // would loop forever) and let discovery find another.
                if let Some(sh) = p.shnum {
                    if !shares.iter().any(|r| r.shnum == sh) {
                        self.shares.remove(&sh);
                    }
                }
                for read in shares {
                    let known_elsewhere = self
                        .shares
                        .get(&read.shnum)
                        .is_some_and(|s| s.server != from);
                    if known_elsewhere
                        || self.corrupt.contains(&read.shnum)
                        || usize::from(read.shnum) >= self.file.n
                    {
                        continue;
                    }
                    let share = self.shares.entry(read.shnum).or_insert_with(|| Share {
                        server: from,
                        data: SparseShare::new(),
                        regions: None,
                        verifier: None,
                        block_tree: None,
                        verified_segment: None,
                        fetching: false,
                    });
                    share.data.share_len = Some(read.share_len);
                    for (range, chunk) in p.ranges.iter().zip(read.chunks) {
                        share.data.insert(range.offset, chunk);
                    }
                }
                // A server that answers a targeted read without the bytes asked for (short of
                // the share's end) will not do better next time: stop using that share.
                if let Some(sh) = p.shnum {
                    let incomplete = self.shares.get(&sh).is_some_and(|share| {
                        p.ranges
                            .iter()
                            .any(|r| share.data.get(Range::new(r.offset, r.length)).is_none())
                    });
                    if incomplete {
                        self.shares.remove(&sh);
                        self.events.push_back(DownloadEvent::ServerProblem {
                            server: from,
                            problem: format!("share {sh}: the server returned less than was asked"),
                        });
                    }
                }
            }
            Response::Error { kind, message } => {
                self.events.push_back(DownloadEvent::ServerProblem {
                    server: from,
                    problem: format!("{kind:?}: {message}"),
                });
                if let Some(sh) = p.shnum {
                    self.shares.remove(&sh);
                }
            }
            other => self.lose_server(from, &format!("unexpected response {other:?}")),
        }
        self.step(now);
    }

    /// The connection to `server` broke.
    fn handle_server_lost(&mut self, now: Instant, server: ServerId) {
        self.lose_server(server, "connection lost");
        self.step(now);
    }

    /// Call when [`Download::poll_timeout`]'s instant has passed.
    fn handle_timeout(&mut self, now: Instant) {
        let expired: BTreeSet<ServerId> = self
            .pending
            .values()
            .filter(|p| p.deadline <= now)
            .map(|p| p.server)
            .collect();
        for server in expired {
            self.lose_server(server, "request timed out");
        }
        self.step(now);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    fn poll_event(&mut self) -> Option<DownloadEvent> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.deadline).min()
    }
}
