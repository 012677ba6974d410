//! How much one appliance's link may carry: the configured bandwidth cap as a token bucket that
//! delays frames (the session then renders less often and merges damage, so changing regions
//! update at a lower rate while static text stays exact), and the video bitrate the link can
//! afford, from quinn's RTT and congestion window.
//!
//! Pure state: the connection task feeds it times and samples, so the rules are unit-tested.

use std::time::{Duration, Instant};

/// Share of the link that video may take: the rest is for lossless tiles (text, refreshes of
/// video regions that stopped) and the occasional key frame.
const VIDEO_SHARE: f64 = 0.5;
/// Video bitrate bounds in bit/s: below the floor H.264 at desktop sizes is mush, above the
/// ceiling more bits buy nothing visible for a region of a desktop.
const VIDEO_MIN_BPS: u64 = 250_000;
const VIDEO_MAX_BPS: u64 = 20_000_000;
/// Relative change of the video bitrate below which the encoder is left alone.
const VIDEO_HYSTERESIS: f64 = 0.2;

/// One reading of quinn's path state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkSample {
    pub rtt: Duration,
    /// Congestion window in bytes: what quinn lets be in flight per RTT.
    pub cwnd: u64,
}

impl LinkSample {
    /// What the congestion controller currently allows, in bit/s.
    pub fn estimate_bps(&self) -> u64 {
        let rtt = self.rtt.max(Duration::from_millis(1)).as_secs_f64();
        (self.cwnd as f64 * 8.0 / rtt) as u64
    }
}

#[derive(Debug)]
pub struct Governor {
    /// Cap in bytes per second; `None`: no cap.
    rate: Option<f64>,
    /// Bytes that may go out now; negative after a frame larger than the balance (a key frame
    /// is sent whole and paid off afterwards rather than held back).
    tokens: f64,
    /// Most tokens saved up while idle: the next burst of frames after a quiet spell.
    burst: f64,
    last: Instant,
}

impl Governor {
    /// `limit_bps`: the appliance's bandwidth cap in bit/s, `None` or 0 for none.
    pub fn new(limit_bps: Option<u64>, now: Instant) -> Self {
        let rate = limit_bps.filter(|&b| b > 0).map(|b| b as f64 / 8.0);
        // A tenth of a second of the cap, but at least one typical text update.
        let burst = rate.map_or(0.0, |r| (r / 10.0).max(16.0 * 1024.0));
        Self {
            rate,
            tokens: burst,
            burst,
            last: now,
        }
    }

    pub fn limit_bps(&self) -> Option<u64> {
        self.rate.map(|r| (r * 8.0) as u64)
    }

    fn refill(&mut self, now: Instant) {
        if let Some(rate) = self.rate {
            let dt = now.saturating_duration_since(self.last).as_secs_f64();
            self.tokens = (self.tokens + dt * rate).min(self.burst);
        }
        self.last = now;
    }

    /// How long the next frame must wait before it may be written.
    pub fn delay(&mut self, now: Instant) -> Duration {
        self.refill(now);
        match self.rate {
            Some(rate) if self.tokens < 0.0 => Duration::from_secs_f64(-self.tokens / rate),
            _ => Duration::ZERO,
        }
    }

    /// Records a frame of `bytes` written at `now`.
    pub fn spend(&mut self, bytes: usize, now: Instant) {
        self.refill(now);
        if self.rate.is_some() {
            self.tokens -= bytes as f64;
        }
    }

    /// The video bitrate for this link, in bit/s: a share of the smaller of the cap and what
    /// the congestion controller allows.
    pub fn video_bitrate(&self, sample: LinkSample) -> u64 {
        let link = match self.limit_bps() {
            Some(cap) => cap.min(sample.estimate_bps()),
            None => sample.estimate_bps(),
        };
        ((link as f64 * VIDEO_SHARE) as u64).clamp(VIDEO_MIN_BPS, VIDEO_MAX_BPS)
    }
}

/// Whether the video bitrate moved enough from `old` to be worth reconfiguring the encoder: its
/// rate control should not be disturbed by every wobble of the RTT.
pub fn significant_change(old: u64, new: u64) -> bool {
    (new as f64 - old as f64).abs() > old as f64 * VIDEO_HYSTERESIS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_cap_never_delays() {
        let t = Instant::now();
        let mut g = Governor::new(None, t);
        g.spend(100_000_000, t);
        assert_eq!(g.delay(t), Duration::ZERO);
        assert_eq!(Governor::new(Some(0), t).limit_bps(), None);
    }

    #[test]
    fn the_cap_spaces_frames_by_their_size() {
        let t = Instant::now();
        // 800 kbit/s = 100 kB/s; the burst allowance is 16 KiB.
        let mut g = Governor::new(Some(800_000), t);
        assert_eq!(g.delay(t), Duration::ZERO);
        g.spend(16 * 1024 + 50_000, t);
        // 50 kB of debt at 100 kB/s.
        let d = g.delay(t);
        assert!((d.as_secs_f64() - 0.5).abs() < 1e-6, "{d:?}");
        let later = t + Duration::from_millis(250);
        let d = g.delay(later);
        assert!((d.as_secs_f64() - 0.25).abs() < 1e-6, "{d:?}");
        assert_eq!(g.delay(t + Duration::from_millis(500)), Duration::ZERO);
        // Idle time saves up at most the burst, so a long pause does not allow a flood.
        let much_later = t + Duration::from_secs(60);
        g.spend(16 * 1024 + 10_000, much_later);
        assert!(g.delay(much_later) > Duration::from_millis(90));
    }

    #[test]
    fn video_bitrate_follows_the_smaller_of_cap_and_link() {
        let t = Instant::now();
        let fast = LinkSample {
            rtt: Duration::from_millis(1),
            cwnd: 1_000_000,
        };
        // 1 MB per 20 ms = 400 Mbit/s.
        let wan = LinkSample {
            rtt: Duration::from_millis(20),
            cwnd: 1_000_000,
        };
        // 12 kB per 100 ms ≈ 1 Mbit/s.
        let slow = LinkSample {
            rtt: Duration::from_millis(100),
            cwnd: 12_000,
        };
        let free = Governor::new(None, t);
        assert_eq!(free.video_bitrate(fast), VIDEO_MAX_BPS);
        assert_eq!(free.video_bitrate(wan), VIDEO_MAX_BPS);
        assert_eq!(free.video_bitrate(slow), 480_000);
        let capped = Governor::new(Some(2_000_000), t);
        assert_eq!(capped.video_bitrate(fast), 1_000_000);
        assert_eq!(capped.video_bitrate(slow), 480_000);
        let tiny = Governor::new(Some(100_000), t);
        assert_eq!(tiny.video_bitrate(fast), VIDEO_MIN_BPS);
    }

    #[test]
    fn small_bitrate_wobbles_are_ignored() {
        assert!(!significant_change(4_000_000, 4_400_000));
        assert!(!significant_change(4_000_000, 3_300_000));
        assert!(significant_change(4_000_000, 2_000_000));
        assert!(significant_change(4_000_000, 5_000_000));
    }
}
