//! A screen in memory: keeps its own copy of the framebuffer, updated only where frames say it
//! changed, exactly as a DRM sink updates its scanout buffer, and the cursor beside it as a
//! cursor plane would hold it. Tests and demos look at it through screenshots; statuses go to
//! the log. It has no size of its own (any session size will do) until an input script's
//! `screen` pretends a monitor was plugged in ([`DisplaySink::simulate_hotplug`]), which the
//! next [`DisplaySink::rescan`] then finds, as the DRM sink finds a real one.

use wayray_protocol::{CursorImage, Rect, BYTES_PER_PIXEL};

use super::{CursorView, DisplayError, DisplaySink, FrameView};

#[derive(Debug, Default)]
pub struct HeadlessSink {
    width: u32,
    height: u32,
    pixels: Vec<u8>,
    cursor: Option<CursorImage>,
    cursor_at: (i32, i32),
    /// The size the appliance asks the server for, as the last rescan found it.
    native: Option<(u32, u32)>,
    /// The pretend screen plugged in since, if any.
    attached: Option<(u32, u32)>,
}

impl HeadlessSink {
    pub fn new() -> Self {
        Self::default()
    }
}

impl DisplaySink for HeadlessSink {
    fn configure(&mut self, width: u32, height: u32) -> Result<(), DisplayError> {
        tracing::debug!(width, height, "headless screen configured");
        self.width = width;
        self.height = height;
        // A fresh mode starts black, like a CRTC's new framebuffer.
        self.pixels = vec![0; width as usize * height as usize * BYTES_PER_PIXEL];
        Ok(())
    }

    fn present(
        &mut self,
        pixels: &[u8],
        width: u32,
        height: u32,
        damage: &[Rect],
    ) -> Result<(), DisplayError> {
        if (width, height) != (self.width, self.height) {
            return Err(DisplayError::SizeMismatch {
                width,
                height,
                configured_width: self.width,
                configured_height: self.height,
            });
        }
        if pixels.len() < self.pixels.len() {
            return Err(DisplayError::ShortBuffer {
                width,
                height,
                needed: self.pixels.len(),
                got: pixels.len(),
            });
        }
        let stride = width as usize * BYTES_PER_PIXEL;
        for rect in damage {
            // Damage comes from the network: it may lie outside the screen or overflow.
            let Some(rect) = rect.clip(width, height) else {
                continue;
            };
            let start = rect.x as usize * BYTES_PER_PIXEL;
            let end = start + rect.w as usize * BYTES_PER_PIXEL;
            for row in rect.y as usize..(rect.y + rect.h) as usize {
                let span = row * stride + start..row * stride + end;
                self.pixels[span.clone()].copy_from_slice(&pixels[span]);
            }
        }
        Ok(())
    }

    fn show_status(&mut self, text: &str) {
        // Nobody looks at a headless screen, and whoever reports a status has logged it already
        // at the level it deserves.
        tracing::debug!(status = text, "headless screen status");
    }

