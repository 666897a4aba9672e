//! `lafs debug`: check capabilities and Tahoe derivations offline, without a grid.
//!
//! Every command writes its answer to stdout (the cap alone on the last line for `ssk-cap` and
//! `chk-cap`, so scripts such as a test-vector checker can read it) and fails with a message
//! on stderr and exit status 1.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Subcommand, ValueEnum};
use lafs_core::cap::Cap;
use lafs_core::codec::{Codec, CodecKind};
use lafs_core::crypto::rsa_keys::MutableKey;
use lafs_core::crypto::{convergent_key_hasher, storage_index_from_key};
use lafs_core::immutable::params::{effective_segment_size, DEFAULT_MAX_SEGMENT_SIZE};
use lafs_core::immutable::{ChkEncoder, Geometry, LIT_THRESHOLD};

#[derive(Subcommand, Debug)]
pub enum DebugCommand {
    /// Print a capability's kind and fields as JSON (exit 1 with the reason if it is malformed).
    ParseCap {
        /// The capability string, e.g. URI:CHK:... or URI:DIR2-MDMF:...
        cap: String,
    },
    /// Print the write cap Tahoe derives from an RSA private key.
    SskCap {
        /// sdmf gives URI:SSK:..., mdmf gives URI:MDMF:...
        #[arg(long, value_enum)]
        format: MutableFormat,
        /// The 2048-bit RSA private key: PEM or DER, PKCS#1 or PKCS#8.
        #[arg(long, value_name = "FILE")]
        private_key: PathBuf,
    },
    /// Print the CHK read cap Tahoe would give FILE (the file is encoded locally, nothing is uploaded).
    ChkCap {
        /// The convergence secret, as hex (Tahoe's private/convergence, base32-decoded).
        #[arg(long, value_name = "HEX")]
        convergence_secret: String,
        /// Shares needed to read the file (k).
        #[arg(long, default_value_t = 3)]
        needed: usize,
        /// Shares written (n).
        #[arg(long, default_value_t = 10)]
        total: usize,
        /// Maximum segment size in bytes.
        #[arg(long, default_value_t = DEFAULT_MAX_SEGMENT_SIZE)]
        segment_size: u64,
        /// Erasure codec: zfec is Tahoe's (caps match Tahoe); novelpoly is lafs's wide-grid codec.
        #[arg(long, value_enum, default_value_t = CodecChoice::Zfec)]
        codec: CodecChoice,
        /// Also print the storage index, key and geometry to stderr.
        #[arg(long)]
        verbose: bool,
        /// The file to encode.
        file: PathBuf,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum MutableFormat {
    Sdmf,
    Mdmf,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum CodecChoice {
    Zfec,
    Novelpoly,
}

impl From<CodecChoice> for CodecKind {
    fn from(c: CodecChoice) -> CodecKind {
        match c {
            CodecChoice::Zfec => CodecKind::Zfec,
            CodecChoice::Novelpoly => CodecKind::NovelPoly,
        }
    }
}

/// What can go wrong in a debug command.
#[derive(Debug, thiserror::Error)]
pub enum DebugError {
    #[error("bad capability: {0}")]
    Cap(#[from] lafs_core::cap::CapError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("writing output: {0}")]
    Output(#[from] io::Error),
    #[error("private key: {0}")]
    Key(#[from] lafs_core::crypto::rsa_keys::KeyError),
    #[error("--convergence-secret must be hex: {0}")]
    BadSecret(hex::FromHexError),
    #[error("cannot encode: {0}")]
    Encode(#[from] lafs_core::immutable::EncodeError),
    #[error("bad encoding parameters: {0}")]
    Params(#[from] lafs_core::immutable::params::ParamsError),
    #[error("bad codec parameters: {0}")]
    Codec(#[from] lafs_core::codec::CodecError),
    #[error("{path} changed while it was being read")]
    FileChanged { path: PathBuf },
}

pub fn run(cmd: DebugCommand, out: &mut dyn Write) -> Result<(), DebugError> {
    match cmd {
        DebugCommand::ParseCap { cap } => {
            let parsed = Cap::parse(cap.trim())?;
            let mut fields = serde_json::Map::new();
            fields.insert("kind".into(), parsed.kind_name().into());
            for (name, value) in parsed.fields() {
                fields.insert(name.into(), value.into());
            }
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&serde_json::Value::Object(fields))
                    .unwrap_or_default()
            )?;
        }
        DebugCommand::SskCap {
            format,
            private_key,
        } => {
            let bytes = std::fs::read(&private_key).map_err(|source| DebugError::Io {
                path: private_key,
                source,
            })?;
            let key = MutableKey::from_bytes(&bytes)?;
            let cap = match format {
                MutableFormat::Sdmf => Cap::SskWrite {
                    writekey: key.writekey(),
                    fingerprint: key.fingerprint(),
                },
                MutableFormat::Mdmf => Cap::MdmfWrite {
                    writekey: key.writekey(),
                    fingerprint: key.fingerprint(),
                },
            };
            writeln!(out, "{cap}")?;
        }
        DebugCommand::ChkCap {
            convergence_secret,
            needed,
            total,
            segment_size,
            codec,
            verbose,
            file,
        } => {
            let secret = hex::decode(convergence_secret.trim()).map_err(DebugError::BadSecret)?;
            let codec = CodecKind::from(codec).build(needed, total)?;
            let cap = chk_cap_of_file(&file, &secret, segment_size, codec, verbose)?;
            writeln!(out, "{cap}")?;
        }
    }
    Ok(())
}

fn open(path: &Path) -> Result<(BufReader<File>, u64), DebugError> {
    let io_err = |source| DebugError::Io {
        path: path.to_path_buf(),
        source,
    };
    let f = File::open(path).map_err(io_err)?;
    let len = f.metadata().map_err(io_err)?.len();
    Ok((BufReader::with_capacity(1 << 20, f), len))
}

fn read_exact(r: &mut impl Read, buf: &mut [u8], path: &Path) -> Result<(), DebugError> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => DebugError::FileChanged {
            path: path.to_path_buf(),
        },
        _ => DebugError::Io {
            path: path.to_path_buf(),
            source: e,
        },
    })
}

/// The cap Tahoe would give `path`: LIT for tiny files, else CHK. Reads the file twice (once
/// for the convergent key, once to encode), holding one segment at a time.
pub fn chk_cap_of_file(
    path: &Path,
    secret: &[u8],
    max_segment_size: u64,
    codec: Arc<dyn Codec>,
    verbose: bool,
) -> Result<Cap, DebugError> {
    let (mut reader, size) = open(path)?;
    if size <= LIT_THRESHOLD {
        let mut data = vec![0u8; size as usize];
        read_exact(&mut reader, &mut data, path)?;
        return Ok(Cap::Lit { data });
    }
    let geometry = Geometry::new(size, codec.k(), codec.n(), max_segment_size, codec.as_ref())?;
    let segsize = effective_segment_size(size, codec.k(), max_segment_size);
    let mut buf = vec![0u8; geometry.segment_size as usize];

    let mut hasher = convergent_key_hasher(secret, codec.k(), codec.n(), segsize);
    for s in 0..geometry.num_segments {
        let seg = &mut buf[..geometry.segment_len(s) as usize];
        read_exact(&mut reader, seg, path)?;
        hasher.update(seg);
    }
    let key = hasher.finish();

    let (mut reader, size_again) = open(path)?;
    if size_again != size {
        return Err(DebugError::FileChanged {
            path: path.to_path_buf(),
        });
    }
    let mut encoder = ChkEncoder::new(&key, geometry, codec.clone())?;
    for s in 0..geometry.num_segments {
        let seg = &mut buf[..geometry.segment_len(s) as usize];
        read_exact(&mut reader, seg, path)?;
        encoder.encode_segment(seg)?;
    }
    let encoded = encoder.finish()?;
    if verbose {
        eprintln!(
            "key {} storage index {} segment size {} segments {} codec {} share size {}",
            hex::encode(key),
            lafs_core::base32::encode(&storage_index_from_key(&key)),
            geometry.segment_size,
            geometry.num_segments,
            codec.name(),
            encoded.layout.share_size()
        );
    }
    Ok(Cap::ChkRead {
        key,
        ueb_hash: encoded.ueb_hash,
        needed: codec.k() as u16,
        total: codec.n() as u16,
        size,
    })
}
