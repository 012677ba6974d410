//! The QUIC side of a connection attempt: resolve the server, build TLS 1.3 with the pinning
//! verifier, this appliance's client certificate and the WayRay ALPN, handshake, and record a
//! first-use certificate.
//!
//! Reconnecting to a server it already knows, the appliance resumes its last TLS session (the
//! server's tickets are kept in memory for the life of the process) and sends its Hello as 0-RTT
//! early data, before the handshake completes: see [`Link::zero_rtt`]. Nothing else ever goes
//! out early (no input, no token proof): `connection::handshake` waits for the handshake before
//! it returns.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::QuicClientConfig;
use rustls::crypto::ring;
use rustls::pki_types::CertificateDer;

use crate::config::ServerAddr;
use crate::identity::ApplianceIdentity;
use crate::pinning::{PinError, PinnedCertVerifier, Rejection, Trust};

/// Keep-alives stop NATs and the server's idle timer from dropping a connection to a screen that
/// is simply not changing. The server sends none (it is the appliance's job), and its idle
/// timeout is 5 s, the shorter of the two sides', so that is what counts: a keep-alive every
/// 2 s leaves room for one lost keep-alive and its retransmission. NATs keep a UDP mapping for
/// 30 s or more, so they need nothing more frequent. Each one costs the appliance and the daemon
/// about two wake-ups (timer or send, the acknowledgement).
const KEEP_ALIVE: Duration = Duration::from_secs(2);
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
    #[error("cannot use this appliance's certificate for TLS")]
    ClientCert(#[source] rustls::Error),
}

impl TransportError {
    /// A refused or unrecordable certificate needs a person (except a pool server's unexpected
    /// key: the appliance goes elsewhere); everything else may heal by itself.
    pub fn is_fatal(&self) -> bool {
        match self {
            Self::Rejected(rejection) => rejection.is_fatal(),
            Self::Pin(_) | Self::ClientCert(_) => true,
            _ => false,
        }
    }

