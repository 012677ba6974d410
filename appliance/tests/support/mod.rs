//! A WayRay server stand-in for driving the real `wrclient` binary: a quinn endpoint with a
//! self-signed certificate that speaks the wire protocol step by step as each test dictates, so
//! tests can send exactly the (good or hostile) messages they need. The real server is `wrsrvd`.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use wayray_protocol::{
    framing, ClientControl, DisplayMessage, Encoder, Encoding, FrameReader, FrameUpdate, Hello,
    InputMessage, PoolServer, Rect, Redirect, RedirectReason, ServerControl, StreamKind, Welcome,
    DEFAULT_MAX_MESSAGE_LEN, PROTOCOL_VERSION,
};

/// Long enough for a loaded CI machine, short enough that a hang fails the test visibly.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(20);

pub fn self_signed() -> rcgen::CertifiedKey<rcgen::KeyPair> {
    rcgen::generate_simple_self_signed(vec!["wayray-server".into(), "localhost".into()])
        .expect("generate certificate")
}

pub struct TestServer {
    endpoint: quinn::Endpoint,
    pub addr: SocketAddr,
    pub cert_der: Vec<u8>,
    /// SHA-256 of the certificate's SubjectPublicKeyInfo, as a pool announces it.
    pub fingerprint: String,
}

/// The fingerprint a pool announces for a key (see `wayray_protocol::identity`).
pub fn spki_fingerprint(key: &rcgen::KeyPair) -> String {
    use rcgen::PublicKeyData;
    let digest = ring::digest::digest(&ring::digest::SHA256, &key.subject_public_key_info());
    wayray_protocol::identity::fingerprint_hex(digest.as_ref().try_into().expect("32 bytes"))
}

