//! Capabilities: every kind round-trips through its text, derivations match the caps a real
//! Tahoe grid produced, and no input string — arbitrary or a damaged real cap — makes parsing
//! panic or yields a cap that formats to something else.

use lafs_core::base32;
use lafs_core::cap::{Cap, CapError};
use proptest::prelude::*;

fn bytes16(seed: u8) -> [u8; 16] {
    std::array::from_fn(|i| {
        seed.wrapping_mul(31)
            .wrapping_add((i as u8).wrapping_mul(7))
    })
}

fn bytes32(seed: u8) -> [u8; 32] {
    std::array::from_fn(|i| {
        seed.wrapping_mul(17)
            .wrapping_add((i as u8).wrapping_mul(13))
    })
}

/// One cap of each of the nine file kinds.
fn file_caps() -> Vec<Cap> {
    vec![
        Cap::Lit { data: Vec::new() },
        Cap::Lit {
            data: b"hello, literal world".to_vec(),
        },
        Cap::ChkRead {
            key: bytes16(1),
            ueb_hash: bytes32(2),
            needed: 3,
            total: 10,
            size: 1_000_000,
        },
        Cap::ChkVerify {
            storage_index: bytes16(3),
            ueb_hash: bytes32(4),
            needed: 256,
            total: 256,
            size: u64::MAX,
        },
        Cap::SskWrite {
            writekey: bytes16(5),
            fingerprint: bytes32(6),
        },
        Cap::SskRead {
            readkey: bytes16(7),
            fingerprint: bytes32(8),
        },
        Cap::SskVerify {
            storage_index: bytes16(9),
            fingerprint: bytes32(10),
        },
        Cap::MdmfWrite {
            writekey: bytes16(11),
            fingerprint: bytes32(12),
        },
        Cap::MdmfRead {
            readkey: bytes16(13),
            fingerprint: bytes32(14),
        },
        Cap::MdmfVerify {
            storage_index: bytes16(15),
            fingerprint: bytes32(16),
        },
    ]
}

/// Every file cap above plus its directory form: all 18 kinds.
fn all_caps() -> Vec<Cap> {
    let files = file_caps();
    let dirs = files
        .iter()
        .map(|f| Cap::directory(f.clone()).expect("file caps wrap"));
    files.clone().into_iter().chain(dirs).collect()
}

const KIND_PREFIXES: [&str; 18] = [
    "URI:LIT:",
    "URI:CHK:",
    "URI:CHK-Verifier:",
    "URI:SSK:",
    "URI:SSK-RO:",
    "URI:SSK-Verifier:",
    "URI:MDMF:",
    "URI:MDMF-RO:",
    "URI:MDMF-Verifier:",
    "URI:DIR2-LIT:",
    "URI:DIR2-CHK:",
    "URI:DIR2-CHK-Verifier:",
    "URI:DIR2:",
    "URI:DIR2-RO:",
    "URI:DIR2-Verifier:",
    "URI:DIR2-MDMF:",
    "URI:DIR2-MDMF-RO:",
    "URI:DIR2-MDMF-Verifier:",
];

#[test]
fn every_kind_round_trips_through_its_text() {
    let caps = all_caps();
    let mut seen = std::collections::BTreeSet::new();
    for cap in &caps {
        let text = cap.to_string();
        assert!(
            text.starts_with(&format!("URI:{}:", cap.kind_name())),
            "{text}"
        );
        seen.insert(format!("URI:{}:", cap.kind_name()));
        assert_eq!(&Cap::parse(&text).unwrap(), cap, "{text}");
        assert_eq!(text.parse::<Cap>().unwrap().to_string(), text);
    }
    let expected: std::collections::BTreeSet<String> =
        KIND_PREFIXES.iter().map(|s| s.to_string()).collect();
    assert_eq!(seen, expected, "all 18 kinds are covered");
}

