//! Making and checking mutable shares: encryption and erasure coding of segments, hash trees,
//! the RSA-PSS signature, and the checks a reader applies before trusting any byte.

use rsa::pkcs8::DecodePublicKey;
use rsa::pss::{Signature, SigningKey, VerifyingKey};
use rsa::sha2::Sha256;
use rsa::signature::{RandomizedSigner, SignatureEncoding, Verifier};
use rsa::traits::PublicKeyParts;
use rsa::PublicKey as RsaPublicKey;

use super::layout::{
    decode_chain, decode_tree, encode_chain, parse_header, LayoutError, MutableFormat, Offsets,
    Prefix, SALT_LEN,
};
use crate::codec::{zfec::Zfec, Codec};
use crate::crypto::drbg::Drbg;
use crate::crypto::rsa_keys::MutableKey;
use crate::crypto::{block_hash, ssk_datakey, ssk_pubkey_fingerprint, AesCtr};
use crate::hashtree::{Hash, HashTree, PartialHashTree};

/// Why a share (or the bytes read of it so far) cannot be trusted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShareError {
    #[error("bad share layout: {0}")]
    Layout(#[from] LayoutError),
    #[error("share is cut short: {needed} bytes needed, {got} present")]
    Truncated { needed: u64, got: u64 },
    #[error(
        "the share's public key does not match the cap's fingerprint (a share of another file?)"
    )]
    WrongKey,
    #[error("the share's public key is not a 2048-bit RSA key")]
    BadKey,
    #[error("the share's signature does not verify")]
    BadSignature,
    #[error("the share's hash trees do not match its signed root hash")]
    BadHashes,
    #[error("block {segment} does not match its hash")]
    BadBlock { segment: u64 },
    #[error("the share's parameters are outside what this client accepts: {0}")]
    Unsupported(&'static str),
}

/// A share header whose key matches the cap and whose signature verifies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedHeader {
    pub prefix: Prefix,
    pub offsets: Offsets,
    pub signature: Vec<u8>,
    pub verification_key: Vec<u8>,
}

/// Checks the header at the start of `head` (bytes from offset 0 of the share) against the cap's
/// public-key fingerprint. `Truncated` says how many leading bytes are needed.
pub fn check_header(head: &[u8], fingerprint: &[u8; 32]) -> Result<SignedHeader, ShareError> {
    check_header_cached(head, fingerprint, None)
}

/// (signed prefix, signature) pairs already verified under the cap's key: shares of one version
/// carry the same pair, so one RSA verification serves them all.
pub type SignatureCache = std::collections::BTreeSet<(Vec<u8>, Vec<u8>)>;

/// [`check_header`], skipping the RSA check for pairs in `cache` and adding new good ones.
pub fn check_header_cached(
    head: &[u8],
    fingerprint: &[u8; 32],
    cache: Option<&mut SignatureCache>,
) -> Result<SignedHeader, ShareError> {
    let (prefix, offsets) = match parse_header(head) {
        Err(LayoutError::TooShort { needed, got }) => {
            return Err(ShareError::Truncated {
                needed: needed as u64,
                got: got as u64,
            })
        }
        other => other?,
    };
    let need = offsets.signature.end().max(offsets.verification_key.end());
    let (Some(vk), Some(sig)) = (
        offsets.verification_key.slice(head),
        offsets.signature.slice(head),
    ) else {
        return Err(ShareError::Truncated {
            needed: need,
            got: head.len() as u64,
        });
    };
    if ssk_pubkey_fingerprint(vk) != *fingerprint {
        return Err(ShareError::WrongKey);
    }
    let signed = prefix.signed_bytes();
    let cache_key = (signed, sig.to_vec());
    if !cache.as_ref().is_some_and(|c| c.contains(&cache_key)) {
        verify_signature(vk, sig, &cache_key.0)?;
        if let Some(c) = cache {
            c.insert(cache_key);
        }
    }
    Ok(SignedHeader {
        prefix,
        offsets,
        signature: sig.to_vec(),
        verification_key: vk.to_vec(),
    })
}

/// The header of a share this process just encoded: parsed, not re-verified (signing it was
/// the proof; an RSA check costs ~0.4 ms per share).
pub fn own_share_header(share: &[u8]) -> Result<SignedHeader, ShareError> {
    let (prefix, offsets) = parse_header(share)?;
    let (Some(vk), Some(sig)) = (
        offsets.verification_key.slice(share),
        offsets.signature.slice(share),
    ) else {
        return Err(ShareError::Truncated {
            needed: offsets.eof(),
            got: share.len() as u64,
        });
    };
    Ok(SignedHeader {
        signature: sig.to_vec(),
        verification_key: vk.to_vec(),
        prefix,
        offsets,
    })
}

