//! Tile grid geometry and row addressing shared by the encoder and decoder.

use std::ops::Range;

use super::{CopyRect, Rect, TILE_SIZE};
use crate::BYTES_PER_PIXEL;

/// The fixed 64×64 grid over a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TileGrid {
    pub width: u32,
    pub height: u32,
    pub cols: u32,
    pub rows: u32,
}

impl TileGrid {
    pub fn new(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            cols: width.div_ceil(TILE_SIZE),
            rows: height.div_ceil(TILE_SIZE),
        }
    }

    pub fn len(&self) -> usize {
        self.cols as usize * self.rows as usize
    }

    /// Rect of tile `(col, row)`, clipped at the right and bottom edges.
    pub fn tile_rect(&self, col: u32, row: u32) -> Rect {
        let x = col * TILE_SIZE;
        let y = row * TILE_SIZE;
        Rect::new(
            x,
            y,
            TILE_SIZE.min(self.width - x),
            TILE_SIZE.min(self.height - y),
        )
    }

    /// Marks in `mask` (row-major, `len()` entries) every tile that `damage` touches after
    /// clipping it to the frame, and widens each touched tile's entry in `spans` to the rows
    /// (relative to the tile) the damage covers: a changed text line damages 16 rows of a
    /// 64-row tile, and only those need comparing. `(0, 0)` is "no span yet".
    pub fn mark_spans(&self, damage: &Rect, mask: &mut [bool], mut spans: Option<&mut [RowSpan]>) {
        let Some(r) = damage.clip(self.width, self.height) else {
            return;
        };
        let (c0, c1) = (r.x / TILE_SIZE, (r.x + r.w - 1) / TILE_SIZE);
        let (r0, r1) = (r.y / TILE_SIZE, (r.y + r.h - 1) / TILE_SIZE);
        for row in r0..=r1 {
            let base = (row * self.cols) as usize;
            let range = base + c0 as usize..=base + c1 as usize;
            mask[range.clone()].fill(true);
            if let Some(spans) = spans.as_deref_mut() {
                let top = row * TILE_SIZE;
                let start = (r.y.max(top) - top) as u8;
                let end = ((r.y + r.h).min(top + TILE_SIZE) - top) as u8;
                for span in &mut spans[range] {
                    *span = match *span {
                        (0, 0) => (start, end),
                        (s, e) => (s.min(start), e.max(end)),
                    };
                }
            }
        }
    }
}

/// Rows `start..end` of a tile, relative to its top; `(0, 0)` stands for the whole tile.
pub(crate) type RowSpan = (u8, u8);

/// The part of `cell` that `span` says to look at.
pub(crate) fn span_rect(cell: Rect, span: RowSpan) -> Rect {
    match span {
        (0, 0) => cell,
        (s, e) => {
            let (s, e) = (u32::from(s).min(cell.h), u32::from(e).min(cell.h));
            Rect::new(cell.x, cell.y + s, cell.w, e.saturating_sub(s))
        }
    }
}

/// Byte ranges of each row of `rect` in a tightly packed frame `frame_width` pixels wide.
/// The caller has checked that `rect` fits in the frame.
pub(crate) fn rows(rect: Rect, frame_width: u32) -> impl Iterator<Item = Range<usize>> {
    let stride = frame_width as usize * BYTES_PER_PIXEL;
    let row_len = rect.w as usize * BYTES_PER_PIXEL;
    let x0 = rect.x as usize * BYTES_PER_PIXEL;
    (rect.y as usize..rect.y as usize + rect.h as usize).map(move |y| {
        let start = y * stride + x0;
        start..start + row_len
    })
}

