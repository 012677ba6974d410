//! Playback → 10 ms frames with the session clock of their first sample, and the gate that
//! keeps silence off the wire (pure: the PipeWire thread feeds it, the tests drive it).

use wayray_protocol::audio::{FRAME_SAMPLES, SAMPLE_RATE};

/// A sample below this (in either direction) counts as silent: under half of the least
/// significant bit of 16-bit audio, so only digital silence (and what a volume of 0 or a mute
/// leaves) is silent, never a quiet passage.
pub const SILENCE_LEVEL: f32 = 1.0 / 65_536.0;

/// Silent frames still sent after the last audible one (200 ms): a sound's decay and the short
/// pauses inside speech or music stay in one talkspurt instead of being cut.
pub const TAIL_FRAMES: u32 = 20;

/// A measured chunk time this much later than the sample count says is a real gap (the graph
/// stopped, an overrun), not the scheduling delay of a callback: the stamps re-anchor to it.
pub const RESYNC_US: u64 = 20_000;

/// Cuts interleaved samples into frames of [`FRAME_SAMPLES`] per channel, each stamped with the
/// session clock of its first sample.
#[derive(Debug)]
pub struct Packetizer {
    channels: usize,
    buf: Vec<f32>,
    /// Session clock (µs) of `buf[0]`.
    head_us: u64,
    /// `head_us` follows the sample count (since the last [`Packetizer::clear`]).
    anchored: bool,
}

impl Packetizer {
    pub fn new(channels: usize) -> Self {
        Self {
            channels: channels.max(1),
            buf: Vec::with_capacity(FRAME_SAMPLES * channels.max(1) * 4),
            head_us: 0,
            anchored: false,
        }
    }

    /// Samples per channel waiting for a full frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() / self.channels
    }

    /// Takes `samples` (interleaved) whose first sample was written at `now_us`, and calls
    /// `frame(time_us, samples)` for every whole frame. Within a run of samples the stamps
    /// follow the sample count (exact: the graph's rate is the session clock's), anchored to
    /// the earliest time measured, since a callback can only run late, never early; a chunk
    /// more than [`RESYNC_US`] later than the count says re-anchors (a gap in the sound).
    pub fn push(&mut self, now_us: u64, samples: &[f32], mut frame: impl FnMut(u64, &[f32])) {
        let measured = now_us.saturating_sub(samples_to_us(self.buffered()));
        if !self.anchored || measured < self.head_us || measured > self.head_us + RESYNC_US {
            self.head_us = measured;
            self.anchored = true;
        }
        // A trailing partial sample (a chunk cut mid-frame) is dropped rather than shifting
        // every later channel.
        let whole = samples.len() - samples.len() % self.channels;
        self.buf.extend_from_slice(&samples[..whole]);
        let len = FRAME_SAMPLES * self.channels;
        let mut start = 0;
        while self.buf.len() - start >= len {
            frame(self.head_us, &self.buf[start..start + len]);
            start += len;
            self.head_us += samples_to_us(FRAME_SAMPLES);
        }
        self.buf.drain(..start);
    }

    /// Forgets buffered samples (the stream stopped: its next sound starts afresh).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.anchored = false;
    }
}

/// Microseconds that `samples` (per channel) last at [`SAMPLE_RATE`].
pub fn samples_to_us(samples: usize) -> u64 {
    samples as u64 * 1_000_000 / SAMPLE_RATE as u64
}

/// Whether a frame is digital silence.
pub fn is_silent(samples: &[f32]) -> bool {
    samples.iter().all(|s| s.abs() < SILENCE_LEVEL)
}

/// What to do with one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Silence outside a talkspurt: nothing goes out.
    Drop,
    /// The first audible frame after silence: a talkspurt starts with it.
    Start,
    /// Part of the talkspurt (audible, or silence within the tail).
    Send,
    /// The tail ran out: the talkspurt ended before this frame, which is not sent.
    End,
}

/// Talkspurts: packets flow from the first audible frame until [`TAIL_FRAMES`] silent frames
/// in a row, then stop until the next audible one. Silence costs nothing on the wire.
#[derive(Debug, Default)]
pub struct Gate {
    active: bool,
    silent_run: u32,
}

