//! The QUIC endpoint appliances connect to, and the routing of encoded frames to whichever
//! appliance currently shows the session.

mod audio;
mod cert;
pub mod client_auth;
mod connection;
pub mod governor;
mod input;
mod input_order;
mod streams;

use std::{
    net::SocketAddr,
    sync::{atomic::AtomicU64, Arc},
    time::Duration,
};

pub use cert::{load_or_create, Identity};
pub use connection::ConnEvent;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum TransportError {
    #[error("invalid TLS configuration: {0}")]
    Tls(String),
    #[error("cannot listen on UDP {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Shared by every connection task.
pub struct Shared {
    pub daemon: crate::daemon::Shared,
    pub next_id: AtomicU64,
    pub server_name: String,
    /// Session output size when the appliance's screen is not followed or not usable.
    pub default_output_size: (u32, u32),
    /// Size the session output to each appliance's screen (config `output_follows_appliance`).
    pub follow_appliance: bool,
    /// For the per-appliance bandwidth caps.
    pub config: Arc<crate::config::Config>,
}

impl Shared {
    /// The session output size for an appliance whose screen is `screen`; `None` when the
    /// output does not follow appliances or the size is unusable (0, or beyond the codec's limit).
    pub fn output_size_for(&self, (width, height): (u32, u32)) -> Option<(u32, u32)> {
        let usable = |v: u32| (16..=wayray_protocol::codec::MAX_DIMENSION).contains(&v);
        if !self.follow_appliance {
            return None;
        }
        if usable(width) && usable(height) {
            Some((width, height))
        } else {
            tracing::warn!(width, height, "ignoring an unusable appliance screen size");
            None
        }
    }
}

/// Builds the QUIC server endpoint, asking appliances for their certificates under `policy`
/// (see [`client_auth`]). Must be called inside a tokio runtime.
pub fn endpoint(
    addr: SocketAddr,
    identity: &Identity,
    policy: crate::config::ApplianceAuth,
    decide: Arc<dyn client_auth::CertificatePolicy>,
) -> Result<quinn::Endpoint, TransportError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(client_auth::ApplianceVerifier::new(
        policy, decide, &provider,
    ));
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TransportError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![identity.cert.clone()], identity.key.clone_key())
        .map_err(|e| TransportError::Tls(e.to_string()))?;
    tls.alpn_protocols = vec![wayray_protocol::ALPN.to_vec()];
    // A known appliance reconnecting resumes its TLS session (tickets kept in this process's
    // memory, each usable once) and may send its Hello as 0-RTT early data; QUIC allows only
    // 0 or u32::MAX here. The connection handler acts on nothing early (see connection.rs).
    tls.max_early_data_size = u32::MAX;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| TransportError::Tls(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    // A vanished appliance is noticed within a few seconds, so its session is detached promptly.
    // The appliance's keep-alives (every 2 s, see appliance/src/transport.rs) keep an idle but
    // live connection open; the server sends none of its own, so an idle session's connection
    // wakes the daemon once per appliance keep-alive instead of twice a second more.
    transport.keep_alive_interval(None);
    transport.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(Duration::from_secs(5))
            .map_err(|e| TransportError::Tls(e.to_string()))?,
    ));
    // Room for a full key frame on the wire without stalling on flow control.
    transport.send_window(32 * 1024 * 1024);
    // Appliances sit on Wi-Fi and WAN links that reorder datagrams: take a packet for lost
    // only when it is 10 behind or 1.5 RTT late (not 3 and 9/8), so reordering alone does not
    // halve the congestion window again and again (measured: 2 % reordering cut scrolling to a
    // quarter of its frames).
    transport.packet_threshold(10);
    transport.time_threshold(1.5);
    // BBR paces by measured bandwidth instead of cutting the window at every loss, so random
    // loss on a thin client's link does not starve the display (scrolling at 20 ms RTT: 233
    // instead of 69 frames shown at 5 % loss, 377 instead of 136 at 1 %). quinn marks it
    // experimental; the loss rows of scripts/bench-vs-waypipe keep an eye on it.
    transport.congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()));
    transport.max_concurrent_uni_streams(8u32.into());
    // The control stream and one per forwarded USB device (protocol v9).
    transport.max_concurrent_bidi_streams(32u32.into());
    config.transport_config(Arc::new(transport));
    let socket =
        std::net::UdpSocket::bind(addr).map_err(|source| TransportError::Bind { addr, source })?;
    grow_receive_buffer(&socket);
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(config),
        socket,
        quic_runtime(),
    )
    .map_err(|source| TransportError::Bind { addr, source })
}

/// Datagrams the server's socket may hold unread. Every appliance's uploads arrive on this one
/// socket: a forwarded USB stick's reads come as bursts of ~85 datagrams per 120 KiB, and with
/// the kernel's default (~208 KiB, about 90 datagrams of memory) a busy daemon dropped some and
/// the appliance's congestion control then slowed all its uploads.
const RECEIVE_BUFFER: usize = 8 * 1024 * 1024;

/// Raises the socket's receive buffer to [`RECEIVE_BUFFER`]: past `net.core.rmem_max` while
/// root (the daemon binds before it leaves root), else as far as that limit allows.
fn grow_receive_buffer(socket: &std::net::UdpSocket) {
    use rustix::net::sockopt;
    if sockopt::set_socket_recv_buffer_size_force(socket, RECEIVE_BUFFER).is_err() {
        if let Err(err) = sockopt::set_socket_recv_buffer_size(socket, RECEIVE_BUFFER) {
            tracing::debug!(%err, "cannot raise the UDP receive buffer");
        }
    }
    if let Ok(size) = sockopt::socket_recv_buffer_size(socket) {
        tracing::debug!(bytes = size, "UDP receive buffer");
    }
}

/// Quinn's runtime for the endpoint: its connection timers (loss detection, delayed ACKs, idle)
/// on a timerfd, which fires once at its deadline where Tokio's wheel wakes the daemon two or
/// three times per timer. `WAYRAY_QUIC_TIMERS=tokio` keeps Tokio's timers, for `scripts/bench
/// capacity` to compare the two in one run.
fn quic_runtime() -> Arc<dyn quinn::Runtime> {
    if std::env::var_os("WAYRAY_QUIC_TIMERS").is_some_and(|v| v == "tokio") {
        tracing::info!("QUIC timers on Tokio's timer wheel (WAYRAY_QUIC_TIMERS=tokio)");
        Arc::new(quinn::TokioRuntime)
    } else {
        Arc::new(wayray_transport::PreciseRuntime)
    }
}

/// Accepts appliances and routes frames until shutdown (Ctrl-C / SIGTERM).
pub async fn serve(endpoint: quinn::Endpoint, shared: Arc<Shared>) {
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { break };
                tokio::spawn(connection::handle(incoming, shared.clone()));
            }
            _ = &mut shutdown => {
                tracing::info!("shutting down");
                break;
            }
        }
    }
    if let Ok(mut daemon) = shared.daemon.lock() {
        daemon.shutdown();
    }
    // Give the Bye a moment to leave before closing every connection.
    tokio::time::sleep(Duration::from_millis(100)).await;
    endpoint.close(0u32.into(), b"server shutting down");
    let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
