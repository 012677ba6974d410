//! The one list of windows that taskbars see, shared by ext-foreign-toplevel-list and
//! wlr-foreign-toplevel-management: each mapped window with its title, app id and state.
//! `refresh_toplevels` syncs it with the space after commits, focus changes and unmaps, and
//! tells both protocols only what changed.

use smithay::{
    desktop::Window,
    reexports::{
        wayland_protocols::xdg::shell::server::xdg_toplevel,
        wayland_server::{protocol::wl_surface::WlSurface, DisplayHandle},
    },
    wayland::{
        compositor::with_states,
        foreign_toplevel_list::{ForeignToplevelHandle, ForeignToplevelListState},
        shell::xdg::XdgToplevelSurfaceData,
    },
};

use smithay::{utils::IsAlive, wayland::seat::WaylandFocus};

use super::{protocols::unsandboxed, state::WayRay};

/// What a taskbar shows of a window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToplevelInfo {
    pub title: String,
    pub app_id: String,
    pub activated: bool,
    pub maximized: bool,
}

pub struct Entry {
    /// Stable for the window's life; wlr handles carry it to find the window again.
    pub id: u64,
    pub window: Window,
    pub info: ToplevelInfo,
    ext: ForeignToplevelHandle,
}

pub struct Toplevels {
    pub list: ForeignToplevelListState,
    pub entries: Vec<Entry>,
    next_id: u64,
}

impl Toplevels {
    pub fn new(dh: &DisplayHandle) -> Self {
        Self {
            list: ForeignToplevelListState::new_with_filter::<WayRay>(dh, unsandboxed),
            entries: Vec::new(),
            next_id: 1,
        }
    }

    pub fn window(&self, id: u64) -> Option<Window> {
        self.entries
            .iter()
            .find(|e| e.id == id)
            .map(|e| e.window.clone())
    }
}

/// The root surface of a Wayland or X11 window.
fn window_surface(window: &Window) -> Option<WlSurface> {
    window.wl_surface().map(|s| s.into_owned())
}

/// What a taskbar (or an external WM) is told of `window`, leaving out the focus.
pub fn window_info(window: &Window) -> ToplevelInfo {
    read_info(window, None)
}

fn read_info(window: &Window, focus: Option<&WlSurface>) -> ToplevelInfo {
    let activated = focus.is_some() && window_surface(window).as_ref() == focus;
    if let Some(toplevel) = window.toplevel() {
        let (title, app_id) = with_states(toplevel.wl_surface(), |states| {
            states
                .data_map
                .get::<XdgToplevelSurfaceData>()
                .and_then(|d| d.lock().ok())
                .map(|d| {
                    (
                        d.title.clone().unwrap_or_default(),
                        d.app_id.clone().unwrap_or_default(),
                    )
                })
                .unwrap_or_default()
        });
        // What the WM decided, even before the client redrew at that size.
        let maximized =
            toplevel.with_pending_state(|s| s.states.contains(xdg_toplevel::State::Maximized));
        return ToplevelInfo {
            title,
            app_id,
            activated,
            maximized,
        };
    }
    if let Some(x11) = window.x11_surface() {
        return ToplevelInfo {
            title: x11.title(),
            app_id: x11.class(),
            activated,
            maximized: x11.is_maximized(),
        };
    }
    ToplevelInfo::default()
}

impl WayRay {
    /// Brings the taskbar list in line with the mapped windows; sends only differences.
    pub fn refresh_toplevels(&mut self) {
        let focus = self.seat.get_keyboard().and_then(|k| k.current_focus());
        self.refresh_toplevels_with_focus(focus.as_ref());
    }

    /// As [`WayRay::refresh_toplevels`], with the keyboard focus given: inside
    /// `SeatHandler::focus_changed` the keyboard is locked and cannot be asked.
    pub fn refresh_toplevels_with_focus(&mut self, focus: Option<&WlSurface>) {
        let mapped: Vec<Window> = self.space.elements().cloned().collect();

        let mut removed = Vec::new();
        self.protocols.toplevels.entries.retain(|e| {
            let keep = mapped.contains(&e.window) && e.window.alive();
            if !keep {
                removed.push((e.id, e.ext.clone()));
            }
            keep
        });
        for (id, ext) in removed {
            ext.send_closed();
            self.protocols.toplevels.list.remove_toplevel(&ext);
            self.wlr_toplevel_closed(id);
        }

        for window in mapped {
            let info = read_info(&window, focus);
            let toplevels = &mut self.protocols.toplevels;
            match toplevels.entries.iter_mut().find(|e| e.window == window) {
                Some(entry) if entry.info == info => {}
                Some(entry) => {
                    if entry.info.title != info.title {
                        entry.ext.send_title(&info.title);
                    }
                    if entry.info.app_id != info.app_id {
                        entry.ext.send_app_id(&info.app_id);
                    }
                    entry.ext.send_done();
                    entry.info = info.clone();
                    let id = entry.id;
                    self.wlr_toplevel_changed(id, &info);
                }
                None => {
                    let ext = toplevels
                        .list
                        .new_toplevel::<WayRay>(info.title.clone(), info.app_id.clone());
                    let id = toplevels.next_id;
                    toplevels.next_id += 1;
                    toplevels.entries.push(Entry {
                        id,
                        window,
                        info: info.clone(),
                        ext,
                    });
                    self.wlr_toplevel_added(id, &info);
                }
            }
        }
    }
}
