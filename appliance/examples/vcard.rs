//! `vcard`: a virtual smart card for the vpcd reader driver (vsmartcard-vpcd), so tests and demos
//! can put a card with any ATR and UID into a real pcscd reader.
//!
//! The card connects to the reader's TCP port (vpcd listens: "Virtual PCD 00 00" on 35963,
//! "Virtual PCD 00 01" on 35964). Connected is inserted, closed is removed. Every message both
//! ways is a 2-byte big-endian length and its payload. From vpcd, 1-byte messages are control
//! codes: 0 power off, 1 power on, 2 reset (no reply to these three), 4 "your ATR" (reply: the
//! ATR). Longer ones are APDUs, answered with response data + status word: GET DATA for the UID
//! (`FF CA 00 00 00`, as contactless readers answer it) gets the UID + `90 00`, everything else
//! `6D 00` (instruction not supported), as a contact card without a UID would.
//!
//! With a PIV key (`--piv-key FILE`, [`PivApplet`]) the card also carries a PIV application, as
//! real PIV cards and YubiKeys do: SELECT by its AID, GET DATA of the card authentication
//! certificate (object 5FC101, answered in 256-byte pieces through GET RESPONSE like a real card
//! with short APDUs), and GENERAL AUTHENTICATE with the card authentication key (slot 9E, ECC
//! P-256), which signs the 32-byte digest it is given. The appliance's card proofs go through
//! exactly the commands a real card answers.
//!
//! ```sh
//! cargo build --example vcard
//! target/debug/examples/vcard --port 35963 --atr 3B8F8001804F0CA000000306030001000000006A --uid 04A1B2C3
//! ```
//!
//! Tests use [`VirtualCard`] in-process as well (`#[path]` include), to insert and remove cards
//! without a process each.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread::JoinHandle;

/// A card's identity: what it answers to reset and to GET DATA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualCard {
    pub atr: Vec<u8>,
    /// `None`: the card answers GET DATA with `6D 00`, so its token is named by its ATR.
    pub uid: Option<Vec<u8>>,
    /// `None`: a memory card; it has no PIV application and cannot prove anything.
    pub piv: Option<PivApplet>,
}

/// The card's PIV application: a card authentication key (ECC P-256) and its certificate.
#[derive(Clone, PartialEq, Eq)]
pub struct PivApplet {
    /// The key, PKCS#8 DER.
    pub key: Vec<u8>,
    /// A self-signed certificate for it, DER.
    pub certificate: Vec<u8>,
}

impl std::fmt::Debug for PivApplet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PivApplet")
            .field(
                "certificate",
                &format_args!("{} bytes", self.certificate.len()),
            )
            .finish_non_exhaustive()
    }
}

