//! X11 programs in a session through real Xwayland and xterm: started only when the first X
//! client connects, typed into with the appliance's (German) keymap, menus, the clipboard both
//! ways with Wayland clients (wl-clipboard), Alt+F4, and a killed Xwayland that comes back.
//!
//! One test walks through all of it in order, so only one server, Xwayland and xterm run.

mod support;

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use support::*;

const TIMEOUT: Duration = Duration::from_secs(30);

/// The session's X11 display (`:N`) from its log.
fn x11_display(server: &Server) -> String {
    server.wait_log("x11 display listening", 1, TIMEOUT);
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains("x11 display listening"))
        .unwrap();
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("display="))
        .unwrap_or_else(|| panic!("no display= in {line}"))
        .to_string()
}

/// Pids of real Xwayland processes serving `display` (not the waiter standing in for one,
/// which is wrsrvd under Xwayland's name).
fn xwayland_pids(display: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if args.get(1) != Some(&display.as_bytes()) {
            continue;
        }
        let exe = std::fs::read_link(entry.path().join("exe")).unwrap_or_default();
        if exe.file_name().is_some_and(|n| n == "Xwayland") {
            pids.push(pid);
        }
    }
    pids
}

/// An X or Wayland client of the test, killed when dropped.
struct Client(Child);

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn xterm(server: &Server, display: &str, extra: &[&str]) -> Client {
    let child = Command::new("xterm")
        .env("DISPLAY", display)
        .env("XDG_RUNTIME_DIR", server.dir.join("run"))
        .env_remove("WAYLAND_DISPLAY")
        // The selection goes to CLIPBOARD (which Shift+Insert also pastes), a fixed font size,
        // and no login-shell noise.
        .args([
            "-xrm",
            "XTerm*selectToClipboard: true",
            "-geometry",
            "80x10",
            "-fa",
            "DejaVu Sans Mono",
            "-fs",
            "10",
        ])
        .args(extra)
        // A plain sh, not the account's shell: root's ~/.bashrc on these machines runs
        // `pyenv init`, which waits for ever on a lock another process left behind, and the
        // typed command then never runs.
        .env("SHELL", "/bin/sh")
        .env("PS1", "$ ")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start xterm (package xterm)");
    Client(child)
}

