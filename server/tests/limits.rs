//! Per-session limits end to end, with the real parts: `wrsrvd --launcher`, `wrsessd` (PAM,
//! cgroups), the `wrlogin` greeter, real test users logging in from real `wrclient` appliances
//! (fixed `--token`s), a memory hog and an animated client (`video_client`) in their sessions.
//!
//! - a session forked into a memory hog is killed alone, the audit log says why, and another
//!   session keeps its frame rate; `wradm show` reports CPU time and memory;
//! - a greeter that cannot start is retried with backoff, and the appliance shows why;
//! - a `wrsessd` killed with SIGKILL is replaced by one that re-adopts its sessions, and
//!   PAM's session stack (pam_limits) applied to them.
//!
//! Needs root and cgroups (useradd, PAM, cgroup directories); skipped with a message otherwise.

mod support;

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use support::launcher::{is_root, read, wait_for, Killed, User};
use support::*;

const PASSWORD: &str = "s3cret-pw";

/// A PAM service of the test's own (auth + account with pam_unix, and a session stack with
/// pam_limits reading `limits_conf`), removed on drop.
struct PamService(String);

impl PamService {
    fn create(name: &str, limits_conf: &Path) -> PamService {
        fs::write(
            Path::new("/etc/pam.d").join(name),
            format!(
                "auth required pam_unix.so nodelay\naccount required pam_unix.so\n\
                 session required pam_limits.so conf={}\n",
                limits_conf.display()
            ),
        )
        .unwrap();
        PamService(name.to_owned())
    }
}

impl Drop for PamService {
    fn drop(&mut self) {
        let _ = fs::remove_file(Path::new("/etc/pam.d").join(&self.0));
    }
}

/// The test's cgroup parent in every hierarchy, removed (when empty) on drop.
struct CgroupParent(String);

impl CgroupParent {
    fn dirs(&self) -> Vec<PathBuf> {
        ["memory", "cpu", "cpuacct", "pids", "unified", ""]
            .iter()
            .map(|h| Path::new("/sys/fs/cgroup").join(h).join(&self.0))
            .filter(|d| d.is_dir())
            .collect()
    }
}

