//! `wradm`, the real binary, against a stand-in for wrsrvd's admin socket: a thread that takes
//! one connection, records the request and answers a fixed reply. (The daemon's own end-to-end
//! test talks to a real wrsrvd.)

use std::{
    io::{Read, Write},
    os::unix::net::UnixListener,
    path::{Path, PathBuf},
    process::{Command, Output},
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde_json::Value;
use wayray_protocol::{
    framing,
    sessions::{
        parse_session_id, AdminReply, AdminRequest, ApplianceAuthState, ApplianceInfo,
        KnownApplianceInfo, PoolServerInfo, SessionInfo, SessionKind, SessionState,
    },
    FrameReader,
};

/// How long the stand-in waits for wradm to connect before giving up (so a broken test fails
/// instead of hanging).
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(30);

/// Ages in the replies are whole minutes or hours, so a slow wradm start still prints the same.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

fn alice(now: u64) -> SessionInfo {
    SessionInfo {
        id: 0x0123_4567_89ab_cdef,
        kind: SessionKind::User,
        state: SessionState::Active,
        user: Some("alice".into()),
        tokens: vec![
            "pcsc:3b8f8001:04a2b3c4".into(),
            "mac:52:54:00:12:34:56".into(),
        ],
        appliance: Some(3),
        pid: Some(4242),
        wayland_display: Some("wayland-3".into()),
        created_ms: now - 5 * 60_000,
        changed_ms: now - 10 * 60_000,
    }
}

fn greeter(now: u64) -> SessionInfo {
    SessionInfo {
        id: 0xfedc_ba98_7654_3210,
        kind: SessionKind::Greeter,
        state: SessionState::Suspended,
        user: None,
        tokens: vec![],
        appliance: None,
        pid: None,
        wayland_display: None,
        created_ms: now - 3 * 3_600_000,
        changed_ms: now - 3 * 3_600_000,
    }
}

fn appliances(now: u64) -> Vec<ApplianceInfo> {
    vec![
        ApplianceInfo {
            id: 3,
            remote: "127.0.0.1:5555".into(),
            client_name: "wrclient 0.1.0".into(),
            token: Some("pcsc:3b8f8001:04a2b3c4".into()),
            session: Some(0x0123_4567_89ab_cdef),
            screen: (1920, 1080),
            connected_ms: now - 42 * 60_000,
        },
        ApplianceInfo {
            id: 7,
            remote: "[::1]:6000".into(),
            client_name: "wrclient 0.2.0".into(),
            token: None,
            session: None,
            screen: (1280, 800),
            connected_ms: now - 2 * 60_000,
        },
    ]
}

/// A socket in a fresh directory, served by a thread that answers one request with `reply`
/// (or, with `None`, reads the request and never answers).
struct FakeDaemon {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    thread: JoinHandle<Option<AdminRequest>>,
}

impl FakeDaemon {
    fn start(reply: Option<AdminReply>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("admin.sock");
        let listener = UnixListener::bind(&socket).expect("bind admin socket");
        listener.set_nonblocking(true).expect("nonblocking");
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            let mut stream = loop {
                match listener.accept() {
                    Ok((stream, _)) => break stream,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if start.elapsed() > ACCEPT_TIMEOUT {
                            return None;
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            };
            stream.set_nonblocking(false).expect("blocking stream");
            stream
                .set_read_timeout(Some(ACCEPT_TIMEOUT))
                .expect("read timeout");
            let mut reader = FrameReader::new(1 << 16);
            let mut buf = [0u8; 1024];
            let request = loop {
                if let Some(request) = reader.next::<AdminRequest>().expect("framed request") {
                    break request;
                }
                let n = stream.read(&mut buf).expect("read request");
                assert!(n > 0, "wradm hung up before its request");
                reader.push(&buf[..n]);
            };
            match reply {
                Some(reply) => {
                    let bytes = framing::encode(&reply).expect("encode reply");
                    stream.write_all(&bytes).expect("write reply");
                }
                // Hold the connection until wradm gives up and closes it.
                None => while matches!(stream.read(&mut buf), Ok(n) if n > 0) {},
            }
            Some(request)
        });
        Self {
            _dir: dir,
            socket,
            thread,
        }
    }

    /// Runs wradm with `args` against this socket; returns its output and what it asked.
    fn run(self, args: &[&str]) -> (Output, AdminRequest) {
        let output = wradm(Some(&self.socket), args);
        let request = self
            .thread
            .join()
            .expect("fake daemon thread")
            .unwrap_or_else(|| panic!("wradm never connected: {}", describe(&output)));
        (output, request)
    }
}

fn wradm(socket: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wradm"));
    cmd.env_remove("WAYRAY_ADMIN_SOCKET")
        .env_remove("WAYRAY_SERVER");
    if let Some(socket) = socket {
        cmd.arg("--socket").arg(socket);
    }
    cmd.args(args).output().expect("run wradm")
}

fn describe(output: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "{}", describe(output));
    String::from_utf8(output.stdout.clone()).expect("utf-8 stdout")
}

fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// A session back from `wradm --json` output.
fn session_from_json(v: &Value) -> SessionInfo {
    let text = |key: &str| v[key].as_str().map(str::to_owned);
    SessionInfo {
        id: parse_session_id(v["id"].as_str().expect("id")).expect("hex id"),
        kind: SessionKind::parse(v["kind"].as_str().expect("kind")).expect("known kind"),
        state: SessionState::parse(v["state"].as_str().expect("state")).expect("known state"),
        user: text("user"),
        tokens: v["tokens"]
            .as_array()
            .expect("tokens array")
            .iter()
            .map(|t| t.as_str().expect("token string").to_owned())
            .collect(),
        appliance: v["appliance"].as_u64(),
        pid: v["pid"].as_u64().map(|p| p as u32),
        wayland_display: text("wayland_display"),
        created_ms: v["created_ms"].as_u64().expect("created_ms"),
        changed_ms: v["changed_ms"].as_u64().expect("changed_ms"),
    }
}

#[test]
fn sessions_prints_a_table_with_every_session() {
    let now = now_ms();
    let daemon = FakeDaemon::start(Some(AdminReply::Sessions(vec![alice(now), greeter(now)])));
    let (output, request) = daemon.run(&["sessions"]);
    assert_eq!(request, AdminRequest::ListSessions);
    let out = stdout(&output);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(
        words(lines[0]),
        [
            "ID",
            "KIND",
            "STATE",
            "USER",
            "TOKENS",
            "APPLIANCE",
            "PID",
            "AGE"
        ]
    );
    assert_eq!(
        words(lines[1]),
        [
            "0123456789abcdef",
            "user",
            "active",
            "alice",
            "pcsc:3b8f8001:04a2b3c4,mac:52:54:00:12:34:56",
            "3",
            "4242",
            "5m"
        ]
    );
    assert_eq!(
        words(lines[2]),
        [
            "fedcba9876543210",
            "greeter",
            "suspended",
            "-",
            "-",
            "-",
            "-",
            "3h"
        ]
    );
    // Columns line up: every row starts its STATE cell where the header does.
    let col = lines[0].find("STATE").expect("STATE header");
    assert_eq!(&lines[1][col..col + 6], "active");
    assert_eq!(&lines[2][col..col + 9], "suspended");
}

#[test]
fn sessions_json_round_trips_every_field() {
    let now = now_ms();
    let sessions = vec![alice(now), greeter(now)];
    let daemon = FakeDaemon::start(Some(AdminReply::Sessions(sessions.clone())));
    let (output, request) = daemon.run(&["sessions", "--json"]);
    assert_eq!(request, AdminRequest::ListSessions);
    let json: Value = serde_json::from_str(&stdout(&output)).expect("valid JSON");
    let back: Vec<SessionInfo> = json
        .as_array()
        .expect("a JSON array")
        .iter()
        .map(session_from_json)
        .collect();
    assert_eq!(back, sessions);
    assert_eq!(json[0]["id"], "0123456789abcdef");
    assert_eq!(json[1]["user"], Value::Null);
}

#[test]
fn show_prints_every_field_of_the_session() {
    let now = now_ms();
    let session = alice(now);
    let daemon = FakeDaemon::start(Some(AdminReply::Session(session.clone())));
    let (output, request) = daemon.run(&["show", "0123456789abcdef"]);
    assert_eq!(request, AdminRequest::ShowSession(session.id));
    let out = stdout(&output);
    let fields: Vec<(&str, &str)> = out
        .lines()
        .map(|l| {
            let (k, v) = l.split_once(':').expect("key: value");
            (k, v.trim())
        })
        .collect();
    let created = format!("{} (5m ago)", session.created_ms);
    let changed = format!("{} (10m ago)", session.changed_ms);
    assert_eq!(
        fields,
        [
            ("id", "0123456789abcdef"),
            ("kind", "user"),
            ("state", "active"),
            ("user", "alice"),
            ("tokens", "pcsc:3b8f8001:04a2b3c4,mac:52:54:00:12:34:56"),
            ("appliance", "3"),
            ("pid", "4242"),
            ("wayland_display", "wayland-3"),
            ("created_ms", created.as_str()),
            ("changed_ms", changed.as_str()),
        ]
    );
}