impl PivApplet {
    /// A new key and a certificate for it.
    pub fn generate() -> Result<Self, String> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|error| format!("cannot make a key: {error}"))?;
        Self::from_key(&key.serialize_der())
    }

    /// The applet for a PKCS#8 P-256 key, with a fresh self-signed certificate.
    pub fn from_key(pkcs8: &[u8]) -> Result<Self, String> {
        let key = rcgen::KeyPair::try_from(pkcs8)
            .map_err(|error| format!("not a PKCS#8 key: {error}"))?;
        let params = rcgen::CertificateParams::new(vec!["wayray virtual card".to_string()])
            .map_err(|error| format!("certificate parameters: {error}"))?;
        let certificate = params
            .self_signed(&key)
            .map_err(|error| format!("cannot sign a certificate: {error}"))?;
        Ok(Self {
            key: pkcs8.to_vec(),
            certificate: certificate.der().to_vec(),
        })
    }

    /// The key in `path`, made (and written there) when the file does not exist yet, so a
    /// card keeps its key from one insertion (and one process) to the next.
    pub fn load_or_create(path: &std::path::Path) -> Result<Self, String> {
        match std::fs::read(path) {
            Ok(pkcs8) => Self::from_key(&pkcs8),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                let applet = Self::generate()?;
                std::fs::write(path, &applet.key)
                    .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
                Ok(applet)
            }
            Err(error) => Err(format!("cannot read {}: {error}", path.display())),
        }
    }

    /// ECDSA over a digest the host computed, as PIV cards sign: DER signature.
    fn sign_digest(&self, digest: &[u8]) -> Option<Vec<u8>> {
        use p256::ecdsa::signature::hazmat::PrehashSigner;
        use p256::pkcs8::DecodePrivateKey;
        let key = p256::ecdsa::SigningKey::from_pkcs8_der(&self.key).ok()?;
        let signature: p256::ecdsa::Signature = key.sign_prehash(digest).ok()?;
        Some(signature.to_der().as_bytes().to_vec())
    }

    /// The certificate object: `53 { 70 cert, 71 00 (not compressed), FE 00 (LRC) }`.
    fn certificate_object(&self) -> Vec<u8> {
        let mut body = tlv(0x70, &self.certificate);
        body.extend_from_slice(&[0x71, 0x01, 0x00, 0xFE, 0x00]);
        tlv(0x53, &body)
    }
}

/// One BER-TLV with a one-byte tag.
fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match value.len() {
        len @ 0..=0x7F => out.push(len as u8),
        len @ 0x80..=0xFF => out.extend_from_slice(&[0x81, len as u8]),
        len => {
            out.push(0x82);
            out.extend_from_slice(&(len.min(0xFFFF) as u16).to_be_bytes());
        }
    }
    out.extend_from_slice(value);
    out
}

/// What a card remembers between commands while it is powered.
#[derive(Debug, Default)]
pub struct CardSession {
    piv_selected: bool,
    /// The rest of a long answer, for GET RESPONSE.
    pending: Vec<u8>,
}

/// vpcd control codes (1-byte messages).
const POWER_OFF: u8 = 0;
const POWER_ON: u8 = 1;
const RESET: u8 = 2;
const GET_ATR: u8 = 4;

const SW_OK: [u8; 2] = [0x90, 0x00];
const SW_INS_NOT_SUPPORTED: [u8; 2] = [0x6D, 0x00];
const SW_FILE_NOT_FOUND: [u8; 2] = [0x6A, 0x82];
const SW_WRONG_DATA: [u8; 2] = [0x6A, 0x80];
const SW_CONDITIONS: [u8; 2] = [0x69, 0x85];
/// The PIV AID without its version, as hosts select it.
const PIV_AID: [u8; 9] = [0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00];
/// Longest answer in one response APDU (short APDUs); the rest waits for GET RESPONSE.
const CHUNK: usize = 256;

impl VirtualCard {
    /// A card with this ATR and UID and no PIV application.
    pub fn memory(atr: Vec<u8>, uid: Option<Vec<u8>>) -> Self {
        Self {
            atr,
            uid,
            piv: None,
        }
    }

    /// The reply to one message from vpcd on a card without session state (see
    /// [`VirtualCard::answer_in`]).
    pub fn answer(&self, message: &[u8]) -> Option<Vec<u8>> {
        self.answer_in(&mut CardSession::default(), message)
    }

