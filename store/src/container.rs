//! Tahoe's mutable share container (spec §8.7), as the disk store keeps mutable shares that live
//! in files: 32-byte magic, the 20-byte node id that recorded the write enabler, the 32-byte
//! write enabler, data length and extra-lease offset (`u64` big-endian), four 92-byte lease
//! slots, the data at offset 468, then the extra-lease block (a `u32` count and its leases).
//! Our leases live in the store database, so the lease slots we write are zero and the
//! extra-lease count is 0; lease records in containers copied from Tahoe are kept (moved along
//! when the data grows) but not honoured.
//!
//! An immutable share file holds the share data only (no container: its leases are in the
//! database too); the two kinds are told apart by the magic, and an upload whose bytes would
//! begin with the mutable magic is refused at commit.

use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::FileExt as _;
use std::path::Path;

use lafs_core::store::{EnablerRecord, MutableShareChange, StoreError};

use crate::durable_fs::io_error;

/// Magic of Tahoe's mutable container v1 (read, never created).
const MUTABLE_MAGIC_V1: &[u8; 32] = b"Tahoe mutable container v1\n\x75\x09\x44\x03\x8e";
/// Magic of Tahoe's mutable container v2 (its last 5 bytes are a tagged hash, spec §8.7).
const MUTABLE_MAGIC_V2: &[u8; 32] = b"Tahoe mutable container v2\n\xc3\x55\x21\x99\x25";
/// Magic, node id, write enabler, data length, extra-lease offset.
pub const MUTABLE_HEADER_LEN: usize = 100;
/// Where a mutable container's data starts: the header and four 92-byte lease slots.
pub const MUTABLE_DATA_OFFSET: u64 = 468;
const DATA_LENGTH_FIELD: u64 = 84;
/// Size of an empty extra-lease block (its `u32` count).
pub const EMPTY_LEASE_BLOCK: u64 = 4;
const MUTABLE_LEASE_LEN: u64 = 92;

pub fn is_mutable_magic(bytes: &[u8]) -> bool {
    bytes.len() >= 32 && (&bytes[..32] == MUTABLE_MAGIC_V1 || &bytes[..32] == MUTABLE_MAGIC_V2)
}

/// The fixed header of a mutable container.
#[derive(Clone, Copy, Debug)]
pub struct MutableHeader {
    pub enabler: EnablerRecord,
    pub data_len: u64,
    pub extra_lease_offset: u64,
}

impl MutableHeader {
    pub fn parse(bytes: &[u8; MUTABLE_HEADER_LEN]) -> Self {
        let mut node_id = [0u8; 20];
        node_id.copy_from_slice(&bytes[32..52]);
        let mut write_enabler = [0u8; 32];
        write_enabler.copy_from_slice(&bytes[52..84]);
        let be = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            u64::from_be_bytes(b)
        };
        MutableHeader {
            enabler: EnablerRecord {
                write_enabler,
                node_id,
            },
            data_len: be(84),
            extra_lease_offset: be(92),
        }
    }

    /// A new v2 header for `data_len` bytes with the extra-lease block right after the data.
    pub fn encode_new(enabler: &EnablerRecord, data_len: u64) -> [u8; MUTABLE_HEADER_LEN] {
        let mut out = [0u8; MUTABLE_HEADER_LEN];
        out[..32].copy_from_slice(MUTABLE_MAGIC_V2);
        out[32..52].copy_from_slice(&enabler.node_id);
        out[52..84].copy_from_slice(&enabler.write_enabler);
        out[84..92].copy_from_slice(&data_len.to_be_bytes());
        out[92..100].copy_from_slice(&(MUTABLE_DATA_OFFSET + data_len).to_be_bytes());
        out
    }
}

/// What a share file holds, judged by its first bytes.
#[derive(Debug)]
pub enum ShareFile {
    Immutable,
    Mutable(MutableHeader),
}

