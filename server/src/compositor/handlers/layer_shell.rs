//! wlr-layer-shell: wallpapers, panels, notifications and launchers (swaybg, waybar, mako,
//! fuzzel). The session has one output, so every layer surface goes on it whatever output it
//! named; `compositor/layers.rs` arranges them, keeps the usable area and gives keyboard focus.

use smithay::{
    delegate_layer_shell,
    desktop::{layer_map_for_output, LayerSurface},
    reexports::wayland_server::protocol::wl_output::WlOutput,
    wayland::shell::{
        wlr_layer::{
            Layer, LayerSurface as WlrLayerSurface, WlrLayerShellHandler, WlrLayerShellState,
        },
        xdg::PopupSurface,
    },
};

use crate::compositor::state::WayRay;

impl WlrLayerShellHandler for WayRay {
    fn shell_state(&mut self) -> &mut WlrLayerShellState {
        &mut self.layer_shell_state
    }

    fn new_layer_surface(
        &mut self,
        surface: WlrLayerSurface,
        _output: Option<WlOutput>,
        layer: Layer,
        namespace: String,
    ) {
        tracing::info!(?layer, namespace, "new layer surface");
        let layer = LayerSurface::new(surface, namespace);
        if let Err(err) = layer_map_for_output(&self.output).map_layer(&layer) {
            tracing::warn!(%err, "cannot map layer surface");
        }
    }

    /// The popup is already tracked (`XdgShellHandler::new_popup`); now that its parent is known
    /// it can be kept on screen.
    fn new_popup(&mut self, parent: WlrLayerSurface, popup: PopupSurface) {
        self.unconstrain_layer_popup(&parent, &popup);
    }

    fn layer_destroyed(&mut self, surface: WlrLayerSurface) {
        let mut map = layer_map_for_output(&self.output);
        let layer = map
            .layers()
            .find(|l| l.layer_surface() == &surface)
            .cloned();
        if let Some(layer) = layer {
            tracing::info!(namespace = layer.namespace(), "layer surface destroyed");
            map.unmap_layer(&layer);
        }
        drop(map);
        self.layers_changed();
    }
}

delegate_layer_shell!(WayRay);