impl Gate {
    pub fn step(&mut self, silent: bool) -> Step {
        match (self.active, silent) {
            (false, true) => Step::Drop,
            (false, false) => {
                self.active = true;
                self.silent_run = 0;
                Step::Start
            }
            (true, false) => {
                self.silent_run = 0;
                Step::Send
            }
            (true, true) => {
                self.silent_run += 1;
                if self.silent_run > TAIL_FRAMES {
                    self.active = false;
                    Step::End
                } else {
                    Step::Send
                }
            }
        }
    }

    #[cfg(test)]
    pub fn active(&self) -> bool {
        self.active
    }

    /// Ends a talkspurt from outside (the stream stopped, the appliance went away); `true` if
    /// one was running.
    pub fn stop(&mut self) -> bool {
        std::mem::take(&mut self.active)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_the_time_of_their_first_sample() {
        let mut p = Packetizer::new(2);
        let mut out = Vec::new();
        // 256 samples per channel at t=1 s: no frame yet.
        p.push(1_000_000, &[0.5; 512], |t, s| out.push((t, s.len())));
        assert!(out.is_empty());
        assert_eq!(p.buffered(), 256);
        // 512 more, written 5333 µs later: one frame, starting at the first chunk's time.
        p.push(1_005_333, &[0.5; 1024], |t, s| out.push((t, s.len())));
        assert_eq!(out, [(1_000_000, FRAME_SAMPLES * 2)]);
        assert_eq!(p.buffered(), 256 + 512 - FRAME_SAMPLES);
        // A big chunk: two frames 10 ms apart, the first one's time derived from what was
        // already buffered (288 samples = 6000 µs before the chunk).
        out.clear();
        p.push(2_000_000, &[0.5; 2 * 1000], |t, s| out.push((t, s.len())));
        assert_eq!(out, [(1_994_000, 960), (2_004_000, 960)]);
        assert_eq!(p.buffered(), 288 + 1000 - 2 * FRAME_SAMPLES);
    }

    #[test]
    fn late_callbacks_do_not_jitter_the_stamps() {
        let mut p = Packetizer::new(1);
        let mut out = Vec::new();
        // Quanta of one frame, the second callback 3 ms late, the third 1 ms early of the
        // anchor (the first was late itself): stamps stay 10 ms apart.
        for t in [1_000_000, 1_013_000, 1_019_000, 1_029_000] {
            p.push(t, &[0.2; FRAME_SAMPLES], |t, _| out.push(t));
        }
        assert_eq!(out, [1_000_000, 1_010_000, 1_019_000, 1_029_000]);
        // A real gap re-anchors.
        out.clear();
        p.push(1_100_000, &[0.2; FRAME_SAMPLES], |t, _| out.push(t));
        assert_eq!(out, [1_100_000]);
    }

    #[test]
    fn odd_chunks_keep_channels_aligned() {
        let mut p = Packetizer::new(2);
        let mut frames = 0;
        p.push(0, &[0.1; 961], |_, s| {
            assert_eq!(s.len(), 960);
            frames += 1
        });
        assert_eq!(frames, 1);
        assert_eq!(p.buffered(), 0);
    }

    #[test]
    fn silence_is_digital_silence_only() {
        assert!(is_silent(&[0.0; 960]));
        assert!(is_silent(&[1e-6; 960]));
        let mut quiet = vec![0.0; 960];
        quiet[500] = 1.0 / 16_000.0;
        assert!(!is_silent(&quiet));
    }

    #[test]
    fn talkspurts_start_on_sound_and_end_after_the_tail() {
        let mut g = Gate::default();
        assert_eq!(g.step(true), Step::Drop);
        assert_eq!(g.step(false), Step::Start);
        assert_eq!(g.step(false), Step::Send);
        for _ in 0..TAIL_FRAMES {
            assert_eq!(g.step(true), Step::Send);
        }
        // Sound within the tail continues the same talkspurt.
        assert_eq!(g.step(false), Step::Send);
        for _ in 0..TAIL_FRAMES {
            assert_eq!(g.step(true), Step::Send);
        }
        assert_eq!(g.step(true), Step::End);
        assert_eq!(g.step(true), Step::Drop);
        assert!(!g.active());
        assert_eq!(g.step(false), Step::Start);
        assert!(g.stop());
        assert!(!g.stop());
    }
}
