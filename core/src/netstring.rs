//! Netstrings: `<decimal length>:<bytes>,` — Tahoe's framing inside hashes, extension blocks and
//! directory entries.

/// Error from [`split`] on a malformed netstring.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetstringError {
    #[error("netstring has no ':' after its length")]
    MissingColon,
    #[error("netstring length {0:?} is not a decimal number")]
    BadLength(String),
    #[error("netstring claims {claimed} bytes but only {available} remain")]
    Truncated { claimed: usize, available: usize },
    #[error("netstring is not terminated by ','")]
    MissingComma,
}

/// Append `netstring(value)` to `out`.
pub fn write(out: &mut Vec<u8>, value: &[u8]) {
    out.extend_from_slice(value.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(value);
    out.push(b',');
}

/// `netstring(value)` as a new vector.
pub fn encode(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 12);
    write(&mut out, value);
    out
}

/// Parse one netstring from the front of `input`, returning its value and the rest.
pub fn split(input: &[u8]) -> Result<(&[u8], &[u8]), NetstringError> {
    let colon = input
        .iter()
        .take(21) // a usize has at most 20 digits
        .position(|&b| b == b':')
        .ok_or(NetstringError::MissingColon)?;
    let digits = &input[..colon];
    let bad = || NetstringError::BadLength(String::from_utf8_lossy(digits).into_owned());
    if digits.is_empty()
        || !digits.iter().all(u8::is_ascii_digit)
        || (digits.len() > 1 && digits[0] == b'0')
    {
        return Err(bad());
    }
    let len: usize = std::str::from_utf8(digits)
        .map_err(|_| bad())?
        .parse()
        .map_err(|_| bad())?;
    let body = &input[colon + 1..];
    if body.len() <= len {
        return Err(NetstringError::Truncated {
            claimed: len,
            available: body.len().saturating_sub(1),
        });
    }
    if body[len] != b',' {
        return Err(NetstringError::MissingComma);
    }
    Ok((&body[..len], &body[len + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_encodings() {
        assert_eq!(encode(b"abc"), b"3:abc,");
        assert_eq!(encode(b""), b"0:,");
    }

    #[test]
    fn malformed_inputs_give_errors() {
        assert_eq!(split(b"3abc,"), Err(NetstringError::MissingColon));
        assert_eq!(split(b"x:abc,"), Err(NetstringError::BadLength("x".into())));
        assert_eq!(
            split(b"03:abc,"),
            Err(NetstringError::BadLength("03".into()))
        );
        assert!(matches!(
            split(b"5:abc,"),
            Err(NetstringError::Truncated { .. })
        ));
        assert_eq!(split(b"3:abcd"), Err(NetstringError::MissingComma));
        assert!(split(b"99999999999999999999999:").is_err());
    }

    proptest! {
        #[test]
        fn round_trip(v in proptest::collection::vec(any::<u8>(), 0..300), rest in proptest::collection::vec(any::<u8>(), 0..10)) {
            let mut buf = encode(&v);
            buf.extend_from_slice(&rest);
            let (got, tail) = split(&buf).unwrap();
            prop_assert_eq!(got, &v[..]);
            prop_assert_eq!(tail, &rest[..]);
        }

        #[test]
        fn never_panics(input in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = split(&input);
        }
    }
}