#[test]
fn canonical_text_is_reproduced_exactly() {
    let key = "hah7mxwfpqemm7icdh3hwsa5fa";
    let hash = "6epvxt2uxh42obpnfn4wkrplqml7voh7aqpnqnapu7ffcyn2hk3q";
    let mut texts = vec!["URI:LIT:".to_string(), "URI:DIR2-LIT:".to_string()];
    texts.push("URI:LIT:mzxw6ytboi".into());
    texts.push("URI:DIR2-LIT:gu".into());
    for prefix in KIND_PREFIXES.iter().filter(|p| !p.contains("LIT")) {
        let body = if prefix.contains("CHK") {
            format!("{key}:{hash}:3:10:131071")
        } else {
            format!("{key}:{hash}")
        };
        texts.push(format!("{prefix}{body}"));
    }
    for text in &texts {
        let cap = Cap::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(&cap.to_string(), text);
    }
}

#[test]
fn lit_caps_hold_the_file_bytes() {
    assert_eq!(
        Cap::parse("URI:LIT:").unwrap(),
        Cap::Lit { data: Vec::new() }
    );
    assert_eq!(
        Cap::parse("URI:LIT:mzxw6ytboi").unwrap(),
        Cap::Lit {
            data: b"foobar".to_vec()
        }
    );
    // Longer than Tahoe would make (its threshold is 55 bytes), but Tahoe accepts it, so do we.
    let big = vec![7u8; 1000];
    let text = format!("URI:LIT:{}", base32::encode(&big));
    assert_eq!(Cap::parse(&text).unwrap(), Cap::Lit { data: big });
}

#[test]
fn derivations_follow_the_kind_lattice() {
    for file in file_caps() {
        let dir = Cap::directory(file.clone()).unwrap();
        // Directory derivations are the file derivations, wrapped.
        assert_eq!(
            dir.read_only(),
            file.read_only().map(|c| Cap::directory(c).unwrap())
        );
        assert_eq!(
            dir.verify_cap(),
            file.verify_cap().map(|c| Cap::directory(c).unwrap())
        );
        assert_eq!(dir.storage_index(), file.storage_index());
        assert_eq!(dir.is_mutable(), file.is_mutable());
        assert_eq!(dir.is_readonly(), file.is_readonly());
        assert!(dir.is_directory() && !file.is_directory());

        for cap in [&file, &dir] {
            if let Some(ro) = cap.read_only() {
                assert!(ro.is_readonly());
                assert_eq!(
                    ro.read_only().as_ref(),
                    Some(&ro),
                    "read-only is idempotent"
                );
                assert_eq!(ro.verify_cap(), cap.verify_cap(), "{cap}");
                assert_eq!(ro.storage_index(), cap.storage_index(), "{cap}");
            } else {
                assert!(cap.is_verify_cap(), "{cap}");
            }
            if let Some(v) = cap.verify_cap() {
                assert!(v.is_verify_cap() && v.is_readonly());
                assert_eq!(v.verify_cap().as_ref(), Some(&v), "verify is idempotent");
                assert_eq!(v.storage_index(), cap.storage_index(), "{cap}");
                assert_eq!(v.is_mutable(), cap.is_mutable());
            } else {
                assert!(matches!(cap.file_cap(), Cap::Lit { .. }), "{cap}");
                assert_eq!(cap.storage_index(), None);
            }
            let text = cap.to_string();
            let kind = cap.kind_name();
            let write = ["SSK", "MDMF", "DIR2", "DIR2-MDMF"].contains(&kind);
            assert_eq!(cap.is_readonly(), !write, "{kind}");
            let immutable = kind.contains("LIT") || kind.contains("CHK");
            assert_eq!(cap.is_mutable(), !immutable, "{text}");
        }
    }
}

#[test]
fn diminishing_changes_only_the_kind_of_each_prefix() {
    let expect = [
        ("URI:SSK:", "URI:SSK-RO:", "URI:SSK-Verifier:"),
        ("URI:MDMF:", "URI:MDMF-RO:", "URI:MDMF-Verifier:"),
        ("URI:DIR2:", "URI:DIR2-RO:", "URI:DIR2-Verifier:"),
        (
            "URI:DIR2-MDMF:",
            "URI:DIR2-MDMF-RO:",
            "URI:DIR2-MDMF-Verifier:",
        ),
        ("URI:CHK:", "URI:CHK:", "URI:CHK-Verifier:"),
        ("URI:DIR2-CHK:", "URI:DIR2-CHK:", "URI:DIR2-CHK-Verifier:"),
    ];
    for cap in all_caps() {
        let text = cap.to_string();
        let Some((_, ro, v)) = expect.iter().find(|(w, _, _)| text.starts_with(w)) else {
            continue;
        };
        assert!(
            cap.read_only().unwrap().to_string().starts_with(ro),
            "{text}"
        );
        assert!(
            cap.verify_cap().unwrap().to_string().starts_with(v),
            "{text}"
        );
    }
}

