//! End-to-end clipboard: real `wl-copy`/`wl-paste` (wl-clipboard) against a real wrsrvd, through
//! data-control, primary selection and the greeter's no-clipboard mode.

mod support;

use std::{
    io::Read,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use support::*;

/// Kills a background client when the test ends, whatever happens.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `wl-copy --foreground` serving `args` (it keeps serving until the selection changes or it is
/// killed); data comes from `stdin_file` if given.
fn wl_copy(server: &Server, args: &[&str], stdin_file: Option<&std::path::Path>) -> Reaper {
    let mut cmd = server.wayland_client("wl-copy");
    cmd.arg("--foreground").args(args);
    match stdin_file {
        Some(path) => cmd.stdin(std::fs::File::open(path).unwrap()),
        None => cmd.stdin(Stdio::null()),
    };
    Reaper(cmd.stdout(Stdio::null()).spawn().expect("start wl-copy"))
}

/// `wl-paste ARGS`, its stdout, or `None` if it failed or hung for `timeout`. The output goes
/// to a file: a pipe nobody reads until the end would stall a large paste.
fn wl_paste(server: &Server, args: &[&str], timeout: Duration) -> Option<Vec<u8>> {
    let out_path = server.dir.join(format!("paste-{}.out", rand_suffix()));
    let child = server
        .wayland_client("wl-paste")
        .args(args)
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start wl-paste");
    let status = wait_with_timeout(child, timeout).status;
    let data = std::fs::read(&out_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    status.success().then_some(data)
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Pastes until the selection set by a just-started wl-copy is there.
fn paste_eventually(server: &Server, args: &[&str], want: &[u8]) -> Vec<u8> {
    let start = Instant::now();
    loop {
        let got = wl_paste(server, args, Duration::from_secs(20)).unwrap_or_default();
        if got == want || start.elapsed() > Duration::from_secs(15) {
            return got;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A wrclient attached in the background (no input), so the session renders and sends frames.
fn background_appliance(dir: &TempDir, server: &Server) -> Reaper {
    let child = std::process::Command::new(wrclient())
        .arg("--server")
        .arg(server.listen.to_string())
        .arg("--state-dir")
        .arg(dir.path("appliance-state"))
        .args(["--exit-after", "120"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start wrclient");
    Reaper(child)
}

fn wait_frames(server: &Server, n: usize) {
    let start = Instant::now();
    while server.frames().len() < n {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "only {} frames sent:\n{}",
            server.frames().len(),
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A 5 MiB image goes from wl-copy to wl-paste byte for byte, through pipes the compositor only
/// hands over, while weston-simple-shm keeps animating: frames keep going out during the
/// transfers (the compositor's loop never waits for the data).
#[test]
fn a_5_mib_image_streams_without_stalling_frames() {
    let dir = TempDir::new("clip-large");
    let server = Server::start(
        &dir,
        ServerOpts {
            spawn: &["weston-simple-shm"],
            ..Default::default()
        },
    );
    server.wait_log("mapping toplevel", 1, Duration::from_secs(30));
    let _appliance = background_appliance(&dir, &server);
    wait_frames(&server, 20);

    let mut data = vec![0u8; 5 * 1024 * 1024];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut data)
        .unwrap();
    let src = dir.path("big.png");
    std::fs::write(&src, &data).unwrap();

    let before_start = (Instant::now(), server.frames().len());
    std::thread::sleep(Duration::from_secs(1));
    let idle_rate =
        (server.frames().len() - before_start.1) as f64 / before_start.0.elapsed().as_secs_f64();

    let _copy = wl_copy(&server, &["--type", "image/png"], Some(&src));
    // The first paste also waits for wl-copy to own the selection.
    let first = paste_eventually(&server, &["--type", "image/png"], &data);
    assert!(first == data, "first paste differs ({} bytes)", first.len());

    let (t0, f0) = (Instant::now(), server.frames().len());
    const PASTES: usize = 5;
    for i in 0..PASTES {
        let got = wl_paste(&server, &["--type", "image/png"], Duration::from_secs(30))
            .unwrap_or_else(|| panic!("paste {i} failed"));
        assert!(got == data, "paste {i} differs: {} bytes", got.len());
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let during = server.frames().len() - f0;
    let rate = during as f64 / elapsed;
    println!(
        "{PASTES} pastes of 5 MiB in {:.0} ms: {during} frames sent during them ({rate:.1}/s), \
         {idle_rate:.1}/s before",
        elapsed * 1000.0
    );
    assert!(
        during > 0,
        "no frame went out during {PASTES} transfers of 5 MiB"
    );
}

#[test]
fn paste_watch_sees_another_clients_selection_and_primary_is_separate() {
    let dir = TempDir::new("clip-watch");
    let server = Server::start(&dir, ServerOpts::default());
    let seen = dir.path("watch.out");
    let _watch = Reaper(
        server
            .wayland_client("wl-paste")
            .args(["--watch", "sh", "-c"])
            .arg(format!(
                "cat >> {}; echo >> {}",
                seen.display(),
                seen.display()
            ))
            .stdout(Stdio::null())
            .spawn()
            .expect("start wl-paste --watch"),
    );
    // Give the watcher time to bind before the first selection.
    std::thread::sleep(Duration::from_millis(500));
    let _one = wl_copy(&server, &["wayray-first"], None);
    let start = Instant::now();
    let wait_for = |needle: &str| loop {
        let text = std::fs::read_to_string(&seen).unwrap_or_default();
        if text.contains(needle) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "wl-paste --watch never saw {needle:?}; it saw {text:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    wait_for("wayray-first");
    let _two = wl_copy(&server, &["wayray-second"], None);
    wait_for("wayray-second");

    let _primary = wl_copy(&server, &["--primary", "wayray-primary"], None);
    let got = paste_eventually(&server, &["--primary", "--no-newline"], b"wayray-primary");
    assert_eq!(String::from_utf8_lossy(&got), "wayray-primary");
    // The regular selection is untouched by the primary one.
    let regular = wl_paste(&server, &["--no-newline"], Duration::from_secs(10)).unwrap();
    assert_eq!(String::from_utf8_lossy(&regular), "wayray-second");
}

/// A greeter session (`--no-clipboard`) offers neither data-control nor primary selection, and
/// what one client copies never reaches another.
#[test]
fn a_session_without_clipboard_advertises_and_gives_nothing() {
    let dir = TempDir::new("clip-greeter");
    let server = Server::start(
        &dir,
        ServerOpts {
            extra: &["--no-clipboard"],
            ..Default::default()
        },
    );
    let info = server
        .wayland_client("wayland-info")
        .output()
        .expect("run wayland-info");
    let globals = String::from_utf8_lossy(&info.stdout);
    assert!(globals.contains("wl_data_device_manager"), "{globals}");
    for hidden in [
        "zwlr_data_control_manager_v1",
        "ext_data_control_manager_v1",
        "zwp_primary_selection_device_manager_v1",
    ] {
        assert!(
            !globals.contains(hidden),
            "{hidden} advertised without a clipboard"
        );
    }
    // wl-copy falls back to a focused surface and wl_data_device; the copy must not be
    // pasteable by anyone.
    let _copy = wl_copy(&server, &["greeter-secret"], None);
    std::thread::sleep(Duration::from_millis(500));
    let got = wl_paste(&server, &["--no-newline"], Duration::from_secs(5)).unwrap_or_default();
    assert!(
        !String::from_utf8_lossy(&got).contains("greeter-secret"),
        "the selection leaked: {got:?}"
    );
}
