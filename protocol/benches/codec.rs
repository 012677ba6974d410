//! Frame codec throughput against two baselines: copying the damaged pixels (the least any
//! transport must do) and zstd level 1 over the raw frame (what tiling has to beat).
//!
//! Run with `cargo bench -p wayray-protocol --bench codec` (or `scripts/bench`). Captured frames
//! come from `benches/fixtures/{desktop,terminal}-{W}x{H}-{a,b}.png` (made by
//! `scripts/capture-desktop`); `WAYRAY_BENCH_FIXTURES=DIR` reads them from elsewhere.
//! `WAYRAY_BENCH_TUNE=1` adds the table of encoder settings used to pick the encoder defaults;
//! `WAYRAY_BENCH_PROFILE=N` encodes each workload N more times untimed (for `perf record`);
//! `WAYRAY_BENCH_ONLY=TEXT` keeps the workloads whose "{W}x{H} {name}" contains TEXT. The v1
//! table runs with video regions off (it measures the
//! lossless codec); the "video-like" table compares a synthetic video with them on and off.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wayray_protocol::codec::{Decoder, Encoder, EncoderConfig, FrameUpdate, Rect, XorChoice};
use wayray_protocol::{framing, DisplayMessage};

/// Timed frames per measurement; the median is reported, so a few scheduler hiccups on a shared
/// machine do not move the result.
const FRAMES: usize = 31;
const SIZES: [(u32, u32); 2] = [(1280, 800), (1920, 1080)];
const GLYPH: Rect = Rect::new(301, 207, 10, 18);

/// The defaults without video regions: what the lossless workloads measure.
const LOSSLESS: EncoderConfig = EncoderConfig {
    video: false,
    level: 1,
    photo_level: -10,
    photo_below_pct: 50,
    xor_choice: XorChoice::Heuristic,
    block: 4,
    scroll: true,
    merge_rows: true,
    stream: true,
};

struct Workload {
    name: &'static str,
    /// Frames encoded in turn after an untimed key frame of `frames[0]`.
    frames: Vec<Vec<u8>>,
    damage: Rect,
    /// Damage of each frame instead of `damage` (same length as `frames`).
    damages: Option<Vec<Rect>>,
}

#[derive(Clone)]
struct Measured {
    /// Mean wire bytes per timed frame.
    bytes_mean: usize,
    enc: Duration,
    /// Fastest frame: less disturbed by other processes than the median, for comparing settings.
    enc_min: Duration,
    dec: Duration,
    bytes: usize,
    memcpy: Duration,
    zstd_raw: Duration,
    zstd_raw_bytes: usize,
}

