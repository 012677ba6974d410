//! The headless session compositor: Smithay protocol state, Pixman rendering into memory, and
//! frame pacing driven by the attached appliance's acks.

mod audio;
mod capture;
pub mod clock;
mod cursor;
mod decorations;
mod desktop;
mod handlers;
mod input;
mod layers;
mod locker;
mod pacing;
mod placement;
mod protocols;
mod resize;
mod scale;
mod state;
mod title;
mod toplevels;
mod wm;
mod xwayland;

use std::{
    ffi::OsString,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use smithay::{
    desktop::{PopupManager, Space},
    input::{keyboard::XkbConfig, SeatState},
    output::{Mode, Output, PhysicalProperties, Subpixel},
    reexports::{
        calloop::{
            channel::{Channel, Event as ChannelEvent},
            generic::Generic,
            timer::{TimeoutAction, Timer},
            EventLoop, Interest, Mode as LoopMode, PostAction,
        },
        wayland_server::Display,
    },
    utils::Transform,
    wayland::{
        compositor::CompositorState,
        fractional_scale::FractionalScaleManagerState,
        output::OutputManagerState,
        selection::data_device::DataDeviceState,
        shell::{
            wlr_layer::WlrLayerShellState,
            xdg::{decoration::XdgDecorationState, XdgShellState},
        },
        shm::ShmState,
        socket::ListeningSocketSource,
        viewporter::ViewporterState,
    },
};

use capture::Capture;
pub use capture::CaptureError;
pub use cursor::CursorSettings;
pub use locker::LockerConfig;
use pacing::Pacer;
pub use state::WayRay;
pub use xwayland::stub::run_if_invoked as run_xwayland_stub_if_invoked;

use crate::link::{ToCompositor, ToTransport};
use crate::session_link::{DaemonSocket, LinkStatus};

/// What a session compositor needs to start.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    pub output_size: (u32, u32),
    /// Socket name under `$XDG_RUNTIME_DIR`; `None` picks a free `wayland-N`.
    pub socket_name: Option<String>,
    /// Shell commands started as Wayland clients of this session.
    pub spawn: Vec<String>,
    pub frame_log: Option<PathBuf>,
    pub max_frames_in_flight: usize,
    pub detached_frame_interval: Duration,
    /// Output refresh rate in Hz: the most frames per second rendered and sent.
    pub refresh_hz: u32,
    /// Theme and size of named cursors (cursor-shape-v1, the default arrow).
    pub cursor: CursorSettings,
    /// Send regions that measure as video as H.264 (lossy while they play); `false` keeps every
    /// pixel lossless.
    pub video_regions: bool,
    /// Start the default desktop (wallpaper, panel, notifications; `desktop.rs`) before the
    /// `spawn` clients, with its shipped configuration.
    pub desktop: bool,
    /// Shell command a tap of Super starts (the default desktop's is fuzzel).
    pub app_launcher: Option<String>,
    /// Give the session an X11 display served by Xwayland, started when the first X client
    /// connects.
    pub xwayland: bool,
    /// The user's own output scale (`--scale`, from session.toml); `None` follows the server's
    /// `output_scale`, which arrives with each attached appliance.
    pub scale: Option<wayray_protocol::sessions::ScaleChoice>,
    /// Offer a clipboard (selections, primary selection, data-control). `false` for greeters:
    /// nothing typed at a login prompt can be read back or carried into the next session.
    pub clipboard: bool,
    /// The locker started when the session locks itself for a re-attach (`wrlogin --lock`);
    /// `None` outside wrsessd's user sessions.
    pub locker: Option<LockerConfig>,
    /// The compositor's own system-call filter, installed once its first clients are up.
    pub seccomp: crate::confine::SeccompMode,
    /// Sound: the session's own PipeWire with the WayRay output and microphone (`audio/`).
    /// `false` for greeters and with config `audio = false`.
    pub audio: bool,
    /// The session's PC/SC socket (`PCSCLITE_CSOCK_NAME` for its clients; see `crate::pcsc`).
    pub pcsc_socket: Option<PathBuf>,
    /// The session's window manager (a shell command), the only client that may bind the WM
    /// protocol; `None`: the built-in floating WM.
    pub window_manager: Option<String>,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum CompositorError {
    #[error("cannot create the event loop or Wayland display: {0}")]
    Setup(String),
    #[error("cannot listen on a Wayland socket (is $XDG_RUNTIME_DIR writable?): {0}")]
    Socket(String),
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error("the event loop failed: {0}")]
    EventLoop(String),
    #[error("{0}")]
    Confine(String),
}

