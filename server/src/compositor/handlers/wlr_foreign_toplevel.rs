//! wlr-foreign-toplevel-management: what waybar's taskbar (and similar docks) use to list
//! windows and act on them: activate, close, maximize and unmaximize. Smithay does not carry
//! this protocol, so it is implemented here on the generated server bindings, fed by the shared
//! window list in `toplevels.rs`. Minimize and fullscreen are not offered by the built-in WM, so
//! those requests are ignored; sandboxed clients do not see the global.

use smithay::{
    desktop::Window,
    reexports::{
        wayland_protocols::xdg::shell::server::xdg_toplevel,
        wayland_protocols_wlr::foreign_toplevel::v1::server::{
            zwlr_foreign_toplevel_handle_v1::{self, ZwlrForeignToplevelHandleV1},
            zwlr_foreign_toplevel_manager_v1::{self, ZwlrForeignToplevelManagerV1},
        },
        wayland_server::{
            backend::{ClientId, GlobalId},
            Client, DataInit, Dispatch, DisplayHandle, GlobalDispatch, New, Resource,
        },
    },
    utils::SERIAL_COUNTER,
};

use crate::compositor::{
    protocols::unsandboxed,
    state::WayRay,
    toplevels::ToplevelInfo,
    wm::{Snap, WmAction},
};

const VERSION: u32 = 3;

/// The bound managers and the handles each was sent, by window id.
pub struct WlrForeignToplevelState {
    _global: GlobalId,
    managers: Vec<ZwlrForeignToplevelManagerV1>,
    handles: Vec<(u64, ZwlrForeignToplevelHandleV1)>,
}

impl WlrForeignToplevelState {
    pub fn new(dh: &DisplayHandle) -> Self {
        Self {
            _global: dh.create_global::<WayRay, ZwlrForeignToplevelManagerV1, _>(VERSION, ()),
            managers: Vec::new(),
            handles: Vec::new(),
        }
    }
}

fn state_bytes(info: &ToplevelInfo) -> Vec<u8> {
    let mut states = Vec::new();
    if info.maximized {
        states.push(zwlr_foreign_toplevel_handle_v1::State::Maximized as u32);
    }
    if info.activated {
        states.push(zwlr_foreign_toplevel_handle_v1::State::Activated as u32);
    }
    states.iter().flat_map(|s| s.to_ne_bytes()).collect()
}

impl WayRay {
    fn send_wlr_info(&self, handle: &ZwlrForeignToplevelHandleV1, info: &ToplevelInfo) {
        handle.title(info.title.clone());
        handle.app_id(info.app_id.clone());
        handle.state(state_bytes(info));
        handle.done();
    }

    /// Announces window `id` to one manager.
    fn announce_wlr_toplevel(
        &mut self,
        manager: &ZwlrForeignToplevelManagerV1,
        id: u64,
        info: &ToplevelInfo,
    ) {
        let Some(client) = manager.client() else {
            return;
        };
        let handle = match client.create_resource::<ZwlrForeignToplevelHandleV1, u64, WayRay>(
            &self.display_handle,
            manager.version(),
            id,
        ) {
            Ok(handle) => handle,
            Err(err) => {
                tracing::warn!(%err, "cannot create a foreign toplevel handle");
                return;
            }
        };
        manager.toplevel(&handle);
        // Taskbars show only the windows on their own output.
        for output in self.output.client_outputs(&client) {
            handle.output_enter(&output);
        }
        self.send_wlr_info(&handle, info);
        self.protocols
            .wlr_foreign_toplevel
            .handles
            .push((id, handle));
    }

    pub fn wlr_toplevel_added(&mut self, id: u64, info: &ToplevelInfo) {
        let managers = self.protocols.wlr_foreign_toplevel.managers.clone();
        for manager in managers {
            self.announce_wlr_toplevel(&manager, id, info);
        }
    }

    pub fn wlr_toplevel_changed(&mut self, id: u64, info: &ToplevelInfo) {
        for (_, handle) in self
            .protocols
            .wlr_foreign_toplevel
            .handles
            .iter()
            .filter(|(h, _)| *h == id)
        {
            self.send_wlr_info(handle, info);
        }
    }

    pub fn wlr_toplevel_closed(&mut self, id: u64) {
        self.protocols
            .wlr_foreign_toplevel
            .handles
            .retain(|(h, handle)| {
                if *h == id {
                    handle.closed();
                    false
                } else {
                    true
                }
            });
    }

    fn activate_window(&mut self, window: Window) {
        if self.protocols.lock.is_locked() {
            return;
        }
        if self.wm_client_request(&window, |w| w.request_activate()) {
            return;
        }
        self.focus_window(Some(window), SERIAL_COUNTER.next_serial());
    }

