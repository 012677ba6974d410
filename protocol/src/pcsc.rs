//! PC/SC in the session (protocol v9): what travels on a [`StreamKind::Pcsc`] stream after its
//! tag byte.
//!
//! The server opens one bidirectional stream per PC/SC client connection of the session (one
//! `SCardEstablishContext` of a program there) to the appliance the session is attached to. On
//! it, the server sends length-prefixed [`PcscRequest`]s and the appliance answers each with one
//! length-prefixed [`PcscReply`], in order. The one request answered late is
//! [`PcscRequest::WaitChange`]: its reply comes when the reader changes or after a
//! [`PcscRequest::StopWaiting`] (which has no reply of its own), so the server may send that one
//! while the wait is pending. Either side finishing the stream ends the context and everything
//! connected through it.
//!
//! The operations are PC/SC's own, not any implementation's bytes: the appliance runs them
//! against its pcscd, so the session's pcsc-lite and the appliance's may differ in version.
//! Codes (`share_mode`, `disposition`, protocols, states, errors) are PC/SC's numbers as pcsc-lite
//! defines them (`SCARD_SHARE_SHARED` = 2, `SCARD_E_NO_SMARTCARD` = 0x8010000C, …).
//!
//! [`StreamKind::Pcsc`]: crate::StreamKind::Pcsc

use serde::{Deserialize, Serialize};

/// Largest message on a PC/SC stream: an extended APDU (64 KiB) or a reader's control answer
/// with room to spare. A longer one is a protocol error.
pub const MAX_PCSC_MESSAGE_LEN: u32 = 128 * 1024;

/// Server → appliance: one PC/SC operation of the session's client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PcscRequest {
    /// First on every stream: `SCardEstablishContext` at the appliance. Answer: `Done`.
    Establish,
    /// The readers the appliance lends the session (its token's reader, or none) and their
    /// state now. Answer: `Readers`.
    Readers,
    /// Answer (`WaitEnded`) once the lent readers differ from `seen` (a card in or out, a reader
    /// gone or back, the card's event counter moved), or when `StopWaiting` comes.
    WaitChange { seen: Vec<ReaderInfo> },
    /// Ends a pending `WaitChange` (the session's client stopped waiting or was cancelled). No
    /// answer of its own; ignored when nothing is waiting.
    StopWaiting,
    /// `SCardConnect`. Answer: `Connected`.
    Connect {
        reader: String,
        share_mode: u32,
        protocols: u32,
    },
    /// `SCardReconnect`. Answer: `Reconnected`.
    Reconnect {
        card: u32,
        share_mode: u32,
        protocols: u32,
        initialization: u32,
    },
    /// `SCardDisconnect`. Answer: `Done`.
    Disconnect { card: u32, disposition: u32 },
    /// `SCardBeginTransaction`. Answer: `Done`.
    BeginTransaction { card: u32 },
    /// `SCardEndTransaction`. Answer: `Done`.
    EndTransaction { card: u32, disposition: u32 },
    /// `SCardTransmit` of one APDU. Answer: `Transmitted`.
    Transmit {
        card: u32,
        #[serde(with = "serde_bytes")]
        apdu: Vec<u8>,
        /// The most the client can take back.
        max_response: u32,
    },
    /// `SCardControl`. Answer: `Controlled`.
    Control {
        card: u32,
        code: u32,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        max_response: u32,
    },
    /// `SCardStatus` of a connected card. Answer: `Status`.
    Status { card: u32 },
    /// `SCardGetAttrib`. Answer: `Attribute`.
    GetAttrib {
        card: u32,
        attribute: u32,
        max_len: u32,
    },
    /// `SCardSetAttrib`. Answer: `Done`.
    SetAttrib {
        card: u32,
        attribute: u32,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
}

/// Appliance → server: the answer to one [`PcscRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PcscReply {
    /// It worked and there is nothing to return.
    Done,
    /// PC/SC said no: its return code (`SCARD_E_*`, `SCARD_W_*`).
    Failed {
        code: u32,
    },
    Readers(Vec<ReaderInfo>),
    /// A wait ended; `changed`: because the readers changed (else it was stopped).
    WaitEnded {
        changed: bool,
    },
    /// `card` names the connection in later requests on this stream.
    Connected {
        card: u32,
        protocol: u32,
    },
    Reconnected {
        protocol: u32,
    },
    Transmitted {
        #[serde(with = "serde_bytes")]
        response: Vec<u8>,
    },
    Controlled {
        #[serde(with = "serde_bytes")]
        response: Vec<u8>,
    },
    Status {
        /// `SCARD_ABSENT`… style card state as `SCardStatus` gives it.
        state: u32,
        protocol: u32,
        #[serde(with = "serde_bytes")]
        atr: Vec<u8>,
    },
    Attribute {
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
}

