//! X11 windows (XwmHandler) and xwayland-shell-v1: Xwayland's windows live in the same space as
//! Wayland toplevels and follow the same window-management policy; override-redirect windows
//! (menus, tooltips) are shown where X puts them, above the rest, undecorated and unfocused.
//! CLIPBOARD is bridged both ways between X11 and Wayland.

use std::os::fd::OwnedFd;

use smithay::{
    delegate_xwayland_shell,
    desktop::{space::RenderZindex, Window},
    input::keyboard::KeyboardTarget,
    reexports::wayland_server::protocol::wl_surface::WlSurface,
    utils::{Logical, Rectangle, SERIAL_COUNTER},
    wayland::{
        selection::{
            data_device::{
                clear_data_device_selection, current_data_device_selection_userdata,
                request_data_device_client_selection,
            },
            primary_selection::{
                clear_primary_selection, current_primary_selection_userdata,
                request_primary_client_selection, set_primary_selection,
            },
            SelectionTarget,
        },
        xwayland_shell::{XWaylandShellHandler, XWaylandShellState},
    },
    xwayland::{
        xwm::{Reorder, ResizeEdge, WmWindowType, XwmId},
        X11Surface, X11Wm, XwmHandler,
    },
};

use crate::compositor::{
    decorations,
    state::WayRay,
    wm::{grabs::WindowGrab, Area, WmAction},
    xwayland::window_surface,
};

/// Whether a managed X11 window gets the server-side title bar: not when it draws its own
/// (Motif hints say so) and not for menus, tooltips and the like that are not override-redirect.
pub fn x11_wants_title_bar(x11: &X11Surface) -> bool {
    if x11.is_override_redirect() || x11.is_decorated() {
        return false;
    }
    matches!(
        x11.window_type(),
        None | Some(WmWindowType::Normal | WmWindowType::Dialog | WmWindowType::Utility)
    )
}

impl WayRay {
    /// The window showing `x11`: mapped, or hidden by an external WM.
    fn x11_window(&self, x11: &X11Surface) -> Option<Window> {
        let hidden = self
            .external_wm
            .active
            .iter()
            .flat_map(|wm| wm.windows.iter().map(|w| &w.window));
        self.space
            .elements()
            .chain(hidden)
            .find(|w| w.x11_surface() == Some(x11))
            .cloned()
    }

    /// Where a new managed X11 window's content goes: transients centred over their parent,
    /// other windows where the WM's placement policy puts them.
    fn place_x11(&self, x11: &X11Surface, size: (i32, i32), title: i32) -> (i32, i32) {
        let parent = x11.is_transient_for().and_then(|parent| {
            self.space.elements().find_map(|w| {
                let p = w.x11_surface()?;
                (p.window_id() == parent).then(|| self.space.element_geometry(w))?
            })
        });
        if let Some(parent) = parent {
            let x = parent.loc.x + (parent.size.w - size.0) / 2;
            let y = parent.loc.y + (parent.size.h - size.1) / 2;
            let area = self.usable_area();
            return (
                x.clamp(area.x, (area.x + area.w - size.0).max(area.x)),
                y.clamp(
                    area.y + title,
                    (area.y + area.h - size.1).max(area.y + title),
                ),
            );
        }
        let existing: Vec<Area> = self
            .space
            .elements()
            .filter(|w| !is_override_redirect(w))
            .filter_map(|w| {
                let g = self.space.element_geometry(w)?;
                let title = decorations::title_height(w);
                Some(Area {
                    x: g.loc.x,
                    y: g.loc.y - title,
                    w: g.size.w,
                    h: g.size.h + title,
                })
            })
            .collect();
        let (x, y) = self
            .wm
            .place(self.usable_area(), (size.0, size.1 + title), &existing);
        (x, y + title)
    }

