//! wp_presentation (presentation-time): clients (video players, games) learn when a frame of
//! theirs was actually shown. Here "shown" means the appliance acked the frame that carried it,
//! so the time is the ack's arrival: the closest the server can know to the photons. Feedback of
//! frames that never reach an appliance (detached, superseded on a new appliance) is discarded.

use std::time::Duration;

use smithay::{
    delegate_presentation,
    desktop::utils::OutputPresentationFeedback,
    reexports::wayland_protocols::wp::presentation_time::server::wp_presentation_feedback,
    utils::{Clock, Monotonic},
    wayland::presentation::Refresh,
};

use crate::compositor::state::WayRay;

delegate_presentation!(WayRay);

impl WayRay {
    /// After frame `seq` went to the transport: the feedback of every surface drawn so far
    /// waits for that frame's ack.
    pub fn queue_presentation_feedback(&mut self, seq: u64) {
        let mut feedback = OutputPresentationFeedback::new(&self.output);
        let output = self.output.clone();
        for window in self.space.elements() {
            window.take_presentation_feedback(
                &mut feedback,
                |_, _| Some(output.clone()),
                |_, _| wp_presentation_feedback::Kind::empty(),
            );
        }
        self.protocols
            .presentation_pending
            .push_back((seq, feedback));
    }

    /// The appliance acked frames up to `seq`: their surfaces were presented now.
    pub fn present_acked(&mut self, seq: u64) {
        let now = Clock::<Monotonic>::new().now();
        let refresh = Refresh::fixed(self.min_frame_interval.max(Duration::from_millis(1)));
        let pending = &mut self.protocols.presentation_pending;
        while pending.front().is_some_and(|(s, _)| *s <= seq) {
            if let Some((s, mut feedback)) = pending.pop_front() {
                feedback.presented::<_, Monotonic>(
                    now,
                    refresh,
                    s,
                    wp_presentation_feedback::Kind::empty(),
                );
            }
        }
    }

    /// No appliance will ack the frames in flight (detached, or a new appliance starts over).
    pub fn discard_presentation_feedback(&mut self) {
        for (_, mut feedback) in self.protocols.presentation_pending.drain(..) {
            feedback.discarded();
        }
    }
}
