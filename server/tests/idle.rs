//! An idle session costs no CPU: with foot on screen and nothing changing, the server's
//! processes (the daemon and the session compositor) and the appliance sleep, apart from the
//! appliance's QUIC keep-alive every 2 s (see appliance/src/transport.rs), which wakes the
//! appliance and the daemon about twice each. Counted as wake-ups (voluntary context switches
//! of every thread), not time, so a loaded machine does not change the verdict.

mod support;

use std::{
    collections::HashMap,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use support::*;

/// How long wake-ups are counted.
const WINDOW: Duration = Duration::from_secs(4);
/// The appliance's keep-alive interval: the one periodic event an idle link keeps.
const KEEP_ALIVE: Duration = Duration::from_secs(2);
/// Wake-ups allowed per keep-alive, per side: its timer or its arrival, the acknowledgement
/// (sent at once or after the ACK delay), and one spare.
const PER_KEEP_ALIVE: u64 = 4;

#[test]
fn an_idle_session_does_not_wake_up() {
    let dir = TempDir::new("idle");
    // foot's cursor does not blink by default; say so, since a blinking cursor is a change on
    // screen (two frames a second).
    let foot_ini = dir.path("foot.ini");
    std::fs::write(&foot_ini, "[cursor]\nblink=no\n").unwrap();
    let foot = format!("foot -c {}", foot_ini.display());
    let mut server = Server::start(
        &dir,
        ServerOpts {
            spawn: &[&foot],
            ..Default::default()
        },
    );
    server.wait_log("mapping toplevel", 1, Duration::from_secs(30));
    let frames = dir.path("appliance-frames.log");
    let appliance = Killed(
        Command::new(wrclient())
            .arg("--server")
            .arg(server.listen.to_string())
            .arg("--state-dir")
            .arg(dir.path("appliance-state"))
            .arg("--frame-log")
            .arg(&frames)
            .args(["--display", "headless", "--exit-after", "120"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start wrclient"),
    );

    // Counted over a window in which the appliance was shown nothing new; foot's first frames
    // (its resize to the appliance's screen) may take a moment on a busy machine.
    let daemon = server.child.id();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut disturbed = 0;
    loop {
        assert!(
            Instant::now() < deadline,
            "the screen never stayed still for {WINDOW:?} ({disturbed} windows saw frames)\n{}",
            server.log()
        );
        let shown = frame_lines(&frames);
        if shown == 0 {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        let server_procs = descendants(daemon);
        let before = Count::take(&server_procs, appliance.0.id());
        std::thread::sleep(WINDOW);
        let after = Count::take(&server_procs, appliance.0.id());
        if frame_lines(&frames) != shown {
            // Something changed on screen during the window: not an idle window, count again.
            disturbed += 1;
            continue;
        }
        let woke = after.minus(&before);
        eprintln!("wake-ups in {WINDOW:?} of an idle session: {woke:?}");
        let keep_alives = WINDOW.as_millis().div_ceil(KEEP_ALIVE.as_millis()) as u64 + 1;
        let allowed = PER_KEEP_ALIVE * keep_alives;
        assert!(
            woke.daemon <= allowed,
            "the daemon woke {} times in {WINDOW:?} of an idle session (allowed {allowed})",
            woke.daemon
        );
        assert!(
            woke.session <= 2,
            "the session compositor woke {} times in {WINDOW:?} with nothing to draw",
            woke.session
        );
        assert!(
            woke.appliance <= allowed,
            "the appliance woke {} times in {WINDOW:?} with nothing to show (allowed {allowed})",
            woke.appliance
        );
        assert!(server.is_running(), "the server died:\n{}", server.log());
        break;
    }
    drop(appliance);
}

/// Wake-ups so far of the daemon's own processes, the session compositor's and the appliance's.
#[derive(Debug, Clone, Copy)]
struct Count {
    daemon: u64,
    session: u64,
    appliance: u64,
}

impl Count {
    /// The `wrsrvd` processes among `server` (the daemon, its helper, `wrsrvd session` and its
    /// spawner), and the appliance; the session's clients (foot, the sound server) are theirs.
    fn take(server: &HashMap<u32, Vec<String>>, appliance: u32) -> Count {
        let mut count = Count {
            daemon: 0,
            session: 0,
            appliance: wakeups(appliance),
        };
        for (pid, argv) in server {
            let is_wrsrvd = argv
                .first()
                .and_then(|a| Path::new(a).file_name())
                .is_some_and(|n| n == "wrsrvd");
            if !is_wrsrvd {
                continue;
            }
            if argv.get(1).is_some_and(|a| a == "session") {
                count.session += wakeups(*pid);
            } else {
                count.daemon += wakeups(*pid);
            }
        }
        count
    }

    fn minus(&self, earlier: &Count) -> Count {
        Count {
            daemon: self.daemon.saturating_sub(earlier.daemon),
            session: self.session.saturating_sub(earlier.session),
            appliance: self.appliance.saturating_sub(earlier.appliance),
        }
    }
}

/// Voluntary context switches of every thread of `pid`: each is the end of one wake-up (a
/// thread that went back to sleep). Preemptions (involuntary) are the machine's load, not ours.
fn wakeups(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .filter_map(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .sum()
}

/// `root` and every process below it, with their command lines.
fn descendants(root: u32) -> HashMap<u32, Vec<String>> {
    let mut parent = HashMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The command name may hold spaces and parentheses: the fields start after the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            parent.insert(pid, ppid);
        }
    }
    let mut found = HashMap::new();
    let mut todo = vec![root];
    while let Some(pid) = todo.pop() {
        let argv = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| {
                b.split(|&c| c == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect()
            })
            .unwrap_or_default();
        found.insert(pid, argv);
        todo.extend(parent.iter().filter(|(_, &p)| p == pid).map(|(&c, _)| c));
    }
    found
}

fn frame_lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// Kills the appliance when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
