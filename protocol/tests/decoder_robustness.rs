//! The decoder faces bytes from the network: every malformed update must be an error, never a
//! panic, and must leave the framebuffer exactly as it was.

use proptest::prelude::*;
use wayray_protocol::codec::{
    CopyRect, DecodeError, Decoder, Encoder, FrameUpdate, Rect, Tile, TileData, VideoError,
    VideoUpdate, I420, MAX_COPIES, MAX_DIMENSION,
};
use wayray_protocol::{framing, DisplayMessage, FramingError};

const W: u32 = 100;
const H: u32 = 70;

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

/// A decoder that accepted a key frame (seq 10) of W×H noise, and that frame's pixels.
fn keyed() -> (Decoder, Vec<u8>) {
    let px = noise((W * H * 4) as usize, 7);
    let key = Encoder::new(W, H).encode_full(10, &px).unwrap();
    let mut dec = Decoder::new();
    assert_eq!(dec.apply(&key).unwrap(), vec![Rect::new(0, 0, W, H)]);
    (dec, px)
}

fn update(seq: u64, key: bool, tiles: Vec<Tile>) -> FrameUpdate {
    FrameUpdate {
        seq,
        width: W,
        height: H,
        key,
        copies: vec![],
        tiles,
        video: None,
        time_us: 0,
    }
}

fn zstd_of(len: usize) -> Vec<u8> {
    zstd::bulk::compress(&noise(len, 3), 1).unwrap()
}

/// Applies `u`, expects `err`, and checks nothing changed.
fn rejects(dec: &mut Decoder, u: &FrameUpdate, err: impl Fn(&DecodeError) -> bool) {
    let (pixels, seq, size) = (
        dec.pixels().to_vec(),
        dec.last_seq(),
        (dec.width(), dec.height()),
    );
    match dec.apply(u) {
        Err(e) => assert!(err(&e), "unexpected error {e:?}"),
        Ok(r) => panic!("accepted a bad update, changed {r:?}"),
    }
    assert!(
        dec.pixels() == pixels,
        "framebuffer changed by a rejected update"
    );
    assert_eq!((dec.last_seq(), (dec.width(), dec.height())), (seq, size));
}

#[test]
fn copies_outside_the_frame_in_key_frames_or_too_many_are_rejected() {
    let (mut dec, _) = keyed();
    let copy = |src: Rect, dst_x, dst_y| CopyRect { src, dst_x, dst_y };
    for (index, bad) in [
        copy(Rect::new(0, 0, 0, 10), 0, 0),
        copy(Rect::new(0, 0, W, H), 1, 0),
        copy(Rect::new(0, 1, W, H), 0, 0),
        copy(Rect::new(0, 0, 10, 10), W - 9, 0),
        copy(Rect::new(0, 0, 10, 10), u32::MAX, u32::MAX),
        copy(Rect::new(u32::MAX, 0, 2, 1), 0, 0),
    ]
    .into_iter()
    .enumerate()
    {
        let mut u = update(11 + index as u64, false, vec![]);
        // A valid copy first: the bad one must be caught before the valid one is applied.
        u.copies = vec![copy(Rect::new(0, 10, W, 20), 0, 0), bad];
        rejects(&mut dec, &u, |e| {
            matches!(e, DecodeError::CopyOutside { index: 1, .. })
        });
    }
    let mut u = update(20, true, vec![]);
    u.copies = vec![copy(Rect::new(0, 0, 1, 1), 1, 1)];
    rejects(&mut dec, &u, |e| *e == DecodeError::CopyInKeyFrame);
    let mut u = update(20, false, vec![]);
    u.copies = vec![copy(Rect::new(0, 0, 1, 1), 1, 1); MAX_COPIES + 1];
    rejects(&mut dec, &u, |e| {
        *e == DecodeError::TooManyCopies {
            count: MAX_COPIES + 1,
        }
    });
}

