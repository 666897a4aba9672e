//! A storage server's side of one connection, without the socket: bytes in, one framed reply
//! per request out, in order. Every runtime's server loop is "read, [`ConnectionFrames::push`],
//! then write each [`ConnectionFrames::next_reply`] as soon as it is made" — so a burst of
//! pipelined reads never piles up replies in memory before the first is written.

pub use crate::wire::encode_response;
use crate::wire::{ErrorKind, Frame, FrameDecoder, FrameKind, Request, Response, WireError};

/// The framing state of one connection.
#[derive(Debug, Default)]
pub struct ConnectionFrames {
    decoder: FrameDecoder,
}

impl ConnectionFrames {
    pub fn new() -> ConnectionFrames {
        ConnectionFrames::default()
    }

    /// Bytes read from the socket.
    pub fn push(&mut self, bytes: &[u8]) {
        self.decoder.push(bytes);
    }

    /// Answer the next complete request with `answer` (the server's `handle_request`, under
    /// whatever lock the runtime keeps): the framed reply to write, `None` if no request is
    /// complete (read more), or why the connection must close (the peer broke the protocol:
    /// a response frame, or framing lost). A malformed request is answered with `BadRequest`
    /// without reaching `answer`.
    pub fn next_reply(
        &mut self,
        answer: impl FnOnce(Request) -> Response,
    ) -> Result<Option<Vec<u8>>, String> {
        Ok(self.next_request()?.map(|(id, request)| {
            let response = match request {
                Ok(request) => answer(request),
                Err(malformed) => malformed,
            };
            encode_response(id, &response)
        }))
    }

    /// The next complete request and its frame id, for a runtime that answers it in steps
    /// (an async server that awaits between handling and replying): `Ok(request)` to handle,
    /// or `Err(answer)` for a malformed one, already answered with `BadRequest`. `None` and the
    /// errors as [`ConnectionFrames::next_reply`]. Frame the reply with [`encode_response`].
    pub fn next_request(&mut self) -> Result<Option<(u64, Incoming)>, String> {
        match self.decoder.pop() {
            Ok(None) => Ok(None),
            Ok(Some(Frame::Request { id, request })) => Ok(Some((id, Ok(request)))),
            Ok(Some(Frame::Response { id, .. })) => {
                Err(format!("the client sent a response frame (id {id})"))
            }
            Err(WireError::Malformed {
                id,
                kind: FrameKind::Request,
                error,
            }) => Ok(Some((
                id,
                Err(Response::Error {
                    kind: ErrorKind::BadRequest,
                    message: format!("malformed request: {error}"),
                }),
            ))),
            Err(e) => Err(format!("framing lost: {e}")),
        }
    }
}

/// A request to handle, or the answer already decided for a malformed one.
pub type Incoming = Result<Request, Response>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{decode_frame, encode_request};

    #[test]
    fn each_pipelined_request_gets_its_own_reply_in_order() {
        let mut c = ConnectionFrames::new();
        let mut bytes = encode_request(7, &Request::GetVersion);
        bytes.extend(encode_request(8, &Request::GetVersion));
        c.push(&bytes[..5]);
        assert_eq!(c.next_reply(|_| unreachable!()), Ok(None));
        c.push(&bytes[5..]);
        for want in [7, 8] {
            let out = c
                .next_reply(|_| Response::Done)
                .expect("ok")
                .expect("a reply");
            assert_eq!(decode_frame(&out).expect("frame").id(), want);
        }
        assert_eq!(c.next_reply(|_| unreachable!()), Ok(None));
    }

    #[test]
    fn a_response_frame_from_a_client_closes_the_connection() {
        let mut c = ConnectionFrames::new();
        c.push(&encode_response(1, &Response::Done));
        assert!(c.next_reply(|_| Response::Done).is_err());
    }
}
