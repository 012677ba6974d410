//! Which server certificate the appliance trusts.
//!
//! A WayRay server's certificate is self-signed (generated on its first start), so there is no CA
//! to ask. The appliance either is told the certificate (`--server-cert`), or trusts the first one
//! it sees from a server and keeps it in `known_servers/` (trust on first use, as ssh does): later
//! a different certificate is refused until someone deletes the stored one on purpose.
//!
//! The comparison is on the whole end-entity certificate, byte for byte; names, expiry and
//! intermediates do not matter, because the pin *is* the trust decision (and an appliance must not
//! lock itself out when a self-signed certificate passes its `notAfter`). The handshake signature
//! is still verified, so only the holder of the pinned certificate's key gets through.
//!
//! A server of a pool the appliance is sent to (a redirect, or another pool member after its
//! server failed) is trusted by the fingerprint of its key instead ([`Trust::Fingerprint`]): the
//! server that named it vouched for it over a connection the appliance already trusted. Such a
//! certificate is never written to `known_servers/`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls13_signature, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, SignatureScheme};

use crate::atomic_file;
use crate::config::ServerAddr;

/// Why a presented certificate was refused. Fatal: retrying cannot help, a person has to decide.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error(
        "server certificate changed since it was first trusted (kept in {}); if the server's \
         certificate was replaced on purpose, remove that file to trust the new one",
        file.display()
    )]
    Changed { file: PathBuf },
    #[error(
        "server certificate does not match the one given with --server-cert ({})",
        file.display()
    )]
    NotConfigured { file: PathBuf },
    #[error(
        "pool server {server} presented a key with fingerprint {presented}, not the \
         {expected} it was announced with; not connecting there"
    )]
    WrongKey {
        server: String,
        expected: String,
        presented: String,
    },
}

impl Rejection {
    /// A pinned or configured certificate needs a person. A pool server with another key than
    /// announced is the pool's mistake (or an impostor): the appliance goes elsewhere instead.
    pub fn is_fatal(&self) -> bool {
        !matches!(self, Self::WrongKey { .. })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("cannot create the known-servers directory {}", dir.display())]
    CreateDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read server certificate {}", file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} holds no certificate (expected DER, or PEM with a CERTIFICATE block)", file.display())]
    NoCertificate { file: PathBuf },
    #[error(
        "cannot record the server certificate in {}; make --state-dir writable or pass --server-cert",
        file.display()
    )]
    Store {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Where the expected certificate comes from, decided once at start-up.
#[derive(Debug, Clone)]
pub enum TrustStore {
    /// `--server-cert`: this file and nothing else.
    ServerCert(PathBuf),
    /// Trust on first use, remembered in `STATE_DIR/known_servers/`.
    KnownServers(KnownServers),
}

impl TrustStore {
    pub fn open(server_cert: Option<&Path>, state_dir: &Path) -> Result<Self, PinError> {
        Ok(match server_cert {
            Some(file) => Self::ServerCert(file.to_owned()),
            None => Self::KnownServers(KnownServers::open(state_dir)?),
        })
    }

    /// The expectation for one connection attempt, read afresh each time so that deleting a
    /// stored certificate takes effect without restarting the appliance.
    pub fn load(&self, server: &ServerAddr) -> Result<Trust, PinError> {
        match self {
            Self::ServerCert(file) => Ok(Trust::Configured {
                der: read_certificate(file)?,
                file: file.clone(),
            }),
            Self::KnownServers(known) => known.load(server),
        }
    }
}

/// `STATE_DIR/known_servers/`: one DER file per server trusted on first use.
#[derive(Debug, Clone)]
pub struct KnownServers {
    dir: PathBuf,
}

impl KnownServers {
    /// Creates the directory up front, so an unwritable state dir is reported at start-up rather
    /// than after the first successful handshake.
    pub fn open(state_dir: &Path) -> Result<Self, PinError> {
        let dir = state_dir.join("known_servers");
        std::fs::create_dir_all(&dir).map_err(|source| PinError::CreateDir {
            dir: dir.clone(),
            source,
        })?;
        Ok(Self { dir })
    }

    /// `<host>_<port>.der`, with anything but letters, digits, `.` and `-` in the host replaced by
    /// `_` so that an IPv6 address or a hostile `--server` cannot leave the directory.
    pub fn file_for(&self, server: &ServerAddr) -> PathBuf {
        let host: String = server
            .host
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.dir.join(format!("{host}_{}.der", server.port))
    }

    fn load(&self, server: &ServerAddr) -> Result<Trust, PinError> {
        let file = self.file_for(server);
        match std::fs::read(&file) {
            Ok(der) if !der.is_empty() => Ok(Trust::Known { der, file }),
            Ok(_) => Err(PinError::NoCertificate { file }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Trust::FirstUse { file }),
            Err(source) => Err(PinError::Read { file, source }),
        }
    }
}

/// The certificate expected on one connection attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Given with `--server-cert`.
    Configured { der: Vec<u8>, file: PathBuf },
    /// Stored in `known_servers/` by an earlier first use.
    Known { der: Vec<u8>, file: PathBuf },
    /// Nothing stored yet: accept what the server presents and store it in `file`.
    FirstUse { file: PathBuf },
    /// A pool server (named `server`), trusted because its certificate's SubjectPublicKeyInfo
    /// has this SHA-256 `fingerprint` (64 hex digits), as the server that named it said.
    Fingerprint { server: String, fingerprint: String },
}