#[test]
fn copies_move_pixels_before_tiles_and_are_reported_as_changed() {
    let (mut dec, px) = keyed();
    let stride = (W * 4) as usize;
    let mut u = update(
        11,
        false,
        vec![Tile {
            rect: Rect::new(0, H - 10, W, 10),
            data: TileData::Solid(0x00123456),
        }],
    );
    // Scroll the whole frame up by 10 rows, then paint the exposed strip.
    u.copies = vec![CopyRect {
        src: Rect::new(0, 10, W, H - 10),
        dst_x: 0,
        dst_y: 0,
    }];
    let changed = dec.apply(&u).unwrap();
    assert_eq!(
        changed,
        vec![Rect::new(0, 0, W, H - 10), Rect::new(0, H - 10, W, 10)]
    );
    assert_eq!(
        dec.pixels()[..(H as usize - 10) * stride],
        px[10 * stride..]
    );
    assert!(dec.pixels()[(H as usize - 10) * stride..]
        .chunks(4)
        .all(|p| p == [0x56, 0x34, 0x12, 0]));
}

#[test]
fn truncated_zstd_payload_is_rejected() {
    let (mut dec, _) = keyed();
    let payload = zstd_of(64 * 64 * 4);
    for keep in [payload.len() - 1, payload.len() / 2, 3, 1] {
        let u = update(
            11,
            false,
            vec![Tile {
                rect: Rect::new(0, 0, 64, 64),
                data: TileData::Zstd(payload[..keep].to_vec()),
            }],
        );
        rejects(&mut dec, &u, |e| {
            matches!(e, DecodeError::Corrupt { index: 0, .. })
        });
    }
    let u = update(
        11,
        false,
        vec![Tile {
            rect: Rect::new(0, 0, 64, 64),
            data: TileData::ZstdXor(vec![]),
        }],
    );
    rejects(&mut dec, &u, |e| {
        matches!(e, DecodeError::WrongSize { got: 0, .. })
    });
}

#[test]
fn wrong_decompressed_size_is_rejected() {
    let (mut dec, _) = keyed();
    let rect = Rect::new(64, 0, 36, 64);
    let len = 36 * 64 * 4;
    for (bytes, got) in [
        (len - 4, len - 4),
        (len + 4, len + 4),
        (len * 1000, len * 1000),
    ] {
        let u = update(
            11,
            false,
            vec![Tile {
                rect,
                data: TileData::Zstd(zstd_of(bytes)),
            }],
        );
        rejects(&mut dec, &u, |e| {
            *e == DecodeError::WrongSize {
                index: 0,
                expected: len,
                got: got as u64,
            }
        });
    }
}

/// Palette tiles: a palette that is empty, ragged or longer than 256 colours, or an index past
/// its end (the last tile of the update, so earlier good tiles must not be applied either).
#[test]
fn bad_palettes_and_indices_are_rejected() {
    let (mut dec, _) = keyed();
    let rect = Rect::new(0, 0, 8, 8);
    let good = Tile {
        rect: Rect::new(64, 0, 8, 8),
        data: TileData::ZstdPalette {
            colours: vec![1, 2, 3, 0, 4, 5, 6, 0],
            indices: zstd::bulk::compress(&[1u8; 64], 1).unwrap(),
        },
    };
    for bytes in [0, 3, 6, 257 * 4] {
        let bad = Tile {
            rect,
            data: TileData::ZstdPalette {
                colours: vec![0; bytes],
                indices: zstd::bulk::compress(&[0u8; 64], 1).unwrap(),
            },
        };
        let u = update(11, false, vec![good.clone(), bad]);
        rejects(&mut dec, &u, |e| {
            *e == DecodeError::BadPalette { index: 1, bytes }
        });
    }
    let mut indices = [0u8; 64];
    indices[63] = 2;
    let past_end = Tile {
        rect,
        data: TileData::ZstdPalette {
            colours: vec![9; 8],
            indices: zstd::bulk::compress(&indices, 1).unwrap(),
        },
    };
    let u = update(11, false, vec![good.clone(), past_end]);
    rejects(&mut dec, &u, |e| {
        *e == DecodeError::PaletteIndex {
            index: 1,
            found: 2,
            colours: 2,
        }
    });
    // Indices are one byte per pixel: four bytes per pixel is the wrong size.
    let wide = Tile {
        rect,
        data: TileData::ZstdPalette {
            colours: vec![9; 8],
            indices: zstd::bulk::compress(&[0u8; 256], 1).unwrap(),
        },
    };
    rejects(&mut dec, &update(11, false, vec![wide]), |e| {
        *e == DecodeError::WrongSize {
            index: 0,
            expected: 64,
            got: 256,
        }
    });
    // The good tile alone applies: every pixel gets colour 1.
    dec.apply(&update(11, false, vec![good])).unwrap();
    let px = dec.pixels();
    let at = |x: usize, y: usize| &px[(y * W as usize + x) * 4..][..4];
    assert!((0..8).all(|y| (64..72).all(|x| at(x, y) == [4, 5, 6, 0])));
}

