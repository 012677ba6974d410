//! End-to-end input through the real path: the appliance's scripted input source → QUIC input
//! stream → wrsrvd's seat → real Wayland clients (foot, and the `input_probe` example client).

mod support;

use std::{
    path::{Path, PathBuf},
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use support::*;

fn probe() -> PathBuf {
    let path = wrsrvd().with_file_name("examples").join("input_probe");
    assert!(
        path.exists(),
        "{} not built: run `cargo build -p wayray-server --examples` (scripts/test does)",
        path.display()
    );
    path
}

/// Runs wrclient with `script` as its input source until the script's `exit`.
fn run_script(dir: &TempDir, server: &Server, script: &str) -> String {
    let path = dir.path("input.script");
    std::fs::write(&path, script).unwrap();
    let out = run_appliance(
        dir,
        server.listen,
        &[
            "--input-script",
            path.to_str().unwrap(),
            "--exit-after",
            "30",
        ],
    );
    let stderr = strip_ansi(&String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "wrclient failed:\n{stderr}");
    stderr
}

fn wait_for_file(path: &Path, timeout: Duration) -> String {
    let start = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if text.ends_with('\n') {
                return text;
            }
        }
        assert!(
            start.elapsed() < timeout,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn typed_into_foot(layout: &str, text: &str) {
    let dir = TempDir::new(&format!("type-{layout}"));
    let out = dir.path("out");
    let server = Server::start(
        &dir,
        ServerOpts {
            spawn: &["foot sh"],
            ..Default::default()
        },
    );
    server.wait_log("mapping toplevel", 1, Duration::from_secs(30));
    let keymap = if layout == "us" {
        String::new()
    } else {
        format!("keymap {layout}\n")
    };
    let script = format!(
        "# give sh a moment to print its prompt\nwait 500\n{keymap}type echo {text} > {}\nkey enter\nwait 300\nexit\n",
        out.display()
    );
    run_script(&dir, &server, &script);
    let got = wait_for_file(&out, Duration::from_secs(10));
    assert_eq!(
        got,
        format!("{text}\n"),
        "foot received different text with layout {layout}"
    );
}

#[test]
fn typing_reaches_foot_with_the_us_keymap() {
    typed_into_foot("us", "wayray-typed");
}

/// `de` swaps y and z (and moves `-`, `>` and `/`): the text only comes out right if the
/// server compiled the appliance's keymap and gave it to foot.
#[test]
fn typing_honours_the_appliances_de_keymap() {
    typed_into_foot("de", "zy-wayray");
}

#[test]
fn pointer_scroll_and_touch_reach_the_client_in_surface_coordinates() {
    let dir = TempDir::new("pointer");
    let events = dir.path("probe.out");
    let server = Server::start(
        &dir,
        ServerOpts {
            spawn: &[&format!(
                "{} probe 400 300 > {}",
                probe().display(),
                events.display()
            )],
            ..Default::default()
        },
    );
    server.wait_log("mapping toplevel", 1, Duration::from_secs(30));
    let (x, y) = server.mapped_at(0);
    let script = format!(
        "move {} {}\nclick left\nscroll 0 120\nscroll-finger 0 7\nscroll-stop\ntouch down 0 {} {}\ntouch move 0 {} {}\ntouch up 0\ntouch frame\nwait 300\nexit\n",
        x + 100.0,
        y + 50.0,
        x + 200.0,
        y + 150.0,
        x + 210.0,
        y + 160.0,
    );
    run_script(&dir, &server, &script);
    std::thread::sleep(Duration::from_millis(300));
    let got = std::fs::read_to_string(&events).unwrap();
    let expect_in_order = [
        "pointer enter 100 50",
        "pointer button 0x110 pressed",
        "pointer button 0x110 released",
        "pointer axis_source wheel",
        "pointer axis_value120 vertical 120",
        "pointer axis vertical 15",
        "pointer axis_source finger",
        "pointer axis vertical 7",
        "pointer axis_stop vertical",
        "touch down 0 200 150",
        "touch motion 0 210 160",
        "touch up 0",
        "touch frame",
    ];
    let mut rest = got.as_str();
    for line in expect_in_order {
        match rest.find(line) {
            Some(i) => rest = &rest[i + line.len()..],
            None => panic!("expected {line:?} (in this order) in the probe's events:\n{got}"),
        }
    }
}

fn spawn_probe(server: &Server, title: &str, out: &Path) -> Child {
    server
        .wayland_client(probe().to_str().unwrap())
        .args([title, "300", "200"])
        .stdout(std::fs::File::create(out).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

#[test]
fn alt_tab_cycles_focus_and_alt_f4_closes_the_focused_window() {
    let dir = TempDir::new("wm-keys");
    let server = Server::start(&dir, ServerOpts::default());
    let (a_out, b_out) = (dir.path("a.out"), dir.path("b.out"));
    let mut a = spawn_probe(&server, "A", &a_out);
    server.wait_log("mapping toplevel", 1, Duration::from_secs(30));
    let mut b = spawn_probe(&server, "B", &b_out);
    server.wait_log("mapping toplevel", 2, Duration::from_secs(30));
    // B, mapped last, has focus. Alt+Tab gives it to A; Alt+F4 then closes A, not B.
    run_script(
        &dir,
        &server,
        "wait 200\ncombo alt+tab\nwait 200\ncombo alt+f4\nwait 500\nexit\n",
    );
    let a_status = wait_exit(&mut a, Duration::from_secs(10));
    assert!(
        a_status.is_some_and(|s| s.success()),
        "A was not closed by Alt+F4"
    );
    let a_events = std::fs::read_to_string(&a_out).unwrap();
    assert_eq!(
        a_events.matches("keyboard enter").count(),
        2,
        "A did not get focus back:\n{a_events}"
    );
    assert!(a_events.contains("closed"));
    // B is still running, lost focus to A, and never saw Tab or F4 (the WM took them).
    assert!(b.try_wait().unwrap().is_none(), "B exited");
    let b_events = std::fs::read_to_string(&b_out).unwrap();
    assert!(
        b_events.contains("keyboard leave"),
        "B kept focus:\n{b_events}"
    );
    assert!(!b_events.contains("closed"), "B was closed:\n{b_events}");
    for key in ["key 15 ", "key 62 "] {
        assert!(
            !b_events.contains(key),
            "B saw a WM key ({key}):\n{b_events}"
        );
    }
    let _ = b.kill();
    let _ = b.wait();
}

fn wait_exit(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    None
}

fn start_with_probe(dir: &TempDir, args: &str) -> (Server, PathBuf) {
    let events = dir.path("probe.out");
    let server = Server::start(
        dir,
        ServerOpts {
            spawn: &[&format!(
                "{} {args} > {}",
                probe().display(),
                events.display()
            )],
            ..Default::default()
        },
    );
    server.wait_log("mapping toplevel", 1, Duration::from_secs(30));
    (server, events)
}

#[test]
fn super_arrows_snap_the_focused_window() {
    let dir = TempDir::new("snap");
    let (server, events) = start_with_probe(&dir, "snap 300 200");
    run_script(
        &dir,
        &server,
        "wait 200\ncombo super+left\nwait 200\ncombo super+up\nwait 200\ncombo super+right\nwait 300\nexit\n",
    );
    // The probe may still be writing the last configure when the appliance has exited (a
    // loaded machine): wait for the three, then compare.
    let start = Instant::now();
    let mut got = String::new();
    while start.elapsed() < Duration::from_secs(10) {
        got = std::fs::read_to_string(&events).unwrap_or_default();
        if got.matches("configure ").count() >= 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // The probe has no server-side title bar, so snapped windows get the full height.
    let sizes: Vec<&str> = got
        .lines()
        .filter(|l| l.starts_with("configure "))
        .collect();
    assert_eq!(
        sizes,
        [
            "configure 640 800",
            "configure 1280 800",
            "configure 640 800"
        ],
        "{got}"
    );
}

#[test]
fn super_drag_moves_a_window() {
    let dir = TempDir::new("drag");
    let (server, _events) = start_with_probe(&dir, "drag 300 200 ff0000");
    let (x, y) = server.mapped_at(0);
    let shot = dir.path("after.png");
    let script = format!(
        "press leftmeta\nmove {} {}\nbutton left down\nmove {} {}\nmove {} {}\nbutton left up\nrelease leftmeta\nwait 300\nexit\n",
        x + 10.0,
        y + 10.0,
        x + 60.0,
        y + 30.0,
        x + 110.0,
        y + 60.0
    );
    let path = dir.path("drag.script");
    std::fs::write(&path, script).unwrap();
    let out = run_appliance(
        &dir,
        server.listen,
        &[
            "--input-script",
            path.to_str().unwrap(),
            "--screenshot",
            shot.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (w, _, rgb) = read_png_rgb(&shot);
    let px = |x: f64, y: f64| {
        let i = ((y as u32 * w + x as u32) * 3) as usize;
        [rgb[i], rgb[i + 1], rgb[i + 2]]
    };
    let red = [255, 0, 0];
    // The window's old top-left corner is uncovered; its new one is 100 right, 50 down.
    assert_ne!(px(x + 5.0, y + 5.0), red, "window still at its old place");
    assert_eq!(px(x + 105.0, y + 55.0), red, "window not at its new place");
    assert_eq!(
        px(x + 395.0, y + 245.0),
        red,
        "window's new bottom-right missing"
    );
}

#[test]
fn title_bar_close_button_closes_foot() {
    let dir = TempDir::new("close-button");
    let server = Server::start(
        &dir,
        ServerOpts {
            spawn: &["foot sh"],
            ..Default::default()
        },
    );
    server.wait_log("mapping toplevel", 1, Duration::from_secs(30));
    let (x, y) = server.mapped_at(0);
    let line = server.log();
    let w: f64 = line
        .lines()
        .find(|l| l.contains("mapping toplevel"))
        .and_then(|l| l.split_whitespace().find_map(|f| f.strip_prefix("w=")))
        .and_then(|v| v.parse().ok())
        .unwrap();
    // foot asked for server-side decorations: a 24 px bar above it, close button at its right.
    run_script(
        &dir,
        &server,
        &format!(
            "move {} {}\nclick left\nwait 500\nexit\n",
            x + w - 12.0,
            y - 12.0
        ),
    );
    server.wait_log("client exited", 1, Duration::from_secs(10));
}

#[test]
fn clicking_outside_a_popup_dismisses_it() {
    let dir = TempDir::new("popup");
    let (server, events) = start_with_probe(&dir, "menu 300 200");
    let (x, y) = server.mapped_at(0);
    run_script(
        &dir,
        &server,
        &format!(
            "move {} {}\nclick right\nwait 300\nmove 5 5\nclick left\nwait 300\nexit\n",
            x + 50.0,
            y + 50.0
        ),
    );
    std::thread::sleep(Duration::from_millis(200));
    let got = std::fs::read_to_string(&events).unwrap();
    let shown = got
        .find("popup shown")
        .unwrap_or_else(|| panic!("no popup:\n{got}"));
    let done = got
        .find("popup done")
        .unwrap_or_else(|| panic!("popup not dismissed:\n{got}"));
    assert!(shown < done, "{got}");
}

#[test]
fn super_right_drag_resizes_a_window() {
    let dir = TempDir::new("resize");
    let (server, events) = start_with_probe(&dir, "resize 300 200");
    let (x, y) = server.mapped_at(0);
    run_script(
        &dir,
        &server,
        &format!(
            "press leftmeta\nmove {} {}\nbutton right down\nmove {} {}\nbutton right up\nrelease leftmeta\nwait 300\nexit\n",
            x + 150.0,
            y + 100.0,
            x + 250.0,
            y + 150.0
        ),
    );
    let got = std::fs::read_to_string(&events).unwrap();
    assert!(
        got.lines().any(|l| l == "configure 400 250"),
        "the window was not resized by the drag (100, 50):\n{got}"
    );
    assert!(
        !got.contains("popup shown"),
        "the right button reached the client:\n{got}"
    );
}
