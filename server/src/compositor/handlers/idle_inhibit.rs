//! idle-inhibit: a video player keeps the session from going idle while its surface is on
//! screen. "On screen" is checked whenever idleness matters (see `update_idle_inhibit`), so an
//! inhibitor on a closed or never-mapped window does not keep the session awake.

use smithay::{
    delegate_idle_inhibit,
    reexports::wayland_server::{protocol::wl_surface::WlSurface, Resource},
    wayland::{compositor::get_parent, idle_inhibit::IdleInhibitHandler},
};

use crate::compositor::state::WayRay;

impl IdleInhibitHandler for WayRay {
    fn inhibit(&mut self, surface: WlSurface) {
        self.protocols.idle_inhibitors.insert(surface);
        self.update_idle_inhibit();
    }

    fn uninhibit(&mut self, surface: WlSurface) {
        self.protocols.idle_inhibitors.remove(&surface);
        self.update_idle_inhibit();
    }
}

delegate_idle_inhibit!(WayRay);

impl WayRay {
    /// Recomputes whether a visible surface inhibits idleness and tells ext-idle-notify.
    /// Called when inhibitors come and go and after windows are mapped or unmapped.
    pub fn update_idle_inhibit(&mut self) {
        self.protocols.idle_inhibitors.retain(|s| s.is_alive());
        let inhibited = self.protocols.idle_inhibitors.iter().any(|surface| {
            let mut root = surface.clone();
            while let Some(parent) = get_parent(&root) {
                root = parent;
            }
            self.window_for_surface(&root)
                .is_some_and(|w| self.space.elements().any(|m| m == &w))
        });
        if inhibited != self.protocols.idle_inhibited {
            tracing::debug!(inhibited, "idle inhibition changed");
            self.protocols.idle_inhibited = inhibited;
            self.protocols.idle_notifier.set_is_inhibited(inhibited);
        }
    }
}
