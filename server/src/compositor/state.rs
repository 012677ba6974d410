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
    pub xdg_decoration_state: XdgDecorationState,
    pub shm_state: ShmState,
    pub output_manager_state: OutputManagerState,
    pub seat_state: SeatState<WayRay>,
    pub data_device_state: DataDeviceState,
    pub viewporter_state: ViewporterState,
    pub fractional_scale_state: FractionalScaleManagerState,
    pub seat: Seat<WayRay>,

    pub capture: Capture,
    pub pacer: Pacer,
    /// Something committed since the last render pass.
    pub needs_render: bool,
    pub last_frame_callbacks: Instant,
    pub to_transport: tokio::sync::mpsc::UnboundedSender<crate::link::ToTransport>,
}

impl WayRay {
    /// The surface under a point of the output, with that surface's origin, for pointer focus.
    pub fn surface_under(
        &self,
        pos: Point<f64, Logical>,
    ) -> Option<(WlSurface, Point<f64, Logical>)> {
        self.space.element_under(pos).and_then(|(window, location)| {
            window
                .surface_under(pos - location.to_f64(), WindowSurfaceType::ALL)
                .map(|(s, p)| (s, (p + location).to_f64()))
        })
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