/// A frame whose header hides its size and that would inflate to 64 MiB: zstd stops at the
/// tile's capacity instead of allocating.
#[test]
fn zstd_bomb_without_content_size_is_rejected() {
    let mut c = zstd::bulk::Compressor::new(19).unwrap();
    c.set_parameter(zstd::zstd_safe::CParameter::ContentSizeFlag(false))
        .unwrap();
    let bomb = c.compress(&vec![0u8; 64 << 20]).unwrap();
    assert!(bomb.len() < 64 << 10);
    let (mut dec, _) = keyed();
    let u = update(
        11,
        false,
        vec![Tile {
            rect: Rect::new(0, 0, 8, 8),
            data: TileData::Zstd(bomb),
        }],
    );
    rejects(&mut dec, &u, |e| {
        matches!(e, DecodeError::Corrupt { index: 0, .. })
    });
}

#[test]
fn tiles_outside_the_frame_are_rejected() {
    let (mut dec, _) = keyed();
    let bad = [
        Rect::new(W, 0, 1, 1),
        Rect::new(0, H, 1, 1),
        Rect::new(90, 0, 11, 1),
        Rect::new(0, 60, 1, 11),
        Rect::new(u32::MAX, 0, 2, 1),
        Rect::new(1, 1, u32::MAX, u32::MAX),
        Rect::new(0, 0, 0, 5),
        Rect::new(0, 0, 5, 0),
    ];
    for rect in bad {
        let u = update(
            11,
            false,
            vec![
                Tile {
                    rect: Rect::new(0, 0, 1, 1),
                    data: TileData::Solid(1),
                },
                Tile {
                    rect,
                    data: TileData::Solid(0),
                },
            ],
        );
        rejects(
            &mut dec,
            &u,
            |e| matches!(e, DecodeError::TileOutside { index: 1, rect: r, .. } if *r == rect),
        );
    }
}

#[test]
fn overlapping_tiles_beyond_the_frame_area_are_rejected() {
    let (mut dec, _) = keyed();
    let full = Tile {
        rect: Rect::new(0, 0, W, H),
        data: TileData::Solid(0),
    };
    let u = update(11, false, vec![full.clone(), full]);
    rejects(&mut dec, &u, |e| {
        matches!(e, DecodeError::TilesOverlap { .. })
    });
}

#[test]
fn delta_before_any_key_frame_is_rejected() {
    let mut dec = Decoder::new();
    let u = update(1, false, vec![]);
    rejects(&mut dec, &u, |e| *e == DecodeError::NoKeyFrame { seq: 1 });
    assert_eq!((dec.width(), dec.height(), dec.pixels().len()), (0, 0, 0));
}

