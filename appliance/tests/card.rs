//! The card reader against the real thing: pcscd with the vpcd virtual reader driver
//! (vsmartcard-vpcd), and our virtual card (`examples/vcard.rs`) in it.
//!
//! Needs `pcscd` and `vsmartcard-vpcd` installed (apt). When pcscd is not running (no
//! /run/pcscd/pcscd.comm that answers), the tests start it, `setsid --fork pcscd -f -a`, logging to
//! /tmp/wayray-test-pcscd.log, and leave it running for the next test. The reader used is
//! "Virtual PCD 00 00" (port 35963). Both virtual readers are shared by the whole machine, so every
//! test here has `pcsc` in its name and `.config/nextest.toml` runs such tests one at a time; under
//! plain `cargo test` a lock in this file keeps them apart within this binary.
//!
//! The module's own unit tests (token format, route parsing, the tracker, …) run here too: the
//! module is included by path, so this test binary does not depend on the rest of the appliance.

#[path = "../src/card/mod.rs"]
#[allow(dead_code, unused_imports)]
mod card;

#[path = "../examples/vcard.rs"]
#[allow(dead_code)]
mod vcard;

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use card::{CardReader, CardWatcher};
use tokio::sync::watch;
use vcard::VirtualCard;

const READER: &str = "Virtual PCD 00 00";
const PORT: u16 = 35963;
const PCSCD_SOCKET: &str = "/run/pcscd/pcscd.comm";
/// pcscd polls the vpcd reader; ENVIRONMENT.md says it notices within 1–3 s.
const NOTICE: Duration = Duration::from_secs(10);

/// A MIFARE Classic 1K behind a contactless reader, and a contact card (Schlumberger Multiflex).
const MIFARE_ATR: &str = "3B8F8001804F0CA000000306030001000000006A";
const CONTACT_ATR: &str = "3B021450";

fn bytes(hex: &str) -> Vec<u8> {
    vcard::parse_hex(hex).expect("test hex")
}

/// The token the protocol documents: `atr` + the first 8 hex digits of xxh3-64(ATR), `.`, id.
fn expected_token(atr_hex: &str, id: &str) -> String {
    let hash = xxhash_rust::xxh3::xxh3_64(&bytes(atr_hex));
    format!("atr{}.{id}", &format!("{hash:016x}")[..8])
}

/// One pcsc test at a time in this process (nextest runs each in its own process anyway).
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_test_writer()
        .try_init();
}

