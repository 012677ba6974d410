//! pcsc-lite's client protocol (IPC version 4.4, pcsc-lite 1.8.24 to 2.x), sans-I/O: bytes from
//! a client's socket in, [`Command`]s out; answers as the bytes pcscd would write.
//!
//! Layouts are those of pcsc-lite's `winscard_msg.h` and `eventhandler.h` in the host's byte
//! order (pcsc-lite writes its C structs as they are; client and service share one machine).
//! A client sends an 8-byte header (`size`, `command`) then `size` bytes of the command's
//! struct; `SCARD_TRANSMIT` and `SCARD_CONTROL` follow it with `cbSendLength` more bytes. The
//! service answers with the same struct, its outputs and `rv` filled in, then any data.
//! `CMD_WAIT_READER_STATE_CHANGE` is answered with the reader table at once and, later, with a
//! [`wait_signal`] when a reader changes (or the wait is stopped or cancelled).

/// The IPC version this service speaks (`PROTOCOL_VERSION_MAJOR/MINOR`).
pub const VERSION: (i32, i32) = (4, 4);
/// `MAX_READERNAME`, `MAX_ATR_SIZE`, `PCSCLITE_MAX_READERS_CONTEXTS`, `MAX_BUFFER_SIZE`.
pub const MAX_READERNAME: usize = 128;
pub const MAX_ATR_SIZE: usize = 33;
pub const MAX_READERS: usize = 16;
pub const MAX_BUFFER_SIZE: usize = 264;
/// `MAX_BUFFER_SIZE_EXTENDED`: the longest APDU or control block a client may send.
pub const MAX_BUFFER_SIZE_EXTENDED: usize = 4 + 3 + (1 << 16) + 3 + 2;
/// One `READER_STATE` (`pubReaderStatesList`) with C's padding, and the table of them.
pub const READER_STATE_LEN: usize = 184;
pub const READER_TABLE_LEN: usize = READER_STATE_LEN * MAX_READERS;

const HEADER_LEN: usize = 8;

/// `enum pcsc_msg_commands`.
mod cmd {
    pub const ESTABLISH_CONTEXT: u32 = 0x01;
    pub const RELEASE_CONTEXT: u32 = 0x02;
    pub const CONNECT: u32 = 0x04;
    pub const RECONNECT: u32 = 0x05;
    pub const DISCONNECT: u32 = 0x06;
    pub const BEGIN_TRANSACTION: u32 = 0x07;
    pub const END_TRANSACTION: u32 = 0x08;
    pub const TRANSMIT: u32 = 0x09;
    pub const CONTROL: u32 = 0x0A;
    pub const STATUS: u32 = 0x0B;
    pub const CANCEL: u32 = 0x0D;
    pub const GET_ATTRIB: u32 = 0x0F;
    pub const SET_ATTRIB: u32 = 0x10;
    pub const VERSION: u32 = 0x11;
    pub const GET_READERS_STATE: u32 = 0x12;
    pub const WAIT_READER_STATE_CHANGE: u32 = 0x13;
    pub const STOP_WAITING_READER_STATE_CHANGE: u32 = 0x14;
}

/// Struct sizes (C layout, 4-byte fields).
const VERSION_LEN: usize = 12;
const ESTABLISH_LEN: usize = 12;
const RELEASE_LEN: usize = 8;
const CONNECT_LEN: usize = 4 + MAX_READERNAME + 5 * 4;
const RECONNECT_LEN: usize = 24;
const DISCONNECT_LEN: usize = 12;
const BEGIN_LEN: usize = 8;
const END_LEN: usize = 12;
const CANCEL_LEN: usize = 8;
const STATUS_LEN: usize = 8;
const TRANSMIT_LEN: usize = 32;
const CONTROL_LEN: usize = 24;
const GETSET_LEN: usize = 4 + 4 + MAX_BUFFER_SIZE + 4 + 4;