#[test]
fn invalid_key_frame_sizes_are_rejected() {
    let mut dec = Decoder::new();
    for (width, height) in [
        (0, 10),
        (10, 0),
        (MAX_DIMENSION + 1, 1),
        (1, MAX_DIMENSION + 1),
    ] {
        let u = FrameUpdate {
            seq: 1,
            width,
            height,
            key: true,
            copies: vec![],
            tiles: vec![],
            video: None,
            time_us: 0,
        };
        rejects(&mut dec, &u, |e| {
            *e == DecodeError::InvalidSize { width, height }
        });
    }
}

#[test]
fn largest_key_frame_is_accepted() {
    let mut dec = Decoder::new();
    let u = FrameUpdate {
        seq: 1,
        width: MAX_DIMENSION,
        height: 1,
        key: true,
        copies: vec![],
        tiles: vec![Tile {
            rect: Rect::new(0, 0, MAX_DIMENSION, 1),
            data: TileData::Solid(0x00ff0000),
        }],
        video: None,
        time_us: 0,
    };
    dec.apply(&u).unwrap();
    assert_eq!(&dec.pixels()[..4], &[0, 0, 0xff, 0]);
}

#[test]
fn delta_of_another_size_is_rejected() {
    let (mut dec, _) = keyed();
    let mut u = update(11, false, vec![]);
    u.width = W + 1;
    rejects(&mut dec, &u, |e| {
        matches!(e, DecodeError::SizeMismatch { .. })
    });
}

#[test]
fn seq_must_increase() {
    let (mut dec, _) = keyed();
    for seq in [10, 9, 0] {
        rejects(&mut dec, &update(seq, false, vec![]), |e| {
            *e == DecodeError::SeqNotIncreasing { seq, last: 10 }
        });
    }
    assert_eq!(dec.apply(&update(11, false, vec![])).unwrap(), vec![]);
    assert_eq!(dec.last_seq(), Some(11));
}

/// Another session shown on the appliance counts its frames from 1 again: its key frame starts
/// a new sequence, and deltas follow that one.
#[test]
fn a_key_frame_starts_a_new_sequence() {
    let (mut dec, _) = keyed();
    let px = noise((W * H * 4) as usize, 8);
    let key = Encoder::new(W, H).encode_full(1, &px).unwrap();
    dec.apply(&key).unwrap();
    assert_eq!(dec.last_seq(), Some(1));
    rejects(&mut dec, &update(1, false, vec![]), |e| {
        *e == DecodeError::SeqNotIncreasing { seq: 1, last: 1 }
    });
    assert_eq!(dec.apply(&update(2, false, vec![])).unwrap(), vec![]);
}

#[test]
fn xor_tile_in_key_frame_is_rejected() {
    let mut dec = Decoder::new();
    let u = update(
        1,
        true,
        vec![Tile {
            rect: Rect::new(0, 0, 8, 8),
            data: TileData::ZstdXor(zstd_of(8 * 8 * 4)),
        }],
    );
    rejects(&mut dec, &u, |e| {
        *e == DecodeError::XorInKeyFrame { index: 0 }
    });
}

/// The bad tile comes last, after tiles that would have changed pixels.
#[test]
fn late_bad_tile_leaves_the_framebuffer_untouched() {
    let (mut dec, _) = keyed();
    let u = update(
        11,
        false,
        vec![
            Tile {
                rect: Rect::new(0, 0, 64, 64),
                data: TileData::Solid(0),
            },
            Tile {
                rect: Rect::new(64, 0, 36, 64),
                data: TileData::Zstd(zstd_of(36 * 64 * 4)),
            },
            Tile {
                rect: Rect::new(0, 64, 64, 6),
                data: TileData::ZstdXor(b"not zstd at all".to_vec()),
            },
        ],
    );
    rejects(&mut dec, &u, |e| {
        matches!(e, DecodeError::Corrupt { index: 2, .. })
    });
}