impl TestServer {
    /// Listens on a free loopback port. Must be called inside a tokio runtime.
    pub fn start() -> Self {
        let identity = self_signed();
        let cert_der = identity.cert.der().to_vec();
        let fingerprint = spki_fingerprint(&identity.signing_key);
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            identity.signing_key.serialize_der(),
        ));
        let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(cert_der.clone())], key)
        .unwrap();
        tls.alpn_protocols = vec![wayray_protocol::ALPN.to_vec()];
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).unwrap();
        let config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        let endpoint = quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = endpoint.local_addr().unwrap();
        Self {
            endpoint,
            addr,
            cert_der,
            fingerprint,
        }
    }

    /// This server as an entry of a pool list named `name`.
    pub fn pool_entry(&self, name: &str) -> PoolServer {
        PoolServer {
            name: name.into(),
            address: self.addr.to_string(),
            fingerprint: self.fingerprint.clone(),
        }
    }

    /// Writes the certificate to `path` (DER), for `--server-cert`.
    pub fn write_cert(&self, path: &Path) {
        std::fs::write(path, &self.cert_der).expect("write certificate");
    }

    /// Falls silent the way a killed server does: its port stops answering (the endpoint moves
    /// to another socket), no close is sent, and its appliances notice only by their idle timeout.
    pub fn vanish(&self) {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a socket");
        self.endpoint.rebind(socket).expect("rebind");
    }

    /// The next appliance whose handshake completes.
    pub async fn accept(&self) -> Appliance {
        self.accept_within(STEP_TIMEOUT).await
    }

    /// [`Self::accept`] with a longer wait (for an appliance that first has to notice that
    /// its server is gone).
    pub async fn accept_within(&self, wait: Duration) -> Appliance {
        tokio::time::timeout(wait, async {
            loop {
                let incoming = self.endpoint.accept().await.expect("endpoint open");
                if let Ok(conn) = incoming.await {
                    let (send, recv) = conn.accept_bi().await.expect("control stream");
                    return Appliance {
                        conn,
                        send,
                        recv,
                        reader: FrameReader::new(DEFAULT_MAX_MESSAGE_LEN),
                        display: None,
                    };
                }
            }
        })
        .await
        .expect("no appliance connected in time")
    }

    /// Accepts connection attempts and lets their handshakes run (to success or failure) in the
    /// background, for tests where the handshake itself is what is tested. Counts the
    /// handshakes that succeeded.
    pub fn accept_in_background(&self) -> Arc<AtomicUsize> {
        let endpoint = self.endpoint.clone();
        let completed = Arc::new(AtomicUsize::new(0));
        let count = completed.clone();
        tokio::spawn(async move {
            while let Some(incoming) = endpoint.accept().await {
                let count = count.clone();
                tokio::spawn(async move {
                    if incoming.await.is_ok() {
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
        });
        completed
    }
}

/// One connected appliance, seen from the server.
pub struct Appliance {
    pub conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    reader: FrameReader,
    display: Option<quinn::SendStream>,
}

impl Appliance {
    /// The next control message, `None` if the appliance finished the stream.
    pub async fn next_control(&mut self) -> Option<ClientControl> {
        tokio::time::timeout(STEP_TIMEOUT, async {
            loop {
                if let Some(msg) = self.reader.next::<ClientControl>().expect("well-formed") {
                    return Some(msg);
                }
                match self.recv.read_chunk(self.reader.wanted(), true).await {
                    Ok(Some(chunk)) => self.reader.push(&chunk.bytes),
                    Ok(None) | Err(_) => return None,
                }
            }
        })
        .await
        .expect("appliance said nothing in time")
    }

    pub async fn expect_hello(&mut self) -> Hello {
        match self.next_control().await {
            Some(ClientControl::Hello(hello)) => hello,
            other => panic!("expected Hello, got {other:?}"),
        }
    }

    pub async fn send_control(&mut self, msg: &ServerControl) {
        let bytes = framing::encode(msg).unwrap();
        self.send.write_all(&bytes).await.expect("write control");
    }

    pub async fn welcome(&mut self, width: u32, height: u32) {
        self.welcome_as("test-server", width, height, Vec::new())
            .await;
    }

    /// A Welcome from the pool server `name` listing `pool`.
    pub async fn welcome_as(&mut self, name: &str, width: u32, height: u32, pool: Vec<PoolServer>) {
        self.send_control(&ServerControl::Welcome(Welcome {
            protocol_version: PROTOCOL_VERSION,
            server_name: name.into(),
            output_width: width,
            output_height: height,
            encoding: Encoding::TilesV1,
            max_message_len: DEFAULT_MAX_MESSAGE_LEN,
            audio: Default::default(),
            pool,
        }))
        .await;
    }

    /// Sends the appliance to `to` and, as a pool server does, waits for it to leave. Returns
    /// what the appliance said meanwhile (`None`: nothing, it just left).
    pub async fn redirect(
        &mut self,
        to: PoolServer,
        reason: RedirectReason,
    ) -> Option<ClientControl> {
        self.send_control(&ServerControl::Redirect(Redirect { server: to, reason }))
            .await;
        let _ = self.send.finish();
        let said = self.next_control().await;
        tokio::time::timeout(STEP_TIMEOUT, self.conn.closed())
            .await
            .expect("the appliance did not leave after a redirect");
        said
    }

    /// Opens a unidirectional stream tagged with `kind` (any byte, to test unknown kinds).
    pub async fn open_stream(&mut self, kind: u8) {
        let mut stream = self.conn.open_uni().await.expect("open uni stream");
        stream.write_all(&[kind]).await.expect("write stream kind");
        self.display = Some(stream);
    }

    pub async fn open_display(&mut self) {
        self.open_stream(StreamKind::Display as u8).await;
    }

    pub async fn send_frame(&mut self, update: FrameUpdate) {
        self.send_display(&DisplayMessage::Frame(update)).await;
    }

    pub async fn send_display(&mut self, message: &DisplayMessage) {
        let bytes = framing::encode(message).unwrap();
        let display = self.display.as_mut().expect("display stream open");
        display
            .write_all(&bytes)
            .await
            .expect("write display message");
    }

    /// Sends one QUIC datagram (audio: `wayray_protocol::Datagram`, or junk).
    pub fn send_datagram(&self, bytes: Vec<u8>) {
        self.conn
            .send_datagram(bytes.into())
            .expect("send a datagram");
    }

    /// The next QUIC datagram from the appliance, `None` if none comes within `wait`.
    pub async fn next_datagram(&self, wait: Duration) -> Option<Vec<u8>> {
        match tokio::time::timeout(wait, self.conn.read_datagram()).await {
            Ok(Ok(bytes)) => Some(bytes.to_vec()),
            Ok(Err(_)) | Err(_) => None,
        }
    }

    /// The input stream the appliance opens after Welcome; checks its kind byte.
    pub async fn accept_input(&mut self) -> InputStream {
        tokio::time::timeout(STEP_TIMEOUT, async {
            let mut recv = self.conn.accept_uni().await.expect("input stream");
            let mut kind = [0u8];
            recv.read_exact(&mut kind).await.expect("stream kind byte");
            assert_eq!(kind[0], StreamKind::Input as u8, "not an input stream");
            InputStream {
                recv,
                reader: FrameReader::new(DEFAULT_MAX_MESSAGE_LEN),
            }
        })
        .await
        .expect("appliance opened no input stream in time")
    }
}

/// The appliance's input stream, seen from the server.
pub struct InputStream {
    recv: quinn::RecvStream,
    reader: FrameReader,
}

impl InputStream {
    /// The next input message, `None` if the stream ended.
    pub async fn next(&mut self) -> Option<InputMessage> {
        tokio::time::timeout(STEP_TIMEOUT, async {
            loop {
                if let Some(msg) = self.reader.next::<InputMessage>().expect("well-formed") {
                    return Some(msg);
                }
                match self.recv.read_chunk(self.reader.wanted(), true).await {
                    Ok(Some(chunk)) => self.reader.push(&chunk.bytes),
                    Ok(None) | Err(_) => return None,
                }
            }
        })
        .await
        .expect("appliance sent no input in time")
    }
}

/// A test picture with gradients and fine detail, so a wrong pixel anywhere changes the digest.
pub fn test_pattern(width: u32, height: u32) -> Vec<u8> {
    let mut pixels = Vec::with_capacity(width as usize * height as usize * 4);
    for y in 0..height {
        for x in 0..width {
            let noise = (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503)) >> 13;
            pixels.extend_from_slice(&[
                (x * 255 / width) as u8,
                (y * 255 / height) as u8,
                noise as u8,
                0,
            ]);
        }
    }
    pixels
}

/// A key frame of `pixels` as the real encoder makes it.
pub fn key_frame(seq: u64, width: u32, height: u32, pixels: &[u8]) -> FrameUpdate {
    Encoder::new(width, height)
        .encode(seq, pixels, &[Rect::new(0, 0, width, height)])
        .expect("encode key frame")
}

/// `wrclient` pointed at `server` with its state in `dir`, plus `extra` flags. Unless a test
/// gives an input script, the appliance takes no input (never the real devices of the machine
/// running the tests), and its keyboard layout does not come from the environment.
pub fn wrclient(dir: &Path, server: SocketAddr, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wrclient"));
    cmd.arg("--server")
        .arg(server.to_string())
        .arg("--state-dir")
        .arg(dir.join("state"));
    if !extra.contains(&"--input-script") {
        cmd.args(["--input", "none"]);
    }
    for var in [
        "XKB_DEFAULT_LAYOUT",
        "XKB_DEFAULT_VARIANT",
        "XKB_DEFAULT_MODEL",
        "XKB_DEFAULT_OPTIONS",
    ] {
        cmd.env_remove(var);
    }
    cmd.args(extra)
        .env("RUST_LOG", "debug,quinn=info,rustls=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// A running `wrclient`, killed if the test ends before it does.
pub struct Running(Option<Child>);

impl Running {
    pub fn spawn(mut cmd: Command) -> Self {
        Self(Some(cmd.spawn().expect("start wrclient")))
    }

    pub fn pid(&self) -> u32 {
        self.0.as_ref().map(Child::id).unwrap_or_default()
    }

    /// Sends `signal` (a `kill` name like "USR1") to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits for the process to exit on its own.
    pub async fn wait(mut self) -> Output {
        let child = self.0.take().expect("not waited yet");
        let waiting = tokio::task::spawn_blocking(move || child.wait_with_output());
        tokio::time::timeout(STEP_TIMEOUT, waiting)
            .await
            .expect("wrclient did not exit in time")
            .expect("join")
            .expect("wait for wrclient")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Where `wrclient` keeps the certificate it trusted on first use for `server`.
pub fn known_server_file(dir: &Path, server: SocketAddr) -> PathBuf {
    dir.join("state/known_servers")
        .join(format!("{}_{}.der", server.ip(), server.port()))
}

/// Decodes a PNG into (width, height, RGB bytes).
pub fn read_png(path: &Path) -> (u32, u32, Vec<u8>) {
    let file = std::fs::File::open(path).expect("screenshot exists");
    let mut reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .expect("valid PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("PNG frame");
    assert_eq!(info.color_type, png::ColorType::Rgb);
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

pub fn bgrx_to_rgb(pixels: &[u8]) -> Vec<u8> {
    pixels
        .chunks_exact(4)
        .flat_map(|p| [p[2], p[1], p[0]])
        .collect()
}
