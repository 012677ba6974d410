//! Appliance identity end to end, real `wrsrvd` and real `wrclient` over QUIC: each appliance
//! authenticates with the certificate it made on its first start (mutual TLS), and the server's
//! `appliance_auth` policy decides who gets a session. `required`: an unknown appliance fails the
//! handshake and never sees a frame. `enrol`: it waits, listed as pending, until `wradm
//! appliances approve` gives it its session on the same connection; `revoke` ends it. The
//! pseudo-token is the certificate's, and the identity survives a restart of the appliance.
//!
//! And 0-RTT: a known appliance reconnecting resumes its TLS session and sends its Hello as early
//! data. Through a UDP relay in the test, the early Hello of a handshake that never completes
//! moves nothing, and a recorded first flight replayed later from another socket neither.

mod support;

use std::{
    collections::HashMap,
    net::{SocketAddr, UdpSocket},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use serde_json::Value;
use support::*;

/// A `wrclient` running in the background (headless), its log in a file.
struct Appliance {
    child: Child,
    log: PathBuf,
    frames: PathBuf,
}

impl Appliance {
    fn start(dir: &TempDir, name: &str, server: SocketAddr, extra: &[&str]) -> Appliance {
        let log = dir.path(&format!("{name}.log"));
        let frames = dir.path(&format!("{name}-frames.log"));
        let child = Command::new(wrclient())
            .arg("--server")
            .arg(server.to_string())
            .arg("--state-dir")
            .arg(dir.path(&format!("{name}-state")))
            .arg("--frame-log")
            .arg(&frames)
            .args(["--exit-after", "120"])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start wrclient");
        Appliance { child, log, frames }
    }

    fn log(&self) -> String {
        strip_ansi(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    fn frames(&self) -> usize {
        read_frame_log(&self.frames).len()
    }

    fn wait_log(&self, needle: &str, timeout: Duration) {
        let start = Instant::now();
        while !self.log().contains(needle) {
            assert!(
                start.elapsed() < timeout,
                "timed out waiting for {needle:?} in the appliance's log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_frames(&self, n: usize, timeout: Duration) {
        let start = Instant::now();
        while self.frames() < n {
            assert!(
                start.elapsed() < timeout,
                "timed out waiting for {n} frames on the appliance:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, as a shutdown; waits for it to exit.
    fn stop(mut self) -> String {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
        self.log()
    }
}

impl Drop for Appliance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn json(text: &str) -> Vec<Value> {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("wradm printed no JSON ({e}):\n{text}"))
}

/// `wradm appliances --json`.
fn known(server: &Server) -> Vec<Value> {
    json(&server.wradm(&["appliances", "--json"]))
}

/// Waits until `wradm appliances` lists exactly one appliance passing `test`; returns it.
fn wait_known(server: &Server, what: &str, test: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let list = known(server);
        if let Some(a) = list.iter().find(|a| test(a)) {
            return a.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no appliance {what} in {list:#?}\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `wradm connections --json`.
fn connections(server: &Server) -> Vec<Value> {
    json(&server.wradm(&["connections", "--json"]))
}

fn audit_events(server: &Server) -> Vec<String> {
    let db = server.dir.join("server-state").join("sessions.db");
    let conn = rusqlite::Connection::open(db).expect("open the store");
    let mut stmt = conn
        .prepare("SELECT event || ' ' || COALESCE(appliance, '') || ' ' || COALESCE(detail, '') FROM audit ORDER BY seq")
        .unwrap();
    stmt.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn required_refuses_an_unknown_appliance_in_the_handshake_until_it_is_approved() {
    let dir = TempDir::new("auth-required");
    let server = Server::start(
        &dir,
        ServerOpts {
            appliance_auth: Some("required"),
            ..Default::default()
        },
    );
    // Unknown: the handshake fails, and it says why and by which id to approve it.
    let unknown = Appliance::start(&dir, "a", server.listen, &[]);
    unknown.wait_log("wradm appliances approve", Duration::from_secs(30));
    let pending = wait_known(&server, "pending", |a| a["state"] == "pending");
    let id = pending["id"].as_str().unwrap().to_owned();
    assert!(
        unknown
            .log()
            .contains(&format!("does not admit this appliance (id {id})")),
        "{}",
        unknown.log()
    );
    // It keeps trying (an administrator may approve it), never getting a frame.
    std::thread::sleep(Duration::from_secs(2));
    let log = unknown.stop();
    assert_eq!(
        read_frame_log(&dir.path("a-frames.log")).len(),
        0,
        "a refused appliance saw a frame:\n{log}"
    );
    assert!(!log.contains("welcomed"), "{log}");
    assert!(
        server
            .log()
            .contains("refusing an appliance that is not approved"),
        "{}",
        server.log()
    );
    assert!(
        audit_events(&server)
            .iter()
            .any(|e| e.starts_with("appliance_refused") && e.contains(&id)),
        "{:#?}",
        audit_events(&server)
    );

    // Approved, the same appliance (restarted: the same identity from its state directory)
    // gets its session.
    let out = server.wradm(&["appliances", "approve", &id]);
    assert!(out.contains(&format!("approved appliance {id}")), "{out}");
    let again = Appliance::start(&dir, "a", server.listen, &["--exit-after-frames", "1"]);
    again.wait_frames(1, Duration::from_secs(30));
    assert!(again.log().contains(&format!("id=\"{id}\"")) || again.log().contains(&id));
    let list = known(&server);
    assert_eq!(
        list.len(),
        1,
        "the restarted appliance is the same one: {list:#?}"
    );
    assert_eq!(list[0]["state"], "approved");
}

#[test]
fn enrol_waits_for_approval_then_attaches_on_the_same_connection_and_revoke_ends_it() {
    let dir = TempDir::new("auth-enrol");
    let server = Server::start(
        &dir,
        ServerOpts {
            appliance_auth: Some("enrol"),
            ..Default::default()
        },
    );
    // It names another appliance's pseudo-token: the server uses its certificate's instead.
    let appliance = Appliance::start(
        &dir,
        "a",
        server.listen,
        &["--token", "pseudo.525400123456"],
    );
    appliance.wait_log("Waiting for approval", Duration::from_secs(30));
    let pending = wait_known(&server, "pending and connected", |a| {
        a["state"] == "pending" && a["connected"] == true
    });
    let id = pending["id"].as_str().unwrap().to_owned();
    assert!(
        appliance
            .log()
            .contains(&format!("wradm appliances approve {id}")),
        "the appliance shows the notice with its id:\n{}",
        appliance.log()
    );
    let table = server.wradm(&["appliances"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("pending")),
        "{table}"
    );
    // The pseudo-token is the certificate's.
    let conns = connections(&server);
    assert_eq!(conns.len(), 1, "{conns:#?}");
    assert_eq!(conns[0]["token"], format!("pseudo.{id}"), "{conns:#?}");
    assert!(conns[0]["session"].is_null(), "{conns:#?}");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(appliance.frames(), 0, "{}", appliance.log());

    // Approved: the session comes on the same connection, no reconnect.
    server.wradm(&["appliances", "approve", &id[..8]]);
    appliance.wait_frames(1, Duration::from_secs(30));
    let log = appliance.log();
    assert!(!log.contains("attempt=2"), "it reconnected:\n{log}");
    assert_eq!(known(&server)[0]["state"], "approved");

    // Revoked: the connection ends at once, and it is refused from then on.
    server.wradm(&["appliances", "revoke", &id]);
    appliance.wait_log(
        "this appliance was revoked by an administrator",
        Duration::from_secs(10),
    );
    appliance.wait_log("an administrator revoked it", Duration::from_secs(30));
    let list = known(&server);
    assert_eq!(list[0]["state"], "revoked", "{list:#?}");
    assert_eq!(list[0]["connected"], false, "{list:#?}");
    let audit = audit_events(&server);
    for event in [
        "appliance_pending",
        "appliance_approved",
        "appliance_revoked",
        "appliance_refused",
    ] {
        assert!(
            audit
                .iter()
                .any(|e| e.starts_with(event) && e.contains(&id)),
            "no {event} in {audit:#?}"
        );
    }
    appliance.stop();
}

// ---- 0-RTT ------------------------------------------------------------------------------------

/// One client of the relay and the datagrams of its first flight.
type Flight = (SocketAddr, Vec<Vec<u8>>);

/// A UDP relay between appliances and the server. It records each client's first flight (what
/// the client sends before the server first answers it), and can withhold everything a new
/// client sends after its first flight, so the server holds an early Hello whose handshake never
/// completes.
struct Relay {
    addr: SocketAddr,
    flights: Arc<Mutex<Vec<Flight>>>,
    withhold: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Relay {
    fn start(server: SocketAddr) -> Relay {
        let front = UdpSocket::bind("127.0.0.1:0").unwrap();
        front
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = front.local_addr().unwrap();
        let flights = Arc::new(Mutex::new(Vec::new()));
        let withhold = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (f, w, s) = (flights.clone(), withhold.clone(), stop.clone());
        std::thread::spawn(move || {
            struct Client {
                upstream: Arc<UdpSocket>,
                answered: Arc<AtomicBool>,
                flight: usize,
                withheld: bool,
            }
            let front = Arc::new(front);
            let mut clients: HashMap<SocketAddr, Client> = HashMap::new();
            let mut buf = vec![0u8; 65536];
            while !s.load(Ordering::Relaxed) {
                let Ok((n, from)) = front.recv_from(&mut buf) else {
                    continue;
                };
                let client = clients.entry(from).or_insert_with(|| {
                    let upstream = Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
                    upstream.connect(server).unwrap();
                    upstream
                        .set_read_timeout(Some(Duration::from_millis(50)))
                        .unwrap();
                    let answered = Arc::new(AtomicBool::new(false));
                    let (up, ans, fr, st) =
                        (upstream.clone(), answered.clone(), front.clone(), s.clone());
                    std::thread::spawn(move || {
                        let mut buf = vec![0u8; 65536];
                        while !st.load(Ordering::Relaxed) {
                            if let Ok(n) = up.recv(&mut buf) {
                                ans.store(true, Ordering::SeqCst);
                                let _ = fr.send_to(&buf[..n], from);
                            }
                        }
                    });
                    let mut flights = f.lock().unwrap();
                    flights.push((from, Vec::new()));
                    Client {
                        upstream,
                        answered,
                        flight: flights.len() - 1,
                        withheld: w.load(Ordering::SeqCst),
                    }
                });
                let answered = client.answered.load(Ordering::SeqCst);
                if !answered {
                    f.lock().unwrap()[client.flight].1.push(buf[..n].to_vec());
                } else if client.withheld {
                    continue;
                }
                let _ = client.upstream.send(&buf[..n]);
            }
        });
        Relay {
            addr,
            flights,
            withhold,
            stop,
        }
    }

    /// The first flight of the `n`th client (in order of their first datagram).
    fn flight(&self, n: usize) -> Vec<Vec<u8>> {
        self.flights.lock().unwrap()[n].1.clone()
    }

    fn clients(&self) -> usize {
        self.flights.lock().unwrap().len()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Which connection (`wradm connections` id) shows the shared session now.
fn shown_on(server: &Server) -> Option<u64> {
    let sessions = json(&server.wradm(&["sessions", "--json"]));
    assert_eq!(sessions.len(), 1, "{sessions:#?}");
    sessions[0]["appliance"].as_u64()
}

fn wait_shown_on(server: &Server, test: impl Fn(Option<u64>) -> bool, what: &str) -> Option<u64> {
    let start = Instant::now();
    loop {
        let now = shown_on(server);
        if test(now) {
            return now;
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "the session is not {what} (it is on {now:?}):\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The `wradm connections` id of the connection named `client` (its Hello's client name).
fn connection_of(server: &Server, client_prefix: &str) -> Option<u64> {
    connections(server)
        .iter()
        .filter(|c| {
            c["client_name"]
                .as_str()
                .is_some_and(|n| n.starts_with(client_prefix))
        })
        .filter_map(|c| c["id"].as_u64())
        .max()
}

#[test]
fn early_data_moves_no_session_until_the_handshake_completes_and_a_replay_moves_nothing() {
    let dir = TempDir::new("auth-0rtt");
    let server = Server::start(&dir, ServerOpts::default());
    let relay = Relay::start(server.listen);
    // The appliance reaches the server only through the relay.
    let appliance = Appliance::start(&dir, "a", relay.addr, &[]);
    appliance.wait_frames(1, Duration::from_secs(30));
    let first = wait_shown_on(&server, |s| s.is_some(), "shown");
    // A worker thread keeps the raw peer's connection alive between the test's awaits.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();

    // 1. The next client of the relay sends its first flight and nothing more: the server
    //    gets the Initial and the 0-RTT Hello, never the client's Finished.
    relay.withhold.store(true, Ordering::SeqCst);
    let clients = relay.clients();
    // Another appliance takes the shared session: the real one is told it was replaced and
    // reconnects (through the relay), resuming its TLS session with an early Hello.
    let _raw = rt.block_on(RawAppliance::attach(server.listen, "raw-b"));
    let b = wait_shown_on(&server, |s| s.is_some() && s != first, "on raw-b");
    let start = Instant::now();
    while relay.clients() == clients {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no reconnect:\n{}",
            appliance.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    relay.withhold.store(false, Ordering::SeqCst);
    // The server read that early Hello...
    server.wait_log("early_data=true", 1, Duration::from_secs(20));
    // ...and held it until the handshake failed: the session never left raw-b.
    server.wait_log(
        "the TLS handshake did not complete",
        1,
        Duration::from_secs(30),
    );
    assert_eq!(
        shown_on(&server),
        b,
        "an unconfirmed handshake moved the session"
    );

    // 2. The appliance tries again (its attempt timed out), resumes with 0-RTT through the
    //    relay, completes the handshake and takes the session back.
    server.wait_log("resumed_with_early_data=true", 1, Duration::from_secs(40));
    let real = wait_shown_on(&server, |s| s.is_some() && s != b, "back on the appliance");
    assert_eq!(real, connection_of(&server, "wrclient"));
    let resumed = relay.clients() - 1;
    let flight = relay.flight(resumed);
    assert!(!flight.is_empty());
    // Replayed while that connection lives, its datagrams belong to it and change nothing; the
    // replay below comes once it is gone, so the server takes it for a new connection.
    let _raw_c = rt.block_on(RawAppliance::attach(server.listen, "raw-c"));
    let c = wait_shown_on(&server, |s| s.is_some() && s != real, "on raw-c");
    let real = wait_shown_on(&server, |s| s.is_some() && s != c, "back on the appliance");
    assert_eq!(real, connection_of(&server, "wrclient"));
    std::thread::sleep(Duration::from_secs(1));
    let attached_before = server.log().matches(" attached").count();
    let connected_before = server.log().matches("appliance connected").count();
    let ended_before = server.log().matches("appliance connection ended").count();

    // 3. The first flight of a connection that has ended, replayed from another socket: its
    //    ticket was used, so there is no early data, and no handshake completes. Nothing moves.
    let replayer = UdpSocket::bind("127.0.0.1:0").unwrap();
    for datagram in &flight {
        replayer.send_to(datagram, server.listen).unwrap();
    }
    // The server's idle timeout (5 s) ends whatever the replay started.
    std::thread::sleep(Duration::from_secs(7));
    assert_eq!(shown_on(&server), real, "a replay moved the session");
    assert_eq!(
        server.log().matches("appliance connected").count(),
        connected_before,
        "a replay reached the daemon:\n{}",
        server.log()
    );
    assert_eq!(server.log().matches(" attached").count(), attached_before);
    // The replay did reach the server, as a connection that ended without a handshake.
    let log = server.log();
    assert_eq!(
        log.matches("appliance connection ended").count(),
        ended_before + 1,
        "{}",
        log.lines().rev().take(15).collect::<Vec<_>>().join("\n")
    );
    let frames = appliance.frames();
    std::thread::sleep(Duration::from_millis(500));
    assert!(appliance.frames() >= frames);
    let log = appliance.stop();
    assert!(
        log.contains("early_data_accepted=true"),
        "the appliance never resumed with 0-RTT:\n{log}"
    );
}
