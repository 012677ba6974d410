use smithay::{
    delegate_output, output::Output, reexports::wayland_server::protocol::wl_output::WlOutput,
    wayland::output::OutputHandler,
};

use crate::compositor::state::WayRay;

impl OutputHandler for WayRay {
    /// The new `wl_output` hears the screen's physical size (see `ScaleState`).
    fn output_bound(&mut self, output: Output, wl_output: WlOutput) {
        self.scale.output_bound(&output, wl_output);
    }
}
delegate_output!(WayRay);
