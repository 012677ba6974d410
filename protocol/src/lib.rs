//! WayRay's wire protocol: the messages appliance and server exchange, their framing, and the
//! frame codec.
//!
//! Everything here is sans-I/O in the spirit of `quinn-proto`: bytes and sizes go in as
//! arguments, decisions and bytes come out. The server and the appliance wrap it with QUIC
//! streams, so all of it is unit-tested and fuzzed without sockets.

pub mod audio;
pub mod card_proof;
pub mod codec;
pub mod cursor;
pub mod frame_relay;
pub mod framing;
pub mod identity;
pub mod input;
pub mod messages;
pub mod pcsc;
pub mod redundancy;
pub mod sessions;
pub mod usb;

pub use audio::{AudioCapabilities, AudioPacket, Datagram};
pub use codec::{
    CopyRect, DecodeError, Decoder, EncodeError, Encoder, EncoderConfig, FrameUpdate, Rect, Tile,
    TileData, VideoUpdate,
};
pub use cursor::{CursorImage, CursorUpdate};
pub use framing::{FrameReader, FramingError};
pub use input::{AxisSource, AxisValue, InputMessage, Keymap};
pub use messages::*;

/// ALPN identifier for QUIC connections; a peer speaking anything else is refused in the handshake.
pub const ALPN: &[u8] = b"wayray/1";

/// UDP port a server listens on and an appliance dials when none is given.
pub const DEFAULT_PORT: u16 = 7390;

/// Major protocol version; a peer with a different major version gets `Bye { VersionMismatch }`.
/// v4: the screen's physical size in `Capabilities` and `ScreenChanged`. v5: token proofs,
/// notices (why no desktop is shown), appliance certificates. v6: audio (capabilities, datagrams,
/// the microphone request, frame times for lip sync). v7: pools (the pool's servers in Welcome,
/// redirects, how an appliance arrived, the failed-server notice). v8: cheaper frames and typing
/// over lossy links (issue 20: what the display stream and datagrams carry for it). v9: devices
/// follow the user (USB streams, the USB policy, PC/SC streams).
pub const PROTOCOL_VERSION: u16 = 9;

/// Largest message either side accepts unless the Hello/Welcome exchange agreed on a smaller one.
/// A key frame of 1920×1080 random noise is ~8 MiB after (failed) compression, so 64 MiB leaves
/// room for 4K while still bounding what a hostile peer can make us allocate.
pub const DEFAULT_MAX_MESSAGE_LEN: u32 = 64 * 1024 * 1024;

/// Pixels travel as XRGB8888 little-endian (bytes B, G, R, X), the format Pixman renders and
/// DRM dumb buffers scan out, so neither side converts.
pub const BYTES_PER_PIXEL: usize = 4;

/// Digest of a framebuffer, used by tests and logs to prove that the appliance shows exactly what
/// the server rendered for a given frame sequence number.
pub fn frame_digest(pixels: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(pixels)
}
