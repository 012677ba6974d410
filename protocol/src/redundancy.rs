//! Redundant copies on a lossy link, the pure parts (no sockets, no clocks of its own).
//!
//! Typing over a link that loses packets: the traffic is sparse (one key, one small frame), so a
//! lost packet is not followed by another that would reveal the loss, and QUIC notices it only
//! at its probe timeout (RTT + 4 RTT variance + the peer's ack delay: 60 ms and more at 20 ms
//! RTT). While a side has lost a few packets lately ([`LossWatch`]) it therefore sends each input
//! event, and each frame small enough, a second time a few milliseconds later as a QUIC
//! datagram ([`crate::Datagram::Input`], [`crate::Datagram::Frame`]); the receiver takes
//! whichever copy comes first, exactly once and in order. The streams stay the reliable path.
//! Without loss nothing extra is sent.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A side sends copies while it has lost at least [`LOSSES`] packets within this long.
pub const LOSSY_FOR: Duration = Duration::from_secs(30);
/// Losses within [`LOSSY_FOR`] that make a link lossy. QUIC also counts a packet reordered far
/// enough as lost: 2 % reordering without loss counted 1-2 per typing run (20 s), 1 % loss 8-13.
pub const LOSSES: usize = 3;
/// How long after the stream write the copy goes: long enough that QUIC sends it in a packet of
/// its own (not in the very packet whose loss it covers), short next to a retransmission.
pub const COPY_DELAY: Duration = Duration::from_millis(4);

/// Whether the link lost packets lately, from QUIC's count of lost packets.
#[derive(Debug, Default)]
pub struct LossWatch {
    lost: u64,
    /// When the last (at most [`LOSSES`]) losses were noticed, oldest first.
    recent: VecDeque<Instant>,
}

impl LossWatch {
    /// `lost`: the connection's lost-packet count now. True while at least [`LOSSES`] losses
    /// were noticed within [`LOSSY_FOR`].
    pub fn lossy(&mut self, lost: u64, now: Instant) -> bool {
        let new = lost.saturating_sub(self.lost);
        self.lost = self.lost.max(lost);
        for _ in 0..new.min(LOSSES as u64) {
            if self.recent.len() == LOSSES {
                self.recent.pop_front();
            }
            self.recent.push_back(now);
        }
        while self
            .recent
            .front()
            .is_some_and(|at| now.saturating_duration_since(*at) >= LOSSY_FOR)
        {
            self.recent.pop_front();
        }
        self.recent.len() >= LOSSES
    }

    /// The lost-packet count seen last.
    pub fn lost(&self) -> u64 {
        self.lost
    }
}

/// Copies waiting for their send time, oldest first.
#[derive(Debug)]
pub struct Delayed<T> {
    queue: VecDeque<(Instant, T)>,
}

impl<T> Default for Delayed<T> {
    fn default() -> Self {
        Self {
            queue: VecDeque::new(),
        }
    }
}

impl<T> Delayed<T> {
    /// Queues `item` to go [`COPY_DELAY`] after `now`.
    pub fn push(&mut self, now: Instant, item: T) {
        self.queue.push_back((now + COPY_DELAY, item));
    }

    /// When the oldest copy is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.queue.front().map(|(due, _)| *due)
    }

    /// The copies due at `now`, oldest first.
    pub fn take_due(&mut self, now: Instant) -> Vec<T> {
        let mut due = Vec::new();
        while self.queue.front().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, item)) = self.queue.pop_front() {
                due.push(item);
            }
        }
        due
    }
}

/// The appliance's side of frame copies: a frame is shown once and in order, whether its
/// datagram copy or its stream copy comes first.
#[derive(Debug, Default)]
pub struct FrameOrder {
    /// The frame shown last on this connection (0: none yet).
    last_shown: u64,
    /// Frames shown from their datagram copy whose stream copy is still to come, in order.
    shown_early: VecDeque<u64>,
}

/// How many early frames are remembered; a stream that falls further behind than this is not
/// one that a copy could help.
const MAX_EARLY: usize = 64;

