//! A tiny Wayland client for the end-to-end input tests: one toplevel filled with a solid colour
//! that prints every seat event it receives on stdout, one per line, so a test can check what a
//! real client saw (surface-local coordinates, buttons, scroll values, touch points, keys, focus,
//! configure sizes). A right click opens a grabbing popup, like a context menu.
//!
//!   input_probe [TITLE] [WIDTH] [HEIGHT] [RRGGBB]
//!
//! The title is also the window's app_id, so a test can tell probes apart in the compositor's
//! log. The window takes every size the compositor configures, the first one included (a window
//! manager that tiles sizes windows before they map).
//!
//! Exits 0 when the compositor closes the window (xdg_toplevel.close).

mod support;

use wayland_client::{
    delegate_noop,
    protocol::{
        wl_buffer, wl_compositor, wl_keyboard, wl_pointer, wl_registry, wl_seat, wl_shm,
        wl_shm_pool, wl_surface, wl_touch,
    },
    Connection, Dispatch, QueueHandle, WEnum,
};
use wayland_protocols::xdg::shell::client::{
    xdg_popup, xdg_positioner, xdg_surface, xdg_toplevel, xdg_wm_base,
};

/// evdev BTN_RIGHT.
const BTN_RIGHT: u32 = 0x111;

#[derive(Default)]
struct Probe {
    width: i32,
    height: i32,
    colour: u32,
    title: String,
    compositor: Option<wl_compositor::WlCompositor>,
    shm: Option<wl_shm::WlShm>,
    wm_base: Option<xdg_wm_base::XdgWmBase>,
    seat: Option<wl_seat::WlSeat>,
    surface: Option<wl_surface::WlSurface>,
    xdg: Option<xdg_surface::XdgSurface>,
    /// The open "context menu": its surface, xdg_surface and popup.
    popup: Option<(
        wl_surface::WlSurface,
        xdg_surface::XdgSurface,
        xdg_popup::XdgPopup,
    )>,
    last_pointer: (f64, f64),
    /// The size of the buffer attached last; `width`×`height` is the one configured last.
    drawn: (i32, i32),
    configured: bool,
    closed: bool,
}

impl Probe {
    fn draw(&mut self, qh: &QueueHandle<Self>) {
        self.drawn = (self.width, self.height);
        if let (Some(shm), Some(surface)) = (&self.shm, &self.surface) {
            support::attach_solid(shm, qh, surface, (self.width, self.height), self.colour);
            surface.commit();
        }
    }

    /// Opens a 100×80 popup at the pointer with an explicit grab, like a context menu.
    fn open_popup(&mut self, serial: u32, qh: &QueueHandle<Self>) {
        let (Some(compositor), Some(wm), Some(parent), Some(seat)) =
            (&self.compositor, &self.wm_base, &self.xdg, &self.seat)
        else {
            return;
        };
        let positioner = wm.create_positioner(qh, ());
        positioner.set_size(100, 80);
        positioner.set_anchor_rect(self.last_pointer.0 as i32, self.last_pointer.1 as i32, 1, 1);
        let surface = compositor.create_surface(qh, ());
        let xdg = wm.get_xdg_surface(&surface, qh, ());
        let popup = xdg.get_popup(Some(parent), &positioner, qh, ());
        popup.grab(seat, serial);
        surface.commit();
        self.popup = Some((surface, xdg, popup));
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
            name,
            interface,
            version,
        } = event
        {
            match interface.as_str() {
                "wl_compositor" => {
                    state.compositor = Some(registry.bind(name, version.min(4), qh, ()))
                }
                "wl_shm" => state.shm = Some(registry.bind(name, 1, qh, ())),
                "xdg_wm_base" => state.wm_base = Some(registry.bind(name, 1, qh, ())),
                "wl_seat" => state.seat = Some(registry.bind(name, version.min(8), qh, ())),
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
            if caps.contains(wl_seat::Capability::Pointer) {
                seat.get_pointer(qh, ());
            }
            if caps.contains(wl_seat::Capability::Keyboard) {
                seat.get_keyboard(qh, ());
            }
            if caps.contains(wl_seat::Capability::Touch) {
                seat.get_touch(qh, ());
            }
        }
    }
}

