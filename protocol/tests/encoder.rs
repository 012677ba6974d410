//! What the encoder sends for typical changes: the choices that make the codec cheap.

use wayray_protocol::codec::{
    Decoder, EncodeError, Encoder, EncoderConfig, FrameUpdate, Rect, TileData, XorChoice,
};

fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

fn solid(w: u32, h: u32, colour: u32) -> Vec<u8> {
    colour.to_le_bytes().repeat((w * h) as usize)
}

fn set(px: &mut [u8], w: u32, x: u32, y: u32, colour: u32) {
    let i = ((y * w + x) * 4) as usize;
    px[i..i + 4].copy_from_slice(&colour.to_le_bytes());
}

fn kinds(u: &FrameUpdate) -> Vec<(Rect, &'static str)> {
    u.tiles
        .iter()
        .map(|t| {
            let kind = match t.data {
                TileData::Solid(_) => "solid",
                TileData::Zstd(_) | TileData::StreamPixels { .. } => "zstd",
                TileData::ZstdXor(_) | TileData::StreamXor { .. } => "xor",
                TileData::ZstdPalette { .. } | TileData::StreamPalette { .. } => "palette",
            };
            (t.rect, kind)
        })
        .collect()
}

#[test]
fn wrong_pixel_length_is_an_error_and_harmless() {
    let mut enc = Encoder::new(10, 10);
    let err = enc.encode(1, &[0; 399], &[]).unwrap_err();
    assert!(matches!(
        err,
        EncodeError::PixelsLength {
            expected: 400,
            got: 399,
            ..
        }
    ));
    // Still the first frame: the failed call did not count.
    assert!(enc.encode(2, &[0; 400], &[]).unwrap().key);
}

#[test]
fn unencodable_sizes_are_errors() {
    for (w, h) in [(0, 10), (10, 0), (8193, 1)] {
        let mut enc = Encoder::new(w, h);
        let err = enc.encode(1, &[], &[]).unwrap_err();
        assert!(
            matches!(err, EncodeError::InvalidSize { width, height } if (width, height) == (w, h))
        );
    }
}

#[test]
fn key_frame_covers_the_frame_with_solid_tiles_where_flat() {
    let (w, h) = (130, 70);
    let mut px = solid(w, h, 0x00204060);
    let u = Encoder::new(w, h).encode(1, &px, &[]).unwrap();
    assert!(u.key);
    assert_eq!(kinds(&u), vec![(Rect::new(0, 0, w, h), "solid")]);
    assert_eq!(u.tiles[0].data, TileData::Solid(0x00204060));

    // With one-cell blocks, only the cell holding the odd pixel needs zstd (of a two-colour
    // palette's indices).
    set(&mut px, w, 129, 69, 0x00ffffff);
    let one_cell = EncoderConfig {
        block: 1,
        ..EncoderConfig::default()
    };
    let u = Encoder::with_config(w, h, one_cell)
        .encode(1, &px, &[])
        .unwrap();
    assert_eq!(
        kinds(&u),
        vec![
            (Rect::new(0, 0, 64, 64), "solid"),
            (Rect::new(64, 0, 64, 64), "solid"),
            (Rect::new(128, 0, 2, 64), "solid"),
            (Rect::new(0, 64, 64, 6), "solid"),
            (Rect::new(64, 64, 64, 6), "solid"),
            (Rect::new(128, 64, 2, 6), "palette"),
        ]
    );
    let u = Encoder::new(w, h).encode(1, &px, &[]).unwrap();
    assert_eq!(kinds(&u), vec![(Rect::new(0, 0, w, h), "palette")]);
}

#[test]
fn damage_is_expanded_to_its_tile_and_unchanged_tiles_are_skipped() {
    let (w, h) = (200, 150);
    let mut px = noise((w * h * 4) as usize, 1);
    let mut enc = Encoder::new(w, h);
    enc.encode(1, &px, &[]).unwrap();

    set(&mut px, w, 70, 70, 0x00abcdef);
    // The second rect is damaged but unchanged; the third lies outside the frame.
    let damage = [
        Rect::new(70, 70, 1, 1),
        Rect::new(0, 0, 5, 5),
        Rect::new(500, 0, 5, 5),
    ];
    let u = enc.encode(2, &px, &damage).unwrap();
    assert!(!u.key);
    assert_eq!(kinds(&u), vec![(Rect::new(64, 64, 64, 64), "xor")]);

    let u = enc.encode(3, &px, &[Rect::new(0, 0, w, h)]).unwrap();
    assert!(u.tiles.is_empty(), "nothing changed since the last frame");
}

