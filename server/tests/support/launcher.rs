//! The real parts of per-token sessions, for end-to-end tests: PAM test users, `wrsessd`, the
//! virtual smart card in pcscd's vpcd readers, `wrclient` appliances following those readers,
//! and `wradm`. Needs root; [`is_root`] lets a test skip itself with a message otherwise.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use super::{strip_ansi, wrclient, wrsrvd, TempDir};

pub const READER_A: &str = "Virtual PCD 00 00";
pub const READER_B: &str = "Virtual PCD 00 01";
pub const PORT_A: &str = "35963";
pub const PORT_B: &str = "35964";
/// A MIFARE-like ATR; with a UID the token is `atr….<uid>`.
pub const ATR: &str = "3B8F8001804F0CA000000306030001000000006A";

/// Whether the test runs as root (users, PAM and other users' sessions need it).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { geteuid() == 0 }
}

extern "C" {
    fn geteuid() -> u32;
}

/// A local user with a password, removed (with its processes) on drop.
pub struct User(pub String);

impl User {
    pub fn create(name: &str, password: &str) -> User {
        let _ = Command::new("userdel").args(["-r", "-f", name]).output();
        let ok = Command::new("useradd")
            .args(["-m", "-s", "/bin/sh", name])
            .status()
            .expect("useradd");
        assert!(ok.success(), "useradd {name} failed");
        let mut chpasswd = Command::new("chpasswd")
            .stdin(Stdio::piped())
            .spawn()
            .expect("chpasswd");
        use std::io::Write;
        chpasswd
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{name}:{password}\n").as_bytes())
            .unwrap();
        assert!(chpasswd.wait().unwrap().success());
        User(name.to_owned())
    }

    /// Writes a session.toml with no desktop, only these clients.
    pub fn autostart_only(&self, autostart: &[&str]) {
        let list: Vec<String> = autostart.iter().map(|c| format!("{c:?}")).collect();
        self.session_toml(&format!(
            "desktop = \"none\"\nautostart = [{}]\n",
            list.join(", ")
        ));
    }

    /// Writes the user's `~/.config/wayray/session.toml`.
    pub fn session_toml(&self, text: &str) {
        let config = format!("/home/{}/.config/wayray", self.0);
        std::fs::create_dir_all(&config).unwrap();
        std::fs::write(format!("{config}/session.toml"), text).unwrap();
        let chown = Command::new("chown")
            .args([
                "-R",
                &format!("{0}:{0}", self.0),
                &format!("/home/{}/.config", self.0),
            ])
            .status()
            .expect("chown");
        assert!(chown.success());
    }
}

impl Drop for User {
    fn drop(&mut self) {
        let _ = Command::new("pkill")
            .args(["-KILL", "-u", &self.0])
            .status();
        let _ = Command::new("userdel").args(["-r", "-f", &self.0]).output();
    }
}

/// A child process killed on drop.
pub struct Killed(pub Child);

impl Killed {
    /// Whether it has not exited yet.
    pub fn running(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn vcard() -> PathBuf {
    let path = wrsrvd().parent().unwrap().join("examples").join("vcard");
    assert!(
        path.exists(),
        "{} not built: `cargo build --workspace --examples` (scripts/test does)",
        path.display()
    );
    path
}

/// Puts a PIV card with `uid` into the vpcd reader on `port`; its key lives in `dir` (one file
/// per UID, so the same card keeps its key). Dropping it pulls the card out.
pub fn insert_card(dir: &TempDir, port: &str, uid: &str) -> Killed {
    insert_card_with(port, uid, Some(&card_key(dir, uid)))
}

/// The key file of the PIV card with `uid` (made by the card when it is first inserted).
pub fn card_key(dir: &TempDir, uid: &str) -> PathBuf {
    dir.path(&format!("card-{uid}.key"))
}

/// Puts a card into the reader on `port`: a PIV card with the key in `piv_key`, or a memory
/// card that cannot prove anything.
pub fn insert_card_with(port: &str, uid: &str, piv_key: Option<&Path>) -> Killed {
    let mut cmd = Command::new(vcard());
    cmd.args(["--port", port, "--atr", ATR, "--uid", uid]);
    if let Some(key) = piv_key {
        cmd.arg("--piv-key").arg(key);
    }
    let child = cmd.stdout(Stdio::null()).spawn().expect("start vcard");
    Killed(child)
}

/// A `wrclient` following `reader` and requiring a card, with a frame log and an input script.
pub fn appliance(
    dir: &TempDir,
    name: &str,
    server: std::net::SocketAddr,
    reader: &str,
    script: &Path,
) -> Killed {
    appliance_with(dir, name, server, reader, script, &[])
}

/// [`appliance`] with `extra` flags (e.g. its audio backends).
pub fn appliance_with(
    dir: &TempDir,
    name: &str,
    server: std::net::SocketAddr,
    reader: &str,
    script: &Path,
    extra: &[&str],
) -> Killed {
    let child = Command::new(wrclient())
        .arg("--server")
        .arg(server.to_string())
        .arg("--state-dir")
        .arg(dir.path(&format!("{name}-state")))
        .arg("--frame-log")
        .arg(dir.path(&format!("{name}-frames.log")))
        .args([
            "--screen",
            "800x600",
            "--card-reader",
            reader,
            "--require-card",
        ])
        .arg("--input-script")
        .arg(script)
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path(&format!("{name}.log"))).unwrap())
        .spawn()
        .expect("start wrclient");
    Killed(child)
}

/// The session launcher, as root, with `nobody` as the greeter user.
pub fn start_wrsessd(run_dir: &Path, log: &Path) -> Killed {
    Killed(
        Command::new(wrsrvd().with_file_name("wrsessd"))
            .arg("--run-dir")
            .arg(run_dir)
            .args(["--greeter-user", "nobody"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("start wrsessd"),
    )
}

/// Polls `check` every 100 ms; fails with `log()` after `timeout`.
pub fn wait_for(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> bool,
    log: impl Fn() -> String,
) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < timeout,
            "timed out waiting for {what}\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A log file's text without colour codes; empty when it does not exist yet.
pub fn read(path: &Path) -> String {
    strip_ansi(&std::fs::read_to_string(path).unwrap_or_default())
}

/// Every session compositor's log under the daemon's run dir.
pub fn session_logs(run_dir: &Path) -> String {
    std::fs::read_dir(run_dir.join("sessions"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| read(&e.path()))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// `wradm sessions --json` against the daemon.
pub fn wradm_sessions(run_dir: &Path) -> Vec<serde_json::Value> {
    let out = Command::new(wrsrvd().with_file_name("wradm"))
        .arg("--socket")
        .arg(run_dir.join("admin.sock"))
        .args(["sessions", "--json"])
        .output()
        .expect("run wradm");
    assert!(out.status.success(), "wradm failed: {out:?}");
    serde_json::from_slice(&out.stdout).expect("wradm --json prints JSON")
}
