//! The WayRay nodes in the session's PipeWire, on the audio thread: an output (Audio/Sink,
//! stereo) that applications play into and that is turned into Opus packets for the attached
//! appliance, and a microphone (Audio/Source, mono) that plays what the appliance's microphone
//! sends. Both are `pw_stream`s with a media class, the way `pw-loopback` makes virtual
//! devices: PipeWire wraps them in an adapter (format conversion, volume and mute), and
//! WirePlumber makes them the default sink and source (the only ones, and the highest
//! `priority.session`).
//!
//! Their process callbacks run on this thread's main loop (no realtime thread): 10 ms quanta
//! are slow enough, and the state stays on one thread.

use std::{cell::RefCell, path::PathBuf, rc::Rc, time::Duration};

use pipewire as pw;
use pw::{properties::properties, spa};
use wayray_protocol::{
    audio::{Datagram, FRAME_SAMPLES, MICROPHONE_CHANNELS, PLAYBACK_CHANNELS, SAMPLE_RATE},
    AudioCapabilities, AudioPacket,
};

use super::{
    encode::Encoder,
    microphone::Microphone,
    packetizer::{is_silent, Gate, Packetizer, Step},
};
use crate::{compositor::clock, link::ToTransport, session_link::LinkTx};

/// Node names, for `wpctl`/`pactl` and the tests.
pub const OUTPUT_NODE: &str = "wayray-output";
pub const MICROPHONE_NODE: &str = "wayray-microphone";

/// What the compositor tells the audio thread.
#[derive(Debug)]
pub enum Command {
    Attached {
        appliance: u64,
        audio: AudioCapabilities,
    },
    Detached {
        appliance: u64,
    },
    Microphone {
        appliance: u64,
        packet: AudioPacket,
    },
    Quit,
}

