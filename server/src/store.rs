//! The session store: the daemon's source of truth for sessions, token bindings and the audit
//! log, in an embedded SQLite file so it survives a restart of `wrsrvd`.
//!
//! Like the protocol code it takes time as an argument (`now_ms`, milliseconds since the Unix
//! epoch) and never reads a clock, so tests are deterministic; it owns no sockets or processes.
//! The daemon decides (attach, detach, time out), the store remembers.
//!
//! Layout (schema version in `PRAGMA user_version`, one per entry of `MIGRATIONS`):
//! - `sessions`: one row per session ever created, destroyed ones kept for history. The session
//!   id is a `u64` stored bit-cast as SQLite's signed `INTEGER`. `secret` is what the session
//!   compositor was started with, so a restarted daemon can still check a reconnecting session.
//! - `bindings`: token → session. A token is bound to at most one session; a session can have
//!   several tokens.
//! - `audit`: append-only lifecycle log (created, authenticated, attached, …).
//! - `card_keys`: token → the public key its smart card proved when its user enrolled it.
//! - `appliances` (version 3): appliances known by their certificate's fingerprint, with their
//!   approval state (pending, approved, revoked) and when and where they were last seen.
//!
//! The file holds session secrets, so it is created readable by its owner only.

use std::{
    collections::HashMap,
    fs,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    time::Duration,
};

use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior};
use wayray_protocol::{
    identity,
    sessions::{
        session_id_string, ApplianceAuthState, ApplianceId, SessionId, SessionInfo, SessionKind,
        SessionState,
    },
};

/// Schema migrations; entry `i` takes the file from version `i` to `i + 1`. Append, never edit.
const MIGRATIONS: &[&str] = &[
    // 1: sessions, bindings, audit.
    "CREATE TABLE sessions (
         id              INTEGER PRIMARY KEY,
         kind            TEXT NOT NULL,
         state           TEXT NOT NULL,
         user            TEXT,
         pid             INTEGER,
         wayland_display TEXT,
         secret          TEXT NOT NULL,
         created_ms      INTEGER NOT NULL,
         changed_ms      INTEGER NOT NULL
     );
     CREATE INDEX sessions_by_state ON sessions (state, changed_ms);
     CREATE INDEX sessions_by_user ON sessions (user);
     CREATE TABLE bindings (
         token    TEXT PRIMARY KEY,
         session  INTEGER NOT NULL REFERENCES sessions (id),
         bound_ms INTEGER NOT NULL
     );
     CREATE INDEX bindings_by_session ON bindings (session);
     CREATE TABLE audit (
         seq       INTEGER PRIMARY KEY AUTOINCREMENT,
         at_ms     INTEGER NOT NULL,
         event     TEXT NOT NULL,
         session   INTEGER,
         token     TEXT,
         appliance TEXT,
         user      TEXT,
         detail    TEXT
     );",
    // 2: the public keys of smart cards, recorded when their user first logged in with them.
    "CREATE TABLE card_keys (
         token       TEXT PRIMARY KEY,
         user        TEXT NOT NULL,
         spki        BLOB NOT NULL,
         enrolled_ms INTEGER NOT NULL
     );",
    // 3: appliances known by their certificate (appliance_auth).
    "CREATE TABLE appliances (
         fingerprint   TEXT PRIMARY KEY,
         state         TEXT NOT NULL,
         first_seen_ms INTEGER NOT NULL,
         last_seen_ms  INTEGER NOT NULL,
         last_address  TEXT,
         client_name   TEXT,
         changed_ms    INTEGER NOT NULL
     );",
];

/// The schema version this build writes and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// How long a statement waits for another connection's write lock before failing (a second
/// process, e.g. an admin running `sqlite3` on the file, may hold it briefly).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How often [`Store::new_session_id`] draws again when the random id is taken. With 64-bit ids
/// a single collision is already improbable; running out means the random source is broken.
const ID_ATTEMPTS: usize = 16;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum StoreError {
    #[error("cannot create {path} for the session store")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create the session store {path} (readable by its owner only)")]
    CreateFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("session store {store}: cannot {op}")]
    Sqlite {
        store: String,
        op: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("session store {store} has schema version {found}, but this wrsrvd knows versions up to {SCHEMA_VERSION}: run a newer wrsrvd, or move the file away to start with an empty store")]
    SchemaTooNew { store: String, found: i64 },
    #[error("session store {store}: cannot {op}: the file holds {what}; fix or remove the row with sqlite3, or move the file away to start with an empty store")]
    Corrupt {
        store: String,
        op: String,
        what: String,
    },
    #[error("session {} is not in the store", session_id_string(*.0))]
    NoSuchSession(SessionId),
    #[error("session {} already exists in the store", session_id_string(*.0))]
    SessionExists(SessionId),
    #[error("session {}: cannot go from {} to {}", session_id_string(*.id), .from.as_str(), .to.as_str())]
    Transition {
        id: SessionId,
        from: SessionState,
        to: SessionState,
    },
    #[error("cannot bind token {token:?} to session {}: it is destroyed", session_id_string(*.id))]
    BindDestroyed { token: String, id: SessionId },
    #[error("cannot read random bytes from the operating system: {0}")]
    Random(String),
    #[error("no free session id after {ID_ATTEMPTS} random draws: is the random source broken?")]
    NoFreeId,
}

/// One session as the store knows it (no appliance: that is the daemon's live knowledge).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: SessionId,
    pub kind: SessionKind,
    pub state: SessionState,
    pub user: Option<String>,
    /// Tokens bound to it, oldest binding first.
    pub tokens: Vec<String>,
    pub pid: Option<u32>,
    pub wayland_display: Option<String>,
    pub created_ms: u64,
    /// Last change of state, process or user (the suspend timeout counts from it).
    pub changed_ms: u64,
}

impl SessionRecord {
    pub fn is_live(&self) -> bool {
        self.state != SessionState::Destroyed
    }

    /// The admin view, with the appliance showing it now (if any) filled in by the daemon.
    pub fn info(&self, appliance: Option<ApplianceId>) -> SessionInfo {
        SessionInfo {
            id: self.id,
            kind: self.kind,
            state: self.state,
            user: self.user.clone(),
            tokens: self.tokens.clone(),
            appliance,
            pid: self.pid,
            wayland_display: self.wayland_display.clone(),
            created_ms: self.created_ms,
            changed_ms: self.changed_ms,
        }
    }
}

impl From<SessionRecord> for SessionInfo {
    /// With `appliance: None`; the daemon sets it for sessions it shows somewhere.
    fn from(r: SessionRecord) -> Self {
        SessionInfo {
            id: r.id,
            kind: r.kind,
            state: r.state,
            user: r.user,
            tokens: r.tokens,
            appliance: None,
            pid: r.pid,
            wayland_display: r.wayland_display,
            created_ms: r.created_ms,
            changed_ms: r.changed_ms,
        }
    }
}

/// What happened, in the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditKind {
    /// A session was created (greeter, user or shared).
    Created,
    /// PAM accepted a user in a greeter.
    Authenticated,
    /// A login attempt failed (the detail says why).
    AuthFailed,
    /// A session was shown on an appliance.
    Attached,
    /// A session was taken off its appliance (card out, appliance gone, admin detach).
    Detached,
    /// A session ended.
    Destroyed,
    /// A session still running from before a daemon restart reconnected and was taken over.
    Adopted,
    /// A card's public key was recorded for its token (its user logged in with it).
    CardEnrolled,
    /// A card token was refused: no proof, a wrong one, or another key (the detail says).
    CardRefused,
    /// A session runs without its cgroup limits (the detail says why).
    Unconfined,
    /// An appliance the server did not know connected and was recorded as pending (under
    /// `enrol` it waits for approval; under `open` it is let in all the same).
    AppliancePending,
    /// An administrator approved an appliance.
    ApplianceApproved,
    /// An administrator revoked an appliance (its connection, if any, was ended).
    ApplianceRevoked,
    /// An appliance was refused: unknown under `required`, or revoked (the detail says which).
    ApplianceRefused,
    /// An appliance was sent to another server of the pool (the detail says where and why).
    Redirected,
    /// A token bound here while etcd was unreachable turned out to be bound to another server
    /// of the pool; the pool's binding stands (the detail names the owner).
    PoolConflict,
    /// A USB device of an appliance was attached to the session's virtual host controller
    /// (the detail names the device and the vhci port).
    UsbAttached,
    /// A USB device was not forwarded (the detail says why: policy, no session, no vhci-hcd).
    UsbRefused,
    /// A forwarded USB device was detached (the detail says why: unplugged, card out,
    /// appliance gone, policy change).
    UsbDetached,
}

