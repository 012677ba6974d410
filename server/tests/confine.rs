//! Confinement (README.md, "Confinement"): the daemon and the session compositor run under their
//! seccomp filters (`Seccomp: 2` in /proc/PID/status), the daemon as the `wayray` user, while
//! the session's clients, started through the compositor's spawner, run unfiltered: foot,
//! firefox-esr and xterm (through Xwayland) open their windows and the appliance shows the
//! session, and a program started after the filter went on (fuzzel on a tap of Super) is not
//! bound by it either.

mod support;

use std::{
    path::Path,
    time::{Duration, Instant},
};

use support::*;

const TIMEOUT: Duration = Duration::from_secs(180);

/// A field of /proc/PID/status, e.g. `Seccomp` → "2".
fn status_field(pid: u32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("no process {pid}: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .trim()
        .to_string()
}

/// Pids of processes named `comm` whose environment has `WAYLAND_DISPLAY=display` (this test's
/// session's clients, not another test's).
fn clients_named(comm: &str, display: &str) -> Vec<u32> {
    let want = format!("WAYLAND_DISPLAY={display}");
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let name = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if name.trim() != comm {
            continue;
        }
        let env = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        if env.split(|b| *b == 0).any(|v| v == want.as_bytes()) {
            pids.push(pid);
        }
    }
    pids
}

fn wait_for_clients(comm: &str, display: &str) -> Vec<u32> {
    let start = Instant::now();
    loop {
        let pids = clients_named(comm, display);
        if !pids.is_empty() {
            return pids;
        }
        assert!(start.elapsed() < TIMEOUT, "no {comm} client of the session");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The shared session compositor's pid, from the daemon's log.
fn session_pid(server: &Server) -> u32 {
    server.wait_log("started the shared session", 1, TIMEOUT);
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains("started the shared session"))
        .unwrap();
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("pid="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no pid= in {line}"))
}

fn firefox_command(dir: &TempDir) -> String {
    let profile = dir.path("firefox-profile");
    std::fs::create_dir_all(&profile).unwrap();
    std::fs::write(
        profile.join("user.js"),
        [
            "user_pref(\"browser.aboutwelcome.enabled\", false);",
            "user_pref(\"browser.shell.checkDefaultBrowser\", false);",
            "user_pref(\"browser.startup.homepage_override.mstone\", \"ignore\");",
            "user_pref(\"datareporting.policy.dataSubmissionEnabled\", false);",
            "user_pref(\"toolkit.telemetry.reportingpolicy.firstRun\", false);",
            "user_pref(\"app.update.enabled\", false);",
            "",
        ]
        .join("\n"),
    )
    .unwrap();
    let page = dir.path("page.html");
    std::fs::write(
        &page,
        "<!doctype html><title>confined</title><body style=background:#3a6>confined</body>",
    )
    .unwrap();
    format!(
        "MOZ_ENABLE_WAYLAND=1 HOME={home} exec firefox-esr --no-remote --new-instance --profile {profile} file://{page}",
        home = dir.path("home").display(),
        profile = profile.display(),
        page = page.display(),
    )
}

fn last_frames_match(dir: &TempDir) {
    let appliance = read_frame_log(&dir.path("appliance-frames.log"));
    let server = read_frame_log(&dir.path("server-frames.log"));
    let last = appliance.last().expect("the appliance showed frames");
    assert!(
        server.contains(last),
        "the appliance's last frame {last:?} is not one the server rendered"
    );
}

#[test]
fn confined_session_runs_foot_firefox_and_xterm() {
    let dir = TempDir::new("confine");
    let firefox = firefox_command(&dir);
    let server = Server::start(
        &dir,
        ServerOpts {
            spawn: &["exec foot", "exec xterm -geometry 80x10", &firefox],
            extra: &["--size", "1280x800", "--fixed-size", "--desktop"],
            ..Default::default()
        },
    );
    let display = server.wayland_display.clone();
    let session = session_pid(&server);

    // The daemon left root and runs under its filter; so does the session compositor.
    let daemon = server.child.id();
    server.wait_log("seccomp filter installed process=\"daemon\"", 1, TIMEOUT);
    assert_eq!(status_field(daemon, "Seccomp"), "2", "daemon unfiltered");
    let wayray_uid = std::process::Command::new("id")
        .args(["-u", "wayray"])
        .output()
        .expect("id -u wayray");
    let wayray_uid = String::from_utf8_lossy(&wayray_uid.stdout)
        .trim()
        .to_string();
    assert!(
        status_field(daemon, "Uid").starts_with(&format!("{wayray_uid}\t")),
        "daemon still root: Uid {}",
        status_field(daemon, "Uid")
    );
    server.wait_log(
        "seccomp filter installed process=\"session compositor\"",
        1,
        TIMEOUT,
    );
    assert_eq!(
        status_field(session, "Seccomp"),
        "2",
        "compositor unfiltered"
    );

    // All three windows map under the confined compositor: foot's and firefox's as Wayland
    // toplevels, xterm's through Xwayland.
    server.wait_log("mapping x11 window", 1, TIMEOUT);
    server.wait_log("mapping toplevel", 2, TIMEOUT);
    for comm in ["foot", "xterm", "firefox-esr"] {
        for pid in wait_for_clients(comm, &display) {
            assert_eq!(
                status_field(pid, "Seccomp"),
                "0",
                "{comm} ({pid}) is bound by the compositor's filter"
            );
        }
    }

    // A program the session starts after its filter went on: the launcher on a tap of Super.
    let script = "wait 1500\nkey leftmeta\nwait 3000\nexit\n";
    run_appliance_script(&dir, &server, "launcher.script", script, &[]);
    server.wait_log("opening the launcher", 1, TIMEOUT);
    for pid in wait_for_clients("fuzzel", &display) {
        assert_eq!(status_field(pid, "Seccomp"), "0", "fuzzel ({pid}) filtered");
    }
    // The appliance showed what the confined session rendered.
    last_frames_match(&dir);
    assert!(
        !server.log().contains("SIGSYS"),
        "something was killed by its filter:\n{}",
        server.log()
    );
    assert!(
        Path::new(&format!("/proc/{session}")).exists(),
        "the compositor died"
    );
}

#[test]
fn seccomp_false_installs_no_filter() {
    let dir = TempDir::new("confine-off");
    let server = Server::start(
        &dir,
        ServerOpts {
            spawn: &["exec foot"],
            extra: &["--seccomp", "false"],
            ..Default::default()
        },
    );
    let session = session_pid(&server);
    server.wait_log("mapping toplevel", 1, TIMEOUT);
    assert_eq!(status_field(server.child.id(), "Seccomp"), "0");
    assert_eq!(status_field(session, "Seccomp"), "0");
    assert!(server.log().contains("seccomp is off"));
}
