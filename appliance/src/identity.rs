//! The appliance's own identity: a key pair and a self-signed certificate made on its first
//! start and kept in its state directory (on the image, the persistent FAT partition), presented
//! to the server as a TLS client certificate on every connection. The server knows the appliance
//! by the SHA-256 fingerprint of the public key (`wradm appliances`) and derives its
//! pseudo-token `pseudo.<short id>` from it, so no other machine can claim to be it.
//!
//! Files: `appliance-key.der` (PKCS#8) and `appliance-cert.der`, each written atomically with
//! mode 0600, the key first. One without the other is an error, never a silent new identity:
//! a new identity is a new appliance, which the server's administrator has to approve again.

use std::path::{Path, PathBuf};

use rcgen::PublicKeyData;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use wayray_protocol::identity;

use crate::atomic_file;

pub const KEY_FILE: &str = "appliance-key.der";
pub const CERT_FILE: &str = "appliance-cert.der";

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot create the state directory {}", dir.display())]
    StateDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {}", file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {}; make --state-dir writable", file.display())]
    Write {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{} exists but {} does not: restore the missing file, or remove both to make a new \
         identity (the server then sees a new appliance that needs approving again)",
        present.display(), missing.display()
    )]
    HalfPresent { present: PathBuf, missing: PathBuf },
    #[error(
        "{} and {} do not belong together ({reason}): restore the right pair, or remove both to \
         make a new identity (the server then sees a new appliance that needs approving again)",
        key.display(), cert.display()
    )]
    Mismatch {
        key: PathBuf,
        cert: PathBuf,
        reason: String,
    },
    #[error("cannot make a key pair and certificate")]
    Generate(#[source] rcgen::Error),
}

/// The appliance's key pair and certificate, and the fingerprint the server knows it by.
#[derive(Debug)]
pub struct ApplianceIdentity {
    pub cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
    /// SHA-256 of the certificate's public key, 64 hex digits.
    pub fingerprint: String,
    /// True when this start made it.
    pub created: bool,
}

impl ApplianceIdentity {
    /// Loads the identity kept in `state_dir`, making it if the directory has none.
    pub fn load_or_create(state_dir: &Path) -> Result<Self, IdentityError> {
        let key_file = state_dir.join(KEY_FILE);
        let cert_file = state_dir.join(CERT_FILE);
        let read = |file: &Path| match std::fs::read(file) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(IdentityError::Read {
                file: file.to_owned(),
                source,
            }),
        };
        match (read(&key_file)?, read(&cert_file)?) {
            (Some(key), Some(cert)) => Self::check(key, cert, &key_file, &cert_file),
            (None, None) => Self::create(state_dir, &key_file, &cert_file),
            (Some(_), None) => Err(IdentityError::HalfPresent {
                present: key_file,
                missing: cert_file,
            }),
            (None, Some(_)) => Err(IdentityError::HalfPresent {
                present: cert_file,
                missing: key_file,
            }),
        }
    }

    /// The id the server lists this appliance by (the fingerprint's first 16 hex digits).
    pub fn short_id(&self) -> &str {
        identity::short_id(&self.fingerprint)
    }

    /// This appliance's pseudo-token, as the server derives it from the certificate.
    pub fn pseudo_token(&self) -> String {
        identity::pseudo_token(&self.fingerprint)
    }

    /// The certificate chain and key for rustls's client authentication.
    pub fn client_auth(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        (
            vec![self.cert.clone()],
            PrivateKeyDer::Pkcs8(self.key.clone_key()),
        )
    }

    fn create(state_dir: &Path, key_file: &Path, cert_file: &Path) -> Result<Self, IdentityError> {
        std::fs::create_dir_all(state_dir).map_err(|source| IdentityError::StateDir {
            dir: state_dir.to_owned(),
            source,
        })?;
        let key = rcgen::KeyPair::generate().map_err(IdentityError::Generate)?;
        let fingerprint = spki_fingerprint(&key.subject_public_key_info());
        let mut params = rcgen::CertificateParams::new(vec!["wayray-appliance".to_owned()])
            .map_err(IdentityError::Generate)?;
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("WayRay appliance {}", identity::short_id(&fingerprint)),
        );
        let cert = params.self_signed(&key).map_err(IdentityError::Generate)?;
        let key_der = key.serialize_der();
        // Key first: a power cut in between leaves a key without a certificate, which is
        // reported, rather than a certificate whose key is lost.
        let write = |file: &Path, bytes: &[u8]| {
            atomic_file::write_private(file, bytes).map_err(|source| IdentityError::Write {
                file: file.to_owned(),
                source,
            })
        };
        write(key_file, &key_der)?;
        write(cert_file, cert.der())?;
        Ok(Self {
            cert: cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(key_der),
            fingerprint,
            created: true,
        })
    }

    /// Checks that the stored key is a key and the certificate is its certificate.
    fn check(
        key: Vec<u8>,
        cert: Vec<u8>,
        key_file: &Path,
        cert_file: &Path,
    ) -> Result<Self, IdentityError> {
        let mismatch = |reason: String| IdentityError::Mismatch {
            key: key_file.to_owned(),
            cert: cert_file.to_owned(),
            reason,
        };
        let pkcs8 = PrivatePkcs8KeyDer::from(key);
        let pair = rcgen::KeyPair::try_from(&pkcs8)
            .map_err(|e| mismatch(format!("the key does not parse: {e}")))?;
        let cert = CertificateDer::from(cert);
        let parsed = rustls::server::ParsedCertificate::try_from(&cert)
            .map_err(|e| mismatch(format!("the certificate does not parse: {e}")))?;
        if parsed.subject_public_key_info().as_ref() != pair.subject_public_key_info().as_slice() {
            return Err(mismatch("the certificate is for another key".into()));
        }
        Ok(Self {
            fingerprint: spki_fingerprint(&pair.subject_public_key_info()),
            cert,
            key: pkcs8,
            created: false,
        })
    }
}

