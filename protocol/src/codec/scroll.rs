//! Scroll detection: finds damaged areas whose rows are the decoder's rows moved up or down, so
//! they travel as a [`CopyRect`] plus tiles for the exposed strip instead of as new pixels.
//!
//! Rows are compared by hash to find the offset (a vote of distinctive rows), then byte by byte
//! to find the run of rows that really moved: a hash collision can cost a wasted attempt, never
//! a wrong picture.

use std::collections::HashMap;

use xxhash_rust::xxh3::xxh3_64;

use super::{CopyRect, Rect};
use crate::BYTES_PER_PIXEL;

/// Areas smaller than this (in either direction) are left to the tiles: a copy would save little.
const MIN_SIDE: u32 = 64;
/// A copy must move at least this many rows that differ from what is already there.
const MIN_GAIN_ROWS: usize = 16;
/// Sampled distinctive rows that must agree on an offset before it is verified.
const MIN_VOTES: u32 = 2;
/// One new row in this many, and one old row in that many, is hashed to vote on the offset.
const NEW_SAMPLE: usize = 4;
const OLD_SAMPLE: usize = 3;
/// After a miss, the next areas are not searched: one after the first miss in a row, doubling
/// per further miss up to this many. Content that keeps changing without scrolling (a page
/// redraw, an animation) then stops paying for the hashing, and a scroll that starts after it
/// waits at most this many frames.
const MAX_BACKOFF: u32 = 4;

/// Scratch reused across frames, and the backoff after misses.
#[derive(Default)]
pub(crate) struct ScrollDetector {
    new: Vec<u64>,
    old: Vec<u64>,
    /// Whether each sampled new row differs from the reference's row at the same place: what
    /// a copy gains, estimated without comparing every row a second time.
    changed: Vec<bool>,
    rows_of: HashMap<u64, u32>,
    votes: HashMap<i64, u32>,
    /// Searches in a row that found no scroll in an area that had changed.
    misses: u32,
    /// Areas left to pass over before searching again.
    skip: u32,
}

/// What one search found.
enum Search {
    Copy(CopyRect),
    /// Too few rows changed for a copy to pay off: neither a hit nor a miss.
    LittleChanged,
    Miss,
}

impl ScrollDetector {
    /// Looks for a vertical scroll inside `area` (which the caller has clipped to the frame):
    /// `pixels` is the new frame, `reference` what the decoder shows. Returns the copy that
    /// turns the most rows of the reference into the new rows, if it is worth sending; after
    /// misses it backs off (see [`MAX_BACKOFF`]).
    pub fn detect(
        &mut self,
        pixels: &[u8],
        reference: &[u8],
        frame_width: u32,
        area: Rect,
    ) -> Option<CopyRect> {
        if area.w < MIN_SIDE || area.h < MIN_SIDE {
            return None;
        }
        if self.skip > 0 {
            self.skip -= 1;
            return None;
        }
        match self.search(pixels, reference, frame_width, area) {
            Search::Copy(copy) => {
                self.misses = 0;
                Some(copy)
            }
            Search::Miss => {
                self.misses = self.misses.saturating_add(1);
                self.skip = 1u32
                    .checked_shl(self.misses - 1)
                    .unwrap_or(MAX_BACKOFF)
                    .min(MAX_BACKOFF);
                None
            }
            Search::LittleChanged => None,
        }
    }