/// A client's request, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Version { major: i32, minor: i32 },
    EstablishContext { scope: u32 },
    ReleaseContext { context: u32 },
    Connect(Connect),
    Reconnect(Reconnect),
    Disconnect { card: i32, disposition: u32 },
    BeginTransaction { card: i32 },
    EndTransaction { card: i32, disposition: u32 },
    Cancel { context: u32 },
    Status { card: i32 },
    Transmit(Transmit),
    Control(Control),
    GetAttrib(GetSet),
    SetAttrib(GetSet),
    GetReadersState,
    WaitReaderStateChange,
    StopWaitingReaderStateChange,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    pub context: u32,
    /// The reader's name, up to its NUL.
    pub reader: String,
    /// The name field as sent, echoed in the answer.
    pub raw_reader: Vec<u8>,
    pub share_mode: u32,
    pub protocols: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconnect {
    pub card: i32,
    pub share_mode: u32,
    pub protocols: u32,
    pub initialization: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub card: i32,
    pub send_pci_protocol: u32,
    pub send_pci_len: u32,
    pub recv_pci_protocol: u32,
    pub recv_pci_len: u32,
    /// `pcbRecvLength`: the client's buffer.
    pub max_response: u32,
    pub apdu: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    pub card: i32,
    pub code: u32,
    pub max_response: u32,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetSet {
    pub card: i32,
    pub attribute: u32,
    /// For a get: the client's buffer size; for a set: the value's length.
    pub len: u32,
    /// For a set: the value (`pbAttr[..cbAttrLen]`).
    pub value: Vec<u8>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LiteError {
    #[error("unknown pcsc-lite command {0:#x}")]
    UnknownCommand(u32),
    #[error("pcsc-lite command {command:#x} with a {got}-byte body, expected {expected}")]
    WrongLength {
        command: u32,
        got: u32,
        expected: usize,
    },
    #[error("{what} of {len} bytes exceeds pcsc-lite's limit of {max}")]
    TooLong {
        what: &'static str,
        len: u32,
        max: usize,
    },
}

/// Reassembles a client's requests from its socket's bytes.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole request, `Ok(None)` if more bytes are needed. After an error the client
    /// is cut off (as pcscd does).
    // Not `Iterator`: errors are not items.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Command>, LiteError> {
        let Some(header) = self.buf.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let size = u32_at(header, 0);
        let command = u32_at(header, 4);
        let expected = body_len(command).ok_or(LiteError::UnknownCommand(command))?;
        if size as usize != expected {
            return Err(LiteError::WrongLength {
                command,
                got: size,
                expected,
            });
        }
        let body_end = HEADER_LEN + expected;
        let Some(body) = self.buf.get(HEADER_LEN..body_end) else {
            return Ok(None);
        };
        // Transmit and control carry their data after the struct.
        let extra = match command {
            cmd::TRANSMIT => u32_at(body, 12),
            cmd::CONTROL => u32_at(body, 8),
            _ => 0,
        };
        if extra as usize > MAX_BUFFER_SIZE_EXTENDED {
            return Err(LiteError::TooLong {
                what: "data",
                len: extra,
                max: MAX_BUFFER_SIZE_EXTENDED,
            });
        }
        let end = body_end + extra as usize;
        let Some(data) = self.buf.get(body_end..end) else {
            return Ok(None);
        };
        let parsed = parse(command, body, data)?;
        self.buf.drain(..end);
        Ok(Some(parsed))
    }
}

/// The struct size of `command`'s request, `None` for a command this service does not know.
fn body_len(command: u32) -> Option<usize> {
    Some(match command {
        cmd::VERSION => VERSION_LEN,
        cmd::ESTABLISH_CONTEXT => ESTABLISH_LEN,
        cmd::RELEASE_CONTEXT => RELEASE_LEN,
        cmd::CONNECT => CONNECT_LEN,
        cmd::RECONNECT => RECONNECT_LEN,
        cmd::DISCONNECT => DISCONNECT_LEN,
        cmd::BEGIN_TRANSACTION => BEGIN_LEN,
        cmd::END_TRANSACTION => END_LEN,
        cmd::CANCEL => CANCEL_LEN,
        cmd::STATUS => STATUS_LEN,
        cmd::TRANSMIT => TRANSMIT_LEN,
        cmd::CONTROL => CONTROL_LEN,
        cmd::GET_ATTRIB | cmd::SET_ATTRIB => GETSET_LEN,
        cmd::GET_READERS_STATE
        | cmd::WAIT_READER_STATE_CHANGE
        | cmd::STOP_WAITING_READER_STATE_CHANGE => 0,
        _ => return None,
    })
}

