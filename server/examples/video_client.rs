//! `video_client`: a Wayland client whose window looks like video, for benchmarks.
//!
//! One xdg toplevel of a fixed size (`--size`, default 640x360) drawn into two `wl_shm` buffers
//! (double buffering), paced by frame callbacks, so it draws at most as fast as the compositor
//! shows frames (up to `--fps`, default 60). Each frame is a smooth gradient that drifts across
//! the window plus a few blocks of noise that move over it, like a camera pan with detail in it:
//! most pixels change every frame, but not as random noise everywhere. The pictures are
//! deterministic (a seeded PRNG, `--seed`), so two runs draw the same frames.
//!
//! After `--seconds` (or when the compositor closes the window) it prints on stdout
//!
//! ```text
//! VIDEO_CLIENT_FRAMES=<frames committed> callbacks=<frame callbacks received> seconds=<wall time>
//! ```
//!
//! and exits.
//!
//! ```sh
//! cargo build --release -p wayray-server --example video_client
//! WAYLAND_DISPLAY=wayland-1 target/release/examples/video_client --size 640x360 --seconds 10
//! ```

use std::time::{Duration, Instant};

use clap::Parser;
use miette::{miette, IntoDiagnostic, Result, WrapErr};
use smithay_client_toolkit::{
    compositor::{CompositorHandler, CompositorState},
    delegate_compositor, delegate_output, delegate_registry, delegate_shm, delegate_xdg_shell,
    delegate_xdg_window,
    output::{OutputHandler, OutputState},
    reexports::{
        calloop::{
            timer::{TimeoutAction, Timer},
            EventLoop,
        },
        calloop_wayland_source::WaylandSource,
        client::{
            globals::registry_queue_init,
            protocol::{wl_output, wl_shm, wl_surface},
            Connection, QueueHandle,
        },
    },
    registry::{ProvidesRegistryState, RegistryState},
    registry_handlers,
    shell::{
        xdg::{
            window::{Window, WindowConfigure, WindowDecorations, WindowHandler},
            XdgShell,
        },
        WaylandSurface,
    },
    shm::{
        slot::{Buffer, SlotPool},
        Shm, ShmHandler,
    },
};

/// A video-like Wayland test client: moving gradients and noise blocks at a fixed size.
#[derive(Parser, Debug)]
#[command(about, long_about = None)]
struct Cli {
    /// Window size, WIDTHxHEIGHT.
    #[arg(long, default_value = "640x360", value_parser = parse_size)]
    size: (u32, u32),
    /// Run this many seconds (fractions allowed), then print the frame count and exit.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Upper bound on the frame rate (frame callbacks may make it lower).
    #[arg(long, default_value_t = 60.0)]
    fps: f64,
    /// Seed of the noise.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn parse_size(s: &str) -> std::result::Result<(u32, u32), String> {
    let (w, h) = s
        .split_once('x')
        .ok_or_else(|| format!("{s:?} is not WIDTHxHEIGHT"))?;
    let w: u32 = w.parse().map_err(|_| format!("bad width in {s:?}"))?;
    let h: u32 = h.parse().map_err(|_| format!("bad height in {s:?}"))?;
    if !(16..=8192).contains(&w) || !(16..=8192).contains(&h) {
        return Err(format!("{s:?}: width and height must be 16..=8192"));
    }
    Ok((w, h))
}

/// Number of noise blocks moving over the gradient.
const BLOCKS: usize = 5;

/// Xorshift64*: the deterministic noise source.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// A block of noise moving in a straight line, bouncing off the edges.
struct Block {
    x: f64,
    y: f64,
    dx: f64,
    dy: f64,
    w: u32,
    h: u32,
}

/// The picture: what frame `n` looks like.
struct Scene {
    width: u32,
    height: u32,
    blocks: Vec<Block>,
    rng: Rng,
    frame: u64,
}

impl Scene {
    fn new(width: u32, height: u32, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let blocks = (0..BLOCKS)
            .map(|_| {
                let w = (width / 6).max(8) + (rng.next() % u64::from(width / 8 + 1)) as u32;
                let h = (height / 6).max(8) + (rng.next() % u64::from(height / 8 + 1)) as u32;
                Block {
                    x: (rng.next() % u64::from(width.saturating_sub(w) + 1)) as f64,
                    y: (rng.next() % u64::from(height.saturating_sub(h) + 1)) as f64,
                    dx: (rng.next() % 7) as f64 - 3.0 + 0.5,
                    dy: (rng.next() % 5) as f64 - 2.0 + 0.5,
                    w: w.min(width),
                    h: h.min(height),
                }
            })
            .collect();
        Scene {
            width,
            height,
            blocks,
            rng,
            frame: 0,
        }
    }

