//! The speaker and the microphone through ALSA (`--audio-device`, `--microphone-device`): the
//! `default` PCM unless told otherwise; 48 kHz 16-bit interleaved, blocking I/O on the audio
//! threads. The playback buffer is 30 ms in 10 ms periods: 20 ms are queued ahead at the start
//! of a talkspurt (the `lead`), so a late wake-up of the playback thread is no gap. An underrun
//! (after a talkspurt, when nothing is written) is recovered on the next write.

use alsa::pcm::{Access, Format, HwParams, PCM};
use alsa::{Direction, ValueOr};

use wayray_protocol::audio::{FRAME_SAMPLES, MICROPHONE_CHANNELS, PLAYBACK_CHANNELS, SAMPLE_RATE};

use super::clock::now_us;
use super::{AudioError, AudioSink, AudioSource};

const PERIOD_FRAMES: i64 = FRAME_SAMPLES as i64;
/// 30 ms: the lead of 20 ms plus the period being written.
const BUFFER_FRAMES: i64 = 3 * PERIOD_FRAMES;

fn alsa_error<'a>(device: &'a str, what: &'static str) -> impl Fn(alsa::Error) -> AudioError + 'a {
    move |source| AudioError::Alsa {
        device: device.to_owned(),
        what,
        source,
    }
}

/// Opens `device` for `direction` with our format; returns the PCM and the buffer size it got.
fn open(device: &str, direction: Direction, channels: usize) -> Result<(PCM, i64), AudioError> {
    // Non-blocking: opening a device another program holds fails at once instead of waiting
    // for it; I/O waits in `wait_ready`.
    let pcm = PCM::new(device, direction, true).map_err(alsa_error(device, "cannot open"))?;
    let buffer = {
        let hw = HwParams::any(&pcm).map_err(alsa_error(device, "no hardware parameters"))?;
        let set = alsa_error(device, "does not take 48 kHz 16-bit interleaved");
        hw.set_access(Access::RWInterleaved).map_err(&set)?;
        hw.set_format(Format::s16()).map_err(&set)?;
        hw.set_channels(channels as u32).map_err(&set)?;
        hw.set_rate(SAMPLE_RATE, ValueOr::Nearest).map_err(&set)?;
        hw.set_period_size_near(PERIOD_FRAMES, ValueOr::Nearest)
            .map_err(&set)?;
        hw.set_buffer_size_near(BUFFER_FRAMES).map_err(&set)?;
        pcm.hw_params(&hw)
            .map_err(alsa_error(device, "refused the parameters"))?;
        let rate = hw.get_rate().unwrap_or(0);
        if rate != SAMPLE_RATE {
            return Err(AudioError::Rate {
                device: device.to_owned(),
                rate,
            });
        }
        hw.get_buffer_size().unwrap_or(BUFFER_FRAMES)
    };
    if direction == Direction::Playback {
        // Start as soon as a period is there (the lead is written in one go).
        let sw = pcm
            .sw_params_current()
            .map_err(alsa_error(device, "no software parameters"))?;
        sw.set_start_threshold(PERIOD_FRAMES)
            .map_err(alsa_error(device, "start threshold"))?;
        pcm.sw_params(&sw)
            .map_err(alsa_error(device, "refused the software parameters"))?;
    }
    Ok((pcm, buffer))
}

/// Longest a device may take to have room or data before it counts as stopped.
const STALL_MS: u32 = 1_000;

/// Waits until `pcm` can be read or written; `false` if it stalled.
fn wait_ready(pcm: &PCM) -> bool {
    matches!(pcm.wait(Some(STALL_MS)), Ok(true))
}

/// The speaker.
pub struct AlsaSink {
    pcm: PCM,
    device: String,
    buffer_frames: i64,
}

impl AlsaSink {
    pub fn open(device: &str) -> Result<Self, AudioError> {
        let (pcm, buffer_frames) = open(device, Direction::Playback, PLAYBACK_CHANNELS)?;
        Ok(Self {
            pcm,
            device: device.to_owned(),
            buffer_frames,
        })
    }
}

