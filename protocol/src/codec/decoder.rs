//! Appliance side: [`FrameUpdate`] → framebuffer. Every update comes from the network, so the
//! decoder checks everything and never panics; a rejected update leaves the framebuffer as it was.

use zstd::bulk::Decompressor;

use super::stream::{StreamDecompressor, StreamError};
use super::tiles;
use super::video::{VideoDecoder, VideoError, VideoStream};
use super::{FrameUpdate, Rect, TileData, MAX_COPIES, MAX_DIMENSION, MAX_PALETTE};
use crate::BYTES_PER_PIXEL;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error(
        "frame size {width}x{height} is invalid: each side must be 1..={MAX_DIMENSION} pixels"
    )]
    InvalidSize { width: u32, height: u32 },
    #[error("delta frame {seq} arrived before any key frame")]
    NoKeyFrame { seq: u64 },
    #[error("delta frame {seq} is {width}x{height} but the framebuffer is {fb_width}x{fb_height}")]
    SizeMismatch {
        seq: u64,
        width: u32,
        height: u32,
        fb_width: u32,
        fb_height: u32,
    },
    #[error("frame seq {seq} does not come after the last applied frame {last}")]
    SeqNotIncreasing { seq: u64, last: u64 },
    #[error("tile {index} at {rect:?} is empty or outside the {width}x{height} frame")]
    TileOutside {
        index: usize,
        rect: Rect,
        width: u32,
        height: u32,
    },
    #[error("tiles cover more pixels than the {width}x{height} frame holds (tiles overlap)")]
    TilesOverlap { width: u32, height: u32 },
    #[error("copy {index} from {src:?} to ({dst_x}, {dst_y}) is empty or leaves the {width}x{height} frame")]
    CopyOutside {
        index: usize,
        src: Rect,
        dst_x: u32,
        dst_y: u32,
        width: u32,
        height: u32,
    },
    #[error("a key frame carries copies, but it starts from a black framebuffer")]
    CopyInKeyFrame,
    #[error("{count} copies in one update; at most {MAX_COPIES} are allowed")]
    TooManyCopies { count: usize },
    #[error("tile {index} is an XOR tile in a key frame, which has nothing to XOR with")]
    XorInKeyFrame { index: usize },
    #[error("tile {index}: payload decompresses to {got} bytes, the tile holds {expected}")]
    WrongSize {
        index: usize,
        expected: usize,
        got: u64,
    },
    #[error(
        "tile {index}: a palette of {bytes} bytes is not 1..={MAX_PALETTE} colours of 4 bytes"
    )]
    BadPalette { index: usize, bytes: usize },
    #[error("tile {index}: index {found} is past the end of its {colours}-colour palette")]
    PaletteIndex {
        index: usize,
        found: u8,
        colours: usize,
    },
    #[error("tile {index}: corrupt zstd payload: {reason}")]
    Corrupt { index: usize, reason: String },
    #[error("cannot create a zstd decompression context: {0}")]
    Zstd(String),
    #[error("tile {index}: stream tile {got} arrived where tile {expected} of the update stream was due (the decoder is out of step with the encoder; a key frame starts both over)")]
    StreamOutOfStep {
        index: usize,
        expected: u32,
        got: u32,
    },
    #[error(
        "tile {index}: the update stream broke at an earlier tile; only a key frame starts it over"
    )]
    StreamBroken { index: usize },
    #[error(
        "video rect {rect:?} is empty, odd-sized, too large or outside the {width}x{height} frame"
    )]
    VideoOutside { rect: Rect, width: u32, height: u32 },
    #[error("frame {seq}: video picture continues no stream (the first, after a key frame or a new rect, must be IDR)")]
    VideoNotIdr { seq: u64 },
    #[error("video picture: {0}")]
    Video(VideoError),
}

/// Holds the appliance's framebuffer and applies updates to it.
pub struct Decoder {
    width: u32,
    height: u32,
    pixels: Vec<u8>,
    last_seq: Option<u64>,
    decompressor: Option<Decompressor<'static>>,
    /// Decompressed tiles of the update being applied, so a bad tile late in the update is
    /// found before anything touched the framebuffer.
    scratch: Vec<u8>,
    video: VideoStream,
    /// The update stream's zstd context (see `stream.rs`), created on first use.
    stream: Option<StreamDecompressor>,
    /// The update stream's palette: XRGB8888, four bytes per colour.
    stream_palette: Vec<u8>,
    /// The stream palette as each stream palette tile of the update being applied saw it
    /// (a later tile may start it over), one after the other.
    palettes_seen: Vec<u8>,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// An empty 0×0 decoder; the first update it accepts is a key frame.
    pub fn new() -> Decoder {
        Decoder {
            width: 0,
            height: 0,
            pixels: Vec::new(),
            last_seq: None,
            decompressor: None,
            scratch: Vec::new(),
            video: VideoStream::default(),
            stream: None,
            stream_palette: Vec::new(),
            palettes_seen: Vec::new(),
        }
    }