#[test]
fn tiles_apply_as_documented() {
    let (mut dec, before) = keyed();
    let xor = vec![0xffu8; 2 * 2 * 4];
    let raw = noise(3 * 4, 99);
    let u = update(
        12,
        false,
        vec![
            Tile {
                rect: Rect::new(0, 0, 1, 2),
                data: TileData::Solid(0x11223344),
            },
            Tile {
                rect: Rect::new(10, 10, 2, 2),
                data: TileData::ZstdXor(zstd::bulk::compress(&xor, 1).unwrap()),
            },
            Tile {
                rect: Rect::new(97, 69, 3, 1),
                data: TileData::Zstd(zstd::bulk::compress(&raw, 1).unwrap()),
            },
        ],
    );
    let changed = dec.apply(&u).unwrap();
    assert_eq!(changed, u.tiles.iter().map(|t| t.rect).collect::<Vec<_>>());
    let at = |x: u32, y: u32| ((y * W + x) * 4) as usize;
    let px = dec.pixels();
    assert_eq!(&px[at(0, 1)..at(0, 1) + 4], &[0x44, 0x33, 0x22, 0x11]);
    for i in at(11, 11)..at(11, 11) + 4 {
        assert_eq!(px[i], !before[i]);
    }
    assert_eq!(&px[at(97, 69)..], &raw[..]);
    assert_eq!(&px[at(2, 0)..at(10, 0)], &before[at(2, 0)..at(10, 0)]);
}

fn with_video(seq: u64, rect: Rect, idr: bool, data: Vec<u8>) -> FrameUpdate {
    FrameUpdate {
        video: Some(VideoUpdate { rect, idr, data }),
        ..update(seq, false, vec![])
    }
}

#[test]
fn bad_video_rects_are_rejected() {
    let (mut dec, _) = keyed();
    let data = idr_pictures()[0].2.clone();
    for rect in [
        Rect::new(0, 0, 0, 32),
        Rect::new(0, 0, 31, 32),
        Rect::new(0, 0, 32, 33),
        Rect::new(W - 30, 0, 32, 32),
        Rect::new(0, u32::MAX, 32, 32),
    ] {
        rejects(&mut dec, &with_video(11, rect, true, data.clone()), |e| {
            matches!(e, DecodeError::VideoOutside { .. })
        });
    }
    // A picture larger than H.264 level 5.2 is refused before anything is decoded.
    let mut dec = Decoder::new();
    let huge = FrameUpdate {
        video: Some(VideoUpdate {
            rect: Rect::new(0, 0, 4096, 4096),
            idr: true,
            data: data.clone(),
        }),
        ..update(1, true, vec![])
    };
    let huge = FrameUpdate {
        width: 4096,
        height: 4096,
        ..huge
    };
    rejects(&mut dec, &huge, |e| {
        matches!(e, DecodeError::VideoOutside { .. })
    });
}

#[test]
fn video_stream_must_start_with_idr() {
    let (mut dec, _) = keyed();
    let (w, h, data) = idr_pictures()[0].clone();
    let rect = Rect::new(2, 4, w, h);
    rejects(&mut dec, &with_video(11, rect, false, data.clone()), |e| {
        *e == DecodeError::VideoNotIdr { seq: 11 }
    });
    assert_eq!(
        dec.apply(&with_video(11, rect, true, data.clone()))
            .unwrap(),
        vec![rect]
    );
    // The same rect continues the stream; another one or a key frame does not.
    let moved = Rect::new(4, 4, w, h);
    rejects(&mut dec, &with_video(12, moved, false, data.clone()), |e| {
        *e == DecodeError::VideoNotIdr { seq: 12 }
    });
    dec.apply(&update(
        12,
        true,
        vec![Tile {
            rect: Rect::new(0, 0, W, H),
            data: TileData::Solid(0),
        }],
    ))
    .unwrap();
    rejects(&mut dec, &with_video(13, rect, false, data), |e| {
        *e == DecodeError::VideoNotIdr { seq: 13 }
    });
}

