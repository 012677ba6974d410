//! End-to-end checks of the desktop protocols: every global is advertised (wayland-info), a real
//! screen locker (swaylock) hides the desktop from the appliance and a dead locker keeps the
//! session locked, a taskbar (examples/toplevel_ctl.rs, wlr-foreign-toplevel-management) lists
//! and controls windows, and presentation feedback follows the appliance's acks
//! (examples/presentation_probe.rs).

mod support;

use std::{
    path::PathBuf,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use support::*;

struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn example(name: &str) -> PathBuf {
    let path = wrsrvd().with_file_name("examples").join(name);
    assert!(
        path.exists(),
        "{} not built: run `cargo build -p wayray-server --examples`",
        path.display()
    );
    path
}

#[test]
fn wayland_info_lists_every_desktop_protocol() {
    let dir = TempDir::new("protocols-info");
    let server = Server::start(&dir, ServerOpts::default());
    let out = server
        .wayland_client("wayland-info")
        .output()
        .expect("run wayland-info (package wayland-utils)");
    let text = String::from_utf8_lossy(&out.stdout);
    let missing: Vec<&str> = [
        "zwp_primary_selection_device_manager_v1",
        "zwlr_data_control_manager_v1",
        "ext_data_control_manager_v1",
        "xdg_activation_v1",
        "wp_presentation",
        "zwp_idle_inhibit_manager_v1",
        "ext_idle_notifier_v1",
        "ext_session_lock_manager_v1",
        "zwp_pointer_constraints_v1",
        "zwp_relative_pointer_manager_v1",
        "zwp_keyboard_shortcuts_inhibit_manager_v1",
        "zwp_text_input_manager_v3",
        "zwp_input_method_manager_v2",
        "zxdg_exporter_v2",
        "zxdg_importer_v2",
        "wp_single_pixel_buffer_manager_v1",
        "wp_security_context_manager_v1",
        "ext_foreign_toplevel_list_v1",
        "zwlr_foreign_toplevel_manager_v1",
    ]
    .into_iter()
    .filter(|name| !text.contains(&format!("'{name}'")))
    .collect();
    assert!(missing.is_empty(), "not advertised: {missing:?}\n{text}");
}

/// Runs an appliance for a moment and returns its framebuffer (RGB).
fn appliance_screen(dir: &TempDir, server: &Server, name: &str) -> (u32, u32, Vec<u8>) {
    let shot = dir.path(name);
    let out = run_appliance(
        dir,
        server.listen,
        &["--exit-after", "2", "--screenshot", shot.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "wrclient failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    read_png_rgb(&shot)
}

fn count_colour(rgb: &[u8], colour: [u8; 3]) -> usize {
    rgb.chunks_exact(3).filter(|p| *p == colour).count()
}

fn swaylock(server: &Server, colour: &str) -> Reaper {
    Reaper(
        server
            .wayland_client("swaylock")
            .args(["--color", colour, "--no-unlock-indicator"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start swaylock"),
    )
}

/// swaylock locks the session: the appliance shows the lock screen only. When the locker is
/// killed the session stays locked (nothing of the desktop comes back), and a new locker may
/// take over.
#[test]
fn swaylock_hides_the_desktop_and_a_dead_locker_keeps_it_hidden() {
    const RED: [u8; 3] = [0xff, 0x00, 0x00];
    let dir = TempDir::new("protocols-lock");
    let probe = example("input_probe");
    let server = Server::start(
        &dir,
        ServerOpts {
            spawn: &[&format!("{} desktop 500 400 ff0000", probe.display())],
            ..Default::default()
        },
    );
    server.wait_log("mapping toplevel", 1, Duration::from_secs(30));
    let (_, _, unlocked) = appliance_screen(&dir, &server, "unlocked.png");
    assert!(
        count_colour(&unlocked, RED) >= 500 * 400,
        "the red window is not on screen before locking"
    );

    let mut locker = swaylock(&server, "3366ff");
    server.wait_log("session locked", 1, Duration::from_secs(20));
    // Give swaylock time to draw its surface.
    std::thread::sleep(Duration::from_millis(500));
    let (w, h, locked) = appliance_screen(&dir, &server, "locked.png");
    assert_eq!(
        count_colour(&locked, RED),
        0,
        "the desktop shows while locked"
    );
    let blue = count_colour(&locked, [0x33, 0x66, 0xff]);
    assert!(
        blue > (w * h) as usize * 9 / 10,
        "the lock screen is not what the appliance shows ({blue} of {} pixels)",
        w * h
    );

    // A crashed locker: the session must stay locked.
    locker.0.kill().unwrap();
    locker.0.wait().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let (_, _, dead) = appliance_screen(&dir, &server, "dead-locker.png");
    assert_eq!(
        count_colour(&dead, RED),
        0,
        "the desktop came back when the locker died"
    );
    assert!(!server.log().contains("session unlocked"));

    // A new locker takes over the orphaned lock.
    let _second = swaylock(&server, "22aa44");
    server.wait_log("a new locker takes over", 1, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(500));
    let (_, _, relocked) = appliance_screen(&dir, &server, "relocked.png");
    assert_eq!(count_colour(&relocked, RED), 0);
    assert!(count_colour(&relocked, [0x22, 0xaa, 0x44]) > (w * h) as usize * 9 / 10);
}

fn toplevel_ctl(server: &Server, args: &[&str]) -> String {
    let out = server
        .wayland_client(example("toplevel_ctl").to_str().unwrap())
        .args(args)
        .output()
        .expect("run toplevel_ctl");
    assert!(
        out.status.success(),
        "toplevel_ctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The listing after the action (the second block of lines).
fn after_action(out: &str) -> &str {
    out.split("end\n").nth(1).unwrap_or("")
}

#[test]
fn a_taskbar_lists_activates_maximizes_and_closes_windows() {
    let dir = TempDir::new("toplevels");
    let probe = example("input_probe");
    let alpha_out = dir.path("alpha.out");
    let server = Server::start(
        &dir,
        ServerOpts {
            spawn: &[
                &format!(
                    "{} alpha 200 100 > {}",
                    probe.display(),
                    alpha_out.display()
                ),
                &format!("{} beta 200 100", probe.display()),
            ],
            ..Default::default()
        },
    );
    server.wait_log("mapping toplevel", 2, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(300));

    let list = toplevel_ctl(&server, &[]);
    let line = |text: &str, title: &str| -> String {
        text.lines()
            .find(|l| l.contains(&format!("title={title} ")))
            .unwrap_or_else(|| panic!("no {title} in {text}"))
            .to_string()
    };
    // One of them (the last mapped) has focus; both are on the taskbar's output.
    assert!(line(&list, "alpha").contains("outputs=1"), "{list}");
    assert!(line(&list, "beta").contains("outputs=1"), "{list}");
    let (focused, other) = if line(&list, "alpha").contains("activated=true") {
        ("alpha", "beta")
    } else {
        ("beta", "alpha")
    };
    assert!(line(&list, focused).contains("activated=true"), "{list}");
    assert!(line(&list, other).contains("activated=false"), "{list}");

    let out = toplevel_ctl(&server, &["activate", other]);
    let after = after_action(&out);
    assert!(line(after, other).contains("activated=true"), "{out}");
    assert!(line(after, focused).contains("activated=false"), "{out}");
    // Activating alpha last, so the probe's log must show it got keyboard focus.
    if other != "alpha" {
        toplevel_ctl(&server, &["activate", "alpha"]);
    }

    let out = toplevel_ctl(&server, &["maximize", "alpha"]);
    assert!(
        line(after_action(&out), "alpha").contains("maximized=true"),
        "{out}"
    );

    let out = toplevel_ctl(&server, &["close", "beta"]);
    let after = after_action(&out);
    assert!(!after.contains("title=beta "), "beta still listed: {out}");
    assert!(after.contains("title=alpha "), "{out}");
    // The probe saw the keyboard focus that activation gave it.
    let events = std::fs::read_to_string(&alpha_out).unwrap_or_default();
    assert!(events.contains("keyboard enter"), "{events}");
}

/// presentation_probe asks for wp_presentation feedback on every commit. Without an appliance
/// nothing is presented; once one attaches and acks frames, `presented` feedback arrives.
#[test]
fn presentation_feedback_arrives_when_the_appliance_acks() {
    let dir = TempDir::new("presentation");
    let log = dir.path("presentation.out");
    let server = Server::start(
        &dir,
        ServerOpts {
            spawn: &[&format!(
                "{} 5 > {}",
                example("presentation_probe").display(),
                log.display()
            )],
            ..Default::default()
        },
    );
    server.wait_log("mapping toplevel", 1, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(500));
    let detached = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !detached.contains("presented"),
        "presented without an appliance:\n{detached}"
    );
    let _ = appliance_screen(&dir, &server, "presentation.png");
    let start = Instant::now();
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.matches("presented").count() >= 5 || start.elapsed() > Duration::from_secs(10) {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        text.matches("presented").count() >= 5,
        "too little presented feedback:\n{text}"
    );
}

/// swayidle (ext-idle-notify) sees the session go idle without appliance input, and resume when
/// the appliance's pointer moves.
#[test]
fn swayidle_sees_idle_and_resume_from_appliance_input() {
    let dir = TempDir::new("idle");
    let server = Server::start(&dir, ServerOpts::default());
    let events = dir.path("idle.out");
    let _swayidle = Reaper(
        server
            .wayland_client("swayidle")
            .args(["-w", "timeout", "1"])
            .arg(format!("echo idle >> {}", events.display()))
            .arg("resume")
            .arg(format!("echo resume >> {}", events.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start swayidle"),
    );
    let wait_for = |needle: &str| {
        let start = Instant::now();
        loop {
            let text = std::fs::read_to_string(&events).unwrap_or_default();
            if text.contains(needle) {
                return text;
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "swayidle never reported {needle:?}: {text:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let text = wait_for("idle");
    assert!(!text.contains("resume"), "{text}");
    let script = dir.path("input.script");
    std::fs::write(
        &script,
        "wait 300\nmove 100 100\nmove 120 110\nwait 500\nexit\n",
    )
    .unwrap();
    let out = run_appliance(
        &dir,
        server.listen,
        &[
            "--input-script",
            script.to_str().unwrap(),
            "--exit-after",
            "30",
        ],
    );
    assert!(out.status.success());
    wait_for("resume");
}

/// A client that inhibits keyboard shortcuts (keyboard-shortcuts-inhibit) gets Alt+F4 itself
/// instead of the WM closing it.
#[test]
fn an_inhibiting_client_receives_the_wm_bindings() {
    let dir = TempDir::new("inhibit");
    let out = dir.path("probe.out");
    let server = Server::start(
        &dir,
        ServerOpts {
            spawn: &[&format!(
                "{} > {}",
                example("shortcuts_probe").display(),
                out.display()
            )],
            ..Default::default()
        },
    );
    server.wait_log("mapping toplevel", 1, Duration::from_secs(30));
    let script = dir.path("input.script");
    std::fs::write(&script, "wait 300\ncombo alt+f4\nwait 500\nexit\n").unwrap();
    let run = run_appliance(
        &dir,
        server.listen,
        &[
            "--input-script",
            script.to_str().unwrap(),
            "--exit-after",
            "30",
        ],
    );
    assert!(run.status.success());
    std::thread::sleep(Duration::from_millis(300));
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    assert!(text.contains("inhibitor active"), "{text}");
    // evdev KEY_F4 = 62.
    assert!(
        text.contains("key 62 pressed"),
        "Alt+F4 did not reach the client:\n{text}"
    );
    assert!(
        !text.contains("close requested"),
        "the WM closed it:\n{text}"
    );
}

/// A client connected through a security-context socket (as Flatpak apps are) sees the ordinary
/// globals but none of the privileged ones.
#[test]
fn sandboxed_clients_do_not_see_privileged_globals() {
    let dir = TempDir::new("sandbox");
    let server = Server::start(&dir, ServerOpts::default());
    let out = server
        .wayland_client(example("sandbox_probe").to_str().unwrap())
        .output()
        .expect("run sandbox_probe");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "sandbox_probe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for visible in [
        "wl_compositor",
        "xdg_wm_base",
        "wl_seat",
        "wl_data_device_manager",
    ] {
        assert!(
            text.contains(&format!("global {visible}\n")),
            "{visible} hidden:\n{text}"
        );
    }
    for hidden in [
        "zwlr_data_control_manager_v1",
        "ext_data_control_manager_v1",
        "ext_session_lock_manager_v1",
        "zwp_input_method_manager_v2",
        "wp_security_context_manager_v1",
        "ext_foreign_toplevel_list_v1",
        "zwlr_foreign_toplevel_manager_v1",
    ] {
        assert!(
            !text.contains(&format!("global {hidden}\n")),
            "a sandboxed client sees {hidden}:\n{text}"
        );
    }
    assert!(server.log().contains("sandboxed client connected"));
}

/// xdg-activation with focus-stealing prevention: a token made without an input serial does not
/// move focus; one made from the focused client's keyboard-focus serial does.
#[test]
fn activation_needs_a_token_from_the_focused_clients_input() {
    let dir = TempDir::new("activation");
    let server = Server::start(&dir, ServerOpts::default());
    let out = server
        .wayland_client(example("activation_probe").to_str().unwrap())
        .output()
        .expect("run activation_probe");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "activation_probe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let focus_after = |step: &str| -> String {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{step}: focus ")))
            .unwrap_or_else(|| panic!("no {step:?} in {text}"))
            .to_string()
    };
    let start = focus_after("start");
    let other = if start == "one" { "two" } else { "one" };
    assert_eq!(focus_after("after token without serial"), start, "{text}");
    assert_eq!(focus_after("after token with serial"), other, "{text}");
}

/// pointer-constraints + relative-pointer: once a client locks the pointer, the appliance's
/// absolute motion no longer moves it (no motion, no leave) while relative motion still arrives.
#[test]
fn a_locked_pointer_stays_put_and_gets_relative_motion() {
    let dir = TempDir::new("ptrlock");
    let out = dir.path("probe.out");
    let server = Server::start(
        &dir,
        ServerOpts {
            spawn: &[&format!(
                "{} > {}",
                example("pointer_lock_probe").display(),
                out.display()
            )],
            ..Default::default()
        },
    );
    server.wait_log("mapping toplevel", 1, Duration::from_secs(30));
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains("mapping toplevel"))
        .unwrap()
        .to_string();
    let field = |name: &str| -> i32 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name}= in {line}"))
    };
    let (x, y) = (field("x") + 150, field("y") + 100);
    let script = dir.path("input.script");
    std::fs::write(
        &script,
        format!(
            "move {x} {y}\nwait 400\nmove {} {}\nrel 7 3\nwait 400\nexit\n",
            x + 400,
            y + 300
        ),
    )
    .unwrap();
    let run = run_appliance(
        &dir,
        server.listen,
        &[
            "--input-script",
            script.to_str().unwrap(),
            "--exit-after",
            "30",
        ],
    );
    assert!(run.status.success());
    std::thread::sleep(Duration::from_millis(300));
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let after_lock = text
        .split_once("locked\n")
        .unwrap_or_else(|| panic!("the pointer was never locked:\n{text}"))
        .1;
    assert!(
        !after_lock.contains("motion"),
        "the locked pointer moved:\n{text}"
    );
    assert!(
        !after_lock.contains("leave"),
        "the locked pointer left:\n{text}"
    );
    assert!(
        after_lock.contains("relative 7 3"),
        "no relative motion:\n{text}"
    );
}

/// idle-inhibit: while a mapped window holds an inhibitor, swayidle's 1 s timeout does not
/// fire; once that client is gone, the session goes idle.
#[test]
fn an_idle_inhibitor_keeps_the_session_awake_while_its_window_is_up() {
    let dir = TempDir::new("inhibit-idle");
    let probe_out = dir.path("probe.out");
    let server = Server::start(
        &dir,
        ServerOpts {
            spawn: &[&format!(
                "{} 4 > {}",
                example("idle_inhibit_probe").display(),
                probe_out.display()
            )],
            ..Default::default()
        },
    );
    server.wait_log("mapping toplevel", 1, Duration::from_secs(30));
    let events = dir.path("idle.out");
    let _swayidle = Reaper(
        server
            .wayland_client("swayidle")
            .args(["-w", "timeout", "1"])
            .arg(format!("echo idle >> {}", events.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start swayidle"),
    );
    std::thread::sleep(Duration::from_millis(2500));
    let probe = std::fs::read_to_string(&probe_out).unwrap_or_default();
    assert!(
        probe.contains("inhibiting") && !probe.contains("done"),
        "{probe}"
    );
    let early = std::fs::read_to_string(&events).unwrap_or_default();
    assert!(!early.contains("idle"), "idle while inhibited: {early:?}");
    let start = Instant::now();
    while !std::fs::read_to_string(&events)
        .unwrap_or_default()
        .contains("idle")
    {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "never idle after the inhibitor went away"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
