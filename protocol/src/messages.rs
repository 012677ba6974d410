//! Wire messages, one enum per stream and direction, so a message on the wrong stream is a
//! decode error rather than something a handler has to remember to reject.

use serde::{Deserialize, Serialize};

use crate::codec::FrameUpdate;

/// First byte written on every unidirectional stream, telling the receiver what the stream carries.
/// (The control stream is the first bidirectional stream the appliance opens, so it needs no tag.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum StreamKind {
    /// Server → appliance: [`DisplayMessage`]s.
    Display = 1,
    /// Appliance → server: input events (issue: interactive session).
    Input = 2,
    /// Audio frames, either direction.
    Audio = 3,
    /// One forwarded USB device (protocol v9): a *bidirectional* stream the appliance opens per
    /// device. After this tag byte: one length-prefixed [`crate::usb::UsbDeviceOpen`] from the
    /// appliance, one length-prefixed [`crate::usb::UsbDeviceReply`] from the server, then
    /// USB/IP `CMD_SUBMIT`/`RET_SUBMIT`/`CMD_UNLINK`/`RET_UNLINK` bytes unchanged, both ways, until
    /// either side finishes the stream (unplug, policy change, detach).
    Usb = 4,
    /// One PC/SC client connection of the session (protocol v9): a *bidirectional* stream the
    /// server opens to the attached appliance, whose requests reach the appliance's pcscd. After
    /// this tag byte: length-prefixed [`crate::pcsc::PcscRequest`]s from the server, each answered
    /// by one length-prefixed [`crate::pcsc::PcscReply`] (see [`crate::pcsc`]).
    Pcsc = 5,
}

impl StreamKind {
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Self::Display),
            2 => Some(Self::Input),
            3 => Some(Self::Audio),
            4 => Some(Self::Usb),
            5 => Some(Self::Pcsc),
            _ => None,
        }
    }
}

/// Frame encodings an appliance can decode; the server only uses what both sides list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Encoding {
    /// Codec v1: tiles of Solid / Zstd / ZstdXor.
    TilesV1,
}

/// A monitor's visible area in millimetres, as its EDID tells the kernel (DRM connector
/// `mm_width`/`mm_height`). The server derives the screen's pixel density from it and picks the
/// session output's scale, so a 27" 4K monitor gets a readable desktop instead of tiny text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhysicalSize {
    pub width_mm: u32,
    pub height_mm: u32,
}

impl PhysicalSize {
    /// `None` for a size the kernel reports as unknown (0 on either side: headless outputs,
    /// projectors, EDIDs without a size).
    pub fn known(width_mm: u32, height_mm: u32) -> Option<Self> {
        (width_mm > 0 && height_mm > 0).then_some(Self {
            width_mm,
            height_mm,
        })
    }
}

/// What the appliance can do, sent once in [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// The screen's size in pixels, so the server can size the session output to it.
    pub screen_width: u32,
    pub screen_height: u32,
    /// The screen's physical size; `None` when unknown (headless, a projector, no EDID). The
    /// session's scale follows it (protocol v4).
    pub physical_size: Option<PhysicalSize>,
    pub encodings: Vec<Encoding>,
    /// Largest message the appliance is willing to receive.
    pub max_message_len: u32,
    /// Whether it has a speaker and a microphone (protocol v6).
    pub audio: crate::AudioCapabilities,
}

/// Appliance → server, first message on the control stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol_version: u16,
    /// Free-form firmware identification for logs and `wradm` (e.g. "wrclient 0.1.0").
    pub client_name: String,
    pub capabilities: Capabilities,
    /// The appliance keyboard's layout; `None` keeps the server's default (US). Later changes
    /// arrive as [`crate::InputMessage::Keymap`].
    pub keymap: Option<crate::Keymap>,
    /// Who is at this appliance: `<type>.<id>` of the smart card in its reader (e.g.
    /// `atr3b8f8001.04a1b2c3`), or `pseudo.<id>` when there is no card (`<id>` from its
    /// certificate, see [`crate::identity`]; the server replaces any other pseudo-token with the
    /// one of the certificate the appliance authenticated with). The server shows the session
    /// bound to it, or a greeter. `None`: the appliance requires a card and has none,
    /// so no session is shown (it says "insert your card" itself).
    pub token: Option<String>,
    /// How the appliance came to this server (protocol v7): by a [`Redirect`] from another
    /// server of the pool, or because the server it was connected to stopped answering.
    pub arrival: Arrival,
}