fn main() {
    let dir = std::env::var_os("WAYRAY_BENCH_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/fixtures"));
    let tune = std::env::var_os("WAYRAY_BENCH_TUNE").is_some();
    let only = std::env::var("WAYRAY_BENCH_ONLY").unwrap_or_default();
    let mut rows = Vec::new();
    let mut tuning = Vec::new();
    let mut streams = Vec::new();

    for (w, h) in SIZES {
        let desktop = load_pair(&dir, "desktop", w, h);
        let glyph_name = if desktop.is_some() {
            "glyph 10×18 on desktop A"
        } else {
            "glyph 10×18 on synthetic desktop"
        };
        let base = match &desktop {
            Some((a, _)) => a.clone(),
            None => synthetic_desktop(w, h),
        };
        let mut workloads = Vec::new();
        if let Some((a, b)) = desktop {
            // Every tile with detail changes when the whole screen scrolls, unlike A⇄B where
            // windows that stay put are skipped.
            let scrolled = scroll(&a, w, 3);
            workloads.push(Workload {
                name: "desktop A⇄B, full damage",
                frames: vec![a.clone(), b],
                damage: Rect::new(0, 0, w, h),
                damages: None,
            });
            workloads.push(Workload {
                name: "desktop A scrolled 3 px, full damage",
                frames: vec![a, scrolled],
                damage: Rect::new(0, 0, w, h),
                damages: None,
            });
        }
        // A full-screen foot window of dense text replaced by another page: what each frame of
        // `foot` scrolling faster than a screen per frame looks like.
        if let Some((a, b)) = load_pair(&dir, "terminal", w, h) {
            workloads.extend(terminal_sequences(&a, &b, w, h));
            workloads.push(Workload {
                name: "terminal page A⇄B, full damage",
                frames: vec![a, b],
                damage: Rect::new(0, 0, w, h),
                damages: None,
            });
        }
        let with_glyph = draw_glyph(&base, w, GLYPH);
        workloads.push(Workload {
            name: glyph_name,
            frames: vec![base, with_glyph],
            damage: GLYPH,
            damages: None,
        });
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        workloads.push(Workload {
            name: "noise, full damage",
            frames: (0..4).map(|_| noise(&mut rng, w, h)).collect(),
            damage: Rect::new(0, 0, w, h),
            damages: None,
        });

        workloads.retain(|wl| format!("{w}x{h} {}", wl.name).contains(&only));
        for wl in &workloads {
            let m = measure(wl, w, h, LOSSLESS);
            let off = measure(
                wl,
                w,
                h,
                EncoderConfig {
                    stream: false,
                    ..LOSSLESS
                },
            );
            streams.push((w, h, wl.name, off, m.clone()));
            rows.push((w, h, wl.name, wl.damage.area() as usize * 4, m));
        }
        for wl in workloads
            .iter()
            .filter(|wl| tune && !wl.name.contains("glyph") && !wl.name.contains("noise"))
        {
            for config in tuning_configs() {
                let m = measure(wl, w, h, config);
                tuning.push((w, h, wl.name, config, m));
            }
        }
    }

    println!("\n## Frame codec v1 (one core, median of {FRAMES} frames)\n");
    println!(
        "| size | workload | enc MB/s | enc fps | dec MB/s | dec fps | bytes/frame | memcpy MB/s \
         | zstd-1 raw MB/s | zstd-1 raw bytes | enc time / memcpy | enc bytes / zstd-1 | enc speed / zstd-1 |"
    );
    println!("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for (w, h, name, damaged, m) in &rows {
        let frame = *w as usize * *h as usize * 4;
        println!(
            "| {w}×{h} | {name} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {:.0} | {:.0} | {} | {:.1}× | {:.3} | {:.2}× |",
            mbps(*damaged, m.enc),
            fps(m.enc),
            mbps(*damaged, m.dec),
            fps(m.dec),
            m.bytes,
            mbps(*damaged, m.memcpy),
            mbps(frame, m.zstd_raw),
            m.zstd_raw_bytes,
            m.enc.as_secs_f64() / m.memcpy.as_secs_f64(),
            m.bytes as f64 / m.zstd_raw_bytes as f64,
            m.zstd_raw.as_secs_f64() / m.enc.as_secs_f64(),
        );
    }
    println!(
        "\nMB/s counts damaged pixels (zstd-1 raw: the whole frame); enc speed / zstd-1 is zstd \
         time per frame over encoder time per frame."
    );

    println!("\n## Update stream off → on (same run, medians of {FRAMES} frames; stream off is the codec before it)\n");
    println!(
        "| size | workload | enc ms off | enc ms on | enc on/off | dec ms off | dec ms on | dec on/off \
         | bytes/frame off | bytes/frame on | bytes on/off |"
    );
    println!("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for (w, h, name, off, on) in &streams {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "| {w}×{h} | {name} | {:.3} | {:.3} | {:.2} | {:.3} | {:.3} | {:.2} | {} | {} | {:.2} |",
            ms(off.enc),
            ms(on.enc),
            on.enc.as_secs_f64() / off.enc.as_secs_f64(),
            ms(off.dec),
            ms(on.dec),
            on.dec.as_secs_f64() / off.dec.as_secs_f64(),
            off.bytes_mean,
            on.bytes_mean,
            on.bytes_mean as f64 / off.bytes_mean as f64,
        );
    }
    println!(
        "\nbytes/frame: mean over the timed frames (wire bytes). A⇄B alternates two frames, which \
         the stream's window holds: its gain there is an upper bound, not a terminal's."
    );

    if "video-like".contains(&only) || only.contains("video") {
        video_table();
    }

    if tune {
        println!("\n## Tuning: encoder settings on the desktop workloads\n");
        println!(
            "| size | workload | level | photo level | photo below % | xor choice | block (cells) | enc fps \
             | enc fps (best frame) | dec fps | bytes/frame |"
        );
        println!("|---|---|--:|--:|--:|---|--:|--:|--:|--:|--:|");
        for (w, h, name, c, m) in &tuning {
            println!(
                "| {w}×{h} | {name} | {} | {} | {} | {:?} | {} | {:.0} | {:.0} | {:.0} | {} |",
                c.level,
                c.photo_level,
                c.photo_below_pct,
                c.xor_choice,
                c.block,
                fps(m.enc),
                fps(m.enc_min),
                fps(m.dec),
                m.bytes
            );
        }
    }
}