impl FrameOrder {
    /// A datagram copy of frame `seq`, written on the stream right after `prev_seq`: true if it
    /// is to be shown now (it is the next frame, and a copy is to be expected on the stream).
    pub fn datagram(&mut self, prev_seq: u64, seq: u64) -> bool {
        if prev_seq == 0 || prev_seq != self.last_shown || self.shown_early.len() >= MAX_EARLY {
            return false;
        }
        self.last_shown = seq;
        self.shown_early.push_back(seq);
        true
    }

    /// Frame `seq` read from the stream: true if it is to be shown (its datagram copy was not).
    pub fn stream(&mut self, seq: u64) -> bool {
        if self.shown_early.front() == Some(&seq) {
            self.shown_early.pop_front();
            return false;
        }
        // Streams never skip a frame, so an unexpected one means the remembered copies are not
        // what the stream holds: forget them rather than skip anything.
        self.shown_early.clear();
        self.last_shown = seq;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn losses_make_a_link_lossy_for_a_while() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut watch = LossWatch::default();
        assert!(!watch.lossy(0, t0));
        // One or two losses (reordering counted as loss) are not enough.
        assert!(!watch.lossy(1, t0 + s(1)));
        assert!(!watch.lossy(2, t0 + s(2)));
        assert!(watch.lossy(3, t0 + s(3)));
        assert!(watch.lossy(3, t0 + s(30)));
        // The first loss is 30 s old: two within the window; two more make it lossy again.
        assert!(!watch.lossy(3, t0 + s(31)));
        assert!(watch.lossy(5, t0 + s(32)));
        // A burst counts each packet.
        let mut burst = LossWatch::default();
        assert!(burst.lossy(5, t0));
        assert!(!burst.lossy(5, t0 + LOSSY_FOR));
    }

    #[test]
    fn copies_go_after_their_delay_in_order() {
        let t0 = Instant::now();
        let mut delayed = Delayed::default();
        delayed.push(t0, 1);
        delayed.push(t0 + Duration::from_millis(1), 2);
        assert_eq!(delayed.next_due(), Some(t0 + COPY_DELAY));
        assert!(delayed.take_due(t0).is_empty());
        assert_eq!(delayed.take_due(t0 + COPY_DELAY), [1]);
        assert_eq!(delayed.take_due(t0 + Duration::from_secs(1)), [2]);
        assert_eq!(delayed.next_due(), None);
    }

    #[test]
    fn a_frame_shows_once_from_whichever_copy_comes_first() {
        let mut order = FrameOrder::default();
        // No frame yet: a copy is never the first (the first frame is a key frame anyway).
        assert!(!order.datagram(0, 1));
        assert!(order.stream(1));
        // Frame 2's stream packet is lost: its copy shows it, and then frame 3's copy.
        assert!(order.datagram(1, 2));
        assert!(order.datagram(2, 3));
        // Their stream copies arrive late and are skipped; frame 4 came only on the stream.
        assert!(!order.stream(2));
        assert!(!order.stream(3));
        assert!(order.stream(4));
        // A copy arriving after its stream copy is not shown again.
        assert!(!order.datagram(3, 4));
    }

    #[test]
    fn a_copy_whose_predecessor_is_missing_waits_for_the_stream() {
        let mut order = FrameOrder::default();
        assert!(order.stream(10));
        // Frame 11 (and its copy) lost: 12's copy may not go ahead of it.
        assert!(!order.datagram(11, 12));
        assert!(order.stream(11));
        assert!(order.stream(12));
    }

    #[test]
    fn frames_of_a_new_session_are_never_skipped() {
        let mut order = FrameOrder::default();
        assert!(order.stream(500));
        assert!(order.datagram(500, 501));
        assert!(!order.stream(501));
        // Another session's frames (a card moved), numbered from its own count, even one the
        // old session used too.
        assert!(order.stream(7));
        assert!(order.stream(501));
        assert!(order.datagram(501, 502));
        assert!(!order.stream(502));
    }
}