#[test]
fn bad_video_data_is_rejected_untouched() {
    let (mut dec, _) = keyed();
    let (w, h, data) = idr_pictures()[0].clone();
    for bad in [
        vec![],
        vec![0, 0, 0, 1, 0x65, 1, 2, 3],
        data[..data.len() / 2].to_vec(),
    ] {
        rejects(
            &mut dec,
            &with_video(11, Rect::new(0, 0, w, h), true, bad),
            |e| matches!(e, DecodeError::Video(_)),
        );
    }
    // More bytes than the picture's raw pixels.
    let mut long = data.clone();
    long.resize((w * h * 4) as usize + 65537, 0);
    rejects(
        &mut dec,
        &with_video(11, Rect::new(0, 0, w, h), true, long),
        |e| matches!(e, DecodeError::Video(VideoError::TooLong { .. })),
    );
    // A picture of another size than its rect.
    rejects(
        &mut dec,
        &with_video(11, Rect::new(0, 0, 48, 32), true, data),
        |e| matches!(e, DecodeError::Video(_)),
    );
}

#[test]
fn garbage_display_messages_are_errors() {
    let valid = framing::encode(&DisplayMessage::Frame(
        Encoder::new(W, H)
            .encode_full(1, &noise((W * H * 4) as usize, 5))
            .unwrap(),
    ))
    .unwrap();
    let body = &valid[framing::HEADER_LEN..];
    assert!(framing::decode_body::<DisplayMessage>(body).is_ok());
    // Every proper prefix is malformed.
    for len in 0..body.len() {
        assert!(matches!(
            framing::decode_body::<DisplayMessage>(&body[..len]),
            Err(FramingError::Malformed(_))
        ));
    }
    for garbage in [
        &[0xffu8; 16][..],
        // No DisplayMessage variant 9.
        &[9, 0],
        &[
            0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ],
    ] {
        assert!(framing::decode_body::<DisplayMessage>(garbage).is_err());
    }
}

fn any_rect() -> impl Strategy<Value = Rect> {
    prop_oneof![
        (0u32..W + 8, 0u32..H + 8, 0u32..W + 8, 0u32..H + 8),
        (any::<u32>(), any::<u32>(), any::<u32>(), any::<u32>()),
    ]
    .prop_map(|(x, y, w, h)| Rect::new(x, y, w, h))
}

fn any_copy() -> impl Strategy<Value = CopyRect> {
    (any_rect(), 0u32..W + 8, 0u32..H + 8).prop_map(|(src, dst_x, dst_y)| CopyRect {
        src,
        dst_x,
        dst_y,
    })
}

fn any_tile() -> impl Strategy<Value = Tile> {
    let data = prop_oneof![
        any::<u32>().prop_map(TileData::Solid),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(TileData::Zstd),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(TileData::ZstdXor),
        // Valid zstd of a random length, so the size checks (not just the parser) are reached.
        (0usize..40_000, any::<bool>()).prop_map(|(len, xor)| {
            let z = zstd_of(len);
            if xor {
                TileData::ZstdXor(z)
            } else {
                TileData::Zstd(z)
            }
        }),
    ];
    (any_rect(), data).prop_map(|(rect, data)| Tile { rect, data })
}

/// Real H.264 IDR pictures (SPS, PPS, IDR slice) of 32×32 and 48×32 noise, made once.
fn idr_pictures() -> &'static [(u32, u32, Vec<u8>)] {
    static PICTURES: std::sync::OnceLock<Vec<(u32, u32, Vec<u8>)>> = std::sync::OnceLock::new();
    PICTURES.get_or_init(|| {
        [(32, 32), (48, 32)]
            .into_iter()
            .map(|(w, h)| (w, h, h264_idr(w, h)))
            .collect()
    })
}

fn h264_idr(w: u32, h: u32) -> Vec<u8> {
    let picture = I420 {
        width: w,
        height: h,
        y: noise((w * h) as usize, 11),
        u: vec![90; (w * h / 4) as usize],
        v: vec![160; (w * h / 4) as usize],
    };
    let mut enc = openh264::encoder::Encoder::new().unwrap();
    enc.encode(&picture).unwrap().to_vec()
}

