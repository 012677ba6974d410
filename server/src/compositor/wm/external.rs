//! The external window manager: a client of the session speaking `wayray_wm_manager_v1`
//! (server/wm-protocol/protocol/wayray-wm-v1.xml). This file holds its state machine — the
//! manage and render sequences, the clients' configure acknowledgements in between, the time
//! limits — and the hand-back to the built-in floating WM when it goes. The protocol objects'
//! requests arrive through `handlers/wayray_wm.rs`, which records them here.
//!
//! While a transaction is open (from `manage_start` until `render_done` is applied) no frame is
//! rendered, so the appliance keeps showing the previous layout until the whole new one is
//! ready: sizes acknowledged by the clients and positions set by the WM.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Mutex,
    },
    time::{Duration, Instant},
};

use smithay::{
    desktop::Window,
    reexports::{
        calloop::timer::{TimeoutAction, Timer},
        wayland_protocols::xdg::shell::server::xdg_toplevel,
        wayland_server::{backend::ClientId, Resource},
    },
    utils::{Logical, Point, Serial, SERIAL_COUNTER},
    wayland::{
        compositor::with_states,
        seat::WaylandFocus,
        shell::xdg::{SurfaceCachedState, XdgToplevelSurfaceData},
    },
};
use wayray_wm_protocol::server::{
    wayray_wm_manager_v1::{self, WayrayWmManagerV1},
    wayray_wm_seat_v1::WayrayWmSeatV1,
    wayray_wm_window_v1::{self, WayrayWmWindowV1},
    wayray_wm_workspace_v1::WayrayWmWorkspaceV1,
};

use super::{Area, Mods};
use crate::compositor::state::WayRay;

/// A WM that leaves a manage or render sequence open longer is disconnected.
pub const SEQUENCE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a transaction waits for clients to acknowledge their configures and commit; a
/// client slower than this is shown at whatever size it has when the WM renders.
pub const CONFIGURE_TIMEOUT: Duration = Duration::from_millis(500);

/// The name the WM sees for the session's one output.
pub const OUTPUT_NAME: &str = "WR-1";

/// Where a transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No sequence open: the WM's last layout is shown.
    Idle,
    /// `manage_start` sent; waiting for `manage_done`.
    Manage,
    /// Configures sent; waiting for the clients' acks and commits.
    Configuring,
    /// `render_start` sent; waiting for `render_done`.
    Render,
}

/// Marks a window managed by an external WM: it gets no title bar (the WM draws borders).
#[derive(Debug, Default)]
pub struct ExternallyManaged(pub AtomicBool);

/// The border an external WM asked for: width in logical pixels and 0xRRGGBBAA.
#[derive(Debug, Default)]
pub struct Borders(pub Mutex<(i32, u32)>);

/// Whether `window` is managed by an external WM right now.
pub fn externally_managed(window: &Window) -> bool {
    window
        .user_data()
        .get::<ExternallyManaged>()
        .is_some_and(|m| m.0.load(Ordering::Relaxed))
}

/// The borders an external WM gave `window`, if any.
pub fn borders(window: &Window) -> Option<(i32, u32)> {
    if !externally_managed(window) {
        return None;
    }
    let b = window.user_data().get::<Borders>()?;
    let (width, rgba) = *b.0.lock().ok()?;
    (width > 0).then_some((width, rgba))
}

fn set_externally_managed(window: &Window, managed: bool) {
    window
        .user_data()
        .insert_if_missing_threadsafe(ExternallyManaged::default);
    window
        .user_data()
        .insert_if_missing_threadsafe(Borders::default);
    if let Some(m) = window.user_data().get::<ExternallyManaged>() {
        m.0.store(managed, Ordering::Relaxed);
    }
    if !managed {
        set_borders(window, (0, 0));
    }
}

fn set_borders(window: &Window, value: (i32, u32)) {
    if let Some(mut b) = window
        .user_data()
        .get::<Borders>()
        .and_then(|b| b.0.lock().ok())
    {
        *b = value;
    }
}

/// What a manage sequence decided for one window, applied at `manage_done`.
#[derive(Debug, Default, Clone)]
pub struct ManagePending {
    pub size: Option<(i32, i32)>,
    pub fullscreen: Option<bool>,
    pub maximized: Option<bool>,
    pub tiled: Option<u32>,
    pub close: bool,
}

/// What a render sequence decided for one window, applied at `render_done`.
#[derive(Debug, Default, Clone)]
pub struct RenderPending {
    pub position: Option<(i32, i32)>,
    pub shown: Option<bool>,
    pub borders: Option<(i32, u32)>,
    /// `Some(None)`: on no workspace any more.
    pub workspace: Option<Option<u64>>,
}

