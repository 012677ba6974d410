//! wayray_wm_manager_v1 and its objects: who may bind it, and each request recorded into the
//! external WM's state machine (`wm/external.rs`), checked against the sequence it belongs to.

use smithay::reexports::wayland_server::{
    backend::ClientId, Client, DataInit, Dispatch, DisplayHandle, GlobalDispatch, New, Resource,
};
use wayray_wm_protocol::server::{
    wayray_wm_manager_v1::{self, WayrayWmManagerV1},
    wayray_wm_seat_v1::{self, WayrayWmSeatV1},
    wayray_wm_window_v1::{self, WayrayWmWindowV1},
    wayray_wm_workspace_v1::{self, WayrayWmWorkspaceV1},
};

use crate::compositor::{
    state::{ClientState, WayRay},
    wm::external::{
        mods_from_bits, Culprit, KeyBinding, Operation, Phase, PointerBinding, Stack, WmWorkspace,
    },
};

/// The manager's global: advertised to every unsandboxed client, bindable by the WM alone.
pub struct WmManagerGlobal;

impl WayRay {
    /// Creates the global (once, at start).
    pub fn create_wm_global(dh: &DisplayHandle) {
        dh.create_global::<WayRay, WayrayWmManagerV1, _>(1, WmManagerGlobal);
    }

    /// The phase of the WM whose client made a request, if it is the active WM.
    fn wm_phase_of(&self, client: &Client) -> Option<Phase> {
        self.external_wm
            .active
            .as_ref()
            .filter(|wm| wm.client == client.id())
            .map(|wm| wm.phase)
    }
}

impl GlobalDispatch<WayrayWmManagerV1, WmManagerGlobal> for WayRay {
    fn bind(
        state: &mut Self,
        dh: &DisplayHandle,
        client: &Client,
        resource: New<WayrayWmManagerV1>,
        _global_data: &WmManagerGlobal,
        data_init: &mut DataInit<'_, Self>,
    ) {
        let manager = data_init.init(resource, ());
        let pid = client.get_credentials(dh).ok().map(|c| c.pid as u32);
        let permitted = pid.is_some() && pid == state.external_wm.allowed_pid;
        if !permitted {
            tracing::warn!(
                ?pid,
                wm_pid = ?state.external_wm.allowed_pid,
                "window manager refused: not the session's window manager"
            );
            manager.post_error(
                wayray_wm_manager_v1::Error::NotPermitted,
                "only the window manager this session started may bind wayray_wm_manager_v1",
            );
            return;
        }
        if state.external_wm.active.is_some() {
            tracing::warn!(?pid, "window manager unavailable: another is active");
            manager.unavailable();
            return;
        }
        state.wm_connected(manager, client.id());
    }

    fn can_view(client: Client, _global_data: &WmManagerGlobal) -> bool {
        // Sandboxed clients (flatpak's security context) never see it.
        client
            .get_data::<ClientState>()
            .is_none_or(|data| !data.sandboxed)
    }
}

impl Dispatch<WayrayWmManagerV1, ()> for WayRay {
    fn request(
        state: &mut Self,
        client: &Client,
        resource: &WayrayWmManagerV1,
        request: wayray_wm_manager_v1::Request,
        _data: &(),
        _dh: &DisplayHandle,
        data_init: &mut DataInit<'_, Self>,
    ) {
        use wayray_wm_manager_v1::Request;
        let is_active = state
            .external_wm
            .active
            .as_ref()
            .is_some_and(|wm| &wm.manager == resource);
        let phase = state.wm_phase_of(client);
        match request {
            Request::Destroy if is_active => state.wm_gone(),
            Request::ManageDone if is_active => {
                if phase == Some(Phase::Manage) {
                    state.wm_manage_done();
                } else {
                    state.wm_sequence_error(Culprit::Manager(resource), "manage_done");
                }
            }
            Request::RenderDone if is_active => {
                if phase == Some(Phase::Render) {
                    state.wm_render_done();
                } else {
                    state.wm_sequence_error(Culprit::Manager(resource), "render_done");
                }
            }
            Request::GetWorkspace { id, output, name } => {
                let ws_id = state.external_wm.next_id();
                data_init.init(id, ws_id);
                if let Some(wm) = state.external_wm.active.as_mut().filter(|_| is_active) {
                    wm.workspaces.push(WmWorkspace {
                        id: ws_id,
                        output,
                        name,
                        active: false,
                    });
                }
            }
            // An inactive manager (told unavailable) is inert.
            _ => {}
        }
    }

    fn destroyed(state: &mut Self, client: ClientId, resource: &WayrayWmManagerV1, _data: &()) {
        let was_active = state
            .external_wm
            .active
            .as_ref()
            .is_some_and(|wm| wm.client == client && &wm.manager == resource);
        if was_active {
            state.wm_gone();
        }
    }
}

