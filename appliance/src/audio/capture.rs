//! The microphone thread: opened only while the session asks for it
//! (`ServerControl::Microphone { open: true }`), closed on `open: false`, when the card leaves
//! and when the connection ends — a microphone is never on when nobody asked. It reads 10 ms
//! of mono sound at a time (the source blocks at real-time pace), encodes it as Opus with
//! in-band FEC and sends it as a `Datagram::Microphone` stamped on the session clock (see
//! `clock.rs`; before any frame or packet gave a mapping, the local clock, which is the
//! session's on one host).

use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use opus::{Application, Channels, Encoder};
use wayray_protocol::audio::{FRAME_SAMPLES, MAX_OPUS_BYTES, SAMPLE_RATE};
use wayray_protocol::{AudioPacket, Datagram};

use super::clock::{now_us, ClockMap};
use super::report::{report, Report};
use super::wav::{WavClip, WavSource};
use super::{AudioError, AudioSource};

/// Loss the encoder's FEC is tuned for (%): a little redundancy, a few kbit/s.
const EXPECTED_LOSS_PERCENT: i32 = 10;

/// Where the microphone's sound comes from.
#[derive(Clone)]
pub enum SourceKind {
    Alsa(String),
    Wav(WavClip),
}

impl SourceKind {
    fn open(&self) -> Result<Box<dyn AudioSource>, AudioError> {
        match self {
            Self::Alsa(device) => Ok(Box::new(super::alsa::AlsaSource::open(device)?)),
            Self::Wav(clip) => Ok(Box::new(WavSource::start(clip.clone()))),
        }
    }
}

/// What the session wants of the microphone: the connection task sets it, the thread
/// follows it before every 10 ms read. A state, not a queue, so the connection task never
/// waits for the thread (whose device may block) and requests cannot pile up.
#[derive(Clone)]
enum Wanted {
    /// Capture and send on this connection.
    Open(quinn::Connection),
    /// Closed, and why.
    Closed(&'static str),
    /// The appliance is exiting.
    Exit,
}

/// The connection task's handle on the microphone thread.
pub struct Microphone {
    wanted: Arc<Mutex<Wanted>>,
    /// Wakes the idle thread (one pending wake is enough).
    wake: SyncSender<()>,
    thread: Option<JoinHandle<()>>,
    open: bool,
}

impl Microphone {
    pub fn start(
        kind: SourceKind,
        clock: Arc<ClockMap>,
        report: Option<Arc<Report>>,
    ) -> Result<Self, AudioError> {
        let (wake, woken) = mpsc::sync_channel(1);
        let wanted = Arc::new(Mutex::new(Wanted::Closed("not asked for")));
        let capture = Capture {
            kind,
            clock,
            report,
            wanted: wanted.clone(),
            woken,
            seq: 0,
        };
        let thread = std::thread::Builder::new()
            .name("wrclient-microphone".into())
            .spawn(move || capture.run())
            .map_err(AudioError::Thread)?;
        Ok(Self {
            wanted,
            wake,
            thread: Some(thread),
            open: false,
        })
    }

    /// The session asked for the microphone (again, maybe on a new connection).
    pub fn open(&mut self, connection: &quinn::Connection) {
        self.open = true;
        self.set(Wanted::Open(connection.clone()));
    }

    /// Stops capturing and closes the device (within one 10 ms read).
    pub fn close(&mut self, why: &'static str) {
        if self.open {
            self.open = false;
            self.set(Wanted::Closed(why));
        }
    }

    fn set(&self, wanted: Wanted) {
        if let Ok(mut state) = self.wanted.lock() {
            *state = wanted;
        }
        // Full: a wake is pending already.
        let _ = self.wake.try_send(());
    }

    pub fn shutdown(&mut self) {
        self.set(Wanted::Exit);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the microphone thread panicked");
            }
        }
    }
}

