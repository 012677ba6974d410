//! The smart card inside the session, end to end with the real parts: `wrsrvd --launcher`,
//! `wrsessd` with PAM, two `wrclient` appliances following the two vpcd readers of a real
//! pcscd, our virtual PIV card, and PC/SC clients in the session linked against the system's
//! libpcsclite (`opensc-tool`, and the `pcsc_probe` example) pointed at the session's socket
//! by the `PCSCLITE_CSOCK_NAME` the session gave its clients.
//!
//! Needs root (useradd, PAM, clients run as the session's user), pcscd with vsmartcard-vpcd,
//! opensc and /etc/pam.d/wayray: `scripts/test` provides them. Skipped with a message when not
//! run as root.

mod support;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use support::launcher::*;
use support::*;

/// SELECT of the PIV application, which our virtual card answers with `61 xx`/`90 00` data.
const SELECT_PIV: &str = "00A4040009A0000003080000100000";
/// GET DATA of the card's UID (vpcd readers' `FF CA`).
const GET_UID: &str = "FFCA000000";

fn probe() -> PathBuf {
    let path = wrsrvd()
        .parent()
        .unwrap()
        .join("examples")
        .join("pcsc_probe");
    assert!(
        path.exists(),
        "{} not built: `cargo build --workspace --examples` (scripts/test does)",
        path.display()
    );
    path
}

