//! XRGB8888 ↔ planar YUV 4:2:0, BT.601 full range, in integer arithmetic.
//!
//! [`i420_to_xrgb`] runs on both sides, the appliance to show a picture and the server to keep its
//! reference equal to it, so it must stay deterministic (no floats, no platform-dependent SIMD).
//! Full range because both ends are ours: no need for studio swing, and it keeps more levels.

use crate::BYTES_PER_PIXEL;

use super::super::{tiles, Rect};

/// A picture in planar YUV 4:2:0: `y` is `width × height`, `u` and `v` are
/// `width/2 × height/2`, all tightly packed. Width and height are even.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct I420 {
    pub width: u32,
    pub height: u32,
    pub y: Vec<u8>,
    pub u: Vec<u8>,
    pub v: Vec<u8>,
}

impl I420 {
    /// Sets the size and sizes the planes for it (their contents are to be overwritten).
    pub fn resize(&mut self, width: u32, height: u32) {
        self.width = width;
        self.height = height;
        let luma = width as usize * height as usize;
        let chroma = (width / 2) as usize * (height / 2) as usize;
        self.y.resize(luma, 0);
        self.u.resize(chroma, 128);
        self.v.resize(chroma, 128);
    }
}

/// Converts the `rect` of an XRGB8888 frame `frame_width` pixels wide into `out`. `rect` must have
/// even sides and fit in the frame; chroma is the average of each 2×2 block.
pub fn xrgb_to_i420(pixels: &[u8], frame_width: u32, rect: Rect, out: &mut I420) {
    out.resize(rect.w, rect.h);
    let w = rect.w as usize;
    let rows: Vec<_> = tiles::rows(rect, frame_width).collect();
    for (pair, rows) in rows.chunks_exact(2).enumerate() {
        let (top, bottom) = (&pixels[rows[0].clone()], &pixels[rows[1].clone()]);
        let (y0, y1) = out.y[pair * 2 * w..(pair * 2 + 2) * w].split_at_mut(w);
        let u = &mut out.u[pair * (w / 2)..(pair + 1) * (w / 2)];
        let v = &mut out.v[pair * (w / 2)..(pair + 1) * (w / 2)];
        let quads = top
            .chunks_exact(2 * BYTES_PER_PIXEL)
            .zip(bottom.chunks_exact(2 * BYTES_PER_PIXEL));
        for (i, (t, b)) in quads.enumerate() {
            let mut sum = [0i32; 3];
            for (dst, src) in [
                (&mut y0[2 * i..2 * i + 2], t),
                (&mut y1[2 * i..2 * i + 2], b),
            ] {
                for (d, px) in dst.iter_mut().zip(src.chunks_exact(BYTES_PER_PIXEL)) {
                    // Little-endian XRGB: bytes B, G, R, X.
                    let (b, g, r) = (i32::from(px[0]), i32::from(px[1]), i32::from(px[2]));
                    *d = luma(r, g, b);
                    sum[0] += r;
                    sum[1] += g;
                    sum[2] += b;
                }
            }
            let (r, g, b) = ((sum[0] + 2) >> 2, (sum[1] + 2) >> 2, (sum[2] + 2) >> 2);
            u[i] = clamp((-11059 * r - 21709 * g + 32768 * b + (128 << 16) + 32768) >> 16);
            v[i] = clamp((32768 * r - 27439 * g - 5329 * b + (128 << 16) + 32768) >> 16);
        }
    }
}

/// Converts `picture` into tightly packed XRGB8888 (X = 0xff) in `out`, resized to fit.
pub fn i420_to_xrgb(picture: &I420, out: &mut Vec<u8>) {
    let (w, h) = (picture.width as usize, picture.height as usize);
    out.resize(w * h * BYTES_PER_PIXEL, 0);
    if w < 2 {
        return;
    }
    let rows = out
        .chunks_exact_mut(w * BYTES_PER_PIXEL)
        .zip(picture.y.chunks_exact(w));
    for (row, (dst, ys)) in rows.enumerate() {
        let chroma = (row / 2) * (w / 2)..(row / 2 + 1) * (w / 2);
        let (us, vs) = (&picture.u[chroma.clone()], &picture.v[chroma]);
        // Two pixels share one chroma sample: its terms are computed once, rounding included.
        let pairs = dst
            .chunks_exact_mut(2 * BYTES_PER_PIXEL)
            .zip(ys.chunks_exact(2));
        for ((px2, y2), (&u, &v)) in pairs.zip(us.iter().zip(vs)) {
            let (u, v) = (i32::from(u) - 128, i32::from(v) - 128);
            let b = 116130 * u + 32768;
            let g = 32768 - 22554 * u - 46802 * v;
            let r = 91881 * v + 32768;
            for (px, &y) in px2.chunks_exact_mut(BYTES_PER_PIXEL).zip(y2) {
                let y = i32::from(y) << 16;
                px[0] = clamp((y + b) >> 16);
                px[1] = clamp((y + g) >> 16);
                px[2] = clamp((y + r) >> 16);
                px[3] = 0xff;
            }
        }
    }
}

fn luma(r: i32, g: i32, b: i32) -> u8 {
    clamp((19595 * r + 38470 * g + 7471 * b + 32768) >> 16)
}

fn clamp(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grey_and_primaries_survive_the_round_trip() {
        let colours: [u32; 6] = [0, 0xffffff, 0x808080, 0xff0000, 0x00ff00, 0x0000ff];
        for c in colours {
            let px: Vec<u8> = std::iter::repeat_n(c.to_le_bytes(), 4).flatten().collect();
            let mut yuv = I420::default();
            xrgb_to_i420(&px, 2, Rect::new(0, 0, 2, 2), &mut yuv);
            let mut back = Vec::new();
            i420_to_xrgb(&yuv, &mut back);
            for (a, b) in px.chunks_exact(4).zip(back.chunks_exact(4)) {
                for ch in 0..3 {
                    assert!(
                        a[ch].abs_diff(b[ch]) <= 2,
                        "{c:06x}: channel {ch} {} became {}",
                        a[ch],
                        b[ch]
                    );
                }
            }
        }
    }

    #[test]
    fn converts_only_the_rect() {
        // 4×2 frame; the rect is the right half, white, the rest black.
        let mut px = vec![0u8; 4 * 2 * 4];
        for y in 0..2 {
            for x in 2..4 {
                px[(y * 4 + x) * 4..(y * 4 + x) * 4 + 4].copy_from_slice(&[255; 4]);
            }
        }
        let mut yuv = I420::default();
        xrgb_to_i420(&px, 4, Rect::new(2, 0, 2, 2), &mut yuv);
        assert_eq!(yuv.y, vec![255; 4]);
        assert_eq!(
            (yuv.u.as_slice(), yuv.v.as_slice()),
            (&[128][..], &[128][..])
        );
    }
}
