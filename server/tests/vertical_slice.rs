//! End-to-end tests of the vertical slice through the real path: real Wayland clients in
//! `wrsrvd`, real QUIC on loopback, the real `wrclient` decoding into its headless display.

mod support;

use std::{
    net::UdpSocket,
    time::{Duration, Instant},
};

use support::*;
use wayray_protocol::{
    ClientControl, DisplayMessage, FrameReader, ServerControl, DEFAULT_MAX_MESSAGE_LEN,
};

const GLOBALS: &[&str] = &[
    "wl_compositor",
    "wl_subcompositor",
    "xdg_wm_base",
    "zxdg_decoration_manager_v1",
    "wl_shm",
    "wl_seat",
    "wl_output",
    "wl_data_device_manager",
    "wp_viewporter",
    "wp_fractional_scale_manager_v1",
    "wp_cursor_shape_manager_v1",
];

#[test]
fn wayland_info_lists_the_globals() {
    let dir = TempDir::new("globals");
    let server = Server::start(&dir, ServerOpts::default());
    let out = server
        .wayland_client("wayland-info")
        .output()
        .expect("wayland-info (apt package wayland-utils) must be installed");
    assert!(out.status.success(), "wayland-info failed: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    for global in GLOBALS {
        assert!(
            text.contains(&format!("'{global}'")),
            "{global} missing from wayland-info:\n{text}"
        );
    }
}

