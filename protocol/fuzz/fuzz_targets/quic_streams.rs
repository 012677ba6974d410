//! The QUIC streams' framing as each end reads it: the server's control stream
//! (`ClientControl`, closed at the first bad message), its input stream (`InputMessage`: a
//! malformed event is dropped and the stream goes on; each event then passes
//! `InputMessage::validate`, as the server checks it before a session sees it), and the
//! appliance's control stream (`ServerControl`), and the audio datagrams either end reads
//! (`Datagram::decode`, one datagram per input).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wayray_protocol::{ClientControl, Datagram, InputMessage, ServerControl, DEFAULT_MAX_MESSAGE_LEN};
use wayray_protocol_fuzz::{stream, Errors};

fuzz_target!(|data: &[u8]| {
    stream::<ClientControl>(data, DEFAULT_MAX_MESSAGE_LEN, Errors::Fatal, |_| {});
    stream::<InputMessage>(data, DEFAULT_MAX_MESSAGE_LEN, Errors::SkipMalformed, |e| {
        let _ = e.validate(1280, 800);
    });
    stream::<ServerControl>(data, DEFAULT_MAX_MESSAGE_LEN, Errors::Fatal, |_| {});
    if let Ok(datagram) = Datagram::decode(data) {
        // What decodes must encode again, within the size a QUIC datagram takes.
        let bytes = datagram.encode().expect("a decoded datagram encodes");
        assert!(bytes.len() <= data.len());
    }
});
