//! The server's TLS identity: a self-signed certificate made on first start and kept in the state
//! directory, so appliances that pinned it on first use keep trusting the same server.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

pub const CERT_FILE: &str = "server-cert.der";
pub const KEY_FILE: &str = "server-key.der";

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum CertError {
    #[error("cannot create state directory {path}")]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{cert} exists but {key} does not: restore the key or remove both to make a new identity (appliances that pinned the old certificate will then refuse this server)")]
    HalfIdentity { cert: PathBuf, key: PathBuf },
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// The certificate (DER) and its private key.
pub struct Identity {
    pub cert: CertificateDer<'static>,
    pub key: PrivateKeyDer<'static>,
    /// True when this start created the identity.
    pub created: bool,
}

/// Loads the identity from `state_dir`, creating it for `names` (subject alternative names) if
/// the directory has none yet.
pub fn load_or_create(state_dir: &Path, names: &[String]) -> Result<Identity, CertError> {
    let cert_path = state_dir.join(CERT_FILE);
    let key_path = state_dir.join(KEY_FILE);
    let read = |p: &Path| {
        fs::read(p).map_err(|source| CertError::Read {
            path: p.to_owned(),
            source,
        })
    };
    match (cert_path.exists(), key_path.exists()) {
        (true, true) => {
            return Ok(Identity {
                cert: CertificateDer::from(read(&cert_path)?),
                key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(read(&key_path)?)),
                created: false,
            })
        }
        (false, false) => {}
        _ => {
            return Err(CertError::HalfIdentity {
                cert: cert_path,
                key: key_path,
            })
        }
    }
    fs::create_dir_all(state_dir).map_err(|source| CertError::StateDir {
        path: state_dir.to_owned(),
        source,
    })?;
    let generated = rcgen::generate_simple_self_signed(names.to_vec())?;
    let key = generated.signing_key.serialize_der();
    // Key first, then certificate: a crash in between leaves no certificate without its key.
    write_private(&key_path, &key)?;
    write_private(&cert_path, generated.cert.der())?;
    Ok(Identity {
        cert: generated.cert.der().clone(),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
        created: true,
    })
}

/// Writes atomically (temp file + rename) with mode 0600.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CertError> {
    let err = |source| CertError::Write {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("wrsrvd-cert-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn identity_is_created_once_then_reused() {
        let dir = tempdir("reuse");
        let names = vec!["wayray-server".to_string()];
        let first = load_or_create(&dir, &names).unwrap();
        assert!(first.created);
        let second = load_or_create(&dir, &names).unwrap();
        assert!(!second.created);
        assert_eq!(first.cert, second.cert);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_key_is_an_error_not_a_new_identity() {
        let dir = tempdir("half");
        load_or_create(&dir, &["x".to_string()]).unwrap();
        fs::remove_file(dir.join(KEY_FILE)).unwrap();
        let err = load_or_create(&dir, &["x".to_string()]).err().unwrap();
        assert!(matches!(err, CertError::HalfIdentity { .. }));
        fs::remove_dir_all(&dir).unwrap();
    }
}
