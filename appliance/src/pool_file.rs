//! `STATE_DIR/pool.toml`: the last pool list a server sent (`Welcome.pool`), kept across
//! reboots so that an appliance whose configured server is down can still reach the pool's
//! other servers. Replaced atomically; a missing or unreadable file only means "no pool known"
//! (the appliance then behaves as without a pool), never an error that stops it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use wayray_protocol::PoolServer;

use crate::atomic_file;

const FILE: &str = "pool.toml";

#[derive(Debug, Default, Serialize, Deserialize)]
struct Contents {
    #[serde(default)]
    server: Vec<PoolServer>,
}

/// The pool list's file in the state directory.
#[derive(Debug, Clone)]
pub struct PoolFile {
    path: PathBuf,
}

impl PoolFile {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            path: state_dir.join(FILE),
        }
    }

    /// The kept list, empty if there is none or it cannot be read (logged).
    pub fn load(&self) -> Vec<PoolServer> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(error) => {
                tracing::warn!(file = %self.path.display(), %error, "cannot read the kept pool list");
                return Vec::new();
            }
        };
        match toml::from_str::<Contents>(&text) {
            Ok(contents) => contents.server,
            Err(error) => {
                tracing::warn!(file = %self.path.display(), %error, "ignoring a malformed pool list");
                Vec::new()
            }
        }
    }

    /// Keeps `pool` (an empty list removes the file). Failures are logged: the list in memory
    /// still serves this run.
    pub fn store(&self, pool: &[PoolServer]) {
        let result = if pool.is_empty() {
            match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                other => other,
            }
        } else {
            let contents = Contents {
                server: pool.to_vec(),
            };
            match toml::to_string(&contents) {
                Ok(text) => {
                    let text = format!(
                        "# The servers of this appliance's pool, as its server last listed them.\n\
                         # Written by wrclient; tried when the configured server is unreachable.\n\n\
                         {text}"
                    );
                    atomic_file::write(&self.path, text.as_bytes())
                }
                Err(e) => Err(std::io::Error::other(e)),
            }
        };
        if let Err(error) = result {
            tracing::warn!(file = %self.path.display(), %error, "cannot keep the pool list");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_removed_and_tolerant_of_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let file = PoolFile::new(dir.path());
        assert!(file.load().is_empty());
        let pool = vec![
            PoolServer {
                name: "s1".into(),
                address: "10.0.0.1:7390".into(),
                fingerprint: "ab".repeat(32),
            },
            PoolServer {
                name: "s2".into(),
                address: "[fd00::2]:7390".into(),
                fingerprint: "cd".repeat(32),
            },
        ];
        file.store(&pool);
        assert_eq!(file.load(), pool);
        file.store(&[]);
        assert!(!dir.path().join(FILE).exists());
        std::fs::write(dir.path().join(FILE), "server = 3").unwrap();
        assert!(file.load().is_empty());
    }
}