    fn close_window(&mut self, window: &Window) {
        if let Some(toplevel) = window.toplevel() {
            toplevel.send_close();
        } else if let Some(x11) = window.x11_surface() {
            if let Err(err) = x11.close() {
                tracing::warn!(%err, "cannot close an X11 window");
            }
        }
    }

    fn set_window_maximized(&mut self, window: Window, maximized: bool) {
        let asked = |w: &wayray_wm_protocol::server::wayray_wm_window_v1::WayrayWmWindowV1| {
            if maximized {
                w.request_maximize()
            } else {
                w.request_unmaximize()
            }
        };
        if self.wm_client_request(&window, asked) {
            return;
        }
        if maximized {
            // The WM's own Super+Up on that window.
            self.focus_window(Some(window), SERIAL_COUNTER.next_serial());
            self.run_wm_action(WmAction::Snap(Snap::Maximize), SERIAL_COUNTER.next_serial());
        } else if let Some(toplevel) = window.toplevel() {
            toplevel.with_pending_state(|s| {
                s.states.unset(xdg_toplevel::State::Maximized);
                s.size = None;
            });
            toplevel.send_pending_configure();
            crate::compositor::resize::set_snap(&window, None);
        }
        self.refresh_toplevels();
    }
}

impl GlobalDispatch<ZwlrForeignToplevelManagerV1, ()> for WayRay {
    fn bind(
        state: &mut Self,
        _dh: &DisplayHandle,
        _client: &Client,
        resource: New<ZwlrForeignToplevelManagerV1>,
        _global_data: &(),
        data_init: &mut DataInit<'_, Self>,
    ) {
        let manager = data_init.init(resource, ());
        let known: Vec<(u64, ToplevelInfo)> = state
            .protocols
            .toplevels
            .entries
            .iter()
            .map(|e| (e.id, e.info.clone()))
            .collect();
        for (id, info) in known {
            state.announce_wlr_toplevel(&manager, id, &info);
        }
        state.protocols.wlr_foreign_toplevel.managers.push(manager);
    }

    fn can_view(client: Client, _global_data: &()) -> bool {
        unsandboxed(&client)
    }
}

impl Dispatch<ZwlrForeignToplevelManagerV1, ()> for WayRay {
    fn request(
        state: &mut Self,
        _client: &Client,
        manager: &ZwlrForeignToplevelManagerV1,
        request: zwlr_foreign_toplevel_manager_v1::Request,
        _data: &(),
        _dh: &DisplayHandle,
        _data_init: &mut DataInit<'_, Self>,
    ) {
        if let zwlr_foreign_toplevel_manager_v1::Request::Stop = request {
            state
                .protocols
                .wlr_foreign_toplevel
                .managers
                .retain(|m| m != manager);
            manager.finished();
        }
    }

    fn destroyed(
        state: &mut Self,
        _client: ClientId,
        manager: &ZwlrForeignToplevelManagerV1,
        _data: &(),
    ) {
        state
            .protocols
            .wlr_foreign_toplevel
            .managers
            .retain(|m| m != manager);
    }
}

impl Dispatch<ZwlrForeignToplevelHandleV1, u64> for WayRay {
    fn request(
        state: &mut Self,
        _client: &Client,
        _handle: &ZwlrForeignToplevelHandleV1,
        request: zwlr_foreign_toplevel_handle_v1::Request,
        id: &u64,
        _dh: &DisplayHandle,
        _data_init: &mut DataInit<'_, Self>,
    ) {
        use zwlr_foreign_toplevel_handle_v1::Request;
        let Some(window) = state.protocols.toplevels.window(*id) else {
            return; // Closed already; the handle is inert.
        };
        match request {
            Request::Activate { .. } => state.activate_window(window),
            Request::Close => state.close_window(&window),
            Request::SetMaximized => state.set_window_maximized(window, true),
            Request::UnsetMaximized => state.set_window_maximized(window, false),
            Request::SetMinimized
            | Request::UnsetMinimized
            | Request::SetFullscreen { .. }
            | Request::UnsetFullscreen
            | Request::SetRectangle { .. } => {
                tracing::debug!(?request, "foreign toplevel request not supported by the WM")
            }
            Request::Destroy => {}
            _ => {}
        }
    }

    fn destroyed(
        state: &mut Self,
        _client: ClientId,
        handle: &ZwlrForeignToplevelHandleV1,
        _id: &u64,
    ) {
        state
            .protocols
            .wlr_foreign_toplevel
            .handles
            .retain(|(_, h)| h != handle);
    }
}