impl AuditKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::Created => "created",
            AuditKind::Authenticated => "authenticated",
            AuditKind::AuthFailed => "auth_failed",
            AuditKind::Attached => "attached",
            AuditKind::Detached => "detached",
            AuditKind::Destroyed => "destroyed",
            AuditKind::Adopted => "adopted",
            AuditKind::CardEnrolled => "card_enrolled",
            AuditKind::CardRefused => "card_refused",
            AuditKind::Unconfined => "unconfined",
            AuditKind::AppliancePending => "appliance_pending",
            AuditKind::ApplianceApproved => "appliance_approved",
            AuditKind::ApplianceRevoked => "appliance_revoked",
            AuditKind::ApplianceRefused => "appliance_refused",
            AuditKind::Redirected => "redirected",
            AuditKind::PoolConflict => "pool_conflict",
            AuditKind::UsbAttached => "usb_attached",
            AuditKind::UsbRefused => "usb_refused",
            AuditKind::UsbDetached => "usb_detached",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "created" => AuditKind::Created,
            "authenticated" => AuditKind::Authenticated,
            "auth_failed" => AuditKind::AuthFailed,
            "attached" => AuditKind::Attached,
            "detached" => AuditKind::Detached,
            "destroyed" => AuditKind::Destroyed,
            "adopted" => AuditKind::Adopted,
            "card_enrolled" => AuditKind::CardEnrolled,
            "card_refused" => AuditKind::CardRefused,
            "unconfined" => AuditKind::Unconfined,
            "appliance_pending" => AuditKind::AppliancePending,
            "appliance_approved" => AuditKind::ApplianceApproved,
            "appliance_revoked" => AuditKind::ApplianceRevoked,
            "appliance_refused" => AuditKind::ApplianceRefused,
            "redirected" => AuditKind::Redirected,
            "pool_conflict" => AuditKind::PoolConflict,
            "usb_attached" => AuditKind::UsbAttached,
            "usb_refused" => AuditKind::UsbRefused,
            "usb_detached" => AuditKind::UsbDetached,
            _ => return None,
        })
    }
}

/// One audit log entry: what happened and to whom. Build it with [`AuditEvent::new`] and the
/// setters, e.g. `AuditEvent::new(AuditKind::Attached).session(id).token(t).appliance(a)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub kind: AuditKind,
    pub session: Option<SessionId>,
    pub token: Option<String>,
    /// The appliance as text, e.g. "3 127.0.0.1:5555 wrclient 0.1.0": appliance ids are only
    /// unique while one daemon runs, so the log keeps what identifies it for a person.
    pub appliance: Option<String>,
    pub user: Option<String>,
    pub detail: Option<String>,
}

impl AuditEvent {
    pub fn new(kind: AuditKind) -> Self {
        Self {
            kind,
            session: None,
            token: None,
            appliance: None,
            user: None,
            detail: None,
        }
    }

    pub fn session(mut self, id: SessionId) -> Self {
        self.session = Some(id);
        self
    }

    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    pub fn appliance(mut self, appliance: impl Into<String>) -> Self {
        self.appliance = Some(appliance.into());
        self
    }

    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// An audit entry as stored: its place in the log and when it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub seq: u64,
    pub at_ms: u64,
    pub event: AuditEvent,
}

/// Whether the session life cycle allows `from` → `to`: Created → Active ⇄ Suspended, any live
/// state → Destroyed, and Created → Suspended (a greeter whose appliance left before it was
/// shown). Destroyed is final and nothing goes back to Created; staying in a state is allowed.
pub fn transition_allowed(from: SessionState, to: SessionState) -> bool {
    use SessionState::*;
    match (from, to) {
        // Staying is no change (and changes nothing in the store).
        _ if from == to => true,
        (Destroyed, _) | (_, Created) => false,
        (Created | Active | Suspended, Active | Suspended | Destroyed) => true,
    }
}

/// A fresh random secret for a session compositor (64 hex digits, 256 bits).
pub fn new_secret() -> Result<String, StoreError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| StoreError::Random(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The session store. Single writer: the daemon owns it (`&mut self` for every change).
pub struct Store {
    conn: Connection,
    /// The file's path, or ":memory:", for error messages.
    name: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("name", &self.name).finish()
    }
}