#[test]
fn show_json_round_trips_and_short_ids_are_accepted() {
    let session = greeter(now_ms());
    let daemon = FakeDaemon::start(Some(AdminReply::Session(session.clone())));
    // Leading zeros may be left out, as with any hex number.
    let (output, request) = daemon.run(&["show", "--json", "FEDCBA9876543210"]);
    assert_eq!(request, AdminRequest::ShowSession(session.id));
    let json: Value = serde_json::from_str(&stdout(&output)).expect("valid JSON");
    assert_eq!(session_from_json(&json), session);
}

#[test]
fn detach_and_kill_send_their_request() {
    for (cmd, expected, said) in [
        ("detach", AdminRequest::Detach(0xab), "detached"),
        ("kill", AdminRequest::Kill(0xab), "killed"),
    ] {
        let daemon = FakeDaemon::start(Some(AdminReply::Done));
        let (output, request) = daemon.run(&[cmd, "00000000000000ab"]);
        assert_eq!(request, expected);
        assert_eq!(
            stdout(&output),
            format!("{said} session 00000000000000ab\n")
        );
    }
}

#[test]
fn connections_prints_a_table_and_json() {
    let now = now_ms();
    let daemon = FakeDaemon::start(Some(AdminReply::Appliances(appliances(now))));
    let (output, request) = daemon.run(&["connections"]);
    assert_eq!(request, AdminRequest::ListAppliances);
    let out = stdout(&output);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(
        words(lines[0]),
        [
            "ID",
            "REMOTE",
            "CLIENT",
            "TOKEN",
            "SESSION",
            "SCREEN",
            "CONNECTED"
        ]
    );
    assert_eq!(
        words(lines[1]),
        [
            "3",
            "127.0.0.1:5555",
            "wrclient",
            "0.1.0",
            "pcsc:3b8f8001:04a2b3c4",
            "0123456789abcdef",
            "1920x1080",
            "42m"
        ]
    );
    assert_eq!(
        words(lines[2]),
        [
            "7",
            "[::1]:6000",
            "wrclient",
            "0.2.0",
            "-",
            "-",
            "1280x800",
            "2m"
        ]
    );

    let expected = appliances(now);
    let daemon = FakeDaemon::start(Some(AdminReply::Appliances(expected.clone())));
    let (output, request) = daemon.run(&["connections", "--json"]);
    assert_eq!(request, AdminRequest::ListAppliances);
    let json: Value = serde_json::from_str(&stdout(&output)).expect("valid JSON");
    let back: Vec<ApplianceInfo> = json
        .as_array()
        .expect("a JSON array")
        .iter()
        .map(|v| ApplianceInfo {
            id: v["id"].as_u64().expect("id"),
            remote: v["remote"].as_str().expect("remote").into(),
            client_name: v["client_name"].as_str().expect("client_name").into(),
            token: v["token"].as_str().map(Into::into),
            session: v["session"]
                .as_str()
                .map(|s| parse_session_id(s).expect("hex id")),
            screen: (
                v["screen"]["width"].as_u64().expect("width") as u32,
                v["screen"]["height"].as_u64().expect("height") as u32,
            ),
            connected_ms: v["connected_ms"].as_u64().expect("connected_ms"),
        })
        .collect();
    assert_eq!(back, expected);
}

fn known(now: u64) -> Vec<KnownApplianceInfo> {
    vec![
        KnownApplianceInfo {
            fingerprint: format!("0123456789abcdef{}", "0".repeat(48)),
            state: ApplianceAuthState::Approved,
            first_seen_ms: now - 3 * 3_600_000,
            last_seen_ms: now - 2 * 60_000,
            last_address: Some("10.0.0.5:40000".into()),
            client_name: Some("wrclient 0.1.0".into()),
            connections: vec![3],
        },
        KnownApplianceInfo {
            fingerprint: format!("fedcba9876543210{}", "1".repeat(48)),
            state: ApplianceAuthState::Pending,
            first_seen_ms: now - 5 * 60_000,
            last_seen_ms: now - 5 * 60_000,
            last_address: None,
            client_name: None,
            connections: vec![],
        },
    ]
}