#[test]
fn fields_name_every_part_in_a_stable_order() {
    let names = |cap: &Cap| cap.fields().into_iter().map(|(n, _)| n).collect::<Vec<_>>();
    let [lit, _, chk, chkv, ssk, sskro, sskv, ..] = &file_caps()[..] else {
        unreachable!()
    };
    assert_eq!(names(lit), ["data", "size"]);
    assert_eq!(
        names(chk),
        [
            "key",
            "ueb_hash",
            "needed",
            "total",
            "size",
            "storage_index"
        ]
    );
    assert_eq!(
        names(chkv),
        ["storage_index", "ueb_hash", "needed", "total", "size"]
    );
    assert_eq!(
        names(ssk),
        ["writekey", "fingerprint", "readkey", "storage_index"]
    );
    assert_eq!(names(sskro), ["readkey", "fingerprint", "storage_index"]);
    assert_eq!(names(sskv), ["storage_index", "fingerprint"]);
    let dir = Cap::directory(ssk.clone()).unwrap();
    assert_eq!(
        names(&dir),
        [
            "file_kind",
            "writekey",
            "fingerprint",
            "readkey",
            "storage_index"
        ]
    );
    for cap in all_caps() {
        let fields = cap.fields();
        if let Some(si) = cap.storage_index() {
            let listed = fields
                .iter()
                .find(|(n, _)| *n == "storage_index")
                .map(|(_, v)| v.clone());
            assert_eq!(listed, Some(base32::encode(&si)), "{cap}");
        }
        let numbers = fields
            .iter()
            .filter(|(n, _)| ["needed", "total", "size"].contains(n));
        for (_, v) in numbers {
            assert!(v.parse::<u64>().is_ok(), "{cap}: {v}");
        }
    }
}

/// Reads the index of shares a real Tahoe 1.20 grid wrote (checked in under tests/vectors).
#[allow(clippy::disallowed_methods)] // a test reading its fixture; the library itself does no I/O
fn tahoe_share_index() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/vectors/tahoe-shares/index.json"
    );
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read the Tahoe share vectors at {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
}