/// The default, then one setting changed at a time, then the levels with the fastest choices.
fn tuning_configs() -> Vec<EncoderConfig> {
    let d = LOSSLESS;
    let mut v = vec![d];
    for xor_choice in [XorChoice::Smaller, XorChoice::Raw, XorChoice::Xor] {
        v.push(EncoderConfig { xor_choice, ..d });
    }
    for block in [1, 2, 8, 16] {
        v.push(EncoderConfig { block, ..d });
    }
    for level in [3, 1, -1, -3] {
        if level != d.level {
            v.push(EncoderConfig { level, ..d });
        }
    }
    for photo_level in [1, -3, -5, -20] {
        v.push(EncoderConfig { photo_level, ..d });
    }
    for photo_below_pct in [0, 25, 75] {
        v.push(EncoderConfig {
            photo_below_pct,
            ..d
        });
    }
    v
}

fn measure(wl: &Workload, w: u32, h: u32, config: EncoderConfig) -> Measured {
    let mut enc = Encoder::with_config(w, h, config);
    let mut dec = Decoder::new();
    let key = enc
        .encode_full(0, &wl.frames[0])
        .expect("key frame encodes");
    dec.apply(&key).expect("key frame decodes");
    let mut enc_times = Vec::with_capacity(FRAMES);
    let mut dec_times = Vec::with_capacity(FRAMES);
    let mut sizes = Vec::with_capacity(FRAMES);
    // Each update is decoded and dropped before the next, as in the real pipeline, so the
    // allocator recycles memory instead of faulting in fresh pages inside the timed encode.
    for i in 1..=FRAMES {
        let frame = &wl.frames[i % wl.frames.len()];
        let t = Instant::now();
        let damage = wl.damages.as_ref().map_or(wl.damage, |d| d[i % d.len()]);
        let u = enc
            .encode(i as u64, frame, &[damage])
            .expect("frame encodes");
        enc_times.push(t.elapsed());
        let t = Instant::now();
        black_box(dec.apply(&u).expect("frame decodes"));
        dec_times.push(t.elapsed());
        // Untimed: the bench doubles as an end-to-end check on real content.
        assert!(dec.pixels() == frame.as_slice(), "decoder diverged");
        sizes.push(wire_len(&u));
    }

    // For `perf record`: WAYRAY_BENCH_PROFILE=N encodes the frames N more times, untimed, so
    // the encoder dominates the profile.
    let extra: usize = std::env::var("WAYRAY_BENCH_PROFILE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    for i in FRAMES + 1..=FRAMES + extra * FRAMES {
        let frame = &wl.frames[i % wl.frames.len()];
        let damage = wl.damages.as_ref().map_or(wl.damage, |d| d[i % d.len()]);
        black_box(
            enc.encode(i as u64, frame, &[damage])
                .expect("frame encodes"),
        );
    }

    let stride = w as usize * 4;
    let mut dst = vec![0u8; wl.frames[0].len()];
    let memcpy_times: Vec<Duration> = (0..FRAMES)
        .map(|i| {
            let src = &wl.frames[i % wl.frames.len()];
            let r = wl.damage;
            let t = Instant::now();
            for y in r.y as usize..(r.y + r.h) as usize {
                let s = y * stride + r.x as usize * 4;
                let e = s + r.w as usize * 4;
                dst[s..e].copy_from_slice(&src[s..e]);
            }
            black_box(&mut dst);
            t.elapsed()
        })
        .collect();

    let mut zstd_bytes = Vec::new();
    let zstd_times: Vec<Duration> = (0..FRAMES.min(11))
        .map(|i| {
            let src = &wl.frames[i % wl.frames.len()];
            let t = Instant::now();
            let c = zstd::bulk::compress(src, 1).expect("zstd compresses");
            let el = t.elapsed();
            zstd_bytes.push(c.len());
            el
        })
        .collect();

    Measured {
        bytes_mean: sizes.iter().sum::<usize>() / sizes.len().max(1),
        enc_min: enc_times.iter().copied().min().unwrap_or_default(),
        enc: median(enc_times),
        dec: median(dec_times),
        bytes: median_of(&mut sizes),
        memcpy: median(memcpy_times),
        zstd_raw: median(zstd_times),
        zstd_raw_bytes: median_of(&mut zstd_bytes),
    }
}