    /// The reply to one message from vpcd; `None` for messages that get none.
    pub fn answer_in(&self, session: &mut CardSession, message: &[u8]) -> Option<Vec<u8>> {
        match message {
            [POWER_OFF] | [POWER_ON] | [RESET] => {
                *session = CardSession::default();
                None
            }
            [] => None,
            [GET_ATR] => Some(self.atr.clone()),
            [_] => None, // a control code vpcd does not define: nothing to say
            // GET DATA, P1 = 00 (UID), with or without Le.
            [0xFF, 0xCA, 0x00, 0x00] | [0xFF, 0xCA, 0x00, 0x00, _] => match &self.uid {
                Some(uid) => Some([uid.as_slice(), &SW_OK].concat()),
                None => Some(SW_INS_NOT_SUPPORTED.to_vec()),
            },
            [0x00, 0xA4, 0x04, 0x00, len, aid @ ..] => {
                let aid = aid.get(..usize::from(*len)).unwrap_or(aid);
                session.piv_selected = self.piv.is_some() && aid.starts_with(&PIV_AID);
                Some(if session.piv_selected {
                    // Application property template: the AID and nothing more.
                    let mut answer = tlv(0x61, &tlv(0x4F, &PIV_AID));
                    answer.extend_from_slice(&SW_OK);
                    answer
                } else {
                    SW_FILE_NOT_FOUND.to_vec()
                })
            }
            [0x00, 0xC0, 0x00, 0x00, ..] => Some(Self::chunk(session, Vec::new())),
            _ if !session.piv_selected => Some(SW_INS_NOT_SUPPORTED.to_vec()),
            // GET DATA of the card authentication certificate.
            [0x00, 0xCB, 0x3F, 0xFF, 0x05, 0x5C, 0x03, 0x5F, 0xC1, 0x01, ..] => {
                let object = self.piv.as_ref().map(PivApplet::certificate_object)?;
                Some(Self::chunk(session, object))
            }
            [0x00, 0xCB, 0x3F, 0xFF, ..] => Some(SW_FILE_NOT_FOUND.to_vec()),
            // GENERAL AUTHENTICATE, ECC P-256, card authentication key: 7C { 82 00, 81 20 digest }.
            [0x00, 0x87, 0x11, 0x9E, _, 0x7C, _, 0x82, 0x00, 0x81, 0x20, rest @ ..] => {
                let Some(digest) = rest.get(..32) else {
                    return Some(SW_WRONG_DATA.to_vec());
                };
                match self.piv.as_ref().and_then(|piv| piv.sign_digest(digest)) {
                    Some(signature) => {
                        Some(Self::chunk(session, tlv(0x7C, &tlv(0x82, &signature))))
                    }
                    None => Some(SW_CONDITIONS.to_vec()),
                }
            }
            [0x00, 0x87, ..] => Some(SW_WRONG_DATA.to_vec()),
            _ => Some(SW_INS_NOT_SUPPORTED.to_vec()),
        }
    }

    /// Answers with the first [`CHUNK`] bytes of `answer` (or of what is pending, for GET
    /// RESPONSE) and `61 XX` while more waits, `90 00` with the last piece.
    fn chunk(session: &mut CardSession, answer: Vec<u8>) -> Vec<u8> {
        if !answer.is_empty() {
            session.pending = answer;
        }
        let take = session.pending.len().min(CHUNK);
        let mut reply: Vec<u8> = session.pending.drain(..take).collect();
        match session.pending.len() {
            0 => reply.extend_from_slice(&SW_OK),
            left => reply.extend_from_slice(&[0x61, left.min(CHUNK) as u8]),
        }
        reply
    }

    /// Answers vpcd on `stream` until it closes the connection (`Ok`) or it breaks (`Err`).
    pub fn serve(&self, mut stream: impl Read + Write) -> io::Result<()> {
        let mut session = CardSession::default();
        loop {
            let mut length = [0; 2];
            match stream.read_exact(&mut length) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(error) => return Err(error),
            }
            let mut message = vec![0; usize::from(u16::from_be_bytes(length))];
            stream.read_exact(&mut message)?;
            if let Some(reply) = self.answer_in(&mut session, &message) {
                let length = u16::try_from(reply.len()).map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidInput, "reply longer than 65535 bytes")
                })?;
                let mut framed = length.to_be_bytes().to_vec();
                framed.extend_from_slice(&reply);
                stream.write_all(&framed)?;
            }
        }
    }

    /// Inserts the card into the vpcd reader at `host:port`: connects, then answers vpcd on a
    /// thread until [`InsertedCard::remove`] (or drop) closes the connection.
    pub fn insert(&self, host: &str, port: u16) -> io::Result<InsertedCard> {
        let stream = TcpStream::connect((host, port))?;
        stream.set_nodelay(true)?;
        let served = stream.try_clone()?;
        let card = self.clone();
        let thread = std::thread::Builder::new()
            .name("vcard".into())
            .spawn(move || card.serve(served))?;
        Ok(InsertedCard {
            stream,
            thread: Some(thread),
        })
    }
}