    /// X11's side of a focus change: the X input focus (or WM_TAKE_FOCUS) and the stacking
    /// order, so X clients know which window is active. The Wayland side (the seat's keyboard
    /// focus on Xwayland's wl_surface, with the appliance's keymap) is already done.
    pub fn x11_focus_changed(&mut self, focused: Option<&Window>) {
        let Some(x11) = focused.and_then(|w| w.x11_surface()).cloned() else {
            return;
        };
        if let Some(wm) = self.xwayland.wm.as_mut() {
            if let Err(err) = wm.raise_window(&x11) {
                tracing::debug!(%err, "cannot raise an X11 window");
            }
        }
        // X11Surface's keyboard entry sets the X input focus by the window's input model, then
        // enters its wl_surface, which the seat has already done (a repeated enter is harmless).
        let seat = self.seat.clone();
        <X11Surface as KeyboardTarget<WayRay>>::enter(
            &x11,
            &seat,
            self,
            Vec::new(),
            SERIAL_COUNTER.next_serial(),
        );
    }

    /// A Wayland client set (or cleared) a selection: X11 clients see it too.
    pub fn wayland_selection_to_x11(
        &mut self,
        target: SelectionTarget,
        mime_types: Option<Vec<String>>,
    ) {
        if target == SelectionTarget::Clipboard {
            self.xwayland.wayland_clipboard = mime_types.clone();
        }
        self.offer_selection_to_x11(target, mime_types);
    }

    /// A Wayland client reads a selection an X11 client owns: Xwayland writes it into `fd`.
    pub fn x11_selection_to_wayland(
        &mut self,
        target: SelectionTarget,
        mime_type: String,
        fd: OwnedFd,
    ) {
        let handle = self.loop_handle.clone();
        let Some(wm) = self.xwayland.wm.as_mut() else {
            return;
        };
        if let Err(err) = wm.send_selection(target, mime_type, fd, handle) {
            tracing::warn!(%err, ?target, "cannot read the X11 selection for a Wayland client");
        }
    }

    /// Tells Xwayland which selection the Wayland side offers (`None`: none any more).
    pub(crate) fn offer_selection_to_x11(
        &mut self,
        target: SelectionTarget,
        mime_types: Option<Vec<String>>,
    ) {
        if !self.xwayland.running() {
            return;
        }
        if let Some(wm) = self.xwayland.wm.as_mut() {
            if let Err(err) = wm.new_selection(target, mime_types) {
                tracing::warn!(%err, ?target, "cannot offer the selection to X11 clients");
            }
        }
    }
}

fn is_override_redirect(window: &Window) -> bool {
    window
        .x11_surface()
        .is_some_and(|x| x.is_override_redirect())
}

impl XwmHandler for WayRay {
    fn xwm_state(&mut self, _xwm: XwmId) -> &mut X11Wm {
        // Smithay asks only for a window manager it created, which is kept until the next
        // Xwayland replaces it (see XwaylandState::wm).
        match self.xwayland.wm.as_mut() {
            Some(wm) => wm,
            None => unreachable!("X11 event without a window manager"),
        }
    }

    fn new_window(&mut self, _xwm: XwmId, _window: X11Surface) {}

    fn new_override_redirect_window(&mut self, _xwm: XwmId, _window: X11Surface) {}

    fn map_window_request(&mut self, _xwm: XwmId, x11: X11Surface) {
        if let Err(err) = x11.set_mapped(true) {
            tracing::warn!(%err, "cannot map an X11 window");
            return;
        }
        let size = x11.geometry().size;
        let title = if x11_wants_title_bar(&x11) {
            decorations::TITLE_HEIGHT
        } else {
            0
        };
        let (x, y) = self.place_x11(&x11, (size.w, size.h), title);
        if let Err(err) = x11.configure(Rectangle::new((x, y).into(), size)) {
            tracing::warn!(%err, "cannot place an X11 window");
        }
        tracing::info!(
            x,
            y,
            w = size.w,
            h = size.h,
            class = %x11.class(),
            transient = x11.is_transient_for().is_some(),
            "mapping x11 window"
        );
        let window = Window::new_x11_window(x11);
        if self.external_wm.is_active() {
            // Shown once the external WM has laid it out, as Wayland windows are.
            self.wm_announce(window, false, Some((x, y).into()));
            return;
        }
        self.space.map_element(window, (x, y), false);
        // Focus follows once Xwayland pairs the window with its wl_surface (surface_associated).
        self.needs_render = true;
    }

