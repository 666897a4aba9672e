//! Encoding parameters and the geometry of a file: segment size, segment count, block sizes.

use crate::codec::Codec;

/// Files of at most this many bytes become `URI:LIT:` caps and use no servers.
pub const LIT_THRESHOLD: u64 = 55;

/// Tahoe's default maximum immutable segment size (1 MiB).
pub const DEFAULT_MAX_SEGMENT_SIZE: u64 = 1 << 20;

/// What the uploader is asked for: k-of-n shares, at least `happy` distinct servers, and the
/// largest segment it may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncodingParams {
    pub k: usize,
    pub happy: usize,
    pub n: usize,
    pub max_segment_size: u64,
}

impl Default for EncodingParams {
    /// Tahoe's defaults: 3-of-10, happy 7, 1 MiB segments.
    fn default() -> Self {
        EncodingParams {
            k: 3,
            happy: 7,
            n: 10,
            max_segment_size: DEFAULT_MAX_SEGMENT_SIZE,
        }
    }
}

/// Why parameters cannot describe a valid encoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    #[error("need 1 <= k <= n <= 256 shares, got {k}-of-{n}")]
    BadShareCounts { k: usize, n: usize },
    #[error("happy must be between 1 and n = {n}, got {happy}")]
    BadHappy { happy: usize, n: usize },
    #[error("maximum segment size must be at least 1 byte")]
    ZeroSegmentSize,
    #[error("a CHK file must hold at least one byte (smaller files are LIT caps)")]
    EmptyFile,
}

impl EncodingParams {
    pub fn validate(&self) -> Result<(), ParamsError> {
        if self.k == 0 || self.k > self.n || self.n > 256 {
            return Err(ParamsError::BadShareCounts {
                k: self.k,
                n: self.n,
            });
        }
        if self.happy == 0 || self.happy > self.n {
            return Err(ParamsError::BadHappy {
                happy: self.happy,
                n: self.n,
            });
        }
        if self.max_segment_size == 0 {
            return Err(ParamsError::ZeroSegmentSize);
        }
        Ok(())
    }
}

fn next_multiple(x: u64, k: u64) -> u64 {
    x.div_ceil(k) * k
}

/// Everything about a file's segmenting that follows from its size and parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub size: u64,
    pub k: usize,
    pub n: usize,
    /// Effective segment size: min(max, size) rounded up to a multiple of k.
    pub segment_size: u64,
    pub num_segments: u64,
    /// Unpadded length of the last segment (a whole segment when size divides evenly).
    pub tail_size: u64,
    /// The tail padded with zeros up to a multiple of k: what the codec sees.
    pub padded_tail_size: u64,
    /// Encoded block length of a full segment (bytes per share per segment).
    pub block_size: u64,
    /// Encoded block length of the tail segment.
    pub tail_block_size: u64,
}

impl Geometry {
    /// Geometry of a `size`-byte file. The codec decides encoded block lengths (zfec keeps them
    /// equal to the input block length, novelpoly may round up).
    pub fn new(
        size: u64,
        k: usize,
        n: usize,
        max_segment_size: u64,
        codec: &dyn Codec,
    ) -> Result<Self, ParamsError> {
        Self::with_block_len(size, k, n, max_segment_size, &|len| {
            codec.encoded_block_len(len)
        })
    }

    /// Like [`Geometry::new`] with the codec's block-length rule given directly (a downloader
    /// guesses the layout before it knows the codec).
    pub fn with_block_len(
        size: u64,
        k: usize,
        n: usize,
        max_segment_size: u64,
        encoded_block_len: &dyn Fn(usize) -> usize,
    ) -> Result<Self, ParamsError> {
        EncodingParams {
            k,
            happy: 1,
            n,
            max_segment_size,
        }
        .validate()?;
        if size == 0 {
            return Err(ParamsError::EmptyFile);
        }
        let k64 = k as u64;
        let segment_size = next_multiple(max_segment_size.min(size), k64);
        let num_segments = size.div_ceil(segment_size);
        let tail_size = match size % segment_size {
            0 => segment_size,
            t => t,
        };
        let padded_tail_size = next_multiple(tail_size, k64);
        let block_size = encoded_block_len((segment_size / k64) as usize) as u64;
        let tail_block_size = encoded_block_len((padded_tail_size / k64) as usize) as u64;
        Ok(Geometry {
            size,
            k,
            n,
            segment_size,
            num_segments,
            tail_size,
            padded_tail_size,
            block_size,
            tail_block_size,
        })
    }