#[test]
fn caps_from_a_real_tahoe_grid_parse_and_derive_identically() {
    let index = tahoe_share_index();
    let cases = index["cases"]
        .as_array()
        .expect("index.json has a cases array");
    let mut kinds = std::collections::BTreeSet::new();
    for case in cases {
        let name = case["name"].as_str().expect("case name");
        let text = |key: &str| {
            case[key]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: no {key}"))
                .to_string()
        };
        let (cap_text, read_text, verify_text, si_text) = (
            text("cap"),
            text("read_cap"),
            text("verify_cap"),
            text("storage_index"),
        );
        let cap = Cap::parse(&cap_text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let read = Cap::parse(&read_text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let verify = Cap::parse(&verify_text).unwrap_or_else(|e| panic!("{name}: {e}"));
        kinds.insert(cap.kind_name());

        for (parsed, original) in [
            (&cap, &cap_text),
            (&read, &read_text),
            (&verify, &verify_text),
        ] {
            assert_eq!(&parsed.to_string(), original, "{name}");
        }
        assert_eq!(
            cap.read_only().map(|c| c.to_string()),
            Some(read_text.clone()),
            "{name}"
        );
        assert_eq!(
            cap.verify_cap().map(|c| c.to_string()),
            Some(verify_text.clone()),
            "{name}"
        );
        assert_eq!(
            read.verify_cap().map(|c| c.to_string()),
            Some(verify_text.clone()),
            "{name}"
        );
        for c in [&cap, &read, &verify] {
            assert_eq!(
                c.storage_index().map(|si| base32::encode(&si)),
                Some(si_text.clone()),
                "{name}"
            );
        }

        // The same file as a directory derives the same way, prefixes swapped.
        let dir = Cap::directory(cap.clone()).unwrap();
        let dir_text = dir.to_string();
        assert_eq!(Cap::parse(&dir_text).unwrap(), dir, "{name}");
        let dir_verify = dir.verify_cap().unwrap().to_string();
        assert_eq!(
            dir_verify
                .split_once(':')
                .unwrap()
                .1
                .split_once(':')
                .unwrap()
                .1,
            verify_text
                .split_once(':')
                .unwrap()
                .1
                .split_once(':')
                .unwrap()
                .1,
            "{name}"
        );
    }
    assert!(
        kinds.contains("CHK") && kinds.contains("SSK") && kinds.contains("MDMF"),
        "{kinds:?}"
    );
}

#[test]
fn errors_say_what_is_wrong() {
    let key = "hah7mxwfpqemm7icdh3hwsa5fa";
    let hash = "6epvxt2uxh42obpnfn4wkrplqml7voh7aqpnqnapu7ffcyn2hk3q";
    let cases = [
        (
            format!("URI:CHK:{key}:{hash}:0:10:5"),
            "needed shares (k) is 0",
        ),
        (
            format!("URI:CHK:{key}:{hash}:3:300:5"),
            "total shares (n) is 300",
        ),
        (format!("URI:CHK:{key}:{hash}:5:4:5"), "k = 5"),
        (format!("URI:CHK:{key}:{hash}:3:10:x"), "field size"),
        (format!("URI:CHK:{key}:{hash}:3:10"), "expected 5"),
        (
            format!("URI:SSK:{key}:{key}"),
            "field fingerprint has 26 characters, expected 52",
        ),
        (
            format!("URI:SSK:{}:{hash}", key.to_uppercase()),
            "upper-case",
        ),
        (format!("ro.URI:SSK:{key}:{hash}"), "ro."),
        (format!("imm.URI:MDMF-RO:{key}:{hash}"), "imm."),
        (
            "URI:NEW-KIND:abc".to_string(),
            "unknown capability kind \"URI:NEW-KIND\"",
        ),
        ("/uri/URI:CHK:".to_string(), "starting with \"URI:\""),
        (
            format!(" URI:SSK:{key}:{hash}"),
            "it starts with \" URI:SSK:",
        ),
    ];
    for (text, needle) in cases {
        let err: CapError = Cap::parse(&text).expect_err(&text);
        let msg = err.to_string();
        assert!(msg.contains(needle), "{text}: {msg:?} lacks {needle:?}");
        assert!(
            !msg.contains(key) && !msg.contains(hash),
            "errors must not quote keys: {msg}"
        );
    }
}

// ---- property tests ----

fn any_file_cap() -> impl Strategy<Value = Cap> {
    let k_n = (1u16..=256).prop_flat_map(|n| (1u16..=n, Just(n)));
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..80).prop_map(|data| Cap::Lit { data }),
        (
            any::<[u8; 16]>(),
            any::<[u8; 32]>(),
            k_n.clone(),
            any::<u64>()
        )
            .prop_map(|(key, ueb_hash, (needed, total), size)| Cap::ChkRead {
                key,
                ueb_hash,
                needed,
                total,
                size
            }),
        (any::<[u8; 16]>(), any::<[u8; 32]>(), k_n, any::<u64>()).prop_map(
            |(storage_index, ueb_hash, (needed, total), size)| Cap::ChkVerify {
                storage_index,
                ueb_hash,
                needed,
                total,
                size
            }
        ),
        (any::<[u8; 16]>(), any::<[u8; 32]>(), 0..6u8).prop_map(|(a, fingerprint, which)| {
            match which {
                0 => Cap::SskWrite {
                    writekey: a,
                    fingerprint,
                },
                1 => Cap::SskRead {
                    readkey: a,
                    fingerprint,
                },
                2 => Cap::SskVerify {
                    storage_index: a,
                    fingerprint,
                },
                3 => Cap::MdmfWrite {
                    writekey: a,
                    fingerprint,
                },
                4 => Cap::MdmfRead {
                    readkey: a,
                    fingerprint,
                },
                _ => Cap::MdmfVerify {
                    storage_index: a,
                    fingerprint,
                },
            }
        }),
    ]
}

