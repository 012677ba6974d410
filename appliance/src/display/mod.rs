//! Where decoded frames go. One trait, one file per backend: `headless` (memory, for tests and
//! demos) now; a DRM/KMS sink (dumb buffers, page flip on vblank) is meant to slot in beside it,
//! which is why the trait speaks in damage rectangles and explicit size changes.

use wayray_protocol::Rect;

pub mod headless;

pub use headless::HeadlessSink;

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
}

/// A borrowed framebuffer in the wire pixel format.
#[derive(Debug, Clone, Copy)]
pub struct FrameView<'a> {
    pub pixels: &'a [u8],
    pub width: u32,
    pub height: u32,
}