/// Frames of the video-like sequence; the first few are lossless either way (key frame, then
/// the classifier's warm-up), so a longer run shows the steady state.
const VIDEO_FRAMES: u32 = 60;

/// A synthetic video (the one `tests/video.rs` checks PSNR on): a colour gradient panning by
/// (−4, −2) px per frame with ±2 levels of per-frame grain, under three 64×64 blocks of grey
/// noise moving at their own speeds. Video regions on vs off.
fn video_table() {
    println!("\n## Video-like sequence ({VIDEO_FRAMES} frames, full damage, one core)\n");
    println!(
        "| size | video | bytes/frame (all) | bytes/frame (median) | enc fps (median) \
         | enc ms (median) | dec fps (median) | min PSNR dB |"
    );
    println!("|---|---|--:|--:|--:|--:|--:|--:|");
    for (w, h) in [(640, 360), (1280, 720)] {
        let frames: Vec<Vec<u8>> = (0..VIDEO_FRAMES).map(|t| video_frame(w, h, t)).collect();
        for video in [false, true] {
            let mut enc = Encoder::with_config(w, h, EncoderConfig { video, ..LOSSLESS });
            let mut dec = Decoder::new();
            let (mut enc_times, mut dec_times, mut sizes) = (Vec::new(), Vec::new(), Vec::new());
            let mut min_psnr = f64::INFINITY;
            for (i, frame) in frames.iter().enumerate() {
                let t = Instant::now();
                let u = enc
                    .encode(i as u64 + 1, frame, &[Rect::new(0, 0, w, h)])
                    .expect("frame encodes");
                enc_times.push(t.elapsed());
                let t = Instant::now();
                black_box(dec.apply(&u).expect("frame decodes"));
                dec_times.push(t.elapsed());
                assert!(dec.pixels() == enc.reference(), "decoder diverged");
                min_psnr = min_psnr.min(psnr(frame, dec.pixels()));
                sizes.push(wire_len(&u));
            }
            let total: usize = sizes.iter().sum();
            let enc_median = median(enc_times);
            println!(
                "| {w}×{h} | {} | {} | {} | {:.0} | {:.1} | {:.0} | {:.1} |",
                if video { "on" } else { "off" },
                total / frames.len(),
                median_of(&mut sizes),
                fps(enc_median),
                enc_median.as_secs_f64() * 1e3,
                fps(median(dec_times)),
                min_psnr,
            );
        }
    }
}

