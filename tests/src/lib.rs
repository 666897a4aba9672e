//! lafs-tests: suites that exercise lafs from the outside: Tahoe's test vectors now, end-to-end
//! runs over every runtime later. Shared helpers for those suites live here.
