//! The appliance's screen as the protocol loop sees it: a [`DisplaySink`] plus what tests and
//! demos observe of it (the frame log, screenshots, the `--exit-after-frames` count, the count
//! of frames presented that input scripts wait on).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use tokio::sync::watch;
use wayray_protocol::codec::MAX_DIMENSION;
use wayray_protocol::{frame_digest, CursorImage, PhysicalSize, Rect};

use crate::display::{DisplayError, DisplaySink};
use crate::report::error_chain;
use crate::screenshot;

#[derive(Debug, thiserror::Error)]
pub enum ScreenError {
    /// The server asked for a size no appliance screen has; the server is at fault.
    #[error("server sent a {width}x{height} frame; the most this appliance shows is {MAX_DIMENSION}x{MAX_DIMENSION}")]
    Unsupported { width: u32, height: u32 },
    #[error(transparent)]
    Display(#[from] DisplayError),
    #[error("cannot open frame log {}", path.display())]
    OpenFrameLog {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write frame log {}", path.display())]
    WriteFrameLog {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What a screenshot is of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Screenshot {
    pub path: PathBuf,
    /// Draw the cursor over the picture. Off by default, so a screenshot shows exactly the
    /// server's framebuffer and stays comparable with the server's.
    pub with_cursor: bool,
}

pub struct Screen<S> {
    sink: S,
    size: Option<(u32, u32)>,
    frame_log: Option<(File, PathBuf)>,
    screenshot: Option<Screenshot>,
    frames_presented: watch::Sender<u64>,
    exit_after_frames: Option<u64>,
    /// `--physical-size`, announced instead of the sink's.
    physical_size: Option<PhysicalSize>,
}

impl<S: DisplaySink> Screen<S> {
    /// Opens the frame log for appending (a test may run several appliances against one log).
    pub fn new(
        sink: S,
        frame_log: Option<&Path>,
        screenshot: Option<Screenshot>,
        exit_after_frames: Option<u64>,
    ) -> Result<Self, ScreenError> {
        let frame_log = frame_log
            .map(|path| {
                File::options()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map(|file| (file, path.to_owned()))
                    .map_err(|source| ScreenError::OpenFrameLog {
                        path: path.to_owned(),
                        source,
                    })
            })
            .transpose()?;
        Ok(Self {
            sink,
            size: None,
            frame_log,
            screenshot,
            frames_presented: watch::Sender::new(0),
            exit_after_frames,
            physical_size: None,
        })
    }

    /// Announces `size` as the screen's physical size whatever the display reports (a headless
    /// display pretending a monitor; a monitor whose EDID lies).
    pub fn with_physical_size(mut self, size: Option<PhysicalSize>) -> Self {
        self.physical_size = size;
        self
    }

    /// The screen's physical size as the server should hear it: `--physical-size`, else the
    /// display's own, else unknown.
    pub fn physical_size(&self) -> Option<PhysicalSize> {
        self.physical_size.or_else(|| self.sink.physical_size())
    }

    /// Makes the sink `width`×`height`; only an actual change reaches it, so a reconnect to a
    /// session of the same size keeps the old picture up until the key frame arrives.
    pub fn resize(&mut self, width: u32, height: u32) -> Result<(), ScreenError> {
        if self.size == Some((width, height)) {
            return Ok(());
        }
        if !(1..=MAX_DIMENSION).contains(&width) || !(1..=MAX_DIMENSION).contains(&height) {
            return Err(ScreenError::Unsupported { width, height });
        }
        self.sink.configure(width, height)?;
        self.size = Some((width, height));
        Ok(())
    }

    /// Shows decoded frame `seq` whose `damage` changed, and logs it.
    pub fn present(
        &mut self,
        seq: u64,
        pixels: &[u8],
        width: u32,
        height: u32,
        damage: &[Rect],
    ) -> Result<(), ScreenError> {
        let full;
        let damage = if self.size == Some((width, height)) {
            damage
        } else {
            // A new size invalidates everything the sink had.
            self.resize(width, height)?;
            full = [Rect::new(0, 0, width, height)];
            &full
        };
        self.sink.present(pixels, width, height, damage)?;
        self.frames_presented.send_modify(|n| *n += 1);

        // Hashing a whole framebuffer costs about a millisecond at 1080p: only when someone looks.
        if self.frame_log.is_some() || tracing::enabled!(tracing::Level::DEBUG) {
            let line = frame_log_line(seq, frame_digest(pixels), width, height);
            tracing::debug!(frame = %line.trim_end(), rects = damage.len(), "presented");
            if let Some((file, path)) = &mut self.frame_log {
                // One write per line, so lines from concurrent writers never interleave.
                file.write_all(line.as_bytes())
                    .and_then(|()| file.flush())
                    .map_err(|source| ScreenError::WriteFrameLog {
                        path: path.clone(),
                        source,
                    })?;
            }
        }
        Ok(())
    }

    pub fn show_status(&mut self, text: &str) {
        self.sink.show_status(text);
    }

    /// The size the screen asks the server for, `None` when any size will do.
    pub fn native_size(&self) -> Option<(u32, u32)> {
        self.sink.native_size()
    }

    /// Follows a hotplug: the sink looks at what is attached now. Returns the new native size
    /// when it changed. A failure is logged, never returned: a monitor that cannot be driven
    /// must not end the session (the next hotplug tries again).
    pub fn rescan(&mut self) -> Option<(u32, u32)> {
        match self.sink.rescan() {
            Ok(Some((width, height))) => {
                tracing::info!(width, height, "the display changed size");
                Some((width, height))
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %error_chain(&e), "cannot follow the display change");
                None
            }
        }
    }

    /// An input script's `screen`: as if a `width`×`height` monitor replaced the screen, then
    /// the same rescan a real hotplug gets. Returns the new native size when it changed.
    pub fn simulate_hotplug(&mut self, width: u32, height: u32) -> Option<(u32, u32)> {
        if !self.sink.simulate_hotplug(width, height) {
            tracing::warn!(
                width,
                height,
                "this display cannot pretend another screen was plugged in; ignoring `screen`"
            );
            return None;
        }
        self.rescan()
    }

    /// Shows the server's cursor image (validated by the caller), or hides the cursor. Failures
    /// are logged: a missing cursor is no reason to drop the session.
    pub fn set_cursor(&mut self, image: Option<&CursorImage>) {
        if let Err(e) = self.sink.set_cursor(image) {
            tracing::warn!(error = %error_chain(&e), "cannot change the cursor");
        }
    }

    /// Moves the cursor to the local pointer position (output pixels).
    pub fn move_cursor(&mut self, (x, y): (f64, f64)) {
        // Pointer positions are clamped to the output, so they fit an i32.
        if let Err(e) = self.sink.move_cursor(x.floor() as i32, y.floor() as i32) {
            tracing::warn!(error = %error_chain(&e), "cannot move the cursor");
        }
    }

    /// `--exit-after-frames` reached.
    pub fn frame_budget_spent(&self) -> bool {
        self.exit_after_frames
            .is_some_and(|n| self.frames_presented() >= n)
    }

    pub fn frames_presented(&self) -> u64 {
        *self.frames_presented.borrow()
    }

    /// Follows the count of frames presented (input scripts' `wait-frame`).
    pub fn watch_frames(&self) -> watch::Receiver<u64> {
        self.frames_presented.subscribe()
    }

    /// Writes the `--screenshot`, if one was asked for and there is a picture. Failures are
    /// logged, not returned: a screenshot is never a reason to drop the session.
    pub fn write_screenshot(&self) {
        let Some(Screenshot { path, with_cursor }) = &self.screenshot else {
            return;
        };
        let Some(frame) = self.sink.contents() else {
            tracing::warn!(path = %path.display(), "nothing on screen yet; no screenshot written");
            return;
        };
        let cursor = self.sink.cursor().filter(|_| *with_cursor);
        match screenshot::write_png(path, frame, cursor) {
            Ok(()) => tracing::info!(
                path = %path.display(),
                width = frame.width,
                height = frame.height,
                "wrote screenshot"
            ),
            Err(e) => tracing::error!(error = %error_chain(&e), "screenshot failed"),
        }
    }
}

fn frame_log_line(seq: u64, digest: u64, width: u32, height: u32) -> String {
    format!("{seq} {digest:016x} {width}x{height}\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::display::HeadlessSink;

    #[test]
    fn frame_log_line_format() {
        assert_eq!(
            frame_log_line(7, 0xabc, 1280, 800),
            "7 0000000000000abc 1280x800\n"
        );
    }

    #[test]
    fn presents_log_lines_and_counts_frames() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("frames.log");
        let mut screen = Screen::new(HeadlessSink::new(), Some(&log), None, Some(2)).unwrap();
        let pixels = vec![1u8; 2 * 2 * 4];
        // No configure before: a frame's size alone sets the screen up.
        screen.present(1, &pixels, 2, 2, &[]).unwrap();
        assert!(!screen.frame_budget_spent());
        screen.present(2, &pixels, 2, 2, &[]).unwrap();
        assert!(screen.frame_budget_spent());

        let digest = frame_digest(&pixels);
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            format!("1 {digest:016x} 2x2\n2 {digest:016x} 2x2\n")
        );
        // The size change made the first frame a full update.
        assert_eq!(screen.sink.contents().unwrap().pixels, &pixels[..]);
    }

    #[test]
    fn absurd_sizes_are_refused_before_allocating() {
        let mut screen = Screen::new(HeadlessSink::new(), None, None, None).unwrap();
        assert!(matches!(
            screen.resize(100_000, 100_000),
            Err(ScreenError::Unsupported { .. })
        ));
        assert!(matches!(
            screen.resize(0, 10),
            Err(ScreenError::Unsupported { .. })
        ));
    }
}