#[test]
fn xor_for_small_edits_raw_for_replaced_content() {
    let (w, h) = (64, 64);
    let base = noise((w * h * 4) as usize, 2);
    let mut enc = Encoder::new(w, h);
    enc.encode(1, &base, &[]).unwrap();

    // A few pixels of a detailed tile change: XOR is mostly zeros.
    let mut edited = base.clone();
    for x in 10..20 {
        set(&mut edited, w, x, 5, 0);
    }
    let u = enc.encode(2, &edited, &[Rect::new(0, 0, w, h)]).unwrap();
    assert_eq!(kinds(&u), vec![(Rect::new(0, 0, 64, 64), "xor")]);

    // The tile now shows text-like stripes: raw has the runs, XOR with noise has none. Two
    // colours: a palette tile.
    let mut stripes = solid(w, h, 0x00ffffff);
    for y in (0..h).step_by(4) {
        for x in 0..w {
            set(&mut stripes, w, x, y, 0);
        }
    }
    let u = enc.encode(3, &stripes, &[Rect::new(0, 0, w, h)]).unwrap();
    assert_eq!(kinds(&u), vec![(Rect::new(0, 0, 64, 64), "palette")]);
}

#[test]
fn palette_for_few_colours_plain_zstd_past_256() {
    let (w, h) = (64, 64);
    let mut dec = Decoder::new();
    // Text-like: a background and strokes in 40 shades of anti-aliased foreground.
    let mut text = solid(w, h, 0x00f0f0f0);
    for y in 0..h {
        for x in (0..w).filter(|x| x % 8 < 2) {
            set(&mut text, w, x, y, 0x00030303 * ((x / 8 + y) % 40));
        }
    }
    let mut enc = Encoder::new(w, h);
    let u = enc.encode(1, &text, &[]).unwrap();
    assert_eq!(kinds(&u), vec![(Rect::new(0, 0, w, h), "palette")]);
    match &u.tiles[0].data {
        TileData::ZstdPalette { colours, indices }
        | TileData::StreamPalette {
            added: colours,
            indices,
            ..
        } => {
            assert!(colours.len() <= 4 * 41, "{} palette bytes", colours.len());
            assert!(indices.len() < 1000, "{} bytes of indices", indices.len());
        }
        other => panic!("not a palette tile: {other:?}"),
    }
    dec.apply(&u).unwrap();
    assert_eq!(dec.pixels(), &text[..]);

    // Runs of two pixels (zstd still finds repeats, so not photo-like) in 2048 colours.
    let mut many = vec![0; (w * h * 4) as usize];
    for y in 0..h {
        for x in 0..w {
            set(&mut many, w, x, y, (y * w + x) / 2);
        }
    }
    let u = enc.encode(2, &many, &[Rect::new(0, 0, w, h)]).unwrap();
    assert_eq!(kinds(&u), vec![(Rect::new(0, 0, w, h), "zstd")]);
    dec.apply(&u).unwrap();
    assert_eq!(dec.pixels(), &many[..]);
}

#[test]
fn changed_cells_of_a_block_travel_as_one_tile() {
    let (w, h) = (320, 64);
    let px = noise((w * h * 4) as usize, 3);
    let three = EncoderConfig {
        block: 3,
        merge_rows: false,
        ..EncoderConfig::default()
    };
    let u = Encoder::with_config(w, h, three)
        .encode(1, &px, &[])
        .unwrap();
    assert_eq!(
        kinds(&u),
        vec![
            (Rect::new(0, 0, 192, 64), "zstd"),
            (Rect::new(192, 0, 128, 64), "zstd")
        ]
    );
    // Merged: the two blocks span the same rows and touch.
    let merged = EncoderConfig {
        merge_rows: true,
        ..three
    };
    let u = Encoder::with_config(w, h, merged)
        .encode(1, &px, &[])
        .unwrap();
    assert_eq!(kinds(&u), vec![(Rect::new(0, 0, 320, 64), "zstd")]);

    // Two-cell blocks: cells (0,0) and (1,1) share a block, (2,0) and (0,2) do not.
    let (w, h) = (200, 150);
    let mut px = noise((w * h * 4) as usize, 4);
    let two = EncoderConfig {
        block: 2,
        ..EncoderConfig::default()
    };
    let mut enc = Encoder::with_config(w, h, two);
    enc.encode(1, &px, &[]).unwrap();
    let mut damage = Vec::new();
    for (x, y) in [(1, 1), (100, 100), (130, 2), (3, 140)] {
        set(&mut px, w, x, y, 0);
        damage.push(Rect::new(x, y, 1, 1));
    }
    let u = enc.encode(2, &px, &damage).unwrap();
    assert_eq!(
        kinds(&u),
        vec![
            (Rect::new(0, 0, 128, 128), "xor"),
            (Rect::new(128, 0, 64, 64), "xor"),
            (Rect::new(0, 128, 64, 22), "xor"),
        ]
    );
}