    fn search<'a>(
        &mut self,
        pixels: &'a [u8],
        reference: &'a [u8],
        frame_width: u32,
        area: Rect,
    ) -> Search {
        let stride = frame_width as usize * BYTES_PER_PIXEL;
        let (x0, len) = (
            area.x as usize * BYTES_PER_PIXEL,
            area.w as usize * BYTES_PER_PIXEL,
        );
        let row = |buf: &'a [u8], i: usize| {
            let start = (area.y as usize + i) * stride + x0;
            &buf[start..start + len]
        };
        let h = area.h as usize;
        // Old rows are hashed every OLD_SAMPLE-th row and new rows every NEW_SAMPLE-th: the
        // strides are coprime, so for any shift some sampled new row lands on a sampled old
        // row (one pair in twelve), at half the hashing of a single full pass.
        self.old.clear();
        self.old.extend(
            (0..h)
                .step_by(OLD_SAMPLE)
                .map(|i| xxh3_64(row(reference, i))),
        );
        self.new.clear();
        self.new
            .extend((0..h).step_by(NEW_SAMPLE).map(|i| xxh3_64(row(pixels, i))));
        self.changed.clear();
        self.changed.extend(
            (0..h)
                .step_by(NEW_SAMPLE)
                .map(|i| row(pixels, i) != row(reference, i)),
        );
        let changed = self.changed.iter().filter(|&&c| c).count();
        if changed * NEW_SAMPLE < MIN_GAIN_ROWS {
            return Search::LittleChanged;
        }

        // Where each distinctive sampled old row is (a row equal to the one above it, like
        // blank lines, would vote for every offset).
        self.rows_of.clear();
        for (k, &hash) in self.old.iter().enumerate() {
            let i = k * OLD_SAMPLE;
            if i == 0 || row(reference, i) != row(reference, i - 1) {
                self.rows_of.entry(hash).or_insert(i as u32);
            }
        }
        self.votes.clear();
        for (i, n) in (0..h).step_by(NEW_SAMPLE).zip(&self.new) {
            if i > 0 && row(pixels, i) == row(pixels, i - 1) {
                continue;
            }
            if let Some(&j) = self.rows_of.get(n) {
                if j as usize != i {
                    *self.votes.entry(j as i64 - i as i64).or_default() += 1;
                }
            }
        }
        // Most votes wins; ties go to the smaller move, so the choice is deterministic.
        let Some((&shift, &votes)) = self
            .votes
            .iter()
            .max_by_key(|(&d, &v)| (v, std::cmp::Reverse(d.unsigned_abs())))
        else {
            return Search::Miss;
        };
        if votes < MIN_VOTES {
            return Search::Miss;
        }

        // The run of new rows i that equal old rows i + shift, byte for byte, that changes the
        // most rows (counted on the sampled rows, times the sampling stride: the estimate only
        // picks the run, the copy itself is exact).
        let lo = (-shift).max(0) as usize;
        let hi = (h as i64 - shift.max(0)) as usize;
        let (mut best, mut run_start, mut best_gain) = ((0, 0), None, 0usize);
        let mut gain = 0;
        let gained = |i: usize| {
            if i.is_multiple_of(NEW_SAMPLE) && self.changed[i / NEW_SAMPLE] {
                NEW_SAMPLE
            } else {
                0
            }
        };
        for i in lo..=hi {
            let moved = i < hi && {
                let j = (i as i64 + shift) as usize;
                row(pixels, i) == row(reference, j)
            };
            match (moved, run_start) {
                (true, None) => {
                    run_start = Some(i);
                    gain = gained(i);
                }
                (true, Some(_)) => gain += gained(i),
                (false, Some(start)) => {
                    if gain > best_gain {
                        (best, best_gain) = ((start, i), gain);
                    }
                    run_start = None;
                }
                (false, None) => {}
            }
        }
        if best_gain < MIN_GAIN_ROWS {
            return Search::Miss;
        }
        let (start, end) = best;
        Search::Copy(CopyRect {
            src: Rect::new(
                area.x,
                (area.y as i64 + start as i64 + shift) as u32,
                area.w,
                (end - start) as u32,
            ),
            dst_x: area.x,
            dst_y: area.y + start as u32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tiles;
    use super::*;

    /// A `w`×`h` frame of text-like rows: row `y` shows line `(y + top) / 8`.
    fn page(w: u32, h: u32, top: u32) -> Vec<u8> {
        let mut p = vec![0u8; (w * h) as usize * BYTES_PER_PIXEL];
        for y in 0..h {
            let line = (y + top) / 8;
            for x in 0..w {
                let ink = (x * 7 + line * 13 + (y + top) % 8 * 3) % 11 < 3;
                let v = if ink { 0xff } else { line as u8 };
                let i = ((y * w + x) as usize) * BYTES_PER_PIXEL;
                p[i..i + 3].copy_from_slice(&[v, v, v]);
            }
        }
        p
    }

    #[test]
    fn finds_a_scroll_up_and_applying_it_matches_the_new_rows() {
        let (w, h) = (200, 160);
        let old = page(w, h, 0);
        let new = page(w, h, 24);
        let area = Rect::new(0, 0, w, h);
        let copy = ScrollDetector::default()
            .detect(&new, &old, w, area)
            .expect("a scroll by 24 rows is found");
        assert_eq!(copy.src, Rect::new(0, 24, w, h - 24));
        assert_eq!((copy.dst_x, copy.dst_y), (0, 0));
        let mut moved = old.clone();
        tiles::apply_copy(&mut moved, w, &copy);
        let stride = (w as usize) * BYTES_PER_PIXEL;
        assert_eq!(
            moved[..(h - 24) as usize * stride],
            new[..(h - 24) as usize * stride]
        );
    }

    #[test]
    fn finds_a_scroll_down_inside_part_of_the_frame() {
        let (w, h) = (256, 200);
        let mut old = vec![0u8; (w * h) as usize * BYTES_PER_PIXEL];
        let mut new = old.clone();
        // A 128×128 page at (64, 40) scrolls down by 16; the rest is unchanged.
        let (pw, ph) = (128, 128);
        let (a, b) = (page(pw, ph, 16), page(pw, ph, 0));
        for y in 0..ph {
            let dst = (((40 + y) * w + 64) as usize) * BYTES_PER_PIXEL;
            let src = ((y * pw) as usize) * BYTES_PER_PIXEL;
            let len = pw as usize * BYTES_PER_PIXEL;
            old[dst..dst + len].copy_from_slice(&a[src..src + len]);
            new[dst..dst + len].copy_from_slice(&b[src..src + len]);
        }
        let copy = ScrollDetector::default()
            .detect(&new, &old, w, Rect::new(64, 40, pw, ph))
            .expect("a scroll down is found");
        assert_eq!(copy.src, Rect::new(64, 40, pw, ph - 16));
        assert_eq!((copy.dst_x, copy.dst_y), (64, 56));
    }

    #[test]
    fn unrelated_content_and_small_areas_give_nothing() {
        let (w, h) = (128, 128);
        let old = page(w, h, 0);
        let mut new = old.clone();
        for (i, b) in new.iter_mut().enumerate() {
            *b = (i * 31 % 251) as u8;
        }
        let mut d = ScrollDetector::default();
        assert_eq!(d.detect(&new, &old, w, Rect::new(0, 0, w, h)), None);
        let scrolled = page(w, h, 8);
        let mut d = ScrollDetector::default();
        assert_eq!(d.detect(&scrolled, &old, w, Rect::new(0, 0, 32, h)), None);
        assert_eq!(d.detect(&old, &old, w, Rect::new(0, 0, w, h)), None);
        assert_eq!(
            d.detect(&scrolled, &old, w, Rect::new(0, 0, w, h))
                .map(|c| c.src),
            Some(Rect::new(0, 8, w, h - 8)),
            "small and unchanged areas are no misses"
        );
    }

    #[test]
    fn misses_back_off_and_a_hit_ends_the_backoff() {
        let (w, h) = (128, 128);
        let old = page(w, h, 0);
        let noise: Vec<u8> = (0..old.len()).map(|i| (i * 31 % 251) as u8).collect();
        let scrolled = page(w, h, 8);
        let area = Rect::new(0, 0, w, h);
        let mut d = ScrollDetector::default();
        // Misses in a row: searches skip 1, 2, 4, 4 areas after them.
        let mut searched = Vec::new();
        for i in 0..16 {
            let before = d.skip;
            d.detect(&noise, &old, w, area);
            if before == 0 {
                searched.push(i);
            }
        }
        assert_eq!(searched, vec![0, 2, 5, 10, 15]);
        // The scroll that starts now is found within MAX_BACKOFF + 1 frames, and from then on
        // every frame.
        let found = (0..=MAX_BACKOFF).find(|_| d.detect(&scrolled, &old, w, area).is_some());
        assert!(found.is_some());
        assert!(d.detect(&scrolled, &old, w, area).is_some());
        assert!(d.detect(&scrolled, &old, w, area).is_some());
    }
}
