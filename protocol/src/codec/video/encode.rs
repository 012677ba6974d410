//! Server side: picks the video region, encodes it, and keeps the encoder's reference equal to
//! what the appliance will show.

use super::super::tiles::{self, RowSpan, TileGrid};
use super::super::{Rect, TILE_SIZE};
use super::classify::CellHistory;
use super::software::{OpenH264Decoder, OpenH264Encoder};
use super::yuv::{i420_to_xrgb, xrgb_to_i420, I420};
use super::{video_size_ok, VideoDecoder, VideoError, VideoUpdate};
use crate::BYTES_PER_PIXEL;

/// Smallest region side: below this, widgets (spinners, small animations) stay lossless and
/// H.264's fixed costs would eat the gain.
const MIN_SIDE: u32 = 128;
/// Frames without a video-like change in the region (a change in a cell that looked photo-like
/// within the history window) after which it is dropped and refreshed losslessly: short enough
/// that a paused video turns sharp at once, long enough to ride over the odd repeated frame of a
/// playing one. Changes in cells that never looked photo-like (text typed over a paused video)
/// do not keep a region alive.
const QUIET_FRAMES: u32 = 3;
/// Default bitrate for a 1280×720 region, scaled by area for others.
const BITRATE_720P: u64 = 4_000_000;
const AREA_720P: u64 = 1280 * 720;
/// Bounds of the area-scaled default.
const MIN_BITRATE: u64 = 250_000;
const MAX_BITRATE: u64 = 40_000_000;

/// The active video region.
#[derive(Debug, Clone, Copy)]
struct Region {
    rect: Rect,
    /// Consecutive frames without a video-like change in its cells.
    quiet: u32,
}

/// The encoder's video state; [`Encoder`](super::super::Encoder) calls [`frame`](Self::frame)
/// before encoding tiles.
pub(crate) struct VideoEncoder {
    cells: CellHistory,
    region: Option<Region>,
    /// Cells whose reference pixels came from a decoded picture, i.e. may differ from the source.
    lossy: Vec<bool>,
    /// The running stream, `None` until the next picture starts one with an IDR.
    stream: Option<Stream>,
    /// Set by [`set_bitrate`](Self::set_bitrate); 0 means scaled by area.
    bitrate: u32,
    picture: I420,
    decoded: I420,
    xrgb: Vec<u8>,
    data: Vec<u8>,
}

impl VideoEncoder {
    pub fn new(width: u32, height: u32) -> Self {
        let grid = TileGrid::new(width, height);
        Self {
            cells: CellHistory::new(grid),
            region: None,
            lossy: vec![false; grid.len()],
            stream: None,
            bitrate: 0,
            picture: I420::default(),
            decoded: I420::default(),
            xrgb: Vec::new(),
            data: Vec::new(),
        }
    }

    /// Whether a region is active: its pixels on the appliance may be lossy, so the caller
    /// should keep encoding (with empty damage if nothing else changed) until it is refreshed.
    pub fn active(&self) -> bool {
        self.region.is_some()
    }

    /// Whether any cell's reference is lossy, i.e. differs from the source outside the damage.
    pub fn has_lossy(&self) -> bool {
        self.lossy.iter().any(|&l| l)
    }

    /// Most bits per second the link allows the stream; 0: no limit. The target is
    /// [`BITRATE_720P`] scaled by the region's area, lowered to this limit. A change of the
    /// target restarts the stream with an IDR at the next picture.
    pub fn set_bitrate(&mut self, bits_per_second: u32) {
        self.bitrate = bits_per_second;
    }

