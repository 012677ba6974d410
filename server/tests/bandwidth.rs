//! A per-appliance bandwidth cap from the config holds an animating client's stream under the
//! cap: frames keep coming (at a lower rate, damage merged), every one of them decodes, and the
//! session lowers its video bitrate to what the link carries.

mod support;

use std::time::{Duration, Instant};

use support::*;
use wayray_protocol::{framing, ClientControl, Decoder, DisplayMessage};

/// What an appliance receives in `secs` seconds after the first second (the key frame and the
/// client's start-up are left out): (bytes per second of frame messages, frames per second).
async fn stream_rate(server: &Server, secs: u64) -> (f64, f64) {
    let mut a = RawAppliance::attach(server.listen, "bw").await;
    let mut decoder = Decoder::new();
    let start = Instant::now();
    let measure_from = start + Duration::from_secs(1);
    let end = measure_from + Duration::from_secs(secs);
    let (mut bytes, mut frames) = (0usize, 0usize);
    while let Some(msg) = a.next_display(end).await {
        let DisplayMessage::Frame(update) = &msg else {
            continue;
        };
        decoder
            .apply(update)
            .unwrap_or_else(|e| panic!("frame {} does not decode: {e}", update.seq));
        a.send(&ClientControl::FrameAck { seq: update.seq }).await;
        if Instant::now() >= measure_from {
            bytes += framing::encode(&msg).expect("re-encodes").len();
            frames += 1;
        }
    }
    (bytes as f64 / secs as f64, frames as f64 / secs as f64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bandwidth_cap_slows_changing_content_without_breaking_it() {
    const CAP_KBPS: f64 = 400.0;
    const SECS: u64 = 4;
    let dir = TempDir::new("bandwidth");
    let config = dir.path("wrsrvd.toml");
    // A cap for loopback only: the rule must be what applies, not the default.
    std::fs::write(
        &config,
        format!("[[appliance_bandwidth]]\nnetwork = \"127.0.0.0/8\"\nlimit_kbps = {CAP_KBPS}\n"),
    )
    .unwrap();
    let config = config.to_string_lossy().into_owned();
    let capped = Server::start(
        &dir,
        ServerOpts {
            spawn: &["weston-simple-shm"],
            extra: &["--config", &config],
            ..Default::default()
        },
    );
    capped.wait_log("mapping toplevel", 1, Duration::from_secs(20));
    let (capped_rate, capped_fps) = stream_rate(&capped, SECS).await;
    assert!(
        capped
            .log()
            .contains("bandwidth cap for this appliance kbps=400"),
        "{}",
        capped.log()
    );

    // The session hears the link's budget: half the cap for video, but not below the floor.
    assert!(
        capped.log().contains("video bitrate limit bps=250000"),
        "{}",
        capped.log()
    );

    let free_dir = TempDir::new("bandwidth-free");
    let free = Server::start(
        &free_dir,
        ServerOpts {
            spawn: &["weston-simple-shm"],
            ..Default::default()
        },
    );
    free.wait_log("mapping toplevel", 1, Duration::from_secs(20));
    let (free_rate, free_fps) = stream_rate(&free, SECS).await;

    eprintln!(
        "capped at {CAP_KBPS} kbit/s: {:.0} kbit/s, {capped_fps:.1} fps; no cap: {:.0} kbit/s, \
         {free_fps:.1} fps",
        capped_rate * 8.0 / 1000.0,
        free_rate * 8.0 / 1000.0
    );
    // The burst allowance lets a little more through at the start of the window.
    assert!(
        capped_rate * 8.0 / 1000.0 <= CAP_KBPS * 1.15,
        "capped stream ran at {:.0} kbit/s",
        capped_rate * 8.0 / 1000.0
    );
    assert!(
        capped_fps >= 2.0,
        "frames must keep coming under the cap: {capped_fps:.1} fps"
    );
    assert!(
        free_rate > capped_rate * 2.0,
        "without the cap the same client should use much more: {free_rate:.0} vs {capped_rate:.0} B/s"
    );
}