impl Trust {
    /// The pin decision on the end-entity certificate's DER.
    pub fn check(&self, presented: &[u8]) -> Result<(), Rejection> {
        match self {
            Self::Configured { der, .. } | Self::Known { der, .. } if der == presented => Ok(()),
            Self::Configured { file, .. } => Err(Rejection::NotConfigured { file: file.clone() }),
            Self::Known { file, .. } => Err(Rejection::Changed { file: file.clone() }),
            Self::FirstUse { .. } => Ok(()),
            Self::Fingerprint {
                server,
                fingerprint,
            } => {
                let presented = spki_fingerprint(presented);
                if presented.as_deref() == Some(fingerprint.to_ascii_lowercase().as_str()) {
                    Ok(())
                } else {
                    Err(Rejection::WrongKey {
                        server: server.clone(),
                        expected: fingerprint.clone(),
                        presented: presented.unwrap_or_else(|| "(unparsable certificate)".into()),
                    })
                }
            }
        }
    }

    /// The trust after `presented` was stored on first use: that certificate from now on.
    pub fn remembered(&self, presented: &[u8]) -> Option<Trust> {
        match self {
            Self::FirstUse { file } => Some(Self::Known {
                der: presented.to_vec(),
                file: file.clone(),
            }),
            _ => None,
        }
    }

    /// After a completed handshake (which proved the server holds the certificate's key): on
    /// first use, store the certificate. Returns where it was stored, if it was.
    pub fn remember(&self, presented: &[u8]) -> Result<Option<&Path>, PinError> {
        let Self::FirstUse { file } = self else {
            return Ok(None);
        };
        atomic_file::write(file, presented).map_err(|source| PinError::Store {
            file: file.clone(),
            source,
        })?;
        Ok(Some(file))
    }
}

/// SHA-256 of a DER certificate's SubjectPublicKeyInfo, as a pool announces its servers' keys
/// (`wayray_protocol::identity::fingerprint_hex`); `None` if the certificate does not parse.
pub fn spki_fingerprint(der: &[u8]) -> Option<String> {
    let cert = CertificateDer::from(der);
    let parsed = rustls::server::ParsedCertificate::try_from(&cert).ok()?;
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        parsed.subject_public_key_info().as_ref(),
    );
    let bytes: [u8; 32] = digest.as_ref().try_into().ok()?;
    Some(wayray_protocol::identity::fingerprint_hex(&bytes))
}

/// Reads a certificate given as DER or as PEM (the first CERTIFICATE block).
fn read_certificate(file: &Path) -> Result<Vec<u8>, PinError> {
    let bytes = std::fs::read(file).map_err(|source| PinError::Read {
        file: file.to_owned(),
        source,
    })?;
    let no_certificate = || PinError::NoCertificate {
        file: file.to_owned(),
    };
    if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
        CertificateDer::from_pem_slice(&bytes)
            .map(|der| der.to_vec())
            .map_err(|_| no_certificate())
    } else if bytes.is_empty() {
        Err(no_certificate())
    } else {
        Ok(bytes)
    }
}

/// rustls verifier applying a [`Trust`]; remembers a rejection so the caller can tell "refused
/// by the pin" (fatal) from any other handshake failure (retried). One verifier serves every
/// attempt while the trust stays the same (rustls resumes TLS sessions only with the verifier
/// that verified them), so the trust can move on from first use to the stored certificate.
#[derive(Debug)]
pub struct PinnedCertVerifier {
    trust: Mutex<Trust>,
    algorithms: WebPkiSupportedAlgorithms,
    rejection: Mutex<Option<Rejection>>,
}