    /// One frame: records the cells' history, picks the region, encodes a picture if it changed,
    /// and adjusts `damaged` for the tile pass: region cells are left out (the picture carries
    /// them), lossy cells outside it are put in (the tiles make them exact again).
    ///
    /// In a key frame everything travels as tiles: the region is dropped and the stream restarts.
    pub fn frame(
        &mut self,
        pixels: &[u8],
        reference: &mut [u8],
        damaged: &mut [bool],
        spans: Option<&[RowSpan]>,
        key: bool,
        is_photo: impl Fn(Rect) -> bool,
    ) -> Result<Option<VideoUpdate>, VideoError> {
        self.cells
            .observe(pixels, reference, &self.lossy, damaged, spans, is_photo);
        let grid = *self.cells.grid();
        if key {
            self.region = None;
            self.stream = None;
            self.lossy.fill(false);
            return Ok(None);
        }

        self.region = self.next_region(&grid);
        let was_lossy = self.lossy.clone();
        let mut update = None;
        if let Some(region) = self.region {
            // Any change goes out now, even one that does not count against going quiet (text
            // typed over a paused video): its cells are not sent as tiles while the region lasts.
            let changed = inside(&grid, region.rect).any(|i| self.cells.changed_now(i));
            let new_stream = self.stream.as_ref().is_none_or(|s| s.rect != region.rect);
            if changed || new_stream {
                match self.encode(pixels, reference, region.rect) {
                    Ok(u) => update = Some(u),
                    Err(e) => {
                        self.region = None;
                        self.stream = None;
                        return Err(e);
                    }
                }
            }
            for i in inside(&grid, region.rect) {
                damaged[i] = false;
                if !was_lossy[i] && self.lossy[i] {
                    self.cells.remember(pixels, i);
                }
            }
        } else {
            self.stream = None;
        }
        let region = self.region.map(|r| r.rect);
        for (i, lossy) in self.lossy.iter_mut().enumerate() {
            if *lossy && !region.is_some_and(|r| cell_inside(&grid, r, i)) {
                damaged[i] = true;
                *lossy = false;
            }
        }
        Ok(update)
    }

    /// A lossless tile of `bytes` covered `rect`: what its cells cost without H.264.
    pub fn record_lossless(&mut self, rect: Rect, bytes: usize) {
        self.cells.record_lossless(rect, bytes);
    }

    /// `bounds` (a block's changed cells) minus the active region's cells, as up to four
    /// rects: the cells around a region change with it, but a tile spanning the region would
    /// overwrite the picture with the exact pixels, paying for them in full.
    pub fn around_region(&self, bounds: Rect) -> impl Iterator<Item = Rect> {
        let grid = self.cells.grid();
        let hole = self.region.and_then(|r| {
            let mut cells = inside(grid, r.rect);
            let first = cells.next()?;
            let last = cells.last().unwrap_or(first);
            let cell = |i: usize| grid.tile_rect(i as u32 % grid.cols, i as u32 / grid.cols);
            let (a, b) = (cell(first), cell(last));
            let (x0, y0) = (a.x.max(bounds.x), a.y.max(bounds.y));
            let x1 = (b.x + b.w).min(bounds.x + bounds.w);
            let y1 = (b.y + b.h).min(bounds.y + bounds.h);
            (x0 < x1 && y0 < y1).then_some((x0, y0, x1, y1))
        });
        let parts = match hole {
            None => [Some(bounds), None, None, None],
            Some((x0, y0, x1, y1)) => {
                let (bx1, by1) = (bounds.x + bounds.w, bounds.y + bounds.h);
                let part = |x: u32, y: u32, x1: u32, y1: u32| {
                    (x < x1 && y < y1).then(|| Rect::new(x, y, x1 - x, y1 - y))
                };
                [
                    part(bounds.x, bounds.y, bx1, y0),
                    part(bounds.x, y1, bx1, by1),
                    part(bounds.x, y0, x0, y1),
                    part(x1, y0, bx1, y1),
                ]
            }
        };
        parts.into_iter().flatten()
    }

    /// Keeps, moves, starts or ends the region from this frame's classification.
    fn next_region(&self, grid: &TileGrid) -> Option<Region> {
        let candidate = self.candidate(grid);
        let current = match (self.region, candidate) {
            (None, None) => return None,
            (None, Some(rect)) => return Some(Region { rect, quiet: 0 }),
            (Some(current), _) => current,
        };
        if let Some(rect) = candidate {
            // Follow a video that moved or grew, or shrank to under half: the stream restarts.
            let contained = rect.x >= current.rect.x
                && rect.y >= current.rect.y
                && rect.x + rect.w <= current.rect.x + current.rect.w
                && rect.y + rect.h <= current.rect.y + current.rect.h;
            if !contained || rect.area() * 2 < current.rect.area() {
                return Some(Region { rect, quiet: 0 });
            }
        }
        let changed = inside(grid, current.rect)
            .any(|i| self.cells.changed_now(i) && self.cells.photo_recently(i));
        let quiet = if changed { 0 } else { current.quiet + 1 };
        (quiet < QUIET_FRAMES).then_some(Region {
            rect: current.rect,
            quiet,
        })
    }

