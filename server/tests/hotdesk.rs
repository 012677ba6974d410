//! Hot-desking end to end with the real parts: `wrsrvd --launcher`, `wrsessd` with PAM, the
//! `wrlogin` greeter, a test user's own session running foot, two `wrclient` appliances
//! following the two vpcd virtual readers of a real pcscd, and our virtual card (`vcard`).
//!
//! Needs root (useradd, PAM, sessions as another user), pcscd with vsmartcard-vpcd and
//! /etc/pam.d/wayray: `scripts/test` provides them. The test is skipped with a message when not
//! run as root.

mod support;

use std::time::{Duration, Instant};

use support::launcher::*;
use support::*;

/// The whole Sun Ray promise: card in at A → greeter; a wrong password is refused; log in →
/// foot; type a marker; card out → the session is suspended and A asks for a card; card in at
/// B → B shows that very framebuffer (same digest), marker included.
#[test]
fn pcsc_hot_desking_moves_the_session_with_the_card() {
    if !is_root() {
        eprintln!("skipped: needs root (useradd, PAM, sessions as another user)");
        return;
    }
    let dir = TempDir::new("hotdesk");
    let user = User::create(&format!("wrhd{}", std::process::id() % 100000), "s3cret-pw");
    // The user's own output scale; the appliances announce no physical size, so the server's
    // automatic choice would be 1. No default desktop: its panel clock would change the
    // framebuffer this test compares across appliances whenever a minute turns.
    user.session_toml("desktop = \"none\"\nautostart = [\"foot\"]\nscale = 1.25\n");
    let run_dir = dir.path("wayray-run");
    // The default re-attach policy: the PIV card proves its key, so its session comes back
    // without the lock screen.
    let server = Server::start(
        &dir,
        ServerOpts {
            launcher: true,
            extra: &["--run-dir", run_dir.to_str().unwrap()],
            ..Default::default()
        },
    );
    let sessd_log = dir.path("wrsessd.log");
    let _sessd = start_wrsessd(&run_dir, &sessd_log);
    let all_logs = || {
        format!(
            "--- wrsrvd\n{}\n--- wrsessd\n{}\n--- A\n{}\n--- B\n{}",
            server.log(),
            read(&sessd_log),
            read(&dir.path("a.log")),
            read(&dir.path("b.log"))
        )
    };

    // A types a wrong password first, then the right one, then a marker into foot.
    let script_a = dir.path("a.script");
    std::fs::write(
        &script_a,
        format!(
            "wait 4000\ntype {u}\nkey tab\ntype wrong-pw\nkey enter\nwait 3000\n\
             type s3cret-pw\nkey enter\nwait 6000\ntype echo HOTDESK-MARKER\nkey enter\n",
            u = user.0
        ),
    )
    .unwrap();
    let script_b = dir.path("b.script");
    std::fs::write(&script_b, "wait 600000\n").unwrap();

    let card = insert_card(&dir, PORT_A, "04A1B2C3");
    let _a = appliance(&dir, "a", server.listen, READER_A, &script_a);
    let _b = appliance(&dir, "b", server.listen, READER_B, &script_b);
    wait_for(
        "the greeter on A",
        Duration::from_secs(30),
        || server.log().contains("starting a greeter"),
        all_logs,
    );
    wait_for(
        "the wrong password to be refused",
        Duration::from_secs(30),
        || server.log().contains("login failed"),
        all_logs,
    );
    assert!(
        !server.log().contains("starting the user's session"),
        "a wrong password started a session\n{}",
        all_logs()
    );
    wait_for(
        "the user's session",
        Duration::from_secs(30),
        || server.log().contains("starting the user's session"),
        all_logs,
    );
    // foot maps in the user's session (its log is under the run dir).
    let session_logs = || session_logs(&run_dir);
    wait_for(
        "foot in the user's session",
        Duration::from_secs(30),
        || session_logs().contains("mapping toplevel"),
        || format!("{}\n--- sessions\n{}", all_logs(), session_logs()),
    );
    // session.toml's scale reached the user's session compositor (the greeter's window may have
    // satisfied the wait above before the user's session was ready).
    wait_for(
        "the user's session with session.toml's scale",
        Duration::from_secs(30),
        || {
            strip_ansi(&session_logs())
                .lines()
                .any(|l| l.contains("session compositor ready") && l.contains("scale=1.25"))
        },
        || format!("{}\n--- sessions\n{}", all_logs(), session_logs()),
    );
    // The marker is typed 6 s after login; give foot time to show it.
    std::thread::sleep(Duration::from_secs(9));
    let a_frames = read_frame_log(&dir.path("a-frames.log"));
    let before = a_frames.last().expect("A showed frames").clone();

    // Card out at A: the session is suspended, A asks for a card.
    drop(card);
    wait_for(
        "the session to be detached from A",
        Duration::from_secs(15),
        || server.log().contains("token removed"),
        all_logs,
    );
    wait_for(
        "A to ask for a card",
        Duration::from_secs(5),
        || {
            read(&dir.path("a.log")).matches("Insert your card").count() > 0
                || read(&dir.path("a.log")).contains("presenting a new token token=None")
        },
        all_logs,
    );

    // Card in at B: B shows the same framebuffer A showed last.
    let started = Instant::now();
    let _card_b = insert_card(&dir, PORT_B, "04A1B2C3");
    wait_for(
        "B to show the session",
        Duration::from_secs(20),
        || {
            read_frame_log(&dir.path("b-frames.log"))
                .iter()
                .any(|f| f.digest == before.digest)
        },
        || {
            format!(
                "A's last frame {} {}\nB frames {:?}\n{}",
                before.seq,
                before.digest,
                read_frame_log(&dir.path("b-frames.log"))
                    .iter()
                    .map(|f| f.digest.clone())
                    .collect::<Vec<_>>(),
                all_logs()
            )
        },
    );
    eprintln!(
        "card in at B → A's framebuffer on B: {:?} (including pcscd noticing the card)",
        started.elapsed()
    );
    // `/metrics` timed both card-ins to their first frame: A connecting with its card, and the
    // card inserted at B (a token change on a live connection).
    let metrics = server.metrics();
    let card_ins = metrics.lines().find_map(|l| {
        l.strip_prefix("wayray_card_in_to_frame_seconds_count ")?
            .parse::<f64>()
            .ok()
    });
    assert!(card_ins >= Some(2.0), "{metrics}");
    assert!(
        !metrics.to_ascii_lowercase().contains("04a1b2c3") && !metrics.contains(&user.0),
        "{metrics}"
    );
    // Exactly one user session was ever started.
    assert_eq!(
        server.log().matches("starting the user's session").count(),
        1,
        "{}",
        all_logs()
    );
    let user_session = wradm_sessions(&run_dir)
        .into_iter()
        .find(|s| s["kind"] == "user")
        .unwrap_or_else(|| panic!("wradm lists no user session\n{}", all_logs()));
    assert_eq!(user_session["state"], "active", "{user_session}");

    // Another card at A (another person) never reaches this session: it gets its own greeter.
    let _other = insert_card(&dir, PORT_A, "0BADCAFE");
    wait_for(
        "a second greeter for the other card",
        Duration::from_secs(20),
        || server.log().matches("starting a greeter").count() >= 2,
        all_logs,
    );
    std::thread::sleep(Duration::from_secs(2));
    let a_after = read_frame_log(&dir.path("a-frames.log"));
    assert!(
        a_after
            .iter()
            .skip(a_frames.len())
            .all(|f| f.digest != before.digest),
        "the other card's appliance showed the user's session\n{}",
        all_logs()
    );

    // B dies mid-session (SIGKILL, no goodbye): the session is suspended and loses nothing.
    drop(_b);
    wait_for(
        "the session to be suspended after B vanished",
        Duration::from_secs(20),
        || {
            wradm_sessions(&run_dir)
                .iter()
                .any(|s| s["kind"] == "user" && s["state"] == "suspended")
        },
        all_logs,
    );
    let _b2 = appliance(&dir, "b2", server.listen, READER_B, &script_b);
    wait_for(
        "a new appliance at B to show the same session again",
        Duration::from_secs(20),
        || {
            read_frame_log(&dir.path("b2-frames.log"))
                .iter()
                .any(|f| f.digest == before.digest)
        },
        all_logs,
    );
}

