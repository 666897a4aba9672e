//! The child table: a directory's plaintext, and the in-memory [`Directory`] it decodes to.
//!
//! The table is `netstring(entry)` per child, sorted by NFC name (code point order), nothing
//! else. Like Tahoe, an unpacked entry remembers its exact bytes and is re-packed from them
//! until it is changed, so untouched children survive a read-modify-write byte for byte (and
//! re-packing a large directory is mostly copying).
//!
//! Unpacking is strict about structure (framing, UTF-8 names, write-cap field, metadata JSON)
//! and returns a [`DirnodeError`] naming the entry; it is lenient where Tahoe is: a child whose
//! cap breaks the directory's constraints is left out and reported in
//! [`Directory::skipped`], and a later entry with the same name replaces an earlier one.

use std::collections::BTreeMap;

use super::access::Access;
use super::child::{CapConstraintError, ChildCap};
use super::entry::{decrypt_rw_uri, pack_entry, split_entry, FramingError, RW_OVERHEAD};
use super::json::{JsonError, JsonObject};
use super::metadata::Metadata;
use super::path::normalize;
use crate::netstring::{self, NetstringError};

/// One child link: what it points at and the link's metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct Child {
    pub cap: ChildCap,
    pub metadata: Metadata,
}

/// A child plus the bytes it was unpacked from, reused by [`Directory::pack`] while unchanged.
#[derive(Clone, Debug)]
pub(super) struct Slot {
    pub(super) child: Child,
    pub(super) packed: Option<Vec<u8>>,
}

/// A decoded directory: its children by NFC name, and how its entries may be used.
#[derive(Clone, Debug)]
pub struct Directory {
    pub(super) access: Access,
    pub(super) children: BTreeMap<String, Slot>,
    pub(super) skipped: Vec<SkippedEntry>,
}

/// An entry that unpacking left out, as Tahoe does (it logs and hides these).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedEntry {
    /// Position of the entry in the packed table (0-based).
    pub index: usize,
    pub name: String,
    pub reason: SkipReason,
}

/// Why an entry was left out.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SkipReason {
    #[error("its cap cannot be linked here: {0}")]
    Cap(#[from] CapConstraintError),
    #[error("a later entry has the same (NFC-normalized) name")]
    DuplicateName,
}

/// Why a packed directory could not be read. Nothing is changed when this is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirnodeError {
    #[error("directory entry {index} is not a well-formed netstring: {source}")]
    Framing {
        index: usize,
        #[source]
        source: NetstringError,
    },
    #[error("directory entry {index}: {source}")]
    Fields {
        index: usize,
        #[source]
        source: FramingError,
    },
    #[error("directory entry {index}: the name is not valid UTF-8")]
    NameNotUtf8 { index: usize },
    #[error(
        "directory entry {index} ({name:?}): the encrypted write-cap field is {len} bytes, \
         shorter than the {RW_OVERHEAD} bytes of salt and MAC"
    )]
    WriteCapFieldTooShort {
        index: usize,
        name: String,
        len: usize,
    },
    #[error(
        "directory entry {index} ({name:?}): an immutable directory's entry carries write-cap data"
    )]
    WriteCapInImmutable { index: usize, name: String },
    #[error("directory entry {index} ({name:?}): metadata is not a JSON object: {source}")]
    Metadata {
        index: usize,
        name: String,
        #[source]
        source: JsonError,
    },
}

/// Decodes a directory's plaintext; see [`Directory::unpack`].
pub fn unpack_children(bytes: &[u8], access: Access) -> Result<Directory, DirnodeError> {
    Directory::unpack(bytes, access)
}

/// Encodes a directory's plaintext; see [`Directory::pack`].
pub fn pack_children(dir: &Directory) -> Vec<u8> {
    dir.pack()
}

fn rstrip_spaces(b: &[u8]) -> &[u8] {
    let end = b.iter().rposition(|&c| c != b' ').map_or(0, |i| i + 1);
    &b[..end]
}

impl Directory {
    /// An empty directory.
    pub fn new(access: Access) -> Directory {
        Directory {
            access,
            children: BTreeMap::new(),
            skipped: Vec::new(),
        }
    }

