//! Compact binary encoding of message payloads: big-endian integers, `u32`-length-prefixed byte
//! strings and lists, one tag byte per enum variant.
//!
//! Decoding checks every length and list count against the bytes that remain before it
//! allocates, so a hostile payload can make the decoder allocate at most about its own size.

use super::message::{
    DataVector, ErrorKind, LeaseSecrets, MutableShareWrite, ReadRange, Refusal, Request, Response,
    ShareRead, ShareWrite, ShareWriteOutcome, TestVector,
};

/// Why a payload could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("payload truncated: {field} needs {needed} bytes but only {remaining} remain")]
    Truncated {
        field: &'static str,
        needed: u64,
        remaining: usize,
    },
    #[error("payload has {0} unexpected bytes after the message")]
    TrailingBytes(usize),
    #[error("unknown {what} tag {tag}")]
    UnknownTag { what: &'static str, tag: u8 },
    #[error("boolean {field} must be 0 or 1, got {value}")]
    InvalidBool { field: &'static str, value: u8 },
    #[error("{field} is not valid UTF-8")]
    InvalidUtf8 { field: &'static str },
    #[error("{field} claims {count} entries but only {remaining} bytes remain")]
    CountTooLarge {
        field: &'static str,
        count: u32,
        remaining: usize,
    },
}

mod tag {
    pub const REQ_GET_VERSION: u8 = 0;
    pub const REQ_IMMUTABLE_WRITE: u8 = 1;
    pub const REQ_IMMUTABLE_ABORT: u8 = 2;
    pub const REQ_IMMUTABLE_READ: u8 = 3;
    pub const REQ_ADD_LEASE: u8 = 4;
    pub const REQ_ADVISE_CORRUPT: u8 = 5;
    pub const REQ_MUTABLE_READ: u8 = 6;
    pub const REQ_MUTABLE_WRITE: u8 = 7;

    pub const RESP_VERSION: u8 = 0;
    pub const RESP_IMMUTABLE_WRITE: u8 = 1;
    pub const RESP_IMMUTABLE_READ: u8 = 2;
    pub const RESP_DONE: u8 = 3;
    pub const RESP_ERROR: u8 = 4;
    pub const RESP_MUTABLE_READ: u8 = 5;
    pub const RESP_MUTABLE_WRITE: u8 = 6;

    pub const OUT_WRITTEN: u8 = 0;
    pub const OUT_ALREADY_HAVE: u8 = 1;
    pub const OUT_REFUSED: u8 = 2;

    pub const REF_NO_SPACE: u8 = 0;
    pub const REF_TOO_LARGE: u8 = 1;
    pub const REF_IN_PROGRESS_ELSEWHERE: u8 = 2;
    pub const REF_BAD_SHARE_NUMBER: u8 = 3;
    pub const REF_OUT_OF_BOUNDS: u8 = 4;
    pub const REF_WRONG_LEASE_SECRET: u8 = 5;
    pub const REF_NOT_ALLOCATED: u8 = 6;
    pub const REF_STORE_FAILURE: u8 = 7;

    pub const ERR_BAD_REQUEST: u8 = 0;
    pub const ERR_NOT_FOUND: u8 = 1;
    pub const ERR_RESPONSE_TOO_LARGE: u8 = 2;
    pub const ERR_STORE_FAILURE: u8 = 3;
    pub const ERR_BAD_WRITE_ENABLER: u8 = 4;
    pub const ERR_NO_SPACE: u8 = 5;
}

// Smallest encodings of list elements, used to reject impossible counts before allocating.
const MIN_SHARE_WRITE: usize = 2 + 1 + 8 + 4 + 1;
const MIN_READ_RANGE: usize = 16;
const MIN_SHARE_READ: usize = 2 + 8 + 4;
const MIN_BYTES: usize = 4;
const MIN_RESULT: usize = 2 + 1;
const MIN_MUTABLE_SHARE_WRITE: usize = 2 + 4 + 4 + 1;
const MIN_TEST_VECTOR: usize = 8 + 8 + 4;
const MIN_DATA_VECTOR: usize = 8 + 4;

/// Appends big-endian fields to a buffer.
struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn bool(&mut self, v: bool) {
        self.u8(u8::from(v));
    }
    fn raw(&mut self, v: &[u8]) {
        self.0.extend_from_slice(v);
    }
    /// A list or byte-string length. Frames are at most 4 GiB, so a longer one cannot be sent.
    fn len(&mut self, n: usize) {
        let n = u32::try_from(n)
            .expect("wire: a list or byte string longer than 4 GiB cannot be framed");
        self.u32(n);
    }
    fn bytes(&mut self, v: &[u8]) {
        self.len(v.len());
        self.raw(v);
    }
    fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }
    fn u16_list(&mut self, v: &[u16]) {
        self.len(v.len());
        for &x in v {
            self.u16(x);
        }
    }
    fn lease(&mut self, l: &LeaseSecrets) {
        self.raw(&l.renew);
        self.raw(&l.cancel);
    }
    fn ranges(&mut self, ranges: &[ReadRange]) {
        self.len(ranges.len());
        for r in ranges {
            self.u64(r.offset);
            self.u64(r.length);
        }
    }
    fn share_reads(&mut self, shares: &[ShareRead]) {
        self.len(shares.len());
        for s in shares {
            self.u16(s.shnum);
            self.u64(s.share_len);
            self.len(s.chunks.len());
            for c in &s.chunks {
                self.bytes(c);
            }
        }
    }
}

