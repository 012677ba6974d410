//! Starting real `wrsrvd` and `wrclient` processes for end-to-end tests.
//!
//! Each test gets its own temporary directory (state, runtime dir, logs) and its own ports and
//! Wayland socket, so tests run in parallel.

#![allow(dead_code)]

pub mod launcher;

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

pub fn wrsrvd() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_wrsrvd"))
}

/// `wrclient` lives in the same target directory; `scripts/test` builds all binaries first.
pub fn wrclient() -> PathBuf {
    let path = wrsrvd().with_file_name("wrclient");
    assert!(
        path.exists(),
        "{} not built: run `cargo build --workspace --bins` first (scripts/test does)",
        path.display()
    );
    path
}

pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let base = std::env::var_os("WAYRAY_TEST_TMP")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let dir = base.join(format!(
            "wayray-{tag}-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos() ^ (rand_u64() & 0xffff_ffff) as u128
        ));
        std::fs::create_dir_all(dir.join("run")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.join("run"), std::fs::Permissions::from_mode(0o700)).unwrap();
        Self(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("WAYRAY_KEEP_TMP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id() as u64);
    h.finish()
}

/// A running `wrsrvd`, killed with its clients when dropped.
pub struct Server {
    pub child: Child,
    pub listen: SocketAddr,
    pub wayland_display: String,
    pub dir: PathBuf,
    pub stderr: Arc<Mutex<String>>,
}

#[derive(Default)]
pub struct ServerOpts<'a> {
    pub spawn: &'a [&'a str],
    /// UDP address; default 127.0.0.1:0 (a free port).
    pub listen: Option<SocketAddr>,
    pub state_dir: Option<PathBuf>,
    pub extra: &'a [&'a str],
    /// `--launcher`: per-token sessions through wrsessd; no shared session, so no
    /// `WAYLAND_DISPLAY` line to wait for.
    pub launcher: bool,
    /// `--appliance-auth`: `open` unless a test says otherwise, so tests about other things
    /// need not approve their appliances (and raw test peers need no certificate).
    pub appliance_auth: Option<&'a str>,
}

