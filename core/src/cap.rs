//! Capabilities: parse and format every kind of Tahoe cap (tahoe-formats.md §2).
//!
//! A [`Cap`] is the decoded form of a `URI:...` string. Formatting ([`std::fmt::Display`]) gives
//! exactly the text Tahoe writes, and parsing ([`Cap::parse`], [`std::str::FromStr`]) accepts what
//! Tahoe accepts, with three deliberate differences that all reject hand-made oddities Tahoe never
//! writes: numbers with leading zeros, CHK share counts outside `1 <= k <= n <= 256`, and
//! trailing garbage after a CHK verify cap's size that is not `:`-separated. Every parse error is
//! a [`CapError`] that names the cap kind and field at fault; parsing never panics.
//!
//! Error messages never quote keys (caps are secrets and errors get logged); they give the field,
//! a position, or a length instead.
//!
//! Derivations ([`Cap::read_only`], [`Cap::verify_cap`], [`Cap::storage_index`]) use the tagged
//! hashes in [`crate::crypto`], so a write cap yields the same read and verify caps Tahoe would.

mod parse;

pub use parse::CapError;

use std::fmt;
use std::str::FromStr;

use crate::base32;
use crate::crypto::{ssk_readkey, ssk_storage_index, storage_index_from_key};

/// Size of the literal-file threshold Tahoe uploads with: files of at most this many bytes become
/// `URI:LIT:` caps. Longer LIT caps are still parsed (Tahoe's regex accepts any length).
pub const LIT_MAX_SIZE: usize = 55;

/// Any Tahoe capability. File caps are the variants other than [`Cap::Directory`]; a directory
/// cap wraps the cap of the file that stores the directory.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cap {
    /// `URI:LIT:` — the file's bytes themselves (small files; the empty file is `URI:LIT:`).
    Lit { data: Vec<u8> },
    /// `URI:CHK:` — read cap of an immutable file.
    ChkRead {
        /// AES-128 key; the storage index is derived from it.
        key: [u8; 16],
        /// Hash of the URI extension block, which pins every other hash of the file.
        ueb_hash: [u8; 32],
        /// k: shares needed to read.
        needed: u16,
        /// n: shares written.
        total: u16,
        /// Plaintext size in bytes.
        size: u64,
    },
    /// `URI:CHK-Verifier:` — lets a holder check and repair shares without reading the file.
    ChkVerify {
        storage_index: [u8; 16],
        ueb_hash: [u8; 32],
        needed: u16,
        total: u16,
        size: u64,
    },
    /// `URI:SSK:` — SDMF mutable file write cap.
    SskWrite {
        writekey: [u8; 16],
        fingerprint: [u8; 32],
    },
    /// `URI:SSK-RO:` — SDMF read cap.
    SskRead {
        readkey: [u8; 16],
        fingerprint: [u8; 32],
    },
    /// `URI:SSK-Verifier:` — SDMF verify cap.
    SskVerify {
        storage_index: [u8; 16],
        fingerprint: [u8; 32],
    },
    /// `URI:MDMF:` — MDMF mutable file write cap.
    MdmfWrite {
        writekey: [u8; 16],
        fingerprint: [u8; 32],
    },
    /// `URI:MDMF-RO:` — MDMF read cap.
    MdmfRead {
        readkey: [u8; 16],
        fingerprint: [u8; 32],
    },
    /// `URI:MDMF-Verifier:` — MDMF verify cap.
    MdmfVerify {
        storage_index: [u8; 16],
        fingerprint: [u8; 32],
    },
    /// `URI:DIR2...:` — a directory stored in the wrapped file.
    Directory(DirCap),
}

/// A directory cap: the cap of the file holding the directory's entries. Every file kind has a
/// directory form (`URI:SSK:` ↔ `URI:DIR2:`, `URI:CHK:` ↔ `URI:DIR2-CHK:`, ...), whose text is
/// the file cap's text with the prefix replaced.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DirCap {
    /// Never itself a [`Cap::Directory`] (checked by [`DirCap::new`]).
    file: Box<Cap>,
}