    /// Draws the next frame into `pixels` (XRGB8888, `width * 4` bytes per row).
    fn draw(&mut self, pixels: &mut [u8]) {
        let (w, h) = (self.width as usize, self.height as usize);
        let t = self.frame as i64;
        // Triangle waves: smooth, cheap, and the whole picture drifts every frame.
        let tri = |v: i64| -> u8 {
            let v = v.rem_euclid(512);
            (if v < 256 { v } else { 511 - v }) as u8
        };
        for (y, row) in pixels.chunks_exact_mut(w * 4).take(h).enumerate() {
            let y = y as i64;
            let g = tri(y * 2 + t * 3);
            for (x, px) in row.chunks_exact_mut(4).enumerate() {
                let x = x as i64;
                px[0] = tri(x + y + t * 2); // blue
                px[1] = g;
                px[2] = tri(x * 3 / 2 - t * 4); // red
                px[3] = 0xff;
            }
        }
        for block in &mut self.blocks {
            block.x += block.dx;
            block.y += block.dy;
            let max_x = (self.width - block.w) as f64;
            let max_y = (self.height - block.h) as f64;
            if block.x < 0.0 || block.x > max_x {
                block.dx = -block.dx;
                block.x = block.x.clamp(0.0, max_x);
            }
            if block.y < 0.0 || block.y > max_y {
                block.dy = -block.dy;
                block.y = block.y.clamp(0.0, max_y);
            }
            let (bx, by) = (block.x as usize, block.y as usize);
            for y in by..by + block.h as usize {
                let row = &mut pixels[y * w * 4..(y + 1) * w * 4];
                for px in row[bx * 4..(bx + block.w as usize) * 4].chunks_exact_mut(8) {
                    let n = self.rng.next();
                    // Grey-ish noise, two pixels per random number.
                    px[..4].copy_from_slice(&[n as u8, n as u8, (n >> 8) as u8, 0xff]);
                    px[4..].copy_from_slice(&[
                        (n >> 16) as u8,
                        (n >> 16) as u8,
                        (n >> 24) as u8,
                        0xff,
                    ]);
                }
            }
        }
        self.frame += 1;
    }
}

struct App {
    registry: RegistryState,
    outputs: OutputState,
    shm: Shm,
    window: Window,
    pool: SlotPool,
    buffers: Vec<Buffer>,
    scene: Scene,
    qh: QueueHandle<App>,
    mapped: bool,
    frame_pending: bool,
    /// Earliest time of the next frame (the --fps bound).
    next_frame: Instant,
    min_interval: Duration,
    drawn: u64,
    callbacks: u64,
    closed: bool,
    error: Option<String>,
}

impl App {
    fn draw(&mut self) {
        let (width, height) = (self.scene.width, self.scene.height);
        let stride = width as i32 * 4;
        let free = self
            .buffers
            .iter()
            .position(|b| b.canvas(&mut self.pool).is_some());
        let buffer = match free {
            Some(i) => self.buffers.remove(i),
            None => match self.pool.create_buffer(
                width as i32,
                height as i32,
                stride,
                wl_shm::Format::Xrgb8888,
            ) {
                Ok((buffer, _)) => buffer,
                Err(e) => {
                    self.error = Some(format!("cannot allocate a buffer: {e}"));
                    return;
                }
            },
        };
        let Some(pixels) = buffer.canvas(&mut self.pool) else {
            self.error = Some("a fresh buffer is busy".into());
            return;
        };
        self.scene.draw(pixels);
        let surface = self.window.wl_surface();
        surface.damage_buffer(0, 0, width as i32, height as i32);
        surface.frame(&self.qh, surface.clone());
        if let Err(e) = buffer.attach_to(surface) {
            self.error = Some(format!("cannot attach the buffer: {e:?}"));
            return;
        }
        self.window.commit();
        self.frame_pending = true;
        self.drawn += 1;
        self.next_frame = Instant::now() + self.min_interval;
        self.buffers.push(buffer);
        if self.buffers.len() > 2 {
            self.buffers.remove(0);
        }
    }

