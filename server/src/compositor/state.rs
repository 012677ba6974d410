//! The one state struct of a session compositor, holding every protocol state plus the space.

use std::{sync::Arc, time::Instant};

use smithay::{
    desktop::{PopupManager, Space, Window, WindowSurfaceType},
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
        shell::xdg::{decoration::XdgDecorationState, XdgShellState},
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
    /// Globals that only need to stay alive; their handlers keep no state here.
    pub _globals: KeptGlobals,
    pub seat: Seat<WayRay>,

    pub capture: Capture,
    /// The pointer's image, forwarded to the appliance which draws it.
    pub cursor: super::cursor::CursorForwarder,
    pub decorations: Decorations,
    /// The window-management policy (built-in floating WM for now).
    pub wm: Box<dyn WindowPolicy>,
    /// evdev keycodes whose press went to the WM, so their release is not sent to a client.
    pub suppressed_keys: HashSet<u32>,
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
    pub loop_handle: smithay::reexports::calloop::LoopHandle<'static, WayRay>,
    pub to_transport: crate::session_link::LinkTx,
    /// Clipboard, session lock, taskbar, input method... protocols (see protocols.rs).
    pub protocols: super::protocols::ProtocolStates,
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
    /// The surface under a point of the output, with that surface's origin, for pointer focus.
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
        self.space
            .element_under(pos)
            .and_then(|(window, location)| {
                window
                    .surface_under(pos - location.to_f64(), WindowSurfaceType::ALL)
                    .map(|(s, p)| (s, (p + location).to_f64()))
            })
    }

    /// Where windows may go: the whole output (no panels yet).
    pub fn usable_area(&self) -> Area {
        let size = self
            .output
            .current_mode()
            .map(|m| m.size)
            .unwrap_or_default();
        Area {
            x: 0,
            y: 0,
            w: size.w,
            h: size.h,
        }
    }

    /// The toplevel window whose root surface is `surface`, mapped or not yet mapped.
    pub fn window_for_surface(&self, surface: &WlSurface) -> Option<Window> {
        self.space
            .elements()
            .chain(self.unmapped.iter())
            .find(|w| w.toplevel().is_some_and(|t| t.wl_surface() == surface))
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
