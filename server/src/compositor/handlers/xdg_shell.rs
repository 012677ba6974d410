//! xdg_shell: toplevels are placed once their first buffer tells their size; popups are
//! tracked and kept inside the output.

use smithay::{
    backend::renderer::utils::with_renderer_surface_state,
    delegate_xdg_shell,
    desktop::{
        find_popup_root_surface, get_popup_toplevel_coords, PopupKeyboardGrab, PopupKind,
        PopupPointerGrab, PopupUngrabStrategy, Window,
    },
    input::{pointer::Focus, Seat},
    reexports::{
        wayland_protocols::xdg::shell::server::xdg_toplevel,
        wayland_server::protocol::{wl_seat, wl_surface::WlSurface},
    },
    utils::{Serial, SERIAL_COUNTER},
    wayland::{
        compositor::with_states,
        shell::xdg::{
            PopupSurface, PositionerState, ToplevelSurface, XdgShellHandler, XdgShellState,
            XdgToplevelSurfaceData,
        },
    },
};

use crate::compositor::{
    decorations,
    state::WayRay,
    wm::{Area, Snap},
};

/// Whether a window of `size` (title bar included) fits inside `usable` as a floating window.
fn fits(usable: Area, size: (i32, i32)) -> bool {
    size.0 <= usable.w && size.1 <= usable.h
}

impl XdgShellHandler for WayRay {
    fn xdg_shell_state(&mut self) -> &mut XdgShellState {
        &mut self.xdg_shell_state
    }

    fn new_toplevel(&mut self, surface: ToplevelSurface) {
        tracing::debug!("new toplevel");
        self.unmapped.push(Window::new_wayland_window(surface));
    }

    fn toplevel_destroyed(&mut self, surface: ToplevelSurface) {
        if let Some(window) = self.external_window(&surface) {
            self.wm_window_closed(&window);
        }
        self.unmapped
            .retain(|w| w.toplevel().is_some_and(|t| t != &surface));
        self.refresh_toplevels();
        self.update_idle_inhibit();
        self.needs_render = true;
    }

    /// The title bar shows the title, so it is redrawn; an external WM hears it.
    fn title_changed(&mut self, surface: ToplevelSurface) {
        if let Some(window) = self.external_window(&surface) {
            self.wm_tell_properties(&window);
        }
        self.needs_render = true;
    }

    fn app_id_changed(&mut self, surface: ToplevelSurface) {
        if let Some(window) = self.external_window(&surface) {
            self.wm_tell_properties(&window);
        }
        self.needs_render = true;
    }

    fn maximize_request(&mut self, surface: ToplevelSurface) {
        if self.pass_to_external_wm(&surface, |w| w.request_maximize()) {
            return;
        }
        match self.window_for_surface(surface.wl_surface()) {
            Some(window) if self.space.element_location(&window).is_some() => {
                self.snap_window(&window, Snap::Maximize)
            }
            // Not mapped yet: it opens maximized (mapping sees the state).
            _ => {
                surface.with_pending_state(|s| s.states.set(xdg_toplevel::State::Maximized));
                if surface.is_initial_configure_sent() {
                    surface.send_pending_configure();
                }
            }
        }
    }

    fn unmaximize_request(&mut self, surface: ToplevelSurface) {
        if self.pass_to_external_wm(&surface, |w| w.request_unmaximize()) {
            return;
        }
        surface.with_pending_state(|s| {
            s.states.unset(xdg_toplevel::State::Maximized);
            s.size = None;
        });
        if let Some(window) = self.window_for_surface(surface.wl_surface()) {
            crate::compositor::resize::set_snap(&window, None);
        }
        if surface.is_initial_configure_sent() {
            surface.send_pending_configure();
        }
    }

    fn fullscreen_request(
        &mut self,
        surface: ToplevelSurface,
        _output: Option<smithay::reexports::wayland_server::protocol::wl_output::WlOutput>,
    ) {
        if !self.pass_to_external_wm(&surface, |w| w.request_fullscreen()) {
            // The built-in WM has no fullscreen: the client keeps its state.
            if surface.is_initial_configure_sent() {
                surface.send_configure();
            }
        }
    }

    fn unfullscreen_request(&mut self, surface: ToplevelSurface) {
        self.pass_to_external_wm(&surface, |w| w.request_unfullscreen());
    }

    fn minimize_request(&mut self, surface: ToplevelSurface) {
        self.pass_to_external_wm(&surface, |w| w.request_minimize());
    }

    fn move_request(&mut self, surface: ToplevelSurface, _seat: wl_seat::WlSeat, _serial: Serial) {
        self.pass_to_external_wm(&surface, |w| w.request_move());
    }

