//! The lafs storage protocol: typed messages between a client and a storage server, and their
//! binary framing.
//!
//! This protocol is lafs's own (not Tahoe's Foolscap or HTTP API); only what servers store matches
//! Tahoe. It is shaped for round trips:
//!
//! - **One-segment upload = one request per server.** [`Request::ImmutableWrite`] allocates the
//!   shares, writes all of their bytes and closes them in a single message, answered by a single
//!   [`Response::ImmutableWrite`].
//! - **Bigger uploads stream.** The first message allocates (`ShareWrite::allocate`) and writes the
//!   first part; later `ImmutableWrite`s continue the same shares without waiting for each reply
//!   (the client bounds its window of unanswered requests); the last write of each share sets
//!   `close`. Request ids let replies be matched while requests are pipelined.
//! - **One-segment download = one request per server.** [`Request::ImmutableRead`] reads the same
//!   ranges from up to `max_shares` shares and returns each share's length and the list of every
//!   share held, so share discovery, layout discovery and data arrive in one reply.
//!
//! # Server rules (implemented by [`crate::server::StorageServer`])
//!
//! `ImmutableWrite` is judged share by share; the reply holds one outcome per distinct share
//! number, in the order first seen, plus every committed share the server holds for the index:
//! - `total_shares` must be 1..=256 (else the whole request gets `Error(BadRequest)`) and each
//!   share number below it (else `Refused(BadShareNumber)`).
//! - A write with `allocate` to a share the server holds committed is ignored: `AlreadyHave`, and
//!   the lease is renewed on every committed share of the index (as Tahoe's `allocate_buckets`). A
//!   committed share is never overwritten. Without `allocate` it is also `AlreadyHave`, so
//!   pipelined writes after an `AlreadyHave` are harmless.
//! - A share that another connection is uploading: `Refused(InProgressElsewhere)`.
//! - Allocating checks `allocated_size` against the maximum share size (`TooLarge`) and the free
//!   space (`NoSpace`); the allocation counts against space until commit. A lease with the
//!   request's secrets is created with the share (expiry `now` + 31 days).
//! - A write without `allocate` to a share this connection is not uploading: `NotAllocated`.
//!   Continuing writes must present the allocation's renew secret (`WrongLeaseSecret`).
//! - Writes must lie inside the allocation (`OutOfBounds`). The uploading connection may rewrite
//!   its own bytes until close; unwritten gaps read as zeros.
//! - `close` commits the share; its length is the end of the highest byte written, which may be
//!   shorter than the allocation (the rest of the allocation is released).
//! - Any refusal of a share this connection was uploading aborts that upload and frees its space;
//!   later writes to it get `NotAllocated`.
//! - A disconnect aborts the connection's unfinished uploads, as does an upload idle for 30 min.
//!
//! `ImmutableRead` returns committed shares only (ascending, filtered by `shnums` if non-empty,
//! at most `max_shares`), each range cut at the end of the share (empty past it); a storage index
//! the server does not hold gives no shares, not an error. A reply that would exceed the server's
//! response limit is `Error(ResponseTooLarge)`.
//!
//! `AddLease` renews the lease with the same renew secret, or adds one, on every committed share;
//! an index without committed shares is `Error(NotFound)`. `ImmutableAbort` drops this
//! connection's unfinished uploads of the listed shares (all of its uploads of the index if the
//! list is empty) and never touches committed shares or other connections' uploads.
//! `AdviseCorrupt` is recorded for the operator and answered `Done`.
//!
//! Mutable shares (slots, Tahoe's `slot_readv` and `slot_testv_and_readv_and_writev`) are kept
//! apart from immutable ones: immutable requests never see them and mutable requests never see
//! immutable shares; a storage index holds shares of one kind only (a mutable write to an index
//! with immutable shares is `Error(BadRequest)`, an immutable allocation on a mutable index is
//! refused with `StoreFailure`).
//!
//! `MutableRead` returns every mutable share held (or those in `shnums`), ascending, each with
//! its current data length and the ranges cut at its end; an unknown index gives no shares, not
//! an error. The response limit applies as for `ImmutableRead`.
//!
//! `MutableWrite` is judged in Tahoe's order, atomically with respect to other requests:
//! - Share numbers must be below 256 and appear once (else `Error(BadRequest)`).
//! - If the index holds mutable shares, the write enabler must equal the one recorded in *every*
//!   one of them (compared in constant time), else `Error(BadWriteEnabler)` naming the base32
//!   node id that recorded it; nothing is read or changed.
//! - Every share's test vectors are evaluated (`length` bytes at `offset`, cut at the end; a
//!   missing share reads as empty; equality only).
//! - `read_ranges` are read from every existing share, before any write; a reply that would
//!   exceed the response limit is `Error(ResponseTooLarge)` before anything changes.
//! - Only if every test held are the writes applied, share by share: a missing share is created
//!   recording the request's write enabler and the server's node id
//!   ([`ServerConfig::node_id`](crate::server::ServerConfig::node_id)); data vectors apply in
//!   order, a gap before a write past the end reads as zeros; then `new_length` truncates (a
//!   longer one is ignored) and `Some(0)` deletes the share (never creating it). A write that
//!   would exceed the maximum share size or the free space is `Error(NoSpace)` and changes
//!   nothing.
//! - After applied writes, the request's lease is added or renewed on every mutable share of the
//!   index. The reply is `MutableWrite { applied, reads }`; a store failure is
//!   `Error(StoreFailure)`.
//!
//! `AddLease` and `AdviseCorrupt` apply to mutable shares as to committed immutable ones.
//!
//! # Encoding
//!
//! See [`frame`] for the 14-byte frame header. Payloads start with a one-byte message tag;
//! integers are big-endian, byte strings and lists carry a `u32` count, booleans are one byte (0 or
//! 1), storage indexes and secrets are raw fixed-size arrays. Decoding rejects anything malformed
//! with a [`WireError`], never panics, and never allocates more than the bytes it was given.

