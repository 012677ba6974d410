//! The I/O side of WayRay's QUIC links, shared by the daemon (`wrsrvd`) and the appliance
//! (`wrclient`). `wayray-protocol` stays sans-I/O; what needs a socket, a clock or a runtime
//! and is the same on both ends lives here.

pub mod timer;

pub use timer::{sleep_until, PreciseRuntime};

use std::time::Duration;

/// Packets the server may take before it must acknowledge (QUIC ACK frequency, which both
/// sides' quinn speak). Bulk uploads (a forwarded USB stick) would otherwise bring an ACK every
/// second packet, and on a thin client's CPU receiving and decrypting those is a good part of
/// the cost of sending: measured in QEMU, reading a forwarded stick went from 4.7 to 5.5 MB/s.
pub const UPLOAD_ACK_ELICITING_THRESHOLD: u32 = 10;
/// The longest the server delays an acknowledgement under the threshold: short, so a lost
/// packet is still noticed within a few milliseconds on a LAN.
pub const UPLOAD_MAX_ACK_DELAY: Duration = Duration::from_millis(5);

/// What the appliance asks of the server's acknowledgements of what it sends.
pub fn upload_ack_frequency() -> quinn::AckFrequencyConfig {
    let mut config = quinn::AckFrequencyConfig::default();
    config
        .ack_eliciting_threshold(UPLOAD_ACK_ELICITING_THRESHOLD.into())
        .max_ack_delay(Some(UPLOAD_MAX_ACK_DELAY));
    config
}