fn parse(command: u32, b: &[u8], data: &[u8]) -> Result<Command, LiteError> {
    Ok(match command {
        cmd::VERSION => Command::Version {
            major: i32_at(b, 0),
            minor: i32_at(b, 4),
        },
        cmd::ESTABLISH_CONTEXT => Command::EstablishContext {
            scope: u32_at(b, 0),
        },
        cmd::RELEASE_CONTEXT => Command::ReleaseContext {
            context: u32_at(b, 0),
        },
        cmd::CONNECT => {
            let raw = b.get(4..4 + MAX_READERNAME).unwrap_or_default();
            let name_end = raw.iter().position(|&c| c == 0).unwrap_or(raw.len());
            let name = raw.get(..name_end).unwrap_or_default();
            let at = 4 + MAX_READERNAME;
            Command::Connect(Connect {
                context: u32_at(b, 0),
                reader: String::from_utf8_lossy(name).into_owned(),
                raw_reader: raw.to_vec(),
                share_mode: u32_at(b, at),
                protocols: u32_at(b, at + 4),
            })
        }
        cmd::RECONNECT => Command::Reconnect(Reconnect {
            card: i32_at(b, 0),
            share_mode: u32_at(b, 4),
            protocols: u32_at(b, 8),
            initialization: u32_at(b, 12),
        }),
        cmd::DISCONNECT => Command::Disconnect {
            card: i32_at(b, 0),
            disposition: u32_at(b, 4),
        },
        cmd::BEGIN_TRANSACTION => Command::BeginTransaction { card: i32_at(b, 0) },
        cmd::END_TRANSACTION => Command::EndTransaction {
            card: i32_at(b, 0),
            disposition: u32_at(b, 4),
        },
        cmd::CANCEL => Command::Cancel {
            context: u32_at(b, 0),
        },
        cmd::STATUS => Command::Status { card: i32_at(b, 0) },
        cmd::TRANSMIT => Command::Transmit(Transmit {
            card: i32_at(b, 0),
            send_pci_protocol: u32_at(b, 4),
            send_pci_len: u32_at(b, 8),
            recv_pci_protocol: u32_at(b, 16),
            recv_pci_len: u32_at(b, 20),
            max_response: u32_at(b, 24),
            apdu: data.to_vec(),
        }),
        cmd::CONTROL => Command::Control(Control {
            card: i32_at(b, 0),
            code: u32_at(b, 4),
            max_response: u32_at(b, 12),
            data: data.to_vec(),
        }),
        cmd::GET_ATTRIB | cmd::SET_ATTRIB => {
            let len = u32_at(b, 8 + MAX_BUFFER_SIZE);
            if len as usize > MAX_BUFFER_SIZE {
                return Err(LiteError::TooLong {
                    what: "attribute",
                    len,
                    max: MAX_BUFFER_SIZE,
                });
            }
            let getset = GetSet {
                card: i32_at(b, 0),
                attribute: u32_at(b, 4),
                len,
                value: if command == cmd::SET_ATTRIB {
                    b.get(8..8 + len as usize).unwrap_or_default().to_vec()
                } else {
                    Vec::new()
                },
            };
            if command == cmd::SET_ATTRIB {
                Command::SetAttrib(getset)
            } else {
                Command::GetAttrib(getset)
            }
        }
        cmd::GET_READERS_STATE => Command::GetReadersState,
        cmd::WAIT_READER_STATE_CHANGE => Command::WaitReaderStateChange,
        cmd::STOP_WAITING_READER_STATE_CHANGE => Command::StopWaitingReaderStateChange,
        other => return Err(LiteError::UnknownCommand(other)),
    })
}

/// A 4-byte field at `at`; 0 past the end (callers checked the length).
fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_ne_bytes)
        .unwrap_or(0)
}

fn i32_at(b: &[u8], at: usize) -> i32 {
    u32_at(b, at) as i32
}

/// Writes 4-byte fields in the host's order.
fn fields(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_ne_bytes()).collect()
}

// ---- answers --------------------------------------------------------------------------------

pub fn version(rv: u32) -> Vec<u8> {
    fields(&[VERSION.0 as u32, VERSION.1 as u32, rv])
}

pub fn establish(scope: u32, context: u32, rv: u32) -> Vec<u8> {
    fields(&[scope, context, rv])
}

pub fn release(context: u32, rv: u32) -> Vec<u8> {
    fields(&[context, rv])
}

pub fn connect(request: &Connect, card: i32, protocol: u32, rv: u32) -> Vec<u8> {
    let mut out = fields(&[request.context]);
    let mut name = request.raw_reader.clone();
    name.resize(MAX_READERNAME, 0);
    out.extend_from_slice(&name);
    out.extend(fields(&[
        request.share_mode,
        request.protocols,
        card as u32,
        protocol,
        rv,
    ]));
    out
}

