//! Tahoe base32 (RFC 3548 alphabet, lower case, no padding).
//!
//! Tahoe writes every binary field of a capability, every storage index and every node ID in this
//! form (tahoe-formats.md §1.6). Bits are taken most significant first; `n` bytes become
//! `ceil(8n/5)` characters. Decoding is strict the way Tahoe's cap regexes are: lower case only,
//! no padding, no impossible lengths, and the unused low bits of the last character must be zero,
//! so every byte string has exactly one accepted text form (caps compare equal as strings).

/// The alphabet: value 0 is `a`, 25 is `z`, 26 is `2`, 31 is `7`.
pub const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Marks a byte that is not in the alphabet in [`DECODE`].
const INVALID: u8 = 0xff;

/// Byte -> 5-bit value, or [`INVALID`].
const DECODE: [u8; 256] = {
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < 32 {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// Why a string is not canonical Tahoe base32. Positions are byte offsets into the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Base32Error {
    /// Tahoe's base32 is lower case only; an upper-case letter means the text was altered.
    #[error("upper-case {ch:?} at position {position}: Tahoe base32 is lower case only")]
    UpperCase { position: usize, ch: char },
    /// A character outside `a-z2-7` (this includes `=` padding, `0`, `1`, `8`, `9`).
    #[error("{ch:?} at position {position} is not a base32 character (expected a-z or 2-7)")]
    InvalidChar { position: usize, ch: char },
    /// No byte string encodes to this many characters (lengths 1, 3 or 6 modulo 8).
    #[error("{len} characters is not a possible base32 length (length mod 8 is {}, which never occurs)", len % 8)]
    ImpossibleLength { len: usize },
    /// The last character carries bits beyond the data; canonical encodings leave them zero.
    #[error(
        "last character {ch:?} (position {position}) has non-zero unused low bits: not a canonical encoding"
    )]
    NonCanonicalTrailingBits { position: usize, ch: char },
    /// [`decode_array`] was given text for a different number of bytes.
    #[error("expected {expected} base32 characters, got {got}")]
    WrongLength { expected: usize, got: usize },
}

/// Number of characters `n` bytes encode to: `ceil(8n/5)`.
pub const fn encoded_len(n: usize) -> usize {
    // n / 5 * 8 + the tail, written so it cannot overflow for any n that fits in memory.
    n / 5 * 8 + (n % 5 * 8).div_ceil(5)
}

/// Number of bytes `chars` characters decode to, or `None` if no byte string has that length.
pub const fn decoded_len(chars: usize) -> Option<usize> {
    let tail = match chars % 8 {
        0 => 0,
        2 => 1,
        4 => 2,
        5 => 3,
        7 => 4,
        _ => return None,
    };
    Some(chars / 8 * 5 + tail)
}

/// Encodes `bytes` as lower-case, unpadded base32.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(encoded_len(bytes.len()));
    let mut chunks = bytes.chunks_exact(5);
    for chunk in &mut chunks {
        let v = chunk.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        for i in (0..8).rev() {
            out.push(ALPHABET[((v >> (5 * i)) & 31) as usize] as char);
        }
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        // Left-align the tail in a 40-bit group and emit only the characters that carry data.
        let mut v = 0u64;
        for (i, &b) in tail.iter().enumerate() {
            v |= u64::from(b) << (32 - 8 * i);
        }
        for i in 0..encoded_len(tail.len()) {
            out.push(ALPHABET[((v >> (35 - 5 * i)) & 31) as usize] as char);
        }
    }
    out
}

/// The error for the byte at `position`, which is known not to be in the alphabet. Every earlier
/// byte was valid ASCII, so `position` is a char boundary.
fn bad_char(s: &str, position: usize) -> Base32Error {
    let ch = s[position..].chars().next().unwrap_or('\u{fffd}');
    if ch.is_ascii_uppercase() {
        Base32Error::UpperCase { position, ch }
    } else {
        Base32Error::InvalidChar { position, ch }
    }
}

