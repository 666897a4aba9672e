//! Leases of the disk share store, kept in the store database ([`crate::db`]).
//!
//! One row per (storage index, share number, renew secret) with the cancel secret and the expiry.
//! Only committed shares have rows; an upload's leases live in memory until its commit (see
//! [`crate::disk_store`]), so an interrupted upload never leaves lease rows behind.
//!
//! **Secrets are stored as SHA-256 digests, never in clear**, and a presented secret is compared
//! by hashing it. Whoever copies `leases.db` therefore learns nothing that lets them renew or
//! cancel a lease (Tahoe's container v2 does the same with BLAKE2b). A consequence: the
//! [`Lease`] values this module returns carry the digests in their `renew_secret` and
//! `cancel_secret` fields, not the secrets.
//!
//! Times are the runtimes' convention: microseconds since the Unix epoch, stored as SQLite
//! integers (saturating at `i64::MAX`).
//!
//! Durability: a lease written is visible at once and durable after the next group sync
//! ([`crate::group_commit`]); the disk store waits for (or hands out a ticket for) that sync
//! before a lease is acknowledged.

use std::time::Duration;

use lafs_core::store::{Lease, StoreError};
use lafs_core::time::Instant;
use lafs_core::wire::StorageIndex;
use rusqlite::{params, Connection, OptionalExtension};

use crate::db::StoreDb;
use sha2::{Digest, Sha256};

/// Adds a lease row, or moves the expiry of the row with the same renew secret later.
const UPSERT: &str =
    "INSERT INTO leases (storage_index, shnum, renew_hash, cancel_hash, expires_us)
     VALUES (?1, ?2, ?3, ?4, ?5)
     ON CONFLICT (storage_index, shnum, renew_hash)
     DO UPDATE SET expires_us = MAX(expires_us, excluded.expires_us)";

/// A renewal: adds the lease row, or moves its expiry later, but only by more than `?6`
/// microseconds. A renewal that would change the expiry by less writes nothing, so the
/// transaction has no pages to commit and costs no sync of the log: a directory edited many
/// times a day renews its leases once a day, not at every edit.
const RENEW: &str = "INSERT INTO leases (storage_index, shnum, renew_hash, cancel_hash, expires_us)
     VALUES (?1, ?2, ?3, ?4, ?5)
     ON CONFLICT (storage_index, shnum, renew_hash)
     DO UPDATE SET expires_us = excluded.expires_us
     WHERE excluded.expires_us > expires_us + ?6";

/// The disk store's default [`StoreDb::set_renewal_granularity`] (a database opened alone
/// records every renewal): a lease is renewed at most once a day.
pub const RENEWAL_GRANULARITY: Duration = Duration::from_secs(24 * 3600);

/// SHA-256 of a lease secret: the form in which secrets are stored and compared.
pub fn hash_secret(secret: &[u8; 32]) -> [u8; 32] {
    Sha256::digest(secret).into()
}

/// A lease as stored: digests of its secrets, and its expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredLease {
    pub renew_hash: [u8; 32],
    pub cancel_hash: [u8; 32],
    pub expires: Instant,
}

impl StoredLease {
    /// Hashes the secrets of a lease as presented by a client.
    pub fn from_lease(lease: &Lease) -> Self {
        StoredLease {
            renew_hash: hash_secret(&lease.renew_secret),
            cancel_hash: hash_secret(&lease.cancel_secret),
            expires: lease.expires,
        }
    }

    /// As the core's lease type, with the digests in place of the secrets.
    pub fn to_lease(&self) -> Lease {
        Lease {
            renew_secret: self.renew_hash,
            cancel_secret: self.cancel_hash,
            expires: self.expires,
        }
    }
}

/// Adds `lease` to `leases`, or renews the one with the same renew secret (its expiry only
/// moves later; its cancel secret stays the first one given), as the database does.
pub fn merge_lease(leases: &mut Vec<StoredLease>, lease: StoredLease) {
    match leases.iter_mut().find(|l| l.renew_hash == lease.renew_hash) {
        Some(existing) => existing.expires = existing.expires.max(lease.expires),
        None => leases.push(lease),
    }
}

fn to_sql_time(t: Instant) -> i64 {
    i64::try_from(t.0).unwrap_or(i64::MAX)
}

fn from_sql_time(t: i64) -> Instant {
    Instant(u64::try_from(t).unwrap_or(0))
}

