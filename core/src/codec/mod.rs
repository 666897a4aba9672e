//! Erasure codecs: k-of-n encoding of one segment into n blocks, and decoding from any k of them.
//!
//! Two implementations sit behind the [`Codec`] trait:
//! - [`zfec::Zfec`]: byte-identical to Tahoe's zfec (GF(2^8), systematic), n <= 256;
//! - [`novelpoly::NovelPoly`]: `reed-solomon-novelpoly` (GF(2^16)) for wide grids, n <= 65536.
//!
//! The codec's [`Codec::name`] is written into each file's extension block so a download never
//! guesses which codec encoded it.

pub mod novelpoly;
pub mod zfec;

/// What went wrong in an encode or decode call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("invalid encoding parameters {k}-of-{n}: {why}")]
    BadParams {
        k: usize,
        n: usize,
        why: &'static str,
    },
    #[error("input of {len} bytes cannot be split into {k} equal blocks (length must be a multiple of k)")]
    InputNotMultipleOfK { len: usize, k: usize },
    #[error("need {needed} distinct shares to decode, got {got}")]
    NotEnoughShares { needed: usize, got: usize },
    #[error("share number {shnum} is out of range for n = {n}")]
    ShareNumberOutOfRange { shnum: usize, n: usize },
    #[error("share {shnum} was given twice")]
    DuplicateShare { shnum: usize },
    #[error("share {shnum} is {got} bytes, expected {expected}")]
    WrongBlockLength {
        shnum: usize,
        got: usize,
        expected: usize,
    },
    #[error("unknown codec name {0:?}")]
    UnknownCodec(String),
}

/// A k-of-n erasure code over one segment at a time.
///
/// `encode` takes a segment whose length is a multiple of k (the caller pads), views it as k
/// consecutive input blocks of `len / k` bytes, and returns n encoded blocks, each
/// `encoded_block_len(len / k)` bytes long, block i destined for share i. `decode` takes any k
/// distinct `(share number, block)` pairs, in any order (extra shares are ignored), and returns the
/// original segment (k * input_block_len bytes).
pub trait Codec: std::fmt::Debug + Send + Sync {
    /// The name recorded in the URI extension block (`crs` for zfec, as Tahoe writes it).
    fn name(&self) -> &'static str;
    /// Shares needed to decode.
    fn k(&self) -> usize;
    /// Shares produced.
    fn n(&self) -> usize;
    /// Length of each encoded block for an input block of `input_block_len` bytes.
    fn encoded_block_len(&self, input_block_len: usize) -> usize;
    /// Encode a segment (length a multiple of k) into n blocks.
    fn encode(&self, segment: &[u8]) -> Result<Vec<Vec<u8>>, CodecError>;
    /// Recover the segment (k * `input_block_len` bytes) from any k distinct shares.
    fn decode(
        &self,
        input_block_len: usize,
        shares: &[(usize, &[u8])],
    ) -> Result<Vec<u8>, CodecError>;
}

/// The codecs lafs knows, by the name recorded in a file's extension block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CodecKind {
    /// Tahoe's zfec (`crs`): the default, byte-identical to Tahoe.
    Zfec,
    /// reed-solomon-novelpoly: for wide grids (n up to 65536).
    NovelPoly,
}

impl CodecKind {
    /// The codec that wrote a file, from the extension block's `codec_name`.
    pub fn from_name(name: &str) -> Result<CodecKind, CodecError> {
        match name {
            "crs" => Ok(CodecKind::Zfec),
            "novelpoly-v2" => Ok(CodecKind::NovelPoly),
            other => Err(CodecError::UnknownCodec(other.to_string())),
        }
    }

    /// A k-of-n codec of this kind.
    pub fn build(self, k: usize, n: usize) -> Result<std::sync::Arc<dyn Codec>, CodecError> {
        Ok(match self {
            CodecKind::Zfec => std::sync::Arc::new(zfec::Zfec::new(k, n)?),
            CodecKind::NovelPoly => std::sync::Arc::new(novelpoly::NovelPoly::new(k, n)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_codec_is_found_by_the_name_it_records() {
        for kind in [CodecKind::Zfec, CodecKind::NovelPoly] {
            let codec = kind.build(3, 10).unwrap();
            assert_eq!(CodecKind::from_name(codec.name()), Ok(kind));
        }
        assert!(matches!(
            CodecKind::from_name("rot13"),
            Err(CodecError::UnknownCodec(_))
        ));
    }
}
