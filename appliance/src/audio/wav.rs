//! The headless backend (`--audio-out-wav`, `--audio-in-wav`): a WAV file stands in for the
//! speaker and the microphone, for tests and demos without sound hardware.
//!
//! Both run on their own clock like a sound card would, so timing and latency figures taken
//! with them mean something: the sink consumes 480 frames per 10 ms (a writer blocks while its
//! 30 ms "device buffer" is full, and time nobody wrote for is recorded as silence, as a
//! speaker is silent), and the source delivers 480 frames per 10 ms. Sample `n` of the output
//! file was "heard" at local time `origin + n / 48 kHz` (the report's `wav-origin` line).
//!
//! The header's sizes are rewritten every second and on close, so the file is a valid WAV even
//! when the appliance is killed (holding at most the last second less than was written).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wayray_protocol::audio::{PLAYBACK_CHANNELS, SAMPLE_RATE};

use super::clock::now_us;
use super::{AudioError, AudioSink, AudioSource};

const HEADER_LEN: u64 = 44;
/// Bytes per stereo 16-bit frame.
const FRAME_BYTES: u64 = 2 * PLAYBACK_CHANNELS as u64;
/// The pretend device's buffer: what may be queued ahead of the clock.
const BUFFER_FRAMES: u64 = SAMPLE_RATE as u64 * 30 / 1000;
/// Queued ahead at the start of a talkspurt, so a late wake-up of the playback thread (up to
/// this long) is no gap.
const LEAD_US: u64 = 20_000;
/// Largest input file read into memory.
const MAX_INPUT_BYTES: u64 = 256 << 20;

fn frames_to_us(frames: u64) -> u64 {
    frames * 1_000_000 / SAMPLE_RATE as u64
}

/// A canonical 44-byte PCM header for `data_bytes` of 16-bit samples.
fn header(channels: u16, data_bytes: u64) -> [u8; HEADER_LEN as usize] {
    let data = data_bytes.min(u32::MAX as u64 - 36) as u32;
    let block = channels * 2;
    let mut h = [0u8; HEADER_LEN as usize];
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&(36 + data).to_le_bytes());
    h[8..16].copy_from_slice(b"WAVEfmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&1u16.to_le_bytes());
    h[22..24].copy_from_slice(&channels.to_le_bytes());
    h[24..28].copy_from_slice(&SAMPLE_RATE.to_le_bytes());
    h[28..32].copy_from_slice(&(SAMPLE_RATE * block as u32).to_le_bytes());
    h[32..34].copy_from_slice(&block.to_le_bytes());
    h[34..36].copy_from_slice(&16u16.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data.to_le_bytes());
    h
}

/// What the disk thread does to the output file, in order.
enum DiskOp {
    Append(Vec<u8>),
    /// Rewrite the header for this many data bytes.
    Header(u64),
    /// Cut the file to this length (sound not yet heard when the session left).
    Truncate(u64),
}

/// Chunks waiting for the disk (2 s): the playback thread, which stands for the sound card,
/// never waits for a busy disk.
const DISK_BACKLOG: usize = 200;

/// The thread that writes the output file.
struct Disk {
    sender: Option<SyncSender<DiskOp>>,
    thread: Option<JoinHandle<()>>,
    /// The first write error, for the playback thread to report.
    error: Arc<Mutex<Option<std::io::Error>>>,
}

impl Disk {
    fn start(mut file: File) -> Result<Self, AudioError> {
        let (sender, receiver) = mpsc::sync_channel::<DiskOp>(DISK_BACKLOG);
        let error = Arc::new(Mutex::new(None));
        let failed = error.clone();
        let thread = std::thread::Builder::new()
            .name("wrclient-wav".into())
            .spawn(move || {
                for op in receiver {
                    let result = match op {
                        DiskOp::Append(bytes) => file.write_all(&bytes),
                        DiskOp::Header(data) => {
                            file.write_all_at(&header(PLAYBACK_CHANNELS as u16, data), 0)
                        }
                        DiskOp::Truncate(len) => file
                            .set_len(len)
                            .and_then(|()| file.seek(SeekFrom::Start(len)).map(|_| ())),
                    };
                    if let Err(e) = result {
                        if let Ok(mut slot) = failed.lock() {
                            slot.get_or_insert(e);
                        }
                    }
                }
                let _ = file.flush();
            })
            .map_err(AudioError::Thread)?;
        Ok(Self {
            sender: Some(sender),
            thread: Some(thread),
            error,
        })
    }

