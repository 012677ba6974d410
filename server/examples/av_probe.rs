//! A client that flashes and beeps in the same instant, for the audio-video offset figure of
//! `scripts/bench audio`: one toplevel, black, that turns white for 300 ms every `PERIOD_MS`,
//! and a PipeWire playback stream (into the session's default sink) that plays silence and, from
//! the same instant, 150 ms of a 1 kHz tone. For each flash it prints
//!
//!   flash n=N commit_us=T      the white buffer was committed at CLOCK_MONOTONIC µs T
//!   beep n=N written_us=T      the tone's first sample was handed to PipeWire at T
//!
//! so a bench on the same host finds the frame rendered after `commit_us` and the sound onset
//! after it in the appliance's `--audio-report`, all on one clock.
//!
//!   av_probe [COUNT] [PERIOD_MS]       (default 10 flashes, 1500 ms apart)

mod support;

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU32, Ordering},
        Arc,
    },
    time::Duration,
};

use pipewire as pw;
use pw::{properties::properties, spa};
use wayland_client::{
    delegate_noop,
    protocol::{wl_buffer, wl_compositor, wl_registry, wl_shm, wl_shm_pool, wl_surface},
    Connection, Dispatch, QueueHandle,
};
use wayland_protocols::xdg::shell::client::{xdg_surface, xdg_toplevel, xdg_wm_base};

const RATE: u32 = 48_000;
const BEEP_HZ: f32 = 1000.0;
const BEEP_SAMPLES: u32 = RATE * 150 / 1000;
const WHITE: u32 = 0x00ff_ffff;
const BLACK: u32 = 0;
const SIZE: (i32, i32) = (256, 256);

fn now_us() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000 + t.tv_nsec as u64 / 1_000
}

#[derive(Default)]
struct Probe {
    compositor: Option<wl_compositor::WlCompositor>,
    shm: Option<wl_shm::WlShm>,
    wm_base: Option<xdg_wm_base::XdgWmBase>,
    configured: bool,
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
        _: &QueueHandle<Self>,
    ) {
        if let xdg_surface::Event::Configure { serial } = event {
            xdg.ack_configure(serial);
            state.configured = true;
        }
    }
}

delegate_noop!(Probe: ignore wl_compositor::WlCompositor);
delegate_noop!(Probe: ignore wl_surface::WlSurface);
delegate_noop!(Probe: ignore wl_shm::WlShm);
delegate_noop!(Probe: ignore wl_shm_pool::WlShmPool);
delegate_noop!(Probe: ignore wl_buffer::WlBuffer);
delegate_noop!(Probe: ignore xdg_toplevel::XdgToplevel);

/// What the Wayland thread tells the audio thread.
#[derive(Default)]
struct Beeper {
    /// The stream is running (its process callback was called).
    streaming: AtomicBool,
    /// Flashes asked for; the audio thread beeps once for each.
    requested: AtomicU32,
}

