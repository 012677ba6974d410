//! USB/IP's URB messages (Linux `Documentation/usb/usbip_protocol.rst`): `USBIP_CMD_SUBMIT`,
//! `USBIP_RET_SUBMIT`, `USBIP_CMD_UNLINK`, `USBIP_RET_UNLINK`, encoded and decoded without I/O.
//!
//! Every message starts with a 48-byte big-endian header (a 20-byte `usbip_header_basic` +
//! 28 bytes specific to the command, padded). A `CMD_SUBMIT` going OUT is followed by its
//! `transfer_buffer_length` bytes; a `RET_SUBMIT` answering an IN transfer by `actual_length`
//! bytes; both are followed by `number_of_packets` 16-byte iso descriptors when the transfer
//! is isochronous. Non-iso transfers carry `number_of_packets` 0 (what Linux's `vhci-hcd`
//! sends) or `-1` (what the document asks for); both mean "none".
//!
//! Decoders take bytes as they arrive and yield whole messages; a length beyond the decoder's
//! limit is an error before anything is allocated for it. A `RET_SUBMIT` does not say whether
//! data follows — that depends on the direction of the `CMD_SUBMIT` it answers — so the
//! [`ReplyDecoder`] is told about each command sent ([`ReplyDecoder::sent`]), as `vhci-hcd`
//! looks its URB up by seqnum.
//!
//! The `usbip` crate (0.9) speaks this too, but only reading from a tokio socket, allocating the
//! length it reads, and as part of its own device emulation; the protocol crate stays sans-I/O,
//! hence this module.

use std::collections::HashMap;

/// Bytes of every message's header.
pub const HEADER_LEN: usize = 48;
/// Bytes of one iso packet descriptor.
pub const ISO_DESCRIPTOR_LEN: usize = 16;
/// Linux's `USBIP_MAX_ISO_PACKETS`.
pub const MAX_ISO_PACKETS: usize = 1024;
/// Default largest transfer buffer a decoder accepts: usbfs's own default limit is 16 MiB in
/// flight, and block devices send far less per URB.
pub const DEFAULT_MAX_TRANSFER: u32 = 16 * 1024 * 1024;

pub const USBIP_CMD_SUBMIT: u32 = 0x0001;
pub const USBIP_CMD_UNLINK: u32 = 0x0002;
pub const USBIP_RET_SUBMIT: u32 = 0x0003;
pub const USBIP_RET_UNLINK: u32 = 0x0004;

/// Linux URB statuses (negative errno) a device side answers with.
pub mod status {
    pub const OK: i32 = 0;
    /// No such URB (unlink of something already finished is answered 0 instead, see the spec).
    pub const ENOENT: i32 = -2;
    /// Stalled endpoint.
    pub const EPIPE: i32 = -32;
    pub const ETIME: i32 = -62;
    pub const EPROTO: i32 = -71;
    pub const EOVERFLOW: i32 = -75;
    /// Unlinked (`CMD_UNLINK`) before it finished.
    pub const ECONNRESET: i32 = -104;
    /// The device is gone.
    pub const ESHUTDOWN: i32 = -108;
    /// Short transfer with `URB_SHORT_NOT_OK`.
    pub const EREMOTEIO: i32 = -121;
    /// Not supported on this device side (e.g. isochronous).
    pub const EOPNOTSUPP: i32 = -95;
    pub const EINVAL: i32 = -22;
}

/// Linux `URB_*` transfer flags that matter to a device side.
pub mod transfer_flags {
    pub const URB_SHORT_NOT_OK: u32 = 0x0001;
    pub const URB_ISO_ASAP: u32 = 0x0002;
    pub const URB_ZERO_PACKET: u32 = 0x0040;
    pub const URB_DIR_IN: u32 = 0x0200;
}

/// USB/IP's direction field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Out = 0,
    In = 1,
}

/// One isochronous packet descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IsoPacket {
    pub offset: u32,
    pub length: u32,
    pub actual_length: u32,
    pub status: i32,
}