    /// Decodes video pictures with `decoder` (e.g. a hardware one) instead of OpenH264 in
    /// software; the running stream ends, so the next picture must be IDR.
    pub fn set_video_decoder(&mut self, decoder: Box<dyn VideoDecoder>) {
        self.video.set_decoder(decoder);
    }

    /// XRGB8888 little-endian, `width * 4` bytes per row.
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    /// Sequence number of the last update applied, which is what the appliance acknowledges.
    pub fn last_seq(&self) -> Option<u64> {
        self.last_seq
    }

    /// Applies `update` and returns the rects it changed: the whole frame for a key frame, else
    /// the video's rect, the copies' destinations and the tiles' rects. On error the
    /// framebuffer does not change (a failed video picture does end its stream).
    pub fn apply(&mut self, update: &FrameUpdate) -> Result<Vec<Rect>, DecodeError> {
        self.check_header(update)?;
        check_copies(update)?;
        let scratch_len = check_tiles(update)?;
        self.decompress_all(update, scratch_len)?;
        self.video.prepare(update)?;

        // Everything is validated: from here on nothing fails.
        let (width, height) = (update.width, update.height);
        if update.key {
            self.width = width;
            self.height = height;
            self.pixels.clear();
            self.pixels
                .resize(width as usize * height as usize * BYTES_PER_PIXEL, 0);
        }
        // The encoder's order: the video picture, then copies, then tiles.
        let video = self.video.apply(update, &mut self.pixels, width);
        for copy in &update.copies {
            tiles::apply_copy(&mut self.pixels, width, copy);
        }
        let mut offset = 0;
        let mut seen = 0;
        for tile in &update.tiles {
            let row_len = tile.rect.w as usize * BYTES_PER_PIXEL;
            let colours = match &tile.data {
                TileData::ZstdPalette { colours, .. } => Some(colours.as_slice()),
                TileData::StreamPalette { .. } => {
                    // The palette's length was saved in front of it.
                    let len = usize::from(u16::from_le_bytes([
                        self.palettes_seen[seen],
                        self.palettes_seen[seen + 1],
                    ]));
                    seen += 2 + len;
                    Some(&self.palettes_seen[seen - len..seen])
                }
                _ => None,
            };
            match &tile.data {
                TileData::Solid(colour) => {
                    let colour = colour.to_le_bytes();
                    for r in tiles::rows(tile.rect, width) {
                        for px in self.pixels[r].chunks_exact_mut(BYTES_PER_PIXEL) {
                            px.copy_from_slice(&colour);
                        }
                    }
                }
                TileData::Zstd(_) | TileData::StreamPixels { .. } => {
                    for r in tiles::rows(tile.rect, width) {
                        self.pixels[r].copy_from_slice(&self.scratch[offset..offset + row_len]);
                        offset += row_len;
                    }
                }
                TileData::ZstdXor(_) | TileData::StreamXor { .. } => {
                    for r in tiles::rows(tile.rect, width) {
                        let src = &self.scratch[offset..offset + row_len];
                        for (d, s) in self.pixels[r].iter_mut().zip(src) {
                            *d ^= s;
                        }
                        offset += row_len;
                    }
                }
                TileData::ZstdPalette { .. } | TileData::StreamPalette { .. } => {
                    // Every index was checked against the palette in `decompress_all`.
                    let mut table = [[0u8; BYTES_PER_PIXEL]; MAX_PALETTE];
                    let colours = colours.unwrap_or_default();
                    for (entry, c) in table.iter_mut().zip(colours.chunks_exact(BYTES_PER_PIXEL)) {
                        entry.copy_from_slice(c);
                    }
                    let w = tile.rect.w as usize;
                    for r in tiles::rows(tile.rect, width) {
                        let src = &self.scratch[offset..offset + w];
                        for (px, &i) in self.pixels[r].chunks_exact_mut(BYTES_PER_PIXEL).zip(src) {
                            px.copy_from_slice(&table[usize::from(i)]);
                        }
                        offset += w;
                    }
                }
            }
        }
        self.last_seq = Some(update.seq);

        Ok(if update.key {
            vec![Rect::new(0, 0, width, height)]
        } else {
            let copied = update.copies.iter().map(|c| c.dst());
            video
                .into_iter()
                .chain(copied)
                .chain(update.tiles.iter().map(|t| t.rect))
                .collect()
        })
    }

