//! Palette tiles: text and UI areas hold few distinct colours (a background, a foreground and
//! its anti-aliasing blends), so they travel as a palette plus one index byte per pixel. zstd
//! then reads a quarter of the bytes, which makes it about that much faster on both sides, and
//! finds longer matches (a glyph is the same bytes whatever its colour's channel layout).

use super::{tiles, Rect};

/// Most colours a palette tile holds: one index byte per pixel.
pub const MAX_COLOURS: usize = 256;

/// Slots of the colour → index table: a power of two, four per possible colour, so probes stay
/// short until the palette is full.
const SLOTS: usize = 4 * MAX_COLOURS;

/// Builds palettes; its buffers are reused from tile to tile.
#[derive(Default)]
pub(crate) struct Palettizer {
    table: Table,
    /// One palette index per pixel of the tile, row by row.
    pub indices: Vec<u8>,
}

/// What [`Palettizer::extend`] did to the palette.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Extended {
    /// The palette started over: it holds only this tile's colours.
    pub reset: bool,
    /// Index of the first colour this tile added.
    pub first_new: usize,
}

/// Colour → index, open addressing.
#[derive(Default)]
struct Table {
    /// `colour << 8 | index` per slot, [`EMPTY`] where there is none: one load and one compare
    /// find a colour in its home slot.
    entries: Vec<u64>,
    /// The palette: XRGB8888 little-endian, four bytes per colour, in order of first use.
    colours: Vec<u8>,
}

/// No colour shifted left by 8 has all high bits set.
const EMPTY: u64 = u64::MAX;

impl Palettizer {
    /// Fills the palette and [`indices`](Self::indices) for `rect` of a tightly packed frame
    /// `frame_width` pixels wide; false as soon as it finds a 257th colour. Each row read is
    /// also copied into `copy_to` (a frame of the same size), while it is still in cache; on
    /// false, only some rows were.
    pub fn build(
        &mut self,
        pixels: &[u8],
        rect: Rect,
        frame_width: u32,
        copy_to: Option<&mut [u8]>,
    ) -> bool {
        self.table.clear();
        self.fill(pixels, rect, frame_width, copy_to)
    }

    /// Like [`build`](Self::build), but onto the palette of earlier calls (the update stream's,
    /// see `stream.rs`), so a colour keeps its index from tile to tile and frame to frame and
    /// the same glyph is the same index bytes wherever it is drawn. When the tile's new colours
    /// do not fit, the palette starts over with the tile's own colours (`reset`); when the
    /// tile alone has too many, it is not a palette tile and the palette stays as it was.
    pub fn extend(
        &mut self,
        pixels: &[u8],
        rect: Rect,
        frame_width: u32,
        mut copy_to: Option<&mut [u8]>,
    ) -> Option<Extended> {
        let before = self.table.colours.len() / 4;
        if self.fill(pixels, rect, frame_width, copy_to.as_deref_mut()) {
            return Some(Extended {
                reset: false,
                first_new: before,
            });
        }
        let saved = self.table.colours[..before * 4].to_vec();
        if self.build(pixels, rect, frame_width, copy_to) {
            return Some(Extended {
                reset: true,
                first_new: 0,
            });
        }
        self.table.clear();
        for c in saved.chunks_exact(4) {
            self.table
                .index(u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
        }
        None
    }

    /// Forgets the palette [`extend`](Self::extend) builds on (at a key frame).
    pub fn clear(&mut self) {
        self.table.clear();
    }

    /// Indexes `rect` with the colours already in the table plus new ones.
    fn fill(
        &mut self,
        pixels: &[u8],
        rect: Rect,
        frame_width: u32,
        mut copy_to: Option<&mut [u8]>,
    ) -> bool {
        let table = &mut self.table;
        if table.entries.is_empty() {
            table.clear();
        }
        let w = rect.w as usize;
        self.indices.clear();
        self.indices.resize(rect.area() as usize, 0);
        if w == 0 || rect.h == 0 {
            return true;
        }
        let rows = tiles::rows(rect, frame_width).zip(self.indices.chunks_exact_mut(w));
        // The colour of the pixel before and its index: most groups of eight pixels repeat it
        // (background, glyph stems), and those are one vector compare and no table lookup.
        // The tile's first pixel starts it, indexed first as it would be anyway.
        let first = pixel(&pixels[tiles::rows(rect, frame_width).next().map_or(0, |r| r.start)..]);
        let Some(mut last_index) = table.index(first) else {
            return false;
        };
        let mut last = first;
        for (r, dst) in rows {
            let mut src = pixels[r.clone()].chunks_exact(32);
            let mut out = dst.chunks_exact_mut(8);
            for (px8, d8) in (&mut src).zip(&mut out) {
                let mut group = [0u32; 8];
                for (g, px) in group.iter_mut().zip(px8.chunks_exact(4)) {
                    *g = pixel(px);
                }
                // `&`, not `&&`: no early exit, so the compiler compares all eight at once.
                if group.iter().fold(true, |all, &c| all & (c == last)) {
                    d8.fill(last_index);
                    continue;
                }
                // Every pixel looks up its home slot: no branch on the content, which in text
                // changes too often to predict.
                for (d, &c) in d8.iter_mut().zip(&group) {
                    let Some(index) = table.index(c) else {
                        return false;
                    };
                    *d = index;
                }
                (last, last_index) = (group[7], d8[7]);
            }
            if !table.index_all(src.remainder(), out.into_remainder()) {
                return false;
            }
            if let Some(copy_to) = copy_to.as_deref_mut() {
                copy_to[r.clone()].copy_from_slice(&pixels[r]);
            }
        }
        true
    }

    /// The palette of the last successful [`build`](Self::build): XRGB8888 little-endian, four
    /// bytes per colour, in order of first use.
    pub fn colours(&self) -> &[u8] {
        &self.table.colours
    }
}

/// The XRGB8888 pixel at the start of `px`.
#[inline]
fn pixel(px: &[u8]) -> u32 {
    u32::from_le_bytes([px[0], px[1], px[2], px[3]])
}

impl Table {
    fn clear(&mut self) {
        self.entries.clear();
        self.entries.resize(SLOTS, EMPTY);
        self.colours.clear();
    }