/// How long the audio thread keeps trying to reach the session's PipeWire.
const CONNECT_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("PipeWire: {0}")]
    PipeWire(#[from] pw::Error),
    #[error("cannot reach the session's PipeWire at {0} (is it running?)")]
    Connect(PathBuf),
    #[error(transparent)]
    Opus(#[from] super::encode::OpusError),
    #[error("cannot describe the stream format: {0}")]
    Format(String),
}

/// One talkspurt's figures, for its log line.
#[derive(Debug, Default)]
struct Talkspurt {
    appliance: Option<u64>,
    first_seq: u64,
    packets: u64,
    bytes: u64,
    frames: u64,
    started_us: u64,
    /// Loudest sample (after the sink's volume and mute), 0..1.
    peak: f32,
}

struct Playback {
    packetizer: Packetizer,
    gate: Gate,
    encoder: Encoder,
    /// Next packet's `seq`: one more per packet sent, across talkspurts and appliances.
    seq: u64,
    talk: Talkspurt,
}

struct State {
    link: LinkTx,
    /// The appliance showing the session and what it can play and record.
    attached: Option<(u64, AudioCapabilities)>,
    playback: Playback,
    mic: Microphone,
    /// Something in the session records from the WayRay microphone.
    recording: bool,
    samples: Vec<f32>,
}

impl State {
    /// The appliance playback goes to, if any.
    fn speaker(&self) -> Option<u64> {
        self.attached
            .filter(|(_, audio)| audio.speaker)
            .map(|(appliance, _)| appliance)
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Attached { appliance, audio } => {
                self.end_talkspurt("appliance changed");
                self.attached = Some((appliance, audio));
                self.playback.encoder.reset();
                self.mic.reset();
                // A hot-desk mid-recording: the new appliance opens its microphone too.
                if self.recording && audio.microphone {
                    self.link.send(ToTransport::Microphone {
                        appliance,
                        open: true,
                    });
                    tracing::info!(appliance, "microphone opened (recording in progress)");
                }
            }
            Command::Detached { appliance } => {
                if self.attached.is_some_and(|(a, _)| a == appliance) {
                    self.end_talkspurt("appliance detached");
                    self.attached = None;
                }
            }
            Command::Microphone { appliance, packet } => {
                let ours = self
                    .attached
                    .is_some_and(|(a, audio)| a == appliance && audio.microphone);
                if ours && self.recording {
                    self.mic.packet(packet.seq, &packet.opus);
                }
            }
            Command::Quit => {}
        }
    }

    /// Logs the end of the running talkspurt, if one runs.
    fn end_talkspurt(&mut self, why: &str) {
        if self.playback.gate.stop() {
            self.log_talkspurt_end(why);
        }
    }

    fn log_talkspurt_end(&mut self, why: &str) {
        let talk = std::mem::take(&mut self.playback.talk);
        let ms = clock::session_us().saturating_sub(talk.started_us) / 1000;
        tracing::debug!(
            appliance = talk.appliance,
            first_seq = talk.first_seq,
            packets = talk.packets,
            bytes = talk.bytes,
            frames = talk.frames,
            peak = format!("{:.3}", talk.peak),
            ms,
            why,
            "talkspurt ended"
        );
    }

    /// Interleaved stereo samples that applications wrote into the output, the first at
    /// `now_us`.
    fn played(&mut self, now_us: u64) {
        let speaker = self.speaker();
        let State {
            link,
            playback,
            samples,
            ..
        } = self;
        let Playback {
            packetizer,
            gate,
            encoder,
            seq,
            talk,
        } = playback;
        let mut ended = false;
        packetizer.push(now_us, samples, |time_us, frame| {
            match gate.step(is_silent(frame)) {
                Step::Drop => return,
                Step::End => {
                    ended = true;
                    return;
                }
                Step::Start => {
                    *talk = Talkspurt {
                        appliance: speaker,
                        first_seq: *seq,
                        started_us: time_us,
                        ..Default::default()
                    };
                    tracing::debug!(appliance = speaker, seq = *seq, "talkspurt started");
                }
                Step::Send => {}
            }
            talk.frames += 1;
            talk.peak = frame.iter().fold(talk.peak, |p, s| p.max(s.abs()));
            // Detached, or an appliance without a speaker: the sound is dropped.
            let Some(appliance) = speaker else {
                return;
            };
            let opus = match encoder.encode(frame) {
                Ok(opus) => opus,
                Err(err) => {
                    tracing::warn!(%err, "cannot encode playback; frame dropped");
                    return;
                }
            };
            let packet = AudioPacket {
                seq: *seq,
                time_us: time_us.saturating_sub(encoder.lookahead_us()),
                opus,
            };
            match Datagram::Playback(packet).encode() {
                Ok(bytes) => {
                    *seq += 1;
                    talk.packets += 1;
                    talk.bytes += bytes.len() as u64;
                    link.send(ToTransport::Audio { appliance, bytes });
                }
                Err(err) => tracing::warn!(%err, "cannot frame a playback packet"),
            }
        });
        if ended {
            self.log_talkspurt_end("silence");
        }
    }

    fn recording_changed(&mut self, recording: bool) {
        if self.recording == recording {
            return;
        }
        self.recording = recording;
        self.mic.reset();
        let target = self
            .attached
            .filter(|(_, audio)| audio.microphone)
            .map(|(a, _)| a);
        tracing::info!(
            appliance = target,
            recording,
            "the session's microphone {}",
            if recording {
                "is recorded from"
            } else {
                "is no longer recorded from"
            }
        );
        if let Some(appliance) = target {
            self.link.send(ToTransport::Microphone {
                appliance,
                open: recording,
            });
        }
    }
}

/// The session clock (µs) of the graph cycle whose samples `stream` is processing: the driver's
/// cycle time (CLOCK_MONOTONIC, like [`clock::session_us`]) is regular, 10 ms apart, where the
/// moment the callback happens to run jitters with the load. The callback's own time if the
/// stream has no time yet or its clock is not ours.
fn cycle_us(stream: &pw::stream::StreamRef) -> u64 {
    let now = clock::session_us();
    // SAFETY: `stream` is a live stream; pw_time is plain data filled in by the call.
    let graph = unsafe {
        let mut time: pw::sys::pw_time = std::mem::zeroed();
        let res = pw::sys::pw_stream_get_time_n(
            stream.as_raw_ptr(),
            &mut time,
            std::mem::size_of::<pw::sys::pw_time>(),
        );
        (res == 0 && time.now > 0).then_some(time.now as u64 / 1000)
    };
    match graph {
        Some(graph) if graph.abs_diff(now) < 100_000 => graph,
        _ => now,
    }
}

