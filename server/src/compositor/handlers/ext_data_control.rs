//! ext_data_control: the standardised successor of wlr_data_control, which newer clipboard
//! tools prefer; same rules (privileged, not in greeters or sandboxes).

use smithay::{
    delegate_ext_data_control,
    wayland::selection::ext_data_control::{DataControlHandler, DataControlState},
};

use crate::compositor::state::WayRay;

impl DataControlHandler for WayRay {
    fn data_control_state(&self) -> &DataControlState {
        &self.protocols.ext_data_control
    }
}

delegate_ext_data_control!(WayRay);
