//! Sound both ways: the session's playback to the appliance's speaker, the appliance's
//! microphone back into the session.
//!
//! Audio travels as Opus (48 kHz; stereo playback, mono microphone; one 10 ms frame per packet)
//! in QUIC **datagrams**, not on a stream: a lost datagram costs one packet of sound, which the
//! receiver recovers from the next packet's in-band FEC or conceals, while on a stream a lost
//! packet would hold back every later one (and share the display stream's congestion stalls)
//! until its retransmission arrived — a stall the listener hears. Datagrams are never
//! retransmitted, so a late packet is simply dropped by the jitter buffer.
//!
//! Each packet carries the session clock of its first sample, the clock of
//! [`FrameUpdate::time_us`](crate::FrameUpdate::time_us), so the appliance plays a sound in
//! step with the picture it belongs to (lip sync). Nothing is sent while a side is silent: no
//! application playing, or the microphone not opened by anyone in the session.

use serde::{Deserialize, Serialize};

/// Sample rate of both directions, the rate Opus runs at natively.
pub const SAMPLE_RATE: u32 = 48_000;
/// Length of one packet's audio.
pub const FRAME_MS: u32 = 10;
/// Samples per channel in one packet.
pub const FRAME_SAMPLES: usize = (SAMPLE_RATE / 1000 * FRAME_MS) as usize;
/// Playback is stereo.
pub const PLAYBACK_CHANNELS: usize = 2;
/// The microphone is mono.
pub const MICROPHONE_CHANNELS: usize = 1;
/// Largest Opus payload a packet may carry. A QUIC datagram must fit one UDP packet of the
/// smallest MTU QUIC allows (1200 bytes) with its headers; 10 ms of Opus at its highest bitrate
/// (510 kbit/s) is 638 bytes.
pub const MAX_OPUS_BYTES: usize = 1000;

/// Whether an appliance has a speaker and a microphone (in [`crate::Capabilities`]); in
/// [`crate::Welcome`], which of them the server will use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudioCapabilities {
    pub speaker: bool,
    pub microphone: bool,
}

/// One 10 ms Opus frame of one direction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudioPacket {
    /// One more for every packet of the direction; a gap is a loss, recovered from the next
    /// packet's in-band FEC or concealed. Packets of a new talkspurt continue the count.
    pub seq: u64,
    /// Session clock (µs) of the first sample: when it was written in the session (playback)
    /// or, for the microphone, the session clock the appliance derived from the frames it
    /// shows.
    pub time_us: u64,
    /// The Opus packet (RFC 6716), at most [`MAX_OPUS_BYTES`].
    #[serde(with = "serde_bytes")]
    pub opus: Vec<u8>,
}

/// What one QUIC datagram carries. Datagrams have no length prefix: one datagram is one
/// postcard-encoded `Datagram`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Datagram {
    /// Server → appliance: the session's sound.
    Playback(AudioPacket),
    /// Appliance → server: the microphone, only while the server asked for it
    /// ([`crate::ServerControl::Microphone`]).
    Microphone(AudioPacket),
    /// Appliance → server: a copy of the `seq`-th message of the input stream (counted from 1,
    /// the keymap included), sent while the link loses packets, so a lost stream packet does not
    /// hold a key back until QUIC's retransmission timeout. The server applies each index once,
    /// in order, whichever copy comes first.
    Input {
        seq: u64,
        event: crate::InputMessage,
    },
    /// Server → appliance: a copy of a small frame of the display stream, sent while the link
    /// loses packets. `message` is the framed [`crate::DisplayMessage::Frame`] exactly as on the
    /// stream; `prev_seq` the frame written to the stream just before it (0: none), so the
    /// appliance applies it only right after that one — frames are deltas, applied in order —
    /// and then skips the stream copy.
    Frame {
        prev_seq: u64,
        #[serde(with = "serde_bytes")]
        message: Vec<u8>,
    },
}

/// A datagram that is not one.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DatagramError {
    #[error("malformed datagram: {0}")]
    Malformed(String),
    #[error("Opus payload of {0} bytes exceeds {MAX_OPUS_BYTES}")]
    TooLong(usize),
}

impl Datagram {
    /// The sound it carries, if it is an audio datagram.
    pub fn packet(&self) -> Option<&AudioPacket> {
        match self {
            Datagram::Playback(p) | Datagram::Microphone(p) => Some(p),
            Datagram::Input { .. } | Datagram::Frame { .. } => None,
        }
    }

    fn check(&self) -> Result<(), DatagramError> {
        match self.packet() {
            Some(packet) if packet.opus.len() > MAX_OPUS_BYTES => {
                Err(DatagramError::TooLong(packet.opus.len()))
            }
            _ => Ok(()),
        }
    }

    pub fn encode(&self) -> Result<Vec<u8>, DatagramError> {
        self.check()?;
        postcard::to_allocvec(self).map_err(|e| DatagramError::Malformed(e.to_string()))
    }

    /// Decodes one datagram; trailing bytes and oversized payloads are errors.
    pub fn decode(bytes: &[u8]) -> Result<Self, DatagramError> {
        let (datagram, rest) = postcard::take_from_bytes::<Datagram>(bytes)
            .map_err(|e| DatagramError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(DatagramError::Malformed(format!(
                "{} trailing bytes",
                rest.len()
            )));
        }
        datagram.check()?;
        Ok(datagram)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(len: usize) -> AudioPacket {
        AudioPacket {
            seq: 7,
            time_us: 1_000_000,
            opus: vec![0xfc; len],
        }
    }

    #[test]
    fn roundtrips_and_fits_a_quic_datagram() {
        let d = Datagram::Playback(packet(MAX_OPUS_BYTES));
        let bytes = d.encode().unwrap();
        // The smallest datagram room quinn offers on a 1200-byte path is ~1150 bytes.
        assert!(bytes.len() < 1100, "{}", bytes.len());
        assert_eq!(Datagram::decode(&bytes).unwrap(), d);
    }

    #[test]
    fn refuses_oversized_and_trailing_bytes() {
        assert_eq!(
            Datagram::Microphone(packet(MAX_OPUS_BYTES + 1)).encode(),
            Err(DatagramError::TooLong(MAX_OPUS_BYTES + 1))
        );
        let mut bytes = Datagram::Microphone(packet(3)).encode().unwrap();
        bytes.push(0);
        assert!(matches!(
            Datagram::decode(&bytes),
            Err(DatagramError::Malformed(_))
        ));
        assert!(Datagram::decode(&[9, 9, 9]).is_err());
        assert!(Datagram::decode(&[]).is_err());
    }

    #[test]
    fn input_and_frame_copies_roundtrip() {
        let input = Datagram::Input {
            seq: 12,
            event: crate::InputMessage::Key {
                time_ms: 5,
                keycode: 30,
                pressed: true,
            },
        };
        let bytes = input.encode().unwrap();
        assert_eq!(Datagram::decode(&bytes).unwrap(), input);
        let frame = Datagram::Frame {
            prev_seq: 41,
            message: vec![1, 2, 3],
        };
        assert_eq!(Datagram::decode(&frame.encode().unwrap()).unwrap(), frame);
        assert_eq!(frame.packet(), None);
    }
}
