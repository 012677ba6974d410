//! A window that fills itself with one colour at exactly the size each configure gives, and
//! answers every configure after the first only `--ack-delay-ms` later: the slow client of the
//! "no torn layout" test (one solid colour per window makes frame digests deterministic, and the
//! delay shows whether the compositor waits for it before showing a new layout).
//!
//! Prints `configure W H` for each configure (the size it gave; 0 lets the client choose) and
//! `committed W H` when it acknowledges it with a buffer of that size. It asks for server-side
//! decorations when the compositor offers xdg-decoration. Exits 0 when asked to close.

mod support;

use std::time::{Duration, Instant};

use clap::Parser;
use rustix::event::{PollFd, PollFlags, Timespec};
use support::say;
use wayland_client::{
    backend::WaylandError,
    delegate_noop,
    globals::GlobalListContents,
    protocol::{wl_buffer, wl_compositor, wl_registry, wl_shm, wl_shm_pool, wl_surface},
    Connection, Dispatch, QueueHandle,
};
use wayland_protocols::xdg::{
    decoration::zv1::client::{
        zxdg_decoration_manager_v1::ZxdgDecorationManagerV1,
        zxdg_toplevel_decoration_v1::{self, ZxdgToplevelDecorationV1},
    },
    shell::client::{xdg_surface, xdg_toplevel, xdg_wm_base},
};

/// The size taken when a configure leaves it to the client (0).
const FALLBACK_SIZE: (i32, i32) = (480, 320);

/// A solid-colour window that acknowledges configures late.
#[derive(Parser)]
struct Cli {
    /// The window's colour, RRGGBB.
    #[arg(long, default_value = "3060a0", value_parser = support::parse_colour)]
    colour: u32,
    /// The window's app_id (the WM and the server's log lines show it).
    #[arg(long, default_value = "slow-client")]
    app_id: String,
    /// Wait this long before acknowledging (and drawing) each configure after the first.
    #[arg(long, default_value_t = 0)]
    ack_delay_ms: u64,
}

struct Client {
    shm: wl_shm::WlShm,
    surface: wl_surface::WlSurface,
    colour: u32,
    delay: Duration,
    /// The size of the xdg_toplevel.configure being collected.
    size: (i32, i32),
    configures: u32,
    /// The latest configure not yet answered: (serial, size, when to answer). A newer one
    /// replaces it, as acknowledging the newest answers all before it.
    waiting: Option<(u32, (i32, i32), Instant)>,
    closed: bool,
}

impl Client {
    fn commit(&mut self, xdg: &xdg_surface::XdgSurface, qh: &QueueHandle<Client>) {
        let Some((serial, (w, h), _)) = self.waiting.take() else {
            return;
        };
        let (w, h) = (
            if w > 0 { w } else { FALLBACK_SIZE.0 },
            if h > 0 { h } else { FALLBACK_SIZE.1 },
        );
        xdg.ack_configure(serial);
        support::attach_solid(&self.shm, qh, &self.surface, (w, h), self.colour);
        self.surface.commit();
        say(format!("committed {w} {h}"));
    }
}

impl Dispatch<xdg_toplevel::XdgToplevel, ()> for Client {
    fn event(
        client: &mut Client,
        _: &xdg_toplevel::XdgToplevel,
        event: xdg_toplevel::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Client>,
    ) {
        match event {
            xdg_toplevel::Event::Configure { width, height, .. } => client.size = (width, height),
            xdg_toplevel::Event::Close => client.closed = true,
            _ => {}
        }
    }
}

impl Dispatch<xdg_surface::XdgSurface, ()> for Client {
    fn event(
        client: &mut Client,
        xdg: &xdg_surface::XdgSurface,
        event: xdg_surface::Event,
        _: &(),
        _: &Connection,
        qh: &QueueHandle<Client>,
    ) {
        let xdg_surface::Event::Configure { serial } = event else {
            return;
        };
        let (w, h) = client.size;
        say(format!("configure {w} {h}"));
        client.configures += 1;
        let due = Instant::now() + client.delay;
        client.waiting = Some((serial, (w, h), due));
        if client.configures == 1 || client.delay.is_zero() {
            client.commit(xdg, qh);
        }
    }
}

