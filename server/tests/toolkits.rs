//! GTK 4 and Qt 6 applications on their Wayland backends, driven from the appliance: each
//! starts, takes text typed at the appliance (with a German keymap, so the server's keymap is
//! what the toolkit decodes), and exits cleanly; `gtk4-widget-factory` starts and closes with
//! exit status 0 when the window manager's Alt+F4 asks it to.

mod support;

use std::{
    path::PathBuf,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use support::*;

fn app(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/apps")).join(name)
}

/// Waits for `child` to exit on its own; returns its stdout.
fn exits_cleanly(what: &str, child: Child, timeout: Duration) -> String {
    let start = Instant::now();
    let out = wait_with_timeout(child, timeout);
    assert!(
        start.elapsed() < timeout,
        "{what} did not exit within {timeout:?}"
    );
    assert!(
        out.status.success(),
        "{what} exited with {}:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Starts `cmd` in the session, types `text` + Enter into its field, and checks it printed it.
fn entry_takes_typed_text(
    dir: &TempDir,
    server: &Server,
    mapped: usize,
    mut cmd: std::process::Command,
    what: &str,
) {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {what}: {e}"));
    server.wait_log("mapping toplevel", mapped, Duration::from_secs(60));
    // `de`: y and z swap, so the text only survives if the toolkit got the server's keymap.
    let text = "zylinder Qy-42";
    run_appliance_script(
        dir,
        server,
        &format!("{what}.script"),
        &format!("wait 1500\nkeymap de\ntype {text}\nkey enter\nwait 500\nexit\n"),
        &[],
    );
    let printed = exits_cleanly(what, child, Duration::from_secs(30));
    assert_eq!(printed.trim_end(), text, "{what} got different text");
}

#[test]
fn gtk4_and_qt6_apps_take_input_and_close_cleanly() {
    let dir = TempDir::new("toolkits");
    let server = Server::start(
        &dir,
        ServerOpts {
            extra: &["--size", "1280x800", "--fixed-size"],
            ..Default::default()
        },
    );

    let mut gtk = server.wayland_client("/usr/bin/python3");
    gtk.arg(app("gtk_entry.py")).env("GDK_BACKEND", "wayland");
    entry_takes_typed_text(&dir, &server, 1, gtk, "GTK 4 entry");

    let mut qt = server.wayland_client("/usr/bin/python3");
    qt.arg(app("qt_entry.py")).env("QT_QPA_PLATFORM", "wayland");
    entry_takes_typed_text(&dir, &server, 2, qt, "Qt 6 entry");

    let factory = server
        .wayland_client("gtk4-widget-factory")
        .env("GDK_BACKEND", "wayland")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start gtk4-widget-factory");
    server.wait_log("mapping toplevel", 3, Duration::from_secs(60));
    run_appliance_script(
        &dir,
        &server,
        "factory.script",
        "wait 2000\ncombo alt+f4\nwait 1000\nexit\n",
        &[],
    );
    exits_cleanly("gtk4-widget-factory", factory, Duration::from_secs(30));
}