/// Client → device: submit an URB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdSubmit {
    pub seqnum: u32,
    pub devid: u32,
    pub direction: Direction,
    /// Endpoint number (0–15), without the direction bit.
    pub ep: u32,
    pub transfer_flags: u32,
    pub transfer_buffer_length: u32,
    pub start_frame: i32,
    /// 0 or -1 for non-iso transfers (see the module doc).
    pub number_of_packets: i32,
    pub interval: i32,
    /// The control setup packet (bytes as on the bus); zero for other transfers.
    pub setup: [u8; 8],
    /// OUT data, `transfer_buffer_length` bytes; empty for IN.
    pub data: Vec<u8>,
    pub iso: Vec<IsoPacket>,
}

/// Device → client: an URB finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetSubmit {
    pub seqnum: u32,
    pub status: i32,
    pub actual_length: u32,
    pub start_frame: i32,
    pub number_of_packets: i32,
    pub error_count: i32,
    /// IN data, `actual_length` bytes; empty for OUT.
    pub data: Vec<u8>,
    pub iso: Vec<IsoPacket>,
}

/// Client → device: cancel the URB `unlink_seqnum`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CmdUnlink {
    pub seqnum: u32,
    pub devid: u32,
    pub direction: Direction,
    pub ep: u32,
    pub unlink_seqnum: u32,
}

/// Device → client: the answer to a `CMD_UNLINK` (its seqnum). `status` is `-ECONNRESET` when
/// the URB was cancelled (no `RET_SUBMIT` follows for it), 0 when it had already finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetUnlink {
    pub seqnum: u32,
    pub status: i32,
}

/// What a client (`vhci-hcd`, the server) sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Submit(CmdSubmit),
    Unlink(CmdUnlink),
}

/// What the device side (the appliance) sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Submit(RetSubmit),
    Unlink(RetUnlink),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsbipError {
    #[error("USB/IP: unknown or unexpected command {0:#010x}")]
    UnknownCommand(u32),
    #[error("USB/IP: direction {0} is neither 0 (out) nor 1 (in)")]
    BadDirection(u32),
    #[error("USB/IP: transfer of {len} bytes is larger than the limit of {max}")]
    TooLong { len: u32, max: u32 },
    #[error("USB/IP: {0} iso packets (at most {MAX_ISO_PACKETS})")]
    BadPacketCount(i32),
    #[error("USB/IP: RET_SUBMIT for seqnum {0}, which no CMD_SUBMIT in flight has")]
    UnknownSeqnum(u32),
    #[error("USB/IP: more than {0} URBs in flight")]
    TooManyInFlight(usize),
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn direction(raw: u32) -> Result<Direction, UsbipError> {
    match raw {
        0 => Ok(Direction::Out),
        1 => Ok(Direction::In),
        other => Err(UsbipError::BadDirection(other)),
    }
}

fn iso_count(n: i32) -> Result<usize, UsbipError> {
    match n {
        -1 | 0 => Ok(0),
        n if n > 0 && n as usize <= MAX_ISO_PACKETS => Ok(n as usize),
        n => Err(UsbipError::BadPacketCount(n)),
    }
}

fn put_basic(out: &mut Vec<u8>, command: u32, seqnum: u32, devid: u32, dir: u32, ep: u32) {
    for v in [command, seqnum, devid, dir, ep] {
        out.extend_from_slice(&v.to_be_bytes());
    }
}

fn put_iso(out: &mut Vec<u8>, iso: &[IsoPacket]) {
    for p in iso {
        out.extend_from_slice(&p.offset.to_be_bytes());
        out.extend_from_slice(&p.length.to_be_bytes());
        out.extend_from_slice(&p.actual_length.to_be_bytes());
        out.extend_from_slice(&p.status.to_be_bytes());
    }
}

fn read_iso(b: &[u8], count: usize) -> Vec<IsoPacket> {
    (0..count)
        .map(|i| {
            let at = i * ISO_DESCRIPTOR_LEN;
            IsoPacket {
                offset: be32(b, at),
                length: be32(b, at + 4),
                actual_length: be32(b, at + 8),
                status: be32(b, at + 12) as i32,
            }
        })
        .collect()
}

impl Command {
    /// Appends the wire bytes. `Submit`'s header says `data.len()` bytes follow for OUT (its
    /// `transfer_buffer_length` field is written as given; callers keep them equal).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Command::Submit(c) => {
                put_basic(
                    out,
                    USBIP_CMD_SUBMIT,
                    c.seqnum,
                    c.devid,
                    c.direction as u32,
                    c.ep,
                );
                out.extend_from_slice(&c.transfer_flags.to_be_bytes());
                out.extend_from_slice(&c.transfer_buffer_length.to_be_bytes());
                out.extend_from_slice(&c.start_frame.to_be_bytes());
                out.extend_from_slice(&c.number_of_packets.to_be_bytes());
                out.extend_from_slice(&c.interval.to_be_bytes());
                out.extend_from_slice(&c.setup);
                if c.direction == Direction::Out {
                    out.extend_from_slice(&c.data);
                }
                put_iso(out, &c.iso);
            }
            Command::Unlink(u) => {
                put_basic(
                    out,
                    USBIP_CMD_UNLINK,
                    u.seqnum,
                    u.devid,
                    u.direction as u32,
                    u.ep,
                );
                out.extend_from_slice(&u.unlink_seqnum.to_be_bytes());
                out.extend_from_slice(&[0; 24]);
            }
        }
    }

    pub fn seqnum(&self) -> u32 {
        match self {
            Command::Submit(c) => c.seqnum,
            Command::Unlink(u) => u.seqnum,
        }
    }
}