impl StoreDb {
    /// Replaces every lease of a share with `leases`, atomically (used when a share commits).
    pub fn set_share_leases(
        &mut self,
        si: &StorageIndex,
        shnum: u16,
        leases: &[StoredLease],
    ) -> Result<(), StoreError> {
        self.set_leases_of_shares(si, &[(shnum, leases.to_vec())])
    }

    /// Replaces every lease of each share of `si` named in `shares` with the leases given for
    /// it, in one transaction: used when a batch of shares commits.
    pub fn set_leases_of_shares(
        &mut self,
        si: &StorageIndex,
        shares: &[(u16, Vec<StoredLease>)],
    ) -> Result<(), StoreError> {
        self.write("writing leases to", |tx| replace_leases(tx, si, shares))
    }

    /// Adds a lease to a share, or renews the one with the same renew secret (expiry only moves
    /// later; the cancel secret stays the first one given).
    pub fn add_or_renew(
        &mut self,
        si: &StorageIndex,
        shnum: u16,
        lease: &StoredLease,
    ) -> Result<(), StoreError> {
        self.add_or_renew_shares(si, &[shnum], lease)
    }

    /// Renewals that would move an expiry later by at most `granularity` are skipped (see
    /// [`RENEW`]); zero renews every time.
    pub fn set_renewal_granularity(&mut self, granularity: Duration) {
        self.renewal_granularity_us = to_sql_time(Instant(
            u64::try_from(granularity.as_micros()).unwrap_or(u64::MAX),
        ));
    }

    /// [`StoreDb::add_or_renew`] on several shares of `si`, in one transaction.
    pub fn add_or_renew_shares(
        &mut self,
        si: &StorageIndex,
        shnums: &[u16],
        lease: &StoredLease,
    ) -> Result<(), StoreError> {
        let granularity = self.renewal_granularity_us;
        self.write("writing a lease to", |tx| {
            let mut insert = tx.prepare_cached(RENEW)?;
            for shnum in shnums {
                insert.execute(params![
                    &si[..],
                    shnum,
                    &lease.renew_hash[..],
                    &lease.cancel_hash[..],
                    to_sql_time(lease.expires),
                    granularity,
                ])?;
            }
            Ok(())
        })
    }

    /// The leases of one share, in the order of their renew-secret digests.
    pub fn share_leases(
        &self,
        si: &StorageIndex,
        shnum: u16,
    ) -> Result<Vec<StoredLease>, StoreError> {
        let e = |e| self.err("reading leases from", e);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT renew_hash, cancel_hash, expires_us FROM leases
                 WHERE storage_index = ?1 AND shnum = ?2 ORDER BY renew_hash",
            )
            .map_err(e)?;
        let rows = stmt
            .query_map(params![&si[..], shnum], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .map_err(e)?;
        let mut out = Vec::new();
        for row in rows {
            let (renew, cancel, expires) = row.map_err(e)?;
            out.push(StoredLease {
                renew_hash: self.digest(renew)?,
                cancel_hash: self.digest(cancel)?,
                expires: from_sql_time(expires),
            });
        }
        Ok(out)
    }

