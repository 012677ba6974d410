//! The session output's scale follows the appliance monitor's pixel density: a headless
//! appliance pretending a 27" 4K monitor (3840×2160 pixels, 597×336 mm) gets a scale-1.5 session
//! (a 2560×1440 logical desktop), clients hear it (wl_output, xdg-output), windows and their title
//! bars are drawn 1.5 times larger in the appliance's pixels, pointer positions in the
//! appliance's pixels land on the right logical spot, and the server's `--scale` overrides it.

mod support;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use support::*;

const UHD: &str = "3840x2160";
/// A 27" 16:9 monitor.
const MM_27: &str = "597x336";

fn probe() -> PathBuf {
    let path = wrsrvd().with_file_name("examples").join("input_probe");
    assert!(
        path.exists(),
        "{} not built: run `cargo build -p wayray-server --examples` (scripts/test does)",
        path.display()
    );
    path
}

/// What `wayland-info` says of the output.
#[derive(Debug, Default, PartialEq)]
struct OutputInfo {
    scale: u32,
    physical_mm: (u32, u32),
    mode: (u32, u32),
    logical: (u32, u32),
}

fn output_info(server: &Server) -> OutputInfo {
    let out = server
        .wayland_client("wayland-info")
        .output()
        .expect("wayland-info (apt package wayland-utils) must be installed");
    assert!(out.status.success(), "wayland-info failed: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    // Values follow `key: ` up to a space or comma, e.g. "x: 0, y: 0, scale: 2,"; the mode is
    // the line "width: 3840 px, height: 2160 px, refresh: 60.000 Hz,".
    let mode_line = text
        .lines()
        .find(|l| l.contains("refresh:"))
        .unwrap_or_else(|| panic!("no mode in wayland-info:\n{text}"));
    let num_in = |text: &str, key: &str| -> u32 {
        text.split(key)
            .nth(1)
            .and_then(|rest| {
                rest.trim_start()
                    .split(|c: char| !c.is_ascii_digit())
                    .next()
            })
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key:?} in wayland-info:\n{text}"))
    };
    let num = |key: &str| num_in(&text, key);
    OutputInfo {
        scale: num(" scale:"),
        physical_mm: (num("physical_width:"), num("physical_height:")),
        mode: (num_in(mode_line, "width:"), num_in(mode_line, "height:")),
        logical: (num("logical_width:"), num("logical_height:")),
    }
}

/// A window the server mapped, from its "mapping toplevel" log line: logical position of the
/// content's top-left corner and logical size.
#[derive(Debug, Clone, Copy)]
struct Mapped {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
}

fn mapped(server: &Server) -> Vec<Mapped> {
    let log = strip_ansi(&server.log());
    log.lines()
        .filter(|l| l.contains("mapping toplevel"))
        .map(|line| {
            let field = |name: &str| -> f64 {
                line.split_whitespace()
                    .find_map(|w| w.strip_prefix(&format!("{name}=")))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("no {name}= in {line}"))
            };
            Mapped {
                x: field("x"),
                y: field("y"),
                w: field("w"),
                h: field("h"),
            }
        })
        .collect()
}

/// decorations.rs ACTIVE = [0.20, 0.36, 0.62] and INACTIVE = [0.26, 0.28, 0.32], in 8 bits.
const ACTIVE: [i32; 3] = [51, 92, 158];
const INACTIVE: [i32; 3] = [66, 71, 82];

/// The bounding box (x, y, w, h) of the pixels of a title bar colour.
fn title_bar_box(shot: &Path, target: [i32; 3]) -> (u32, u32, u32, u32) {
    let (w, h, rgb) = read_png_rgb(shot);
    let (mut x0, mut y0, mut x1, mut y1) = (u32::MAX, u32::MAX, 0, 0);
    for y in 0..h {
        for x in 0..w {
            let i = ((y * w + x) * 3) as usize;
            let px = [rgb[i] as i32, rgb[i + 1] as i32, rgb[i + 2] as i32];
            if px.iter().zip(target).all(|(a, b)| (a - b).abs() <= 2) {
                x0 = x0.min(x);
                y0 = y0.min(y);
                x1 = x1.max(x);
                y1 = y1.max(y);
            }
        }
    }
    assert!(x0 <= x1, "no title bar of {target:?} in {}", shot.display());
    (x0, y0, x1 - x0 + 1, y1 - y0 + 1)
}

