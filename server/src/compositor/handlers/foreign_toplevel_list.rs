//! ext-foreign-toplevel-list: the read-only, standardised window list (title and app id per
//! window) for docks and screen-sharing pickers; fed by `toplevels.rs`.

use smithay::{
    delegate_foreign_toplevel_list,
    wayland::foreign_toplevel_list::{ForeignToplevelListHandler, ForeignToplevelListState},
};

use crate::compositor::state::WayRay;

impl ForeignToplevelListHandler for WayRay {
    fn foreign_toplevel_list_state(&mut self) -> &mut ForeignToplevelListState {
        &mut self.protocols.toplevels.list
    }
}

delegate_foreign_toplevel_list!(WayRay);
