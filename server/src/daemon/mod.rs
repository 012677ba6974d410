//! The daemon's view of the world: which appliances are connected with which token, which
//! session processes exist, and which session each appliance shows.
//!
//! Every decision is a method on [`Daemon`], called with its lock held from the connection,
//! session-link, launcher and admin tasks; methods only update maps and send on unbounded
//! channels, so the lock is never held across I/O.

pub mod admin;
pub mod appliances;
pub mod launcher;
pub mod pool_link;
pub mod quiet_socket;
pub mod sessions;
pub mod shared;
pub mod trust;
pub mod usb;
pub mod wire;

use std::{
    cell::Cell,
    collections::HashMap,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use tokio::sync::mpsc::UnboundedSender;
use wayray_protocol::{
    messages::Notice,
    sessions::{
        session_id_string, ApplianceId, ApplianceInfo, SessionId, SessionInfo, SessionKind,
        SessionState, ToLauncher, ToSession,
    },
    InputMessage, Keymap, PhysicalSize,
};

use crate::{
    cards::{key_fingerprint, ProofOutcome, UnprovenCards},
    store::{AuditEvent, AuditKind, Store},
    transport::ConnEvent,
};
pub use trust::{Reattach, TokenTrust};
use wayray_protocol::card_proof::is_card_token;

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

/// A token's next session waits this long after its last one died at start, doubling with each
/// further failure up to [`RETRY_MAX`].
pub const RETRY_FIRST: Duration = Duration::from_secs(1);
pub const RETRY_MAX: Duration = Duration::from_secs(60);
/// A session that ran at least this long did not "die at start": the next failure of its token
/// waits [`RETRY_FIRST`] again.
pub const RETRY_HEALTHY: Duration = Duration::from_secs(30);

/// Start failures of one token's sessions: the next greeter for it waits until `retry_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    pub failures: u32,
    pub retry_ms: u64,
    /// Why the last one ended (shown on the appliance).
    pub reason: String,
}

impl Backoff {
    /// The wait after `failures` failures in a row: 1 s, 2 s, 4 s … 60 s.
    pub fn delay(failures: u32) -> Duration {
        let shift = failures.saturating_sub(1).min(16);
        (RETRY_FIRST * (1u32 << shift)).min(RETRY_MAX)
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
    /// The last attach told the session to lock (a re-attach under the `reattach` policy);
    /// repeated if the session process (re)connects after that attach.
    pub lock_on_attach: bool,
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
    /// What the card behind the token has proved; see [`CardCheck`].
    pub card: CardCheck,
    /// The fingerprint of the certificate it authenticated with (none only under
    /// `appliance_auth = "open"`).
    pub identity: Option<String>,
    /// May have sessions (see `appliances.rs`); nothing is routed to it until it is.
    pub admitted: bool,
    /// Its speaker and microphone, as far as this server uses them (Welcome).
    pub audio: wayray_protocol::AudioCapabilities,
    /// Its QUIC connection, for the session's sound: a playback datagram is sent the moment it
    /// arrives ([`Daemon::relay_audio`]), never queued behind frames the connection task is
    /// waiting to write.
    pub datagrams: quinn::Connection,
    /// How it came here (Hello), until it is first shown a session: a redirected appliance is
    /// placed here, and one whose server failed is told its session is lost.
    pub arrival: wayray_protocol::Arrival,
    /// Its token's session was on this pool server, which stopped answering it; nothing is
    /// started for the token before the pool has forgotten that server, or until the deadline
    /// (ms) says the server is alive after all. See `pool_link.rs`.
    pub lost_wait: Option<(String, u64)>,
    /// When it last presented a token (connected with one, or `TokenChanged`) and has not yet
    /// been handed a frame since: `wayray_card_in_to_frame_seconds`. A `Cell` so the relay
    /// (`&self`, under the lock) can take it.
    pub card_in: Cell<Option<Instant>>,
}

/// Where an appliance's card token stands. A card token leads to a session only once its proof
/// was checked ([`Daemon::token_proof`]); pseudo-tokens need none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardCheck {
    /// No token, or a pseudo-token.
    NotACard,
    /// A card token whose `TokenProof` has not arrived yet: nothing is shown.
    Awaiting,
    /// The card signed this connection's challenge with this key (SubjectPublicKeyInfo DER),
    /// which is the token's enrolled key or, for a card not enrolled yet, will be at login.
    Proven { spki: Vec<u8> },
    /// A card that cannot prove anything, accepted by `unproven_cards = "lock"`.
    Unproven,
    /// Refused (the appliance was told why); it shows nothing until another token comes.
    Refused,
}

