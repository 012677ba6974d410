//! The daemon's sessions.sock as the daemon reads it (a `SessionHello`, then `FromSession`
//! messages, through `daemon::wire::MessageReader`: a FrameReader with the default maximum), and
//! the same socket as a session compositor reads it (`ToSession`, in `session_link`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wayray_protocol::sessions::{FromSession, SessionHello, ToSession};
use wayray_protocol::DEFAULT_MAX_MESSAGE_LEN;
use wayray_protocol_fuzz::{hello_then_stream, stream, Errors};

fuzz_target!(|data: &[u8]| {
    hello_then_stream::<SessionHello, FromSession>(data, DEFAULT_MAX_MESSAGE_LEN, |_| {}, |_| {});
    stream::<ToSession>(data, DEFAULT_MAX_MESSAGE_LEN, Errors::Fatal, |_| {});
});
