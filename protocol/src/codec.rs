//! Frame codec: damage is expanded to a grid of 64×64 cells; cells whose pixels did not change
//! are skipped, and the changed cells of each block of 4×4 cells travel as one tile (their
//! bounding box; neighbouring blocks in a row that span the same rows merge into one tile): a
//! solid colour, a palette of up to 256 colours plus one index byte per pixel through zstd (text
//! and UI), raw pixels through zstd, or pixels XORed with what the appliance already shows
//! through zstd (unchanged areas become zero runs that cost almost nothing). Large tiles let zstd
//! find matches across the whole area, which matters for text. Before the tiles, an update may
//! carry copies: areas that scrolled move inside the appliance's framebuffer, and only the strip
//! they expose is sent.
//!
//! Tiles that are not photo-like travel through the update stream (`stream.rs`): one zstd frame
//! and one palette that live from a key frame to the next, so text sent in an earlier tile or
//! frame is a match instead of new bytes. Both sides start the stream over at every key frame.
//!
//! Pixels are XRGB8888 little-endian, tightly packed (`stride = width * 4`). The encoder keeps a
//! copy of what the decoder shows, so both sides agree on the XOR reference without a round trip.
//! The decoder accepts any tile inside the frame; the grid is the encoder's business.
//!
//! Regions that measure as video (see `video.rs`) may instead travel as H.264 pictures, applied
//! before the tiles; the encoder's copy then holds the decoded picture, as the appliance does,
//! and those cells are re-sent as exact tiles once the region stops changing.

mod decoder;
mod encoder;
mod palette;
mod scroll;
mod stream;
mod tiles;
mod video;

use serde::{Deserialize, Serialize};

pub use decoder::{DecodeError, Decoder};
pub use encoder::{EncodeError, Encoder, EncoderConfig, XorChoice};
/// Bytes (log2) of earlier tiles a stream tile's zstd blocks may refer to.
pub use stream::WINDOW_LOG as STREAM_WINDOW_LOG;
pub use video::{
    i420_to_xrgb, video_size_ok, xrgb_to_i420, OpenH264Decoder, VideoDecoder, VideoError,
    VideoUpdate, I420, MAX_VIDEO_HEIGHT, MAX_VIDEO_WIDTH,
};

/// Edge length of a grid cell, the unit of damage and change detection; cells at the right and
/// bottom edges of frames that are not a multiple of it are smaller.
pub const TILE_SIZE: u32 = 64;

/// Largest width or height a decoder accepts: bounds what a hostile key frame can make the
/// appliance allocate (8192² × 4 = 256 MiB) while covering 8K displays.
pub const MAX_DIMENSION: u32 = 8192;

/// Most colours of a [`TileData::ZstdPalette`] tile.
pub const MAX_PALETTE: usize = palette::MAX_COLOURS;

/// A rectangle in framebuffer pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

impl Rect {
    pub const fn new(x: u32, y: u32, w: u32, h: u32) -> Self {
        Self { x, y, w, h }
    }

    pub fn is_empty(&self) -> bool {
        self.w == 0 || self.h == 0
    }

    /// Pixel count; `u64` because hostile rects may be up to `u32::MAX` on each side.
    pub fn area(&self) -> u64 {
        u64::from(self.w) * u64::from(self.h)
    }

    /// Whether the rect lies entirely inside a `width`×`height` frame, without overflow.
    pub fn fits_in(&self, width: u32, height: u32) -> bool {
        u64::from(self.x) + u64::from(self.w) <= u64::from(width)
            && u64::from(self.y) + u64::from(self.h) <= u64::from(height)
    }

    /// The part of the rect inside a `width`×`height` frame, `None` if nothing is left.
    pub fn clip(&self, width: u32, height: u32) -> Option<Rect> {
        let x1 = self.x.saturating_add(self.w).min(width);
        let y1 = self.y.saturating_add(self.h).min(height);
        let r = Rect::new(
            self.x,
            self.y,
            x1.checked_sub(self.x)?,
            y1.checked_sub(self.y)?,
        );
        (!r.is_empty()).then_some(r)
    }
}