/// Reads enough of a share file of `file_len` bytes to tell its kind, and a mutable
/// container's header (checked against the file's length).
pub fn sniff(file: &File, path: &Path, file_len: u64) -> Result<ShareFile, StoreError> {
    if file_len < 32 {
        return Ok(ShareFile::Immutable);
    }
    let mut magic = [0u8; 32];
    file.read_exact_at(&mut magic, 0)
        .map_err(|e| io_error("reading share", path, e))?;
    if !is_mutable_magic(&magic) {
        return Ok(ShareFile::Immutable);
    }
    let damaged = |what: &str| {
        StoreError::Io(format!(
            "{}: damaged mutable container: {what}",
            path.display()
        ))
    };
    if file_len < MUTABLE_DATA_OFFSET {
        return Err(damaged("shorter than its header and lease slots"));
    }
    let mut bytes = [0u8; MUTABLE_HEADER_LEN];
    file.read_exact_at(&mut bytes, 0)
        .map_err(|e| io_error("reading share", path, e))?;
    let header = MutableHeader::parse(&bytes);
    if MUTABLE_DATA_OFFSET
        .checked_add(header.data_len)
        .is_none_or(|end| end > file_len)
    {
        return Err(damaged("its data length reaches past the end of the file"));
    }
    Ok(ShareFile::Mutable(header))
}

/// Opens a share file for reading with its length; `None` if there is none.
pub fn open_share(path: &Path) -> Result<Option<(File, u64)>, StoreError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("opening share", path, e)),
    };
    let len = file
        .metadata()
        .map_err(|e| io_error("reading metadata of", path, e))?
        .len();
    Ok(Some((file, len)))
}

/// The extra-lease block of a container (its count and records), to move along when the data
/// changes size. A block that cannot be valid (behind the data, or past the end of the file)
/// holds no lease we could use: it reads as empty.
pub fn read_lease_block(
    file: &File,
    path: &Path,
    header: &MutableHeader,
    file_len: u64,
) -> Result<Vec<u8>, StoreError> {
    let empty = vec![0u8; EMPTY_LEASE_BLOCK as usize];
    let at = header.extra_lease_offset;
    if at < MUTABLE_DATA_OFFSET + header.data_len || at.saturating_add(4) > file_len {
        return Ok(empty);
    }
    let mut count = [0u8; 4];
    file.read_exact_at(&mut count, at)
        .map_err(|e| io_error("reading leases of", path, e))?;
    let len = 4 + u64::from(u32::from_be_bytes(count)) * MUTABLE_LEASE_LEN;
    if at + len > file_len {
        return Ok(empty);
    }
    let mut block = vec![0u8; len as usize];
    file.read_exact_at(&mut block, at)
        .map_err(|e| io_error("reading leases of", path, e))?;
    Ok(block)
}

/// Reads a container's header (checked against the file's length); `Ok(None)` if the file is
/// not a mutable container.
pub fn read_header(file: &File, path: &Path) -> Result<Option<(MutableHeader, u64)>, StoreError> {
    let len = file
        .metadata()
        .map_err(|e| io_error("reading metadata of", path, e))?
        .len();
    match sniff(file, path, len)? {
        ShareFile::Mutable(header) => Ok(Some((header, len))),
        ShareFile::Immutable => Ok(None),
    }
}

