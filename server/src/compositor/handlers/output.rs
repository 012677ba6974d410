use smithay::{delegate_output, wayland::output::OutputHandler};

use crate::compositor::state::WayRay;

impl OutputHandler for WayRay {}
delegate_output!(WayRay);