impl Store {
    /// Opens the store at `path`, creating the file (mode 0600), its directory and the schema
    /// when missing, and migrating an older schema. The file is in WAL mode: readers do not
    /// block the daemon's writes, and a crash loses at most the last transaction.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: dir.to_owned(),
                source,
            })?;
        }
        restrict_file(path).map_err(|source| StoreError::CreateFile {
            path: path.to_owned(),
            source,
        })?;
        let name = path.display().to_string();
        let conn = Connection::open(path).map_err(|e| Fail::Sql(e).at(&name, "open the file"))?;
        Self::setup(conn, name, true)
    }

    /// A store that lives in memory and is gone when dropped; for tests.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let name = ":memory:".to_owned();
        let conn = Connection::open_in_memory()
            .map_err(|e| Fail::Sql(e).at(&name, "open it in memory"))?;
        Self::setup(conn, name, false)
    }

    fn setup(mut conn: Connection, name: String, wal: bool) -> Result<Self, StoreError> {
        let configure = |conn: &Connection| -> rusqlite::Result<()> {
            conn.busy_timeout(BUSY_TIMEOUT)?;
            if wal {
                conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| {
                    r.get::<_, String>(0)
                })?;
                // With WAL, NORMAL is durable across a crash of the daemon (not of the machine),
                // without an fsync per change.
                conn.pragma_update(None, "synchronous", "NORMAL")?;
            }
            conn.pragma_update(None, "foreign_keys", true)
        };
        configure(&conn).map_err(|e| Fail::Sql(e).at(&name, "configure the connection"))?;
        migrate(&mut conn).map_err(|e| e.at(&name, "create or upgrade the schema"))?;
        Ok(Self { conn, name })
    }

    /// Where the store lives: its path, or ":memory:".
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A random nonzero id that no session in the store (live or destroyed) has had.
    pub fn new_session_id(&self) -> Result<SessionId, StoreError> {
        for _ in 0..ID_ATTEMPTS {
            let id = getrandom::u64().map_err(|e| StoreError::Random(e.to_string()))?;
            if id == 0 {
                continue;
            }
            let taken = self
                .conn
                .query_row(
                    "SELECT 1 FROM sessions WHERE id = ?1",
                    [id_to_sql(id)],
                    |_| Ok(()),
                )
                .optional()
                .map_err(|e| Fail::Sql(e).at(&self.name, "look for a free session id"))?
                .is_some();
            if !taken {
                return Ok(id);
            }
        }
        Err(StoreError::NoFreeId)
    }

    /// Adds a session in state Created. Does not write the audit log: the caller knows the token
    /// and appliance that caused it, so it writes [`AuditKind::Created`] itself.
    pub fn create_session(
        &mut self,
        id: SessionId,
        kind: SessionKind,
        user: Option<&str>,
        secret: &str,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let op = || format!("create session {}", session_id_string(id));
        let tx = begin(&mut self.conn).map_err(|e| e.at(&self.name, op()))?;
        let result = (|| -> Result<_, Fail> {
            if session_state(&tx, id)?.is_some() {
                return Err(Fail::Store(StoreError::SessionExists(id)));
            }
            tx.execute(
                "INSERT INTO sessions (id, kind, state, user, secret, created_ms, changed_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                rusqlite::params![
                    id_to_sql(id),
                    kind.as_str(),
                    SessionState::Created.as_str(),
                    user,
                    secret,
                    ms_to_sql(now_ms),
                ],
            )?;
            tx.commit()?;
            Ok(())
        })();
        result.map_err(|e| e.at(&self.name, op()))
    }

    /// Moves the session to `state` and returns the state it had. Setting the state it already
    /// has changes nothing (not even `changed_ms`, so a repeated "suspended" does not restart the
    /// suspend timeout). Going to Destroyed unbinds its tokens but writes no audit entry; use
    /// [`Store::destroy`] for that. Refused transitions: see [`transition_allowed`].
    pub fn set_state(
        &mut self,
        id: SessionId,
        state: SessionState,
        now_ms: u64,
    ) -> Result<SessionState, StoreError> {
        let op = || format!("set session {} {}", session_id_string(id), state.as_str());
        let tx = begin(&mut self.conn).map_err(|e| e.at(&self.name, op()))?;
        let result = (|| -> Result<_, Fail> {
            let from = change_state(&tx, id, state, now_ms)?;
            tx.commit()?;
            Ok(from)
        })();
        result.map_err(|e| e.at(&self.name, op()))
    }

    /// Records the session compositor's process and Wayland socket once it runs (or runs again,
    /// after a daemon restart).
    pub fn set_process(
        &mut self,
        id: SessionId,
        pid: Option<u32>,
        wayland_display: Option<&str>,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let op = || format!("record the process of session {}", session_id_string(id));
        self.update_one(
            id,
            "UPDATE sessions SET pid = ?2, wayland_display = ?3, changed_ms = ?4 WHERE id = ?1",
            rusqlite::params![
                id_to_sql(id),
                pid.map(i64::from),
                wayland_display,
                ms_to_sql(now_ms)
            ],
        )
        .map_err(|e| e.at(&self.name, op()))
    }

    /// Sets the user the session runs as (None: nobody yet, as for a greeter).
    pub fn set_user(
        &mut self,
        id: SessionId,
        user: Option<&str>,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let op = || format!("set the user of session {}", session_id_string(id));
        self.update_one(
            id,
            "UPDATE sessions SET user = ?2, changed_ms = ?3 WHERE id = ?1",
            rusqlite::params![id_to_sql(id), user, ms_to_sql(now_ms)],
        )
        .map_err(|e| e.at(&self.name, op()))
    }

    /// Checks a reconnecting session's secret. False for an unknown or destroyed session.
    pub fn verify_secret(&self, id: SessionId, secret: &str) -> Result<bool, StoreError> {
        let stored: Option<(String, String)> = self
            .conn
            .query_row(
                "SELECT state, secret FROM sessions WHERE id = ?1",
                [id_to_sql(id)],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| {
                Fail::Sql(e).at(
                    &self.name,
                    format!("read the secret of session {}", session_id_string(id)),
                )
            })?;
        Ok(match stored {
            Some((state, stored)) => {
                state != SessionState::Destroyed.as_str()
                    && constant_time_eq(stored.as_bytes(), secret.as_bytes())
            }
            None => false,
        })
    }

    /// One session, with its tokens.
    pub fn session(&self, id: SessionId) -> Result<Option<SessionRecord>, StoreError> {
        let op = || format!("read session {}", session_id_string(id));
        let result = (|| -> Result<_, Fail> {
            let raw = self
                .conn
                .query_row(
                    &format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?1"),
                    [id_to_sql(id)],
                    RawSession::from_row,
                )
                .optional()?;
            match raw {
                Some(raw) => {
                    let tokens = tokens_of(&self.conn, id)?;
                    Ok(Some(raw.into_record(tokens)?))
                }
                None => Ok(None),
            }
        })();
        result.map_err(|e| e.at(&self.name, op()))
    }

    /// All sessions, oldest first; destroyed ones only with `include_destroyed`.
    pub fn sessions(&self, include_destroyed: bool) -> Result<Vec<SessionRecord>, StoreError> {
        let result = (|| -> Result<_, Fail> {
            let mut tokens: HashMap<i64, Vec<String>> = HashMap::new();
            let mut stmt = self
                .conn
                .prepare("SELECT session, token FROM bindings ORDER BY bound_ms, token")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
            for row in rows {
                let (session, token) = row?;
                tokens.entry(session).or_default().push(token);
            }
            let filter = if include_destroyed {
                ""
            } else {
                "WHERE state != 'destroyed'"
            };
            let mut stmt = self.conn.prepare(&format!(
                "SELECT {SESSION_COLUMNS} FROM sessions {filter} ORDER BY created_ms, id"
            ))?;
            let raws = stmt
                .query_map([], RawSession::from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            raws.into_iter()
                .map(|raw| {
                    let t = tokens.remove(&raw.id).unwrap_or_default();
                    raw.into_record(t)
                })
                .collect::<Result<Vec<_>, Fail>>()
        })();
        result.map_err(|e| e.at(&self.name, "list the sessions"))
    }

    /// Sessions that are not destroyed, oldest first.
    pub fn live_sessions(&self) -> Result<Vec<SessionRecord>, StoreError> {
        self.sessions(false)
    }

    /// The live User session of `user` (the newest, should there be several).
    pub fn user_session(&self, user: &str) -> Result<Option<SessionId>, StoreError> {
        self.conn
            .query_row(
                "SELECT id FROM sessions
                 WHERE kind = 'user' AND user = ?1 AND state != 'destroyed'
                 ORDER BY created_ms DESC, id DESC LIMIT 1",
                [user],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|id| id.map(id_from_sql))
            .map_err(|e| Fail::Sql(e).at(&self.name, format!("find the session of user {user:?}")))
    }

    /// Binds `token` to session `id`, taking it from the session it was bound to before: returns
    /// that session, if it was another one. The session must exist and not be destroyed.
    pub fn bind(
        &mut self,
        token: &str,
        id: SessionId,
        now_ms: u64,
    ) -> Result<Option<SessionId>, StoreError> {
        let op = || format!("bind token {token:?} to session {}", session_id_string(id));
        let tx = begin(&mut self.conn).map_err(|e| e.at(&self.name, op()))?;
        let result = (|| -> Result<_, Fail> {
            match session_state(&tx, id)? {
                None => return Err(Fail::Store(StoreError::NoSuchSession(id))),
                Some(SessionState::Destroyed) => {
                    return Err(Fail::Store(StoreError::BindDestroyed {
                        token: token.to_owned(),
                        id,
                    }))
                }
                Some(_) => {}
            }
            let previous = token_session(&tx, token)?;
            if previous == Some(id) {
                return Ok(None);
            }
            tx.execute(
                "INSERT INTO bindings (token, session, bound_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (token) DO UPDATE SET session = excluded.session,
                                                   bound_ms = excluded.bound_ms",
                rusqlite::params![token, id_to_sql(id), ms_to_sql(now_ms)],
            )?;
            tx.commit()?;
            Ok(previous)
        })();
        result.map_err(|e| e.at(&self.name, op()))
    }

    /// Removes `token`'s binding; returns the session it was bound to.
    pub fn unbind(&mut self, token: &str) -> Result<Option<SessionId>, StoreError> {
        let op = || format!("unbind token {token:?}");
        let tx = begin(&mut self.conn).map_err(|e| e.at(&self.name, op()))?;
        let result = (|| -> Result<_, Fail> {
            let previous = token_session(&tx, token)?;
            tx.execute("DELETE FROM bindings WHERE token = ?1", [token])?;
            tx.commit()?;
            Ok(previous)
        })();
        result.map_err(|e| e.at(&self.name, op()))
    }

    /// Removes every binding of session `id`; returns the tokens it had.
    pub fn unbind_session(&mut self, id: SessionId) -> Result<Vec<String>, StoreError> {
        let op = || format!("unbind the tokens of session {}", session_id_string(id));
        let tx = begin(&mut self.conn).map_err(|e| e.at(&self.name, op()))?;
        let result = (|| -> Result<_, Fail> {
            let tokens = unbind_all(&tx, id)?;
            tx.commit()?;
            Ok(tokens)
        })();
        result.map_err(|e| e.at(&self.name, op()))
    }

    /// The public key (SubjectPublicKeyInfo, DER) recorded for a card token, if any.
    pub fn card_key(&self, token: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.conn
            .query_row(
                "SELECT spki FROM card_keys WHERE token = ?1",
                [token],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| Fail::Sql(e).at(&self.name, format!("look up the key of card {token:?}")))
    }

    /// Records `token`'s card key for `user`. A token that already has a key keeps it: a card
    /// is enrolled once, and a different key later is an impostor, not a new enrolment.
    pub fn enrol_card(
        &mut self,
        token: &str,
        user: &str,
        spki: &[u8],
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        self.conn
            .execute(
                "INSERT INTO card_keys (token, user, spki, enrolled_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (token) DO NOTHING",
                rusqlite::params![token, user, spki, ms_to_sql(now_ms)],
            )
            .map(|n| n == 1)
            .map_err(|e| Fail::Sql(e).at(&self.name, format!("enrol card {token:?}")))
    }

    /// The session `token` is bound to.
    pub fn token_session(&self, token: &str) -> Result<Option<SessionId>, StoreError> {
        token_session(&self.conn, token)
            .map_err(|e| Fail::Sql(e).at(&self.name, format!("look up token {token:?}")))
    }

    /// The tokens bound to session `id`, oldest binding first.
    pub fn tokens_of(&self, id: SessionId) -> Result<Vec<String>, StoreError> {
        tokens_of(&self.conn, id).map_err(|e| {
            Fail::Sql(e).at(
                &self.name,
                format!("list the tokens of session {}", session_id_string(id)),
            )
        })
    }

    /// Suspended sessions whose `changed_ms` is before `older_than_ms`, a point in time: pass
    /// `now_ms.saturating_sub(suspend_timeout_ms)` to get the sessions suspended too long.
    pub fn suspended_since(&self, older_than_ms: u64) -> Result<Vec<SessionId>, StoreError> {
        let result = (|| -> Result<_, Fail> {
            let mut stmt = self.conn.prepare(
                "SELECT id FROM sessions WHERE state = 'suspended' AND changed_ms < ?1
                 ORDER BY changed_ms, id",
            )?;
            let ids = stmt
                .query_map([ms_to_sql(older_than_ms)], |r| r.get::<_, i64>(0))?
                .map(|id| id.map(id_from_sql))
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(ids)
        })();
        result.map_err(|e| e.at(&self.name, "list the sessions suspended too long"))
    }

    /// Ends session `id`: state Destroyed, its tokens unbound, and an audit entry with `reason`
    /// (e.g. "killed by admin", "exited: signal 9"), all in one transaction. Returns false, and
    /// changes nothing, when it was already destroyed.
    pub fn destroy(
        &mut self,
        id: SessionId,
        reason: &str,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let op = || format!("destroy session {}", session_id_string(id));
        let tx = begin(&mut self.conn).map_err(|e| e.at(&self.name, op()))?;
        let result = (|| -> Result<_, Fail> {
            let user: Option<String> = tx
                .query_row(
                    "SELECT user FROM sessions WHERE id = ?1",
                    [id_to_sql(id)],
                    |r| r.get(0),
                )
                .optional()?
                .ok_or(Fail::Store(StoreError::NoSuchSession(id)))?;
            let tokens = tokens_of(&tx, id)?;
            if change_state(&tx, id, SessionState::Destroyed, now_ms)? == SessionState::Destroyed {
                return Ok(false);
            }
            let detail = if tokens.is_empty() {
                reason.to_owned()
            } else {
                format!("{reason} (unbound {})", tokens.join(", "))
            };
            let mut event = AuditEvent::new(AuditKind::Destroyed)
                .session(id)
                .detail(detail);
            event.user = user;
            insert_audit(&tx, &event, now_ms)?;
            tx.commit()?;
            Ok(true)
        })();
        result.map_err(|e| e.at(&self.name, op()))
    }

    /// Appends `event` to the audit log; returns its sequence number.
    pub fn audit(&mut self, event: &AuditEvent, now_ms: u64) -> Result<u64, StoreError> {
        insert_audit(&self.conn, event, now_ms).map_err(|e| {
            Fail::Sql(e).at(
                &self.name,
                format!("write the audit entry {}", event.kind.as_str()),
            )
        })
    }

    /// The last `limit` audit entries, oldest first.
    pub fn audit_log(&self, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
        let result = (|| -> Result<_, Fail> {
            let mut stmt = self.conn.prepare(
                "SELECT seq, at_ms, event, session, token, appliance, user, detail FROM
                 (SELECT * FROM audit ORDER BY seq DESC LIMIT ?1) ORDER BY seq",
            )?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let raws = stmt
                .query_map([limit], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<i64>>(3)?,
                        r.get::<_, Option<String>>(4)?,
                        r.get::<_, Option<String>>(5)?,
                        r.get::<_, Option<String>>(6)?,
                        r.get::<_, Option<String>>(7)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            raws.into_iter()
                .map(
                    |(seq, at, event, session, token, appliance, user, detail)| {
                        let kind = AuditKind::parse(&event).ok_or_else(|| {
                            Fail::Corrupt(format!(
                                "an unknown event {event:?} in audit entry {seq}"
                            ))
                        })?;
                        Ok(AuditRecord {
                            seq: ms_from_sql(seq, "audit seq")?,
                            at_ms: ms_from_sql(at, "audit at_ms")?,
                            event: AuditEvent {
                                kind,
                                session: session.map(id_from_sql),
                                token,
                                appliance,
                                user,
                                detail,
                            },
                        })
                    },
                )
                .collect::<Result<Vec<_>, Fail>>()
        })();
        result.map_err(|e| e.at(&self.name, "read the audit log"))
    }

    /// Every appliance known by its certificate, first seen first.
    pub fn appliances(&self) -> Result<Vec<ApplianceRecord>, StoreError> {
        let result = (|| -> Result<_, Fail> {
            let mut stmt = self.conn.prepare(&format!(
                "SELECT {APPLIANCE_COLUMNS} FROM appliances ORDER BY first_seen_ms, fingerprint"
            ))?;
            let raws = stmt
                .query_map([], RawAppliance::from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            raws.into_iter()
                .map(RawAppliance::into_record)
                .collect::<Result<Vec<_>, Fail>>()
        })();
        result.map_err(|e| e.at(&self.name, "list the appliances"))
    }

    /// The appliance with this fingerprint, if the store knows it.
    pub fn appliance(&self, fingerprint: &str) -> Result<Option<ApplianceRecord>, StoreError> {
        appliance(&self.conn, fingerprint).map_err(|e| {
            e.at(
                &self.name,
                format!("read appliance {}", identity::short_id(fingerprint)),
            )
        })
    }

    /// Records that the appliance with `fingerprint` was seen now (from `address`, saying
    /// `client_name`, when known), adding it in state `new_state` if the store did not know it.
    /// Returns the record as it is now, and whether it is new.
    pub fn appliance_seen(
        &mut self,
        fingerprint: &str,
        new_state: ApplianceAuthState,
        address: Option<&str>,
        client_name: Option<&str>,
        now_ms: u64,
    ) -> Result<(ApplianceRecord, bool), StoreError> {
        let op = || format!("record appliance {}", identity::short_id(fingerprint));
        let tx = begin(&mut self.conn).map_err(|e| e.at(&self.name, op()))?;
        let result = (|| -> Result<_, Fail> {
            let now = ms_to_sql(now_ms);
            let inserted = tx.execute(
                "INSERT INTO appliances (fingerprint, state, first_seen_ms, last_seen_ms,
                                         last_address, client_name, changed_ms)
                 VALUES (?1, ?2, ?3, ?3, ?4, ?5, ?3)
                 ON CONFLICT (fingerprint) DO NOTHING",
                rusqlite::params![fingerprint, new_state.as_str(), now, address, client_name],
            )? == 1;
            if !inserted {
                tx.execute(
                    "UPDATE appliances SET last_seen_ms = ?2,
                         last_address = COALESCE(?3, last_address),
                         client_name = COALESCE(?4, client_name)
                     WHERE fingerprint = ?1",
                    rusqlite::params![fingerprint, now, address, client_name],
                )?;
            }
            let record = appliance(&tx, fingerprint)?.ok_or_else(|| {
                Fail::Corrupt(format!(
                    "no row for appliance {fingerprint} after writing it"
                ))
            })?;
            tx.commit()?;
            Ok((record, inserted))
        })();
        result.map_err(|e| e.at(&self.name, op()))
    }

    /// Sets the approval state of a known appliance; returns the record as it is now, or `None`
    /// when the store does not know the fingerprint.
    pub fn set_appliance_state(
        &mut self,
        fingerprint: &str,
        state: ApplianceAuthState,
        now_ms: u64,
    ) -> Result<Option<ApplianceRecord>, StoreError> {
        let op = || {
            format!(
                "set appliance {} {}",
                identity::short_id(fingerprint),
                state.as_str()
            )
        };
        let tx = begin(&mut self.conn).map_err(|e| e.at(&self.name, op()))?;
        let result = (|| -> Result<_, Fail> {
            tx.execute(
                "UPDATE appliances SET state = ?2, changed_ms = ?3 WHERE fingerprint = ?1",
                rusqlite::params![fingerprint, state.as_str(), ms_to_sql(now_ms)],
            )?;
            let record = appliance(&tx, fingerprint)?;
            tx.commit()?;
            Ok(record)
        })();
        result.map_err(|e| e.at(&self.name, op()))
    }

    /// Runs an UPDATE of session `id` (its first parameter); NoSuchSession if it changed no row.
    fn update_one(
        &mut self,
        id: SessionId,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<(), Fail> {
        match self.conn.execute(sql, params)? {
            0 => Err(Fail::Store(StoreError::NoSuchSession(id))),
            _ => Ok(()),
        }
    }
}

/// A write transaction that takes the lock at once, so it never fails half-way on a busy file.
fn begin(conn: &mut Connection) -> Result<Transaction<'_>, Fail> {
    Ok(conn.transaction_with_behavior(TransactionBehavior::Immediate)?)
}

/// An error inside a store operation, before it gets the store's name and the operation.
#[derive(Debug)]
enum Fail {
    Sql(rusqlite::Error),
    /// The file holds something this code never writes.
    Corrupt(String),
    /// The file's schema version, newer than this build's.
    TooNew(i64),
    Store(StoreError),
}

impl From<rusqlite::Error> for Fail {
    fn from(e: rusqlite::Error) -> Self {
        Fail::Sql(e)
    }
}

impl Fail {
    fn at(self, store: &str, op: impl Into<String>) -> StoreError {
        match self {
            Fail::Sql(source) => StoreError::Sqlite {
                store: store.to_owned(),
                op: op.into(),
                source,
            },
            Fail::Corrupt(what) => StoreError::Corrupt {
                store: store.to_owned(),
                op: op.into(),
                what,
            },
            Fail::TooNew(found) => StoreError::SchemaTooNew {
                store: store.to_owned(),
                found,
            },
            Fail::Store(e) => e,
        }
    }
}

/// Brings the schema to [`SCHEMA_VERSION`], in one transaction that holds the write lock, so two
/// processes opening a new file at once do not both create it.
fn migrate(conn: &mut Connection) -> Result<(), Fail> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(Fail::TooNew(version));
    }
    let Ok(from) = usize::try_from(version) else {
        return Err(Fail::Corrupt(format!(
            "a negative schema version {version}"
        )));
    };
    if from < MIGRATIONS.len() {
        for sql in &MIGRATIONS[from..] {
            tx.execute_batch(sql)?;
        }
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    }
    tx.commit()?;
    Ok(())
}