impl Reply {
    /// Appends the wire bytes; `devid`, `direction` and `ep` are 0 as the spec asks of a server.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Reply::Submit(r) => {
                put_basic(out, USBIP_RET_SUBMIT, r.seqnum, 0, 0, 0);
                out.extend_from_slice(&r.status.to_be_bytes());
                out.extend_from_slice(&r.actual_length.to_be_bytes());
                out.extend_from_slice(&r.start_frame.to_be_bytes());
                out.extend_from_slice(&r.number_of_packets.to_be_bytes());
                out.extend_from_slice(&r.error_count.to_be_bytes());
                out.extend_from_slice(&[0; 8]);
                out.extend_from_slice(&r.data);
                put_iso(out, &r.iso);
            }
            Reply::Unlink(r) => {
                put_basic(out, USBIP_RET_UNLINK, r.seqnum, 0, 0, 0);
                out.extend_from_slice(&r.status.to_be_bytes());
                out.extend_from_slice(&[0; 24]);
            }
        }
    }

    pub fn seqnum(&self) -> u32 {
        match self {
            Reply::Submit(r) => r.seqnum,
            Reply::Unlink(r) => r.seqnum,
        }
    }
}

/// Bytes received and not yet yielded; consumed from the front without moving the rest each
/// time (large bulk reads arrive in many small pieces).
#[derive(Debug, Default)]
struct Pending {
    buf: Vec<u8>,
    start: usize,
}

impl Pending {
    fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }
    fn available(&self) -> &[u8] {
        &self.buf[self.start..]
    }
    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }
}

/// Decodes what a client sends (the appliance's side of a device stream).
#[derive(Debug)]
pub struct CommandDecoder {
    pending: Pending,
    max_transfer: u32,
}

impl CommandDecoder {
    pub fn new(max_transfer: u32) -> Self {
        Self {
            pending: Pending::default(),
            max_transfer,
        }
    }

    /// Bytes as they arrive from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.pending.push(bytes);
    }

    /// Bytes pushed but not yet part of a yielded command.
    pub fn buffered(&self) -> usize {
        self.pending.available().len()
    }

    /// The next whole command, `None` until enough bytes arrived. After an error the stream is
    /// out of step: drop it.
    pub fn next_command(&mut self) -> Result<Option<Command>, UsbipError> {
        let b = self.pending.available();
        if b.len() < HEADER_LEN {
            return Ok(None);
        }
        let (seqnum, devid, dir, ep) = (be32(b, 4), be32(b, 8), be32(b, 12), be32(b, 16));
        match be32(b, 0) {
            USBIP_CMD_SUBMIT => {
                let direction = direction(dir)?;
                let length = be32(b, 24);
                if length > self.max_transfer {
                    return Err(UsbipError::TooLong {
                        len: length,
                        max: self.max_transfer,
                    });
                }
                let number_of_packets = be32(b, 32) as i32;
                let packets = iso_count(number_of_packets)?;
                let data_len = if direction == Direction::Out {
                    length as usize
                } else {
                    0
                };
                let total = HEADER_LEN + data_len + packets * ISO_DESCRIPTOR_LEN;
                if b.len() < total {
                    return Ok(None);
                }
                let mut setup = [0; 8];
                setup.copy_from_slice(&b[40..48]);
                let command = CmdSubmit {
                    seqnum,
                    devid,
                    direction,
                    ep,
                    transfer_flags: be32(b, 20),
                    transfer_buffer_length: length,
                    start_frame: be32(b, 28) as i32,
                    number_of_packets,
                    interval: be32(b, 36) as i32,
                    setup,
                    data: b[HEADER_LEN..HEADER_LEN + data_len].to_vec(),
                    iso: read_iso(&b[HEADER_LEN + data_len..], packets),
                };
                self.pending.consume(total);
                Ok(Some(Command::Submit(command)))
            }
            USBIP_CMD_UNLINK => {
                let command = CmdUnlink {
                    seqnum,
                    devid,
                    direction: direction(dir)?,
                    ep,
                    unlink_seqnum: be32(b, 20),
                };
                self.pending.consume(HEADER_LEN);
                Ok(Some(Command::Unlink(command)))
            }
            other => Err(UsbipError::UnknownCommand(other)),
        }
    }
}