    fn check_header(&self, update: &FrameUpdate) -> Result<(), DecodeError> {
        let (seq, width, height) = (update.seq, update.width, update.height);
        // A key frame starts a new sequence: the appliance may be shown another session (a
        // greeter handing over to the user's own, a card moving sessions), whose frames count
        // from 1 again. Delta frames must follow the frame they build on.
        if let Some(last) = self.last_seq.filter(|_| !update.key) {
            if seq <= last {
                return Err(DecodeError::SeqNotIncreasing { seq, last });
            }
        }
        if update.key {
            if width == 0 || height == 0 || width > MAX_DIMENSION || height > MAX_DIMENSION {
                return Err(DecodeError::InvalidSize { width, height });
            }
        } else if self.last_seq.is_none() {
            return Err(DecodeError::NoKeyFrame { seq });
        } else if (width, height) != (self.width, self.height) {
            return Err(DecodeError::SizeMismatch {
                seq,
                width,
                height,
                fb_width: self.width,
                fb_height: self.height,
            });
        }
        Ok(())
    }

    /// Decompresses every zstd tile, in order, into `scratch`, and checks palette indices.
    fn decompress_all(
        &mut self,
        update: &FrameUpdate,
        scratch_len: usize,
    ) -> Result<(), DecodeError> {
        self.palettes_seen.clear();
        if update.key {
            self.stream_palette.clear();
            if let Some(stream) = &mut self.stream {
                stream.reset().map_err(DecodeError::Zstd)?;
            }
        }
        if scratch_len == 0 {
            return Ok(());
        }
        let dctx = match &mut self.decompressor {
            Some(d) => d,
            None => self
                .decompressor
                .insert(Decompressor::new().map_err(|e| DecodeError::Zstd(e.to_string()))?),
        };
        // Grow only: the buffer's old contents are overwritten, never read.
        if self.scratch.len() < scratch_len {
            self.scratch.resize(scratch_len, 0);
        }
        let mut offset = 0;
        for (index, tile) in update.tiles.iter().enumerate() {
            let area = tile.rect.w as usize * tile.rect.h as usize;
            match &tile.data {
                TileData::Solid(_) => {}
                TileData::Zstd(payload) | TileData::ZstdXor(payload) => {
                    let len = area * BYTES_PER_PIXEL;
                    let dst = &mut self.scratch[offset..offset + len];
                    decompress_exact(dctx, payload, dst, index)?;
                    offset += len;
                }
                TileData::ZstdPalette { colours, indices } => {
                    let dst = &mut self.scratch[offset..offset + area];
                    decompress_exact(dctx, indices, dst, index)?;
                    check_indices(dst, colours.len() / BYTES_PER_PIXEL, index)?;
                    offset += area;
                }
                TileData::StreamPixels { number, data } | TileData::StreamXor { number, data } => {
                    let len = area * BYTES_PER_PIXEL;
                    let stream = stream_of(&mut self.stream)?;
                    let dst = &mut self.scratch[offset..offset + len];
                    stream
                        .decompress(*number, data, dst)
                        .map_err(|e| stream_error(e, index))?;
                    offset += len;
                }
                TileData::StreamPalette {
                    number,
                    reset,
                    added,
                    indices,
                } => {
                    let stream = stream_of(&mut self.stream)?;
                    let dst = &mut self.scratch[offset..offset + area];
                    stream
                        .decompress(*number, indices, dst)
                        .map_err(|e| stream_error(e, index))?;
                    if *reset {
                        self.stream_palette.clear();
                    }
                    self.stream_palette.extend_from_slice(added);
                    let bytes = self.stream_palette.len();
                    if bytes == 0 || bytes > MAX_PALETTE * BYTES_PER_PIXEL {
                        return Err(DecodeError::BadPalette { index, bytes });
                    }
                    check_indices(dst, bytes / BYTES_PER_PIXEL, index)?;
                    self.palettes_seen
                        .extend_from_slice(&(bytes as u16).to_le_bytes());
                    self.palettes_seen.extend_from_slice(&self.stream_palette);
                    offset += area;
                }
            }
        }
        Ok(())
    }
}

/// The stream's decompressor in `slot`, created on first use.
fn stream_of(
    slot: &mut Option<StreamDecompressor>,
) -> Result<&mut StreamDecompressor, DecodeError> {
    match slot {
        Some(s) => Ok(s),
        None => Ok(slot.insert(StreamDecompressor::new().map_err(DecodeError::Zstd)?)),
    }
}

/// Every index of tile `index` names one of its palette's `colours`.
fn check_indices(indices: &[u8], colours: usize, index: usize) -> Result<(), DecodeError> {
    // A fold over bytes vectorizes; `max()` by reference does not.
    let found = indices.iter().copied().fold(0, u8::max);
    if usize::from(found) >= colours {
        return Err(DecodeError::PaletteIndex {
            index,
            found,
            colours,
        });
    }
    Ok(())
}

