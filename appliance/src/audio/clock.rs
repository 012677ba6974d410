//! Session clock ↔ local clock. Frames and audio packets carry the session's CLOCK_MONOTONIC
//! (`time_us`); the appliance learns how it maps onto its own from what it sees: when a frame
//! stamped T is on screen at local time L, the picture runs at offset L − T. Sound is scheduled
//! at the same offset (lip sync), and the microphone stamps its packets by the inverse mapping.
//!
//! The offset is the minimum over a sliding window (the fastest path a frame took; slower frames
//! were held up by the network or the decoder, not by the clocks) plus a small margin.

use std::collections::VecDeque;
use std::sync::Mutex;

/// How far back the minimum looks: long enough to see a fast frame between slow ones, short
/// enough to follow a change of route.
pub const WINDOW_US: u64 = 5_000_000;
/// Added to the video path's minimum offset: frames rarely take the fastest path exactly.
pub const VIDEO_MARGIN_US: i64 = 2_000;

/// Local CLOCK_MONOTONIC in µs: the clock the session stamps with, so on one host (tests, the
/// bench) local − session time is a real transit time.
pub fn now_us() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (now.tv_sec as u64)
        .saturating_mul(1_000_000)
        .saturating_add(now.tv_nsec as u64 / 1_000)
}

/// The minimum of (local − session) offsets seen in the last [`WINDOW_US`].
#[derive(Debug, Default)]
pub struct MinWindow {
    /// (local µs, offset), offsets increasing from front to back (a monotone queue: an entry
    /// with a later time and a smaller offset makes the earlier ones useless).
    entries: VecDeque<(u64, i64)>,
}

impl MinWindow {
    pub fn push(&mut self, local_us: u64, offset: i64) {
        while self.entries.back().is_some_and(|&(_, o)| o >= offset) {
            self.entries.pop_back();
        }
        self.entries.push_back((local_us, offset));
        self.expire(local_us);
    }

    fn expire(&mut self, now_us: u64) {
        while self
            .entries
            .front()
            .is_some_and(|&(t, _)| now_us.saturating_sub(t) > WINDOW_US)
            && self.entries.len() > 1
        {
            self.entries.pop_front();
        }
    }

    pub fn min(&self) -> Option<i64> {
        self.entries.front().map(|&(_, o)| o)
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

fn offset(local_us: u64, session_us: u64) -> i64 {
    (local_us as i64).wrapping_sub(session_us as i64)
}

#[derive(Debug, Default)]
struct Inner {
    video: MinWindow,
    audio: MinWindow,
}

/// The mapping, shared by the connection task (frames), the playback thread (packets) and the
/// microphone thread (stamping).
#[derive(Debug, Default)]
pub struct ClockMap {
    inner: Mutex<Inner>,
}

impl ClockMap {
    /// A frame stamped `session_us` went on screen at `local_us`. Frames without a stamp (0,
    /// from a server that does not stamp) teach nothing.
    pub fn frame_presented(&self, session_us: u64, local_us: u64) {
        if session_us == 0 {
            return;
        }
        if let Ok(mut inner) = self.inner.lock() {
            inner.video.push(local_us, offset(local_us, session_us));
        }
    }

    /// An audio packet stamped `session_us` arrived at `local_us`.
    pub fn packet_arrived(&self, session_us: u64, local_us: u64) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.audio.push(local_us, offset(local_us, session_us));
        }
    }

    /// local − session time at which the picture is shown (with the margin), once a frame was.
    pub fn video_offset(&self) -> Option<i64> {
        let inner = self.inner.lock().ok()?;
        inner.video.min().map(|o| o + VIDEO_MARGIN_US)
    }

    /// The session clock at local time `local_us`: by the frames if any were shown, else by the
    /// audio packets' arrival; `None` before either.
    pub fn session_from_local(&self, local_us: u64) -> Option<u64> {
        let inner = self.inner.lock().ok()?;
        let offset = inner.video.min().or(inner.audio.min())?;
        Some((local_us as i64).wrapping_sub(offset).max(0) as u64)
    }

    /// A new connection (maybe another server, another clock): forget everything.
    pub fn reset(&self) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.video.clear();
            inner.audio.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimum_over_the_window() {
        let mut w = MinWindow::default();
        assert_eq!(w.min(), None);
        w.push(0, 30);
        w.push(100, 10);
        w.push(200, 20);
        assert_eq!(w.min(), Some(10));
        // 10 falls out of the window; 20 is the minimum of what is left.
        w.push(WINDOW_US + 150, 40);
        assert_eq!(w.min(), Some(20));
        w.push(3 * WINDOW_US, 50);
        assert_eq!(w.min(), Some(50));
    }

    #[test]
    fn maps_both_ways_preferring_frames() {
        let map = ClockMap::default();
        assert_eq!(map.session_from_local(1_000), None);
        assert_eq!(map.video_offset(), None);
        // Audio arrives 5 ms after it was stamped.
        map.packet_arrived(1_000_000, 1_005_000);
        assert_eq!(map.session_from_local(2_005_000), Some(2_000_000));
        // Frames shown 12 ms and 8 ms after stamping: the picture's offset is the faster one.
        map.frame_presented(1_000_000, 1_012_000);
        map.frame_presented(1_016_000, 1_024_000);
        map.frame_presented(0, 5);
        assert_eq!(map.video_offset(), Some(8_000 + VIDEO_MARGIN_US));
        assert_eq!(map.session_from_local(2_008_000), Some(2_000_000));
        map.reset();
        assert_eq!(map.session_from_local(1), None);
    }
}