fn video_frame(w: u32, h: u32, t: u32) -> Vec<u8> {
    let tri = |v: u32| {
        let v = v % 512;
        if v < 256 {
            v
        } else {
            511 - v
        }
    };
    let mut grain_rng = u64::from(t) << 32 | 0x5eed;
    let mut px = Vec::with_capacity(w as usize * h as usize * 4);
    for y in 0..h {
        for x in 0..w {
            let g = (next(&mut grain_rng) % 5) as i32 - 2;
            let c = |v: u32| (v as i32 + g).clamp(0, 255) as u8;
            px.extend_from_slice(&[
                c(tri((x + y) / 2 + 3 * t)),
                c(tri(y + 2 * t)),
                c(tri(x + 4 * t)),
                0xff,
            ]);
        }
    }
    for (k, (sx, sy)) in [(5u32, 3u32), (3, 7), (7, 2)].into_iter().enumerate() {
        let mut rng = 0x1234_5678 + k as u64;
        let bx = (17 * k as u32 + sx * t) % (w - 64);
        let by = (29 * k as u32 + sy * t) % (h - 64);
        for row in 0..64 {
            for col in 0..64 {
                let v = next(&mut rng) as u8;
                let i = (((by + row) * w + bx + col) * 4) as usize;
                px[i..i + 4].copy_from_slice(&[v, v, v, 0xff]);
            }
        }
    }
    px
}

/// PSNR of the RGB channels, in dB (infinite when equal).
fn psnr(want: &[u8], got: &[u8]) -> f64 {
    let mut sum = 0u64;
    for (a, b) in want.chunks_exact(4).zip(got.chunks_exact(4)) {
        for ch in 0..3 {
            let d = i64::from(a[ch]) - i64::from(b[ch]);
            sum += (d * d) as u64;
        }
    }
    if sum == 0 {
        return f64::INFINITY;
    }
    let mse = sum as f64 / (want.len() / 4 * 3) as f64;
    10.0 * (255.0f64 * 255.0 / mse).log10()
}

fn wire_len(u: &FrameUpdate) -> usize {
    framing::encode(&DisplayMessage::Frame(u.clone()))
        .expect("update serializes")
        .len()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn median_of(v: &mut [usize]) -> usize {
    v.sort();
    v[v.len() / 2]
}

fn mbps(bytes: usize, t: Duration) -> f64 {
    bytes as f64 / t.as_secs_f64() / 1e6
}

fn fps(t: Duration) -> f64 {
    1.0 / t.as_secs_f64()
}

/// Frames A and B of fixture `{kind}-{W}x{H}-{a,b}.png` as XRGB8888, or `None` (after saying
/// which file is missing).
fn load_pair(dir: &Path, kind: &str, w: u32, h: u32) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut frames = Vec::new();
    for which in ["a", "b"] {
        let path = dir.join(format!("{kind}-{w}x{h}-{which}.png"));
        if !path.exists() {
            println!(
                "missing fixture {}: skipping the {kind} A⇄B workload at {w}×{h}",
                path.display()
            );
            return None;
        }
        match load_png(&path, w, h) {
            Ok(px) => frames.push(px),
            Err(e) => panic!("cannot use fixture {}: {e}", path.display()),
        }
    }
    let b = frames.pop()?;
    let a = frames.pop()?;
    Some((a, b))
}

/// Decodes an 8-bit RGB(A) or grey PNG into XRGB8888 little-endian (B, G, R, X bytes).
fn load_png(path: &Path, w: u32, h: u32) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut decoder = png::Decoder::new(file);
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().map_err(|e| e.to_string())?;
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).map_err(|e| e.to_string())?;
    if (info.width, info.height) != (w, h) {
        return Err(format!(
            "is {}x{}, expected {w}x{h}",
            info.width, info.height
        ));
    }
    let channels = match info.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => return Err(format!("unsupported colour type {other:?}")),
    };
    let mut out = Vec::with_capacity(w as usize * h as usize * 4);
    for row in buf[..info.buffer_size()].chunks_exact(info.line_size) {
        for px in row[..w as usize * channels].chunks_exact(channels) {
            let (r, g, b) = if channels < 3 {
                (px[0], px[0], px[0])
            } else {
                (px[0], px[1], px[2])
            };
            out.extend_from_slice(&[b, g, r, 0xff]);
        }
    }
    Ok(out)
}