    /// Decodes a packed child table read with `access`. Write caps are decrypted only with
    /// [`Access::ReadWrite`]; immutable directories must carry none.
    pub fn unpack(bytes: &[u8], access: Access) -> Result<Directory, DirnodeError> {
        let mut dir = Directory::new(access);
        let deep_immutable = access.is_deep_immutable();
        let mut rest = bytes;
        let mut index = 0;
        while !rest.is_empty() {
            let (entry, tail) =
                netstring::split(rest).map_err(|source| DirnodeError::Framing { index, source })?;
            rest = tail;
            let raw =
                split_entry(entry).map_err(|source| DirnodeError::Fields { index, source })?;
            let name =
                std::str::from_utf8(raw.name).map_err(|_| DirnodeError::NameNotUtf8 { index })?;
            let name = normalize(name).into_owned();
            let rw = match access {
                Access::Immutable if !raw.rw_data.is_empty() => {
                    return Err(DirnodeError::WriteCapInImmutable { index, name });
                }
                Access::ReadWrite { writekey } if !raw.rw_data.is_empty() => {
                    Some(decrypt_rw_uri(&writekey, raw.rw_data).ok_or(
                        DirnodeError::WriteCapFieldTooShort {
                            index,
                            name: name.clone(),
                            len: raw.rw_data.len(),
                        },
                    )?)
                }
                _ => None,
            };
            let rw = rw.as_deref().map(rstrip_spaces);
            let ro = rstrip_spaces(raw.ro_uri);
            let cap = match ChildCap::from_caps(rw, Some(ro), deep_immutable) {
                Ok(cap) => cap,
                Err(e) => {
                    dir.skipped.push(SkippedEntry {
                        index,
                        name,
                        reason: SkipReason::Cap(e),
                    });
                    index += 1;
                    continue;
                }
            };
            let metadata =
                JsonObject::parse(raw.metadata).map_err(|source| DirnodeError::Metadata {
                    index,
                    name: name.clone(),
                    source,
                })?;
            let slot = Slot {
                child: Child { cap, metadata },
                packed: Some(entry.to_vec()),
            };
            if dir.children.insert(name.clone(), slot).is_some() {
                dir.skipped.push(SkippedEntry {
                    index,
                    name,
                    reason: SkipReason::DuplicateName,
                });
            }
            index += 1;
        }
        Ok(dir)
    }

