//! The microphone thread: opened only while the session asks for it
//! (`ServerControl::Microphone { open: true }`), closed on `open: false`, when the card leaves
//! and when the connection ends — a microphone is never on when nobody asked. It reads 10 ms
//! of mono sound at a time (the source blocks at real-time pace), encodes it as Opus with
//! in-band FEC and sends it as a `Datagram::Microphone` stamped on the session clock (see
//! `clock.rs`; before any frame or packet gave a mapping, the local clock, which is the
//! session's on one host).

use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::sync::Arc;
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

enum Command {
    /// Capture and send on this connection.
    Open(quinn::Connection),
    Close(&'static str),
}

/// The connection task's handle on the microphone thread.
pub struct Microphone {
    sender: Option<SyncSender<Command>>,
    thread: Option<JoinHandle<()>>,
    open: bool,
}

impl Microphone {
    pub fn start(
        kind: SourceKind,
        clock: Arc<ClockMap>,
        report: Option<Arc<Report>>,
    ) -> Result<Self, AudioError> {
        let (sender, receiver) = mpsc::sync_channel(8);
        let thread = std::thread::Builder::new()
            .name("wrclient-microphone".into())
            .spawn(move || {
                Capture {
                    kind,
                    clock,
                    report,
                    receiver,
                    seq: 0,
                }
                .run()
            })
            .map_err(AudioError::Thread)?;
        Ok(Self {
            sender: Some(sender),
            thread: Some(thread),
            open: false,
        })
    }

    /// The session asked for the microphone (again, maybe on a new connection).
    pub fn open(&mut self, connection: &quinn::Connection) {
        self.open = true;
        self.send(Command::Open(connection.clone()));
    }

    /// Stops capturing and closes the device.
    pub fn close(&mut self, why: &'static str) {
        if self.open {
            self.open = false;
            self.send(Command::Close(why));
        }
    }

    fn send(&self, command: Command) {
        if let Some(sender) = &self.sender {
            // Blocking for at most one 10 ms read: the queue is short and the thread drains it
            // between reads. A closed thread (it logged why) takes nothing.
            let _ = sender.send(command);
        }
    }

    pub fn shutdown(&mut self) {
        self.close("exit");
        self.sender = None;
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
    receiver: Receiver<Command>,
    /// Continues across openings, like the session's playback count.
    seq: u64,
}

impl Capture {
    fn run(mut self) {
        while let Ok(command) = self.receiver.recv() {
            if let Command::Open(connection) = command {
                self.capture(connection);
            }
        }
    }

    /// Captures until told to stop (an `Open` for another connection meanwhile switches to it).
    fn capture(&mut self, mut connection: quinn::Connection) {
        let mut source = match self.kind.open() {
            Ok(source) => source,
            Err(error) => {
                tracing::warn!(error = %crate::report::error_chain(&error), "cannot open the microphone");
                return;
            }
        };
        let mut encoder = match encoder() {
            Ok(encoder) => encoder,
            Err(error) => {
                tracing::warn!(%error, "cannot make an Opus encoder for the microphone");
                return;
            }
        };
        tracing::info!("microphone open");
        report!(self.report, "mic-open", "local_us={}", now_us());
        let mut samples = vec![0i16; FRAME_SAMPLES];
        let mut opus = vec![0u8; MAX_OPUS_BYTES];
        let mut sent = 0u64;
        let mut send_failed = false;
        let why;
        loop {
            match self.receiver.try_recv() {
                Ok(Command::Open(other)) => connection = other,
                Ok(Command::Close(reason)) => {
                    why = reason;
                    break;
                }
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => {
                    why = "exit";
                    break;
                }
            }
            let captured = match source.read(&mut samples) {
                Ok(at) => at,
                Err(error) => {
                    tracing::warn!(error = %crate::report::error_chain(&error), "the microphone failed; closing it");
                    why = "error";
                    break;
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
                Err(quinn::SendDatagramError::ConnectionLost(_)) => {
                    // Until the next connection's request.
                    why = "connection lost";
                    break;
                }
                Err(error) => {
                    if !send_failed {
                        tracing::warn!(%error, "cannot send the microphone's sound");
                    }
                    send_failed = true;
                }
            }
        }
        drop(source);
        tracing::info!(why, packets = sent, "microphone closed");
        report!(
            self.report,
            "mic-close",
            "local_us={} packets={sent} why={why}",
            now_us()
        );
    }
}

fn encoder() -> Result<Encoder, opus::Error> {
    let mut encoder = Encoder::new(SAMPLE_RATE, Channels::Mono, Application::Voip)?;
    encoder.set_inband_fec(true)?;
    encoder.set_packet_loss_perc(EXPECTED_LOSS_PERCENT)?;
    Ok(encoder)
}
