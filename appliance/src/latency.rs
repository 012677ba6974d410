//! `--latency-log`: input-to-photon time as the appliance sees it. For each key press sent, the
//! time from writing it to the input stream until the next frame that changed something is on
//! screen, so a benchmark measures the whole loop (network, server, client, encoder, decoder).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum LatencyError {
    #[error("cannot open latency log {}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write latency log {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub struct LatencyLog {
    file: File,
    path: PathBuf,
    /// Key presses sent and not yet answered by a frame: (evdev keycode, when written).
    pending: Vec<(u32, Instant)>,
}

impl LatencyLog {
    /// Opens `path` for appending (a benchmark may run several appliances against one log).
    pub fn open(path: &Path) -> Result<Self, LatencyError> {
        let file = File::options()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| LatencyError::Open {
                path: path.to_owned(),
                source,
            })?;
        Ok(Self {
            file,
            path: path.to_owned(),
            pending: Vec::new(),
        })
    }

    /// A key press was just written to the input stream.
    pub fn key_pressed(&mut self, keycode: u32) {
        self.pending.push((keycode, Instant::now()));
    }

    /// A frame with at least one tile is on screen: it answers every press still pending.
    pub fn frame_presented(&mut self) -> Result<(), LatencyError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let now = Instant::now();
        for (keycode, sent) in self.pending.drain(..) {
            let line = latency_line(keycode, now.duration_since(sent).as_nanos());
            // One write per line, unbuffered: lines are there for a reader at once.
            self.file
                .write_all(line.as_bytes())
                .map_err(|source| LatencyError::Write {
                    path: self.path.clone(),
                    source,
                })?;
        }
        Ok(())
    }

    /// The connection ended: presses sent on it will never be answered.
    pub fn forget_pending(&mut self) {
        self.pending.clear();
    }
}

fn latency_line(keycode: u32, nanos: u128) -> String {
    format!("{keycode} {nanos}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_press_once_a_frame_arrives() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("latency.log");
        let mut log = LatencyLog::open(&path).unwrap();
        log.frame_presented().unwrap();
        log.key_pressed(30);
        log.key_pressed(48);
        log.frame_presented().unwrap();
        log.frame_presented().unwrap();
        log.key_pressed(1);
        log.forget_pending();
        log.frame_presented().unwrap();

        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<(u32, u128)> = text
            .lines()
            .map(|l| {
                let (k, ns) = l.split_once(' ').unwrap();
                (k.parse().unwrap(), ns.parse().unwrap())
            })
            .collect();
        assert_eq!(lines.iter().map(|l| l.0).collect::<Vec<_>>(), [30, 48]);
        assert!(lines.iter().all(|l| l.1 < 10_000_000_000));
        assert_eq!(latency_line(30, 1234), "30 1234\n");
    }
}
