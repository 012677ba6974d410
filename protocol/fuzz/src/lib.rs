//! Shared driver for the socket and stream targets: a hostile byte stream is fed to a
//! [`FrameReader`] in fuzzer-chosen chunks, exactly as a server process reads one of its sockets,
//! and every message that decodes is handed to the caller (which runs the receiver's own checks).
//!
//! Adding a target for another parser is one file in `fuzz_targets/` plus a `[[bin]]` entry in
//! Cargo.toml and its name in `scripts/fuzz`, e.g.:
//!
//! ```ignore
//! fuzz_target!(|data: &[u8]| {
//!     wayray_protocol_fuzz::stream::<MyRequest>(data, MY_MAX_LEN, Errors::Fatal, |req| { req.check(); });
//! });
//! ```

use std::fmt::Debug;

use serde::de::DeserializeOwned;
use wayray_protocol::{FrameReader, FramingError};

/// What the receiver does with a message that does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Errors {
    /// The connection is closed at the first bad message (the Unix sockets, the control stream).
    Fatal,
    /// A malformed message is dropped and the stream goes on (the QUIC input stream: its length
    /// prefix keeps it in sync).
    SkipMalformed,
}

/// Reads `data` (first byte: chunking seed; rest: the stream) as a stream of `T` with frames of
/// at most `max_len` bytes, once whole and once in small chunks, asserts both readings agree,
/// and passes each message to `check`. Returns how many messages decoded.
pub fn stream<T: DeserializeOwned + Debug>(
    data: &[u8],
    max_len: u32,
    errors: Errors,
    mut check: impl FnMut(&T),
) -> usize {
    let Some((&seed, stream)) = data.split_first() else {
        return 0;
    };
    let whole = read_all::<T>(stream, max_len, errors, &mut || stream.len().max(1));
    let mut chunks = ChunkSizes(u64::from(seed) | 0x100);
    let chunked = read_all::<T>(stream, max_len, errors, &mut || chunks.next());
    // Compared as text: a NaN in an input event is not equal to itself, but prints the same.
    assert_eq!(
        format!("{whole:?}"),
        format!("{chunked:?}"),
        "how the stream is cut into reads changed what was read"
    );
    for msg in &whole.0 {
        check(msg);
    }
    whole.0.len()
}

/// A socket whose first message is a hello of type `H`, then messages of type `M` (the daemon's
/// sessions and launcher sockets). The hello's frame is cut off the stream first, so the fuzzer
/// reaches the message parser without having to build a valid hello.
pub fn hello_then_stream<H, M>(
    data: &[u8],
    max_len: u32,
    mut check_hello: impl FnMut(&H),
    check: impl FnMut(&M),
) where
    H: DeserializeOwned + Debug,
    M: DeserializeOwned + Debug,
{
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let cut = usize::from(split).min(rest.len());
    let (hello, messages) = rest.split_at(cut);
    let mut r = FrameReader::new(max_len);
    r.push(hello);
    if let Ok(Some(h)) = r.next::<H>() {
        check_hello(&h);
    }
    stream::<M>(messages, max_len, Errors::Fatal, check);
}

/// The messages read, the error that ended the stream (or the malformed ones skipped), and
/// whether the stream ended on a message boundary.
type Read<T> = (Vec<T>, Option<String>, bool);

fn read_all<T: DeserializeOwned>(
    stream: &[u8],
    max_len: u32,
    errors: Errors,
    chunk: &mut dyn FnMut() -> usize,
) -> Read<T> {
    let mut r = FrameReader::new(max_len);
    let mut msgs = Vec::new();
    let mut skipped = Vec::new();
    let mut pos = 0;
    while pos < stream.len() {
        let end = (pos + chunk().max(1)).min(stream.len());
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
                Err(FramingError::Malformed(why)) if errors == Errors::SkipMalformed => {
                    skipped.push(why)
                }
                Err(e) => return (msgs, Some(format!("{e} after skipping {skipped:?}")), false),
            }
        }
        assert!(r.buffered() <= pos);
    }
    let clean = r.finish().is_ok();
    (
        msgs,
        (!skipped.is_empty()).then(|| format!("{skipped:?}")),
        clean,
    )
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
