//! keyboard-shortcuts-inhibit: virtual machine viewers and remote desktops get the WM's key
//! bindings (Alt+Tab, Alt+F4, Super+arrows) while they have keyboard focus, so those reach the
//! remote system. Every request is granted: the inhibitor only acts for the focused surface, and
//! a click elsewhere gives the bindings back.

use smithay::{
    delegate_keyboard_shortcuts_inhibit,
    wayland::keyboard_shortcuts_inhibit::{
        KeyboardShortcutsInhibitHandler, KeyboardShortcutsInhibitState, KeyboardShortcutsInhibitor,
    },
};

use crate::compositor::state::WayRay;

impl KeyboardShortcutsInhibitHandler for WayRay {
    fn keyboard_shortcuts_inhibit_state(&mut self) -> &mut KeyboardShortcutsInhibitState {
        &mut self.protocols.keyboard_shortcuts_inhibit
    }

    fn new_inhibitor(&mut self, inhibitor: KeyboardShortcutsInhibitor) {
        tracing::debug!("keyboard shortcuts inhibited for a surface");
        inhibitor.activate();
    }
}

delegate_keyboard_shortcuts_inhibit!(WayRay);

impl WayRay {
    /// Whether the surface with keyboard focus asked for all keys, WM bindings included.
    pub fn shortcuts_inhibited(&self) -> bool {
        use smithay::wayland::keyboard_shortcuts_inhibit::KeyboardShortcutsInhibitorSeat;
        let Some(focus) = self.seat.get_keyboard().and_then(|k| k.current_focus()) else {
            return false;
        };
        self.seat
            .keyboard_shortcuts_inhibitor_for_surface(&focus)
            .is_some_and(|i| i.is_active())
    }
}
