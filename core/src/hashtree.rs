//! Tahoe's Merkle hash trees: construction with padding leaves, proofs, and incremental
//! verification against a trusted root.
//!
//! Shape: L leaves padded to P = next power of two (P = 1 for 0 or 1 leaves). Nodes are numbered
//! breadth-first in an array of 2P-1: node 0 is the root, children of i are 2i+1 and 2i+2, and leaf
//! j is node P-1+j. Padding leaf j is `tagged_hash("Merkle tree empty leaf", decimal j)`; inner
//! nodes are `tagged_pair_hash("Merkle tree internal node", left, right)`. A one-leaf tree is just
//! that leaf (its root is the leaf hash, unhashed).

use std::collections::BTreeMap;

use crate::crypto::derive::tags;
use crate::crypto::{tagged_hash, tagged_pair_hash};

pub type Hash = [u8; 32];

/// Why hashes offered for verification were not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashTreeError {
    #[error("hash tree node {node} does not match: data is corrupt or from another file")]
    BadHash { node: usize },
    #[error("cannot verify node {node}: its sibling {missing} is not known")]
    NotEnoughHashes { node: usize, missing: usize },
    #[error("node index {node} is outside a tree of {nodes} nodes")]
    OutOfRange { node: usize, nodes: usize },
}

/// Padding leaf for leaf position `i`.
pub fn empty_leaf_hash(i: usize) -> Hash {
    tagged_hash(tags::MERKLE_EMPTY_LEAF, i.to_string().as_bytes())
}

/// Inner node from its two children.
pub fn pair_hash(left: &Hash, right: &Hash) -> Hash {
    tagged_pair_hash(tags::MERKLE_INTERNAL_NODE, left, right)
}

/// Leaves after padding: the next power of two >= `leaves` (1 for 0 or 1).
pub fn padded_leaf_count(leaves: usize) -> usize {
    leaves.max(1).next_power_of_two()
}

/// Node count of a tree over `leaves` leaves (2P - 1).
pub fn node_count(leaves: usize) -> usize {
    2 * padded_leaf_count(leaves) - 1
}

fn parent(i: usize) -> usize {
    (i - 1) / 2
}

fn sibling(i: usize) -> usize {
    if i % 2 == 1 {
        i + 1
    } else {
        i - 1
    }
}

/// Node indices a verifier needs to check leaf `leaf` against the root: the sibling of every node
/// on the path, bottom-up, plus the leaf itself first when `include_leaf`. The root appears only as
/// the leaf of a one-leaf tree (Tahoe then stores it as the single share-hash entry).
pub fn needed_for_leaf(leaves: usize, leaf: usize, include_leaf: bool) -> Vec<usize> {
    let mut here = padded_leaf_count(leaves) - 1 + leaf;
    let mut out = Vec::new();
    if include_leaf {
        out.push(here);
    }
    while here != 0 {
        out.push(sibling(here));
        here = parent(here);
    }
    out
}

/// A complete tree, as stored in shares ("full tree": every node, root first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashTree {
    nodes: Vec<Hash>,
    leaves: usize,
}

impl HashTree {
    /// Build the tree over `leaves` (padded to a power of two).
    pub fn new(leaves: &[Hash]) -> Self {
        let p = padded_leaf_count(leaves.len());
        let mut nodes = vec![[0u8; 32]; 2 * p - 1];
        for j in 0..p {
            nodes[p - 1 + j] = leaves.get(j).copied().unwrap_or_else(|| empty_leaf_hash(j));
        }
        for i in (0..p - 1).rev() {
            nodes[i] = pair_hash(&nodes[2 * i + 1], &nodes[2 * i + 2]);
        }
        HashTree {
            nodes,
            leaves: leaves.len(),
        }
    }

    pub fn root(&self) -> Hash {
        self.nodes[0]
    }

    /// All 2P-1 nodes in node order (root first), the serialization Tahoe stores.
    pub fn nodes(&self) -> &[Hash] {
        &self.nodes
    }

    pub fn node(&self, i: usize) -> Option<&Hash> {
        self.nodes.get(i)
    }