fn stream_error(e: StreamError, index: usize) -> DecodeError {
    match e {
        StreamError::OutOfStep { expected, got } => DecodeError::StreamOutOfStep {
            index,
            expected,
            got,
        },
        StreamError::Broken => DecodeError::StreamBroken { index },
        StreamError::WrongSize { expected, got } => DecodeError::WrongSize {
            index,
            expected,
            got: got as u64,
        },
        StreamError::Corrupt(reason) => DecodeError::Corrupt { index, reason },
    }
}

/// Checks that copies stay inside the (already checked) frame and are few.
fn check_copies(update: &FrameUpdate) -> Result<(), DecodeError> {
    if update.copies.is_empty() {
        return Ok(());
    }
    if update.key {
        return Err(DecodeError::CopyInKeyFrame);
    }
    if update.copies.len() > MAX_COPIES {
        return Err(DecodeError::TooManyCopies {
            count: update.copies.len(),
        });
    }
    let (width, height) = (update.width, update.height);
    for (index, copy) in update.copies.iter().enumerate() {
        if copy.src.is_empty()
            || !copy.src.fits_in(width, height)
            || !copy.dst().fits_in(width, height)
        {
            return Err(DecodeError::CopyOutside {
                index,
                src: copy.src,
                dst_x: copy.dst_x,
                dst_y: copy.dst_y,
                width,
                height,
            });
        }
    }
    Ok(())
}

/// Checks the tiles' geometry and palettes against the (already checked) frame size and returns
/// how many bytes their zstd payloads must decompress to.
fn check_tiles(update: &FrameUpdate) -> Result<usize, DecodeError> {
    let (width, height) = (update.width, update.height);
    let frame_area = u64::from(width) * u64::from(height);
    let mut area = 0u64;
    let mut zstd_bytes = 0u64;
    for (index, tile) in update.tiles.iter().enumerate() {
        let rect = tile.rect;
        if rect.is_empty() || !rect.fits_in(width, height) {
            return Err(DecodeError::TileOutside {
                index,
                rect,
                width,
                height,
            });
        }
        // Valid tiles never overlap, so their areas add up to at most the frame's. Checking
        // the sum bounds the scratch memory and work per update to one frame.
        area += rect.area();
        if area > frame_area {
            return Err(DecodeError::TilesOverlap { width, height });
        }
        match tile.data {
            TileData::Solid(_) => {}
            TileData::ZstdXor(_) if update.key => return Err(DecodeError::XorInKeyFrame { index }),
            TileData::StreamXor { .. } if update.key => {
                return Err(DecodeError::XorInKeyFrame { index })
            }
            TileData::Zstd(_)
            | TileData::ZstdXor(_)
            | TileData::StreamPixels { .. }
            | TileData::StreamXor { .. } => zstd_bytes += rect.area() * BYTES_PER_PIXEL as u64,
            TileData::StreamPalette { ref added, .. } => {
                let bytes = added.len();
                if bytes % BYTES_PER_PIXEL != 0 || bytes > MAX_PALETTE * BYTES_PER_PIXEL {
                    return Err(DecodeError::BadPalette { index, bytes });
                }
                zstd_bytes += rect.area();
            }
            TileData::ZstdPalette { ref colours, .. } => {
                let bytes = colours.len();
                if bytes == 0
                    || bytes % BYTES_PER_PIXEL != 0
                    || bytes > MAX_PALETTE * BYTES_PER_PIXEL
                {
                    return Err(DecodeError::BadPalette { index, bytes });
                }
                zstd_bytes += rect.area();
            }
        }
    }
    // At most MAX_DIMENSION² × 4 = 256 MiB, which fits a 32-bit usize too.
    Ok(zstd_bytes as usize)
}

/// Decompresses `src` into exactly `dst`; zstd never writes past `dst`, so a payload that
/// claims gigabytes (a zstd bomb) fails after filling at most one tile.
fn decompress_exact(
    dctx: &mut Decompressor<'static>,
    src: &[u8],
    dst: &mut [u8],
    index: usize,
) -> Result<(), DecodeError> {
    let expected = dst.len();
    if let Ok(Some(declared)) = zstd::zstd_safe::get_frame_content_size(src) {
        if declared != expected as u64 {
            return Err(DecodeError::WrongSize {
                index,
                expected,
                got: declared,
            });
        }
    }
    let got = dctx
        .decompress_to_buffer(src, dst)
        .map_err(|e| DecodeError::Corrupt {
            index,
            reason: e.to_string(),
        })?;
    if got != expected {
        return Err(DecodeError::WrongSize {
            index,
            expected,
            got: got as u64,
        });
    }
    Ok(())
}