#[test]
fn appliances_lists_known_appliances_as_a_table_and_json() {
    let now = now_ms();
    let daemon = FakeDaemon::start(Some(AdminReply::KnownAppliances(known(now))));
    let (output, request) = daemon.run(&["appliances"]);
    assert_eq!(request, AdminRequest::ListKnownAppliances);
    let out = stdout(&output);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        words(lines[0]),
        [
            "ID",
            "STATE",
            "FIRST",
            "LAST",
            "ADDRESS",
            "CLIENT",
            "CONNECTIONS"
        ]
    );
    assert_eq!(
        words(lines[1]),
        [
            "0123456789abcdef",
            "approved",
            "3h",
            "2m",
            "10.0.0.5:40000",
            "wrclient",
            "0.1.0",
            "3"
        ]
    );
    assert_eq!(
        words(lines[2]),
        ["fedcba9876543210", "pending", "5m", "5m", "-", "-", "-"]
    );

    let daemon = FakeDaemon::start(Some(AdminReply::KnownAppliances(known(now))));
    let (output, _) = daemon.run(&["appliances", "--json"]);
    let json: Value = serde_json::from_str(&stdout(&output)).expect("valid JSON");
    assert_eq!(json[0]["id"], "0123456789abcdef");
    assert_eq!(json[0]["fingerprint"], known(now)[0].fingerprint.as_str());
    assert_eq!(json[0]["state"], "approved");
    assert_eq!(json[0]["connected"], true);
    assert_eq!(json[1]["connected"], false);
    assert_eq!(json[1]["last_address"], Value::Null);
}

#[test]
fn approve_and_revoke_send_the_id_and_say_what_was_done() {
    let now = now_ms();
    for (cmd, id, expected) in [
        (
            "approve",
            "0123456789ABCDEF",
            AdminRequest::ApproveAppliance("0123456789abcdef".into()),
        ),
        (
            "revoke",
            "01234567",
            AdminRequest::RevokeAppliance("01234567".into()),
        ),
    ] {
        let daemon = FakeDaemon::start(Some(AdminReply::KnownAppliance(known(now).remove(0))));
        let (output, request) = daemon.run(&["appliances", cmd, id]);
        assert_eq!(request, expected);
        assert_eq!(
            stdout(&output),
            format!("{cmd}d appliance 0123456789abcdef (1 connection(s))\n")
        );
    }
    // Not an id: refused before any connection.
    for bad in ["0123456", "xyz01234", ""] {
        let output = wradm(
            Some(Path::new("/nonexistent/admin.sock")),
            &["appliances", "approve", bad],
        );
        assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
        assert!(String::from_utf8_lossy(&output.stderr).contains("is not an appliance id"));
    }
}