/// Creates `path` readable by its owner only, or takes group and other access away from an
/// existing file: it holds session secrets.
fn restrict_file(path: &Path) -> std::io::Result<()> {
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    let mut perms = file.metadata()?.permissions();
    if perms.mode() & 0o077 != 0 {
        perms.set_mode(perms.mode() & 0o700);
        file.set_permissions(perms)?;
    }
    Ok(())
}

const SESSION_COLUMNS: &str = "id, kind, state, user, pid, wayland_display, created_ms, changed_ms";

/// A `sessions` row as SQLite has it, before its text is checked.
struct RawSession {
    id: i64,
    kind: String,
    state: String,
    user: Option<String>,
    pid: Option<i64>,
    wayland_display: Option<String>,
    created_ms: i64,
    changed_ms: i64,
}

impl RawSession {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: r.get(0)?,
            kind: r.get(1)?,
            state: r.get(2)?,
            user: r.get(3)?,
            pid: r.get(4)?,
            wayland_display: r.get(5)?,
            created_ms: r.get(6)?,
            changed_ms: r.get(7)?,
        })
    }

    fn into_record(self, tokens: Vec<String>) -> Result<SessionRecord, Fail> {
        let id = id_from_sql(self.id);
        let bad =
            |what: String| Fail::Corrupt(format!("{what} in session {}", session_id_string(id)));
        let kind = SessionKind::parse(&self.kind)
            .ok_or_else(|| bad(format!("an unknown kind {:?}", self.kind)))?;
        let state = SessionState::parse(&self.state)
            .ok_or_else(|| bad(format!("an unknown state {:?}", self.state)))?;
        let pid = match self.pid {
            Some(p) => Some(u32::try_from(p).map_err(|_| bad(format!("an invalid pid {p}")))?),
            None => None,
        };
        Ok(SessionRecord {
            id,
            kind,
            state,
            user: self.user,
            tokens,
            pid,
            wayland_display: self.wayland_display,
            created_ms: ms_from_sql(self.created_ms, "created_ms")?,
            changed_ms: ms_from_sql(self.changed_ms, "changed_ms")?,
        })
    }
}

