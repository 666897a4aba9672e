//! The share index in the store database: one row per committed share (immutable or mutable),
//! saying where its bytes are (in the row, or in a file under `shares/`), how long it is and,
//! for a mutable share kept in a row, its write enabler. Reads find shares here, never by
//! listing directories.

use lafs_core::store::{EnablerRecord, StoreError};
use lafs_core::wire::StorageIndex;
use rusqlite::{params, Connection, OptionalExtension, Row};
use sha2::{Digest, Sha256};

use crate::db::StoreDb;

/// What the index says about one committed share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexedShare {
    pub shnum: u16,
    pub mutable: bool,
    /// The bytes are in the share's file (`shares/<p>/<SI>/<shnum>`), not in the row.
    pub in_file: bool,
    /// Data length. For a mutable share in a file, as of its last write here: the container's
    /// header is authoritative.
    pub length: u64,
    /// Bytes counted against the store's space (a file's length, or a row's data length).
    pub stored_bytes: u64,
    /// The write enabler of a mutable share kept in a row (a file keeps its own).
    pub enabler: Option<EnablerRecord>,
}

/// A row to insert or replace.
#[derive(Clone, Copy, Debug)]
pub struct ShareRow<'a> {
    pub shnum: u16,
    pub mutable: bool,
    pub length: u64,
    pub stored_bytes: u64,
    pub enabler: Option<&'a EnablerRecord>,
    /// The bytes, for a share kept in the row; `None` for a share in a file.
    pub data: Option<&'a [u8]>,
}