#[test]
fn server_list_prints_the_pool_and_drain_names_the_server() {
    let servers = vec![
        PoolServerInfo {
            name: "alpha".into(),
            address: "10.0.0.1:7390".into(),
            fingerprint: "ab".repeat(32),
            capacity: 40,
            sessions: 12,
            cpu_permille: 375,
            memory_used: 3 << 30,
            memory_total: 16 << 30,
            draining: false,
            this_server: true,
        },
        PoolServerInfo {
            name: "beta".into(),
            address: "10.0.0.2:7390".into(),
            fingerprint: "cd".repeat(32),
            capacity: 20,
            sessions: 0,
            cpu_permille: 5,
            memory_used: 1 << 30,
            memory_total: 8 << 30,
            draining: true,
            this_server: false,
        },
    ];
    let daemon = FakeDaemon::start(Some(AdminReply::PoolServers(servers.clone())));
    let (output, request) = daemon.run(&["server", "list"]);
    assert_eq!(request, AdminRequest::PoolServers);
    let out = stdout(&output);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        words(lines[0]),
        ["NAME", "ADDRESS", "SESSIONS", "CAPACITY", "CPU", "MEMORY", "DRAINING"]
    );
    assert_eq!(
        words(lines[1]),
        [
            "alpha",
            "*",
            "10.0.0.1:7390",
            "12",
            "40",
            "37.5%",
            "3072/16384",
            "MiB",
            "no"
        ]
    );
    assert_eq!(
        words(lines[2]),
        [
            "beta",
            "10.0.0.2:7390",
            "0",
            "20",
            "0.5%",
            "1024/8192",
            "MiB",
            "yes"
        ]
    );

    let daemon = FakeDaemon::start(Some(AdminReply::PoolServers(servers.clone())));
    let (output, _) = daemon.run(&["server", "list", "--json"]);
    let back: Vec<PoolServerInfo> = serde_json::from_str(&stdout(&output)).expect("JSON");
    assert_eq!(back, servers);

    let daemon = FakeDaemon::start(Some(AdminReply::Done));
    let (output, request) = daemon.run(&["server", "drain", "beta"]);
    assert_eq!(
        request,
        AdminRequest::Drain {
            server: "beta".into(),
            drain: true
        }
    );
    assert!(stdout(&output).contains("draining server beta"));
    let daemon = FakeDaemon::start(Some(AdminReply::Done));
    let (_, request) = daemon.run(&["server", "undrain", "beta"]);
    assert_eq!(
        request,
        AdminRequest::Drain {
            server: "beta".into(),
            drain: false
        }
    );
}

#[test]
fn an_error_reply_is_printed_on_stderr_with_status_1() {
    let daemon = FakeDaemon::start(Some(AdminReply::Error("no such session".into())));
    let (output, request) = daemon.run(&["kill", "00000000000000ab"]);
    assert_eq!(request, AdminRequest::Kill(0xab));
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(output.stdout.is_empty(), "{}", describe(&output));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("no such session") && err.contains("00000000000000ab"),
        "{err}"
    );
}

#[test]
fn a_missing_socket_says_wrsrvd_is_not_running_with_status_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("admin.sock");
    let output = wradm(Some(&socket), &["sessions"]);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("is wrsrvd running?") && err.contains(&socket.display().to_string()),
        "{err}"
    );
}

#[test]
fn a_socket_nobody_listens_on_is_refused_with_status_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("admin.sock");
    // The file stays after the listener is gone, as after a crashed daemon.
    drop(UnixListener::bind(&socket).expect("bind"));
    let output = wradm(Some(&socket), &["appliances"]);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("is wrsrvd running?") && err.contains("connection refused"),
        "{err}"
    );
}

#[test]
fn the_socket_can_come_from_the_environment() {
    let daemon = FakeDaemon::start(Some(AdminReply::Sessions(vec![])));
    let output = Command::new(env!("CARGO_BIN_EXE_wradm"))
        .env("WAYRAY_ADMIN_SOCKET", &daemon.socket)
        .args(["sessions", "--json"])
        .output()
        .expect("run wradm");
    let request = daemon.thread.join().expect("fake daemon thread");
    assert_eq!(request, Some(AdminRequest::ListSessions));
    assert_eq!(stdout(&output).trim(), "[]");
}

#[test]
fn a_bad_session_id_is_a_usage_error() {
    // No daemon: the id is refused before any connection.
    for bad in ["zz", "0123456789abcdef0", ""] {
        let output = wradm(Some(Path::new("/nonexistent/admin.sock")), &["show", bad]);
        assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
        let err = String::from_utf8_lossy(&output.stderr);
        assert!(err.contains("is not a session id"), "{err}");
        assert!(!err.contains("is wrsrvd running"), "{err}");
    }
}

#[test]
fn a_daemon_that_does_not_answer_times_out_with_status_1() {
    let daemon = FakeDaemon::start(None);
    let started = Instant::now();
    let (output, request) = daemon.run(&["--timeout", "0.3", "sessions"]);
    assert_eq!(request, AdminRequest::ListSessions);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("did not answer within"), "{err}");
}

#[test]
fn help_explains_every_subcommand() {
    let output = wradm(None, &["--help"]);
    let out = stdout(&output);
    for word in [
        "sessions",
        "show",
        "detach",
        "kill",
        "appliances",
        "connections",
        "server",
        "--socket",
        "WAYRAY_ADMIN_SOCKET",
        "--server",
        "WAYRAY_SERVER",
        "--token-file",
        "Exit status",
    ] {
        assert!(out.contains(word), "--help lacks {word}:\n{out}");
    }
}
