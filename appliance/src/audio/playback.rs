//! The playback thread: owns the sink (which blocks), the jitter buffer and the Opus decoder.
//! The connection task hands it packets through a bounded channel (a full channel drops the
//! packet: late sound is worthless) and never waits for it.
//!
//! Each slot is decoded and handed to the sink at its due time (see `jitter.rs`). A talkspurt
//! starts by queueing the sink's `lead` of silence, so the sound is heard `lead` after it is
//! handed over and a late wake-up of this thread is no gap. A flush (the card left) drops
//! what the jitter buffer and the sink hold at once: the sound stops within one packet time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use opus::{Channels, Decoder};
use wayray_protocol::audio::{FRAME_SAMPLES, PLAYBACK_CHANNELS, SAMPLE_RATE};
use wayray_protocol::AudioPacket;

use super::clock::{now_us, ClockMap};
use super::jitter::{Counts, JitterBuffer, Slot};
use super::report::{report, Report};
use super::{AudioError, AudioSink};

/// Packets in flight to the thread (320 ms): more means the thread is stuck, and older sound
/// would be late anyway.
const QUEUE: usize = 32;
/// Onset: a sample at least this loud (−30 dBFS) …
const ONSET_LEVEL: i16 = 1036;
/// … after at least this many quiet frames (100 ms).
const ONSET_QUIET_FRAMES: u64 = SAMPLE_RATE as u64 / 10;
/// Largest Opus frame (120 ms stereo), so any valid packet decodes.
const MAX_DECODED: usize = 5760 * PLAYBACK_CHANNELS;

enum Message {
    /// A packet, its local arrival time and the flush generation it was sent in.
    Packet(AudioPacket, u64, u64),
    /// Look at the flush generation now.
    Wake,
}

/// The connection task's handle on the playback thread.
pub struct Playback {
    sender: Option<SyncSender<Message>>,
    generation: Arc<AtomicU64>,
    /// Why the last flush happened, for the report.
    reason: Arc<std::sync::Mutex<&'static str>>,
    flushed_at: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
    dropped: u64,
}

impl Playback {
    pub fn start(
        sink: Box<dyn AudioSink>,
        clock: Arc<ClockMap>,
        report: Option<Arc<Report>>,
    ) -> Result<Self, AudioError> {
        let decoder = Decoder::new(SAMPLE_RATE, Channels::Stereo).map_err(AudioError::Opus)?;
        let (sender, receiver) = mpsc::sync_channel(QUEUE);
        let generation = Arc::new(AtomicU64::new(0));
        let reason = Arc::new(std::sync::Mutex::new(""));
        let flushed_at = Arc::new(AtomicU64::new(0));
        let player = Player {
            sink,
            decoder,
            jitter: JitterBuffer::new(),
            clock,
            report,
            receiver,
            generation: generation.clone(),
            seen_generation: 0,
            reason: reason.clone(),
            flushed_at: flushed_at.clone(),
            ignore_before: 0,
            quiet_frames: u64::MAX / 2,
            decode: Duration::ZERO,
            talkspurt_decode: Duration::ZERO,
            slots: 0,
            talkspurts: 0,
            write_failed: false,
            pcm: vec![0; MAX_DECODED],
        };
        let (ready, started) = mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("wrclient-playback".into())
            .spawn(move || {
                realtime();
                let _ = ready.send(());
                player.run()
            })
            .map_err(AudioError::Thread)?;
        // The priority is set before returning, that is before the system-call filter (which
        // does not list sched_setscheduler) goes on.
        let _ = started.recv();
        Ok(Self {
            sender: Some(sender),
            generation,
            reason,
            flushed_at,
            thread: Some(thread),
            dropped: 0,
        })
    }