/// One reader as the session sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReaderInfo {
    pub name: String,
    /// `SCARD_STATE_*` bits as `SCardGetStatusChange` reports them (without the event counter).
    pub state: u32,
    /// Card insertions and removals in this reader (the upper 16 bits of pcsc-lite's event
    /// state).
    pub events: u16,
    #[serde(with = "serde_bytes")]
    pub atr: Vec<u8>,
    /// The protocol of the card connected through this stream, if any
    /// (`SCARD_PROTOCOL_T0`/`T1`…; 0 when none).
    pub protocol: u32,
}

/// PC/SC return codes the server and the appliance produce themselves.
pub mod codes {
    pub const SCARD_S_SUCCESS: u32 = 0;
    pub const SCARD_F_INTERNAL_ERROR: u32 = 0x8010_0001;
    pub const SCARD_E_CANCELLED: u32 = 0x8010_0002;
    pub const SCARD_E_INVALID_HANDLE: u32 = 0x8010_0003;
    pub const SCARD_E_INVALID_PARAMETER: u32 = 0x8010_0004;
    pub const SCARD_E_INSUFFICIENT_BUFFER: u32 = 0x8010_0008;
    pub const SCARD_E_UNKNOWN_READER: u32 = 0x8010_0009;
    pub const SCARD_E_TIMEOUT: u32 = 0x8010_000A;
    pub const SCARD_E_SHARING_VIOLATION: u32 = 0x8010_000B;
    pub const SCARD_E_NO_SMARTCARD: u32 = 0x8010_000C;
    pub const SCARD_F_COMM_ERROR: u32 = 0x8010_0013;
    pub const SCARD_E_READER_UNAVAILABLE: u32 = 0x8010_0017;
    pub const SCARD_E_NO_SERVICE: u32 = 0x8010_001D;
    pub const SCARD_E_SERVICE_STOPPED: u32 = 0x8010_001E;
    pub const SCARD_E_NO_READERS_AVAILABLE: u32 = 0x8010_002E;
    pub const SCARD_W_REMOVED_CARD: u32 = 0x8010_0069;

    /// `SCARD_SHARE_*`.
    pub const SCARD_SHARE_EXCLUSIVE: u32 = 1;
    pub const SCARD_SHARE_SHARED: u32 = 2;
    pub const SCARD_SHARE_DIRECT: u32 = 3;

    /// `SCARD_STATE_*` (reader states as `SCardGetStatusChange` reports them).
    pub const SCARD_STATE_UNKNOWN: u32 = 0x0004;
    pub const SCARD_STATE_UNAVAILABLE: u32 = 0x0008;
    pub const SCARD_STATE_EMPTY: u32 = 0x0010;
    pub const SCARD_STATE_PRESENT: u32 = 0x0020;
    pub const SCARD_STATE_EXCLUSIVE: u32 = 0x0080;
    pub const SCARD_STATE_INUSE: u32 = 0x0100;
    pub const SCARD_STATE_MUTE: u32 = 0x0200;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::{encode, FrameReader};

    #[test]
    fn requests_and_replies_round_trip_through_the_framing() {
        let requests = [
            PcscRequest::Establish,
            PcscRequest::WaitChange {
                seen: vec![ReaderInfo {
                    name: "Virtual PCD 00 00".into(),
                    state: codes::SCARD_STATE_PRESENT,
                    events: 3,
                    atr: vec![0x3b, 0x8f],
                    protocol: 2,
                }],
            },
            PcscRequest::Transmit {
                card: 7,
                apdu: vec![0, 0xa4, 4, 0],
                max_response: 65538,
            },
        ];
        let replies = [
            PcscReply::Failed {
                code: codes::SCARD_E_NO_SMARTCARD,
            },
            PcscReply::Transmitted {
                response: vec![0x90, 0],
            },
        ];
        let mut reader = FrameReader::new(MAX_PCSC_MESSAGE_LEN);
        for request in &requests {
            reader.push(&encode(request).unwrap());
        }
        for request in &requests {
            assert_eq!(
                reader.next::<PcscRequest>().unwrap().as_ref(),
                Some(request)
            );
        }
        for reply in &replies {
            reader.push(&encode(reply).unwrap());
            assert_eq!(reader.next::<PcscReply>().unwrap().as_ref(), Some(reply));
        }
    }
}
