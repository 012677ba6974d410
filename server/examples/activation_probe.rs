//! A Wayland client for the xdg-activation test: two windows, "one" and "two". Once one has
//! keyboard focus it asks to activate the other twice: first with a token made without any
//! input serial (focus-stealing prevention must ignore it), then with a token made from the
//! serial of its keyboard focus (which must be honoured). Prints `focus NAME` after each step:
//!
//!   start: focus F
//!   after token without serial: focus F
//!   after token with serial: focus O

mod support;

use std::time::Duration;

use wayland_client::{
    delegate_noop,
    protocol::{
        wl_buffer, wl_compositor, wl_keyboard, wl_registry, wl_seat, wl_shm, wl_shm_pool,
        wl_surface,
    },
    Connection, Dispatch, EventQueue, QueueHandle, WEnum,
};
use wayland_protocols::{
    xdg::activation::v1::client::{
        xdg_activation_token_v1::{self, XdgActivationTokenV1},
        xdg_activation_v1::XdgActivationV1,
    },
    xdg::shell::client::{xdg_surface, xdg_toplevel, xdg_wm_base},
};

#[derive(Default)]
struct Probe {
    compositor: Option<wl_compositor::WlCompositor>,
    shm: Option<wl_shm::WlShm>,
    wm_base: Option<xdg_wm_base::XdgWmBase>,
    seat: Option<wl_seat::WlSeat>,
    activation: Option<XdgActivationV1>,
    /// (surface, name, drawn)
    windows: Vec<(wl_surface::WlSurface, &'static str, bool)>,
    focus: Option<&'static str>,
    enter_serial: u32,
    token: Option<String>,
}

impl Probe {
    fn name_of(&self, surface: &wl_surface::WlSurface) -> Option<&'static str> {
        self.windows
            .iter()
            .find(|(s, _, _)| s == surface)
            .map(|(_, n, _)| *n)
    }
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
                "wl_seat" => state.seat = Some(registry.bind(name, 1, qh, ())),
                "xdg_activation_v1" => state.activation = Some(registry.bind(name, 1, qh, ())),
                _ => {}
            }
        }
    }
}

impl Dispatch<wl_seat::WlSeat, ()> for Probe {
    fn event(
        _: &mut Self,
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
            if caps.contains(wl_seat::Capability::Keyboard) {
                seat.get_keyboard(qh, ());
            }
        }
    }
}

impl Dispatch<wl_keyboard::WlKeyboard, ()> for Probe {
    fn event(
        state: &mut Self,
        _: &wl_keyboard::WlKeyboard,
        event: wl_keyboard::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        match event {
            wl_keyboard::Event::Enter {
                serial, surface, ..
            } => {
                state.focus = state.name_of(&surface);
                state.enter_serial = serial;
            }
            wl_keyboard::Event::Leave { .. } => state.focus = None,
            _ => {}
        }
    }
}

impl Dispatch<XdgActivationTokenV1, ()> for Probe {
    fn event(
        state: &mut Self,
        _: &XdgActivationTokenV1,
        event: xdg_activation_token_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let xdg_activation_token_v1::Event::Done { token } = event {
            state.token = Some(token);
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

/// The xdg_surface's user data is the index of its window.
impl Dispatch<xdg_surface::XdgSurface, usize> for Probe {
    fn event(
        state: &mut Self,
        xdg: &xdg_surface::XdgSurface,
        event: xdg_surface::Event,
        index: &usize,
        _: &Connection,
        qh: &QueueHandle<Self>,
    ) {
        let xdg_surface::Event::Configure { serial } = event else {
            return;
        };
        xdg.ack_configure(serial);
        let Some(shm) = state.shm.clone() else { return };
        let Some((surface, _, drawn)) = state.windows.get_mut(*index) else {
            return;
        };
        if *drawn {
            return;
        }
        support::attach_solid(&shm, qh, surface, (160, 120), 0x60606060);
        surface.commit();
        *drawn = true;
    }
}

delegate_noop!(Probe: ignore wl_compositor::WlCompositor);
delegate_noop!(Probe: ignore wl_surface::WlSurface);
delegate_noop!(Probe: ignore wl_shm::WlShm);
delegate_noop!(Probe: ignore wl_shm_pool::WlShmPool);
delegate_noop!(Probe: ignore wl_buffer::WlBuffer);
delegate_noop!(Probe: ignore xdg_toplevel::XdgToplevel);
delegate_noop!(Probe: ignore XdgActivationV1);

/// Asks for a token (with the focus serial if `with_serial`), activates `target` with it, and
/// gives the compositor time to act.
fn activate_other(
    probe: &mut Probe,
    queue: &mut EventQueue<Probe>,
    with_serial: bool,
    target: &wl_surface::WlSurface,
) {
    let qh = queue.handle();
    let activation = probe.activation.clone().expect("xdg_activation_v1");
    let token = activation.get_activation_token(&qh, ());
    if with_serial {
        let seat = probe.seat.clone().expect("wl_seat");
        token.set_serial(probe.enter_serial, &seat);
        if let Some((focused, _, _)) = probe
            .windows
            .iter()
            .find(|(_, n, _)| Some(*n) == probe.focus)
        {
            token.set_surface(focused);
        }
    }
    token.commit();
    probe.token = None;
    while probe.token.is_none() {
        queue.blocking_dispatch(probe).expect("dispatch");
    }
    activation.activate(probe.token.clone().unwrap_or_default(), target);
    queue.roundtrip(probe).expect("roundtrip");
    std::thread::sleep(Duration::from_millis(300));
    queue.roundtrip(probe).expect("roundtrip");
}

fn main() {
    let conn = Connection::connect_to_env().expect("connect to the Wayland display");
    let mut queue = conn.new_event_queue();
    let qh = queue.handle();
    conn.display().get_registry(&qh, ());
    let mut probe = Probe::default();
    queue.roundtrip(&mut probe).expect("roundtrip");
    let (Some(compositor), Some(wm_base)) = (probe.compositor.clone(), probe.wm_base.clone())
    else {
        eprintln!("activation_probe: no wl_compositor or xdg_wm_base");
        std::process::exit(2);
    };
    if probe.activation.is_none() {
        eprintln!("activation_probe: no xdg_activation_v1");
        std::process::exit(2);
    }
    let mut toplevels = Vec::new();
    for (index, name) in ["one", "two"].into_iter().enumerate() {
        let surface = compositor.create_surface(&qh, ());
        let xdg = wm_base.get_xdg_surface(&surface, &qh, index);
        let toplevel = xdg.get_toplevel(&qh, ());
        toplevel.set_title(name.into());
        surface.commit();
        probe.windows.push((surface, name, false));
        toplevels.push((xdg, toplevel));
    }
    while probe.focus.is_none() || probe.windows.iter().any(|(_, _, drawn)| !drawn) {
        queue.blocking_dispatch(&mut probe).expect("dispatch");
    }
    // Both are mapped; let focus settle on the last one mapped.
    std::thread::sleep(Duration::from_millis(300));
    queue.roundtrip(&mut probe).expect("roundtrip");
    let start = probe.focus.unwrap_or("none");
    println!("start: focus {start}");
    let Some((target, _, _)) = probe
        .windows
        .iter()
        .find(|(_, n, _)| Some(*n) != probe.focus)
        .cloned()
    else {
        return;
    };

    activate_other(&mut probe, &mut queue, false, &target);
    println!(
        "after token without serial: focus {}",
        probe.focus.unwrap_or("none")
    );
    activate_other(&mut probe, &mut queue, true, &target);
    println!(
        "after token with serial: focus {}",
        probe.focus.unwrap_or("none")
    );
}
