//! The QUIC ceiling for a forwarded USB stick: how fast this machine (or an emulated guest)
//! moves bulk data from an appliance-configured sender to a server-configured receiver over
//! loopback, both ends in this process, with WayRay's transport settings (wrsrvd's BBR and
//! loss thresholds, wrclient's ACK frequency request) and TLS 1.3 as on the real link.
//!
//! Two shapes, each `--repeat` times (the median is printed):
//! - `stream`: one stream, `--megabytes` written in 120 KiB pieces, read to the end;
//! - `request`: what usb-storage does over USB/IP: a 48-byte request, then 120 KiB back, one
//!   at a time (each piece waits a round trip).
//!
//!   quic_bulk [--megabytes N] [--repeat R]
//!
//! Prints `stream MB/s <median>` and `request MB/s <median>` (and each run). `scripts/bench usb`
//! runs it inside the server guest and natively, next to the forwarded stick.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

type Result<T> = std::result::Result<T, String>;

/// The size of one usb-storage read as Linux sends it (240 sectors).
const PIECE: usize = 120 * 1024;
/// A USB/IP `CMD_SUBMIT` header.
const REQUEST: usize = 48;

fn main() {
    let mut megabytes = 32usize;
    let mut repeat = 3usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = |args: &mut dyn Iterator<Item = String>| {
            args.next()
                .and_then(|v| v.parse::<usize>().ok())
                .filter(|&v| v > 0)
                .unwrap_or_else(|| usage(&format!("{arg} needs a positive number")))
        };
        match arg.as_str() {
            "--megabytes" => megabytes = value(&mut args),
            "--repeat" => repeat = value(&mut args),
            "-h" | "--help" => usage(""),
            _ => usage(&format!("unknown argument {arg}")),
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => fail(&format!("cannot start the runtime: {e}")),
    };
    if let Err(e) = runtime.block_on(run(megabytes, repeat)) {
        fail(&e);
    }
}

fn usage(error: &str) -> ! {
    if !error.is_empty() {
        eprintln!("quic_bulk: {error}");
    }
    eprintln!("usage: quic_bulk [--megabytes N] [--repeat R]");
    std::process::exit(if error.is_empty() { 0 } else { 2 })
}

fn fail(error: &str) -> ! {
    eprintln!("quic_bulk: {error}");
    std::process::exit(1)
}

async fn run(megabytes: usize, repeat: usize) -> Result<()> {
    let (server, client) = endpoints()?;
    let addr = server.local_addr().map_err(|e| e.to_string())?;
    let connecting = client
        .connect(addr, "localhost")
        .map_err(|e| format!("connect: {e}"))?;
    let accepted = async {
        let incoming = server.accept().await.ok_or("the server endpoint closed")?;
        incoming.await.map_err(|e| format!("accept: {e}"))
    };
    let (sender, receiver) = tokio::join!(connecting, accepted);
    let sender = sender.map_err(|e| format!("handshake: {e}"))?;
    let receiver = receiver?;
    let bytes = megabytes << 20;
    let mut stream = Vec::new();
    let mut request = Vec::new();
    for _ in 0..repeat {
        stream.push(mbps(bytes, stream_once(&sender, &receiver, bytes).await?));
        request.push(mbps(bytes, request_once(&sender, &receiver, bytes).await?));
    }
    let show = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.1}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!("runs stream {} request {}", show(&stream), show(&request));
    println!("stream MB/s {:.2}", median(&mut stream));
    println!("request MB/s {:.2}", median(&mut request));
    sender.close(0u32.into(), b"done");
    client.wait_idle().await;
    Ok(())
}

