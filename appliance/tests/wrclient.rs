//! The real `wrclient` binary against an in-process server that speaks the wire protocol (see
//! `support`): what reaches the screen, what goes back to the server, and when it gives up.

mod support;

use std::time::Duration;

use support::*;
use wayray_protocol::{
    frame_digest, ByeReason, ClientControl, CursorImage, CursorUpdate, DisplayMessage, Encoding,
    FrameUpdate, ServerControl, Tile, TileData, DEFAULT_MAX_MESSAGE_LEN, PROTOCOL_VERSION,
};

const W: u32 = 320;
const H: u32 = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_frame_is_shown_acknowledged_logged_and_screenshotted() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start();
    let (log, shot) = (dir.path().join("frames.log"), dir.path().join("shot.png"));
    let client = Running::spawn(wrclient(
        dir.path(),
        server.addr,
        &[
            "--screen",
            "320x200",
            "--frame-log",
            log.to_str().unwrap(),
            "--screenshot",
            shot.to_str().unwrap(),
            "--exit-after-frames",
            "1",
        ],
    ));

    let mut appliance = server.accept().await;
    let hello = appliance.expect_hello().await;
    assert_eq!(hello.protocol_version, PROTOCOL_VERSION);
    assert!(hello.client_name.starts_with("wrclient "), "{hello:?}");
    assert_eq!(
        (
            hello.capabilities.screen_width,
            hello.capabilities.screen_height
        ),
        (W, H)
    );
    assert_eq!(hello.capabilities.encodings, [Encoding::TilesV1]);
    assert_eq!(hello.capabilities.max_message_len, DEFAULT_MAX_MESSAGE_LEN);
    let keymap = hello.keymap.expect("Hello carries the keyboard's keymap");
    assert!(keymap.text.starts_with("xkb_keymap"), "{}", keymap.layout);
    // Without flags or XKB_DEFAULT_* (cleared by `wrclient`), the system's file decides.
    if !std::path::Path::new("/etc/default/keyboard").exists() {
        assert_eq!(keymap.layout, "us");
    }

    appliance.welcome(W, H).await;
    appliance.open_display().await;
    let pixels = test_pattern(W, H);
    appliance.send_frame(key_frame(1, W, H, &pixels)).await;

    assert_eq!(
        appliance.next_control().await,
        Some(ClientControl::FrameAck { seq: 1 })
    );
    assert_eq!(
        appliance.next_control().await,
        Some(ClientControl::Bye(ByeReason::Shutdown))
    );
    let out = client.wait().await;
    assert!(out.status.success(), "wrclient failed:\n{}", stderr(&out));

    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        format!("1 {:016x} {W}x{H}\n", frame_digest(&pixels))
    );
    let (width, height, rgb) = read_png(&shot);
    assert_eq!((width, height), (W, H));
    assert!(
        rgb == bgrx_to_rgb(&pixels),
        "screenshot differs from the frame sent"
    );
    // Trust on first use recorded this server's certificate.
    assert_eq!(
        std::fs::read(known_server_file(dir.path(), server.addr)).unwrap(),
        server.cert_der
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_server_certificate_is_fatal_and_says_which_file_to_remove() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start();
    server.accept_in_background();
    let known = known_server_file(dir.path(), server.addr);
    std::fs::create_dir_all(known.parent().unwrap()).unwrap();
    std::fs::write(&known, self_signed().cert.der()).unwrap();

    let out = Running::spawn(wrclient(dir.path(), server.addr, &["--exit-after", "15"]))
        .wait()
        .await;
    let stderr = stderr(&out);
    assert!(
        !out.status.success(),
        "accepted a changed certificate:\n{stderr}"
    );
    assert!(stderr.contains("certificate changed"), "{stderr}");
    assert!(stderr.contains(&known.display().to_string()), "{stderr}");
    assert!(stderr.contains("remove"), "{stderr}");
    // Exactly one attempt: a refused certificate is not retried.
    assert!(!stderr.contains("attempt=2"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_cert_flag_refuses_any_other_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start();
    server.accept_in_background();
    let pinned = dir.path().join("pinned.pem");
    std::fs::write(&pinned, self_signed().cert.pem()).unwrap();

    let out = Running::spawn(wrclient(
        dir.path(),
        server.addr,
        &[
            "--server-cert",
            pinned.to_str().unwrap(),
            "--exit-after",
            "15",
        ],
    ))
    .wait()
    .await;
    let stderr = stderr(&out);
    assert!(
        !out.status.success(),
        "accepted another certificate:\n{stderr}"
    );
    assert!(stderr.contains("--server-cert"), "{stderr}");
    assert!(stderr.contains("certificate"), "{stderr}");
}

/// Hostile server input ends the connection with a `ProtocolError` goodbye, never shows up on
/// screen, and the appliance comes back for a fresh connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_errors_say_why_and_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start();
    let log = dir.path().join("frames.log");
    let client = Running::spawn(wrclient(
        dir.path(),
        server.addr,
        &[
            "--frame-log",
            log.to_str().unwrap(),
            "--exit-after-frames",
            "1",
        ],
    ));

    // 1. A unidirectional stream of a kind that does not exist.
    let mut appliance = server.accept().await;
    appliance.expect_hello().await;
    appliance.welcome(W, H).await;
    appliance.open_stream(0xee).await;
    let bye = appliance.next_control().await;
    assert!(
        matches!(&bye, Some(ClientControl::Bye(ByeReason::ProtocolError(why))) if why.contains("unknown kind 238")),
        "{bye:?}"
    );

    // 2. A key frame whose tile is not zstd.
    let mut appliance = server.accept().await;
    appliance.expect_hello().await;
    appliance.welcome(W, H).await;
    appliance.open_display().await;
    appliance
        .send_frame(FrameUpdate {
            seq: 1,
            width: W,
            height: H,
            key: true,
            copies: vec![],
            tiles: vec![Tile {
                rect: wayray_protocol::Rect::new(0, 0, 64, 64),
                data: TileData::Zstd(vec![1, 2, 3, 4]),
            }],
            video: None,
            time_us: 0,
        })
        .await;
    let bye = appliance.next_control().await;
    assert!(
        matches!(&bye, Some(ClientControl::Bye(ByeReason::ProtocolError(why))) if why.contains("frame 1")),
        "{bye:?}"
    );

    // 3. A cursor image whose pixels do not match its size.
    let mut appliance = server.accept().await;
    appliance.expect_hello().await;
    appliance.welcome(W, H).await;
    appliance.open_display().await;
    appliance
        .send_display(&DisplayMessage::Cursor(CursorUpdate::Image(CursorImage {
            width: 8,
            height: 8,
            hotspot_x: 0,
            hotspot_y: 0,
            pixels: vec![0; 10],
        })))
        .await;
    let bye = appliance.next_control().await;
    assert!(
        matches!(&bye, Some(ClientControl::Bye(ByeReason::ProtocolError(why))) if why.contains("cursor")),
        "{bye:?}"
    );

    // 4. A well-behaved connection.
    let mut appliance = server.accept().await;
    appliance.expect_hello().await;
    appliance.welcome(W, H).await;
    appliance.open_display().await;
    let pixels = test_pattern(W, H);
    appliance.send_frame(key_frame(7, W, H, &pixels)).await;
    assert_eq!(
        appliance.next_control().await,
        Some(ClientControl::FrameAck { seq: 7 })
    );

    let out = client.wait().await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        format!("7 {:016x} {W}x{H}\n", frame_digest(&pixels)),
        "a rejected frame reached the screen"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_mismatch_goodbye_is_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start();
    let client = Running::spawn(wrclient(dir.path(), server.addr, &["--exit-after", "15"]));

    let mut appliance = server.accept().await;
    appliance.expect_hello().await;
    appliance
        .send_control(&ServerControl::Bye(ByeReason::VersionMismatch {
            server: PROTOCOL_VERSION + 1,
            client: PROTOCOL_VERSION,
        }))
        .await;
    let out = client.wait().await;
    let stderr = stderr(&out);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("protocol version mismatch"), "{stderr}");
}

/// SIGUSR1 writes a screenshot while running; SIGTERM says goodbye and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_take_screenshots_and_shut_down_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start();
    let shot = dir.path().join("shot.png");
    let client = Running::spawn(wrclient(
        dir.path(),
        server.addr,
        &["--screenshot", shot.to_str().unwrap()],
    ));

    let mut appliance = server.accept().await;
    appliance.expect_hello().await;
    appliance.welcome(W, H).await;
    appliance.open_display().await;
    let pixels = test_pattern(W, H);
    appliance.send_frame(key_frame(1, W, H, &pixels)).await;
    assert_eq!(
        appliance.next_control().await,
        Some(ClientControl::FrameAck { seq: 1 })
    );

    client.signal("USR1");
    let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
    while !shot.exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no screenshot after SIGUSR1"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(read_png(&shot).2, bgrx_to_rgb(&pixels));

    client.signal("TERM");
    assert_eq!(
        appliance.next_control().await,
        Some(ClientControl::Bye(ByeReason::Shutdown))
    );
    let out = client.wait().await;
    assert!(out.status.success(), "{}", stderr(&out));
}
