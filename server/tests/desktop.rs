//! The default desktop end to end, with real parts: `wrsrvd --desktop` starts swaybg, waybar
//! and mako (layer-shell clients) with WayRay's shipped configuration and a session bus; a
//! maximized window stays below the panel; `notify-send` shows a notification on the
//! appliance; a tap of Super opens fuzzel, and typing a program's name starts it.

mod support;

use std::{
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use support::*;

/// waybar's background in `server/desktop/waybar/style.css`.
const PANEL: [u8; 3] = [0x20, 0x28, 0x30];
/// mako's border in `server/desktop/mako/config`.
const NOTIFICATION_BORDER: [u8; 3] = [0x33, 0x5c, 0x9e];

fn wait_until(
    what: &str,
    timeout: Duration,
    mut done: impl FnMut() -> bool,
    log: impl Fn() -> String,
) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < timeout,
            "timed out waiting for {what}:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn layer_mapped(server: &Server, namespace: &str) -> bool {
    server
        .log()
        .lines()
        .any(|l| l.contains("new layer surface") && l.contains(&format!("\"{namespace}\"")))
}

/// Runs the appliance with `script` (which ends in `exit`) and returns its last screen.
fn run_and_screenshot(
    dir: &TempDir,
    server: &Server,
    name: &str,
    script: &str,
) -> (u32, u32, Vec<u8>) {
    let png = dir.path(&format!("{name}.png"));
    run_appliance_script(
        dir,
        server,
        &format!("{name}.script"),
        script,
        &["--screenshot", png.to_str().unwrap()],
    );
    read_png_rgb(&png)
}

fn pixel(shot: &(u32, u32, Vec<u8>), x: u32, y: u32) -> [u8; 3] {
    let i = ((y * shot.0 + x) * 3) as usize;
    [shot.2[i], shot.2[i + 1], shot.2[i + 2]]
}

fn count_color(
    shot: &(u32, u32, Vec<u8>),
    x0: u32,
    x1: u32,
    y0: u32,
    y1: u32,
    c: [u8; 3],
) -> usize {
    (y0..y1)
        .flat_map(|y| (x0..x1).map(move |x| (x, y)))
        .filter(|&(x, y)| pixel(shot, x, y) == c)
        .count()
}

/// The `area=Area { x: .., y: .., w: .., h: .. }` of the last "window snapped" log line.
fn last_snap_y(log: &str) -> i32 {
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("window snapped"))
        .unwrap_or_else(|| panic!("no snap in log:\n{log}"));
    line.split("y: ")
        .nth(1)
        .and_then(|rest| rest.split([',', ' ']).next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no y in {line}"))
}

#[test]
fn default_desktop_panel_notifications_and_launcher() {
    for program in [
        "swaybg",
        "waybar",
        "mako",
        "fuzzel",
        "notify-send",
        "dbus-daemon",
    ] {
        assert!(
            Path::new("/usr/bin").join(program).exists(),
            "{program} missing: scripts/test installs WAYRAY_DESKTOP_PACKAGES"
        );
    }
    let dir = TempDir::new("desktop");
    let server = Server::start(
        &dir,
        ServerOpts {
            spawn: &["foot"],
            extra: &["--desktop", "--size", "1280x800", "--fixed-size"],
            ..Default::default()
        },
    );
    let timeout = Duration::from_secs(60);
    for namespace in ["wallpaper", "waybar"] {
        wait_until(
            namespace,
            timeout,
            || layer_mapped(&server, namespace),
            || server.log(),
        );
    }
    server.wait_log("usable area changed", 1, timeout);
    server.wait_log("mapping toplevel", 1, timeout);

    // Super+Up maximizes foot (focused since it was mapped): it fills the usable area, which
    // starts below the panel, and the panel stays visible above it.
    let shot = run_and_screenshot(
        &dir,
        &server,
        "maximized",
        "wait 1500\ncombo super+up\nwait 1500\nexit\n",
    );
    let log = server.log();
    let snap_y = last_snap_y(&log);
    assert!(
        snap_y >= 28,
        "maximized window at y={snap_y}, under the 28 px panel:\n{log}"
    );
    let panel_px = count_color(&shot, 500, 800, 0, 28, PANEL);
    assert!(
        panel_px > 300 * 28 / 2,
        "the panel's background shows in only {panel_px} pixels of its middle"
    );

    // A notification through the session's own bus appears in the top-right corner.
    let bus = dir
        .path("run")
        .join(format!("{}-bus", server.wayland_display));
    let status = server
        .wayland_client("notify-send")
        .args([
            "-t",
            "60000",
            "WayRay test",
            "a notification on the appliance",
        ])
        .env(
            "DBUS_SESSION_BUS_ADDRESS",
            format!("unix:path={}", bus.display()),
        )
        .stdout(Stdio::null())
        .status()
        .expect("run notify-send");
    assert!(status.success(), "notify-send failed: {status}");
    wait_until(
        "mako's notification",
        timeout,
        || layer_mapped(&server, "notifications"),
        || server.log(),
    );

    // Super alone opens fuzzel; typing a program's name and Enter starts it.
    let toplevels_before = server.log().matches("mapping toplevel").count();
    let shot = run_and_screenshot(
        &dir,
        &server,
        "launcher",
        "wait 1000\nkey leftmeta\nwait 2500\ntype foot\nwait 800\nkey enter\nwait 3000\nexit\n",
    );
    let border = count_color(&shot, 640, 1280, 28, 300, NOTIFICATION_BORDER);
    assert!(
        border > 100,
        "no notification border in the top right ({border} px)"
    );
    server.wait_log("opening the launcher", 1, timeout);
    assert!(
        layer_mapped(&server, "launcher"),
        "fuzzel never mapped:\n{}",
        server.log()
    );
    server.wait_log("mapping toplevel", toplevels_before + 1, timeout);
}