fn mbps(bytes: usize, took: Duration) -> f64 {
    bytes as f64 / took.as_secs_f64().max(1e-9) / 1e6
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// `bytes` on one stream from the appliance's end, in 120 KiB writes; the time until the
/// server's end has read them all.
async fn stream_once(
    sender: &quinn::Connection,
    receiver: &quinn::Connection,
    bytes: usize,
) -> Result<Duration> {
    let piece = bytes::Bytes::from(vec![0x5a; PIECE]);
    let started = Instant::now();
    let send = async {
        let mut send = sender.open_uni().await.map_err(|e| e.to_string())?;
        let mut left = bytes;
        while left > 0 {
            let n = left.min(PIECE);
            send.write_chunk(piece.slice(..n))
                .await
                .map_err(|e| e.to_string())?;
            left -= n;
        }
        send.finish().map_err(|e| e.to_string())
    };
    let receive = async {
        let mut recv = receiver.accept_uni().await.map_err(|e| e.to_string())?;
        let mut got = 0;
        while let Some(chunk) = recv
            .read_chunk(usize::MAX, true)
            .await
            .map_err(|e| e.to_string())?
        {
            got += chunk.bytes.len();
        }
        Ok::<_, String>(got)
    };
    let (sent, got) = tokio::join!(send, receive);
    sent?;
    let got = got?;
    if got != bytes {
        return Err(format!("stream: {got} bytes arrived of {bytes}"));
    }
    Ok(started.elapsed())
}

/// The server's end asks for 120 KiB at a time (a 48-byte request) and the appliance's end
/// answers each, until `bytes` arrived.
async fn request_once(
    sender: &quinn::Connection,
    receiver: &quinn::Connection,
    bytes: usize,
) -> Result<Duration> {
    let piece = bytes::Bytes::from(vec![0xa5; PIECE]);
    let pieces = bytes.div_ceil(PIECE);
    let started = Instant::now();
    let (mut ask, mut answers) = receiver.open_bi().await.map_err(|e| e.to_string())?;
    // The stream reaches the other end with its first bytes.
    ask.write_all(&[0; REQUEST])
        .await
        .map_err(|e| e.to_string())?;
    let (mut answer, mut asked) = sender.accept_bi().await.map_err(|e| e.to_string())?;
    let mut request = [0u8; REQUEST];
    let mut reply = vec![0u8; PIECE];
    for i in 0..pieces {
        if i > 0 {
            ask.write_all(&[0; REQUEST])
                .await
                .map_err(|e| e.to_string())?;
        }
        asked
            .read_exact(&mut request)
            .await
            .map_err(|e| e.to_string())?;
        answer
            .write_chunk(piece.clone())
            .await
            .map_err(|e| e.to_string())?;
        answers
            .read_exact(&mut reply)
            .await
            .map_err(|e| e.to_string())?;
    }
    let took = started.elapsed();
    let _ = ask.finish();
    let _ = answer.finish();
    Ok(took)
}

/// A server endpoint configured as wrsrvd's (server/src/transport/mod.rs: BBR, its loss
/// thresholds and send window) and a client configured as wrclient's (quinn's defaults and the
/// ACK frequency it asks for), both on loopback with a self-signed certificate.
fn endpoints() -> Result<(quinn::Endpoint, quinn::Endpoint)> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let identity = rcgen::generate_simple_self_signed(vec!["localhost".into()])
        .map_err(|e| format!("certificate: {e}"))?;
    let cert = CertificateDer::from(identity.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        identity.signing_key.serialize_der(),
    ));
    let tls = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .map_err(|e| e.to_string())?;
    let crypto =
        quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(|e| e.to_string())?;
    let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.send_window(32 * 1024 * 1024);
    transport.packet_threshold(10);
    transport.time_threshold(1.5);
    transport.congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()));
    server_config.transport_config(Arc::new(transport));
    let server = quinn::Endpoint::server(server_config, (Ipv4Addr::LOCALHOST, 0).into())
        .map_err(|e| format!("server endpoint: {e}"))?;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).map_err(|e| e.to_string())?;
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let crypto =
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(|e| e.to_string())?;
    let mut client_config = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.ack_frequency_config(Some(wayray_transport::upload_ack_frequency()));
    client_config.transport_config(Arc::new(transport));
    let mut client = quinn::Endpoint::client(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .map_err(|e| format!("client endpoint: {e}"))?;
    client.set_default_client_config(client_config);
    Ok((server, client))
}