    fn digest(&self, bytes: Vec<u8>) -> Result<[u8; 32], StoreError> {
        <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
            StoreError::Io(format!(
                "{}: a lease secret digest is {} bytes, not 32 (database damaged?)",
                self.path.display(),
                bytes.len()
            ))
        })
    }

    /// Removes the leases of `si` whose cancel secret hashes to `cancel_hash`; returns the share
    /// numbers that lost a lease, each with how many leases it has left.
    pub fn cancel(
        &mut self,
        si: &StorageIndex,
        cancel_hash: &[u8; 32],
    ) -> Result<Vec<(u16, u64)>, StoreError> {
        self.write("cancelling leases in", |tx| {
            let shnums: Vec<u16> = tx
                .prepare(
                    "SELECT DISTINCT shnum FROM leases
                     WHERE storage_index = ?1 AND cancel_hash = ?2 ORDER BY shnum",
                )?
                .query_map(params![&si[..], &cancel_hash[..]], |r| r.get::<_, u16>(0))?
                .collect::<Result<_, _>>()?;
            tx.execute(
                "DELETE FROM leases WHERE storage_index = ?1 AND cancel_hash = ?2",
                params![&si[..], &cancel_hash[..]],
            )?;
            let mut out = Vec::with_capacity(shnums.len());
            for shnum in shnums {
                let left: u64 = tx.query_row(
                    "SELECT COUNT(*) FROM leases WHERE storage_index = ?1 AND shnum = ?2",
                    params![&si[..], shnum],
                    |r| r.get(0),
                )?;
                out.push((shnum, left));
            }
            Ok(out)
        })
    }

    /// Forgets every lease of a share (it was deleted).
    pub fn remove_share(&mut self, si: &StorageIndex, shnum: u16) -> Result<(), StoreError> {
        self.remove_shares(si, &[shnum])
    }

    /// Forgets every lease of each share of `si` in `shnums`, in one transaction.
    pub fn remove_shares(&mut self, si: &StorageIndex, shnums: &[u16]) -> Result<(), StoreError> {
        self.write("removing leases from", |tx| remove_leases(tx, si, shnums))
    }

    /// Shares that have leases, all of which expired at or before `now`.
    pub fn expired_shares(&self, now: Instant) -> Result<Vec<(StorageIndex, u16)>, StoreError> {
        self.keys(
            "SELECT storage_index, shnum FROM leases GROUP BY storage_index, shnum
             HAVING MAX(expires_us) <= ?1 ORDER BY storage_index, shnum",
            Some(to_sql_time(now)),
        )
    }

    /// Every share that has at least one lease row.
    pub fn shares_with_leases(&self) -> Result<Vec<(StorageIndex, u16)>, StoreError> {
        self.keys(
            "SELECT DISTINCT storage_index, shnum FROM leases ORDER BY storage_index, shnum",
            None,
        )
    }

    fn keys(&self, sql: &str, arg: Option<i64>) -> Result<Vec<(StorageIndex, u16)>, StoreError> {
        let e = |e| self.err("reading leases from", e);
        let mut stmt = self.conn.prepare(sql).map_err(e)?;
        let map = |r: &rusqlite::Row<'_>| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, u16>(1)?));
        let rows: Result<Vec<(Vec<u8>, u16)>, _> = match arg {
            Some(a) => stmt.query_map([a], map).map_err(e)?.collect(),
            None => stmt.query_map([], map).map_err(e)?.collect(),
        };
        let rows = rows.map_err(e)?;
        // A malformed storage index cannot name a share file; such rows are skipped.
        Ok(rows
            .into_iter()
            .filter_map(|(si, shnum)| Some((StorageIndex::try_from(si.as_slice()).ok()?, shnum)))
            .collect())
    }

    /// Number of lease rows in the database (for tests and inspection).
    pub fn lease_count(&self) -> Result<u64, StoreError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM leases", [], |r| r.get(0))
            .optional()
            .map(|n| n.unwrap_or(0))
            .map_err(|e| self.err("counting leases in", e))
    }
}

/// Replaces the leases of each share of `si` named in `shares` (inside a transaction).
pub(crate) fn replace_leases(
    tx: &Connection,
    si: &StorageIndex,
    shares: &[(u16, Vec<StoredLease>)],
) -> rusqlite::Result<()> {
    remove_leases(tx, si, &shares.iter().map(|(n, _)| *n).collect::<Vec<_>>())?;
    let mut insert = tx.prepare_cached(UPSERT)?;
    for (shnum, leases) in shares {
        for l in leases {
            insert.execute(params![
                &si[..],
                shnum,
                &l.renew_hash[..],
                &l.cancel_hash[..],
                to_sql_time(l.expires)
            ])?;
        }
    }
    Ok(())
}