/// Applies one change's writes and new length to the container in `file`. Not atomic: the store
/// only ever changes a private copy this way, then renames it over the share.
pub fn apply_change(
    file: &File,
    path: &Path,
    change: &MutableShareChange<'_>,
    max_share_size: u64,
) -> Result<(), StoreError> {
    let Some((header, file_len)) = read_header(file, path)? else {
        return Err(StoreError::Io(format!(
            "{}: not a mutable container",
            path.display()
        )));
    };
    let old = header.data_len;
    // The length the writes reach, then the one new_length leaves.
    let reach = change
        .writes
        .iter()
        .map(|w| w.offset.saturating_add(w.data.len() as u64))
        .fold(old, u64::max);
    let after = change.length_after(Some(old), max_share_size)?.unwrap_or(0);
    let write_data = || -> Result<(), StoreError> {
        for w in change.writes {
            if !w.data.is_empty() {
                file.write_all_at(&w.data, MUTABLE_DATA_OFFSET + w.offset)
                    .map_err(|e| io_error("writing share", path, e))?;
            }
        }
        Ok(())
    };
    if reach == old && after == old {
        // Same size: the bytes only.
        return write_data();
    }
    let at = MUTABLE_DATA_OFFSET + after;
    let mut fields = [0u8; 16];
    fields[..8].copy_from_slice(&after.to_be_bytes());
    fields[8..].copy_from_slice(&at.to_be_bytes());
    let block = read_lease_block(file, path, &header, file_len)?;
    // Cut what lies past the data (the lease block, stale bytes of an earlier truncation) so
    // that growing exposes zeros, as Tahoe's zero-fill does.
    file.set_len(MUTABLE_DATA_OFFSET + old)
        .and_then(|()| file.set_len(MUTABLE_DATA_OFFSET + reach))
        .map_err(|e| io_error("resizing share", path, e))?;
    write_data()?;
    file.write_all_at(&fields, DATA_LENGTH_FIELD)
        .and_then(|()| file.set_len(at))
        .and_then(|()| file.write_all_at(&block, at))
        .map_err(|e| io_error("writing share", path, e))
}

/// Writes a new container into the empty `file`: `enabler` recorded, `data`, an empty
/// extra-lease block. Its length.
pub fn write_new(
    file: &File,
    path: &Path,
    enabler: &EnablerRecord,
    data: &[u8],
) -> Result<u64, StoreError> {
    let len = data.len() as u64;
    let at = MUTABLE_DATA_OFFSET + len;
    let mut bytes = Vec::with_capacity((at + EMPTY_LEASE_BLOCK) as usize);
    bytes.extend_from_slice(&MutableHeader::encode_new(enabler, len));
    bytes.resize(MUTABLE_DATA_OFFSET as usize, 0);
    bytes.extend_from_slice(data);
    bytes.extend_from_slice(&[0; EMPTY_LEASE_BLOCK as usize]);
    file.write_all_at(&bytes, 0)
        .map_err(|e| io_error("writing share", path, e))?;
    Ok(at + EMPTY_LEASE_BLOCK)
}

/// Up to `length` bytes of a container's data from `offset`, cut at its end.
pub fn read_data(
    file: &File,
    path: &Path,
    header: &MutableHeader,
    offset: u64,
    length: u64,
) -> Result<Vec<u8>, StoreError> {
    read_range(
        file,
        path,
        MUTABLE_DATA_OFFSET,
        header.data_len,
        offset,
        length,
    )
}

/// Up to `length` bytes from `offset` of the `len` bytes stored from `base` in `file`, cut at
/// their end (empty past it).
pub fn read_range(
    file: &File,
    path: &Path,
    base: u64,
    len: u64,
    offset: u64,
    length: u64,
) -> Result<Vec<u8>, StoreError> {
    let start = offset.min(len);
    let end = offset.saturating_add(length).min(len).max(start);
    let Ok(count) = usize::try_from(end - start) else {
        return Err(StoreError::Io(format!(
            "{}: a read of {} bytes does not fit in memory",
            path.display(),
            end - start
        )));
    };
    let mut buf = vec![0u8; count];
    file.read_exact_at(&mut buf, base + start)
        .map_err(|e| io_error("reading share", path, e))?;
    Ok(buf)
}

/// Applies a change to a mutable share's data held in memory, as a container would: writes
/// past the end zero-fill (even empty ones extend to their offset), then a shorter
/// `new_length` truncates. `after` is the length the change leaves
/// ([`MutableShareChange::length_after`]); bytes past it are never materialised, so a write
/// far out that the same change truncates away costs no memory. Deletion
/// (`new_length == Some(0)`) is the caller's to handle.
pub fn apply_to_bytes(data: &mut Vec<u8>, change: &MutableShareChange<'_>, after: u64) {
    let after = after as usize;
    data.resize(after, 0);
    for w in change.writes {
        let start = usize::try_from(w.offset).unwrap_or(usize::MAX).min(after);
        let end = start.saturating_add(w.data.len()).min(after);
        data[start..end].copy_from_slice(&w.data[..end - start]);
    }
}
