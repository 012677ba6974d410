//! The interactive side of the real `wrclient` binary against the in-process server: what an
//! input script puts on the input stream, how the server's cursor reaches a screenshot, and the
//! input-to-photon latency log.

mod support;

use std::path::Path;

use support::*;
use wayray_protocol::{
    frame_digest, AxisSource, AxisValue, ByeReason, ClientControl, CursorImage, CursorUpdate,
    DisplayMessage, InputMessage,
};

const W: u32 = 320;
const H: u32 = 200;

/// The message with its timestamp zeroed: times come from the appliance's clock.
fn untimed(message: InputMessage) -> InputMessage {
    use InputMessage::*;
    match message {
        Key {
            keycode, pressed, ..
        } => Key {
            time_ms: 0,
            keycode,
            pressed,
        },
        PointerMotion { x, y, .. } => PointerMotion { time_ms: 0, x, y },
        PointerRelative {
            dx,
            dy,
            dx_unaccel,
            dy_unaccel,
            ..
        } => PointerRelative {
            time_ms: 0,
            dx,
            dy,
            dx_unaccel,
            dy_unaccel,
        },
        PointerButton {
            button, pressed, ..
        } => PointerButton {
            time_ms: 0,
            button,
            pressed,
        },
        PointerAxis {
            source,
            horizontal,
            vertical,
            ..
        } => PointerAxis {
            time_ms: 0,
            source,
            horizontal,
            vertical,
        },
        TouchDown { slot, x, y, .. } => TouchDown {
            time_ms: 0,
            slot,
            x,
            y,
        },
        TouchMotion { slot, x, y, .. } => TouchMotion {
            time_ms: 0,
            slot,
            x,
            y,
        },
        TouchUp { slot, .. } => TouchUp { time_ms: 0, slot },
        other => other,
    }
}

fn write_script(dir: &Path, text: &str) -> String {
    let path = dir.join("input.script");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_script_reaches_the_server_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start();
    let script = write_script(
        dir.path(),
        "# German keyboard: \"yz\" is typed with KEY_Z, then KEY_Y\n\
         keymap de\n\
         type yz\n\
         \n\
         move 100 50\n\
         click left\n\
         rel 500 -3\n\
         scroll 0 120\n\
         touch down 0 10 20\n\
         touch frame\n\
         touch up 0\n\
         touch frame\n\
         exit\n",
    );
    let client = Running::spawn(wrclient(
        dir.path(),
        server.addr,
        &["--screen", "320x200", "--input-script", &script],
    ));

    let mut appliance = server.accept().await;
    let hello = appliance.expect_hello().await;
    let keymap = hello.keymap.expect("Hello carries a keymap");
    if !Path::new("/etc/default/keyboard").exists() {
        assert_eq!(keymap.layout, "us");
    }
    appliance.welcome(W, H).await;
    let mut input = appliance.accept_input().await;

    match input.next().await {
        Some(InputMessage::Keymap(keymap)) => {
            assert_eq!(keymap.layout, "de");
            assert!(keymap.text.contains("xkb_symbols"), "not a keymap");
        }
        other => panic!("expected the de keymap first, got {other:?}"),
    }
    let key = |keycode, pressed| InputMessage::Key {
        time_ms: 0,
        keycode,
        pressed,
    };
    let button = |pressed| InputMessage::PointerButton {
        time_ms: 0,
        button: 0x110,
        pressed,
    };
    let expected = [
        key(44, true),
        key(44, false),
        key(21, true),
        key(21, false),
        InputMessage::PointerMotion {
            time_ms: 0,
            x: 100.0,
            y: 50.0,
        },
        button(true),
        button(false),
        // Relative motion is sent as it is, and the pointer stops at the output's edge.
        InputMessage::PointerRelative {
            time_ms: 0,
            dx: 500.0,
            dy: -3.0,
            dx_unaccel: 500.0,
            dy_unaccel: -3.0,
        },
        InputMessage::PointerMotion {
            time_ms: 0,
            x: f64::from(W - 1),
            y: 47.0,
        },
        InputMessage::PointerAxis {
            time_ms: 0,
            source: AxisSource::Wheel,
            horizontal: AxisValue::default(),
            vertical: AxisValue {
                value: 15.0,
                v120: Some(120),
                stop: false,
            },
        },
        InputMessage::TouchDown {
            time_ms: 0,
            slot: 0,
            x: 10.0,
            y: 20.0,
        },
        InputMessage::TouchFrame,
        InputMessage::TouchUp {
            time_ms: 0,
            slot: 0,
        },
        InputMessage::TouchFrame,
    ];
    let mut got = Vec::new();
    for _ in 0..expected.len() {
        let message = input.next().await.expect("more input");
        assert_eq!(message.validate(W, H), Ok(()), "{message:?}");
        got.push(untimed(message));
    }
    assert_eq!(got, expected);

    // `exit`: goodbye, and nothing more on the input stream.
    assert_eq!(
        appliance.next_control().await,
        Some(ClientControl::Bye(ByeReason::Shutdown))
    );
    assert_eq!(input.next().await, None);
    let out = client.wait().await;
    assert!(out.status.success(), "wrclient failed:\n{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_script_fails_at_startup_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start();
    let script = write_script(dir.path(), "wait 10\ntype ok\ncombo alt+nokey\n");
    let out = Running::spawn(wrclient(
        dir.path(),
        server.addr,
        &["--input-script", &script],
    ))
    .wait()
    .await;
    let stderr = stderr(&out);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("line 3") && stderr.contains("unknown key `nokey`"),
        "{stderr}"
    );
}