/// Reads big-endian fields from a payload, never past its end.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated {
                field,
                needed: n as u64,
                remaining: self.buf.len(),
            });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }
    fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }
    fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }
    fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }
    fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }
    fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(DecodeError::InvalidBool { field, value }),
        }
    }
    /// A list count whose entries (each at least `min_size` bytes) must fit in what remains.
    fn count(&mut self, field: &'static str, min_size: usize) -> Result<usize, DecodeError> {
        let count = self.u32(field)?;
        let fits = (count as u64).saturating_mul(min_size as u64) <= self.buf.len() as u64;
        if !fits {
            return Err(DecodeError::CountTooLarge {
                field,
                count,
                remaining: self.buf.len(),
            });
        }
        Ok(count as usize)
    }
    fn bytes(&mut self, field: &'static str) -> Result<Vec<u8>, DecodeError> {
        let len = self.u32(field)? as usize;
        Ok(self.take(len, field)?.to_vec())
    }
    fn string(&mut self, field: &'static str) -> Result<String, DecodeError> {
        String::from_utf8(self.bytes(field)?).map_err(|_| DecodeError::InvalidUtf8 { field })
    }
    fn u16_list(&mut self, field: &'static str) -> Result<Vec<u16>, DecodeError> {
        let n = self.count(field, 2)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.u16(field)?);
        }
        Ok(out)
    }
    fn ranges(&mut self) -> Result<Vec<ReadRange>, DecodeError> {
        let n = self.count("read ranges", MIN_READ_RANGE)?;
        let mut ranges = Vec::with_capacity(n);
        for _ in 0..n {
            ranges.push(ReadRange {
                offset: self.u64("range offset")?,
                length: self.u64("range length")?,
            });
        }
        Ok(ranges)
    }
    fn share_reads(&mut self) -> Result<Vec<ShareRead>, DecodeError> {
        let n = self.count("shares read", MIN_SHARE_READ)?;
        let mut shares = Vec::with_capacity(n);
        for _ in 0..n {
            let shnum = self.u16("share number")?;
            let share_len = self.u64("share length")?;
            let m = self.count("chunks", MIN_BYTES)?;
            let mut chunks = Vec::with_capacity(m);
            for _ in 0..m {
                chunks.push(self.bytes("chunk")?);
            }
            shares.push(ShareRead {
                shnum,
                share_len,
                chunks,
            });
        }
        Ok(shares)
    }
    fn lease(&mut self) -> Result<LeaseSecrets, DecodeError> {
        Ok(LeaseSecrets {
            renew: self.array("lease renew secret")?,
            cancel: self.array("lease cancel secret")?,
        })
    }
    fn finish(self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes(self.buf.len()))
        }
    }
}