/// While a video region is active and nothing changed, an empty frame goes out this long after
/// the last frame, so the encoder counts the region quiet and, after three such frames, refreshes
/// it losslessly: a paused video turns sharp within about 150 ms. A video playing at 20 fps or
/// more is never interleaved with empty frames, which would dilute its cells' change history
/// (8 of the last 10 frames) and each cost a frame's round trip.
const VIDEO_QUIET_INTERVAL: Duration = Duration::from_millis(50);
/// The longest a detached or locked session waits before it polls again (see `arm_poll_timer`).
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Runs the session until the transport says to shut down.
pub fn run(
    opts: SessionOptions,
    to_transport: crate::session_link::LinkTx,
    from_transport: Channel<ToCompositor>,
    on_ready: impl FnOnce(&str),
) -> Result<(), CompositorError> {
    let mut event_loop: EventLoop<WayRay> =
        EventLoop::try_new().map_err(|e| CompositorError::Setup(e.to_string()))?;
    let display: Display<WayRay> =
        Display::new().map_err(|e| CompositorError::Setup(e.to_string()))?;
    let dh = display.handle();

    let (width, height) = opts.output_size;
    let output = Output::new(
        "WR-1".into(),
        PhysicalProperties {
            size: (0, 0).into(),
            subpixel: Subpixel::Unknown,
            make: "WayRay".into(),
            model: "Appliance".into(),
        },
    );
    let _output_global = output.create_global::<WayRay>(&dh);
    let mode = Mode {
        size: (width as i32, height as i32).into(),
        refresh: opts.refresh_hz as i32 * 1000,
    };
    // Until an appliance attaches only a user's fixed scale is known.
    let scale_state = scale::ScaleState::new(opts.scale);
    let initial_scale = scale_state.scale((width, height));
    output.change_current_state(
        Some(mode),
        Some(Transform::Normal),
        Some(smithay::output::Scale::Fractional(initial_scale)),
        Some((0, 0).into()),
    );
    output.set_preferred(mode);
    let mut space = Space::default();
    space.map_output(&output, (0, 0));

    let mut seat_state = SeatState::new();
    let mut seat = seat_state.new_wl_seat(&dh, "seat0");
    // Key repeat is done by clients: 25/s after 600 ms matches common desktop defaults and is
    // slow enough that a late release over the network rarely produces a phantom repeat.
    seat.add_keyboard(XkbConfig::default(), 600, 25)
        .map_err(|e| CompositorError::Setup(format!("keyboard: {e}")))?;
    seat.add_pointer();
    seat.add_touch();

    let encoder_config = wayray_protocol::EncoderConfig {
        video: opts.video_regions,
        ..Default::default()
    };
    let mut capture = Capture::new(&output, width, height, encoder_config)?;
    if let Some(path) = &opts.frame_log {
        capture.set_frame_log(path)?;
    }

    let socket = match &opts.socket_name {
        Some(name) => ListeningSocketSource::with_name(name),
        None => ListeningSocketSource::new_auto(),
    }
    .map_err(|e| CompositorError::Socket(e.to_string()))?;
    let socket_name: OsString = socket.socket_name().to_os_string();

    let handle = event_loop.handle();
    handle
        .insert_source(socket, |stream, _, state: &mut WayRay| {
            if let Err(err) = state
                .display_handle
                .insert_client(stream, state::new_client_data())
            {
                tracing::warn!(%err, "cannot add wayland client");
            }
        })
        .map_err(|e| CompositorError::Setup(e.to_string()))?;
    handle
        .insert_source(
            Generic::new(display, Interest::READ, LoopMode::Level),
            |_, display, state| {
                // SAFETY: the display is never dropped while the event loop owns it.
                if let Err(err) = unsafe { display.get_mut().dispatch_clients(state) } {
                    tracing::error!(%err, "dispatching wayland clients failed");
                }
                Ok(PostAction::Continue)
            },
        )
        .map_err(|e| CompositorError::Setup(e.to_string()))?;
    handle
        .insert_source(from_transport, |event, _, state| match event {
            ChannelEvent::Msg(msg) => state.on_transport(msg),
            ChannelEvent::Closed => state.loop_signal.stop(),
        })
        .map_err(|e| CompositorError::Setup(e.to_string()))?;

    let mut state = WayRay {
        start_time: Instant::now(),
        display_handle: dh.clone(),
        loop_signal: event_loop.get_signal(),
        space,
        output,
        popups: PopupManager::default(),
        unmapped: Vec::new(),
        compositor_state: CompositorState::new::<WayRay>(&dh),
        xdg_shell_state: XdgShellState::new::<WayRay>(&dh),
        shm_state: ShmState::new::<WayRay>(&dh, vec![]),
        seat_state,
        data_device_state: DataDeviceState::new::<WayRay>(&dh),
        layer_shell_state: WlrLayerShellState::new::<WayRay>(&dh),
        last_usable_area: wm::Area {
            x: 0,
            y: 0,
            w: width as i32,
            h: height as i32,
        },
        _globals: state::KeptGlobals {
            xdg_decoration: XdgDecorationState::new::<WayRay>(&dh),
            output_manager: OutputManagerState::new_with_xdg_output::<WayRay>(&dh),
            viewporter: ViewporterState::new::<WayRay>(&dh),
            fractional_scale: FractionalScaleManagerState::new::<WayRay>(&dh),
            cursor_shape: smithay::wayland::cursor_shape::CursorShapeManagerState::new::<WayRay>(
                &dh,
            ),
        },
        seat,
        capture,
        cursor: cursor::CursorForwarder::new(&opts.cursor),
        xwayland: xwayland::XwaylandState::new(&dh),
        decorations: decorations::Decorations::default(),
        scale: scale_state,
        wm: Box::new(wm::FloatingWm),
        external_wm: Default::default(),
        held_button: None,
        suppressed_keys: Default::default(),
        suppressed_buttons: Default::default(),
        deferred_input: Default::default(),
        pacer: Pacer::new(opts.max_frames_in_flight),
        needs_render: true,
        key_pressed_at: None,
        last_frame_callbacks: Instant::now(),
        last_render: None,
        min_frame_interval: Duration::from_secs(1) / opts.refresh_hz.max(1),
        render_timer_due: None,
        poll_timer_armed: false,
        loop_handle: event_loop.handle(),
        to_transport,
        socket_name: socket_name.clone(),
        client_env: Vec::new(),
        app_launcher: None,
        super_tap: false,
        keyboard_on_layer: false,
        protocols: protocols::ProtocolStates::new(&dh, event_loop.handle(), opts.clipboard),
        locker: locker::Locker::new(opts.locker.clone()),
        audio: None,
    };

    WayRay::create_wm_global(&dh);

    let mut client_env = Vec::new();
    let mut desktop_clients = Vec::new();
    let mut _session_bus = None;
    // The desktop's notifications and WirePlumber (the session's audio) need a session bus.
    if (opts.desktop || opts.audio) && std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none() {
        let runtime = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from);
        let socket = runtime
            .unwrap_or_else(std::env::temp_dir)
            .join(format!("{}-bus", socket_name.to_string_lossy()));
        match desktop::SessionBus::start(&socket) {
            Ok(bus) => {
                client_env.push((
                    "DBUS_SESSION_BUS_ADDRESS".to_string(),
                    OsString::from(&bus.address),
                ));
                _session_bus = Some(bus);
            }
            Err(err) => tracing::warn!(%err, "no session bus: notifications will not show"),
        }
    }
    if opts.audio {
        let runtime = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let bus = _session_bus
            .as_ref()
            .map(|b: &desktop::SessionBus| b.address.clone())
            .or_else(|| std::env::var("DBUS_SESSION_BUS_ADDRESS").ok());
        state.audio = audio::Audio::start(&runtime, bus, state.to_transport.clone());
        if let Some(audio) = &state.audio {
            client_env.extend(audio.client_env().iter().cloned());
        }
    }
    if opts.desktop {
        let config_dir = desktop::config_dir();
        match &config_dir {
            Some(dir) => client_env.push((
                "XDG_CONFIG_DIRS".to_string(),
                desktop::xdg_config_dirs(dir, std::env::var_os("XDG_CONFIG_DIRS")),
            )),
            None => tracing::warn!(
                installed = desktop::INSTALLED_DIR,
                "the default desktop's configuration is not installed; its programs use their own defaults"
            ),
        }
        let user_config = desktop::user_config_dir();
        for client in desktop::default_clients(config_dir.as_deref(), user_config.as_deref()) {
            if desktop::on_path(client.program) {
                desktop_clients.push(client.command);
            } else {
                tracing::warn!(
                    role = client.role,
                    program = client.program,
                    "not installed (apt-get install {}); the desktop has no {}",
                    client.package,
                    client.role
                );
            }
        }
    }
    let app_launcher = opts.app_launcher.clone().or_else(|| {
        (opts.desktop && desktop::on_path(desktop::LAUNCHER)).then(|| {
            desktop::launcher(
                desktop::config_dir().as_deref(),
                desktop::user_config_dir().as_deref(),
            )
        })
    });
    let x11_display = if opts.xwayland {
        state.listen_for_x11()
    } else {
        None
    };
    if let Some(n) = x11_display {
        client_env.push(("DISPLAY".to_string(), OsString::from(format!(":{n}"))));
    }
    if let Some(socket) = &opts.pcsc_socket {
        // Smart cards are the attached appliance's, never this server's own readers.
        client_env.push(("PCSCLITE_CSOCK_NAME".to_string(), socket.clone().into()));
    }
    state.client_env = client_env;
    state.app_launcher = app_launcher;

    println!("WAYLAND_DISPLAY={}", socket_name.to_string_lossy());
    on_ready(&socket_name.to_string_lossy());
    state.cursor.set_scale(initial_scale);
    tracing::info!(socket = %socket_name.to_string_lossy(), width, height, scale = initial_scale, "session compositor ready");
    // The WM first, so it manages the first windows from the start; `exec` keeps its pid the
    // one we are told, the one allowed to bind the WM protocol.
    if let Some(cmd) = opts
        .window_manager
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty())
    {
        let pid = spawn_client(&exec_command(cmd), &socket_name, &state.client_env);
        tracing::info!(pid, cmd, "window manager started");
        state.external_wm.allowed_pid = pid;
    }
    for cmd in desktop_clients.iter().chain(&opts.spawn) {
        spawn_client(cmd, &socket_name, &state.client_env);
    }
    // From here on clients are started by the spawner (forked before this), so the filter
    // binds the compositor alone.
    #[cfg(target_os = "linux")]
    crate::confine::install(
        "session compositor",
        opts.seccomp,
        &crate::confine::seccomp::session(),
    )
    .map_err(CompositorError::Confine)?;

    let interval = opts.detached_frame_interval;
    // No periodic wake-up: an attached session whose screen does not change sleeps until a
    // client, the daemon or a timer has something for it; what needs polling arms
    // `arm_poll_timer` (see `after_dispatch`).
    event_loop
        .run(None, &mut state, |state| state.after_dispatch(interval))
        .map_err(|e| CompositorError::EventLoop(e.to_string()))?;
    tracing::info!("session compositor stopped");
    Ok(())
}

