//! Writes the committed seed corpora (`seeds/<target>/`) for the socket and stream targets: a
//! few well-formed streams per parser, so a short CI run starts from valid messages instead of
//! having to discover the framing. Run from protocol/fuzz: `cargo run --example seeds`.

use std::path::Path;

use serde::Serialize;
use wayray_protocol::framing::encode;
use wayray_protocol::sessions::*;
use wayray_protocol::{ByeReason, ClientControl, InputMessage};

fn frames<T: Serialize>(msgs: &[T]) -> Vec<u8> {
    msgs.iter()
        .flat_map(|m| encode(m).expect("encode"))
        .collect()
}

/// `seed byte ++ stream` for `stream` targets.
fn plain(stream: Vec<u8>) -> Vec<u8> {
    let mut v = vec![7];
    v.extend(stream);
    v
}

/// `split byte ++ hello ++ messages` for `hello_then_stream` targets (hello shorter than 256).
fn with_hello(hello: Vec<u8>, rest: Vec<u8>) -> Vec<u8> {
    let mut v = vec![hello.len() as u8];
    v.extend(hello);
    v.extend(rest);
    v
}

fn write(target: &str, name: &str, bytes: Vec<u8>) {
    let dir = Path::new("seeds").join(target);
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join(name), bytes).expect("write");
}

fn main() {
    let hello = SessionHello {
        session: 0x0123_4567_89ab_cdef,
        secret: "s3cret".into(),
        pid: 4242,
        wayland_display: "wayland-1".into(),
        reconnect: false,
    };
    let from = [
        FromSession::Frame {
            appliance: 1,
            seq: 1,
            bytes: vec![0, 1, 2, 3],
        },
        FromSession::Cursor {
            appliance: 1,
            bytes: vec![9; 8],
        },
    ];
    write(
        "session_socket",
        "hello-frames",
        with_hello(frames(&[hello]), frames(&from)),
    );
    let to = [
        ToSession::FrameAck {
            appliance: 1,
            seq: 1,
        },
        ToSession::Detached { appliance: 1 },
        ToSession::Shutdown,
    ];
    write(
        "session_socket",
        "to-session",
        with_hello(vec![], frames(&to)),
    );

    let from = [
        FromLauncher::Started {
            session: 5,
            pid: 77,
        },
        FromLauncher::Authenticated {
            greeter: 5,
            token: "pseudo.1".into(),
            user: "u".into(),
        },
        FromLauncher::Exited {
            session: 5,
            status: "exit status: 0".into(),
        },
    ];
    write(
        "launcher_socket",
        "hello-messages",
        with_hello(frames(&[LauncherHello { pid: 1 }]), frames(&from)),
    );
    let to = [
        ToLauncher::GreeterRequested {
            token: "pseudo.1".into(),
            session: 5,
            secret: "x".into(),
            notice: None,
        },
        ToLauncher::Stop { session: 5 },
    ];
    write(
        "launcher_socket",
        "to-launcher",
        with_hello(vec![], frames(&to)),
    );

    let req = [
        AdminRequest::ListSessions,
        AdminRequest::Kill(3),
        AdminRequest::ListAppliances,
    ];
    write("admin_socket", "requests", plain(frames(&req)));
    write(
        "admin_socket",
        "reply",
        plain(frames(&[AdminReply::Sessions(vec![])])),
    );

    let login = LoginRequest::Login {
        ticket: "t".into(),
        username: "alice".into(),
        password: "pw".into(),
    };
    write("login_socket", "login", plain(frames(&[login])));
    let reply = [
        LoginReply::Accepted,
        LoginReply::Refused {
            message: "no".into(),
        },
    ];
    write("login_socket", "replies", plain(frames(&reply)));

    let control = [
        ClientControl::FrameAck { seq: 3 },
        ClientControl::TokenChanged {
            token: Some("card.1".into()),
        },
        ClientControl::ScreenChanged {
            width: 1280,
            height: 800,
            physical_size: None,
        },
        ClientControl::Bye(ByeReason::Shutdown),
    ];
    write("quic_streams", "control", plain(frames(&control)));
    let input = [
        InputMessage::Key {
            time_ms: 1,
            keycode: 30,
            pressed: true,
        },
        InputMessage::PointerMotion {
            time_ms: 2,
            x: 10.0,
            y: 20.0,
        },
        InputMessage::PointerButton {
            time_ms: 3,
            button: 0x110,
            pressed: false,
        },
    ];
    write("quic_streams", "input", plain(frames(&input)));
}