impl Dispatch<WayrayWmWindowV1, u64> for WayRay {
    fn request(
        state: &mut Self,
        client: &Client,
        resource: &WayrayWmWindowV1,
        request: wayray_wm_window_v1::Request,
        id: &u64,
        _dh: &DisplayHandle,
        _data_init: &mut DataInit<'_, Self>,
    ) {
        use wayray_wm_window_v1::Request;
        let Some(phase) = state.wm_phase_of(client) else {
            return;
        };
        let manage_only = matches!(
            request,
            Request::ProposeDimensions { .. }
                | Request::SetFullscreen
                | Request::UnsetFullscreen
                | Request::SetMaximized
                | Request::UnsetMaximized
                | Request::SetTiled { .. }
                | Request::Close
        );
        let render_only = matches!(
            request,
            Request::SetPosition { .. }
                | Request::Show
                | Request::Hide
                | Request::PlaceTop
                | Request::PlaceBottom
                | Request::SetBorders { .. }
        );
        if (manage_only && phase != Phase::Manage) || (render_only && phase != Phase::Render) {
            let what = format!("wayray_wm_window_v1.{request:?}");
            state.wm_sequence_error(Culprit::Window(resource), &what);
            return;
        }
        let Some(wm) = state.external_wm.active.as_mut() else {
            return;
        };
        let id = *id;
        if matches!(request, Request::PlaceTop) {
            wm.stacking.push(Stack::Top(id));
        }
        if matches!(request, Request::PlaceBottom) {
            wm.stacking.push(Stack::Bottom(id));
        }
        // A closed window's object is inert.
        let Some(w) = wm.window_mut(id) else {
            return;
        };
        match request {
            Request::Destroy => {}
            Request::ProposeDimensions { width, height } => {
                w.manage.size = Some((width.max(0), height.max(0)))
            }
            Request::SetFullscreen => w.manage.fullscreen = Some(true),
            Request::UnsetFullscreen => w.manage.fullscreen = Some(false),
            Request::SetMaximized => w.manage.maximized = Some(true),
            Request::UnsetMaximized => w.manage.maximized = Some(false),
            Request::SetTiled { edges } => w.manage.tiled = Some(edges.into()),
            Request::Close => w.manage.close = true,
            Request::SetPosition { x, y } => w.render.position = Some((x, y)),
            Request::Show => w.render.shown = Some(true),
            Request::Hide => w.render.shown = Some(false),
            Request::PlaceTop | Request::PlaceBottom => {}
            Request::SetBorders { width, rgba } => w.render.borders = Some((width.max(0), rgba)),
            _ => {}
        }
    }
}

impl Dispatch<WayrayWmSeatV1, ()> for WayRay {
    fn request(
        state: &mut Self,
        client: &Client,
        resource: &WayrayWmSeatV1,
        request: wayray_wm_seat_v1::Request,
        _data: &(),
        _dh: &DisplayHandle,
        _data_init: &mut DataInit<'_, Self>,
    ) {
        use wayray_wm_seat_v1::Request;
        let Some(phase) = state.wm_phase_of(client) else {
            return;
        };
        let manage_only = matches!(
            request,
            Request::FocusWindow { .. }
                | Request::ClearFocus
                | Request::StartMove { .. }
                | Request::StartResize { .. }
        );
        if manage_only && phase != Phase::Manage {
            let what = format!("wayray_wm_seat_v1.{request:?}");
            state.wm_sequence_error(Culprit::Seat(resource), &what);
            return;
        }
        let Some(wm) = state.external_wm.active.as_mut() else {
            return;
        };
        let window_id = |w: &WayrayWmWindowV1| w.data::<u64>().copied();
        match request {
            Request::Destroy => {}
            Request::BindKey {
                id,
                keysym,
                modifiers,
            } => {
                wm.key_bindings.retain(|b| b.id != id);
                wm.pointer_bindings.retain(|b| b.id != id);
                wm.key_bindings.push(KeyBinding {
                    id,
                    keysym,
                    mods: mods_from_bits(modifiers.into()),
                });
            }
            Request::BindPointer {
                id,
                button,
                modifiers,
            } => {
                wm.key_bindings.retain(|b| b.id != id);
                wm.pointer_bindings.retain(|b| b.id != id);
                wm.pointer_bindings.push(PointerBinding {
                    id,
                    button,
                    mods: mods_from_bits(modifiers.into()),
                });
            }
            Request::Unbind { id } => {
                wm.key_bindings.retain(|b| b.id != id);
                wm.pointer_bindings.retain(|b| b.id != id);
            }
            Request::FocusWindow { window } => {
                if let Some(id) = window_id(&window).filter(|id| wm.window(*id).is_some()) {
                    wm.focus = Some(Some(id));
                }
            }
            Request::ClearFocus => wm.focus = Some(None),
            Request::StartMove { window } => {
                wm.operation = window_id(&window).map(Operation::Move);
            }
            Request::StartResize { window, edges } => {
                wm.operation = window_id(&window).map(|id| Operation::Resize(id, edges.into()));
            }
            _ => {}
        }
    }
}

impl Dispatch<WayrayWmWorkspaceV1, u64> for WayRay {
    fn request(
        state: &mut Self,
        client: &Client,
        resource: &WayrayWmWorkspaceV1,
        request: wayray_wm_workspace_v1::Request,
        id: &u64,
        _dh: &DisplayHandle,
        _data_init: &mut DataInit<'_, Self>,
    ) {
        use wayray_wm_workspace_v1::Request;
        let Some(phase) = state.wm_phase_of(client) else {
            return;
        };
        let render_only = matches!(request, Request::AddWindow { .. } | Request::Activate);
        if render_only && phase != Phase::Render {
            let what = format!("wayray_wm_workspace_v1.{request:?}");
            state.wm_sequence_error(Culprit::Workspace(resource), &what);
            return;
        }
        let Some(wm) = state.external_wm.active.as_mut() else {
            return;
        };
        let id = *id;
        match request {
            Request::Destroy => {
                wm.workspaces.retain(|w| w.id != id);
                for w in wm.windows.iter_mut() {
                    if w.workspace == Some(id) {
                        w.workspace = None;
                    }
                    if w.render.workspace == Some(Some(id)) {
                        w.render.workspace = Some(None);
                    }
                }
            }
            Request::AddWindow { window } => {
                if let Some(w) = window
                    .data::<u64>()
                    .copied()
                    .and_then(|wid| wm.window_mut(wid))
                {
                    w.render.workspace = Some(Some(id));
                }
            }
            Request::Activate => wm.activate_workspaces.push(id),
            _ => {}
        }
    }
}
