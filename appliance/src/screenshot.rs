//! Screenshots: what a sink shows, as an 8-bit RGB PNG (the X byte of XRGB carries nothing),
//! optionally with the cursor drawn over it the way a cursor plane blends it.

use std::path::Path;

use wayray_protocol::BYTES_PER_PIXEL;

use crate::atomic_file;
use crate::display::{CursorView, FrameView};

#[derive(Debug, thiserror::Error)]
pub enum ScreenshotError {
    #[error("cannot encode the screenshot as PNG")]
    Encode(#[from] png::EncodingError),
    #[error("cannot write screenshot {}", path.display())]
    Write {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Writes `frame`, with `cursor` over it if given, to `path` as PNG, replacing any earlier
/// screenshot atomically.
pub fn write_png(
    path: &Path,
    frame: FrameView<'_>,
    cursor: Option<CursorView<'_>>,
) -> Result<(), ScreenshotError> {
    let mut rgb = bgrx_to_rgb(frame);
    if let Some(cursor) = cursor {
        composite_cursor(&mut rgb, frame.width, frame.height, cursor);
    }
    let png = encode_png(frame.width, frame.height, &rgb)?;
    atomic_file::write(path, &png).map_err(|source| ScreenshotError::Write {
        path: path.to_owned(),
        source,
    })
}

fn encode_png(width: u32, height: u32, rgb: &[u8]) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    // Screenshots are for looking at and comparing, not archiving: favour speed at 1080p.
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(rgb)?;
    writer.finish()?;
    Ok(out)
}

fn bgrx_to_rgb(frame: FrameView<'_>) -> Vec<u8> {
    let pixel_count = frame.width as usize * frame.height as usize;
    frame
        .pixels
        .chunks_exact(BYTES_PER_PIXEL)
        .take(pixel_count)
        .flat_map(|bgrx| [bgrx[2], bgrx[1], bgrx[0]])
        .collect()
}

/// Blends the premultiplied ARGB cursor over the RGB picture (`out = cursor + picture × (1 − α)`),
/// with its hotspot at the pointer position and whatever lies off screen cut away.
fn composite_cursor(rgb: &mut [u8], width: u32, height: u32, cursor: CursorView<'_>) {
    let image = cursor.image;
    let left = i64::from(cursor.x) - i64::from(image.hotspot_x);
    let top = i64::from(cursor.y) - i64::from(image.hotspot_y);
    for row in 0..i64::from(image.height) {
        let y = top + row;
        if y < 0 || y >= i64::from(height) {
            continue;
        }
        for col in 0..i64::from(image.width) {
            let x = left + col;
            if x < 0 || x >= i64::from(width) {
                continue;
            }
            let src = ((row * i64::from(image.width) + col) * 4) as usize;
            let dst = ((y * i64::from(width) + x) * 3) as usize;
            // A validated image has exactly width × height pixels; `get` keeps a bad one harmless.
            let (Some(argb), Some(out)) =
                (image.pixels.get(src..src + 4), rgb.get_mut(dst..dst + 3))
            else {
                continue;
            };
            let keep = 255 - u32::from(argb[3]);
            // Cursor bytes are B, G, R, A; the picture's are R, G, B.
            for (out, src) in out.iter_mut().zip([argb[2], argb[1], argb[0]]) {
                let blended = u32::from(src) + (u32::from(*out) * keep + 127) / 255;
                *out = blended.min(255) as u8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wayray_protocol::CursorImage;

    #[test]
    fn cursor_blends_premultiplied_at_its_hotspot_and_is_clipped() {
        // A 3x2 grey picture and a 2x2 cursor with its hotspot at (1, 1), pointer at (0, 1): the
        // image's top-left is at (-1, 0), so only its right column (x = 0, rows 0 and 1) shows.
        let mut rgb = vec![100u8; 3 * 2 * 3];
        let image = CursorImage {
            width: 2,
            height: 2,
            hotspot_x: 1,
            hotspot_y: 1,
            pixels: vec![
                0, 0, 0, 0, /* */ 0, 0, 200, 255, // row 0: transparent, opaque red
                0, 0, 0, 0, /* */ 0, 50, 0,
                128, // row 1: transparent, half-covering green
            ],
        };
        let view = CursorView {
            image: &image,
            x: 0,
            y: 1,
        };
        composite_cursor(&mut rgb, 3, 2, view);
        assert_eq!(rgb[0..3], [200, 0, 0], "opaque red replaces the picture");
        let half = ((100u32 * 127 + 127) / 255) as u8;
        assert_eq!(
            rgb[9..12],
            [half, 50 + half, half],
            "premultiplied green over grey"
        );
        assert!(
            rgb[3..9].iter().chain(&rgb[12..]).all(|&b| b == 100),
            "{rgb:?}"
        );
    }

    #[test]
    fn png_round_trips_as_rgb() {
        // Two pixels: pure red and a mix, with junk in the X byte.
        let pixels = [0, 0, 255, 7, 10, 20, 30, 99];
        let frame = FrameView {
            pixels: &pixels,
            width: 2,
            height: 1,
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shot.png");
        write_png(&path, frame, None).unwrap();

        let decoder =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut rgb = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut rgb).unwrap();
        assert_eq!((info.width, info.height), (2, 1));
        assert_eq!(info.color_type, png::ColorType::Rgb);
        assert_eq!(rgb[..info.buffer_size()], [255, 0, 0, 30, 20, 10]);
    }
}