fn run_script(dir: &TempDir, server: &Server, extra: &[&str], script: &str) -> String {
    let path = dir.path("input.script");
    std::fs::write(&path, script).unwrap();
    let mut args = vec![
        "--input-script",
        path.to_str().unwrap(),
        "--exit-after",
        "30",
    ];
    args.extend_from_slice(extra);
    let out = run_appliance(dir, server.listen, &args);
    let stderr = strip_ansi(&String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "wrclient failed:\n{stderr}");
    stderr
}

/// Waits until the server log, without colours, has `n` lines containing `needle`.
fn wait_log_plain(server: &Server, needle: &str, n: usize, timeout: Duration) {
    let start = std::time::Instant::now();
    while strip_ansi(&server.log()).matches(needle).count() < n {
        assert!(
            start.elapsed() < timeout,
            "timed out waiting for {n}x {needle:?} in the server log:\n{}",
            strip_ansi(&server.log())
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn assert_near(got: u32, want: f64, what: &str) {
    assert!(
        (f64::from(got) - want).abs() <= 1.0,
        "{what}: got {got}, expected {want}"
    );
}

/// foot (server-side title bar) and the input probe on a 27" 4K monitor: scale 1.5.
#[test]
fn a_27_inch_4k_monitor_gets_scale_1_5() {
    let dir = TempDir::new("scale-auto");
    let events = dir.path("probe.out");
    // Starting at the logical size the 4K screen will have leaves room for both windows side by
    // side, so foot's whole title bar shows.
    let server = Server::start(
        &dir,
        ServerOpts {
            spawn: &["foot"],
            extra: &["--size", "2560x1440"],
            ..Default::default()
        },
    );
    server.wait_log("mapping toplevel", 1, Duration::from_secs(30));
    // Mapped second, the probe has focus: foot's bar is the inactive colour.
    let mut probe_client = server
        .wayland_client(probe().to_str().unwrap())
        .args(["probe", "400", "300"])
        .stdout(std::fs::File::create(&events).unwrap())
        .spawn()
        .unwrap();
    server.wait_log("mapping toplevel", 2, Duration::from_secs(30));

    // Attach, let the clients redraw at the new scale, take a screenshot.
    let shot = dir.path("shot.png");
    run_script(
        &dir,
        &server,
        &[
            "--screen",
            UHD,
            "--physical-size",
            MM_27,
            "--screenshot",
            shot.to_str().unwrap(),
        ],
        "wait-frame\nwait 1500\nexit\n",
    );
    let log = strip_ansi(&server.log());
    assert!(
        log.contains("scale=1.5"),
        "the session did not take scale 1.5:\n{log}"
    );
    assert_eq!(
        output_info(&server),
        OutputInfo {
            // wl_output.scale: 1.5 rounded up, for clients without fractional-scale-v1.
            scale: 2,
            physical_mm: (597, 336),
            mode: (3840, 2160),
            logical: (2560, 1440),
        }
    );

    let windows = mapped(&server);
    let (foot, probe_win) = (windows[0], windows[1]);
    assert_eq!((probe_win.w, probe_win.h), (400.0, 300.0));
    // foot's bar is 24 logical pixels high, 36 on screen, and as wide as foot's picture, which
    // is 1.5 times its logical size.
    let (bx, by, bw, bh) = title_bar_box(&shot, INACTIVE);
    assert_eq!(bh, 36, "title bar height on screen");
    assert_near(bw, foot.w * 1.5, "title bar width on screen");
    assert_near(bx, foot.x * 1.5, "title bar x on screen");
    assert_near(by, (foot.y - 24.0) * 1.5, "title bar y on screen");

    // The pointer at appliance pixels lands on the logical spot: 100,50 inside the probe.
    // Then foot's close button, in the middle of its 16-pixel square at the bar's right end.
    let close = (
        (foot.x + foot.w - 4.0 - 8.0) * 1.5,
        (foot.y - 24.0 + 4.0 + 8.0) * 1.5,
    );
    let script = format!(
        "wait-frame\nmove {} {}\nclick left\nwait 300\nmove {} {}\nclick left\nwait 1000\nexit\n",
        (probe_win.x + 100.0) * 1.5,
        (probe_win.y + 50.0) * 1.5,
        close.0,
        close.1,
    );
    run_script(
        &dir,
        &server,
        &["--screen", UHD, "--physical-size", MM_27],
        &script,
    );
    let got = std::fs::read_to_string(&events).unwrap();
    assert!(
        got.contains("pointer enter 100 50"),
        "the probe did not see the pointer at 100,50:\n{got}"
    );
    // foot exits when its window is closed.
    wait_log_plain(
        &server,
        "client exited cmd=\"foot\"",
        1,
        Duration::from_secs(10),
    );

    // A 1920x1080 monitor of the same size replaces it: 82 DPI, scale 1.
    run_script(
        &dir,
        &server,
        &["--screen", UHD, "--physical-size", MM_27],
        "wait-frame\nscreen 1920x1080\nwait-frame\nwait 500\nexit\n",
    );
    assert_eq!(
        output_info(&server),
        OutputInfo {
            scale: 1,
            physical_mm: (597, 336),
            mode: (1920, 1080),
            logical: (1920, 1080),
        }
    );
    let _ = probe_client.kill();
    let _ = probe_client.wait();
}

/// The server's `--scale 1` (config `output_scale`) wins over the monitor's density, and a screen
/// of unknown size stays at 1 anyway.
#[test]
fn the_servers_scale_overrides_the_monitor() {
    let dir = TempDir::new("scale-fixed");
    let server = Server::start(
        &dir,
        ServerOpts {
            spawn: &["foot"],
            extra: &["--scale", "1"],
            ..Default::default()
        },
    );
    server.wait_log("mapping toplevel", 1, Duration::from_secs(30));
    let shot = dir.path("shot.png");
    run_script(
        &dir,
        &server,
        &[
            "--screen",
            UHD,
            "--physical-size",
            MM_27,
            "--screenshot",
            shot.to_str().unwrap(),
        ],
        "wait-frame\nwait 1000\nexit\n",
    );
    assert_eq!(
        output_info(&server),
        OutputInfo {
            scale: 1,
            physical_mm: (597, 336),
            mode: (3840, 2160),
            logical: (3840, 2160),
        }
    );
    let foot = mapped(&server)[0];
    let (_, _, bw, bh) = title_bar_box(&shot, ACTIVE);
    assert_eq!(bh, 24, "title bar height on screen");
    assert_near(bw, foot.w, "title bar width on screen");
}

/// Without a physical size (a headless appliance, a projector) the session stays at scale 1.
#[test]
fn an_unknown_size_means_scale_1() {
    let dir = TempDir::new("scale-unknown");
    let server = Server::start(&dir, ServerOpts::default());
    run_script(&dir, &server, &["--screen", UHD], "wait-frame\nexit\n");
    let info = output_info(&server);
    assert_eq!(
        (info.scale, info.physical_mm, info.logical),
        (1, (0, 0), (3840, 2160))
    );
}

/// A v3 appliance's Hello (no physical size: laid out differently from v4's) still gets a clear
/// `VersionMismatch`, read from its leading version, not a decode error.
#[test]
fn a_v3_hello_hears_version_mismatch() {
    use wayray_protocol::{
        framing, ByeReason, Encoding, FrameReader, ServerControl, DEFAULT_MAX_MESSAGE_LEN,
        PROTOCOL_VERSION,
    };
    #[derive(serde::Serialize)]
    enum V3Control {
        Hello(V3Hello),
    }
    #[derive(serde::Serialize)]
    struct V3Hello {
        protocol_version: u16,
        client_name: String,
        capabilities: V3Capabilities,
        keymap: Option<()>,
        token: Option<String>,
    }
    #[derive(serde::Serialize)]
    struct V3Capabilities {
        screen_width: u32,
        screen_height: u32,
        encodings: Vec<Encoding>,
        max_message_len: u32,
    }

    let dir = TempDir::new("scale-v3");
    let server = Server::start(&dir, ServerOpts::default());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let reply = rt.block_on(async {
        let conn = raw_connect(server.listen).await;
        let (mut ctrl, mut ctrl_recv) = conn.open_bi().await.unwrap();
        let hello = V3Control::Hello(V3Hello {
            protocol_version: 3,
            client_name: "wrclient 0.0.3".into(),
            capabilities: V3Capabilities {
                screen_width: 1920,
                screen_height: 1080,
                encodings: vec![Encoding::TilesV1],
                max_message_len: DEFAULT_MAX_MESSAGE_LEN,
            },
            keymap: None,
            token: None,
        });
        ctrl.write_all(&framing::encode(&hello).unwrap())
            .await
            .unwrap();
        let mut reader = FrameReader::new(DEFAULT_MAX_MESSAGE_LEN);
        loop {
            if let Some(msg) = reader.next::<ServerControl>().unwrap() {
                return msg;
            }
            let chunk =
                tokio::time::timeout(Duration::from_secs(10), ctrl_recv.read_chunk(1 << 16, true))
                    .await
                    .expect("no answer to the v3 Hello")
                    .unwrap()
                    .expect("control stream ended without an answer");
            reader.push(&chunk.bytes);
        }
    });
    assert_eq!(
        reply,
        ServerControl::Bye(ByeReason::VersionMismatch {
            server: PROTOCOL_VERSION,
            client: 3
        })
    );
}