/// A window as the external WM knows it.
pub struct WmWindow {
    pub id: u64,
    pub window: Window,
    pub resource: WayrayWmWindowV1,
    /// Shown by the WM (drawn when its workspace is active too).
    pub shown: bool,
    pub workspace: Option<u64>,
    /// Where its content is (applied), once it has been placed.
    pub position: Option<Point<i32, Logical>>,
    /// The dimensions last told to the WM.
    pub told_dimensions: (i32, i32),
    pub manage: ManagePending,
    pub render: RenderPending,
    /// The configure the transaction waits for this window to acknowledge and commit.
    pub waiting_for: Option<Serial>,
}

/// A workspace the WM created.
pub struct WmWorkspace {
    pub id: u64,
    pub output: String,
    pub name: String,
    pub active: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyBinding {
    pub id: u32,
    pub keysym: u32,
    pub mods: Mods,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PointerBinding {
    pub id: u32,
    pub button: u32,
    pub mods: Mods,
}

/// Stacking changes of one render sequence, in the order they were asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stack {
    Top(u64),
    Bottom(u64),
}

/// An interactive operation the WM asked for in a manage sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Move(u64),
    Resize(u64, u32),
}

/// The WM connected now.
pub struct ActiveWm {
    pub client: ClientId,
    pub manager: WayrayWmManagerV1,
    pub seat: Option<WayrayWmSeatV1>,
    pub windows: Vec<WmWindow>,
    pub workspaces: Vec<WmWorkspace>,
    pub phase: Phase,
    /// Counts phases, so a timer armed for one phase ignores later ones.
    pub generation: u64,
    /// Something the WM must manage happened: a manage sequence is due.
    pub manage_due: bool,
    /// A window changed size on its own: a render sequence is due.
    pub render_due: bool,
    pub key_bindings: Vec<KeyBinding>,
    pub pointer_bindings: Vec<PointerBinding>,
    /// `Some(None)`: clear the focus.
    pub focus: Option<Option<u64>>,
    /// The window the WM was last told has the keyboard.
    pub focused: Option<u64>,
    pub operation: Option<Operation>,
    pub stacking: Vec<Stack>,
    pub activate_workspaces: Vec<u64>,
    pub told_output: Option<(i32, i32)>,
    pub told_usable: Option<Area>,
    pub transaction_started: Option<Instant>,
}

impl ActiveWm {
    pub fn window(&self, id: u64) -> Option<&WmWindow> {
        self.windows.iter().find(|w| w.id == id)
    }

    pub fn window_mut(&mut self, id: u64) -> Option<&mut WmWindow> {
        self.windows.iter_mut().find(|w| w.id == id)
    }

    pub fn by_window(&self, window: &Window) -> Option<&WmWindow> {
        self.windows.iter().find(|w| &w.window == window)
    }

    fn visible(&self, w: &WmWindow) -> bool {
        w.shown
            && w.workspace.is_none_or(|ws| {
                self.workspaces
                    .iter()
                    .find(|x| x.id == ws)
                    .is_none_or(|x| x.active)
            })
    }
}

/// The session's WM protocol state: who may be the WM, and the WM connected now.
#[derive(Default)]
pub struct ExternalWm {
    /// The pid of the process the session started as its window manager (`--wm`).
    pub allowed_pid: Option<u32>,
    pub active: Option<ActiveWm>,
    next_id: u64,
}

impl ExternalWm {
    pub fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub fn is_active(&self) -> bool {
        self.active.is_some()
    }
}

/// Modifiers as the protocol's bitfield.
pub fn mods_from_bits(bits: u32) -> Mods {
    Mods {
        shift: bits & 1 != 0,
        ctrl: bits & 4 != 0,
        alt: bits & 8 != 0,
        logo: bits & 64 != 0,
    }
}