const APPLIANCE_COLUMNS: &str =
    "fingerprint, state, first_seen_ms, last_seen_ms, last_address, client_name";

/// An appliance known by its certificate, as the store has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplianceRecord {
    /// SHA-256 of its certificate's public key, 64 hex digits.
    pub fingerprint: String,
    pub state: ApplianceAuthState,
    pub first_seen_ms: u64,
    pub last_seen_ms: u64,
    pub last_address: Option<String>,
    pub client_name: Option<String>,
}

/// An `appliances` row as SQLite has it, before its text is checked.
struct RawAppliance {
    fingerprint: String,
    state: String,
    first_seen_ms: i64,
    last_seen_ms: i64,
    last_address: Option<String>,
    client_name: Option<String>,
}

impl RawAppliance {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            fingerprint: r.get(0)?,
            state: r.get(1)?,
            first_seen_ms: r.get(2)?,
            last_seen_ms: r.get(3)?,
            last_address: r.get(4)?,
            client_name: r.get(5)?,
        })
    }

    fn into_record(self) -> Result<ApplianceRecord, Fail> {
        let state = ApplianceAuthState::parse(&self.state).ok_or_else(|| {
            Fail::Corrupt(format!(
                "an unknown state {:?} of appliance {}",
                self.state, self.fingerprint
            ))
        })?;
        Ok(ApplianceRecord {
            state,
            first_seen_ms: ms_from_sql(self.first_seen_ms, "first_seen_ms")?,
            last_seen_ms: ms_from_sql(self.last_seen_ms, "last_seen_ms")?,
            fingerprint: self.fingerprint,
            last_address: self.last_address,
            client_name: self.client_name,
        })
    }
}

