//! The appliance's microphone packets → samples the WayRay source plays into the session.
//!
//! Packets come as datagrams: some are lost, a few arrive late or twice. A gap in `seq` is
//! filled by packet-loss concealment, its last missing packet from the next packet's in-band
//! FEC; a late or repeated packet is dropped. The decoded samples wait in a short buffer that
//! the source node drains at the session's rate; with nothing in it the source plays silence.

use std::collections::VecDeque;

use wayray_protocol::audio::{FRAME_SAMPLES, SAMPLE_RATE};

/// A gap longer than this (in packets) is not concealed: the microphone was closed in between
/// (or the link was down), and 200 ms of invented sound would be worse than none.
pub const MAX_CONCEALED: u64 = 20;

/// Playout starts once this much is buffered (20 ms), so the usual jitter of the link does not
/// cause an underrun per packet.
pub const START_SAMPLES: usize = 2 * FRAME_SAMPLES;

/// More than this waiting (80 ms) and the oldest samples are dropped: the appliance's clock runs
/// a little fast against the session's, or a burst arrived; latency must not grow.
pub const MAX_SAMPLES: usize = 8 * FRAME_SAMPLES;

/// How to decode the packet with `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Late or repeated: drop it.
    Late,
    /// Decode it after `conceal` frames of PLC and, if `fec`, one frame recovered from its FEC
    /// data.
    Decode { conceal: u64, fec: bool },
}

/// Plans the decoding of `seq` when `expected` was next (`None`: the first packet).
pub fn plan(expected: Option<u64>, seq: u64) -> Plan {
    let Some(expected) = expected else {
        return Plan::Decode {
            conceal: 0,
            fec: false,
        };
    };
    if seq < expected {
        return Plan::Late;
    }
    match seq - expected {
        0 => Plan::Decode {
            conceal: 0,
            fec: false,
        },
        missing if missing <= MAX_CONCEALED => Plan::Decode {
            conceal: missing - 1,
            fec: true,
        },
        _ => Plan::Decode {
            conceal: 0,
            fec: false,
        },
    }
}

/// The microphone's decoder and playout buffer (mono).
pub struct Microphone {
    decoder: opus::Decoder,
    expected: Option<u64>,
    buffer: VecDeque<f32>,
    playing: bool,
    scratch: Vec<f32>,
    /// Packets decoded, concealed, dropped as late; for the log.
    pub stats: MicStats,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct MicStats {
    pub packets: u64,
    pub concealed: u64,
    pub recovered: u64,
    pub late: u64,
    pub bad: u64,
}

impl Microphone {
    pub fn new() -> Result<Self, super::encode::OpusError> {
        Ok(Self {
            decoder: opus::Decoder::new(SAMPLE_RATE, opus::Channels::Mono)?,
            expected: None,
            buffer: VecDeque::with_capacity(MAX_SAMPLES + FRAME_SAMPLES * 4),
            playing: false,
            // Opus packets hold at most 120 ms.
            scratch: vec![0.0; SAMPLE_RATE as usize / 1000 * 120],
            stats: MicStats::default(),
        })
    }

    /// Starts afresh: a new appliance, or the microphone opened again.
    pub fn reset(&mut self) {
        self.expected = None;
        self.buffer.clear();
        self.playing = false;
        if let Err(err) = self.decoder.reset_state() {
            tracing::warn!(%err, "cannot reset the Opus decoder");
        }
    }

    /// Decodes one packet from the appliance into the buffer.
    pub fn packet(&mut self, seq: u64, opus: &[u8]) {
        let Plan::Decode { conceal, fec } = plan(self.expected, seq) else {
            self.stats.late += 1;
            return;
        };
        if self.expected.is_some_and(|e| seq > e + MAX_CONCEALED) {
            // A new burst after a long gap: its decoder state is stale.
            let _ = self.decoder.reset_state();
        }
        for _ in 0..conceal {
            self.decode(&[], false);
            self.stats.concealed += 1;
        }
        if fec {
            self.decode(opus, true);
            self.stats.recovered += 1;
        }
        if self.decode(opus, false) {
            self.stats.packets += 1;
        } else {
            self.stats.bad += 1;
        }
        self.expected = Some(seq + 1);
        let excess = self.buffer.len().saturating_sub(MAX_SAMPLES);
        self.buffer.drain(..excess);
    }