pub fn reconnect(request: &Reconnect, protocol: u32, rv: u32) -> Vec<u8> {
    fields(&[
        request.card as u32,
        request.share_mode,
        request.protocols,
        request.initialization,
        protocol,
        rv,
    ])
}

/// Answers of `{ card, rv }` (begin transaction, status) and `{ context, rv }` (cancel).
pub fn handle_rv(handle: u32, rv: u32) -> Vec<u8> {
    fields(&[handle, rv])
}

/// Answers of `{ card, disposition, rv }` (disconnect, end transaction).
pub fn card_disposition(card: i32, disposition: u32, rv: u32) -> Vec<u8> {
    fields(&[card as u32, disposition, rv])
}

/// The transmit struct, followed by the card's answer when `rv` is success.
pub fn transmit(request: &Transmit, response: &[u8], rv: u32) -> Vec<u8> {
    let rv = if rv == 0 && response.len() > request.max_response as usize {
        super::codes::SCARD_E_INSUFFICIENT_BUFFER
    } else {
        rv
    };
    let mut out = fields(&[
        request.card as u32,
        request.send_pci_protocol,
        request.send_pci_len,
        request.apdu.len() as u32,
        request.recv_pci_protocol,
        request.recv_pci_len,
        if rv == 0 { response.len() as u32 } else { 0 },
        rv,
    ]);
    if rv == 0 {
        out.extend_from_slice(response);
    }
    out
}

/// The control struct, followed by the reader's answer when `rv` is success.
pub fn control(request: &Control, response: &[u8], rv: u32) -> Vec<u8> {
    let rv = if rv == 0 && response.len() > request.max_response as usize {
        super::codes::SCARD_E_INSUFFICIENT_BUFFER
    } else {
        rv
    };
    let mut out = fields(&[
        request.card as u32,
        request.code,
        request.data.len() as u32,
        request.max_response,
        if rv == 0 { response.len() as u32 } else { 0 },
        rv,
    ]);
    if rv == 0 {
        out.extend_from_slice(response);
    }
    out
}

/// The get/set-attribute struct with `value` in it (a get's answer; empty for a set).
pub fn getset(request: &GetSet, value: &[u8], rv: u32) -> Vec<u8> {
    let rv = if rv == 0 && value.len() > request.len.min(MAX_BUFFER_SIZE as u32) as usize {
        super::codes::SCARD_E_INSUFFICIENT_BUFFER
    } else {
        rv
    };
    let mut out = fields(&[request.card as u32, request.attribute]);
    let mut attr = if rv == 0 { value.to_vec() } else { Vec::new() };
    let len = if value.is_empty() {
        request.len
    } else {
        attr.len() as u32
    };
    attr.resize(MAX_BUFFER_SIZE, 0);
    out.extend_from_slice(&attr);
    out.extend(fields(&[len, rv]));
    out
}

/// `struct wait_reader_state_change`: the answer to a stop, and the late signal of a wait.
pub fn wait_signal(rv: u32) -> Vec<u8> {
    fields(&[0, rv])
}

/// One reader in pcscd's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderEntry {
    pub name: String,
    pub events: u16,
    /// `SCARD_STATE_*` bits (what `SCardGetStatusChange` reports).
    pub state: u32,
    pub atr: Vec<u8>,
    pub protocol: u32,
}

/// `SCARD_*` card states of pcscd's table.
const SCARD_UNKNOWN: u32 = 0x01;
const SCARD_ABSENT: u32 = 0x02;
const SCARD_PRESENT: u32 = 0x04;
const SCARD_SWALLOWED: u32 = 0x08;
const SCARD_POWERED: u32 = 0x10;
const SCARD_NEGOTIABLE: u32 = 0x20;