    /// Encodes the child table: entries sorted by name, unchanged ones from their original bytes.
    pub fn pack(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, slot) in &self.children {
            match &slot.packed {
                Some(entry) => netstring::write(&mut out, entry),
                None => netstring::write(
                    &mut out,
                    &pack_entry(name, &slot.child.cap, &slot.child.metadata, &self.access),
                ),
            }
        }
        out
    }

    pub fn access(&self) -> Access {
        self.access
    }

    /// Number of children.
    pub fn len(&self) -> usize {
        self.children.len()
    }

    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }

    /// The child linked as `name` (NFC-normalized before lookup).
    pub fn get(&self, name: &str) -> Option<&Child> {
        self.children.get(&*normalize(name)).map(|s| &s.child)
    }

    /// All children, sorted by name (code point order, as Tahoe sorts).
    pub fn list(&self) -> impl ExactSizeIterator<Item = (&str, &Child)> {
        self.children
            .iter()
            .map(|(name, slot)| (name.as_str(), &slot.child))
    }

    /// Entries the last [`Directory::unpack`] left out, with the reason for each.
    pub fn skipped(&self) -> &[SkippedEntry] {
        &self.skipped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dirnode::entry::encrypt_rw_uri;

    const WK: [u8; 16] = [3; 16];
    const CHK: &str = "URI:CHK:cmtcxq7hwxvfxan34yiev6ivhy:qvcekmjtoetdcw4kmi7b3rtblvgx7544crnwaqtiewemdliqsokq:3:10:5";

    fn entry(name: &[u8], ro: &[u8], rw: &[u8], meta: &[u8]) -> Vec<u8> {
        let mut e = Vec::new();
        for f in [name, ro, rw, meta] {
            netstring::write(&mut e, f);
        }
        netstring::encode(&e)
    }

    #[test]
    fn empty_directory_is_empty_bytes() {
        let d = Directory::unpack(b"", Access::ReadOnly).unwrap();
        assert!(d.is_empty());
        assert_eq!(d.pack(), b"");
    }

    #[test]
    fn malformed_entries_name_index_and_problem() {
        let good = entry(b"a", CHK.as_bytes(), &encrypt_rw_uri(&WK, b""), b"{}");
        let rw = Access::ReadWrite { writekey: WK };
        let mut bad = good.clone();
        bad.extend_from_slice(b"5:abc,");
        assert!(matches!(
            Directory::unpack(&bad, rw),
            Err(DirnodeError::Framing { index: 1, .. })
        ));
        let bad = entry(b"\xff", b"", b"", b"{}");
        assert_eq!(
            Directory::unpack(&bad, rw).unwrap_err(),
            DirnodeError::NameNotUtf8 { index: 0 }
        );
        let bad = entry(b"b", CHK.as_bytes(), &[0; 10], b"{}");
        assert!(matches!(
            Directory::unpack(&bad, rw),
            Err(DirnodeError::WriteCapFieldTooShort { len: 10, .. })
        ));
        let bad = entry(b"b", CHK.as_bytes(), &[0; 48], b"{}");
        assert!(matches!(
            Directory::unpack(&bad, Access::Immutable),
            Err(DirnodeError::WriteCapInImmutable { .. })
        ));
        let bad = entry(b"c", CHK.as_bytes(), b"", b"[1]");
        let err = Directory::unpack(&bad, Access::ReadOnly).unwrap_err();
        assert!(matches!(err, DirnodeError::Metadata { index: 0, .. }));
        assert!(err.to_string().contains("\"c\""), "{err}");
        let bad = netstring::encode(b"1:a,");
        assert!(matches!(
            Directory::unpack(&bad, Access::ReadOnly),
            Err(DirnodeError::Fields { index: 0, .. })
        ));
    }

    #[test]
    fn unusable_caps_are_skipped_and_duplicates_replaced() {
        let ssk = "URI:SSK-RO:e3mdrzfwhoq42hy5ubcz6rp3o4:ybyibhnp3vvwuq2vaw2ckjmesgkklfs6ghxleztqidihjyofgw7q";
        let mut bytes = entry(b"m", ssk.as_bytes(), b"", b"{}");
        bytes.extend(entry(b"d", CHK.as_bytes(), b"", b"{\"n\": 1}"));
        bytes.extend(entry(b"d", CHK.as_bytes(), b"", b"{\"n\": 2}"));
        let d = Directory::unpack(&bytes, Access::Immutable).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d.get("d").unwrap().metadata.to_python_json(), "{\"n\": 2}");
        assert_eq!(d.skipped().len(), 2);
        assert!(matches!(d.skipped()[0].reason, SkipReason::Cap(_)));
        assert_eq!(d.skipped()[1].reason, SkipReason::DuplicateName);
    }

    #[test]
    fn names_are_nfc_and_sorted_by_code_point() {
        let mut bytes = entry("e\u{301}".as_bytes(), CHK.as_bytes(), b"", b"{}");
        bytes.extend(entry(b"Z", CHK.as_bytes(), b"", b"{}"));
        let d = Directory::unpack(&bytes, Access::ReadOnly).unwrap();
        let names: Vec<&str> = d.list().map(|(n, _)| n).collect();
        assert_eq!(names, ["Z", "\u{e9}"]);
        assert!(d.get("e\u{301}").is_some());
        // unchanged entries re-pack from their original bytes, in sorted order
        let mut want = entry(b"Z", CHK.as_bytes(), b"", b"{}");
        want.extend(entry("e\u{301}".as_bytes(), CHK.as_bytes(), b"", b"{}"));
        assert_eq!(d.pack(), want);
    }

    mod props {
        use super::*;
        use crate::cap::Cap;
        use crate::dirnode::json::JsonValue;
        use proptest::prelude::*;

        fn arb_cap() -> impl Strategy<Value = ChildCap> {
            (0u8..7, any::<[u8; 16]>(), any::<[u8; 32]>(), 0u64..1 << 40).prop_map(
                |(kind, k, h, size)| {
                    let cap = match kind {
                        0 => Cap::ChkRead {
                            key: k,
                            ueb_hash: h,
                            needed: 3,
                            total: 10,
                            size: size + 56,
                        },
                        1 => Cap::Lit { data: k.to_vec() },
                        2 => Cap::SskWrite {
                            writekey: k,
                            fingerprint: h,
                        },
                        3 => Cap::MdmfRead {
                            readkey: k,
                            fingerprint: h,
                        },
                        4 => Cap::directory(Cap::SskWrite {
                            writekey: k,
                            fingerprint: h,
                        })
                        .unwrap(),
                        5 => Cap::directory(Cap::SskVerify {
                            storage_index: k,
                            fingerprint: h,
                        })
                        .unwrap(),
                        _ => {
                            let future = format!("x-future:{}", crate::base32::encode(&k));
                            return ChildCap::from_caps(
                                Some(future.as_bytes()),
                                Some(b"x-future-ro"),
                                false,
                            )
                            .unwrap();
                        }
                    };
                    ChildCap::from_cap(cap)
                },
            )
        }

        fn arb_json() -> impl Strategy<Value = JsonValue> {
            let leaf = prop_oneof![
                Just(JsonValue::Null),
                any::<bool>().prop_map(JsonValue::Bool),
                any::<i64>().prop_map(JsonValue::Int),
                any::<f64>()
                    .prop_filter("finite", |f| f.is_finite())
                    .prop_map(JsonValue::Float),
                "\\PC{0,8}".prop_map(JsonValue::String),
            ];
            leaf.prop_recursive(3, 16, 4, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..4).prop_map(JsonValue::Array),
                    proptest::collection::vec(("\\PC{0,6}", inner), 0..4)
                        .prop_map(|kv| JsonValue::Object(kv.into_iter().collect())),
                ]
            })
        }

        fn arb_children() -> impl Strategy<Value = Vec<(String, Child)>> {
            proptest::collection::btree_map(
                "[^/]{1,12}".prop_filter("not . or ..", |n| n != "." && n != ".."),
                (
                    arb_cap(),
                    proptest::collection::vec(("\\PC{0,6}", arb_json()), 0..4),
                ),
                0..12,
            )
            .prop_map(|m| {
                let mut seen = std::collections::BTreeSet::new();
                m.into_iter()
                    .filter(|(n, _)| seen.insert(normalize(n).into_owned()))
                    .map(|(n, (cap, md))| {
                        let metadata = md.into_iter().collect();
                        (n, Child { cap, metadata })
                    })
                    .collect()
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(128))]

            #[test]
            fn unpack_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
                for access in [Access::ReadWrite { writekey: WK }, Access::ReadOnly, Access::Immutable] {
                    let _ = Directory::unpack(&bytes, access);
                }
            }

            #[test]
            fn pack_unpack_round_trips(children in arb_children()) {
                let access = Access::ReadWrite { writekey: WK };
                let dir = Directory::with_children(access, children).unwrap();
                let bytes = dir.pack();
                let back = Directory::unpack(&bytes, access).unwrap();
                prop_assert!(back.skipped().is_empty());
                let a: Vec<_> = dir.list().collect();
                let b: Vec<_> = back.list().collect();
                prop_assert_eq!(a, b);
                // and a fresh pack of what was read gives the same bytes
                let again = Directory::with_children(
                    access,
                    back.list().map(|(n, c)| (n.to_string(), c.clone())),
                )
                .unwrap();
                prop_assert_eq!(again.pack(), bytes.clone());
                // the read-only view sees the same children minus write caps
                let ro = Directory::unpack(&bytes, Access::ReadOnly).unwrap();
                prop_assert_eq!(ro.len(), dir.len());
                for (name, child) in ro.list() {
                    prop_assert_eq!(child.cap.write_uri(), None);
                    prop_assert_eq!(child.cap.read_uri(), dir.get(name).unwrap().cap.read_uri());
                }
            }
        }
    }
}