    /// One frame (10 ms) from `opus`, or concealment when it is empty; `false` if the packet
    /// does not decode (then nothing is added: better a short gap than noise).
    fn decode(&mut self, opus: &[u8], fec: bool) -> bool {
        // With FEC or concealment the decoder makes exactly the frame size it is given.
        let out = if opus.is_empty() || fec {
            &mut self.scratch[..FRAME_SAMPLES]
        } else {
            &mut self.scratch[..]
        };
        match self.decoder.decode_float(opus, out, fec) {
            Ok(n) => {
                self.buffer.extend(&out[..n.min(out.len())]);
                true
            }
            Err(err) => {
                tracing::trace!(%err, "microphone packet does not decode");
                false
            }
        }
    }

    /// Fills `out` with the next samples, silence where none are buffered (before playout
    /// starts, and on an underrun, which restarts the start-up buffering).
    pub fn play(&mut self, out: &mut [f32]) {
        if !self.playing && self.buffer.len() >= START_SAMPLES {
            self.playing = true;
        }
        let mut filled = 0;
        if self.playing {
            let n = out.len().min(self.buffer.len());
            for (slot, sample) in out.iter_mut().zip(self.buffer.drain(..n)) {
                *slot = sample;
                filled += 1;
            }
            if filled < out.len() {
                self.playing = false;
            }
        }
        out[filled..].fill(0.0);
    }

    #[cfg(test)]
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_are_concealed_and_late_packets_dropped() {
        assert_eq!(
            plan(None, 7),
            Plan::Decode {
                conceal: 0,
                fec: false
            }
        );
        assert_eq!(
            plan(Some(8), 8),
            Plan::Decode {
                conceal: 0,
                fec: false
            }
        );
        // One lost: recovered from this packet's FEC.
        assert_eq!(
            plan(Some(8), 9),
            Plan::Decode {
                conceal: 0,
                fec: true
            }
        );
        // Three lost: two concealed, the third from FEC.
        assert_eq!(
            plan(Some(8), 11),
            Plan::Decode {
                conceal: 2,
                fec: true
            }
        );
        assert_eq!(plan(Some(8), 7), Plan::Late);
        // A long gap (the microphone was closed) is not filled.
        assert_eq!(
            plan(Some(8), 8 + MAX_CONCEALED + 1),
            Plan::Decode {
                conceal: 0,
                fec: false
            }
        );
    }

    fn tone_packets(n: usize) -> Vec<Vec<u8>> {
        let mut enc =
            opus::Encoder::new(SAMPLE_RATE, opus::Channels::Mono, opus::Application::Voip).unwrap();
        enc.set_inband_fec(true).unwrap();
        enc.set_packet_loss_perc(10).unwrap();
        let mut phase = 0f32;
        (0..n)
            .map(|_| {
                let frame: Vec<f32> = (0..FRAME_SAMPLES)
                    .map(|_| {
                        phase += 2.0 * std::f32::consts::PI * 660.0 / SAMPLE_RATE as f32;
                        phase.sin() * 0.5
                    })
                    .collect();
                enc.encode_vec_float(&frame, 1000).unwrap()
            })
            .collect()
    }

    #[test]
    fn lost_packets_still_yield_a_frame_each() {
        let packets = tone_packets(8);
        let mut mic = Microphone::new().unwrap();
        for (seq, p) in packets.iter().enumerate() {
            if seq == 3 || seq == 5 || seq == 6 {
                continue; // lost
            }
            mic.packet(seq as u64, p);
        }
        mic.packet(5, &packets[5]); // a repeat
        assert_eq!(mic.stats.late, 1);
        assert_eq!(mic.stats.recovered, 2);
        assert_eq!(mic.stats.concealed, 1);
        // Eight frames' worth: every lost packet was filled.
        assert_eq!(mic.buffered(), 8 * FRAME_SAMPLES);
        let mut out = vec![1.0; 3 * FRAME_SAMPLES];
        mic.play(&mut out);
        assert!(out.iter().any(|s| s.abs() > 0.1), "the tone plays");
    }

    #[test]
    fn plays_silence_until_enough_is_buffered() {
        let packets = tone_packets(1);
        let mut mic = Microphone::new().unwrap();
        mic.packet(0, &packets[0]);
        let mut out = vec![1.0; FRAME_SAMPLES];
        mic.play(&mut out);
        assert!(out.iter().all(|&s| s == 0.0));
        assert_eq!(mic.buffered(), FRAME_SAMPLES);
    }

    #[test]
    fn the_buffer_never_grows_past_its_bound() {
        let packets = tone_packets(30);
        let mut mic = Microphone::new().unwrap();
        for (seq, p) in packets.iter().enumerate() {
            mic.packet(seq as u64, p);
        }
        assert_eq!(mic.buffered(), MAX_SAMPLES);
    }
}