fn axis_name(a: WEnum<wl_pointer::Axis>) -> &'static str {
    match a {
        WEnum::Value(wl_pointer::Axis::VerticalScroll) => "vertical",
        WEnum::Value(wl_pointer::Axis::HorizontalScroll) => "horizontal",
        _ => "unknown",
    }
}

impl Dispatch<wl_pointer::WlPointer, ()> for Probe {
    fn event(
        state: &mut Self,
        _: &wl_pointer::WlPointer,
        event: wl_pointer::Event,
        _: &(),
        _: &Connection,
        qh: &QueueHandle<Self>,
    ) {
        use wl_pointer::Event as E;
        match event {
            E::Enter {
                surface_x,
                surface_y,
                ..
            } => {
                state.last_pointer = (surface_x, surface_y);
                support::say(format!("pointer enter {surface_x} {surface_y}"))
            }
            E::Leave { .. } => support::say("pointer leave"),
            E::Motion {
                surface_x,
                surface_y,
                ..
            } => {
                state.last_pointer = (surface_x, surface_y);
                support::say(format!("pointer motion {surface_x} {surface_y}"))
            }
            E::Button {
                button,
                state: button_state,
                serial,
                ..
            } => {
                let pressed =
                    matches!(button_state, WEnum::Value(wl_pointer::ButtonState::Pressed));
                let word = if pressed { "pressed" } else { "released" };
                support::say(format!("pointer button {button:#x} {word}"));
                if pressed && button == BTN_RIGHT && state.popup.is_none() {
                    state.open_popup(serial, qh);
                }
            }
            E::Axis { axis, value, .. } => {
                support::say(format!("pointer axis {} {value}", axis_name(axis)))
            }
            E::AxisValue120 { axis, value120 } => support::say(format!(
                "pointer axis_value120 {} {value120}",
                axis_name(axis)
            )),
            E::AxisSource { axis_source } => {
                let s = match axis_source {
                    WEnum::Value(wl_pointer::AxisSource::Wheel) => "wheel",
                    WEnum::Value(wl_pointer::AxisSource::Finger) => "finger",
                    WEnum::Value(wl_pointer::AxisSource::Continuous) => "continuous",
                    WEnum::Value(wl_pointer::AxisSource::WheelTilt) => "wheel_tilt",
                    _ => "unknown",
                };
                support::say(format!("pointer axis_source {s}"))
            }
            E::AxisStop { axis, .. } => {
                support::say(format!("pointer axis_stop {}", axis_name(axis)))
            }
            _ => {}
        }
    }
}

impl Dispatch<wl_keyboard::WlKeyboard, ()> for Probe {
    fn event(
        _: &mut Self,
        _: &wl_keyboard::WlKeyboard,
        event: wl_keyboard::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        match event {
            wl_keyboard::Event::Enter { .. } => support::say("keyboard enter"),
            wl_keyboard::Event::Leave { .. } => support::say("keyboard leave"),
            wl_keyboard::Event::Key { key, state, .. } => {
                let pressed = matches!(state, WEnum::Value(wl_keyboard::KeyState::Pressed));
                support::say(format!(
                    "key {key} {}",
                    if pressed { "pressed" } else { "released" }
                ))
            }
            wl_keyboard::Event::RepeatInfo { rate, delay } => {
                support::say(format!("keyboard repeat {rate} {delay}"))
            }
            _ => {}
        }
    }
}

