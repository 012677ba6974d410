//! Frame pacing: which frames are in flight, and when clients may draw again.
//!
//! Pure state machine: the compositor asks it whether to render and tells it about sent frames
//! and acks. Keeping it free of Wayland types makes the flow-control rules testable directly.

use std::collections::VecDeque;

use crate::link::ApplianceId;

#[derive(Debug)]
pub struct Pacer {
    max_in_flight: usize,
    attached: Option<ApplianceId>,
    in_flight: VecDeque<u64>,
    next_seq: u64,
    /// The next frame must be a full frame (new appliance, or encoder reset).
    key_frame_due: bool,
    /// Clients were not sent frame callbacks after the last render because too many frames were
    /// in flight; they get them when an ack frees a slot.
    callbacks_held: bool,
}

impl Pacer {
    pub fn new(max_in_flight: usize) -> Self {
        Self {
            max_in_flight: max_in_flight.max(1),
            attached: None,
            in_flight: VecDeque::new(),
            next_seq: 1,
            key_frame_due: false,
            callbacks_held: false,
        }
    }

    pub fn attached(&self) -> Option<ApplianceId> {
        self.attached
    }

    pub fn attach(&mut self, appliance: ApplianceId) {
        self.attached = Some(appliance);
        self.in_flight.clear();
        self.key_frame_due = true;
    }

    /// Returns whether `appliance` was the attached one.
    pub fn detach(&mut self, appliance: ApplianceId) -> bool {
        if self.attached != Some(appliance) {
            return false;
        }
        self.attached = None;
        self.in_flight.clear();
        true
    }

    /// The next frame must be a full frame (the output was resized).
    pub fn request_key_frame(&mut self) {
        self.key_frame_due = true;
    }

    pub fn key_frame_due(&self) -> bool {
        self.key_frame_due
    }

    /// True when a frame may be rendered and sent now. While false, damage keeps accumulating in
    /// the damage tracker and goes out merged into the next frame.
    pub fn can_send(&self) -> bool {
        self.attached.is_some() && self.in_flight.len() < self.max_in_flight
    }

    /// Records a frame handed to the transport; returns its sequence number.
    pub fn frame_sent(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.in_flight.push_back(seq);
        self.key_frame_due = false;
        seq
    }

    /// Sequence number the next frame will get (for logs before sending).
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// After a render pass: may clients be told to draw their next frame now? If not, the
    /// callbacks are held until an ack.
    pub fn release_callbacks_after_render(&mut self) -> bool {
        let ok = self.can_send();
        self.callbacks_held = !ok;
        ok
    }

    /// An ack from `appliance`; returns true if held frame callbacks should go out now.
    pub fn ack(&mut self, appliance: ApplianceId, seq: u64) -> bool {
        if self.attached != Some(appliance) {
            return false;
        }
        while self.in_flight.front().is_some_and(|&s| s <= seq) {
            self.in_flight.pop_front();
        }
        if self.callbacks_held && self.can_send() {
            self.callbacks_held = false;
            return true;
        }
        false
    }

    #[cfg(test)]
    fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_sent_without_an_appliance() {
        let p = Pacer::new(2);
        assert!(!p.can_send());
    }

    #[test]
    fn in_flight_limit_holds_callbacks_until_ack() {
        let mut p = Pacer::new(2);
        p.attach(7);
        assert!(p.key_frame_due());
        let s1 = p.frame_sent();
        assert!(!p.key_frame_due());
        assert!(p.release_callbacks_after_render());
        let s2 = p.frame_sent();
        assert!(!p.can_send());
        assert!(!p.release_callbacks_after_render());
        // An ack from another appliance is ignored.
        assert!(!p.ack(8, s2));
        assert!(!p.can_send());
        assert!(p.ack(7, s1));
        assert!(p.can_send());
        assert_eq!(p.in_flight(), 1);
        // A cumulative ack clears everything up to it.
        p.frame_sent();
        assert!(!p.ack(7, s2 + 1));
        assert_eq!(p.in_flight(), 0);
    }

    #[test]
    fn reattach_clears_in_flight_and_wants_a_key_frame() {
        let mut p = Pacer::new(1);
        p.attach(1);
        p.frame_sent();
        assert!(!p.can_send());
        assert!(!p.detach(2));
        assert!(p.detach(1));
        p.attach(2);
        assert!(p.can_send());
        assert!(p.key_frame_due());
        let seq = p.frame_sent();
        assert_eq!(seq, 2, "sequence numbers keep increasing across appliances");
    }
}
