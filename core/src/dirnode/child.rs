//! What a directory entry points at: a cap this version understands, or an unknown cap kept
//! verbatim for forward compatibility.
//!
//! This follows Tahoe's `nodemaker.create_from_cap` and `UnknownNode`: the stronger of the two
//! caps in an entry (write cap if present, else read cap) decides the node, the `ro.`/`imm.`
//! prefixes constrain what it may be, and an unknown cap is only accepted when it cannot grant
//! more authority than the context allows. Verify caps are kept as unknown caps (Tahoe has no
//! directory-child node for them).

use crate::cap::Cap;

/// `ro.`: the cap claims to be read-only.
pub const ALLEGED_READONLY_PREFIX: &[u8] = b"ro.";
/// `imm.`: the cap claims to be deep-immutable.
pub const ALLEGED_IMMUTABLE_PREFIX: &[u8] = b"imm.";

/// The object a directory entry links to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChildCap {
    /// A file or directory cap this version understands (never a verify cap).
    Known(Cap),
    /// A cap from a future version (or a verify cap), kept byte for byte.
    Unknown(UnknownCap),
}

/// An unrecognised cap pair, stored as Tahoe's `UnknownNode` stores it: the read cap carries a
/// `ro.` prefix (or `imm.` for a deep-immutable context) that says how it may be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownCap {
    write: Option<Vec<u8>>,
    read: Option<Vec<u8>>,
}

/// Why a cap cannot be linked in this context (Tahoe's `CapConstraintError` family).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapConstraintError {
    #[error("a write cap or mutable cap cannot be a child of an immutable directory")]
    MustBeDeepImmutable,
    #[error("a write cap is not allowed where a read-only cap was promised (\"ro.\" prefix)")]
    MustBeReadOnly,
    #[error(
        "an unknown cap in the write slot needs a read cap too, or an \"ro.\"/\"imm.\" prefix"
    )]
    UnknownWriteCap,
    #[error("a cap with a known prefix is malformed: {0}")]
    BadCap(String),
}

impl UnknownCap {
    /// The write cap as stored (only in mutable directories).
    pub fn write(&self) -> Option<&[u8]> {
        self.write.as_deref()
    }

    /// The read cap with its `ro.`/`imm.` prefix.
    pub fn read(&self) -> Option<&[u8]> {
        self.read.as_deref()
    }

    /// Tahoe's `UnknownNode` constructor: checks the pair against the context and adds the
    /// prefix the read cap needs there.
    fn new(
        write: Option<&[u8]>,
        read: Option<&[u8]>,
        deep_immutable: bool,
    ) -> Result<UnknownCap, CapConstraintError> {
        let mut write = write.filter(|w| !w.is_empty());
        let mut read = read.filter(|r| !r.is_empty());
        if let Some(w) = write {
            if deep_immutable {
                if read.is_some() {
                    return Err(CapConstraintError::MustBeDeepImmutable);
                }
                if !w.starts_with(ALLEGED_IMMUTABLE_PREFIX) {
                    return Err(CapConstraintError::UnknownWriteCap);
                }
            }
            match read {
                None => {
                    // A lone unprefixed cap might be a write cap we cannot diminish.
                    if !(w.starts_with(ALLEGED_READONLY_PREFIX)
                        || w.starts_with(ALLEGED_IMMUTABLE_PREFIX))
                    {
                        return Err(CapConstraintError::UnknownWriteCap);
                    }
                    read = Some(w);
                    write = None;
                }
                Some(r) if r.starts_with(ALLEGED_IMMUTABLE_PREFIX) => {
                    return Err(CapConstraintError::MustBeDeepImmutable);
                }
                Some(_) => {}
            }
        }
        if let Some(r) = read {
            // A read cap that is a known cap breaking its constraint makes the whole entry bad.
            classify(r, deep_immutable)?;
        }
        let prefixed = |r: &[u8], want: &[u8]| -> Vec<u8> {
            let bare = r
                .strip_prefix(ALLEGED_READONLY_PREFIX)
                .or_else(|| r.strip_prefix(ALLEGED_IMMUTABLE_PREFIX))
                .unwrap_or(r);
            [want, bare].concat()
        };
        let read = read.map(|r| {
            if deep_immutable {
                if r.starts_with(ALLEGED_IMMUTABLE_PREFIX) {
                    r.to_vec()
                } else {
                    prefixed(r, ALLEGED_IMMUTABLE_PREFIX)
                }
            } else if r.starts_with(ALLEGED_READONLY_PREFIX)
                || r.starts_with(ALLEGED_IMMUTABLE_PREFIX)
            {
                r.to_vec()
            } else {
                prefixed(r, ALLEGED_READONLY_PREFIX)
            }
        });
        Ok(UnknownCap {
            write: if deep_immutable {
                None
            } else {
                write.map(<[u8]>::to_vec)
            },
            read,
        })
    }
}

/// What a single cap string turned out to be.
enum Classified {
    Known(Cap),
    Unknown,
}