/// The daemon restarts under a running session: the session process reconnects, the new daemon
/// re-adopts it from the store with its token binding, and the appliance gets it back unchanged.
#[test]
fn pcsc_daemon_restart_readopts_running_sessions() {
    if !is_root() {
        eprintln!("skipped: needs root (useradd, PAM, sessions as another user)");
        return;
    }
    let dir = TempDir::new("hotdesk-restart");
    let user = User::create(&format!("wrhr{}", std::process::id() % 100000), "s3cret-pw");
    let run_dir = dir.path("wayray-run");
    let listen = {
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let opts = || ServerOpts {
        launcher: true,
        listen: Some(listen),
        extra: &[],
        ..Default::default()
    };
    let run_dir_arg = run_dir.to_str().unwrap().to_string();
    // About re-adoption; the lock on re-attach is lock.rs's.
    let extra_refs = ["--run-dir", run_dir_arg.as_str()];
    let server = Server::start(
        &dir,
        ServerOpts {
            extra: &extra_refs,
            ..opts()
        },
    );
    let sessd_log = dir.path("wrsessd.log");
    let _sessd = start_wrsessd(&run_dir, &sessd_log);
    let script = dir.path("a.script");
    std::fs::write(
        &script,
        format!(
            "wait 3000\ntype {u}\nkey tab\ntype s3cret-pw\nkey enter\nwait 5000\ntype echo RESTART-MARKER\nkey enter\n",
            u = user.0
        ),
    )
    .unwrap();
    let _card = insert_card(&dir, PORT_A, "04C0FFEE");
    let _a = appliance(&dir, "a", listen, READER_A, &script);
    let logs = |server: &Server| {
        format!(
            "--- wrsrvd\n{}\n--- wrsessd\n{}\n--- A\n{}",
            server.log(),
            read(&sessd_log),
            read(&dir.path("a.log"))
        )
    };
    wait_for(
        "the user's session",
        Duration::from_secs(40),
        || server.log().contains("starting the user's session"),
        || logs(&server),
    );
    std::thread::sleep(Duration::from_secs(10));
    let before = read_frame_log(&dir.path("a-frames.log"))
        .last()
        .expect("A showed frames")
        .clone();
    let session = wradm_sessions(&run_dir)
        .into_iter()
        .find(|s| s["kind"] == "user")
        .expect("a user session");

    drop(server);
    let shown_before = read_frame_log(&dir.path("a-frames.log")).len();
    let server = Server::start(
        &dir,
        ServerOpts {
            extra: &extra_refs,
            ..opts()
        },
    );
    wait_for(
        "the session process to reconnect",
        Duration::from_secs(20),
        || server.log().contains("reconnect=true"),
        || logs(&server),
    );
    wait_for(
        "A to show the same session again",
        Duration::from_secs(30),
        || {
            read_frame_log(&dir.path("a-frames.log"))
                .iter()
                .skip(shown_before)
                .any(|f| f.digest == before.digest)
        },
        || logs(&server),
    );
    let after = wradm_sessions(&run_dir)
        .into_iter()
        .find(|s| s["kind"] == "user")
        .expect("the user session after the restart");
    assert_eq!(after["id"], session["id"], "{}", logs(&server));
    assert_eq!(after["state"], "active", "{after}");
    assert_eq!(
        server.log().matches("starting the user's session").count(),
        0,
        "the restarted daemon started a new session instead of adopting\n{}",
        logs(&server)
    );
}