/// What a row's data is checked against when read: the first 16 bytes of its SHA-256 (SQLite
/// does not checksum its pages, so a bad sector would otherwise be served as share bytes).
fn row_checksum(data: &[u8]) -> [u8; 16] {
    let digest = Sha256::digest(data);
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

/// The error a damaged row reads as.
fn damaged_row() -> StoreError {
    StoreError::Io("the share's bytes no longer match their checksum (damaged on disk)".into())
}

/// Whether a store error says a row is damaged.
pub fn is_damaged_row(e: &StoreError) -> bool {
    *e == damaged_row()
}

/// A row's data and checksum, as read.
type RowBytes = (Option<Vec<u8>>, Option<Vec<u8>>);

const COLUMNS: &str = "shnum, mutable, in_file, length, stored_bytes, write_enabler, node_id";

fn to_sql(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<IndexedShare> {
    let enabler = match (
        r.get::<_, Option<Vec<u8>>>(5)?,
        r.get::<_, Option<Vec<u8>>>(6)?,
    ) {
        (Some(we), Some(node)) => Some(EnablerRecord {
            write_enabler: we.try_into().unwrap_or([0; 32]),
            node_id: node.try_into().unwrap_or([0; 20]),
        }),
        _ => None,
    };
    Ok(IndexedShare {
        shnum: r.get(0)?,
        mutable: r.get(1)?,
        in_file: r.get(2)?,
        length: u64::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
        stored_bytes: u64::try_from(r.get::<_, i64>(4)?).unwrap_or(0),
        enabler,
    })
}

impl StoreDb {
    /// The committed shares of `si`, ascending by share number.
    pub fn shares_of(&self, si: &StorageIndex) -> Result<Vec<IndexedShare>, StoreError> {
        let e = |e| self.err("reading the share index of", e);
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM shares WHERE storage_index = ?1 ORDER BY shnum"
            ))
            .map_err(e)?;
        let rows = stmt.query_map([&si[..]], from_row).map_err(e)?;
        rows.collect::<Result<_, _>>().map_err(e)
    }

    /// One committed share, if indexed.
    pub fn share(&self, si: &StorageIndex, shnum: u16) -> Result<Option<IndexedShare>, StoreError> {
        self.conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM shares WHERE storage_index = ?1 AND shnum = ?2"
            ))
            .and_then(|mut s| s.query_row(params![&si[..], shnum], from_row).optional())
            .map_err(|e| self.err("reading the share index of", e))
    }

    /// Up to `length` bytes from `offset` of a share kept in a row (cut at its end). The whole
    /// row is checked against its checksum first (rows are at most `small_share_max` bytes):
    /// a damaged row is [`StoreError::Io`] saying so, never wrong bytes.
    pub fn row_bytes(
        &self,
        si: &StorageIndex,
        shnum: u16,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>, StoreError> {
        let got: Option<RowBytes> = self
            .conn
            .prepare_cached(
                "SELECT data, checksum FROM shares WHERE storage_index = ?1 AND shnum = ?2",
            )
            .and_then(|mut s| {
                s.query_row(params![&si[..], shnum], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(|e| self.err("reading a share from", e))?;
        let Some((data, checksum)) = got else {
            return Err(StoreError::NotFound);
        };
        let data = data.unwrap_or_default();
        if checksum.as_deref() != Some(&row_checksum(&data)[..]) {
            return Err(damaged_row());
        }
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(data.len());
        let end = start
            .saturating_add(usize::try_from(length).unwrap_or(usize::MAX))
            .min(data.len());
        Ok(data[start..end].to_vec())
    }

    /// Moves a share's row to `quarantined_shares` and forgets its leases.
    pub fn quarantine_row(&mut self, si: &StorageIndex, shnum: u16) -> Result<(), StoreError> {
        self.write("setting a damaged share aside in", |tx| {
            tx.execute(
                "INSERT INTO quarantined_shares SELECT * FROM shares
                 WHERE storage_index = ?1 AND shnum = ?2",
                params![&si[..], shnum],
            )?;
            delete_share(tx, si, shnum)?;
            crate::leases::remove_leases(tx, si, &[shnum])
        })
    }

    /// Rows set aside as damaged.
    pub fn quarantined_rows(&self) -> Result<u64, StoreError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM quarantined_shares", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as u64)
            .map_err(|e| self.err("counting damaged shares in", e))
    }

    /// Every indexed share: storage index, share number, bytes stored, whether in a file.
    pub fn all_indexed(&self) -> Result<Vec<(StorageIndex, u16, u64, bool)>, StoreError> {
        self.indexed("")
    }

    /// The shares kept in files (the ones an open checks), as [`StoreDb::all_indexed`].
    pub fn file_shares(&self) -> Result<Vec<(StorageIndex, u16, u64, bool)>, StoreError> {
        self.indexed("WHERE in_file = 1")
    }

    fn indexed(&self, filter: &str) -> Result<Vec<(StorageIndex, u16, u64, bool)>, StoreError> {
        let e = |e| self.err("reading the share index of", e);
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT storage_index, shnum, stored_bytes, in_file FROM shares {filter}
                 ORDER BY storage_index, shnum"
            ))
            .map_err(e)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, u16>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, bool>(3)?,
                ))
            })
            .map_err(e)?;
        let mut out = Vec::new();
        for row in rows {
            let (si, shnum, bytes, in_file) = row.map_err(e)?;
            if let Ok(si) = StorageIndex::try_from(si.as_slice()) {
                out.push((si, shnum, u64::try_from(bytes).unwrap_or(0), in_file));
            }
        }
        Ok(out)
    }

    /// Number of indexed shares and their stored bytes.
    pub fn totals(&self) -> Result<(u64, u64), StoreError> {
        self.conn
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(stored_bytes), 0) FROM shares",
                [],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
            )
            .map(|(n, b)| (n as u64, b as u64))
            .map_err(|e| self.err("counting shares in", e))
    }

    /// Forgets lease rows of shares the index does not hold (an upload that never landed, a
    /// share removed by hand); how many rows went.
    pub fn prune_orphan_leases(&mut self) -> Result<usize, StoreError> {
        self.write("pruning leases in", |tx| {
            tx.execute(
                "DELETE FROM leases WHERE NOT EXISTS (SELECT 1 FROM shares s
                   WHERE s.storage_index = leases.storage_index AND s.shnum = leases.shnum)",
                [],
            )
        })
    }
}

/// Inserts or replaces a share's row (inside a transaction).
pub(crate) fn put_share(
    tx: &Connection,
    si: &StorageIndex,
    row: &ShareRow<'_>,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO shares
         (storage_index, shnum, mutable, in_file, length, stored_bytes, write_enabler, node_id,
          data, checksum)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        &si[..],
        row.shnum,
        row.mutable,
        row.data.is_none(),
        to_sql(row.length),
        to_sql(row.stored_bytes),
        row.enabler.map(|e| e.write_enabler.to_vec()),
        row.enabler.map(|e| e.node_id.to_vec()),
        row.data,
        row.data.map(|d| row_checksum(d).to_vec()),
    ])?;
    Ok(())
}

/// Removes a share's row (inside a transaction); its leases are the caller's to remove.
pub(crate) fn delete_share(tx: &Connection, si: &StorageIndex, shnum: u16) -> rusqlite::Result<()> {
    tx.prepare_cached("DELETE FROM shares WHERE storage_index = ?1 AND shnum = ?2")?
        .execute(params![&si[..], shnum])?;
    Ok(())
}
