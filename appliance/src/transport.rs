//! The QUIC side of a connection attempt: resolve the server, build TLS 1.3 with the pinning
//! verifier and the WayRay ALPN, handshake, and record a first-use certificate.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::QuicClientConfig;
use rustls::crypto::ring;
use rustls::pki_types::CertificateDer;

use crate::config::ServerAddr;
use crate::pinning::{PinError, PinnedCertVerifier, Rejection, Trust};

/// Keep-alives stop NATs and the server's idle timer from dropping a connection to a screen that
/// is simply not changing.
const KEEP_ALIVE: Duration = Duration::from_secs(3);
/// How long silence (in milliseconds) means the server is gone; also bounds the handshake. Short,
/// because the person in front of the appliance is waiting for the "reconnecting" status.
const IDLE_TIMEOUT_MS: u32 = 10_000;
/// How long a clean close waits for the close to reach the server before giving up on it.
const CLOSE_GRACE: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot resolve {server}")]
    Resolve {
        server: ServerAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{server} resolves to no address")]
    NoAddress { server: ServerAddr },
    #[error("cannot open a UDP socket")]
    Bind(#[source] std::io::Error),
    #[error("cannot set up TLS")]
    Tls(#[source] rustls::Error),
    #[error("cannot set up QUIC with this TLS configuration")]
    Quic(#[source] quinn::crypto::rustls::NoInitialCipherSuite),
    #[error("cannot connect to {addr}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: quinn::ConnectError,
    },
    #[error("handshake with {addr} failed")]
    Handshake {
        addr: SocketAddr,
        #[source]
        source: quinn::ConnectionError,
    },
    #[error(transparent)]
    Rejected(#[from] Rejection),
    #[error(transparent)]
    Pin(#[from] PinError),
}

impl TransportError {
    /// A refused or unrecordable certificate needs a person; everything else may heal by itself.
    pub fn is_fatal(&self) -> bool {
        matches!(self, Self::Rejected(_) | Self::Pin(_))
    }
}

/// One established QUIC connection and the endpoint (UDP socket) it runs on.
pub struct Link {
    endpoint: quinn::Endpoint,
    pub connection: quinn::Connection,
}

impl Link {
    /// Waits (briefly) until the connection's close has been sent, so the server learns at once
    /// that the appliance left instead of waiting for its idle timeout.
    pub async fn finish(self) {
        // Dropping the last handle closes the connection if the protocol loop has not already.
        drop(self.connection);
        let _ = tokio::time::timeout(CLOSE_GRACE, self.endpoint.wait_idle()).await;
    }
}

/// Resolves `server` and completes a QUIC + TLS 1.3 handshake with it, checking its certificate
/// against `trust`. A first-use certificate is stored before this returns.
pub async fn connect(
    server: &ServerAddr,
    server_name: &str,
    trust: Trust,
) -> Result<Link, TransportError> {
    let addr = resolve(server).await?;
    let provider = Arc::new(ring::default_provider());
    let verifier = Arc::new(PinnedCertVerifier::new(trust, &provider));

    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TransportError::Tls)?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    tls.alpn_protocols = vec![wayray_protocol::ALPN.to_vec()];

    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(KEEP_ALIVE));
    transport.max_idle_timeout(Some(quinn::VarInt::from_u32(IDLE_TIMEOUT_MS).into()));
    let mut client_config = quinn::ClientConfig::new(Arc::new(
        QuicClientConfig::try_from(tls).map_err(TransportError::Quic)?,
    ));
    client_config.transport_config(Arc::new(transport));

    let local: SocketAddr = match addr {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    // Quinn's own client constructor, with connection timers on a timerfd (see `timer.rs`).
    let socket = std::net::UdpSocket::bind(local).map_err(TransportError::Bind)?;
    let endpoint = quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        None,
        socket,
        Arc::new(crate::timer::PreciseRuntime),
    )
    .map_err(TransportError::Bind)?;

    let connecting = endpoint
        .connect_with(client_config, addr, server_name)
        .map_err(|source| TransportError::Connect { addr, source })?;
    let connection = match connecting.await {
        Ok(connection) => connection,
        Err(source) => {
            return Err(match verifier.rejection() {
                Some(rejection) => rejection.into(),
                None => TransportError::Handshake { addr, source },
            })
        }
    };

    // rustls always reports the chain it verified; without one there is nothing to remember.
    if let Some(cert) = end_entity(&connection) {
        if let Some(file) = verifier.trust().remember(&cert)? {
            tracing::info!(file = %file.display(), "trusting this server's certificate from now on (first use)");
        }
    }
    Ok(Link {
        endpoint,
        connection,
    })
}

/// The end-entity certificate the server presented (rustls hands quinn the whole chain).
fn end_entity(connection: &quinn::Connection) -> Option<Vec<u8>> {
    let chain = connection
        .peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?;
    chain.first().map(|cert| cert.to_vec())
}

async fn resolve(server: &ServerAddr) -> Result<SocketAddr, TransportError> {
    let mut addrs = tokio::net::lookup_host((server.host.as_str(), server.port))
        .await
        .map_err(|source| TransportError::Resolve {
            server: server.clone(),
            source,
        })?;
    addrs.next().ok_or_else(|| TransportError::NoAddress {
        server: server.clone(),
    })
}