/// Decodes canonical Tahoe base32. Character errors are reported before length errors, so a
/// stray non-ASCII character is named rather than blamed on the (byte) length.
pub fn decode(s: &str) -> Result<Vec<u8>, Base32Error> {
    let input = s.as_bytes();
    let mut out = Vec::with_capacity(input.len() / 8 * 5 + 4);
    let mut chunks = input.chunks_exact(8);
    for (n, chunk) in (&mut chunks).enumerate() {
        let mut v = 0u64;
        let mut bad = false;
        for &c in chunk {
            let d = DECODE[c as usize];
            bad |= d == INVALID;
            v = (v << 5) | u64::from(d & 31);
        }
        if bad {
            let offset = chunk
                .iter()
                .position(|&c| DECODE[c as usize] == INVALID)
                .unwrap_or(0);
            return Err(bad_char(s, n * 8 + offset));
        }
        out.extend_from_slice(&v.to_be_bytes()[3..]);
    }
    let tail = chunks.remainder();
    let tail_start = input.len() - tail.len();
    let mut v = 0u64;
    for (i, &c) in tail.iter().enumerate() {
        let d = DECODE[c as usize];
        if d == INVALID {
            return Err(bad_char(s, tail_start + i));
        }
        v |= u64::from(d) << (35 - 5 * i);
    }
    let Some(tail_bytes) = decoded_len(tail.len()) else {
        return Err(Base32Error::ImpossibleLength { len: input.len() });
    };
    if tail_bytes > 0 {
        let data_bits = 8 * tail_bytes as u32;
        if v & ((1u64 << (40 - data_bits)) - 1) != 0 {
            let position = input.len() - 1;
            return Err(Base32Error::NonCanonicalTrailingBits {
                position,
                ch: input[position] as char,
            });
        }
        out.extend_from_slice(&v.to_be_bytes()[3..3 + tail_bytes]);
    }
    Ok(out)
}

