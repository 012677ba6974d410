//! Appliance certificates (mutual TLS): every appliance presents the self-signed certificate it
//! made on its first start, and is known by the SHA-256 fingerprint of that certificate's public
//! key. There is no CA: the fingerprint *is* the identity, the handshake signature proves the
//! appliance holds the key, and the daemon decides (by `appliance_auth` and the administrator's
//! approvals) whether that identity gets sessions.
//!
//! Under `required` the decision is made here, in the handshake: an unknown or revoked
//! certificate never completes it. Under `open` and `enrol` any certificate completes it and the
//! daemon decides after the handshake (a pending appliance gets a notice instead of a session).

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{verify_tls13_signature, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use wayray_protocol::identity;

use crate::config::ApplianceAuth;

/// The appliance identity of a certificate: SHA-256 of its SubjectPublicKeyInfo, 64 hex digits.
pub fn fingerprint(cert: &CertificateDer<'_>) -> Result<String, rustls::Error> {
    let parsed = ParsedCertificate::try_from(cert)?;
    let spki = parsed.subject_public_key_info();
    let digest = ring::digest::digest(&ring::digest::SHA256, spki.as_ref());
    let bytes: [u8; 32] = digest
        .as_ref()
        .try_into()
        .map_err(|_| rustls::Error::General("SHA-256 gave no 32 bytes".into()))?;
    Ok(identity::fingerprint_hex(&bytes))
}

/// The verdict on a certificate in the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeVerdict {
    Accept,
    /// Unknown (or only pending) under `required`: TLS alert `access_denied`.
    Unknown,
    /// Revoked by an administrator: TLS alert `certificate_revoked`.
    Revoked,
}

/// Decides on an appliance's certificate during the handshake; the daemon implements it (and
/// records the attempt), so the verifier holds no state of its own.
pub trait CertificatePolicy: Send + Sync + std::fmt::Debug {
    fn handshake_verdict(&self, fingerprint: &str) -> HandshakeVerdict;
}

/// rustls's view of [`CertificatePolicy`]: asks every appliance for a certificate (mandatory
/// unless `open`), checks the handshake signature with it, and refuses what the policy refuses.
#[derive(Debug)]
pub struct ApplianceVerifier {
    policy: ApplianceAuth,
    decide: Arc<dyn CertificatePolicy>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ApplianceVerifier {
    pub fn new(
        policy: ApplianceAuth,
        decide: Arc<dyn CertificatePolicy>,
        provider: &CryptoProvider,
    ) -> Self {
        Self {
            policy,
            decide,
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ClientCertVerifier for ApplianceVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    /// Under `open` an appliance without a certificate (an older wrclient, a test peer) still
    /// gets through; it then has no identity and keeps the token it names.
    fn client_auth_mandatory(&self) -> bool {
        self.policy != ApplianceAuth::Open
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let fingerprint = fingerprint(end_entity)?;
        match self.decide.handshake_verdict(&fingerprint) {
            HandshakeVerdict::Accept => Ok(ClientCertVerified::assertion()),
            HandshakeVerdict::Unknown => Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            )),
            HandshakeVerdict::Revoked => {
                Err(rustls::Error::InvalidCertificate(CertificateError::Revoked))
            }
        }
    }

    /// Never called: the server speaks TLS 1.3 only.
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

/// The fingerprint of the certificate the peer of `conn` authenticated with, if it sent one.
pub fn peer_fingerprint(conn: &quinn::Connection) -> Option<String> {
    let chain = conn
        .peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?;
    let cert = chain.first()?;
    match fingerprint(cert) {
        Ok(fp) => Some(fp),
        Err(err) => {
            // rustls parsed it in the handshake already, so this does not happen.
            tracing::warn!(%err, "cannot fingerprint the appliance's certificate");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::PublicKeyData;

    #[derive(Debug)]
    struct Fixed(HandshakeVerdict);
    impl CertificatePolicy for Fixed {
        fn handshake_verdict(&self, _: &str) -> HandshakeVerdict {
            self.0
        }
    }

    fn verifier(policy: ApplianceAuth, verdict: HandshakeVerdict) -> ApplianceVerifier {
        ApplianceVerifier::new(
            policy,
            Arc::new(Fixed(verdict)),
            &rustls::crypto::ring::default_provider(),
        )
    }

    #[test]
    fn fingerprint_is_of_the_public_key_not_the_certificate() {
        let key = rcgen::KeyPair::generate().unwrap();
        let a = rcgen::CertificateParams::new(vec!["a".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let b = rcgen::CertificateParams::new(vec!["b".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let fa = fingerprint(a.der()).unwrap();
        assert_eq!(fa.len(), 64);
        assert_eq!(fa, fingerprint(b.der()).unwrap());
        let other = rcgen::generate_simple_self_signed(vec!["a".into()]).unwrap();
        assert_ne!(fa, fingerprint(other.cert.der()).unwrap());
        // What the hash is over: the SubjectPublicKeyInfo, as rcgen wrote it.
        let digest = ring::digest::digest(&ring::digest::SHA256, &key.subject_public_key_info());
        assert_eq!(
            fa,
            identity::fingerprint_hex(digest.as_ref().try_into().unwrap())
        );
        assert!(fingerprint(&CertificateDer::from(vec![1, 2, 3])).is_err());
    }

    #[test]
    fn verdicts_become_handshake_errors() {
        let cert = rcgen::generate_simple_self_signed(vec!["a".into()]).unwrap();
        let der = cert.cert.der();
        let now = UnixTime::now();
        assert!(verifier(ApplianceAuth::Required, HandshakeVerdict::Accept)
            .verify_client_cert(der, &[], now)
            .is_ok());
        assert_eq!(
            verifier(ApplianceAuth::Required, HandshakeVerdict::Unknown)
                .verify_client_cert(der, &[], now)
                .err(),
            Some(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure
            ))
        );
        assert_eq!(
            verifier(ApplianceAuth::Enrol, HandshakeVerdict::Revoked)
                .verify_client_cert(der, &[], now)
                .err(),
            Some(rustls::Error::InvalidCertificate(CertificateError::Revoked))
        );
        assert!(!verifier(ApplianceAuth::Open, HandshakeVerdict::Accept).client_auth_mandatory());
        assert!(verifier(ApplianceAuth::Enrol, HandshakeVerdict::Accept).client_auth_mandatory());
    }
}
