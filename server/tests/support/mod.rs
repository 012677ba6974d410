//! Starting real `wrsrvd` and `wrclient` processes for end-to-end tests.
//!
//! Each test gets its own temporary directory (state, runtime dir, logs) and its own ports and
//! Wayland socket, so tests run in parallel.

#![allow(dead_code)]

pub mod etcd;
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
    /// The admin API's base URL (`WAYRAY_API=`), unless it was turned off.
    pub api: Option<String>,
    /// Its state directory (certificate, store, `api-token`).
    pub state: PathBuf,
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
        let state_dir = state.clone();
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
            // Terminals in the shared session (foot) run a plain sh, not the account's shell
            // and its rc files (root's ~/.bashrc here runs `pyenv init`, which can hang on a
            // lock another process left behind).
            .env("SHELL", "/bin/sh")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        for s in opts.spawn {
            cmd.args(["--spawn", s]);
        }
        // The admin API's default port would clash between tests running in parallel.
        if !opts.extra.contains(&"--api-listen") {
            cmd.args(["--api-listen", "127.0.0.1:0"]);
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
        let (mut listen, mut wayland, mut api) = (None, None, None);
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
            if let Some(v) = line.trim().strip_prefix("WAYRAY_API=") {
                api = Some(v.to_string());
            }
        }
        Server {
            child,
            listen: listen.unwrap(),
            wayland_display: wayland.unwrap_or_default(),
            dir: dir.0.clone(),
            stderr,
            api,
            state: state_dir,
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
            .env("SHELL", "/bin/sh")
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

    /// `GET /metrics` of the admin API, with the server's token; fails the test unless 200.
    pub fn metrics(&self) -> String {
        let api = self.api.as_ref().expect("the admin API is on");
        let token = std::fs::read_to_string(self.state.join("api-token")).expect("API token");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        let mut response = agent
            .get(format!("{api}/metrics"))
            .header("Authorization", format!("Bearer {}", token.trim()))
            .call()
            .expect("GET /metrics");
        response.body_mut().read_to_string().expect("metrics text")
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
        // A kept test directory (WAYRAY_KEEP_TMP) keeps the server's log too.
        if std::env::var_os("WAYRAY_KEEP_TMP").is_some() {
            let _ = std::fs::write(self.dir.join("server.log"), self.log());
        }
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

/// Every frame the appliance shows is one the server rendered, byte for byte, each once and in
/// increasing order.
pub fn assert_shown_frames_were_sent(sent: &[FrameLine], shown: &[FrameLine]) {
    let sent: std::collections::HashMap<u64, &FrameLine> =
        sent.iter().map(|f| (f.seq, f)).collect();
    for frame in shown {
        let expected = sent
            .get(&frame.seq)
            .unwrap_or_else(|| panic!("appliance shows frame {} the server never sent", frame.seq));
        assert_eq!(
            frame, *expected,
            "framebuffers differ at frame {}",
            frame.seq
        );
    }
    assert!(
        shown.windows(2).all(|w| w[0].seq < w[1].seq),
        "frames shown twice or out of order"
    );
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
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    // Like wrclient (appliance/src/transport.rs): the server sends no keep-alives of its own,
    // so a peer that only listens would hit its 5 s idle timeout.
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(Duration::from_secs(2)));
    config.transport_config(Arc::new(transport));
    endpoint.set_default_client_config(config);
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
            arrival: Default::default(),
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

/// An example client built next to the binaries (`cargo build -p wayray-server --examples`).
pub fn example(name: &str) -> PathBuf {
    let path = wrsrvd().with_file_name("examples").join(name);
    assert!(
        path.exists(),
        "{} not built: run `cargo build -p wayray-server --examples` (scripts/test does)",
        path.display()
    );
    path
}

/// A binary of this package built next to `wrsrvd` (a test names it by path, so it need not be
/// on `PATH`).
pub fn sibling_bin(name: &str) -> PathBuf {
    let path = wrsrvd().with_file_name(name);
    assert!(
        path.exists(),
        "{} not built: run `cargo build -p wayray-server --bins` (scripts/test does)",
        path.display()
    );
    path
}

/// The value of `name=` in a log line, without the quotes tracing puts around debug strings.
pub fn log_field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("{name}=");
    let start = line
        .match_indices(&key)
        .find(|(i, _)| *i == 0 || line.as_bytes()[i - 1] == b' ')
        .map(|(i, _)| i + key.len())?;
    let rest = &line[start..];
    if let Some(quoted) = rest.strip_prefix('"') {
        return quoted.split('"').next();
    }
    rest.split_whitespace().next()
}

/// One `wm window placed` line: where a render sequence of the window manager put a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub app_id: String,
    pub rect: Rect,
    pub visible: bool,
}

