//! A tiny Wayland client for the end-to-end video test: one toplevel that plays a synthetic
//! video (a colour gradient panning under grain and a moving block of noise), one picture per
//! frame callback, for a number of frames, then stops on its last picture, like a paused player.
//!
//!   video_probe [WIDTH] [HEIGHT] [FRAMES]
//!
//! Prints "mapped" when the first picture is committed and "stopped" after the last one; exits 0
//! when the compositor closes the window.

use std::{io::Write, os::fd::AsFd};

use wayland_client::{
    delegate_noop,
    protocol::{
        wl_buffer, wl_callback, wl_compositor, wl_registry, wl_shm, wl_shm_pool, wl_surface,
    },
    Connection, Dispatch, QueueHandle,
};
use wayland_protocols::xdg::shell::client::{xdg_surface, xdg_toplevel, xdg_wm_base};

#[derive(Default)]
struct Probe {
    width: i32,
    height: i32,
    frames: u32,
    drawn: u32,
    compositor: Option<wl_compositor::WlCompositor>,
    shm: Option<wl_shm::WlShm>,
    wm_base: Option<xdg_wm_base::XdgWmBase>,
    surface: Option<wl_surface::WlSurface>,
    configured: bool,
    closed: bool,
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Picture `t`: XRGB8888, `width × height`.
fn picture(width: i32, height: i32, t: u32) -> Vec<u8> {
    let (w, h) = (width as u32, height as u32);
    let tri = |v: u32| {
        let v = v % 512;
        if v < 256 {
            v
        } else {
            511 - v
        }
    };
    let mut rng = u64::from(t) << 32 | 0x5eed;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut px = Vec::with_capacity((w * h * 4) as usize);
    for y in 0..h {
        for x in 0..w {
            let g = (next() % 5) as i32 - 2;
            let c = |v: u32| (v as i32 + g).clamp(0, 255) as u8;
            px.extend_from_slice(&[
                c(tri((x + y) / 2 + 3 * t)),
                c(tri(y + 2 * t)),
                c(tri(x + 4 * t)),
                0xff,
            ]);
        }
    }
    if w > 64 && h > 64 {
        let (bx, by) = ((5 * t) % (w - 64), (3 * t) % (h - 64));
        let mut texture = 0x1234_5678u64;
        for row in 0..64 {
            for col in 0..64 {
                texture ^= texture << 13;
                texture ^= texture >> 7;
                texture ^= texture << 17;
                let v = texture as u8;
                let i = (((by + row) * w + bx + col) * 4) as usize;
                px[i..i + 4].copy_from_slice(&[v, v, v, 0xff]);
            }
        }
    }
    px
}

impl Probe {
    /// Commits the next picture, asking for a frame callback while more are to come.
    fn draw(&mut self, qh: &QueueHandle<Self>) {
        let (Some(shm), Some(surface)) = (&self.shm, &self.surface) else {
            return;
        };
        let (width, height) = (self.width, self.height);
        let stride = width * 4;
        let size = (stride * height) as usize;
        let file = tempfile::tempfile().expect("tempfile for the shm pool");
        (&file)
            .write_all(&picture(width, height, self.drawn))
            .expect("fill shm pool");
        let pool = shm.create_pool(file.as_fd(), size as i32, qh, ());
        let buffer = pool.create_buffer(0, width, height, stride, wl_shm::Format::Xrgb8888, qh, ());
        surface.attach(Some(&buffer), 0, 0);
        surface.damage_buffer(0, 0, width, height);
        self.drawn += 1;
        if self.drawn < self.frames {
            surface.frame(qh, ());
        }
        surface.commit();
        pool.destroy();
        if self.drawn == self.frames {
            say("stopped");
        }
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
                _ => {}
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
        if !state.configured {
            state.configured = true;
            state.draw(qh);
            say("mapped");
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
        if let xdg_toplevel::Event::Close = event {
            state.closed = true;
        }
    }
}

delegate_noop!(Probe: ignore wl_compositor::WlCompositor);
delegate_noop!(Probe: ignore wl_surface::WlSurface);
delegate_noop!(Probe: ignore wl_shm::WlShm);
delegate_noop!(Probe: ignore wl_shm_pool::WlShmPool);
delegate_noop!(Probe: ignore wl_buffer::WlBuffer);

fn main() {
    let mut args = std::env::args().skip(1);
    let mut probe = Probe {
        width: args.next().and_then(|v| v.parse().ok()).unwrap_or(384),
        height: args.next().and_then(|v| v.parse().ok()).unwrap_or(288),
        frames: args.next().and_then(|v| v.parse().ok()).unwrap_or(90),
        ..Default::default()
    };
    let conn = match Connection::connect_to_env() {
        Ok(c) => c,
        Err(err) => {
            eprintln!("video_probe: cannot connect to the Wayland display: {err}");
            std::process::exit(2);
        }
    };
    let mut queue = conn.new_event_queue();
    let qh = queue.handle();
    conn.display().get_registry(&qh, ());
    if let Err(err) = queue.roundtrip(&mut probe) {
        eprintln!("video_probe: {err}");
        std::process::exit(2);
    }
    let (Some(compositor), Some(wm_base)) = (probe.compositor.clone(), probe.wm_base.clone())
    else {
        eprintln!("video_probe: compositor lacks wl_compositor or xdg_wm_base");
        std::process::exit(2);
    };
    let surface = compositor.create_surface(&qh, ());
    let xdg = wm_base.get_xdg_surface(&surface, &qh, ());
    let toplevel = xdg.get_toplevel(&qh, ());
    toplevel.set_title("video".into());
    surface.commit();
    probe.surface = Some(surface);
    while !probe.closed {
        if let Err(err) = queue.blocking_dispatch(&mut probe) {
            eprintln!("video_probe: {err}");
            std::process::exit(1);
        }
    }
}