/// How one tile's pixels travel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TileData {
    /// Every pixel has this XRGB8888 value.
    Solid(u32),
    /// One zstd frame holding the tile's rows, tightly packed (`rect.w * 4` bytes per row).
    /// (`serde_bytes`: one copy instead of a serializer call per byte; same wire format.)
    Zstd(#[serde(with = "serde_bytes")] Vec<u8>),
    /// zstd of the tile's rows XORed with the decoder's current pixels; never in a key frame.
    ZstdXor(#[serde(with = "serde_bytes")] Vec<u8>),
    /// At most [`MAX_PALETTE`] colours and one zstd frame of one index byte per pixel (`rect.w`
    /// bytes per row): what text and UI travel as, a quarter of the bytes for zstd to read.
    ZstdPalette {
        /// XRGB8888 little-endian, four bytes per colour.
        #[serde(with = "serde_bytes")]
        colours: Vec<u8>,
        #[serde(with = "serde_bytes")]
        indices: Vec<u8>,
    },
    /// Like [`Zstd`](Self::Zstd), but the payload continues the update stream's zstd frame
    /// (see [`STREAM_WINDOW_LOG`]): tile `number` of the stream since the last key frame.
    StreamPixels {
        number: u32,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// Like [`ZstdXor`](Self::ZstdXor), continuing the update stream.
    StreamXor {
        number: u32,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// Like [`ZstdPalette`](Self::ZstdPalette), continuing the update stream, with indices into
    /// the stream's palette: it lives from key frame to key frame, so a colour keeps its index
    /// and a glyph is the same bytes wherever and whenever it is drawn.
    StreamPalette {
        number: u32,
        /// The stream palette is emptied before `added` is appended (it would overflow).
        reset: bool,
        /// Colours appended to the stream palette (XRGB8888 little-endian, four bytes each); the
        /// palette never holds more than [`MAX_PALETTE`].
        #[serde(with = "serde_bytes")]
        added: Vec<u8>,
        #[serde(with = "serde_bytes")]
        indices: Vec<u8>,
    },
}

impl TileData {
    /// Bytes of the payload (a solid colour counts its four).
    pub fn payload_len(&self) -> usize {
        match self {
            TileData::Solid(_) => 4,
            TileData::Zstd(b) | TileData::ZstdXor(b) => b.len(),
            TileData::ZstdPalette { colours, indices } => colours.len() + indices.len(),
            TileData::StreamPixels { data, .. } | TileData::StreamXor { data, .. } => data.len(),
            TileData::StreamPalette { added, indices, .. } => added.len() + indices.len(),
        }
    }
}

/// Pixels the decoder moves within its own framebuffer before the tiles are applied: how a
/// scrolled terminal or page travels, as a few bytes plus tiles for the newly exposed strip.
/// The copy reads the framebuffer as it was before the copy (overlap is fine, like `memmove`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyRect {
    /// Where the pixels come from.
    pub src: Rect,
    /// Top-left corner they go to; the destination has `src`'s size.
    pub dst_x: u32,
    pub dst_y: u32,
}

impl CopyRect {
    pub fn dst(&self) -> Rect {
        Rect::new(self.dst_x, self.dst_y, self.src.w, self.src.h)
    }
}

/// Most copies one update may carry: bounds the decoder's work per update to a few frames' worth
/// of memmove.
pub const MAX_COPIES: usize = 16;

/// A rectangle of the frame and its new pixels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tile {
    pub rect: Rect,
    pub data: TileData,
}

/// One encoded frame: what travels in [`DisplayMessage::Frame`](crate::DisplayMessage::Frame).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameUpdate {
    /// Strictly increasing from one key frame to the next (a key frame may start again at 1,
    /// when the appliance is shown another session); the appliance acknowledges it.
    pub seq: u64,
    pub width: u32,
    pub height: u32,
    /// Resets the decoder: new size, black framebuffer, then the tiles (which cover the frame).
    pub key: bool,
    /// Applied in order before the tiles; never in a key frame.
    pub copies: Vec<CopyRect>,
    /// Non-overlapping tiles inside the frame, applied in order.
    pub tiles: Vec<Tile>,
    /// A picture of a video-like region, applied before the tiles (which may overwrite parts of
    /// it losslessly).
    pub video: Option<VideoUpdate>,
    /// Session clock (µs of the session's CLOCK_MONOTONIC) when the frame was rendered; audio
    /// packets carry the same clock ([`crate::AudioPacket::time_us`]), so the appliance plays
    /// sound in step with the picture (lip sync). 0: not known (the encoder leaves it to its
    /// caller).
    pub time_us: u64,
}

impl FrameUpdate {
    /// Sum of the tiles' compressed payload bytes and the video's, for logs and benchmarks.
    pub fn payload_len(&self) -> usize {
        self.tiles
            .iter()
            .map(|t| t.data.payload_len())
            .sum::<usize>()
            + self.video.as_ref().map_or(0, |v| v.data.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_keeps_the_part_inside() {
        assert_eq!(
            Rect::new(5, 5, 10, 10).clip(10, 8),
            Some(Rect::new(5, 5, 5, 3))
        );
        assert_eq!(Rect::new(10, 0, 1, 1).clip(10, 8), None);
        assert_eq!(Rect::new(0, 0, 0, 1).clip(10, 8), None);
        assert_eq!(
            Rect::new(3, 4, u32::MAX, u32::MAX).clip(10, 8),
            Some(Rect::new(3, 4, 7, 4))
        );
    }

    #[test]
    fn fits_in_does_not_overflow() {
        assert!(Rect::new(0, 0, 10, 8).fits_in(10, 8));
        assert!(!Rect::new(1, 0, 10, 8).fits_in(10, 8));
        assert!(!Rect::new(u32::MAX, 0, 2, 1).fits_in(u32::MAX, 1));
        assert_eq!(
            Rect::new(0, 0, u32::MAX, u32::MAX).area(),
            (u32::MAX as u64).pow(2)
        );
    }
}
