//! The one state struct of a session compositor, holding every protocol state plus the space.

use std::{sync::Arc, time::Instant};

use smithay::{
    desktop::{utils::under_from_surface_tree, PopupManager, Space, Window, WindowSurfaceType},
    input::{Seat, SeatState},
    output::Output,
    reexports::{
        calloop::LoopSignal,
        wayland_server::{
            backend::{ClientData, ClientId, DisconnectReason},
            protocol::wl_surface::WlSurface,
            DisplayHandle,
        },
    },
    utils::{Logical, Point},
    wayland::{
        compositor::{CompositorClientState, CompositorState},
        fractional_scale::FractionalScaleManagerState,
        output::OutputManagerState,
        selection::data_device::DataDeviceState,
        shell::{
            wlr_layer::WlrLayerShellState,
            xdg::{decoration::XdgDecorationState, XdgShellState},
        },
        shm::ShmState,
        viewporter::ViewporterState,
    },
};

use std::collections::HashSet;

use super::{
    capture::Capture,
    decorations::Decorations,
    pacing::Pacer,
    wm::{Area, WindowPolicy},
};

pub struct WayRay {
    pub start_time: Instant,
    pub display_handle: DisplayHandle,
    pub loop_signal: LoopSignal,

    pub space: Space<Window>,
    pub output: Output,
    pub popups: PopupManager,
    /// Toplevels that exist but have not committed a buffer yet; they are placed once their size
    /// is known.
    pub unmapped: Vec<Window>,

    pub compositor_state: CompositorState,
    pub xdg_shell_state: XdgShellState,
    pub shm_state: ShmState,
    pub seat_state: SeatState<WayRay>,
    pub data_device_state: DataDeviceState,
    pub layer_shell_state: WlrLayerShellState,
    /// The usable area windows were last fitted to; layer changes compare against it.
    pub last_usable_area: Area,
    /// Globals that only need to stay alive; their handlers keep no state here.
    pub _globals: KeptGlobals,
    pub seat: Seat<WayRay>,

    /// The session's X11 display and its lazily started Xwayland.
    pub xwayland: super::xwayland::XwaylandState,
    pub capture: Capture,
    /// The pointer's image, forwarded to the appliance which draws it.
    pub cursor: super::cursor::CursorForwarder,
    pub decorations: Decorations,
    /// The attached screen's size and physical size, and the scales users and server asked for.
    pub scale: super::scale::ScaleState,
    /// The built-in window-management policy (the floating WM), in charge while no external
    /// WM is connected.
    pub wm: Box<dyn WindowPolicy>,
    /// The WM protocol: the external window manager, when one is connected.
    pub external_wm: super::wm::external::ExternalWm,
    /// The pointer button held down, if any (an external WM's interactive operations start
    /// on it a round trip after the press).
    pub held_button: Option<u32>,
    /// evdev keycodes whose press went to the WM, so their release is not sent to a client.
    pub suppressed_keys: HashSet<u32>,
    /// Buttons whose press was an external WM's pointer binding: their release is not sent.
    pub suppressed_buttons: HashSet<u32>,
    /// Input that arrived while an external WM's manage sequence was due or open, replayed in
    /// order once it is done.
    pub deferred_input: std::collections::VecDeque<wayray_protocol::InputMessage>,
    pub pacer: Pacer,
    /// Something committed since the last render pass.
    pub needs_render: bool,
    /// When the oldest key press not yet followed by a sent frame reached the compositor; the
    /// next frame logs how long the server side (client included) took, for the latency bench.
    pub key_pressed_at: Option<Instant>,
    pub last_frame_callbacks: Instant,
    /// When the last frame was rendered; renders are at least `min_frame_interval` apart, the
    /// output's refresh period, so no client draws faster than a screen could show.
    pub last_render: Option<Instant>,
    pub min_frame_interval: std::time::Duration,
    /// When the earliest armed render timer fires, if one is armed.
    pub render_timer_due: Option<Instant>,
    /// The poll timer (see `arm_poll_timer`) is armed.
    pub poll_timer_armed: bool,
    pub loop_handle: smithay::reexports::calloop::LoopHandle<'static, WayRay>,
    pub to_transport: crate::session_link::LinkTx,
    /// The Wayland socket's name, for clients the session starts later (the launcher).
    pub socket_name: std::ffi::OsString,
    /// Environment every started client gets (the default desktop's `XDG_CONFIG_DIRS`).
    pub client_env: Vec<(String, std::ffi::OsString)>,
    /// What a tap of Super starts, if anything.
    pub app_launcher: Option<String>,
    /// Super is held and nothing else was pressed since: its release opens the launcher.
    pub super_tap: bool,
    /// A layer surface (launcher, panel field) was given the keyboard; when it goes, the
    /// topmost window gets it back.
    pub keyboard_on_layer: bool,
    /// Clipboard, session lock, taskbar, input method... protocols (see protocols.rs).
    pub protocols: super::protocols::ProtocolStates,
    /// The WayRay locker process a self-locked session keeps running (locker.rs).
    pub locker: super::locker::Locker,
    /// The session's sound (its PipeWire and the WayRay nodes); `None` without audio.
    pub audio: Option<super::audio::Audio>,
}