/// Stand-in for a capture when fixtures are missing: flat panels with text-like strokes.
fn synthetic_desktop(w: u32, h: u32) -> Vec<u8> {
    let mut px = vec![0u8; w as usize * h as usize * 4];
    let mut rng = 42u64;
    for y in 0..h {
        for x in 0..w {
            let panel = (x / 400 + y / 300) % 3;
            let bg: [u8; 4] = [
                [0xe3, 0xf6, 0xfd, 0xff],
                [0x36, 0x2a, 0x28, 0xff],
                [0x52, 0x42, 0x3b, 0xff],
            ][panel as usize];
            let line = y % 16;
            let ink = line > 3
                && line < 14
                && (x / 7 + y / 16) % 11 != 0
                && next(&mut rng) < u64::MAX / 3;
            let i = (y as usize * w as usize + x as usize) * 4;
            px[i..i + 4].copy_from_slice(if ink { &[0x20, 0x20, 0x20, 0xff] } else { &bg });
        }
    }
    px
}

/// `frame` moved up by `dy` rows, the bottom rows repeated: a full-screen scroll.
fn scroll(frame: &[u8], w: u32, dy: usize) -> Vec<u8> {
    let stride = w as usize * 4;
    let mut px = frame[dy * stride..].to_vec();
    px.extend_from_slice(&frame[frame.len() - dy * stride..]);
    px
}