/// The reader table (`readerStates`) as pcscd sends it, with `readers` first and the rest of
/// the slots empty. Reader states are turned back from `SCARD_STATE_*` into pcscd's `SCARD_*`
/// card states and sharing count, so the client computes the same states from them.
pub fn reader_table(readers: &[ReaderEntry]) -> Vec<u8> {
    use super::codes::*;
    let mut out = Vec::with_capacity(READER_TABLE_LEN);
    for reader in readers.iter().take(MAX_READERS) {
        let mut name = reader.name.as_bytes().to_vec();
        name.truncate(MAX_READERNAME - 1);
        name.resize(MAX_READERNAME, 0);
        out.extend_from_slice(&name);
        let s = reader.state;
        let card = if s & (SCARD_STATE_UNKNOWN | SCARD_STATE_UNAVAILABLE) != 0 {
            SCARD_UNKNOWN
        } else if s & SCARD_STATE_MUTE != 0 {
            SCARD_PRESENT | SCARD_SWALLOWED
        } else if s & SCARD_STATE_PRESENT != 0 {
            SCARD_PRESENT | SCARD_POWERED | SCARD_NEGOTIABLE
        } else {
            SCARD_ABSENT
        };
        let sharing: i32 = if s & SCARD_STATE_EXCLUSIVE != 0 {
            -1
        } else if s & SCARD_STATE_INUSE != 0 {
            1
        } else {
            0
        };
        let present = card & SCARD_PRESENT != 0;
        let mut atr = if present {
            reader.atr.clone()
        } else {
            Vec::new()
        };
        atr.truncate(MAX_ATR_SIZE);
        let atr_len = atr.len() as u32;
        out.extend(fields(&[u32::from(reader.events), card, sharing as u32]));
        atr.resize(MAX_ATR_SIZE, 0);
        out.extend_from_slice(&atr);
        out.extend_from_slice(&[0; 3]); // C's padding before the next u32
        out.extend(fields(&[
            atr_len,
            if present { reader.protocol } else { 0 },
        ]));
    }
    out.resize(READER_TABLE_LEN, 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn request(command: u32, body: &[u8]) -> Vec<u8> {
        let mut out = fields(&[body.len() as u32, command]);
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn version_and_establish_as_libpcsclite_sends_them() {
        let mut d = Decoder::default();
        d.push(&request(cmd::VERSION, &fields(&[4, 4, 0])));
        let est = request(cmd::ESTABLISH_CONTEXT, &fields(&[2, 0, 0]));
        // Split anywhere: nothing comes out before the message is whole.
        d.push(&est[..5]);
        assert_eq!(d.next(), Ok(Some(Command::Version { major: 4, minor: 4 })));
        assert_eq!(d.next(), Ok(None));
        d.push(&est[5..]);
        assert_eq!(d.next(), Ok(Some(Command::EstablishContext { scope: 2 })));
        assert_eq!(version(0), fields(&[4, 4, 0]));
        assert_eq!(establish(2, 77, 0), fields(&[2, 77, 0]));
    }

    #[test]
    fn connect_reads_the_reader_name_and_echoes_the_struct() {
        let mut body = fields(&[9]);
        let mut name = b"Virtual PCD 00 00".to_vec();
        name.resize(MAX_READERNAME, 0);
        body.extend_from_slice(&name);
        body.extend(fields(&[2, 3, 0, 0, 0]));
        let mut d = Decoder::default();
        d.push(&request(cmd::CONNECT, &body));
        let Ok(Some(Command::Connect(c))) = d.next() else {
            panic!("not a connect");
        };
        assert_eq!(c.reader, "Virtual PCD 00 00");
        assert_eq!((c.context, c.share_mode, c.protocols), (9, 2, 3));
        let answer = connect(&c, 1234, 2, 0);
        assert_eq!(answer.len(), CONNECT_LEN);
        assert_eq!(&answer[..4 + MAX_READERNAME], &body[..4 + MAX_READERNAME]);
        assert_eq!(
            &answer[4 + MAX_READERNAME..],
            &fields(&[2, 3, 1234, 2, 0])[..]
        );
    }

    #[test]
    fn transmit_takes_its_apdu_after_the_struct_and_answers_with_the_response() {
        let apdu = [0x00, 0xa4, 0x04, 0x00, 0x02, 0x3f, 0x00];
        let mut bytes = request(
            cmd::TRANSMIT,
            &fields(&[5, 2, 8, apdu.len() as u32, 2, 8, 258, 0]),
        );
        bytes.extend_from_slice(&apdu);
        let mut d = Decoder::default();
        d.push(&bytes[..bytes.len() - 1]);
        assert_eq!(d.next(), Ok(None), "the APDU is not all here yet");
        d.push(&bytes[bytes.len() - 1..]);
        let Ok(Some(Command::Transmit(t))) = d.next() else {
            panic!("not a transmit");
        };
        assert_eq!(t.apdu, apdu);
        assert_eq!((t.card, t.max_response), (5, 258));
        let answer = transmit(&t, &[0x90, 0x00], 0);
        assert_eq!(
            &answer[..TRANSMIT_LEN],
            &fields(&[5, 2, 8, 7, 2, 8, 2, 0])[..]
        );
        assert_eq!(&answer[TRANSMIT_LEN..], &[0x90, 0x00]);
        // A response larger than the client's buffer is refused, without the data.
        let small = Transmit {
            max_response: 1,
            ..t
        };
        let answer = transmit(&small, &[0x90, 0x00], 0);
        assert_eq!(answer.len(), TRANSMIT_LEN);
        assert_eq!(
            u32_at(&answer, 28),
            super::super::codes::SCARD_E_INSUFFICIENT_BUFFER
        );
    }

    #[test]
    fn the_reader_table_has_pcscds_layout() {
        use super::super::codes::*;
        let table = reader_table(&[ReaderEntry {
            name: "Virtual PCD 00 01".into(),
            events: 7,
            state: SCARD_STATE_PRESENT | SCARD_STATE_INUSE,
            atr: vec![0x3b, 0x8f, 0x80],
            protocol: 2,
        }]);
        assert_eq!(table.len(), READER_TABLE_LEN);
        assert_eq!(&table[..17], b"Virtual PCD 00 01");
        assert_eq!(table[17], 0);
        assert_eq!(u32_at(&table, 128), 7);
        assert_eq!(
            u32_at(&table, 132),
            SCARD_PRESENT | SCARD_POWERED | SCARD_NEGOTIABLE
        );
        assert_eq!(i32_at(&table, 136), 1);
        assert_eq!(&table[140..143], &[0x3b, 0x8f, 0x80]);
        assert_eq!(u32_at(&table, 176), 3);
        assert_eq!(u32_at(&table, 180), 2);
        // The second slot is empty: no reader.
        assert!(table[READER_STATE_LEN..].iter().all(|&b| b == 0));
        // An empty reader: absent, no ATR.
        let empty = reader_table(&[ReaderEntry {
            name: "R".into(),
            events: 0,
            state: SCARD_STATE_EMPTY,
            atr: vec![1, 2],
            protocol: 0,
        }]);
        assert_eq!(u32_at(&empty, 132), SCARD_ABSENT);
        assert_eq!(u32_at(&empty, 176), 0);
    }

    #[test]
    fn bad_headers_are_errors() {
        let mut d = Decoder::default();
        d.push(&request(0x99, &[]));
        assert_eq!(d.next(), Err(LiteError::UnknownCommand(0x99)));
        let mut d = Decoder::default();
        d.push(&request(cmd::CONNECT, &[0; 10]));
        assert!(matches!(d.next(), Err(LiteError::WrongLength { .. })));
        let mut d = Decoder::default();
        d.push(&request(
            cmd::TRANSMIT,
            &fields(&[0, 0, 0, 1 << 20, 0, 0, 0, 0]),
        ));
        assert!(matches!(d.next(), Err(LiteError::TooLong { .. })));
    }

    proptest! {
        /// Whatever a client sends, the decoder answers with requests, "more bytes" or an
        /// error, never a panic; fed in arbitrary pieces it decodes the same as in one go.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600), cut in 0usize..600) {
            let decode = |pieces: &[&[u8]]| {
                let mut d = Decoder::default();
                let mut out = Vec::new();
                for piece in pieces {
                    d.push(piece);
                    loop {
                        match d.next() {
                            Ok(Some(c)) => out.push(Ok(c)),
                            Ok(None) => break,
                            Err(e) => { out.push(Err(e)); return out; }
                        }
                    }
                }
                out
            };
            let cut = cut.min(bytes.len());
            let whole = decode(&[&bytes]);
            let split = decode(&[&bytes[..cut], &bytes[cut..]]);
            prop_assert_eq!(whole, split);
        }

        /// Known commands with bodies of the right size and arbitrary contents (lengths,
        /// attribute sizes, names without a NUL), which reach the field parsers.
        #[test]
        fn known_commands_with_arbitrary_bodies_never_panic(
            command in 1u32..0x15,
            body in proptest::collection::vec(any::<u8>(), 400),
            extra in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let len = body_len(command).unwrap_or(0);
            let mut bytes = request(command, &body[..len]);
            bytes.extend_from_slice(&extra);
            let mut d = Decoder::default();
            d.push(&bytes);
            while let Ok(Some(_)) = d.next() {}
        }
    }
}
