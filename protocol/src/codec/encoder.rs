//! Server side: damage + pixels → [`FrameUpdate`].

use std::io;

use zstd::bulk::Compressor;

use super::palette::Palettizer;
use super::scroll::ScrollDetector;
use super::stream::StreamCompressor;
use super::tiles::{self, RowSpan, TileGrid};
use super::video::{VideoEncoder, VideoError, VideoUpdate};
use super::{CopyRect, FrameUpdate, Rect, Tile, TileData, MAX_COPIES, MAX_DIMENSION};
use crate::BYTES_PER_PIXEL;

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error(
        "cannot encode a {width}x{height} frame: each side must be 1..={MAX_DIMENSION} pixels"
    )]
    InvalidSize { width: u32, height: u32 },
    #[error(
        "pixel buffer holds {got} bytes but a {width}x{height} XRGB8888 frame needs {expected}"
    )]
    PixelsLength {
        width: u32,
        height: u32,
        expected: usize,
        got: usize,
    },
    #[error("zstd compression failed: {0}")]
    Compression(#[from] io::Error),
    #[error("video encoding failed: {0}")]
    Video(#[from] VideoError),
}

/// How the encoder decides between [`TileData::ZstdXor`] and [`TileData::Zstd`] for a changed tile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XorChoice {
    /// Count repeated pixels in a sample of rows of both candidates and compress the one with
    /// more: zstd's output tracks those runs. On captured desktops this sends <1 % more bytes
    /// than `Smaller` at ~1.6× its speed.
    Heuristic,
    /// Compress both and keep the smaller: the best ratio at twice the compression cost.
    Smaller,
    /// Never XOR.
    Raw,
    /// Always XOR (outside key frames).
    Xor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncoderConfig {
    /// zstd level for detailed content (text, UI); negative levels trade ratio for speed.
    pub level: i32,
    /// zstd level for tiles where fewer than `photo_below_pct` % of pixel pairs repeat (photos,
    /// gradients, video): zstd gains little there, so a fast level costs little ratio.
    pub photo_level: i32,
    pub photo_below_pct: u8,
    pub xor_choice: XorChoice,
    /// Side of a block, in grid cells: the changed cells of a block travel as one tile (their
    /// bounding box), because zstd on one large area is both faster and smaller than on many
    /// small ones (matches and entropy tables span the whole area). 0 counts as 1.
    pub block: u32,
    /// Look for scrolled areas in large damage rects and send them as copies.
    pub scroll: bool,
    /// Merge the tiles of neighbouring blocks in a row that span the same rows into one tile:
    /// one zstd frame instead of several (less framing, matches across the seam), which is what
    /// a changed text line or an exposed scroll strip looks like.
    pub merge_rows: bool,
    /// Send large regions that keep changing with photo-like content (video) as H.264 instead
    /// of tiles; lossy while they play, refreshed losslessly once they stop.
    pub video: bool,
    /// Compress tiles that are not photo-like as one zstd stream from key frame to key frame,
    /// with a palette that lives as long (see `stream.rs`): text repeats across tiles and
    /// frames, and the stream finds it. [`XorChoice::Smaller`] then acts as `Heuristic` (a
    /// stream cannot take back an attempt).
    pub stream: bool,
}

impl Default for EncoderConfig {
    /// Chosen with `cargo bench --bench codec` on captured desktop frames.
    fn default() -> Self {
        Self {
            level: 1,
            photo_level: -10,
            photo_below_pct: 50,
            xor_choice: XorChoice::Heuristic,
            block: 4,
            scroll: true,
            merge_rows: true,
            video: true,
            stream: true,
        }
    }
}

/// Encodes successive frames of one output for one decoder.
///
/// It keeps a copy of what the decoder shows (not merely the last input: pixels outside the
/// damage are never sent), so XOR tiles always apply to the pixels the appliance has.
pub struct Encoder {
    grid: TileGrid,
    reference: Vec<u8>,
    key_pending: bool,
    config: EncoderConfig,
    /// Created on first use (creation can fail): `[level, photo_level]`.
    compressors: [Option<Compressor<'static>>; 2],
    /// Created on first use with `config.stream`; reset at every key frame.
    stream: Option<StreamCompressor>,
    scroll: ScrollDetector,
    palette: Palettizer,
    // Scratch reused across tiles and frames, so the steady state allocates only the output.
    damaged: Vec<bool>,
    /// Rows of each damaged cell the damage covers: outside them nothing changed, so only they
    /// are compared with the reference.
    spans: Vec<RowSpan>,
    raw: Vec<u8>,
    xor: Vec<u8>,
    packed: Vec<u8>,
    video: VideoEncoder,
}

impl Encoder {
    pub fn new(width: u32, height: u32) -> Encoder {
        Self::with_config(width, height, EncoderConfig::default())
    }

    pub fn with_config(width: u32, height: u32, config: EncoderConfig) -> Encoder {
        Encoder {
            grid: TileGrid::new(width, height),
            reference: Vec::new(),
            key_pending: true,
            config,
            compressors: [None, None],
            stream: None,
            scroll: ScrollDetector::default(),
            palette: Palettizer::default(),
            damaged: Vec::new(),
            spans: Vec::new(),
            raw: Vec::new(),
            xor: Vec::new(),
            packed: Vec::new(),
            video: VideoEncoder::new(width, height),
        }
    }

    pub fn width(&self) -> u32 {
        self.grid.width
    }

    pub fn height(&self) -> u32 {
        self.grid.height
    }

    pub fn config(&self) -> EncoderConfig {
        self.config
    }

    /// Makes the next frame a key frame, e.g. because a new appliance attached.
    pub fn reset(&mut self) {
        self.key_pending = true;
    }

    /// Changes the frame size; the next frame is a key frame of the new size.
    pub fn resize(&mut self, width: u32, height: u32) {
        self.grid = TileGrid::new(width, height);
        self.video = VideoEncoder::new(width, height);
        self.reference.clear();
        self.key_pending = true;
    }

    /// Encodes the whole frame as damaged.
    pub fn encode_full(&mut self, seq: u64, pixels: &[u8]) -> Result<FrameUpdate, EncodeError> {
        let all = Rect::new(0, 0, self.grid.width, self.grid.height);
        self.encode(seq, pixels, &[all])
    }

    /// Encodes the tiles touched by `damage`, which must cover every pixel that changed since the
    /// previous call. A key frame (the first one, or after [`reset`](Self::reset) or
    /// [`resize`](Self::resize)) ignores `damage` and sends everything.
    pub fn encode(
        &mut self,
        seq: u64,
        pixels: &[u8],
        damage: &[Rect],
    ) -> Result<FrameUpdate, EncodeError> {
        let (width, height) = (self.grid.width, self.grid.height);
        if width == 0 || height == 0 || width > MAX_DIMENSION || height > MAX_DIMENSION {
            return Err(EncodeError::InvalidSize { width, height });
        }
        let expected = width as usize * height as usize * BYTES_PER_PIXEL;
        if pixels.len() != expected {
            return Err(EncodeError::PixelsLength {
                width,
                height,
                expected,
                got: pixels.len(),
            });
        }

        let key = self.key_pending;
        if key && self.config.stream {
            // The decoder starts its stream over at every key frame: so does the encoder.
            self.palette.clear();
            if let Some(stream) = &mut self.stream {
                stream.reset()?;
            }
        }
        self.damaged.clear();
        self.damaged.resize(self.grid.len(), key);
        self.spans.clear();
        self.spans.resize(self.grid.len(), (0, 0));
        if !key {
            for d in damage {
                self.grid
                    .mark_spans(d, &mut self.damaged, Some(&mut self.spans));
            }
        }
        // Lossy cells differ from the reference outside any damage: while there are any, whole
        // cells are compared.
        let use_spans = !key && !self.video.has_lossy();
        let video = self.encode_video(pixels, key, use_spans)?;

        // Copies after the video picture and before the tiles, the decoder's order: they update
        // the reference, so the cells they fix look unchanged below.
        let mut copies = Vec::new();
        if !key && self.config.scroll {
            for area in damage.iter().filter_map(|d| d.clip(width, height)) {
                if copies.len() == MAX_COPIES {
                    break;
                }
                if let Some(copy) = self.scroll.detect(pixels, &self.reference, width, area) {
                    tiles::apply_copy(&mut self.reference, width, &copy);
                    copies.push(copy);
                }
            }
        }

        let block = self.config.block.max(1);
        let mut tiles = Vec::new();
        let mut row = Vec::new();
        for by in (0..self.grid.rows).step_by(block as usize) {
            row.clear();
            for bx in (0..self.grid.cols).step_by(block as usize) {
                let Some(bounds) =
                    self.changed_bounds(pixels, bx, by, block, key, use_spans, &copies)
                else {
                    continue;
                };
                // Tiles go around an active video region, never over it.
                for rect in self.video.around_region(bounds) {
                    // Solid areas stay tiles of their own: four bytes beat any zstd frame.
                    let mergeable = self.config.merge_rows
                        && solid_colour(pixels, rect, self.grid.width).is_none();
                    match row.last_mut() {
                        Some((last, true)) if mergeable && touches(last, &rect) => last.w += rect.w,
                        _ => row.push((rect, mergeable)),
                    }
                }
            }
            for &(rect, _) in &row {
                match self.encode_tile(pixels, rect, key) {
                    Ok(data) => {
                        if self.config.video {
                            self.video.record_lossless(rect, data.payload_len());
                        }
                        tiles.push(Tile { rect, data })
                    }
                    Err(e) => {
                        // The reference may already hold tiles this update never delivers.
                        self.key_pending = true;
                        return Err(e.into());
                    }
                }
            }
        }
        if key {
            self.reference.clear();
            self.reference.extend_from_slice(pixels);
            self.key_pending = false;
        }
        Ok(FrameUpdate {
            seq,
            width,
            height,
            key,
            copies,
            tiles,
            video,
            time_us: 0,
        })
    }

    /// Bounding box of the cells of block `(bx, by)` that are damaged and differ from the
    /// reference (all of them in a key frame). Unchanged cells inside the box are sent again:
    /// as XOR they are zeros, which cost zstd next to nothing. Rows a copy just made equal
    /// (the scroll search compared them byte for byte) are not compared again.
    #[allow(clippy::too_many_arguments)]
    fn changed_bounds(
        &self,
        pixels: &[u8],
        bx: u32,
        by: u32,
        block: u32,
        key: bool,
        use_spans: bool,
        copies: &[CopyRect],
    ) -> Option<Rect> {
        let fw = self.grid.width;
        let (mut x0, mut y0, mut x1, mut y1) = (u32::MAX, u32::MAX, 0, 0);
        for row in by..by.saturating_add(block).min(self.grid.rows) {
            for col in bx..bx.saturating_add(block).min(self.grid.cols) {
                let i = (row * self.grid.cols + col) as usize;
                if !self.damaged[i] {
                    continue;
                }
                let cell = self.grid.tile_rect(col, row);
                let look = if use_spans {
                    tiles::span_rect(cell, self.spans[i])
                } else {
                    cell
                };
                let same = |part: Rect| {
                    tiles::rows(part, fw).all(|r| pixels[r.clone()] == self.reference[r])
                };
                if !key && outside_copies(look, copies).into_iter().flatten().all(same) {
                    continue;
                }
                x0 = x0.min(cell.x);
                y0 = y0.min(cell.y);
                x1 = x1.max(cell.x + cell.w);
                y1 = y1.max(cell.y + cell.h);
            }
        }
        (x0 < x1).then(|| Rect::new(x0, y0, x1 - x0, y1 - y0))
    }

    /// Solid if the area is one colour, else Zstd or ZstdXor.
    fn encode_tile(&mut self, pixels: &[u8], rect: Rect, key: bool) -> io::Result<TileData> {
        let fw = self.grid.width;
        if let Some(colour) = solid_colour(pixels, rect, fw) {
            self.update_reference(pixels, rect, key);
            return Ok(TileData::Solid(colour));
        }
        // Decide from a sample of rows, so the XOR pass only runs when XOR will be sent.
        let score = if key {
            Score::sample(pixels, None, rect, fw)
        } else {
            Score::sample(pixels, Some(&self.reference), rect, fw)
        };
        let choice = match self.config.xor_choice {
            _ if key => XorChoice::Raw,
            XorChoice::Smaller if self.config.stream => XorChoice::Heuristic,
            c => c,
        };
        let raw_photo = score.is_photo(score.raw_repeats, &self.config);
        let xor_photo = score.is_photo(score.xor_repeats, &self.config);
        // Palette tiles copy their rows into the reference while they read them (cheaper than a
        // second pass); XOR needs the old reference, so `Smaller` lets the raw attempt not copy.
        let (data, updated) = match choice {
            XorChoice::Raw => self.encode_raw(pixels, rect, raw_photo, !key)?,
            XorChoice::Xor => (self.compress_xor(pixels, rect, xor_photo)?, false),
            XorChoice::Heuristic if score.xor_repeats > score.raw_repeats => {
                (self.compress_xor(pixels, rect, xor_photo)?, false)
            }
            XorChoice::Heuristic => self.encode_raw(pixels, rect, raw_photo, !key)?,
            XorChoice::Smaller => {
                let (raw, _) = self.encode_raw(pixels, rect, raw_photo, false)?;
                let xor = self.compress_xor(pixels, rect, xor_photo)?;
                if xor.payload_len() < raw.payload_len() {
                    (xor, false)
                } else {
                    (raw, false)
                }
            }
        };
        if !updated {
            self.update_reference(pixels, rect, key);
        }
        Ok(data)
    }

    /// Key frames copy the whole frame at the end instead.
    fn update_reference(&mut self, pixels: &[u8], rect: Rect, key: bool) {
        if !key {
            for r in tiles::rows(rect, self.grid.width) {
                self.reference[r.clone()].copy_from_slice(&pixels[r]);
            }
        }
    }

    /// The tile's own pixels: as a palette tile if it has few colours (photos never do, so
    /// they skip the attempt), else zstd of the pixels. With `update_ref`, a palette tile also
    /// updates the reference; the flag returned says whether it did.
    fn encode_raw(
        &mut self,
        pixels: &[u8],
        rect: Rect,
        photo: bool,
        update_ref: bool,
    ) -> io::Result<(TileData, bool)> {
        if !photo && self.config.stream {
            let copy_to = update_ref.then_some(self.reference.as_mut_slice());
            if let Some(ext) = self.palette.extend(pixels, rect, self.grid.width, copy_to) {
                let stream = stream_of(&mut self.stream, self.config.level)?;
                let (number, indices) = stream.compress(&self.palette.indices, &mut self.packed)?;
                let data = TileData::StreamPalette {
                    number,
                    reset: ext.reset,
                    added: self.palette.colours()[ext.first_new * 4..].to_vec(),
                    indices,
                };
                return Ok((data, update_ref));
            }
            return self.compress_raw(pixels, rect, photo, update_ref);
        }
        let copy_to = update_ref.then_some(self.reference.as_mut_slice());
        if !photo && self.palette.build(pixels, rect, self.grid.width, copy_to) {
            let indices = compress_with(
                &mut self.compressors[0],
                self.config.level,
                &self.palette.indices,
                &mut self.packed,
            )?;
            let data = TileData::ZstdPalette {
                colours: self.palette.colours().to_vec(),
                indices,
            };
            return Ok((data, update_ref));
        }
        self.compress_raw(pixels, rect, photo, update_ref)
    }

    /// zstd of the tile's pixels; with `update_ref`, each row is also copied into the reference
    /// while it is in cache (the flag returned says so).
    fn compress_raw(
        &mut self,
        pixels: &[u8],
        rect: Rect,
        photo: bool,
        update_ref: bool,
    ) -> io::Result<(TileData, bool)> {
        self.raw.clear();
        for r in tiles::rows(rect, self.grid.width) {
            self.raw.extend_from_slice(&pixels[r.clone()]);
            if update_ref {
                self.reference[r.clone()].copy_from_slice(&pixels[r]);
            }
        }
        if !photo && self.config.stream {
            let stream = stream_of(&mut self.stream, self.config.level)?;
            let (number, data) = stream.compress(&self.raw, &mut self.packed)?;
            return Ok((TileData::StreamPixels { number, data }, update_ref));
        }
        Ok((TileData::Zstd(self.compress(false, photo)?), update_ref))
    }

    fn compress_xor(&mut self, pixels: &[u8], rect: Rect, photo: bool) -> io::Result<TileData> {
        self.xor.resize(rect.area() as usize * BYTES_PER_PIXEL, 0);
        let rows = self.xor.chunks_exact_mut(rect.w as usize * BYTES_PER_PIXEL);
        for (dst, r) in rows.zip(tiles::rows(rect, self.grid.width)) {
            let (new, old) = (&pixels[r.clone()], &self.reference[r]);
            for ((d, a), b) in dst.iter_mut().zip(new).zip(old) {
                *d = a ^ b;
            }
        }
        if !photo && self.config.stream {
            let stream = stream_of(&mut self.stream, self.config.level)?;
            let (number, data) = stream.compress(&self.xor, &mut self.packed)?;
            return Ok(TileData::StreamXor { number, data });
        }
        Ok(TileData::ZstdXor(self.compress(true, photo)?))
    }

    /// Compresses the raw or XOR scratch buffer, with the fast level for photo-like content.
    fn compress(&mut self, xor: bool, photo: bool) -> io::Result<Vec<u8>> {
        let src = if xor { &self.xor } else { &self.raw };
        let (slot, level) = if photo {
            (1, self.config.photo_level)
        } else {
            (0, self.config.level)
        };
        compress_with(&mut self.compressors[slot], level, src, &mut self.packed)
    }
}

/// zstd of `src` with the compressor in `slot` (created at `level` on first use), through the
/// worst-case-sized scratch buffer `packed`.
fn compress_with(
    slot: &mut Option<Compressor<'static>>,
    level: i32,
    src: &[u8],
    packed: &mut Vec<u8>,
) -> io::Result<Vec<u8>> {
    let compressor = match slot {
        Some(c) => c,
        None => slot.insert(Compressor::new(level)?),
    };
    packed.clear();
    packed.reserve(zstd::zstd_safe::compress_bound(src.len()));
    compressor.compress_to_buffer(src, packed)?;
    // Exact-size copy: the scratch buffer keeps the worst-case capacity.
    Ok(packed.clone())
}

/// The stream's compressor in `slot`, created at `level` on first use.
fn stream_of(slot: &mut Option<StreamCompressor>, level: i32) -> io::Result<&mut StreamCompressor> {
    match slot {
        Some(s) => Ok(s),
        None => Ok(slot.insert(StreamCompressor::new(level)?)),
    }
}

/// The parts of `look` above and below the rows the first copy that spans its columns wrote:
/// after the copies, those rows equal the new pixels (the copy moved only rows that matched).
fn outside_copies(look: Rect, copies: &[CopyRect]) -> [Option<Rect>; 2] {
    let covering = copies.iter().map(CopyRect::dst).find(|d| {
        d.x <= look.x && look.x + look.w <= d.x + d.w && d.y < look.y + look.h && look.y < d.y + d.h
    });
    let Some(d) = covering else {
        return [Some(look), None];
    };
    let above = (d.y > look.y).then(|| Rect::new(look.x, look.y, look.w, d.y - look.y));
    let (end, look_end) = (d.y + d.h, look.y + look.h);
    let below = (end < look_end).then(|| Rect::new(look.x, end, look.w, look_end - end));
    [above, below]
}

/// Whether `next` continues `last` to the right over exactly the same rows.
fn touches(last: &Rect, next: &Rect) -> bool {
    last.y == next.y && last.h == next.h && last.x + last.w == next.x
}

/// Video regions: the hook into [`Encoder::encode`] and its knobs (see `video.rs`).
impl Encoder {
    /// What the decoder shows after the last update: the source pixels, except inside an active
    /// video region. Empty before the first frame.
    pub fn reference(&self) -> &[u8] {
        &self.reference
    }

    /// Whether a video region is active, i.e. the appliance may show lossy pixels: keep calling
    /// [`encode`](Self::encode), with empty damage if nothing changed, until it turns false (a
    /// few quiet frames later, after the lossless refresh).
    pub fn video_active(&self) -> bool {
        self.video.active()
    }

    /// Most bits per second the link allows the video stream (0, the default: no limit). The
    /// stream runs at 4 Mbit/s for 1280×720 scaled by the region's area, or at this limit if it
    /// is lower; a new rate restarts the stream with its next picture.
    pub fn set_video_bitrate(&mut self, bits_per_second: u32) {
        self.video.set_bitrate(bits_per_second);
    }

    /// Picks and encodes this frame's video region, if enabled; adjusts `damaged` for the tiles.
    fn encode_video(
        &mut self,
        pixels: &[u8],
        key: bool,
        use_spans: bool,
    ) -> Result<Option<VideoUpdate>, EncodeError> {
        if !self.config.video {
            return Ok(None);
        }
        let (config, fw) = (self.config, self.grid.width);
        let is_photo = |rect| looks_photo(pixels, rect, fw, &config);
        let spans = use_spans.then_some(self.spans.as_slice());
        let result = self.video.frame(
            pixels,
            &mut self.reference,
            &mut self.damaged,
            spans,
            key,
            is_photo,
        );
        result.map_err(|e| {
            self.key_pending = true;
            e.into()
        })
    }
}

/// The area's colour if every pixel in it has the same value.
fn solid_colour(pixels: &[u8], rect: Rect, frame_width: u32) -> Option<u32> {
    let mut rows = tiles::rows(rect, frame_width);
    let first = &pixels[rows.next()?];
    let colour: [u8; 4] = first.get(..4)?.try_into().ok()?;
    // A row is one repeated pixel exactly when it equals itself shifted by one pixel: a memcmp
    // that stops at the first difference, as do the comparisons of the other rows with it.
    (first[4..] == first[..first.len() - 4] && rows.all(|r| &pixels[r] == first))
        .then(|| u32::from_le_bytes(colour))
}

/// Repeated pixels in a sample of a tile's rows, raw and XORed with the reference: a cheap
/// proxy for how well zstd will do on each.
struct Score {
    /// Pixel pairs (0–1, 2–3, …) looked at.
    pairs: usize,
    raw_repeats: usize,
    xor_repeats: usize,
}

impl Score {
    /// Every [`SAMPLE_EVERY`]th row, 8 bytes at a time so it vectorizes.
    fn sample(pixels: &[u8], reference: Option<&[u8]>, rect: Rect, frame_width: u32) -> Score {
        let mut s = Score {
            pairs: 0,
            raw_repeats: 0,
            xor_repeats: 0,
        };
        for r in tiles::rows(rect, frame_width).step_by(SAMPLE_EVERY) {
            let new = pixels[r.clone()].chunks_exact(8);
            s.pairs += new.len();
            let pair =
                |c: &[u8]| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            let repeated = |v: u64| usize::from(v as u32 == (v >> 32) as u32);
            match reference {
                Some(reference) => {
                    for (n, o) in new.zip(reference[r].chunks_exact(8)) {
                        let (n, o) = (pair(n), pair(o));
                        s.raw_repeats += repeated(n);
                        s.xor_repeats += repeated(n ^ o);
                    }
                }
                None => s.raw_repeats += new.map(|n| repeated(pair(n))).sum::<usize>(),
            }
        }
        s
    }

    fn is_photo(&self, repeats: usize, config: &EncoderConfig) -> bool {
        repeats * 100 < self.pairs * usize::from(config.photo_below_pct)
    }
}

/// `Score::sample(..).is_photo(raw_repeats)` for a tile without a reference, but it stops
/// reading rows once enough repeats are counted to rule a photo out: the video classifier asks
/// this of every changed cell, and text cells (mostly background) answer within about half of
/// their sampled rows.
fn looks_photo(pixels: &[u8], rect: Rect, frame_width: u32, config: &EncoderConfig) -> bool {
    let sampled_rows = (rect.h as usize).div_ceil(SAMPLE_EVERY);
    let pairs = sampled_rows * (rect.w as usize * BYTES_PER_PIXEL / 8);
    // Not a photo as soon as `repeats * 100 >= pairs * pct`, as `Score::is_photo` decides.
    let enough = pairs * usize::from(config.photo_below_pct);
    let mut repeats = 0;
    for r in tiles::rows(rect, frame_width).step_by(SAMPLE_EVERY) {
        repeats += pixels[r]
            .chunks_exact(8)
            .map(|c| {
                let v = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
                usize::from(v as u32 == (v >> 32) as u32)
            })
            .sum::<usize>();
        if repeats * 100 >= enough {
            return false;
        }
    }
    repeats * 100 < enough
}

/// One row in four is sampled: choices stay within 1 % of compressing both (see [`XorChoice`])
/// at a quarter of the counting cost.
const SAMPLE_EVERY: usize = 4;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_photo_decides_as_the_full_sample_does() {
        // Tiles from all-repeats to no repeats, at widths with and without a tail pair.
        let (fw, fh) = (67u32, 40u32);
        let config = EncoderConfig::default();
        for noise in [0u64, 10, 30, 45, 50, 55, 70, 100] {
            let mut seed = noise + 1;
            let pixels: Vec<u8> = (0..fw * fh)
                .flat_map(|i| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let c = if (seed >> 40) % 100 < noise { i } else { 7 };
                    c.to_le_bytes()
                })
                .collect();
            for rect in [
                Rect::new(0, 0, fw, fh),
                Rect::new(3, 5, 64, 33),
                Rect::new(1, 1, 9, 1),
            ] {
                let score = Score::sample(&pixels, None, rect, fw);
                assert_eq!(
                    looks_photo(&pixels, rect, fw, &config),
                    score.is_photo(score.raw_repeats, &config),
                    "noise {noise} % in {rect:?}"
                );
            }
        }
    }

    #[test]
    fn rows_a_copy_wrote_are_not_looked_at_again() {
        let copy = CopyRect {
            src: Rect::new(0, 40, 256, 100),
            dst_x: 0,
            dst_y: 20,
        };
        // Inside the copy's rows and columns: nothing left to compare.
        let inside = Rect::new(64, 64, 64, 50);
        assert_eq!(outside_copies(inside, &[copy]), [None, None]);
        // Straddling its top and bottom: the rows above and below it.
        let tall = Rect::new(0, 0, 64, 128);
        assert_eq!(
            outside_copies(tall, &[copy]),
            [
                Some(Rect::new(0, 0, 64, 20)),
                Some(Rect::new(0, 120, 64, 8))
            ]
        );
        // Wider than the copy, or beside it: compared whole.
        let wide = Rect::new(200, 64, 64, 16);
        assert_eq!(outside_copies(wide, &[copy]), [Some(wide), None]);
        let below = Rect::new(0, 120, 64, 8);
        assert_eq!(outside_copies(below, &[copy]), [Some(below), None]);
    }
}