/// Decodes what a device side sends (the client's side: the server, a test peer). Tell it about
/// every command sent with [`ReplyDecoder::sent`] before its reply can arrive.
#[derive(Debug)]
pub struct ReplyDecoder {
    pending: Pending,
    max_transfer: u32,
    /// seqnum of a CMD_SUBMIT in flight → its direction.
    submits: HashMap<u32, Direction>,
    /// seqnum of a CMD_UNLINK in flight → the seqnum it cancels.
    unlinks: HashMap<u32, u32>,
}

/// Most URBs a [`ReplyDecoder`] tracks; Linux's `vhci-hcd` keeps far fewer in flight.
pub const MAX_IN_FLIGHT: usize = 65536;

impl ReplyDecoder {
    pub fn new(max_transfer: u32) -> Self {
        Self {
            pending: Pending::default(),
            max_transfer,
            submits: HashMap::new(),
            unlinks: HashMap::new(),
        }
    }

    /// Records a command sent to the device side, so its reply can be framed.
    pub fn sent(&mut self, command: &Command) -> Result<(), UsbipError> {
        if self.submits.len() + self.unlinks.len() >= MAX_IN_FLIGHT {
            return Err(UsbipError::TooManyInFlight(MAX_IN_FLIGHT));
        }
        match command {
            Command::Submit(c) => {
                self.submits.insert(c.seqnum, c.direction);
            }
            Command::Unlink(u) => {
                self.unlinks.insert(u.seqnum, u.unlink_seqnum);
            }
        }
        Ok(())
    }