/// Terminal sequences made of the fixture's own glyphs (cells of 7×14 pixels from (2, 26) in
/// the 1280×800 capture, made grey): text is words of a small vocabulary, as in `scripts/bench-vs-waypipe`'s
/// file, laid out in 55 lines of up to 180 cells on page A's background. Typing: one glyph per
/// frame. Scroll: the text moves up 3 lines a frame. Redraw: a new page of new lines each frame.
fn terminal_sequences(a: &[u8], b: &[u8], w: u32, h: u32) -> Vec<Workload> {
    const CW: u32 = 7;
    const CH: u32 = 14;
    const X0: u32 = 2;
    const Y0: u32 = 26;
    if (w, h) != (1280, 800) {
        return Vec::new();
    }
    let (cols, lines) = ((w - X0) / CW, (h - Y0) / CH);
    let stride = w as usize * 4;
    // Glyph cells of both pages (their text columns), as rows of 7 pixels.
    let mut cells: Vec<Vec<u8>> = Vec::new();
    for page in [a, b] {
        for l in 0..lines {
            for c in 0..cols {
                let mut cell = Vec::with_capacity((CW * CH * 4) as usize);
                for y in 0..CH {
                    let i = ((Y0 + l * CH + y) as usize) * stride + ((X0 + c * CW) as usize) * 4;
                    // Grey, as foot draws with greyscale anti-aliasing (the capture's text has
                    // coloured fringes: over 256 colours per tile, no palette).
                    for px in page[i..i + CW as usize * 4].chunks_exact(4) {
                        let v = ((u32::from(px[0]) + 6 * u32::from(px[1]) + 3 * u32::from(px[2]))
                            / 10) as u8;
                        cell.extend_from_slice(&[v, v, v, 0xff]);
                    }
                }
                // Blank cells are spaces; skip the rest of the duplicates later by chance.
                if cell.chunks_exact(4).any(|p| p != &cell[..4]) {
                    cells.push(cell);
                }
            }
        }
    }
    let blank: Vec<u8> = {
        let i = (Y0 as usize) * stride + (w as usize - 8) * 4;
        let px = &a[i..i + 4];
        let v = ((u32::from(px[0]) + 6 * u32::from(px[1]) + 3 * u32::from(px[2])) / 10) as u8;
        [v, v, v, 0xff].repeat((CW * CH) as usize)
    };
    let mut rng = 0x5eed_u64;
    let vocabulary: Vec<Vec<usize>> = (0..60)
        .map(|_| {
            let n = 2 + next(&mut rng) as usize % 9;
            (0..n)
                .map(|_| next(&mut rng) as usize % cells.len())
                .collect()
        })
        .collect();
    // A text line: indent, words, blanks to the end (`None` = blank cell).
    let text_line = |rng: &mut u64| -> Vec<Option<usize>> {
        let mut line: Vec<Option<usize>> = vec![None; next(rng) as usize % 12];
        for _ in 0..3 + next(rng) % 13 {
            let word = &vocabulary[next(rng) as usize % vocabulary.len()];
            line.extend(word.iter().map(|&c| Some(c)));
            line.push(None);
        }
        line.resize(cols.min(98) as usize, None);
        line
    };
    let text: Vec<Vec<Option<usize>>> = (0..lines * 40).map(|_| text_line(&mut rng)).collect();
    let put = |px: &mut [u8], l: u32, c: u32, cell: Option<usize>| {
        let src = cell.map_or(&blank, |i| &cells[i]);
        for y in 0..CH {
            let i = ((Y0 + l * CH + y) as usize) * stride + ((X0 + c * CW) as usize) * 4;
            let n = CW as usize * 4;
            px[i..i + n].copy_from_slice(&src[y as usize * n..(y as usize + 1) * n]);
        }
    };
    let page = |first: usize| {
        let mut px = a.to_vec();
        let (x1, y1) = ((X0 + cols * CW) as usize, (Y0 + lines * CH) as usize);
        for y in Y0 as usize..y1 {
            let row = &mut px[y * stride + X0 as usize * 4..y * stride + x1 * 4];
            for (p, b) in row.chunks_exact_mut(4).zip(blank.chunks_exact(4).cycle()) {
                p.copy_from_slice(b);
            }
        }
        for l in 0..lines {
            for c in 0..cols {
                let cell = text[first + l as usize].get(c as usize).copied().flatten();
                put(&mut px, l, c, cell);
            }
        }
        px
    };
    let n = FRAMES + 1;
    // Typing on the last line of page 0, one glyph per frame.
    let mut typed = Vec::with_capacity(n);
    let mut damages = Vec::with_capacity(n);
    let mut px = page(0);
    let line = &text[lines as usize * 3];
    for k in 0..n {
        if k > 0 {
            let c = (k - 1) as u32;
            put(&mut px, lines - 1, c, line[k - 1].or(Some(k)));
            damages.push(Rect::new(X0 + c * CW, Y0 + (lines - 1) * CH, CW, CH));
        } else {
            damages.push(Rect::new(0, 0, 1, 1));
        }
        typed.push(px.clone());
    }
    let full = Rect::new(0, 0, w, h);
    vec![
        Workload {
            name: "terminal typing (fixture glyphs)",
            frames: typed,
            damage: full,
            damages: Some(damages),
        },
        Workload {
            name: "terminal scroll 3 lines/frame (fixture glyphs)",
            frames: (0..n).map(|k| page(3 * k)).collect(),
            damage: full,
            damages: None,
        },
        Workload {
            name: "terminal redraw, new page/frame (fixture glyphs)",
            frames: (0..n).map(|k| page(lines as usize * (k + 1))).collect(),
            damage: full,
            damages: None,
        },
    ]
}

fn draw_glyph(base: &[u8], w: u32, r: Rect) -> Vec<u8> {
    let mut px = base.to_vec();
    for y in r.y..r.y + r.h {
        for x in r.x..r.x + r.w {
            let i = (y as usize * w as usize + x as usize) * 4;
            if (x + y) % 3 != 0 {
                px[i..i + 3].iter_mut().for_each(|c| *c = !*c);
            }
        }
    }
    px
}

fn noise(rng: &mut u64, w: u32, h: u32) -> Vec<u8> {
    let len = w as usize * h as usize * 4;
    let mut px = Vec::with_capacity(len + 8);
    while px.len() < len {
        px.extend_from_slice(&next(rng).to_le_bytes());
    }
    px.truncate(len);
    px
}

/// xorshift64*: enough randomness for incompressible test pixels.
fn next(s: &mut u64) -> u64 {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    s.wrapping_mul(0x2545_f491_4f6c_dd1d)
}
