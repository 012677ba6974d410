//! A window manager that misbehaves on purpose, for the window-management tests. It binds
//! `wayray_wm_manager_v1` and, by `--mode`:
//!
//! - `second`: prints `unavailable` if another WM is active (exit 0), or `active` at its first
//!   `manage_start` if it became the WM; then it answers every sequence, showing each window
//!   where it is (new ones at 0,0).
//! - `out-of-sequence`: at the first `manage_start` makes a render-only request (`set_position`
//!   on a window, or `render_done` if there is no window) and waits for the protocol error.
//! - `stall`: never answers `manage_start`, to be disconnected as unresponsive.
//! - `manage-only`: answers every `manage_start`, never a `render_start`, to be disconnected as
//!   unresponsive in the render phase.
//!
//! Prints one line per event a test may wait for: `output NAME W H`, `window`, `manage_start`,
//! `render_start`, `unavailable`, `active`; and when the compositor ends the connection with a
//! protocol error, `not_permitted` (for that error) and then
//! `protocol error: INTERFACE@ID code N: MESSAGE`, exiting 0.

mod support;

use clap::{Parser, ValueEnum};
use support::say;
use wayland_client::{
    event_created_child, globals::GlobalListContents, protocol::wl_registry, Connection, Dispatch,
    QueueHandle,
};
use wayray_wm_protocol::client::{
    wayray_wm_manager_v1::{self, WayrayWmManagerV1},
    wayray_wm_seat_v1::{self, WayrayWmSeatV1},
    wayray_wm_window_v1::{self, WayrayWmWindowV1},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    Second,
    OutOfSequence,
    Stall,
    ManageOnly,
}

/// A deliberately misbehaving window manager for the wayray-wm-v1 tests.
#[derive(Parser)]
struct Cli {
    /// How to (mis)behave; see the module docs.
    #[arg(long, value_enum)]
    mode: Mode,
}

struct Probe {
    mode: Mode,
    /// Each window and where the compositor said it is (windows taken over).
    windows: Vec<(WayrayWmWindowV1, Option<(i32, i32)>)>,
    manage_starts: u32,
    /// Exit 0 after this dispatch.
    finished: bool,
}

impl Dispatch<WayrayWmManagerV1, ()> for Probe {
    fn event(
        probe: &mut Probe,
        manager: &WayrayWmManagerV1,
        event: wayray_wm_manager_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Probe>,
    ) {
        use wayray_wm_manager_v1::Event;
        match event {
            Event::Unavailable => {
                say("unavailable");
                manager.destroy();
                probe.finished = true;
            }
            Event::Output {
                name,
                width,
                height,
            } => say(format!("output {name} {width} {height}")),
            Event::Window { id } => {
                say("window");
                probe.windows.push((id, None));
            }
            Event::ManageStart => {
                say("manage_start");
                probe.manage_starts += 1;
                let first = probe.manage_starts == 1;
                match probe.mode {
                    Mode::Second => {
                        if first {
                            say("active");
                        }
                        manager.manage_done();
                    }
                    Mode::OutOfSequence if first => match probe.windows.first() {
                        Some((window, _)) => window.set_position(0, 0),
                        None => manager.render_done(),
                    },
                    Mode::OutOfSequence | Mode::Stall => {}
                    Mode::ManageOnly => manager.manage_done(),
                }
            }
            Event::RenderStart => {
                say("render_start");
                if probe.mode == Mode::Second {
                    for (window, at) in &probe.windows {
                        let (x, y) = at.unwrap_or_default();
                        window.set_position(x, y);
                        window.show();
                    }
                    manager.render_done();
                }
            }
            _ => {}
        }
    }

    event_created_child!(Probe, WayrayWmManagerV1, [
        wayray_wm_manager_v1::EVT_SEAT_OPCODE => (WayrayWmSeatV1, ()),
        wayray_wm_manager_v1::EVT_WINDOW_OPCODE => (WayrayWmWindowV1, ()),
    ]);
}

impl Dispatch<WayrayWmWindowV1, ()> for Probe {
    fn event(
        probe: &mut Probe,
        window: &WayrayWmWindowV1,
        event: wayray_wm_window_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Probe>,
    ) {
        match event {
            wayray_wm_window_v1::Event::Position { x, y } => {
                if let Some((_, at)) = probe.windows.iter_mut().find(|(w, _)| w == window) {
                    *at = Some((x, y));
                }
            }
            wayray_wm_window_v1::Event::Closed => {
                probe.windows.retain(|(w, _)| w != window);
                window.destroy();
            }
            _ => {}
        }
    }
}

impl Dispatch<WayrayWmSeatV1, ()> for Probe {
    fn event(
        _: &mut Probe,
        _: &WayrayWmSeatV1,
        _: wayray_wm_seat_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Probe>,
    ) {
    }
}

impl Dispatch<wl_registry::WlRegistry, GlobalListContents> for Probe {
    fn event(
        _: &mut Probe,
        _: &wl_registry::WlRegistry,
        _: wl_registry::Event,
        _: &GlobalListContents,
        _: &Connection,
        _: &QueueHandle<Probe>,
    ) {
    }
}

fn main() {
    let cli = Cli::parse();
    let (_conn, globals, mut queue) = support::connect::<Probe>("wm_probe");
    let qh = queue.handle();
    let Ok(_manager) = globals.bind::<WayrayWmManagerV1, _, _>(&qh, 1..=1, ()) else {
        eprintln!("wm_probe: the compositor has no wayray_wm_manager_v1");
        std::process::exit(2);
    };
    let mut probe = Probe {
        mode: cli.mode,
        windows: Vec::new(),
        manage_starts: 0,
        finished: false,
    };
    loop {
        if let Err(err) = queue.blocking_dispatch(&mut probe) {
            let Some(error) = support::protocol_error(&err) else {
                eprintln!("wm_probe: connection lost: {err}");
                std::process::exit(1);
            };
            let not_permitted = wayray_wm_manager_v1::Error::NotPermitted as u32;
            if error.object_interface == "wayray_wm_manager_v1" && error.code == not_permitted {
                say("not_permitted");
            }
            say(support::describe(error));
            std::process::exit(0);
        }
        if probe.finished {
            std::process::exit(0);
        }
    }
}