/// The kind of protocol object an error is posted on.
pub enum Culprit<'a> {
    Manager(&'a WayrayWmManagerV1),
    Window(&'a WayrayWmWindowV1),
    Seat(&'a WayrayWmSeatV1),
    Workspace(&'a WayrayWmWorkspaceV1),
}

impl WayRay {
    /// Whether frames wait: an external WM's transaction is open, so what the clients have
    /// committed may belong to a layout not complete yet. Bounded by the time limits.
    pub fn wm_holds_frames(&self) -> bool {
        !self.protocols.lock.is_locked()
            && self
                .external_wm
                .active
                .as_ref()
                .is_some_and(|wm| wm.phase != Phase::Idle)
    }

    /// A client bound the manager and may be the WM: it takes over every window where it is.
    pub fn wm_connected(&mut self, manager: WayrayWmManagerV1, client: ClientId) {
        tracing::info!(?client, "window manager connected");
        let mut wm = ActiveWm {
            client: client.clone(),
            manager: manager.clone(),
            seat: None,
            windows: Vec::new(),
            workspaces: Vec::new(),
            phase: Phase::Idle,
            generation: 0,
            manage_due: true,
            render_due: false,
            key_bindings: Vec::new(),
            pointer_bindings: Vec::new(),
            focus: None,
            focused: None,
            operation: None,
            stacking: Vec::new(),
            activate_workspaces: Vec::new(),
            told_output: None,
            told_usable: None,
            transaction_started: None,
        };
        // The seat.
        if let Some(client_obj) = manager.client() {
            match client_obj.create_resource::<WayrayWmSeatV1, _, WayRay>(
                &self.display_handle,
                manager.version(),
                (),
            ) {
                Ok(seat) => {
                    manager.seat(&seat);
                    wm.seat = Some(seat);
                }
                Err(err) => tracing::warn!(%err, "cannot create the WM's seat object"),
            }
        }
        self.external_wm.active = Some(wm);
        self.wm_tell_output();
        // Existing windows, bottom to top, shown where they are; then those not drawn yet.
        // X11 menus and tooltips (override-redirect) stay the compositor's.
        let mapped: Vec<Window> = self
            .space
            .elements()
            .filter(|w| !w.x11_surface().is_some_and(|x| x.is_override_redirect()))
            .cloned()
            .collect();
        let unmapped: Vec<Window> = std::mem::take(&mut self.unmapped);
        for window in mapped {
            let position = self.space.element_location(&window);
            self.wm_announce(window, true, position);
        }
        for window in unmapped {
            self.wm_announce(window, false, None);
        }
        let focus = self.focused_window();
        self.wm_tell_focus(focus.as_ref());
        self.needs_render = true;
    }

    /// The window that has the keyboard.
    pub fn focused_window(&self) -> Option<Window> {
        self.seat
            .get_keyboard()
            .and_then(|k| k.current_focus())
            .and_then(|s| self.window_for_surface(&s))
    }

    /// Tells the WM about a window: a new object with its kind and properties.
    pub fn wm_announce(
        &mut self,
        window: Window,
        shown: bool,
        position: Option<Point<i32, Logical>>,
    ) {
        let id = self.external_wm.next_id();
        let dh = self.display_handle.clone();
        // The window this one is a dialog of.
        let parent = window
            .toplevel()
            .and_then(|t| t.parent())
            .and_then(|p| self.window_for_surface(&p));
        let Some(wm) = self.external_wm.active.as_mut() else {
            return;
        };
        if wm.by_window(&window).is_some() {
            return;
        }
        let Some(client) = wm.manager.client() else {
            return;
        };
        let resource = match client.create_resource::<WayrayWmWindowV1, _, WayRay>(
            &dh,
            wm.manager.version(),
            id,
        ) {
            Ok(r) => r,
            Err(err) => {
                tracing::warn!(%err, "cannot create a WM window object");
                return;
            }
        };
        wm.manager.window(&resource);
        set_externally_managed(&window, true);
        let kind = if window.x11_surface().is_some() {
            wayray_wm_window_v1::Kind::X11
        } else {
            wayray_wm_window_v1::Kind::Wayland
        };
        resource.kind(kind);
        let info = super::super::toplevels::window_info(&window);
        resource.app_id(info.app_id);
        resource.title(info.title);
        let (min, max) = size_hints(&window);
        resource.size_hints(min.0, min.1, max.0, max.1);
        let size = window.geometry().size;
        if size.w > 0 && size.h > 0 {
            resource.dimensions(size.w, size.h);
        }
        if let Some(p) = position {
            resource.position(p.x, p.y);
        }
        let parent = parent
            .as_ref()
            .and_then(|p| wm.by_window(p).map(|w| w.resource.clone()));
        if parent.is_some() {
            resource.parent(parent.as_ref());
        }
        wm.windows.push(WmWindow {
            id,
            window,
            resource,
            shown,
            workspace: None,
            position,
            told_dimensions: (size.w, size.h),
            manage: ManagePending::default(),
            render: RenderPending::default(),
            waiting_for: None,
        });
        wm.manage_due = true;
    }

    /// Sends the output's size and usable area if they changed since last told.
    pub fn wm_tell_output(&mut self) {
        let size = self.output_logical_size();
        let usable = self.usable_area();
        let Some(wm) = self.external_wm.active.as_mut() else {
            return;
        };
        if wm.told_output != Some((size.w, size.h)) || wm.told_usable != Some(usable) {
            wm.manager.output(OUTPUT_NAME.into(), size.w, size.h);
            wm.manager
                .usable_area(OUTPUT_NAME.into(), usable.x, usable.y, usable.w, usable.h);
            wm.told_output = Some((size.w, size.h));
            wm.told_usable = Some(usable);
            wm.manage_due = true;
        }
    }

    fn wm_tell_focus(&mut self, focus: Option<&Window>) {
        let Some(wm) = self.external_wm.active.as_mut() else {
            return;
        };
        let target = focus.and_then(|f| wm.by_window(f));
        let id = target.map(|w| w.id);
        if let Some(seat) = &wm.seat {
            seat.focused(target.map(|w| &w.resource));
        }
        wm.focused = id;
    }

    /// A window's title or app id changed: the WM hears the new one.
    pub fn wm_tell_properties(&mut self, window: &Window) {
        let Some(w) = self
            .external_wm
            .active
            .as_ref()
            .and_then(|wm| wm.by_window(window))
        else {
            return;
        };
        let info = super::super::toplevels::window_info(window);
        w.resource.title(info.title);
        w.resource.app_id(info.app_id);
    }

    /// A window closed (or was unmapped by its client): the WM hears of it, and a manage
    /// sequence follows.
    pub fn wm_window_closed(&mut self, window: &Window) {
        let Some(wm) = self.external_wm.active.as_mut() else {
            return;
        };
        let Some(idx) = wm.windows.iter().position(|w| &w.window == window) else {
            return;
        };
        let gone = wm.windows.remove(idx);
        gone.resource.closed();
        if wm.focused == Some(gone.id) {
            wm.focused = None;
            if let Some(seat) = &wm.seat {
                seat.focused(None);
            }
        }
        wm.manage_due = true;
        self.space.unmap_elem(window);
        self.needs_render = true;
        // The configure wait may have been waiting for it alone.
        self.wm_check_configured();
    }

    /// Whether input must wait: the external WM has a manage sequence due or open, whose
    /// decisions (focus above all) the input after it depends on. Never while locked (the lock
    /// screen takes input directly) and at most for a sequence's time limit.
    pub fn wm_defers_input(&self) -> bool {
        !self.protocols.lock.is_locked()
            && self
                .external_wm
                .active
                .as_ref()
                .is_some_and(|wm| wm.phase == Phase::Manage || wm.manage_due)
    }

    /// Starts the sequence that is due and replays the input that waited for the last one; an
    /// input event that makes a new sequence due (a binding) holds back the rest again.
    pub fn wm_step_and_replay_input(&mut self) {
        loop {
            self.wm_step();
            if self.deferred_input.is_empty() || self.wm_defers_input() {
                return;
            }
            while !self.wm_defers_input() {
                let Some(event) = self.deferred_input.pop_front() else {
                    break;
                };
                self.on_input(event);
            }
        }
    }

    /// Runs after every dispatch: starts the sequence that is due, if none is open.
    pub fn wm_step(&mut self) {
        // A window that went away without its toplevel's destruction being seen (an X11
        // window unmapped, a dead surface): closed for the WM too.
        let dead: Vec<Window> = self
            .external_wm
            .active
            .as_ref()
            .map(|wm| {
                wm.windows
                    .iter()
                    .filter(|w| !smithay::utils::IsAlive::alive(&w.window))
                    .map(|w| w.window.clone())
                    .collect()
            })
            .unwrap_or_default();
        for window in dead {
            self.wm_window_closed(&window);
        }
        let Some(wm) = self.external_wm.active.as_mut() else {
            return;
        };
        if wm.phase != Phase::Idle {
            return;
        }
        if wm.manage_due {
            wm.manage_due = false;
            wm.transaction_started = Some(Instant::now());
            wm.manager.manage_start();
            self.wm_enter(Phase::Manage, SEQUENCE_TIMEOUT);
        } else if wm.render_due {
            wm.render_due = false;
            wm.transaction_started = Some(Instant::now());
            self.wm_start_render();
        }
    }

    /// Enters `phase` with a time limit.
    fn wm_enter(&mut self, phase: Phase, limit: Duration) {
        let Some(wm) = self.external_wm.active.as_mut() else {
            return;
        };
        wm.phase = phase;
        wm.generation += 1;
        let generation = wm.generation;
        let timer = Timer::from_duration(limit);
        let armed = self.loop_handle.insert_source(timer, move |_, _, state| {
            state.wm_time_limit(generation);
            TimeoutAction::Drop
        });
        if let Err(err) = armed {
            tracing::error!(%err, "cannot arm the WM's time limit");
        }
    }

    fn wm_time_limit(&mut self, generation: u64) {
        let Some(wm) = self.external_wm.active.as_ref() else {
            return;
        };
        if wm.generation != generation {
            return;
        }
        match wm.phase {
            Phase::Idle => {}
            Phase::Configuring => {
                let late: Vec<String> = wm
                    .windows
                    .iter()
                    .filter(|w| w.waiting_for.is_some())
                    .map(|w| super::super::toplevels::window_info(&w.window).app_id)
                    .collect();
                tracing::info!(
                    ?late,
                    "clients did not acknowledge their configures in time; rendering the layout"
                );
                self.wm_start_render();
            }
            Phase::Manage | Phase::Render => {
                let manager = wm.manager.clone();
                tracing::warn!(phase = ?wm.phase, "the window manager left a sequence open too long; disconnecting it");
                manager.post_error(
                    wayray_wm_manager_v1::Error::Unresponsive,
                    format!("sequence not ended within {SEQUENCE_TIMEOUT:?}"),
                );
                self.wm_gone();
            }
        }
    }

    /// A request that belongs to another phase: the WM is disconnected with a protocol error
    /// and the built-in WM takes over.
    pub fn wm_sequence_error(&mut self, culprit: Culprit, what: &str) {
        let msg = format!("{what} outside its sequence");
        tracing::warn!(
            what,
            "window manager made a request out of sequence; disconnecting it"
        );
        match culprit {
            Culprit::Manager(r) => r.post_error(wayray_wm_manager_v1::Error::Sequence, msg),
            Culprit::Window(r) => r.post_error(wayray_wm_window_v1::Error::Sequence, msg),
            Culprit::Seat(r) => r.post_error(
                wayray_wm_protocol::server::wayray_wm_seat_v1::Error::Sequence,
                msg,
            ),
            Culprit::Workspace(r) => r.post_error(
                wayray_wm_protocol::server::wayray_wm_workspace_v1::Error::Sequence,
                msg,
            ),
        }
        self.wm_gone();
    }

    /// `manage_done`: configure the clients as decided, then wait for them.
    pub fn wm_manage_done(&mut self) {
        let usable = self.usable_area();
        let Some(wm) = self.external_wm.active.as_mut() else {
            return;
        };
        let focus = wm.focus.take();
        let operation = wm.operation.take();
        let mut configured = 0;
        let focus_window = match focus {
            Some(Some(id)) => Some(wm.window(id).map(|w| w.window.clone())),
            Some(None) => Some(None),
            None => None,
        };
        // Activation is part of the configures sent below.
        if let Some(target) = &focus_window {
            for w in &wm.windows {
                w.window.set_activated(target.as_ref() == Some(&w.window));
            }
        }
        for w in wm.windows.iter_mut() {
            let pending = std::mem::take(&mut w.manage);
            if pending.close {
                super::super::input::request_close(&w.window);
            }
            if let Some(toplevel) = w.window.toplevel() {
                toplevel.with_pending_state(|s| {
                    if let Some((width, height)) = pending.size {
                        s.size = (width > 0 && height > 0).then(|| (width, height).into());
                    }
                    let mut flag = |on: Option<bool>, state: xdg_toplevel::State| match on {
                        Some(true) => {
                            s.states.set(state);
                        }
                        Some(false) => {
                            s.states.unset(state);
                        }
                        None => {}
                    };
                    flag(pending.fullscreen, xdg_toplevel::State::Fullscreen);
                    flag(pending.maximized, xdg_toplevel::State::Maximized);
                    if let Some(edges) = pending.tiled {
                        for (bit, state) in [
                            (1, xdg_toplevel::State::TiledTop),
                            (2, xdg_toplevel::State::TiledBottom),
                            (4, xdg_toplevel::State::TiledLeft),
                            (8, xdg_toplevel::State::TiledRight),
                        ] {
                            if edges & bit != 0 {
                                s.states.set(state);
                            } else {
                                s.states.unset(state);
                            }
                        }
                    }
                    s.bounds = Some((usable.w.max(1), usable.h.max(1)).into());
                });
                let serial = if !toplevel.is_initial_configure_sent() {
                    // Its first configure waited for the WM: it opens at the WM's size.
                    Some(toplevel.send_configure())
                } else {
                    toplevel.send_pending_configure()
                };
                if let Some(serial) = serial {
                    w.waiting_for = Some(serial);
                    configured += 1;
                }
            } else if let Some(x11) = w.window.x11_surface() {
                if let Some((width, height)) = pending.size.filter(|(a, b)| *a > 0 && *b > 0) {
                    let loc = w.position.unwrap_or_default();
                    let rect = smithay::utils::Rectangle::new(loc, (width, height).into());
                    if let Err(err) = x11.configure(Some(rect)) {
                        tracing::debug!(%err, "cannot resize an X11 window");
                    }
                }
                if let Some(on) = pending.fullscreen {
                    if let Err(err) = x11.set_fullscreen(on) {
                        tracing::debug!(%err, "cannot change an X11 window's fullscreen state");
                    }
                }
                if let Some(on) = pending.maximized {
                    if let Err(err) = x11.set_maximized(on) {
                        tracing::debug!(%err, "cannot change an X11 window's maximized state");
                    }
                }
            }
        }
        tracing::debug!(configured, "wm manage sequence done");
        if let Some(target) = focus_window {
            let serial = SERIAL_COUNTER.next_serial();
            let surface = target
                .as_ref()
                .and_then(|w| w.wl_surface().map(|s| s.into_owned()));
            if let Some(keyboard) = self.seat.get_keyboard() {
                if self.exclusive_layer().is_none() && !self.protocols.lock.is_locked() {
                    keyboard.set_focus(self, surface, serial);
                }
            }
            self.x11_focus_changed(target.as_ref());
            self.wm_tell_focus(target.as_ref());
        }
        if let Some(op) = operation {
            self.wm_start_operation(op);
        }
        // Frames are held until the layout is whole, so the clients get their frame callbacks
        // now: many draw a configured size only on the next one.
        self.send_frame_callbacks();
        self.wm_enter(Phase::Configuring, CONFIGURE_TIMEOUT);
        self.wm_check_configured();
    }

    /// A client committed: the transaction may have been waiting for it.
    pub fn wm_surface_committed(
        &mut self,
        surface: &smithay::reexports::wayland_server::protocol::wl_surface::WlSurface,
    ) {
        let Some(wm) = self.external_wm.active.as_mut() else {
            return;
        };
        let Some(w) = wm.windows.iter_mut().find(|w| {
            w.window
                .toplevel()
                .is_some_and(|t| t.wl_surface() == surface)
        }) else {
            return;
        };
        if let Some(wanted) = w.waiting_for {
            let current = with_states(surface, |states| {
                states
                    .data_map
                    .get::<XdgToplevelSurfaceData>()
                    .and_then(|d| d.lock().ok().and_then(|d| d.current_serial))
            });
            let has_buffer =
                smithay::backend::renderer::utils::with_renderer_surface_state(surface, |s| {
                    s.buffer().is_some()
                })
                .unwrap_or(false);
            if has_buffer && current.is_some_and(|c| c >= wanted) {
                w.waiting_for = None;
                self.wm_check_configured();
            }
        } else if wm.phase == Phase::Idle {
            let size = w.window.geometry().size;
            if (size.w, size.h) != w.told_dimensions && size.w > 0 && size.h > 0 {
                // Resized itself: the WM may want to place it anew.
                wm.render_due = true;
            }
        }
    }

    fn wm_check_configured(&mut self) {
        let Some(wm) = self.external_wm.active.as_ref() else {
            return;
        };
        if wm.phase == Phase::Configuring && wm.windows.iter().all(|w| w.waiting_for.is_none()) {
            self.wm_start_render();
        }
    }

    /// Tells the WM the committed dimensions that changed, and opens the render sequence.
    fn wm_start_render(&mut self) {
        let Some(wm) = self.external_wm.active.as_mut() else {
            return;
        };
        for w in wm.windows.iter_mut() {
            w.waiting_for = None;
            let size = w.window.geometry().size;
            if (size.w, size.h) != w.told_dimensions && size.w > 0 && size.h > 0 {
                w.resource.dimensions(size.w, size.h);
                w.told_dimensions = (size.w, size.h);
            }
        }
        wm.manager.render_start();
        self.wm_enter(Phase::Render, SEQUENCE_TIMEOUT);
    }

    /// `render_done`: positions, visibility, stacking, borders and workspaces, all at once.
    pub fn wm_render_done(&mut self) {
        let Some(mut wm) = self.external_wm.active.take() else {
            return;
        };
        for id in std::mem::take(&mut wm.activate_workspaces) {
            let Some(output) = wm
                .workspaces
                .iter()
                .find(|w| w.id == id)
                .map(|w| w.output.clone())
            else {
                continue;
            };
            for ws in wm.workspaces.iter_mut().filter(|w| w.output == output) {
                ws.active = ws.id == id;
            }
        }
        for w in wm.windows.iter_mut() {
            let pending = std::mem::take(&mut w.render);
            if let Some(p) = pending.position {
                w.position = Some(p.into());
            }
            if let Some(shown) = pending.shown {
                w.shown = shown;
            }
            if let Some(b) = pending.borders {
                set_borders(&w.window, b);
            }
            if let Some(ws) = pending.workspace {
                w.workspace = ws;
            }
        }
        let drawn: Vec<u64> = self
            .space
            .elements()
            .filter_map(|e| wm.by_window(e).map(|w| w.id))
            .collect();
        let all: Vec<u64> = wm.windows.iter().map(|w| w.id).collect();
        let order = stacking_order(&drawn, &all, &std::mem::take(&mut wm.stacking));
        let mut shown = 0;
        for id in order {
            let Some(w) = wm.window(id) else { continue };
            let visible = wm.visible(w);
            let has_buffer = w.window.geometry().size.w > 0;
            // Drawn: shown on an active workspace, with a buffer and a position to draw it at.
            let drawn = visible && has_buffer && w.position.is_some();
            match (drawn, w.position) {
                (true, Some(pos)) => {
                    if let Some(x11) = w.window.x11_surface() {
                        // X11 clients know where they are (menus open relative to it).
                        let rect = smithay::utils::Rectangle::new(pos, x11.geometry().size);
                        if x11.geometry() != rect {
                            if let Err(err) = x11.configure(Some(rect)) {
                                tracing::debug!(%err, "cannot move an X11 window");
                            }
                        }
                    }
                    self.space.map_element(w.window.clone(), pos, false);
                    shown += 1;
                }
                _ => self.space.unmap_elem(&w.window),
            }
            let size = w.window.geometry().size;
            let pos = w.position.unwrap_or_default();
            let workspace = w
                .workspace
                .and_then(|id| wm.workspaces.iter().find(|x| x.id == id))
                .map(|x| x.name.as_str())
                .unwrap_or("");
            tracing::info!(
                app_id = %super::super::toplevels::window_info(&w.window).app_id,
                workspace,
                x = pos.x,
                y = pos.y,
                w = size.w,
                h = size.h,
                visible = drawn,
                "wm window placed"
            );
        }
        wm.phase = Phase::Idle;
        wm.generation += 1;
        let took = wm.transaction_started.take().map(|t| t.elapsed());
        self.external_wm.active = Some(wm);
        tracing::info!(
            windows = shown,
            micros = took.map(|t| t.as_micros() as u64),
            "wm layout shown"
        );
        self.needs_render = true;
    }

    /// A key press with these modifiers: the external WM's binding id, if one matches.
    pub fn wm_key_binding(&self, mods: Mods, syms: &[u32]) -> Option<u32> {
        let wm = self.external_wm.active.as_ref()?;
        wm.key_bindings
            .iter()
            .find(|b| b.mods == mods && syms.contains(&b.keysym))
            .map(|b| b.id)
    }

    /// Tells the WM a key binding was pressed; a manage sequence follows.
    pub fn wm_binding_pressed(&mut self, id: u32) {
        let Some(wm) = self.external_wm.active.as_mut() else {
            return;
        };
        if let Some(seat) = &wm.seat {
            seat.binding_pressed(id);
        }
        wm.manage_due = true;
    }

    /// A button press: the WM's pointer binding (consumed) or a click on a window (the WM
    /// hears of it, the client gets the click). Returns whether the press was consumed.
    pub fn wm_button_pressed(&mut self, mods: Mods, button: u32, under: Option<Window>) -> bool {
        let Some(wm) = self.external_wm.active.as_mut() else {
            return false;
        };
        let target = under
            .as_ref()
            .and_then(|u| wm.by_window(u))
            .map(|w| w.resource.clone());
        let binding = wm
            .pointer_bindings
            .iter()
            .find(|b| b.mods == mods && b.button == button)
            .map(|b| b.id);
        let Some(seat) = wm.seat.clone() else {
            return false;
        };
        match (binding, target) {
            (Some(id), target) => {
                seat.pointer_binding_pressed(id, target.as_ref());
                wm.manage_due = true;
                true
            }
            (None, Some(target)) => {
                seat.window_interaction(&target);
                wm.manage_due = true;
                false
            }
            (None, None) => false,
        }
    }

    fn wm_start_operation(&mut self, op: Operation) {
        let Some(pointer) = self.seat.get_pointer() else {
            return;
        };
        let Some(button) = self.held_button else {
            tracing::debug!("interactive operation asked with no button held; ignored");
            return;
        };
        let (id, action) = match op {
            Operation::Move(id) => (id, super::WmAction::BeginMove),
            Operation::Resize(id, _) => (id, super::WmAction::BeginResize),
        };
        let Some(window) = self
            .external_wm
            .active
            .as_ref()
            .and_then(|wm| wm.window(id))
            .map(|w| w.window.clone())
        else {
            return;
        };
        if self.space.element_location(&window).is_none() {
            return;
        }
        drop(pointer);
        self.start_window_grab(window, action, button, SERIAL_COUNTER.next_serial());
    }

    /// An interactive move or resize ended: the WM hears where the window is now.
    pub fn wm_operation_ended(&mut self, window: &Window) {
        let location = self.space.element_location(window);
        let Some(wm) = self.external_wm.active.as_mut() else {
            return;
        };
        let Some(w) = wm.windows.iter_mut().find(|w| &w.window == window) else {
            return;
        };
        if let Some(p) = location {
            w.position = Some(p);
            w.resource.position(p.x, p.y);
        }
        let size = window.geometry().size;
        if (size.w, size.h) != w.told_dimensions {
            w.resource.dimensions(size.w, size.h);
            w.told_dimensions = (size.w, size.h);
        }
        let resource = w.resource.clone();
        if let Some(seat) = &wm.seat {
            seat.operation_ended(&resource);
        }
        wm.manage_due = true;
    }

    /// A client's request about its window (maximize, fullscreen, activate…): the WM decides.
    /// Returns false when no external WM is active, so the built-in one handles it.
    pub fn wm_client_request(
        &mut self,
        window: &Window,
        send: impl FnOnce(&WayrayWmWindowV1),
    ) -> bool {
        let Some(wm) = self.external_wm.active.as_mut() else {
            return false;
        };
        if let Some(w) = wm.by_window(window) {
            send(&w.resource);
            wm.manage_due = true;
        }
        true
    }

    /// The WM disconnected, crashed, was too slow or broke the protocol: the built-in floating
    /// WM takes every window over where it is, visible, with its key bindings.
    pub fn wm_gone(&mut self) {
        let Some(wm) = self.external_wm.active.take() else {
            return;
        };
        let count = wm.windows.len();
        let placed: Vec<Window> = self.space.elements().cloned().collect();
        for w in wm.windows {
            set_externally_managed(&w.window, false);
            // Floating again: no tiled edges (clients draw their shadows and corners again).
            if let Some(t) = w.window.toplevel() {
                t.with_pending_state(|s| {
                    for state in [
                        xdg_toplevel::State::TiledTop,
                        xdg_toplevel::State::TiledBottom,
                        xdg_toplevel::State::TiledLeft,
                        xdg_toplevel::State::TiledRight,
                    ] {
                        s.states.unset(state);
                    }
                });
                if t.is_initial_configure_sent() {
                    t.send_pending_configure();
                }
            }
            let drawn = w.window.geometry().size.w > 0;
            let initial_sent = w
                .window
                .toplevel()
                .is_none_or(|t| t.is_initial_configure_sent());
            if placed.contains(&w.window) {
                continue;
            }
            if !drawn || !initial_sent {
                // Not drawn yet: the built-in WM maps it when its buffer comes.
                if let Some(t) = w.window.toplevel() {
                    if !t.is_initial_configure_sent() {
                        t.send_configure();
                    }
                }
                self.unmapped.push(w.window);
                continue;
            }
            let pos = w.position.unwrap_or_else(|| {
                let usable = self.usable_area();
                (
                    usable.x,
                    usable.y + super::super::decorations::title_height(&w.window),
                )
                    .into()
            });
            self.space.map_element(w.window, pos, false);
        }
        // Title bars are back: windows come whole onto the screen again.
        self.refit_windows();
        let focus = self
            .focused_window()
            .or_else(|| self.space.elements().last().cloned());
        self.focus_window(focus, SERIAL_COUNTER.next_serial());
        self.needs_render = true;
        tracing::info!(
            windows = count,
            "window manager gone; the built-in floating WM manages the windows"
        );
    }
}

/// The stacking order after a render sequence, bottom to top: the windows drawn now as they
/// are stacked, then the others in the order the WM learnt of them (new ones on top), then
/// the WM's stacking requests in the order it made them.
pub fn stacking_order(drawn: &[u64], all: &[u64], ops: &[Stack]) -> Vec<u64> {
    let mut order: Vec<u64> = drawn
        .iter()
        .copied()
        .filter(|id| all.contains(id))
        .collect();
    for id in all {
        if !order.contains(id) {
            order.push(*id);
        }
    }
    for op in ops {
        match *op {
            Stack::Top(id) if order.contains(&id) => {
                order.retain(|x| *x != id);
                order.push(id);
            }
            Stack::Bottom(id) if order.contains(&id) => {
                order.retain(|x| *x != id);
                order.insert(0, id);
            }
            _ => {}
        }
    }
    order
}

/// A window's minimum and maximum sizes (0: no limit).
fn size_hints(window: &Window) -> ((i32, i32), (i32, i32)) {
    if let Some(t) = window.toplevel() {
        return with_states(t.wl_surface(), |states| {
            let mut cached = states.cached_state.get::<SurfaceCachedState>();
            let c = cached.current();
            ((c.min_size.w, c.min_size.h), (c.max_size.w, c.max_size.h))
        });
    }
    if let Some(x11) = window.x11_surface() {
        let min = x11.min_size().map(|s| (s.w, s.h)).unwrap_or((0, 0));
        let max = x11.max_size().map(|s| (s.w, s.h)).unwrap_or((0, 0));
        return (min, max);
    }
    ((0, 0), (0, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stacking_keeps_the_drawn_order_puts_new_windows_on_top_then_applies_requests_in_order() {
        // 1 below 2 on screen; 3 is new.
        assert_eq!(stacking_order(&[1, 2], &[2, 1, 3], &[]), [1, 2, 3]);
        assert_eq!(
            stacking_order(&[1, 2], &[1, 2, 3], &[Stack::Top(1)]),
            [2, 3, 1]
        );
        assert_eq!(
            stacking_order(&[1, 2], &[1, 2, 3], &[Stack::Top(1), Stack::Bottom(3)]),
            [3, 2, 1]
        );
        // A closed window (no longer in `all`) is dropped; requests about it are ignored.
        assert_eq!(stacking_order(&[1, 2], &[2], &[Stack::Top(1)]), [2]);
    }

    #[test]
    fn modifier_bits_are_the_protocols() {
        let m = mods_from_bits(64 | 1);
        assert!(m.logo && m.shift && !m.ctrl && !m.alt);
        let m = mods_from_bits(4 | 8 | 2 | 16);
        assert!(
            m.ctrl && m.alt && !m.logo && !m.shift,
            "caps and num lock are ignored"
        );
    }
}