/// RSA-PSS (SHA-256, MGF1-SHA-256, 32-byte salt) over `message` with the SPKI DER key `vk`.
pub fn verify_signature(vk: &[u8], signature: &[u8], message: &[u8]) -> Result<(), ShareError> {
    let key = RsaPublicKey::from_public_key_der(vk).map_err(|_| ShareError::BadKey)?;
    if key.size() != 256 {
        return Err(ShareError::BadKey);
    }
    let sig = Signature::try_from(signature).map_err(|_| ShareError::BadSignature)?;
    VerifyingKey::<Sha256>::new(key)
        .verify(message, &sig)
        .map_err(|_| ShareError::BadSignature)
}

/// Signs `message` as Tahoe does; `rng` supplies the PSS salt.
pub fn sign(key: &MutableKey, message: &[u8], rng: &mut Drbg) -> Vec<u8> {
    SigningKey::<Sha256>::new(key.private_key().clone())
        .sign_with_rng(rng, message)
        .to_vec()
}

/// Verifies a share's block hash tree and share hash chain against the signed root hash and
/// returns the trusted block-tree leaves (one per segment).
pub fn check_share_hashes(
    prefix: &Prefix,
    shnum: u16,
    chain: &[u8],
    block_tree: &[u8],
) -> Result<Vec<Hash>, ShareError> {
    let segments = prefix.num_segments() as usize;
    let nodes = decode_tree(block_tree).ok_or(ShareError::BadHashes)?;
    if nodes.len() != crate::hashtree::node_count(segments) {
        return Err(ShareError::BadHashes);
    }
    let p = crate::hashtree::padded_leaf_count(segments);
    let leaves = nodes[p - 1..p - 1 + segments].to_vec();
    // The stored tree must be exactly the tree of its own leaves.
    if HashTree::new(&leaves).nodes() != nodes.as_slice() {
        return Err(ShareError::BadHashes);
    }
    if usize::from(shnum) >= usize::from(prefix.n) {
        return Err(ShareError::BadHashes);
    }
    let chain = decode_chain(chain)?;
    let mut share_tree = PartialHashTree::new(usize::from(prefix.n), prefix.root_hash);
    share_tree
        .add_leaf(usize::from(shnum), nodes[0], &chain)
        .map_err(|_| ShareError::BadHashes)?;
    Ok(leaves)
}

/// The leaf a block contributes to its share's block hash tree.
pub fn block_leaf(format: MutableFormat, salt: &[u8; 16], block: &[u8]) -> Hash {
    match format {
        MutableFormat::Sdmf => block_hash(block),
        MutableFormat::Mdmf => {
            let mut salted = Vec::with_capacity(SALT_LEN + block.len());
            salted.extend_from_slice(salt);
            salted.extend_from_slice(block);
            block_hash(&salted)
        }
    }
}

/// Encrypts one plaintext segment under the key derived from its salt.
pub fn crypt_segment(readkey: &[u8; 16], salt: &[u8; 16], data: &mut [u8]) {
    AesCtr::new(&ssk_datakey(salt, readkey)).apply(data);
}

/// Mutable files are always zfec-coded (Tahoe's only mutable codec).
pub fn codec(k: u8, n: u8) -> Result<Zfec, ShareError> {
    Zfec::new(usize::from(k), usize::from(n))
        .map_err(|_| ShareError::Unsupported("k and n must satisfy 1 <= k <= n <= 255"))
}

/// Everything a publish writes: each share's full bytes, and the signed prefix they carry.
#[derive(Clone, Debug)]
pub struct EncodedVersion {
    pub prefix: Prefix,
    /// Share `i`'s bytes (as stored after the container header).
    pub shares: Vec<Vec<u8>>,
}

