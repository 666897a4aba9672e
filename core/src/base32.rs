//! Tahoe base32 (RFC 3548 alphabet, lower case, no padding).
