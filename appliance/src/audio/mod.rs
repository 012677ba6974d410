//! Sound on the appliance (README.md, "Audio on the appliance"): the session's playback
//! arrives as Opus in QUIC datagrams and goes through the jitter buffer to the speaker; the
//! microphone, while the session asks for it, goes back the same way.
//!
//! * `mod.rs`: the [`AudioSink`] / [`AudioSource`] traits, the choice of backend and the
//!   [`Audio`] handle the connection uses.
//! * `alsa.rs`: ALSA devices; `wav.rs`: WAV files on a real-time clock (tests, demos).
//! * `jitter.rs`: the jitter buffer; `clock.rs`: session clock ↔ local clock (lip sync).
//! * `playback.rs` / `capture.rs`: one thread per direction, since devices block.
//! * `report.rs`: `--audio-report`.

mod alsa;
mod capture;
pub mod clock;
mod jitter;
mod playback;
mod report;
mod wav;

use std::path::PathBuf;
use std::sync::Arc;

use wayray_protocol::{AudioCapabilities, Datagram};

use self::capture::{Microphone, SourceKind};
use self::clock::{now_us, ClockMap};
use self::playback::Playback;
use self::report::{report, Report};

/// The ALSA PCM used unless `--audio-device` says otherwise.
pub const DEFAULT_DEVICE: &str = "default";

/// Where sound goes: a speaker that takes interleaved stereo 16-bit samples at 48 kHz.
pub trait AudioSink: Send {
    /// Hands samples to the device, blocking while its buffer is full (real-time pace).
    fn write(&mut self, samples: &[i16]) -> Result<(), AudioError>;
    /// How long until a sample written now is heard (µs): what the device holds.
    fn delay_us(&mut self) -> u64;
    /// Silence queued at the start of a talkspurt (µs), so a late wake-up of the playback
    /// thread is no gap.
    fn lead_us(&self) -> u64;
    /// Drops what the device holds at once.
    fn discard(&mut self) -> Result<(), AudioError>;
    /// Plays out what is queued; the last call.
    fn close(&mut self) -> Result<(), AudioError>;
}

/// Where the microphone's sound comes from: mono 16-bit samples at 48 kHz.
pub trait AudioSource: Send {
    /// Fills `samples`, blocking at real-time pace; returns the local CLOCK_MONOTONIC µs at
    /// which the first of them was captured.
    fn read(&mut self, samples: &mut [i16]) -> Result<u64, AudioError>;
}

#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("cannot use {}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a WAV file wrclient can use: {reason}", path.display())]
    Format { path: PathBuf, reason: String },
    #[error("ALSA device {device:?}: {what}")]
    Alsa {
        device: String,
        what: &'static str,
        #[source]
        source: ::alsa::Error,
    },
    #[error("ALSA device {device:?} runs at {rate} Hz, not 48000")]
    Rate { device: String, rate: u32 },
    #[error("Opus")]
    Opus(#[source] opus::Error),
    #[error("cannot start an audio thread")]
    Thread(#[source] std::io::Error),
}

/// `--audio-device`, `--microphone-device`, `--audio-out-wav`, `--audio-in-wav`, `--no-audio`,
/// `--audio-report`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioConfig {
    /// `false` with `--no-audio`: neither speaker nor microphone.
    pub enabled: bool,
    /// ALSA playback PCM.
    pub device: String,
    /// ALSA capture PCM.
    pub microphone_device: String,
    /// The speaker is this WAV file instead of ALSA.
    pub out_wav: Option<PathBuf>,
    /// The microphone plays this WAV file in a loop instead of ALSA.
    pub in_wav: Option<PathBuf>,
    pub report: Option<PathBuf>,
}

impl Default for AudioConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            device: DEFAULT_DEVICE.to_owned(),
            microphone_device: DEFAULT_DEVICE.to_owned(),
            out_wav: None,
            in_wav: None,
            report: None,
        }
    }
}

/// The appliance's sound, as the connection sees it. Kept across connections.
pub struct Audio {
    capabilities: AudioCapabilities,
    clock: Arc<ClockMap>,
    report: Option<Arc<Report>>,
    playback: Option<Playback>,
    microphone: Option<Microphone>,
    malformed: u64,
}

