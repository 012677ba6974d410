//! zwlr_data_control: clipboard managers and `wl-copy`/`wl-paste` read and set the selection
//! without a focused surface. Like the other selection protocols, offers carry the reader's pipe
//! to the source client, so even a large entry never blocks the compositor.

use smithay::{
    delegate_data_control,
    wayland::selection::wlr_data_control::{DataControlHandler, DataControlState},
};

use crate::compositor::state::WayRay;

impl DataControlHandler for WayRay {
    fn data_control_state(&self) -> &DataControlState {
        &self.protocols.wlr_data_control
    }
}

delegate_data_control!(WayRay);