impl AudioSink for AlsaSink {
    fn write(&mut self, samples: &[i16]) -> Result<(), AudioError> {
        let io = self
            .pcm
            .io_i16()
            .map_err(alsa_error(&self.device, "no I/O"))?;
        let mut rest = samples;
        let mut recoveries = 0;
        while !rest.is_empty() {
            match io.writei(rest) {
                Ok(frames) => rest = &rest[(frames * PLAYBACK_CHANNELS).min(rest.len())..],
                Err(e) if e.errno() == libc::EAGAIN && wait_ready(&self.pcm) => {}
                Err(e) if recoveries < 3 => {
                    // An underrun after silence (EPIPE), a suspend (ESTRPIPE): start again.
                    recoveries += 1;
                    self.pcm
                        .try_recover(e, true)
                        .map_err(alsa_error(&self.device, "cannot recover"))?;
                }
                Err(e) => return Err(alsa_error(&self.device, "cannot write")(e)),
            }
        }
        Ok(())
    }

    fn delay_us(&mut self) -> u64 {
        match self.pcm.delay() {
            Ok(frames) if frames > 0 => frames as u64 * 1_000_000 / SAMPLE_RATE as u64,
            _ => 0,
        }
    }

    fn lead_us(&self) -> u64 {
        (self.buffer_frames - PERIOD_FRAMES).max(PERIOD_FRAMES) as u64 * 1_000_000
            / SAMPLE_RATE as u64
    }

    fn discard(&mut self) -> Result<(), AudioError> {
        // Drop what is queued at once, and be ready for the next write.
        let _ = self.pcm.drop();
        self.pcm
            .prepare()
            .map_err(alsa_error(&self.device, "cannot prepare"))
    }

    fn close(&mut self) -> Result<(), AudioError> {
        let _ = self.pcm.drain();
        Ok(())
    }
}

/// The microphone.
pub struct AlsaSource {
    pcm: PCM,
    device: String,
    /// Real-time pace for devices without a clock (ALSA's `null` returns at once).
    started: std::time::Instant,
    frames: u64,
}

impl AlsaSource {
    pub fn open(device: &str) -> Result<Self, AudioError> {
        let (pcm, _) = open(device, Direction::Capture, MICROPHONE_CHANNELS)?;
        pcm.start().map_err(alsa_error(device, "cannot start"))?;
        Ok(Self {
            pcm,
            device: device.to_owned(),
            started: std::time::Instant::now(),
            frames: 0,
        })
    }
}

impl AudioSource for AlsaSource {
    fn read(&mut self, samples: &mut [i16]) -> Result<u64, AudioError> {
        let io = self
            .pcm
            .io_i16()
            .map_err(alsa_error(&self.device, "no I/O"))?;
        let mut filled = 0;
        let mut recoveries = 0;
        while filled < samples.len() {
            match io.readi(&mut samples[filled..]) {
                Ok(frames) => filled += frames * MICROPHONE_CHANNELS,
                Err(e) if e.errno() == libc::EAGAIN && wait_ready(&self.pcm) => {}
                Err(e) if recoveries < 3 => {
                    recoveries += 1;
                    self.pcm
                        .try_recover(e, true)
                        .map_err(alsa_error(&self.device, "cannot recover"))?;
                    let _ = self.pcm.start();
                }
                Err(e) => return Err(alsa_error(&self.device, "cannot read")(e)),
            }
        }
        self.frames += (samples.len() / MICROPHONE_CHANNELS) as u64;
        let due = std::time::Duration::from_micros(self.frames * 1_000_000 / SAMPLE_RATE as u64);
        if let Some(early) = due.checked_sub(self.started.elapsed()) {
            std::thread::sleep(early);
        }
        // The first sample was captured a buffer's length plus what is still queued ago.
        let queued = self.pcm.delay().unwrap_or(0).max(0) as u64;
        let frames = (samples.len() / MICROPHONE_CHANNELS) as u64 + queued;
        Ok(now_us().saturating_sub(frames * 1_000_000 / SAMPLE_RATE as u64))
    }
}
