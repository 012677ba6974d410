//! Screenshots: what a sink shows, as an 8-bit RGB PNG (the X byte of XRGB carries nothing).

use std::path::Path;

use wayray_protocol::BYTES_PER_PIXEL;

use crate::atomic_file;
use crate::display::FrameView;

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

/// Writes `frame` to `path` as PNG, replacing any earlier screenshot atomically.
pub fn write_png(path: &Path, frame: FrameView<'_>) -> Result<(), ScreenshotError> {
    let png = encode_png(frame)?;
    atomic_file::write(path, &png).map_err(|source| ScreenshotError::Write {
        path: path.to_owned(),
        source,
    })
}

fn encode_png(frame: FrameView<'_>) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, frame.width, frame.height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    // Screenshots are for looking at and comparing, not archiving: favour speed at 1080p.
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&bgrx_to_rgb(frame))?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
        write_png(&path, frame).unwrap();

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