/// Applies `copy` to a tightly packed frame `frame_width` pixels wide, reading the pixels as they
/// were before it (rows are walked away from the overlap, and each row moves with `copy_within`).
/// The encoder and decoder share this, so both sides move exactly the same pixels. The caller has
/// checked that source and destination fit in the frame.
pub(crate) fn apply_copy(pixels: &mut [u8], frame_width: u32, copy: &CopyRect) {
    let stride = frame_width as usize * BYTES_PER_PIXEL;
    let row_len = copy.src.w as usize * BYTES_PER_PIXEL;
    let (sx, dx) = (
        copy.src.x as usize * BYTES_PER_PIXEL,
        copy.dst_x as usize * BYTES_PER_PIXEL,
    );
    let (sy, dy) = (copy.src.y as usize, copy.dst_y as usize);
    let mut one = |i: usize| {
        let from = (sy + i) * stride + sx;
        pixels.copy_within(from..from + row_len, (dy + i) * stride + dx);
    };
    let h = copy.src.h as usize;
    if dy > sy {
        (0..h).rev().for_each(&mut one);
    } else {
        (0..h).for_each(&mut one);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_tiles_are_clipped() {
        let g = TileGrid::new(130, 65);
        assert_eq!((g.cols, g.rows, g.len()), (3, 2, 6));
        assert_eq!(g.tile_rect(2, 1), Rect::new(128, 64, 2, 1));
        assert_eq!(g.tile_rect(1, 0), Rect::new(64, 0, 64, 64));
    }

    #[test]
    fn damage_marks_touched_tiles_only() {
        let g = TileGrid::new(200, 150);
        let mut mask = vec![false; g.len()];
        g.mark_spans(&Rect::new(63, 64, 2, 1), &mut mask, None);
        let marked: Vec<usize> = (0..g.len()).filter(|&i| mask[i]).collect();
        // Row 1 (y = 64), columns 0 and 1 of a 4-column grid.
        assert_eq!(marked, vec![4, 5]);
    }

    #[test]
    fn spans_cover_the_damaged_rows_of_each_tile() {
        let g = TileGrid::new(200, 150);
        let mut mask = vec![false; g.len()];
        let mut spans = vec![(0, 0); g.len()];
        // A text line across tile row 0 and 1 (y 56..72), then another line in tile row 0.
        g.mark_spans(&Rect::new(0, 56, 100, 16), &mut mask, Some(&mut spans));
        g.mark_spans(&Rect::new(10, 20, 10, 16), &mut mask, Some(&mut spans));
        assert_eq!(spans[0], (20, 64));
        assert_eq!(spans[1], (56, 64));
        assert_eq!(spans[4], (0, 8));
        assert_eq!(spans[2], (0, 0), "untouched");
        let cell = g.tile_rect(0, 1);
        assert_eq!(span_rect(cell, spans[4]), Rect::new(0, 64, 64, 8));
        assert_eq!(span_rect(cell, (0, 0)), cell);
        // The bottom tiles are 22 rows high: a span never leaves the tile.
        assert_eq!(
            span_rect(g.tile_rect(0, 2), (10, 64)),
            Rect::new(0, 138, 64, 12)
        );
    }

    #[test]
    fn damage_outside_or_empty_marks_nothing() {
        let g = TileGrid::new(100, 100);
        let mut mask = vec![false; g.len()];
        g.mark_spans(&Rect::new(100, 0, 10, 10), &mut mask, None);
        g.mark_spans(&Rect::new(5, 5, 0, 10), &mut mask, None);
        g.mark_spans(
            &Rect::new(u32::MAX, u32::MAX, u32::MAX, u32::MAX),
            &mut mask,
            None,
        );
        assert!(mask.iter().all(|m| !m));
        g.mark_spans(&Rect::new(90, 90, u32::MAX, u32::MAX), &mut mask, None);
        assert_eq!(mask, vec![false, false, false, true]);
    }

    #[test]
    fn overlapping_copies_read_the_old_pixels() {
        // A 1-pixel-wide frame of 6 rows: 0 1 2 3 4 5.
        let frame: Vec<u8> = (0..6u8).flat_map(|v| [v, 0, 0, 0]).collect();
        let col = |p: &[u8]| p.chunks(4).map(|c| c[0]).collect::<Vec<_>>();
        let mut up = frame.clone();
        let scroll_up = CopyRect {
            src: Rect::new(0, 2, 1, 4),
            dst_x: 0,
            dst_y: 0,
        };
        apply_copy(&mut up, 1, &scroll_up);
        assert_eq!(col(&up), vec![2, 3, 4, 5, 4, 5]);
        let mut down = frame;
        let scroll_down = CopyRect {
            src: Rect::new(0, 0, 1, 4),
            dst_x: 0,
            dst_y: 2,
        };
        apply_copy(&mut down, 1, &scroll_down);
        assert_eq!(col(&down), vec![0, 1, 0, 1, 2, 3]);
    }

    #[test]
    fn rows_address_the_rect() {
        let r: Vec<_> = rows(Rect::new(1, 2, 3, 2), 10).collect();
        assert_eq!(r, vec![84..96, 124..136]);
    }
}
