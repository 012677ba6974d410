//! The session output takes the size of the screen showing it: from the appliance's Hello, again
//! when the session moves to another appliance, and when the appliance's screen changes.

mod support;

use std::time::{Duration, Instant};

use support::*;
use wayray_protocol::{ClientControl, DisplayMessage, FrameUpdate};

/// What clients see of the output: the current mode wayland-info reports for wl_output.
fn client_visible_mode(server: &Server) -> (u32, u32) {
    let out = server
        .wayland_client("wayland-info")
        .output()
        .expect("wayland-info (apt package wayland-utils) must be installed");
    assert!(out.status.success(), "wayland-info failed: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    // "width: 1024 px, height: 600 px, refresh: 60.000 Hz," then "flags: current preferred"
    let lines: Vec<&str> = text.lines().collect();
    let modes = lines
        .windows(2)
        .filter(|w| w[0].contains("width:") && w[0].contains("refresh:"))
        .count();
    assert_eq!(modes, 1, "clients should see exactly one mode:\n{text}");
    let line = lines
        .windows(2)
        .find(|w| w[0].contains("width:") && w[1].contains("flags: current"))
        .map(|w| w[0])
        .unwrap_or_else(|| panic!("no current mode in wayland-info:\n{text}"));
    let num = |key: &str| -> u32 {
        line.split(key)
            .nth(1)
            .and_then(|rest| rest.trim().split(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {line:?}"))
    };
    (num("width:"), num("height:"))
}

/// Every window is inside the output after a resize, title bar included.
fn assert_windows_fit(server: &Server, (ow, oh): (i64, i64)) {
    let log = server.log();
    let fitted: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("window fitted to the resized output"))
        .collect();
    let last = fitted
        .last()
        .unwrap_or_else(|| panic!("no window refitted:\n{log}"));
    let field = |name: &str| -> i64 {
        last.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name}= in {last}"))
    };
    let (x, y, w, h) = (field("x"), field("y"), field("w"), field("h"));
    assert!(
        x >= 0 && y >= 24 && x + w <= ow && y + h <= oh,
        "window {x},{y} {w}x{h} is not inside the {ow}x{oh} output:\n{log}"
    );
}

/// Two real appliances with different screens in turn: each gets the session at its own size,
/// frame for frame identical to the server's, and clients are told the new mode.
#[test]
fn session_output_follows_each_appliance_screen() {
    let dir = TempDir::new("outsize");
    let server = Server::start(
        &dir,
        ServerOpts {
            spawn: &["foot"],
            extra: &["--size", "1280x800"],
            ..Default::default()
        },
    );
    server.wait_log("mapping toplevel", 1, Duration::from_secs(30));

    for (screen, expected) in [("640x400", (640, 400)), ("1920x1080", (1920, 1080))] {
        let _ = std::fs::remove_file(dir.path("appliance-frames.log"));
        let out = run_appliance(
            &dir,
            server.listen,
            &["--screen", screen, "--exit-after", "2"],
        );
        assert!(
            out.status.success(),
            "wrclient failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let shown = read_frame_log(&dir.path("appliance-frames.log"));
        assert!(!shown.is_empty(), "no frame shown at {screen}");
        let sent = server.frames();
        for frame in &shown {
            assert_eq!(frame.size, screen, "frame {} at the wrong size", frame.seq);
            assert!(
                sent.iter()
                    .any(|s| s.seq == frame.seq && s.digest == frame.digest && s.size == screen),
                "frame {} differs from the server's",
                frame.seq
            );
        }
        // The output keeps its last size after the appliance leaves.
        assert_eq!(client_visible_mode(&server), expected);
    }
    assert_windows_fit(&server, (1920, 1080));
}

/// The foot window, centred on a 1280×800 output, stays whole when the session moves to a
/// 640×400 screen: it is moved and shrunk to fit below its title bar.
#[test]
fn windows_are_kept_on_a_smaller_screen() {
    let dir = TempDir::new("outsize-small");
    let server = Server::start(
        &dir,
        ServerOpts {
            spawn: &["foot"],
            extra: &["--size", "1280x800"],
            ..Default::default()
        },
    );
    server.wait_log("mapping toplevel", 1, Duration::from_secs(30));
    let out = run_appliance(
        &dir,
        server.listen,
        &["--screen", "640x400", "--exit-after-frames", "3"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_windows_fit(&server, (640, 400));
}

async fn next_frame(peer: &mut RawAppliance, wait: Duration) -> FrameUpdate {
    let deadline = Instant::now() + wait;
    loop {
        match peer.next_display(deadline).await {
            Some(DisplayMessage::Frame(update)) => return update,
            Some(DisplayMessage::Cursor(_)) => continue,
            None => panic!("no frame within {wait:?}"),
        }
    }
}

/// A screen that changes while attached (a monitor swapped on the appliance): the next frame is a
/// key frame at the new size.
#[test]
fn screen_change_resizes_the_attached_session() {
    let dir = TempDir::new("outsize-change");
    let server = Server::start(
        &dir,
        ServerOpts {
            spawn: &["weston-simple-shm"],
            ..Default::default()
        },
    );
    server.wait_log("mapping toplevel", 1, Duration::from_secs(30));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut peer =
            RawAppliance::attach_with_screen(server.listen, "resize-test", (1024, 768)).await;
        assert_eq!(
            (peer.welcome.output_width, peer.welcome.output_height),
            (1024, 768)
        );
        let first = next_frame(&mut peer, Duration::from_secs(5)).await;
        assert!(first.key);
        assert_eq!((first.width, first.height), (1024, 768));
        peer.send(&ClientControl::ScreenChanged {
            width: 800,
            height: 600,
            physical_size: None,
        })
        .await;
        peer.send(&ClientControl::FrameAck { seq: first.seq }).await;
        // Frames already rendered at the old size may come first; then a key frame at the new.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            assert!(
                Instant::now() < deadline,
                "no 800x600 key frame:\n{}",
                server.log()
            );
            let frame = next_frame(&mut peer, Duration::from_secs(5)).await;
            peer.send(&ClientControl::FrameAck { seq: frame.seq }).await;
            if (frame.width, frame.height) == (800, 600) {
                assert!(
                    frame.key,
                    "the first frame at a new size must be a key frame"
                );
                break;
            }
        }
        // An unusable size is refused and the session keeps its size.
        peer.send(&ClientControl::ScreenChanged {
            width: 0,
            height: 600,
            physical_size: None,
        })
        .await;
        let frame = next_frame(&mut peer, Duration::from_secs(5)).await;
        assert_eq!((frame.width, frame.height), (800, 600));
    });
    assert_eq!(client_visible_mode(&server), (800, 600));
}

/// `--fixed-size` keeps the configured output whatever the appliance's screen.
#[test]
fn fixed_size_ignores_the_appliance_screen() {
    let dir = TempDir::new("outsize-fixed");
    let server = Server::start(
        &dir,
        ServerOpts {
            extra: &["--size", "640x480", "--fixed-size"],
            ..Default::default()
        },
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut peer =
            RawAppliance::attach_with_screen(server.listen, "fixed-test", (1920, 1080)).await;
        assert_eq!(
            (peer.welcome.output_width, peer.welcome.output_height),
            (640, 480)
        );
        let first = next_frame(&mut peer, Duration::from_secs(5)).await;
        assert_eq!((first.width, first.height), (640, 480));
    });
}
