//! `--audio-report FILE`: what the audio path did, one line per event, for tests and the
//! bench. Every line is `KIND key=value …`; times are local CLOCK_MONOTONIC µs (`*_us`) or the
//! session clock (`time_us`). On one host (tests, the bench) both are the same clock, so
//! `latency_us` is the real end-to-end latency from the session writing a sample to the
//! appliance handing it to the sink; across hosts it also holds the clocks' difference.
//!
//! * `wav-origin local_us=L`: the output WAV's sample n was heard at L + n/48000 s.
//! * `frame seq= time_us= presented_us=`: a frame stamped `time_us` went on screen.
//! * `start time_us= handed_us= playout_us= target_us= video_offset_us=`: a talkspurt
//!   starts (its first packet handed to the sink at `handed_us`).
//! * `packet seq= time_us= handed_us= latency_us= delay_us= target_us=`: a packet's first
//!   sample went to the sink at `handed_us` (to be heard `delay_us` later).
//! * `onset time_us= handed_us= heard_us=`: silence → sound at the sink (first sample above
//!   −30 dBFS after ≥ 100 ms below it), with the session time of that sample.
//! * `talkspurt received= lost= fec= concealed= late= skipped= target_us=
//!   decode_us=`: a talkspurt
//!   ended (faded out, or flushed when the session left).
//! * `flush stopped_us= why=`: the session's sound stopped here (card out, connection ended):
//!   what the sink had queued was dropped at `stopped_us`.
//! * `mic-open local_us=` / `mic-close local_us= packets=`: the microphone.
//! * `summary received= lost= fec= concealed= late= skipped= talkspurts= decode_us= audio_us=
//!   decode_cpu_pct=`: at exit.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::AudioError;

/// Lines waiting for the disk: the audio threads never wait for it (a write that stalls on a
/// busy disk would be a gap in the sound), unless this many are behind.
const BACKLOG: usize = 8192;

pub struct Report {
    sender: Mutex<Option<SyncSender<String>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Report {
    /// Opens `path` for appending (several runs may share one report); a thread writes it.
    pub fn open(path: &Path) -> Result<Arc<Self>, AudioError> {
        let mut file = File::options()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| AudioError::File {
                path: path.to_owned(),
                source,
            })?;
        let (sender, receiver) = mpsc::sync_channel::<String>(BACKLOG);
        let path: PathBuf = path.to_owned();
        let writer = std::thread::Builder::new()
            .name("wrclient-audio-report".into())
            .spawn(move || {
                let mut failed = false;
                for line in receiver {
                    // One write per line, so a reader never sees half a line.
                    if let Err(error) = file.write_all(line.as_bytes()) {
                        if !failed {
                            tracing::warn!(%error, path = %path.display(), "cannot write the audio report");
                        }
                        failed = true;
                    }
                }
            })
            .map_err(AudioError::Thread)?;
        Ok(Arc::new(Self {
            sender: Mutex::new(Some(sender)),
            writer: Mutex::new(Some(writer)),
        }))
    }

    /// Queues one line.
    pub fn line(&self, kind: &str, fields: std::fmt::Arguments<'_>) {
        let sender = match self.sender.lock() {
            Ok(sender) => sender.clone(),
            Err(_) => return,
        };
        if let Some(sender) = sender {
            let _ = sender.send(format!("{kind} {fields}\n"));
        }
    }

    /// Writes what is queued and stops the writer (at exit, after the audio threads ended).
    pub fn finish(&self) {
        if let Ok(mut sender) = self.sender.lock() {
            sender.take();
        }
        let writer = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(writer) = writer {
            let _ = writer.join();
        }
    }
}

/// Writes a line to an optional report.
macro_rules! report {
    ($report:expr, $kind:literal, $($fmt:tt)*) => {
        if let Some(report) = &$report {
            report.line($kind, format_args!($($fmt)*));
        }
    };
}
pub(crate) use report;
