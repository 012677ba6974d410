//! Layer surfaces on the session's output: arranging them on commit, the usable area their
//! exclusive zones leave to windows, pointer hit-testing by layer, keyboard focus by their
//! interactivity, and keeping their popups on screen.

use smithay::{
    backend::renderer::{element::AsRenderElements, pixman::PixmanRenderer},
    desktop::{layer_map_for_output, LayerSurface, PopupKind, WindowSurfaceType},
    output::Output,
    reexports::wayland_server::protocol::wl_surface::WlSurface,
    utils::{Logical, Point},
    wayland::{
        compositor::with_states,
        shell::{
            wlr_layer::{
                KeyboardInteractivity, Layer, LayerSurface as WlrLayerSurface, LayerSurfaceData,
            },
            xdg::PopupSurface,
        },
    },
};

use super::{decorations::OutputElement, state::WayRay, wm::Area};

/// Layers drawn above windows, topmost first.
pub const ABOVE_WINDOWS: [Layer; 2] = [Layer::Overlay, Layer::Top];
/// Layers drawn below windows, topmost first.
pub const BELOW_WINDOWS: [Layer; 2] = [Layer::Bottom, Layer::Background];

impl WayRay {
    /// Handles a commit of a layer surface: the first one gets its initial configure (with the
    /// size the layer map arranged), later ones may change the exclusive zones. Returns whether
    /// `surface` was a layer surface.
    pub fn layer_commit(&mut self, surface: &WlSurface) -> bool {
        let mut map = layer_map_for_output(&self.output);
        let Some(layer) = map
            .layer_for_surface(surface, WindowSurfaceType::TOPLEVEL)
            .cloned()
        else {
            return false;
        };
        map.arrange();
        drop(map);
        let initial_configure_sent = with_states(surface, |states| {
            states
                .data_map
                .get::<LayerSurfaceData>()
                .and_then(|d| d.lock().ok().map(|d| d.initial_configure_sent))
                .unwrap_or(true)
        });
        if !initial_configure_sent {
            layer.layer_surface().send_configure();
        }
        self.layers_changed();
        true
    }

    /// After layer surfaces came, went or changed: windows follow a changed usable area
    /// (maximized and snapped ones re-fit, others are pulled out from under a panel), and
    /// keyboard focus follows exclusive layers.
    pub fn layers_changed(&mut self) {
        let usable = self.usable_area();
        if usable != self.last_usable_area {
            tracing::info!(?usable, "usable area changed");
            self.last_usable_area = usable;
            self.refit_windows();
        }
        self.update_layer_focus();
        self.needs_render = true;
    }

    /// The topmost layer surface above windows that asked for exclusive keyboard focus.
    pub fn exclusive_layer(&self) -> Option<WlSurface> {
        let map = layer_map_for_output(&self.output);
        ABOVE_WINDOWS.iter().find_map(|&layer| {
            map.layers_on(layer)
                .rev()
                .find(|l| {
                    l.cached_state().keyboard_interactivity == KeyboardInteractivity::Exclusive
                })
                .map(|l| l.wl_surface().clone())
        })
    }

    /// Gives the keyboard to an exclusive layer (a launcher) while one is mapped, and back to
    /// the topmost window once the layer that had it is gone.
    fn update_layer_focus(&mut self) {
        let Some(keyboard) = self.seat.get_keyboard() else {
            return;
        };
        let serial = smithay::utils::SERIAL_COUNTER.next_serial();
        let current = keyboard.current_focus();
        if let Some(exclusive) = self.exclusive_layer() {
            if current.as_ref() != Some(&exclusive) {
                keyboard.set_focus(self, Some(exclusive), serial);
            }
            self.keyboard_on_layer = true;
            return;
        }
        if !self.keyboard_on_layer {
            return;
        }
        let layer_still_focused = current.as_ref().is_some_and(|s| {
            self.layer_for_surface(s)
                .is_some_and(|l| l.can_receive_keyboard_focus())
        });
        if !layer_still_focused {
            self.keyboard_on_layer = false;
            let top = self.space.elements().last().cloned();
            self.focus_window(top, serial);
        }
    }

    /// The mapped layer surface whose root surface is `surface`.
    pub fn layer_for_surface(&self, surface: &WlSurface) -> Option<LayerSurface> {
        layer_map_for_output(&self.output)
            .layer_for_surface(surface, WindowSurfaceType::TOPLEVEL)
            .cloned()
    }

