//! relative-pointer: raw pointer deltas (the appliance's `PointerRelative` events) for clients
//! that lock the pointer, such as games and remote desktop viewers.

use smithay::delegate_relative_pointer;

use crate::compositor::state::WayRay;

delegate_relative_pointer!(WayRay);