/// `program args…` as `user` with the session's PC/SC socket.
fn in_session(user: &str, socket: &Path, program: &Path, args: &[&str]) -> Output {
    Command::new("runuser")
        .args(["-u", user, "--", "env"])
        .arg(format!("PCSCLITE_CSOCK_NAME={}", socket.display()))
        .arg(program)
        .args(args)
        .output()
        .expect("runuser")
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn readers(user: &str, socket: &Path) -> Vec<String> {
    let out = in_session(user, socket, &probe(), &["readers"]);
    assert!(
        out.status.success(),
        "pcsc_probe readers failed\n{}",
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Card in at A: the session's `opensc-tool` reads A's card and exchanges an APDU with it,
/// while the appliance itself still reads the reader (shared, even against an exclusive
/// connect); another user cannot use the session's socket; card out: no reader; card in at B:
/// the same session sees B's reader and card.
#[test]
fn pcsc_in_the_session_follows_the_card() {
    if !is_root() {
        eprintln!("skipped: needs root (useradd, PAM, sessions as another user)");
        return;
    }
    if Command::new("opensc-tool")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("opensc-tool is missing: apt-get install opensc (scripts/lib.sh does)");
    }
    let dir = TempDir::new("pcsc-session");
    let user = User::create(&format!("wrpc{}", std::process::id() % 100000), "s3cret-pw");
    let marker = format!("/home/{}/pcsc-socket", user.0);
    user.autostart_only(&[&format!("sh -c 'echo $PCSCLITE_CSOCK_NAME > {marker}'")]);
    let run_dir = dir.path("wayray-run");
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
            "--- wrsrvd\n{}\n--- wrsessd\n{}\n--- A\n{}\n--- B\n{}\n--- sessions\n{}",
            server.log(),
            read(&sessd_log),
            read(&dir.path("a.log")),
            read(&dir.path("b.log")),
            session_logs(&run_dir)
        )
    };
    let script_a = dir.path("a.script");
    std::fs::write(
        &script_a,
        format!(
            "wait 4000\ntype {u}\nkey tab\ntype s3cret-pw\nkey enter\nwait 600000\n",
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
        "the user's session to tell its clients the PC/SC socket",
        Duration::from_secs(60),
        || {
            std::fs::read_to_string(&marker)
                .map(|s| !s.trim().is_empty())
                .unwrap_or(false)
        },
        all_logs,
    );
    let socket = PathBuf::from(std::fs::read_to_string(&marker).unwrap().trim());
    assert!(
        socket.starts_with(&run_dir),
        "the session's PC/SC socket {} is not the daemon's",
        socket.display()
    );
    wait_for(
        "the daemon to serve the session's PC/SC socket",
        Duration::from_secs(20),
        || socket.exists(),
        all_logs,
    );

    // A's reader, and A's card, through the session.
    assert_eq!(
        readers(&user.0, &socket),
        vec![READER_A.to_string()],
        "{}",
        all_logs()
    );
    let opensc = Path::new("opensc-tool");
    let out = in_session(&user.0, &socket, opensc, &["--atr"]);
    let atr_seen = String::from_utf8_lossy(&out.stdout)
        .replace(':', "")
        .to_uppercase();
    assert!(
        out.status.success() && atr_seen.contains(ATR),
        "opensc-tool --atr in the session did not read A's card\n{}\n{}",
        text(&out),
        all_logs()
    );
    let out = in_session(&user.0, &socket, opensc, &["--send-apdu", SELECT_PIV]);
    let said = String::from_utf8_lossy(&out.stdout).to_uppercase();
    assert!(
        out.status.success() && said.contains("SW1=0X90, SW2=0X00"),
        "SELECT PIV through the session's PC/SC\n{}",
        text(&out)
    );

    // Another user cannot use this session's socket.
    let out = in_session("nobody", &socket, &probe(), &["readers"]);
    assert!(
        !out.status.success(),
        "another user used the session's PC/SC socket\n{}",
        text(&out)
    );

    // A session program holding the card exclusively does not lock the appliance out: the
    // appliance's pcscd is shared, and a local client there still talks to the card.
    let holder = Command::new("runuser")
        .args(["-u", &user.0, "--", "env"])
        .arg(format!("PCSCLITE_CSOCK_NAME={}", socket.display()))
        .arg(probe())
        .args([
            "apdu",
            SELECT_PIV,
            "--exclusive",
            "--transaction",
            "--hold",
            "6",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the holding client");
    std::thread::sleep(Duration::from_secs(2));
    let local = Command::new(probe())
        .args(["apdu", GET_UID, "--reader", READER_A])
        .env_remove("PCSCLITE_CSOCK_NAME")
        .output()
        .expect("local pcsc_probe");
    assert!(
        local.status.success() && String::from_utf8_lossy(&local.stdout).contains("04A1B2C39000"),
        "the appliance's reader was locked by the session's exclusive connect\n{}",
        text(&local)
    );
    let held = holder.wait_with_output().expect("holding client");
    assert!(
        held.status.success() && String::from_utf8_lossy(&held.stdout).contains("9000"),
        "the exclusive client in the session\n{}",
        text(&held)
    );

    // Card out at A: the session is detached and sees no reader.
    drop(card);
    wait_for(
        "the session to be detached from A",
        Duration::from_secs(15),
        || server.log().contains("token removed"),
        all_logs,
    );
    wait_for(
        "the session's PC/SC to show no reader",
        Duration::from_secs(10),
        || readers(&user.0, &socket).is_empty(),
        all_logs,
    );
    let out = in_session(&user.0, &socket, opensc, &["--atr"]);
    assert!(
        !out.status.success(),
        "opensc-tool read a card while detached\n{}",
        text(&out)
    );

    // Card in at B: the same session sees B's reader and the card in it.
    let _card_b = insert_card(&dir, PORT_B, "04A1B2C3");
    wait_for(
        "the session's PC/SC to show B's reader",
        Duration::from_secs(30),
        || readers(&user.0, &socket) == vec![READER_B.to_string()],
        all_logs,
    );
    let out = in_session(&user.0, &socket, &probe(), &["apdu", GET_UID]);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success()
            && said.contains(&format!("atr {ATR}"))
            && said.contains("04A1B2C39000"),
        "the card at B through the session\n{}\n{}",
        text(&out),
        all_logs()
    );
    let out = in_session(&user.0, &socket, opensc, &["--atr"]);
    let atr_seen = String::from_utf8_lossy(&out.stdout)
        .replace(':', "")
        .to_uppercase();
    assert!(
        out.status.success() && atr_seen.contains(ATR),
        "opensc-tool --atr at B\n{}",
        text(&out)
    );
    // A program waiting for reader changes when the appliance vanishes (SIGKILL, no goodbye)
    // is answered at once (the reader is gone), not left hanging.
    let waiter = Command::new("runuser")
        .args(["-u", &user.0, "--", "env"])
        .arg(format!("PCSCLITE_CSOCK_NAME={}", socket.display()))
        .arg(probe())
        .arg("wait")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the waiting client");
    std::thread::sleep(Duration::from_secs(2));
    drop(_b);
    let waited = wait_with_timeout(waiter, Duration::from_secs(20));
    let said = String::from_utf8_lossy(&waited.stdout).to_string();
    assert!(
        waited.status.success() && said.contains("waiting") && said.contains("changed"),
        "a wait in the session when the appliance vanished\n{}\n{}",
        text(&waited),
        all_logs()
    );
    assert!(readers(&user.0, &socket).is_empty(), "{}", all_logs());

    // Exactly one user session: the card's session moved, it was not started again.
    assert_eq!(
        server.log().matches("starting the user's session").count(),
        1,
        "{}",
        all_logs()
    );
}