    fn send(&self, op: DiskOp) {
        if let Some(sender) = &self.sender {
            let _ = sender.send(op);
        }
    }

    fn take_error(&self) -> Option<std::io::Error> {
        self.error.lock().ok().and_then(|mut e| e.take())
    }

    /// Waits until everything is on disk.
    fn finish(&mut self) {
        self.sender = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The speaker as a 48 kHz stereo 16-bit WAV file.
pub struct WavSink {
    disk: Disk,
    path: PathBuf,
    origin: Instant,
    origin_us: u64,
    /// Frames in the file.
    frames: u64,
    /// Frames the header last counted.
    header_frames: u64,
}

impl WavSink {
    /// Creates (or truncates) `path`; its clock starts now.
    pub fn create(path: &Path) -> Result<Self, AudioError> {
        let io = |source| AudioError::File {
            path: path.to_owned(),
            source,
        };
        let mut file = File::create(path).map_err(io)?;
        file.write_all(&header(PLAYBACK_CHANNELS as u16, 0))
            .map_err(io)?;
        Ok(Self {
            disk: Disk::start(file)?,
            path: path.to_owned(),
            origin: Instant::now(),
            origin_us: now_us(),
            frames: 0,
            header_frames: 0,
        })
    }

    /// Local CLOCK_MONOTONIC µs at which the file's first sample was "heard".
    pub fn origin_us(&self) -> u64 {
        self.origin_us
    }

    /// Frames the pretend device has played by now.
    fn clock_frames(&self) -> u64 {
        self.origin.elapsed().as_micros() as u64 * SAMPLE_RATE as u64 / 1_000_000
    }

    fn io(&self, source: std::io::Error) -> AudioError {
        AudioError::File {
            path: self.path.clone(),
            source,
        }
    }

    fn append(&mut self, bytes: Vec<u8>) -> Result<(), AudioError> {
        if let Some(e) = self.disk.take_error() {
            return Err(self.io(e));
        }
        self.frames += bytes.len() as u64 / FRAME_BYTES;
        self.disk.send(DiskOp::Append(bytes));
        if self.frames >= self.header_frames + SAMPLE_RATE as u64 {
            self.update_header()?;
        }
        Ok(())
    }

    /// Silence up to the clock: what the speaker emitted while nobody wrote.
    fn catch_up(&mut self) -> Result<(), AudioError> {
        let now = self.clock_frames();
        while self.frames < now {
            let n = (now - self.frames).min(4800);
            self.append(vec![0u8; (n * FRAME_BYTES) as usize])?;
        }
        Ok(())
    }

    fn update_header(&mut self) -> Result<(), AudioError> {
        self.disk.send(DiskOp::Header(self.frames * FRAME_BYTES));
        self.header_frames = self.frames;
        Ok(())
    }
}

impl AudioSink for WavSink {
    fn write(&mut self, samples: &[i16]) -> Result<(), AudioError> {
        self.catch_up()?;
        let n = (samples.len() / PLAYBACK_CHANNELS) as u64;
        loop {
            let queued = self.frames.saturating_sub(self.clock_frames());
            if queued + n <= BUFFER_FRAMES.max(n) {
                break;
            }
            std::thread::sleep(Duration::from_micros(frames_to_us(
                queued + n - BUFFER_FRAMES,
            )));
        }
        let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        self.append(bytes)
    }

    fn delay_us(&mut self) -> u64 {
        frames_to_us(self.frames.saturating_sub(self.clock_frames()))
    }

    fn lead_us(&self) -> u64 {
        LEAD_US
    }

    fn discard(&mut self) -> Result<(), AudioError> {
        let now = self.clock_frames();
        if self.frames > now {
            // Not yet heard: never was.
            self.frames = now;
            // Appending continues at the new end (the file is not in append mode).
            self.disk
                .send(DiskOp::Truncate(HEADER_LEN + now * FRAME_BYTES));
            self.update_header()?;
        }
        Ok(())
    }

    fn close(&mut self) -> Result<(), AudioError> {
        // Whatever is queued plays out, then the silence up to now.
        self.catch_up()?;
        self.update_header()?;
        self.disk.finish();
        match self.disk.take_error() {
            Some(e) => Err(self.io(e)),
            None => Ok(()),
        }
    }
}

/// A WAV file's samples, mixed down to mono: the microphone's input, played in a loop.
#[derive(Debug, Clone)]
pub struct WavClip {
    samples: Arc<Vec<i16>>,
}

impl WavClip {
    /// Reads a 48 kHz 16-bit PCM WAV file (any number of channels, mixed down to mono).
    pub fn load(path: &Path) -> Result<Self, AudioError> {
        let bad = |reason: String| AudioError::Format {
            path: path.to_owned(),
            reason,
        };
        let file = File::open(path).map_err(|source| AudioError::File {
            path: path.to_owned(),
            source,
        })?;
        let mut bytes = Vec::new();
        file.take(MAX_INPUT_BYTES)
            .read_to_end(&mut bytes)
            .map_err(|source| AudioError::File {
                path: path.to_owned(),
                source,
            })?;
        let wav = parse(&bytes).map_err(bad)?;
        if wav.rate != SAMPLE_RATE {
            return Err(bad(format!(
                "{} Hz; the microphone needs {SAMPLE_RATE} Hz",
                wav.rate
            )));
        }
        let channels = wav.channels as usize;
        let mono: Vec<i16> = wav
            .samples
            .chunks_exact(channels)
            .map(|f| (f.iter().map(|&s| s as i32).sum::<i32>() / channels as i32) as i16)
            .collect();
        if mono.is_empty() {
            return Err(bad("no samples".into()));
        }
        Ok(Self {
            samples: Arc::new(mono),
        })
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }
}

/// A parsed 16-bit PCM WAV file.
#[derive(Debug, PartialEq)]
pub struct Wav {
    pub rate: u32,
    pub channels: u16,
    /// Interleaved.
    pub samples: Vec<i16>,
}

/// Parses a RIFF/WAVE file of 16-bit PCM. A data size of 0 or past the end (a writer that was
/// killed) means "to the end of the file".
pub fn parse(bytes: &[u8]) -> Result<Wav, String> {
    let u16_at = |b: &[u8], i: usize| b.get(i..i + 2).map(|s| u16::from_le_bytes([s[0], s[1]]));
    let u32_at = |b: &[u8], i: usize| {
        b.get(i..i + 4)
            .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    };
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err("not a RIFF/WAVE file".into());
    }
    let mut at = 12;
    let mut format = None;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let size = u32_at(bytes, at + 4).unwrap_or(0) as usize;
        let body = at + 8;
        if id == b"fmt " {
            let tag = u16_at(bytes, body).ok_or("short fmt chunk")?;
            let channels = u16_at(bytes, body + 2).ok_or("short fmt chunk")?;
            let rate = u32_at(bytes, body + 4).ok_or("short fmt chunk")?;
            let bits = u16_at(bytes, body + 14).ok_or("short fmt chunk")?;
            if tag != 1 && tag != 0xFFFE {
                return Err(format!("format tag {tag:#x} is not PCM"));
            }
            if bits != 16 {
                return Err(format!("{bits}-bit samples; 16-bit PCM needed"));
            }
            if channels == 0 {
                return Err("no channels".into());
            }
            format = Some((rate, channels));
        } else if id == b"data" {
            let (rate, channels) = format.ok_or("data before the fmt chunk")?;
            let available = bytes.len() - body;
            let len = if size == 0 || size > available {
                available
            } else {
                size
            };
            let frame = 2 * channels as usize;
            let len = len / frame * frame;
            let samples = bytes[body..body + len]
                .chunks_exact(2)
                .map(|s| i16::from_le_bytes([s[0], s[1]]))
                .collect();
            return Ok(Wav {
                rate,
                channels,
                samples,
            });
        }
        at = body.saturating_add(size).saturating_add(size & 1);
    }
    Err("no data chunk".into())
}

