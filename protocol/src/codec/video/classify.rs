//! Which grid cells look like video, from measurements over the last frames rather than guesses:
//! a cell is video-like when it changed in most recent frames, looked photo-like (few repeated
//! pixel pairs, so zstd gains little) when it did, and its last lossless tile cost at least
//! [`MIN_LOSSLESS_MILLIBYTES`] per pixel. Typing, blinking cursors and menus change rarely or are
//! flat; animations of flat UI fail the photo test; smooth animations that zstd still handles
//! cheaply (weston-simple-shm) fail the cost test; a playing video passes all three.

use super::super::tiles::{self, RowSpan, TileGrid};
use super::super::{Rect, TILE_SIZE};

/// Frames of history kept per cell.
pub(super) const WINDOW: u32 = 10;
/// A cell is video-like when it changed in at least this share (in tenths) of the observed frames
/// of the window: 8 of 10, so a video with a few repeated frames still qualifies but a burst of
/// UI animation does not.
const CHANGED_TENTHS: u32 = 8;
/// Frames observed before anything can qualify; until the window has filled (a new encoder or a
/// resize), the share is taken over the frames seen so far, so video starts after 4 frames
/// instead of 8 without ever needing fewer than 4 changes in a row.
const MIN_OBSERVED: u32 = 4;
/// Least lossless cost, in thousandths of a byte per pixel, at which a cell may go to H.264:
/// 2 bits per pixel. Measured with scripts/bench-vs-waypipe: weston-simple-shm's rings cost
/// 0.08 B/px as lossless XOR tiles, and H.264 saved only a quarter of their bytes for 60 % more
/// CPU; the video-like client costs 1.3 B/px lossless and H.264 sends 9× fewer bytes.
pub(super) const MIN_LOSSLESS_MILLIBYTES: u32 = 250;

/// Per-cell change and photo history, newest frame in bit 0.
pub(super) struct CellHistory {
    grid: TileGrid,
    /// Digest of each lossy cell's source pixels when last seen, so "changed" means the source
    /// changed, not that it differs from the lossy reference. Exact cells compare with the
    /// reference instead, which stops at the first difference and needs no hashing.
    digests: Vec<u64>,
    changed: Vec<u16>,
    photo: Vec<u16>,
    /// What the cell cost the last time it travelled as a lossless tile, in thousandths of a
    /// byte per pixel (the tile's bytes spread over its area); 0 until then.
    lossless_cost: Vec<u32>,
    /// Frames observed since the grid was created, saturating at [`WINDOW`].
    observed: u32,
}

impl CellHistory {
    pub fn new(grid: TileGrid) -> Self {
        Self {
            grid,
            digests: vec![0; grid.len()],
            changed: vec![0; grid.len()],
            photo: vec![0; grid.len()],
            lossless_cost: vec![0; grid.len()],
            observed: 0,
        }
    }

    pub fn grid(&self) -> &TileGrid {
        &self.grid
    }

    /// Records one frame: damaged cells whose pixels differ from last time changed, and are
    /// sampled with `is_photo`. Undamaged cells did not change (the encoder's contract). Cells
    /// not in `lossy` compare with `reference` (what the decoder shows, exactly the last source
    /// pixels there); lossy ones with their digest, which [`remember`](Self::remember) set when
    /// they turned lossy.
    pub fn observe(
        &mut self,
        pixels: &[u8],
        reference: &[u8],
        lossy: &[bool],
        damaged: &[bool],
        spans: Option<&[RowSpan]>,
        is_photo: impl Fn(Rect) -> bool,
    ) {
        let fw = self.grid.width;
        let exact_reference = reference.len() == pixels.len();
        for (i, &d) in damaged.iter().enumerate().take(self.grid.len()) {
            let mut changed = false;
            let mut photo = false;
            if d {
                let cell = self.cell(i);
                changed = if lossy.get(i).copied().unwrap_or(false) {
                    let digest = digest(pixels, cell, fw);
                    let changed = digest != self.digests[i];
                    self.digests[i] = digest;
                    changed
                } else if exact_reference {
                    let look = spans.map_or(cell, |s| tiles::span_rect(cell, s[i]));
                    tiles::rows(look, fw).any(|r| pixels[r.clone()] != reference[r])
                } else {
                    true
                };
                if changed {
                    photo = is_photo(cell);
                }
            }
            self.changed[i] = self.changed[i] << 1 | u16::from(changed);
            self.photo[i] = self.photo[i] << 1 | u16::from(photo);
        }
        self.observed = (self.observed + 1).min(WINDOW);
    }

    /// Cell `i` turns lossy now: keep the digest of its source pixels for the next frames.
    pub fn remember(&mut self, pixels: &[u8], i: usize) {
        self.digests[i] = digest(pixels, self.cell(i), self.grid.width);
    }

    /// A lossless tile of `bytes` covered `rect` (whole cells, as the encoder's tiles do):
    /// records the cost per pixel for the cells inside it.
    pub fn record_lossless(&mut self, rect: Rect, bytes: usize) {
        let area = rect.area().max(1);
        let cost = u32::try_from(bytes as u64 * 1000 / area).unwrap_or(u32::MAX);
        let g = self.grid;
        let (c0, r0) = (rect.x / TILE_SIZE, rect.y / TILE_SIZE);
        let c1 = (rect.x + rect.w).div_ceil(TILE_SIZE).min(g.cols);
        let r1 = (rect.y + rect.h).div_ceil(TILE_SIZE).min(g.rows);
        for row in r0..r1 {
            for col in c0..c1 {
                self.lossless_cost[(row * g.cols + col) as usize] = cost;
            }
        }
    }

    fn cell(&self, i: usize) -> Rect {
        self.grid
            .tile_rect(i as u32 % self.grid.cols, i as u32 / self.grid.cols)
    }

    fn window_mask(&self) -> u16 {
        (1u16 << self.observed) - 1
    }

    /// Whether cell `i` changed in the last observed frame.
    pub fn changed_now(&self, i: usize) -> bool {
        self.changed[i] & 1 != 0
    }

    /// Whether cell `i` looked photo-like at all within the window: its changes may still be
    /// video (a dark scene), unlike those of a cell that never did (text typed there).
    pub fn photo_recently(&self, i: usize) -> bool {
        self.photo[i] & self.window_mask() != 0
    }

    /// Whether cell `i` is video-like: it changed in [`CHANGED_TENTHS`] of the observed frames,
    /// looked photo-like in at least half of those (a dark or faded picture may pass as flat
    /// for a frame or two), and is expensive enough lossless for H.264 to pay off.
    pub fn is_video(&self, i: usize) -> bool {
        if self.observed < MIN_OBSERVED {
            return false;
        }
        let mask = self.window_mask();
        let changed = (self.changed[i] & mask).count_ones();
        let photo = (self.photo[i] & mask).count_ones();
        changed * 10 >= CHANGED_TENTHS * self.observed
            && photo * 2 >= changed
            && self.lossless_cost[i] >= MIN_LOSSLESS_MILLIBYTES
    }
}

/// Digest of one cell's pixels.
fn digest(pixels: &[u8], cell: Rect, frame_width: u32) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for r in tiles::rows(cell, frame_width) {
        h.update(&pixels[r]);
    }
    h.digest()
}
