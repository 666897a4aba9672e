//! Tahoe-LAFS's public test vectors and real Tahoe share files, checked against lafs-core.

use std::sync::Arc;

use lafs_core::base32;
use lafs_core::cap::Cap;
use lafs_core::codec::zfec::Zfec;
use lafs_core::codec::Codec;
use lafs_core::crypto::rsa_keys::MutableKey;
use lafs_core::immutable::download::DownloadConfig;
use lafs_core::immutable::encode::{convergent_key, encode_in_memory};
use lafs_core::placement::ServerId;
use lafs_tests::grid::Grid;
use lafs_tests::{expand_plaintext, read_vector_file, read_vector_json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

fn chk_cap(
    plaintext: &[u8],
    secret: &[u8],
    k: usize,
    n: usize,
    max_segment_size: u64,
) -> (String, Vec<Vec<u8>>) {
    let codec: Arc<dyn Codec> = Arc::new(Zfec::new(k, n).expect("valid k-of-n"));
    let key = convergent_key(plaintext, secret, k, n, max_segment_size);
    let (file, shares) =
        encode_in_memory(&key, plaintext, max_segment_size, &codec).expect("encodes");
    let cap = Cap::ChkRead {
        key,
        ueb_hash: file.ueb_hash,
        needed: k as u16,
        total: n as u16,
        size: plaintext.len() as u64,
    };
    (cap.to_string(), shares)
}

#[test]
fn every_public_chk_vector_reproduces() {
    let cases = read_vector_json("chk.json")["cases"]
        .as_array()
        .expect("cases")
        .clone();
    assert!(!cases.is_empty());
    let mut failures = Vec::new();
    for c in &cases {
        let plaintext = expand_plaintext(&c["plaintext"]);
        assert_eq!(
            hex::encode(Sha256::digest(&plaintext)),
            c["plaintext_sha256"].as_str().unwrap(),
            "{}",
            c["id"]
        );
        let secret = hex::decode(c["convergence_secret_hex"].as_str().unwrap()).unwrap();
        let k = c["needed"].as_u64().unwrap() as usize;
        let n = c["total"].as_u64().unwrap() as usize;
        let (cap, _) = chk_cap(
            &plaintext,
            &secret,
            k,
            n,
            c["segment_size"].as_u64().unwrap(),
        );
        if cap != c["expected_cap"].as_str().unwrap() {
            failures.push(format!("{}: got {cap}", c["id"]));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} CHK vectors differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn every_public_sdmf_and_mdmf_write_cap_reproduces() {
    for (file, format) in [("sdmf.json", "sdmf"), ("mdmf.json", "mdmf")] {
        let cases = read_vector_json(file)["cases"]
            .as_array()
            .expect("cases")
            .clone();
        assert!(!cases.is_empty());
        for c in &cases {
            assert_eq!(c["format"], format);
            let key = MutableKey::from_bytes(c["private_key_pem"].as_str().unwrap().as_bytes())
                .expect("key loads");
            let cap = if format == "sdmf" {
                Cap::SskWrite {
                    writekey: key.writekey(),
                    fingerprint: key.fingerprint(),
                }
            } else {
                Cap::MdmfWrite {
                    writekey: key.writekey(),
                    fingerprint: key.fingerprint(),
                }
            };
            assert_eq!(
                cap.to_string(),
                c["expected_cap"].as_str().unwrap(),
                "{}",
                c["id"]
            );
        }
    }
}

/// The share data inside a Tahoe immutable container: 12-byte header, data, 72-byte leases.
fn container_share_data(container: &[u8]) -> &[u8] {
    let leases = u32::from_be_bytes(container[8..12].try_into().unwrap()) as usize;
    &container[12..container.len() - 72 * leases]
}

#[test]
fn the_download_state_machine_reads_shares_a_real_tahoe_grid_wrote() {
    let index = read_vector_json("tahoe-shares/index.json");
    for case in index["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["format"] == "chk")
    {
        let cap = Cap::parse(case["read_cap"].as_str().unwrap()).unwrap();
        let si = cap.storage_index().unwrap();
        let mut ids = BTreeMap::new();
        for share in case["shares"].as_array().unwrap() {
            let name = share["server_id"].as_str().unwrap();
            let raw =
                base32::decode(name.trim_start_matches("v0-")).expect("server ids are base32");
            ids.insert(
                name.to_string(),
                ServerId(raw.try_into().expect("32-byte server id")),
            );
        }
        let mut grid = Grid::with_ids(&ids.values().copied().collect::<Vec<_>>());
        for share in case["shares"].as_array().unwrap() {
            let container =
                read_vector_file(&format!("tahoe-shares/{}", share["file"].as_str().unwrap()));
            let server = ids[share["server_id"].as_str().unwrap()];
            grid.put_share(
                &server,
                &si,
                share["shnum"].as_u64().unwrap() as u16,
                container_share_data(&container),
            );
        }
        let config = DownloadConfig {
            segment_size_guess: index["max_segment_size"].as_u64().unwrap(),
            ..Default::default()
        };
        let (got, run, _) = grid.download(&cap, config);
        assert_eq!(
            got.expect("Tahoe's shares download"),
            expand_plaintext(&case["plaintext"]),
            "{}",
            case["name"]
        );
        assert!(
            run.rounds <= 3,
            "{}: {} round trips",
            case["name"],
            run.rounds
        );
    }
}

#[test]
fn chk_shares_are_byte_identical_to_those_a_real_tahoe_grid_wrote() {
    let index = read_vector_json("tahoe-shares/index.json");
    let secret = hex::decode(index["convergence_secret_hex"].as_str().unwrap()).unwrap();
    let (k, n) = (
        index["needed"].as_u64().unwrap() as usize,
        index["total"].as_u64().unwrap() as usize,
    );
    let max_seg = index["max_segment_size"].as_u64().unwrap();
    let mut checked = 0;
    for case in index["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["format"] == "chk")
    {
        let plaintext = expand_plaintext(&case["plaintext"]);
        let (cap, shares) = chk_cap(&plaintext, &secret, k, n, max_seg);
        assert_eq!(cap, case["read_cap"].as_str().unwrap(), "{}", case["name"]);
        for share in case["shares"].as_array().unwrap() {
            let shnum = share["shnum"].as_u64().unwrap() as usize;
            let container =
                read_vector_file(&format!("tahoe-shares/{}", share["file"].as_str().unwrap()));
            assert!(
                container_share_data(&container) == shares[shnum].as_slice(),
                "{} share {shnum} differs from Tahoe's",
                case["name"]
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 30, "expected 3 CHK cases x 10 shares");
}

#[test]
fn a_verify_cap_checks_tahoe_shares_without_the_key_and_catches_any_flipped_byte() {
    use lafs_core::immutable::verify::check_share;
    let index = read_vector_json("tahoe-shares/index.json");
    for case in index["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["format"] == "chk")
    {
        let Cap::ChkVerify {
            ueb_hash,
            needed,
            total,
            size,
            ..
        } = Cap::parse(case["verify_cap"].as_str().unwrap()).unwrap()
        else {
            panic!("not a CHK verify cap");
        };
        let (k, n) = (usize::from(needed), usize::from(total));
        for share in case["shares"].as_array().unwrap() {
            let shnum = share["shnum"].as_u64().unwrap() as usize;
            let container =
                read_vector_file(&format!("tahoe-shares/{}", share["file"].as_str().unwrap()));
            let data = container_share_data(&container).to_vec();
            let report =
                check_share(&ueb_hash, k, n, size, shnum, &data).expect("Tahoe's share checks out");
            assert_eq!(report.codec, "crs");
            assert!(
                check_share(&ueb_hash, k, n, size, (shnum + 1) % n, &data).is_err(),
                "wrong share number"
            );
            // Every region matters: header, blocks, the zeroed plaintext-tree area is the only
            // part nothing vouches for.
            let header = lafs_core::immutable::ShareHeader::parse(&data).unwrap();
            for at in [
                4usize,
                0x24,
                data.len() / 3,
                header.crypttext_hash_tree as usize + 5,
                data.len() - 40,
                data.len() - 1,
            ] {
                let mut bad = data.clone();
                bad[at] ^= 0x40;
                assert!(
                    check_share(&ueb_hash, k, n, size, shnum, &bad).is_err(),
                    "{} byte {at} flipped",
                    case["name"]
                );
            }
        }
    }
}

#[test]
fn every_public_sdmf_and_mdmf_case_publishes_under_its_cap_and_reads_back() {
    use lafs_core::mutable::layout::MutableFormat;
    use lafs_core::mutable::PublishConfig;
    for (file, format) in [
        ("sdmf.json", MutableFormat::Sdmf),
        ("mdmf.json", MutableFormat::Mdmf),
    ] {
        for c in read_vector_json(file)["cases"].as_array().unwrap() {
            let key =
                MutableKey::from_bytes(c["private_key_pem"].as_str().unwrap().as_bytes()).unwrap();
            let data = expand_plaintext(&c["plaintext"]);
            let config = PublishConfig {
                k: c["needed"].as_u64().unwrap() as u8,
                n: c["total"].as_u64().unwrap() as u8,
                ..Default::default()
            };
            let mut grid = Grid::new(10);
            let made = grid
                .create_mutable_with(format, key, &data, config.clone())
                .0
                .unwrap_or_else(|e| panic!("{}: {e}", c["id"]));
            assert_eq!(made.cap.to_string(), c["expected_cap"].as_str().unwrap());
            assert_eq!((made.version.k, made.version.n), (config.k, config.n));
            let (got, _, _) = grid.retrieve(&made.cap, None);
            assert!(got.unwrap().0 == data, "{} reads back", c["id"]);
        }
    }
}

/// A grid whose server ids start with the Tahoe servers' 20-byte node ids, so our write-enabler
/// derivation meets the enablers Tahoe recorded in its containers.
#[test]
fn tahoe_mutable_shares_read_back_and_take_our_updates() {
    use lafs_core::store::{EnablerRecord, MutableShareChange, ShareStore};
    use lafs_core::wire::DataVector;
    let index = read_vector_json("tahoe-shares/index.json");
    for case in index["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["format"] != "chk")
    {
        let cap = Cap::parse(case["cap"].as_str().unwrap()).unwrap();
        let si = cap.storage_index().unwrap();
        let mut placed = Vec::new();
        for share in case["shares"].as_array().unwrap() {
            let container =
                read_vector_file(&format!("tahoe-shares/{}", share["file"].as_str().unwrap()));
            let mut id = [0u8; 32];
            id[..20].copy_from_slice(&container[32..52]);
            let len = u64::from_be_bytes(container[84..92].try_into().unwrap()) as usize;
            let enabler = EnablerRecord {
                write_enabler: container[52..84].try_into().unwrap(),
                node_id: container[32..52].try_into().unwrap(),
            };
            placed.push((
                ServerId(id),
                share["shnum"].as_u64().unwrap() as u16,
                container[468..468 + len].to_vec(),
                enabler,
            ));
        }
        let mut ids: Vec<ServerId> = placed.iter().map(|p| p.0).collect();
        ids.sort();
        ids.dedup();
        let mut grid = Grid::with_ids(&ids);
        for (server, shnum, data, enabler) in &placed {
            let writes = [DataVector {
                offset: 0,
                data: data.clone(),
            }];
            grid.store_mut(server)
                .write_mutable_shares(
                    &si,
                    enabler,
                    &[MutableShareChange {
                        shnum: *shnum,
                        writes: &writes,
                        new_length: None,
                    }],
                )
                .unwrap();
        }
        let want = expand_plaintext(&case["plaintext"]);
        let read_cap = Cap::parse(case["read_cap"].as_str().unwrap()).unwrap();
        let (got, run, _) = grid.retrieve(&read_cap, None);
        assert!(got.unwrap().0 == want, "{} reads", case["name"]);
        assert!(run.rounds <= 4, "{}: {} rounds", case["name"], run.rounds);
        // Our update passes Tahoe's write enablers and replaces every share in place.
        let (r, _) = grid.update_mutable(&cap, b"rewritten by lafs", None);
        let r = r.unwrap_or_else(|e| panic!("{}: {e}", case["name"]));
        assert_eq!(r.version.seqnum, 2);
        assert_eq!(r.placed.len(), placed.len());
        assert_eq!(
            grid.retrieve(&read_cap, None).0.unwrap().0,
            b"rewritten by lafs"
        );
    }
}
