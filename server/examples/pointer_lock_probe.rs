//! A Wayland client for the pointer-constraints test: one 300×200 window that locks the pointer
//! when it enters (as games do) and prints what it then gets: `locked`, `enter X Y`,
//! `motion X Y`, `relative DX DY`, `leave`.
//!
//!   pointer_lock_probe

mod support;

use wayland_client::{
    delegate_noop,
    protocol::{
        wl_buffer, wl_compositor, wl_pointer, wl_registry, wl_seat, wl_shm, wl_shm_pool, wl_surface,
    },
    Connection, Dispatch, QueueHandle, WEnum,
};
use wayland_protocols::{
    wp::{
        pointer_constraints::zv1::client::{
            zwp_confined_pointer_v1::ZwpConfinedPointerV1,
            zwp_locked_pointer_v1::{self, ZwpLockedPointerV1},
            zwp_pointer_constraints_v1::{Lifetime, ZwpPointerConstraintsV1},
        },
        relative_pointer::zv1::client::{
            zwp_relative_pointer_manager_v1::ZwpRelativePointerManagerV1,
            zwp_relative_pointer_v1::{self, ZwpRelativePointerV1},
        },
    },
    xdg::shell::client::{xdg_surface, xdg_toplevel, xdg_wm_base},
};

#[derive(Default)]
struct Probe {
    compositor: Option<wl_compositor::WlCompositor>,
    shm: Option<wl_shm::WlShm>,
    wm_base: Option<xdg_wm_base::XdgWmBase>,
    constraints: Option<ZwpPointerConstraintsV1>,
    relative: Option<ZwpRelativePointerManagerV1>,
    surface: Option<wl_surface::WlSurface>,
    lock: Option<ZwpLockedPointerV1>,
    drawn: bool,
}

impl Dispatch<wl_registry::WlRegistry, ()> for Probe {
    fn event(
        state: &mut Self,
        registry: &wl_registry::WlRegistry,
        event: wl_registry::Event,
        _: &(),
        _: &Connection,
        qh: &QueueHandle<Self>,
    ) {
        if let wl_registry::Event::Global {
            name, interface, ..
        } = event
        {
            match interface.as_str() {
                "wl_compositor" => state.compositor = Some(registry.bind(name, 4, qh, ())),
                "wl_shm" => state.shm = Some(registry.bind(name, 1, qh, ())),
                "xdg_wm_base" => state.wm_base = Some(registry.bind(name, 1, qh, ())),
                "wl_seat" => {
                    let _: wl_seat::WlSeat = registry.bind(name, 5, qh, ());
                }
                "zwp_pointer_constraints_v1" => {
                    state.constraints = Some(registry.bind(name, 1, qh, ()))
                }
                "zwp_relative_pointer_manager_v1" => {
                    state.relative = Some(registry.bind(name, 1, qh, ()))
                }
                _ => {}
            }
        }
    }
}

impl Dispatch<wl_seat::WlSeat, ()> for Probe {
    fn event(
        state: &mut Self,
        seat: &wl_seat::WlSeat,
        event: wl_seat::Event,
        _: &(),
        _: &Connection,
        qh: &QueueHandle<Self>,
    ) {
        if let wl_seat::Event::Capabilities {
            capabilities: WEnum::Value(caps),
        } = event
        {
            if caps.contains(wl_seat::Capability::Pointer) {
                let pointer = seat.get_pointer(qh, ());
                if let Some(relative) = &state.relative {
                    relative.get_relative_pointer(&pointer, qh, ());
                }
            }
        }
    }
}