    /// A packet from the network that arrived at local time `arrival_us`.
    pub fn push(&mut self, packet: AudioPacket, arrival_us: u64) {
        let Some(sender) = &self.sender else { return };
        let generation = self.generation.load(Ordering::Acquire);
        match sender.try_send(Message::Packet(packet, arrival_us, generation)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped += 1;
                if self.dropped.is_power_of_two() {
                    tracing::warn!(
                        dropped = self.dropped,
                        "the playback thread is behind; dropping sound"
                    );
                }
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Stops the session's sound here now and forgets it (`why` goes to the report). With
    /// `in_flight`, packets the session made before now that are still on their way are not
    /// played either (the card left; the connection stays). A new connection needs no such
    /// filter, and may bring another server's clock.
    pub fn flush(&self, why: &'static str, in_flight: bool) {
        if let Ok(mut reason) = self.reason.lock() {
            *reason = why;
        }
        self.flushed_at
            .store(if in_flight { now_us() } else { 0 }, Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Some(sender) = &self.sender {
            // If the queue is full the thread is busy and checks the generation before its
            // next slot anyway.
            let _ = sender.try_send(Message::Wake);
        }
    }

    /// Ends the thread after it closed the sink (the WAV file's header is final then).
    pub fn shutdown(&mut self) {
        self.sender = None;
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the playback thread panicked");
            }
        }
    }
}

impl Drop for Playback {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Real-time priority (SCHED_FIFO, low) for the playback thread where allowed (root, as on the
/// appliance): a thread that wakes later than the sink's 20 ms lead is a gap the listener
/// hears, and a busy machine delays ordinary threads by that much. It sleeps almost all the
/// time, and the kernel caps real-time threads at 95 % of a core anyway.
fn realtime() {
    let param = libc::sched_param { sched_priority: 10 };
    // SAFETY: a plain system call on the calling thread with a valid parameter.
    let result = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    if result == 0 {
        tracing::debug!("the playback thread runs at real-time priority");
    } else {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            "the playback thread runs at normal priority"
        );
    }
}

struct Player {
    sink: Box<dyn AudioSink>,
    decoder: Decoder,
    jitter: JitterBuffer,
    clock: Arc<ClockMap>,
    report: Option<Arc<Report>>,
    receiver: Receiver<Message>,
    generation: Arc<AtomicU64>,
    seen_generation: u64,
    reason: Arc<std::sync::Mutex<&'static str>>,
    /// Local time of the last flush request that drops sound in flight (0: none).
    flushed_at: Arc<AtomicU64>,
    /// Packets stamped before the last flush (session clock) are not played.
    ignore_before: u64,
    /// Quiet frames handed to the sink since the last loud sample (onsets).
    quiet_frames: u64,
    decode: Duration,
    talkspurt_decode: Duration,
    /// Slots played (10 ms each), for the decoder's CPU share.
    slots: u64,
    talkspurts: u64,
    write_failed: bool,
    pcm: Vec<i16>,
}

impl Player {
    fn run(mut self) {
        loop {
            self.check_flush();
            let now = now_us();
            let due = if self.jitter.is_playing() {
                self.jitter.slot_due()
            } else {
                let delay = self.output_delay();
                self.jitter.start_due(self.clock.video_offset(), delay)
            };
            let message = match due {
                Some(due) if due <= now => {
                    self.play_slot();
                    continue;
                }
                Some(due) => match self.receiver.recv_timeout(Duration::from_micros(due - now)) {
                    Ok(message) => message,
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match self.receiver.recv() {
                    Ok(message) => message,
                    Err(_) => break,
                },
            };
            match message {
                Message::Packet(packet, arrival, generation) => {
                    self.check_flush();
                    // Sound the session made before the flush may still be on its way: it is
                    // not played (the card left; the next session's sound is stamped later).
                    if generation == self.seen_generation && packet.time_us >= self.ignore_before {
                        self.clock.packet_arrived(packet.time_us, arrival);
                        self.jitter.push(packet, arrival);
                    }
                }
                Message::Wake => {}
            }
        }
        self.end_talkspurt();
        if let Err(error) = self.sink.close() {
            tracing::warn!(error = %crate::report::error_chain(&error), "cannot close the speaker");
        }
        let total = self.jitter.total();
        let audio_us = self.slots * 10_000;
        let decode_us = self.decode.as_micros() as u64;
        report!(
            self.report,
            "summary",
            "received={} lost={} fec={} concealed={} late={} skipped={} talkspurts={} decode_us={} audio_us={} decode_cpu_pct={:.3}",
            total.received,
            total.lost,
            total.fec,
            total.concealed,
            total.late,
            total.skipped,
            self.talkspurts,
            decode_us,
            audio_us,
            if audio_us == 0 { 0.0 } else { decode_us as f64 * 100.0 / audio_us as f64 }
        );
        tracing::info!(
            received = total.received,
            lost = total.lost,
            fec = total.fec,
            concealed = total.concealed,
            late = total.late,
            "playback ended"
        );
    }

    fn check_flush(&mut self) {
        let generation = self.generation.load(Ordering::Acquire);
        if generation == self.seen_generation {
            return;
        }
        self.seen_generation = generation;
        let flushed_at = self.flushed_at.load(Ordering::Acquire);
        self.ignore_before = match flushed_at {
            0 => 0,
            at => self.clock.session_from_local(at).unwrap_or(0),
        };
        let why = self.reason.lock().map(|r| *r).unwrap_or("");
        let was_playing = self.jitter.is_playing();
        self.end_talkspurt();
        self.jitter.flush();
        self.decoder.reset_state().ok();
        if let Err(error) = self.sink.discard() {
            tracing::warn!(error = %crate::report::error_chain(&error), "cannot stop the speaker");
        }
        self.quiet_frames = u64::MAX / 2;
        report!(self.report, "flush", "stopped_us={} why={why}", now_us());
        if was_playing {
            tracing::info!(why, "the session's sound stopped here");
        }
    }

    /// Writes a talkspurt line if one ran.
    fn end_talkspurt(&mut self) {
        let counts = self.jitter.take_talkspurt();
        if counts == Counts::default() {
            return;
        }
        self.talkspurts += 1;
        report!(
            self.report,
            "talkspurt",
            "received={} lost={} fec={} concealed={} late={} skipped={} target_us={} decode_us={}",
            counts.received,
            counts.lost,
            counts.fec,
            counts.concealed,
            counts.late,
            counts.skipped,
            self.jitter.target_us(),
            self.talkspurt_decode.as_micros()
        );
        self.talkspurt_decode = Duration::ZERO;
    }

    fn play_slot(&mut self) {
        if !self.jitter.is_playing() {
            let video = self.clock.video_offset();
            let delay = self.sink.delay_us();
            let output_delay = self.output_delay();
            if !self.jitter.begin(video, output_delay, now_us()) {
                return;
            }
            // Queue the lead (less what is still playing) as silence first.
            let lead = self.sink.lead_us();
            if lead > delay {
                let frames = ((lead - delay) * SAMPLE_RATE as u64 / 1_000_000) as usize;
                let silence = vec![0i16; frames * PLAYBACK_CHANNELS];
                self.write(&silence);
            }
            report!(
                self.report,
                "start",
                "local_us={} playout_us={} target_us={} video_offset_us={}",
                now_us(),
                self.jitter.playout().unwrap_or(0),
                self.jitter.target_us(),
                video.map_or("-".to_owned(), |v| v.to_string())
            );
        }
        let frame = FRAME_SAMPLES * PLAYBACK_CHANNELS;
        let started = Instant::now();
        let (len, time_us, seq) = match self.jitter.next_slot() {
            Slot::Play(packet) => {
                let len = match self.decoder.decode(&packet.opus, &mut self.pcm, false) {
                    Ok(samples) => samples * PLAYBACK_CHANNELS,
                    Err(error) => {
                        tracing::debug!(%error, seq = packet.seq, "undecodable Opus packet; concealing");
                        self.conceal(1.0, 1.0)
                    }
                };
                (len, Some(packet.time_us), Some(packet.seq))
            }
            Slot::Fec { time_us, opus } => {
                let len = match self.decoder.decode(&opus, &mut self.pcm[..frame], true) {
                    Ok(samples) => samples * PLAYBACK_CHANNELS,
                    Err(_) => self.conceal(1.0, 1.0),
                };
                (len, Some(time_us), None)
            }
            Slot::Conceal { gain_from, gain_to } => (self.conceal(gain_from, gain_to), None, None),
            Slot::End => {
                self.end_talkspurt();
                self.quiet_frames = u64::MAX / 2;
                return;
            }
        };
        let took = started.elapsed();
        self.decode += took;
        self.talkspurt_decode += took;
        self.slots += 1;
        let samples = std::mem::take(&mut self.pcm);
        let len = len.min(samples.len());
        self.write(&samples[..len]);
        let handed = now_us();
        // Queued ahead of this chunk's first sample.
        let chunk_us = (len / PLAYBACK_CHANNELS) as u64 * 1_000_000 / SAMPLE_RATE as u64;
        let ahead = self.sink.delay_us().saturating_sub(chunk_us);
        self.onsets(&samples[..len], time_us, handed, ahead);
        self.pcm = samples;
        if let (Some(seq), Some(time_us)) = (seq, time_us) {
            report!(
                self.report,
                "packet",
                "seq={seq} time_us={time_us} handed_us={handed} latency_us={} delay_us={ahead} target_us={}",
                handed as i64 - time_us as i64,
                self.jitter.target_us()
            );
        }
    }

    /// How long after it is handed over a talkspurt's first sample is heard: what the sink
    /// holds, at least the lead of silence queued before it.
    fn output_delay(&mut self) -> u64 {
        self.sink.delay_us().max(self.sink.lead_us())
    }

    /// Packet-loss concealment into `pcm`, faded from `from` to `to`; returns its length.
    fn conceal(&mut self, from: f32, to: f32) -> usize {
        let frame = FRAME_SAMPLES * PLAYBACK_CHANNELS;
        let len = match self.decoder.decode(&[], &mut self.pcm[..frame], false) {
            Ok(samples) => samples * PLAYBACK_CHANNELS,
            Err(_) => {
                self.pcm[..frame].fill(0);
                frame
            }
        };
        if from != 1.0 || to != 1.0 {
            let frames = len / PLAYBACK_CHANNELS;
            for (i, pair) in self.pcm[..len]
                .chunks_exact_mut(PLAYBACK_CHANNELS)
                .enumerate()
            {
                let gain = from + (to - from) * (i + 1) as f32 / frames as f32;
                for s in pair {
                    *s = (*s as f32 * gain) as i16;
                }
            }
        }
        len
    }

    fn write(&mut self, samples: &[i16]) {
        match self.sink.write(samples) {
            Ok(()) => self.write_failed = false,
            Err(error) => {
                if !self.write_failed {
                    tracing::warn!(error = %crate::report::error_chain(&error), "cannot play sound");
                }
                self.write_failed = true;
            }
        }
    }

    /// Reports silence → sound in what was just handed to the sink at `handed` (heard after
    /// `delay`), the first sample of which is stamped `time_us` (if it came from a packet).
    fn onsets(&mut self, samples: &[i16], time_us: Option<u64>, handed: u64, delay: u64) {
        for (i, frame) in samples.chunks_exact(PLAYBACK_CHANNELS).enumerate() {
            let loud = frame.iter().any(|s| s.unsigned_abs() >= ONSET_LEVEL as u16);
            if !loud {
                self.quiet_frames += 1;
                continue;
            }
            if self.quiet_frames >= ONSET_QUIET_FRAMES {
                let offset = i as u64 * 1_000_000 / SAMPLE_RATE as u64;
                report!(
                    self.report,
                    "onset",
                    "time_us={} handed_us={} heard_us={}",
                    time_us.map_or("-".to_owned(), |t| (t + offset).to_string()),
                    handed,
                    handed + delay + offset
                );
            }
            self.quiet_frames = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::wav::{parse, WavSink};

    /// The card leaves mid-tone: what the speaker holds is dropped at once, and sound the
    /// session made before (still on its way) is not played.
    #[test]
    fn a_flush_stops_the_sound_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.wav");
        let sink = WavSink::create(&path).unwrap();
        let origin = sink.origin_us();
        let clock = Arc::new(ClockMap::default());
        let mut playback = Playback::start(Box::new(sink), clock, None).unwrap();
        let mut encoder =
            opus::Encoder::new(SAMPLE_RATE, Channels::Stereo, opus::Application::Audio).unwrap();
        let tone: Vec<i16> = (0..FRAME_SAMPLES * 40)
            .flat_map(|i| {
                let v = (i as f64 * 440.0 * std::f64::consts::TAU / 48_000.0).sin();
                [(v * 10_000.0) as i16; 2]
            })
            .collect();
        let mut flushed_at = 0;
        let mut stale = Vec::new();
        for (seq, chunk) in tone.chunks_exact(FRAME_SAMPLES * 2).enumerate() {
            let packet = AudioPacket {
                seq: seq as u64,
                time_us: now_us(),
                opus: encoder.encode_vec(chunk, 1000).unwrap(),
            };
            if seq < 30 {
                playback.push(packet, now_us());
                std::thread::sleep(Duration::from_millis(10));
            } else {
                stale.push(packet);
            }
            if seq == 29 {
                flushed_at = now_us();
                playback.flush("test", true);
            }
        }
        // Made before the card left (in flight), arriving after: not played.
        for (i, mut packet) in stale.into_iter().enumerate() {
            packet.time_us = flushed_at - 5_000 + i as u64 * 100;
            playback.push(packet, now_us());
        }
        std::thread::sleep(Duration::from_millis(200));
        playback.shutdown();

        let wav = parse(&std::fs::read(&path).unwrap()).unwrap();
        let last_loud = wav
            .samples
            .chunks_exact(2)
            .rposition(|f| f[0].unsigned_abs() > 3_000)
            .expect("the tone played");
        let first_loud = wav
            .samples
            .chunks_exact(2)
            .position(|f| f[0].unsigned_abs() > 3_000)
            .unwrap();
        let heard_until = origin + last_loud as u64 * 1_000_000 / 48_000;
        let stopped_after = heard_until as i64 - flushed_at as i64;
        eprintln!("sound stopped {stopped_after} µs after the flush");
        // Within one packet time plus a loaded machine's scheduling; never the 400 ms of
        // stale packets.
        assert!(stopped_after < 60_000, "{stopped_after} µs");
        // Up to then it played (about 300 ms minus the start-up delay).
        assert!(
            last_loud - first_loud > 48_000 / 10,
            "{first_loud}..{last_loud}"
        );
    }
}
