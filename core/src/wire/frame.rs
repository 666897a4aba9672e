//! Framing: how messages are cut out of a byte stream.
//!
//! Every frame is a 14-byte header followed by the payload:
//!
//! | bytes | field |
//! |---|---|
//! | 1 | protocol version, [`PROTOCOL_VERSION`] |
//! | 1 | frame kind: 0 = request, 1 = response |
//! | 8 | request id (big-endian), chosen by the client and echoed in the response |
//! | 4 | payload length (big-endian) |
//!
//! A header that is wrong (version, kind, or a length above the decoder's limit) loses the stream's
//! framing, so the decoder stops for good; a payload that is malformed is skipped and reported
//! with its request id, and the stream goes on.

use super::message::{Request, Response};
use super::payload::{self, DecodeError};

/// Version byte that starts every frame (2: the version answer carries the shares held).
pub const PROTOCOL_VERSION: u8 = 2;
/// Size of the frame header in bytes.
pub const HEADER_LEN: usize = 14;
/// Default largest payload a [`FrameDecoder`] accepts: 64 MiB.
pub const DEFAULT_MAX_FRAME_LEN: u32 = 64 * 1024 * 1024;

const KIND_REQUEST: u8 = 0;
const KIND_RESPONSE: u8 = 1;

/// Whether a frame carries a request or a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    Request,
    Response,
}

/// One decoded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    Request { id: u64, request: Request },
    Response { id: u64, response: Response },
}

impl Frame {
    /// The request id carried in the header.
    pub fn id(&self) -> u64 {
        match self {
            Frame::Request { id, .. } | Frame::Response { id, .. } => *id,
        }
    }
}

/// Why bytes from the peer could not be turned into a frame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("frame has protocol version {0}, this end speaks {PROTOCOL_VERSION}")]
    BadVersion(u8),
    #[error("unknown frame kind {0}")]
    BadFrameKind(u8),
    #[error("frame payload of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge { len: u32, max: u32 },
    /// The payload of one frame was malformed; the frame was skipped and the stream can go on.
    #[error("malformed {kind:?} payload in frame {id}: {error}")]
    Malformed {
        id: u64,
        kind: FrameKind,
        error: DecodeError,
    },
    /// A whole-buffer decode ([`decode_frame`]) had bytes left over or missing.
    #[error("buffer holds {actual} bytes but the frame is {expected} bytes long")]
    LengthMismatch { expected: u64, actual: usize },
}

impl WireError {
    /// True if the stream's framing is lost and the connection should be closed.
    pub fn is_fatal(&self) -> bool {
        !matches!(self, WireError::Malformed { .. })
    }
}

fn encode_frame(kind: u8, id: u64, write_payload: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.push(PROTOCOL_VERSION);
    out.push(kind);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    write_payload(&mut out);
    let len = u32::try_from(out.len() - HEADER_LEN)
        .expect("wire: a message larger than 4 GiB cannot be framed");
    out[10..HEADER_LEN].copy_from_slice(&len.to_be_bytes());
    out
}

/// Encodes `req` as one frame with request id `id`.
///
/// # Panics
/// If the payload exceeds 4 GiB (the length field's range); keep messages under the peer's
/// frame limit ([`DEFAULT_MAX_FRAME_LEN`]) anyway.
pub fn encode_request(id: u64, req: &Request) -> Vec<u8> {
    encode_frame(KIND_REQUEST, id, |out| payload::write_request(out, req))
}

/// Encodes `resp` as one frame answering request `id`.
///
/// # Panics
/// If the payload exceeds 4 GiB, as for [`encode_request`].
pub fn encode_response(id: u64, resp: &Response) -> Vec<u8> {
    encode_frame(KIND_RESPONSE, id, |out| payload::write_response(out, resp))
}

struct Header {
    kind: FrameKind,
    id: u64,
    len: u32,
}