#[test]
fn flat_block_is_one_solid_tile() {
    let (w, h) = (256, 128);
    let mut px = noise((w * h * 4) as usize, 4);
    let flat = solid(128, 1, 0x00112233);
    for y in 0..h as usize {
        let s = y * w as usize * 4;
        px[s..s + 512].copy_from_slice(&flat);
    }
    let two = EncoderConfig {
        block: 2,
        ..EncoderConfig::default()
    };
    let u = Encoder::with_config(w, h, two).encode(1, &px, &[]).unwrap();
    assert_eq!(
        kinds(&u),
        vec![
            (Rect::new(0, 0, 128, 128), "solid"),
            (Rect::new(128, 0, 128, 128), "zstd")
        ]
    );
    assert_eq!(u.tiles[0].data, TileData::Solid(0x00112233));
}

#[test]
fn reset_and_resize_send_a_full_key_frame() {
    let (w, h) = (100, 100);
    let px = noise((w * h * 4) as usize, 5);
    let mut enc = Encoder::new(w, h);
    let first = enc.encode(1, &px, &[]).unwrap();
    assert!(!enc.encode(2, &px, &[]).unwrap().key);

    enc.reset();
    let again = enc.encode(3, &px, &[]).unwrap();
    assert!(again.key);
    assert_eq!(
        again.tiles, first.tiles,
        "a key frame does not depend on history"
    );

    enc.resize(30, 20);
    let small = noise(30 * 20 * 4, 6);
    let u = enc.encode(4, &small, &[]).unwrap();
    assert!(u.key);
    assert_eq!((u.width, u.height), (30, 20));
    let mut dec = Decoder::new();
    dec.apply(&u).unwrap();
    assert_eq!(dec.pixels(), &small[..]);
    assert!(matches!(
        enc.encode(5, &px, &[]),
        Err(EncodeError::PixelsLength { .. })
    ));
}

/// Every choice strategy decodes to the same pixels; `Smaller` never sends more than the others.
#[test]
fn xor_choices_agree_on_pixels() {
    let (w, h) = (256, 128);
    let a = noise((w * h * 4) as usize, 7);
    let mut b = a.clone();
    for y in 0..h {
        for x in 0..w / 2 {
            set(
                &mut b,
                w,
                x,
                y,
                if (x / 8 + y / 8) % 2 == 0 {
                    0
                } else {
                    0x00ffffff
                },
            );
        }
        set(&mut b, w, 200, y, 0x00ff0000);
    }
    let mut sizes = Vec::new();
    for xor_choice in [
        XorChoice::Heuristic,
        XorChoice::Smaller,
        XorChoice::Raw,
        XorChoice::Xor,
    ] {
        let config = EncoderConfig {
            xor_choice,
            ..EncoderConfig::default()
        };
        let mut enc = Encoder::with_config(w, h, config);
        let mut dec = Decoder::new();
        dec.apply(&enc.encode(1, &a, &[]).unwrap()).unwrap();
        let u = enc.encode(2, &b, &[Rect::new(0, 0, w, h)]).unwrap();
        dec.apply(&u).unwrap();
        assert_eq!(dec.pixels(), &b[..], "{xor_choice:?}");
        sizes.push((xor_choice, u.payload_len()));
    }
    let smaller = sizes[1].1;
    assert!(sizes.iter().all(|&(_, s)| smaller <= s), "{sizes:?}");
}

/// A 640×480 "terminal": dark background, rows of glyph-like noise every 16 pixels, the line
/// index folded into the pixels so every text line differs. `top` is the first line shown.
fn terminal(w: u32, h: u32, top: u32) -> Vec<u8> {
    let mut px = solid(w, h, 0x00101418);
    for y in 0..h {
        let line = (y + top) / 16;
        if (y + top) % 16 >= 12 {
            continue; // line spacing
        }
        let glyphs = noise(
            w as usize,
            u64::from(line) * 7919 + u64::from((y + top) % 16) + 1,
        );
        for x in 0..w {
            if glyphs[x as usize] < 40 && x % 8 != 7 {
                set(&mut px, w, x, y, 0x00d0d0d0);
            }
        }
    }
    px
}

