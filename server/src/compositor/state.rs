//! The one state struct of a session compositor, holding every protocol state plus the space.

use std::{sync::Arc, time::Instant};

use smithay::{
    desktop::{PopupManager, Space, Window},
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

use super::{capture::Capture, pacing::Pacer};

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
    /// Used by input forwarding (interactive-session issue).
    #[allow(dead_code)]
    pub seat: Seat<WayRay>,

    pub capture: Capture,
    pub pacer: Pacer,
    /// Something committed since the last render pass.
    pub needs_render: bool,
    pub last_frame_callbacks: Instant,
    /// When the last frame was rendered; renders are at least `min_frame_interval` apart, the
    /// output's refresh period, so no client draws faster than a screen could show.
    pub last_render: Option<Instant>,
    pub min_frame_interval: std::time::Duration,
    pub render_timer_armed: bool,
    pub loop_handle: smithay::reexports::calloop::LoopHandle<'static, WayRay>,
    pub to_transport: tokio::sync::mpsc::UnboundedSender<crate::link::ToTransport>,
}

/// Protocol states owned only so their globals stay advertised; nothing reads them.
#[allow(dead_code)]
pub struct KeptGlobals {
    pub xdg_decoration: XdgDecorationState,
    pub output_manager: OutputManagerState,
    pub viewporter: ViewporterState,
    pub fractional_scale: FractionalScaleManagerState,
}

impl WayRay {
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