    fn contents(&self) -> Option<FrameView<'_>> {
        (self.width > 0 && self.height > 0).then_some(FrameView {
            pixels: &self.pixels,
            width: self.width,
            height: self.height,
        })
    }

    fn set_cursor(&mut self, image: Option<&CursorImage>) -> Result<(), DisplayError> {
        self.cursor = image.cloned();
        Ok(())
    }

    fn move_cursor(&mut self, x: i32, y: i32) -> Result<(), DisplayError> {
        self.cursor_at = (x, y);
        Ok(())
    }

    fn cursor(&self) -> Option<CursorView<'_>> {
        let (x, y) = self.cursor_at;
        self.cursor.as_ref().map(|image| CursorView { image, x, y })
    }

    fn native_size(&self) -> Option<(u32, u32)> {
        self.native
    }

    fn rescan(&mut self) -> Result<Option<(u32, u32)>, DisplayError> {
        if self.attached == self.native {
            return Ok(None);
        }
        self.native = self.attached;
        Ok(self.native)
    }

    fn simulate_hotplug(&mut self, width: u32, height: u32) -> bool {
        tracing::debug!(
            width,
            height,
            "pretending a screen of another size was plugged in"
        );
        self.attached = Some((width, height));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rect(x: u32, y: u32, w: u32, h: u32) -> Rect {
        Rect::new(x, y, w, h)
    }

    #[test]
    fn copies_only_damaged_pixels() {
        let mut sink = HeadlessSink::new();
        assert!(sink.contents().is_none());
        sink.configure(4, 3).unwrap();
        let frame = vec![0xAB; 4 * 3 * 4];
        sink.present(&frame, 4, 3, &[rect(1, 1, 2, 1)]).unwrap();

        let view = sink.contents().unwrap();
        for y in 0..3 {
            for x in 0..4 {
                let i = (y * 4 + x) * 4;
                let expected = if y == 1 && (1..3).contains(&x) {
                    0xAB
                } else {
                    0
                };
                assert_eq!(view.pixels[i..i + 4], [expected; 4], "pixel ({x}, {y})");
            }
        }
    }

    #[test]
    fn hostile_damage_is_clipped_not_a_panic() {
        let mut sink = HeadlessSink::new();
        sink.configure(4, 3).unwrap();
        let frame = vec![0xFF; 4 * 3 * 4];
        sink.present(
            &frame,
            4,
            3,
            &[
                rect(u32::MAX, u32::MAX, u32::MAX, u32::MAX),
                rect(3, 2, 100, 100),
                rect(0, 0, 0, 5),
            ],
        )
        .unwrap();
        let view = sink.contents().unwrap();
        let bottom_right = (2 * 4 + 3) * 4;
        assert_eq!(view.pixels[bottom_right..bottom_right + 4], [0xFF; 4]);
        assert_eq!(view.pixels.iter().filter(|&&b| b == 0xFF).count(), 4);
    }

    #[test]
    fn cursor_is_kept_apart_from_the_framebuffer() {
        let mut sink = HeadlessSink::new();
        sink.configure(4, 3).unwrap();
        assert!(sink.cursor().is_none());
        let image = CursorImage {
            width: 1,
            height: 1,
            hotspot_x: 0,
            hotspot_y: 0,
            pixels: vec![255; 4],
        };
        sink.set_cursor(Some(&image)).unwrap();
        sink.move_cursor(2, 1).unwrap();
        let cursor = sink.cursor().unwrap();
        assert_eq!((cursor.x, cursor.y, cursor.image), (2, 1, &image));
        assert!(sink.contents().unwrap().pixels.iter().all(|&b| b == 0));
        sink.set_cursor(None).unwrap();
        assert!(sink.cursor().is_none());
    }

    #[test]
    fn a_pretend_hotplug_is_found_by_the_next_rescan_only() {
        let mut sink = HeadlessSink::new();
        assert_eq!(sink.native_size(), None);
        assert_eq!(sink.rescan().unwrap(), None);
        sink.configure(4, 3).unwrap();
        assert!(sink.simulate_hotplug(640, 480));
        // Nothing changes before the rescan, and the picture stays as it was after it.
        assert_eq!(sink.native_size(), None);
        assert_eq!(sink.rescan().unwrap(), Some((640, 480)));
        assert_eq!(sink.native_size(), Some((640, 480)));
        assert_eq!(sink.rescan().unwrap(), None);
        assert_eq!(sink.contents().unwrap().width, 4);
        // The same monitor again is no change.
        assert!(sink.simulate_hotplug(640, 480));
        assert_eq!(sink.rescan().unwrap(), None);
    }

    #[test]
    fn wrong_size_or_short_buffer_is_an_error() {
        let mut sink = HeadlessSink::new();
        sink.configure(4, 3).unwrap();
        assert!(matches!(
            sink.present(&[0; 48], 3, 4, &[]),
            Err(DisplayError::SizeMismatch { .. })
        ));
        assert!(matches!(
            sink.present(&[0; 47], 4, 3, &[]),
            Err(DisplayError::ShortBuffer { .. })
        ));
    }
}