/// Forgets every lease of each share of `si` in `shnums` (inside a transaction).
pub(crate) fn remove_leases(
    tx: &Connection,
    si: &StorageIndex,
    shnums: &[u16],
) -> rusqlite::Result<()> {
    let mut delete =
        tx.prepare_cached("DELETE FROM leases WHERE storage_index = ?1 AND shnum = ?2")?;
    for shnum in shnums {
        delete.execute(params![&si[..], shnum])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SI: StorageIndex = [3; 16];

    fn lease(renew: u8, cancel: u8, expires: u64) -> StoredLease {
        StoredLease::from_lease(&Lease {
            renew_secret: [renew; 32],
            cancel_secret: [cancel; 32],
            expires: Instant(expires),
        })
    }

    fn db() -> (tempfile::TempDir, StoreDb) {
        let dir = tempfile::tempdir().unwrap();
        let db = StoreDb::open(&dir.path().join("leases.db")).unwrap();
        (dir, db)
    }

    #[test]
    fn renew_keeps_the_later_expiry_and_the_first_cancel_secret() {
        let (_dir, mut db) = db();
        db.add_or_renew(&SI, 0, &lease(1, 2, 100)).unwrap();
        db.add_or_renew(&SI, 0, &lease(1, 9, 50)).unwrap();
        assert_eq!(db.share_leases(&SI, 0).unwrap(), vec![lease(1, 2, 100)]);
        db.add_or_renew(&SI, 0, &lease(1, 9, 150)).unwrap();
        assert_eq!(db.share_leases(&SI, 0).unwrap(), vec![lease(1, 2, 150)]);
        assert_eq!(db.share_leases(&SI, 1).unwrap(), vec![]);
    }

    #[test]
    fn renewals_within_the_granularity_write_nothing() {
        let (dir, mut db) = db();
        db.set_renewal_granularity(Duration::from_micros(1000));
        db.add_or_renew(&SI, 0, &lease(1, 2, 10_000)).unwrap();
        let wal = dir.path().join("leases.db-wal");
        let wal_len = || std::fs::metadata(&wal).map_or(0, |m| m.len());
        let before = wal_len();
        db.add_or_renew(&SI, 0, &lease(1, 2, 10_900)).unwrap();
        assert_eq!(db.share_leases(&SI, 0).unwrap(), vec![lease(1, 2, 10_000)]);
        assert_eq!(
            wal_len(),
            before,
            "a skipped renewal appends nothing to the log"
        );
        db.add_or_renew(&SI, 0, &lease(1, 2, 11_001)).unwrap();
        assert_eq!(db.share_leases(&SI, 0).unwrap(), vec![lease(1, 2, 11_001)]);
        // A new lease (another renew secret) is always recorded.
        db.add_or_renew(&SI, 0, &lease(5, 5, 11_002)).unwrap();
        assert_eq!(db.share_leases(&SI, 0).unwrap().len(), 2);
    }

    #[test]
    fn secrets_are_stored_only_as_digests() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leases.db");
        let mut db = StoreDb::open(&path).unwrap();
        db.add_or_renew(&SI, 0, &lease(0xab, 0xcd, 1)).unwrap();
        drop(db);
        let mut raw = Vec::new();
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            raw.extend(std::fs::read(entry.unwrap().path()).unwrap());
        }
        let has = |needle: &[u8]| raw.windows(needle.len()).any(|w| w == needle);
        assert!(!has(&[0xab; 32]) && !has(&[0xcd; 32]));
        assert!(has(&hash_secret(&[0xab; 32])));
    }

    #[test]
    fn cancel_reports_leases_left_and_expiry_finds_dead_shares() {
        let (_dir, mut db) = db();
        db.set_share_leases(&SI, 0, &[lease(1, 2, 100), lease(3, 4, 300)])
            .unwrap();
        db.set_share_leases(&SI, 1, &[lease(1, 2, 100)]).unwrap();
        assert_eq!(db.expired_shares(Instant(99)).unwrap(), vec![]);
        assert_eq!(db.expired_shares(Instant(100)).unwrap(), vec![(SI, 1)]);
        assert_eq!(db.cancel(&SI, &hash_secret(&[9; 32])).unwrap(), vec![]);
        assert_eq!(
            db.cancel(&SI, &hash_secret(&[2; 32])).unwrap(),
            vec![(0, 1), (1, 0)]
        );
        assert_eq!(db.shares_with_leases().unwrap(), vec![(SI, 0)]);
        db.remove_share(&SI, 0).unwrap();
        assert_eq!(db.lease_count().unwrap(), 0);
    }

    #[test]
    fn far_future_expiry_saturates_instead_of_failing() {
        let (_dir, mut db) = db();
        db.add_or_renew(&SI, 0, &lease(1, 2, u64::MAX)).unwrap();
        let got = db.share_leases(&SI, 0).unwrap();
        assert_eq!(got[0].expires, Instant(i64::MAX as u64));
        assert_eq!(db.expired_shares(Instant(u64::MAX)).unwrap(), vec![(SI, 0)]);
    }
}