impl Audio {
    /// Opens the speaker and checks the microphone (opened for real only when asked for). A
    /// device that cannot be used costs one warning and that direction; only an unusable
    /// `--audio-report` file is an error.
    pub fn start(config: &AudioConfig) -> Result<Self, AudioError> {
        let report = config.report.as_deref().map(Report::open).transpose()?;
        let clock = Arc::new(ClockMap::default());
        let mut audio = Self {
            capabilities: AudioCapabilities::default(),
            clock: clock.clone(),
            report: report.clone(),
            playback: None,
            microphone: None,
            malformed: 0,
        };
        if !config.enabled {
            tracing::info!("--no-audio: no speaker, no microphone");
            return Ok(audio);
        }
        let sink: Result<Box<dyn AudioSink>, AudioError> = match &config.out_wav {
            Some(path) => wav::WavSink::create(path).map(|sink| {
                report!(report, "wav-origin", "local_us={}", sink.origin_us());
                Box::new(sink) as Box<dyn AudioSink>
            }),
            None => alsa::AlsaSink::open(&config.device).map(|s| Box::new(s) as _),
        };
        match sink.and_then(|sink| Playback::start(sink, clock.clone(), report.clone())) {
            Ok(playback) => {
                audio.playback = Some(playback);
                audio.capabilities.speaker = true;
            }
            Err(error) => tracing::warn!(
                error = %crate::report::error_chain(&error),
                "no speaker: the session's sound will not play here"
            ),
        }
        let source = match &config.in_wav {
            Some(path) => wav::WavClip::load(path).map(SourceKind::Wav),
            // Opened and closed again at once: only to say truthfully whether it is there.
            None => alsa::AlsaSource::open(&config.microphone_device)
                .map(|_| SourceKind::Alsa(config.microphone_device.clone())),
        };
        match source.and_then(|kind| Microphone::start(kind, clock, report)) {
            Ok(microphone) => {
                audio.microphone = Some(microphone);
                audio.capabilities.microphone = true;
            }
            Err(error) => tracing::warn!(
                error = %crate::report::error_chain(&error),
                "no microphone: the session cannot hear this appliance"
            ),
        }
        tracing::info!(
            speaker = audio.capabilities.speaker,
            microphone = audio.capabilities.microphone,
            "audio"
        );
        Ok(audio)
    }

    /// What Hello says this appliance has.
    pub fn capabilities(&self) -> AudioCapabilities {
        self.capabilities
    }

    /// A QUIC datagram from the server. A malformed one is dropped (logged the first time):
    /// one lost packet of sound, never the connection.
    pub fn datagram(&mut self, bytes: &[u8]) {
        let arrival = now_us();
        match Datagram::decode(bytes) {
            Ok(Datagram::Playback(packet)) => {
                if let Some(playback) = &mut self.playback {
                    playback.push(packet, arrival);
                }
            }
            Ok(Datagram::Microphone(_)) => self.malformed("a microphone packet from the server"),
            Ok(Datagram::Input { .. }) => self.malformed("an input event from the server"),
            // Frame copies are the connection's (it hands only the rest to audio).
            Ok(Datagram::Frame { .. }) => self.malformed("a frame copy"),
            Err(error) => self.malformed(&error.to_string()),
        }
    }

    fn malformed(&mut self, what: &str) {
        self.malformed += 1;
        if self.malformed == 1 {
            tracing::warn!(
                what,
                "dropping a bad datagram from the server (further ones are logged at debug level)"
            );
        } else {
            tracing::debug!(what, count = self.malformed, "dropping a bad datagram");
        }
    }

    /// A frame stamped `time_us` (session clock) is on screen now: it teaches lip sync.
    pub fn frame_presented(&self, seq: u64, time_us: u64) {
        let now = now_us();
        self.clock.frame_presented(time_us, now);
        if time_us != 0 {
            report!(
                self.report,
                "frame",
                "seq={seq} time_us={time_us} presented_us={now}"
            );
        }
    }

    /// `ServerControl::Microphone`.
    pub fn microphone(&mut self, open: bool, connection: &quinn::Connection) {
        match (&mut self.microphone, open) {
            (Some(microphone), true) => microphone.open(connection),
            (Some(microphone), false) => microphone.close("the session closed it"),
            (None, true) => {
                tracing::info!("the session asks for a microphone this appliance lacks")
            }
            (None, false) => {}
        }
    }

    /// The session is no longer here (card out, connection ended): its sound stops now and
    /// the microphone closes.
    pub fn stop(&mut self, why: &'static str) {
        self.flush(why, true);
    }

    fn flush(&mut self, why: &'static str, in_flight: bool) {
        if let Some(playback) = &self.playback {
            playback.flush(why, in_flight);
        }
        if let Some(microphone) = &mut self.microphone {
            microphone.close(why);
        }
    }

    /// The connection ended: nothing more arrives on it.
    pub fn connection_ended(&mut self) {
        self.flush("connection ended", false);
    }

    /// A new connection: start clean (maybe another server, another clock).
    pub fn connected(&mut self) {
        self.flush("new connection", false);
        self.clock.reset();
    }

    /// Closes the devices (the output WAV gets its final header) before the process exits.
    pub fn shutdown(&mut self) {
        if let Some(microphone) = &mut self.microphone {
            microphone.shutdown();
        }
        if let Some(playback) = &mut self.playback {
            playback.shutdown();
        }
        if let Some(report) = &self.report {
            report.finish();
        }
    }
}