/// SHA-256 of a SubjectPublicKeyInfo, as the server computes it from the certificate.
fn spki_fingerprint(spki: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, spki);
    let mut bytes = [0u8; 32];
    bytes.copy_from_slice(digest.as_ref());
    identity::fingerprint_hex(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn made_once_kept_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let first = ApplianceIdentity::load_or_create(&state).unwrap();
        assert!(first.created);
        assert_eq!(first.fingerprint.len(), 64);
        assert_eq!(first.pseudo_token(), format!("pseudo.{}", first.short_id()));
        for file in [KEY_FILE, CERT_FILE] {
            let mode = std::fs::metadata(state.join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
        let again = ApplianceIdentity::load_or_create(&state).unwrap();
        assert!(!again.created);
        assert_eq!(again.fingerprint, first.fingerprint);
        assert_eq!(again.cert, first.cert);
        // The fingerprint is what a server computes from the certificate.
        let parsed = rustls::server::ParsedCertificate::try_from(&again.cert).unwrap();
        assert_eq!(
            spki_fingerprint(parsed.subject_public_key_info().as_ref()),
            first.fingerprint
        );
    }

    #[test]
    fn half_an_identity_is_an_error_not_a_new_one() {
        for missing in [KEY_FILE, CERT_FILE] {
            let dir = tempfile::tempdir().unwrap();
            ApplianceIdentity::load_or_create(dir.path()).unwrap();
            std::fs::remove_file(dir.path().join(missing)).unwrap();
            let err = ApplianceIdentity::load_or_create(dir.path()).unwrap_err();
            assert!(
                matches!(err, IdentityError::HalfPresent { .. }),
                "{missing}: {err}"
            );
            assert!(err.to_string().contains(missing), "{err}");
            // Nothing was made in its place.
            assert!(!dir.path().join(missing).exists());
        }
    }

    #[test]
    fn a_certificate_of_another_key_is_refused() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        ApplianceIdentity::load_or_create(a.path()).unwrap();
        ApplianceIdentity::load_or_create(b.path()).unwrap();
        std::fs::copy(b.path().join(CERT_FILE), a.path().join(CERT_FILE)).unwrap();
        let err = ApplianceIdentity::load_or_create(a.path()).unwrap_err();
        assert!(matches!(err, IdentityError::Mismatch { .. }), "{err}");
        std::fs::write(a.path().join(KEY_FILE), b"garbage").unwrap();
        let err = ApplianceIdentity::load_or_create(a.path()).unwrap_err();
        assert!(matches!(err, IdentityError::Mismatch { .. }), "{err}");
    }
}