impl Dispatch<wl_touch::WlTouch, ()> for Probe {
    fn event(
        _: &mut Self,
        _: &wl_touch::WlTouch,
        event: wl_touch::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        match event {
            wl_touch::Event::Down { id, x, y, .. } => {
                support::say(format!("touch down {id} {x} {y}"))
            }
            wl_touch::Event::Motion { id, x, y, .. } => {
                support::say(format!("touch motion {id} {x} {y}"))
            }
            wl_touch::Event::Up { id, .. } => support::say(format!("touch up {id}")),
            wl_touch::Event::Frame => support::say("touch frame"),
            wl_touch::Event::Cancel => support::say("touch cancel"),
            _ => {}
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
        if let (Some((surface, popup_xdg, _)), Some(shm)) = (&state.popup, &state.shm) {
            if popup_xdg == xdg {
                support::attach_solid(shm, qh, surface, (100, 80), 0xeeeeee);
                surface.commit();
                support::say("popup shown");
                return;
            }
        }
        // Drawn after the ack, so the commit answers this configure.
        if !state.configured {
            state.configured = true;
            state.draw(qh);
            support::say(format!("mapped {}", state.title));
        } else if state.drawn != (state.width, state.height) {
            state.draw(qh);
        }
    }
}

impl Dispatch<xdg_toplevel::XdgToplevel, ()> for Probe {
    fn event(
        state: &mut Self,
        _: &xdg_toplevel::XdgToplevel,
        event: xdg_toplevel::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        match event {
            xdg_toplevel::Event::Close => {
                support::say("closed");
                state.closed = true;
            }
            xdg_toplevel::Event::Configure { width, height, .. } if width > 0 && height > 0 => {
                // Drawn when the xdg_surface configure that ends this one is acked.
                support::say(format!("configure {width} {height}"));
                state.width = width;
                state.height = height;
            }
            _ => {}
        }
    }
}

impl Dispatch<xdg_popup::XdgPopup, ()> for Probe {
    fn event(
        state: &mut Self,
        _: &xdg_popup::XdgPopup,
        event: xdg_popup::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let xdg_popup::Event::PopupDone = event {
            support::say("popup done");
            if let Some((surface, xdg, popup)) = state.popup.take() {
                popup.destroy();
                xdg.destroy();
                surface.destroy();
            }
        }
    }
}

delegate_noop!(Probe: ignore wl_compositor::WlCompositor);
delegate_noop!(Probe: ignore wl_surface::WlSurface);
delegate_noop!(Probe: ignore wl_shm::WlShm);
delegate_noop!(Probe: ignore wl_shm_pool::WlShmPool);
delegate_noop!(Probe: ignore wl_buffer::WlBuffer);
delegate_noop!(Probe: ignore xdg_positioner::XdgPositioner);

fn main() {
    let mut args = std::env::args().skip(1);
    let mut probe = Probe {
        title: args.next().unwrap_or_else(|| "probe".into()),
        width: args.next().and_then(|v| v.parse().ok()).unwrap_or(400),
        height: args.next().and_then(|v| v.parse().ok()).unwrap_or(300),
        colour: args
            .next()
            .and_then(|v| u32::from_str_radix(&v, 16).ok())
            .unwrap_or(0x3366cc),
        ..Default::default()
    };
    let conn = match Connection::connect_to_env() {
        Ok(c) => c,
        Err(err) => {
            eprintln!("input_probe: cannot connect to the Wayland display: {err}");
            std::process::exit(2);
        }
    };
    let mut queue = conn.new_event_queue();
    let qh = queue.handle();
    conn.display().get_registry(&qh, ());
    if let Err(err) = queue.roundtrip(&mut probe) {
        eprintln!("input_probe: {err}");
        std::process::exit(2);
    }
    let (Some(compositor), Some(wm_base)) = (probe.compositor.clone(), probe.wm_base.clone())
    else {
        eprintln!("input_probe: compositor lacks wl_compositor or xdg_wm_base");
        std::process::exit(2);
    };
    let surface = compositor.create_surface(&qh, ());
    let xdg = wm_base.get_xdg_surface(&surface, &qh, ());
    let toplevel = xdg.get_toplevel(&qh, ());
    toplevel.set_title(probe.title.clone());
    toplevel.set_app_id(probe.title.clone());
    surface.commit();
    probe.surface = Some(surface);
    probe.xdg = Some(xdg);
    while !probe.closed {
        if let Err(err) = queue.blocking_dispatch(&mut probe) {
            eprintln!("input_probe: {err}");
            std::process::exit(1);
        }
    }
}
