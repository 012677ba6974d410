//! The Wayland protocols beyond the shell that desktop applications look for (clipboard
//! managers, screen lockers, taskbars, input methods...), and which clients may see each one.
//!
//! Each protocol's handler is in `handlers/`; this file creates their globals in one place, so the
//! rules "greeters have no clipboard" and "sandboxed clients get no privileged protocol" are
//! visible together.

use std::collections::{HashSet, VecDeque};

use smithay::{
    desktop::utils::OutputPresentationFeedback,
    reexports::{
        calloop::LoopHandle,
        wayland_server::{protocol::wl_surface::WlSurface, Client, DisplayHandle},
    },
    wayland::{
        idle_inhibit::IdleInhibitManagerState,
        idle_notify::IdleNotifierState,
        input_method::InputMethodManagerState,
        keyboard_shortcuts_inhibit::KeyboardShortcutsInhibitState,
        pointer_constraints::PointerConstraintsState,
        presentation::PresentationState,
        relative_pointer::RelativePointerManagerState,
        security_context::SecurityContextState,
        selection::{ext_data_control, primary_selection::PrimarySelectionState, wlr_data_control},
        session_lock::SessionLockManagerState,
        single_pixel_buffer::SinglePixelBufferState,
        text_input::TextInputManagerState,
        xdg_activation::XdgActivationState,
        xdg_foreign::XdgForeignState,
    },
};

use super::{
    handlers::{session_lock::Lock, wlr_foreign_toplevel::WlrForeignToplevelState},
    state::{ClientState, WayRay},
    toplevels::Toplevels,
};

/// Protocol states and the little runtime state their handlers keep.
pub struct ProtocolStates {
    /// Whether this session has a clipboard at all (`false` for greeters: nothing typed into a
    /// login form may be read back by another client or leak into the next session).
    pub clipboard: bool,
    pub primary_selection: PrimarySelectionState,
    pub wlr_data_control: wlr_data_control::DataControlState,
    pub ext_data_control: ext_data_control::DataControlState,
    pub xdg_activation: XdgActivationState,
    pub idle_notifier: IdleNotifierState<WayRay>,
    /// Surfaces that asked to keep the session from going idle (video players); they count
    /// only while their window is on screen.
    pub idle_inhibitors: HashSet<WlSurface>,
    pub idle_inhibited: bool,
    pub session_lock: SessionLockManagerState,
    pub lock: Lock,
    pub keyboard_shortcuts_inhibit: KeyboardShortcutsInhibitState,
    pub xdg_foreign: XdgForeignState,
    /// Presentation feedback of the surfaces in each frame sent and not yet acked, oldest
    /// first: an ack means the appliance shows the frame, so the surfaces were presented then.
    pub presentation_pending: VecDeque<(u64, OutputPresentationFeedback)>,
    pub toplevels: Toplevels,
    pub wlr_foreign_toplevel: WlrForeignToplevelState,
    /// Globals that only need to stay advertised; their handlers keep nothing here.
    _kept: KeptProtocolGlobals,
}

#[allow(dead_code)]
struct KeptProtocolGlobals {
    presentation: PresentationState,
    idle_inhibit: IdleInhibitManagerState,
    pointer_constraints: PointerConstraintsState,
    relative_pointer: RelativePointerManagerState,
    text_input: TextInputManagerState,
    input_method: InputMethodManagerState,
    single_pixel_buffer: SinglePixelBufferState,
    security_context: SecurityContextState,
}

/// Whether `client` came through the normal socket rather than a security-context listener
/// (Flatpak and similar sandboxes): only such clients may see privileged globals.
pub fn unsandboxed(client: &Client) -> bool {
    client
        .get_data::<ClientState>()
        .is_none_or(|data| !data.sandboxed)
}

impl ProtocolStates {
    pub fn new(
        dh: &DisplayHandle,
        loop_handle: LoopHandle<'static, WayRay>,
        clipboard: bool,
    ) -> Self {
        let primary_selection =
            PrimarySelectionState::new_with_filter::<WayRay, _>(dh, move |_| clipboard);
        let data_control = move |client: &Client| clipboard && unsandboxed(client);
        Self {
            clipboard,
            wlr_data_control: wlr_data_control::DataControlState::new::<WayRay, _>(
                dh,
                Some(&primary_selection),
                data_control,
            ),
            ext_data_control: ext_data_control::DataControlState::new::<WayRay, _>(
                dh,
                Some(&primary_selection),
                data_control,
            ),
            primary_selection,
            xdg_activation: XdgActivationState::new::<WayRay>(dh),
            idle_notifier: IdleNotifierState::new(dh, loop_handle),
            idle_inhibitors: HashSet::new(),
            idle_inhibited: false,
            session_lock: SessionLockManagerState::new::<WayRay, _>(dh, unsandboxed),
            lock: Lock::default(),
            keyboard_shortcuts_inhibit: KeyboardShortcutsInhibitState::new::<WayRay>(dh),
            xdg_foreign: XdgForeignState::new::<WayRay>(dh),
            presentation_pending: VecDeque::new(),
            toplevels: Toplevels::new(dh),
            wlr_foreign_toplevel: WlrForeignToplevelState::new(dh),
            _kept: KeptProtocolGlobals {
                presentation: PresentationState::new::<WayRay>(dh, libc::CLOCK_MONOTONIC as u32),
                idle_inhibit: IdleInhibitManagerState::new::<WayRay>(dh),
                pointer_constraints: PointerConstraintsState::new::<WayRay>(dh),
                relative_pointer: RelativePointerManagerState::new::<WayRay>(dh),
                text_input: TextInputManagerState::new::<WayRay>(dh),
                input_method: InputMethodManagerState::new::<WayRay, _>(dh, unsandboxed),
                single_pixel_buffer: SinglePixelBufferState::new::<WayRay>(dh),
                security_context: SecurityContextState::new::<WayRay, _>(dh, unsandboxed),
            },
        }
    }
}

impl WayRay {
    /// After a commit: a window's title, app id or mapping may have changed (taskbars), and a
    /// window that just mapped may carry an idle inhibitor.
    pub fn after_commit_protocols(&mut self, surface: &WlSurface) {
        if self.window_for_surface(surface).is_some() {
            self.refresh_toplevels();
            if !self.protocols.idle_inhibitors.is_empty() {
                self.update_idle_inhibit();
            }
        }
    }

    /// After the space dropped dead windows: taskbars lose them too.
    pub fn after_space_refresh_protocols(&mut self) {
        if self.protocols.toplevels.entries.len() != self.space.elements().count() {
            self.refresh_toplevels();
            self.update_idle_inhibit();
        }
    }
}
