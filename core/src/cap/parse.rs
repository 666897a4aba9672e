//! Parsing cap text into [`Cap`], with errors that say which field of which kind is wrong.
//!
//! The grammar follows Tahoe's `uri.py`: `URI:<kind>:` then `:`-separated fields, base32 for
//! binary fields (canonical, fixed length for keys and hashes) and decimal for numbers. SSK and
//! CHK read caps have exactly their fields; MDMF caps (Tahoe's regex ends `(:|$)`) and CHK verify
//! caps (regex not anchored at the end) accept further `:`-separated fields, which are dropped.

use super::{Cap, DirCap};
use crate::base32::{self, Base32Error};

/// Longest excerpt of unrecognised text quoted in an error: enough to show a kind name or a
/// number, short enough to keep messages readable.
const EXCERPT: usize = 40;

/// How much of a string that is not a cap at all is quoted: enough to see what it is (a URL, a
/// stray space before `URI:`), too little to leak the key of a cap behind such a prefix.
const NOT_A_CAP_EXCERPT: usize = 12;

/// Why a string is not a cap this library understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapError {
    /// The text does not start with `URI:` (after an optional `ro.`/`imm.` marker). Unknown caps
    /// found in directories are kept verbatim by the dirnode layer, not parsed here.
    #[error("not a Tahoe capability: expected text starting with \"URI:\"{}", hint(.start))]
    NotACap { start: String },
    /// `URI:<kind>:` names no kind of cap known to this version.
    #[error("unknown capability kind \"URI:{kind}\" (not a cap this version of lafs understands)")]
    UnknownKind { kind: String },
    /// Fewer `:`-separated fields than the kind has.
    #[error("URI:{kind}: cap has {got} field(s) after the prefix, expected {expected}")]
    MissingFields {
        kind: &'static str,
        expected: usize,
        got: usize,
    },
    /// More fields than the kind allows (kinds that Tahoe lets carry extra fields don't report this).
    #[error("URI:{kind}: cap has {got} fields after the prefix, expected only {expected}")]
    ExtraFields {
        kind: &'static str,
        expected: usize,
        got: usize,
    },
    /// A key or hash field has the wrong number of base32 characters.
    #[error("URI:{kind}: field {field} has {got} characters, expected {expected} ({} bytes of base32)", base32::decoded_len(*.expected).unwrap_or(0))]
    FieldLength {
        kind: &'static str,
        field: &'static str,
        expected: usize,
        got: usize,
    },
    /// A binary field is not canonical lower-case base32.
    #[error("URI:{kind}: field {field} is not valid base32: {source}")]
    Base32 {
        kind: &'static str,
        field: &'static str,
        #[source]
        source: Base32Error,
    },
    /// A numeric field is not a canonical decimal number (digits only, no leading zero) that fits.
    #[error("URI:{kind}: field {field} = {value:?} is not a valid number: {reason}")]
    BadNumber {
        kind: &'static str,
        field: &'static str,
        value: String,
        reason: &'static str,
    },
    /// k = 0: no file can be read from zero shares.
    #[error("URI:{kind}: needed shares (k) is 0; it must be at least 1")]
    NeededZero { kind: &'static str },
    /// n > 256: Tahoe's erasure code (zfec, GF(2^8)) cannot make more than 256 shares.
    #[error("URI:{kind}: total shares (n) is {total}; it must be at most 256")]
    TotalTooLarge { kind: &'static str, total: u64 },
    /// k > n: more shares needed than exist.
    #[error("URI:{kind}: needed shares (k = {needed}) exceeds total shares (n = {total})")]
    NeededExceedsTotal {
        kind: &'static str,
        needed: u64,
        total: u64,
    },
    /// A write cap carried the `ro.` (alleged read-only) marker.
    #[error("URI:{kind}: a write cap cannot carry the \"ro.\" (read-only) marker")]
    WriteCapMarkedReadOnly { kind: &'static str },
    /// A read or write cap of a mutable object carried the `imm.` (alleged immutable) marker.
    #[error("URI:{kind}: a cap to a mutable object cannot carry the \"imm.\" (immutable) marker")]
    MutableCapMarkedImmutable { kind: &'static str },
    /// [`DirCap::new`] was given a directory cap; directories wrap file caps only.
    #[error("a directory cap must wrap a file cap, not another directory cap")]
    NestedDirectory,
}

fn hint(start: &str) -> String {
    if start.is_empty() {
        " (the text is empty)".to_string()
    } else {
        format!(" (it starts with {start:?})")
    }
}

/// At most [`EXCERPT`] characters of `s`, for quoting in errors.
fn excerpt(s: &str) -> String {
    excerpt_of(s, EXCERPT)
}

fn excerpt_of(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_string(),
    }
}

/// The file kinds, each also usable inside a directory cap.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FileKind {
    Lit,
    ChkRead,
    ChkVerify,
    SskWrite,
    SskRead,
    SskVerify,
    MdmfWrite,
    MdmfRead,
    MdmfVerify,
}

/// Every prefix tag: (text between `URI:` and `:`, is a directory, file kind).
const KINDS: [(&str, bool, FileKind); 18] = [
    ("LIT", false, FileKind::Lit),
    ("CHK", false, FileKind::ChkRead),
    ("CHK-Verifier", false, FileKind::ChkVerify),
    ("SSK", false, FileKind::SskWrite),
    ("SSK-RO", false, FileKind::SskRead),
    ("SSK-Verifier", false, FileKind::SskVerify),
    ("MDMF", false, FileKind::MdmfWrite),
    ("MDMF-RO", false, FileKind::MdmfRead),
    ("MDMF-Verifier", false, FileKind::MdmfVerify),
    ("DIR2-LIT", true, FileKind::Lit),
    ("DIR2-CHK", true, FileKind::ChkRead),
    ("DIR2-CHK-Verifier", true, FileKind::ChkVerify),
    ("DIR2", true, FileKind::SskWrite),
    ("DIR2-RO", true, FileKind::SskRead),
    ("DIR2-Verifier", true, FileKind::SskVerify),
    ("DIR2-MDMF", true, FileKind::MdmfWrite),
    ("DIR2-MDMF-RO", true, FileKind::MdmfRead),
    ("DIR2-MDMF-Verifier", true, FileKind::MdmfVerify),
];

/// The alleged-property marker a cap string carried.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Marker {
    None,
    ReadOnly,
    Immutable,
}