    /// Number of real (unpadded) leaves.
    pub fn leaf_count(&self) -> usize {
        self.leaves
    }

    /// The proof for `leaf`: `(node index, hash)` pairs as in [`needed_for_leaf`].
    pub fn proof(&self, leaf: usize, include_leaf: bool) -> Vec<(usize, Hash)> {
        needed_for_leaf(self.leaves, leaf, include_leaf)
            .into_iter()
            .map(|i| (i, self.nodes[i]))
            .collect()
    }

    /// The full tree serialized as concatenated 32-byte hashes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.nodes.concat()
    }
}

/// A tree of which only some nodes are known, starting from a trusted root; hashes from untrusted
/// sources are accepted only if they chain up to already-trusted nodes.
#[derive(Clone, Debug)]
pub struct PartialHashTree {
    known: BTreeMap<usize, Hash>,
    leaves: usize,
    nodes: usize,
}

impl PartialHashTree {
    /// A tree over `leaves` leaves whose root is trusted.
    pub fn new(leaves: usize, root: Hash) -> Self {
        let mut known = BTreeMap::new();
        known.insert(0, root);
        PartialHashTree {
            known,
            leaves,
            nodes: node_count(leaves),
        }
    }

    pub fn leaf_count(&self) -> usize {
        self.leaves
    }

    pub fn root(&self) -> Hash {
        self.known[&0]
    }

    pub fn get(&self, node: usize) -> Option<&Hash> {
        self.known.get(&node)
    }

    /// Node index of leaf `leaf`.
    pub fn leaf_node(&self, leaf: usize) -> usize {
        padded_leaf_count(self.leaves) - 1 + leaf
    }

    /// Trusted hash of leaf `leaf`, if verified already.
    pub fn leaf(&self, leaf: usize) -> Option<&Hash> {
        self.known.get(&self.leaf_node(leaf))
    }

    /// Which nodes to fetch to verify `leaf`: the proof minus what is already trusted.
    pub fn missing_for_leaf(&self, leaf: usize, include_leaf: bool) -> Vec<usize> {
        needed_for_leaf(self.leaves, leaf, include_leaf)
            .into_iter()
            .filter(|i| !self.known.contains_key(i))
            .collect()
    }

    /// Offer untrusted nodes. Either all of them are verified (each chains to a trusted node
    /// through hashes offered together or already trusted) and become trusted, or nothing changes.
    pub fn add(&mut self, offered: &[(usize, Hash)]) -> Result<(), HashTreeError> {
        let mut tentative = self.known.clone();
        for &(i, h) in offered {
            if i >= self.nodes {
                return Err(HashTreeError::OutOfRange {
                    node: i,
                    nodes: self.nodes,
                });
            }
            match tentative.get(&i) {
                Some(existing) if *existing != h => return Err(HashTreeError::BadHash { node: i }),
                _ => {
                    tentative.insert(i, h);
                }
            }
        }
        // Walk deepest nodes first (breadth-first numbering puts them at higher indices), so the
        // parents they produce are there when a shallower offered node needs its sibling.
        let mut starts: Vec<usize> = offered.iter().map(|&(i, _)| i).collect();
        starts.sort_unstable_by(|a, b| b.cmp(a));
        for start in starts {
            let mut here = start;
            while here != 0 && !self.known.contains_key(&here) {
                let sib = sibling(here);
                let sib_hash = *tentative.get(&sib).ok_or(HashTreeError::NotEnoughHashes {
                    node: here,
                    missing: sib,
                })?;
                let (left, right) = if here % 2 == 1 {
                    (tentative[&here], sib_hash)
                } else {
                    (sib_hash, tentative[&here])
                };
                let computed = pair_hash(&left, &right);
                let up = parent(here);
                match tentative.get(&up) {
                    Some(h) if *h != computed => return Err(HashTreeError::BadHash { node: up }),
                    Some(_) => {}
                    None => {
                        tentative.insert(up, computed);
                    }
                }
                here = up;
            }
            if here == 0 && tentative[&0] != self.known[&0] {
                return Err(HashTreeError::BadHash { node: 0 });
            }
        }
        self.known = tentative;
        Ok(())
    }

