//! input-method-v2: an input method (fcitx5, an on-screen keyboard) composes text for the
//! focused text field. Its candidate popups are tracked like xdg popups, so they are drawn with
//! the window they belong to. Sandboxed clients may not become the input method (it would see
//! every key).

use smithay::{
    delegate_input_method_manager,
    desktop::{PopupKind, PopupManager},
    reexports::wayland_server::protocol::wl_surface::WlSurface,
    utils::{Logical, Rectangle},
    wayland::{
        compositor::get_parent,
        input_method::{InputMethodHandler, PopupSurface},
    },
};

use crate::compositor::state::WayRay;

impl InputMethodHandler for WayRay {
    fn new_popup(&mut self, surface: PopupSurface) {
        if let Err(err) = self.popups.track_popup(PopupKind::from(surface)) {
            tracing::warn!(%err, "cannot track an input method popup");
        }
    }

    fn dismiss_popup(&mut self, surface: PopupSurface) {
        if let Some(parent) = surface.get_parent().map(|p| p.surface.clone()) {
            let root = root_of(&parent);
            // A popup whose client is gone needs no dismissing.
            let _ = PopupManager::dismiss_popup(&root, &PopupKind::from(surface));
        }
        self.needs_render = true;
    }

    fn popup_repositioned(&mut self, _surface: PopupSurface) {
        self.needs_render = true;
    }

    fn parent_geometry(&self, parent: &WlSurface) -> Rectangle<i32, Logical> {
        self.window_for_surface(&root_of(parent))
            .and_then(|w| self.space.element_geometry(&w))
            .unwrap_or_default()
    }
}

delegate_input_method_manager!(WayRay);

fn root_of(surface: &WlSurface) -> WlSurface {
    let mut root = surface.clone();
    while let Some(parent) = get_parent(&root) {
        root = parent;
    }
    root
}