/// Tahoe's `uri.from_string(s, deep_immutable)`: strips one prefix, then either parses a known
/// cap (checking the prefix's promise), reports a broken constraint, or says "unknown".
fn classify(s: &[u8], deep_immutable: bool) -> Result<Classified, CapConstraintError> {
    let (mut can_be_mutable, mut can_be_writeable) = (!deep_immutable, !deep_immutable);
    let mut rest = s;
    if let Some(r) = s.strip_prefix(ALLEGED_IMMUTABLE_PREFIX) {
        (can_be_mutable, can_be_writeable) = (false, false);
        rest = r;
    } else if let Some(r) = s.strip_prefix(ALLEGED_READONLY_PREFIX) {
        can_be_writeable = false;
        rest = r;
    }
    // (prefix, is a write cap, is a mutable read cap)
    const KNOWN: &[(&[u8], bool, bool)] = &[
        (b"URI:CHK:", false, false),
        (b"URI:CHK-Verifier:", false, false),
        (b"URI:LIT:", false, false),
        (b"URI:SSK:", true, true),
        (b"URI:SSK-RO:", false, true),
        (b"URI:SSK-Verifier:", false, false),
        (b"URI:MDMF:", true, true),
        (b"URI:MDMF-RO:", false, true),
        (b"URI:MDMF-Verifier:", false, false),
        (b"URI:DIR2:", true, true),
        (b"URI:DIR2-RO:", false, true),
        (b"URI:DIR2-Verifier:", false, false),
        (b"URI:DIR2-CHK:", false, false),
        (b"URI:DIR2-CHK-Verifier:", false, false),
        (b"URI:DIR2-LIT:", false, false),
        (b"URI:DIR2-MDMF:", true, true),
        (b"URI:DIR2-MDMF-RO:", false, true),
        (b"URI:DIR2-MDMF-Verifier:", false, false),
    ];
    let violated = |writeable: bool, mutable: bool| {
        if !can_be_mutable && (writeable || mutable) {
            Some(CapConstraintError::MustBeDeepImmutable)
        } else if !can_be_writeable && writeable {
            Some(CapConstraintError::MustBeReadOnly)
        } else {
            None
        }
    };
    let Some(&(_, writeable, mutable)) = KNOWN.iter().find(|(p, _, _)| rest.starts_with(p)) else {
        if rest.starts_with(b"x-tahoe-future-test-writeable:") {
            if let Some(e) = violated(true, true) {
                return Err(e);
            }
        } else if rest.starts_with(b"x-tahoe-future-test-mutable:") {
            if let Some(e) = violated(false, true) {
                return Err(e);
            }
        }
        return Ok(Classified::Unknown);
    };
    if let Some(e) = violated(writeable, mutable) {
        return Err(e);
    }
    let text = std::str::from_utf8(rest)
        .map_err(|_| CapConstraintError::BadCap("cap is not UTF-8".into()))?;
    let cap = Cap::parse(text).map_err(|e| CapConstraintError::BadCap(e.to_string()))?;
    if cap.is_verify_cap() {
        return Ok(Classified::Unknown);
    }
    Ok(Classified::Known(cap))
}

impl ChildCap {
    /// Tahoe's `create_from_cap(write, read, deep_immutable)`: the node a directory entry (or a
    /// caller linking a child) describes. Empty caps count as absent; both absent gives an empty
    /// unknown cap, which Tahoe also keeps.
    pub fn from_caps(
        write: Option<&[u8]>,
        read: Option<&[u8]>,
        deep_immutable: bool,
    ) -> Result<ChildCap, CapConstraintError> {
        let write = write.filter(|w| !w.is_empty());
        let read = read.filter(|r| !r.is_empty());
        let Some(big) = write.or(read) else {
            return Ok(ChildCap::Unknown(UnknownCap {
                write: None,
                read: None,
            }));
        };
        match classify(big, deep_immutable) {
            Ok(Classified::Known(cap)) => Ok(ChildCap::Known(cap)),
            // Known-looking but unusable caps fall back to the unknown-node rules, as in Tahoe.
            Ok(Classified::Unknown) | Err(_) => {
                UnknownCap::new(write, read, deep_immutable).map(ChildCap::Unknown)
            }
        }
    }

    /// Links a parsed cap. Verify caps become unknown caps, as Tahoe treats them.
    pub fn from_cap(cap: Cap) -> ChildCap {
        if cap.is_verify_cap() {
            let text = cap.to_string().into_bytes();
            return ChildCap::Unknown(UnknownCap {
                write: None,
                read: Some([ALLEGED_READONLY_PREFIX, &text].concat()),
            });
        }
        ChildCap::Known(cap)
    }

    /// The cap for the write slot, if the child is writeable through this link.
    pub fn write_uri(&self) -> Option<Vec<u8>> {
        match self {
            ChildCap::Known(cap) if !cap.is_readonly() => Some(cap.to_string().into_bytes()),
            ChildCap::Known(_) => None,
            ChildCap::Unknown(u) => u.write.clone(),
        }
    }