impl Drop for CgroupParent {
    /// Whatever a failed test left: processes killed, session groups and the parent removed.
    fn drop(&mut self) {
        for dir in self.dirs() {
            let children: Vec<PathBuf> = fs::read_dir(&dir)
                .map(|entries| {
                    entries
                        .flatten()
                        .map(|e| e.path())
                        .filter(|p| p.is_dir())
                        .collect()
                })
                .unwrap_or_default();
            for child in children {
                let deadline = Instant::now() + Duration::from_secs(3);
                while fs::remove_dir(&child).is_err() && Instant::now() < deadline {
                    let procs = fs::read_to_string(child.join("cgroup.procs")).unwrap_or_default();
                    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                        // SAFETY: kill has no memory-safety preconditions.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            let _ = fs::remove_dir(dir);
        }
    }
}

fn wrsessd(
    run_dir: &Path,
    config: &Path,
    pam_service: &str,
    wrlogin: Option<&Path>,
    log: &Path,
) -> Killed {
    let mut cmd = Command::new(wrsrvd().with_file_name("wrsessd"));
    cmd.arg("--run-dir")
        .arg(run_dir)
        .arg("--config")
        .arg(config)
        .args(["--greeter-user", "nobody", "--pam-service", pam_service]);
    if let Some(wrlogin) = wrlogin {
        cmd.arg("--wrlogin").arg(wrlogin);
    }
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Killed(
        cmd.env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start wrsessd"),
    )
}

/// An appliance presenting `token`, typing `script`.
fn appliance(dir: &TempDir, name: &str, server: &Server, token: &str, script: &str) -> Killed {
    let script_path = dir.path(&format!("{name}.script"));
    fs::write(&script_path, script).unwrap();
    Killed(
        Command::new(wrclient())
            .arg("--server")
            .arg(server.listen.to_string())
            .arg("--state-dir")
            .arg(dir.path(&format!("{name}-state")))
            .arg("--frame-log")
            .arg(dir.path(&format!("{name}-frames.log")))
            .args(["--screen", "640x480", "--token", token])
            .arg("--input-script")
            .arg(&script_path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.path(&format!("{name}.log"))).unwrap())
            .spawn()
            .expect("start wrclient"),
    )
}

/// A server config under which the appliances' fixed tokens (`--token`, no card behind them,
/// so nothing to prove) get sessions: `unproven_cards = "lock"`.
fn accept_fixed_tokens(dir: &TempDir) -> std::path::PathBuf {
    let path = dir.path("wrsrvd.toml");
    fs::write(&path, "unproven_cards = \"lock\"\n").unwrap();
    path
}

/// Logs in at the greeter, and once more a while later in case the first keys came before the
/// greeter was up (a loaded machine): Escape clears the form first. If the first login worked,
/// the second one types harmlessly into the user's session.
fn login_script(user: &User) -> String {
    let login = format!("type {}\nkey tab\ntype {PASSWORD}\nkey enter\n", user.0);
    format!("wait 6000\n{login}wait 12000\nkey escape\n{login}wait 600000\n")
}

fn wradm(run_dir: &Path, args: &[&str]) -> String {
    let out = Command::new(wrsrvd().with_file_name("wradm"))
        .arg("--socket")
        .arg(run_dir.join("admin.sock"))
        .args(args)
        .output()
        .expect("run wradm");
    assert!(out.status.success(), "wradm {args:?} failed: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sessions(run_dir: &Path) -> Vec<serde_json::Value> {
    serde_json::from_str(&wradm(run_dir, &["sessions", "--json"])).expect("JSON")
}

fn user_session(run_dir: &Path, user: &User) -> Option<serde_json::Value> {
    sessions(run_dir)
        .into_iter()
        .find(|s| s["kind"] == "user" && s["user"] == user.0.as_str())
}

/// `detail` of the audit rows of kind `event` for `user`.
fn audit_details(state_dir: &Path, event: &str, user: &str) -> Vec<String> {
    let db = rusqlite::Connection::open(state_dir.join("sessions.db")).expect("open the store");
    let mut stmt = db
        .prepare("SELECT detail FROM audit WHERE event = ?1 AND user = ?2 ORDER BY seq")
        .unwrap();
    stmt.query_map([event, user], |r| r.get::<_, Option<String>>(0))
        .unwrap()
        .filter_map(|r| r.ok().flatten())
        .collect()
}

fn frames(dir: &TempDir, name: &str) -> usize {
    read_frame_log(&dir.path(&format!("{name}-frames.log"))).len()
}

fn pid_alive(pid: u64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn writable_script(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// Two users' sessions; in one, a client turns into a memory hog. That session alone is killed
/// (the audit log names the limit), while an animated client in the other keeps drawing at a
/// comparable frame rate; `wradm show` reports the survivor's CPU time and memory.
#[test]
fn memory_hog_session_is_killed_alone() {
    if !is_root() {
        eprintln!("skipped: needs root (useradd, PAM, cgroups)");
        return;
    }
    let dir = TempDir::new("limits-hog");
    fs::set_permissions(&dir.0, fs::Permissions::from_mode(0o755)).unwrap();
    let tag = std::process::id() % 100000;
    let hog_user = User::create(&format!("wrlh{tag}"), PASSWORD);
    let calm_user = User::create(&format!("wrlc{tag}"), PASSWORD);
    let go = dir.path("go");
    let hog = dir.path("hog.sh");
    writable_script(
        &hog,
        &format!(
            "#!/bin/sh\nwhile [ ! -e {} ]; do sleep 0.2; done\nexec python3 -c '\n\
             import time\nhog = []\nwhile True:\n    hog.append(b\"x\" * (8 << 20))\n    time.sleep(0.1)\n'\n",
            go.display()
        ),
    );
    hog_user.autostart_only(&[hog.to_str().unwrap()]);
    let video = wrsrvd()
        .parent()
        .unwrap()
        .join("examples")
        .join("video_client");
    assert!(video.exists(), "build the examples first");
    calm_user.autostart_only(&[&format!(
        "{} --size 320x240 --fps 30 --seconds 600",
        video.display()
    )]);

    let cgroup = CgroupParent(format!("wayray-test-hog-{}", std::process::id()));
    let config = dir.path("wrsessd.toml");
    fs::write(
        &config,
        format!(
            "cgroup_parent = \"{}\"\n[limits.user]\nmemory_max_mib = 400\ncpu_weight = 100\ntasks_max = 512\n",
            cgroup.0
        ),
    )
    .unwrap();
    let limits_conf = dir.path("limits.conf");
    fs::write(&limits_conf, "").unwrap();
    let pam = PamService::create(&format!("wayray-hog-{}", std::process::id()), &limits_conf);

    let run_dir = dir.path("wayray-run");
    let server = Server::start(
        &dir,
        ServerOpts {
            launcher: true,
            extra: &[
                "--run-dir",
                run_dir.to_str().unwrap(),
                "--config",
                accept_fixed_tokens(&dir).to_str().unwrap(),
            ],
            ..Default::default()
        },
    );
    let sessd_log = dir.path("wrsessd.log");
    let mut sessd = wrsessd(&run_dir, &config, &pam.0, None, &sessd_log);
    let logs = || {
        format!(
            "--- wrsrvd\n{}\n--- wrsessd\n{}\n--- hog appliance\n{}\n--- calm appliance\n{}",
            server.log(),
            read(&sessd_log),
            read(&dir.path("hog.log")),
            read(&dir.path("calm.log"))
        )
    };
    let _hog_app = appliance(&dir, "hog", &server, "tok-hog", &login_script(&hog_user));
    let _calm_app = appliance(&dir, "calm", &server, "tok-calm", &login_script(&calm_user));
    wait_for(
        "both users' sessions",
        Duration::from_secs(60),
        || {
            user_session(&run_dir, &hog_user).is_some()
                && user_session(&run_dir, &calm_user).is_some()
        },
        logs,
    );
    // The animated client is drawing on the calm appliance.
    let shown = frames(&dir, "calm");
    wait_for(
        "the video client's frames on the calm appliance",
        Duration::from_secs(60),
        || frames(&dir, "calm") > shown + 30,
        logs,
    );

    // Frame rate before the hog.
    let window = Duration::from_secs(4);
    let start = frames(&dir, "calm");
    std::thread::sleep(window);
    let before = frames(&dir, "calm") - start;
    let before_rate = before as f64 / window.as_secs_f64();

    // Release the hog; measure while it grows until its session is ended.
    let hog_session = user_session(&run_dir, &hog_user).unwrap();
    let hog_id = hog_session["id"].as_str().unwrap().to_string();
    let hog_pid = hog_session["pid"].as_u64().unwrap();
    let calm_session = user_session(&run_dir, &calm_user).unwrap();
    let calm_pid = calm_session["pid"].as_u64().unwrap();
    fs::write(&go, "").unwrap();
    let hog_started = Instant::now();
    let start = frames(&dir, "calm");
    wait_for(
        "the hog's session to be ended",
        Duration::from_secs(60),
        || user_session(&run_dir, &hog_user).is_none(),
        logs,
    );
    let during_time = hog_started.elapsed();
    let during = frames(&dir, "calm") - start;
    let during_rate = during as f64 / during_time.as_secs_f64();
    eprintln!(
        "calm session: {before} frames in {window:?} before the hog ({before_rate:.1}/s), \
         {during} in {during_time:?} while it grew ({during_rate:.1}/s)"
    );

    // The hog's session died of its memory limit, and the audit log says so.
    wait_for(
        "the audit row",
        Duration::from_secs(10),
        || {
            audit_details(&server.dir.join("server-state"), "destroyed", &hog_user.0)
                .iter()
                .any(|d| d.contains("memory limit of 400 MiB exceeded"))
        },
        || {
            format!(
                "{:?}\n{}",
                audit_details(&server.dir.join("server-state"), "destroyed", &hog_user.0),
                logs()
            )
        },
    );
    assert!(!pid_alive(hog_pid), "the hog's compositor still runs");
    for dir in cgroup.dirs() {
        assert!(
            !dir.join(&hog_id).exists(),
            "the hog's cgroup {} was not removed",
            dir.display()
        );
    }

    // Nothing else died: the other session, its compositor, the daemon, the launcher.
    let calm_after = user_session(&run_dir, &calm_user).expect("the calm session survived");
    assert_eq!(calm_after["id"], calm_session["id"]);
    assert!(pid_alive(calm_pid), "the calm session's compositor died");
    assert!(sessd.running(), "wrsessd died\n{}", logs());
    // (The daemon answers `wradm` below.)
    // …and it kept drawing at a comparable rate (a generous bound: 2 shared cores).
    assert!(during > 0, "no frames while the hog grew\n{}", logs());
    assert!(
        during_rate >= before_rate * 0.25,
        "frame rate fell from {before_rate:.1}/s to {during_rate:.1}/s while the other session \
         hogged memory"
    );
    let shown = frames(&dir, "calm");
    wait_for(
        "frames after the hog",
        Duration::from_secs(10),
        || frames(&dir, "calm") > shown + 10,
        || server.log(),
    );

    // `wradm show` reports the survivor's CPU time and memory from its cgroup.
    let calm_id = calm_session["id"].as_str().unwrap();
    let shown = wradm(&run_dir, &["show", calm_id]);
    assert!(shown.contains("cpu_time:"), "{shown}");
    assert!(shown.contains("limit 400.0 MiB"), "{shown}");
    let json: serde_json::Value =
        serde_json::from_str(&wradm(&run_dir, &["show", calm_id, "--json"])).unwrap();
    let usage = &json["usage"];
    assert!(usage["cpu_usec"].as_u64().unwrap_or(0) > 0, "{json}");
    assert!(usage["memory_current"].as_u64().unwrap_or(0) > 0, "{json}");
    assert!(
        usage["memory_peak"].as_u64() >= usage["memory_current"].as_u64(),
        "{json}"
    );
    assert_eq!(usage["memory_max"].as_u64(), Some(400 << 20), "{json}");
    // So does `/metrics`, labelled by session id only: no user name in it.
    let metrics = server.metrics();
    let value = |name: &str| -> f64 {
        let series = format!("{name}{{session=\"{calm_id}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&series)?.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{metrics}"))
    };
    assert!(value("wayray_session_cpu_seconds_total") > 0.0);
    assert!(value("wayray_session_memory_bytes") > 0.0);
    assert!(!metrics.contains(&calm_user.0), "{metrics}");

    drop(sessd);
}

/// A greeter that cannot start (its program is missing) is retried with backoff — a handful of
/// starts in several seconds, not thousands — and the appliance is told why it sees no desktop.
#[test]
fn greeter_that_cannot_start_is_retried_with_backoff() {
    if !is_root() {
        eprintln!("skipped: needs root (wrsessd switches users)");
        return;
    }
    let dir = TempDir::new("limits-backoff");
    let cgroup = CgroupParent(format!("wayray-test-backoff-{}", std::process::id()));
    let config = dir.path("wrsessd.toml");
    fs::write(&config, format!("cgroup_parent = \"{}\"\n", cgroup.0)).unwrap();
    let run_dir = dir.path("wayray-run");
    let server = Server::start(
        &dir,
        ServerOpts {
            launcher: true,
            extra: &[
                "--run-dir",
                run_dir.to_str().unwrap(),
                "--config",
                accept_fixed_tokens(&dir).to_str().unwrap(),
            ],
            ..Default::default()
        },
    );
    let sessd_log = dir.path("wrsessd.log");
    let _sessd = wrsessd(
        &run_dir,
        &config,
        "wayray",
        Some(&dir.path("no-such-wrlogin")),
        &sessd_log,
    );
    let _app = appliance(&dir, "a", &server, "tok-backoff", "wait 600000\n");
    let logs = || {
        format!(
            "--- wrsrvd\n{}\n--- wrsessd\n{}\n--- appliance\n{}",
            server.log(),
            read(&sessd_log),
            read(&dir.path("a.log"))
        )
    };
    wait_for(
        "the first greeter request",
        Duration::from_secs(30),
        || server.log().contains("starting a greeter"),
        logs,
    );
    let first = Instant::now();
    std::thread::sleep(Duration::from_secs(8));
    let starts = server.log().matches("starting a greeter").count();
    let elapsed = first.elapsed();
    eprintln!("{starts} greeter starts in {elapsed:?}");
    // 1 s, 2 s, 4 s between tries: t = 0, 1, 3, 7 (+ scheduling slack).
    assert!(
        (3..=6).contains(&starts),
        "{starts} greeter starts in {elapsed:?}: not backing off\n{}",
        logs()
    );
    wait_for(
        "the appliance to show why",
        Duration::from_secs(10),
        || {
            let log = read(&dir.path("a.log"));
            log.contains("server notice")
                && log.contains("No desktop: the greeter session ended at start")
        },
        logs,
    );
}

/// `wrsessd` is killed with SIGKILL under a running user session; a new one re-adopts it: the
/// session keeps running, and `wradm kill` still ends it, with the daemon hearing the exit.
/// The session got PAM's session stack (pam_limits' open-files limit).
#[test]
fn restarted_wrsessd_readopts_its_sessions() {
    if !is_root() {
        eprintln!("skipped: needs root (useradd, PAM, cgroups)");
        return;
    }
    let dir = TempDir::new("limits-readopt");
    fs::set_permissions(&dir.0, fs::Permissions::from_mode(0o755)).unwrap();
    let user = User::create(&format!("wrla{}", std::process::id() % 100000), PASSWORD);
    let nofile = dir.path("nofile");
    let probe = dir.path("probe.sh");
    fs::write(&nofile, "").unwrap();
    fs::set_permissions(&nofile, fs::Permissions::from_mode(0o666)).unwrap();
    writable_script(
        &probe,
        &format!(
            "#!/bin/sh\nulimit -Hn > {}\nexec sleep 600\n",
            nofile.display()
        ),
    );
    user.autostart_only(&[probe.to_str().unwrap()]);
    let limits_conf = dir.path("limits.conf");
    fs::write(&limits_conf, format!("{} hard nofile 777\n", user.0)).unwrap();
    let pam = PamService::create(
        &format!("wayray-adopt-{}", std::process::id()),
        &limits_conf,
    );
    let cgroup = CgroupParent(format!("wayray-test-adopt-{}", std::process::id()));
    let config = dir.path("wrsessd.toml");
    fs::write(&config, format!("cgroup_parent = \"{}\"\n", cgroup.0)).unwrap();
    let run_dir = dir.path("wayray-run");
    let server = Server::start(
        &dir,
        ServerOpts {
            launcher: true,
            extra: &[
                "--run-dir",
                run_dir.to_str().unwrap(),
                "--config",
                accept_fixed_tokens(&dir).to_str().unwrap(),
            ],
            ..Default::default()
        },
    );
    let sessd_log = dir.path("wrsessd.log");
    let mut sessd = wrsessd(&run_dir, &config, &pam.0, None, &sessd_log);
    let logs = || {
        format!(
            "--- wrsrvd\n{}\n--- wrsessd\n{}\n--- appliance\n{}",
            server.log(),
            read(&sessd_log),
            read(&dir.path("a.log"))
        )
    };
    let _app = appliance(&dir, "a", &server, "tok-adopt", &login_script(&user));
    wait_for(
        "the user's session",
        Duration::from_secs(60),
        || user_session(&run_dir, &user).is_some_and(|s| s["wayland_display"].is_string()),
        logs,
    );
    // pam_open_session ran: pam_limits' limit reached the session's clients, not wrsessd.
    wait_for(
        "the probe client",
        Duration::from_secs(30),
        || !read(&nofile).trim().is_empty(),
        logs,
    );
    assert_eq!(read(&nofile).trim(), "777", "{}", logs());
    let sessd_nofile = fs::read_to_string(format!("/proc/{}/limits", sessd.0.id())).unwrap();
    assert!(
        !sessd_nofile
            .lines()
            .any(|l| l.starts_with("Max open files") && l.contains(" 777 ")),
        "pam_limits changed wrsessd's own limits:\n{sessd_nofile}"
    );
    let session = user_session(&run_dir, &user).unwrap();
    let id = session["id"].as_str().unwrap().to_string();
    let pid = session["pid"].as_u64().unwrap();

    // SIGKILL: no chance to clean up.
    let _ = sessd.0.kill();
    let _ = sessd.0.wait();
    std::thread::sleep(Duration::from_secs(1));
    assert!(pid_alive(pid), "the session died with wrsessd");
    let _sessd2 = wrsessd(&run_dir, &config, &pam.0, None, &sessd_log);
    wait_for(
        "the new wrsessd to adopt the session",
        Duration::from_secs(20),
        || read(&sessd_log).contains("adopted a session of the earlier launcher"),
        logs,
    );
    wait_for(
        "the new wrsessd to connect to the daemon",
        Duration::from_secs(20),
        || server.log().matches("session launcher connected").count() >= 2,
        logs,
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(pid_alive(pid), "the session died after the restart");
    assert_eq!(
        user_session(&run_dir, &user).map(|s| s["id"].clone()),
        Some(serde_json::Value::String(id.clone())),
        "{}",
        logs()
    );

    // The adopted session is still ours to end, and the daemon hears its exit.
    wradm(&run_dir, &["kill", &id]);
    wait_for(
        "the session to end",
        Duration::from_secs(20),
        || !pid_alive(pid) && user_session(&run_dir, &user).is_none(),
        logs,
    );
    wait_for(
        "the launcher to report the exit",
        Duration::from_secs(10),
        || read(&sessd_log).matches("session exited").count() >= 1,
        logs,
    );
    let destroyed = audit_details(&server.dir.join("server-state"), "destroyed", &user.0);
    assert!(
        !destroyed.is_empty(),
        "no audit row for the end\n{}",
        logs()
    );
    for dir in cgroup.dirs() {
        assert!(
            !dir.join(&id).exists(),
            "the adopted session's cgroup {} was not removed",
            dir.display()
        );
    }
}

/// Without any cgroup hierarchy (wrsessd in a mount namespace with none mounted), sessions
/// still start, and the audit log says they run without limits and why.
#[test]
fn sessions_start_unconfined_without_cgroups_and_the_audit_log_says_so() {
    if !is_root() {
        eprintln!("skipped: needs root (mount namespaces, wrsessd switches users)");
        return;
    }
    let dir = TempDir::new("limits-unconfined");
    let run_dir = dir.path("wayray-run");
    let server = Server::start(
        &dir,
        ServerOpts {
            launcher: true,
            extra: &[
                "--run-dir",
                run_dir.to_str().unwrap(),
                "--config",
                accept_fixed_tokens(&dir).to_str().unwrap(),
            ],
            ..Default::default()
        },
    );
    let sessd_log = dir.path("wrsessd.log");
    let _sessd = Killed(
        Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c"])
            .arg(
                "for m in $(awk '$9 ~ /^cgroup/ {print $5}' /proc/self/mountinfo | sort -r); do \
                 umount -l \"$m\"; done; exec \"$0\" \"$@\"",
            )
            .arg(wrsrvd().with_file_name("wrsessd"))
            .arg("--run-dir")
            .arg(&run_dir)
            .arg("--config")
            .arg(dir.path("no-such-config.toml"))
            .args(["--greeter-user", "nobody"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(fs::File::create(&sessd_log).unwrap())
            .spawn()
            .expect("start wrsessd in a mount namespace"),
    );
    let _app = appliance(&dir, "a", &server, "tok-unconfined", "wait 600000\n");
    let logs = || {
        format!(
            "--- wrsrvd\n{}\n--- wrsessd\n{}",
            server.log(),
            read(&sessd_log)
        )
    };
    let unconfined = || -> Vec<String> {
        let Ok(db) = rusqlite::Connection::open(server.dir.join("server-state/sessions.db")) else {
            return Vec::new();
        };
        let Ok(mut stmt) = db.prepare("SELECT detail FROM audit WHERE event = 'unconfined'") else {
            return Vec::new();
        };
        stmt.query_map([], |r| r.get::<_, Option<String>>(0))
            .map(|rows| rows.filter_map(|r| r.ok().flatten()).collect())
            .unwrap_or_default()
    };
    wait_for(
        "the unconfined audit row",
        Duration::from_secs(30),
        || {
            unconfined()
                .iter()
                .any(|d| d.contains("no usable cgroup hierarchy"))
        },
        logs,
    );
    // …and the greeter really runs.
    wait_for(
        "the greeter's compositor to connect",
        Duration::from_secs(30),
        || server.log().contains("session process connected"),
        logs,
    );
    assert!(
        read(&sessd_log).contains("sessions will run WITHOUT memory, CPU and process limits"),
        "{}",
        logs()
    );
}