pub(super) fn parse(s: &str) -> Result<Cap, CapError> {
    let (marker, text) = if let Some(rest) = s.strip_prefix("imm.") {
        (Marker::Immutable, rest)
    } else if let Some(rest) = s.strip_prefix("ro.") {
        (Marker::ReadOnly, rest)
    } else {
        (Marker::None, s)
    };
    let Some(after_uri) = text.strip_prefix("URI:") else {
        return Err(CapError::NotACap {
            start: excerpt_of(text, NOT_A_CAP_EXCERPT),
        });
    };
    let (tag, body) = match after_uri.split_once(':') {
        Some((tag, body)) => (tag, Some(body)),
        None => (after_uri, None),
    };
    let Some(&(kind, is_dir, file_kind)) = KINDS.iter().find(|(name, _, _)| *name == tag) else {
        return Err(CapError::UnknownKind { kind: excerpt(tag) });
    };
    let Some(body) = body else {
        return Err(CapError::MissingFields {
            kind,
            expected: expected_fields(file_kind),
            got: 0,
        });
    };

    use FileKind::*;
    match marker {
        Marker::ReadOnly if matches!(file_kind, SskWrite | MdmfWrite) => {
            return Err(CapError::WriteCapMarkedReadOnly { kind });
        }
        Marker::Immutable if matches!(file_kind, SskWrite | SskRead | MdmfWrite | MdmfRead) => {
            return Err(CapError::MutableCapMarkedImmutable { kind });
        }
        _ => {}
    }

    let file = parse_body(kind, file_kind, body)?;
    if is_dir {
        Ok(Cap::Directory(DirCap {
            file: Box::new(file),
        }))
    } else {
        Ok(file)
    }
}

