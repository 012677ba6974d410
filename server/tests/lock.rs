//! The `reattach` policy end to end with the real parts: `wrsrvd --launcher`, `wrsessd` with PAM,
//! the `wrlogin` greeter, a test user's session whose client paints a colour no lock screen has,
//! and the session's locker (`wrlogin --lock`). The appliance is a raw QUIC peer from the test
//! support that decodes every frame it receives, so the test sees each pixel the server sent.
//!
//! Needs root (useradd, PAM, sessions as another user) and /etc/pam.d/wayray (`scripts/test`
//! installs it); skipped with a message when not run as root.

mod support;

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use support::launcher::{is_root, read, wait_for, Killed, User};
use support::*;
use wayray_protocol::{ClientControl, Decoder, DisplayMessage, InputMessage};

/// The client's colour, 0xRRGGBB: nothing of the greeter, the lock screen or the bare
/// background has it, so one such pixel on the appliance is a piece of the desktop.
const SECRET: u32 = 0xff00ff;
const PASSWORD: &str = "lockpw42";
/// The background of the greeter's and the lock screen's form (wrlogin's render.rs).
const LOCK_BACKGROUND: u32 = 0x1d2330;

/// A server in launcher mode with wrsessd, and a user whose session runs only the colour probe.
struct Setup {
    dir: TempDir,
    server: Server,
    run_dir: PathBuf,
    user: User,
    _sessd: Killed,
}

impl Setup {
    /// `prefix`: the test user's name before the pid (each test its own user).
    fn start(tag: &str, prefix: &str, reattach: &str) -> Setup {
        let dir = TempDir::new(tag);
        let user = User::create(
            &format!("{prefix}{}", std::process::id() % 100000),
            PASSWORD,
        );
        let probe = wrsrvd()
            .parent()
            .unwrap()
            .join("examples")
            .join("input_probe");
        assert!(probe.exists(), "{} not built", probe.display());
        let config = format!("/home/{}/.config/wayray", user.0);
        std::fs::create_dir_all(&config).unwrap();
        std::fs::write(
            format!("{config}/session.toml"),
            format!(
                "desktop = \"none\"\nautostart = [\"{} secret 1280 800 {SECRET:06x}\"]\n",
                probe.display()
            ),
        )
        .unwrap();
        let chown = Command::new("chown")
            .args([
                "-R",
                &format!("{0}:{0}", user.0),
                &format!("/home/{}/.config", user.0),
            ])
            .status()
            .expect("chown");
        assert!(chown.success());
        let run_dir = dir.path("wayray-run");
        let server = Server::start(
            &dir,
            ServerOpts {
                launcher: true,
                extra: &[
                    "--run-dir",
                    run_dir.to_str().unwrap(),
                    "--reattach",
                    reattach,
                ],
                ..Default::default()
            },
        );
        let sessd = Killed(
            Command::new(wrsrvd().with_file_name("wrsessd"))
                .arg("--run-dir")
                .arg(&run_dir)
                .args(["--greeter-user", "nobody"])
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.path("wrsessd.log")).unwrap())
                .spawn()
                .expect("start wrsessd"),
        );
        Setup {
            dir,
            server,
            run_dir,
            user,
            _sessd: sessd,
        }
    }

    fn session_logs(&self) -> String {
        std::fs::read_dir(self.run_dir.join("sessions"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| read(&e.path()))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    }

    fn logs(&self) -> String {
        format!(
            "--- wrsrvd\n{}\n--- wrsessd\n{}\n--- sessions\n{}",
            self.server.log(),
            read(&self.dir.path("wrsessd.log")),
            self.session_logs()
        )
    }
}

/// A raw appliance (token `pseudo.<name>`) with its decoded framebuffer.
struct Screen {
    peer: RawAppliance,
    input: quinn::SendStream,
    decoder: Decoder,
    frames: usize,
}

impl Screen {
    async fn attach(setup: &Setup, name: &str) -> Screen {
        let mut peer = RawAppliance::attach(setup.server.listen, name).await;
        let input = peer.open_input().await;
        Screen {
            peer,
            input,
            decoder: Decoder::new(),
            frames: 0,
        }
    }

