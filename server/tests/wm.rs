//! Pluggable window management end to end, with real parts: `wrsrvd --wm CMD` starts the
//! session's window manager (the reference tiling WM `wr-wm-tiling`, the misbehaving `wm_probe`
//! example, or `wm_twice`, which binds the manager twice), real clients (foot, the
//! `input_probe` and `slow_client` examples) open windows, and the real appliance types the key
//! bindings and shows the result.
//!
//! What is checked is what a user would see: the compositor's placements (its `wm window
//! placed` log lines), the appliance's screen (screenshots, its frame log's digests) and what
//! the clients received.

mod support;

use std::{
    collections::BTreeMap,
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use support::*;

/// The output: the appliance's default screen, kept whatever attaches.
const OUTPUT: Rect = Rect {
    x: 0,
    y: 0,
    w: 1280,
    h: 800,
};
const SIZE_FLAGS: [&str; 3] = ["--size", "1280x800", "--fixed-size"];
/// wr-wm-tiling's defaults: the gap around and between tiles, and the border drawn outside each
/// window's content.
const GAP: i32 = 8;
const BORDER: i32 = 2;
/// wr-wm-tiling's border colours: blue around the focused window, grey around the others.
const FOCUSED_BORDER: [u8; 3] = [0x4c, 0x8b, 0xf5];
const UNFOCUSED_BORDER: [u8; 3] = [0x3a, 0x3a, 0x3a];

/// How long a window may take to open on a loaded 2-core machine.
const OPEN: Duration = Duration::from_secs(30);
/// How long one layout change may take to reach the log and the screen (a binding's manage and
/// render sequences, and screenshots, on a loaded 2-core machine).
const LAYOUT: Duration = Duration::from_secs(10);

fn wm_tiling() -> String {
    sibling_bin("wr-wm-tiling").display().to_string()
}

/// A server whose window manager is `wm` (a shell command).
fn start_with_wm(dir: &TempDir, wm: &str) -> Server {
    let mut extra: Vec<&str> = SIZE_FLAGS.to_vec();
    extra.extend(["--wm", wm]);
    Server::start(
        dir,
        ServerOpts {
            extra: &extra,
            ..Default::default()
        },
    )
}

fn start_tiling(dir: &TempDir) -> Server {
    let server = start_with_wm(dir, &wm_tiling());
    server.wait_log("window manager connected", 1, OPEN);
    server
}

/// `input_probe` with this title (also its app_id) and colour, printing its events to a file.
fn spawn_probe(server: &Server, clients: &mut Clients, title: &str, colour: &str, out: &Path) {
    let child = server
        .wayland_client(example("input_probe").to_str().unwrap())
        .args([title, "300", "200", colour])
        .stdout(std::fs::File::create(out).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start input_probe");
    clients.add(child);
}

fn spawn_foot(server: &Server, clients: &mut Clients, app_id: &str) {
    let child = server
        .wayland_client("foot")
        .args(["--app-id", app_id, "sh"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start foot");
    clients.add(child);
}

fn spawn_slow(
    server: &Server,
    clients: &mut Clients,
    app_id: &str,
    colour: &str,
    ack_delay_ms: u32,
    out: &Path,
) {
    let child = server
        .wayland_client(example("slow_client").to_str().unwrap())
        .args(["--colour", colour, "--app-id", app_id])
        .args(["--ack-delay-ms", &ack_delay_ms.to_string()])
        .stdout(std::fs::File::create(out).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start slow_client");
    clients.add(child);
}

/// The content rectangles wr-wm-tiling gives `n` windows opened one after another on an empty
/// workspace of `usable`: the gap around the edge, each new window splitting the focused
/// (newest) tile in two along its longer side, the new window in the right or bottom half, the
/// gap between halves, and the border inside each tile around the content.
fn bsp(usable: Rect, n: usize) -> Vec<Rect> {
    let mut tiles = vec![Rect::new(
        usable.x + GAP,
        usable.y + GAP,
        usable.w - 2 * GAP,
        usable.h - 2 * GAP,
    )];
    for _ in 1..n {
        let t = *tiles.last().unwrap();
        let (old, new) = if t.w >= t.h {
            let w1 = (t.w - GAP) / 2;
            (
                Rect::new(t.x, t.y, w1, t.h),
                Rect::new(t.x + w1 + GAP, t.y, t.w - w1 - GAP, t.h),
            )
        } else {
            let h1 = (t.h - GAP) / 2;
            (
                Rect::new(t.x, t.y, t.w, h1),
                Rect::new(t.x, t.y + h1 + GAP, t.w, t.h - h1 - GAP),
            )
        };
        *tiles.last_mut().unwrap() = old;
        tiles.push(new);
    }
    tiles
        .into_iter()
        .map(|t| {
            Rect::new(
                t.x + BORDER,
                t.y + BORDER,
                t.w - 2 * BORDER,
                t.h - 2 * BORDER,
            )
        })
        .collect()
}

/// True when the windows `app_ids` are shown at `rects` (in that order) in `layout`.
fn placed_at(layout: &BTreeMap<String, Placed>, app_ids: &[&str], rects: &[Rect]) -> bool {
    app_ids.iter().zip(rects).all(|(id, rect)| {
        layout
            .get(*id)
            .is_some_and(|p| p.visible && p.rect == *rect)
    })
}

/// Asserts the border around `content` is `colour` on all four sides (at the middle of each).
fn assert_border(shot: &Shot, what: &str, content: Rect, colour: [u8; 3]) {
    let (mx, my) = (content.x + content.w / 2, content.y + content.h / 2);
    for (side, x, y) in [
        ("left", content.x - 1, my),
        ("left", content.x - BORDER, my),
        ("right", content.x + content.w, my),
        ("top", mx, content.y - 1),
        ("bottom", mx, content.y + content.h + BORDER - 1),
    ] {
        assert_eq!(
            shot.pixel(x, y),
            colour,
            "{what}'s {side} border at ({x}, {y}) is not {colour:?}"
        );
    }
}

/// Seconds since midnight of a log line's RFC 3339 time stamp (`2026-12-04T10:36:34.562405Z`).
/// Seconds of the day of the log line's time stamp. The first word that looks like one: a
/// client writing to the same stderr without a newline (the probe's "Protocol error ") can end
/// up in front of the server's line.
fn log_seconds(line: &str) -> Option<f64> {
    let stamp = line
        .split_whitespace()
        .find(|w| w.len() > 20 && w.as_bytes()[4] == b'-' && w.contains('T') && w.ends_with('Z'))?;
    let time = stamp.split_once('T')?.1;
    let mut parts = time.trim_end_matches('Z').split(':');
    let (h, m, s): (f64, f64, f64) = (
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
    );
    Some(h * 3600.0 + m * 60.0 + s)
}

fn rgb(hex: &str) -> [u8; 3] {
    let v = u32::from_str_radix(hex, 16).unwrap();
    [(v >> 16) as u8, (v >> 8) as u8, v as u8]
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Waits until the file at `path` has `needle` `n` times.
fn wait_file(path: &Path, needle: &str, n: usize, timeout: Duration) -> String {
    let start = Instant::now();
    loop {
        let text = read(path);
        if text.matches(needle).count() >= n {
            return text;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out waiting for {n}× {needle:?} in {}:\n{text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Three foot windows under wr-wm-tiling get the binary-space-partition layout: the compositor
/// places them where the gaps and borders say, and the appliance shows the borders there, the
/// newest window's in the focused colour.
#[test]
fn three_foot_windows_tile_with_gaps_and_borders() {
    let dir = TempDir::new("wm-bsp");
    let server = start_tiling(&dir);
    let mut clients = Clients::default();
    let ids = ["tile-1", "tile-2", "tile-3"];
    for (n, id) in ids.iter().enumerate() {
        spawn_foot(&server, &mut clients, id);
        let expect = bsp(OUTPUT, n + 1);
        server.wait_layout(
            &format!("{} foot windows tiled as {expect:?}", n + 1),
            OPEN,
            |layout| placed_at(layout, &ids[..=n], &expect),
        );
    }
    let expect = bsp(OUTPUT, 3);
    server.wait_log("wm layout shown windows=3", 1, LAYOUT);

    let shot = screenshot_after(&dir, &server, "tiled", "wait 300\nexit\n");
    let background = shot.pixel(1, 1);
    for (i, (id, rect)) in ids.iter().zip(&expect).enumerate() {
        let colour = if i == 2 {
            FOCUSED_BORDER
        } else {
            UNFOCUSED_BORDER
        };
        assert_border(&shot, id, *rect, colour);
        let inside = shot.pixel(rect.x + rect.w / 2, rect.y + rect.h / 2);
        assert!(
            inside != background && inside != colour,
            "{id}'s content at {rect} shows {inside:?}: not foot"
        );
    }
    // The gaps: between the screen's edge and the tiles, and between the tiles.
    let gap_left = Rect::new(0, 0, GAP, OUTPUT.h);
    let between = Rect::new(
        expect[0].x + expect[0].w + BORDER,
        GAP,
        GAP,
        OUTPUT.h - 2 * GAP,
    );
    let between_right = Rect::new(
        expect[1].x,
        expect[1].y + expect[1].h + BORDER,
        expect[1].w,
        GAP,
    );
    for (what, gap) in [
        ("left edge", gap_left),
        ("gap between the columns", between),
        ("gap between tile-2 and tile-3", between_right),
    ] {
        assert_eq!(
            shot.count(gap, background),
            (gap.w * gap.h) as usize,
            "the {what} ({gap}) is not all background {background:?}"
        );
    }
}

/// XWayland windows are the WM's too: an xterm is tiled beside foot like any Wayland window,
/// and the X client is told where it was put.
#[test]
fn an_x11_window_is_tiled_beside_a_wayland_one() {
    let dir = TempDir::new("wm-x11");
    let server = start_tiling(&dir);
    let mut clients = Clients::default();
    spawn_foot(&server, &mut clients, "tile-1");
    server.wait_layout("foot alone", OPEN, |layout| {
        placed_at(layout, &["tile-1"], &bsp(OUTPUT, 1))
    });
    server.wait_log("x11 display listening", 1, OPEN);
    let log = server.log();
    let display = log
        .lines()
        .find(|l| l.contains("x11 display listening"))
        .and_then(|l| log_field(l, "display"))
        .expect("the session's X11 display")
        .to_string();
    let xterm = server
        .wayland_client("xterm")
        .args(["-class", "XTile", "-e", "sh"])
        .env("DISPLAY", &display)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start xterm");
    clients.add(xterm);
    let expect = bsp(OUTPUT, 2);
    server.wait_layout(
        &format!("foot and xterm tiled as {expect:?}"),
        OPEN,
        |layout| placed_at(layout, &["tile-1", "XTile"], &expect),
    );
    let shot = screenshot_after(&dir, &server, "x11", "wait 300\nexit\n");
    // xterm's white background fills its tile, inside the focused border.
    assert_border(&shot, "xterm", expect[1], FOCUSED_BORDER);
    let inside = shot.pixel(expect[1].x + expect[1].w / 2, expect[1].y + expect[1].h / 2);
    assert_eq!(inside, [0xff, 0xff, 0xff], "xterm's tile shows {inside:?}");
}

/// True when the window `id` is on screen in `shot` (a 20×20 square of its colour inside
/// `rect`'s top-left corner).
fn shows(shot: &Shot, rect: Rect, colour: &str) -> bool {
    shot.count(Rect::new(rect.x, rect.y, 20, 20), rgb(colour)) == 400
}

/// Super+arrows move focus, Super+Shift+arrows move the focused window, Super+2 and Super+1
/// switch workspaces; the clients see none of those keys, and do see a plain key typed after.
#[test]
fn bindings_focus_move_and_switch_workspaces_and_are_consumed() {
    let dir = TempDir::new("wm-keys");
    let server = start_tiling(&dir);
    let mut clients = Clients::default();
    let (a_out, b_out) = (dir.path("a.out"), dir.path("b.out"));
    let (a_colour, b_colour) = ("cc3333", "33cc33");
    spawn_probe(&server, &mut clients, "probe-a", a_colour, &a_out);
    let halves = bsp(OUTPUT, 2);
    server.wait_layout("probe-a tiled", OPEN, |l| {
        placed_at(l, &["probe-a"], &bsp(OUTPUT, 1))
    });
    spawn_probe(&server, &mut clients, "probe-b", b_colour, &b_out);
    server.wait_layout("probe-a left, probe-b right", OPEN, |l| {
        placed_at(l, &["probe-a", "probe-b"], &halves)
    });
    wait_file(&b_out, "keyboard enter", 1, LAYOUT);

    // Super+Left gives probe-a (left of the focused probe-b) the keyboard; Super+Shift+Right
    // then moves probe-a right, so the two swap.
    let appliance = BackgroundAppliance::with_script(
        &dir,
        "swap",
        &server,
        "wait 200\ncombo super+left\nwait 300\ncombo super+shift+right\n",
    );
    wait_file(&a_out, "keyboard enter", 2, LAYOUT);
    server.wait_layout("probe-a right, probe-b left", LAYOUT, |l| {
        placed_at(l, &["probe-b", "probe-a"], &halves)
    });
    let shot = appliance.wait_screen("probe-a right, probe-b left", LAYOUT, |shot| {
        shows(shot, halves[1], a_colour) && shows(shot, halves[0], b_colour)
    });
    // probe-b lost the keyboard to probe-a.
    wait_file(&b_out, "keyboard leave", 1, LAYOUT);
    assert_border(&shot, "probe-a (focused)", halves[1], FOCUSED_BORDER);
    assert_border(&shot, "probe-b", halves[0], UNFOCUSED_BORDER);
    appliance.stop();

    // Workspace 2 is empty: neither window is shown, nor on screen.
    let appliance = BackgroundAppliance::with_script(&dir, "ws2", &server, "combo super+2\n");
    server.wait_layout("workspace 1 hidden", LAYOUT, |l| {
        ["probe-a", "probe-b"]
            .iter()
            .all(|id| l.get(*id).is_some_and(|p| !p.visible))
    });
    appliance.wait_screen("an empty workspace 2", LAYOUT, |shot| {
        shot.count(OUTPUT, rgb(a_colour)) == 0 && shot.count(OUTPUT, rgb(b_colour)) == 0
    });
    appliance.stop();

    // Back on workspace 1 both are where they were, and probe-a has the keyboard again: it
    // gets the `a` typed there.
    let appliance =
        BackgroundAppliance::with_script(&dir, "ws1", &server, "combo super+1\nwait 300\nkey a\n");
    server.wait_layout("workspace 1 shown again", LAYOUT, |l| {
        placed_at(l, &["probe-b", "probe-a"], &halves)
    });
    appliance.wait_screen("workspace 1 again", LAYOUT, |shot| {
        shows(shot, halves[1], a_colour) && shows(shot, halves[0], b_colour)
    });
    let a_events = wait_file(&a_out, "key 30 released", 1, LAYOUT);
    appliance.stop();
    let b_events = read(&b_out);
    // evdev codes of Left, Right, 1 and 2: bound, so consumed (press and release).
    for (key, name) in [(105, "Left"), (106, "Right"), (2, "1"), (3, "2")] {
        for (id, events) in [("probe-a", &a_events), ("probe-b", &b_events)] {
            assert!(
                !events.contains(&format!("key {key} ")),
                "{id} saw the bound key {name} ({key}):\n{events}"
            );
        }
    }
    assert!(
        !b_events.contains("key 30 "),
        "probe-b got the `a` meant for the focused probe-a:\n{b_events}"
    );
}

/// kill -9 of the WM: the built-in floating WM takes every window over within 2 s, visible (the
/// one on another workspace comes back), and its own bindings work (Super+Up maximizes).
#[test]
fn killing_the_wm_leaves_every_window_mapped_and_the_floating_wm_in_charge() {
    let dir = TempDir::new("wm-kill");
    let server = start_tiling(&dir);
    let wm_pid = server.wm_pid();
    let mut clients = Clients::default();
    let (a_out, b_out) = (dir.path("a.out"), dir.path("b.out"));
    let (a_colour, b_colour) = ("cc3333", "33cc33");
    spawn_probe(&server, &mut clients, "probe-a", a_colour, &a_out);
    let full = bsp(OUTPUT, 1)[0];
    server.wait_layout("probe-a tiled", OPEN, |l| {
        placed_at(l, &["probe-a"], &[full])
    });
    spawn_probe(&server, &mut clients, "probe-b", b_colour, &b_out);
    server.wait_layout("probe-b tiled", OPEN, |l| {
        placed_at(l, &["probe-a", "probe-b"], &bsp(OUTPUT, 2))
    });
    wait_file(&b_out, "keyboard enter", 1, LAYOUT);

    // probe-b (focused) goes to workspace 2; probe-a alone fills workspace 1.
    let appliance =
        BackgroundAppliance::with_script(&dir, "send", &server, "wait 200\ncombo super+shift+2\n");
    server.wait_layout("probe-a alone on workspace 1", LAYOUT, |l| {
        placed_at(l, &["probe-a"], &[full]) && l.get("probe-b").is_some_and(|p| !p.visible)
    });
    appliance.wait_screen("probe-a alone", LAYOUT, |shot| {
        shows(shot, full, a_colour) && shot.count(OUTPUT, rgb(b_colour)) == 0
    });

    let killed = Instant::now();
    assert_eq!(
        unsafe { libc::kill(wm_pid, libc::SIGKILL) },
        0,
        "kill -9 {wm_pid}"
    );
    server.wait_log("window manager gone", 1, Duration::from_secs(5));
    let took = killed.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "the built-in WM took {took:?} to take over (2 s allowed)"
    );
    let log = server.log();
    let gone = log
        .lines()
        .find(|l| l.contains("window manager gone"))
        .unwrap();
    assert_eq!(log_field(gone, "windows"), Some("2"), "{gone}");

    // Both windows on screen, probe-b back from workspace 2 where it was (probe-a, filling the
    // screen and stacked above, leaves only probe-b's right edge uncovered).
    appliance.wait_screen("both windows after the WM died", LAYOUT, |shot| {
        shot.count(OUTPUT, rgb(a_colour)) > 100_000 && shot.count(OUTPUT, rgb(b_colour)) >= 1000
    });
    appliance.stop();

    // The floating WM's Super+Up maximizes the focused window to the whole output (the probes
    // ask for no title bar).
    let snapped = server.log().matches("window snapped").count();
    let appliance = BackgroundAppliance::with_script(&dir, "maximize", &server, "combo super+up\n");
    server.wait_log("window snapped", snapped + 1, LAYOUT);
    let start = Instant::now();
    let maximized = loop {
        let got: Vec<(&str, &str)> = [("probe-a", &a_out, a_colour), ("probe-b", &b_out, b_colour)]
            .into_iter()
            .filter(|(_, out, _)| read(out).lines().any(|l| l == "configure 1280 800"))
            .map(|(id, _, colour)| (id, colour))
            .collect();
        if !got.is_empty() || start.elapsed() > LAYOUT {
            break got;
        }
        std::thread::sleep(Duration::from_millis(25));
    };
    assert_eq!(
        maximized.len(),
        1,
        "not exactly one probe maximized: {maximized:?}\n{}\n{}",
        read(&a_out),
        read(&b_out)
    );
    let (id, colour) = maximized[0];
    appliance.wait_screen(&format!("{id} maximized"), LAYOUT, |shot| {
        shot.count(OUTPUT, rgb(colour)) > (OUTPUT.w * OUTPUT.h) as usize * 9 / 10
    });
}

/// A client that is not the session's WM binding the manager gets not_permitted; the session's
/// WM goes on managing.
#[test]
fn a_client_that_is_not_the_sessions_wm_is_refused() {
    let dir = TempDir::new("wm-refused");
    let server = start_tiling(&dir);
    let probe = server
        .wayland_client(example("wm_probe").to_str().unwrap())
        .args(["--mode", "second"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run wm_probe");
    let out = wait_with_timeout(probe, Duration::from_secs(10));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("not_permitted"),
        "wm_probe was not refused: stdout:\n{said}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !said.contains("manage_start"),
        "wm_probe got a manage sequence:\n{said}"
    );
    server.wait_log(
        "window manager refused: not the session's window manager",
        1,
        LAYOUT,
    );
    // wr-wm-tiling still manages: a new window is tiled.
    let mut clients = Clients::default();
    spawn_probe(
        &server,
        &mut clients,
        "probe-a",
        "cc3333",
        &dir.path("a.out"),
    );
    server.wait_layout("probe-a tiled by wr-wm-tiling", OPEN, |l| {
        placed_at(l, &["probe-a"], &bsp(OUTPUT, 1))
    });
    assert!(
        !server.log().contains("window manager gone"),
        "the session's WM was disconnected:\n{}",
        server.log()
    );
}

/// `wm_probe --mode second` as the session's WM: it is the one WM, made active (not refused);
/// while it manages, the same program run as an ordinary client is refused with not_permitted
/// and the session's WM goes on.
#[test]
fn the_sessions_wm_is_active_and_another_instance_is_refused() {
    let dir = TempDir::new("wm-second");
    let out = dir.path("wm_probe.out");
    let server = start_with_wm(
        &dir,
        &format!(
            "{} --mode second > {}",
            example("wm_probe").display(),
            out.display()
        ),
    );
    let said = wait_file(&out, "active", 1, OPEN);
    server.wait_log("window manager connected", 1, LAYOUT);
    assert!(
        !said.contains("not_permitted") && !said.contains("unavailable"),
        "the session's own WM was refused:\n{said}"
    );
    let other = server
        .wayland_client(example("wm_probe").to_str().unwrap())
        .args(["--mode", "second"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run wm_probe");
    let other = wait_with_timeout(other, Duration::from_secs(10));
    let other_said = String::from_utf8_lossy(&other.stdout);
    assert!(
        other_said.contains("not_permitted") && !other_said.contains("active"),
        "a second wm_probe was not refused:\n{other_said}"
    );
    server.wait_log(
        "window manager refused: not the session's window manager",
        1,
        LAYOUT,
    );
    // The session's WM still manages: it is sent the next window, and manages and renders it.
    let before = read(&out);
    let mut clients = Clients::default();
    spawn_probe(
        &server,
        &mut clients,
        "probe-a",
        "cc3333",
        &dir.path("a.out"),
    );
    let start = Instant::now();
    loop {
        let now = read(&out);
        let new = now.get(before.len()..).unwrap_or_default();
        if new.contains("window\n") && new.contains("render_start") {
            break;
        }
        assert!(
            start.elapsed() < OPEN,
            "the session's WM was not sent the new window:\n{now}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    assert!(
        !server.log().contains("window manager gone"),
        "the session's WM was disconnected:\n{}",
        server.log()
    );
}

/// A second binding while a WM is active is told unavailable. Only the session's WM process
/// may bind, so the second binding comes from it (`wm_twice` binds twice); the first stays the
/// session's WM and goes on managing.
#[test]
fn a_second_binding_while_a_wm_is_active_is_unavailable() {
    let dir = TempDir::new("wm-twice");
    let out = dir.path("wm_twice.out");
    let server = start_with_wm(
        &dir,
        &format!("{} > {}", example("wm_twice").display(), out.display()),
    );
    let said = wait_file(&out, "unavailable", 1, OPEN);
    assert!(
        said.starts_with("active\n"),
        "the first binding was not active:\n{said}"
    );
    server.wait_log("window manager unavailable: another is active", 1, LAYOUT);
    // The first binding is still the session's WM: a new window is sent to it, not to the
    // built-in WM (which would map it at once).
    let layouts = server.log().matches("wm layout shown").count();
    let mut clients = Clients::default();
    spawn_probe(
        &server,
        &mut clients,
        "probe-a",
        "cc3333",
        &dir.path("a.out"),
    );
    server.wait_log("wm layout shown", layouts + 1, OPEN);
    assert_eq!(
        server.log().matches("mapping toplevel").count(),
        0,
        "the built-in WM mapped the window:\n{}",
        server.log()
    );
    let log = server.log();
    assert!(
        !log.contains("window manager gone") && !log.contains("protocol error"),
        "the session's WM lost its binding:\n{log}"
    );
    assert!(
        !read(&out).contains("protocol error"),
        "wm_twice got a protocol error:\n{}",
        read(&out)
    );
}

/// A slow client (acking configures 300 ms late) under wr-wm-tiling: when a third window opens
/// and the layout changes, every frame the appliance shows between the old steady layout and the
/// new one is one of the two: no frame has a window at its new size in its old place, or a
/// window missing.
#[test]
fn a_slow_client_never_tears_the_layout() {
    let dir = TempDir::new("wm-slow");
    let server = start_tiling(&dir);
    let mut clients = Clients::default();
    let (a_out, b_out, c_out) = (dir.path("a.out"), dir.path("b.out"), dir.path("c.out"));
    spawn_slow(&server, &mut clients, "slow-a", "cc3333", 0, &a_out);
    server.wait_layout("slow-a tiled", OPEN, |l| {
        placed_at(l, &["slow-a"], &bsp(OUTPUT, 1))
    });
    spawn_slow(&server, &mut clients, "slow-b", "3333cc", 300, &b_out);
    let two = bsp(OUTPUT, 2);
    server.wait_layout("slow-a and slow-b tiled", OPEN, |l| {
        placed_at(l, &["slow-a", "slow-b"], &two)
    });
    wait_file(
        &b_out,
        &format!("committed {} {}", two[1].w, two[1].h),
        1,
        LAYOUT,
    );

    let appliance = BackgroundAppliance::start(&dir, "watcher", &server, &[]);
    appliance.wait_frames(1, OPEN);
    let before = appliance.wait_still(Duration::from_millis(400), OPEN);
    let old = before.last().unwrap().digest.clone();

    // A third window splits the focused slow-b's tile: slow-b must shrink, 300 ms late.
    spawn_slow(&server, &mut clients, "slow-c", "33cc33", 0, &c_out);
    let three = bsp(OUTPUT, 3);
    server.wait_layout("three windows tiled", OPEN, |l| {
        placed_at(l, &["slow-a", "slow-b", "slow-c"], &three)
    });
    let b_said = wait_file(
        &b_out,
        &format!("committed {} {}", three[1].w, three[1].h),
        1,
        LAYOUT,
    );
    let after = appliance.wait_still(Duration::from_millis(400), LAYOUT);
    let new = after.last().unwrap().digest.clone();
    drop(appliance);

    assert_ne!(old, new, "the screen did not change when slow-c opened");
    let between = &after[before.len()..];
    assert!(!between.is_empty(), "no frame after slow-c opened");
    let torn: Vec<&FrameLine> = between
        .iter()
        .filter(|f| f.digest != old && f.digest != new)
        .collect();
    assert!(
        torn.is_empty(),
        "{} frame(s) between the layouts are neither the old nor the new one: {torn:?}\n\
         all frames after the change: {between:?}\nslow-b said:\n{b_said}",
        torn.len()
    );
}

/// A WM that makes a render request outside the render sequence gets the sequence error; the
/// session lives on and the built-in WM places the next window.
#[test]
fn an_out_of_sequence_wm_is_disconnected_and_the_session_lives() {
    let dir = TempDir::new("wm-sequence");
    let out = dir.path("wm_probe.out");
    let mut server = start_with_wm(
        &dir,
        &format!(
            "{} --mode out-of-sequence > {}",
            example("wm_probe").display(),
            out.display()
        ),
    );
    let said = wait_file(&out, "protocol error", 1, OPEN);
    assert!(said.contains("sequence"), "not the sequence error:\n{said}");
    server.wait_log("window manager gone", 1, LAYOUT);
    floating_wm_places_foot(&dir, &mut server);
}

/// A WM that never ends its manage sequence is disconnected as unresponsive after about one
/// second; the built-in WM places the next window.
#[test]
fn a_stalled_wm_is_disconnected_as_unresponsive() {
    let dir = TempDir::new("wm-stall");
    let out = dir.path("wm_probe.out");
    let mut server = start_with_wm(
        &dir,
        &format!(
            "{} --mode stall > {}",
            example("wm_probe").display(),
            out.display()
        ),
    );
    server.wait_log("window manager connected", 1, OPEN);
    server.wait_log("window manager gone", 1, LAYOUT);
    // By the server's own clock: from the binding (and its manage_start) to the drop.
    let log = server.log();
    let at = |needle: &str| {
        let line = log.lines().find(|l| l.contains(needle)).unwrap();
        log_seconds(line).unwrap_or_else(|| panic!("no time stamp on {line}"))
    };
    let took = at("window manager gone") - at("window manager connected");
    assert!(
        (0.95..2.0).contains(&took),
        "the stalled WM was dropped after {took:.3} s, not after 1 s"
    );
    // Error 2 of wayray_wm_manager_v1 is `unresponsive`.
    let said = wait_file(&out, "protocol error", 1, LAYOUT);
    assert!(
        said.contains("protocol error: wayray_wm_manager_v1@") && said.contains(" code 2: "),
        "the WM was not dropped as unresponsive; it says:\n{said}"
    );
    server.wait_log("left a sequence open too long", 1, LAYOUT);
    floating_wm_places_foot(&dir, &mut server);
}

/// The session is alive and without an external WM: a new foot maps, the floating WM places it
/// on screen, and the appliance shows it.
fn floating_wm_places_foot(dir: &TempDir, server: &mut Server) {
    assert!(server.is_running(), "wrsrvd died:\n{}", server.log());
    let mut clients = Clients::default();
    spawn_foot(server, &mut clients, "after-the-wm");
    server.wait_log("mapping toplevel", 1, OPEN);
    let (x, y) = server.mapped_at(0);
    assert!(
        (0.0..OUTPUT.w as f64).contains(&x) && (0.0..OUTPUT.h as f64).contains(&y),
        "foot placed off screen at ({x}, {y})"
    );
    let shot = screenshot_after(dir, server, "floating", "wait 300\nexit\n");
    let background = shot.pixel(1, 1);
    let (x, y) = (x as i32, y as i32);
    assert_ne!(
        shot.pixel(x + 20, y + 20),
        background,
        "foot is not on screen at ({x}, {y})"
    );
    assert!(server.is_running(), "wrsrvd died:\n{}", server.log());
}