    /// Draws when the compositor wants a frame and the --fps bound allows one.
    fn maybe_draw(&mut self) {
        if self.mapped && !self.frame_pending && Instant::now() >= self.next_frame {
            self.draw();
        }
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if !(cli.seconds > 0.0 && cli.seconds.is_finite()) {
        return Err(miette!("--seconds must be positive"));
    }
    if !(cli.fps > 0.0 && cli.fps.is_finite()) {
        return Err(miette!("--fps must be positive"));
    }
    let (width, height) = cli.size;
    let conn = Connection::connect_to_env()
        .into_diagnostic()
        .wrap_err("cannot connect to the Wayland display (is WAYLAND_DISPLAY set?)")?;
    let (globals, queue) = registry_queue_init(&conn).into_diagnostic()?;
    let qh = queue.handle();
    let mut event_loop: EventLoop<App> = EventLoop::try_new().into_diagnostic()?;
    let handle = event_loop.handle();
    WaylandSource::new(conn.clone(), queue)
        .insert(handle.clone())
        .map_err(|e| miette!("cannot watch the Wayland connection: {}", e.error))?;

    let compositor =
        CompositorState::bind(&globals, &qh).map_err(|_| miette!("no wl_compositor"))?;
    let xdg = XdgShell::bind(&globals, &qh).map_err(|_| miette!("no xdg_wm_base"))?;
    let shm = Shm::bind(&globals, &qh).map_err(|_| miette!("no wl_shm"))?;
    let surface = compositor.create_surface(&qh);
    let window = xdg.create_window(surface, WindowDecorations::RequestServer, &qh);
    window.set_title("video_client");
    window.set_app_id("org.wayray.video_client");
    window.set_min_size(Some((width, height)));
    window.set_max_size(Some((width, height)));
    window.commit();
    let pool = SlotPool::new((width * height * 4 * 2) as usize, &shm)
        .into_diagnostic()
        .wrap_err("cannot create the shm pool")?;

    let min_interval = Duration::from_secs_f64(1.0 / cli.fps);
    let mut app = App {
        registry: RegistryState::new(&globals),
        outputs: OutputState::new(&globals, &qh),
        shm,
        window,
        pool,
        buffers: Vec::new(),
        scene: Scene::new(width, height, cli.seed),
        qh,
        mapped: false,
        frame_pending: false,
        next_frame: Instant::now(),
        min_interval,
        drawn: 0,
        callbacks: 0,
        closed: false,
        error: None,
    };
    // Wakes the loop when the --fps bound held a frame back.
    handle
        .insert_source(Timer::from_duration(min_interval), move |_, _, app| {
            app.maybe_draw();
            TimeoutAction::ToDuration(min_interval / 4)
        })
        .map_err(|e| miette!("cannot start a timer: {}", e.error))?;

    let start = Instant::now();
    let end = start + Duration::from_secs_f64(cli.seconds);
    while !app.closed {
        let now = Instant::now();
        if now >= end {
            break;
        }
        event_loop
            .dispatch(Some(end - now), &mut app)
            .into_diagnostic()
            .wrap_err("lost the Wayland connection")?;
        if let Some(e) = app.error.take() {
            return Err(miette!("{e}"));
        }
    }
    println!(
        "VIDEO_CLIENT_FRAMES={} callbacks={} seconds={:.3}",
        app.drawn,
        app.callbacks,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

impl CompositorHandler for App {
    fn scale_factor_changed(
        &mut self,
        _: &Connection,
        _: &QueueHandle<Self>,
        _: &wl_surface::WlSurface,
        _: i32,
    ) {
    }

    fn transform_changed(
        &mut self,
        _: &Connection,
        _: &QueueHandle<Self>,
        _: &wl_surface::WlSurface,
        _: wl_output::Transform,
    ) {
    }

    fn frame(&mut self, _: &Connection, _: &QueueHandle<Self>, _: &wl_surface::WlSurface, _: u32) {
        self.callbacks += 1;
        self.frame_pending = false;
        self.maybe_draw();
    }

    fn surface_enter(
        &mut self,
        _: &Connection,
        _: &QueueHandle<Self>,
        _: &wl_surface::WlSurface,
        _: &wl_output::WlOutput,
    ) {
    }

    fn surface_leave(
        &mut self,
        _: &Connection,
        _: &QueueHandle<Self>,
        _: &wl_surface::WlSurface,
        _: &wl_output::WlOutput,
    ) {
    }
}

impl OutputHandler for App {
    fn output_state(&mut self) -> &mut OutputState {
        &mut self.outputs
    }
    fn new_output(&mut self, _: &Connection, _: &QueueHandle<Self>, _: wl_output::WlOutput) {}
    fn update_output(&mut self, _: &Connection, _: &QueueHandle<Self>, _: wl_output::WlOutput) {}
    fn output_destroyed(&mut self, _: &Connection, _: &QueueHandle<Self>, _: wl_output::WlOutput) {}
}

impl WindowHandler for App {
    fn request_close(&mut self, _: &Connection, _: &QueueHandle<Self>, _: &Window) {
        self.closed = true;
    }

    fn configure(
        &mut self,
        _: &Connection,
        _: &QueueHandle<Self>,
        _: &Window,
        _: WindowConfigure,
        _: u32,
    ) {
        // The size is fixed whatever the compositor suggests: the benchmark compares equal work.
        if !self.mapped {
            self.mapped = true;
            // A configure is answered by a commit even while a frame is pending.
            self.draw();
        }
    }
}

impl ShmHandler for App {
    fn shm_state(&mut self) -> &mut Shm {
        &mut self.shm
    }
}

impl ProvidesRegistryState for App {
    fn registry(&mut self) -> &mut RegistryState {
        &mut self.registry
    }
    registry_handlers![OutputState];
}

delegate_compositor!(App);
delegate_output!(App);
delegate_shm!(App);
delegate_xdg_shell!(App);
delegate_xdg_window!(App);
delegate_registry!(App);
