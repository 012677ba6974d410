//! A user picks wr-wm-tiling in their session.toml (`window_manager`): through wrsrvd
//! `--launcher`, wrsessd with PAM, the greeter and a card, their own session starts it as its
//! window manager and it lays out their foot windows; nothing else of theirs may bind the WM
//! protocol.
//!
//! Needs root, pcscd with vsmartcard-vpcd and /etc/pam.d/wayray (`scripts/test` provides them);
//! skipped with a message otherwise.

mod support;

use std::time::Duration;

use support::launcher::*;
use support::*;

#[test]
fn pcsc_session_toml_window_manager_lays_out_the_users_windows() {
    if !is_root() {
        eprintln!("skipped: needs root (useradd, PAM, sessions as another user)");
        return;
    }
    let dir = TempDir::new("wm-session");
    let user = User::create(&format!("wrwm{}", std::process::id() % 100000), "tile-pw");
    let wm = wrsrvd().with_file_name("wr-wm-tiling");
    user.session_toml(&format!(
        "desktop = \"none\"\nwindow_manager = {:?}\nautostart = [\"foot\", \"sleep 1; exec foot\"]\n",
        wm.display().to_string()
    ));
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
            "--- wrsrvd\n{}\n--- wrsessd\n{}\n--- appliance\n{}\n--- sessions\n{}",
            server.log(),
            read(&sessd_log),
            read(&dir.path("a.log")),
            session_logs(&run_dir)
        )
    };
    let script = dir.path("a.script");
    std::fs::write(
        &script,
        format!(
            "wait 4000\ntype {}\nkey tab\ntype tile-pw\nkey enter\nwait 600000\n",
            user.0
        ),
    )
    .unwrap();
    let _card = insert_card(&dir, PORT_A, "0C0FFEE1");
    let _a = appliance(&dir, "a", server.listen, READER_A, &script);

    // The user's session runs wr-wm-tiling as its WM, and it tiles both terminals side by side.
    wait_for(
        "two foot windows tiled by the user's wr-wm-tiling",
        Duration::from_secs(90),
        || {
            let logs = session_logs(&run_dir);
            logs.contains("window manager connected") && logs.contains("wm layout shown windows=2")
        },
        all_logs,
    );
    let logs = session_logs(&run_dir);
    let started = logs
        .lines()
        .find(|l| l.contains("window manager started"))
        .unwrap_or_else(|| panic!("no WM start in the session log\n{}", all_logs()));
    assert!(
        started.contains("wr-wm-tiling"),
        "the session started another WM: {started}"
    );
    // Side by side: two visible foot windows at different x.
    let xs: std::collections::BTreeSet<&str> = logs
        .lines()
        .filter(|l| l.contains("wm window placed") && l.contains("app_id=foot"))
        .filter(|l| l.contains("visible=true"))
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("x=")))
        .collect();
    assert!(
        xs.len() >= 2,
        "not tiled side by side: {xs:?}\n{}",
        all_logs()
    );
    // Only the WM bound the protocol: nothing was refused.
    assert!(!logs.contains("window manager refused"), "{}", all_logs());
}