/// The microphone as a looped WAV clip, delivered at real-time pace.
pub struct WavSource {
    clip: WavClip,
    position: usize,
    origin: Instant,
    origin_us: u64,
    frames: u64,
}

impl WavSource {
    /// Starts the clip from its beginning; the clock starts now.
    pub fn start(clip: WavClip) -> Self {
        Self {
            clip,
            position: 0,
            origin: Instant::now(),
            origin_us: now_us(),
            frames: 0,
        }
    }
}

impl AudioSource for WavSource {
    fn read(&mut self, samples: &mut [i16]) -> Result<u64, AudioError> {
        let n = samples.len() as u64;
        // Available once its last sample has been "spoken".
        let due = Duration::from_micros(frames_to_us(self.frames + n));
        if let Some(wait) = due.checked_sub(self.origin.elapsed()) {
            std::thread::sleep(wait);
        }
        for s in samples.iter_mut() {
            *s = self.clip.samples[self.position];
            self.position = (self.position + 1) % self.clip.len();
        }
        let captured = self.origin_us + frames_to_us(self.frames);
        self.frames += n;
        Ok(captured)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sink_writes_a_valid_wav_at_real_time_pace_and_the_source_reads_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.wav");
        let mut sink = WavSink::create(&path).unwrap();
        // Valid (empty) from the start.
        let wav = parse(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!((wav.rate, wav.channels, wav.samples.len()), (48_000, 2, 0));

        let started = Instant::now();
        let frame: Vec<i16> = (0..480).flat_map(|i| [i as i16, -(i as i16)]).collect();
        for _ in 0..20 {
            sink.write(&frame).unwrap();
        }
        // 200 ms of sound, of which at most the 30 ms buffer may still be queued.
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(165), "{took:?}");
        assert!(sink.delay_us() <= 30_000);
        sink.close().unwrap();
        let wav = parse(&std::fs::read(&path).unwrap()).unwrap();
        // The time between opening and the first write is silence (a few frames).
        let start = wav.samples.iter().position(|&s| s != 0).unwrap() - 2;
        assert!(start < 4800, "{start}");
        assert!(wav.samples.len() >= start + 20 * 960);
        assert!(wav.samples[start..start + 960] == frame[..]);

        // Read back as a (mixed-down) microphone: left + right cancel out.
        let clip = WavClip::load(&path).unwrap();
        let mut source = WavSource::start(clip);
        let mut buf = [1i16; 480];
        let t0 = Instant::now();
        let first = source.read(&mut buf).unwrap();
        let second = source.read(&mut buf).unwrap();
        assert!(t0.elapsed() >= Duration::from_millis(19));
        assert_eq!(second - first, 10_000);
        assert!(buf.iter().all(|&s| s == 0));
    }

