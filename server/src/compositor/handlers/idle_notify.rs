//! ext-idle-notify: screen lockers and power tools (swayidle) learn when the user stopped
//! using the session. Idle means no input from the attached appliance for the client's timeout;
//! every input event from the appliance counts as activity (see `on_input`).

use smithay::{
    delegate_idle_notify,
    wayland::idle_notify::{IdleNotifierHandler, IdleNotifierState},
};

use crate::compositor::state::WayRay;

impl IdleNotifierHandler for WayRay {
    fn idle_notifier_state(&mut self) -> &mut IdleNotifierState<Self> {
        &mut self.protocols.idle_notifier
    }
}

delegate_idle_notify!(WayRay);

impl WayRay {
    /// The user did something on the appliance: restart every idle timer.
    pub fn note_user_activity(&mut self) {
        let seat = self.seat.clone();
        self.protocols.idle_notifier.notify_activity(&seat);
    }
}
