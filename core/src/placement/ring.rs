//! The permuted ring: the order in which a client considers storage servers for one file.
//!
//! Every client sorts the servers by `SHA1(storage_index || permutation_seed)`, so all clients
//! agree (without talking to each other) on which servers hold a given file's shares, while
//! different files land on different servers. The seed is whatever the server announced in
//! `permutation-seed-base32` (decoded once); see tahoe-formats.md §7.1. Changing this order would
//! make existing shares hard to find, which is why it is pinned by Tahoe's own test vectors below.

use std::collections::BTreeSet;
use std::fmt;

use sha1::{Digest, Sha1};

/// A storage server's identity: 32 bytes (the node's Ed25519 public key for modern servers).
///
/// Ordered by bytes so it can key a `BTreeMap` and break ties deterministically.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerId(pub [u8; 32]);

impl fmt::Debug for ServerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServerId({self})")
    }
}

impl fmt::Display for ServerId {
    /// Lower-case hex of the first 8 bytes: enough to tell servers apart in logs and errors.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// What the ring needs to know about a server: who it is and the seed it announced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerDescriptor {
    /// The server's identity.
    pub id: ServerId,
    /// The announced permutation seed, already decoded from `permutation-seed-base32` (for modern
    /// Tahoe servers this is the 52 ASCII bytes of the base32 public key, not the raw key).
    pub permutation_seed: Vec<u8>,
}

/// The sort key of one server on the ring of one file: `SHA1(storage_index || seed)`.
pub fn ring_key(storage_index: &[u8; 16], permutation_seed: &[u8]) -> [u8; 20] {
    key_for(storage_index, permutation_seed)
}

/// The servers in ring order for `storage_index`: ascending SHA-1 key, ties broken by id.
///
/// A server listed twice (same id) appears once, at its best position.
pub fn permuted_order(storage_index: &[u8; 16], servers: &[ServerDescriptor]) -> Vec<ServerId> {
    permute(storage_index, servers, &BTreeSet::new())
}

/// Like [`permuted_order`], but `preferred` servers (the client's `preferred_peers`) come first,
/// each group in ring order.
pub fn permuted_order_preferring(
    storage_index: &[u8; 16],
    servers: &[ServerDescriptor],
    preferred: &BTreeSet<ServerId>,
) -> Vec<ServerId> {
    permute(storage_index, servers, preferred)
}

fn key_for(prefix: &[u8], seed: &[u8]) -> [u8; 20] {
    let mut h = Sha1::new();
    h.update(prefix);
    h.update(seed);
    h.finalize().into()
}

/// The ring for any prefix bytes; public callers always pass a 16-byte storage index, but Tahoe's
/// published vectors use short strings, which the tests feed through here.
fn permute(
    prefix: &[u8],
    servers: &[ServerDescriptor],
    preferred: &BTreeSet<ServerId>,
) -> Vec<ServerId> {
    let mut keyed: Vec<(bool, [u8; 20], ServerId)> = servers
        .iter()
        .map(|s| {
            (
                !preferred.contains(&s.id),
                key_for(prefix, &s.permutation_seed),
                s.id,
            )
        })
        .collect();
    keyed.sort_unstable();
    let mut seen = BTreeSet::new();
    keyed
        .into_iter()
        .filter(|(_, _, id)| seen.insert(*id))
        .map(|(_, _, id)| id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8) -> ServerId {
        ServerId([b; 32])
    }

    fn desc(b: u8, seed: &[u8]) -> ServerDescriptor {
        ServerDescriptor {
            id: id(b),
            permutation_seed: seed.to_vec(),
        }
    }

    /// Tahoe's test_client.py `test_permute`: seeds b"0".."4", storage-index strings "one"/"two".
    #[test]
    fn matches_tahoe_published_order() {
        let servers: Vec<_> = (0..5u8).map(|i| desc(b'0' + i, &[b'0' + i])).collect();
        let one = permute(b"one", &servers, &BTreeSet::new());
        let two = permute(b"two", &servers, &BTreeSet::new());
        let names = |v: Vec<ServerId>| v.iter().map(|s| s.0[0]).collect::<Vec<u8>>();
        assert_eq!(names(one), b"31042".to_vec());
        assert_eq!(names(two), b"04213".to_vec());
    }

    /// Tahoe's `test_permute_with_preferred`: servers "1" and "4" preferred.
    #[test]
    fn preferred_servers_come_first_in_ring_order() {
        let servers: Vec<_> = (0..5u8).map(|i| desc(b'0' + i, &[b'0' + i])).collect();
        let preferred: BTreeSet<_> = [id(b'1'), id(b'4')].into_iter().collect();
        let names = |v: Vec<ServerId>| v.iter().map(|s| s.0[0]).collect::<Vec<u8>>();
        assert_eq!(names(permute(b"one", &servers, &preferred)), b"14302");
        assert_eq!(names(permute(b"two", &servers, &preferred)), b"41023");
    }

    /// Keys computed independently (Python hashlib) for SI = 00 01 .. 0f and SI = ff * 16:
    /// alpha ed737fb0.., beta 6ad77d3d.., gamma d9804097.., delta 4b6d0f70..  (first SI)
    /// alpha 525d6977.., beta dabdd9f4.., gamma 5d6cf189.., delta 2928eb95..  (second SI)
    #[test]
    fn order_follows_sha1_and_changes_with_storage_index() {
        let servers = vec![
            desc(1, b"alpha"),
            desc(2, b"beta"),
            desc(3, b"gamma"),
            desc(4, b"delta"),
        ];
        let si_a: [u8; 16] = core::array::from_fn(|i| i as u8);
        let si_b = [0xffu8; 16];
        assert_eq!(&ring_key(&si_a, b"delta")[..4], &[0x4b, 0x6d, 0x0f, 0x70]);
        assert_eq!(&ring_key(&si_b, b"delta")[..4], &[0x29, 0x28, 0xeb, 0x95]);
        assert_eq!(
            permuted_order(&si_a, &servers),
            vec![id(4), id(2), id(3), id(1)]
        );
        assert_eq!(
            permuted_order(&si_b, &servers),
            vec![id(4), id(1), id(3), id(2)]
        );
    }

    #[test]
    fn equal_seeds_tie_break_by_id_and_duplicates_collapse() {
        let si = [7u8; 16];
        let servers = vec![desc(9, b"same"), desc(3, b"same"), desc(3, b"same")];
        assert_eq!(permuted_order(&si, &servers), vec![id(3), id(9)]);
        assert!(permuted_order(&si, &[]).is_empty());
    }
}
