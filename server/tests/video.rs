//! End to end: a client playing video reaches the appliance as H.264 pictures, the appliance
//! shows exactly the server's reference all along, and once the video pauses the server keeps
//! sending frames until the region is refreshed to the exact rendered pixels; with `--no-video`
//! the same client travels losslessly.

mod support;

use std::{collections::HashMap, path::PathBuf, process::Stdio, time::Duration};

use support::*;

fn probe() -> PathBuf {
    let path = wrsrvd().with_file_name("examples").join("video_probe");
    assert!(
        path.exists(),
        "{} not built: run `cargo build -p wayray-server --examples` (scripts/test does)",
        path.display()
    );
    path
}

/// Plays 90 video_probe pictures (paced by the appliance's acknowledgements, then a pause) in a
/// wrsrvd started with `extra` flags, shown on a wrclient for 5 s; returns the server.
fn play_probe(dir: &TempDir, extra: &[&str]) -> Server {
    let server = Server::start(
        dir,
        ServerOpts {
            extra,
            ..ServerOpts::default()
        },
    );
    let mut client = server
        .wayland_client(probe().to_str().unwrap())
        .args(["384", "288", "90"])
        .stdout(Stdio::null())
        .spawn()
        .expect("start video_probe");
    server.wait_log("mapping toplevel", 1, Duration::from_secs(30));
    let out = run_appliance(dir, server.listen, &["--exit-after", "5"]);
    let _ = client.kill();
    let _ = client.wait();
    assert!(
        out.status.success(),
        "wrclient failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    server
}

/// The frame logs hold digests of what the appliance shows: identical, frame by frame, and at
/// least `min` of them.
fn assert_appliance_showed_the_servers_frames(dir: &TempDir, server: &Server, min: usize) {
    let sent: HashMap<u64, FrameLine> = server.frames().into_iter().map(|f| (f.seq, f)).collect();
    let shown = read_frame_log(&dir.path("appliance-frames.log"));
    assert!(shown.len() >= min, "only {} frames shown", shown.len());
    for frame in &shown {
        assert_eq!(Some(frame), sent.get(&frame.seq), "framebuffers differ");
    }
}

#[test]
fn a_paused_video_is_refreshed_to_the_exact_pixels() {
    let dir = TempDir::new("video");
    let server = play_probe(&dir, &[]);

    let log = server.log();
    let pictures = log.lines().filter(|l| l.contains("video picture")).count();
    assert!(
        pictures >= 10,
        "only {pictures} video pictures sent:\n{log}"
    );
    let refreshed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("video region refreshed losslessly"))
        .collect();
    assert!(
        !refreshed.is_empty(),
        "the region was never refreshed:\n{log}"
    );
    eprintln!(
        "{pictures} video pictures, refreshes: {refreshed:?}, {} frames in all",
        server.frames().len()
    );
    assert!(
        refreshed.iter().all(|l| l.contains("exact=true")),
        "a refresh left lossy pixels: {refreshed:?}"
    );
    assert_appliance_showed_the_servers_frames(&dir, &server, 10);
}

#[test]
fn no_video_sends_the_same_client_losslessly() {
    let dir = TempDir::new("novideo");
    let server = play_probe(&dir, &["--no-video"]);

    // The test above sees these log lines for the same client; here there must be none.
    let log = server.log();
    assert!(
        !log.contains("video picture"),
        "H.264 sent despite --no-video:\n{log}"
    );
    assert_appliance_showed_the_servers_frames(&dir, &server, 30);
}
