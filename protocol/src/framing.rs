//! Length-prefixed postcard framing: `u32` little-endian body length, then the postcard body.
//!
//! The reader is push-based (feed it whatever bytes the stream produced, pop whole messages), so
//! it works the same over a QUIC stream, a test vector or a fuzzer's input.

use serde::{de::DeserializeOwned, Serialize};

/// Size of the length prefix in front of every message.
pub const HEADER_LEN: usize = 4;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FramingError {
    #[error("message of {len} bytes exceeds the negotiated maximum of {max} bytes")]
    TooLong { len: u64, max: u32 },
    #[error("malformed message body: {0}")]
    Malformed(String),
    #[error("stream ended in the middle of a message ({buffered} bytes left over)")]
    Truncated { buffered: usize },
}

/// Serializes `msg` with its length prefix.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, FramingError> {
    let mut out = vec![0u8; HEADER_LEN];
    let out = postcard::to_extend(msg, std::mem::take(&mut out))
        .map_err(|e| FramingError::Malformed(e.to_string()))?;
    let mut out = out;
    let body_len = out.len() - HEADER_LEN;
    let len = u32::try_from(body_len).map_err(|_| FramingError::TooLong {
        len: body_len as u64,
        max: u32::MAX,
    })?;
    out[..HEADER_LEN].copy_from_slice(&len.to_le_bytes());
    Ok(out)
}

/// Decodes exactly one message body (without its length prefix).
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, FramingError> {
    let (msg, rest) =
        postcard::take_from_bytes(body).map_err(|e| FramingError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(FramingError::Malformed(format!(
            "{} trailing bytes after message",
            rest.len()
        )));
    }
    Ok(msg)
}

/// Reassembles messages from a byte stream.
#[derive(Debug)]
pub struct FrameReader {
    buf: Vec<u8>,
    max_len: u32,
}

impl FrameReader {
    pub fn new(max_len: u32) -> Self {
        Self {
            buf: Vec::new(),
            max_len,
        }
    }