/// Encrypts, encodes, hashes and signs `plaintext` as version `seqnum` of the file.
pub fn encode_version(
    format: MutableFormat,
    k: u8,
    n: u8,
    seqnum: u64,
    key: &MutableKey,
    plaintext: &[u8],
    rng: &mut Drbg,
) -> Result<EncodedVersion, ShareError> {
    let codec = codec(k, n)?;
    let writekey = key.writekey();
    let readkey = crate::crypto::ssk_readkey(&writekey);
    let mut prefix = Prefix {
        format,
        seqnum,
        root_hash: [0; 32],
        salt: [0; 16],
        k,
        n,
        segment_size: format.segment_size(plaintext.len() as u64, k),
        data_length: plaintext.len() as u64,
    };
    prefix.validate()?;
    let segments = prefix.num_segments();
    let mut salts: Vec<[u8; 16]> = Vec::with_capacity(segments as usize);
    // share_data[i]: SDMF the block; MDMF salt‖block per segment.
    let mut share_data: Vec<Vec<u8>> = vec![Vec::new(); usize::from(n)];
    let mut leaves: Vec<Vec<Hash>> = vec![Vec::with_capacity(segments as usize); usize::from(n)];
    let mut salt_stream = rng.fork(b"mutable segment salts");
    if format == MutableFormat::Sdmf {
        // SDMF signs its salt even for an empty file.
        prefix.salt = salt_stream.array();
    }
    for s in 0..segments {
        let salt: [u8; 16] = if format == MutableFormat::Sdmf {
            prefix.salt
        } else {
            salt_stream.array()
        };
        salts.push(salt);
        let start = (s * prefix.segment_size) as usize;
        let len = prefix.segment_len(s) as usize;
        let piece = prefix.block_len(s) as usize;
        let mut segment = vec![0u8; piece * usize::from(k)];
        segment[..len].copy_from_slice(&plaintext[start..start + len]);
        crypt_segment(&readkey, &salt, &mut segment[..len]);
        let blocks = codec
            .encode(&segment)
            .map_err(|_| ShareError::Unsupported("segment could not be encoded"))?;
        for (i, block) in blocks.into_iter().enumerate() {
            leaves[i].push(block_leaf(format, &salt, &block));
            if format == MutableFormat::Mdmf {
                share_data[i].extend_from_slice(&salt);
            }
            share_data[i].extend_from_slice(&block);
        }
    }
    let block_trees: Vec<HashTree> = leaves.iter().map(|l| HashTree::new(l)).collect();
    let roots: Vec<Hash> = block_trees.iter().map(HashTree::root).collect();
    let share_tree = HashTree::new(&roots);
    prefix.root_hash = share_tree.root();
    let signature = sign(key, &prefix.signed_bytes(), &mut rng.fork(b"pss salt"));
    let mut enc_privkey = key.private_pkcs8_der().to_vec();
    AesCtr::new(&writekey).apply(&mut enc_privkey);
    let vk = key.public_spki_der();
    let mut shares = Vec::with_capacity(usize::from(n));
    for (i, (tree, data)) in block_trees.iter().zip(share_data).enumerate() {
        let chain = encode_chain(&share_tree.proof(i, false));
        let offsets = match format {
            MutableFormat::Sdmf => Offsets::sdmf(
                &prefix,
                vk.len() as u64,
                signature.len() as u64,
                chain.len() as u64,
                enc_privkey.len() as u64,
            ),
            MutableFormat::Mdmf => Offsets::mdmf(
                &prefix,
                enc_privkey.len() as u64,
                chain.len() as u64,
                signature.len() as u64,
                vk.len() as u64,
            )?,
        };
        let mut share = vec![0u8; offsets.eof() as usize];
        let header = offsets.header_bytes(&prefix);
        share[..header.len()].copy_from_slice(&header);
        for (span, bytes) in [
            (offsets.verification_key, vk),
            (offsets.signature, signature.as_slice()),
            (offsets.share_hash_chain, chain.as_slice()),
            (offsets.block_hash_tree, tree.to_bytes().as_slice()),
            (offsets.share_data, data.as_slice()),
            (offsets.enc_privkey, enc_privkey.as_slice()),
        ] {
            let start = span.offset as usize;
            share[start..start + bytes.len()].copy_from_slice(bytes);
        }
        shares.push(share);
    }
    Ok(EncodedVersion { prefix, shares })
}

/// Decrypts the private key stored in a share and checks it belongs to `writekey`.
pub fn decrypt_private_key(
    enc_privkey: &[u8],
    writekey: &[u8; 16],
) -> Result<MutableKey, ShareError> {
    let mut der = enc_privkey.to_vec();
    AesCtr::new(writekey).apply(&mut der);
    let key = MutableKey::from_bytes(&der).map_err(|_| ShareError::BadKey)?;
    if key.writekey() != *writekey {
        return Err(ShareError::BadKey);
    }
    Ok(key)
}