#[test]
fn a_scrolled_terminal_travels_as_a_copy_plus_the_new_lines() {
    let (w, h) = (640, 480);
    let damage = [Rect::new(0, 0, w, h)];
    let mut sizes = Vec::new();
    // Without the update stream, which finds the moved lines on its own (see
    // `the_update_stream_finds_text_sent_before`).
    for scroll in [true, false] {
        let config = EncoderConfig {
            scroll,
            stream: false,
            ..EncoderConfig::default()
        };
        let mut enc = Encoder::with_config(w, h, config);
        let mut dec = Decoder::new();
        dec.apply(&enc.encode_full(1, &terminal(w, h, 0)).unwrap())
            .unwrap();
        let mut bytes = 0;
        // Three lines at a time, ten times, like `cat` in a terminal.
        for step in 1..=10u32 {
            let px = terminal(w, h, step * 48);
            let u = enc.encode(u64::from(step) + 1, &px, &damage).unwrap();
            if scroll {
                assert_eq!(
                    u.copies,
                    vec![wayray_protocol::CopyRect {
                        src: Rect::new(0, 48, w, h - 48),
                        dst_x: 0,
                        dst_y: 0,
                    }],
                    "step {step}"
                );
                // Only the exposed strip (one 64-pixel row of cells) is sent as tiles.
                assert!(u.tiles.iter().all(|t| t.rect.y >= 384), "{:?}", kinds(&u));
            } else {
                assert!(u.copies.is_empty());
            }
            bytes += wayray_protocol::framing::encode(&wayray_protocol::DisplayMessage::Frame(
                u.clone(),
            ))
            .unwrap()
            .len();
            dec.apply(&u).unwrap();
            assert!(dec.pixels() == px, "step {step}: decoder differs");
        }
        sizes.push(bytes);
    }
    let (with, without) = (sizes[0], sizes[1]);
    eprintln!("10 scrolls of 3 lines: {with} bytes with copies, {without} without");
    assert!(
        with * 4 < without,
        "copies should cut bytes by 4× or more: {with} vs {without}"
    );
}

/// A page of text: line `first + i` on row `i`, each line a seeded run of words made of 16
/// glyphs (8×14 cells, a background, a foreground and two anti-aliasing shades).
fn glyph_page(w: u32, h: u32, first: u32) -> Vec<u8> {
    let shades = [0x00101418u32, 0x00d0d0d0, 0x00707070, 0x00404448];
    let glyph = |g: u32, x: u32, y: u32| -> u32 {
        let bits = noise(16, u64::from(g) * 131 + u64::from(y) + 1)[x as usize % 8];
        if y >= 12 || x == 7 {
            0
        } else {
            u32::from(bits % 4)
        }
    };
    let mut px = solid(w, h, shades[0]);
    for row in 0..h / 14 {
        let text = noise(w as usize / 8, u64::from(first + row) * 977 + 5);
        for (col, &ch) in text.iter().enumerate() {
            // Spaces one cell in four, a word vocabulary of 16 glyphs.
            if ch % 4 == 0 {
                continue;
            }
            for y in 0..14 {
                for x in 0..8 {
                    let c = shades[glyph(u32::from(ch % 16), x, y) as usize];
                    set(&mut px, w, col as u32 * 8 + x, row * 14 + y, c);
                }
            }
        }
    }
    px
}

#[test]
fn the_update_stream_finds_text_sent_before() {
    let (w, h) = (640, 480);
    let damage = [Rect::new(0, 0, w, h)];
    let mut sizes = Vec::new();
    for stream in [false, true] {
        let config = EncoderConfig {
            stream,
            ..EncoderConfig::default()
        };
        let mut enc = Encoder::with_config(w, h, config);
        let mut dec = Decoder::new();
        dec.apply(&enc.encode_full(1, &glyph_page(w, h, 0)).unwrap())
            .unwrap();
        let mut bytes = 0;
        // Redraws that show lines sent before, in another order (no scroll to find).
        for step in 1..=4u32 {
            let px = glyph_page(w, h, [20, 7, 13, 3][step as usize - 1]);
            let u = enc.encode(u64::from(step) + 1, &px, &damage).unwrap();
            bytes += u.payload_len();
            dec.apply(&u).unwrap();
            assert!(dec.pixels() == px, "step {step}: decoder differs");
        }
        sizes.push(bytes);
    }
    let (off, on) = (sizes[0], sizes[1]);
    eprintln!("4 redraws of lines sent before: {off} bytes per tile, {on} through the stream");
    // Glyphs of four shades are short, common byte runs, where zstd's fastest match finder
    // keeps only the latest of many candidates: a fifth fewer bytes, not more.
    assert!(
        on * 5 < off * 4,
        "the stream should find the lines: {on} vs {off}"
    );
}
