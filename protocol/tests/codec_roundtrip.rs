//! Property: whatever sequence of frames, damage, resets and resizes the server goes through,
//! the appliance's framebuffer equals the server's after every update, and the rects the decoder
//! reports cover every pixel that changed.

use proptest::prelude::*;
use wayray_protocol::codec::{
    Decoder, Encoder, EncoderConfig, FrameUpdate, Rect, TileData, XorChoice, TILE_SIZE,
};
use wayray_protocol::{framing, DisplayMessage};

/// How a changed rect gets its new pixels.
#[derive(Debug, Clone)]
enum Paint {
    Solid(u32),
    /// Random pixels from this seed: incompressible, like video or a photo.
    Noise(u64),
    /// Horizontal bands, like text lines on a flat background.
    Stripes {
        colour: u32,
        period: u32,
    },
    /// The pixels `dy` rows below: a scroll.
    Scroll {
        dy: u32,
    },
    /// Random picks from `colours` colours made from `seed`: palette tiles with many colours,
    /// so a few of them overflow the update stream's palette and start it over.
    Palette {
        seed: u32,
        colours: u32,
    },
}

#[derive(Debug, Clone)]
struct Change {
    rect: Rect,
    paint: Paint,
}

#[derive(Debug, Clone)]
enum Step {
    /// Paint the changes; damage is their rects (unclipped: the encoder clips) plus `extra`.
    Draw {
        changes: Vec<Change>,
        extra: Vec<Rect>,
    },
    /// Damage without change: every tile must be skipped.
    Idle {
        damage: Vec<Rect>,
    },
    /// A new appliance attached: the next frame is a key frame, whatever changed before it.
    Reset {
        changes: Vec<Change>,
    },
    Resize {
        w: u32,
        h: u32,
        seed: u64,
    },
}

fn rect() -> impl Strategy<Value = Rect> {
    // Up to 260 so rects regularly hang over the 200×150 frames' edges.
    (0u32..260, 0u32..200, 0u32..140, 0u32..100).prop_map(|(x, y, w, h)| Rect::new(x, y, w, h))
}

fn paint() -> impl Strategy<Value = Paint> {
    prop_oneof![
        any::<u32>().prop_map(Paint::Solid),
        any::<u64>().prop_map(Paint::Noise),
        (any::<u32>(), 1u32..20).prop_map(|(colour, period)| Paint::Stripes { colour, period }),
        (1u32..70).prop_map(|dy| Paint::Scroll { dy }),
        (any::<u32>(), 1u32..=200).prop_map(|(seed, colours)| Paint::Palette { seed, colours }),
    ]
}

fn changes() -> impl Strategy<Value = Vec<Change>> {
    prop::collection::vec(
        (rect(), paint()).prop_map(|(rect, paint)| Change { rect, paint }),
        0..5,
    )
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (changes(), prop::collection::vec(rect(), 0..3))
            .prop_map(|(changes, extra)| Step::Draw { changes, extra }),
        1 => prop::collection::vec(rect(), 0..3).prop_map(|damage| Step::Idle { damage }),
        1 => changes().prop_map(|changes| Step::Reset { changes }),
        1 => (1u32..=200, 1u32..=150, any::<u64>()).prop_map(|(w, h, seed)| Step::Resize { w, h, seed }),
    ]
}