/// Appends the payload encoding of `req` to `out`.
pub(crate) fn write_request(out: &mut Vec<u8>, req: &Request) {
    let mut w = Writer(out);
    match req {
        Request::GetVersion => w.u8(tag::REQ_GET_VERSION),
        Request::ImmutableWrite {
            storage_index,
            lease,
            allocated_size,
            total_shares,
            writes,
        } => {
            w.u8(tag::REQ_IMMUTABLE_WRITE);
            w.raw(storage_index);
            w.lease(lease);
            w.u64(*allocated_size);
            w.u16(*total_shares);
            w.len(writes.len());
            for sw in writes {
                w.u16(sw.shnum);
                w.bool(sw.allocate);
                w.u64(sw.offset);
                w.bytes(&sw.data);
                w.bool(sw.close);
            }
        }
        Request::ImmutableAbort {
            storage_index,
            shnums,
        } => {
            w.u8(tag::REQ_IMMUTABLE_ABORT);
            w.raw(storage_index);
            w.u16_list(shnums);
        }
        Request::ImmutableRead {
            storage_index,
            shnums,
            max_shares,
            ranges,
        } => {
            w.u8(tag::REQ_IMMUTABLE_READ);
            w.raw(storage_index);
            w.u16_list(shnums);
            w.u16(*max_shares);
            w.ranges(ranges);
        }
        Request::AddLease {
            storage_index,
            lease,
        } => {
            w.u8(tag::REQ_ADD_LEASE);
            w.raw(storage_index);
            w.lease(lease);
        }
        Request::AdviseCorrupt {
            storage_index,
            shnum,
            reason,
        } => {
            w.u8(tag::REQ_ADVISE_CORRUPT);
            w.raw(storage_index);
            w.u16(*shnum);
            w.str(reason);
        }
        Request::MutableRead {
            storage_index,
            shnums,
            ranges,
        } => {
            w.u8(tag::REQ_MUTABLE_READ);
            w.raw(storage_index);
            w.u16_list(shnums);
            w.ranges(ranges);
        }
        Request::MutableWrite {
            storage_index,
            write_enabler,
            lease,
            shares,
            read_ranges,
        } => {
            w.u8(tag::REQ_MUTABLE_WRITE);
            w.raw(storage_index);
            w.raw(write_enabler);
            w.lease(lease);
            w.len(shares.len());
            for share in shares {
                w.u16(share.shnum);
                w.len(share.tests.len());
                for t in &share.tests {
                    w.u64(t.offset);
                    w.u64(t.length);
                    w.bytes(&t.specimen);
                }
                w.len(share.writes.len());
                for d in &share.writes {
                    w.u64(d.offset);
                    w.bytes(&d.data);
                }
                match share.new_length {
                    None => w.u8(0),
                    Some(len) => {
                        w.u8(1);
                        w.u64(len);
                    }
                }
            }
            w.ranges(read_ranges);
        }
    }
}

/// Decodes a whole request payload (trailing bytes are an error).
pub(crate) fn read_request(payload: &[u8]) -> Result<Request, DecodeError> {
    let mut r = Reader { buf: payload };
    let req = match r.u8("request tag")? {
        tag::REQ_GET_VERSION => Request::GetVersion,
        tag::REQ_IMMUTABLE_WRITE => {
            let storage_index = r.array("storage index")?;
            let lease = r.lease()?;
            let allocated_size = r.u64("allocated size")?;
            let total_shares = r.u16("total shares")?;
            let n = r.count("share writes", MIN_SHARE_WRITE)?;
            let mut writes = Vec::with_capacity(n);
            for _ in 0..n {
                writes.push(ShareWrite {
                    shnum: r.u16("share number")?,
                    allocate: r.bool("allocate flag")?,
                    offset: r.u64("write offset")?,
                    data: r.bytes("write data")?,
                    close: r.bool("close flag")?,
                });
            }
            Request::ImmutableWrite {
                storage_index,
                lease,
                allocated_size,
                total_shares,
                writes,
            }
        }
        tag::REQ_IMMUTABLE_ABORT => Request::ImmutableAbort {
            storage_index: r.array("storage index")?,
            shnums: r.u16_list("share numbers")?,
        },
        tag::REQ_IMMUTABLE_READ => {
            let storage_index = r.array("storage index")?;
            let shnums = r.u16_list("share numbers")?;
            let max_shares = r.u16("max shares")?;
            Request::ImmutableRead {
                storage_index,
                shnums,
                max_shares,
                ranges: r.ranges()?,
            }
        }
        tag::REQ_ADD_LEASE => Request::AddLease {
            storage_index: r.array("storage index")?,
            lease: r.lease()?,
        },
        tag::REQ_ADVISE_CORRUPT => Request::AdviseCorrupt {
            storage_index: r.array("storage index")?,
            shnum: r.u16("share number")?,
            reason: r.string("corruption reason")?,
        },
        tag::REQ_MUTABLE_READ => Request::MutableRead {
            storage_index: r.array("storage index")?,
            shnums: r.u16_list("share numbers")?,
            ranges: r.ranges()?,
        },
        tag::REQ_MUTABLE_WRITE => {
            let storage_index = r.array("storage index")?;
            let write_enabler = r.array("write enabler")?;
            let lease = r.lease()?;
            let n = r.count("mutable share writes", MIN_MUTABLE_SHARE_WRITE)?;
            let mut shares = Vec::with_capacity(n);
            for _ in 0..n {
                let shnum = r.u16("share number")?;
                let nt = r.count("test vectors", MIN_TEST_VECTOR)?;
                let mut tests = Vec::with_capacity(nt);
                for _ in 0..nt {
                    tests.push(TestVector {
                        offset: r.u64("test offset")?,
                        length: r.u64("test length")?,
                        specimen: r.bytes("test specimen")?,
                    });
                }
                let nw = r.count("data vectors", MIN_DATA_VECTOR)?;
                let mut writes = Vec::with_capacity(nw);
                for _ in 0..nw {
                    writes.push(DataVector {
                        offset: r.u64("data offset")?,
                        data: r.bytes("data")?,
                    });
                }
                let new_length = if r.bool("new length flag")? {
                    Some(r.u64("new length")?)
                } else {
                    None
                };
                shares.push(MutableShareWrite {
                    shnum,
                    tests,
                    writes,
                    new_length,
                });
            }
            Request::MutableWrite {
                storage_index,
                write_enabler,
                lease,
                shares,
                read_ranges: r.ranges()?,
            }
        }
        t => {
            return Err(DecodeError::UnknownTag {
                what: "request",
                tag: t,
            })
        }
    };
    r.finish()?;
    Ok(req)
}

