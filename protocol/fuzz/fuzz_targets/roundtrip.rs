//! Differential: fuzzer-drawn frame sequences through Encoder → postcard → Decoder must
//! reproduce every frame exactly, with any encoder settings, resets and resizes; with video
//! regions, the decoder must show exactly the encoder's reference, and the source once no
//! region is active.
#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use wayray_protocol::codec::{Decoder, Encoder, EncoderConfig, Rect, XorChoice};
use wayray_protocol::{framing, DisplayMessage};

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});

fn run(u: &mut Unstructured) -> Result<()> {
    let config = EncoderConfig {
        level: u.int_in_range(-5..=3)?,
        photo_level: u.int_in_range(-20..=1)?,
        photo_below_pct: u.int_in_range(0..=100)?,
        xor_choice: [
            XorChoice::Heuristic,
            XorChoice::Smaller,
            XorChoice::Raw,
            XorChoice::Xor,
        ][u.int_in_range(0..=3)?],
        block: u.int_in_range(0..=6)?,
        scroll: u.arbitrary()?,
        merge_rows: u.arbitrary()?,
        video: u.arbitrary()?,
        stream: u.arbitrary()?,
    };
    // Up to 260×200, so video regions (at least 128×128) can form.
    let (mut w, mut h) = (u.int_in_range(1..=260)?, u.int_in_range(1..=200)?);
    let mut px = vec![0u8; w as usize * h as usize * 4];
    let mut enc = Encoder::with_config(w, h, config);
    let mut dec = Decoder::new();
    let mut seq = 0;

    while !u.is_empty() {
        let mut damage = Vec::new();
        match u.int_in_range(0..=10)? {
            0 => enc.reset(),
            // No damage: how a region goes quiet and gets refreshed.
            10 => {}
            1 => {
                (w, h) = (u.int_in_range(1..=260)?, u.int_in_range(1..=200)?);
                px = vec![u.arbitrary()?; w as usize * h as usize * 4];
                enc.resize(w, h);
            }
            _ => {
                for _ in 0..u.int_in_range(0..=3)? {
                    let r = Rect::new(
                        u.int_in_range(0..=w + 10)?,
                        u.int_in_range(0..=h + 10)?,
                        u.int_in_range(0..=w + 10)?,
                        u.int_in_range(0..=h + 10)?,
                    );
                    paint(u, &mut px, w, h, r)?;
                    damage.push(r);
                }
            }
        }
        seq += 1;
        let update = enc.encode(seq, &px, &damage).expect("valid frame encodes");
        let bytes = framing::encode(&DisplayMessage::Frame(update)).expect("serializes");
        let Ok(DisplayMessage::Frame(update)) =
            framing::decode_body::<DisplayMessage>(&bytes[framing::HEADER_LEN..])
        else {
            panic!("own frame message does not parse back as a frame");
        };
        dec.apply(&update).expect("own update decodes");
        assert!(dec.pixels() == enc.reference(), "decoder diverged from the reference");
        if !enc.video_active() {
            assert!(dec.pixels() == px, "decoder diverged from encoder input");
        }
    }
    Ok(())
}

/// Fills the part of `r` inside the frame with a solid colour or fuzzer bytes.
fn paint(u: &mut Unstructured, px: &mut [u8], w: u32, h: u32, r: Rect) -> Result<()> {
    let Some(r) = r.clip(w, h) else {
        return Ok(());
    };
    let solid: bool = u.arbitrary()?;
    let colour: [u8; 4] = u.arbitrary()?;
    for y in r.y..r.y + r.h {
        let start = (y as usize * w as usize + r.x as usize) * 4;
        let row = &mut px[start..start + r.w as usize * 4];
        if solid {
            row.chunks_exact_mut(4)
                .for_each(|p| p.copy_from_slice(&colour));
        } else {
            let src = u.bytes(row.len().min(u.len()))?;
            row[..src.len()].copy_from_slice(src);
        }
    }
    Ok(())
}