    /// Applies (and acknowledges) every frame arriving within `wait`; after each one, `check`
    /// sees the framebuffer. Returns early once `done` holds for it.
    async fn watch(
        &mut self,
        wait: Duration,
        mut check: impl FnMut(&Decoder),
        done: impl Fn(&Decoder) -> bool,
    ) -> bool {
        let deadline = Instant::now() + wait;
        while let Some(msg) = self.peer.next_display(deadline).await {
            let DisplayMessage::Frame(update) = msg else {
                continue;
            };
            // Another session (greeter → desktop) starts its own sequence with a key frame.
            if update.key {
                self.decoder = Decoder::new();
            }
            self.decoder.apply(&update).expect("a frame that decodes");
            self.frames += 1;
            self.peer
                .send(&ClientControl::FrameAck { seq: update.seq })
                .await;
            check(&self.decoder);
            if done(&self.decoder) {
                return true;
            }
        }
        false
    }

    async fn key(&mut self, keycode: u32) {
        for pressed in [true, false] {
            send_input(
                &mut self.input,
                &InputMessage::Key {
                    time_ms: 0,
                    keycode,
                    pressed,
                },
            )
            .await;
        }
    }

    async fn type_text(&mut self, text: &str) {
        for c in text.chars() {
            self.key(evdev(c)).await;
        }
    }
}

/// evdev keycodes of lowercase letters and digits on a US keyboard.
fn evdev(c: char) -> u32 {
    const ROWS: [(&str, u32); 4] = [
        ("1234567890", 2),
        ("qwertyuiop", 16),
        ("asdfghjkl", 30),
        ("zxcvbnm", 44),
    ];
    ROWS.iter()
        .find_map(|(row, first)| row.find(c).map(|i| first + i as u32))
        .unwrap_or_else(|| panic!("no key for {c:?}"))
}
const KEY_TAB: u32 = 15;
const KEY_ENTER: u32 = 28;

fn count_colour(d: &Decoder, colour: u32) -> usize {
    d.pixels()
        .chunks_exact(4)
        .filter(|p| u32::from_le_bytes([p[0], p[1], p[2], 0]) == colour)
        .count()
}

/// Logs in through the greeter on a fresh appliance named `name` and waits until the desktop
/// (the colour) is on its screen; then the appliance leaves.
async fn log_in_and_leave(setup: &Setup, name: &str) {
    let mut screen = Screen::attach(setup, name).await;
    let logs = || setup.logs();
    wait_for(
        "the greeter",
        Duration::from_secs(30),
        || setup.session_logs().contains("greeter shown"),
        logs,
    );
    // The form on screen: the greeter's window is mapped and has the keyboard.
    let form = screen
        .watch(
            Duration::from_secs(30),
            |_| {},
            |d| count_colour(d, LOCK_BACKGROUND) > 500_000,
        )
        .await;
    assert!(form, "the greeter's form never showed\n{}", logs());
    screen.type_text(&setup.user.0).await;
    screen.key(KEY_TAB).await;
    screen.type_text(PASSWORD).await;
    screen.key(KEY_ENTER).await;
    let shown = screen
        .watch(
            Duration::from_secs(40),
            |_| {},
            |d| count_colour(d, SECRET) > 100_000,
        )
        .await;
    assert!(
        shown,
        "the desktop never showed after the login\n{}",
        logs()
    );
    assert!(
        !setup
            .session_logs()
            .contains("session locked for a re-attach"),
        "the attach right after the login locked\n{}",
        logs()
    );
    screen.peer.conn.close(0u32.into(), b"leaving");
    wait_for(
        "the session to be suspended",
        Duration::from_secs(20),
        || setup.server.log().contains("appliance disconnected"),
        logs,
    );
}

