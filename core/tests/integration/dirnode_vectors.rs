//! Directory tables produced by Tahoe-LAFS itself (tests/vectors/dirnode.json, made by
//! tests/vectors/gen_dirnode_vectors.py with `allmydata.dirnode`): we must pack the same children
//! to the same bytes, read Tahoe's bytes back to the same children (with a write cap and with a
//! read cap), and make the same bytes when applying the same edits at the same times.

use lafs_core::cap::Cap;
use lafs_core::dirnode::{Access, Child, ChildCap, Directory, EditError, JsonObject, Overwrite};
use serde_json::Value;
use sha2::{Digest, Sha256};

#[allow(clippy::disallowed_methods)] // a test reading its fixture; the library itself does no I/O
fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/vectors/dirnode.json");
    let text = std::fs::read_to_string(path).expect("read tests/vectors/dirnode.json");
    serde_json::from_str(&text).expect("parse dirnode.json")
}

fn opt_str(v: &Value) -> Option<&str> {
    v.as_str()
}

fn access_of(case: &Value) -> Access {
    match case["access"].as_str().unwrap() {
        "read-write" => {
            let wk: [u8; 16] = hex::decode(case["writekey_hex"].as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap();
            // The writekey is the one the directory cap carries.
            let Cap::Directory(dircap) = Cap::parse(case["dircap"].as_str().unwrap()).unwrap()
            else {
                panic!("dircap is not a directory cap")
            };
            assert_eq!(
                Access::for_cap(&dircap),
                Some(Access::ReadWrite { writekey: wk })
            );
            Access::ReadWrite { writekey: wk }
        }
        "read-only" => Access::ReadOnly,
        "immutable" => Access::Immutable,
        other => panic!("unknown access {other}"),
    }
}

/// (name, write cap, read cap, metadata JSON) as the vectors describe a child.
type Described = (String, Option<String>, Option<String>, String);

fn described(list: &Value) -> Vec<Described> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                opt_str(&c["write_uri"]).map(str::to_string),
                opt_str(&c["read_uri"]).map(str::to_string),
                c["metadata_json"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn describe(dir: &Directory) -> Vec<Described> {
    let text = |b: Option<Vec<u8>>| b.map(|b| String::from_utf8_lossy(&b).into_owned());
    dir.list()
        .map(|(name, child)| {
            (
                name.to_string(),
                text(child.cap.write_uri()),
                text(child.cap.read_uri()),
                child.metadata.to_python_json(),
            )
        })
        .collect()
}

fn child_from(d: &Described, deep_immutable: bool) -> Child {
    let cap = ChildCap::from_caps(
        d.1.as_deref().map(str::as_bytes),
        d.2.as_deref().map(str::as_bytes),
        deep_immutable,
    )
    .unwrap_or_else(|e| panic!("child {:?}: {e}", d.0));
    let metadata = JsonObject::parse(d.3.as_bytes()).unwrap();
    Child { cap, metadata }
}

#[test]
fn pack_matches_tahoe_bytes() {
    let v = vectors();
    let mut checked = 0;
    for case in v["cases"].as_array().unwrap() {
        if case["unpack_only"].as_bool() == Some(true) {
            continue;
        }
        let id = case["id"].as_str().unwrap();
        let access = access_of(case);
        let want = hex::decode(case["packed_hex"].as_str().unwrap()).unwrap();
        let children = described(&case["children"])
            .iter()
            .map(|d| (d.0.clone(), child_from(d, access.is_deep_immutable())))
            .collect::<Vec<_>>();
        let dir = Directory::with_children(access, children).unwrap();
        assert_eq!(
            dir.pack(),
            want,
            "case {id}: packed bytes differ from Tahoe's"
        );
        checked += 1;
    }
    assert!(checked >= 10);
}

#[test]
fn unpack_gives_tahoes_children() {
    let v = vectors();
    for case in v["cases"].as_array().unwrap() {
        let id = case["id"].as_str().unwrap();
        let access = access_of(case);
        let bytes = hex::decode(case["packed_hex"].as_str().unwrap()).unwrap();
        let views = [
            (access, &case["unpacked"]),
            (Access::ReadOnly, &case["unpacked_read_only"]),
        ];
        for (access, want) in views {
            if want.is_null() {
                continue;
            }
            let dir = Directory::unpack(&bytes, access)
                .unwrap_or_else(|e| panic!("case {id} ({access:?}): {e}"));
            assert!(dir.skipped().is_empty(), "case {id}: {:?}", dir.skipped());
            assert_eq!(describe(&dir), described(want), "case {id} ({access:?})");
            // Untouched entries re-pack to exactly the bytes they came from.
            assert_eq!(dir.pack(), bytes, "case {id} ({access:?}): repack");
        }
        if let Some(readcap) = case["readcap"].as_str() {
            let Cap::Directory(d) = Cap::parse(readcap).unwrap() else {
                panic!("readcap is not a directory cap")
            };
            assert_eq!(Access::for_cap(&d), Some(Access::ReadOnly));
        }
    }
}

#[test]
fn fresh_pack_of_unpacked_tahoe_table_is_identical() {
    // Re-serializing every entry from its parsed form (not from the remembered bytes) must also
    // give Tahoe's bytes: this checks the JSON writer and write-cap encryption on real data.
    let v = vectors();
    for case in v["cases"].as_array().unwrap() {
        if case["unpack_only"].as_bool() == Some(true) {
            continue;
        }
        let id = case["id"].as_str().unwrap();
        let access = access_of(case);
        let bytes = hex::decode(case["packed_hex"].as_str().unwrap()).unwrap();
        let dir = Directory::unpack(&bytes, access).unwrap();
        let fresh =
            Directory::with_children(access, dir.list().map(|(n, c)| (n.to_string(), c.clone())))
                .unwrap();
        assert_eq!(fresh.pack(), bytes, "case {id}");
    }
}

fn overwrite(op: &Value) -> Overwrite {
    match op["overwrite"].as_str().unwrap() {
        "yes" => Overwrite::Yes,
        "no" => Overwrite::No,
        "only-files" => Overwrite::OnlyFiles,
        o => panic!("overwrite {o}"),
    }
}

fn apply(dir: &mut Directory, op: &Value) -> Result<(), EditError> {
    let now = op["now"].as_f64().unwrap();
    let s = |k: &str| op[k].as_str().unwrap();
    let meta = |k: &str| {
        op[k]
            .as_str()
            .map(|m| JsonObject::parse(m.as_bytes()).unwrap())
    };
    match s("op") {
        "add" => {
            let cap = ChildCap::from_caps(
                op["write"].as_str().map(str::as_bytes),
                op["read"].as_str().map(str::as_bytes),
                false,
            )
            .unwrap();
            dir.add(
                s("name"),
                cap,
                meta("metadata_json").as_ref(),
                overwrite(op),
                now,
            )
            .map(|_| ())
        }
        "remove" => dir.remove(s("name")).map(|_| ()),
        "rename" => dir.rename(s("from"), s("to"), overwrite(op), now),
        "set_metadata" => dir
            .set_metadata(s("name"), &meta("metadata_json").unwrap(), now)
            .map(|_| ()),
        other => panic!("op {other}"),
    }
}

#[test]
fn edits_match_tahoe() {
    let v = vectors();
    let cases = v["cases"].as_array().unwrap();
    for seq in v["edits"].as_array().unwrap() {
        let start = seq["start"].as_str().unwrap();
        let case = cases.iter().find(|c| c["id"] == start).unwrap();
        let access = access_of(case);
        let bytes = hex::decode(case["packed_hex"].as_str().unwrap()).unwrap();
        let mut dir = Directory::unpack(&bytes, access).unwrap();
        for (i, op) in seq["ops"].as_array().unwrap().iter().enumerate() {
            let before = dir.pack();
            let got = apply(&mut dir, op);
            match op["result"].as_str().unwrap() {
                "ok" => {
                    got.unwrap_or_else(|e| panic!("{start} op {i}: {e}"));
                    let hash = hex::encode(Sha256::digest(dir.pack()));
                    assert_eq!(
                        hash,
                        op["packed_sha256"].as_str().unwrap(),
                        "{start} op {i}: {op}"
                    );
                }
                tahoe_error => {
                    let err = got.expect_err("Tahoe refused this edit");
                    let same = matches!(
                        (tahoe_error, &err),
                        ("ExistingChildError", EditError::ExistingChild { .. })
                            | ("ExistingChildError", EditError::ExistingDirectory { .. })
                            | ("NoSuchChildError", EditError::NoSuchChild { .. })
                    );
                    assert!(same, "{start} op {i}: Tahoe {tahoe_error}, we {err:?}");
                    assert_eq!(
                        dir.pack(),
                        before,
                        "{start} op {i}: a refused edit changed bytes"
                    );
                }
            }
        }
        let want = hex::decode(seq["final_packed_hex"].as_str().unwrap()).unwrap();
        assert_eq!(dir.pack(), want, "{start}: final table");
    }
}

mod mutated {
    use super::*;
    use proptest::prelude::*;

    fn tahoe_table(id: &str) -> (Vec<u8>, Access) {
        let v = vectors();
        let case = v["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap()
            .clone();
        (
            hex::decode(case["packed_hex"].as_str().unwrap()).unwrap(),
            access_of(&case),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Corrupting Tahoe's bytes (flip, cut, insert) never panics; what does unpack is stable:
        /// packing it and reading that back gives the same children.
        #[test]
        fn corrupted_tables_error_or_stay_consistent(
            id in prop::sample::select(vec!["every-kind", "unknown-caps", "metadata", "immutable"]),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..3, any::<u8>()), 1..4),
        ) {
            let (mut bytes, access) = tahoe_table(id);
            for (at, kind, byte) in edits {
                if bytes.is_empty() {
                    break;
                }
                let i = at.index(bytes.len());
                match kind {
                    0 => bytes[i] ^= byte | 1,
                    1 => bytes.truncate(i),
                    _ => bytes.insert(i, byte),
                }
            }
            for access in [access, Access::ReadOnly] {
                if let Ok(dir) = Directory::unpack(&bytes, access) {
                    let again = Directory::unpack(&dir.pack(), access).unwrap();
                    prop_assert_eq!(describe(&again), describe(&dir));
                }
            }
        }
    }
}

#[test]
fn floats_are_written_as_python_repr() {
    let v = vectors();
    let list = v["float_reprs"].as_array().unwrap();
    assert!(list.len() >= 1000);
    for pair in list {
        let bits: [u8; 8] = hex::decode(pair[0].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let f = f64::from_le_bytes(bits);
        let want = pair[1].as_str().unwrap();
        assert_eq!(
            lafs_core::dirnode::JsonValue::Float(f).to_python_json(),
            want
        );
        let back = lafs_core::dirnode::JsonValue::parse(want.as_bytes()).unwrap();
        assert!(
            matches!(back, lafs_core::dirnode::JsonValue::Float(g) if g.to_bits() == f.to_bits())
        );
    }
}