/// Plays silence, and a beep for every flash, into the session's default sink.
fn audio(beeper: Arc<Beeper>) -> Result<(), pw::Error> {
    pw::init();
    let mainloop = pw::main_loop::MainLoop::new(None)?;
    let context = pw::context::Context::new(&mainloop)?;
    let core = context.connect(None)?;
    let stream = pw::stream::Stream::new(
        &core,
        "av_probe",
        properties! {
            *pw::keys::MEDIA_TYPE => "Audio",
            *pw::keys::MEDIA_CATEGORY => "Playback",
            *pw::keys::MEDIA_ROLE => "Game",
            *pw::keys::NODE_LATENCY => "480/48000",
        },
    )?;
    // Samples left of the beep playing now, and how many beeps were started.
    let mut left = 0u32;
    let mut phase = 0f32;
    let mut started = 0u32;
    let _listener = stream
        .add_local_listener_with_user_data(())
        .process(move |stream, _| {
            let now = now_us();
            beeper.streaming.store(true, Ordering::Release);
            let Some(mut buffer) = stream.dequeue_buffer() else {
                return;
            };
            let requested = buffer.requested() as usize;
            let datas = buffer.datas_mut();
            let Some(data) = datas.first_mut() else {
                return;
            };
            let Some(bytes) = data.data() else {
                return;
            };
            let frames = if requested == 0 { 480 } else { requested }.min(bytes.len() / 8);
            let wanted = beeper.requested.load(Ordering::Acquire);
            if wanted > started && left == 0 {
                started = wanted;
                left = BEEP_SAMPLES;
                phase = 0.0;
                support::say(format!("beep n={started} written_us={now}"));
            }
            for frame in bytes.chunks_exact_mut(8).take(frames) {
                let v = if left > 0 {
                    left -= 1;
                    phase += BEEP_HZ / RATE as f32;
                    0.25 * (phase * std::f32::consts::TAU).sin()
                } else {
                    0.0
                };
                frame[..4].copy_from_slice(&v.to_le_bytes());
                frame[4..].copy_from_slice(&v.to_le_bytes());
            }
            let chunk = data.chunk_mut();
            *chunk.offset_mut() = 0;
            *chunk.stride_mut() = 8;
            *chunk.size_mut() = (frames * 8) as u32;
        })
        .register()?;
    let mut info = spa::param::audio::AudioInfoRaw::new();
    info.set_format(spa::param::audio::AudioFormat::F32LE);
    info.set_rate(RATE);
    info.set_channels(2);
    let pod = spa::pod::serialize::PodSerializer::serialize(
        std::io::Cursor::new(Vec::new()),
        &spa::pod::Value::Object(spa::pod::Object {
            type_: spa::utils::SpaTypes::ObjectParamFormat.as_raw(),
            id: spa::param::ParamType::EnumFormat.as_raw(),
            properties: info.into(),
        }),
    )
    .map_err(|_| pw::Error::CreationFailed)?
    .0
    .into_inner();
    let mut params = [spa::pod::Pod::from_bytes(&pod).ok_or(pw::Error::CreationFailed)?];
    stream.connect(
        spa::utils::Direction::Output,
        None,
        pw::stream::StreamFlags::AUTOCONNECT
            | pw::stream::StreamFlags::MAP_BUFFERS
            | pw::stream::StreamFlags::RT_PROCESS,
        &mut params,
    )?;
    mainloop.run();
    Ok(())
}

fn main() {
    let mut args = std::env::args().skip(1);
    let count: u32 = args.next().and_then(|v| v.parse().ok()).unwrap_or(10);
    let period = Duration::from_millis(args.next().and_then(|v| v.parse().ok()).unwrap_or(1500));

    let beeper = Arc::new(Beeper::default());
    let b = beeper.clone();
    std::thread::spawn(move || {
        if let Err(err) = audio(b) {
            eprintln!("av_probe: PipeWire: {err}");
            std::process::exit(2);
        }
    });

    let conn = Connection::connect_to_env().expect("connect to the Wayland display");
    let mut queue = conn.new_event_queue();
    let qh = queue.handle();
    conn.display().get_registry(&qh, ());
    let mut probe = Probe::default();
    queue.roundtrip(&mut probe).expect("roundtrip");
    let (Some(compositor), Some(wm_base), Some(shm)) = (
        probe.compositor.clone(),
        probe.wm_base.clone(),
        probe.shm.clone(),
    ) else {
        eprintln!("av_probe: no wl_compositor, wl_shm or xdg_wm_base");
        std::process::exit(2);
    };
    let surface = compositor.create_surface(&qh, ());
    let xdg = wm_base.get_xdg_surface(&surface, &qh, ());
    let toplevel = xdg.get_toplevel(&qh, ());
    toplevel.set_title("av_probe".into());
    surface.commit();
    while !probe.configured {
        queue.blocking_dispatch(&mut probe).expect("dispatch");
    }
    let show = |colour: u32, queue: &mut wayland_client::EventQueue<Probe>, probe: &mut Probe| {
        support::attach_solid(&shm, &qh, &surface, SIZE, colour);
        surface.commit();
        let _ = queue.flush();
        let _ = queue.dispatch_pending(probe);
    };
    show(BLACK, &mut queue, &mut probe);
    while !beeper.streaming.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(10));
    }
    // Let the sink's silence end any talkspurt before the first beep.
    std::thread::sleep(period);
    for n in 1..=count {
        beeper.requested.store(n, Ordering::Release);
        let at = now_us();
        show(WHITE, &mut queue, &mut probe);
        support::say(format!("flash n={n} commit_us={at}"));
        std::thread::sleep(Duration::from_millis(300));
        show(BLACK, &mut queue, &mut probe);
        std::thread::sleep(period.saturating_sub(Duration::from_millis(300)));
    }
}
