//! xdg-foreign: a sandboxed application's portal dialog (file chooser) is parented to the
//! application's window across clients, so it stays on top of it.

use smithay::{
    delegate_xdg_foreign,
    wayland::xdg_foreign::{XdgForeignHandler, XdgForeignState},
};

use crate::compositor::state::WayRay;

impl XdgForeignHandler for WayRay {
    fn xdg_foreign_state(&mut self) -> &mut XdgForeignState {
        &mut self.protocols.xdg_foreign
    }
}

delegate_xdg_foreign!(WayRay);
