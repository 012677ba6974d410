//! wrsessd's login socket: `LoginRequest` from a greeter (at most 8 KiB, as wrsessd reads it),
//! `LoginReply` as wrlogin reads it (at most 64 KiB).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wayray_protocol::sessions::{LoginReply, LoginRequest};
use wayray_protocol_fuzz::{stream, Errors};

fuzz_target!(|data: &[u8]| {
    stream::<LoginRequest>(data, 8 * 1024, Errors::Fatal, |_| {});
    stream::<LoginReply>(data, 64 * 1024, Errors::Fatal, |_| {});
});
