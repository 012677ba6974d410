//! xdg_shell: toplevels are placed once their first buffer tells their size; popups are
//! tracked and kept inside the output.

use smithay::{
    backend::renderer::utils::with_renderer_surface_state,
    delegate_xdg_shell,
    desktop::{find_popup_root_surface, get_popup_toplevel_coords, PopupKind, Window},
    reexports::wayland_server::protocol::{wl_seat, wl_surface::WlSurface},
    utils::Serial,
    wayland::{
        compositor::with_states,
        shell::xdg::{
            PopupSurface, PositionerState, ToplevelSurface, XdgShellHandler, XdgShellState,
            XdgToplevelSurfaceData,
        },
    },
};

use crate::compositor::{
    placement::{place_new_window, Placed},
    state::WayRay,
};

impl XdgShellHandler for WayRay {
    fn xdg_shell_state(&mut self) -> &mut XdgShellState {
        &mut self.xdg_shell_state
    }

    fn new_toplevel(&mut self, surface: ToplevelSurface) {
        tracing::debug!("new toplevel");
        self.unmapped.push(Window::new_wayland_window(surface));
    }

    fn toplevel_destroyed(&mut self, surface: ToplevelSurface) {
        self.unmapped
            .retain(|w| w.toplevel().is_some_and(|t| t != &surface));
        self.needs_render = true;
    }

    fn new_popup(&mut self, surface: PopupSurface, _positioner: PositionerState) {
        self.unconstrain_popup(&surface);
        if let Err(err) = self.popups.track_popup(PopupKind::Xdg(surface)) {
            tracing::warn!(%err, "cannot track popup");
        }
    }

    fn reposition_request(
        &mut self,
        surface: PopupSurface,
        positioner: PositionerState,
        token: u32,
    ) {
        surface.with_pending_state(|state| {
            state.geometry = positioner.get_geometry();
            state.positioner = positioner;
        });
        self.unconstrain_popup(&surface);
        surface.send_repositioned(token);
    }

    fn grab(&mut self, _surface: PopupSurface, _seat: wl_seat::WlSeat, _serial: Serial) {
        // Popup grabs come with input forwarding (interactive-session issue).
    }
}

delegate_xdg_shell!(WayRay);

/// Called on every `wl_surface.commit`: sends initial configures and maps toplevels whose first
/// buffer arrived.
pub fn handle_commit(state: &mut WayRay, surface: &WlSurface) {
    if let Some(idx) = state
        .unmapped
        .iter()
        .position(|w| w.toplevel().is_some_and(|t| t.wl_surface() == surface))
    {
        let window = state.unmapped[idx].clone();
        let initial_configure_sent = with_states(surface, |states| {
            states
                .data_map
                .get::<XdgToplevelSurfaceData>()
                .and_then(|d| d.lock().ok().map(|d| d.initial_configure_sent))
                .unwrap_or(true)
        });
        if let Some(toplevel) = window.toplevel() {
            if !initial_configure_sent {
                toplevel.send_configure();
                return;
            }
        }
        let has_buffer =
            with_renderer_surface_state(surface, |s| s.buffer().is_some()).unwrap_or(false);
        if has_buffer {
            state.unmapped.remove(idx);
            let size = window.geometry().size;
            let out = state
                .output
                .current_mode()
                .map(|m| m.size)
                .unwrap_or_default();
            let existing: Vec<Placed> = state
                .space
                .elements()
                .filter_map(|w| state.space.element_geometry(w))
                .map(|g| Placed {
                    x: g.loc.x,
                    y: g.loc.y,
                    w: g.size.w,
                    h: g.size.h,
                })
                .collect();
            let pos = place_new_window((out.w, out.h), (size.w, size.h), &existing);
            tracing::info!(
                x = pos.0,
                y = pos.1,
                w = size.w,
                h = size.h,
                "mapping toplevel"
            );
            state.space.map_element(window, pos, true);
        }
        return;
    }

    state.popups.commit(surface);
    if let Some(PopupKind::Xdg(ref xdg)) = state.popups.find_popup(surface) {
        if !xdg.is_initial_configure_sent() {
            if let Err(err) = xdg.send_configure() {
                tracing::warn!(?err, "initial popup configure failed");
            }
        }
    }
}

impl WayRay {
    fn unconstrain_popup(&self, popup: &PopupSurface) {
        let Ok(root) = find_popup_root_surface(&PopupKind::Xdg(popup.clone())) else {
            return;
        };
        let Some(window) = self.window_for_surface(&root) else {
            return;
        };
        let Some(output_geo) = self.space.output_geometry(&self.output) else {
            return;
        };
        let Some(window_geo) = self.space.element_geometry(&window) else {
            return;
        };
        // The positioner works relative to the parent's geometry.
        let mut target = output_geo;
        target.loc -= get_popup_toplevel_coords(&PopupKind::Xdg(popup.clone()));
        target.loc -= window_geo.loc;
        popup.with_pending_state(|state| {
            state.geometry = state.positioner.get_unconstrained_geometry(target);
        });
    }
}
