//! What a directory cap lets its holder do with the directory's entries.

use crate::cap::{Cap, DirCap};

/// How a directory's entries are read and written.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A mutable directory opened with its write cap: write caps are decrypted and re-encrypted
    /// with this key (the SSK/MDMF writekey).
    ReadWrite { writekey: [u8; 16] },
    /// A mutable directory opened with a read cap: children's write caps stay hidden.
    ReadOnly,
    /// An immutable directory (`DIR2-CHK`, `DIR2-LIT`): no write caps, deep-immutable children.
    Immutable,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Access::ReadWrite { .. } => f.write_str("ReadWrite { .. }"), // never print keys
            Access::ReadOnly => f.write_str("ReadOnly"),
            Access::Immutable => f.write_str("Immutable"),
        }
    }
}

impl Access {
    /// The access a directory cap grants, or `None` for verify caps (which cannot read).
    pub fn for_cap(cap: &DirCap) -> Option<Access> {
        match cap.file_cap() {
            Cap::SskWrite { writekey, .. } | Cap::MdmfWrite { writekey, .. } => {
                Some(Access::ReadWrite {
                    writekey: *writekey,
                })
            }
            Cap::SskRead { .. } | Cap::MdmfRead { .. } => Some(Access::ReadOnly),
            Cap::ChkRead { .. } | Cap::Lit { .. } => Some(Access::Immutable),
            _ => None,
        }
    }

    /// True for immutable directories, whose children must be deep-immutable.
    pub fn is_deep_immutable(&self) -> bool {
        matches!(self, Access::Immutable)
    }

    /// The key that encrypts children's write caps, for read-write directories.
    pub fn writekey(&self) -> Option<&[u8; 16]> {
        match self {
            Access::ReadWrite { writekey } => Some(writekey),
            _ => None,
        }
    }
}