/// Why an appliance connects to the server it connects to (see [`Hello::arrival`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Arrival {
    /// Its configured server, or a reconnect to the server it had.
    #[default]
    Direct,
    /// Sent here by another server of the pool ([`ServerControl::Redirect`]); `hops` counts the
    /// redirects in a row without a session, so two servers with stale views cannot bounce an
    /// appliance between them forever.
    Redirected { from: String, hops: u8 },
    /// The pool server named `server` stopped answering while this appliance was connected to
    /// it (`showed_session`: it showed a session from it). A session of its token on that
    /// server is lost; the new server says so instead of sending the appliance back.
    ServerLost {
        server: String,
        showed_session: bool,
    },
}

/// One server of a pool, as an appliance needs it to connect there: its QUIC address and the
/// fingerprint of its key, vouched for by the server that names it over a connection the
/// appliance already trusts (so a pool needs no certificate authority).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolServer {
    /// The server's name in the pool (unique; `wradm server drain NAME` uses it).
    pub name: String,
    /// `HOST:PORT` of its QUIC endpoint.
    pub address: String,
    /// SHA-256 of its certificate's SubjectPublicKeyInfo, 64 lowercase hex digits (see
    /// [`crate::identity`]).
    pub fingerprint: String,
}

/// Server → appliance: the token's session (or the place for its new one) is on another server
/// of the pool; connect there, trusting exactly `server.fingerprint` (protocol v7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redirect {
    pub server: PoolServer,
    /// For logs and the status line while the appliance reconnects.
    pub reason: RedirectReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RedirectReason {
    /// The token's session runs there.
    SessionThere,
    /// The token has no session; the pool placed its new one there.
    Placed,
}

impl std::fmt::Display for RedirectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::SessionThere => "the session runs there",
            Self::Placed => "a new session is placed there",
        })
    }
}

impl Hello {
    /// The protocol version a `ClientControl::Hello` body announces, read without decoding the
    /// rest. Another version may lay its Hello out differently (v4 added the physical size), and
    /// its appliance must still hear `VersionMismatch` rather than a decode error. `None` when
    /// the body is not a Hello.
    pub fn peek_version(body: &[u8]) -> Option<u16> {
        // Postcard: the enum variant index (Hello is 0) and then the first field, as varints.
        let (variant, rest) = postcard::take_from_bytes::<u32>(body).ok()?;
        if variant != 0 {
            return None;
        }
        postcard::take_from_bytes::<u16>(rest)
            .ok()
            .map(|(version, _)| version)
    }
}

/// Server → appliance answer to [`Hello`]: what was agreed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    pub protocol_version: u16,
    pub server_name: String,
    /// Session output size; frames arrive at this size until a later FrameUpdate says otherwise.
    pub output_width: u32,
    pub output_height: u32,
    pub encoding: Encoding,
    /// Largest message the server will send or accept on this connection.
    pub max_message_len: u32,
    /// What of the appliance's audio the server uses: `speaker`, the session's sound arrives as
    /// [`crate::Datagram::Playback`]; `microphone`, [`ServerControl::Microphone`] may ask for it.
    pub audio: crate::AudioCapabilities,
    /// The servers of this server's pool, itself included (empty for a server on its own), so
    /// an appliance whose server stops answering can reconnect to another one (protocol v7).
    pub pool: Vec<PoolServer>,
}

/// Why a side is closing the connection; shown to the user on the appliance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ByeReason {
    /// Orderly shutdown of the sending side.
    Shutdown,
    /// The peers share no protocol major version.
    VersionMismatch { server: u16, client: u16 },
    /// No common frame encoding.
    NoCommonEncoding,
    /// Another appliance took over this session.
    Replaced,
    /// The peer broke the protocol; the text says how.
    ProtocolError(String),
    /// An administrator revoked this appliance (`wradm appliances revoke`): it gets no session
    /// until it is approved again.
    Revoked,
}

impl std::fmt::Display for ByeReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ByeReason::Shutdown => write!(f, "peer shut down"),
            ByeReason::VersionMismatch { server, client } => write!(
                f,
                "protocol version mismatch: server speaks v{server}, appliance v{client}"
            ),
            ByeReason::NoCommonEncoding => write!(f, "no frame encoding in common"),
            ByeReason::Replaced => write!(f, "session was taken over by another appliance"),
            ByeReason::ProtocolError(why) => write!(f, "protocol error: {why}"),
            ByeReason::Revoked => write!(f, "this appliance was revoked by an administrator"),
        }
    }
}