fn appliance(conn: &Connection, fingerprint: &str) -> Result<Option<ApplianceRecord>, Fail> {
    conn.query_row(
        &format!("SELECT {APPLIANCE_COLUMNS} FROM appliances WHERE fingerprint = ?1"),
        [fingerprint],
        RawAppliance::from_row,
    )
    .optional()?
    .map(RawAppliance::into_record)
    .transpose()
}

/// The session's state, None if there is no such session.
fn session_state(conn: &Connection, id: SessionId) -> Result<Option<SessionState>, Fail> {
    let state: Option<String> = conn
        .query_row(
            "SELECT state FROM sessions WHERE id = ?1",
            [id_to_sql(id)],
            |r| r.get(0),
        )
        .optional()?;
    match state {
        Some(s) => SessionState::parse(&s).map(Some).ok_or_else(|| {
            Fail::Corrupt(format!(
                "an unknown state {s:?} in session {}",
                session_id_string(id)
            ))
        }),
        None => Ok(None),
    }
}

/// The state change shared by [`Store::set_state`] and [`Store::destroy`]; returns the old state.
fn change_state(
    conn: &Connection,
    id: SessionId,
    to: SessionState,
    now_ms: u64,
) -> Result<SessionState, Fail> {
    let from = session_state(conn, id)?.ok_or(Fail::Store(StoreError::NoSuchSession(id)))?;
    if from == to {
        return Ok(from);
    }
    if !transition_allowed(from, to) {
        return Err(Fail::Store(StoreError::Transition { id, from, to }));
    }
    conn.execute(
        "UPDATE sessions SET state = ?2, changed_ms = ?3 WHERE id = ?1",
        rusqlite::params![id_to_sql(id), to.as_str(), ms_to_sql(now_ms)],
    )?;
    if to == SessionState::Destroyed {
        unbind_all(conn, id)?;
    }
    Ok(from)
}

fn token_session(conn: &Connection, token: &str) -> rusqlite::Result<Option<SessionId>> {
    conn.query_row(
        "SELECT session FROM bindings WHERE token = ?1",
        [token],
        |r| r.get::<_, i64>(0),
    )
    .optional()
    .map(|id| id.map(id_from_sql))
}

fn tokens_of(conn: &Connection, id: SessionId) -> rusqlite::Result<Vec<String>> {
    let mut stmt =
        conn.prepare("SELECT token FROM bindings WHERE session = ?1 ORDER BY bound_ms, token")?;
    let tokens = stmt
        .query_map([id_to_sql(id)], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(tokens)
}

fn unbind_all(conn: &Connection, id: SessionId) -> rusqlite::Result<Vec<String>> {
    let tokens = tokens_of(conn, id)?;
    conn.execute("DELETE FROM bindings WHERE session = ?1", [id_to_sql(id)])?;
    Ok(tokens)
}

fn insert_audit(conn: &Connection, event: &AuditEvent, now_ms: u64) -> rusqlite::Result<u64> {
    conn.execute(
        "INSERT INTO audit (at_ms, event, session, token, appliance, user, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        rusqlite::params![
            ms_to_sql(now_ms),
            event.kind.as_str(),
            event.session.map(id_to_sql),
            event.token,
            event.appliance,
            event.user,
            event.detail,
        ],
    )?;
    // AUTOINCREMENT rowids start at 1 and only grow.
    Ok(conn.last_insert_rowid().max(0) as u64)
}

/// Session ids are any `u64`; SQLite integers are `i64`, so ids are stored bit-cast.
fn id_to_sql(id: SessionId) -> i64 {
    id as i64
}

fn id_from_sql(v: i64) -> SessionId {
    v as u64
}