    /// The read-only cap (for unknown caps, with its `ro.`/`imm.` prefix).
    pub fn read_uri(&self) -> Option<Vec<u8>> {
        match self {
            ChildCap::Known(cap) => cap.read_only().map(|c| c.to_string().into_bytes()),
            ChildCap::Unknown(u) => u.read.clone(),
        }
    }

    /// True if the child is a directory this version understands.
    pub fn is_directory(&self) -> bool {
        matches!(self, ChildCap::Known(cap) if cap.is_directory())
    }

    /// True if this child may be linked into an immutable directory: known caps to immutable
    /// objects, and unknown caps with no write cap.
    pub fn is_deep_immutable(&self) -> bool {
        match self {
            ChildCap::Known(cap) => !cap.is_mutable(),
            ChildCap::Unknown(u) => u.write.is_none(),
        }
    }

    /// The same child with write authority removed (Tahoe's `no-write` metadata handling).
    pub fn to_read_only(&self) -> ChildCap {
        match self {
            ChildCap::Known(cap) => match cap.read_only() {
                Some(ro) => ChildCap::Known(ro),
                None => self.clone(),
            },
            ChildCap::Unknown(u) => ChildCap::Unknown(UnknownCap {
                write: None,
                read: u.read.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SSK: &str =
        "URI:SSK:vfvcbdfbszyrsaxchgevhmmlii:euw4iw7bbnkrrwpzuburbhppuxhc3gwxv26f6imekhz7zyw2ojnq";
    const CHK: &str = "URI:CHK:cmtcxq7hwxvfxan34yiev6ivhy:qvcekmjtoetdcw4kmi7b3rtblvgx7544crnwaqtiewemdliqsokq:3:10:5";

    fn known(s: &str) -> Cap {
        Cap::parse(s).unwrap()
    }

    #[test]
    fn write_cap_gives_both_slots() {
        let c = ChildCap::from_caps(Some(SSK.as_bytes()), None, false).unwrap();
        assert_eq!(c, ChildCap::Known(known(SSK)));
        assert_eq!(c.write_uri().unwrap(), SSK.as_bytes());
        let ro = known(SSK).read_only().unwrap().to_string();
        assert_eq!(c.read_uri().unwrap(), ro.as_bytes());
        assert!(!c.is_deep_immutable());
        assert_eq!(c.to_read_only().write_uri(), None);
    }

    #[test]
    fn immutable_context_refuses_mutable_caps() {
        assert_eq!(
            ChildCap::from_caps(None, Some(SSK.as_bytes()), true),
            Err(CapConstraintError::MustBeDeepImmutable)
        );
        let c = ChildCap::from_caps(None, Some(CHK.as_bytes()), true).unwrap();
        assert!(c.is_deep_immutable());
    }

    #[test]
    fn read_only_prefix_refuses_write_caps() {
        let ro_ssk = format!("ro.{SSK}");
        assert_eq!(
            ChildCap::from_caps(None, Some(ro_ssk.as_bytes()), false),
            Err(CapConstraintError::MustBeReadOnly)
        );
    }

    #[test]
    fn unknown_caps_are_kept_with_context_prefix() {
        let c = ChildCap::from_caps(Some(b"x-future:rw"), Some(b"x-future:ro"), false).unwrap();
        assert_eq!(c.write_uri().unwrap(), b"x-future:rw");
        assert_eq!(c.read_uri().unwrap(), b"ro.x-future:ro");
        let c = ChildCap::from_caps(None, Some(b"x-future:ro"), true).unwrap();
        assert_eq!(c.read_uri().unwrap(), b"imm.x-future:ro");
        // A lone unprefixed unknown cap in the write slot could be a write cap: refused.
        assert_eq!(
            ChildCap::from_caps(Some(b"x-future:rw"), None, false),
            Err(CapConstraintError::UnknownWriteCap)
        );
        // With a prefix it is treated as a read cap.
        let c = ChildCap::from_caps(Some(b"ro.x-future:ro"), None, false).unwrap();
        assert_eq!(c.write_uri(), None);
        assert_eq!(c.read_uri().unwrap(), b"ro.x-future:ro");
    }

    #[test]
    fn malformed_known_cap_is_refused() {
        assert!(matches!(
            ChildCap::from_caps(None, Some(b"URI:CHK:nope"), false),
            Err(CapConstraintError::BadCap(_))
        ));
    }

    #[test]
    fn verify_caps_are_unknown() {
        let v = known(SSK).verify_cap().unwrap();
        let c = ChildCap::from_cap(v.clone());
        assert!(matches!(c, ChildCap::Unknown(_)));
        let text = format!("ro.{v}");
        assert_eq!(c.read_uri().unwrap(), text.as_bytes());
        assert_eq!(
            ChildCap::from_caps(None, Some(v.to_string().as_bytes()), false).unwrap(),
            c
        );
    }
}