fn parse_header(h: &[u8; HEADER_LEN], max: u32) -> Result<Header, WireError> {
    if h[0] != PROTOCOL_VERSION {
        return Err(WireError::BadVersion(h[0]));
    }
    let kind = match h[1] {
        KIND_REQUEST => FrameKind::Request,
        KIND_RESPONSE => FrameKind::Response,
        k => return Err(WireError::BadFrameKind(k)),
    };
    let mut id = [0u8; 8];
    id.copy_from_slice(&h[2..10]);
    let mut len = [0u8; 4];
    len.copy_from_slice(&h[10..14]);
    let len = u32::from_be_bytes(len);
    if len > max {
        return Err(WireError::FrameTooLarge { len, max });
    }
    Ok(Header {
        kind,
        id: u64::from_be_bytes(id),
        len,
    })
}

fn decode_payload(h: &Header, payload: &[u8]) -> Result<Frame, WireError> {
    let malformed = |error| WireError::Malformed {
        id: h.id,
        kind: h.kind,
        error,
    };
    match h.kind {
        FrameKind::Request => Ok(Frame::Request {
            id: h.id,
            request: payload::read_request(payload).map_err(malformed)?,
        }),
        FrameKind::Response => Ok(Frame::Response {
            id: h.id,
            response: payload::read_response(payload).map_err(malformed)?,
        }),
    }
}

/// Decodes a buffer holding exactly one frame (no limit beyond the 4 GiB length field).
pub fn decode_frame(bytes: &[u8]) -> Result<Frame, WireError> {
    let Some(header) = bytes.first_chunk::<HEADER_LEN>() else {
        return Err(WireError::LengthMismatch {
            expected: HEADER_LEN as u64,
            actual: bytes.len(),
        });
    };
    let h = parse_header(header, u32::MAX)?;
    let expected = HEADER_LEN as u64 + u64::from(h.len);
    if bytes.len() as u64 != expected {
        return Err(WireError::LengthMismatch {
            expected,
            actual: bytes.len(),
        });
    }
    decode_payload(&h, &bytes[HEADER_LEN..])
}

/// Cuts frames out of a byte stream that arrives in arbitrary pieces.
///
/// Push bytes as the socket delivers them, then call [`pop`](Self::pop) until it returns
/// `Ok(None)`. The decoder never buffers more of a frame than its header announced, and rejects a
/// frame longer than the limit from its header alone, before any of the payload arrives.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Bytes of `buf` already returned as frames; dropped on the next push, so popping many
    /// small frames costs no copying.
    consumed: usize,
    max_frame_len: u32,
    failed: Option<WireError>,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameDecoder {
    /// A decoder with the default 64 MiB payload limit.
    pub fn new() -> Self {
        Self::with_max_frame_len(DEFAULT_MAX_FRAME_LEN)
    }

    /// A decoder that rejects payloads longer than `max_frame_len` bytes.
    pub fn with_max_frame_len(max_frame_len: u32) -> Self {
        FrameDecoder {
            buf: Vec::new(),
            consumed: 0,
            max_frame_len,
            failed: None,
        }
    }

    /// Appends bytes received from the peer.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_none() {
            if self.consumed > 0 {
                self.buf.drain(..self.consumed);
                self.consumed = 0;
            }
            self.buf.extend_from_slice(bytes);
        }
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.consumed
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed, or an error.
    ///
    /// After a fatal error ([`WireError::is_fatal`]) every later call returns the same error.
    pub fn pop(&mut self) -> Result<Option<Frame>, WireError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let pending = &self.buf[self.consumed..];
        let Some(header) = pending.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let h = match parse_header(header, self.max_frame_len) {
            Ok(h) => h,
            Err(e) => {
                self.buf = Vec::new();
                self.consumed = 0;
                self.failed = Some(e.clone());
                return Err(e);
            }
        };
        let end = HEADER_LEN + h.len as usize;
        if pending.len() < end {
            return Ok(None);
        }
        let frame = decode_payload(&h, &pending[HEADER_LEN..end]);
        self.consumed += end;
        frame.map(Some)
    }
}
