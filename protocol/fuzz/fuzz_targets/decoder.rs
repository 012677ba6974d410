//! Hostile bytes → Decoder. Three readings of the same input: one postcard `DisplayMessage`, a
//! stream of postcard `FrameUpdate`s into one decoder, and updates built field by field with
//! valid zstd payloads (random bytes almost never parse as zstd, so without those the size,
//! geometry and apply paths would go unexercised).
#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use wayray_protocol::codec::{CopyRect, Decoder, FrameUpdate, Rect, Tile, TileData, VideoUpdate};
use wayray_protocol::{framing, DisplayMessage};

fuzz_target!(|data: &[u8]| {
    if let Ok(DisplayMessage::Frame(u)) = framing::decode_body::<DisplayMessage>(data) {
        apply_checked(&mut Decoder::new(), &u);
    }

    let mut dec = Decoder::new();
    let mut rest = data;
    while let Ok((u, tail)) = postcard::take_from_bytes::<FrameUpdate>(rest) {
        apply_checked(&mut dec, &u);
        if tail.len() >= rest.len() {
            break;
        }
        rest = tail;
    }

    let mut dec = Decoder::new();
    let mut u = Unstructured::new(data);
    while let Ok(update) = structured_update(&mut u) {
        apply_checked(&mut dec, &update);
        if u.is_empty() {
            break;
        }
    }
});

/// The decoder's contract: an update is applied whole, or rejected with nothing changed.
fn apply_checked(dec: &mut Decoder, u: &FrameUpdate) {
    let before = (
        dec.width(),
        dec.height(),
        dec.last_seq(),
        dec.pixels().to_vec(),
    );
    match dec.apply(u) {
        Ok(changed) => {
            assert_eq!(dec.last_seq(), Some(u.seq));
            assert_eq!((dec.width(), dec.height()), (u.width, u.height));
            let len = dec.width() as usize * dec.height() as usize * 4;
            assert_eq!(dec.pixels().len(), len);
            assert!(changed.iter().all(|r| r.fits_in(dec.width(), dec.height())));
        }
        Err(_) => {
            let after = (dec.width(), dec.height(), dec.last_seq(), dec.pixels());
            assert!(before.0 == after.0 && before.1 == after.1 && before.2 == after.2);
            assert!(
                before.3 == after.3,
                "rejected update changed the framebuffer"
            );
        }
    }
}

/// Small frames and rects near the frame's edges, so the interesting boundaries are hit often.
fn structured_update(u: &mut Unstructured) -> Result<FrameUpdate> {
    let width = u.int_in_range(0..=140)?;
    let height = u.int_in_range(0..=100)?;
    let key = u.arbitrary()?;
    let seq = u.int_in_range(0..=64)?;
    let n = u.int_in_range(0..=6)?;
    let mut tiles = Vec::with_capacity(n);
    for _ in 0..n {
        let rect = Rect::new(
            u.int_in_range(0..=width + 2)?,
            u.int_in_range(0..=height + 2)?,
            u.int_in_range(0..=width + 2)?,
            u.int_in_range(0..=height + 2)?,
        );
        let data = match u.int_in_range(0..=7)? {
            0 => TileData::Solid(u.arbitrary()?),
            1 => TileData::Zstd(u.arbitrary()?),
            kind => {
                // Usually the exact size, sometimes a little off either way. Palette tiles
                // (kinds 4 and 7) hold one index byte per pixel.
                let per_pixel = if kind == 4 || kind == 7 { 1 } else { 4 };
                let exact = rect.w as usize * rect.h as usize * per_pixel;
                let len = match u.int_in_range(0..=3)? {
                    0 => exact.saturating_sub(u.int_in_range(1..=8)?),
                    1 => exact + u.int_in_range(1..=8)?,
                    _ => exact,
                };
                let fill: u8 = u.arbitrary()?;
                let mut raw = vec![fill; len];
                let head = u.bytes(len.min(u.len()).min(256))?;
                raw[..head.len()].copy_from_slice(head);
                let mut c = zstd::bulk::Compressor::new(1)
                    .map_err(|_| libfuzzer_sys::arbitrary::Error::IncorrectFormat)?;
                let hide_size: bool = u.arbitrary()?;
                let _ = c.set_parameter(zstd::zstd_safe::CParameter::ContentSizeFlag(!hide_size));
                let z = c
                    .compress(&raw)
                    .map_err(|_| libfuzzer_sys::arbitrary::Error::IncorrectFormat)?;
                // Update-stream tiles: a whole zstd frame is a valid start of the stream; the
                // number is usually the one a fresh decoder expects next.
                let number = u.int_in_range(0..=3)?;
                match kind {
                    2 => TileData::Zstd(z),
                    3 => TileData::ZstdXor(z),
                    5 => TileData::StreamPixels { number, data: z },
                    6 => TileData::StreamXor { number, data: z },
                    7 => TileData::StreamPalette {
                        number,
                        reset: u.arbitrary()?,
                        added: vec![0x5a; 4 * u.int_in_range(0..=257)?],
                        indices: z,
                    },
                    _ => {
                        // Mostly a valid palette size, sometimes empty, ragged or too long.
                        let colours = match u.int_in_range(0..=5)? {
                            0 => 0,
                            1 => u.int_in_range(1..=1100)?,
                            _ => 4 * u.int_in_range(1..=256)?,
                        };
                        TileData::ZstdPalette {
                            colours: vec![0x5a; colours],
                            indices: z,
                        }
                    }
                }
            }
        };
        tiles.push(Tile { rect, data });
    }
    let mut copies = Vec::new();
    for _ in 0..u.int_in_range(0..=2)? {
        copies.push(CopyRect {
            src: Rect::new(
                u.int_in_range(0..=width + 2)?,
                u.int_in_range(0..=height + 2)?,
                u.int_in_range(0..=width + 2)?,
                u.int_in_range(0..=height + 2)?,
            ),
            dst_x: u.int_in_range(0..=width + 2)?,
            dst_y: u.int_in_range(0..=height + 2)?,
        });
    }
    let video = if u.arbitrary()? {
        // Mostly even sizes inside the frame, so the H.264 parser is reached.
        let rect = Rect::new(
            u.int_in_range(0..=width / 2)?,
            u.int_in_range(0..=height / 2)?,
            u.int_in_range(0..=width / 2)? & !1,
            u.int_in_range(0..=height / 2)? & !1,
        );
        let mut data = Vec::new();
        if u.arbitrary()? {
            // An Annex-B start code and an SPS, PPS or IDR NAL header.
            data.extend_from_slice(&[0, 0, 0, 1, [0x67, 0x68, 0x65][u.int_in_range(0..=2)?]]);
        }
        let len = u.int_in_range(0..=512)?.min(u.len());
        data.extend_from_slice(u.bytes(len)?);
        Some(VideoUpdate {
            rect,
            idr: u.arbitrary()?,
            data,
        })
    } else {
        None
    };
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