    /// The bounding box of the video-like cells, if it is mostly such cells and large enough,
    /// trimmed to even sides inside the frame.
    fn candidate(&self, grid: &TileGrid) -> Option<Rect> {
        let (mut c0, mut r0, mut c1, mut r1) = (u32::MAX, u32::MAX, 0, 0);
        let mut count = 0u64;
        for i in 0..grid.len() {
            if self.cells.is_video(i) {
                let (col, row) = (i as u32 % grid.cols, i as u32 / grid.cols);
                (c0, r0, c1, r1) = (c0.min(col), r0.min(row), c1.max(col), r1.max(row));
                count += 1;
            }
        }
        if count == 0 {
            return None;
        }
        let cells = u64::from(c1 - c0 + 1) * u64::from(r1 - r0 + 1);
        // Mostly video, and at least as many video-like cells as a minimal region holds.
        let min_cells = u64::from(MIN_SIDE.div_ceil(TILE_SIZE)).pow(2);
        if count * 2 < cells || count < min_cells {
            return None;
        }
        let (first, last) = (grid.tile_rect(c0, r0), grid.tile_rect(c1, r1));
        let w = (last.x + last.w - first.x) & !1;
        let h = (last.y + last.h - first.y) & !1;
        (w >= MIN_SIDE && h >= MIN_SIDE && video_size_ok(w, h))
            .then(|| Rect::new(first.x, first.y, w, h))
    }

    fn target_bitrate(&self, rect: Rect) -> u32 {
        let scaled = BITRATE_720P * rect.area() / AREA_720P;
        let scaled = scaled.clamp(MIN_BITRATE, MAX_BITRATE) as u32;
        match self.bitrate {
            0 => scaled,
            limit => scaled.min(limit),
        }
    }

    /// Encodes `rect` of `pixels`, decodes the result as the appliance will, and writes that into
    /// `reference`. A new stream (IDR) starts when there is none or its rect or bitrate changed.
    fn encode(
        &mut self,
        pixels: &[u8],
        reference: &mut [u8],
        rect: Rect,
    ) -> Result<VideoUpdate, VideoError> {
        let fw = self.cells.grid().width;
        let bitrate = self.target_bitrate(rect);
        let stream = match &mut self.stream {
            Some(s) if s.rect == rect && s.encoder.bitrate() == bitrate => s,
            _ => self.stream.insert(Stream {
                rect,
                encoder: OpenH264Encoder::new(bitrate)?,
                decoder: OpenH264Decoder::new()?,
            }),
        };
        xrgb_to_i420(pixels, fw, rect, &mut self.picture);
        let idr = stream.encoder.encode(&self.picture, &mut self.data)?;
        stream.decoder.decode(&self.data, &mut self.decoded)?;
        if (self.decoded.width, self.decoded.height) != (rect.w, rect.h) {
            return Err(VideoError::Size {
                width: rect.w,
                height: rect.h,
                got_width: self.decoded.width,
                got_height: self.decoded.height,
            });
        }
        i420_to_xrgb(&self.decoded, &mut self.xrgb);
        let row_len = rect.w as usize * BYTES_PER_PIXEL;
        for (r, src) in tiles::rows(rect, fw).zip(self.xrgb.chunks_exact(row_len)) {
            reference[r].copy_from_slice(src);
        }
        for i in touching(self.cells.grid(), rect) {
            self.lossy[i] = true;
        }
        Ok(VideoUpdate {
            rect,
            idr,
            data: self.data.clone(),
        })
    }
}

/// A running H.264 stream and the decoder that follows it as the appliance's does.
struct Stream {
    rect: Rect,
    encoder: OpenH264Encoder,
    decoder: OpenH264Decoder,
}

/// Grid indices of the cells that lie entirely inside `rect`.
fn inside(grid: &TileGrid, rect: Rect) -> impl Iterator<Item = usize> + '_ {
    touching(grid, rect).filter(move |&i| cell_inside(grid, rect, i))
}

/// Whether cell `i` lies entirely inside `rect`.
fn cell_inside(grid: &TileGrid, rect: Rect, i: usize) -> bool {
    let cell = grid.tile_rect(i as u32 % grid.cols, i as u32 / grid.cols);
    cell.x >= rect.x
        && cell.y >= rect.y
        && cell.x + cell.w <= rect.x + rect.w
        && cell.y + cell.h <= rect.y + rect.h
}

/// Grid indices of the cells that `rect` (inside the frame, not empty) overlaps.
fn touching(grid: &TileGrid, rect: Rect) -> impl Iterator<Item = usize> + '_ {
    let (c0, c1) = (rect.x / TILE_SIZE, (rect.x + rect.w - 1) / TILE_SIZE);
    let (r0, r1) = (rect.y / TILE_SIZE, (rect.y + rect.h - 1) / TILE_SIZE);
    let cols = grid.cols;
    (r0..=r1).flat_map(move |row| (c0..=c1).map(move |col| (row * cols + col) as usize))
}