/// `cmd` for `sh -c` with the shell replaced by the program (`exec`), so the pid the spawner
/// reports is the program's own: `A=1 prog args` becomes `A=1 exec prog args` (assignments
/// before `exec` are exported to it).
fn exec_command(cmd: &str) -> String {
    let is_assignment = |word: &str| {
        word.split_once('=').is_some_and(|(name, _)| {
            !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
    };
    let trimmed = cmd.trim_start();
    let mut rest = trimmed;
    let mut assignments = String::new();
    while let Some((word, tail)) = rest.split_once(char::is_whitespace) {
        if !is_assignment(word) || word.contains(['\'', '"']) {
            break;
        }
        assignments.push_str(word);
        assignments.push(' ');
        rest = tail.trim_start();
    }
    format!("{assignments}exec {rest}")
}

/// Starts `cmd` through `sh -c` as a client of this session, with `env` (the session's X11
/// display, if it has one, among it). A thread waits for it so it never lingers as a zombie and
/// its exit is logged. With a spawner (every `wrsrvd session`), the spawner starts it, outside
/// the compositor's seccomp filter.
fn spawn_client(cmd: &str, socket: &OsString, env: &[(String, OsString)]) -> Option<u32> {
    if let Some(spawner) = crate::confine::spawner::global() {
        let mut req = crate::confine::spawner::Request::new("sh", ["-c", cmd])
            .env("WAYLAND_DISPLAY", socket)
            .env_remove("DISPLAY");
        for (k, v) in env {
            req = req.env(k, v);
        }
        match spawner.spawn(req) {
            Ok(child) => {
                tracing::info!(cmd, pid = child.pid, "started client");
                let pid = child.pid;
                let cmd = cmd.to_owned();
                let waited = std::thread::Builder::new()
                    .name("client-exit".into())
                    .spawn(move || match child.exit.recv() {
                        Ok(status) => tracing::info!(cmd, %status, "client exited"),
                        Err(_) => tracing::warn!(cmd, "lost the client: the spawner exited"),
                    });
                if let Err(err) = waited {
                    tracing::warn!(%err, "cannot watch the client's exit");
                }
                return Some(pid);
            }
            Err(err) => tracing::error!(cmd, %err, "cannot start client"),
        }
        return None;
    }
    let child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .env("WAYLAND_DISPLAY", socket)
        .env_remove("DISPLAY")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .spawn();
    match child {
        Ok(mut child) => {
            let pid = child.id();
            tracing::info!(cmd, pid, "started client");
            let cmd = cmd.to_owned();
            std::thread::spawn(move || match child.wait() {
                Ok(status) => tracing::info!(cmd, %status, "client exited"),
                Err(err) => tracing::warn!(cmd, %err, "cannot wait for client"),
            });
            Some(pid)
        }
        Err(err) => {
            tracing::error!(cmd, %err, "cannot start client");
            None
        }
    }
}

impl WayRay {
    /// Starts `cmd` as a client of this session, with the session's client environment.
    pub fn spawn(&self, cmd: &str) {
        spawn_client(cmd, &self.socket_name, &self.client_env);
    }

    fn on_transport(&mut self, msg: ToCompositor) {
        match msg {
            ToCompositor::Attached {
                appliance,
                screen,
                physical_size,
                output,
                keymap,
                scale,
                lock,
                audio,
            } => {
                if let Some(sound) = &self.audio {
                    sound.attached(appliance, audio);
                }
                tracing::info!(
                    appliance,
                    ?screen,
                    ?physical_size,
                    ?output,
                    lock,
                    speaker = audio.speaker,
                    microphone = audio.microphone,
                    "appliance attached; sending a key frame"
                );
                // Before anything is rendered for the new appliance: its key frame is the
                // locked one.
                if lock {
                    self.lock_session();
                }
                self.scale.server = scale;
                self.scale.screen = Some(screen);
                self.scale.physical = physical_size;
                if let Err(err) = self.resize_output(output) {
                    tracing::error!(%err, "cannot resize the output; keeping its size");
                }
                self.configure_lock_surface();
                if let Some(keymap) = keymap {
                    self.set_keymap(&keymap);
                }
                self.pacer.attach(appliance);
                self.discard_presentation_feedback();
                self.send_cursor_to_new_appliance();
                self.capture.reset_encoder();
            }
            ToCompositor::Resize {
                appliance,
                screen,
                physical_size,
                output,
            } => {
                if self.pacer.attached() == Some(appliance) {
                    self.scale.screen = Some(screen);
                    self.scale.physical = physical_size;
                    if let Err(err) = self.resize_output(output) {
                        tracing::error!(%err, "cannot resize the output; keeping its size");
                    }
                    self.configure_lock_surface();
                }
            }
            ToCompositor::Detached { appliance } => {
                if let Some(audio) = &self.audio {
                    audio.detached(appliance);
                }
                if self.pacer.detach(appliance) {
                    self.discard_presentation_feedback();
                    tracing::info!(appliance, "appliance detached; session keeps running");
                }
            }
            ToCompositor::FrameAck { appliance, seq } => {
                if self.pacer.attached() == Some(appliance) {
                    self.present_acked(seq);
                }
                if self.pacer.ack(appliance, seq) {
                    self.send_frame_callbacks();
                }
            }
            ToCompositor::LinkQuality {
                appliance,
                video_bitrate,
            } => {
                if self.pacer.attached() == Some(appliance) {
                    self.capture.set_video_bitrate(video_bitrate);
                }
            }
            ToCompositor::Input { appliance, event } => {
                // Only the appliance showing the session may drive it.
                if self.pacer.attached() == Some(appliance) {
                    self.on_input(event);
                }
            }
            ToCompositor::Microphone { appliance, packet } => {
                // The audio thread checks it is the attached appliance's, and wanted.
                if let Some(audio) = &self.audio {
                    audio.microphone(appliance, packet);
                }
            }
            ToCompositor::Linked(socket) => self.read_daemon_link(socket),
            ToCompositor::Shutdown => self.loop_signal.stop(),
        }
    }

    /// Reads the daemon's socket in the event loop until the link ends.
    fn read_daemon_link(&mut self, socket: DaemonSocket) {
        let DaemonSocket { stream, mut reader } = socket;
        let mut events = Vec::new();
        let source = Generic::new(stream, Interest::READ, LoopMode::Level);
        let inserted = self
            .loop_handle
            .insert_source(source, move |_, stream, state| {
                let status = reader.read(stream, &mut events);
                for event in events.drain(..) {
                    state.on_transport(event);
                }
                Ok(match status {
                    LinkStatus::Open => PostAction::Continue,
                    LinkStatus::Shutdown => {
                        state.loop_signal.stop();
                        PostAction::Remove
                    }
                    LinkStatus::Lost => {
                        if let Some(event) = reader.lost() {
                            state.on_transport(event);
                        }
                        PostAction::Remove
                    }
                })
            });
        if let Err(err) = inserted {
            tracing::error!(%err, "cannot read the daemon's socket; ending the session");
            self.loop_signal.stop();
        }
    }

    /// Runs after every event-loop dispatch: render and send if the appliance can take a frame,
    /// keep detached clients ticking slowly, and flush Wayland events.
    fn after_dispatch(&mut self, detached_interval: Duration) {
        self.space.refresh();
        self.refresh_x11_windows();
        self.after_space_refresh_protocols();
        self.popups.cleanup();
        smithay::desktop::layer_map_for_output(&self.output).cleanup();
        if self.protocols.lock.is_locked() || self.locker.has_child() {
            self.keep_locker_running();
        }
        self.wm_step_and_replay_input();
        if self.wm_holds_frames() {
            // An external WM's transaction is open: the appliance keeps the last whole layout.
        } else if self.pacer.attached().is_none() {
            if self.last_frame_callbacks.elapsed() >= detached_interval {
                self.send_frame_callbacks();
            }
        } else if self.pacer.can_send() {
            let interval = if self.needs_render || self.pacer.key_frame_due() {
                Some(self.min_frame_interval)
            } else if self.capture.video_active() {
                Some(VIDEO_QUIET_INTERVAL.max(self.min_frame_interval))
            } else {
                None
            };
            if let Some(interval) = interval {
                match self.last_render.map(|t| t + interval) {
                    Some(due) if due > Instant::now() => self.wake_at(due),
                    _ => self.render_and_send(),
                }
            }
        }
        if self.pacer.attached().is_none()
            || self.protocols.lock.is_locked()
            || self.locker.has_child()
        {
            self.arm_poll_timer(detached_interval.min(POLL_INTERVAL));
        }
        if let Err(err) = self.display_handle.flush_clients() {
            tracing::warn!(%err, "flushing wayland clients failed");
        }
    }

    /// Runs the event loop again after `after`, for what is polled rather than woken: a
    /// detached session's frame callbacks (clients keep drawing, slowly, for nobody) and the
    /// locker process of a locked session. An attached, unlocked session arms none.
    fn arm_poll_timer(&mut self, after: Duration) {
        if self.poll_timer_armed {
            return;
        }
        let timer = Timer::from_duration(after);
        match self.loop_handle.insert_source(timer, |_, _, state| {
            state.poll_timer_armed = false;
            TimeoutAction::Drop
        }) {
            Ok(_) => self.poll_timer_armed = true,
            Err(err) => tracing::error!(%err, "cannot arm the poll timer"),
        }
    }

    /// Makes the event loop run again at `due`, when the next frame may be rendered.
    fn wake_at(&mut self, due: Instant) {
        // A timer already armed for this time or earlier wakes the loop soon enough; a later one
        // (a video's quiet frame) must not hold back a frame that is due sooner.
        if self.render_timer_due.is_some_and(|armed| armed <= due) {
            return;
        }
        let timer = Timer::from_deadline(due);
        match self.loop_handle.insert_source(timer, |_, _, state| {
            if state
                .render_timer_due
                .is_some_and(|armed| armed <= Instant::now())
            {
                state.render_timer_due = None;
            }
            TimeoutAction::Drop
        }) {
            Ok(_) => self.render_timer_due = Some(due),
            Err(err) => tracing::error!(%err, "cannot arm the render timer"),
        }
    }

    fn render_and_send(&mut self) {
        self.needs_render = false;
        self.last_render = Some(Instant::now());
        let scale = self.output.current_scale().fractional_scale();
        let rendered = if self.protocols.lock.is_locked() {
            self.capture
                .render_locked(self.protocols.lock.surface(), scale)
        } else {
            self.capture
                .render(&self.space, &self.output, &mut self.decorations, scale)
        };
        let mut damage = match rendered {
            Ok(damage) => damage,
            Err(err) => {
                tracing::error!(%err, "render failed");
                return;
            }
        };
        if self.pacer.key_frame_due() {
            damage = self.capture.full_damage();
        }
        // While a video region is active, frames go out even without damage: the encoder counts
        // them to notice the region went quiet and refresh it losslessly.
        if !damage.is_empty() || self.capture.video_active() {
            let seq = self.pacer.next_seq();
            let encode_started = Instant::now();
            match self.capture.encode(seq, &damage) {
                Ok(bytes) => {
                    let encode_us =
                        u32::try_from(encode_started.elapsed().as_micros()).unwrap_or(u32::MAX);
                    let appliance = self.pacer.attached().unwrap_or_default();
                    tracing::trace!(
                        seq,
                        rects = damage.len(),
                        damaged_px = damage.iter().map(|r| r.area()).sum::<u64>(),
                        bytes = bytes.len(),
                        "frame"
                    );
                    let msg = ToTransport::Frame {
                        appliance,
                        seq,
                        bytes,
                        encode_us,
                    };
                    self.to_transport.send(msg);
                    self.pacer.frame_sent();
                    self.log_layers_shown(seq);
                    self.queue_presentation_feedback(seq);
                    if let Some(at) = self.key_pressed_at.take() {
                        tracing::debug!(
                            seq,
                            micros = at.elapsed().as_micros() as u64,
                            "key press to frame sent"
                        );
                    }
                }
                Err(err) => {
                    tracing::error!(%err, "cannot encode frame");
                    self.capture.reset_encoder();
                }
            }
        }
        // Rendered without the desktop (sent, or unchanged from what the appliance shows).
        self.lock_frame_sent();
        if self.pacer.release_callbacks_after_render() {
            self.send_frame_callbacks();
        }
    }

    pub(crate) fn send_frame_callbacks(&mut self) {
        let now = self.start_time.elapsed();
        let output = self.output.clone();
        // A window an external WM hides (another workspace) draws only to answer a configure
        // the WM's transaction waits for; otherwise it idles until shown again.
        let hidden = self.external_wm.active.iter().flat_map(|wm| {
            wm.windows
                .iter()
                .filter(|w| w.waiting_for.is_some())
                .map(|w| &w.window)
                .filter(|w| self.space.element_location(w).is_none())
        });
        for window in self.space.elements().chain(hidden) {
            window.send_frame(&output, now, Some(Duration::ZERO), |_, _| {
                Some(output.clone())
            });
            if let Some(surface) = xwayland::legacy_surface(window) {
                smithay::desktop::utils::send_frames_surface_tree(
                    &surface,
                    &output,
                    now,
                    Some(Duration::ZERO),
                    |_, _| Some(output.clone()),
                );
            }
        }
        for layer in smithay::desktop::layer_map_for_output(&output).layers() {
            layer.send_frame(&output, now, Some(Duration::ZERO), |_, _| {
                Some(output.clone())
            });
        }
        self.send_lock_frame_callbacks(now);
        self.last_frame_callbacks = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::exec_command;

    #[test]
    fn the_window_manager_command_replaces_the_shell() {
        assert_eq!(exec_command("wr-wm-tiling"), "exec wr-wm-tiling");
        assert_eq!(
            exec_command("RUST_LOG=debug A_1=x wr-wm-tiling --gaps 4"),
            "RUST_LOG=debug A_1=x exec wr-wm-tiling --gaps 4"
        );
        assert_eq!(exec_command("wm --opt=1"), "exec wm --opt=1");
    }
}