    /// URBs sent and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.submits.len()
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.pending.push(bytes);
    }

    pub fn buffered(&self) -> usize {
        self.pending.available().len()
    }

    /// The next whole reply, `None` until enough bytes arrived.
    pub fn next_reply(&mut self) -> Result<Option<Reply>, UsbipError> {
        let b = self.pending.available();
        if b.len() < HEADER_LEN {
            return Ok(None);
        }
        let seqnum = be32(b, 4);
        match be32(b, 0) {
            USBIP_RET_SUBMIT => {
                let Some(&direction) = self.submits.get(&seqnum) else {
                    return Err(UsbipError::UnknownSeqnum(seqnum));
                };
                let actual_length = be32(b, 24);
                if actual_length > self.max_transfer {
                    return Err(UsbipError::TooLong {
                        len: actual_length,
                        max: self.max_transfer,
                    });
                }
                let number_of_packets = be32(b, 32) as i32;
                let packets = iso_count(number_of_packets)?;
                let data_len = if direction == Direction::In {
                    actual_length as usize
                } else {
                    0
                };
                let total = HEADER_LEN + data_len + packets * ISO_DESCRIPTOR_LEN;
                if b.len() < total {
                    return Ok(None);
                }
                let reply = RetSubmit {
                    seqnum,
                    status: be32(b, 20) as i32,
                    actual_length,
                    start_frame: be32(b, 28) as i32,
                    number_of_packets,
                    error_count: be32(b, 36) as i32,
                    data: b[HEADER_LEN..HEADER_LEN + data_len].to_vec(),
                    iso: read_iso(&b[HEADER_LEN + data_len..], packets),
                };
                self.pending.consume(total);
                self.submits.remove(&seqnum);
                Ok(Some(Reply::Submit(reply)))
            }
            USBIP_RET_UNLINK => {
                let reply = RetUnlink {
                    seqnum,
                    status: be32(b, 20) as i32,
                };
                self.pending.consume(HEADER_LEN);
                if let Some(target) = self.unlinks.remove(&seqnum) {
                    if reply.status != status::OK {
                        // Cancelled: no RET_SUBMIT follows for it.
                        self.submits.remove(&target);
                    }
                }
                Ok(Some(Reply::Unlink(reply)))
            }
            other => Err(UsbipError::UnknownCommand(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// GET_DESCRIPTOR(device, 18 bytes) on endpoint 0, as vhci sends it, laid out field by
    /// field from the spec's CMD_SUBMIT table.
    const GET_DESCRIPTOR: &str = "
        00000001 00000005 00010002 00000001 00000000
        00000200 00000012 00000000 00000000 00000000
        8006000100001200";

    fn get_descriptor() -> CmdSubmit {
        CmdSubmit {
            seqnum: 5,
            devid: 0x0001_0002,
            direction: Direction::In,
            ep: 0,
            transfer_flags: transfer_flags::URB_DIR_IN,
            transfer_buffer_length: 18,
            start_frame: 0,
            number_of_packets: 0,
            interval: 0,
            setup: [0x80, 0x06, 0x00, 0x01, 0x00, 0x00, 0x12, 0x00],
            data: vec![],
            iso: vec![],
        }
    }

    #[test]
    fn cmd_submit_in_matches_the_spec_layout() {
        let bytes = hex(GET_DESCRIPTOR);
        assert_eq!(bytes.len(), HEADER_LEN);
        let mut out = Vec::new();
        Command::Submit(get_descriptor()).encode(&mut out);
        assert_eq!(out, bytes);
        let mut d = CommandDecoder::new(DEFAULT_MAX_TRANSFER);
        // One byte at a time: nothing until the last one.
        for (i, byte) in bytes.iter().enumerate() {
            assert_eq!(d.next_command().unwrap(), None);
            d.push(&[*byte]);
            if i + 1 < bytes.len() {
                assert_eq!(d.next_command().unwrap(), None);
            }
        }
        assert_eq!(
            d.next_command().unwrap(),
            Some(Command::Submit(get_descriptor()))
        );
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn cmd_submit_out_carries_its_data_and_unlink_follows() {
        // A bulk OUT of 4 bytes to ep 2 (non-iso, number_of_packets -1 as the spec writes it),
        // then CMD_UNLINK of seqnum 6.
        let bytes = hex("
            00000001 00000006 00010002 00000000 00000002
            00000000 00000004 00000000 ffffffff 00000000
            0000000000000000 55534243
            00000002 00000007 00010002 00000000 00000002
            00000006 000000000000000000000000000000000000000000000000");
        let mut d = CommandDecoder::new(DEFAULT_MAX_TRANSFER);
        d.push(&bytes);
        let Some(Command::Submit(c)) = d.next_command().unwrap() else {
            panic!()
        };
        assert_eq!((c.seqnum, c.ep, c.direction), (6, 2, Direction::Out));
        assert_eq!(c.number_of_packets, -1);
        assert_eq!(c.data, b"USBC");
        let Some(Command::Unlink(u)) = d.next_command().unwrap() else {
            panic!()
        };
        assert_eq!((u.seqnum, u.unlink_seqnum), (7, 6));
        assert_eq!(d.next_command().unwrap(), None);
        let mut out = Vec::new();
        Command::Submit(c).encode(&mut out);
        Command::Unlink(u).encode(&mut out);
        assert_eq!(out, bytes);
    }

    #[test]
    fn ret_submit_and_unlink_match_the_spec_layout() {
        // RET_SUBMIT of seqnum 5 (IN, 18 bytes of device descriptor; devid/direction/ep 0).
        let descriptor = hex("12010002000000405846010000010102 0301");
        let mut bytes = hex("
            00000003 00000005 00000000 00000000 00000000
            00000000 00000012 00000000 00000000 00000000
            0000000000000000");
        bytes.extend_from_slice(&descriptor);
        let reply = Reply::Submit(RetSubmit {
            seqnum: 5,
            status: 0,
            actual_length: 18,
            start_frame: 0,
            number_of_packets: 0,
            error_count: 0,
            data: descriptor.clone(),
            iso: vec![],
        });
        let mut out = Vec::new();
        reply.encode(&mut out);
        assert_eq!(out, bytes);
        let mut d = ReplyDecoder::new(DEFAULT_MAX_TRANSFER);
        // Before the command is known, a RET_SUBMIT cannot be framed.
        d.push(&bytes);
        assert_eq!(d.next_reply(), Err(UsbipError::UnknownSeqnum(5)));
        let mut d = ReplyDecoder::new(DEFAULT_MAX_TRANSFER);
        d.sent(&Command::Submit(get_descriptor())).unwrap();
        d.push(&bytes[..60]);
        assert_eq!(d.next_reply().unwrap(), None);
        d.push(&bytes[60..]);
        assert_eq!(d.next_reply().unwrap(), Some(reply));
        assert_eq!(d.in_flight(), 0);

        // An unlink that cancelled its URB: the URB is no longer in flight.
        let mut submit = get_descriptor();
        submit.seqnum = 9;
        d.sent(&Command::Submit(submit)).unwrap();
        d.sent(&Command::Unlink(CmdUnlink {
            seqnum: 10,
            devid: 0x0001_0002,
            direction: Direction::Out,
            ep: 0,
            unlink_seqnum: 9,
        }))
        .unwrap();
        let unlink = hex("
            00000004 0000000a 00000000 00000000 00000000
            ffffff98 000000000000000000000000000000000000000000000000");
        let mut out = Vec::new();
        Reply::Unlink(RetUnlink {
            seqnum: 10,
            status: status::ECONNRESET,
        })
        .encode(&mut out);
        assert_eq!(out, unlink);
        d.push(&unlink);
        assert!(matches!(d.next_reply().unwrap(), Some(Reply::Unlink(_))));
        assert_eq!(d.in_flight(), 0);
    }

    #[test]
    fn iso_descriptors_follow_the_data() {
        let mut c = get_descriptor();
        c.direction = Direction::Out;
        c.ep = 3;
        c.number_of_packets = 2;
        c.transfer_buffer_length = 6;
        c.data = vec![1, 2, 3, 4, 5, 6];
        c.iso = vec![
            IsoPacket {
                offset: 0,
                length: 3,
                actual_length: 0,
                status: 0,
            },
            IsoPacket {
                offset: 3,
                length: 3,
                actual_length: 0,
                status: 0,
            },
        ];
        let mut out = Vec::new();
        Command::Submit(c.clone()).encode(&mut out);
        assert_eq!(out.len(), HEADER_LEN + 6 + 2 * ISO_DESCRIPTOR_LEN);
        assert_eq!(
            &out[HEADER_LEN + 6..HEADER_LEN + 6 + 16],
            &hex("00000000 00000003 00000000 00000000")[..]
        );
        let mut d = CommandDecoder::new(DEFAULT_MAX_TRANSFER);
        d.push(&out);
        assert_eq!(d.next_command().unwrap(), Some(Command::Submit(c)));
    }

    #[test]
    fn hostile_lengths_are_errors_before_any_allocation() {
        let mut bytes = hex(GET_DESCRIPTOR);
        bytes[24..28].copy_from_slice(&0xffff_fff0u32.to_be_bytes());
        let mut d = CommandDecoder::new(1 << 20);
        d.push(&bytes);
        assert_eq!(
            d.next_command(),
            Err(UsbipError::TooLong {
                len: 0xffff_fff0,
                max: 1 << 20
            })
        );
        let mut bytes = hex(GET_DESCRIPTOR);
        bytes[32..36].copy_from_slice(&5000u32.to_be_bytes());
        let mut d = CommandDecoder::new(1 << 20);
        d.push(&bytes);
        assert_eq!(d.next_command(), Err(UsbipError::BadPacketCount(5000)));
        let mut bytes = hex(GET_DESCRIPTOR);
        bytes[0..4].copy_from_slice(&USBIP_RET_SUBMIT.to_be_bytes());
        let mut d = CommandDecoder::new(1 << 20);
        d.push(&bytes);
        assert_eq!(d.next_command(), Err(UsbipError::UnknownCommand(3)));
        let mut bytes = hex(GET_DESCRIPTOR);
        bytes[12..16].copy_from_slice(&7u32.to_be_bytes());
        let mut d = CommandDecoder::new(1 << 20);
        d.push(&bytes);
        assert_eq!(d.next_command(), Err(UsbipError::BadDirection(7)));
    }

    fn iso_packets() -> impl Strategy<Value = Vec<IsoPacket>> {
        proptest::collection::vec(
            (any::<u32>(), any::<u32>(), any::<u32>(), any::<i32>()).prop_map(
                |(offset, length, actual_length, status)| IsoPacket {
                    offset,
                    length,
                    actual_length,
                    status,
                },
            ),
            0..4,
        )
    }

    fn submit() -> impl Strategy<Value = CmdSubmit> {
        (
            any::<u32>(),
            any::<u32>(),
            any::<bool>(),
            0u32..16,
            any::<u32>(),
            proptest::collection::vec(any::<u8>(), 0..300),
            any::<[u8; 8]>(),
            iso_packets(),
            any::<bool>(),
        )
            .prop_map(
                |(seqnum, devid, is_in, ep, flags, data, setup, iso, minus_one)| {
                    let direction = if is_in { Direction::In } else { Direction::Out };
                    let number_of_packets = if !iso.is_empty() {
                        iso.len() as i32
                    } else if minus_one {
                        -1
                    } else {
                        0
                    };
                    CmdSubmit {
                        seqnum,
                        devid,
                        direction,
                        ep,
                        transfer_flags: flags,
                        transfer_buffer_length: data.len() as u32,
                        start_frame: 0,
                        number_of_packets,
                        interval: 4,
                        setup,
                        data: if is_in { vec![] } else { data },
                        iso,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn commands_round_trip_in_any_pieces(commands in proptest::collection::vec(submit(), 1..6),
                                             cut in 1usize..97) {
            let mut bytes = Vec::new();
            let mut expected = Vec::new();
            for (i, c) in commands.into_iter().enumerate() {
                let command = if i % 3 == 2 {
                    Command::Unlink(CmdUnlink { seqnum: c.seqnum, devid: c.devid, direction: c.direction, ep: c.ep, unlink_seqnum: c.seqnum ^ 1 })
                } else {
                    Command::Submit(c)
                };
                command.encode(&mut bytes);
                expected.push(command);
            }
            let mut d = CommandDecoder::new(DEFAULT_MAX_TRANSFER);
            let mut got = Vec::new();
            for piece in bytes.chunks(cut) {
                d.push(piece);
                while let Some(c) = d.next_command().unwrap() {
                    got.push(c);
                }
            }
            prop_assert_eq!(got, expected);
            prop_assert_eq!(d.buffered(), 0);
        }

        #[test]
        fn replies_round_trip(commands in proptest::collection::vec(submit(), 1..6),
                              statuses in proptest::collection::vec(any::<i32>(), 6),
                              cut in 1usize..97) {
            let mut d = ReplyDecoder::new(DEFAULT_MAX_TRANSFER);
            let mut bytes = Vec::new();
            let mut expected = Vec::new();
            for (i, c) in commands.iter().enumerate() {
                let mut unique = c.clone();
                unique.seqnum = i as u32;
                let command = Command::Submit(unique.clone());
                d.sent(&command).unwrap();
                let data = if c.direction == Direction::In { c.setup.repeat(i) } else { vec![] };
                let reply = Reply::Submit(RetSubmit {
                    seqnum: i as u32,
                    status: statuses[i],
                    actual_length: data.len() as u32,
                    start_frame: 0,
                    number_of_packets: c.number_of_packets,
                    error_count: 0,
                    data,
                    iso: c.iso.clone(),
                });
                reply.encode(&mut bytes);
                expected.push(reply);
            }
            let mut got = Vec::new();
            for piece in bytes.chunks(cut) {
                d.push(piece);
                while let Some(r) = d.next_reply().unwrap() {
                    got.push(r);
                }
            }
            prop_assert_eq!(got, expected);
            prop_assert_eq!(d.in_flight(), 0);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let mut d = CommandDecoder::new(1024);
            d.push(&bytes);
            while let Ok(Some(_)) = d.next_command() {}
            let mut r = ReplyDecoder::new(1024);
            for seqnum in 0..4 {
                r.sent(&Command::Submit(CmdSubmit { seqnum, ..get_descriptor() })).unwrap();
            }
            r.push(&bytes);
            while let Ok(Some(_)) = r.next_reply() {}
        }
    }
}
