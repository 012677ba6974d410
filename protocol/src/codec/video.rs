//! H.264 for video-like regions: lossy only where it pays, never on text.
//!
//! The encoder measures, per grid cell, how often it changed and whether it looked photo-like
//! ([`classify`]); a large enough area of cells that do both most of the time becomes one video
//! region, sent as an H.264 picture ([`VideoUpdate`]) instead of tiles. The server decodes its own
//! bitstream and converts it with the same code as the appliance ([`yuv`]), so the encoder's
//! reference still equals what the appliance shows and XOR tiles stay exact. Once the region has
//! been quiet for a few frames it is dropped and its cells, which now differ from the source,
//! travel losslessly as tiles: every cell outside an active region is always exact.

mod classify;
mod decode;
mod encode;
mod software;
mod sps;
mod yuv;

use serde::{Deserialize, Serialize};

use super::Rect;

pub(super) use decode::VideoStream;
pub(super) use encode::VideoEncoder;
pub use software::OpenH264Decoder;
pub use yuv::{i420_to_xrgb, xrgb_to_i420, I420};

/// One H.264 picture of a stream that covers `rect`; the decoder applies it before the tiles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VideoUpdate {
    /// Even width and height, inside the frame, at most [`MAX_VIDEO_WIDTH`]×[`MAX_VIDEO_HEIGHT`]
    /// (or the transpose).
    pub rect: Rect,
    /// Starts a new stream (the data begins with SPS, PPS and an IDR picture). Required for the
    /// first picture, after a key frame, and whenever `rect` changes.
    pub idr: bool,
    /// H.264 Annex-B NAL units of exactly one picture.
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// Longest side of a video picture: OpenH264's limit (H.264 level 5.2), and a cap on what a
/// hostile update can make the appliance decode.
pub const MAX_VIDEO_WIDTH: u32 = 3840;
/// Shortest side's limit, see [`MAX_VIDEO_WIDTH`].
pub const MAX_VIDEO_HEIGHT: u32 = 2160;

/// Whether a picture of this size may travel: even sides (4:2:0 chroma), within OpenH264's limits.
pub fn video_size_ok(width: u32, height: u32) -> bool {
    width > 0
        && height > 0
        && width.is_multiple_of(2)
        && height.is_multiple_of(2)
        && width.max(height) <= MAX_VIDEO_WIDTH
        && width.min(height) <= MAX_VIDEO_HEIGHT
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VideoError {
    #[error("H.264 codec error: {0}")]
    Codec(String),
    #[error("the H.264 data holds no complete picture")]
    NoPicture,
    #[error("unreadable H.264 sequence parameter set")]
    BadSps,
    #[error("{len} bytes of H.264 for one picture, more than its raw pixels ({max})")]
    TooLong { len: usize, max: u64 },
    #[error("decoded picture is {got_width}x{got_height}, the stream is {width}x{height}")]
    Size {
        width: u32,
        height: u32,
        got_width: u32,
        got_height: u32,
    },
}

/// Decodes one stream's pictures to planar YUV 4:2:0. Behind a trait so the appliance can bring
/// a hardware decoder (VA-API) later; the conversion to XRGB stays in [`yuv`], shared with the
/// server's reference, because H.264 decoding is bit-exact but colour conversion is not.
pub trait VideoDecoder: Send {
    /// Forgets the current stream; the next picture starts a new one.
    fn reset(&mut self) -> Result<(), VideoError>;
    /// Decodes the NAL units of one picture into `out` (resized to the picture's size).
    fn decode(&mut self, data: &[u8], out: &mut I420) -> Result<(), VideoError>;
}