    /// Where windows may go: the output minus the exclusive zones of panels.
    pub fn usable_area(&self) -> Area {
        let zone = layer_map_for_output(&self.output).non_exclusive_zone();
        Area {
            x: zone.loc.x,
            y: zone.loc.y,
            w: zone.size.w,
            h: zone.size.h,
        }
    }

    /// The surface of `layers` (topmost first) under `pos`, with that surface's origin.
    pub fn layer_surface_under(
        &self,
        layers: &[Layer],
        pos: Point<f64, Logical>,
    ) -> Option<(WlSurface, Point<f64, Logical>)> {
        let map = layer_map_for_output(&self.output);
        layers.iter().find_map(|&layer| {
            let surface = map.layer_under(layer, pos)?;
            let origin = map.layer_geometry(surface)?.loc;
            surface
                .surface_under(pos - origin.to_f64(), WindowSurfaceType::ALL)
                .map(|(s, p)| (s, (p + origin).to_f64()))
        })
    }

    /// A click on a layer surface that takes the keyboard on demand (a panel's search field)
    /// focuses it; returns whether the click was on a layer surface at all.
    pub fn focus_layer_under(&mut self, pos: Point<f64, Logical>) -> bool {
        let layer = {
            let map = layer_map_for_output(&self.output);
            ABOVE_WINDOWS
                .iter()
                .chain(BELOW_WINDOWS.iter())
                .find_map(|&l| map.layer_under(l, pos).cloned())
        };
        let Some(layer) = layer else { return false };
        let above = ABOVE_WINDOWS.contains(&layer.layer());
        if !above && self.space.element_under(pos).is_some() {
            return false;
        }
        if layer.can_receive_keyboard_focus() && self.exclusive_layer().is_none() {
            if let Some(keyboard) = self.seat.get_keyboard() {
                let serial = smithay::utils::SERIAL_COUNTER.next_serial();
                keyboard.set_focus(self, Some(layer.wl_surface().clone()), serial);
                self.keyboard_on_layer = true;
            }
        }
        true
    }

    /// Logs, once per layer surface, the first frame that shows it: the desktop bench measures
    /// session start to the panel on the appliance by it.
    pub fn log_layers_shown(&self, seq: u64) {
        struct Shown;
        let map = layer_map_for_output(&self.output);
        for layer in map.layers() {
            let has_buffer = smithay::backend::renderer::utils::with_renderer_surface_state(
                layer.wl_surface(),
                |s| s.buffer().is_some(),
            )
            .unwrap_or(false);
            if has_buffer && layer.user_data().get::<Shown>().is_none() {
                layer.user_data().insert_if_missing(|| Shown);
                let ms = self.start_time.elapsed().as_millis() as u64;
                tracing::info!(
                    namespace = layer.namespace(),
                    seq,
                    ms,
                    "layer surface on screen"
                );
            }
        }
    }

    /// Keeps a layer surface's popup (a panel's menu) inside the output.
    pub fn unconstrain_layer_popup(&self, parent: &WlrLayerSurface, popup: &PopupSurface) {
        let map = layer_map_for_output(&self.output);
        let Some(layer) = map.layers().find(|l| l.layer_surface() == parent).cloned() else {
            return;
        };
        let Some(layer_geo) = map.layer_geometry(&layer) else {
            return;
        };
        drop(map);
        let Some(output_geo) = self.space.output_geometry(&self.output) else {
            return;
        };
        let mut target = output_geo;
        target.loc -= smithay::desktop::get_popup_toplevel_coords(&PopupKind::Xdg(popup.clone()));
        target.loc -= layer_geo.loc;
        popup.with_pending_state(|state| {
            state.geometry = state.positioner.get_unconstrained_geometry(target);
        });
    }
}

/// Render elements of the layer surfaces (and their popups) on `layers`, topmost first, as the
/// damage tracker wants them.
pub fn layer_elements(
    renderer: &mut PixmanRenderer,
    output: &Output,
    layers: &[Layer],
    scale: f64,
) -> Vec<OutputElement> {
    let map = layer_map_for_output(output);
    let mut elements = Vec::new();
    for &layer in layers {
        for surface in map.layers_on(layer).rev() {
            let Some(geo) = map.layer_geometry(surface) else {
                continue;
            };
            elements.extend(AsRenderElements::<PixmanRenderer>::render_elements::<
                OutputElement,
            >(
                surface,
                renderer,
                geo.loc.to_physical_precise_round(scale),
                scale.into(),
                1.0,
            ));
        }
    }
    elements
}