impl CardCheck {
    /// What the token has proved, for the re-attach policy.
    pub fn trust(&self) -> TokenTrust {
        match self {
            Self::NotACard => TokenTrust::Pseudo,
            Self::Proven { .. } => TokenTrust::ProvenCard,
            Self::Awaiting | Self::Unproven | Self::Refused => TokenTrust::UnprovenCard,
        }
    }

    /// The check a newly presented token starts with.
    pub fn for_token(token: Option<&str>) -> Self {
        match token {
            Some(token) if is_card_token(token) => Self::Awaiting,
            _ => Self::NotACard,
        }
    }
}

impl ApplianceSlot {
    /// What the session is told when it is shown on this appliance; `lock`: lock it first.
    fn attached(&self, id: ApplianceId, lock: bool) -> ToSession {
        ToSession::Attached {
            appliance: id,
            screen: self.screen,
            physical_size: self.physical_size,
            output: self.output,
            keymap: self.keymap.clone(),
            scale: self.scale,
            lock,
            audio: self.audio,
        }
    }

    fn identity(&self, id: ApplianceId) -> String {
        let mut text = format!("{id} {} {}", self.remote, self.client_name);
        if let Some(fingerprint) = &self.identity {
            text.push(' ');
            text.push_str(wayray_protocol::identity::short_id(fingerprint));
        }
        text
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
    /// Config `unproven_cards`.
    pub unproven_cards: UnprovenCards,
    /// token → start failures of its sessions; its next greeter waits (see [`Backoff`]).
    pub backoff: HashMap<String, Backoff>,
    /// The `reattach` policy: whether a re-attached user session is locked first.
    pub reattach: Reattach,
    /// Which appliances get sessions (config `appliance_auth`).
    pub appliance_auth: crate::config::ApplianceAuth,
    /// The pool this server is part of (`[pool]`); `None` on its own.
    pub pool: Option<crate::pool::Pool>,
    /// Greeters created in a pool whose token's claim etcd has not answered yet: started once
    /// the claim is won (see `pool_link.rs`).
    pub pending_greeters: HashMap<SessionId, PendingGreeter>,
    /// Counters and histograms of the relay, for `/metrics`.
    pub metrics: crate::api::metrics::RelayMetrics,
    /// Woken when a new deadline appears (a token's backoff, a suspended session, a lost
    /// server's wait), so the timer task sleeps until the next one instead of polling.
    pub timers: std::sync::Arc<tokio::sync::Notify>,
    /// Each session's PC/SC socket, following the session from appliance to appliance.
    pub pcsc: crate::pcsc::Sessions,
    /// USB forwarding: the vhci controller, the `[usb]` policy (see `usb.rs`).
    pub usb: usb::UsbState,
}

/// A greeter waiting for its token's claim in the pool.
pub struct PendingGreeter {
    pub secret: String,
    pub notice: Option<String>,
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
            unproven_cards: UnprovenCards::default(),
            backoff: HashMap::new(),
            reattach: Reattach::default(),
            appliance_auth: crate::config::ApplianceAuth::default(),
            pool: None,
            pending_greeters: HashMap::new(),
            metrics: Default::default(),
            timers: Default::default(),
            pcsc: crate::pcsc::Sessions::new(None),
            usb: Default::default(),
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
                    lock_on_attach: false,
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
            if state == SessionState::Suspended {
                self.timers.notify_one();
            }
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
                lock_on_attach: false,
            },
        );
        Ok((id, secret))
    }

    // ---- appliances --------------------------------------------------------------------

    /// A card token is shown nothing until its proof arrives ([`Daemon::token_proof`]), so
    /// what it proves decides whether a re-attach here is locked.
    pub fn appliance_connected(&mut self, id: ApplianceId, mut slot: ApplianceSlot) {
        slot.token = appliances::effective_token(slot.identity.as_deref(), slot.token.take());
        slot.card = CardCheck::for_token(slot.token.as_deref());
        slot.card_in.set(slot.token.is_some().then(Instant::now));
        tracing::info!(appliance = id, token = ?slot.token, card = ?slot.card.trust(), "appliance connected");
        self.appliances.insert(id, slot);
        self.admit(id);
        self.route(id);
    }

    pub fn appliance_gone(&mut self, id: ApplianceId) {
        self.detach_appliance(id, "appliance disconnected");
        self.appliances.remove(&id);
    }

    /// A new token has proved nothing yet: a card token waits for its proof.
    pub fn token_changed(&mut self, id: ApplianceId, token: Option<String>) {
        let Some(slot) = self.appliances.get_mut(&id) else {
            return;
        };
        let token = appliances::effective_token(slot.identity.as_deref(), token);
        if slot.token == token {
            return;
        }
        tracing::info!(appliance = id, ?token, "token changed");
        self.detach_appliance(id, "token removed");
        if let Some(slot) = self.appliances.get_mut(&id) {
            slot.card = CardCheck::for_token(token.as_deref());
            slot.card_in.set(token.is_some().then(Instant::now));
            slot.token = token;
        }
        self.route(id);
    }

    /// The appliance's card answered the proof challenge for `token`: decides whether the
    /// token may lead to a session, tells the appliance when not, and routes it.
    pub fn token_proof(&mut self, id: ApplianceId, token: &str, outcome: ProofOutcome) {
        if self.mode == Mode::Shared {
            return;
        }
        let Some(slot) = self.appliances.get(&id) else {
            return;
        };
        if slot.token.as_deref() != Some(token) || slot.card != CardCheck::Awaiting {
            tracing::debug!(
                appliance = id,
                token,
                "a proof for a token no longer presented"
            );
            return;
        }
        let identity = slot.identity(id);
        // Enrolled here, or (in a pool) at any server: a card enrolled at one server must prove
        // the same key at every other.
        let pooled = self.pool.as_ref().and_then(|p| p.card_key(token));
        let enrolled = match self.store.card_key(token) {
            Ok(key) => key.or(pooled),
            Err(err) => {
                tracing::error!(%err, "cannot read the card keys; refusing the card");
                self.refuse_card(
                    id,
                    token,
                    identity,
                    "the server cannot read its card records".into(),
                );
                return;
            }
        };
        let check = match (outcome, enrolled) {
            (ProofOutcome::Proven { spki }, Some(key)) if spki == key => {
                tracing::info!(appliance = id, token, key = %key_fingerprint(&spki), "card proved its enrolled key");
                CardCheck::Proven { spki }
            }
            (ProofOutcome::Proven { spki }, Some(key)) => {
                let why = format!(
                    "its key {} is not the key {} enrolled for this card",
                    key_fingerprint(&spki),
                    key_fingerprint(&key)
                );
                self.refuse_card(id, token, identity, why);
                return;
            }
            (ProofOutcome::Proven { spki }, None) => {
                tracing::info!(appliance = id, token, key = %key_fingerprint(&spki), "card proved a key; it is enrolled at its first login");
                CardCheck::Proven { spki }
            }
            (ProofOutcome::NoProof, Some(_)) => {
                self.refuse_card(
                    id,
                    token,
                    identity,
                    "the card did not prove it holds the key enrolled for it".into(),
                );
                return;
            }
            (ProofOutcome::Invalid(why), _) => {
                self.refuse_card(id, token, identity, why);
                return;
            }
            (ProofOutcome::NoProof, None) => match self.unproven_cards {
                UnprovenCards::Lock => {
                    tracing::info!(
                        appliance = id,
                        token,
                        "an unproven card, accepted with the lock screen"
                    );
                    CardCheck::Unproven
                }
                UnprovenCards::Refuse => {
                    self.refuse_card(
                        id,
                        token,
                        identity,
                        "this card cannot prove who it is (no PIV card authentication key), and this server accepts only cards that can".into(),
                    );
                    return;
                }
            },
        };
        if let Some(slot) = self.appliances.get_mut(&id) {
            slot.card = check;
        }
        self.route(id);
    }

    fn refuse_card(&mut self, id: ApplianceId, token: &str, identity: String, why: String) {
        tracing::warn!(appliance = id, token, why, "card refused");
        if let Some(slot) = self.appliances.get_mut(&id) {
            slot.card = CardCheck::Refused;
            let _ = slot.tx.send(ConnEvent::Notice(Notice::CardRefused {
                reason: why.clone(),
            }));
        }
        self.audit(
            AuditEvent::new(AuditKind::CardRefused)
                .token(token)
                .appliance(identity)
                .detail(why),
        );
    }

    /// The session an appliance's token leads to, starting a greeter when there is none.
    /// Shows `appliance` the session its token leads to (none, a greeter, or its own).
    pub fn route(&mut self, appliance: ApplianceId) {
        let Some(slot) = self.appliances.get(&appliance) else {
            return;
        };
        if !slot.admitted {
            // Not approved (appliance_auth): no greeter, no session.
            return;
        }
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
                Some(_) if slot.card == CardCheck::Awaiting => {
                    tracing::info!(appliance, "waiting for the card's proof");
                    None
                }
                Some(_) if slot.card == CardCheck::Refused => None,
                Some(token) => match self.bindings.get(&token) {
                    Some(id) => Some(*id),
                    None => match self.backoff.get(&token) {
                        Some(b) if b.retry_ms > now_ms() => {
                            let notice = Notice::SessionUnavailable {
                                reason: b.reason.clone(),
                                retry_secs: b.retry_ms.saturating_sub(now_ms()).div_ceil(1000)
                                    as u32,
                            };
                            let _ = slot.tx.send(ConnEvent::Notice(notice));
                            None
                        }
                        _ => self.route_unbound(appliance, &token),
                    },
                },
            },
        };
        if let Some(session) = session {
            // A user session its token leads to was detached before: showing it is a re-attach.
            let reattach = self
                .sessions
                .get(&session)
                .is_some_and(|s| s.kind == SessionKind::User);
            self.attach(appliance, session, reattach);
        }
    }

    /// The `reattach` policy applied to `appliance`'s token: whether a user session re-attached
    /// there is locked before its first frame.
    pub fn reattach_locks(&self, appliance: ApplianceId) -> bool {
        self.appliances
            .get(&appliance)
            .is_some_and(|a| self.reattach.locks(a.card.trust()))
    }

    /// A greeter for `token`; in a pool it starts once the token's claim is won, and
    /// `notice` is shown above its form.
    pub(super) fn request_greeter(
        &mut self,
        token: &str,
        notice: Option<String>,
    ) -> Option<SessionId> {
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
        if let Some(pool) = &self.pool {
            tracing::info!(token, session = %session_id_string(id), "claiming the token in the pool for a greeter");
            pool.claim(token, id);
            self.pending_greeters
                .insert(id, PendingGreeter { secret, notice });
            return Some(id);
        }
        tracing::info!(token, session = %session_id_string(id), "starting a greeter");
        let _ = launcher.send(ToLauncher::GreeterRequested {
            token: token.to_owned(),
            session: id,
            secret,
            notice,
        });
        Some(id)
    }

    /// Shows `session` on `appliance`. The session's previous appliance is told it was replaced.
    /// `reattach`: the session was detached before (not the attach right after a login), so the
    /// `reattach` policy decides whether it is locked first.
    fn attach(&mut self, appliance: ApplianceId, session: SessionId, reattach: bool) {
        // The one gate every path to a session passes (route, login, a session starting):
        // an admitted appliance, and in launcher mode a token that is not waiting for its
        // card's proof or refused.
        let Some(a) = self.appliances.get(&appliance) else {
            return;
        };
        if !a.admitted {
            tracing::warn!(
                appliance,
                "not attaching a session to an appliance that is not admitted"
            );
            return;
        }
        if self.mode == Mode::Launcher && matches!(a.card, CardCheck::Awaiting | CardCheck::Refused)
        {
            tracing::info!(
                appliance,
                "not attaching a session before the card has proved itself"
            );
            return;
        }
        let lock = reattach && self.reattach_locks(appliance);
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
        // Shown a session here: later tokens are routed as any appliance's.
        a.arrival = wayray_protocol::Arrival::Direct;
        a.lost_wait = None;
        let msg = a.attached(appliance, lock);
        let identity = a.identity(appliance);
        let token = a.token.clone();
        if let Some(s) = self.sessions.get_mut(&session) {
            s.appliance = Some(appliance);
            s.lock_on_attach = lock;
            if let Some(link) = &s.link {
                let _ = link.send(msg);
            }
        }
        self.pcsc_follow(session);
        tracing::info!(appliance, session = %session_id_string(session), lock, "attached");
        self.set_state(session, SessionState::Active);
        let mut event = AuditEvent::new(AuditKind::Attached)
            .session(session)
            .appliance(identity);
        event.token = token;
        self.audit(event);
        self.usb_changed(appliance);
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
                self.pcsc.attachment(session, None);
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
        self.usb_changed(appliance);
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
                if let ConnEvent::Frame { bytes, .. } = &event {
                    self.metrics.frame_relayed(bytes.len(), a.card_in.take());
                }
                let _ = a.tx.send(event);
            }
            _ => tracing::trace!(appliance, "dropping output for an appliance that moved on"),
        }
    }

    /// A playback packet from `session` for `appliance`, sent as one datagram at once; dropped
    /// unless the appliance still shows that session and has a speaker (or when the link has no
    /// room for it: a late packet is worth nothing to the appliance's jitter buffer).
    pub fn relay_audio(&self, session: SessionId, appliance: ApplianceId, bytes: bytes::Bytes) {
        match self.appliances.get(&appliance) {
            Some(a) if a.session == Some(session) && a.audio.speaker => {
                if let Err(err) = a.datagrams.send_datagram(bytes) {
                    tracing::trace!(appliance, %err, "audio datagram dropped");
                }
            }
            _ => tracing::trace!(appliance, "dropping sound for an appliance that moved on"),
        }
    }

    // ---- session processes -----------------------------------------------------------

    /// The session's process registered and runs as `uid`: its PC/SC socket serves that user,
    /// on the appliance it is shown on. Greeters get none: every greeter runs as the one
    /// greeter user, and a login form has no use for the card.
    pub fn pcsc_session_started(&mut self, id: SessionId, uid: u32) {
        match self.sessions.get(&id).map(|s| s.kind) {
            Some(SessionKind::User | SessionKind::Shared) => {}
            _ => return,
        }
        self.pcsc.session_started(id, uid);
        self.pcsc_follow(id);
    }

    /// Points the session's PC/SC at the appliance it is shown on now (or at none).
    fn pcsc_follow(&mut self, session: SessionId) {
        let to = self
            .sessions
            .get(&session)
            .and_then(|s| s.appliance)
            .and_then(|a| {
                self.appliances.get(&a).map(|slot| crate::pcsc::Attachment {
                    appliance: a,
                    connection: slot.datagrams.clone(),
                })
            });
        self.pcsc.attachment(session, to);
    }

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
        let kind = s.kind;
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
        if let Some((appliance, lock)) = self
            .sessions
            .get(&id)
            .and_then(|s| Some((s.appliance?, s.lock_on_attach)))
        {
            if let Some(a) = self.appliances.get(&appliance) {
                let msg = a.attached(appliance, lock);
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
                        && a.admitted
                        && (self.mode == Mode::Shared
                            || a.token.as_ref().and_then(|t| self.bindings.get(t)) == Some(&id))
                })
                .map(|(aid, _)| *aid)
                .collect();
            // A re-attach when the session was adopted after a daemon restart (its appliance
            // was gone meanwhile); else the first attach of a fresh session.
            if let Some(appliance) = waiting.into_iter().max() {
                let reattach = reconnect && kind == SessionKind::User;
                self.attach(appliance, id, reattach);
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
        self.pcsc.session_ended(id);
        tracing::info!(session = %session_id_string(id), status, "session ended");
        let tokens: Vec<String> = self
            .bindings
            .iter()
            .filter(|(_, v)| **v == id)
            .map(|(k, _)| k.clone())
            .collect();
        self.bindings.retain(|_, v| *v != id);
        self.pending_greeters.remove(&id);
        if let Some(pool) = &self.pool {
            for token in &tokens {
                pool.release(token, id);
            }
        }
        self.note_start_failure(&s, &tokens, status);
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

    /// A session that ended before it ever connected, or within [`RETRY_HEALTHY`] with a
    /// failure, died at start: its tokens' next greeter waits (1 s, doubling to 60 s) instead
    /// of being started at once, which looped thousands of times a minute when a greeter could
    /// not start. A session that ran a while resets its tokens' count.
    fn note_start_failure(&mut self, s: &SessionSlot, tokens: &[String], status: &str) {
        if tokens.is_empty() || s.kind == SessionKind::Shared {
            return;
        }
        let now = now_ms();
        let lived = Duration::from_millis(now.saturating_sub(s.created_ms));
        let clean = status == "exit status: 0";
        let died_at_start = s.wayland_display.is_none() || (lived < RETRY_HEALTHY && !clean);
        for token in tokens {
            if !died_at_start {
                self.backoff.remove(token);
                continue;
            }
            let entry = self.backoff.entry(token.clone()).or_insert(Backoff {
                failures: 0,
                retry_ms: 0,
                reason: String::new(),
            });
            entry.failures = entry.failures.saturating_add(1);
            let delay = Backoff::delay(entry.failures);
            entry.retry_ms = now + delay.as_millis() as u64;
            entry.reason = format!("the {} session ended at start ({status})", s.kind.as_str());
            self.timers.notify_one();
            tracing::warn!(
                token,
                failures = entry.failures,
                retry_in = ?delay,
                "the token's session died at start; waiting before the next"
            );
        }
    }

    /// Appliances whose token waited out its backoff get their next session now.
    pub fn retry_due(&mut self) {
        self.lost_waits_due();
        let now = now_ms();
        let due: Vec<ApplianceId> = self
            .appliances
            .iter()
            .filter(|(_, a)| a.session.is_none())
            .filter(|(_, a)| {
                a.token.as_ref().is_some_and(|t| {
                    !self.bindings.contains_key(t)
                        && self.backoff.get(t).is_some_and(|b| b.retry_ms <= now)
                })
            })
            .map(|(id, _)| *id)
            .collect();
        for appliance in due {
            self.route(appliance);
        }
    }

    /// A session runs without its cgroup limits: the audit log says so.
    pub fn unconfined(&mut self, id: SessionId, reason: &str) {
        tracing::warn!(session = %session_id_string(id), reason, "session runs without limits");
        let mut event = AuditEvent::new(AuditKind::Unconfined)
            .session(id)
            .detail(reason);
        event.user = self.sessions.get(&id).and_then(|s| s.user.clone());
        self.audit(event);
    }

    // ---- launcher ----------------------------------------------------------------------

    pub fn authenticated(&mut self, greeter: SessionId, token: &str, user: &str) {
        self.backoff.remove(token);
        self.audit(
            AuditEvent::new(AuditKind::Authenticated)
                .session(greeter)
                .token(token)
                .user(user),
        );
        self.enrol_card(greeter, token, user);
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
        if let Some(pool) = &self.pool {
            pool.rebind(token, target);
        }
        if let Err(err) = self.store.bind(token, target, now_ms()) {
            tracing::warn!(%err, "cannot record the token binding");
        }
        let showing: Vec<ApplianceId> = self
            .appliances
            .iter()
            .filter(|(_, a)| a.token.as_deref() == Some(token))
            .map(|(id, _)| *id)
            .collect();
        // Right after a login: the user just typed the password, no lock.
        for appliance in showing {
            self.detach_appliance(appliance, "logged in");
            self.attach(appliance, target, false);
        }
    }

    /// A user logged in (PAM) with a card that proved a key: the key is recorded for the
    /// card's token, and from now on only that key opens the token's session.
    fn enrol_card(&mut self, greeter: SessionId, token: &str, user: &str) {
        let proven = self.appliances.values().find_map(|a| match &a.card {
            CardCheck::Proven { spki }
                if a.token.as_deref() == Some(token) && a.session == Some(greeter) =>
            {
                Some(spki.clone())
            }
            _ => None,
        });
        let Some(spki) = proven else { return };
        if let Some(pool) = &self.pool {
            // The pool keeps the first key it hears of for the token, as the store does.
            pool.enrol_card(token, &spki, user);
        }
        match self.store.enrol_card(token, user, &spki, now_ms()) {
            Ok(true) => {
                tracing::info!(token, user, key = %key_fingerprint(&spki), "card enrolled");
                self.audit(
                    AuditEvent::new(AuditKind::CardEnrolled)
                        .session(greeter)
                        .token(token)
                        .user(user)
                        .detail(format!("key {}", key_fingerprint(&spki))),
                );
            }
            Ok(false) => {}
            Err(err) => tracing::error!(%err, token, "cannot record the card's key"),
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

    /// The locker of a user session checked the user's password (wrsessd reports it).
    pub fn unlock_result(&mut self, session: SessionId, user: &str, failure: Option<&str>) {
        let token = self
            .sessions
            .get(&session)
            .and_then(|s| s.appliance)
            .and_then(|a| self.appliances.get(&a))
            .and_then(|a| a.token.clone());
        let (kind, detail) = match failure {
            Some(reason) => {
                tracing::info!(session = %session_id_string(session), user, reason, "unlock failed");
                (AuditKind::AuthFailed, format!("unlock: {reason}"))
            }
            None => {
                tracing::info!(session = %session_id_string(session), user, "session unlocked");
                // A session process that reconnects later is not locked again for this attach.
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.lock_on_attach = false;
                }
                (AuditKind::Authenticated, "unlock".to_string())
            }
        };
        let mut event = AuditEvent::new(kind)
            .session(session)
            .user(user)
            .detail(&detail);
        event.token = token;
        self.audit(event);
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
    /// When [`Self::retry_due`] or [`Self::expire_suspended`] (with `suspended_timeout`) next has
    /// something to do, in [`now_ms`] time; `None`: nothing until a new deadline appears.
    pub fn next_deadline_ms(&self, suspended_timeout: Option<Duration>) -> Option<u64> {
        let retries = self
            .appliances
            .values()
            .filter(|a| a.session.is_none())
            .filter_map(|a| {
                let token = a.token.as_ref()?;
                let retry = (!self.bindings.contains_key(token))
                    .then(|| self.backoff.get(token).map(|b| b.retry_ms))
                    .flatten();
                let lost = a.lost_wait.as_ref().map(|(_, deadline)| *deadline);
                retry.into_iter().chain(lost).min()
            });
        let expiries = suspended_timeout.into_iter().flat_map(|timeout| {
            self.sessions
                .values()
                .filter(|s| s.state == SessionState::Suspended && s.kind != SessionKind::Shared)
                .map(move |s| s.changed_ms + timeout.as_millis() as u64 + 1)
        });
        retries.chain(expiries).min()
    }

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

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_minute() {
        let secs: Vec<u64> = (1..=9).map(|n| Backoff::delay(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(Backoff::delay(u32::MAX), RETRY_MAX);
    }

    #[test]
    fn a_greeter_dying_at_start_holds_its_token_back() {
        let store = Store::open_in_memory().unwrap();
        let mut daemon = Daemon::new(Mode::Launcher, store);
        let (id, _) = daemon
            .create_session(SessionKind::Greeter, None, Some("tok"))
            .unwrap();
        daemon.bindings.insert("tok".into(), id);
        daemon.session_exited(id, "failed to start: no wrlogin");
        let backoff = daemon.backoff.get("tok").cloned().unwrap();
        assert_eq!(backoff.failures, 1);
        assert!(backoff.retry_ms > now_ms());
        assert!(backoff.reason.contains("no wrlogin"), "{}", backoff.reason);

        // A second failure waits longer; a login clears the count.
        let (id, _) = daemon
            .create_session(SessionKind::Greeter, None, Some("tok"))
            .unwrap();
        daemon.bindings.insert("tok".into(), id);
        daemon.session_exited(id, "exit status: 1");
        assert_eq!(daemon.backoff.get("tok").map(|b| b.failures), Some(2));
        daemon.authenticated(id, "tok", "alice");
        assert!(!daemon.backoff.contains_key("tok"));
    }

    #[tokio::test]
    async fn timers_sleep_until_a_deadline_appears() {
        let store = Store::open_in_memory().unwrap();
        let mut daemon = Daemon::new(Mode::Launcher, store);
        let timeout = Duration::from_secs(60);
        let (id, _) = daemon
            .create_session(SessionKind::User, Some("alice".into()), Some("tok"))
            .unwrap();
        daemon.set_state(id, SessionState::Active);
        // Nothing suspended, no backoff: nothing to wake up for.
        assert_eq!(daemon.next_deadline_ms(Some(timeout)), None);
        let timers = daemon.timers.clone();
        daemon.set_state(id, SessionState::Suspended);
        // The timer task hears of it, and sleeps until the session's timeout.
        tokio::time::timeout(Duration::from_secs(5), timers.notified())
            .await
            .expect("a suspended session wakes the timer task");
        let changed = daemon.sessions[&id].changed_ms;
        assert_eq!(
            daemon.next_deadline_ms(Some(timeout)),
            Some(changed + 60_001)
        );
        // Without a suspended timeout, a suspended session is no deadline.
        assert_eq!(daemon.next_deadline_ms(None), None);
    }
}
