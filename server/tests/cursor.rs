//! The pointer's image reaches the appliance on the display stream, which draws it locally:
//! the server's default cursor on attach, and a client's own cursor once the pointer enters it.

mod support;

use std::time::Duration;

use support::*;
use wayray_protocol::{CursorUpdate, DisplayMessage, InputMessage};

/// A freshly attached appliance gets the default cursor (the theme's arrow, or the built-in one
/// without a theme) exactly once: an unchanged cursor is not sent again.
#[test]
fn attached_appliance_gets_the_default_cursor_once() {
    let dir = TempDir::new("cursor");
    let server = Server::start(&dir, ServerOpts::default());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut peer = RawAppliance::attach(server.listen, "cursor-test").await;
        let msgs = peer.display_for(Duration::from_secs(2)).await;
        let cursors: Vec<&CursorUpdate> = msgs
            .iter()
            .filter_map(|m| match m {
                DisplayMessage::Cursor(c) => Some(c),
                DisplayMessage::Frame(_) => None,
            })
            .collect();
        assert_eq!(
            cursors.len(),
            1,
            "expected one cursor update, got {cursors:?}\n{}",
            server.log()
        );
        let CursorUpdate::Image(image) = cursors[0] else {
            panic!("the default cursor is hidden: {:?}", cursors[0]);
        };
        image.validate().expect("a valid cursor image");
        assert!(
            image.pixels.chunks_exact(4).any(|px| px[3] == 0xff),
            "the default cursor has no opaque pixel"
        );
        assert!(
            msgs.iter().any(|m| matches!(m, DisplayMessage::Frame(_))),
            "no key frame next to the cursor"
        );

        // A second appliance taking over the session gets the cursor too.
        let mut second = RawAppliance::attach(server.listen, "cursor-test-2").await;
        let msgs = second.display_for(Duration::from_secs(2)).await;
        assert!(
            msgs.iter()
                .any(|m| matches!(m, DisplayMessage::Cursor(CursorUpdate::Image(_)))),
            "the second appliance got no cursor"
        );
    });
}

/// foot sets its own cursor when the pointer enters it, an I-beam (this Debian foot draws it into
/// a cursor surface with wl_pointer.set_cursor; newer ones name it through cursor-shape-v1): the
/// appliance gets that image exactly once, with no flicker of a hidden or default cursor first.
#[test]
fn client_cursor_reaches_the_appliance() {
    let dir = TempDir::new("cursor-foot");
    let server = Server::start(
        &dir,
        ServerOpts {
            spawn: &["foot"],
            ..Default::default()
        },
    );
    server.wait_log("mapping toplevel", 1, Duration::from_secs(30));
    let (x, y, w, h) = mapped_geometry(&server);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut peer = RawAppliance::attach(server.listen, "cursor-foot").await;
        let before = cursors(peer.display_for(Duration::from_secs(1)).await);
        let [CursorUpdate::Image(default)] = &before[..] else {
            panic!("expected the default cursor first, got {before:?}");
        };
        let mut input = peer.open_input().await;
        for (i, step) in [0.4, 0.5, 0.6].into_iter().enumerate() {
            let motion = InputMessage::PointerMotion {
                time_ms: i as u32 * 10,
                x: x + w * step,
                y: y + h * step,
            };
            send_input(&mut input, &motion).await;
        }
        let after = cursors(peer.display_for(Duration::from_secs(2)).await);
        assert_eq!(
            after.len(),
            1,
            "expected one cursor update: {after:?}\n{}",
            server.log()
        );
        let CursorUpdate::Image(text) = &after[0] else {
            panic!("foot's cursor is hidden: {after:?}");
        };
        text.validate().expect("a valid cursor image");
        assert_ne!(text, default, "foot's text cursor is the default arrow");
    });
}

fn cursors(msgs: Vec<DisplayMessage>) -> Vec<CursorUpdate> {
    msgs.into_iter()
        .filter_map(|m| match m {
            DisplayMessage::Cursor(c) => Some(c),
            DisplayMessage::Frame(_) => None,
        })
        .collect()
}

/// Where the server mapped the first toplevel, from its "mapping toplevel" log line.
fn mapped_geometry(server: &Server) -> (f64, f64, f64, f64) {
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains("mapping toplevel"))
        .unwrap_or_else(|| panic!("no toplevel in log:\n{log}"));
    let field = |name: &str| -> f64 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name}= in {line}"))
    };
    (field("x"), field("y"), field("w"), field("h"))
}