impl DirCap {
    /// Wraps a file cap; a directory cap cannot wrap another directory cap.
    pub fn new(file: Cap) -> Result<DirCap, CapError> {
        match file {
            Cap::Directory(_) => Err(CapError::NestedDirectory),
            file => Ok(DirCap {
                file: Box::new(file),
            }),
        }
    }

    /// The cap of the file that stores the directory.
    pub fn file_cap(&self) -> &Cap {
        &self.file
    }

    /// Unwraps into the file cap.
    pub fn into_file_cap(self) -> Cap {
        *self.file
    }

    /// The kind as it appears in the text: `DIR2`, `DIR2-RO`, `DIR2-CHK`, `DIR2-MDMF-Verifier`...
    pub fn kind_name(&self) -> &'static str {
        match *self.file {
            Cap::Lit { .. } => "DIR2-LIT",
            Cap::ChkRead { .. } => "DIR2-CHK",
            Cap::ChkVerify { .. } => "DIR2-CHK-Verifier",
            Cap::SskWrite { .. } => "DIR2",
            Cap::SskRead { .. } => "DIR2-RO",
            Cap::SskVerify { .. } => "DIR2-Verifier",
            Cap::MdmfWrite { .. } => "DIR2-MDMF",
            Cap::MdmfRead { .. } => "DIR2-MDMF-RO",
            Cap::MdmfVerify { .. } => "DIR2-MDMF-Verifier",
            // Unreachable by DirCap's invariant; a name rather than a panic keeps this total.
            Cap::Directory(_) => "DIR2-invalid-nested",
        }
    }
}

impl Cap {
    /// Parses a cap string; see the module docs for what is accepted. The alleged-read-only
    /// prefix `ro.` and alleged-immutable prefix `imm.` (found on caps inside directories) are
    /// checked against the cap and dropped: `ro.` is refused on write caps, `imm.` on read and
    /// write caps of mutable files and directories (verify caps pass, as in Tahoe).
    pub fn parse(s: &str) -> Result<Cap, CapError> {
        parse::parse(s)
    }

    /// Wraps a file cap as the matching directory cap (`URI:SSK:` → `URI:DIR2:`, ...).
    pub fn directory(file: Cap) -> Result<Cap, CapError> {
        DirCap::new(file).map(Cap::Directory)
    }