impl Server {
    pub fn start(dir: &TempDir, opts: ServerOpts) -> Server {
        let socket = format!("wr-test-{}", dir.0.file_name().unwrap().to_string_lossy());
        let state = opts.state_dir.unwrap_or_else(|| dir.path("server-state"));
        let mut cmd = Command::new(wrsrvd());
        let listen = opts
            .listen
            .map(|a| a.to_string())
            .unwrap_or_else(|| "127.0.0.1:0".into());
        cmd.args(["--listen", &listen, "--socket", &socket])
            .arg("--state-dir")
            .arg(&state)
            .arg("--frame-log")
            .arg(dir.path("server-frames.log"))
            .args(["--appliance-auth", opts.appliance_auth.unwrap_or("open")])
            .args(opts.extra)
            .env("XDG_RUNTIME_DIR", dir.path("run"))
            .env("RUST_LOG", "info,wrsrvd=debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        for s in opts.spawn {
            cmd.args(["--spawn", s]);
        }
        if opts.launcher {
            cmd.arg("--launcher");
        }
        let mut child = cmd.spawn().expect("start wrsrvd");
        let stderr = Arc::new(Mutex::new(String::new()));
        let err_pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err_pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&strip_ansi(&line));
                s.push('\n');
            }
        });
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let (mut listen, mut wayland) = (None, None);
        let mut line = String::new();
        while listen.is_none() || (wayland.is_none() && !opts.launcher) {
            line.clear();
            if out.read_line(&mut line).unwrap_or(0) == 0 {
                panic!(
                    "wrsrvd exited before it was ready:\n{}",
                    stderr.lock().unwrap()
                );
            }
            if let Some(v) = line.trim().strip_prefix("WAYRAY_LISTEN=") {
                listen = Some(v.parse().unwrap());
            }
            if let Some(v) = line.trim().strip_prefix("WAYLAND_DISPLAY=") {
                wayland = Some(v.to_string());
            }
        }
        Server {
            child,
            listen: listen.unwrap(),
            wayland_display: wayland.unwrap_or_default(),
            dir: dir.0.clone(),
            stderr,
        }
    }

    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until the server log has `n` lines containing `needle`.
    pub fn wait_log(&self, needle: &str, n: usize, timeout: Duration) {
        let start = Instant::now();
        while self.log().matches(needle).count() < n {
            if start.elapsed() > timeout {
                panic!(
                    "timed out waiting for {n}× {needle:?} in server log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A command with this server's Wayland environment.
    pub fn wayland_client(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("XDG_RUNTIME_DIR", self.dir.join("run"))
            .env("WAYLAND_DISPLAY", &self.wayland_display)
            .env_remove("DISPLAY");
        cmd
    }

    /// The shared session's audio directory (its PipeWire and pipewire-pulse sockets), from the
    /// log once its sound server is up.
    pub fn audio_dir(&self) -> PathBuf {
        self.wait_log(
            "the session's audio nodes are up",
            1,
            Duration::from_secs(30),
        );
        let log = self.log();
        let dir = log
            .lines()
            .filter(|l| l.contains("audio service started"))
            .find_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("dir=")))
            .unwrap_or_else(|| panic!("no audio directory in the log:\n{log}"));
        PathBuf::from(dir)
    }

    /// A command with the environment the shared session's own clients get for sound
    /// (`pw-play`, `paplay`, `pactl`, `pw-record` reach the session's PipeWire), plus Wayland's.
    pub fn audio_client(&self, program: &str) -> Command {
        let dir = self.audio_dir();
        let mut cmd = self.wayland_client(program);
        cmd.env("PIPEWIRE_RUNTIME_DIR", &dir).env(
            "PULSE_SERVER",
            format!("unix:{}/pulse/native", dir.display()),
        );
        cmd
    }

    /// Where the server mapped the `n`th toplevel (content top-left), from its log.
    pub fn mapped_at(&self, n: usize) -> (f64, f64) {
        let log = self.log();
        let line = log
            .lines()
            .filter(|l| l.contains("mapping toplevel"))
            .nth(n)
            .unwrap_or_else(|| panic!("no toplevel #{n} in log:\n{log}"));
        let field = |name: &str| -> f64 {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{name}=")))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {name}= in {line}"))
        };
        (field("x"), field("y"))
    }

    /// The daemon's admin socket (for `wradm --socket`).
    pub fn admin_socket(&self) -> PathBuf {
        self.dir.join("run").join("wayray").join("admin.sock")
    }

    /// Runs `wradm` against this server; fails the test unless it succeeds. Returns its stdout.
    pub fn wradm(&self, args: &[&str]) -> String {
        let out = Command::new(wrsrvd().with_file_name("wradm"))
            .arg("--socket")
            .arg(self.admin_socket())
            .args(args)
            .output()
            .expect("run wradm");
        assert!(
            out.status.success(),
            "wradm {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn frames(&self) -> Vec<FrameLine> {
        read_frame_log(&self.dir.join("server-frames.log"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // The whole process group: wrsrvd and the clients it spawned.
        let pgid = self.child.id() as i32;
        unsafe {
            libc::kill(-pgid, libc::SIGTERM);
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(3) {
            if !matches!(self.child.try_wait(), Ok(None)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameLine {
    pub seq: u64,
    pub digest: String,
    pub size: String,
}

pub fn read_frame_log(path: &Path) -> Vec<FrameLine> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some(FrameLine {
                seq: it.next()?.parse().ok()?,
                digest: it.next()?.to_string(),
                size: it.next()?.to_string(),
            })
        })
        .collect()
}

/// Runs `wrclient` against `server` to completion with the given extra flags.
pub fn run_appliance(dir: &TempDir, server: SocketAddr, extra: &[&str]) -> Output {
    let mut cmd = Command::new(wrclient());
    cmd.arg("--server")
        .arg(server.to_string())
        .arg("--state-dir")
        .arg(dir.path("appliance-state"))
        .arg("--frame-log")
        .arg(dir.path("appliance-frames.log"))
        .args(extra)
        .env("RUST_LOG", "info");
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start wrclient");
    wait_with_timeout(child, Duration::from_secs(60))
}

/// Writes `script` (an input script ending in `exit`) to `file` in `dir` and runs `wrclient`
/// with it against `server`, plus `extra` flags; fails the test with the appliance's log if
/// it does not succeed. Returns that log.
pub fn run_appliance_script(
    dir: &TempDir,
    server: &Server,
    file: &str,
    script: &str,
    extra: &[&str],
) -> String {
    let path = dir.path(file);
    std::fs::write(&path, script).unwrap();
    let mut args = vec![
        "--input-script",
        path.to_str().unwrap(),
        "--exit-after",
        "120",
    ];
    args.extend_from_slice(extra);
    let out = run_appliance(dir, server.listen, &args);
    let stderr = strip_ansi(&String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "wrclient failed:\n{stderr}");
    stderr
}

pub fn wait_with_timeout(mut child: Child, timeout: Duration) -> Output {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if start.elapsed() > timeout => {
                let _ = child.kill();
                break;
            }
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    child.wait_with_output().expect("collect output")
}

/// Decodes a PNG screenshot into (width, height, RGB bytes).
pub fn read_png_rgb(path: &Path) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    ));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    let rgb = match info.color_type {
        png::ColorType::Rgb => buf,
        png::ColorType::Rgba => buf
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect(),
        other => panic!("unexpected PNG colour type {other:?}"),
    };
    (info.width, info.height, rgb)
}

/// Connects with TLS verification off: this peer tests the server, not the certificate.
pub async fn raw_connect(addr: SocketAddr) -> quinn::Connection {
    #[derive(Debug)]
    struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);
    impl rustls::client::danger::ServerCertVerifier for AcceptAny {
        fn verify_server_cert(
            &self,
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &[rustls::pki_types::CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Err(rustls::Error::General("TLS 1.2 is not used".into()))
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    tls.alpn_protocols = vec![wayray_protocol::ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    endpoint
        .connect(addr, "wayray-server")
        .unwrap()
        .await
        .expect("QUIC handshake with wrsrvd")
}

/// A hand-driven appliance speaking the wire protocol directly, for tests that need to see or
/// withhold individual messages (acks, cursor updates) that `wrclient` handles by itself.
pub struct RawAppliance {
    pub conn: quinn::Connection,
    pub ctrl: quinn::SendStream,
    pub ctrl_recv: quinn::RecvStream,
    pub welcome: wayray_protocol::Welcome,
    display: quinn::RecvStream,
    display_reader: wayray_protocol::FrameReader,
    /// What arrived on the control stream after Welcome and is not read yet.
    ctrl_reader: wayray_protocol::FrameReader,
}

impl RawAppliance {
    /// Connects, says Hello for a 1280×800 screen, and waits for Welcome and the display stream.
    pub async fn attach(addr: SocketAddr, name: &str) -> RawAppliance {
        Self::attach_with_screen(addr, name, (1280, 800)).await
    }

    /// Like [`RawAppliance::attach`], for a screen of `screen` pixels.
    pub async fn attach_with_screen(
        addr: SocketAddr,
        name: &str,
        screen: (u32, u32),
    ) -> RawAppliance {
        Self::attach_with(addr, name, screen, Some(format!("pseudo.{name}"))).await
    }

    /// Like [`RawAppliance::attach`], presenting `token` in its Hello.
    pub async fn attach_with(
        addr: SocketAddr,
        name: &str,
        (screen_width, screen_height): (u32, u32),
        token: Option<String>,
    ) -> RawAppliance {
        use wayray_protocol::{
            framing, Capabilities, ClientControl, Encoding, FrameReader, Hello, ServerControl,
            StreamKind, DEFAULT_MAX_MESSAGE_LEN, PROTOCOL_VERSION,
        };
        let conn = raw_connect(addr).await;
        let (mut ctrl, mut ctrl_recv) = conn.open_bi().await.unwrap();
        let hello = ClientControl::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            client_name: name.into(),
            capabilities: Capabilities {
                screen_width,
                screen_height,
                physical_size: None,
                encodings: vec![Encoding::TilesV1],
                max_message_len: DEFAULT_MAX_MESSAGE_LEN,
                audio: Default::default(),
            },
            keymap: None,
            token,
        });
        ctrl.write_all(&framing::encode(&hello).unwrap())
            .await
            .unwrap();
        let mut reader = FrameReader::new(DEFAULT_MAX_MESSAGE_LEN);
        let welcome = loop {
            let chunk = ctrl_recv.read_chunk(1 << 16, true).await.unwrap().unwrap();
            reader.push(&chunk.bytes);
            match reader.next::<ServerControl>().unwrap() {
                Some(ServerControl::Welcome(welcome)) => break welcome,
                Some(other) => panic!("expected Welcome, got {other:?}"),
                None => {}
            }
        };
        let mut display = conn.accept_uni().await.unwrap();
        let mut kind = [0u8];
        display.read_exact(&mut kind).await.unwrap();
        assert_eq!(kind[0], StreamKind::Display as u8);
        RawAppliance {
            conn,
            ctrl,
            ctrl_recv,
            welcome,
            display,
            display_reader: FrameReader::new(DEFAULT_MAX_MESSAGE_LEN),
            ctrl_reader: reader,
        }
    }

    /// The next control message from the server, or `None` if none arrives within `wait`.
    pub async fn next_control(&mut self, wait: Duration) -> Option<wayray_protocol::ServerControl> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(msg) = self.ctrl_reader.next().unwrap() {
                return Some(msg);
            }
            match tokio::time::timeout_at(deadline.into(), self.ctrl_recv.read_chunk(1 << 16, true))
                .await
            {
                Ok(Ok(Some(chunk))) => self.ctrl_reader.push(&chunk.bytes),
                Ok(Ok(None)) | Ok(Err(_)) | Err(_) => return None,
            }
        }
    }

    /// The next message on the display stream, or `None` if none arrives before `deadline`.
    pub async fn next_display(
        &mut self,
        deadline: Instant,
    ) -> Option<wayray_protocol::DisplayMessage> {
        loop {
            if let Some(msg) = self.display_reader.next().unwrap() {
                return Some(msg);
            }
            match tokio::time::timeout_at(deadline.into(), self.display.read_chunk(1 << 20, true))
                .await
            {
                Ok(Ok(Some(chunk))) => self.display_reader.push(&chunk.bytes),
                Ok(Ok(None)) => return None,
                Ok(Err(err)) => panic!("display stream: {err}"),
                Err(_) => return None,
            }
        }
    }

    /// Every display message that arrives within `wait`.
    pub async fn display_for(&mut self, wait: Duration) -> Vec<wayray_protocol::DisplayMessage> {
        let deadline = Instant::now() + wait;
        let mut msgs = Vec::new();
        while let Some(msg) = self.next_display(deadline).await {
            msgs.push(msg);
        }
        msgs
    }

    /// Opens the input stream; send events on it with [`send_input`].
    pub async fn open_input(&mut self) -> quinn::SendStream {
        let mut input = self.conn.open_uni().await.unwrap();
        input
            .write_all(&[wayray_protocol::StreamKind::Input as u8])
            .await
            .unwrap();
        input
    }

    pub async fn send(&mut self, msg: &wayray_protocol::ClientControl) {
        self.ctrl
            .write_all(&wayray_protocol::framing::encode(msg).unwrap())
            .await
            .unwrap();
    }
}

pub async fn send_input(input: &mut quinn::SendStream, msg: &wayray_protocol::InputMessage) {
    input
        .write_all(&wayray_protocol::framing::encode(msg).unwrap())
        .await
        .unwrap();
}
