//! The daemon's view of the world: which appliances are connected with which token, which
//! session processes exist, and which session each appliance shows.
//!
//! Every decision is a method on [`Daemon`], called with its lock held from the connection,
//! session-link, launcher and admin tasks; methods only update maps and send on unbounded
//! channels, so the lock is never held across I/O.

pub mod admin;
pub mod launcher;
pub mod sessions;
pub mod shared;
pub mod wire;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tokio::sync::mpsc::UnboundedSender;
use wayray_protocol::{
    sessions::{
        session_id_string, ApplianceId, ApplianceInfo, SessionId, SessionInfo, SessionKind,
        SessionState, ToLauncher, ToSession,
    },
    InputMessage, Keymap, PhysicalSize,
};

use crate::{
    store::{AuditEvent, AuditKind, Store},
    transport::ConnEvent,
};

/// How appliances are matched to sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// One session (started by the daemon itself) shown on whichever appliance connected last,
    /// whatever its token: demos, kiosks, tests.
    Shared,
    /// Sun Ray style: each token gets its own session, through a greeter and `wrsessd`.
    Launcher,
}

/// Paths of the daemon's sockets.
#[derive(Debug, Clone)]
pub struct RunDir(pub PathBuf);

impl RunDir {
    pub fn sessions(&self) -> PathBuf {
        self.0.join("sessions.sock")
    }
    pub fn launcher(&self) -> PathBuf {
        self.0.join("launcher.sock")
    }
    pub fn admin(&self) -> PathBuf {
        self.0.join("admin.sock")
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub struct SessionSlot {
    pub kind: SessionKind,
    pub state: SessionState,
    pub user: Option<String>,
    pub secret: String,
    /// Messages to the session process, while it is connected.
    pub link: Option<UnboundedSender<ToSession>>,
    pub appliance: Option<ApplianceId>,
    pub pid: Option<u32>,
    pub wayland_display: Option<String>,
    pub created_ms: u64,
    pub changed_ms: u64,
}

pub struct ApplianceSlot {
    pub tx: UnboundedSender<ConnEvent>,
    pub remote: String,
    pub client_name: String,
    pub token: Option<String>,
    pub session: Option<SessionId>,
    pub screen: (u32, u32),
    /// The screen's size in millimetres, when the appliance knows it.
    pub physical_size: Option<PhysicalSize>,
    pub output: (u32, u32),
    pub keymap: Option<Keymap>,
    /// The configured output scale for this appliance (`output_scale`); `None`: automatic.
    pub scale: Option<f64>,
    pub connected_ms: u64,
}

impl ApplianceSlot {
    /// What the session is told when it is shown on this appliance.
    fn attached(&self, id: ApplianceId) -> ToSession {
        ToSession::Attached {
            appliance: id,
            screen: self.screen,
            physical_size: self.physical_size,
            output: self.output,
            keymap: self.keymap.clone(),
            scale: self.scale,
        }
    }

    fn identity(&self, id: ApplianceId) -> String {
        format!("{id} {} {}", self.remote, self.client_name)
    }
}

pub struct Daemon {
    pub mode: Mode,
    pub sessions: HashMap<SessionId, SessionSlot>,
    pub appliances: HashMap<ApplianceId, ApplianceSlot>,
    /// token → session.
    pub bindings: HashMap<String, SessionId>,
    pub launcher: Option<UnboundedSender<ToLauncher>>,
    pub store: Store,
    /// The shared session's id in [`Mode::Shared`].
    pub shared: Option<SessionId>,
    pub shutting_down: bool,
}

pub type Shared = Arc<std::sync::Mutex<Daemon>>;

impl Daemon {
    pub fn new(mode: Mode, store: Store) -> Self {
        Self {
            mode,
            sessions: HashMap::new(),
            appliances: HashMap::new(),
            bindings: HashMap::new(),
            launcher: None,
            store,
            shared: None,
            shutting_down: false,
        }
    }

    /// Loads the sessions a previous daemon left running; they are adopted when their processes
    /// reconnect, and forgotten when they do not exist any more.
    pub fn load_store(&mut self) {
        let records = match self.store.live_sessions() {
            Ok(r) => r,
            Err(err) => {
                tracing::error!(%err, "cannot read the session store");
                return;
            }
        };
        let now = now_ms();
        for rec in records {
            let alive = rec.pid.is_some_and(process_alive);
            if !alive || rec.kind == SessionKind::Shared {
                tracing::info!(session = %session_id_string(rec.id), "session from the store is gone");
                if let Err(err) =
                    self.store
                        .destroy(rec.id, "process gone after a daemon restart", now)
                {
                    tracing::warn!(%err, "cannot mark a session destroyed");
                }
                continue;
            }
            tracing::info!(session = %session_id_string(rec.id), user = ?rec.user, "waiting for a running session to reconnect");
            for token in &rec.tokens {
                self.bindings.insert(token.clone(), rec.id);
            }
            self.sessions.insert(
                rec.id,
                SessionSlot {
                    kind: rec.kind,
                    state: SessionState::Suspended,
                    user: rec.user.clone(),
                    // Checked against the store when the session reconnects.
                    secret: String::new(),
                    link: None,
                    appliance: None,
                    pid: rec.pid,
                    wayland_display: rec.wayland_display.clone(),
                    created_ms: rec.created_ms,
                    changed_ms: now,
                },
            );
            let _ = self.store.set_state(rec.id, SessionState::Suspended, now);
        }
    }

    fn audit(&mut self, event: AuditEvent) {
        if let Err(err) = self.store.audit(&event, now_ms()) {
            tracing::warn!(%err, "cannot write the audit log");
        }
    }

    fn set_state(&mut self, id: SessionId, state: SessionState) {
        let now = now_ms();
        if let Some(slot) = self.sessions.get_mut(&id) {
            if slot.state == state {
                return;
            }
            slot.state = state;
            slot.changed_ms = now;
        }
        if let Err(err) = self.store.set_state(id, state, now) {
            tracing::warn!(%err, "cannot record a session state");
        }
    }

    /// Registers a session the daemon (or the launcher on its request) is starting.
    pub fn create_session(
        &mut self,
        kind: SessionKind,
        user: Option<String>,
        token: Option<&str>,
    ) -> Result<(SessionId, String), crate::store::StoreError> {
        let id = loop {
            match self.store.new_session_id() {
                Ok(id) if !self.sessions.contains_key(&id) => break id,
                Ok(_) => continue,
                Err(err) => return Err(err),
            }
        };
        let secret = crate::store::new_secret()?;
        let now = now_ms();
        if let Err(err) = self
            .store
            .create_session(id, kind, user.as_deref(), &secret, now)
        {
            tracing::warn!(%err, "cannot record a new session");
        }
        let mut event = AuditEvent::new(AuditKind::Created)
            .session(id)
            .detail(kind.as_str());
        event.token = token.map(str::to_owned);
        event.user = user.clone();
        self.audit(event);
        self.sessions.insert(
            id,
            SessionSlot {
                kind,
                state: SessionState::Created,
                user,
                secret: secret.clone(),
                link: None,
                appliance: None,
                pid: None,
                wayland_display: None,
                created_ms: now,
                changed_ms: now,
            },
        );
        Ok((id, secret))
    }

    // ---- appliances --------------------------------------------------------------------

    pub fn appliance_connected(&mut self, id: ApplianceId, slot: ApplianceSlot) {
        tracing::info!(appliance = id, token = ?slot.token, "appliance connected");
        self.appliances.insert(id, slot);
        self.route(id);
    }

    pub fn appliance_gone(&mut self, id: ApplianceId) {
        self.detach_appliance(id, "appliance disconnected");
        self.appliances.remove(&id);
    }

    pub fn token_changed(&mut self, id: ApplianceId, token: Option<String>) {
        let Some(slot) = self.appliances.get_mut(&id) else {
            return;
        };
        if slot.token == token {
            return;
        }
        tracing::info!(appliance = id, ?token, "token changed");
        self.detach_appliance(id, "token removed");
        if let Some(slot) = self.appliances.get_mut(&id) {
            slot.token = token;
        }
        self.route(id);
    }

    /// The session an appliance's token leads to, starting a greeter when there is none.
    /// Shows `appliance` the session its token leads to (none, a greeter, or its own).
    pub fn route(&mut self, appliance: ApplianceId) {
        let Some(slot) = self.appliances.get(&appliance) else {
            return;
        };
        let session = match self.mode {
            Mode::Shared => self.shared,
            Mode::Launcher => match slot.token.clone() {
                None => {
                    tracing::info!(
                        appliance,
                        "no token: nothing to show until a card is inserted"
                    );
                    None
                }
                Some(token) => match self.bindings.get(&token) {
                    Some(id) => Some(*id),
                    None => self.request_greeter(&token),
                },
            },
        };
        if let Some(session) = session {
            self.attach(appliance, session);
        }
    }

    fn request_greeter(&mut self, token: &str) -> Option<SessionId> {
        let Some(launcher) = self.launcher.clone() else {
            tracing::warn!(
                token,
                "no session launcher (wrsessd) connected; cannot show a greeter"
            );
            return None;
        };
        let (id, secret) = match self.create_session(SessionKind::Greeter, None, Some(token)) {
            Ok(v) => v,
            Err(err) => {
                tracing::error!(%err, "cannot create a greeter session");
                return None;
            }
        };
        self.bindings.insert(token.to_owned(), id);
        tracing::info!(token, session = %session_id_string(id), "starting a greeter");
        let _ = launcher.send(ToLauncher::GreeterRequested {
            token: token.to_owned(),
            session: id,
            secret,
        });
        Some(id)
    }

    /// Shows `session` on `appliance`. The session's previous appliance is told it was replaced.
    fn attach(&mut self, appliance: ApplianceId, session: SessionId) {
        let Some(s) = self.sessions.get(&session) else {
            return;
        };
        if let Some(previous) = s.appliance.filter(|p| *p != appliance) {
            tracing::info!(
                old = previous,
                new = appliance,
                "session moves to another appliance"
            );
            self.detach_appliance(previous, "session moved to another appliance");
            // A shared session has one screen: the older appliance is told and disconnects.
            // A token's session just leaves (the user logged in elsewhere); the old appliance
            // keeps its connection and shows its token's next session when it has one.
            if self.mode == Mode::Shared {
                if let Some(old) = self.appliances.get(&previous) {
                    let _ = old.tx.send(ConnEvent::Replaced);
                }
            }
        }
        let Some(a) = self.appliances.get_mut(&appliance) else {
            return;
        };
        a.session = Some(session);
        let msg = a.attached(appliance);
        let identity = a.identity(appliance);
        let token = a.token.clone();
        if let Some(s) = self.sessions.get_mut(&session) {
            s.appliance = Some(appliance);
            if let Some(link) = &s.link {
                let _ = link.send(msg);
            }
        }
        tracing::info!(appliance, session = %session_id_string(session), "attached");
        self.set_state(session, SessionState::Active);
        let mut event = AuditEvent::new(AuditKind::Attached)
            .session(session)
            .appliance(identity);
        event.token = token;
        self.audit(event);
    }

    /// Takes whatever session `appliance` shows off it; the session keeps running.
    fn detach_appliance(&mut self, appliance: ApplianceId, why: &str) {
        let Some(a) = self.appliances.get_mut(&appliance) else {
            return;
        };
        let Some(session) = a.session.take() else {
            return;
        };
        let identity = a.identity(appliance);
        let token = a.token.clone();
        if let Some(s) = self.sessions.get_mut(&session) {
            if s.appliance == Some(appliance) {
                s.appliance = None;
                if let Some(link) = &s.link {
                    let _ = link.send(ToSession::Detached { appliance });
                }
            }
        }
        tracing::info!(appliance, session = %session_id_string(session), why, "detached; the session keeps running");
        self.set_state(session, SessionState::Suspended);
        let mut event = AuditEvent::new(AuditKind::Detached)
            .session(session)
            .appliance(identity)
            .detail(why);
        event.token = token;
        self.audit(event);
    }

    /// Forwards a message from an appliance to the session it shows.
    pub fn forward_to_session(&mut self, appliance: ApplianceId, msg: ToSession) {
        let Some(a) = self.appliances.get_mut(&appliance) else {
            return;
        };
        match &msg {
            ToSession::Input {
                event: InputMessage::Keymap(keymap),
                ..
            } => a.keymap = Some(keymap.clone()),
            ToSession::Resize {
                screen,
                physical_size,
                output,
                ..
            } => {
                a.screen = *screen;
                a.physical_size = *physical_size;
                a.output = *output;
            }
            _ => {}
        }
        let Some(session) = a.session else { return };
        if let Some(link) = self.sessions.get(&session).and_then(|s| s.link.as_ref()) {
            let _ = link.send(msg);
        }
    }

    /// A frame or cursor from `session` for `appliance`; dropped unless it still shows it.
    pub fn relay(&self, session: SessionId, appliance: ApplianceId, event: ConnEvent) {
        match self.appliances.get(&appliance) {
            Some(a) if a.session == Some(session) => {
                let _ = a.tx.send(event);
            }
            _ => tracing::trace!(appliance, "dropping output for an appliance that moved on"),
        }
    }

    // ---- session processes -----------------------------------------------------------

    /// A session process connected and proved its identity.
    pub fn session_registered(
        &mut self,
        id: SessionId,
        secret: &str,
        pid: u32,
        wayland_display: String,
        link: UnboundedSender<ToSession>,
        reconnect: bool,
    ) -> Result<(), &'static str> {
        let Some(s) = self.sessions.get_mut(&id) else {
            return Err("unknown session");
        };
        let secret_ok = if s.secret.is_empty() {
            self.store.verify_secret(id, secret).unwrap_or(false)
        } else {
            constant_time_eq(s.secret.as_bytes(), secret.as_bytes())
        };
        let Some(s) = self.sessions.get_mut(&id) else {
            return Err("unknown session");
        };
        if !secret_ok {
            return Err("wrong secret");
        }
        if s.link.is_some() {
            return Err("session is already connected");
        }
        s.link = Some(link);
        s.pid = Some(pid);
        s.wayland_display = Some(wayland_display.clone());
        let user = s.user.clone();
        if let Err(err) = self
            .store
            .set_process(id, Some(pid), Some(&wayland_display), now_ms())
        {
            tracing::warn!(%err, "cannot record the session process");
        }
        if reconnect {
            let mut event = AuditEvent::new(AuditKind::Adopted).session(id);
            event.user = user;
            self.audit(event);
        }
        tracing::info!(session = %session_id_string(id), pid, %wayland_display, reconnect, "session process connected");
        // An appliance may already be waiting for it (a greeter or a fresh user session).
        if let Some(appliance) = self.sessions.get(&id).and_then(|s| s.appliance) {
            if let Some(a) = self.appliances.get(&appliance) {
                let msg = a.attached(appliance);
                if let Some(link) = self.sessions.get(&id).and_then(|s| s.link.as_ref()) {
                    let _ = link.send(msg);
                }
            }
        } else {
            // Someone may be waiting with a token bound to this session.
            let waiting: Vec<ApplianceId> = self
                .appliances
                .iter()
                .filter(|(_, a)| {
                    a.session.is_none()
                        && (self.mode == Mode::Shared
                            || a.token.as_ref().and_then(|t| self.bindings.get(t)) == Some(&id))
                })
                .map(|(aid, _)| *aid)
                .collect();
            if let Some(appliance) = waiting.into_iter().max() {
                self.attach(appliance, id);
            }
        }
        Ok(())
    }

    /// The session's socket closed: the process died or is restarting its link.
    pub fn session_link_lost(&mut self, id: SessionId) {
        if let Some(s) = self.sessions.get_mut(&id) {
            s.link = None;
            tracing::warn!(session = %session_id_string(id), "session process disconnected");
        }
    }

    /// The session's process is gone for good: forget it, and show the next thing on its
    /// appliance (a new greeter for its token).
    pub fn session_exited(&mut self, id: SessionId, status: &str) {
        let Some(s) = self.sessions.remove(&id) else {
            return;
        };
        tracing::info!(session = %session_id_string(id), status, "session ended");
        self.bindings.retain(|_, v| *v != id);
        if let Err(err) = self.store.destroy(id, status, now_ms()) {
            tracing::warn!(%err, "cannot record the end of a session");
        }
        // `destroy` writes the Destroyed audit entry (with user, reason and tokens).
        if self.shared == Some(id) {
            self.shared = None;
        }
        if let Some(appliance) = s.appliance {
            if let Some(a) = self.appliances.get_mut(&appliance) {
                a.session = None;
            }
            if !self.shutting_down {
                self.route(appliance);
            }
        }
    }

    // ---- launcher ----------------------------------------------------------------------

    pub fn authenticated(&mut self, greeter: SessionId, token: &str, user: &str) {
        self.audit(
            AuditEvent::new(AuditKind::Authenticated)
                .session(greeter)
                .token(token)
                .user(user),
        );
        let existing = self
            .sessions
            .iter()
            .find(|(_, s)| s.kind == SessionKind::User && s.user.as_deref() == Some(user))
            .map(|(id, _)| *id);
        let target = match existing {
            Some(id) => {
                tracing::info!(user, session = %session_id_string(id), "binding the token to the user's running session");
                if let Some(launcher) = &self.launcher {
                    let _ = launcher.send(ToLauncher::Stop { session: greeter });
                }
                id
            }
            None => {
                let (id, secret) = match self.create_session(
                    SessionKind::User,
                    Some(user.to_owned()),
                    Some(token),
                ) {
                    Ok(v) => v,
                    Err(err) => {
                        tracing::error!(%err, user, "cannot create the user's session");
                        return;
                    }
                };
                tracing::info!(user, session = %session_id_string(id), "starting the user's session");
                if let Some(launcher) = &self.launcher {
                    let _ = launcher.send(ToLauncher::StartUserSession {
                        greeter,
                        token: token.to_owned(),
                        user: user.to_owned(),
                        session: id,
                        secret,
                    });
                }
                id
            }
        };
        self.bindings.insert(token.to_owned(), target);
        if let Err(err) = self.store.bind(token, target, now_ms()) {
            tracing::warn!(%err, "cannot record the token binding");
        }
        let showing: Vec<ApplianceId> = self
            .appliances
            .iter()
            .filter(|(_, a)| a.token.as_deref() == Some(token))
            .map(|(id, _)| *id)
            .collect();
        for appliance in showing {
            self.detach_appliance(appliance, "logged in");
            self.attach(appliance, target);
        }
    }

    pub fn auth_failed(&mut self, greeter: SessionId, token: &str, user: &str, reason: &str) {
        tracing::info!(token, user, reason, "login failed");
        self.audit(
            AuditEvent::new(AuditKind::AuthFailed)
                .session(greeter)
                .token(token)
                .user(user)
                .detail(reason),
        );
    }

    pub fn session_started(&mut self, id: SessionId, pid: u32) {
        if let Some(s) = self.sessions.get_mut(&id) {
            s.pid = Some(pid);
        }
        if let Err(err) = self.store.set_process(id, Some(pid), None, now_ms()) {
            tracing::warn!(%err, "cannot record the session process");
        }
    }

    /// The daemon is stopping: appliances get a goodbye. The shared session ends with the
    /// daemon; token sessions keep running and are re-adopted by the next daemon.
    pub fn shutdown(&mut self) {
        self.shutting_down = true;
        for a in self.appliances.values() {
            let _ = a.tx.send(ConnEvent::Shutdown);
        }
        if let Some(link) = self
            .shared
            .and_then(|id| self.sessions.get(&id))
            .and_then(|s| s.link.as_ref())
        {
            let _ = link.send(ToSession::Shutdown);
        }
    }

    // ---- admin -------------------------------------------------------------------------

    pub fn session_info(&self, id: SessionId) -> Option<SessionInfo> {
        let s = self.sessions.get(&id)?;
        let mut tokens: Vec<String> = self
            .bindings
            .iter()
            .filter(|(_, v)| **v == id)
            .map(|(k, _)| k.clone())
            .collect();
        tokens.sort();
        Some(SessionInfo {
            id,
            kind: s.kind,
            state: s.state,
            user: s.user.clone(),
            tokens,
            appliance: s.appliance,
            pid: s.pid,
            wayland_display: s.wayland_display.clone(),
            created_ms: s.created_ms,
            changed_ms: s.changed_ms,
        })
    }

    pub fn session_infos(&self) -> Vec<SessionInfo> {
        let mut v: Vec<SessionInfo> = self
            .sessions
            .keys()
            .filter_map(|id| self.session_info(*id))
            .collect();
        v.sort_by_key(|s| s.created_ms);
        v
    }

    pub fn appliance_infos(&self) -> Vec<ApplianceInfo> {
        let mut v: Vec<ApplianceInfo> = self
            .appliances
            .iter()
            .map(|(id, a)| ApplianceInfo {
                id: *id,
                remote: a.remote.clone(),
                client_name: a.client_name.clone(),
                token: a.token.clone(),
                session: a.session,
                screen: a.screen,
                connected_ms: a.connected_ms,
            })
            .collect();
        v.sort_by_key(|a| a.id);
        v
    }

    /// `wradm detach`: the session leaves its appliance, which then shows nothing until its
    /// token is presented again.
    pub fn admin_detach(&mut self, id: SessionId) -> Result<(), String> {
        let s = self.sessions.get(&id).ok_or("no such session")?;
        if let Some(appliance) = s.appliance {
            self.detach_appliance(appliance, "detached by the administrator");
        }
        Ok(())
    }

    /// `wradm kill`: ends the session's processes.
    pub fn admin_kill(&mut self, id: SessionId) -> Result<(), String> {
        let s = self.sessions.get(&id).ok_or("no such session")?;
        if let Some(link) = &s.link {
            let _ = link.send(ToSession::Shutdown);
        }
        if let Some(launcher) = &self.launcher {
            let _ = launcher.send(ToLauncher::Stop { session: id });
        }
        Ok(())
    }

    /// User sessions suspended for longer than `timeout` are ended.
    pub fn expire_suspended(&mut self, timeout: Duration) {
        let cutoff = now_ms().saturating_sub(timeout.as_millis() as u64);
        let expired: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| {
                s.state == SessionState::Suspended
                    && s.kind != SessionKind::Shared
                    && s.changed_ms < cutoff
            })
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            tracing::info!(session = %session_id_string(id), "suspended too long; ending it");
            let _ = self.admin_kill(id);
        }
    }
}

fn process_alive(pid: u32) -> bool {
    // SAFETY: kill with signal 0 only checks that the process exists.
    if unsafe { libc::kill(pid as libc::pid_t, 0) } == 0 {
        return true;
    }
    // Once the daemon has left root, another user's live session answers EPERM, not ESRCH.
    std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