fn any_cap() -> impl Strategy<Value = Cap> {
    (any_file_cap(), any::<bool>()).prop_map(|(f, dir)| {
        if dir {
            Cap::directory(f).expect("file caps wrap")
        } else {
            f
        }
    })
}

/// Ways to damage a cap's text.
#[derive(Debug, Clone)]
enum Mutation {
    Truncate(usize),
    Replace(usize, char),
    Delete(usize),
    Insert(usize, char),
    Append(String),
    Prefix(&'static str),
}

fn any_mutation() -> impl Strategy<Value = Mutation> {
    let ch = prop_oneof![
        Just(':'),
        Just('a'),
        Just('A'),
        Just('0'),
        Just('1'),
        Just('7'),
        Just('='),
        Just('é'),
        Just('\0'),
        any::<char>()
    ];
    prop_oneof![
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), ch.clone()).prop_map(|(i, c)| Mutation::Replace(i, c)),
        any::<usize>().prop_map(Mutation::Delete),
        (any::<usize>(), ch).prop_map(|(i, c)| Mutation::Insert(i, c)),
        "(:[a-z2-7]{0,52}|:[0-9]{0,4}|:|::)".prop_map(Mutation::Append),
        prop_oneof![
            Just("ro."),
            Just("imm."),
            Just("ro.ro."),
            Just(" "),
            Just("URI:")
        ]
        .prop_map(Mutation::Prefix),
    ]
}

fn apply(text: &str, m: &Mutation) -> String {
    let chars: Vec<char> = text.chars().collect();
    let at = |i: usize| {
        if chars.is_empty() {
            0
        } else {
            i % (chars.len() + 1)
        }
    };
    let mut out = chars.clone();
    match m {
        Mutation::Truncate(i) => out.truncate(at(*i)),
        Mutation::Replace(i, c) => {
            if !out.is_empty() {
                let i = i % out.len();
                out[i] = *c;
            }
        }
        Mutation::Delete(i) => {
            if !out.is_empty() {
                out.remove(i % out.len());
            }
        }
        Mutation::Insert(i, c) => out.insert(at(*i), *c),
        Mutation::Append(s) => out.extend(s.chars()),
        Mutation::Prefix(p) => return format!("{p}{text}"),
    }
    out.into_iter().collect()
}

/// What must hold for any parse result: no panic anywhere, and success means a cap whose
/// canonical text parses back to it (and whose derivations are total).
fn check_parse(text: &str) -> Result<(), TestCaseError> {
    if let Ok(cap) = Cap::parse(text) {
        let again = cap.to_string();
        prop_assert_eq!(
            Cap::parse(&again),
            Ok(cap.clone()),
            "{:?} -> {}",
            text,
            again
        );
        let _ = (
            cap.read_only(),
            cap.verify_cap(),
            cap.storage_index(),
            cap.fields(),
        );
    }
    Ok(())
}

proptest! {
    // Parsing is cheap; more cases search the damaged-input space harder at little cost.
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn generated_caps_round_trip(cap in any_cap()) {
        let text = cap.to_string();
        prop_assert_eq!(Cap::parse(&text), Ok(cap.clone()));
        prop_assert_eq!(Cap::parse(&text).unwrap().to_string(), text);
        for derived in [cap.read_only(), cap.verify_cap()].into_iter().flatten() {
            prop_assert_eq!(Cap::parse(&derived.to_string()), Ok(derived));
        }
    }

    #[test]
    fn arbitrary_strings_never_panic(s in any::<String>()) {
        check_parse(&s)?;
    }

    #[test]
    fn cap_shaped_strings_never_panic(
        prefix in proptest::sample::select(&KIND_PREFIXES[..]),
        body in "[a-z2-7:0-9A-Z=]{0,120}",
    ) {
        check_parse(&format!("{prefix}{body}"))?;
    }

    #[test]
    fn damaged_caps_never_panic_and_successes_reformat(
        cap in any_cap(),
        mutations in proptest::collection::vec(any_mutation(), 1..4),
    ) {
        let mut text = cap.to_string();
        for m in &mutations {
            text = apply(&text, m);
        }
        check_parse(&text)?;
    }
}
