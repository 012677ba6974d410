//! A display of another size plugged into a running appliance, end to end with the real
//! `wrclient` binary: the input script's `screen` takes the same path as a DRM hotplug (the sink
//! rescans, the connection tells the server `ScreenChanged`), and the in-process server then
//! streams frames of the new size.

mod support;

use std::path::Path;

use support::*;
use wayray_protocol::{frame_digest, ByeReason, ClientControl, Encoder, Rect};

const W: u32 = 320;
const H: u32 = 200;
const NEW_W: u32 = 640;
const NEW_H: u32 = 480;

fn write_script(dir: &Path, text: &str) -> String {
    let path = dir.join("input.script");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swapped_screen_is_announced_and_frames_of_its_size_are_shown() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start();
    let (log, shot) = (dir.path().join("frames.log"), dir.path().join("shot.png"));
    let script = write_script(dir.path(), "# a bigger monitor\nscreen 640x480\n");
    let client = Running::spawn(wrclient(
        dir.path(),
        server.addr,
        &[
            "--screen",
            "320x200",
            "--input-script",
            &script,
            "--frame-log",
            log.to_str().unwrap(),
            "--screenshot",
            shot.to_str().unwrap(),
            "--exit-after-frames",
            "4",
        ],
    ));

    // Hello at the size the appliance started with, and a picture of that size.
    let mut appliance = server.accept().await;
    let hello = appliance.expect_hello().await;
    let size = |hello: &wayray_protocol::Hello| {
        (
            hello.capabilities.screen_width,
            hello.capabilities.screen_height,
        )
    };
    assert_eq!(size(&hello), (W, H));
    appliance.welcome(W, H).await;
    appliance.open_display().await;
    let small = test_pattern(W, H);
    appliance.send_frame(key_frame(1, W, H, &small)).await;

    // The script runs once the appliance is connected, so the new size may come before or
    // after the first frame's acknowledgement.
    let mut control = vec![
        appliance.next_control().await,
        appliance.next_control().await,
    ];
    control.sort_by_key(|m| matches!(m, Some(ClientControl::ScreenChanged { .. })));
    assert_eq!(
        control,
        [
            Some(ClientControl::FrameAck { seq: 1 }),
            Some(ClientControl::ScreenChanged {
                width: NEW_W,
                height: NEW_H,
                physical_size: None,
            }),
        ]
    );

    // The server resized the session: a key frame of the new size, then damage only.
    let mut encoder = Encoder::new(NEW_W, NEW_H);
    let mut big = test_pattern(NEW_W, NEW_H);
    let frame = encoder.encode_full(2, &big).unwrap();
    assert!(frame.key);
    appliance.send_frame(frame).await;
    assert_eq!(
        appliance.next_control().await,
        Some(ClientControl::FrameAck { seq: 2 })
    );
    let changed = Rect::new(600, 440, 40, 40);
    for y in changed.y..changed.y + changed.h {
        for x in changed.x..changed.x + changed.w {
            let i = ((y * NEW_W + x) * 4) as usize;
            big[i..i + 4].copy_from_slice(&[0x11, 0x22, 0x33, 0]);
        }
    }
    let frame = encoder.encode(3, &big, &[changed]).unwrap();
    assert!(!frame.key);
    appliance.send_frame(frame).await;
    assert_eq!(
        appliance.next_control().await,
        Some(ClientControl::FrameAck { seq: 3 })
    );

    // The link drops; the appliance comes back with the new size in its Hello.
    appliance.conn.close(0u32.into(), b"test: reconnect");
    let mut appliance = server.accept().await;
    let hello = appliance.expect_hello().await;
    assert_eq!(size(&hello), (NEW_W, NEW_H));
    appliance.welcome(NEW_W, NEW_H).await;
    appliance.open_display().await;
    appliance.send_frame(key_frame(4, NEW_W, NEW_H, &big)).await;
    assert_eq!(
        appliance.next_control().await,
        Some(ClientControl::FrameAck { seq: 4 })
    );
    // Nothing more about the screen: the size did not change again.
    assert_eq!(
        appliance.next_control().await,
        Some(ClientControl::Bye(ByeReason::Shutdown))
    );
    let out = client.wait().await;
    assert!(out.status.success(), "wrclient failed:\n{}", stderr(&out));

    let lines: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        lines,
        [
            format!("1 {:016x} {W}x{H}", frame_digest(&small)),
            format!(
                "2 {:016x} {NEW_W}x{NEW_H}",
                frame_digest(&test_pattern(NEW_W, NEW_H))
            ),
            format!("3 {:016x} {NEW_W}x{NEW_H}", frame_digest(&big)),
            format!("4 {:016x} {NEW_W}x{NEW_H}", frame_digest(&big)),
        ]
    );
    let (width, height, rgb) = read_png(&shot);
    assert_eq!((width, height), (NEW_W, NEW_H));
    assert!(
        rgb == bgrx_to_rgb(&big),
        "screenshot differs from the last frame"
    );
}

/// A screen of the size the session already has is no change: nothing is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_screen_of_the_same_size_is_not_announced() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start();
    let script = write_script(dir.path(), "screen 320x200\nscreen 320x200\nexit\n");
    let client = Running::spawn(wrclient(
        dir.path(),
        server.addr,
        &["--screen", "320x200", "--input-script", &script],
    ));

    let mut appliance = server.accept().await;
    appliance.expect_hello().await;
    appliance.welcome(W, H).await;
    // Straight to the goodbye of `exit`: no ScreenChanged before it.
    assert_eq!(
        appliance.next_control().await,
        Some(ClientControl::Bye(ByeReason::Shutdown))
    );
    let out = client.wait().await;
    assert!(out.status.success(), "wrclient failed:\n{}", stderr(&out));
}
