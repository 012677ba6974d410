//! USB forwarding's hostile inputs: the filter text a server config or a `UsbPolicy` carries
//! (parsed, shown and parsed again to the same rules), and USB/IP bytes from either side of a
//! device stream, pushed whole and in fuzzer-chosen chunks: how a stream is cut into reads must
//! never change which commands or replies (or which error) come out.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wayray_protocol::usb::usbip::{CmdSubmit, Command, CommandDecoder, Direction, ReplyDecoder};
use wayray_protocol::usb::UsbFilter;

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    if let Ok(text) = std::str::from_utf8(stream) {
        if let Ok(filter) = UsbFilter::parse(text) {
            assert_eq!(UsbFilter::parse(&filter.to_string()), Ok(filter));
        }
    }
    let max = [64, 4096, 1 << 20][usize::from(seed % 3)];
    assert_eq!(
        commands(stream, max, stream.len().max(1)),
        commands(stream, max, usize::from(seed >> 2) + 1)
    );
    assert_eq!(
        replies(stream, max, stream.len().max(1)),
        replies(stream, max, usize::from(seed >> 2) + 1)
    );
});

fn commands(stream: &[u8], max: u32, chunk: usize) -> (Vec<Command>, Option<String>) {
    let mut d = CommandDecoder::new(max);
    let mut out = Vec::new();
    for piece in stream.chunks(chunk) {
        d.push(piece);
        loop {
            match d.next_command() {
                Ok(Some(c)) => out.push(c),
                Ok(None) => break,
                Err(e) => return (out, Some(e.to_string())),
            }
        }
    }
    (out, None)
}

fn replies(stream: &[u8], max: u32, chunk: usize) -> (usize, Option<String>) {
    let mut d = ReplyDecoder::new(max);
    // URBs 0..8 in flight, even ones IN (their replies carry data).
    for seqnum in 0..8 {
        let submit = CmdSubmit {
            seqnum,
            devid: 0,
            direction: if seqnum % 2 == 0 {
                Direction::In
            } else {
                Direction::Out
            },
            ep: 1,
            transfer_flags: 0,
            transfer_buffer_length: 512,
            start_frame: 0,
            number_of_packets: 0,
            interval: 0,
            setup: [0; 8],
            data: Vec::new(),
            iso: Vec::new(),
        };
        let _ = d.sent(&Command::Submit(submit));
    }
    let mut count = 0;
    for piece in stream.chunks(chunk) {
        d.push(piece);
        loop {
            match d.next_reply() {
                Ok(Some(_)) => count += 1,
                Ok(None) => break,
                Err(e) => return (count, Some(e.to_string())),
            }
        }
    }
    (count, None)
}