/// A [`VirtualCard`] in a reader; dropping it removes the card.
pub struct InsertedCard {
    stream: TcpStream,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl InsertedCard {
    /// Pulls the card out: closes the connection, which vpcd reports to pcscd as a removal.
    pub fn remove(self) {}
}

impl Drop for InsertedCard {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Hex digits to bytes; colons and spaces between them are allowed (`3B:8F:80 01`).
pub fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = text
        .bytes()
        .filter(|b| !matches!(b, b':' | b' ' | b'\t'))
        .collect();
    let pairs = digits.chunks_exact(2);
    if digits.is_empty() || !pairs.remainder().is_empty() {
        return Err(format!(
            "{text:?}: expected an even, non-zero number of hex digits"
        ));
    }
    pairs
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| format!("{text:?}: not hex"))
        })
        .collect()
}

#[allow(dead_code)] // When tests include this file, they use the card, not the command.
mod cli {
    use super::{parse_hex, PivApplet, VirtualCard};

    /// Bytes given in hex on the command line (one value, not a list of bytes to clap).
    #[derive(Debug, Clone)]
    pub struct Hex(pub Vec<u8>);

    impl std::str::FromStr for Hex {
        type Err = String;

        fn from_str(text: &str) -> Result<Self, String> {
            parse_hex(text).map(Hex)
        }
    }

    /// A virtual smart card in a vpcd reader (vsmartcard-vpcd, under pcscd): it stays inserted
    /// until this process ends. SIGTERM or SIGINT (Ctrl-C) pulls it out.
    #[derive(Debug, clap::Parser)]
    #[command(name = "vcard")]
    pub struct Cli {
        /// The reader's port: 35963 is "Virtual PCD 00 00", 35964 "Virtual PCD 00 01"
        /// (/etc/reader.conf.d/vpcd).
        #[arg(long, default_value_t = 35963)]
        pub port: u16,
        /// Where pcscd (with vpcd loaded) runs.
        #[arg(long, default_value = "127.0.0.1")]
        pub host: String,
        /// The card's answer to reset, in hex (default: a MIFARE Classic 1K behind a
        /// contactless reader).
        #[arg(long, default_value = "3B8F8001804F0CA000000306030001000000006A")]
        pub atr: Hex,
        /// The card's UID, in hex, returned for GET DATA (FF CA 00 00 00). Without it the card
        /// answers 6D 00, like a contact card, and its token is named by its ATR.
        #[arg(long)]
        pub uid: Option<Hex>,
        /// Give the card a PIV application whose card authentication key (P-256, PKCS#8 DER)
        /// is in this file; the file is made with a new key when it does not exist. Without
        /// it the card is a memory card that cannot prove who it is.
        #[arg(long, value_name = "FILE")]
        pub piv_key: Option<std::path::PathBuf>,
    }

    impl Cli {
        pub fn card(&self) -> Result<VirtualCard, String> {
            Ok(VirtualCard {
                atr: self.atr.0.clone(),
                uid: self.uid.as_ref().map(|uid| uid.0.clone()),
                piv: self
                    .piv_key
                    .as_deref()
                    .map(PivApplet::load_or_create)
                    .transpose()?,
            })
        }
    }
}

