//! The API's bearer token: a file of 64 hex digits (32 random bytes), made on first start with
//! mode 0600 and written atomically, so a crash never leaves a short or empty token behind.

use std::{
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

/// Shorter tokens (someone's hand-written file) are refused: they could be guessed.
const MIN_LEN: usize = 32;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum TokenError {
    #[error("cannot read the API token {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the API token {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the API token in {} is too short (at least {MIN_LEN} characters, no spaces); delete it to have a new one made", path.display())]
    Weak { path: PathBuf },
    #[error("no randomness for the API token: {0}")]
    Random(String),
}

/// The token in `path`, made first if the file does not exist. `created` is true when it was.
pub fn load_or_create(path: &Path) -> Result<(String, bool), TokenError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let token = text.trim();
            if token.len() < MIN_LEN || token.chars().any(char::is_whitespace) {
                return Err(TokenError::Weak {
                    path: path.to_owned(),
                });
            }
            Ok((token.to_owned(), false))
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok((create(path)?, true)),
        Err(source) => Err(TokenError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

fn create(path: &Path) -> Result<String, TokenError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| TokenError::Random(e.to_string()))?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let write_err = |source| TokenError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(write_err)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(token.as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(err) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(write_err(err));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn made_once_private_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/api-token");
        let (token, created) = load_or_create(&path).unwrap();
        assert!(created);
        assert_eq!(token.len(), 64);
        assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load_or_create(&path).unwrap(), (token, false));
        // Nothing left over from the atomic write.
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
    }

    #[test]
    fn a_short_token_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api-token");
        std::fs::write(&path, "secret\n").unwrap();
        assert!(matches!(
            load_or_create(&path),
            Err(TokenError::Weak { .. })
        ));
    }
}