fn any_video() -> impl Strategy<Value = Option<VideoUpdate>> {
    let data = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        (0usize..2).prop_map(|i| idr_pictures()[i].2.clone()),
        // A real picture with a few bytes flipped or cut short: deep into the H.264 parser.
        (
            0usize..2,
            prop::collection::vec((any::<prop::sample::Index>(), 1u8..), 1..4),
            any::<prop::sample::Index>(),
            any::<bool>()
        )
            .prop_map(|(i, flips, cut, truncate)| {
                let mut d = idr_pictures()[i].2.clone();
                for (at, x) in flips {
                    let at = at.index(d.len());
                    d[at] ^= x;
                }
                if truncate {
                    d.truncate(cut.index(d.len()));
                }
                d
            }),
    ];
    let rect = prop_oneof![
        // The pictures' own sizes, mostly inside the frame.
        (0u32..W - 40, 0u32..H - 30, 0usize..2).prop_map(|(x, y, i)| {
            let (w, h, _) = idr_pictures()[i];
            Rect::new(x, y, w, h)
        }),
        any_rect(),
    ];
    prop_oneof![
        2 => Just(None),
        3 => (rect, any::<bool>(), data).prop_map(|(rect, idr, data)| Some(VideoUpdate { rect, idr, data })),
    ]
}