fn expected_fields(kind: FileKind) -> usize {
    match kind {
        FileKind::Lit => 1,
        FileKind::ChkRead | FileKind::ChkVerify => 5,
        _ => 2,
    }
}

/// Parses the fields after `URI:<kind>:` as a cap of `file_kind`; `kind` names it in errors.
fn parse_body(kind: &'static str, file_kind: FileKind, body: &str) -> Result<Cap, CapError> {
    let fields: Vec<&str> = body.split(':').collect();
    let expected = expected_fields(file_kind);
    if fields.len() < expected {
        return Err(CapError::MissingFields {
            kind,
            expected,
            got: fields.len(),
        });
    }
    let extras_allowed = matches!(
        file_kind,
        FileKind::ChkVerify | FileKind::MdmfWrite | FileKind::MdmfRead | FileKind::MdmfVerify
    );
    if fields.len() > expected && !extras_allowed {
        return Err(CapError::ExtraFields {
            kind,
            expected,
            got: fields.len(),
        });
    }
    let f = Fields {
        kind,
        fields: &fields,
    };
    Ok(match file_kind {
        FileKind::Lit => Cap::Lit {
            data: base32::decode(fields[0]).map_err(|source| CapError::Base32 {
                kind,
                field: "data",
                source,
            })?,
        },
        FileKind::ChkRead | FileKind::ChkVerify => {
            let first_name = if file_kind == FileKind::ChkRead {
                "key"
            } else {
                "storage_index"
            };
            let first = f.array::<16>(0, first_name)?;
            let ueb_hash = f.array::<32>(1, "ueb_hash")?;
            let needed = f.number(2, "needed")?;
            let total = f.number(3, "total")?;
            let size = f.number(4, "size")?;
            if needed == 0 {
                return Err(CapError::NeededZero { kind });
            }
            if total > 256 {
                return Err(CapError::TotalTooLarge { kind, total });
            }
            if needed > total {
                return Err(CapError::NeededExceedsTotal {
                    kind,
                    needed,
                    total,
                });
            }
            // Both are now in 1..=256.
            let (needed, total) = (needed as u16, total as u16);
            if file_kind == FileKind::ChkRead {
                Cap::ChkRead {
                    key: first,
                    ueb_hash,
                    needed,
                    total,
                    size,
                }
            } else {
                Cap::ChkVerify {
                    storage_index: first,
                    ueb_hash,
                    needed,
                    total,
                    size,
                }
            }
        }
        FileKind::SskWrite | FileKind::MdmfWrite => {
            let writekey = f.array::<16>(0, "writekey")?;
            let fingerprint = f.array::<32>(1, "fingerprint")?;
            if file_kind == FileKind::SskWrite {
                Cap::SskWrite {
                    writekey,
                    fingerprint,
                }
            } else {
                Cap::MdmfWrite {
                    writekey,
                    fingerprint,
                }
            }
        }
        FileKind::SskRead | FileKind::MdmfRead => {
            let readkey = f.array::<16>(0, "readkey")?;
            let fingerprint = f.array::<32>(1, "fingerprint")?;
            if file_kind == FileKind::SskRead {
                Cap::SskRead {
                    readkey,
                    fingerprint,
                }
            } else {
                Cap::MdmfRead {
                    readkey,
                    fingerprint,
                }
            }
        }
        FileKind::SskVerify | FileKind::MdmfVerify => {
            let storage_index = f.array::<16>(0, "storage_index")?;
            let fingerprint = f.array::<32>(1, "fingerprint")?;
            if file_kind == FileKind::SskVerify {
                Cap::SskVerify {
                    storage_index,
                    fingerprint,
                }
            } else {
                Cap::MdmfVerify {
                    storage_index,
                    fingerprint,
                }
            }
        }
    })
}

