//! lafs-runtime-std: drives lafs-core with std threads and blocking sockets, and hosts the `lafs`
//! command-line tool.
//!
//! Built so far: the `lafs debug` commands (capability parsing and derivations). The node, disk
//! share store and networking arrive with their issues and are not here yet.

pub mod debug;
pub mod node;
pub mod progress;
