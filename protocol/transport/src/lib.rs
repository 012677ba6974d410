//! The I/O side of WayRay's QUIC links, shared by the daemon (`wrsrvd`) and the appliance
//! (`wrclient`). `wayray-protocol` stays sans-I/O; what needs a socket, a clock or a runtime
//! and is the same on both ends lives here.

pub mod timer;

pub use timer::{sleep_until, PreciseRuntime};
