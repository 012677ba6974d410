//! Playback frames → Opus packets.
//!
//! Application `Audio`, not `RestrictedLowDelay`: the session plays music and video sound as
//! much as speech, and `Audio` codes both at full band; its extra look-ahead (6.5 ms against
//! 2.5 ms) is taken out of the packet timestamps (see [`Encoder::lookahead_us`]), so it costs
//! latency but no lip-sync. `RestrictedLowDelay` would also forbid the SILK layer that in-band
//! FEC lives in. FEC is on with an expected loss of [`EXPECTED_LOSS_PERCENT`]: the encoder adds
//! the redundancy whenever it codes in SILK or hybrid mode (speech, lower rates); at full-band
//! CELT rates the appliance's packet-loss concealment covers a lost packet.

use wayray_protocol::audio::{FRAME_SAMPLES, MAX_OPUS_BYTES, SAMPLE_RATE};

/// Stereo playback bitrate: near-transparent for most material at 10 ms frames; about 120
/// bytes per packet (well inside a QUIC datagram), 12 kB/s on the wire while sound plays.
pub const PLAYBACK_BITRATE: i32 = 96_000;

/// The loss the encoder plans FEC for.
pub const EXPECTED_LOSS_PERCENT: i32 = 5;

#[derive(Debug, thiserror::Error)]
#[error("Opus: {0}")]
pub struct OpusError(#[from] opus::Error);

/// An Opus encoder for the session's playback (stereo, 48 kHz, 10 ms frames).
pub struct Encoder {
    inner: opus::Encoder,
    out: Vec<u8>,
    lookahead_us: u64,
}

impl Encoder {
    pub fn playback() -> Result<Self, OpusError> {
        let mut inner = opus::Encoder::new(
            SAMPLE_RATE,
            opus::Channels::Stereo,
            opus::Application::Audio,
        )?;
        inner.set_bitrate(opus::Bitrate::Bits(PLAYBACK_BITRATE))?;
        inner.set_inband_fec(true)?;
        inner.set_packet_loss_perc(EXPECTED_LOSS_PERCENT)?;
        let lookahead = inner.get_lookahead()?.max(0) as usize;
        Ok(Self {
            inner,
            out: vec![0; MAX_OPUS_BYTES],
            lookahead_us: super::packetizer::samples_to_us(lookahead),
        })
    }

    /// How much later than its input the decoder's output comes: a packet stamped with its
    /// first input sample's time minus this plays in step with the picture.
    pub fn lookahead_us(&self) -> u64 {
        self.lookahead_us
    }

    /// Encodes one stereo frame (`FRAME_SAMPLES` × 2 interleaved samples).
    pub fn encode(&mut self, frame: &[f32]) -> Result<Vec<u8>, OpusError> {
        debug_assert_eq!(frame.len(), FRAME_SAMPLES * 2);
        let n = self.inner.encode_float(frame, &mut self.out)?;
        Ok(self.out[..n].to_vec())
    }

    /// Starts afresh (a new appliance must not decode against another's state).
    pub fn reset(&mut self) {
        if let Err(err) = self.inner.reset_state() {
            tracing::warn!(%err, "cannot reset the Opus encoder");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tone_encodes_into_a_datagram_sized_packet() {
        let mut enc = Encoder::playback().unwrap();
        assert!(enc.lookahead_us() > 0 && enc.lookahead_us() < 10_000);
        let mut phase = 0f32;
        for _ in 0..20 {
            let frame: Vec<f32> = (0..FRAME_SAMPLES)
                .flat_map(|_| {
                    phase += 2.0 * std::f32::consts::PI * 440.0 / SAMPLE_RATE as f32;
                    let s = phase.sin() * 0.5;
                    [s, s]
                })
                .collect();
            let packet = enc.encode(&frame).unwrap();
            assert!(!packet.is_empty() && packet.len() <= MAX_OPUS_BYTES);
        }
    }
}
