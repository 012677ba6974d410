//! Messages between the compositor thread (calloop) and the transport thread (tokio + quinn).
//!
//! The compositor never touches sockets and the transport never touches Wayland state; these
//! two enums are the whole interface, which is what lets the per-session compositor move into its
//! own process later without changing either side.

use std::sync::Arc;

/// Identifies one appliance connection for its lifetime; a reconnect gets a new id.
pub type ApplianceId = u64;

/// Transport → compositor.
#[derive(Debug)]
pub enum ToCompositor {
    /// An appliance finished Hello/Welcome and now shows this session; it needs a key frame.
    Attached {
        appliance: ApplianceId,
        /// The appliance's screen, as it said in Hello.
        screen: (u32, u32),
        /// The screen's size in millimetres, when known; with `screen` it sets the scale.
        physical_size: Option<wayray_protocol::PhysicalSize>,
        /// The size the session output takes for it (told to the appliance in Welcome).
        output: (u32, u32),
        /// The appliance keyboard's layout, if it sent one.
        keymap: Option<wayray_protocol::Keymap>,
        /// The server's configured scale; `None`: automatic.
        scale: Option<f64>,
        /// Lock the session before the first frame for this appliance (a re-attach under the
        /// `reattach` policy).
        lock: bool,
        /// The appliance's speaker and microphone.
        audio: wayray_protocol::AudioCapabilities,
    },
    /// A packet of the attached appliance's microphone.
    Microphone {
        appliance: ApplianceId,
        packet: wayray_protocol::AudioPacket,
    },
    /// An input event from the attached appliance, already validated.
    Input {
        appliance: ApplianceId,
        event: wayray_protocol::InputMessage,
    },
    /// The attached appliance's screen changed size or physical size; the session output
    /// follows.
    Resize {
        appliance: ApplianceId,
        screen: (u32, u32),
        physical_size: Option<wayray_protocol::PhysicalSize>,
        output: (u32, u32),
    },
    /// The appliance went away (closed, timed out, broke the protocol, or was replaced).
    Detached { appliance: ApplianceId },
    /// The appliance displayed frame `seq`.
    FrameAck { appliance: ApplianceId, seq: u64 },
    /// The bitrate video regions should use on the attached appliance's link.
    LinkQuality {
        appliance: ApplianceId,
        video_bitrate: u64,
    },
    /// The session's link to the daemon is up: the compositor reads it from its event loop.
    Linked(crate::session_link::DaemonSocket),
    /// The daemon is shutting down.
    Shutdown,
}

/// Compositor → transport.
#[derive(Debug)]
pub enum ToTransport {
    /// A framed `DisplayMessage::Frame`, ready for the display stream of `appliance`; written
    /// to the daemon from this buffer, without a copy (see `wayray_protocol::frame_relay`).
    Frame {
        appliance: ApplianceId,
        seq: u64,
        bytes: Vec<u8>,
        /// Microseconds the encode took (for the daemon's `wayray_encode_seconds`).
        encode_us: u32,
    },
    /// A framed `DisplayMessage::Cursor` for the same stream, so it stays in order with frames.
    /// It is not a frame: the appliance does not acknowledge it and it never counts in flight.
    Cursor {
        appliance: ApplianceId,
        bytes: Arc<[u8]>,
    },
    /// An encoded `Datagram::Playback` for `appliance`, sent as one QUIC datagram.
    Audio {
        appliance: ApplianceId,
        bytes: Vec<u8>,
    },
    /// Ask `appliance` to start or stop sending its microphone.
    Microphone { appliance: ApplianceId, open: bool },
}