    /// Indexes each pixel of `src` into `dst`; false if the palette overflows.
    #[inline]
    fn index_all(&mut self, src: &[u8], dst: &mut [u8]) -> bool {
        for (d, px) in dst.iter_mut().zip(src.chunks_exact(4)) {
            match self.index(u32::from_le_bytes([px[0], px[1], px[2], px[3]])) {
                Some(i) => *d = i,
                None => return false,
            }
        }
        true
    }

    /// The colour's index, added to the palette if new; `None` if the palette is full.
    #[inline]
    fn index(&mut self, colour: u32) -> Option<u8> {
        let slot = Self::home(colour);
        let entry = self.entries[slot];
        if entry >> 8 == u64::from(colour) {
            return Some(entry as u8);
        }
        self.probe(colour, slot)
    }

    fn home(colour: u32) -> usize {
        (colour.wrapping_mul(0x9E37_79B1) >> 22) as usize & (SLOTS - 1)
    }

    /// Walks on from `slot`, where another colour lives, to `colour` or a free slot.
    #[cold]
    fn probe(&mut self, colour: u32, mut slot: usize) -> Option<u8> {
        loop {
            let entry = self.entries[slot];
            if entry == EMPTY {
                let count = self.colours.len() / 4;
                if count == MAX_COLOURS {
                    return None;
                }
                self.entries[slot] = u64::from(colour) << 8 | count as u64;
                self.colours.extend_from_slice(&colour.to_le_bytes());
                return Some(count as u8);
            }
            if entry >> 8 == u64::from(colour) {
                return Some(entry as u8);
            }
            slot = (slot + 1) & (SLOTS - 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(colours: impl Iterator<Item = u32>) -> Vec<u8> {
        colours.flat_map(u32::to_le_bytes).collect()
    }

    #[test]
    fn indexes_colours_in_order_of_first_use() {
        // 4×2 frame; the tile is its right 3×2.
        let pixels = frame([9, 5, 5, 7, 9, 7, 5, 5].into_iter());
        let mut p = Palettizer::default();
        assert!(p.build(&pixels, Rect::new(1, 0, 3, 2), 4, None));
        assert_eq!(p.colours(), frame([5, 7].into_iter()));
        assert_eq!(p.indices, vec![0, 0, 1, 1, 0, 0]);
    }

    #[test]
    fn runs_and_row_tails_index_like_single_pixels() {
        // 11 pixels per row: two groups of four (a run, a mix) and a three-pixel tail.
        let row = [3, 3, 3, 3, 3, 8, 3, 9, 9, 9, 9];
        let pixels = frame(row.iter().chain(&row).copied());
        let mut p = Palettizer::default();
        assert!(p.build(&pixels, Rect::new(0, 0, 11, 2), 11, None));
        assert_eq!(p.colours(), frame([3, 8, 9].into_iter()));
        let expect = [0, 0, 0, 0, 0, 1, 0, 2, 2, 2, 2];
        assert_eq!(p.indices, [expect, expect].concat());
    }

    #[test]
    fn gives_up_at_the_257th_colour_and_recovers_for_the_next_tile() {
        let many = frame(0..300u32);
        let mut p = Palettizer::default();
        assert!(!p.build(&many, Rect::new(0, 0, 300, 1), 300, None));
        assert!(p.build(&many, Rect::new(0, 0, 256, 1), 300, None));
        assert_eq!(p.colours().len(), 256 * 4);
        assert!(p.indices.iter().enumerate().all(|(i, &x)| x as usize == i));
        // Colours whose hashes share low bits still get their own index.
        let colliding = frame((0..200u32).map(|i| i << 22));
        assert!(p.build(&colliding, Rect::new(0, 0, 200, 1), 200, None));
        assert_eq!(p.colours(), colliding);
    }

    #[test]
    fn long_runs_mixes_and_tails_index_like_a_pixel_at_a_time() {
        // 83-pixel rows (five 16-pixel groups, then tails): runs of random lengths in 12
        // colours, as text on a background looks.
        let (w, h) = (83u32, 9u32);
        let mut seed = 9u64;
        let mut colours = Vec::new();
        while colours.len() < (w * h) as usize {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let (colour, len) = ((seed >> 33) as u32 % 12, (seed >> 50) as usize % 40 + 1);
            colours.extend(std::iter::repeat_n(colour * 0x0101_0101, len));
        }
        colours.truncate((w * h) as usize);
        let pixels = frame(colours.iter().copied());
        let mut p = Palettizer::default();
        let tile = Rect::new(0, 0, w, h);
        assert!(p.build(&pixels, tile, w, None));
        // A pixel at a time: indices in order of first use.
        let mut order: Vec<u32> = Vec::new();
        let expect: Vec<u8> = colours
            .iter()
            .map(|c| match order.iter().position(|o| o == c) {
                Some(i) => i as u8,
                None => {
                    order.push(*c);
                    (order.len() - 1) as u8
                }
            })
            .collect();
        assert_eq!(p.indices, expect);
        assert_eq!(p.colours(), frame(order.into_iter()));
    }

    #[test]
    fn extend_keeps_indices_starts_over_when_full_and_restores_on_failure() {
        let mut p = Palettizer::default();
        let a = frame([5, 7, 5, 7].into_iter());
        let ext = p.extend(&a, Rect::new(0, 0, 4, 1), 4, None);
        assert_eq!(
            ext,
            Some(Extended {
                reset: false,
                first_new: 0
            })
        );
        // 7 keeps index 1, 9 is appended.
        let b = frame([7, 9].into_iter());
        let ext = p.extend(&b, Rect::new(0, 0, 2, 1), 2, None);
        assert_eq!(
            ext,
            Some(Extended {
                reset: false,
                first_new: 2
            })
        );
        assert_eq!(p.indices, vec![1, 2]);
        assert_eq!(p.colours(), frame([5, 7, 9].into_iter()));
        // 254 new colours do not fit next to the three: the palette starts over.
        let c = frame(100..354u32);
        let ext = p.extend(&c, Rect::new(0, 0, 254, 1), 254, None);
        assert_eq!(
            ext,
            Some(Extended {
                reset: true,
                first_new: 0
            })
        );
        assert_eq!(p.colours(), c);
        // 300 colours are no palette tile, and the palette stays as it was.
        let d = frame(1000..1300u32);
        assert_eq!(p.extend(&d, Rect::new(0, 0, 300, 1), 300, None), None);
        assert_eq!(p.colours(), c);
        assert!(p.extend(&c, Rect::new(0, 0, 254, 1), 254, None).is_some());
        assert!(p.indices.iter().enumerate().all(|(i, &x)| x as usize == i));
        // A key frame forgets it.
        p.clear();
        assert_eq!(
            p.extend(&b, Rect::new(0, 0, 2, 1), 2, None)
                .map(|e| e.first_new),
            Some(0)
        );
        assert_eq!(p.colours(), b);
    }
}
