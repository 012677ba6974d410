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
}

/// vpcd control codes (1-byte messages).
const POWER_OFF: u8 = 0;
const POWER_ON: u8 = 1;
const RESET: u8 = 2;
const GET_ATR: u8 = 4;

const SW_OK: [u8; 2] = [0x90, 0x00];
const SW_INS_NOT_SUPPORTED: [u8; 2] = [0x6D, 0x00];

impl VirtualCard {
    /// The reply to one message from vpcd; `None` for messages that get none.
    pub fn answer(&self, message: &[u8]) -> Option<Vec<u8>> {
        match message {
            [] | [POWER_OFF] | [POWER_ON] | [RESET] => None,
            [GET_ATR] => Some(self.atr.clone()),
            [_] => None, // a control code vpcd does not define: nothing to say
            // GET DATA, P1 = 00 (UID), with or without Le.
            [0xFF, 0xCA, 0x00, 0x00] | [0xFF, 0xCA, 0x00, 0x00, _] => match &self.uid {
                Some(uid) => Some([uid.as_slice(), &SW_OK].concat()),
                None => Some(SW_INS_NOT_SUPPORTED.to_vec()),
            },
            _ => Some(SW_INS_NOT_SUPPORTED.to_vec()),
        }
    }

    /// Answers vpcd on `stream` until it closes the connection (`Ok`) or it breaks (`Err`).
    pub fn serve(&self, mut stream: impl Read + Write) -> io::Result<()> {
        loop {
            let mut length = [0; 2];
            match stream.read_exact(&mut length) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(error) => return Err(error),
            }
            let mut message = vec![0; usize::from(u16::from_be_bytes(length))];
            stream.read_exact(&mut message)?;
            if let Some(reply) = self.answer(&message) {
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
    use super::{parse_hex, VirtualCard};

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
    }

    impl Cli {
        pub fn card(&self) -> VirtualCard {
            VirtualCard {
                atr: self.atr.0.clone(),
                uid: self.uid.as_ref().map(|uid| uid.0.clone()),
            }
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

    let card = cli.card();
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
        let mut serving = tokio::task::spawn_blocking(move || card.serve(served));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn card(uid: Option<&[u8]>) -> VirtualCard {
        VirtualCard {
            atr: vec![0x3B, 0x02, 0x14, 0x50],
            uid: uid.map(<[u8]>::to_vec),
        }
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
            parsed.card(),
            VirtualCard {
                atr: vec![0x3B, 0x02, 0x14, 0x50],
                uid: Some(vec![0x04, 0xA1]),
            }
        );
        let default = cli::Cli::try_parse_from(["vcard"]).expect("defaults");
        assert_eq!(default.card().atr.len(), 20);
        assert_eq!(default.card().uid, None);
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