#[allow(dead_code)]
fn main() -> std::process::ExitCode {
    use clap::Parser;
    let cli = cli::Cli::parse();
    match run(&cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("vcard: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[allow(dead_code)]
fn run(cli: &cli::Cli) -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};

    let card = cli.card()?;
    let stream = TcpStream::connect((cli.host.as_str(), cli.port)).map_err(|error| {
        format!(
            "cannot reach the vpcd reader at {}:{}: {error} (is pcscd running, with vsmartcard-vpcd installed?)",
            cli.host, cli.port
        )
    })?;
    let _ = stream.set_nodelay(true);
    let served = stream
        .try_clone()
        .map_err(|error| format!("cannot share the connection: {error}"))?;
    println!("inserted");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the async runtime: {error}"))?;
    runtime.block_on(async move {
        let mut term = signal(SignalKind::terminate())
            .map_err(|error| format!("cannot catch SIGTERM: {error}"))?;
        let mut int = signal(SignalKind::interrupt())
            .map_err(|error| format!("cannot catch SIGINT: {error}"))?;
        let mut serving = tokio::task::spawn_blocking(move || card.serve(QuickAck(served)));
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
            served = &mut serving => {
                return match served {
                    Ok(Ok(())) => {
                        println!("removed: the reader closed the connection");
                        Ok(())
                    }
                    Ok(Err(error)) => Err(format!("connection to the reader broke: {error}")),
                    Err(error) => Err(format!("card thread failed: {error}")),
                };
            }
        }
        // Closing the connection is pulling the card out; the serving thread then sees the end.
        let _ = stream.shutdown(Shutdown::Both);
        let _ = serving.await;
        println!("removed");
        Ok(())
    })
}

/// vpcd writes a message's length and its body in two writes without TCP_NODELAY: with the
/// kernel's delayed ACK the body then waits ~40 ms for the ACK of the length, on every APDU.
/// Acknowledging at once (TCP_QUICKACK, re-armed after every read since the kernel drops it)
/// gives the virtual card the round trip of a card in a local reader.
struct QuickAck(TcpStream);