impl Dispatch<xdg_wm_base::XdgWmBase, ()> for Client {
    fn event(
        _: &mut Client,
        wm_base: &xdg_wm_base::XdgWmBase,
        event: xdg_wm_base::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Client>,
    ) {
        if let xdg_wm_base::Event::Ping { serial } = event {
            wm_base.pong(serial);
        }
    }
}

impl Dispatch<wl_registry::WlRegistry, GlobalListContents> for Client {
    fn event(
        _: &mut Client,
        _: &wl_registry::WlRegistry,
        _: wl_registry::Event,
        _: &GlobalListContents,
        _: &Connection,
        _: &QueueHandle<Client>,
    ) {
    }
}

delegate_noop!(Client: ignore wl_compositor::WlCompositor);
delegate_noop!(Client: ignore wl_surface::WlSurface);
delegate_noop!(Client: ignore wl_shm::WlShm);
delegate_noop!(Client: ignore wl_shm_pool::WlShmPool);
delegate_noop!(Client: ignore wl_buffer::WlBuffer);
delegate_noop!(Client: ignore ZxdgDecorationManagerV1);
delegate_noop!(Client: ignore ZxdgToplevelDecorationV1);

fn main() {
    let cli = Cli::parse();
    let (conn, globals, mut queue) = support::connect::<Client>("slow_client");
    let qh = queue.handle();
    let (Ok(compositor), Ok(shm), Ok(wm_base)) = (
        globals.bind::<wl_compositor::WlCompositor, _, _>(&qh, 1..=4, ()),
        globals.bind::<wl_shm::WlShm, _, _>(&qh, 1..=1, ()),
        globals.bind::<xdg_wm_base::XdgWmBase, _, _>(&qh, 1..=2, ()),
    ) else {
        eprintln!("slow_client: no wl_compositor, wl_shm or xdg_wm_base");
        std::process::exit(2);
    };
    let surface = compositor.create_surface(&qh, ());
    let xdg = wm_base.get_xdg_surface(&surface, &qh, ());
    let toplevel = xdg.get_toplevel(&qh, ());
    toplevel.set_app_id(cli.app_id.clone());
    toplevel.set_title(cli.app_id.clone());
    if let Ok(decorations) = globals.bind::<ZxdgDecorationManagerV1, _, _>(&qh, 1..=1, ()) {
        decorations
            .get_toplevel_decoration(&toplevel, &qh, ())
            .set_mode(zxdg_toplevel_decoration_v1::Mode::ServerSide);
    }
    surface.commit();

    let mut client = Client {
        shm,
        surface,
        colour: cli.colour,
        delay: Duration::from_millis(cli.ack_delay_ms),
        size: (0, 0),
        configures: 0,
        waiting: None,
        closed: false,
    };
    // Dispatch events, and answer a waiting configure when its time comes.
    while !client.closed {
        queue.dispatch_pending(&mut client).expect("dispatch");
        if client
            .waiting
            .is_some_and(|(_, _, due)| due <= Instant::now())
        {
            client.commit(&xdg, &qh);
        }
        conn.flush().expect("flush to the compositor");
        let Some(guard) = queue.prepare_read() else {
            continue;
        };
        let timeout = client
            .waiting
            .map(|(_, _, due)| due.saturating_duration_since(Instant::now()))
            .and_then(|left| Timespec::try_from(left).ok());
        let ready = {
            let fd = guard.connection_fd();
            let mut fds = [PollFd::new(&fd, PollFlags::IN)];
            match rustix::event::poll(&mut fds, timeout.as_ref()) {
                Ok(n) => n > 0,
                Err(rustix::io::Errno::INTR) => false,
                Err(e) => panic!("poll the Wayland socket: {e}"),
            }
        };
        if ready {
            match guard.read() {
                Ok(_) => {}
                // Readable, yet no whole message yet.
                Err(WaylandError::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    eprintln!("slow_client: connection lost: {e}");
                    std::process::exit(1);
                }
            }
        }
    }
}