fn any_update() -> impl Strategy<Value = FrameUpdate> {
    (
        0u64..20,
        prop_oneof![
            Just((W, H)),
            (0u32..130, 0u32..90),
            (any::<u32>(), any::<u32>())
        ],
        any::<bool>(),
        prop::collection::vec(any_copy(), 0..3),
        prop::collection::vec(any_tile(), 0..6),
        any_video(),
    )
        .prop_map(
            |(seq, (width, height), key, copies, tiles, video)| FrameUpdate {
                seq,
                width,
                height,
                key,
                copies,
                tiles,
                video,
                time_us: 0,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Arbitrary updates: the decoder either applies one or rejects it untouched.
    #[test]
    fn arbitrary_updates_never_panic(updates in prop::collection::vec(any_update(), 1..8)) {
        let (mut dec, _) = keyed();
        let mut fresh = Decoder::new();
        for u in &updates {
            for d in [&mut dec, &mut fresh] {
                let before = (d.pixels().to_vec(), d.last_seq(), d.width(), d.height());
                match d.apply(u) {
                    Ok(changed) => {
                        prop_assert_eq!(d.last_seq(), Some(u.seq));
                        prop_assert!(changed.iter().all(|r| r.fits_in(d.width(), d.height())));
                    }
                    Err(_) => {
                        prop_assert!(before == (d.pixels().to_vec(), d.last_seq(), d.width(), d.height()));
                    }
                }
            }
        }
    }

    #[test]
    fn arbitrary_bytes_are_not_a_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(DisplayMessage::Frame(u)) = framing::decode_body::<DisplayMessage>(&bytes) {
            let _ = Decoder::new().apply(&u);
        }
        let mut r = framing::FrameReader::new(1 << 16);
        r.push(&bytes);
        while let Ok(Some(DisplayMessage::Frame(u))) = r.next::<DisplayMessage>() {
            let _ = Decoder::new().apply(&u);
        }
    }
}

/// Text-like W×H frame: a background and strokes in a few shades, shifted by `phase`, so the
/// encoder sends palette tiles through the update stream.
fn text(phase: u32) -> Vec<u8> {
    let mut px = Vec::with_capacity((W * H * 4) as usize);
    for y in 0..H {
        for x in 0..W {
            let ink = (x + phase) % 7 < 2 && (y + phase) % 9 < 6;
            let c: u32 = if ink {
                0x00202020 * ((x + y + phase) % 5)
            } else {
                0x00f0f0f0
            };
            px.extend_from_slice(&c.to_le_bytes());
        }
    }
    px
}

#[test]
fn a_decoder_that_missed_a_stream_update_says_so_until_the_next_key_frame() {
    let all = [Rect::new(0, 0, W, H)];
    let mut enc = Encoder::new(W, H);
    let mut dec = Decoder::new();
    dec.apply(&enc.encode_full(1, &text(0)).unwrap()).unwrap();
    let streamed = |u: &FrameUpdate| {
        u.tiles.iter().any(|t| {
            matches!(
                t.data,
                TileData::StreamPalette { .. }
                    | TileData::StreamPixels { .. }
                    | TileData::StreamXor { .. }
            )
        })
    };
    let lost = enc.encode(2, &text(1), &all).unwrap();
    assert!(streamed(&lost), "{lost:?}");
    // Update 2 never arrives (a relay that dropped it, say): update 3 builds on a stream state
    // the decoder does not have.
    let next = enc.encode(3, &text(2), &all).unwrap();
    rejects(&mut dec, &next, |e| {
        matches!(
            e,
            DecodeError::StreamOutOfStep {
                expected: 1,
                got: 2,
                ..
            }
        )
    });
    // Once out of step, every stream tile is refused, even the one that would have fit.
    rejects(&mut dec, &lost, |e| {
        matches!(e, DecodeError::StreamBroken { .. })
    });
    // A key frame starts both sides over.
    enc.reset();
    let key = enc.encode(4, &text(3), &all).unwrap();
    assert!(key.key && streamed(&key));
    dec.apply(&key).unwrap();
    let u = enc.encode(5, &text(4), &all).unwrap();
    assert!(streamed(&u));
    dec.apply(&u).unwrap();
    assert_eq!(dec.pixels(), &text(4)[..]);
}

#[test]
fn corrupt_or_mis_sized_stream_tiles_are_errors() {
    let all = [Rect::new(0, 0, W, H)];
    let mut enc = Encoder::new(W, H);
    let key = enc.encode_full(1, &text(0)).unwrap();
    let mut dec = Decoder::new();
    dec.apply(&key).unwrap();
    let good = enc.encode(2, &text(1), &all).unwrap();
    let mut bad = good.clone();
    let tile = bad
        .tiles
        .iter_mut()
        .find(|t| matches!(t.data, TileData::StreamPalette { .. }))
        .expect("a stream palette tile");
    // Wrong size: the tile claims one row fewer than its blocks hold.
    tile.rect.h -= 1;
    rejects(&mut dec, &bad, |e| {
        matches!(e, DecodeError::WrongSize { .. })
    });

    let mut dec = Decoder::new();
    dec.apply(&key).unwrap();
    let mut bad = good.clone();
    for t in &mut bad.tiles {
        if let TileData::StreamPalette { indices, .. } = &mut t.data {
            let n = indices.len();
            indices.truncate(n / 2);
        }
    }
    rejects(&mut dec, &bad, |e| {
        matches!(
            e,
            DecodeError::WrongSize { .. } | DecodeError::Corrupt { .. }
        )
    });

    // A palette that would pass 256 colours, and indices past the palette.
    let mut dec = Decoder::new();
    dec.apply(&key).unwrap();
    let mut bad = good.clone();
    for t in &mut bad.tiles {
        if let TileData::StreamPalette { added, .. } = &mut t.data {
            *added = vec![1; 4 * 256];
        }
    }
    rejects(&mut dec, &bad, |e| {
        matches!(e, DecodeError::BadPalette { .. })
    });
    let mut dec = Decoder::new();
    dec.apply(&key).unwrap();
    let mut bad = good;
    for t in &mut bad.tiles {
        if let TileData::StreamPalette { reset, added, .. } = &mut t.data {
            *reset = true;
            *added = vec![1; 4];
        }
    }
    rejects(&mut dec, &bad, |e| {
        matches!(e, DecodeError::PaletteIndex { .. })
    });
}