fn config() -> impl Strategy<Value = EncoderConfig> {
    let choice = prop_oneof![
        Just(XorChoice::Heuristic),
        Just(XorChoice::Smaller),
        Just(XorChoice::Raw),
        Just(XorChoice::Xor),
    ];
    // Video off: this property is exactness after every frame; tests/video.rs covers video.
    prop_oneof![
        Just(EncoderConfig {
            video: false,
            ..EncoderConfig::default()
        }),
        (
            choice,
            1u32..6,
            prop_oneof![Just(-5), Just(1), Just(3)],
            0u8..=100,
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(
                |(xor_choice, block, level, photo_below_pct, scroll, merge_rows, stream)| {
                    EncoderConfig {
                        level,
                        photo_level: -10,
                        photo_below_pct,
                        xor_choice,
                        block,
                        scroll,
                        merge_rows,
                        video: false,
                        stream,
                    }
                }
            ),
    ]
}

/// Test frame: pixels plus size, painted deterministically.
struct Frame {
    w: u32,
    h: u32,
    px: Vec<u8>,
}

impl Frame {
    fn new(w: u32, h: u32, seed: u64) -> Frame {
        let mut f = Frame {
            w,
            h,
            px: vec![0; (w * h * 4) as usize],
        };
        // Half flat panels, half noise, so key frames mix Solid and zstd tiles.
        f.paint(&Rect::new(0, 0, w, h), &Paint::Solid(0x00336699));
        f.paint(&Rect::new(0, 0, w / 2, h), &Paint::Noise(seed));
        f
    }

    fn paint(&mut self, rect: &Rect, paint: &Paint) -> Option<Rect> {
        let r = rect.clip(self.w, self.h)?;
        let mut rng = match paint {
            Paint::Noise(seed) => *seed | 1,
            Paint::Palette { seed, .. } => u64::from(*seed) << 1 | 1,
            _ => 1,
        };
        for y in r.y..r.y + r.h {
            for x in r.x..r.x + r.w {
                let i = ((y * self.w + x) * 4) as usize;
                let v = match *paint {
                    Paint::Solid(c) => c,
                    Paint::Noise(_) => {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        rng as u32
                    }
                    Paint::Palette { seed, colours } => {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        let pick = (rng % u64::from(colours)) as u32;
                        seed.wrapping_add(pick.wrapping_mul(0x9E37_79B9))
                    }
                    Paint::Stripes { colour, period } => {
                        if (y / period) % 2 == 0 {
                            colour
                        } else {
                            !colour
                        }
                    }
                    Paint::Scroll { dy } => {
                        let sy = (y + dy).min(self.h - 1);
                        let j = ((sy * self.w + x) * 4) as usize;
                        u32::from_le_bytes([
                            self.px[j],
                            self.px[j + 1],
                            self.px[j + 2],
                            self.px[j + 3],
                        ])
                    }
                };
                self.px[i..i + 4].copy_from_slice(&v.to_le_bytes());
            }
        }
        Some(r)
    }
}

/// Sends the update over the wire format, as the server and appliance do.
fn over_the_wire(update: &FrameUpdate) -> FrameUpdate {
    let bytes = framing::encode(&DisplayMessage::Frame(update.clone())).expect("serializes");
    match framing::decode_body::<DisplayMessage>(&bytes[framing::HEADER_LEN..]) {
        Ok(DisplayMessage::Frame(u)) => u,
        other => panic!("wire round trip failed: {other:?}"),
    }
}

fn contains(r: &Rect, x: u32, y: u32) -> bool {
    x >= r.x && y >= r.y && x - r.x < r.w && y - r.y < r.h
}

fn run(w: u32, h: u32, seed: u64, config: EncoderConfig, steps: Vec<Step>) {
    let mut frame = Frame::new(w, h, seed);
    let mut enc = Encoder::with_config(w, h, config);
    let mut dec = Decoder::new();
    let mut expect_key = true;
    let mut seq = 0;

    for (n, step) in std::iter::once(Step::Idle { damage: vec![] })
        .chain(steps)
        .enumerate()
    {
        let mut damage = Vec::new();
        match &step {
            Step::Draw { changes, extra } => {
                for c in changes {
                    frame.paint(&c.rect, &c.paint);
                    damage.push(c.rect);
                }
                damage.extend(extra);
            }
            Step::Idle { damage: d } => damage.extend(d),
            Step::Reset { changes } => {
                for c in changes {
                    frame.paint(&c.rect, &c.paint);
                }
                enc.reset();
                expect_key = true;
            }
            Step::Resize { w, h, seed } => {
                frame = Frame::new(*w, *h, *seed);
                enc.resize(*w, *h);
                expect_key = true;
            }
        }

        seq += 1 + n as u64 % 3;
        let update = enc
            .encode(seq, &frame.px, &damage)
            .expect("valid frame encodes");
        assert_eq!(update.key, expect_key, "step {n}: {step:?}");
        assert_eq!((update.width, update.height), (frame.w, frame.h));
        if update.key {
            assert!(update
                .tiles
                .iter()
                .all(|t| !matches!(t.data, TileData::ZstdXor(_) | TileData::StreamXor { .. })));
        }
        if matches!(step, Step::Idle { .. }) && !expect_key {
            assert!(update.tiles.is_empty(), "unchanged tiles were sent");
        }
        let block = TILE_SIZE * config.block.max(1);
        for t in &update.tiles {
            // Tiles start on the grid and stay inside one block (one row of blocks when
            // neighbours merge).
            let r = t.rect;
            assert_eq!((r.x % TILE_SIZE, r.y % TILE_SIZE), (0, 0), "{r:?}");
            if !config.merge_rows {
                assert_eq!(r.x / block, (r.x + r.w - 1) / block, "{r:?}");
            }
            assert_eq!(r.y / block, (r.y + r.h - 1) / block, "{r:?}");
        }
        expect_key = false;

        let before = dec.pixels().to_vec();
        let changed = dec
            .apply(&over_the_wire(&update))
            .expect("own update decodes");
        assert_eq!(dec.last_seq(), Some(seq));
        assert_eq!((dec.width(), dec.height()), (frame.w, frame.h));
        assert!(
            dec.pixels() == frame.px,
            "step {n}: framebuffer differs after {step:?}"
        );
        if before.len() == frame.px.len() {
            for (i, (a, b)) in before
                .chunks_exact(4)
                .zip(frame.px.chunks_exact(4))
                .enumerate()
            {
                if a != b {
                    let (x, y) = (i as u32 % frame.w, i as u32 / frame.w);
                    assert!(
                        changed.iter().any(|r| contains(r, x, y)),
                        "step {n}: pixel ({x},{y}) changed outside the reported rects"
                    );
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn decoder_tracks_encoder_input(
        w in 1u32..=200,
        h in 1u32..=150,
        seed in any::<u64>(),
        config in config(),
        steps in prop::collection::vec(step(), 1..10),
    ) {
        run(w, h, seed, config, steps);
    }
}

/// Sizes at and around tile boundaries, where off-by-one errors live.
#[test]
fn tile_boundary_sizes_round_trip() {
    for (w, h) in [
        (1, 1),
        (63, 65),
        (64, 64),
        (65, 63),
        (128, 1),
        (1, 129),
        (257, 70),
    ] {
        let steps = vec![
            Step::Draw {
                changes: vec![Change {
                    rect: Rect::new(w - 1, h - 1, 1, 1),
                    paint: Paint::Solid(0xdeadbeef),
                }],
                extra: vec![],
            },
            Step::Draw {
                changes: vec![Change {
                    rect: Rect::new(0, 0, w, h),
                    paint: Paint::Scroll { dy: 1 },
                }],
                extra: vec![],
            },
        ];
        run(
            w,
            h,
            u64::from(w * 1000 + h),
            EncoderConfig::default(),
            steps,
        );
    }
}
