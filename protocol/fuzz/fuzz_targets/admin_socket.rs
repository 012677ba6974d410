//! The daemon's admin.sock: `AdminRequest` as the daemon reads it, `AdminReply` as wradm reads
//! it (at most 16 MiB).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wayray_protocol::sessions::{AdminReply, AdminRequest};
use wayray_protocol::DEFAULT_MAX_MESSAGE_LEN;
use wayray_protocol_fuzz::{stream, Errors};

fuzz_target!(|data: &[u8]| {
    stream::<AdminRequest>(data, DEFAULT_MAX_MESSAGE_LEN, Errors::Fatal, |_| {});
    stream::<AdminReply>(data, 16 << 20, Errors::Fatal, |_| {});
});