/// The `n`th (from 0) line of the log with `needle`, as its `key=value` fields.
fn log_fields(server: &Server, needle: &str, n: usize) -> Vec<(String, String)> {
    let log = server.log();
    let line = log
        .lines()
        .filter(|l| l.contains(needle))
        .nth(n)
        .unwrap_or_else(|| panic!("no {needle:?} #{n} in log:\n{log}"));
    line.split_whitespace()
        .filter_map(|w| {
            let (k, v) = w.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect()
}

fn field(fields: &[(String, String)], name: &str) -> i32 {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name}= in {fields:?}"))
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

/// What wl-paste prints, or `None` while there is no selection.
fn wl_paste_maybe(server: &Server, args: &[&str]) -> Option<String> {
    let child = server
        .wayland_client("wl-paste")
        .arg("--no-newline")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start wl-paste (package wl-clipboard)");
    let out = wait_with_timeout(child, Duration::from_secs(10));
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < timeout, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn x11_programs_run_through_xwayland_started_on_demand() {
    let dir = TempDir::new("xwayland");
    let spawned = dir.path("spawned-display.out");
    let server = Server::start(
        &dir,
        ServerOpts {
            spawn: &[&format!("echo \"$DISPLAY\" > {}", spawned.display())],
            ..Default::default()
        },
    );
    let display = x11_display(&server);
    // Clients the session starts get its X11 display.
    assert_eq!(wait_for_file(&spawned, TIMEOUT), format!("{display}\n"));

    // Nothing X11 runs until an X client connects.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        xwayland_pids(&display).is_empty(),
        "Xwayland started before any X client"
    );
    assert!(!server.log().contains("xwayland started"));

    // The first X client starts Xwayland and gets its window on screen, focused.
    let out = dir.path("typed.out");
    let _xterm = xterm(&server, &display, &[]);
    server.wait_log("xwayland started", 1, TIMEOUT);
    server.wait_log("mapping x11 window", 1, TIMEOUT);
    assert_eq!(xwayland_pids(&display).len(), 1, "one Xwayland runs");
    let win = log_fields(&server, "mapping x11 window", 0);
    let (x, y, w, h) = (
        field(&win, "x"),
        field(&win, "y"),
        field(&win, "w"),
        field(&win, "h"),
    );
    let (cx, cy) = (x + w / 2, y + h / 2);

    // Typed on a German keymap (y and z swapped, `-` and `>` elsewhere): the shell only gets
    // this text if Xwayland uses the appliance's keymap. Then xterm's Ctrl+click menu (an
    // override-redirect window) opens, and closes when the button is released outside it.
    let shot = dir.path("xterm.png");
    let script = format!(
        "wait 800\nmove {cx} {cy}\nclick left\nwait 200\n\
         type echo zyx-wayray > {}\nkey enter\nwait 500\n\
         press leftctrl\nbutton left down\nwait 800\nmove {} {}\nwait 100\nbutton left up\nrelease leftctrl\nwait 500\n\
         move {cx} {cy}\nwait 300\nexit\n",
        out.display(),
        x + w - 3,
        y + 3,
    );
    run_appliance_script(
        &dir,
        &server,
        "type.script",
        &script,
        &["--xkb-layout", "de", "--screenshot", shot.to_str().unwrap()],
    );
    assert_eq!(
        wait_for_file(&out, Duration::from_secs(10)),
        "zyx-wayray\n",
        "xterm got different text with the de keymap"
    );
    server.wait_log("mapping x11 override-redirect window", 1, TIMEOUT);
    server.wait_log("unmapped x11 window override_redirect=true", 1, TIMEOUT);

    // The appliance shows xterm (white background, dark text) under the active title bar.
    let (sw, _, rgb) = read_png_rgb(&shot);
    let px = |px: i32, py: i32| {
        let i = (py as usize * sw as usize + px as usize) * 3;
        [rgb[i], rgb[i + 1], rgb[i + 2]]
    };
    let (mut white, mut dark) = (0, 0);
    for py in y..y + h {
        for px_ in x..x + w {
            match px(px_, py) {
                [r, g, b] if r > 240 && g > 240 && b > 240 => white += 1,
                [r, g, b] if r < 60 && g < 60 && b < 60 => dark += 1,
                _ => {}
            }
        }
    }
    let area = (w * h) as usize;
    assert!(white > area / 2, "xterm's window is not on screen");
    assert!(dark > 50, "no text in xterm's window");
    // Right of the title text, left of the close button.
    let bar = px(x + w - 40, y - 4);
    assert_eq!(bar, [51, 92, 158], "no active title bar above xterm");
    // Xwayland's cursors (xterm's I-beam, set on Xwayland's own wl_surface) reach the appliance
    // like any client's: something else than the default arrow was sent.
    let log = server.log();
    assert!(!log.contains("cannot show a client's cursor"));
    let mut cursors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("sending cursor"))
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("len=")))
        .collect();
    cursors.dedup();
    assert!(
        cursors.len() >= 2,
        "only one cursor image was sent: {cursors:?}"
    );

    // Clipboard, Wayland → X11: wl-copy's text pasted into xterm with Shift+Insert runs.
    let pasted = dir.path("pasted.out");
    let status = server
        .wayland_client("wl-copy")
        .arg(format!("echo from-wayland > {}", pasted.display()))
        .status()
        .expect("start wl-copy (package wl-clipboard)");
    assert!(status.success());
    std::thread::sleep(Duration::from_millis(500));
    // X11 → Wayland: a line selected in xterm (triple click) is what wl-paste gets.
    let script = format!(
        "wait 300\nmove {cx} {cy}\nclick left\nwait 200\ncombo shift+insert\nwait 700\nkey enter\nwait 500\n\
         move {} {}\nclick left\nclick left\nclick left\nwait 300\nexit\n",
        x + 20,
        y + 5,
    );
    run_appliance_script(&dir, &server, "clipboard.script", &script, &[]);
    assert_eq!(
        wait_for_file(&pasted, Duration::from_secs(10)),
        "from-wayland\n"
    );
    // xterm owns PRIMARY and CLIPBOARD after the triple click; Xwayland announces each to the
    // compositor on its own, so the Wayland side may see CLIPBOARD a moment after the script ends.
    let start = Instant::now();
    let selected = loop {
        let text = wl_paste_maybe(&server, &[]);
        match text {
            Some(text) if text.contains("echo zyx-wayray") => break text,
            other if start.elapsed() > Duration::from_secs(5) => break other.unwrap_or_default(),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    assert!(
        selected.contains("echo zyx-wayray"),
        "wl-paste got {selected:?}, not xterm's first line"
    );

    // PRIMARY both ways (select / middle-click paste): xclip owns X11's PRIMARY, wl-paste reads
    // it on the Wayland side; wl-copy --primary owns Wayland's, xclip reads it on the X11 side.
    let mut xclip = Command::new("xclip")
        .args(["-selection", "primary"])
        .env("DISPLAY", &display)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start xclip (package xclip)");
    {
        use std::io::Write;
        let mut stdin = xclip.stdin.take().unwrap();
        stdin.write_all(b"x11-primary-\xc3\xa4").unwrap();
    }
    assert!(
        xclip.wait().unwrap().success(),
        "xclip could not own PRIMARY"
    );
    wait_until(
        "wl-paste --primary sees X11's PRIMARY",
        Duration::from_secs(10),
        || wl_paste_maybe(&server, &["--primary"]).as_deref() == Some("x11-primary-ä"),
    );
    let status = server
        .wayland_client("wl-copy")
        .args(["--primary", "wayland-primary"])
        .status()
        .expect("start wl-copy");
    assert!(status.success());
    wait_until(
        "xclip reads Wayland's PRIMARY",
        Duration::from_secs(10),
        || {
            Command::new("xclip")
                .args(["-o", "-selection", "primary"])
                .env("DISPLAY", &display)
                .output()
                .is_ok_and(|o| o.stdout == b"wayland-primary")
        },
    );

    // Xwayland killed: its windows go, the compositor runs on, and the next X client starts a
    // new Xwayland.
    let pid = xwayland_pids(&display)[0];
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    server.wait_log("xwayland exited", 1, TIMEOUT);
    server.wait_log("removed the windows of X11 clients", 1, TIMEOUT);
    let mut server = server;
    assert!(server.is_running(), "wrsrvd died with Xwayland");
    drop(_xterm);

    let again = dir.path("again.out");
    let mut xterm2 = xterm(
        &server,
        &display,
        &[
            "-e",
            "sh",
            "-c",
            &format!("echo alive > {}; exec sleep 60", again.display()),
        ],
    );
    server.wait_log("xwayland started", 2, TIMEOUT);
    server.wait_log("mapping x11 window", 2, TIMEOUT);
    assert_eq!(wait_for_file(&again, TIMEOUT), "alive\n");
    assert_eq!(xwayland_pids(&display).len(), 1, "one Xwayland runs again");

    // Alt+F4 closes the focused X11 window (WM_DELETE_WINDOW): xterm exits.
    run_appliance_script(
        &dir,
        &server,
        "close.script",
        "wait 500\ncombo alt+f4\nwait 500\nexit\n",
        &[],
    );
    wait_until("xterm closed by Alt+F4", TIMEOUT, || {
        matches!(xterm2.0.try_wait(), Ok(Some(_)))
    });
    server.wait_log("unmapped x11 window override_redirect=false", 1, TIMEOUT);
    assert!(server.is_running());
}

#[test]
fn no_xwayland_gives_sessions_no_x11_display() {
    let dir = TempDir::new("no-xwayland");
    let out = dir.path("display.out");
    let server = Server::start(
        &dir,
        ServerOpts {
            extra: &["--no-xwayland"],
            spawn: &[&format!("echo \"[$DISPLAY]\" > {}", out.display())],
            ..Default::default()
        },
    );
    assert_eq!(wait_for_file(&out, TIMEOUT), "[]\n");
    assert!(!server.log().contains("x11 display listening"));
}
