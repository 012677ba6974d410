//! `wr-wm-tiling`: WayRay's reference tiling window manager, and the example for anyone writing
//! their own. It is an ordinary Wayland client of the session that binds
//! `wayray_wm_manager_v1` (protocol `wayray-wm-v1.xml`, read it first) and answers the
//! compositor's two sequences:
//!
//! - manage (`manage_start` … `manage_done`): sizes, fullscreen, focus, closing, interactive
//!   moves — everything the clients must be told before they draw;
//! - render (`render_start` … `render_done`): positions, stacking, borders, workspaces — what
//!   the compositor then shows in one frame.
//!
//! Input (bindings, clicks) and client requests arrive as events before a `manage_start`; the WM
//! only records them and acts in the manage sequence, so it never sends a request outside the
//! sequence it belongs to. Modules:
//!
//! - [`layout`]: the BSP tree of each workspace (pure, unit-tested).
//! - [`bindings`]: the key and pointer table.
//! - [`wm`]: the WM's state and its answers to the two sequences.
//! - [`events`]: protocol events into that state.

mod bindings;
mod events;
mod layout;
mod wm;

use clap::Parser;
use miette::{miette, IntoDiagnostic, WrapErr};
use wayland_client::{globals::registry_queue_init, Connection, DispatchError};
use wayray_wm_protocol::client::wayray_wm_manager_v1::WayrayWmManagerV1;

/// WayRay's tiling window manager: windows share the screen in a binary space partition, with
/// nine workspaces, floating dialogs and fullscreen. The session starts it (`wrsrvd --wm
/// wr-wm-tiling`, or `window_manager = "wr-wm-tiling"` in session.toml); it cannot manage a
/// session that did not.
///
/// Keys: Super+Enter terminal, Super+arrows or h/j/k/l focus, Super+Shift+arrows or H/J/K/L
/// swap, Super+1..9 workspace, Super+Shift+1..9 send to workspace, Super+F fullscreen,
/// Super+Space floating, Super+Shift+Q close. Super+left-drag moves and Super+right-drag
/// resizes a floating window.
#[derive(Debug, Parser)]
#[command(
    name = "wr-wm-tiling",
    version,
    about,
    long_about,
    after_help = "Environment:\n  \
        WAYLAND_DISPLAY  the session to manage (set by the session that starts the WM)\n  \
        RUST_LOG         log filter (default \"info\": one line per layout shown)"
)]
pub struct Config {
    /// Command started by Super+Enter, run with `sh -c` in its own process group.
    #[arg(long, value_name = "CMD", default_value = "foot")]
    pub terminal: String,
    /// Pixels between tiles and around them.
    #[arg(long, value_name = "PX", default_value_t = 8, value_parser = clap::value_parser!(i32).range(0..=200))]
    pub gaps: i32,
    /// Border width in pixels, drawn outside each window (blue when focused, grey otherwise).
    #[arg(long, value_name = "PX", default_value_t = 2, value_parser = clap::value_parser!(i32).range(0..=50))]
    pub border: i32,
}

fn main() -> miette::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = Config::parse();

    let conn = Connection::connect_to_env()
        .into_diagnostic()
        .wrap_err("cannot connect to the session (is WAYLAND_DISPLAY set?)")?;
    let (globals, mut queue) = registry_queue_init::<wm::Wm>(&conn)
        .into_diagnostic()
        .wrap_err("cannot list the session's globals")?;
    let qh = queue.handle();
    let manager: WayrayWmManagerV1 = globals.bind(&qh, 1..=1, ()).map_err(|_| {
        miette!("the session offers no wayray_wm_manager_v1: it is not a WayRay session")
    })?;
    let mut wm = wm::Wm::new(config, manager);
    tracing::info!("bound wayray_wm_manager_v1; waiting for the session's windows");

    loop {
        queue
            .blocking_dispatch(&mut wm)
            .map_err(explain)
            .wrap_err("the connection to the session ended")?;
        if let Some(why) = wm.stop.take() {
            return Err(miette!("{why}"));
        }
    }
}

/// Turns the compositor's protocol errors into what the user should know.
fn explain(err: DispatchError) -> miette::Report {
    use wayland_client::backend::WaylandError;
    let DispatchError::Backend(WaylandError::Protocol(e)) = &err else {
        return miette!("{err}");
    };
    let meaning = match (e.object_interface.as_str(), e.code) {
        ("wayray_wm_manager_v1", 0) => {
            "not permitted: only the program the session started as its window manager may \
             manage it (wrsrvd --wm, or session.toml window_manager)"
        }
        ("wayray_wm_manager_v1", 2) => "unresponsive: a sequence was not answered within 1 s",
        (_, _) if e.code <= 1 => "a request out of its sequence (a bug in wr-wm-tiling)",
        _ => "protocol error",
    };
    miette!(
        "{meaning}: {}@{} error {}: {}",
        e.object_interface,
        e.object_id,
        e.code,
        e.message
    )
}