    fn mapped_override_redirect_window(&mut self, _xwm: XwmId, x11: X11Surface) {
        let geo = x11.geometry();
        tracing::info!(
            x = geo.loc.x,
            y = geo.loc.y,
            w = geo.size.w,
            h = geo.size.h,
            class = %x11.class(),
            "mapping x11 override-redirect window"
        );
        let window = Window::new_x11_window(x11);
        window.override_z_index(RenderZindex::Overlay as u8);
        self.space.map_element(window, geo.loc, false);
        self.needs_render = true;
    }

    fn unmapped_window(&mut self, _xwm: XwmId, x11: X11Surface) {
        let window = self.x11_window(&x11);
        if let Some(window) = &window {
            self.space.unmap_elem(window);
            self.wm_window_closed(window);
        }
        if !x11.is_override_redirect() {
            if let Err(err) = x11.set_mapped(false) {
                tracing::debug!(%err, "cannot unmap an X11 window");
            }
        }
        tracing::info!(
            override_redirect = x11.is_override_redirect(),
            class = %x11.class(),
            "unmapped x11 window"
        );
        // The keyboard focus goes to the window now on top, as when a Wayland window closes.
        let focused = self.seat.get_keyboard().and_then(|k| k.current_focus());
        let had_focus = focused.is_some_and(|f| {
            window
                .as_ref()
                .and_then(window_surface)
                .is_some_and(|s| s == f)
        });
        if had_focus {
            let top = self
                .space
                .elements()
                .rev()
                .find(|w| !is_override_redirect(w))
                .cloned();
            self.focus_window(top, SERIAL_COUNTER.next_serial());
        }
        self.needs_render = true;
    }

    fn destroyed_window(&mut self, _xwm: XwmId, x11: X11Surface) {
        if let Some(window) = self.x11_window(&x11) {
            self.space.unmap_elem(&window);
            self.wm_window_closed(&window);
            self.needs_render = true;
        }
    }

    /// Unmapped windows get what they ask for; mapped ones may change their size, while the
    /// window manager keeps deciding where they are.
    fn configure_request(
        &mut self,
        _xwm: XwmId,
        x11: X11Surface,
        x: Option<i32>,
        y: Option<i32>,
        w: Option<u32>,
        h: Option<u32>,
        _reorder: Option<Reorder>,
    ) {
        let mut geo = x11.geometry();
        let mapped = self.x11_window(&x11).is_some();
        if !mapped {
            geo.loc.x = x.unwrap_or(geo.loc.x);
            geo.loc.y = y.unwrap_or(geo.loc.y);
        }
        if let Some(w) = w {
            geo.size.w = (w as i32).max(1);
        }
        if let Some(h) = h {
            geo.size.h = (h as i32).max(1);
        }
        if let Err(err) = x11.configure(geo) {
            tracing::debug!(%err, "cannot configure an X11 window");
        }
    }

    /// Override-redirect windows move themselves; the space follows.
    fn configure_notify(
        &mut self,
        _xwm: XwmId,
        x11: X11Surface,
        geometry: Rectangle<i32, Logical>,
        _above: Option<u32>,
    ) {
        if !x11.is_override_redirect() {
            return;
        }
        if let Some(window) = self.x11_window(&x11) {
            self.space.map_element(window, geometry.loc, false);
            self.needs_render = true;
        }
    }

    fn resize_request(&mut self, _xwm: XwmId, x11: X11Surface, button: u32, _edge: ResizeEdge) {
        self.x11_grab(&x11, WmAction::BeginResize, button);
    }

    fn move_request(&mut self, _xwm: XwmId, x11: X11Surface, button: u32) {
        self.x11_grab(&x11, WmAction::BeginMove, button);
    }

    /// X11 clients may read the Wayland selection while an X11 window (or nothing) has the
    /// keyboard focus, as Wayland clients may only while they are focused.
    fn allow_selection_access(&mut self, xwm: XwmId, _selection: SelectionTarget) -> bool {
        let Some(focus) = self.seat.get_keyboard().and_then(|k| k.current_focus()) else {
            return true;
        };
        self.space.elements().any(|w| {
            w.x11_surface().is_some_and(|x| x.xwm_id() == Some(xwm))
                && window_surface(w).is_some_and(|s| s == focus)
        })
    }

