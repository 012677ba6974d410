//! Hostile byte streams → FrameReader, pushed in fuzzer-chosen chunk sizes. How a stream is cut
//! into reads must never change which messages (or which error) come out.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use wayray_protocol::codec::Decoder;
use wayray_protocol::{ClientControl, CursorUpdate, DisplayMessage, FrameReader};

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let max_len =
        [16, 300, 1 << 16, wayray_protocol::DEFAULT_MAX_MESSAGE_LEN][usize::from(seed & 3)];

    let whole = read_all::<ClientControl>(stream, max_len, &mut |_| stream.len().max(1));
    let mut chunks = ChunkSizes(u64::from(seed) | 0x100);
    let chunked = read_all::<ClientControl>(stream, max_len, &mut |_| chunks.next());
    assert_eq!(whole, chunked);

    let whole = read_all::<DisplayMessage>(stream, max_len, &mut |_| stream.len().max(1));
    let mut chunks = ChunkSizes(u64::from(seed) | 0x200);
    let chunked = read_all::<DisplayMessage>(stream, max_len, &mut |_| chunks.next());
    assert_eq!(whole, chunked);

    let mut dec = Decoder::new();
    for msg in whole.0 {
        match msg {
            DisplayMessage::Frame(u) => {
                let _ = dec.apply(&u);
            }
            DisplayMessage::Cursor(CursorUpdate::Image(image)) => {
                let _ = image.validate();
            }
            DisplayMessage::Cursor(CursorUpdate::Hidden) => {}
        }
    }
});

/// Feeds `stream` in chunks, pops every message; stops at the first error, as the connection
/// would be closed. Returns the messages, the error (as text) and whether `finish` was clean.
fn read_all<T: DeserializeOwned>(
    stream: &[u8],
    max_len: u32,
    chunk: &mut dyn FnMut(usize) -> usize,
) -> (Vec<T>, Option<String>, bool) {
    let mut r = FrameReader::new(max_len);
    let mut msgs = Vec::new();
    let mut pos = 0;
    while pos < stream.len() {
        let end = (pos + chunk(pos).max(1)).min(stream.len());
        r.push(&stream[pos..end]);
        pos = end;
        loop {
            match r.next::<T>() {
                Ok(Some(m)) => msgs.push(m),
                Ok(None) => {
                    assert!(
                        r.wanted() > 0,
                        "reader wants nothing but returned no message"
                    );
                    break;
                }
                Err(e) => return (msgs, Some(e.to_string()), false),
            }
        }
        assert!(r.buffered() <= pos);
    }
    let clean = r.finish().is_ok();
    (msgs, None, clean)
}

/// Chunk sizes 1..=64 and the occasional large one, from a xorshift of the seed byte.
struct ChunkSizes(u64);

impl ChunkSizes {
    fn next(&mut self) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        if self.0 & 7 == 0 {
            (self.0 >> 8) as usize % 4096 + 1
        } else {
            (self.0 >> 8) as usize % 64 + 1
        }
    }
}
