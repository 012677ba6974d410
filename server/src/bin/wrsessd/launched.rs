//! `RUN_DIR/launched/ID.json`: one small file per session this launcher started, written when
//! it starts and removed when it ends. A launcher that restarts (a crash, an upgrade) reads
//! them to find its sessions again instead of forgetting them: it keeps watching them, ends
//! them when asked, and reports their exits to the daemon.
//!
//! The run directory is a tmpfs in production: after a reboot there is nothing to adopt.

use std::{
    fs,
    io::{self, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use wayray_protocol::sessions::{parse_session_id, session_id_string, SessionId};

use crate::cgroup::Limits;

/// Longest record read back (they are a few hundred bytes).
const MAX_RECORD_LEN: u64 = 16 * 1024;

/// What a later launcher needs to take a session over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// 16 hex digits, as everywhere else.
    pub id: String,
    /// "greeter" or "user".
    pub kind: String,
    /// The compositor's pid (its process group's id too).
    pub pid: u32,
    /// The compositor's start time in `/proc/PID/stat`: a recycled pid does not match it.
    pub start_time: u64,
    /// The user of a user session (its PAM session is closed at the end).
    pub user: Option<String>,
    /// A greeter's token and login ticket, so its login form keeps working.
    pub token: Option<String>,
    pub ticket: Option<String>,
    /// The limits its cgroup was given (the memory limit is named when it is exceeded).
    pub limits: Option<Limits>,
}

impl Record {
    pub fn session(&self) -> Option<SessionId> {
        parse_session_id(&self.id)
    }
}

pub struct Launched {
    dir: PathBuf,
}

impl Launched {
    pub fn new(dir: PathBuf) -> Self {
        Launched { dir }
    }

    fn path(&self, id: SessionId) -> PathBuf {
        self.dir.join(format!("{}.json", session_id_string(id)))
    }

    /// Notes a started session (written to a temporary file and renamed: a crash never leaves
    /// half a record).
    pub fn save(&self, record: &Record) -> io::Result<()> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        let id = record
            .session()
            .ok_or_else(|| io::Error::other(format!("bad session id {:?}", record.id)))?;
        let path = self.path(id);
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec(record).map_err(io::Error::other)?;
        let mut file = fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, &path)
    }

    pub fn remove(&self, id: SessionId) {
        let path = self.path(id);
        if let Err(err) = fs::remove_file(&path) {
            if err.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %path.display(), %err, "cannot remove a session record");
            }
        }
    }

    /// Every record left by an earlier launcher. Unreadable ones are logged and removed.
    pub fn load_all(&self) -> Vec<Record> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Vec::new(),
            Err(err) => {
                tracing::warn!(dir = %self.dir.display(), %err, "cannot read the session records");
                return Vec::new();
            }
        };
        let mut records = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                let _ = fs::remove_file(&path);
                continue;
            }
            match read_record(&path) {
                Ok(record) => records.push(record),
                Err(err) => {
                    tracing::warn!(path = %path.display(), %err, "dropping an unreadable session record");
                    let _ = fs::remove_file(&path);
                }
            }
        }
        records
    }
}

fn read_record(path: &Path) -> Result<Record, String> {
    let meta = fs::metadata(path).map_err(|e| e.to_string())?;
    if meta.len() > MAX_RECORD_LEN {
        return Err(format!("{} bytes is too long for a record", meta.len()));
    }
    let bytes = fs::read(path).map_err(|e| e.to_string())?;
    let record: Record = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    if record.session().is_none() {
        return Err(format!("bad session id {:?}", record.id));
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_a_round_trip_and_junk_is_dropped() {
        let dir = std::env::temp_dir().join(format!("wrsessd-launched-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let launched = Launched::new(dir.clone());
        let record = Record {
            id: session_id_string(0xab),
            kind: "user".into(),
            pid: 42,
            start_time: 7,
            user: Some("alice".into()),
            token: None,
            ticket: None,
            limits: Some(Limits::default()),
        };
        launched.save(&record).unwrap();
        fs::write(dir.join("junk.json"), b"{").unwrap();
        assert_eq!(launched.load_all(), vec![record]);
        assert!(!dir.join("junk.json").exists());
        launched.remove(0xab);
        assert!(launched.load_all().is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }
}
