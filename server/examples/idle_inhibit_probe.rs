//! A Wayland client for the idle-inhibit test: one toplevel with an idle inhibitor on its
//! surface (as video players have while playing), kept for SECONDS after it is drawn; then it
//! exits, which ends the inhibition. Prints `inhibiting` once drawn and `done` at the end.
//!
//!   idle_inhibit_probe SECONDS

mod support;

use std::time::{Duration, Instant};

use wayland_client::{
    delegate_noop,
    protocol::{wl_buffer, wl_compositor, wl_registry, wl_shm, wl_shm_pool, wl_surface},
    Connection, Dispatch, QueueHandle,
};
use wayland_protocols::{
    wp::idle_inhibit::zv1::client::{
        zwp_idle_inhibit_manager_v1::ZwpIdleInhibitManagerV1,
        zwp_idle_inhibitor_v1::ZwpIdleInhibitorV1,
    },
    xdg::shell::client::{xdg_surface, xdg_toplevel, xdg_wm_base},
};

#[derive(Default)]
struct Probe {
    compositor: Option<wl_compositor::WlCompositor>,
    shm: Option<wl_shm::WlShm>,
    wm_base: Option<xdg_wm_base::XdgWmBase>,
    inhibit: Option<ZwpIdleInhibitManagerV1>,
    surface: Option<wl_surface::WlSurface>,
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
                "zwp_idle_inhibit_manager_v1" => {
                    state.inhibit = Some(registry.bind(name, 1, qh, ()))
                }
                _ => {}
            }
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
        support::attach_solid(shm, qh, surface, (200, 150), 0x80808080);
        surface.commit();
        state.drawn = true;
        support::say("inhibiting");
    }
}

delegate_noop!(Probe: ignore wl_compositor::WlCompositor);
delegate_noop!(Probe: ignore wl_surface::WlSurface);
delegate_noop!(Probe: ignore wl_shm::WlShm);
delegate_noop!(Probe: ignore wl_shm_pool::WlShmPool);
delegate_noop!(Probe: ignore wl_buffer::WlBuffer);
delegate_noop!(Probe: ignore ZwpIdleInhibitManagerV1);
delegate_noop!(Probe: ignore ZwpIdleInhibitorV1);
delegate_noop!(Probe: ignore xdg_toplevel::XdgToplevel);

fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let conn = Connection::connect_to_env().expect("connect to the Wayland display");
    let mut queue = conn.new_event_queue();
    let qh = queue.handle();
    conn.display().get_registry(&qh, ());
    let mut probe = Probe::default();
    queue.roundtrip(&mut probe).expect("roundtrip");
    let (Some(compositor), Some(wm_base), Some(inhibit)) = (
        probe.compositor.clone(),
        probe.wm_base.clone(),
        probe.inhibit.clone(),
    ) else {
        eprintln!(
            "idle_inhibit_probe: a global is missing (compositor, xdg_wm_base, idle inhibit)"
        );
        std::process::exit(2);
    };
    let surface = compositor.create_surface(&qh, ());
    let xdg = wm_base.get_xdg_surface(&surface, &qh, ());
    let toplevel = xdg.get_toplevel(&qh, ());
    toplevel.set_title("idle-inhibit".into());
    inhibit.create_inhibitor(&surface, &qh, ());
    surface.commit();
    probe.surface = Some(surface);
    while !probe.drawn {
        queue.blocking_dispatch(&mut probe).expect("dispatch");
    }
    let end = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < end {
        queue.roundtrip(&mut probe).expect("roundtrip");
        std::thread::sleep(Duration::from_millis(100));
    }
    support::say("done");
}