/// Splits an MDMF block entry (salt ‖ block) or returns an SDMF block with the signed salt.
pub fn split_block<'a>(prefix: &Prefix, entry: &'a [u8]) -> Option<([u8; 16], &'a [u8])> {
    match prefix.format {
        MutableFormat::Sdmf => Some((prefix.salt, entry)),
        MutableFormat::Mdmf => {
            let salt: [u8; 16] = entry.get(..SALT_LEN)?.try_into().ok()?;
            Some((salt, &entry[SALT_LEN..]))
        }
    }
}

/// The salt and block of segment `s` from its stored entry, if they hash to the share's trusted
/// block-tree leaf for that segment.
pub fn verified_block<'a>(
    prefix: &Prefix,
    leaves: &[Hash],
    s: u64,
    entry: &'a [u8],
) -> Option<([u8; 16], &'a [u8])> {
    let leaf = leaves.get(usize::try_from(s).ok()?)?;
    split_block(prefix, entry)
        .filter(|(salt, block)| block_leaf(prefix.format, salt, block) == *leaf)
}

/// Decodes k verified blocks of segment `s` and decrypts them into plaintext.
pub fn decode_segment(
    prefix: &Prefix,
    readkey: &[u8; 16],
    s: u64,
    salt: &[u8; 16],
    blocks: &[(usize, &[u8])],
) -> Result<Vec<u8>, ShareError> {
    let codec = codec(prefix.k, prefix.n)?;
    let piece = prefix.block_len(s) as usize;
    let mut segment = codec
        .decode(piece, blocks)
        .map_err(|_| ShareError::BadBlock { segment: s })?;
    segment.truncate(prefix.segment_len(s) as usize);
    crypt_segment(readkey, salt, &mut segment);
    Ok(segment)
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests read Tahoe's share files; the library does no I/O
mod tests {
    use super::*;
    use crate::cap::Cap;
    use crate::crypto::key_source::{FixtureKeys, KeySource};
    use crate::crypto::ssk_readkey;

    fn stretch(seed: &[u8], len: usize) -> Vec<u8> {
        seed.iter().copied().cycle().take(len).collect()
    }

    fn tahoe_shares(case: &str) -> Vec<(u16, Vec<u8>)> {
        let root = format!(
            "{}/../tests/vectors/tahoe-shares/{case}",
            env!("CARGO_MANIFEST_DIR")
        );
        let mut out = Vec::new();
        for server in std::fs::read_dir(&root).unwrap() {
            for share in std::fs::read_dir(server.unwrap().path()).unwrap() {
                let share = share.unwrap();
                let shnum: u16 = share.file_name().to_str().unwrap().parse().unwrap();
                let container = std::fs::read(share.path()).unwrap();
                let len = u64::from_be_bytes(container[84..92].try_into().unwrap()) as usize;
                out.push((shnum, container[468..468 + len].to_vec()));
            }
        }
        out.sort();
        out
    }

    /// Reads a whole file from complete shares, checking everything.
    fn read_all(shares: &[(u16, Vec<u8>)], readkey: &[u8; 16], fingerprint: &[u8; 32]) -> Vec<u8> {
        let mut checked = Vec::new();
        for (shnum, bytes) in shares {
            let h = check_header(bytes, fingerprint).unwrap();
            let leaves = check_share_hashes(
                &h.prefix,
                *shnum,
                h.offsets.share_hash_chain.slice(bytes).unwrap(),
                h.offsets.block_hash_tree.slice(bytes).unwrap(),
            )
            .unwrap();
            checked.push((*shnum, h, leaves));
        }
        let prefix = checked[0].1.prefix.clone();
        let k = usize::from(prefix.k);
        let mut out = Vec::new();
        for s in 0..prefix.num_segments() {
            let mut blocks = Vec::new();
            let mut salt = [0u8; 16];
            for (shnum, h, leaves) in checked.iter().rev().take(k) {
                let bytes = &shares.iter().find(|(n, _)| n == shnum).unwrap().1;
                let entry = h.offsets.block(&h.prefix, s).slice(bytes).unwrap();
                let (sa, block) =
                    verified_block(&h.prefix, leaves, s, entry).expect("block matches its leaf");
                salt = sa;
                blocks.push((usize::from(*shnum), block));
            }
            out.extend(decode_segment(&prefix, readkey, s, &salt, &blocks).unwrap());
        }
        out
    }

    fn read_cap_keys(cap: &str) -> ([u8; 16], [u8; 32]) {
        match Cap::parse(cap).unwrap() {
            Cap::SskRead {
                readkey,
                fingerprint,
            }
            | Cap::MdmfRead {
                readkey,
                fingerprint,
            } => (readkey, fingerprint),
            other => panic!("not a read cap: {other:?}"),
        }
    }

    #[test]
    fn reads_tahoe_sdmf_and_mdmf_shares() {
        let index: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(format!(
                "{}/../tests/vectors/tahoe-shares/index.json",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap(),
        )
        .unwrap();
        for case in index["cases"].as_array().unwrap() {
            if case["format"] == "chk" {
                continue;
            }
            let (readkey, fp) = read_cap_keys(case["read_cap"].as_str().unwrap());
            let seed = hex::decode(case["plaintext"]["seed_hex"].as_str().unwrap()).unwrap();
            let want = stretch(
                &seed,
                case["plaintext"]["length"].as_u64().unwrap() as usize,
            );
            let shares = tahoe_shares(case["name"].as_str().unwrap());
            assert_eq!(read_all(&shares, &readkey, &fp), want, "{}", case["name"]);
            // The write cap decrypts the private key stored in the shares.
            let writekey = match Cap::parse(case["cap"].as_str().unwrap()).unwrap() {
                Cap::SskWrite { writekey, .. } | Cap::MdmfWrite { writekey, .. } => writekey,
                _ => unreachable!(),
            };
            let h = check_header(&shares[0].1, &fp).unwrap();
            let key = decrypt_private_key(
                h.offsets.enc_privkey.slice(&shares[0].1).unwrap(),
                &writekey,
            )
            .unwrap();
            assert_eq!(key.fingerprint(), fp);
        }
    }

    fn fixture_key() -> MutableKey {
        let pem = std::fs::read_to_string(format!(
            "{}/../tests/data/rsa-2048-fixture-keys.pem",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        FixtureKeys::from_pem_bundle(&pem).next_key().unwrap()
    }

    #[test]
    fn our_shares_read_back_in_both_formats_and_sizes() {
        let key = fixture_key();
        let readkey = ssk_readkey(&key.writekey());
        for format in [MutableFormat::Sdmf, MutableFormat::Mdmf] {
            for len in [0usize, 1, 55, 2000, 131_072, 300_001] {
                if format == MutableFormat::Sdmf && len > 131_072 {
                    continue;
                }
                let data = stretch(b"lafs mutable", len);
                let mut rng = Drbg::new([len as u8; 32]);
                let v = encode_version(format, 3, 10, 4, &key, &data, &mut rng).unwrap();
                let shares: Vec<(u16, Vec<u8>)> = v
                    .shares
                    .into_iter()
                    .enumerate()
                    .map(|(i, s)| (i as u16, s))
                    .collect();
                assert_eq!(read_all(&shares, &readkey, &key.fingerprint()), data);
            }
        }
    }

    #[test]
    fn tampering_is_detected() {
        let key = fixture_key();
        let data = stretch(b"x", 5000);
        let v = encode_version(
            MutableFormat::Sdmf,
            2,
            4,
            1,
            &key,
            &data,
            &mut Drbg::new([1; 32]),
        )
        .unwrap();
        let fp = key.fingerprint();
        let mut share = v.shares[1].clone();
        let h = check_header(&share, &fp).unwrap();
        // A flipped seqnum breaks the signature.
        share[8] ^= 1;
        assert_eq!(
            check_header(&share, &fp).unwrap_err(),
            ShareError::BadSignature
        );
        share[8] ^= 1;
        // A flipped block-tree byte breaks the chain to the signed root.
        let t = h.offsets.block_hash_tree.offset as usize;
        share[t] ^= 1;
        assert_eq!(
            check_share_hashes(
                &h.prefix,
                1,
                h.offsets.share_hash_chain.slice(&share).unwrap(),
                h.offsets.block_hash_tree.slice(&share).unwrap()
            ),
            Err(ShareError::BadHashes)
        );
        // Another file's key is refused before any signature check.
        assert_eq!(
            check_header(&share, &[0; 32]).unwrap_err(),
            ShareError::WrongKey
        );
        // A short read asks for more.
        assert!(matches!(
            check_header(&share[..200], &fp),
            Err(ShareError::Truncated { .. })
        ));
    }
}