    /// The kind as it appears in the text, between `URI:` and the next `:` (e.g. `CHK`,
    /// `SSK-RO`, `DIR2-MDMF-Verifier`).
    pub fn kind_name(&self) -> &'static str {
        match self {
            Cap::Lit { .. } => "LIT",
            Cap::ChkRead { .. } => "CHK",
            Cap::ChkVerify { .. } => "CHK-Verifier",
            Cap::SskWrite { .. } => "SSK",
            Cap::SskRead { .. } => "SSK-RO",
            Cap::SskVerify { .. } => "SSK-Verifier",
            Cap::MdmfWrite { .. } => "MDMF",
            Cap::MdmfRead { .. } => "MDMF-RO",
            Cap::MdmfVerify { .. } => "MDMF-Verifier",
            Cap::Directory(d) => d.kind_name(),
        }
    }

    /// The cap of the underlying file: `self` for file caps, the wrapped cap for directories.
    pub fn file_cap(&self) -> &Cap {
        match self {
            Cap::Directory(d) => d.file_cap(),
            file => file,
        }
    }

    /// True for directory caps (`URI:DIR2...`).
    pub fn is_directory(&self) -> bool {
        matches!(self, Cap::Directory(_))
    }

    /// True if the object the cap refers to can change (SDMF/MDMF files and the directories
    /// stored in them), including for their verify caps. (Tahoe's `is_mutable()` is false for
    /// verify caps because nothing can be changed *through* them; use `!is_readonly()` for that.)
    pub fn is_mutable(&self) -> bool {
        !matches!(
            self.file_cap(),
            Cap::Lit { .. } | Cap::ChkRead { .. } | Cap::ChkVerify { .. }
        )
    }

    /// False only for write caps (`URI:SSK:`, `URI:MDMF:`, `URI:DIR2:`, `URI:DIR2-MDMF:`).
    pub fn is_readonly(&self) -> bool {
        !matches!(
            self.file_cap(),
            Cap::SskWrite { .. } | Cap::MdmfWrite { .. }
        )
    }

    /// True for verify caps, which can check and repair shares but not read contents.
    pub fn is_verify_cap(&self) -> bool {
        matches!(
            self.file_cap(),
            Cap::ChkVerify { .. } | Cap::SskVerify { .. } | Cap::MdmfVerify { .. }
        )
    }

    /// The read-only cap: write caps are diminished (the readkey is derived from the writekey),
    /// read caps are returned unchanged, verify caps have none.
    pub fn read_only(&self) -> Option<Cap> {
        match self {
            Cap::Lit { .. } | Cap::ChkRead { .. } | Cap::SskRead { .. } | Cap::MdmfRead { .. } => {
                Some(self.clone())
            }
            Cap::ChkVerify { .. } | Cap::SskVerify { .. } | Cap::MdmfVerify { .. } => None,
            Cap::SskWrite {
                writekey,
                fingerprint,
            } => Some(Cap::SskRead {
                readkey: ssk_readkey(writekey),
                fingerprint: *fingerprint,
            }),
            Cap::MdmfWrite {
                writekey,
                fingerprint,
            } => Some(Cap::MdmfRead {
                readkey: ssk_readkey(writekey),
                fingerprint: *fingerprint,
            }),
            Cap::Directory(d) => d.file.read_only().and_then(|f| Cap::directory(f).ok()),
        }
    }

    /// The verify cap: derived from read and write caps, a verify cap is its own, and literal
    /// files (no shares) have none.
    pub fn verify_cap(&self) -> Option<Cap> {
        match self {
            Cap::Lit { .. } => None,
            Cap::ChkRead {
                key,
                ueb_hash,
                needed,
                total,
                size,
            } => Some(Cap::ChkVerify {
                storage_index: storage_index_from_key(key),
                ueb_hash: *ueb_hash,
                needed: *needed,
                total: *total,
                size: *size,
            }),
            Cap::ChkVerify { .. } | Cap::SskVerify { .. } | Cap::MdmfVerify { .. } => {
                Some(self.clone())
            }
            Cap::SskWrite { fingerprint, .. } | Cap::SskRead { fingerprint, .. } => {
                let storage_index = self.storage_index()?;
                Some(Cap::SskVerify {
                    storage_index,
                    fingerprint: *fingerprint,
                })
            }
            Cap::MdmfWrite { fingerprint, .. } | Cap::MdmfRead { fingerprint, .. } => {
                let storage_index = self.storage_index()?;
                Some(Cap::MdmfVerify {
                    storage_index,
                    fingerprint: *fingerprint,
                })
            }
            Cap::Directory(d) => d.file.verify_cap().and_then(|f| Cap::directory(f).ok()),
        }
    }

    /// The storage index naming the file's shares on servers; `None` for literal caps, whose
    /// data lives in the cap itself.
    pub fn storage_index(&self) -> Option<[u8; 16]> {
        match self {
            Cap::Lit { .. } => None,
            Cap::ChkRead { key, .. } => Some(storage_index_from_key(key)),
            Cap::ChkVerify { storage_index, .. }
            | Cap::SskVerify { storage_index, .. }
            | Cap::MdmfVerify { storage_index, .. } => Some(*storage_index),
            Cap::SskWrite { writekey, .. } | Cap::MdmfWrite { writekey, .. } => {
                Some(ssk_storage_index(&ssk_readkey(writekey)))
            }
            Cap::SskRead { readkey, .. } | Cap::MdmfRead { readkey, .. } => {
                Some(ssk_storage_index(readkey))
            }
            Cap::Directory(d) => d.file.storage_index(),
        }
    }

    /// The cap's fields by name, in a fixed order: binary values in base32, numbers in decimal,
    /// followed by what can be derived (readkey, storage index). Directories add `file_kind`
    /// and then their file cap's fields. Used by `lafs debug parse-cap`.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        let b32 = |bytes: &[u8]| base32::encode(bytes);
        let mut out = Vec::new();
        match self {
            Cap::Lit { data } => {
                out.push(("data", b32(data)));
                out.push(("size", data.len().to_string()));
            }
            Cap::ChkRead {
                key,
                ueb_hash,
                needed,
                total,
                size,
            } => {
                out.push(("key", b32(key)));
                out.push(("ueb_hash", b32(ueb_hash)));
                out.push(("needed", needed.to_string()));
                out.push(("total", total.to_string()));
                out.push(("size", size.to_string()));
                out.push(("storage_index", b32(&storage_index_from_key(key))));
            }
            Cap::ChkVerify {
                storage_index,
                ueb_hash,
                needed,
                total,
                size,
            } => {
                out.push(("storage_index", b32(storage_index)));
                out.push(("ueb_hash", b32(ueb_hash)));
                out.push(("needed", needed.to_string()));
                out.push(("total", total.to_string()));
                out.push(("size", size.to_string()));
            }
            Cap::SskWrite {
                writekey,
                fingerprint,
            }
            | Cap::MdmfWrite {
                writekey,
                fingerprint,
            } => {
                let readkey = ssk_readkey(writekey);
                out.push(("writekey", b32(writekey)));
                out.push(("fingerprint", b32(fingerprint)));
                out.push(("readkey", b32(&readkey)));
                out.push(("storage_index", b32(&ssk_storage_index(&readkey))));
            }
            Cap::SskRead {
                readkey,
                fingerprint,
            }
            | Cap::MdmfRead {
                readkey,
                fingerprint,
            } => {
                out.push(("readkey", b32(readkey)));
                out.push(("fingerprint", b32(fingerprint)));
                out.push(("storage_index", b32(&ssk_storage_index(readkey))));
            }
            Cap::SskVerify {
                storage_index,
                fingerprint,
            }
            | Cap::MdmfVerify {
                storage_index,
                fingerprint,
            } => {
                out.push(("storage_index", b32(storage_index)));
                out.push(("fingerprint", b32(fingerprint)));
            }
            Cap::Directory(d) => {
                out.push(("file_kind", d.file.kind_name().to_string()));
                out.extend(d.file.fields());
            }
        }
        out
    }

    /// Writes the text after `URI:<kind>:`, which a directory shares with its file cap.
    fn write_body(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b32 = |bytes: &[u8]| base32::encode(bytes);
        match self {
            Cap::Lit { data } => f.write_str(&b32(data)),
            Cap::ChkRead {
                key: first,
                ueb_hash,
                needed,
                total,
                size,
            }
            | Cap::ChkVerify {
                storage_index: first,
                ueb_hash,
                needed,
                total,
                size,
            } => {
                write!(
                    f,
                    "{}:{}:{needed}:{total}:{size}",
                    b32(first),
                    b32(ueb_hash)
                )
            }
            Cap::SskWrite {
                writekey: key,
                fingerprint,
            }
            | Cap::SskRead {
                readkey: key,
                fingerprint,
            }
            | Cap::SskVerify {
                storage_index: key,
                fingerprint,
            }
            | Cap::MdmfWrite {
                writekey: key,
                fingerprint,
            }
            | Cap::MdmfRead {
                readkey: key,
                fingerprint,
            }
            | Cap::MdmfVerify {
                storage_index: key,
                fingerprint,
            } => {
                write!(f, "{}:{}", b32(key), b32(fingerprint))
            }
            Cap::Directory(d) => d.file.write_body(f),
        }
    }
}