/// Default policy, pseudo-token: log in, the client paints its colour, the appliance leaves, a
/// new appliance with the same token attaches. Until the right password, not one frame it gets
/// has a pixel of the desktop; it shows the lock form; a locker killed meanwhile is replaced
/// and the session stays locked; a wrong password keeps it locked; the right one brings the
/// desktop back.
#[test]
fn a_reattached_pseudo_token_session_is_locked_until_the_password() {
    if !is_root() {
        eprintln!("skipped: needs root (useradd, PAM, sessions as another user)");
        return;
    }
    let setup = Setup::start("lock", "wrlk", "auto");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        log_in_and_leave(&setup, "locktest").await;
        let logs = || setup.logs();

        let mut screen = Screen::attach(&setup, "locktest").await;
        let mut leaks = 0usize;
        let mut no_leak = |d: &Decoder| leaks += count_colour(d, SECRET);
        // The lock form: its background over most of the screen.
        let form = screen
            .watch(Duration::from_secs(30), &mut no_leak, |d| {
                count_colour(d, LOCK_BACKGROUND) > 500_000
            })
            .await;
        assert!(form, "the lock form never showed\n{}", logs());
        assert!(
            setup
                .session_logs()
                .contains("session locked for a re-attach"),
            "{}",
            logs()
        );
        assert!(
            setup.session_logs().contains("lock screen shown"),
            "{}",
            logs()
        );

        // The locker crashes: the session stays locked and the compositor starts another.
        let locker_pid: i32 = setup
            .session_logs()
            .lines()
            .filter(|l| l.contains("started the locker"))
            .find_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("pid=")))
            .and_then(|pid| pid.parse().ok())
            .unwrap_or_else(|| panic!("no locker pid in the log\n{}", logs()));
        // SAFETY: kill has no memory preconditions; the pid is the locker the session started.
        unsafe { libc::kill(locker_pid, libc::SIGKILL) };
        let mut relocked = false;
        for _ in 0..40 {
            screen
                .watch(Duration::from_millis(500), &mut no_leak, |_| false)
                .await;
            if setup.session_logs().matches("lock screen shown").count() >= 2 {
                relocked = true;
                break;
            }
        }
        assert!(relocked, "no new locker after the crash\n{}", logs());
        assert!(
            setup
                .session_logs()
                .contains("the locker exited and the session is still locked"),
            "{}",
            logs()
        );
        let form = screen
            .watch(Duration::from_secs(10), &mut no_leak, |d| {
                count_colour(d, LOCK_BACKGROUND) > 500_000
            })
            .await;
        assert!(
            form || count_colour(&screen.decoder, LOCK_BACKGROUND) > 500_000,
            "the new locker's form is not shown\n{}",
            logs()
        );

        // A wrong password: refused, still locked.
        screen.type_text("wrongpw1").await;
        screen.key(KEY_ENTER).await;
        let mut failed = false;
        for _ in 0..40 {
            screen
                .watch(Duration::from_millis(500), &mut no_leak, |_| false)
                .await;
            if setup.server.log().contains("unlock failed") {
                failed = true;
                break;
            }
        }
        assert!(failed, "the wrong password was not refused\n{}", logs());
        // The form shows the refusal; still no pixel of the desktop.
        screen
            .watch(Duration::from_secs(3), &mut no_leak, |_| false)
            .await;
        let frames_before_unlock = screen.frames;
        assert!(frames_before_unlock > 0);
        assert_eq!(
            leaks, 0,
            "{leaks} desktop pixels reached the appliance before the unlock\n{}",
            logs()
        );

        // The right password: the desktop comes back.
        screen.type_text(PASSWORD).await;
        screen.key(KEY_ENTER).await;
        let back = screen
            .watch(
                Duration::from_secs(30),
                |_| {},
                |d| count_colour(d, SECRET) > 100_000,
            )
            .await;
        assert!(back, "the desktop did not come back after the unlock\n{}", logs());
        assert!(setup.server.log().contains("session unlocked"), "{}", logs());
        // The audit log has the failed and the good unlock, with the user and the token.
        let db = rusqlite::Connection::open_with_flags(
            setup.dir.path("server-state").join("sessions.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open the session store");
        let rows: Vec<(String, String, String, String)> = db
            .prepare(
                "SELECT event, user, token, detail FROM audit \
                 WHERE detail LIKE 'unlock%' ORDER BY seq",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!(rows[0].0, "auth_failed", "{rows:?}");
        assert!(rows[0].3.starts_with("unlock: "), "{rows:?}");
        assert_eq!(rows[1].0, "authenticated", "{rows:?}");
        for (_, user, token, _) in &rows {
            assert_eq!(user, &setup.user.0);
            assert_eq!(token, "pseudo.locktest");
        }
        eprintln!(
            "{frames_before_unlock} frames before the unlock, none with a desktop pixel; then the desktop"
        );
    });
}

/// `reattach = "direct"`: the same re-attach shows the desktop at once, no lock.
#[test]
fn reattach_direct_shows_the_desktop_without_a_lock() {
    if !is_root() {
        eprintln!("skipped: needs root (useradd, PAM, sessions as another user)");
        return;
    }
    let setup = Setup::start("lock-direct", "wrld", "direct");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        log_in_and_leave(&setup, "directtest").await;
        let mut screen = Screen::attach(&setup, "directtest").await;
        let back = screen
            .watch(
                Duration::from_secs(20),
                |_| {},
                |d| count_colour(d, SECRET) > 100_000,
            )
            .await;
        assert!(back, "the desktop did not come back\n{}", setup.logs());
        assert!(
            !setup
                .session_logs()
                .contains("session locked for a re-attach"),
            "{}",
            setup.logs()
        );
    });
}