impl QuickAck {
    fn rearm(&self) {
        use std::os::fd::AsRawFd;
        let on: libc::c_int = 1;
        // SAFETY: a valid socket and a pointer to an int of the given size.
        unsafe {
            libc::setsockopt(
                self.0.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_QUICKACK,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
}

impl Read for QuickAck {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.rearm();
        let n = self.0.read(buf)?;
        self.rearm();
        Ok(n)
    }
}

impl Write for QuickAck {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(uid: Option<&[u8]>) -> VirtualCard {
        VirtualCard::memory(vec![0x3B, 0x02, 0x14, 0x50], uid.map(<[u8]>::to_vec))
    }

    #[test]
    fn answers() {
        let with_uid = card(Some(&[0x04, 0xA1]));
        assert_eq!(
            with_uid.answer(&[GET_ATR]),
            Some(vec![0x3B, 0x02, 0x14, 0x50])
        );
        assert_eq!(with_uid.answer(&[POWER_ON]), None);
        assert_eq!(with_uid.answer(&[RESET]), None);
        assert_eq!(
            with_uid.answer(&[0xFF, 0xCA, 0x00, 0x00, 0x00]),
            Some(vec![0x04, 0xA1, 0x90, 0x00])
        );
        assert_eq!(
            card(None).answer(&[0xFF, 0xCA, 0x00, 0x00, 0x00]),
            Some(vec![0x6D, 0x00])
        );
        assert_eq!(
            with_uid.answer(&[0x00, 0xA4, 0x04, 0x00]),
            Some(vec![0x6D, 0x00])
        );
    }

    #[test]
    fn piv_needs_selecting_and_signs_digests() {
        let piv = PivApplet::generate().expect("key");
        let card = VirtualCard {
            piv: Some(piv.clone()),
            ..card(None)
        };
        let mut session = CardSession::default();
        let get_cert = [
            0x00, 0xCB, 0x3F, 0xFF, 0x05, 0x5C, 0x03, 0x5F, 0xC1, 0x01, 0x00,
        ];
        assert_eq!(
            card.answer_in(&mut session, &get_cert),
            Some(vec![0x6D, 0x00])
        );
        let select = [
            0x00, 0xA4, 0x04, 0x00, 0x09, 0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00,
            0x00,
        ];
        let selected = card.answer_in(&mut session, &select).expect("answer");
        assert_eq!(selected[selected.len() - 2..], [0x90, 0x00]);
        // The certificate comes in 256-byte pieces.
        let mut object = Vec::new();
        let mut reply = card.answer_in(&mut session, &get_cert).expect("answer");
        loop {
            let (data, sw) = reply.split_at(reply.len() - 2);
            object.extend_from_slice(data);
            if sw[0] != 0x61 {
                assert_eq!(sw, [0x90, 0x00]);
                break;
            }
            reply = card
                .answer_in(&mut session, &[0x00, 0xC0, 0x00, 0x00, sw[1]])
                .expect("answer");
        }
        assert_eq!(object, piv.certificate_object());
        let mut apdu = vec![0x00, 0x87, 0x11, 0x9E, 38, 0x7C, 36, 0x82, 0x00, 0x81, 0x20];
        apdu.extend_from_slice(&[7; 32]);
        apdu.push(0);
        let signed = card.answer_in(&mut session, &apdu).expect("answer");
        assert_eq!(signed[0], 0x7C);
        assert_eq!(signed[signed.len() - 2..], [0x90, 0x00]);
        // A memory card has no PIV application to select.
        assert_eq!(
            super::VirtualCard::memory(vec![0x3B, 0], None).answer(&select),
            Some(vec![0x6A, 0x82])
        );
    }

    #[test]
    fn serves_framed_messages_until_eof() {
        let input = [
            &[0x00, 0x01, POWER_ON][..],
            &[0x00, 0x01, GET_ATR],
            &[0x00, 0x05, 0xFF, 0xCA, 0x00, 0x00, 0x00],
        ]
        .concat();
        let mut stream = Duplex {
            input: io::Cursor::new(input),
            output: Vec::new(),
        };
        card(Some(&[0x04])).serve(&mut stream).expect("served");
        assert_eq!(
            stream.output,
            [0x00, 0x04, 0x3B, 0x02, 0x14, 0x50, 0x00, 0x03, 0x04, 0x90, 0x00]
        );
    }

    #[test]
    fn command_line() {
        use clap::{CommandFactory, Parser};
        cli::Cli::command().debug_assert();
        let parsed = cli::Cli::try_parse_from(["vcard", "--atr", "3B021450", "--uid", "04:A1"])
            .expect("valid command line");
        assert_eq!(parsed.port, 35963);
        assert_eq!(
            parsed.card().expect("card"),
            VirtualCard::memory(vec![0x3B, 0x02, 0x14, 0x50], Some(vec![0x04, 0xA1]))
        );
        let default = cli::Cli::try_parse_from(["vcard"]).expect("defaults");
        let card = default.card().expect("card");
        assert_eq!(card.atr.len(), 20);
        assert_eq!(card.uid, None);
        assert_eq!(card.piv, None);
        assert!(cli::Cli::try_parse_from(["vcard", "--uid", "0"]).is_err());
    }

    #[test]
    fn hex() {
        assert_eq!(parse_hex("3B:8f 00"), Ok(vec![0x3B, 0x8F, 0x00]));
        assert!(parse_hex("3B8").is_err());
        assert!(parse_hex("").is_err());
        assert!(parse_hex("zz").is_err());
        assert!(parse_hex("éé").is_err());
    }

    struct Duplex {
        input: io::Cursor<Vec<u8>>,
        output: Vec<u8>,
    }

    impl Read for &mut Duplex {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.input.read(buf)
        }
    }

    impl Write for &mut Duplex {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.output.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
}