    #[test]
    fn discard_drops_what_was_not_heard_and_idle_time_is_silence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.wav");
        let mut sink = WavSink::create(&path).unwrap();
        let loud = vec![1000i16; 960];
        sink.write(&loud).unwrap();
        sink.write(&loud).unwrap();
        sink.discard().unwrap();
        assert_eq!(sink.delay_us(), 0);
        std::thread::sleep(Duration::from_millis(50));
        sink.write(&loud).unwrap();
        sink.close().unwrap();
        let wav = parse(&std::fs::read(&path).unwrap()).unwrap();
        let frames = wav.samples.len() / 2;
        // Less than the 20 ms written before the discard, then ≥ 50 ms of silence, then 10 ms.
        let loud_frames = wav.samples.chunks(2).filter(|f| f[0] == 1000).count();
        assert!((480..960 + 480).contains(&loud_frames), "{loud_frames}");
        assert!(frames >= 2400 + 480, "{frames}");
    }

    #[test]
    fn parser_accepts_a_killed_writers_file_and_refuses_junk() {
        let mut bytes = header(1, 0).to_vec();
        bytes.extend([1, 0, 2, 0, 3]);
        let wav = parse(&bytes).unwrap();
        assert_eq!(wav.samples, [1, 2]);
        assert!(parse(b"RIFF\0\0\0\0WAVE").is_err());
        assert!(parse(b"junk").is_err());
        let mut eight_bit = header(1, 0);
        eight_bit[34] = 8;
        assert!(parse(&eight_bit).is_err());
    }
}