/// Appends the payload encoding of `resp` to `out`.
pub(crate) fn write_response(out: &mut Vec<u8>, resp: &Response) {
    let mut w = Writer(out);
    match resp {
        Response::Version {
            protocol,
            max_share_size,
            available_space,
            used_space,
            shares_held,
        } => {
            w.u8(tag::RESP_VERSION);
            w.u32(*protocol);
            w.u64(*max_share_size);
            w.u64(*available_space);
            w.u64(*used_space);
            w.u64(*shares_held);
        }
        Response::ImmutableWrite { results, held } => {
            w.u8(tag::RESP_IMMUTABLE_WRITE);
            w.len(results.len());
            for (shnum, outcome) in results {
                w.u16(*shnum);
                write_outcome(&mut w, outcome);
            }
            w.u16_list(held);
        }
        Response::ImmutableRead { shares, held } => {
            w.u8(tag::RESP_IMMUTABLE_READ);
            w.share_reads(shares);
            w.u16_list(held);
        }
        Response::Done => w.u8(tag::RESP_DONE),
        Response::MutableRead { shares } => {
            w.u8(tag::RESP_MUTABLE_READ);
            w.share_reads(shares);
        }
        Response::MutableWrite { applied, reads } => {
            w.u8(tag::RESP_MUTABLE_WRITE);
            w.bool(*applied);
            w.share_reads(reads);
        }
        Response::Error { kind, message } => {
            w.u8(tag::RESP_ERROR);
            w.u8(match kind {
                ErrorKind::BadRequest => tag::ERR_BAD_REQUEST,
                ErrorKind::NotFound => tag::ERR_NOT_FOUND,
                ErrorKind::ResponseTooLarge => tag::ERR_RESPONSE_TOO_LARGE,
                ErrorKind::StoreFailure => tag::ERR_STORE_FAILURE,
                ErrorKind::BadWriteEnabler => tag::ERR_BAD_WRITE_ENABLER,
                ErrorKind::NoSpace => tag::ERR_NO_SPACE,
            });
            w.str(message);
        }
    }
}

fn write_outcome(w: &mut Writer<'_>, outcome: &ShareWriteOutcome) {
    match outcome {
        ShareWriteOutcome::Written { committed } => {
            w.u8(tag::OUT_WRITTEN);
            w.bool(*committed);
        }
        ShareWriteOutcome::AlreadyHave => w.u8(tag::OUT_ALREADY_HAVE),
        ShareWriteOutcome::Refused(refusal) => {
            w.u8(tag::OUT_REFUSED);
            match refusal {
                Refusal::NoSpace { available } => {
                    w.u8(tag::REF_NO_SPACE);
                    w.u64(*available);
                }
                Refusal::TooLarge { max_share_size } => {
                    w.u8(tag::REF_TOO_LARGE);
                    w.u64(*max_share_size);
                }
                Refusal::InProgressElsewhere => w.u8(tag::REF_IN_PROGRESS_ELSEWHERE),
                Refusal::BadShareNumber => w.u8(tag::REF_BAD_SHARE_NUMBER),
                Refusal::OutOfBounds { allocated_size } => {
                    w.u8(tag::REF_OUT_OF_BOUNDS);
                    w.u64(*allocated_size);
                }
                Refusal::WrongLeaseSecret => w.u8(tag::REF_WRONG_LEASE_SECRET),
                Refusal::NotAllocated => w.u8(tag::REF_NOT_ALLOCATED),
                Refusal::StoreFailure(msg) => {
                    w.u8(tag::REF_STORE_FAILURE);
                    w.str(msg);
                }
            }
        }
    }
}

