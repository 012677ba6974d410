//! Where decoded frames go. One trait, one file per backend: `headless` (memory, for tests and
//! demos) and `drm` (DRM/KMS: dumb buffers, page flip on vblank; its pure half is `compose`).
//! The trait speaks in damage rectangles and explicit size changes, and keeps the cursor apart
//! from the framebuffer (the DRM sink puts it on the hardware cursor plane where there is one,
//! so moving the pointer never redraws the picture). Screens come and go: `hotplug` tells when
//! the kernel saw one change, and [`DisplaySink::rescan`] follows it.

use wayray_protocol::{CursorImage, PhysicalSize, Rect};

#[cfg(feature = "drm")]
mod compose;
#[cfg(feature = "drm")]
pub mod drm;
pub mod headless;
pub mod hotplug;

#[cfg(feature = "drm")]
pub use drm::{DrmError, DrmSink};
pub use headless::HeadlessSink;
pub use hotplug::Hotplug;

#[derive(Debug, thiserror::Error)]
pub enum DisplayError {
    #[error("frame of {width}x{height} does not match the configured {configured_width}x{configured_height}")]
    SizeMismatch {
        width: u32,
        height: u32,
        configured_width: u32,
        configured_height: u32,
    },
    #[error("frame of {width}x{height} needs {needed} bytes of pixels, got {got}")]
    ShortBuffer {
        width: u32,
        height: u32,
        needed: usize,
        got: usize,
    },
    #[cfg(feature = "drm")]
    #[error(transparent)]
    Drm(#[from] DrmError),
}

/// The appliance's screen.
///
/// Pixels are always the wire format (XRGB8888 little-endian: bytes B, G, R, X; stride
/// `width * 4`), which is also what DRM dumb buffers scan out, so a sink copies and never converts.
pub trait DisplaySink {
    /// The framebuffer size changed (a new session, or a key frame at another size): reallocate
    /// scanout buffers or pick a mode. Not called again for the same size, so a sink may keep
    /// showing its old contents across a reconnect.
    fn configure(&mut self, width: u32, height: u32) -> Result<(), DisplayError>;

    /// Shows a new frame. `pixels` is the whole decoded framebuffer, but only the `damage`
    /// rectangles changed since the previous `present`, so a sink copies just those.
    fn present(
        &mut self,
        pixels: &[u8],
        width: u32,
        height: u32,
        damage: &[Rect],
    ) -> Result<(), DisplayError>;

    /// Tells the person at the appliance what is going on ("connecting to …", "server
    /// certificate changed …"); a real screen draws it over the picture.
    fn show_status(&mut self, text: &str);

    /// What the screen shows now, for screenshots; `None` until the first `configure`.
    fn contents(&self) -> Option<FrameView<'_>>;

    /// Changes the pointer's image (already validated); `None` hides the cursor.
    fn set_cursor(&mut self, image: Option<&CursorImage>) -> Result<(), DisplayError>;

    /// Puts the pointer at (`x`, `y`) of the framebuffer: the image's hotspot goes there. Called
    /// on every local motion, so it must not touch the framebuffer.
    fn move_cursor(&mut self, x: i32, y: i32) -> Result<(), DisplayError>;

    /// The cursor as shown now, for screenshots; `None` while hidden.
    fn cursor(&self) -> Option<CursorView<'_>>;

    /// The size this screen shows best (a display's mode), which the appliance then asks the
    /// server for; `None` when any size will do.
    fn native_size(&self) -> Option<(u32, u32)> {
        None
    }

    /// The visible area of the screen driven now, as its EDID tells (the server picks the
    /// session's scale from it); `None` when unknown or when there is no real screen.
    fn physical_size(&self) -> Option<PhysicalSize> {
        None
    }

    /// Looks at the screen again after a hotplug (a monitor plugged in, pulled out or swapped)
    /// and follows it: drives whatever is attached now, showing the last picture or status on
    /// it. Returns the new [`DisplaySink::native_size`] when it changed (the appliance then asks
    /// the server for a session of that size), `None` when it did not, or when no screen is
    /// attached at all (the sink keeps running dark until one comes back).
    fn rescan(&mut self) -> Result<Option<(u32, u32)>, DisplayError> {
        Ok(None)
    }

    /// Pretends a `width`×`height` screen replaced the current one (input scripts' `screen`),
    /// for the next [`DisplaySink::rescan`] to find. Only a sink without a real screen can
    /// pretend; the others return `false`.
    fn simulate_hotplug(&mut self, width: u32, height: u32) -> bool {
        let _ = (width, height);
        false
    }
}

/// A borrowed framebuffer in the wire pixel format.
#[derive(Debug, Clone, Copy)]
pub struct FrameView<'a> {
    pub pixels: &'a [u8],
    pub width: u32,
    pub height: u32,
}

/// A borrowed cursor image and where the pointer (the image's hotspot) is.
#[derive(Debug, Clone, Copy)]
pub struct CursorView<'a> {
    pub image: &'a CursorImage,
    pub x: i32,
    pub y: i32,
}