    /// Geometry for an upload with `params`.
    pub fn for_params(
        size: u64,
        params: &EncodingParams,
        codec: &dyn Codec,
    ) -> Result<Self, ParamsError> {
        Self::new(size, params.k, params.n, params.max_segment_size, codec)
    }

    /// Plaintext length of segment `s` (unpadded).
    pub fn segment_len(&self, s: u64) -> u64 {
        if s + 1 == self.num_segments {
            self.tail_size
        } else {
            self.segment_size
        }
    }

    /// Length the codec sees for segment `s` (the tail is padded to a multiple of k).
    pub fn padded_segment_len(&self, s: u64) -> u64 {
        if s + 1 == self.num_segments {
            self.padded_tail_size
        } else {
            self.segment_size
        }
    }

    /// Encoded block length of segment `s`.
    pub fn block_len(&self, s: u64) -> u64 {
        if s + 1 == self.num_segments {
            self.tail_block_size
        } else {
            self.block_size
        }
    }

    /// Byte offset of segment `s` in the file.
    pub fn segment_offset(&self, s: u64) -> u64 {
        s * self.segment_size
    }

    /// Bytes of block data each share holds.
    pub fn share_data_size(&self) -> u64 {
        self.block_size * (self.num_segments - 1) + self.tail_block_size
    }
}

/// The effective segment size alone (needed for the convergent key before encoding starts).
pub fn effective_segment_size(size: u64, k: usize, max_segment_size: u64) -> u64 {
    next_multiple(max_segment_size.min(size).max(1), k.max(1) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::CodecError;

    #[derive(Debug)]
    struct Identity;
    impl Codec for Identity {
        fn name(&self) -> &'static str {
            "identity"
        }
        fn k(&self) -> usize {
            3
        }
        fn n(&self) -> usize {
            10
        }
        fn encoded_block_len(&self, l: usize) -> usize {
            l
        }
        fn encode(&self, _: &[u8]) -> Result<Vec<Vec<u8>>, CodecError> {
            Ok(vec![])
        }
        fn decode(&self, _: usize, _: &[(usize, &[u8])]) -> Result<Vec<u8>, CodecError> {
            Ok(vec![])
        }
    }

    #[test]
    fn effective_segment_size_rounds_up_to_k() {
        // from the vectors' README: k = 3 with a 131072 maximum gives 131073
        let g = Geometry::new(2_097_153, 3, 10, 131_072, &Identity).unwrap();
        assert_eq!(g.segment_size, 131_073);
        assert_eq!(g.num_segments, 16);
        assert_eq!(effective_segment_size(2_097_153, 3, 131_072), 131_073);
    }

    #[test]
    fn tail_is_padded_to_k_and_share_size_is_ceil_size_over_k() {
        let g = Geometry::new(300_000, 3, 10, 131_072, &Identity).unwrap();
        assert_eq!(
            (g.segment_size, g.num_segments, g.tail_size),
            (131_073, 3, 37_854)
        );
        assert_eq!(g.padded_tail_size, 37_854);
        assert_eq!(g.share_data_size(), 100_000);
        let g = Geometry::new(56, 3, 10, 131_072, &Identity).unwrap();
        assert_eq!(
            (
                g.segment_size,
                g.num_segments,
                g.tail_size,
                g.share_data_size()
            ),
            (57, 1, 56, 19)
        );
    }

    #[test]
    fn bad_parameters_are_errors() {
        assert!(Geometry::new(0, 3, 10, 10, &Identity).is_err());
        assert!(Geometry::new(10, 0, 10, 10, &Identity).is_err());
        assert!(Geometry::new(10, 11, 10, 10, &Identity).is_err());
        assert!(Geometry::new(10, 3, 257, 10, &Identity).is_err());
        assert!(EncodingParams {
            happy: 11,
            ..Default::default()
        }
        .validate()
        .is_err());
    }
}