/// Decodes exactly `N` bytes, checking the length before decoding so a wrong-sized field says so
/// instead of failing on its last character.
pub fn decode_array<const N: usize>(s: &str) -> Result<[u8; N], Base32Error> {
    let expected = encoded_len(N);
    if s.len() != expected {
        // A wrong length may still be caused by a multi-byte character; name it if so.
        if let Some(position) = s.bytes().position(|c| DECODE[c as usize] == INVALID) {
            return Err(bad_char(s, position));
        }
        return Err(Base32Error::WrongLength {
            expected,
            got: s.len(),
        });
    }
    let bytes = decode(s)?;
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_values() {
        assert_eq!(encode(b""), "");
        assert_eq!(encode(b"f"), "my");
        assert_eq!(encode(b"fo"), "mzxq");
        assert_eq!(encode(b"foo"), "mzxw6");
        assert_eq!(encode(b"foob"), "mzxw6yq");
        assert_eq!(encode(b"fooba"), "mzxw6ytb");
        assert_eq!(encode(b"foobar"), "mzxw6ytboi");
        assert_eq!(encode(&[0u8; 16]), "a".repeat(26));
        assert_eq!(encode(&[0xffu8; 16]), format!("{}4", "7".repeat(25)));
        assert_eq!(encode(&[0xffu8; 32]), format!("{}q", "7".repeat(51)));
        assert_eq!(encode(&[0u8; 16]).len(), 26);
        assert_eq!(encode(&[0u8; 32]).len(), 52);
        assert_eq!(encode(&[0u8; 20]).len(), 32);
        for s in [
            "",
            "my",
            "mzxq",
            "mzxw6",
            "mzxw6yq",
            "mzxw6ytb",
            "mzxw6ytboi",
        ] {
            assert_eq!(encode(&decode(s).unwrap()), s);
        }
        assert_eq!(decode("mzxw6ytboi").unwrap(), b"foobar");
    }

    #[test]
    fn a_real_storage_index_round_trips() {
        let si = decode("5mwuz5yxisqrnhtrsljs7wkyb4").unwrap();
        assert_eq!(si.len(), 16);
        assert_eq!(encode(&si), "5mwuz5yxisqrnhtrsljs7wkyb4");
        let arr: [u8; 16] = decode_array("5mwuz5yxisqrnhtrsljs7wkyb4").unwrap();
        assert_eq!(&arr[..], &si[..]);
    }

    #[test]
    fn lengths() {
        for n in 0..200 {
            assert_eq!(encoded_len(n), (8 * n).div_ceil(5));
            assert_eq!(decoded_len(encoded_len(n)), Some(n));
        }
        for chars in [1, 3, 6, 9, 11, 14] {
            assert_eq!(decoded_len(chars), None);
        }
    }

    #[test]
    fn rejects_upper_case() {
        assert_eq!(
            decode("mzXq"),
            Err(Base32Error::UpperCase {
                position: 2,
                ch: 'X'
            })
        );
        assert_eq!(
            decode("MZXW6YTB"),
            Err(Base32Error::UpperCase {
                position: 0,
                ch: 'M'
            })
        );
    }

    #[test]
    fn rejects_foreign_characters() {
        assert_eq!(
            decode("mzx1"),
            Err(Base32Error::InvalidChar {
                position: 3,
                ch: '1'
            })
        );
        assert_eq!(
            decode("my======"),
            Err(Base32Error::InvalidChar {
                position: 2,
                ch: '='
            })
        );
        assert_eq!(
            decode("mzxw6ytb8i"),
            Err(Base32Error::InvalidChar {
                position: 8,
                ch: '8'
            })
        );
        assert_eq!(
            decode("mzé"),
            Err(Base32Error::InvalidChar {
                position: 2,
                ch: 'é'
            })
        );
        assert_eq!(
            decode("aaaaaaaé"),
            Err(Base32Error::InvalidChar {
                position: 7,
                ch: 'é'
            })
        );
        assert_eq!(
            decode(" my"),
            Err(Base32Error::InvalidChar {
                position: 0,
                ch: ' '
            })
        );
    }

    #[test]
    fn rejects_impossible_lengths() {
        for s in ["a", "aaa", "aaaaaa", "aaaaaaaaa", "mzxw6ytbaaa"] {
            assert_eq!(
                decode(s),
                Err(Base32Error::ImpossibleLength { len: s.len() }),
                "{s}"
            );
        }
    }

    #[test]
    fn rejects_non_canonical_trailing_bits() {
        // "f" is "my"; "mz" sets one of the two unused bits.
        assert_eq!(
            decode("mz"),
            Err(Base32Error::NonCanonicalTrailingBits {
                position: 1,
                ch: 'z'
            })
        );
        // A 16-byte value's last character may only be one of [aeimquy4].
        let good = "5mwuz5yxisqrnhtrsljs7wkyb4";
        for c in ALPHABET.iter().map(|&c| c as char) {
            let s = format!("{}{c}", &good[..25]);
            assert_eq!(decode(&s).is_ok(), "aeimquy4".contains(c), "{s}");
        }
        // A 32-byte value's last character may only be 'a' or 'q'.
        for c in ALPHABET.iter().map(|&c| c as char) {
            let s = format!("{}{c}", "a".repeat(51));
            assert_eq!(decode(&s).is_ok(), "aq".contains(c), "{s}");
        }
    }

    #[test]
    fn decode_array_checks_length_first() {
        assert_eq!(
            decode_array::<16>("aaaa"),
            Err(Base32Error::WrongLength {
                expected: 26,
                got: 4
            })
        );
        assert_eq!(
            decode_array::<16>(&"a".repeat(52)),
            Err(Base32Error::WrongLength {
                expected: 26,
                got: 52
            })
        );
        assert_eq!(
            decode_array::<16>("aaaaaaaaaaaaaaaaaaaaaaaaé"),
            Err(Base32Error::InvalidChar {
                position: 24,
                ch: 'é'
            })
        );
        assert_eq!(decode_array::<32>(&"a".repeat(52)), Ok([0u8; 32]));
    }

    #[test]
    fn megabyte_inputs_are_fast_enough() {
        let data: Vec<u8> = (0..(1u32 << 20))
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let text = encode(&data);
        assert_eq!(text.len(), encoded_len(data.len()));
        assert_eq!(decode(&text).unwrap(), data);
    }

    proptest! {
        #[test]
        fn round_trip(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let text = encode(&data);
            prop_assert_eq!(text.len(), encoded_len(data.len()));
            prop_assert!(text.bytes().all(|c| ALPHABET.contains(&c)));
            prop_assert_eq!(decode(&text).unwrap(), data);
        }

        #[test]
        fn decode_never_panics_and_accepts_only_canonical_text(s in "[a-z2-7A-Z0-9=é]{0,40}") {
            if let Ok(bytes) = decode(&s) {
                prop_assert_eq!(encode(&bytes), s);
            }
        }

        #[test]
        fn arbitrary_strings_never_panic(s in any::<String>()) {
            let _ = decode(&s);
            let _ = decode_array::<16>(&s);
        }
    }
}
