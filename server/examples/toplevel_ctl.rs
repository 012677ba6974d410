//! A tiny taskbar for the end-to-end protocol tests: lists the session's windows through
//! wlr-foreign-toplevel-management, as waybar's taskbar does, and optionally acts on one.
//!
//!   toplevel_ctl                      print every toplevel
//!   toplevel_ctl ACTION TITLE         ACTION: activate, close, maximize, unmaximize; then print
//!                                     the list again after the compositor answered
//!
//! Output lines: `toplevel title=T app_id=A activated=B maximized=B outputs=N`, then `end`
//! after each listing.

use std::{collections::HashMap, time::Duration};

use wayland_client::{
    backend::ObjectId,
    event_created_child,
    protocol::{wl_output, wl_registry, wl_seat},
    Connection, Dispatch, Proxy, QueueHandle,
};
use wayland_protocols_wlr::foreign_toplevel::v1::client::{
    zwlr_foreign_toplevel_handle_v1::{self, ZwlrForeignToplevelHandleV1},
    zwlr_foreign_toplevel_manager_v1::{self, ZwlrForeignToplevelManagerV1},
};

#[derive(Default, Clone)]
struct Info {
    title: String,
    app_id: String,
    activated: bool,
    maximized: bool,
    outputs: usize,
    closed: bool,
}

#[derive(Default)]
struct Taskbar {
    manager: Option<ZwlrForeignToplevelManagerV1>,
    seat: Option<wl_seat::WlSeat>,
    handles: Vec<ZwlrForeignToplevelHandleV1>,
    /// Pending (before `done`) and current information per handle.
    pending: HashMap<ObjectId, Info>,
    current: HashMap<ObjectId, Info>,
}

impl Dispatch<wl_registry::WlRegistry, ()> for Taskbar {
    fn event(
        state: &mut Self,
        registry: &wl_registry::WlRegistry,
        event: wl_registry::Event,
        _: &(),
        _: &Connection,
        qh: &QueueHandle<Self>,
    ) {
        if let wl_registry::Event::Global {
            name,
            interface,
            version,
        } = event
        {
            match interface.as_str() {
                "zwlr_foreign_toplevel_manager_v1" => {
                    state.manager = Some(registry.bind(name, version.min(3), qh, ()));
                }
                "wl_seat" => state.seat = Some(registry.bind(name, 1, qh, ())),
                // Bound so the compositor can send output_enter.
                "wl_output" => {
                    let _: wl_output::WlOutput = registry.bind(name, 1, qh, ());
                }
                _ => {}
            }
        }
    }
}

impl Dispatch<ZwlrForeignToplevelManagerV1, ()> for Taskbar {
    fn event(
        state: &mut Self,
        _: &ZwlrForeignToplevelManagerV1,
        event: zwlr_foreign_toplevel_manager_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let zwlr_foreign_toplevel_manager_v1::Event::Toplevel { toplevel } = event {
            state.handles.push(toplevel);
        }
    }

    event_created_child!(Taskbar, ZwlrForeignToplevelManagerV1, [
        zwlr_foreign_toplevel_manager_v1::EVT_TOPLEVEL_OPCODE => (ZwlrForeignToplevelHandleV1, ()),
    ]);
}

impl Dispatch<ZwlrForeignToplevelHandleV1, ()> for Taskbar {
    fn event(
        state: &mut Self,
        handle: &ZwlrForeignToplevelHandleV1,
        event: zwlr_foreign_toplevel_handle_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        use zwlr_foreign_toplevel_handle_v1::Event;
        let id = handle.id();
        let base = state.current.get(&id).cloned().unwrap_or_default();
        let pending = state.pending.entry(id.clone()).or_insert(base);
        match event {
            Event::Title { title } => pending.title = title,
            Event::AppId { app_id } => pending.app_id = app_id,
            Event::OutputEnter { .. } => pending.outputs += 1,
            Event::OutputLeave { .. } => pending.outputs = pending.outputs.saturating_sub(1),
            Event::State { state: bytes } => {
                let states: Vec<u32> = bytes
                    .chunks_exact(4)
                    .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                pending.activated =
                    states.contains(&(zwlr_foreign_toplevel_handle_v1::State::Activated as u32));
                pending.maximized =
                    states.contains(&(zwlr_foreign_toplevel_handle_v1::State::Maximized as u32));
            }
            Event::Done => {
                if let Some(info) = state.pending.remove(&id) {
                    state.current.insert(id, info);
                }
            }
            Event::Closed => {
                if let Some(info) = state.current.get_mut(&id) {
                    info.closed = true;
                }
            }
            _ => {}
        }
    }
}

impl Dispatch<wl_seat::WlSeat, ()> for Taskbar {
    fn event(
        _: &mut Self,
        _: &wl_seat::WlSeat,
        _: wl_seat::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
    }
}

impl Dispatch<wl_output::WlOutput, ()> for Taskbar {
    fn event(
        _: &mut Self,
        _: &wl_output::WlOutput,
        _: wl_output::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
    }
}

impl Taskbar {
    fn print(&self) {
        for handle in &self.handles {
            if let Some(info) = self.current.get(&handle.id()).filter(|i| !i.closed) {
                println!(
                    "toplevel title={} app_id={} activated={} maximized={} outputs={}",
                    info.title, info.app_id, info.activated, info.maximized, info.outputs
                );
            }
        }
        println!("end");
    }

    fn find(&self, title: &str) -> Option<&ZwlrForeignToplevelHandleV1> {
        self.handles.iter().find(|h| {
            self.current
                .get(&h.id())
                .is_some_and(|i| i.title == title && !i.closed)
        })
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let conn = Connection::connect_to_env().expect("connect to the Wayland display");
    let mut queue = conn.new_event_queue();
    let qh = queue.handle();
    conn.display().get_registry(&qh, ());
    let mut bar = Taskbar::default();
    // Globals, then the toplevels, then their details.
    for _ in 0..3 {
        queue.roundtrip(&mut bar).expect("roundtrip");
    }
    if bar.manager.is_none() {
        eprintln!("no zwlr_foreign_toplevel_manager_v1");
        std::process::exit(2);
    }
    bar.print();
    if let [action, title] = args.as_slice() {
        let Some(handle) = bar.find(title).cloned() else {
            eprintln!("no toplevel titled {title:?}");
            std::process::exit(3);
        };
        match action.as_str() {
            "activate" => {
                let seat = bar.seat.clone().expect("a wl_seat");
                handle.activate(&seat);
            }
            "close" => handle.close(),
            "maximize" => handle.set_maximized(),
            "unmaximize" => handle.unset_maximized(),
            other => {
                eprintln!("unknown action {other:?}");
                std::process::exit(2);
            }
        }
        queue.roundtrip(&mut bar).expect("roundtrip");
        // The window answers (acks the configure, or exits) on its own time.
        std::thread::sleep(Duration::from_millis(500));
        queue.roundtrip(&mut bar).expect("roundtrip");
        bar.print();
    }
}