/// Milliseconds since the epoch fit an `i64` for 292 million years; clamp rather than wrap.
fn ms_to_sql(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

fn ms_from_sql(v: i64, column: &str) -> Result<u64, Fail> {
    u64::try_from(v).map_err(|_| Fail::Corrupt(format!("a negative {column} {v}")))
}

/// Compares without stopping at the first difference, so the time taken does not tell a
/// guessing process how much of a secret it got right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000_000;

    fn store() -> Store {
        Store::open_in_memory().expect("in-memory store")
    }

    fn user_session(store: &mut Store, user: &str, now: u64) -> SessionId {
        let id = store.new_session_id().expect("id");
        store
            .create_session(id, SessionKind::User, Some(user), "secret", now)
            .expect("create");
        id
    }

    #[test]
    fn new_file_gets_schema_version_wal_and_owner_only_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state/sessions.db");
        let store = Store::open(&path).expect("open");
        let version: i64 = store
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .expect("user_version");
        assert_eq!(version, SCHEMA_VERSION);
        let mode: String = store
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .expect("journal_mode");
        assert_eq!(mode, "wal");
        let perms = fs::metadata(&path).expect("metadata").permissions();
        assert_eq!(perms.mode() & 0o777, 0o600);
        assert_eq!(store.name(), path.display().to_string());
    }

    #[test]
    fn appliances_are_recorded_once_and_change_state() {
        let mut store = store();
        let fp = "ab".repeat(32);
        let (rec, new) = store
            .appliance_seen(
                &fp,
                ApplianceAuthState::Pending,
                Some("10.0.0.5:4000"),
                Some("wrclient 0.1.0"),
                T0,
            )
            .unwrap();
        assert!(new);
        assert_eq!(rec.state, ApplianceAuthState::Pending);
        assert_eq!((rec.first_seen_ms, rec.last_seen_ms), (T0, T0));
        // Seen again: not new, its state kept, last seen and address updated.
        let (rec, new) = store
            .appliance_seen(
                &fp,
                ApplianceAuthState::Approved,
                Some("10.0.0.6:4000"),
                None,
                T0 + 5,
            )
            .unwrap();
        assert!(!new);
        assert_eq!(rec.state, ApplianceAuthState::Pending);
        assert_eq!((rec.first_seen_ms, rec.last_seen_ms), (T0, T0 + 5));
        assert_eq!(rec.last_address.as_deref(), Some("10.0.0.6:4000"));
        assert_eq!(rec.client_name.as_deref(), Some("wrclient 0.1.0"));
        let rec = store
            .set_appliance_state(&fp, ApplianceAuthState::Revoked, T0 + 9)
            .unwrap()
            .unwrap();
        assert_eq!(rec.state, ApplianceAuthState::Revoked);
        assert_eq!(store.appliances().unwrap(), vec![rec]);
        assert_eq!(
            store
                .set_appliance_state(&"cd".repeat(32), ApplianceAuthState::Approved, T0)
                .unwrap(),
            None
        );
    }

    #[test]
    fn sessions_bindings_and_audit_survive_reopening_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sessions.db");
        let (alice, greeter) = {
            let mut store = Store::open(&path).expect("open");
            let alice = user_session(&mut store, "alice", T0);
            store
                .set_process(alice, Some(4242), Some("wayland-3"), T0 + 1)
                .unwrap();
            store
                .set_state(alice, SessionState::Active, T0 + 2)
                .unwrap();
            store.bind("card-a", alice, T0 + 2).unwrap();
            let greeter = store.new_session_id().unwrap();
            store
                .create_session(greeter, SessionKind::Greeter, None, "g", T0 + 3)
                .unwrap();
            store.destroy(greeter, "greeter done", T0 + 4).unwrap();
            store
                .audit(
                    &AuditEvent::new(AuditKind::Attached)
                        .session(alice)
                        .token("card-a"),
                    T0 + 5,
                )
                .unwrap();
            (alice, greeter)
        };
        let store = Store::open(&path).expect("reopen");
        let record = store.session(alice).unwrap().expect("alice kept");
        assert_eq!(
            record,
            SessionRecord {
                id: alice,
                kind: SessionKind::User,
                state: SessionState::Active,
                user: Some("alice".into()),
                tokens: vec!["card-a".into()],
                pid: Some(4242),
                wayland_display: Some("wayland-3".into()),
                created_ms: T0,
                changed_ms: T0 + 2,
            }
        );
        assert!(store.verify_secret(alice, "secret").unwrap());
        assert_eq!(store.token_session("card-a").unwrap(), Some(alice));
        assert_eq!(
            store.session(greeter).unwrap().map(|r| r.state),
            Some(SessionState::Destroyed)
        );
        assert_eq!(store.live_sessions().unwrap().len(), 1);
        assert_eq!(store.sessions(true).unwrap().len(), 2);
        let log = store.audit_log(10).unwrap();
        let kinds: Vec<_> = log.iter().map(|r| r.event.kind).collect();
        assert_eq!(kinds, [AuditKind::Destroyed, AuditKind::Attached]);
    }

    #[test]
    fn newer_schema_is_refused_with_the_versions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sessions.db");
        {
            let store = Store::open(&path).unwrap();
            store
                .conn
                .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
                .unwrap();
        }
        let err = Store::open(&path).expect_err("newer schema");
        assert!(
            matches!(err, StoreError::SchemaTooNew { found, .. } if found == SCHEMA_VERSION + 1)
        );
        let text = err.to_string();
        assert!(
            text.contains("newer wrsrvd") && text.contains(&path.display().to_string()),
            "{text}"
        );
    }

    #[test]
    fn state_follows_the_session_life_cycle() {
        let mut store = store();
        let id = user_session(&mut store, "alice", T0);
        assert_eq!(
            store.session(id).unwrap().unwrap().state,
            SessionState::Created
        );
        assert_eq!(
            store.set_state(id, SessionState::Active, T0 + 1).unwrap(),
            SessionState::Created
        );
        assert_eq!(
            store
                .set_state(id, SessionState::Suspended, T0 + 2)
                .unwrap(),
            SessionState::Active
        );
        assert_eq!(
            store.set_state(id, SessionState::Active, T0 + 3).unwrap(),
            SessionState::Suspended
        );
        let err = store
            .set_state(id, SessionState::Created, T0 + 4)
            .unwrap_err();
        assert!(matches!(
            err,
            StoreError::Transition {
                from: SessionState::Active,
                to: SessionState::Created,
                ..
            }
        ));
        assert_eq!(
            store
                .set_state(id, SessionState::Destroyed, T0 + 5)
                .unwrap(),
            SessionState::Active
        );
        let err = store
            .set_state(id, SessionState::Active, T0 + 6)
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("cannot go from destroyed to active"),
            "{err}"
        );
        let record = store.session(id).unwrap().unwrap();
        assert_eq!(
            (record.state, record.changed_ms),
            (SessionState::Destroyed, T0 + 5)
        );
        assert!(matches!(
            store.set_state(42, SessionState::Active, T0),
            Err(StoreError::NoSuchSession(42))
        ));
    }

    #[test]
    fn setting_the_same_state_keeps_changed_ms() {
        let mut store = store();
        let id = user_session(&mut store, "alice", T0);
        store
            .set_state(id, SessionState::Suspended, T0 + 10)
            .unwrap();
        store
            .set_state(id, SessionState::Suspended, T0 + 99)
            .unwrap();
        assert_eq!(store.session(id).unwrap().unwrap().changed_ms, T0 + 10);
    }

    #[test]
    fn process_and_user_are_recorded() {
        let mut store = store();
        let id = store.new_session_id().unwrap();
        store
            .create_session(id, SessionKind::Shared, None, "s", T0)
            .unwrap();
        store
            .set_process(id, Some(7), Some("wayland-1"), T0 + 1)
            .unwrap();
        store.set_user(id, Some("kiosk"), T0 + 2).unwrap();
        let r = store.session(id).unwrap().unwrap();
        assert_eq!(
            (
                r.pid,
                r.wayland_display.as_deref(),
                r.user.as_deref(),
                r.changed_ms
            ),
            (Some(7), Some("wayland-1"), Some("kiosk"), T0 + 2)
        );
        assert!(matches!(
            store.set_process(99, Some(1), None, T0),
            Err(StoreError::NoSuchSession(99))
        ));
        assert!(matches!(
            store.set_user(99, None, T0),
            Err(StoreError::NoSuchSession(99))
        ));
    }

    #[test]
    fn creating_an_existing_id_fails() {
        let mut store = store();
        let id = user_session(&mut store, "alice", T0);
        assert!(matches!(
            store.create_session(id, SessionKind::User, Some("bob"), "x", T0),
            Err(StoreError::SessionExists(i)) if i == id
        ));
    }

    #[test]
    fn rebinding_a_token_moves_it() {
        let mut store = store();
        let a = user_session(&mut store, "alice", T0);
        let b = user_session(&mut store, "bob", T0);
        assert_eq!(store.bind("card", a, T0 + 1).unwrap(), None);
        assert_eq!(
            store.bind("mac:52:54:00:12:34:56", a, T0 + 2).unwrap(),
            None
        );
        assert_eq!(
            store.bind("card", a, T0 + 3).unwrap(),
            None,
            "same session: no move"
        );
        assert_eq!(
            store.tokens_of(a).unwrap(),
            ["card", "mac:52:54:00:12:34:56"]
        );
        assert_eq!(store.bind("card", b, T0 + 4).unwrap(), Some(a));
        assert_eq!(store.token_session("card").unwrap(), Some(b));
        assert_eq!(store.tokens_of(a).unwrap(), ["mac:52:54:00:12:34:56"]);
        assert_eq!(store.tokens_of(b).unwrap(), ["card"]);
        assert_eq!(store.unbind("card").unwrap(), Some(b));
        assert_eq!(store.unbind("card").unwrap(), None);
        assert_eq!(store.token_session("card").unwrap(), None);
        assert_eq!(store.unbind_session(a).unwrap(), ["mac:52:54:00:12:34:56"]);
        assert!(store.tokens_of(a).unwrap().is_empty());
    }

    #[test]
    fn binding_needs_a_live_session() {
        let mut store = store();
        assert!(matches!(
            store.bind("card", 5, T0),
            Err(StoreError::NoSuchSession(5))
        ));
        let a = user_session(&mut store, "alice", T0);
        store.destroy(a, "test", T0 + 1).unwrap();
        let err = store.bind("card", a, T0 + 2).unwrap_err();
        assert!(matches!(err, StoreError::BindDestroyed { .. }), "{err}");
    }

    #[test]
    fn destroy_unbinds_audits_once_and_frees_the_user() {
        let mut store = store();
        let a = user_session(&mut store, "alice", T0);
        store.bind("card", a, T0).unwrap();
        store.bind("mac", a, T0 + 1).unwrap();
        assert_eq!(store.user_session("alice").unwrap(), Some(a));
        assert!(store.destroy(a, "killed by admin", T0 + 10).unwrap());
        assert!(!store.destroy(a, "exited: signal 9", T0 + 11).unwrap());
        assert_eq!(store.token_session("card").unwrap(), None);
        assert_eq!(store.token_session("mac").unwrap(), None);
        assert_eq!(store.user_session("alice").unwrap(), None);
        assert!(!store.verify_secret(a, "secret").unwrap());
        let log = store.audit_log(10).unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].at_ms, T0 + 10);
        assert_eq!(
            log[0].event,
            AuditEvent::new(AuditKind::Destroyed)
                .session(a)
                .user("alice")
                .detail("killed by admin (unbound card, mac)")
        );
        assert!(matches!(
            store.destroy(77, "x", T0),
            Err(StoreError::NoSuchSession(77))
        ));
    }

    #[test]
    fn user_session_finds_only_live_user_sessions() {
        let mut store = store();
        let greeter = store.new_session_id().unwrap();
        store
            .create_session(greeter, SessionKind::Greeter, Some("alice"), "g", T0)
            .unwrap();
        assert_eq!(store.user_session("alice").unwrap(), None);
        let a = user_session(&mut store, "alice", T0 + 1);
        user_session(&mut store, "bob", T0 + 2);
        assert_eq!(store.user_session("alice").unwrap(), Some(a));
        assert_eq!(store.user_session("carol").unwrap(), None);
    }

    #[test]
    fn suspended_since_lists_sessions_suspended_before_the_cutoff() {
        let mut store = store();
        let old = user_session(&mut store, "a", T0);
        let recent = user_session(&mut store, "b", T0);
        let active = user_session(&mut store, "c", T0);
        store
            .set_state(old, SessionState::Suspended, T0 + 100)
            .unwrap();
        store
            .set_state(recent, SessionState::Suspended, T0 + 500)
            .unwrap();
        store
            .set_state(active, SessionState::Active, T0 + 50)
            .unwrap();
        assert_eq!(
            store.suspended_since(T0 + 100).unwrap(),
            Vec::<SessionId>::new()
        );
        assert_eq!(store.suspended_since(T0 + 101).unwrap(), [old]);
        assert_eq!(store.suspended_since(T0 + 1000).unwrap(), [old, recent]);
        store
            .set_state(old, SessionState::Active, T0 + 600)
            .unwrap();
        assert_eq!(store.suspended_since(T0 + 1000).unwrap(), [recent]);
    }

    #[test]
    fn audit_log_is_in_order_and_limited_to_the_latest() {
        let mut store = store();
        let events = [
            AuditEvent::new(AuditKind::Created).session(1).token("card"),
            AuditEvent::new(AuditKind::AuthFailed)
                .session(1)
                .token("card")
                .user("alice")
                .detail("wrong password"),
            AuditEvent::new(AuditKind::Authenticated)
                .session(1)
                .user("alice"),
            AuditEvent::new(AuditKind::Attached)
                .session(2)
                .token("card")
                .appliance("3 127.0.0.1:5555 wrclient 0.1.0"),
            AuditEvent::new(AuditKind::Detached)
                .session(2)
                .token("card"),
            AuditEvent::new(AuditKind::Adopted)
                .session(2)
                .detail("pid 4242"),
        ];
        let mut seqs = Vec::new();
        for (i, e) in events.iter().enumerate() {
            seqs.push(store.audit(e, T0 + i as u64).unwrap());
        }
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
        let all = store.audit_log(100).unwrap();
        assert_eq!(
            all.iter().map(|r| r.event.clone()).collect::<Vec<_>>(),
            events
        );
        assert_eq!(all.iter().map(|r| r.seq).collect::<Vec<_>>(), seqs);
        assert_eq!(all[3].at_ms, T0 + 3);
        let last = store.audit_log(2).unwrap();
        assert_eq!(
            last.iter().map(|r| r.event.kind).collect::<Vec<_>>(),
            [AuditKind::Detached, AuditKind::Adopted]
        );
        assert!(store.audit_log(0).unwrap().is_empty());
    }

    #[test]
    fn unknown_text_in_the_file_is_a_clear_error() {
        let mut store = store();
        let id = user_session(&mut store, "alice", T0);
        store
            .conn
            .execute("UPDATE sessions SET state = 'zombie'", [])
            .unwrap();
        let err = store.session(id).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{text}");
        assert!(text.contains("unknown state \"zombie\""), "{text}");
        assert!(text.contains(&session_id_string(id)), "{text}");
        assert!(matches!(
            store.sessions(true),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(matches!(
            store.set_state(id, SessionState::Active, T0),
            Err(StoreError::Corrupt { .. })
        ));

        store
            .conn
            .execute("UPDATE sessions SET state = 'active', kind = 'robot'", [])
            .unwrap();
        let text = store.session(id).unwrap_err().to_string();
        assert!(text.contains("unknown kind \"robot\""), "{text}");

        store
            .conn
            .execute("UPDATE sessions SET kind = 'user', pid = -1", [])
            .unwrap();
        assert!(store
            .session(id)
            .unwrap_err()
            .to_string()
            .contains("invalid pid -1"));

        store
            .conn
            .execute(
                "INSERT INTO audit (at_ms, event) VALUES (1, 'teleported')",
                [],
            )
            .unwrap();
        let text = store.audit_log(10).unwrap_err().to_string();
        assert!(text.contains("unknown event \"teleported\""), "{text}");

        store
            .conn
            .execute("UPDATE sessions SET pid = 'many'", [])
            .unwrap();
        assert!(matches!(store.session(id), Err(StoreError::Sqlite { .. })));
    }

    #[test]
    fn new_session_ids_are_nonzero_and_distinct() {
        let mut store = store();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..100 {
            let id = store.new_session_id().unwrap();
            assert_ne!(id, 0);
            assert!(seen.insert(id));
            store
                .create_session(id, SessionKind::Greeter, None, "g", T0)
                .unwrap();
        }
    }

    #[test]
    fn ids_above_i64_max_round_trip() {
        let mut store = store();
        let id = u64::MAX - 5;
        store
            .create_session(id, SessionKind::User, Some("x"), "s", T0)
            .unwrap();
        store.bind("t", id, T0).unwrap();
        assert_eq!(store.session(id).unwrap().unwrap().id, id);
        assert_eq!(store.token_session("t").unwrap(), Some(id));
        assert_eq!(store.tokens_of(id).unwrap(), ["t"]);
    }

    #[test]
    fn secrets_are_checked_exactly() {
        let mut store = store();
        let secret = new_secret().unwrap();
        assert_eq!(secret.len(), 64);
        assert_ne!(secret, new_secret().unwrap());
        let id = store.new_session_id().unwrap();
        store
            .create_session(id, SessionKind::User, Some("a"), &secret, T0)
            .unwrap();
        assert!(store.verify_secret(id, &secret).unwrap());
        assert!(!store.verify_secret(id, &secret[1..]).unwrap());
        assert!(!store.verify_secret(id, "").unwrap());
        assert!(!store.verify_secret(id + 1, &secret).unwrap());
    }

    #[test]
    fn record_becomes_session_info_with_the_daemons_appliance() {
        let mut store = store();
        let id = user_session(&mut store, "alice", T0);
        store.bind("card", id, T0).unwrap();
        let record = store.session(id).unwrap().unwrap();
        let info = record.info(Some(3));
        assert_eq!(info.id, id);
        assert_eq!(info.appliance, Some(3));
        assert_eq!(info.tokens, ["card"]);
        assert_eq!(info.user.as_deref(), Some("alice"));
        let plain: SessionInfo = record.into();
        assert_eq!(
            plain,
            SessionInfo {
                appliance: None,
                ..info
            }
        );
    }

    #[test]
    fn transitions_table() {
        use SessionState::*;
        let all = [Created, Active, Suspended, Destroyed];
        let allowed: Vec<_> = all
            .iter()
            .flat_map(|&f| all.iter().map(move |&t| (f, t)))
            .filter(|&(f, t)| transition_allowed(f, t))
            .collect();
        assert_eq!(
            allowed,
            [
                (Created, Created),
                (Created, Active),
                (Created, Suspended),
                (Created, Destroyed),
                (Active, Active),
                (Active, Suspended),
                (Active, Destroyed),
                (Suspended, Active),
                (Suspended, Suspended),
                (Suspended, Destroyed),
                (Destroyed, Destroyed),
            ]
        );
    }
}