    /// Changes the maximum once Hello/Welcome agreed on one.
    pub fn set_max_len(&mut self, max_len: u32) {
        self.max_len = max_len;
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet returned as a message.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// How many more bytes are needed before [`FrameReader::next`] can return a message; lets
    /// a caller read a large frame body in one go instead of chunk by chunk.
    pub fn wanted(&self) -> usize {
        if self.buf.len() < HEADER_LEN {
            return HEADER_LEN - self.buf.len();
        }
        let len = u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        (HEADER_LEN + len).saturating_sub(self.buf.len())
    }

    /// Pops the next whole message, `Ok(None)` if more bytes are needed. After an error the
    /// stream is unusable: the caller closes the connection.
    // Not `Iterator`: the message type is chosen per call and errors are not items.
    #[allow(clippy::should_implement_trait)]
    pub fn next<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FramingError> {
        if self.buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let len = u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        if len > self.max_len {
            return Err(FramingError::TooLong {
                len: len as u64,
                max: self.max_len,
            });
        }
        let end = HEADER_LEN + len as usize;
        if self.buf.len() < end {
            return Ok(None);
        }
        let msg = decode_body(&self.buf[HEADER_LEN..end]);
        self.buf.drain(..end);
        msg.map(Some)
    }

    /// The body of the next message if it is all here, without taking it: a peer's Hello can
    /// be looked at before it is decoded (see [`crate::Hello::peek_version`]). Errors as
    /// [`FrameReader::next`] would for a message over the maximum.
    pub fn peek_body(&self) -> Result<Option<&[u8]>, FramingError> {
        if self.buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let len = u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        if len > self.max_len {
            return Err(FramingError::TooLong {
                len: len as u64,
                max: self.max_len,
            });
        }
        Ok(self.buf.get(HEADER_LEN..HEADER_LEN + len as usize))
    }

    /// Call when the stream ended: errors if a partial message is left.
    pub fn finish(&self) -> Result<(), FramingError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(FramingError::Truncated {
                buffered: self.buf.len(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::*;

    fn hello() -> ClientControl {
        ClientControl::Hello(Hello {
            protocol_version: 1,
            client_name: "test".into(),
            capabilities: Capabilities {
                screen_width: 1280,
                screen_height: 800,
                physical_size: PhysicalSize::known(597, 336),
                encodings: vec![Encoding::TilesV1],
                max_message_len: 1 << 20,
                audio: crate::AudioCapabilities::default(),
            },
            keymap: None,
            token: None,
            arrival: Arrival::Direct,
        })
    }

    #[test]
    fn round_trip_byte_by_byte() {
        let msgs = [
            hello(),
            ClientControl::FrameAck { seq: 7 },
            ClientControl::ScreenChanged {
                width: 3840,
                height: 2160,
                physical_size: None,
            },
            ClientControl::Bye(ByeReason::Shutdown),
        ];
        let mut bytes = Vec::new();
        for m in &msgs {
            bytes.extend(encode(m).unwrap());
        }
        let mut r = FrameReader::new(1 << 20);
        let mut got = Vec::new();
        for b in bytes {
            r.push(&[b]);
            while let Some(m) = r.next::<ClientControl>().unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got, msgs);
        assert!(r.finish().is_ok());
    }

    #[test]
    fn oversized_length_is_rejected_before_buffering() {
        let mut r = FrameReader::new(100);
        r.push(&101u32.to_le_bytes());
        assert_eq!(
            r.next::<ClientControl>(),
            Err(FramingError::TooLong { len: 101, max: 100 })
        );
    }

    #[test]
    fn unknown_variant_is_an_error() {
        let mut r = FrameReader::new(100);
        r.push(&[2, 0, 0, 0, 99, 0]);
        assert!(matches!(
            r.next::<ClientControl>(),
            Err(FramingError::Malformed(_))
        ));
    }

    #[test]
    fn a_physical_size_that_is_neither_some_nor_none_is_an_error() {
        let size = |physical_size| ClientControl::ScreenChanged {
            width: 1,
            height: 1,
            physical_size,
        };
        let some = encode(&size(PhysicalSize::known(2, 3))).unwrap();
        let none = encode(&size(None)).unwrap();
        // The option's tag is the byte after the two one-byte varints: 1 for Some, 0 for None.
        assert_eq!((some[HEADER_LEN + 3], none[HEADER_LEN + 3]), (1, 0));
        let mut bad = some.clone();
        bad[HEADER_LEN + 3] = 2;
        let mut r = FrameReader::new(100);
        r.push(&bad);
        assert!(matches!(
            r.next::<ClientControl>(),
            Err(FramingError::Malformed(_))
        ));
        // A v3 appliance's ScreenChanged (no size at all) is cut short, not misread.
        let mut v3 = none[..none.len() - 1].to_vec();
        v3[0] -= 1;
        let mut r = FrameReader::new(100);
        r.push(&v3);
        assert!(matches!(
            r.next::<ClientControl>(),
            Err(FramingError::Malformed(_))
        ));
    }

    #[test]
    fn another_versions_hello_shows_its_version_before_decoding() {
        let ClientControl::Hello(mut v3) = hello() else {
            unreachable!()
        };
        v3.protocol_version = 3;
        // Only the version is read, so what follows it may be laid out any way.
        let bytes = encode(&ClientControl::Hello(v3)).unwrap();
        let mut r = FrameReader::new(1 << 20);
        r.push(&bytes[..5]);
        assert_eq!(r.peek_body(), Ok(None));
        r.push(&bytes[5..]);
        let body = r.peek_body().unwrap().unwrap();
        assert_eq!(Hello::peek_version(body), Some(3));
        // Peeking takes nothing.
        assert!(matches!(
            r.next::<ClientControl>(),
            Ok(Some(ClientControl::Hello(_)))
        ));
        // Not a Hello, or not even a message: no version.
        let ack = encode(&ClientControl::FrameAck { seq: 1 }).unwrap();
        assert_eq!(Hello::peek_version(&ack[HEADER_LEN..]), None);
        assert_eq!(Hello::peek_version(&[]), None);
        assert_eq!(Hello::peek_version(&[0, 0xff]), None);
        let mut r = FrameReader::new(10);
        r.push(&11u32.to_le_bytes());
        assert!(matches!(r.peek_body(), Err(FramingError::TooLong { .. })));
    }

    #[test]
    fn unknown_sizes_are_none() {
        assert_eq!(PhysicalSize::known(0, 336), None);
        assert_eq!(PhysicalSize::known(597, 0), None);
        assert_eq!(
            PhysicalSize::known(597, 336),
            Some(PhysicalSize {
                width_mm: 597,
                height_mm: 336
            })
        );
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let mut bytes = encode(&ClientControl::FrameAck { seq: 1 }).unwrap();
        bytes.push(0);
        bytes[0] += 1;
        let mut r = FrameReader::new(100);
        r.push(&bytes);
        assert!(matches!(
            r.next::<ClientControl>(),
            Err(FramingError::Malformed(_))
        ));
    }

    #[test]
    fn truncated_stream_is_reported() {
        let bytes = encode(&hello()).unwrap();
        let mut r = FrameReader::new(1 << 20);
        r.push(&bytes[..bytes.len() - 1]);
        assert_eq!(r.next::<ClientControl>(), Ok(None));
        assert!(matches!(r.finish(), Err(FramingError::Truncated { .. })));
    }
}
