//! A client connection's reading side without the socket: bytes in, each answer handed to the
//! operation waiting for it (found in the connection's [`Routes`](super::Routes)), and a loss
//! notice to every operation still waiting once the connection ends. Every runtime's reader is
//! "read, [`Answers::route`] until it says close; then [`Answers::lost`]".

use crate::op::RequestId;
use crate::placement::ServerId;
use crate::wire::{Frame, FrameDecoder};

use super::routes::OpId;
use super::task::Input;

/// The framing state of one client connection.
#[derive(Debug)]
pub struct Answers {
    server: ServerId,
    decoder: FrameDecoder,
}

impl Answers {
    pub fn new(server: ServerId) -> Answers {
        Answers {
            server,
            decoder: FrameDecoder::new(),
        }
    }

    /// Bytes read from the socket: hand over every answer they complete. `complete` takes a
    /// wire id's route out of the connection's routes (under the runtime's lock); `deliver`
    /// passes an input to its operation. `Err` says why the connection must close: the server
    /// sent a request frame, or a frame that cannot be read (whose operation would otherwise
    /// wait for it forever).
    pub fn route<T>(
        &mut self,
        bytes: &[u8],
        mut complete: impl FnMut(u64) -> Option<(OpId, RequestId, T)>,
        mut deliver: impl FnMut(T, Input),
    ) -> Result<(), String> {
        self.decoder.push(bytes);
        loop {
            let before = self.decoder.buffered();
            match self.decoder.pop() {
                Ok(None) => return Ok(()),
                Ok(Some(Frame::Response { id, response })) => {
                    // No route: its operation has ended (or the server invented the id).
                    if let Some((_, op_id, sink)) = complete(id) {
                        let input = Input::Response {
                            server: self.server,
                            id: op_id,
                            response,
                            wire_bytes: before - self.decoder.buffered(),
                        };
                        deliver(sink, input);
                    }
                }
                Ok(Some(Frame::Request { .. })) => {
                    return Err("the server sent a request frame".to_string())
                }
                Err(e) => return Err(format!("bad frame from the server: {e}")),
            }
        }
    }

    /// The connection has ended with `orphans` in flight (from `Routes::close`): one loss
    /// notice per operation, which loses every request to this server at once.
    pub fn lost<T>(&self, orphans: Vec<(OpId, T)>, mut deliver: impl FnMut(T, Input)) {
        for (_, sink) in orphans {
            deliver(
                sink,
                Input::Lost {
                    server: self.server,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Routes;
    use crate::wire::{encode_request, encode_response, Request, Response};

    #[test]
    fn answers_reach_their_operation_with_its_own_id_and_frame_size() {
        let server = ServerId([3; 32]);
        let mut routes = Routes::new();
        let wire = routes.register(1, 42, 'a').expect("open");
        let frame = encode_response(wire, &Response::Done);
        let mut answers = Answers::new(server);
        let mut got = Vec::new();
        let mut deliver = |sink, input| got.push((sink, input));
        answers
            .route(&frame[..3], |w| routes.complete(w), &mut deliver)
            .expect("partial frame");
        answers
            .route(&frame[3..], |w| routes.complete(w), &mut deliver)
            .expect("rest");
        let late = encode_response(wire, &Response::Done);
        answers
            .route(&late, |w| routes.complete(w), &mut deliver)
            .expect("a late answer is dropped");
        assert_eq!(got.len(), 1);
        let ('a', Input::Response { id, wire_bytes, .. }) = &got[0] else {
            panic!("{got:?}");
        };
        assert_eq!((*id, *wire_bytes), (42, frame.len()));

        let bad = encode_request(0, &Request::GetVersion);
        assert!(answers
            .route(&bad, |_| None::<(OpId, RequestId, char)>, |_, _| {})
            .is_err());
        routes.register(2, 0, 'b').expect("open");
        let mut told = Vec::new();
        answers.lost(routes.close(), |sink, input| told.push((sink, input)));
        assert!(matches!(told[..], [('b', Input::Lost { server: s })] if s == server));
    }
}
