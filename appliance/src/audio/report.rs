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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::AudioError;

pub struct Report {
    file: Mutex<File>,
    path: PathBuf,
    failed: AtomicBool,
}

impl Report {
    /// Opens `path` for appending (several runs may share one report).
    pub fn open(path: &Path) -> Result<Arc<Self>, AudioError> {
        let file = File::options()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| AudioError::File {
                path: path.to_owned(),
                source,
            })?;
        Ok(Arc::new(Self {
            file: Mutex::new(file),
            path: path.to_owned(),
            failed: AtomicBool::new(false),
        }))
    }

    /// Writes one line (one write, so lines of the audio threads never interleave).
    pub fn line(&self, kind: &str, fields: std::fmt::Arguments<'_>) {
        let text = format!("{kind} {fields}\n");
        let result = match self.file.lock() {
            Ok(mut file) => file.write_all(text.as_bytes()),
            Err(_) => return,
        };
        if let Err(error) = result {
            if !self.failed.swap(true, Ordering::Relaxed) {
                tracing::warn!(%error, path = %self.path.display(), "cannot write the audio report");
            }
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
