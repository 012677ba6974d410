//! What the appliance brings to every connection and keeps between them: its screen (and word
//! of displays plugged in and out), its input, the requests from outside that it obeys, and
//! what benchmarks measure.

use crate::audio::Audio;
use crate::display::{DisplaySink, Hotplug};
use crate::input::{Action, Input, InputEvent};
use crate::latency::LatencyLog;
use crate::screen::Screen;
use crate::signals::Commands;
use crate::token::Tokens;

pub struct Local<S> {
    pub screen: Screen<S>,
    pub input: Input,
    pub commands: Commands,
    pub latency: Option<LatencyLog>,
    pub hotplug: Hotplug,
    /// Who is at the appliance (smart card or pseudo-token).
    pub tokens: Tokens,
    /// Speaker and microphone (their threads live as long as the appliance).
    pub audio: Audio,
    /// USB forwarding settings; each connection starts its own `crate::usb::UsbSession`.
    pub usb: crate::usb::UsbConfig,
}

impl<S: DisplaySink> Local<S> {
    /// Input while no server takes it: the cursor still follows the pointer (a person sees the
    /// appliance is alive), everything else is dropped rather than replayed late. A pretend
    /// hotplug still changes the screen (the next Hello carries its size). Returns `false`
    /// when the source asked the appliance to exit.
    pub fn drop_input(&mut self, event: InputEvent) -> bool {
        match self.input.route(event) {
            Action::Exit => false,
            Action::SimulateHotplug { width, height } => {
                self.screen.simulate_hotplug(width, height);
                true
            }
            Action::Send { messages, pointer } => {
                if let Some(pointer) = pointer {
                    self.screen.move_cursor(pointer);
                }
                tracing::trace!(dropped = messages.len(), "input while disconnected");
                true
            }
        }
    }
}