/// Appliance → server on the control stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientControl {
    Hello(Hello),
    /// The frame with this sequence number is decoded and handed to the display; it and all
    /// earlier frames no longer count as in flight.
    FrameAck {
        seq: u64,
    },
    Bye(ByeReason),
    /// A card went in or out: the appliance now presents this token (see [`Hello::token`]).
    /// The server detaches the current session and attaches the token's session at once (a
    /// card token's once its [`ClientControl::TokenProof`] arrived).
    TokenChanged {
        token: Option<String>,
    },
    /// The card behind a card token proves it holds its key (see [`crate::card_proof`]). Sent
    /// after the handshake (never as 0-RTT data) for the Hello's card token and after every
    /// `TokenChanged` to one; `proof: None` says the card cannot prove anything (a memory card,
    /// no PIV applet, no key in slot 9E), which the server's policy then judges. `counter`
    /// starts at 1 and grows with every proof on the connection.
    TokenProof {
        token: String,
        counter: u64,
        proof: Option<crate::card_proof::CardProof>,
    },
    /// The appliance's screen changed size (a monitor plugged in or swapped, another mode picked):
    /// the server resizes the session output to it and the next frame arrives at the new size.
    /// A monitor of the same mode but another physical size counts as a change too: the
    /// session's scale follows it.
    ScreenChanged {
        width: u32,
        height: u32,
        physical_size: Option<PhysicalSize>,
    },
}

/// Why an appliance shows no desktop right now, so the person at it reads a reason instead of a
/// blank screen. The connection stays up; the server sends frames once the reason is gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Notice {
    /// `appliance_auth = "enrol"`: the server does not know this appliance yet; an administrator
    /// approves it with `wradm appliances approve ID`.
    AwaitingApproval { id: String },
    /// The card in the reader could not prove it is the card its token names, and the server's
    /// policy refuses unproven cards.
    CardRefused { reason: String },
    /// The session (or login screen) for this token failed to start; the server tries again
    /// after `retry_secs`.
    SessionUnavailable { reason: String, retry_secs: u32 },
    /// The token's session was on the pool server `server`, which stopped answering: that
    /// session is lost. A new one (the greeter) follows as soon as the pool has confirmed the
    /// server is gone (protocol v7).
    SessionServerFailed { server: String },
}

impl std::fmt::Display for Notice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Notice::AwaitingApproval { id } => write!(
                f,
                "Waiting for approval: ask an administrator to run `wradm appliances approve {id}`"
            ),
            Notice::CardRefused { reason } => write!(f, "This card was refused: {reason}"),
            Notice::SessionUnavailable { reason, retry_secs } => {
                write!(f, "No desktop: {reason} (trying again in {retry_secs} s)")
            }
            Notice::SessionServerFailed { server } => write!(
                f,
                "Your session was on a server that failed ({server}); a new one is starting here"
            ),
        }
    }
}

/// Server → appliance on the control stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerControl {
    Welcome(Welcome),
    Bye(ByeReason),
    /// The appliance shows this instead of a desktop until frames arrive.
    Notice(Notice),
    /// Someone in the session records from the microphone (`open`), or nobody does any more:
    /// the appliance captures and sends [`crate::Datagram::Microphone`] only in between, so a
    /// microphone is never heard without an application asking for it.
    Microphone {
        open: bool,
    },
    /// Connect to another server of the pool instead (see [`Redirect`]); the server closes this
    /// connection once it is sent.
    Redirect(Redirect),
    /// Which of the appliance's USB devices the server takes from now on (protocol v9). Sent
    /// right after `Welcome` and again whenever it changes (a session attached or detached, a
    /// per-user policy). `filter` is in usbredir rule syntax (see [`crate::usb`]); `None` means
    /// no device is taken now (login screen, no session attached, no `vhci-hcd` on the server):
    /// the appliance ends every device stream and keeps its devices local.
    UsbPolicy {
        filter: Option<String>,
    },
}

/// Server → appliance on the display stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DisplayMessage {
    Frame(FrameUpdate),
    /// The pointer's image changed; the appliance draws it at its local pointer position.
    Cursor(crate::CursorUpdate),
}