impl Dispatch<wl_pointer::WlPointer, ()> for Probe {
    fn event(
        state: &mut Self,
        pointer: &wl_pointer::WlPointer,
        event: wl_pointer::Event,
        _: &(),
        _: &Connection,
        qh: &QueueHandle<Self>,
    ) {
        match event {
            wl_pointer::Event::Enter {
                surface_x,
                surface_y,
                ..
            } => {
                support::say(format!("enter {surface_x} {surface_y}"));
                if let (None, Some(constraints), Some(surface)) =
                    (&state.lock, &state.constraints, &state.surface)
                {
                    state.lock = Some(constraints.lock_pointer(
                        surface,
                        pointer,
                        None,
                        Lifetime::Persistent,
                        qh,
                        (),
                    ));
                }
            }
            wl_pointer::Event::Leave { .. } => support::say("leave"),
            wl_pointer::Event::Motion {
                surface_x,
                surface_y,
                ..
            } => support::say(format!("motion {surface_x} {surface_y}")),
            _ => {}
        }
    }
}

impl Dispatch<ZwpLockedPointerV1, ()> for Probe {
    fn event(
        _: &mut Self,
        _: &ZwpLockedPointerV1,
        event: zwp_locked_pointer_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        match event {
            zwp_locked_pointer_v1::Event::Locked => support::say("locked"),
            zwp_locked_pointer_v1::Event::Unlocked => support::say("unlocked"),
            _ => {}
        }
    }
}

impl Dispatch<ZwpRelativePointerV1, ()> for Probe {
    fn event(
        _: &mut Self,
        _: &ZwpRelativePointerV1,
        event: zwp_relative_pointer_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let zwp_relative_pointer_v1::Event::RelativeMotion { dx, dy, .. } = event {
            support::say(format!("relative {dx} {dy}"));
        }
    }
}

impl Dispatch<xdg_wm_base::XdgWmBase, ()> for Probe {
    fn event(
        _: &mut Self,
        wm: &xdg_wm_base::XdgWmBase,
        event: xdg_wm_base::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let xdg_wm_base::Event::Ping { serial } = event {
            wm.pong(serial);
        }
    }
}

impl Dispatch<xdg_surface::XdgSurface, ()> for Probe {
    fn event(
        state: &mut Self,
        xdg: &xdg_surface::XdgSurface,
        event: xdg_surface::Event,
        _: &(),
        _: &Connection,
        qh: &QueueHandle<Self>,
    ) {
        let xdg_surface::Event::Configure { serial } = event else {
            return;
        };
        xdg.ack_configure(serial);
        if state.drawn {
            return;
        }
        let (Some(shm), Some(surface)) = (&state.shm, &state.surface) else {
            return;
        };
        support::attach_solid(shm, qh, surface, (300, 200), 0x40404040);
        surface.commit();
        state.drawn = true;
    }
}

delegate_noop!(Probe: ignore wl_compositor::WlCompositor);
delegate_noop!(Probe: ignore wl_surface::WlSurface);
delegate_noop!(Probe: ignore wl_shm::WlShm);
delegate_noop!(Probe: ignore wl_shm_pool::WlShmPool);
delegate_noop!(Probe: ignore wl_buffer::WlBuffer);
delegate_noop!(Probe: ignore xdg_toplevel::XdgToplevel);
delegate_noop!(Probe: ignore ZwpPointerConstraintsV1);
delegate_noop!(Probe: ignore ZwpConfinedPointerV1);
delegate_noop!(Probe: ignore ZwpRelativePointerManagerV1);

fn main() {
    let conn = Connection::connect_to_env().expect("connect to the Wayland display");
    let mut queue = conn.new_event_queue();
    let qh = queue.handle();
    conn.display().get_registry(&qh, ());
    let mut probe = Probe::default();
    queue.roundtrip(&mut probe).expect("roundtrip");
    let (Some(compositor), Some(wm_base)) = (probe.compositor.clone(), probe.wm_base.clone())
    else {
        eprintln!("pointer_lock_probe: no wl_compositor or xdg_wm_base");
        std::process::exit(2);
    };
    let surface = compositor.create_surface(&qh, ());
    let xdg = wm_base.get_xdg_surface(&surface, &qh, ());
    let toplevel = xdg.get_toplevel(&qh, ());
    toplevel.set_title("pointer-lock".into());
    surface.commit();
    probe.surface = Some(surface);
    loop {
        if let Err(err) = queue.blocking_dispatch(&mut probe) {
            eprintln!("pointer_lock_probe: {err}");
            std::process::exit(1);
        }
    }
}