impl Drop for Microphone {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Capture {
    kind: SourceKind,
    clock: Arc<ClockMap>,
    report: Option<Arc<Report>>,
    wanted: Arc<Mutex<Wanted>>,
    woken: Receiver<()>,
    /// Continues across openings, like the session's playback count.
    seq: u64,
}

impl Capture {
    fn wanted(&self) -> Wanted {
        match self.wanted.lock() {
            Ok(state) => state.clone(),
            Err(_) => Wanted::Exit,
        }
    }

    fn run(mut self) {
        loop {
            match self.wanted() {
                Wanted::Exit => return,
                Wanted::Closed(_) => {
                    if self.woken.recv().is_err() {
                        return;
                    }
                }
                Wanted::Open(_) => {
                    if !self.capture() {
                        // Could not open or failed: wait for the next request.
                        if let Ok(mut state) = self.wanted.lock() {
                            if matches!(*state, Wanted::Open(_)) {
                                *state = Wanted::Closed("failed");
                            }
                        }
                    }
                }
            }
        }
    }

    /// Captures while wanted (following a new connection); `false` if the device failed or
    /// the connection is gone.
    fn capture(&mut self) -> bool {
        let mut source = match self.kind.open() {
            Ok(source) => source,
            Err(error) => {
                tracing::warn!(error = %crate::report::error_chain(&error), "cannot open the microphone");
                return false;
            }
        };
        let mut encoder = match encoder() {
            Ok(encoder) => encoder,
            Err(error) => {
                tracing::warn!(%error, "cannot make an Opus encoder for the microphone");
                return false;
            }
        };
        tracing::info!("microphone open");
        report!(self.report, "mic-open", "local_us={}", now_us());
        let mut samples = vec![0i16; FRAME_SAMPLES];
        let mut opus = vec![0u8; MAX_OPUS_BYTES];
        let mut sent = 0u64;
        let mut send_failed = false;
        let (why, ok) = loop {
            let connection = match self.wanted() {
                Wanted::Open(connection) => connection,
                Wanted::Closed(why) => break (why, true),
                Wanted::Exit => break ("exit", true),
            };
            let captured = match source.read(&mut samples) {
                Ok(at) => at,
                Err(error) => {
                    tracing::warn!(error = %crate::report::error_chain(&error), "the microphone failed; closing it");
                    break ("error", false);
                }
            };
            let time_us = self.clock.session_from_local(captured).unwrap_or(captured);
            let len = match encoder.encode(&samples, &mut opus) {
                Ok(len) => len,
                Err(error) => {
                    tracing::warn!(%error, "cannot encode the microphone's sound");
                    continue;
                }
            };
            let datagram = Datagram::Microphone(AudioPacket {
                seq: self.seq,
                time_us,
                opus: opus[..len].to_vec(),
            });
            self.seq += 1;
            let bytes = match datagram.encode() {
                Ok(bytes) => bytes,
                Err(error) => {
                    tracing::warn!(%error, "cannot frame the microphone's sound");
                    continue;
                }
            };
            match connection.send_datagram(bytes.into()) {
                Ok(()) => sent += 1,
                // Until the next connection's request.
                Err(quinn::SendDatagramError::ConnectionLost(_)) => {
                    break ("connection lost", false)
                }
                Err(error) => {
                    if !send_failed {
                        tracing::warn!(%error, "cannot send the microphone's sound");
                    }
                    send_failed = true;
                }
            }
        };
        drop(source);
        tracing::info!(why, packets = sent, "microphone closed");
        report!(
            self.report,
            "mic-close",
            "local_us={} packets={sent} why={why}",
            now_us()
        );
        ok
    }
}

fn encoder() -> Result<Encoder, opus::Error> {
    let mut encoder = Encoder::new(SAMPLE_RATE, Channels::Mono, Application::Voip)?;
    encoder.set_inband_fec(true)?;
    encoder.set_packet_loss_perc(EXPECTED_LOSS_PERCENT)?;
    Ok(encoder)
}