pub mod frame;
pub mod message;
pub mod payload;

pub use frame::{
    decode_frame, encode_request, encode_response, Frame, FrameDecoder, FrameKind, WireError,
    DEFAULT_MAX_FRAME_LEN, HEADER_LEN, PROTOCOL_VERSION,
};
pub use message::{
    DataVector, ErrorKind, LeaseSecrets, MutableShareWrite, ReadRange, Refusal, Request, Response,
    ShareRead, ShareWrite, ShareWriteOutcome, StorageIndex, TestVector,
};
pub use payload::DecodeError;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..max)
    }

    fn arb_lease() -> impl Strategy<Value = LeaseSecrets> {
        (any::<[u8; 32]>(), any::<[u8; 32]>())
            .prop_map(|(renew, cancel)| LeaseSecrets { renew, cancel })
    }

    fn arb_range() -> impl Strategy<Value = ReadRange> {
        (any::<u64>(), any::<u64>()).prop_map(|(offset, length)| ReadRange { offset, length })
    }

    fn arb_mutable_share_write() -> impl Strategy<Value = MutableShareWrite> {
        let test =
            (any::<u64>(), any::<u64>(), arb_bytes(16)).prop_map(|(offset, length, specimen)| {
                TestVector {
                    offset,
                    length,
                    specimen,
                }
            });
        let write =
            (any::<u64>(), arb_bytes(32)).prop_map(|(offset, data)| DataVector { offset, data });
        (
            any::<u16>(),
            proptest::collection::vec(test, 0..3),
            proptest::collection::vec(write, 0..3),
            proptest::option::of(any::<u64>()),
        )
            .prop_map(|(shnum, tests, writes, new_length)| MutableShareWrite {
                shnum,
                tests,
                writes,
                new_length,
            })
    }

    fn arb_request() -> impl Strategy<Value = Request> {
        let write = (
            any::<u16>(),
            any::<bool>(),
            any::<u64>(),
            arb_bytes(64),
            any::<bool>(),
        )
            .prop_map(|(shnum, allocate, offset, data, close)| ShareWrite {
                shnum,
                allocate,
                offset,
                data,
                close,
            });
        let range =
            (any::<u64>(), any::<u64>()).prop_map(|(offset, length)| ReadRange { offset, length });
        let shnums = proptest::collection::vec(any::<u16>(), 0..8);
        prop_oneof![
            Just(Request::GetVersion),
            (
                any::<[u8; 16]>(),
                arb_lease(),
                any::<u64>(),
                any::<u16>(),
                proptest::collection::vec(write, 0..5)
            )
                .prop_map(
                    |(storage_index, lease, allocated_size, total_shares, writes)| {
                        Request::ImmutableWrite {
                            storage_index,
                            lease,
                            allocated_size,
                            total_shares,
                            writes,
                        }
                    }
                ),
            (any::<[u8; 16]>(), shnums.clone()).prop_map(|(storage_index, shnums)| {
                Request::ImmutableAbort {
                    storage_index,
                    shnums,
                }
            }),
            (
                any::<[u8; 16]>(),
                shnums,
                any::<u16>(),
                proptest::collection::vec(range, 0..5)
            )
                .prop_map(|(storage_index, shnums, max_shares, ranges)| {
                    Request::ImmutableRead {
                        storage_index,
                        shnums,
                        max_shares,
                        ranges,
                    }
                }),
            (any::<[u8; 16]>(), arb_lease()).prop_map(|(storage_index, lease)| Request::AddLease {
                storage_index,
                lease
            }),
            (any::<[u8; 16]>(), any::<u16>(), ".{0,20}").prop_map(
                |(storage_index, shnum, reason)| {
                    Request::AdviseCorrupt {
                        storage_index,
                        shnum,
                        reason,
                    }
                }
            ),
            (
                any::<[u8; 16]>(),
                proptest::collection::vec(any::<u16>(), 0..8),
                proptest::collection::vec(arb_range(), 0..5)
            )
                .prop_map(|(storage_index, shnums, ranges)| Request::MutableRead {
                    storage_index,
                    shnums,
                    ranges
                }),
            (
                any::<[u8; 16]>(),
                any::<[u8; 32]>(),
                arb_lease(),
                proptest::collection::vec(arb_mutable_share_write(), 0..4),
                proptest::collection::vec(arb_range(), 0..3)
            )
                .prop_map(
                    |(storage_index, write_enabler, lease, shares, read_ranges)| {
                        Request::MutableWrite {
                            storage_index,
                            write_enabler,
                            lease,
                            shares,
                            read_ranges,
                        }
                    }
                ),
        ]
    }

    fn arb_refusal() -> impl Strategy<Value = Refusal> {
        prop_oneof![
            any::<u64>().prop_map(|available| Refusal::NoSpace { available }),
            any::<u64>().prop_map(|max_share_size| Refusal::TooLarge { max_share_size }),
            Just(Refusal::InProgressElsewhere),
            Just(Refusal::BadShareNumber),
            any::<u64>().prop_map(|allocated_size| Refusal::OutOfBounds { allocated_size }),
            Just(Refusal::WrongLeaseSecret),
            Just(Refusal::NotAllocated),
            ".{0,20}".prop_map(Refusal::StoreFailure),
        ]
    }

    fn arb_outcome() -> impl Strategy<Value = ShareWriteOutcome> {
        prop_oneof![
            any::<bool>().prop_map(|committed| ShareWriteOutcome::Written { committed }),
            Just(ShareWriteOutcome::AlreadyHave),
            arb_refusal().prop_map(ShareWriteOutcome::Refused),
        ]
    }

    fn arb_share_read() -> impl Strategy<Value = ShareRead> {
        (
            any::<u16>(),
            any::<u64>(),
            proptest::collection::vec(arb_bytes(32), 0..4),
        )
            .prop_map(|(shnum, share_len, chunks)| ShareRead {
                shnum,
                share_len,
                chunks,
            })
    }

    fn arb_response() -> impl Strategy<Value = Response> {
        let held = proptest::collection::vec(any::<u16>(), 0..8);

        let kind = prop_oneof![
            Just(ErrorKind::BadRequest),
            Just(ErrorKind::NotFound),
            Just(ErrorKind::ResponseTooLarge),
            Just(ErrorKind::StoreFailure),
            Just(ErrorKind::BadWriteEnabler),
            Just(ErrorKind::NoSpace),
        ];
        prop_oneof![
            (
                any::<u32>(),
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                any::<u64>()
            )
                .prop_map(
                    |(protocol, max_share_size, available_space, used_space, shares_held)| {
                        Response::Version {
                            protocol,
                            max_share_size,
                            available_space,
                            used_space,
                            shares_held,
                        }
                    }
                ),
            (
                proptest::collection::vec((any::<u16>(), arb_outcome()), 0..6),
                held.clone()
            )
                .prop_map(|(results, held)| Response::ImmutableWrite { results, held }),
            (proptest::collection::vec(arb_share_read(), 0..4), held)
                .prop_map(|(shares, held)| Response::ImmutableRead { shares, held }),
            proptest::collection::vec(arb_share_read(), 0..4)
                .prop_map(|shares| Response::MutableRead { shares }),
            (
                any::<bool>(),
                proptest::collection::vec(arb_share_read(), 0..4)
            )
                .prop_map(|(applied, reads)| Response::MutableWrite { applied, reads }),
            Just(Response::Done),
            (kind, ".{0,20}").prop_map(|(kind, message)| Response::Error { kind, message }),
        ]
    }

    fn arb_frame() -> impl Strategy<Value = Frame> {
        prop_oneof![
            (any::<u64>(), arb_request()).prop_map(|(id, request)| Frame::Request { id, request }),
            (any::<u64>(), arb_response())
                .prop_map(|(id, response)| Frame::Response { id, response }),
        ]
    }

    fn encode(frame: &Frame) -> Vec<u8> {
        match frame {
            Frame::Request { id, request } => encode_request(*id, request),
            Frame::Response { id, response } => encode_response(*id, response),
        }
    }

    fn drain(dec: &mut FrameDecoder) -> Vec<Result<Frame, WireError>> {
        let mut out = Vec::new();
        loop {
            match dec.pop() {
                Ok(Some(f)) => out.push(Ok(f)),
                Ok(None) => return out,
                Err(e) => {
                    let fatal = e.is_fatal();
                    out.push(Err(e));
                    if fatal {
                        return out;
                    }
                }
            }
        }
    }

    proptest! {
        #[test]
        fn every_frame_round_trips(frame in arb_frame()) {
            let bytes = encode(&frame);
            prop_assert_eq!(decode_frame(&bytes), Ok(frame.clone()));
            let mut dec = FrameDecoder::new();
            dec.push(&bytes);
            prop_assert_eq!(dec.pop(), Ok(Some(frame)));
            prop_assert_eq!(dec.pop(), Ok(None));
            prop_assert_eq!(dec.buffered(), 0);
        }

        #[test]
        fn frames_split_anywhere_decode_the_same(
            frames in proptest::collection::vec(arb_frame(), 1..4),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let stream: Vec<u8> = frames.iter().flat_map(encode).collect();
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
            cuts.sort_unstable();
            let mut dec = FrameDecoder::new();
            let mut got = Vec::new();
            let mut start = 0;
            for cut in cuts.into_iter().chain([stream.len()]) {
                dec.push(&stream[start..cut]);
                start = cut;
                got.extend(drain(&mut dec));
            }
            prop_assert_eq!(got, frames.into_iter().map(Ok).collect::<Vec<_>>());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in arb_bytes(512), chunk in 1usize..64) {
            let mut dec = FrameDecoder::with_max_frame_len(1 << 20);
            for piece in bytes.chunks(chunk) {
                dec.push(piece);
                drain(&mut dec);
            }
            let _ = decode_frame(&bytes);
        }

        #[test]
        fn valid_header_with_arbitrary_payload_never_panics(kind in 0u8..2, payload in arb_bytes(256)) {
            let mut bytes = vec![PROTOCOL_VERSION, kind];
            bytes.extend_from_slice(&7u64.to_be_bytes());
            bytes.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            bytes.extend_from_slice(&payload);
            match decode_frame(&bytes) {
                Ok(f) => prop_assert_eq!(encode(&f), bytes),
                Err(e) => {
                    let skipped = matches!(e, WireError::Malformed { id: 7, .. });
                    prop_assert!(skipped, "unexpected error {:?}", e);
                }
            }
        }

        #[test]
        fn corrupted_frames_never_panic(frame in arb_frame(), pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let mut bytes = encode(&frame);
            let i = pos.index(bytes.len());
            bytes[i] = byte;
            let mut dec = FrameDecoder::new();
            dec.push(&bytes);
            drain(&mut dec);
            let _ = decode_frame(&bytes);
        }
    }

    #[test]
    fn every_frame_split_at_every_byte_boundary() {
        let frames = [
            Frame::Request {
                id: 1,
                request: Request::ImmutableWrite {
                    storage_index: [3; 16],
                    lease: LeaseSecrets {
                        renew: [1; 32],
                        cancel: [2; 32],
                    },
                    allocated_size: 100,
                    total_shares: 10,
                    writes: vec![ShareWrite {
                        shnum: 4,
                        allocate: true,
                        offset: 0,
                        data: b"hello".to_vec(),
                        close: true,
                    }],
                },
            },
            Frame::Response {
                id: 1,
                response: Response::ImmutableRead {
                    shares: vec![ShareRead {
                        shnum: 4,
                        share_len: 5,
                        chunks: vec![b"he".to_vec(), Vec::new()],
                    }],
                    held: vec![4],
                },
            },
        ];
        let stream: Vec<u8> = frames.iter().flat_map(encode).collect();
        for cut in 0..=stream.len() {
            let mut dec = FrameDecoder::new();
            dec.push(&stream[..cut]);
            let mut got = drain(&mut dec);
            dec.push(&stream[cut..]);
            got.extend(drain(&mut dec));
            assert_eq!(
                got,
                frames.iter().cloned().map(Ok).collect::<Vec<_>>(),
                "cut at {cut}"
            );
        }
        // Byte by byte.
        let mut dec = FrameDecoder::new();
        let mut got = Vec::new();
        for b in &stream {
            dec.push(std::slice::from_ref(b));
            got.extend(drain(&mut dec));
        }
        assert_eq!(got, frames.iter().cloned().map(Ok).collect::<Vec<_>>());
    }

    #[test]
    fn oversized_frame_is_rejected_from_its_header_alone() {
        let mut dec = FrameDecoder::with_max_frame_len(1000);
        let mut header = vec![PROTOCOL_VERSION, 0];
        header.extend_from_slice(&9u64.to_be_bytes());
        header.extend_from_slice(&1001u32.to_be_bytes());
        dec.push(&header[..13]);
        assert_eq!(dec.pop(), Ok(None));
        dec.push(&header[13..]);
        let err = dec.pop().unwrap_err();
        assert_eq!(
            err,
            WireError::FrameTooLarge {
                len: 1001,
                max: 1000
            }
        );
        assert!(err.is_fatal());
        // The stream is dead: later bytes are not buffered and the error repeats.
        dec.push(&[0; 100]);
        assert_eq!(dec.buffered(), 0);
        assert_eq!(dec.pop(), Err(err));
    }

    #[test]
    fn bad_version_and_kind_are_fatal() {
        let mut frame = encode_request(1, &Request::GetVersion);
        frame[0] = PROTOCOL_VERSION + 1;
        let mut dec = FrameDecoder::new();
        dec.push(&frame);
        assert_eq!(dec.pop(), Err(WireError::BadVersion(PROTOCOL_VERSION + 1)));

        let mut frame = encode_request(1, &Request::GetVersion);
        frame[1] = 7;
        assert_eq!(decode_frame(&frame), Err(WireError::BadFrameKind(7)));
    }

    #[test]
    fn malformed_payload_is_skipped_and_the_stream_continues() {
        // A GetVersion with a trailing byte, then a good frame.
        let mut bad = encode_request(5, &Request::GetVersion);
        bad.push(0xff);
        bad[13] = 2;
        let good = encode_request(6, &Request::GetVersion);
        let mut dec = FrameDecoder::new();
        dec.push(&bad);
        dec.push(&good);
        let err = dec.pop().unwrap_err();
        assert_eq!(
            err,
            WireError::Malformed {
                id: 5,
                kind: FrameKind::Request,
                error: DecodeError::TrailingBytes(1)
            }
        );
        assert!(!err.is_fatal());
        assert_eq!(
            dec.pop(),
            Ok(Some(Frame::Request {
                id: 6,
                request: Request::GetVersion
            }))
        );
    }

    #[test]
    fn huge_list_counts_are_rejected_before_allocating() {
        // ImmutableRead whose range count claims 2^32-1 entries in a tiny payload.
        let mut payload = vec![3u8];
        payload.extend_from_slice(&[0; 16]);
        payload.extend_from_slice(&0u32.to_be_bytes());
        payload.extend_from_slice(&1u16.to_be_bytes());
        payload.extend_from_slice(&u32::MAX.to_be_bytes());
        let mut frame = vec![PROTOCOL_VERSION, 0];
        frame.extend_from_slice(&1u64.to_be_bytes());
        frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        frame.extend_from_slice(&payload);
        match decode_frame(&frame) {
            Err(WireError::Malformed {
                error: DecodeError::CountTooLarge { count, .. },
                ..
            }) => assert_eq!(count, u32::MAX),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn byte_string_longer_than_the_payload_is_truncation() {
        // AdviseCorrupt whose reason claims 1000 bytes.
        let mut payload = vec![5u8];
        payload.extend_from_slice(&[0; 16]);
        payload.extend_from_slice(&0u16.to_be_bytes());
        payload.extend_from_slice(&1000u32.to_be_bytes());
        payload.extend_from_slice(b"short");
        let mut frame = vec![PROTOCOL_VERSION, 0];
        frame.extend_from_slice(&1u64.to_be_bytes());
        frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        frame.extend_from_slice(&payload);
        assert!(matches!(
            decode_frame(&frame),
            Err(WireError::Malformed {
                error: DecodeError::Truncated {
                    needed: 1000,
                    remaining: 5,
                    ..
                },
                ..
            })
        ));
    }

    #[test]
    fn header_layout_is_as_documented() {
        let f = encode_response(0x0102030405060708, &Response::Done);
        assert_eq!(f, [2, 1, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 1, 3]);
    }
}