impl PinnedCertVerifier {
    pub fn new(trust: Trust, provider: &CryptoProvider) -> Self {
        Self {
            trust: Mutex::new(trust),
            algorithms: provider.signature_verification_algorithms,
            rejection: Mutex::new(None),
        }
    }

    pub fn trust(&self) -> Trust {
        self.trust
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// After a first use was stored: from now on only that certificate.
    pub fn set_trust(&self, trust: Trust) {
        *self.trust.lock().unwrap_or_else(PoisonError::into_inner) = trust;
    }

    /// Forgets the last attempt's rejection before the next attempt.
    pub fn clear_rejection(&self) {
        *self
            .rejection
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// The pin's refusal during the handshake, if that is why it failed.
    pub fn rejection(&self) -> Option<Rejection> {
        self.rejection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl ServerCertVerifier for PinnedCertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.trust().check(end_entity) {
            Ok(()) => Ok(ServerCertVerified::assertion()),
            Err(rejection) => {
                *self
                    .rejection
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(rejection.clone());
                Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                    OtherError(Arc::new(rejection)),
                )))
            }
        }
    }

    /// Never called: the client config offers TLS 1.3 only. Refuse rather than verify, so a
    /// configuration mistake cannot quietly downgrade.
    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General(
            "TLS 1.2 is refused: WayRay requires TLS 1.3".into(),
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::crypto::ring;

    fn cert() -> Vec<u8> {
        rcgen::generate_simple_self_signed(vec!["wayray-server".into(), "localhost".into()])
            .unwrap()
            .cert
            .der()
            .to_vec()
    }

    fn server() -> ServerAddr {
        ServerAddr {
            host: "srv.example".into(),
            port: 7390,
        }
    }

    /// Runs the verifier the way rustls does for a handshake presenting `presented`.
    fn verify(trust: Trust, presented: &[u8]) -> (Result<(), rustls::Error>, Option<Rejection>) {
        let verifier = PinnedCertVerifier::new(trust, &ring::default_provider());
        let result = verifier
            .verify_server_cert(
                &CertificateDer::from(presented),
                &[],
                &ServerName::try_from("wayray-server").unwrap(),
                &[],
                UnixTime::now(),
            )
            .map(|_| ());
        (result, verifier.rejection())
    }

    #[test]
    fn first_use_stores_then_same_certificate_is_accepted() {
        let state = tempfile::tempdir().unwrap();
        let store = TrustStore::open(None, state.path()).unwrap();
        let file = state.path().join("known_servers/srv.example_7390.der");
        let cert = cert();

        let trust = store.load(&server()).unwrap();
        assert_eq!(trust, Trust::FirstUse { file: file.clone() });
        assert_eq!(verify(trust.clone(), &cert), (Ok(()), None));
        assert_eq!(trust.remember(&cert).unwrap(), Some(file.as_path()));
        assert_eq!(std::fs::read(&file).unwrap(), cert);

        let trust = store.load(&server()).unwrap();
        assert!(matches!(trust, Trust::Known { .. }));
        assert_eq!(verify(trust.clone(), &cert), (Ok(()), None));
        // Known certificates are not rewritten.
        assert_eq!(trust.remember(&cert).unwrap(), None);
    }

    #[test]
    fn changed_certificate_is_rejected_naming_the_file() {
        let state = tempfile::tempdir().unwrap();
        let store = TrustStore::open(None, state.path()).unwrap();
        let file = state.path().join("known_servers/srv.example_7390.der");
        std::fs::write(&file, cert()).unwrap();

        let (result, rejection) = verify(store.load(&server()).unwrap(), &cert());
        assert!(result.is_err());
        assert_eq!(rejection, Some(Rejection::Changed { file: file.clone() }));
        // What the user reads (rustls's own message only shows the error's Debug form).
        let message = rejection.unwrap().to_string();
        assert!(message.contains("certificate changed"), "{message}");
        assert!(message.contains(&file.display().to_string()), "{message}");
        assert!(message.contains("remove"), "{message}");
    }

    #[test]
    fn server_cert_flag_pins_exactly_that_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let pinned = rcgen::generate_simple_self_signed(vec!["wayray-server".into()]).unwrap();
        let der_file = dir.path().join("server.der");
        let pem_file = dir.path().join("server.pem");
        std::fs::write(&der_file, pinned.cert.der()).unwrap();
        std::fs::write(&pem_file, pinned.cert.pem()).unwrap();
        let state_dir = dir.path().join("state");

        for file in [&der_file, &pem_file] {
            let store = TrustStore::open(Some(file), &state_dir).unwrap();
            let trust = store.load(&server()).unwrap();
            assert_eq!(verify(trust.clone(), pinned.cert.der()), (Ok(()), None));

            let (result, rejection) = verify(trust.clone(), &cert());
            assert!(result.is_err());
            assert_eq!(
                rejection,
                Some(Rejection::NotConfigured { file: file.clone() })
            );
            // --server-cert never writes to known_servers.
            assert_eq!(trust.remember(&cert()).unwrap(), None);
        }
        // Nor does it need a state directory.
        assert!(!state_dir.exists());
    }

    #[test]
    fn fingerprint_pins_exactly_that_key_and_is_never_stored() {
        use rcgen::PublicKeyData;
        let pool_server = rcgen::generate_simple_self_signed(vec!["wayray-server".into()]).unwrap();
        // What a pool announces: SHA-256 over the key's SubjectPublicKeyInfo.
        let digest = ::ring::digest::digest(
            &::ring::digest::SHA256,
            &pool_server.signing_key.subject_public_key_info(),
        );
        let fingerprint =
            wayray_protocol::identity::fingerprint_hex(digest.as_ref().try_into().unwrap());
        assert_eq!(
            spki_fingerprint(pool_server.cert.der()).as_deref(),
            Some(fingerprint.as_str())
        );
        let trust = Trust::Fingerprint {
            server: "s2".into(),
            fingerprint: fingerprint.clone(),
        };
        assert_eq!(
            verify(trust.clone(), pool_server.cert.der()),
            (Ok(()), None)
        );
        // Upper-case hex from a sloppy pool still names the same key.
        let upper = Trust::Fingerprint {
            server: "s2".into(),
            fingerprint: fingerprint.to_ascii_uppercase(),
        };
        assert_eq!(verify(upper, pool_server.cert.der()), (Ok(()), None));

        let other = cert();
        let (result, rejection) = verify(trust.clone(), &other);
        assert!(result.is_err());
        let Some(rejection) = rejection else {
            panic!("no rejection recorded")
        };
        assert_eq!(
            rejection,
            Rejection::WrongKey {
                server: "s2".into(),
                expected: fingerprint.clone(),
                presented: spki_fingerprint(&other).unwrap(),
            }
        );
        assert!(!rejection.is_fatal());
        assert!(rejection.to_string().contains("s2"), "{rejection}");
        // Garbage is refused, not a panic.
        assert!(matches!(
            verify(trust.clone(), b"not a certificate").1,
            Some(Rejection::WrongKey { .. })
        ));
        // Nothing goes to known_servers.
        assert_eq!(trust.remember(pool_server.cert.der()).unwrap(), None);
        assert_eq!(trust.remembered(pool_server.cert.der()), None);
    }

    #[test]
    fn unreadable_or_empty_certificates_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let load = |server_cert: Option<&Path>| {
            TrustStore::open(server_cert, dir.path())
                .unwrap()
                .load(&server())
        };
        assert!(matches!(
            load(Some(&dir.path().join("missing.pem"))),
            Err(PinError::Read { .. })
        ));
        let pem = dir.path().join("key.pem");
        std::fs::write(
            &pem,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        assert!(matches!(
            load(Some(&pem)),
            Err(PinError::NoCertificate { .. })
        ));
        let known = KnownServers::open(dir.path()).unwrap();
        std::fs::write(known.file_for(&server()), b"").unwrap();
        assert!(matches!(load(None), Err(PinError::NoCertificate { .. })));
    }

    #[test]
    fn hostile_host_names_stay_inside_known_servers() {
        let state = tempfile::tempdir().unwrap();
        let known = KnownServers::open(state.path()).unwrap();
        let file = known.file_for(&ServerAddr {
            host: "../../etc/passwd".into(),
            port: 1,
        });
        assert_eq!(
            file.parent(),
            Some(state.path().join("known_servers").as_path())
        );
        let v6 = known.file_for(&"[::1]:7390".parse().unwrap());
        assert!(v6.ends_with("__1_7390.der"), "{}", v6.display());
    }
}