    fn resize_request(
        &mut self,
        surface: ToplevelSurface,
        _seat: wl_seat::WlSeat,
        _serial: Serial,
        edges: xdg_toplevel::ResizeEdge,
    ) {
        // xdg_toplevel's edges and the WM protocol's share their bits (top 1, bottom 2, left 4,
        // right 8).
        let edges = u32::from(edges);
        self.pass_to_external_wm(&surface, |w| {
            w.request_resize(
                wayray_wm_protocol::server::wayray_wm_window_v1::Edges::from_bits_truncate(edges),
            )
        });
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

    /// A menu grabs keyboard and pointer; a click outside it dismisses the whole popup chain.
    fn grab(&mut self, surface: PopupSurface, seat: wl_seat::WlSeat, serial: Serial) {
        let Some(seat) = Seat::<WayRay>::from_resource(&seat) else {
            return;
        };
        let kind = PopupKind::Xdg(surface);
        // The root is a window's surface, or a panel's (waybar's menus).
        let Some(root) = find_popup_root_surface(&kind).ok().and_then(|root| {
            self.window_for_surface(&root)
                .and_then(|w| w.toplevel().map(|t| t.wl_surface().clone()))
                .or_else(|| {
                    self.layer_for_surface(&root)
                        .map(|l| l.wl_surface().clone())
                })
        }) else {
            return;
        };
        let Ok(mut grab) = self.popups.grab_popup(root, kind, &seat, serial) else {
            return;
        };
        if let Some(keyboard) = seat.get_keyboard() {
            if keyboard.is_grabbed()
                && !(keyboard.has_grab(serial)
                    || keyboard.has_grab(grab.previous_serial().unwrap_or(serial)))
            {
                grab.ungrab(PopupUngrabStrategy::All);
                return;
            }
            keyboard.set_focus(self, grab.current_grab(), serial);
            keyboard.set_grab(self, PopupKeyboardGrab::new(&grab), serial);
        }
        if let Some(pointer) = seat.get_pointer() {
            if pointer.is_grabbed()
                && !(pointer.has_grab(serial)
                    || pointer.has_grab(grab.previous_serial().unwrap_or_else(|| grab.serial())))
            {
                grab.ungrab(PopupUngrabStrategy::All);
                return;
            }
            pointer.set_grab(self, PopupPointerGrab::new(&grab), serial, Focus::Keep);
        }
    }
}

delegate_xdg_shell!(WayRay);

/// Called on every `wl_surface.commit`: sends initial configures and maps toplevels whose first
/// buffer arrived.
pub fn handle_commit(state: &mut WayRay, surface: &WlSurface) {
    state.wm_surface_committed(surface);
    if state.external_wm.is_active() {
        if let Some(idx) = state
            .unmapped
            .iter()
            .position(|w| w.toplevel().is_some_and(|t| t.wl_surface() == surface))
        {
            // The external WM decides its first size: its initial configure waits for the
            // WM's manage sequence.
            let window = state.unmapped.remove(idx);
            state.wm_announce(window, false, None);
            return;
        }
    }
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
                // The bounds tell clients that size themselves (browsers, GTK) how much room
                // the usable area has below a title bar, so they open no larger than that.
                let usable = state.usable_area();
                let title = decorations::title_height(&window);
                toplevel.with_pending_state(|s| {
                    s.bounds = Some((usable.w.max(1), (usable.h - title).max(1)).into());
                });
                toplevel.send_configure();
                return;
            }
        }
        let has_buffer =
            with_renderer_surface_state(surface, |s| s.buffer().is_some()).unwrap_or(false);
        if has_buffer {
            state.unmapped.remove(idx);
            let size = window.geometry().size;
            let existing: Vec<Area> = state
                .space
                .elements()
                .filter_map(|w| {
                    let g = state.space.element_geometry(w)?;
                    let title = decorations::title_height(w);
                    Some(Area {
                        x: g.loc.x,
                        y: g.loc.y - title,
                        w: g.size.w,
                        h: g.size.h + title,
                    })
                })
                .collect();
            let title = decorations::title_height(&window);
            let usable = state.usable_area();
            let wants_maximized = window.toplevel().is_some_and(|t| {
                t.with_pending_state(|s| s.states.contains(xdg_toplevel::State::Maximized))
            });
            if wants_maximized || !fits(usable, (size.w, size.h + title)) {
                // Too large to float in the usable area: open maximized there, as desktops do,
                // rather than at the corner over everything with its title bar off screen.
                tracing::info!(
                    x = usable.x,
                    y = usable.y + title,
                    w = size.w,
                    h = size.h,
                    maximized = true,
                    "mapping toplevel"
                );
                state
                    .space
                    .map_element(window.clone(), (usable.x, usable.y + title), true);
                state.focus_window(Some(window.clone()), SERIAL_COUNTER.next_serial());
                state.snap_window(&window, Snap::Maximize);
                return;
            }
            let (x, y) = state.wm.place(usable, (size.w, size.h + title), &existing);
            let pos = (x, y + title);
            tracing::info!(
                x = pos.0,
                y = pos.1,
                w = size.w,
                h = size.h,
                "mapping toplevel"
            );
            state.space.map_element(window.clone(), pos, true);
            state.focus_window(Some(window), SERIAL_COUNTER.next_serial());
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
    /// The window an external WM manages for `surface`, if one is active and knows it.
    fn external_window(&self, surface: &ToplevelSurface) -> Option<Window> {
        let wm = self.external_wm.active.as_ref()?;
        wm.windows
            .iter()
            .find(|w| w.window.toplevel() == Some(surface))
            .map(|w| w.window.clone())
    }

    /// Passes a client's request to the external WM; false when none is active.
    fn pass_to_external_wm(
        &mut self,
        surface: &ToplevelSurface,
        send: impl FnOnce(&wayray_wm_protocol::server::wayray_wm_window_v1::WayrayWmWindowV1),
    ) -> bool {
        if !self.external_wm.is_active() {
            return false;
        }
        if let Some(window) = self.external_window(surface) {
            self.wm_client_request(&window, send);
        }
        true
    }

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
