use smithay::{
    backend::renderer::utils::on_commit_buffer_handler,
    delegate_compositor, delegate_fractional_scale, delegate_shm, delegate_viewporter,
    reexports::wayland_server::{
        protocol::{wl_buffer, wl_surface::WlSurface},
        Client,
    },
    wayland::{
        buffer::BufferHandler,
        compositor::{
            get_parent, is_sync_subsurface, CompositorClientState, CompositorHandler,
            CompositorState,
        },
        fractional_scale::FractionalScaleHandler,
        shm::{ShmHandler, ShmState},
    },
};

use crate::compositor::state::{ClientState, WayRay};

impl CompositorHandler for WayRay {
    fn compositor_state(&mut self) -> &mut CompositorState {
        &mut self.compositor_state
    }

    fn client_compositor_state<'a>(&self, client: &'a Client) -> &'a CompositorClientState {
        // Every client is inserted with ClientState (see state::new_client_data), except
        // Xwayland, which Smithay inserts with its own.
        if let Some(data) = client.get_data::<smithay::xwayland::XWaylandClientData>() {
            return &data.compositor_state;
        }
        match client.get_data::<ClientState>() {
            Some(data) => &data.compositor_state,
            None => unreachable!("client inserted without ClientState"),
        }
    }

    fn commit(&mut self, surface: &WlSurface) {
        on_commit_buffer_handler::<Self>(surface);
        self.cursor_surface_committed(surface);
        if !is_sync_subsurface(surface) {
            let mut root = surface.clone();
            while let Some(parent) = get_parent(&root) {
                root = parent;
            }
            if let Some(window) = self.window_for_surface(&root) {
                window.on_commit();
            }
        }
        self.layer_commit(surface);
        super::xdg_handle_commit(self, surface);
        self.after_commit_protocols(surface);
        self.needs_render = true;
    }
}

impl BufferHandler for WayRay {
    fn buffer_destroyed(&mut self, _buffer: &wl_buffer::WlBuffer) {}
}

impl ShmHandler for WayRay {
    fn shm_state(&self) -> &ShmState {
        &self.shm_state
    }
}

/// Every surface is on the one output, so its preferred scale is the output's (see
/// `compositor::scale`); a scale change re-sends it to every surface.
impl FractionalScaleHandler for WayRay {
    fn new_fractional_scale(&mut self, surface: WlSurface) {
        let scale = self.output.current_scale().fractional_scale();
        smithay::wayland::compositor::with_states(&surface, |states| {
            smithay::wayland::fractional_scale::with_fractional_scale(states, |fs| {
                fs.set_preferred_scale(scale);
            });
        });
    }
}

delegate_compositor!(WayRay);
delegate_shm!(WayRay);
delegate_viewporter!(WayRay);
delegate_fractional_scale!(WayRay);