    fn send_selection(
        &mut self,
        _xwm: XwmId,
        selection: SelectionTarget,
        mime_type: String,
        fd: OwnedFd,
    ) {
        // Errors of the two kinds differ in type; the text is all the log needs.
        let read = match selection {
            SelectionTarget::Clipboard => {
                request_data_device_client_selection(&self.seat, mime_type, fd)
                    .map_err(|e| e.to_string())
            }
            SelectionTarget::Primary => request_primary_client_selection(&self.seat, mime_type, fd)
                .map_err(|e| e.to_string()),
        };
        if let Err(err) = read {
            tracing::debug!(
                err,
                ?selection,
                "cannot read a Wayland selection for an X11 client"
            );
        }
    }

    fn new_selection(&mut self, _xwm: XwmId, selection: SelectionTarget, mime_types: Vec<String>) {
        tracing::debug!(?selection, ?mime_types, "X11 client set a selection");
        // A session without a clipboard (a greeter) takes nothing from X11 either.
        if !self.protocols.clipboard {
            return;
        }
        match selection {
            SelectionTarget::Clipboard => {
                self.xwayland.wayland_clipboard = None;
                smithay::wayland::selection::data_device::set_data_device_selection(
                    &self.display_handle,
                    &self.seat,
                    mime_types,
                    (),
                );
            }
            SelectionTarget::Primary => {
                set_primary_selection(&self.display_handle, &self.seat, mime_types, ())
            }
        }
    }

    fn cleared_selection(&mut self, _xwm: XwmId, selection: SelectionTarget) {
        // Only a selection an X11 client set (user data `()` marks those) is cleared here.
        match selection {
            SelectionTarget::Clipboard => {
                if current_data_device_selection_userdata(&self.seat).is_some() {
                    clear_data_device_selection(&self.display_handle, &self.seat);
                }
            }
            SelectionTarget::Primary => {
                if current_primary_selection_userdata(&self.seat).is_some() {
                    clear_primary_selection(&self.display_handle, &self.seat);
                }
            }
        }
    }

    fn disconnected(&mut self, _xwm: XwmId) {
        self.x11_exited();
    }
}

impl WayRay {
    /// A managed window's wl_surface is known now, so it can take the keyboard focus: new
    /// windows get it, as new Wayland toplevels do.
    pub(crate) fn x11_surface_paired(&mut self, x11: &X11Surface) {
        self.needs_render = true;
        if x11.is_override_redirect() {
            return;
        }
        let Some(window) = self.x11_window(x11) else {
            return;
        };
        if self.external_wm.is_active() {
            // The external WM decides the focus; one it gave before the surface was known
            // takes effect now.
            if x11.is_activated() && !self.protocols.lock.is_locked() {
                if let Some(keyboard) = self.seat.get_keyboard() {
                    let surface = window_surface(&window);
                    keyboard.set_focus(self, surface, SERIAL_COUNTER.next_serial());
                }
            }
            return;
        }
        self.focus_window(Some(window), SERIAL_COUNTER.next_serial());
    }

    fn x11_grab(&mut self, x11: &X11Surface, action: WmAction, button: u32) {
        let Some(window) = self.x11_window(x11) else {
            return;
        };
        let Some(pointer) = self.seat.get_pointer() else {
            return;
        };
        let Some(start) = pointer.grab_start_data() else {
            return;
        };
        let Some(location) = self.space.element_location(&window) else {
            return;
        };
        crate::compositor::resize::set_snap(&window, None);
        let grab = match action {
            WmAction::BeginResize => WindowGrab::resizing(start, window, button),
            _ => WindowGrab::moving(start, window, location, button),
        };
        pointer.set_grab(
            self,
            grab,
            SERIAL_COUNTER.next_serial(),
            smithay::input::pointer::Focus::Clear,
        );
    }
}

impl XWaylandShellHandler for WayRay {
    fn xwayland_shell_state(&mut self) -> &mut XWaylandShellState {
        &mut self.xwayland.shell
    }

    fn surface_associated(&mut self, _xwm: XwmId, _surface: WlSurface, x11: X11Surface) {
        self.x11_surface_paired(&x11);
    }
}

delegate_xwayland_shell!(WayRay);