/// Starts pcscd if it is not running, and waits until it has the vpcd readers.
fn ensure_pcscd() {
    init_tracing();
    if UnixStream::connect(PCSCD_SOCKET).is_err() {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open("/tmp/wayray-test-pcscd.log")
            .expect("pcscd log file");
        let stderr = log.try_clone().expect("pcscd log file");
        // `setsid --fork`: pcscd leaves this process's session and is not its child, so it
        // outlives the test and leaves no zombie.
        let status = Command::new("setsid")
            .args(["--fork", "pcscd", "-f", "-a"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .status()
            .expect("cannot start pcscd (apt-get install pcscd vsmartcard-vpcd)");
        assert!(status.success(), "setsid pcscd: {status}");
        let started = Instant::now();
        while UnixStream::connect(PCSCD_SOCKET).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "pcscd did not open {PCSCD_SOCKET} in 10 s; see /tmp/wayray-test-pcscd.log"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        println!("started pcscd in {:?}", started.elapsed());
    }
    let started = Instant::now();
    loop {
        let readers = pcsc::Context::establish(pcsc::Scope::User)
            .and_then(|context| context.list_readers_owned())
            .unwrap_or_default();
        if readers.iter().any(|name| name.to_string_lossy() == READER) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "pcscd has no reader {READER:?} (is vsmartcard-vpcd installed?): {readers:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the token satisfies `want`; returns how long that took.
fn wait_for(
    token: &watch::Receiver<Option<String>>,
    what: &str,
    want: impl Fn(Option<&str>) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        if want(token.borrow().as_deref()) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < NOTICE,
            "no {what} within {NOTICE:?}; token is {:?}",
            *token.borrow()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A watcher on the test reader, once the reader is empty (a card from an earlier test may
/// still be on its way out).
fn watcher() -> (CardWatcher, watch::Receiver<Option<String>>) {
    let watcher = CardWatcher::start(Some(READER.to_owned())).expect("watcher");
    let token = watcher.subscribe();
    wait_for(&token, "empty reader", |token| token.is_none());
    (watcher, token)
}

#[test]
fn pcsc_card_with_uid_is_its_atr_type_and_uid() {
    let _serial = serial();
    ensure_pcscd();
    let (_watcher, token) = watcher();
    let card = VirtualCard::memory(bytes(MIFARE_ATR), Some(bytes("04A1B2C3D4E5F6")));
    let expected = expected_token(MIFARE_ATR, "04a1b2c3d4e5f6");

    let inserted = card.insert("127.0.0.1", PORT).expect("insert the card");
    let took = wait_for(&token, "insertion", |token| token.is_some());
    println!("insertion noticed after {took:?}");
    assert_eq!(token.borrow().as_deref(), Some(expected.as_str()));

    inserted.remove();
    let took = wait_for(&token, "removal", |token| token.is_none());
    println!("removal noticed after {took:?}");
}

#[test]
fn pcsc_card_without_uid_is_named_by_its_atr() {
    let _serial = serial();
    ensure_pcscd();
    let (_watcher, token) = watcher();
    let card = VirtualCard::memory(bytes(CONTACT_ATR), None);
    let inserted = card.insert("127.0.0.1", PORT).expect("insert the card");
    wait_for(&token, "insertion", |token| token.is_some());
    assert_eq!(
        token.borrow().as_deref(),
        Some(expected_token(CONTACT_ATR, "3b021450").as_str())
    );
    drop(inserted);
    wait_for(&token, "removal", |token| token.is_none());
}

/// The example binary: `cargo build --examples` (or a `cargo test`/`nextest` run of the whole
/// package) builds it into target/<profile>/examples. Built here only when missing or older than
/// its source, since that build can take minutes (it resolves features for another set of targets).
fn vcard_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/card-HASH → target/<profile>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary in target/<profile>/deps");
    let binary = profile_dir.join("examples").join("vcard");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/vcard.rs");
    let modified = |path: &Path| {
        std::fs::metadata(path)
            .and_then(|meta| meta.modified())
            .ok()
    };
    if matches!((modified(&binary), modified(&source)), (Some(built), Some(written)) if built >= written)
    {
        return binary;
    }
    let profile = match profile_dir.file_name().and_then(|name| name.to_str()) {
        Some("debug") | None => "dev",
        Some(other) => other,
    };
    let target_dir = profile_dir.parent().expect("target directory");
    println!("building {} (missing or stale)", binary.display());
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["build", "-p", "wayray-appliance", "--example", "vcard"])
        .args(["--profile", profile])
        .env("CARGO_TARGET_DIR", target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo build --example vcard");
    assert!(status.success(), "cargo build --example vcard failed");
    binary
}

#[test]
fn pcsc_vcard_process_killed_is_removed() {
    let _serial = serial();
    let binary = vcard_binary();
    ensure_pcscd();
    let (_watcher, token) = watcher();

    let mut vcard = Command::new(&binary)
        .args(["--port", &PORT.to_string(), "--host", "127.0.0.1"])
        .args(["--atr", MIFARE_ATR, "--uid", "04:a1:b2:c3"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start vcard");
    let mut stdout = BufReader::new(vcard.stdout.take().expect("vcard stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("vcard says inserted");
    assert_eq!(line.trim(), "inserted");
    let took = wait_for(&token, "insertion", |token| token.is_some());
    println!("insertion noticed after {took:?} (vcard process)");
    assert_eq!(
        token.borrow().as_deref(),
        Some(expected_token(MIFARE_ATR, "04a1b2c3").as_str())
    );

    let kill = Command::new("kill")
        .args(["-TERM", &vcard.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let took = wait_for(&token, "removal", |token| token.is_none());
    println!("removal noticed {took:?} after SIGTERM (vcard process)");
    let status = vcard.wait().expect("vcard exits");
    assert!(status.success(), "vcard exit: {status}");
    line.clear();
    stdout.read_line(&mut line).expect("vcard says removed");
    assert_eq!(line.trim(), "removed");
}

#[test]
fn pcsc_other_clients_using_the_card_are_no_event() {
    let _serial = serial();
    ensure_pcscd();
    let (_watcher, mut token) = watcher();
    let card = VirtualCard::memory(bytes(MIFARE_ATR), Some(bytes("0102030405060708")));
    let _inserted = card.insert("127.0.0.1", PORT).expect("insert the card");
    wait_for(&token, "insertion", |token| token.is_some());
    let expected = token.borrow_and_update().clone();

    // Another PC/SC client connects, shared and then exclusively, and talks to the card: pcscd
    // reports each of these as a state change of the reader, none of which is a card event.
    let context = pcsc::Context::establish(pcsc::Scope::User).expect("pcsc context");
    let reader = std::ffi::CString::new(READER).expect("reader name");
    for share in [pcsc::ShareMode::Shared, pcsc::ShareMode::Exclusive] {
        let connected = context
            .connect(&reader, share, pcsc::Protocols::ANY)
            .expect("connect to the card");
        let mut buffer = [0; pcsc::MAX_BUFFER_SIZE];
        let response = connected
            .transmit(&[0xFF, 0xCA, 0x00, 0x00, 0x00], &mut buffer)
            .expect("GET DATA");
        assert_eq!(response, [1, 2, 3, 4, 5, 6, 7, 8, 0x90, 0x00]);
        std::thread::sleep(Duration::from_millis(300));
        connected
            .disconnect(pcsc::Disposition::LeaveCard)
            .map_err(|(_, error)| error)
            .expect("disconnect");
    }
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !token.has_changed().expect("watcher alive"),
        "a client using the card was taken for a card event: {:?}",
        *token.borrow()
    );
    assert_eq!(*token.borrow(), expected);
}

#[test]
fn pcsc_swapped_card_gives_the_new_token() {
    let _serial = serial();
    ensure_pcscd();
    let (_watcher, token) = watcher();
    let first = VirtualCard::memory(bytes(MIFARE_ATR), Some(bytes("11111111")));
    let second = VirtualCard::memory(bytes(CONTACT_ATR), None);
    let inserted = first
        .insert("127.0.0.1", PORT)
        .expect("insert the first card");
    wait_for(&token, "first card", |token| token.is_some());
    assert_eq!(
        token.borrow().as_deref(),
        Some(expected_token(MIFARE_ATR, "11111111").as_str())
    );
    // Out and the other one in at once: faster than pcscd polls, so it may never see the
    // reader empty.
    inserted.remove();
    let _inserted = second
        .insert("127.0.0.1", PORT)
        .expect("insert the second card");
    let expected = expected_token(CONTACT_ATR, "3b021450");
    let took = wait_for(&token, "second card", |token| {
        token == Some(expected.as_str())
    });
    println!("swap noticed after {took:?}");
}

/// Two cards of one model share their ATR: a quick swap shows only in the UID (and in pcscd's
/// event counter, if pcscd noticed the gap at all).
#[test]
fn pcsc_swapped_card_of_the_same_model_gives_the_new_uid() {
    let _serial = serial();
    ensure_pcscd();
    let (_watcher, token) = watcher();
    let card = |uid: &str| VirtualCard::memory(bytes(MIFARE_ATR), Some(bytes(uid)));
    let inserted = card("AAAA0001")
        .insert("127.0.0.1", PORT)
        .expect("insert the first card");
    wait_for(&token, "first card", |token| token.is_some());
    assert_eq!(
        token.borrow().as_deref(),
        Some(expected_token(MIFARE_ATR, "aaaa0001").as_str())
    );
    inserted.remove();
    let _inserted = card("AAAA0002")
        .insert("127.0.0.1", PORT)
        .expect("insert the second card");
    let expected = expected_token(MIFARE_ATR, "aaaa0002");
    let took = wait_for(&token, "second card", |token| {
        token == Some(expected.as_str())
    });
    println!("same-model swap noticed after {took:?}");
}

/// A watcher that starts while pcscd still shows a card that has just left (it cannot be read),
/// and then another card of the same model goes in: pcscd may never report a change (it missed
/// the gap) and may report the new card's ATR zero-padded; the token must still be the new card's.
#[test]
fn pcsc_card_swapped_while_unreadable_is_read_again() {
    let _serial = serial();
    ensure_pcscd();
    let card = |uid: &str| VirtualCard::memory(bytes(MIFARE_ATR), Some(bytes(uid)));
    let (first_watcher, token) = watcher();
    let first = card("BBBB0001")
        .insert("127.0.0.1", PORT)
        .expect("insert the first card");
    wait_for(&token, "first card", |token| token.is_some());
    drop(first_watcher);

    first.remove();
    let (_watcher, token) = {
        let watcher = CardWatcher::start(Some(READER.to_owned())).expect("watcher");
        let token = watcher.subscribe();
        (watcher, token)
    };
    let _second = card("BBBB0002")
        .insert("127.0.0.1", PORT)
        .expect("insert the second card");
    let expected = expected_token(MIFARE_ATR, "bbbb0002");
    let took = wait_for(&token, "second card", |token| {
        token == Some(expected.as_str())
    });
    println!("card behind an unreadable one seen after {took:?}");
}

#[test]
fn pcsc_unnamed_reader_follows_the_first_one() {
    let _serial = serial();
    ensure_pcscd();
    let readers = pcsc::Context::establish(pcsc::Scope::User)
        .and_then(|context| context.list_readers_owned())
        .expect("list readers");
    assert_eq!(
        readers
            .first()
            .map(|name| name.to_string_lossy().into_owned()),
        Some(READER.to_owned()),
        "this test expects the vpcd reader to be pcscd's first"
    );
    let watcher = CardWatcher::start(None).expect("watcher");
    let token = watcher.subscribe();
    wait_for(&token, "empty reader", |token| token.is_none());
    let card = VirtualCard::memory(bytes(MIFARE_ATR), Some(bytes("CAFE")));
    let _inserted = card.insert("127.0.0.1", PORT).expect("insert the card");
    wait_for(&token, "insertion", |token| token.is_some());
    assert_eq!(
        watcher.token().as_deref(),
        Some(expected_token(MIFARE_ATR, "cafe").as_str())
    );
}

#[test]
fn pcsc_card_in_at_start_is_known_when_start_returns() {
    let _serial = serial();
    ensure_pcscd();
    let (first, token) = watcher();
    let card = VirtualCard::memory(bytes(MIFARE_ATR), Some(bytes("0A0B0C0D")));
    let _inserted = card.insert("127.0.0.1", PORT).expect("insert the card");
    // Once pcscd has seen the card, a fresh watcher must know it when `start` returns: the
    // appliance's first Hello carries it.
    wait_for(&token, "insertion", |token| token.is_some());
    drop(first);
    let started = Instant::now();
    let watcher = CardWatcher::start(Some(READER.to_owned())).expect("watcher");
    println!("start with a card in took {:?}", started.elapsed());
    assert_eq!(
        watcher.token().as_deref(),
        Some(expected_token(MIFARE_ATR, "0a0b0c0d").as_str())
    );
}

#[test]
fn pcsc_watcher_stops_when_dropped() {
    let _serial = serial();
    ensure_pcscd();
    let (watcher, mut token) = watcher();
    // Let the thread settle into its wait in pcscd.
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    drop(watcher);
    let took = started.elapsed();
    println!("drop took {took:?}");
    assert!(took < Duration::from_millis(1500), "drop took {took:?}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    assert!(
        runtime.block_on(token.changed()).is_err(),
        "the token channel closes with the watcher"
    );
}

/// pcscd not there: `start` says so clearly, `start_waiting` waits and follows once it is.
///
/// pcsclite reads `PCSCLITE_CSOCK_NAME` once per process, so this runs in a child process of its
/// own (the ignored test below) with the variable pointing at a socket that does not exist yet.
/// "pcscd starts" is then that path becoming a symlink to the real pcscd's socket.
#[test]
fn pcsc_pcscd_starting_late_is_waited_for() {
    let _serial = serial();
    ensure_pcscd();
    let dir = tempfile::tempdir().expect("temporary directory");
    let socket = dir.path().join("pcscd.comm");
    let output = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "pcsc_child_pcscd_starting_late",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env("PCSCLITE_CSOCK_NAME", &socket)
        .output()
        .expect("run the child test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}\n{stderr}");
    assert!(output.status.success(), "child test failed");
    assert!(stdout.contains("1 passed"), "child test did not run");
}

#[test]
#[ignore = "run by pcsc_pcscd_starting_late_is_waited_for, with PCSCLITE_CSOCK_NAME set"]
fn pcsc_child_pcscd_starting_late() {
    init_tracing();
    let socket = PathBuf::from(std::env::var_os("PCSCLITE_CSOCK_NAME").expect("socket path"));

    let error = match CardWatcher::start(Some(READER.to_owned())) {
        Ok(_) => panic!("pcscd reachable at {}", socket.display()),
        Err(error) => error.to_string(),
    };
    println!("error: {error}");
    assert!(error.contains("cannot reach pcscd"), "{error}");
    assert!(error.contains(&socket.display().to_string()), "{error}");

    let watcher = CardWatcher::start_waiting(Some(READER.to_owned())).expect("watcher");
    let token = watcher.subscribe();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(*token.borrow(), None);

    std::os::unix::fs::symlink(PCSCD_SOCKET, &socket).expect("symlink to pcscd's socket");
    let card = VirtualCard::memory(bytes(MIFARE_ATR), Some(bytes("5A5A5A5A")));
    let _inserted = card.insert("127.0.0.1", PORT).expect("insert the card");
    let took = wait_for(&token, "insertion after pcscd came", |token| {
        token.is_some()
    });
    println!("card seen {took:?} after pcscd appeared");
    assert_eq!(
        token.borrow().as_deref(),
        Some(expected_token(MIFARE_ATR, "5a5a5a5a").as_str())
    );
}