/// The core promise: what the appliance shows is byte-identical to what the server rendered,
/// frame by frame, and it is the clients' content rather than an empty desktop.
#[test]
fn appliance_framebuffer_matches_server_for_foot_and_simple_shm() {
    let dir = TempDir::new("slice");
    let mut server = Server::start(
        &dir,
        ServerOpts {
            spawn: &["foot", "weston-simple-shm"],
            ..Default::default()
        },
    );
    server.wait_log("mapping toplevel", 2, Duration::from_secs(30));
    let shot = dir.path("appliance.png");
    let out = run_appliance(
        &dir,
        server.listen,
        &["--exit-after", "3", "--screenshot", shot.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "wrclient failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(server.is_running(), "server died:\n{}", server.log());

    let sent = server.frames();
    let shown = read_frame_log(&dir.path("appliance-frames.log"));
    // weston-simple-shm animates, so a few seconds give many frames, each paced by acks.
    assert!(shown.len() >= 10, "only {} frames shown", shown.len());
    assert_shown_frames_were_sent(&sent, &shown);

    // The screenshot is the appliance's framebuffer: it must hold both windows' pixels.
    let (w, h, rgb) = read_png_rgb(&shot);
    assert_eq!((w, h), (1280, 800));
    let px = |x: u32, y: u32| {
        let i = ((y * w + x) * 3) as usize;
        [rgb[i], rgb[i + 1], rgb[i + 2]]
    };
    let background = px(0, 0);
    let covered = (0..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .filter(|&(x, y)| px(x, y) != background)
        .count();
    // foot maps at 700×500; anything much less means a client is missing.
    assert!(
        covered > 300_000,
        "only {covered} pixels differ from the background"
    );
    let mut colours = std::collections::HashSet::new();
    for y in (0..h).step_by(2) {
        for x in (0..w).step_by(2) {
            colours.insert(px(x, y));
        }
    }
    assert!(
        colours.len() > 20,
        "only {} colours on screen",
        colours.len()
    );
}

/// With nothing changing, nothing is rendered or sent after the key frame.
#[test]
fn idle_session_sends_nothing_after_the_key_frame() {
    let dir = TempDir::new("idle");
    let server = Server::start(
        &dir,
        ServerOpts {
            spawn: &["foot"],
            ..Default::default()
        },
    );
    server.wait_log("mapping toplevel", 1, Duration::from_secs(30));
    // Let foot finish its first paints before the appliance attaches.
    std::thread::sleep(Duration::from_secs(1));
    let out = run_appliance(&dir, server.listen, &["--exit-after", "3"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = read_frame_log(&dir.path("appliance-frames.log"));
    assert!(!shown.is_empty(), "no key frame arrived");
    assert!(
        shown.len() <= 3,
        "an idle foot produced {} frames in 3 s: {shown:?}",
        shown.len()
    );
}

#[test]
fn wrong_server_certificate_is_refused() {
    let dir = TempDir::new("cert");
    let server = Server::start(&dir, ServerOpts::default());

    // An explicitly configured certificate that is not the server's.
    let other = rcgen::generate_simple_self_signed(vec!["wayray-server".to_string()]).unwrap();
    let bogus = dir.path("bogus.der");
    std::fs::write(&bogus, other.cert.der().as_ref()).unwrap();
    let out = run_appliance(
        &dir,
        server.listen,
        &[
            "--server-cert",
            bogus.to_str().unwrap(),
            "--exit-after",
            "5",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "accepted a wrong certificate: {stderr}"
    );
    assert!(stderr.contains("certificate"), "unclear error: {stderr}");

    // Trust on first use, then the server's identity changes.
    let out = run_appliance(&dir, server.listen, &["--exit-after-frames", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let addr = server.listen;
    drop(server);
    let dir2 = TempDir::new("cert2");
    let imposter = Server::start(
        &dir2,
        ServerOpts {
            listen: Some(addr),
            ..Default::default()
        },
    );
    let out = run_appliance(&dir, imposter.listen, &["--exit-after", "5"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "accepted a changed certificate: {stderr}"
    );
    assert!(stderr.contains("certificate"), "unclear error: {stderr}");
    assert!(
        stderr.contains("known_servers"),
        "error does not say which file to remove: {stderr}"
    );
}

/// Garbage on the UDP port, a peer breaking the framing, and a Wayland client breaking the
/// Wayland protocol are each dropped, and a real appliance is served afterwards.
#[test]
fn hostile_input_does_not_stop_the_server() {
    let dir = TempDir::new("hostile");
    let mut server = Server::start(
        &dir,
        ServerOpts {
            spawn: &["weston-simple-shm"],
            ..Default::default()
        },
    );
    server.wait_log("mapping toplevel", 1, Duration::from_secs(30));

    // 1. Random datagrams, including ones shaped like QUIC long headers.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..500 {
        let len = 1 + (i * 37) % 1400;
        let mut buf: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        if i % 2 == 0 {
            buf[0] = 0xc0 | (buf[0] & 0x0f);
            if buf.len() > 5 {
                buf[1..5].copy_from_slice(&1u32.to_be_bytes());
            }
        }
        let _ = udp.send_to(&buf, server.listen);
    }

    // 2. A QUIC peer whose control stream carries a length over the maximum, then garbage.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let conn = raw_connect(server.listen).await;
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(&(DEFAULT_MAX_MESSAGE_LEN + 1).to_le_bytes())
            .await
            .unwrap();
        send.write_all(&[0xff; 64]).await.unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(5), recv.read_to_end(1 << 20)).await;
        let bytes = reply.expect("server did not answer").unwrap_or_default();
        let mut reader = FrameReader::new(1 << 20);
        reader.push(&bytes);
        // The server explains why before closing (it may also just close).
        if let Ok(Some(ServerControl::Bye(reason))) = reader.next::<ServerControl>() {
            assert!(reason.to_string().contains("exceeds"), "{reason}");
        }
        let conn = raw_connect(server.listen).await;
        let (mut send, _recv) = conn.open_bi().await.unwrap();
        send.write_all(&[3, 0, 0, 0, 0xee, 0xee, 0xee])
            .await
            .unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
    });

    // 3. A Wayland client that breaks the protocol: wl_display.get_registry with new_id 1,
    //    which is the display's own id.
    {
        use std::io::{Read, Write};
        let path = dir.path("run").join(&server.wayland_display);
        let mut s = std::os::unix::net::UnixStream::connect(path).unwrap();
        let mut msg = Vec::new();
        msg.extend_from_slice(&1u32.to_ne_bytes());
        msg.extend_from_slice(&((12u32 << 16) | 1).to_ne_bytes());
        msg.extend_from_slice(&1u32.to_ne_bytes());
        s.write_all(&msg).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        // The server posts wl_display.error (object 1, opcode 0) and hangs up.
        assert!(buf.len() >= 8, "no protocol error from the server");
        assert_eq!(u32::from_ne_bytes(buf[0..4].try_into().unwrap()), 1);
    }
    // 4. A client that is killed abruptly.
    let mut victim = server.wayland_client("weston-simple-shm").spawn().unwrap();
    server.wait_log("mapping toplevel", 2, Duration::from_secs(30));
    victim.kill().unwrap();
    victim.wait().unwrap();

    assert!(server.is_running(), "server died:\n{}", server.log());
    let out = run_appliance(&dir, server.listen, &["--exit-after-frames", "3"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        server.log().contains("protocol error"),
        "protocol error not logged"
    );
}

/// A client never runs ahead of the appliance: without acks, at most `max_frames_in_flight`
/// frames are sent, however fast weston-simple-shm wants to draw.
#[test]
fn frames_are_paced_by_acks() {
    let dir = TempDir::new("pacing");
    let server = Server::start(
        &dir,
        ServerOpts {
            spawn: &["weston-simple-shm"],
            extra: &["--max-frames-in-flight", "2"],
            ..Default::default()
        },
    );
    server.wait_log("mapping toplevel", 1, Duration::from_secs(30));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut peer = RawAppliance::attach(server.listen, "pacing-test").await;
        // Cursor updates share the display stream but are not frames: they are not paced.
        let frame_seqs = |msgs: Vec<DisplayMessage>| -> Vec<u64> {
            msgs.into_iter()
                .filter_map(|m| match m {
                    DisplayMessage::Frame(f) => Some(f.seq),
                    DisplayMessage::Cursor(_) => None,
                })
                .collect()
        };
        let mut seqs = frame_seqs(peer.display_for(Duration::from_millis(1500)).await);
        assert_eq!(
            seqs.len(),
            2,
            "without acks exactly 2 frames may be in flight: {seqs:?}"
        );

        // One ack frees one slot: exactly one more frame follows.
        peer.send(&ClientControl::FrameAck { seq: seqs[0] }).await;
        seqs.extend(frame_seqs(
            peer.display_for(Duration::from_millis(1500)).await,
        ));
        assert_eq!(
            seqs.len(),
            3,
            "one ack must release exactly one frame: {seqs:?}"
        );
    });
}

/// The server restarts (same identity, same port): the appliance says why it lost the session,
/// reconnects by itself and shows the new session from a fresh key frame.
#[test]
fn appliance_reconnects_when_the_server_comes_back() {
    let dir = TempDir::new("reconnect");
    let state = dir.path("server-state");
    let server = Server::start(
        &dir,
        ServerOpts {
            spawn: &["weston-simple-shm"],
            state_dir: Some(state.clone()),
            ..Default::default()
        },
    );
    let addr = server.listen;
    let appliance = std::process::Command::new(wrclient())
        .arg("--server")
        .arg(addr.to_string())
        .arg("--state-dir")
        .arg(dir.path("appliance-state"))
        .arg("--frame-log")
        .arg(dir.path("appliance-frames.log"))
        .args(["--exit-after", "12"])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let frames = || read_frame_log(&dir.path("appliance-frames.log"));
    let start = Instant::now();
    while frames().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no frame from the first server"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(server);
    let before = frames().len();

    let dir2 = TempDir::new("reconnect2");
    let _server = Server::start(
        &dir2,
        ServerOpts {
            spawn: &["weston-simple-shm"],
            state_dir: Some(state),
            listen: Some(addr),
            ..Default::default()
        },
    );
    let out = wait_with_timeout(appliance, Duration::from_secs(30));
    let stderr = strip_ansi(&String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "wrclient failed:\n{stderr}");
    let shown = frames();
    assert!(
        shown.len() > before,
        "nothing shown after the restart:\n{stderr}"
    );
    // The new server numbers its frames from 1 again, starting with a key frame.
    assert!(
        shown[before..].iter().any(|f| f.seq == 1),
        "no fresh key frame after reconnecting: {:?}",
        &shown[before..]
    );
    assert!(
        stderr.to_lowercase().contains("reconnect"),
        "reconnect not reported:\n{stderr}"
    );
}
