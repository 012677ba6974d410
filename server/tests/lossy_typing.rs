//! Typing over a lossy link through the real path: wrclient's scripted keyboard → the netem
//! relay (20 ms RTT, 10 % of the datagrams lost each way) → wrsrvd → foot running `sh`. On such
//! a link both sides also send datagram copies (input events up, small frames down) besides the
//! streams; every key must still land exactly once and in order, and the appliance must end on
//! the server's final frame, byte for byte.

mod support;

use std::{
    io::BufRead,
    net::SocketAddr,
    process::{Command, Stdio},
    time::Duration,
};

use support::launcher::Killed;
use support::*;

/// Starts the relay in front of `server` with `impair` flags; returns it and its address.
fn relay(server: SocketAddr, impair: &[&str]) -> (Killed, SocketAddr) {
    let mut relay = Command::new(example("netem"))
        .arg("--to")
        .arg(server.to_string())
        .args(impair)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start netem (cargo build -p wayray-appliance --examples)");
    let mut line = String::new();
    std::io::BufReader::new(relay.stdout.take().expect("netem's stdout"))
        .read_line(&mut line)
        .expect("netem's address");
    let at = line
        .trim()
        .strip_prefix("NETEM_LISTEN=")
        .unwrap_or_else(|| panic!("netem said {line:?}"))
        .parse()
        .expect("netem's address");
    (Killed(relay), at)
}

#[test]
fn typing_over_a_lossy_link_lands_once_in_order_and_the_picture_matches() {
    let dir = TempDir::new("lossy-typing");
    let out = dir.path("out");
    let server = Server::start(
        &dir,
        ServerOpts {
            spawn: &["foot sh"],
            ..Default::default()
        },
    );
    server.wait_log("mapping toplevel", 1, Duration::from_secs(30));
    let (_relay, relay_at) = relay(
        server.listen,
        &["--delay-ms", "10", "--loss", "10", "--seed", "7"],
    );
    // Every letter and digit, some twice in a row (a doubled key would show), 40 ms apart as a
    // person types: sparse traffic, where a lost packet is noticed late.
    let text = "the-quick-brown-fox-jumps-over-the-lazy-dog-0123456789-aabbcc";
    let script = dir.path("input.script");
    std::fs::write(
        &script,
        format!(
            "wait 500\ntype-delay 40\ntype echo {text} > {}\nkey enter\nwait 2000\nexit\n",
            out.display()
        ),
    )
    .unwrap();
    let run = run_appliance(
        &dir,
        relay_at,
        &[
            "--input-script",
            script.to_str().unwrap(),
            "--exit-after",
            "50",
        ],
    );
    let log = strip_ansi(&String::from_utf8_lossy(&run.stderr));
    assert!(run.status.success(), "wrclient failed:\n{log}");
    let logs = || format!("--- wrclient\n{log}\n--- wrsrvd\n{}", server.log());

    let typed = std::fs::read_to_string(&out).unwrap_or_default();
    assert_eq!(
        typed,
        format!("{text}\n"),
        "the shell got other text than was typed over the lossy link\n{}",
        logs()
    );

    // The copies were made: the link was lossy enough for both sides to send them.
    assert!(
        log.contains("input events copied to datagrams"),
        "the appliance sent no input copy over a 10 % lossy link\n{}",
        logs()
    );
    assert!(
        server.log().contains("frames copied to datagrams"),
        "the server sent no frame copy over a 10 % lossy link\n{}",
        logs()
    );

    // Every frame shown is one the server rendered, byte for byte, each once and in order, and
    // the last one is the server's last.
    let sent = server.frames();
    let shown = read_frame_log(&dir.path("appliance-frames.log"));
    assert!(
        shown.len() > text.len() / 2,
        "only {} frames shown",
        shown.len()
    );
    assert_shown_frames_were_sent(&sent, &shown);
    let last_sent = sent.iter().map(|f| f.seq).max();
    assert_eq!(
        shown.last().map(|f| f.seq),
        last_sent,
        "the appliance did not end on the server's final frame\n{}",
        logs()
    );
}
