//! A small PC/SC client for tests and benches, linked against the system's libpcsclite (so it
//! talks to whatever `PCSCLITE_CSOCK_NAME` names: a session's PC/SC socket, or pcscd).
//!
//! ```text
//! pcsc_probe readers                      one reader name per line
//! pcsc_probe wait                         waits for the first reader's state to change
//! pcsc_probe apdu HEX [--reader NAME] [--exclusive] [--transaction] [--repeat N] [--hold SECS]
//! ```
//! `apdu` connects to the reader (the first one unless named), prints `atr HEX`, sends the APDU
//! N times (default 1; each inside its own transaction with `--transaction`, as OpenSC does),
//! prints `response HEX` and `rtt_us MEDIAN MIN MAX` over the exchanges, holds the connection
//! SECS seconds, disconnects.

use std::ffi::CString;
use std::time::{Duration, Instant};

use pcsc::{Context, Disposition, Protocols, Scope, ShareMode, MAX_BUFFER_SIZE};

fn main() {
    if let Err(err) = run() {
        eprintln!("pcsc_probe: {err}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let context = Context::establish(Scope::User).map_err(|e| format!("establish: {e}"))?;
    let readers = match context.list_readers_owned() {
        Ok(readers) => readers,
        Err(pcsc::Error::NoReadersAvailable) => Vec::new(),
        Err(e) => return Err(format!("list readers: {e}")),
    };
    match args.first().map(String::as_str) {
        Some("readers") => {
            for reader in &readers {
                println!("{}", reader.to_string_lossy());
            }
            Ok(())
        }
        Some("wait") => {
            // Until the first reader's state changes (pcsc_scan's wait), however long it takes.
            let reader = readers.first().cloned().ok_or("no readers")?;
            let mut states = [pcsc::ReaderState::new(reader, pcsc::State::UNAWARE)];
            context
                .get_status_change(None, &mut states)
                .map_err(|e| format!("first look: {e}"))?;
            states[0].sync_current_state();
            println!("waiting");
            match context.get_status_change(None, &mut states) {
                Ok(()) => println!("changed {:?}", states[0].event_state()),
                Err(e) => println!("ended {e}"),
            }
            Ok(())
        }
        Some("apdu") => {
            let apdu = args.get(1).ok_or("apdu needs HEX")?;
            let apdu = unhex(apdu)?;
            let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1));
            let repeat: usize = flag("--repeat").map_or(Ok(1), |n| n.parse()).map_err(|e| format!("--repeat: {e}"))?;
            let hold: u64 = flag("--hold").map_or(Ok(0), |n| n.parse()).map_err(|e| format!("--hold: {e}"))?;
            let reader = match flag("--reader") {
                Some(name) => CString::new(name.as_str()).map_err(|e| e.to_string())?,
                None => readers.first().cloned().ok_or("no readers")?,
            };
            let mode = if args.iter().any(|a| a == "--exclusive") {
                ShareMode::Exclusive
            } else {
                ShareMode::Shared
            };
            let mut card = context
                .connect(&reader, mode, Protocols::ANY)
                .map_err(|e| format!("connect {}: {e}", reader.to_string_lossy()))?;
            let status = card.status2_owned().map_err(|e| format!("status: {e}"))?;
            println!("atr {}", hex(status.atr()));
            let in_transaction = args.iter().any(|a| a == "--transaction");
            let mut times = Vec::with_capacity(repeat);
            let mut buffer = [0u8; MAX_BUFFER_SIZE];
            let mut last = Vec::new();
            for _ in 0..repeat.max(1) {
                let started = Instant::now();
                if in_transaction {
                    let tx = card.transaction().map_err(|e| format!("begin transaction: {e}"))?;
                    last = tx
                        .transmit(&apdu, &mut buffer)
                        .map_err(|e| format!("transmit: {e}"))?
                        .to_vec();
                    tx.end(Disposition::LeaveCard)
                        .map_err(|(_, e)| format!("end transaction: {e}"))?;
                } else {
                    last = card
                        .transmit(&apdu, &mut buffer)
                        .map_err(|e| format!("transmit: {e}"))?
                        .to_vec();
                }
                times.push(started.elapsed().as_micros() as u64);
            }
            println!("response {}", hex(&last));
            times.sort_unstable();
            println!(
                "rtt_us {} {} {}",
                times[times.len() / 2],
                times[0],
                times[times.len() - 1]
            );
            std::thread::sleep(Duration::from_secs(hold));
            card.disconnect(Disposition::LeaveCard)
                .map_err(|(_, e)| format!("disconnect: {e}"))?;
            Ok(())
        }
        _ => Err("usage: pcsc_probe readers | wait | apdu HEX [--reader NAME] [--exclusive] [--transaction] [--repeat N] [--hold SECS]".into()),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn unhex(text: &str) -> Result<Vec<u8>, String> {
    let text: String = text.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    (0..text.len() / 2)
        .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|e| e.to_string()))
        .collect()
}