fn read_outcome(r: &mut Reader<'_>) -> Result<ShareWriteOutcome, DecodeError> {
    Ok(match r.u8("write outcome tag")? {
        tag::OUT_WRITTEN => ShareWriteOutcome::Written {
            committed: r.bool("committed flag")?,
        },
        tag::OUT_ALREADY_HAVE => ShareWriteOutcome::AlreadyHave,
        tag::OUT_REFUSED => ShareWriteOutcome::Refused(match r.u8("refusal tag")? {
            tag::REF_NO_SPACE => Refusal::NoSpace {
                available: r.u64("available space")?,
            },
            tag::REF_TOO_LARGE => Refusal::TooLarge {
                max_share_size: r.u64("max share size")?,
            },
            tag::REF_IN_PROGRESS_ELSEWHERE => Refusal::InProgressElsewhere,
            tag::REF_BAD_SHARE_NUMBER => Refusal::BadShareNumber,
            tag::REF_OUT_OF_BOUNDS => Refusal::OutOfBounds {
                allocated_size: r.u64("allocated size")?,
            },
            tag::REF_WRONG_LEASE_SECRET => Refusal::WrongLeaseSecret,
            tag::REF_NOT_ALLOCATED => Refusal::NotAllocated,
            tag::REF_STORE_FAILURE => Refusal::StoreFailure(r.string("store failure message")?),
            t => {
                return Err(DecodeError::UnknownTag {
                    what: "refusal",
                    tag: t,
                })
            }
        }),
        t => {
            return Err(DecodeError::UnknownTag {
                what: "write outcome",
                tag: t,
            })
        }
    })
}

/// Decodes a whole response payload (trailing bytes are an error).
pub(crate) fn read_response(payload: &[u8]) -> Result<Response, DecodeError> {
    let mut r = Reader { buf: payload };
    let resp = match r.u8("response tag")? {
        tag::RESP_VERSION => Response::Version {
            protocol: r.u32("protocol version")?,
            max_share_size: r.u64("max share size")?,
            available_space: r.u64("available space")?,
            used_space: r.u64("used space")?,
            shares_held: r.u64("shares held")?,
        },
        tag::RESP_IMMUTABLE_WRITE => {
            let n = r.count("write results", MIN_RESULT)?;
            let mut results = Vec::with_capacity(n);
            for _ in 0..n {
                let shnum = r.u16("share number")?;
                results.push((shnum, read_outcome(&mut r)?));
            }
            Response::ImmutableWrite {
                results,
                held: r.u16_list("held shares")?,
            }
        }
        tag::RESP_IMMUTABLE_READ => Response::ImmutableRead {
            shares: r.share_reads()?,
            held: r.u16_list("held shares")?,
        },
        tag::RESP_DONE => Response::Done,
        tag::RESP_MUTABLE_READ => Response::MutableRead {
            shares: r.share_reads()?,
        },
        tag::RESP_MUTABLE_WRITE => Response::MutableWrite {
            applied: r.bool("applied flag")?,
            reads: r.share_reads()?,
        },
        tag::RESP_ERROR => {
            let kind = match r.u8("error kind")? {
                tag::ERR_BAD_REQUEST => ErrorKind::BadRequest,
                tag::ERR_NOT_FOUND => ErrorKind::NotFound,
                tag::ERR_RESPONSE_TOO_LARGE => ErrorKind::ResponseTooLarge,
                tag::ERR_STORE_FAILURE => ErrorKind::StoreFailure,
                tag::ERR_BAD_WRITE_ENABLER => ErrorKind::BadWriteEnabler,
                tag::ERR_NO_SPACE => ErrorKind::NoSpace,
                t => {
                    return Err(DecodeError::UnknownTag {
                        what: "error kind",
                        tag: t,
                    })
                }
            };
            Response::Error {
                kind,
                message: r.string("error message")?,
            }
        }
        t => {
            return Err(DecodeError::UnknownTag {
                what: "response",
                tag: t,
            })
        }
    };
    r.finish()?;
    Ok(resp)
}