/// The format both streams offer: F32 at 48 kHz with `channels` channels in `positions`.
fn format_pod(channels: u32, positions: &[u32]) -> Result<Vec<u8>, NodeError> {
    let mut info = spa::param::audio::AudioInfoRaw::new();
    info.set_format(spa::param::audio::AudioFormat::F32LE);
    info.set_rate(SAMPLE_RATE);
    info.set_channels(channels);
    let mut position = [0u32; 64];
    position[..positions.len()].copy_from_slice(positions);
    info.set_position(position);
    let obj = spa::pod::Object {
        type_: spa::utils::SpaTypes::ObjectParamFormat.as_raw(),
        id: spa::param::ParamType::EnumFormat.as_raw(),
        properties: info.into(),
    };
    spa::pod::serialize::PodSerializer::serialize(
        std::io::Cursor::new(Vec::new()),
        &spa::pod::Value::Object(obj),
    )
    .map(|(cursor, _)| cursor.into_inner())
    .map_err(|e| NodeError::Format(format!("{e:?}")))
}

/// Runs the nodes until [`Command::Quit`] (or the channel closes). `socket` is the session's
/// PipeWire socket.
pub fn run(
    socket: PathBuf,
    link: LinkTx,
    commands: pw::channel::Receiver<Command>,
    ready: std::sync::mpsc::Sender<()>,
) -> Result<(), NodeError> {
    pw::init();
    let mainloop = pw::main_loop::MainLoop::new(None)?;
    let context = pw::context::Context::new(&mainloop)?;
    let deadline = std::time::Instant::now() + CONNECT_WAIT;
    let core = loop {
        let props = properties! {
            *pw::keys::REMOTE_NAME => socket.to_string_lossy().into_owned(),
        };
        match context.connect(Some(props)) {
            Ok(core) => break core,
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(_) => return Err(NodeError::Connect(socket)),
        }
    };
    // The session's PipeWire went away (killed, crashed): stop rather than spin.
    let weak = mainloop.downgrade();
    let _core_listener = core
        .add_listener_local()
        .error(move |id, _seq, res, message| {
            tracing::warn!(id, res, message, "PipeWire error");
            if id == pw::core::PW_ID_CORE && res == -libc::EPIPE {
                if let Some(mainloop) = weak.upgrade() {
                    mainloop.quit();
                }
            }
        })
        .register();

    let state = Rc::new(RefCell::new(State {
        link,
        attached: None,
        playback: Playback {
            packetizer: Packetizer::new(PLAYBACK_CHANNELS),
            gate: Gate::default(),
            encoder: Encoder::playback()?,
            seq: 0,
            talk: Talkspurt::default(),
        },
        mic: Microphone::new()?,
        recording: false,
        samples: Vec::with_capacity(8192),
    }));

    // Both nodes exist in the session's PipeWire once their streams leave Connecting: then the
    // compositor starts its clients (a `pw-play` with no sink to go to would fail).
    let created = Rc::new(std::cell::Cell::new(0u8));
    let node_created = move |old: &pw::stream::StreamState| {
        if *old == pw::stream::StreamState::Connecting {
            created.set(created.get() + 1);
            if created.get() == 2 {
                let _ = ready.send(());
            }
        }
    };
    let latency = format!("{FRAME_SAMPLES}/{SAMPLE_RATE}");
    let output = pw::stream::Stream::new(
        &core,
        OUTPUT_NODE,
        properties! {
            *pw::keys::MEDIA_TYPE => "Audio",
            *pw::keys::MEDIA_CATEGORY => "Playback",
            *pw::keys::MEDIA_CLASS => "Audio/Sink",
            *pw::keys::NODE_NAME => OUTPUT_NODE,
            *pw::keys::NODE_DESCRIPTION => "WayRay speaker",
            *pw::keys::NODE_LATENCY => latency.clone(),
            *pw::keys::PRIORITY_SESSION => "2000",
            *pw::keys::AUDIO_CHANNELS => "2",
            "audio.position" => "FL,FR",
            "audio.rate" => SAMPLE_RATE.to_string(),
        },
    )?;
    let s = state.clone();
    let created = node_created.clone();
    let _output_listener = output
        .add_local_listener_with_user_data(())
        .state_changed(move |_, _, old, new| {
            tracing::debug!(?old, ?new, node = OUTPUT_NODE, "stream state");
            created(&old);
            if new != pw::stream::StreamState::Streaming {
                let mut s = s.borrow_mut();
                s.playback.packetizer.clear();
                s.end_talkspurt("the output stopped");
            }
        })
        .process({
            let s = state.clone();
            move |stream, _| {
                let now = cycle_us(stream);
                let Some(mut buffer) = stream.dequeue_buffer() else {
                    return;
                };
                let datas = buffer.datas_mut();
                let Some(data) = datas.first_mut() else {
                    return;
                };
                let (offset, size) = (data.chunk().offset() as usize, data.chunk().size() as usize);
                let Some(bytes) = data.data() else {
                    return;
                };
                let end = offset.saturating_add(size).min(bytes.len());
                let bytes = &bytes[offset.min(end)..end];
                let mut s = s.borrow_mut();
                s.samples.clear();
                s.samples.extend(
                    bytes
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                );
                s.played(now);
            }
        })
        .register()?;
    let pod = format_pod(
        2,
        &[
            spa::sys::SPA_AUDIO_CHANNEL_FL,
            spa::sys::SPA_AUDIO_CHANNEL_FR,
        ],
    )?;
    let mut params =
        [spa::pod::Pod::from_bytes(&pod).ok_or_else(|| NodeError::Format("not a pod".into()))?];
    output.connect(
        spa::utils::Direction::Input,
        None,
        pw::stream::StreamFlags::MAP_BUFFERS,
        &mut params,
    )?;

    let microphone = pw::stream::Stream::new(
        &core,
        MICROPHONE_NODE,
        properties! {
            *pw::keys::MEDIA_TYPE => "Audio",
            *pw::keys::MEDIA_CATEGORY => "Capture",
            *pw::keys::MEDIA_CLASS => "Audio/Source",
            *pw::keys::NODE_NAME => MICROPHONE_NODE,
            *pw::keys::NODE_DESCRIPTION => "WayRay microphone",
            *pw::keys::NODE_LATENCY => latency,
            *pw::keys::PRIORITY_SESSION => "2000",
            *pw::keys::AUDIO_CHANNELS => "1",
            "audio.position" => "MONO",
            "audio.rate" => SAMPLE_RATE.to_string(),
        },
    )?;
    let s = state.clone();
    let _mic_listener = microphone
        .add_local_listener_with_user_data(())
        .state_changed(move |_, _, old, new| {
            tracing::debug!(?old, ?new, node = MICROPHONE_NODE, "stream state");
            node_created(&old);
            s.borrow_mut()
                .recording_changed(new == pw::stream::StreamState::Streaming);
        })
        .process({
            let s = state.clone();
            move |stream, _| {
                let Some(mut buffer) = stream.dequeue_buffer() else {
                    return;
                };
                let requested = buffer.requested() as usize;
                let datas = buffer.datas_mut();
                let Some(data) = datas.first_mut() else {
                    return;
                };
                let Some(bytes) = data.data() else {
                    return;
                };
                let stride = 4 * MICROPHONE_CHANNELS;
                let room = bytes.len() / stride;
                let n = if requested == 0 {
                    FRAME_SAMPLES
                } else {
                    requested
                }
                .min(room);
                let mut s = s.borrow_mut();
                s.samples.clear();
                s.samples.resize(n, 0.0);
                let State { mic, samples, .. } = &mut *s;
                mic.play(samples);
                for (out, sample) in bytes.chunks_exact_mut(4).zip(samples.iter()) {
                    out.copy_from_slice(&sample.to_le_bytes());
                }
                let chunk = data.chunk_mut();
                *chunk.offset_mut() = 0;
                *chunk.stride_mut() = stride as i32;
                *chunk.size_mut() = (n * stride) as u32;
            }
        })
        .register()?;
    let pod = format_pod(1, &[spa::sys::SPA_AUDIO_CHANNEL_MONO])?;
    let mut params =
        [spa::pod::Pod::from_bytes(&pod).ok_or_else(|| NodeError::Format("not a pod".into()))?];
    microphone.connect(
        spa::utils::Direction::Output,
        None,
        pw::stream::StreamFlags::MAP_BUFFERS,
        &mut params,
    )?;
    tracing::info!(
        output = OUTPUT_NODE,
        microphone = MICROPHONE_NODE,
        "the session's audio nodes are up"
    );

    let weak = mainloop.downgrade();
    let s = state.clone();
    let _commands = commands.attach(mainloop.loop_(), move |cmd| {
        if matches!(cmd, Command::Quit) {
            if let Some(mainloop) = weak.upgrade() {
                mainloop.quit();
            }
            return;
        }
        s.borrow_mut().command(cmd);
    });
    mainloop.run();
    Ok(())
}