/// A rectangle in output pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x: i32,
    pub y: i32,
    pub w: i32,
    pub h: i32,
}

impl Rect {
    pub fn new(x: i32, y: i32, w: i32, h: i32) -> Self {
        Self { x, y, w, h }
    }
}

impl std::fmt::Display for Rect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}×{}+{}+{}", self.w, self.h, self.x, self.y)
    }
}

/// Every `wm window placed` line of `log`, in order.
pub fn wm_placements(log: &str) -> Vec<Placed> {
    log.lines()
        .filter(|l| l.contains("wm window placed"))
        .map(|line| {
            let int = |name: &str| -> i32 {
                log_field(line, name)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("no {name}= in {line}"))
            };
            Placed {
                app_id: log_field(line, "app_id").unwrap_or_default().to_string(),
                rect: Rect::new(int("x"), int("y"), int("w"), int("h")),
                visible: log_field(line, "visible") == Some("true"),
            }
        })
        .collect()
}

/// Where the window manager has each window now: the last placement of each app_id.
pub fn wm_layout(log: &str) -> std::collections::BTreeMap<String, Placed> {
    wm_placements(log)
        .into_iter()
        .map(|p| (p.app_id.clone(), p))
        .collect()
}

impl Server {
    /// Waits until `done` holds for the server log; fails the test with the log after `timeout`.
    pub fn wait_for(&self, what: &str, timeout: Duration, done: impl Fn(&str) -> bool) {
        let start = Instant::now();
        while !done(&self.log()) {
            if start.elapsed() > timeout {
                panic!("timed out waiting for {what}; server log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The pid of the session's window manager (`--wm`), from its start line.
    pub fn wm_pid(&self) -> i32 {
        self.wait_log("window manager started", 1, Duration::from_secs(30));
        let log = self.log();
        log.lines()
            .filter(|l| l.contains("window manager started"))
            .find_map(|l| log_field(l, "pid").and_then(|v| v.parse().ok()))
            .unwrap_or_else(|| panic!("no pid in the window manager's start line:\n{log}"))
    }

    /// Waits until the window manager's current layout has the windows `app_ids` placed as
    /// `expect` says, and returns that layout.
    pub fn wait_layout(
        &self,
        what: &str,
        timeout: Duration,
        expect: impl Fn(&std::collections::BTreeMap<String, Placed>) -> bool,
    ) -> std::collections::BTreeMap<String, Placed> {
        self.wait_for(what, timeout, |log| expect(&wm_layout(log)));
        wm_layout(&self.log())
    }
}

/// A decoded screenshot of the appliance's screen.
pub struct Shot {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

impl Shot {
    pub fn read(path: &Path) -> Shot {
        let (width, height, rgb) = read_png_rgb(path);
        Shot { width, height, rgb }
    }

    pub fn pixel(&self, x: i32, y: i32) -> [u8; 3] {
        assert!(
            (0..self.width as i32).contains(&x) && (0..self.height as i32).contains(&y),
            "({x}, {y}) is off the {}×{} screen",
            self.width,
            self.height
        );
        let i = ((y as u32 * self.width + x as u32) * 3) as usize;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }

    /// How many pixels of `rect` (clipped to the screen) are `colour`.
    pub fn count(&self, rect: Rect, colour: [u8; 3]) -> usize {
        let xs = rect.x.max(0)..(rect.x + rect.w).min(self.width as i32);
        let ys = rect.y.max(0)..(rect.y + rect.h).min(self.height as i32);
        ys.flat_map(|y| xs.clone().map(move |x| (x, y)))
            .filter(|&(x, y)| self.pixel(x, y) == colour)
            .count()
    }
}

/// Runs the appliance with `script` (which ends in `exit`) and returns its last screen.
pub fn screenshot_after(dir: &TempDir, server: &Server, name: &str, script: &str) -> Shot {
    let png = dir.path(&format!("{name}.png"));
    run_appliance_script(
        dir,
        server,
        &format!("{name}.script"),
        script,
        &["--screenshot", png.to_str().unwrap()],
    );
    Shot::read(&png)
}

/// A `wrclient` running in the background (headless) while a test drives the session, its log
/// and frame log in files of its own.
pub struct BackgroundAppliance {
    pub child: Child,
    pub log: PathBuf,
    pub frames: PathBuf,
    pub screenshot: PathBuf,
}

impl BackgroundAppliance {
    /// Starts `wrclient` against `server` with `extra` flags (an `--input-script`, say).
    pub fn start(dir: &TempDir, name: &str, server: &Server, extra: &[&str]) -> Self {
        let log = dir.path(&format!("{name}.log"));
        let frames = dir.path(&format!("{name}-frames.log"));
        let screenshot = dir.path(&format!("{name}.png"));
        let child = Command::new(wrclient())
            .arg("--server")
            .arg(server.listen.to_string())
            .arg("--state-dir")
            .arg(dir.path(&format!("{name}-state")))
            .arg("--frame-log")
            .arg(&frames)
            .arg("--screenshot")
            .arg(&screenshot)
            .args(["--exit-after", "120"])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start wrclient");
        Self {
            child,
            log,
            frames,
            screenshot,
        }
    }

    /// Starts `wrclient` replaying `script` (input script commands); it stays attached after
    /// the script until stopped.
    pub fn with_script(dir: &TempDir, name: &str, server: &Server, script: &str) -> Self {
        let path = dir.path(&format!("{name}.script"));
        std::fs::write(&path, script).unwrap();
        Self::start(
            dir,
            name,
            server,
            &["--input-script", path.to_str().unwrap()],
        )
    }

    pub fn log(&self) -> String {
        strip_ansi(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    pub fn frames(&self) -> Vec<FrameLine> {
        read_frame_log(&self.frames)
    }

    /// Waits until the frame log has at least `n` frames.
    pub fn wait_frames(&self, n: usize, timeout: Duration) {
        let start = Instant::now();
        while self.frames().len() < n {
            assert!(
                start.elapsed() < timeout,
                "timed out waiting for {n} frames on the appliance:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Waits until no new frame has arrived for `quiet`, and returns the frames so far.
    pub fn wait_still(&self, quiet: Duration, timeout: Duration) -> Vec<FrameLine> {
        let start = Instant::now();
        let mut seen = self.frames().len();
        let mut since = Instant::now();
        loop {
            std::thread::sleep(Duration::from_millis(25));
            let now = self.frames().len();
            if now != seen {
                (seen, since) = (now, Instant::now());
            } else if since.elapsed() >= quiet && seen > 0 {
                return self.frames();
            }
            assert!(
                start.elapsed() < timeout,
                "the appliance's screen never kept still for {quiet:?}:\n{}",
                self.log()
            );
        }
    }

    /// A screenshot now (SIGUSR1 makes wrclient write its `--screenshot`).
    pub fn screenshot(&self) -> Shot {
        let written = self.log().matches("wrote screenshot").count();
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGUSR1);
        }
        let start = Instant::now();
        while self.log().matches("wrote screenshot").count() <= written {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the appliance wrote no screenshot:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Shot::read(&self.screenshot)
    }

    /// Takes screenshots until one satisfies `shows` (what the screen should show after a
    /// change the test made), and returns it; fails the test after `timeout`.
    pub fn wait_screen(
        &self,
        what: &str,
        timeout: Duration,
        shows: impl Fn(&Shot) -> bool,
    ) -> Shot {
        let start = Instant::now();
        loop {
            let shot = self.screenshot();
            if shows(&shot) {
                return shot;
            }
            assert!(
                start.elapsed() < timeout,
                "the appliance's screen never showed {what} (last screenshot: {})",
                self.screenshot.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM (a goodbye to the server, then the screenshot); waits for the exit and returns
    /// the log.
    pub fn stop(mut self) -> String {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = wait_exit(&mut self.child, Duration::from_secs(10));
        self.log()
    }
}

impl Drop for BackgroundAppliance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits up to `timeout` for `child` to exit; kills it after that. `None` if it had to be killed.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Client processes a test started itself (not through `--spawn`), killed when it ends.
#[derive(Default)]
pub struct Clients(pub Vec<Child>);

impl Clients {
    pub fn add(&mut self, child: Child) -> &mut Child {
        self.0.push(child);
        self.0.last_mut().unwrap()
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