/// A 4×4 cursor, opaque except its transparent top-left pixel, hotspot (1, 1).
fn cursor_image() -> CursorImage {
    let mut pixels = Vec::new();
    for i in 0..16 {
        // B, G, R, A premultiplied: a transparent pixel is all zero.
        pixels.extend_from_slice(if i == 0 {
            &[0, 0, 0, 0]
        } else {
            &[10, 20, 250, 255]
        });
    }
    CursorImage {
        width: 4,
        height: 4,
        hotspot_x: 1,
        hotspot_y: 1,
        pixels,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_cursor_is_composited_into_the_screenshot_only_when_asked() {
    for with_cursor in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start();
        let (log, shot) = (dir.path().join("frames.log"), dir.path().join("shot.png"));
        let mut flags = vec![
            "--screen",
            "320x200",
            "--frame-log",
            log.to_str().unwrap(),
            "--screenshot",
            shot.to_str().unwrap(),
            "--exit-after-frames",
            "1",
        ];
        if with_cursor {
            flags.push("--screenshot-cursor");
        }
        let client = Running::spawn(wrclient(dir.path(), server.addr, &flags));

        let mut appliance = server.accept().await;
        appliance.expect_hello().await;
        appliance.welcome(W, H).await;
        appliance.open_display().await;
        appliance
            .send_display(&DisplayMessage::Cursor(CursorUpdate::Image(cursor_image())))
            .await;
        let pixels = test_pattern(W, H);
        appliance.send_frame(key_frame(1, W, H, &pixels)).await;
        assert_eq!(
            appliance.next_control().await,
            Some(ClientControl::FrameAck { seq: 1 })
        );
        let out = client.wait().await;
        assert!(out.status.success(), "wrclient failed:\n{}", stderr(&out));

        // The frame log is the framebuffer's digest, cursor or not.
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            format!("1 {:016x} {W}x{H}\n", frame_digest(&pixels))
        );
        let mut expected = bgrx_to_rgb(&pixels);
        if with_cursor {
            // The pointer starts at the centre (160, 100); the hotspot (1, 1) goes there.
            let (left, top) = (160 - 1, 100 - 1);
            for row in 0..4 {
                for col in 0..4 {
                    if (row, col) == (0, 0) {
                        continue;
                    }
                    let i = (((top + row) * W + left + col) * 3) as usize;
                    expected[i..i + 3].copy_from_slice(&[250, 20, 10]);
                }
            }
        }
        let (width, height, rgb) = read_png(&shot);
        assert_eq!((width, height), (W, H));
        assert!(
            rgb == expected,
            "screenshot (with_cursor: {with_cursor}) is not the frame with the cursor where expected"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_log_times_a_key_press_until_the_next_frame() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start();
    let latency = dir.path().join("latency.log");
    let script = write_script(dir.path(), "key a\nwait-frame\nexit\n");
    let client = Running::spawn(wrclient(
        dir.path(),
        server.addr,
        &[
            "--input-script",
            &script,
            "--latency-log",
            latency.to_str().unwrap(),
        ],
    ));

    let mut appliance = server.accept().await;
    appliance.expect_hello().await;
    appliance.welcome(W, H).await;
    appliance.open_display().await;
    let mut input = appliance.accept_input().await;
    assert!(matches!(
        input.next().await,
        Some(InputMessage::Key {
            keycode: 30,
            pressed: true,
            ..
        })
    ));
    assert!(matches!(
        input.next().await,
        Some(InputMessage::Key {
            keycode: 30,
            pressed: false,
            ..
        })
    ));
    // The "echo" of the key press; `wait-frame` lets the script go on to `exit` after it.
    appliance
        .send_frame(key_frame(1, W, H, &test_pattern(W, H)))
        .await;
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

    let text = std::fs::read_to_string(&latency).unwrap();
    let (keycode, nanos) = text
        .trim_end()
        .split_once(' ')
        .unwrap_or_else(|| panic!("one line expected: {text:?}"));
    assert_eq!(keycode, "30", "{text:?}");
    let nanos: u64 = nanos.parse().unwrap();
    assert!(
        nanos > 0 && nanos < STEP_TIMEOUT.as_nanos() as u64,
        "{text:?}"
    );
    assert_eq!(text.lines().count(), 1, "{text:?}");
}
