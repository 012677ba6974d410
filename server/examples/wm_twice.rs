//! A window manager that binds `wayray_wm_manager_v1` twice from one process, for the test of
//! the `unavailable` path: only the process the session started as its WM may bind at all, so a
//! second binding while a WM is active can only come from that same process.
//!
//! Prints `active` at the first binding's first `manage_start`, then binds again and prints
//! `unavailable` when the second binding is told so. It answers every sequence of the first
//! binding (moving and showing nothing), so it stays the session's WM until killed. A protocol
//! error prints `protocol error: INTERFACE@ID code N: MESSAGE` and exits 0.

mod support;

use support::say;
use wayland_client::{
    event_created_child, globals::GlobalList, globals::GlobalListContents, protocol::wl_registry,
    Connection, Dispatch, QueueHandle,
};
use wayray_wm_protocol::client::{
    wayray_wm_manager_v1::{self, WayrayWmManagerV1},
    wayray_wm_seat_v1::{self, WayrayWmSeatV1},
    wayray_wm_window_v1::{self, WayrayWmWindowV1},
};

/// Which binding a manager object is: the first (the WM) or the second (to be refused).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Binding {
    First,
    Second,
}

struct Twice {
    globals: GlobalList,
    second: Option<WayrayWmManagerV1>,
}

impl Dispatch<WayrayWmManagerV1, Binding> for Twice {
    fn event(
        state: &mut Twice,
        manager: &WayrayWmManagerV1,
        event: wayray_wm_manager_v1::Event,
        binding: &Binding,
        _: &Connection,
        qh: &QueueHandle<Twice>,
    ) {
        use wayray_wm_manager_v1::Event;
        match (event, *binding) {
            (Event::ManageStart, Binding::First) => {
                if state.second.is_none() {
                    say("active");
                    match state
                        .globals
                        .bind::<WayrayWmManagerV1, _, _>(qh, 1..=1, Binding::Second)
                    {
                        Ok(second) => state.second = Some(second),
                        Err(e) => {
                            eprintln!("wm_twice: cannot bind the manager again: {e}");
                            std::process::exit(2);
                        }
                    }
                }
                manager.manage_done();
            }
            (Event::RenderStart, Binding::First) => manager.render_done(),
            (Event::Unavailable, Binding::Second) => {
                say("unavailable");
                manager.destroy();
            }
            (Event::Unavailable, Binding::First) => say("first binding unavailable"),
            (Event::ManageStart, Binding::Second) => say("second binding active"),
            _ => {}
        }
    }

    event_created_child!(Twice, WayrayWmManagerV1, [
        wayray_wm_manager_v1::EVT_SEAT_OPCODE => (WayrayWmSeatV1, ()),
        wayray_wm_manager_v1::EVT_WINDOW_OPCODE => (WayrayWmWindowV1, ()),
    ]);
}

impl Dispatch<WayrayWmWindowV1, ()> for Twice {
    fn event(
        _: &mut Twice,
        window: &WayrayWmWindowV1,
        event: wayray_wm_window_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Twice>,
    ) {
        if let wayray_wm_window_v1::Event::Closed = event {
            window.destroy();
        }
    }
}

impl Dispatch<WayrayWmSeatV1, ()> for Twice {
    fn event(
        _: &mut Twice,
        _: &WayrayWmSeatV1,
        _: wayray_wm_seat_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Twice>,
    ) {
    }
}

impl Dispatch<wl_registry::WlRegistry, GlobalListContents> for Twice {
    fn event(
        _: &mut Twice,
        _: &wl_registry::WlRegistry,
        _: wl_registry::Event,
        _: &GlobalListContents,
        _: &Connection,
        _: &QueueHandle<Twice>,
    ) {
    }
}

fn main() {
    let (_conn, globals, mut queue) = support::connect::<Twice>("wm_twice");
    let qh = queue.handle();
    let Ok(_first) = globals.bind::<WayrayWmManagerV1, _, _>(&qh, 1..=1, Binding::First) else {
        eprintln!("wm_twice: the compositor has no wayray_wm_manager_v1");
        std::process::exit(2);
    };
    let mut state = Twice {
        globals,
        second: None,
    };
    loop {
        if let Err(err) = queue.blocking_dispatch(&mut state) {
            match support::protocol_error(&err) {
                Some(error) => {
                    say(support::describe(error));
                    std::process::exit(0);
                }
                None => {
                    eprintln!("wm_twice: connection lost: {err}");
                    std::process::exit(1);
                }
            }
        }
    }
}
