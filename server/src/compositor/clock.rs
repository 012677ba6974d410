//! The session clock: what frames ([`wayray_protocol::FrameUpdate::time_us`]) and audio packets
//! ([`wayray_protocol::AudioPacket::time_us`]) are stamped with, so the appliance can play a
//! sound with the picture it belongs to.

/// Microseconds of CLOCK_MONOTONIC: steady (no jumps when the wall clock is set) and the same
/// for every thread of the session, the render loop and the audio thread alike.
pub fn session_us() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (now.tv_sec as u64)
        .saturating_mul(1_000_000)
        .saturating_add(now.tv_nsec as u64 / 1_000)
}