    /// The underlying QUIC connection error, for telling a refused certificate apart.
    pub fn connection_error(&self) -> Option<&quinn::ConnectionError> {
        match self {
            Self::Handshake { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// What stays the same across connection attempts: who the appliance is, and the TLS sessions
/// it may resume.
pub struct Connector {
    identity: Arc<ApplianceIdentity>,
    resumption: rustls::client::Resumption,
    /// The TLS configuration of the last attempt, reused while the trust is the same: rustls
    /// resumes a session only with the very verifier and client certificate that made it.
    tls: std::sync::Mutex<Option<(Arc<rustls::ClientConfig>, Arc<PinnedCertVerifier>)>>,
}

impl Connector {
    pub fn new(identity: Arc<ApplianceIdentity>) -> Self {
        Self {
            identity,
            // A few servers' tickets; an appliance talks to one server at a time.
            resumption: rustls::client::Resumption::in_memory_sessions(8),
            tls: std::sync::Mutex::new(None),
        }
    }

    /// The TLS client configuration for an attempt under `trust`, and its verifier.
    fn tls_for(
        &self,
        trust: Trust,
    ) -> Result<(Arc<rustls::ClientConfig>, Arc<PinnedCertVerifier>), TransportError> {
        let mut cached = self
            .tls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((tls, verifier)) = cached.as_ref() {
            if verifier.trust() == trust {
                verifier.clear_rejection();
                return Ok((tls.clone(), verifier.clone()));
            }
        }
        let provider = Arc::new(ring::default_provider());
        let verifier = Arc::new(PinnedCertVerifier::new(trust, &provider));
        let (chain, key) = self.identity.client_auth();
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(TransportError::Tls)?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_client_auth_cert(chain, key)
            .map_err(TransportError::ClientCert)?;
        tls.alpn_protocols = vec![wayray_protocol::ALPN.to_vec()];
        tls.resumption = self.resumption.clone();
        tls.enable_early_data = true;
        let tls = Arc::new(tls);
        *cached = Some((tls.clone(), verifier.clone()));
        Ok((tls, verifier))
    }

    pub fn identity(&self) -> &ApplianceIdentity {
        &self.identity
    }

    /// The next attempt makes a full handshake instead of resuming (rustls resumes only with
    /// the configuration that made the session): after a revocation, so the server's verdict
    /// on the certificate is heard in the handshake, with its own message.
    pub fn forget_sessions(&self) {
        *self
            .tls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }
}

/// One established QUIC connection and the endpoint (UDP socket) it runs on.
pub struct Link {
    endpoint: quinn::Endpoint,
    pub connection: quinn::Connection,
    /// Set when the connection resumed a TLS session and may carry 0-RTT data: resolves once the
    /// handshake completes, `true` if the server took the early data (else it was dropped and
    /// has to be sent again).
    pub zero_rtt: Option<quinn::ZeroRttAccepted>,
    /// Still asked after a 0-RTT start: a server that lost its tickets (restarted) presents its
    /// certificate in a full handshake after all, and the pin may refuse it.
    verifier: Arc<PinnedCertVerifier>,
}

/// Why the server refused this appliance's certificate in the TLS handshake, from its alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `access_denied`: not approved, and the server admits only approved appliances.
    NotApproved,
    /// `certificate_revoked`: an administrator revoked this appliance.
    Revoked,
}

impl Refusal {
    /// TLS alerts travel in QUIC as CRYPTO_ERROR 0x100 + the alert's number (RFC 9001 4.8).
    pub fn of(error: &quinn::ConnectionError) -> Option<Self> {
        let quinn::ConnectionError::ConnectionClosed(close) = error else {
            return None;
        };
        if close.error_code == quinn::TransportErrorCode::crypto(ACCESS_DENIED) {
            Some(Self::NotApproved)
        } else if close.error_code == quinn::TransportErrorCode::crypto(CERTIFICATE_REVOKED) {
            Some(Self::Revoked)
        } else {
            None
        }
    }
}

/// TLS alert numbers (RFC 8446 6).
const ACCESS_DENIED: u8 = 49;
const CERTIFICATE_REVOKED: u8 = 44;

impl Link {
    /// The pin's refusal of the server's certificate, if that is why the connection failed.
    pub fn rejection(&self) -> Option<Rejection> {
        self.verifier.rejection()
    }
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
    connector: &Connector,
) -> Result<Link, TransportError> {
    let addr = resolve(server).await?;
    let (tls, verifier) = connector.tls_for(trust)?;
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(KEEP_ALIVE));
    transport.ack_frequency_config(Some(wayray_transport::upload_ack_frequency()));
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
        Arc::new(wayray_transport::PreciseRuntime),
    )
    .map_err(TransportError::Bind)?;

    let connecting = endpoint
        .connect_with(client_config, addr, server_name)
        .map_err(|source| TransportError::Connect { addr, source })?;
    // A resumed session of a server pinned before: the Hello may go out at once. (On first use
    // there is no ticket, and the certificate must be seen and stored first.)
    let connecting = if matches!(verifier.trust(), Trust::FirstUse { .. }) {
        connecting
    } else {
        match connecting.into_0rtt() {
            Ok((connection, accepted)) => {
                tracing::debug!("resuming the TLS session: the Hello goes out as 0-RTT data");
                return Ok(Link {
                    endpoint,
                    connection,
                    zero_rtt: Some(accepted),
                    verifier,
                });
            }
            Err(connecting) => connecting,
        }
    };
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
        let trust = verifier.trust();
        if let Some(file) = trust.remember(&cert)? {
            tracing::info!(file = %file.display(), "trusting this server's certificate from now on (first use)");
        }
        if let Some(known) = trust.remembered(&cert) {
            verifier.set_trust(known);
        }
    }
    Ok(Link {
        endpoint,
        connection,
        zero_rtt: None,
        verifier,
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
