//! zwp_primary_selection: select text in one client, middle-click paste it in another. Smithay
//! hands the pasting client's pipe to the selecting client, so the data never passes through the
//! compositor (nothing here reads it).

use smithay::{
    delegate_primary_selection,
    wayland::selection::primary_selection::{PrimarySelectionHandler, PrimarySelectionState},
};

use crate::compositor::state::WayRay;

impl PrimarySelectionHandler for WayRay {
    fn primary_selection_state(&self) -> &PrimarySelectionState {
        &self.protocols.primary_selection
    }
}

delegate_primary_selection!(WayRay);