impl fmt::Display for Cap {
    /// The canonical Tahoe text, e.g. `URI:CHK:<key>:<ueb_hash>:3:10:56`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "URI:{}:", self.kind_name())?;
        self.write_body(f)
    }
}

impl fmt::Debug for Cap {
    /// The cap text, which is far more readable than byte arrays.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cap({self})")
    }
}

impl fmt::Display for DirCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "URI:{}:", self.kind_name())?;
        self.file.write_body(f)
    }
}

impl fmt::Debug for DirCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DirCap({self})")
    }
}

impl FromStr for Cap {
    type Err = CapError;

    fn from_str(s: &str) -> Result<Cap, CapError> {
        Cap::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHK: &str = "URI:CHK:hah7mxwfpqemm7icdh3hwsa5fa:6epvxt2uxh42obpnfn4wkrplqml7voh7aqpnqnapu7ffcyn2hk3q:3:10:56";
    const SSK: &str =
        "URI:SSK:wjyh73jlspu5kdxslskssvodzq:2ziuv3ykqlvb72qnippezi6hbe7iyyvrrypiq6jzogyuw37537tq";
    const MDMF: &str =
        "URI:MDMF:vcmscsidfepkllqv27vgap5mvu:ag2eyr4lxkgunaxoz7aw4kzmkmdfwgrten27qyy6oeyiofw3a5na";

    #[test]
    fn formats_what_it_parses() {
        for s in [CHK, SSK, MDMF, "URI:LIT:", "URI:LIT:mzxw6ytboi"] {
            assert_eq!(Cap::parse(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn directory_text_is_file_text_with_prefix_replaced() {
        let file = Cap::parse(SSK).unwrap();
        let dir = Cap::directory(file.clone()).unwrap();
        assert_eq!(dir.to_string(), SSK.replace("URI:SSK:", "URI:DIR2:"));
        assert_eq!(dir.file_cap(), &file);
        assert!(dir.is_directory() && dir.is_mutable() && !dir.is_readonly());
        assert_eq!(Cap::directory(dir), Err(CapError::NestedDirectory));
    }

    #[test]
    fn properties_of_each_kind() {
        let chk = Cap::parse(CHK).unwrap();
        assert!(!chk.is_mutable() && chk.is_readonly() && !chk.is_directory());
        assert_eq!(chk.read_only(), Some(chk.clone()));
        let v = chk.verify_cap().unwrap();
        assert!(v.is_verify_cap() && v.read_only().is_none());
        assert_eq!(v.verify_cap(), Some(v.clone()));

        let ssk = Cap::parse(SSK).unwrap();
        assert!(ssk.is_mutable() && !ssk.is_readonly());
        let ro = ssk.read_only().unwrap();
        assert!(ro.is_readonly() && ro.is_mutable() && !ro.is_verify_cap());
        assert_eq!(ro.verify_cap(), ssk.verify_cap());
        assert!(ssk.verify_cap().unwrap().is_mutable());

        let lit = Cap::parse("URI:LIT:mzxw6").unwrap();
        assert_eq!(lit.storage_index(), None);
        assert_eq!(lit.verify_cap(), None);
        let dlit = Cap::parse("URI:DIR2-LIT:mzxw6").unwrap();
        assert_eq!(dlit.verify_cap(), None);
        assert_eq!(dlit.read_only(), Some(dlit.clone()));
        assert!(!dlit.is_mutable());
    }

    #[test]
    fn fields_are_named_and_include_derived_storage_index() {
        let fields = Cap::parse(CHK).unwrap().fields();
        let names: Vec<_> = fields.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "key",
                "ueb_hash",
                "needed",
                "total",
                "size",
                "storage_index"
            ]
        );
        assert_eq!(fields[5].1, "5mwuz5yxisqrnhtrsljs7wkyb4");
        assert_eq!(fields[2].1, "3");

        let dir = Cap::directory(Cap::parse(MDMF).unwrap()).unwrap();
        let fields = dir.fields();
        assert_eq!(fields[0], ("file_kind", "MDMF".to_string()));
        assert_eq!(dir.kind_name(), "DIR2-MDMF");
        assert_eq!(
            fields.last().unwrap(),
            &("storage_index", "47kidcetkhzlw2eies3v7k2c2e".into())
        );
    }

    #[test]
    fn debug_shows_the_text() {
        assert_eq!(
            format!(
                "{:?}",
                Cap::Lit {
                    data: b"f".to_vec()
                }
            ),
            "Cap(URI:LIT:my)"
        );
    }
}