/// Protocol states owned only so their globals stay advertised; nothing reads them.
#[allow(dead_code)]
pub struct KeptGlobals {
    pub xdg_decoration: XdgDecorationState,
    pub output_manager: OutputManagerState,
    pub viewporter: ViewporterState,
    pub fractional_scale: FractionalScaleManagerState,
    pub cursor_shape: smithay::wayland::cursor_shape::CursorShapeManagerState,
}

impl WayRay {
    /// The surface under a point of the output, with that surface's origin, for pointer focus:
    /// panels and overlays above windows, wallpapers below.
    pub fn surface_under(
        &self,
        pos: Point<f64, Logical>,
    ) -> Option<(WlSurface, Point<f64, Logical>)> {
        // While locked only the lock surface (covering the output) takes pointer input.
        if self.protocols.lock.is_locked() {
            return self
                .protocols
                .lock
                .surface()
                .map(|s| (s.clone(), (0.0, 0.0).into()));
        }
        self.layer_surface_under(&super::layers::ABOVE_WINDOWS, pos)
            .or_else(|| {
                let (window, location) = self.element_under(pos)?;
                let rel = pos - location.to_f64();
                match super::xwayland::legacy_surface(&window) {
                    Some(surface) => {
                        under_from_surface_tree(&surface, rel, (0, 0), WindowSurfaceType::ALL)
                    }
                    None => window.surface_under(rel, WindowSurfaceType::ALL),
                }
                .map(|(s, p)| (s, (p + location).to_f64()))
            })
            .or_else(|| self.layer_surface_under(&super::layers::BELOW_WINDOWS, pos))
    }

    /// The topmost window under a point, with its render location. The space cannot hit-test
    /// X11 windows it does not know the wl_surface of (see `xwayland::legacy_surface`), so
    /// those are tested here, in stacking order with the rest.
    pub fn element_under(&self, pos: Point<f64, Logical>) -> Option<(Window, Point<i32, Logical>)> {
        let space_hit = self.space.element_under(pos);
        for window in self.space.elements().rev() {
            if let Some((hit, location)) = &space_hit {
                if *hit == window {
                    return Some(((*hit).clone(), *location));
                }
            }
            let Some(surface) = super::xwayland::legacy_surface(window) else {
                continue;
            };
            let Some(loc) = self.space.element_location(window) else {
                continue;
            };
            let location = loc - window.geometry().loc;
            let rel = pos - location.to_f64();
            if under_from_surface_tree(&surface, rel, (0, 0), WindowSurfaceType::ALL).is_some() {
                return Some((window.clone(), location));
            }
        }
        space_hit.map(|(w, l)| (w.clone(), l))
    }

    /// The output's size in logical coordinates: its pixels over its scale.
    pub fn output_logical_size(&self) -> smithay::utils::Size<i32, Logical> {
        let scale = self.output.current_scale().fractional_scale();
        self.output
            .current_mode()
            .map(|m| m.size.to_f64().to_logical(scale).to_i32_round())
            .unwrap_or_default()
    }

    /// Where the appliance's pointer at output pixel `pixels` is in logical coordinates.
    pub fn pixels_to_logical(&self, (x, y): (f64, f64)) -> Point<f64, Logical> {
        let scale = self.output.current_scale().fractional_scale();
        (x / scale, y / scale).into()
    }

    /// The toplevel window (Wayland or X11) whose root surface is `surface`, mapped or not yet
    /// mapped.
    pub fn window_for_surface(&self, surface: &WlSurface) -> Option<Window> {
        let hidden = self
            .external_wm
            .active
            .iter()
            .flat_map(|wm| wm.windows.iter().map(|w| &w.window));
        self.space
            .elements()
            .chain(self.unmapped.iter())
            .chain(hidden)
            .find(|w| super::xwayland::window_surface(w).is_some_and(|s| s == *surface))
            .cloned()
    }
}

/// Per-client data smithay needs.
#[derive(Default)]
pub struct ClientState {
    pub compositor_state: CompositorClientState,
    /// Connected through a sandbox's security-context socket: no privileged globals.
    pub sandboxed: bool,
}

impl ClientData for ClientState {
    fn initialized(&self, client_id: ClientId) {
        tracing::debug!(?client_id, "wayland client connected");
    }

    fn disconnected(&self, client_id: ClientId, reason: DisconnectReason) {
        match reason {
            DisconnectReason::ConnectionClosed => {
                tracing::info!(?client_id, "wayland client disconnected")
            }
            DisconnectReason::ProtocolError(err) => {
                tracing::warn!(?client_id, %err, "wayland client dropped after a protocol error")
            }
        }
    }
}

/// Shorthand used when inserting clients.
pub fn new_client_data() -> Arc<ClientState> {
    Arc::new(ClientState::default())
}
