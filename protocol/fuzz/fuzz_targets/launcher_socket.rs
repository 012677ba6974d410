//! The daemon's launcher.sock as the daemon reads it (a `LauncherHello`, then `FromLauncher`),
//! and as wrsessd reads the daemon's side (`ToLauncher`, at most 64 KiB a message).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wayray_protocol::sessions::{FromLauncher, LauncherHello, ToLauncher};
use wayray_protocol::DEFAULT_MAX_MESSAGE_LEN;
use wayray_protocol_fuzz::{hello_then_stream, stream, Errors};

fuzz_target!(|data: &[u8]| {
    hello_then_stream::<LauncherHello, FromLauncher>(data, DEFAULT_MAX_MESSAGE_LEN, |_| {}, |_| {});
    stream::<ToLauncher>(data, 64 * 1024, Errors::Fatal, |_| {});
});
