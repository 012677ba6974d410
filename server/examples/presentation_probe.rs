//! A Wayland client for the presentation-time test: one toplevel that redraws on every frame
//! callback, asking for wp_presentation feedback on each commit, and prints one line per
//! feedback: `presented seq=S tv_sec=T` or `discarded`. Exits after `COUNT` presented frames.
//!
//!   presentation_probe [COUNT]

mod support;

use wayland_client::{
    delegate_noop,
    protocol::{
        wl_buffer, wl_callback, wl_compositor, wl_registry, wl_shm, wl_shm_pool, wl_surface,
    },
    Connection, Dispatch, QueueHandle,
};
use wayland_protocols::{
    wp::presentation_time::client::{wp_presentation, wp_presentation_feedback},
    xdg::shell::client::{xdg_surface, xdg_toplevel, xdg_wm_base},
};

#[derive(Default)]
struct Probe {
    compositor: Option<wl_compositor::WlCompositor>,
    shm: Option<wl_shm::WlShm>,
    wm_base: Option<xdg_wm_base::XdgWmBase>,
    presentation: Option<wp_presentation::WpPresentation>,
    surface: Option<wl_surface::WlSurface>,
    frame: u32,
    presented: u32,
}

impl Probe {
    /// Draws the next frame (a changing grey, so every frame has damage) with a frame callback
    /// and a presentation feedback request.
    fn draw(&mut self, qh: &QueueHandle<Self>) {
        let (Some(shm), Some(surface)) = (&self.shm, &self.surface) else {
            return;
        };
        let grey = (self.frame * 16 % 256) as u8;
        let colour = u32::from_le_bytes([grey; 4]);
        support::attach_solid(shm, qh, surface, (64, 64), colour);
        surface.frame(qh, ());
        if let Some(presentation) = &self.presentation {
            presentation.feedback(surface, qh, ());
        }
        surface.commit();
        self.frame += 1;
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
                "wp_presentation" => state.presentation = Some(registry.bind(name, 1, qh, ())),
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
        if let xdg_surface::Event::Configure { serial } = event {
            xdg.ack_configure(serial);
            if state.frame == 0 {
                state.draw(qh);
            }
        }
    }
}

impl Dispatch<wl_callback::WlCallback, ()> for Probe {
    fn event(
        state: &mut Self,
        _: &wl_callback::WlCallback,
        event: wl_callback::Event,
        _: &(),
        _: &Connection,
        qh: &QueueHandle<Self>,
    ) {
        if let wl_callback::Event::Done { .. } = event {
            state.draw(qh);
        }
    }
}

impl Dispatch<wp_presentation_feedback::WpPresentationFeedback, ()> for Probe {
    fn event(
        state: &mut Self,
        _: &wp_presentation_feedback::WpPresentationFeedback,
        event: wp_presentation_feedback::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        match event {
            wp_presentation_feedback::Event::Presented {
                tv_sec_lo, seq_lo, ..
            } => {
                state.presented += 1;
                support::say(format!("presented seq={seq_lo} tv_sec={tv_sec_lo}"));
            }
            wp_presentation_feedback::Event::Discarded => support::say("discarded"),
            _ => {}
        }
    }
}

delegate_noop!(Probe: ignore wl_compositor::WlCompositor);
delegate_noop!(Probe: ignore wl_surface::WlSurface);
delegate_noop!(Probe: ignore wl_shm::WlShm);
delegate_noop!(Probe: ignore wl_shm_pool::WlShmPool);
delegate_noop!(Probe: ignore wl_buffer::WlBuffer);
delegate_noop!(Probe: ignore xdg_toplevel::XdgToplevel);
delegate_noop!(Probe: ignore wp_presentation::WpPresentation);

fn main() {
    let count: u32 = std::env::args()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let conn = Connection::connect_to_env().expect("connect to the Wayland display");
    let mut queue = conn.new_event_queue();
    let qh = queue.handle();
    conn.display().get_registry(&qh, ());
    let mut probe = Probe::default();
    queue.roundtrip(&mut probe).expect("roundtrip");
    let (Some(compositor), Some(wm_base)) = (probe.compositor.clone(), probe.wm_base.clone())
    else {
        eprintln!("presentation_probe: no wl_compositor or xdg_wm_base");
        std::process::exit(2);
    };
    if probe.presentation.is_none() {
        eprintln!("presentation_probe: no wp_presentation");
        std::process::exit(2);
    }
    let surface = compositor.create_surface(&qh, ());
    let xdg = wm_base.get_xdg_surface(&surface, &qh, ());
    let toplevel = xdg.get_toplevel(&qh, ());
    toplevel.set_title("presentation".into());
    surface.commit();
    probe.surface = Some(surface);
    while probe.presented < count {
        if let Err(err) = queue.blocking_dispatch(&mut probe) {
            eprintln!("presentation_probe: {err}");
            std::process::exit(1);
        }
    }
}