    /// Verify a leaf value together with its proof nodes.
    pub fn add_leaf(
        &mut self,
        leaf: usize,
        value: Hash,
        proof: &[(usize, Hash)],
    ) -> Result<(), HashTreeError> {
        let mut all = proof.to_vec();
        all.push((self.leaf_node(leaf), value));
        self.add(&all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaf(i: u8) -> Hash {
        tagged_hash(b"test leaf", &[i])
    }

    #[test]
    fn one_leaf_tree_is_the_leaf_and_empty_tree_is_padding() {
        assert_eq!(HashTree::new(&[leaf(1)]).root(), leaf(1));
        assert_eq!(HashTree::new(&[]).root(), empty_leaf_hash(0));
        assert_eq!(node_count(1), 1);
        assert_eq!(node_count(3), 7);
    }

    #[test]
    fn padding_uses_leaf_positions() {
        let t = HashTree::new(&[leaf(0), leaf(1), leaf(2)]);
        let right = pair_hash(&leaf(2), &empty_leaf_hash(3));
        let left = pair_hash(&leaf(0), &leaf(1));
        assert_eq!(t.root(), pair_hash(&left, &right));
        assert_eq!(t.nodes().len(), 7);
    }

    #[test]
    fn needed_hashes_match_tahoe_counts() {
        // a 10-leaf tree pads to 16: 4 siblings, 5 with the leaf (num_share_hashes for n = 10)
        assert_eq!(needed_for_leaf(10, 0, true), vec![15, 16, 8, 4, 2]);
        assert_eq!(needed_for_leaf(1, 0, true), vec![0]);
        assert_eq!(needed_for_leaf(1, 0, false), Vec::<usize>::new());
    }

    #[test]
    fn corrupt_or_unconnected_hashes_are_rejected_without_side_effects() {
        let leaves: Vec<Hash> = (0..5).map(leaf).collect();
        let t = HashTree::new(&leaves);
        let mut p = PartialHashTree::new(5, t.root());
        let mut bad = t.proof(3, false);
        bad[0].1[0] ^= 1;
        assert!(matches!(
            p.add_leaf(3, leaves[3], &bad),
            Err(HashTreeError::BadHash { .. })
        ));
        assert_eq!(p.get(p.leaf_node(3)), None);
        assert!(matches!(
            p.add(&[(p.leaf_node(3), leaves[3])]),
            Err(HashTreeError::NotEnoughHashes { .. })
        ));
        assert!(matches!(
            p.add(&[(99, leaves[0])]),
            Err(HashTreeError::OutOfRange { .. })
        ));
        p.add_leaf(3, leaves[3], &t.proof(3, false)).unwrap();
        // once the path is trusted, the sibling leaf needs nothing more
        assert_eq!(p.missing_for_leaf(2, false), Vec::<usize>::new());
        p.add_leaf(2, leaves[2], &[]).unwrap();
        // proof nodes offered root-side first must verify as well as bottom-up
        let mut q = PartialHashTree::new(5, t.root());
        let mut top_down = t.proof(4, true);
        top_down.reverse();
        q.add(&top_down).unwrap();
        assert!(p.add_leaf(1, leaves[0], &t.proof(1, false)).is_err());
    }

    proptest! {
        #[test]
        fn every_leaf_verifies_with_its_proof(n in 1usize..40, pick in 0usize..40) {
            let leaves: Vec<Hash> = (0..n).map(|i| leaf(i as u8)).collect();
            let t = HashTree::new(&leaves);
            let j = pick % n;
            let mut p = PartialHashTree::new(n, t.root());
            let proof: Vec<(usize, Hash)> = p.missing_for_leaf(j, false).into_iter().map(|i| (i, t.nodes()[i])).collect();
            prop_assert!(p.add_leaf(j, leaves[j], &proof).is_ok());
            prop_assert_eq!(p.leaf(j), Some(&leaves[j]));
            let mut wrong = leaves[j];
            wrong[31] ^= 0x80;
            let mut fresh = PartialHashTree::new(n, t.root());
            prop_assert!(fresh.add_leaf(j, wrong, &t.proof(j, false)).is_err());
        }
    }
}