/// The split fields of one cap, for typed access with kind-and-field-naming errors. Callers have
/// already checked that enough fields exist.
struct Fields<'a> {
    kind: &'static str,
    fields: &'a [&'a str],
}

impl Fields<'_> {
    fn get(&self, i: usize) -> &str {
        self.fields.get(i).copied().unwrap_or("")
    }

    fn array<const N: usize>(&self, i: usize, field: &'static str) -> Result<[u8; N], CapError> {
        let kind = self.kind;
        base32::decode_array::<N>(self.get(i)).map_err(|source| match source {
            Base32Error::WrongLength { expected, got } => CapError::FieldLength {
                kind,
                field,
                expected,
                got,
            },
            source => CapError::Base32 {
                kind,
                field,
                source,
            },
        })
    }

    fn number(&self, i: usize, field: &'static str) -> Result<u64, CapError> {
        let text = self.get(i);
        let bad = |reason| CapError::BadNumber {
            kind: self.kind,
            field,
            value: excerpt(text),
            reason,
        };
        if text.is_empty() {
            return Err(bad("it is empty"));
        }
        if !text.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad("only the digits 0-9 are allowed"));
        }
        if text.len() > 1 && text.starts_with('0') {
            return Err(bad("leading zeros are not canonical"));
        }
        text.parse::<u64>()
            .map_err(|_| bad("too large for 64 bits"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "hah7mxwfpqemm7icdh3hwsa5fa";
    const HASH: &str = "6epvxt2uxh42obpnfn4wkrplqml7voh7aqpnqnapu7ffcyn2hk3q";

    fn chk(k: &str, n: &str, size: &str) -> String {
        format!("URI:CHK:{KEY}:{HASH}:{k}:{n}:{size}")
    }

    #[test]
    fn every_kind_tag_is_recognised() {
        for (tag, is_dir, _) in KINDS {
            // Empty bodies are wrong for all but LIT, and the error names the kind.
            match parse(&format!("URI:{tag}:")) {
                Ok(cap) => {
                    assert_eq!(cap.kind_name(), tag);
                    assert_eq!(cap.is_directory(), is_dir);
                }
                Err(e) => assert!(e.to_string().contains(&format!("URI:{tag}:")), "{e}"),
            }
        }
    }

    #[test]
    fn not_a_cap_and_unknown_kinds() {
        assert_eq!(
            parse(""),
            Err(CapError::NotACap {
                start: String::new()
            })
        );
        assert!(matches!(
            parse("http://example"),
            Err(CapError::NotACap { .. })
        ));
        assert!(matches!(parse("uri:CHK:x"), Err(CapError::NotACap { .. })));
        assert_eq!(
            parse("URI:FOO:bar"),
            Err(CapError::UnknownKind { kind: "FOO".into() })
        );
        assert_eq!(
            parse("URI:"),
            Err(CapError::UnknownKind {
                kind: String::new()
            })
        );
        assert!(matches!(
            parse("x-tahoe-future-test-writeable:abc"),
            Err(CapError::NotACap { .. })
        ));
        let long = format!("URI:{}", "X".repeat(1000));
        let e = parse(&long).unwrap_err().to_string();
        assert!(e.len() < 200, "{e}");
    }

    #[test]
    fn a_prefix_without_its_colon_is_missing_fields() {
        assert_eq!(
            parse("URI:CHK"),
            Err(CapError::MissingFields {
                kind: "CHK",
                expected: 5,
                got: 0
            })
        );
        assert_eq!(
            parse("URI:LIT"),
            Err(CapError::MissingFields {
                kind: "LIT",
                expected: 1,
                got: 0
            })
        );
    }

    #[test]
    fn field_counts() {
        assert_eq!(
            parse(&format!("URI:CHK:{KEY}:{HASH}:3:10")),
            Err(CapError::MissingFields {
                kind: "CHK",
                expected: 5,
                got: 4
            })
        );
        assert_eq!(
            parse(&format!("{}:7", chk("3", "10", "56"))),
            Err(CapError::ExtraFields {
                kind: "CHK",
                expected: 5,
                got: 6
            })
        );
        assert_eq!(
            parse(&format!("URI:SSK:{KEY}:{HASH}:")),
            Err(CapError::ExtraFields {
                kind: "SSK",
                expected: 2,
                got: 3
            })
        );
        assert_eq!(
            parse("URI:LIT:my:my"),
            Err(CapError::ExtraFields {
                kind: "LIT",
                expected: 1,
                got: 2
            })
        );
        // Tahoe lets MDMF and CHK verify caps carry more fields; they are dropped.
        let mdmf = parse(&format!("URI:MDMF:{KEY}:{HASH}:3:131073")).unwrap();
        assert_eq!(mdmf.to_string(), format!("URI:MDMF:{KEY}:{HASH}"));
        let dir = parse(&format!("URI:DIR2-MDMF-RO:{KEY}:{HASH}:")).unwrap();
        assert_eq!(dir.to_string(), format!("URI:DIR2-MDMF-RO:{KEY}:{HASH}"));
        let v = parse(&format!("URI:CHK-Verifier:{KEY}:{HASH}:3:10:56:extra")).unwrap();
        assert_eq!(
            v.to_string(),
            format!("URI:CHK-Verifier:{KEY}:{HASH}:3:10:56")
        );
    }

    #[test]
    fn binary_field_errors_name_the_field() {
        assert_eq!(
            parse(&format!("URI:CHK:{}:{HASH}:3:10:56", &KEY[..25])),
            Err(CapError::FieldLength {
                kind: "CHK",
                field: "key",
                expected: 26,
                got: 25
            })
        );
        assert_eq!(
            parse(&format!("URI:SSK-RO:{KEY}:{KEY}")),
            Err(CapError::FieldLength {
                kind: "SSK-RO",
                field: "fingerprint",
                expected: 52,
                got: 26
            })
        );
        let upper = KEY.to_uppercase();
        assert!(matches!(
            parse(&format!("URI:CHK:{upper}:{HASH}:3:10:56")),
            Err(CapError::Base32 {
                field: "key",
                source: Base32Error::UpperCase { position: 0, .. },
                ..
            })
        ));
        // Last char of a 16-byte field must have its 2 low bits clear: 'b' does not.
        let noncanon = format!("{}b", &KEY[..25]);
        assert!(matches!(
            parse(&format!("URI:DIR2-CHK:{noncanon}:{HASH}:3:10:56")),
            Err(CapError::Base32 {
                kind: "DIR2-CHK",
                field: "key",
                source: Base32Error::NonCanonicalTrailingBits { .. }
            })
        ));
        assert!(matches!(
            parse("URI:LIT:mz"),
            Err(CapError::Base32 {
                field: "data",
                source: Base32Error::NonCanonicalTrailingBits { .. },
                ..
            })
        ));
        assert!(matches!(
            parse("URI:LIT:a"),
            Err(CapError::Base32 {
                field: "data",
                source: Base32Error::ImpossibleLength { len: 1 },
                ..
            })
        ));
    }

    #[test]
    fn number_errors() {
        for (k, n, size, field, reason) in [
            ("", "10", "56", "needed", "it is empty"),
            ("3", "1O", "56", "total", "only the digits 0-9 are allowed"),
            ("3", "10", "-1", "size", "only the digits 0-9 are allowed"),
            ("3", "10", "+1", "size", "only the digits 0-9 are allowed"),
            (
                "03",
                "10",
                "56",
                "needed",
                "leading zeros are not canonical",
            ),
            (
                "3",
                "10",
                "18446744073709551616",
                "size",
                "too large for 64 bits",
            ),
        ] {
            match parse(&chk(k, n, size)) {
                Err(CapError::BadNumber {
                    field: f,
                    reason: r,
                    ..
                }) => {
                    assert_eq!((f, r), (field, reason), "{k}:{n}:{size}")
                }
                other => panic!("{k}:{n}:{size}: {other:?}"),
            }
        }
        let max = parse(&chk("3", "10", "18446744073709551615")).unwrap();
        assert!(matches!(max, Cap::ChkRead { size: u64::MAX, .. }));
        assert!(parse(&chk("0", "10", "0")).is_err());
        assert!(parse(&chk("3", "10", "0")).is_ok());
    }

    #[test]
    fn share_counts() {
        assert_eq!(
            parse(&chk("0", "10", "56")),
            Err(CapError::NeededZero { kind: "CHK" })
        );
        assert_eq!(
            parse(&chk("3", "257", "56")),
            Err(CapError::TotalTooLarge {
                kind: "CHK",
                total: 257
            })
        );
        assert_eq!(
            parse(&chk("3", "99999999999", "56")),
            Err(CapError::TotalTooLarge {
                kind: "CHK",
                total: 99_999_999_999
            })
        );
        assert_eq!(
            parse(&chk("11", "10", "56")),
            Err(CapError::NeededExceedsTotal {
                kind: "CHK",
                needed: 11,
                total: 10
            })
        );
        assert!(parse(&chk("1", "1", "56")).is_ok());
        assert!(parse(&chk("256", "256", "56")).is_ok());
        let e = parse(&chk("11", "10", "56")).unwrap_err().to_string();
        assert!(e.contains("k = 11") && e.contains("n = 10"), "{e}");
    }

    #[test]
    fn markers() {
        let ssk = format!("URI:SSK:{KEY}:{HASH}");
        let ssk_ro = format!("URI:SSK-RO:{KEY}:{HASH}");
        let ssk_v = format!("URI:SSK-Verifier:{KEY}:{HASH}");
        let c = chk("3", "10", "56");
        assert_eq!(parse(&format!("ro.{c}")), parse(&c));
        assert_eq!(parse(&format!("imm.{c}")), parse(&c));
        assert_eq!(parse(&format!("ro.{ssk_ro}")), parse(&ssk_ro));
        assert_eq!(parse("imm.URI:LIT:my"), parse("URI:LIT:my"));
        assert_eq!(parse(&format!("imm.{ssk_v}")), parse(&ssk_v));
        assert_eq!(
            parse(&format!("ro.{ssk}")),
            Err(CapError::WriteCapMarkedReadOnly { kind: "SSK" })
        );
        assert_eq!(
            parse(&format!("ro.URI:DIR2-MDMF:{KEY}:{HASH}")),
            Err(CapError::WriteCapMarkedReadOnly { kind: "DIR2-MDMF" })
        );
        assert_eq!(
            parse(&format!("imm.{ssk}")),
            Err(CapError::MutableCapMarkedImmutable { kind: "SSK" })
        );
        assert_eq!(
            parse(&format!("imm.URI:DIR2-RO:{KEY}:{HASH}")),
            Err(CapError::MutableCapMarkedImmutable { kind: "DIR2-RO" })
        );
        assert!(matches!(
            parse(&format!("ro.imm.{c}")),
            Err(CapError::NotACap { .. })
        ));
        assert!(matches!(parse("ro."), Err(CapError::NotACap { .. })));
    }

    #[test]
    fn multibyte_text_never_panics() {
        for s in [
            "URI:é",
            "URI:CHK:é",
            "URI:LIT:ééé",
            "ro.é",
            "URI:SSK:aaaaaaaaaaaaaaaaaaaaaaaaé:x",
        ] {
            assert!(parse(s).is_err(), "{s}");
        }
        let e = parse(&format!("URI:{}", "é".repeat(100)))
            .unwrap_err()
            .to_string();
        assert!(e.contains('…'), "{e}");
    }
}
