//! Tahoe Merkle hash trees.
