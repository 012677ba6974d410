//! [`FromSession::Frame`](crate::sessions::FromSession::Frame) written and read around the
//! frame's bytes instead of through them.
//!
//! A frame crosses `sessions.sock` on its way from the session's encoder to the appliance's QUIC
//! stream, and the daemon only relays it. Serializing the message copies the frame into it, and
//! decoding it copies it out again; with these the session writes the envelope's head, the frame
//! and the envelope's tail as one vectored write, and the daemon takes the frame as a slice of
//! the message it read. The bytes on the socket are exactly those of
//! `framing::encode(&FromSession::Frame { .. })`, so both ends also interoperate with the plain
//! encoding (a daemon and the sessions it finds again after a restart may differ in version).

use serde::Deserialize;

use crate::{
    framing::{FramingError, HEADER_LEN},
    sessions::ApplianceId,
};

/// Postcard's variant index of `FromSession::Frame` (the first variant: varint 0, one byte).
const FRAME_VARIANT: u8 = 0;

/// The bytes before and after a frame's bytes in its framed `FromSession::Frame`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameEnvelope {
    /// Length prefix, variant, appliance, sequence number and the frame's length.
    pub head: Vec<u8>,
    /// The encode time.
    pub tail: Vec<u8>,
}

/// The envelope of a `frame_len`-byte frame: `head`, the frame, `tail` make the framed message.
pub fn frame_envelope(
    appliance: ApplianceId,
    seq: u64,
    frame_len: usize,
    encode_us: u32,
) -> Result<FrameEnvelope, FramingError> {
    let malformed = |e: postcard::Error| FramingError::Malformed(e.to_string());
    let mut head = vec![0u8; HEADER_LEN];
    head.push(FRAME_VARIANT);
    // Postcard writes integers and byte-string lengths as the same LEB128 varints.
    let head = postcard::to_extend(&appliance, head).map_err(malformed)?;
    let head = postcard::to_extend(&seq, head).map_err(malformed)?;
    let mut head = postcard::to_extend(&(frame_len as u64), head).map_err(malformed)?;
    let tail = postcard::to_stdvec(&encode_us).map_err(malformed)?;
    let body_len = head.len() - HEADER_LEN + frame_len + tail.len();
    let len = u32::try_from(body_len).map_err(|_| FramingError::TooLong {
        len: body_len as u64,
        max: u32::MAX,
    })?;
    head[..HEADER_LEN].copy_from_slice(&len.to_le_bytes());
    Ok(FrameEnvelope { head, tail })
}

/// A `FromSession::Frame` read in place: `bytes` borrows the message body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameView<'a> {
    pub appliance: ApplianceId,
    pub seq: u64,
    pub bytes: &'a [u8],
    pub encode_us: u32,
}

/// The fields of `FromSession::Frame`, in its order, with the frame borrowed.
#[derive(Deserialize)]
struct FrameFields<'a> {
    appliance: ApplianceId,
    seq: u64,
    #[serde(borrow, with = "serde_bytes")]
    bytes: &'a [u8],
    encode_us: u32,
}

/// `Some` when `body` (a message body without its length prefix) is a `FromSession::Frame`:
/// its fields, or why they do not decode. `None` for every other message, which the caller
/// decodes as a [`FromSession`](crate::sessions::FromSession).
pub fn peek_frame(body: &[u8]) -> Option<Result<FrameView<'_>, FramingError>> {
    let (&variant, fields) = body.split_first()?;
    if variant != FRAME_VARIANT {
        return None;
    }
    let decoded = postcard::take_from_bytes::<FrameFields>(fields)
        .map_err(|e| FramingError::Malformed(e.to_string()))
        .and_then(|(f, rest)| {
            if rest.is_empty() {
                Ok(FrameView {
                    appliance: f.appliance,
                    seq: f.seq,
                    bytes: f.bytes,
                    encode_us: f.encode_us,
                })
            } else {
                Err(FramingError::Malformed(format!(
                    "{} trailing bytes after message",
                    rest.len()
                )))
            }
        });
    Some(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{framing, sessions::FromSession};

    fn framed(appliance: u64, seq: u64, bytes: &[u8], encode_us: u32) -> Vec<u8> {
        framing::encode(&FromSession::Frame {
            appliance,
            seq,
            bytes: bytes.to_vec(),
            encode_us,
        })
        .expect("encode")
    }

    #[test]
    fn the_envelope_around_the_frame_is_the_framed_message() {
        let cases: [(u64, u64, usize, u32); 5] = [
            (0, 0, 0, 0),
            (1, 1, 1, 1),
            (127, 128, 300, 16_383),
            (u64::MAX, u64::MAX >> 1, 70_000, u32::MAX),
            (7, 123_456_789, 1 << 20, 250),
        ];
        for (appliance, seq, len, encode_us) in cases {
            let frame: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let env = frame_envelope(appliance, seq, len, encode_us).expect("envelope");
            let mut joined = env.head.clone();
            joined.extend_from_slice(&frame);
            joined.extend_from_slice(&env.tail);
            assert_eq!(
                joined,
                framed(appliance, seq, &frame, encode_us),
                "{len} bytes"
            );

            let view = peek_frame(&joined[HEADER_LEN..])
                .expect("a frame")
                .expect("decodes");
            assert_eq!(
                view,
                FrameView {
                    appliance,
                    seq,
                    bytes: &frame,
                    encode_us
                }
            );
        }
    }

    #[test]
    fn other_messages_are_left_to_the_full_decoder() {
        for msg in [
            FromSession::Cursor {
                appliance: 1,
                bytes: vec![1, 2, 3],
            },
            FromSession::Audio {
                appliance: 1,
                bytes: vec![4],
            },
            FromSession::Microphone {
                appliance: 2,
                open: true,
            },
        ] {
            let bytes = framing::encode(&msg).expect("encode");
            assert!(peek_frame(&bytes[HEADER_LEN..]).is_none(), "{msg:?}");
        }
        assert!(peek_frame(&[]).is_none());
    }

    #[test]
    fn a_cut_or_padded_frame_is_an_error_not_a_panic() {
        let bytes = framed(3, 9, &[5; 40], 77);
        let body = &bytes[HEADER_LEN..];
        for cut in 1..body.len() {
            assert!(
                matches!(peek_frame(&body[..cut]), Some(Err(_))),
                "cut at {cut}"
            );
        }
        let mut padded = body.to_vec();
        padded.push(0);
        assert!(matches!(peek_frame(&padded), Some(Err(_))));
    }
}
