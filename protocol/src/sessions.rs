//! Messages between the server-side processes, over Unix sockets, framed like the wire
//! (u32 LE length + postcard, see [`crate::framing`]):
//!
//! - `wrsrvd` (the daemon) ⇄ each per-session compositor: [`SessionHello`], [`ToSession`],
//!   [`FromSession`] on the daemon's `sessions.sock`. Sessions connect to the daemon (not the
//!   other way round), so a restarted daemon is found again by the sessions still running.
//! - `wrsrvd` ⇄ `wrsessd` (the session launcher): [`LauncherHello`], [`ToLauncher`],
//!   [`FromLauncher`] on the daemon's `launcher.sock`. These are the roadmap's launcher events:
//!   session_requested, session_authenticated, session_logout.
//! - `wrlogin` (the greeter) ⇄ `wrsessd`: [`LoginRequest`], [`LoginReply`] on `login.sock`.
//! - `wradm` ⇄ `wrsrvd`: [`AdminRequest`], [`AdminReply`] on `admin.sock`.

use serde::{Deserialize, Serialize};

use crate::{InputMessage, Keymap, PhysicalSize};

/// A session's identity, unique for the life of a server's session store. Shown as 16 hex digits.
pub type SessionId = u64;
/// One appliance connection, unique while the daemon runs.
pub type ApplianceId = u64;

/// Formats a session id the way logs, `wradm` and the store show it.
pub fn session_id_string(id: SessionId) -> String {
    format!("{id:016x}")
}

/// Parses what [`session_id_string`] prints.
pub fn parse_session_id(s: &str) -> Option<SessionId> {
    u64::from_str_radix(s.trim(), 16).ok()
}

/// Session ids as [`session_id_string`] prints them in human-readable formats (JSON), and as
/// plain numbers in binary ones (postcard), so `admin.sock` is unchanged.
pub mod hex_id {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    use super::{parse_session_id, session_id_string, SessionId};

    pub fn serialize<S: Serializer>(id: &SessionId, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&session_id_string(*id))
        } else {
            s.serialize_u64(*id)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SessionId, D::Error> {
        if d.is_human_readable() {
            let text = String::deserialize(d)?;
            parse_session_id(&text)
                .ok_or_else(|| D::Error::custom(format!("{text:?} is not a session id")))
        } else {
            u64::deserialize(d)
        }
    }

    /// The same for an `Option<SessionId>`.
    pub mod option {
        use serde::{Deserialize, Deserializer, Serialize, Serializer};

        use super::SessionId;

        #[derive(Serialize, Deserialize)]
        struct Id(#[serde(with = "super")] SessionId);

        pub fn serialize<S: Serializer>(id: &Option<SessionId>, s: S) -> Result<S::Ok, S::Error> {
            id.map(Id).serialize(s)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SessionId>, D::Error> {
            Ok(Option::<Id>::deserialize(d)?.map(|Id(id)| id))
        }
    }
}

// ---- daemon ⇄ session compositor ------------------------------------------------------------

/// First message of a session compositor on `sessions.sock`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionHello {
    pub session: SessionId,
    /// The secret the launcher (or the daemon, for the shared session) gave this session at
    /// start; proves the connecting process is that session and not another user's process.
    pub secret: String,
    pub pid: u32,
    /// The session's Wayland socket name, for logs and `wradm show`.
    pub wayland_display: String,
    /// True when the daemon this session was talking to went away and this is a re-connection:
    /// the daemon re-adopts it instead of treating it as new.
    pub reconnect: bool,
}

/// Daemon → session compositor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToSession {
    /// An appliance now shows this session; it needs a key frame at `output` size.
    Attached {
        appliance: ApplianceId,
        screen: (u32, u32),
        /// The screen's size in millimetres, when the appliance knows it.
        physical_size: Option<PhysicalSize>,
        output: (u32, u32),
        keymap: Option<Keymap>,
        /// The server's configured output scale (`output_scale`); `None`: chosen from the
        /// screen's pixel density. A user's own `scale` in session.toml wins over both.
        scale: Option<f64>,
        /// Lock the session before its first frame for this appliance (the `reattach` policy:
        /// a re-attach with a token that proved nothing). The compositor locks itself and starts
        /// its locker, so no pixel of the desktop reaches the appliance before the password.
        /// `false` never unlocks a session that is locked.
        lock: bool,
        /// The appliance's speaker and microphone: the session sends sound only to a speaker
        /// and opens only a microphone that exists.
        audio: crate::AudioCapabilities,
    },
    /// The attached appliance's screen changed: its size, its physical size (a monitor swap),
    /// or both.
    Resize {
        appliance: ApplianceId,
        screen: (u32, u32),
        physical_size: Option<PhysicalSize>,
        output: (u32, u32),
    },
    /// A validated input event from the attached appliance.
    Input {
        appliance: ApplianceId,
        event: InputMessage,
    },
    /// The appliance acknowledged frame `seq`.
    FrameAck { appliance: ApplianceId, seq: u64 },
    /// What the attached appliance's link can carry (its bandwidth cap and quinn's estimate),
    /// as the bitrate video regions should use; sent every second while connected.
    LinkQuality {
        appliance: ApplianceId,
        video_bitrate: u64,
    },
    /// One 10 ms packet of the attached appliance's microphone, checked by the daemon.
    Microphone {
        appliance: ApplianceId,
        packet: crate::AudioPacket,
    },
    /// The appliance is gone or its token left; the session is suspended and keeps running.
    Detached { appliance: ApplianceId },
    /// End the session: close its clients and exit.
    Shutdown,
}

/// Session compositor → daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromSession {
    /// A framed `DisplayMessage::Frame` for `appliance`'s display stream, relayed unchanged.
    Frame {
        appliance: ApplianceId,
        seq: u64,
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
        /// How long the session took to encode it, in microseconds: encoding happens in the
        /// session process, so this is how the daemon's `wayray_encode_seconds` learns it.
        encode_us: u32,
    },
    /// A framed `DisplayMessage::Cursor`, relayed unchanged; not acknowledged.
    Cursor {
        appliance: ApplianceId,
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// An encoded [`crate::Datagram::Playback`], sent unchanged as one QUIC datagram.
    Audio {
        appliance: ApplianceId,
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// Ask the appliance to start (`open`) or stop sending its microphone; said again after
    /// every `Attached` while the session records.
    Microphone { appliance: ApplianceId, open: bool },
}

/// An output scale someone asked for: the server's `output_scale`, a user's `scale` in
/// session.toml, `--scale`. Written `auto` or a number such as `1.5`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum ScaleChoice {
    /// Chosen from the screen's pixel density (its physical size), 1 when that is unknown.
    #[default]
    Auto,
    /// This scale whatever the screen.
    Fixed(f64),
}

impl ScaleChoice {
    /// Smallest scale one may ask for: below it text is unreadable on any screen.
    pub const MIN: f64 = 0.5;
    /// Largest: beyond it even an 8K laptop panel has too little room.
    pub const MAX: f64 = 4.0;

    /// A fixed scale, checked and rounded to the nearest 1/120, the step fractional-scale-v1
    /// can express.
    pub fn fixed(scale: f64) -> Result<Self, String> {
        if !(Self::MIN..=Self::MAX).contains(&scale) {
            return Err(format!(
                "scale {scale} is out of range ({}..={})",
                Self::MIN,
                Self::MAX
            ));
        }
        Ok(Self::Fixed((scale * 120.0).round() / 120.0))
    }

    /// The fixed scale, `None` for `auto`.
    pub fn fixed_value(self) -> Option<f64> {
        match self {
            Self::Auto => None,
            Self::Fixed(scale) => Some(scale),
        }
    }
}

impl std::str::FromStr for ScaleChoice {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("auto") {
            return Ok(Self::Auto);
        }
        let scale = text
            .parse::<f64>()
            .map_err(|_| format!("`{text}` is neither `auto` nor a scale such as 1.5"))?;
        Self::fixed(scale)
    }
}

impl std::fmt::Display for ScaleChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Auto => write!(f, "auto"),
            Self::Fixed(scale) => write!(f, "{scale}"),
        }
    }
}

/// In TOML: `scale = "auto"`, `scale = 1.5` or `scale = 2`. A self-describing format is
/// needed; wire messages carry `Option<f64>` instead.
impl<'de> Deserialize<'de> for ScaleChoice {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ScaleChoice;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(
                    f,
                    "\"auto\" or a scale between {} and {}",
                    ScaleChoice::MIN,
                    ScaleChoice::MAX
                )
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ScaleChoice, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<ScaleChoice, E> {
                ScaleChoice::fixed(v).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ScaleChoice, E> {
                ScaleChoice::fixed(v as f64).map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ScaleChoice, E> {
                ScaleChoice::fixed(v as f64).map_err(E::custom)
            }
        }
        de.deserialize_any(Visitor)
    }
}

// ---- daemon ⇄ session launcher ---------------------------------------------------------------

/// First message of `wrsessd` on `launcher.sock`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LauncherHello {
    pub pid: u32,
}

/// Daemon → launcher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToLauncher {
    /// session_requested: `token` has no session. Start a greeter session with this id and
    /// secret (a compositor running `wrlogin`, as the unprivileged greeter user).
    GreeterRequested {
        token: String,
        session: SessionId,
        secret: String,
        /// A line the login screen shows above the form, e.g. that the token's last session
        /// was lost with the pool server it ran on.
        notice: Option<String>,
    },
    /// The user authenticated in greeter `greeter` has no session yet: start theirs, as them,
    /// with this id and secret. The greeter is stopped once it is up.
    StartUserSession {
        greeter: SessionId,
        token: String,
        user: String,
        session: SessionId,
        secret: String,
    },
    /// Stop this session's processes (logout by admin, suspended too long, greeter done).
    Stop { session: SessionId },
}

/// Launcher → daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromLauncher {
    /// session_authenticated: PAM accepted `user` in the greeter for `token`. The daemon binds
    /// the token to the user's running session, or answers with `StartUserSession`.
    Authenticated {
        greeter: SessionId,
        token: String,
        user: String,
    },
    /// A login attempt in that greeter failed (for the audit log; the greeter shows why).
    AuthFailed {
        greeter: SessionId,
        token: String,
        user: String,
        reason: String,
    },
    /// The launcher started a session's compositor process.
    Started { session: SessionId, pid: u32 },
    /// session_logout: the session's compositor exited (logout, crash, or stopped); `status`
    /// says how, e.g. "exit status: 0" or "signal: 9".
    Exited { session: SessionId, status: String },
    /// The launcher could not start the session (no such user's shell, exec failed…).
    Failed { session: SessionId, reason: String },
    /// The session started but runs without its cgroup limits (no usable cgroup hierarchy,
    /// or creating its group failed): audited, so an administrator sees it.
    Unconfined { session: SessionId, reason: String },
    /// The locker of user session `session` was given `user`'s right password: it unlocks
    /// (for the audit log).
    Unlocked { session: SessionId, user: String },
    /// A wrong password at the locker of user session `session` (for the audit log; the
    /// locker shows why).
    UnlockFailed {
        session: SessionId,
        user: String,
        reason: String,
    },
}

// ---- greeter ⇄ launcher ----------------------------------------------------------------------

/// `wrlogin` → `wrsessd`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LoginRequest {
    /// A greeter's login. `ticket` is the greeter's `WAYRAY_LOGIN_TICKET`; it names the greeter
    /// session (and through it the token) so a login can only bind the token it was shown for.
    Login {
        ticket: String,
        username: String,
        password: String,
    },
    /// A locker's (`wrlogin --lock`) unlock. `ticket` is the `WAYRAY_UNLOCK_TICKET` wrsessd gave
    /// the user's session; it names the session and its user, so the password is checked for
    /// that user only: a locker cannot unlock with another account's password.
    Unlock { ticket: String, password: String },
}

impl LoginRequest {
    /// The password, to wipe it once the request is encoded or answered.
    pub fn password_mut(&mut self) -> &mut String {
        match self {
            LoginRequest::Login { password, .. } | LoginRequest::Unlock { password, .. } => {
                password
            }
        }
    }
}

/// `wrsessd` → `wrlogin`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LoginReply {
    /// Authenticated; the user's session replaces the greeter on the appliance.
    Accepted,
    /// Shown on the greeter's error line, e.g. "Wrong user name or password".
    Refused { message: String },
}

// ---- admin ---------------------------------------------------------------------------------

/// Where a session is in its life. Lowercase words in JSON (the admin API), as `as_str`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionState {
    /// Started, not yet shown anywhere.
    Created,
    /// Shown on an appliance.
    Active,
    /// Running, shown nowhere (card out, appliance gone).
    Suspended,
    /// Ended; kept in the store for history.
    Destroyed,
}

impl SessionState {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Created => "created",
            SessionState::Active => "active",
            SessionState::Suspended => "suspended",
            SessionState::Destroyed => "destroyed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "created" => SessionState::Created,
            "active" => SessionState::Active,
            "suspended" => SessionState::Suspended,
            "destroyed" => SessionState::Destroyed,
            _ => return None,
        })
    }
}

/// What kind of session. Lowercase words in JSON, as `as_str`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionKind {
    /// The login screen for one token.
    Greeter,
    /// A user's desktop.
    User,
    /// The one session every appliance shows when the server runs without a launcher.
    Shared,
}

impl SessionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionKind::Greeter => "greeter",
            SessionKind::User => "user",
            SessionKind::Shared => "shared",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "greeter" => SessionKind::Greeter,
            "user" => SessionKind::User,
            "shared" => SessionKind::Shared,
            _ => return None,
        })
    }
}

/// A session for `wradm` and the admin API. In JSON (a human-readable format) its id is the 16
/// hex digits `wradm` prints; postcard (`admin.sock`) carries the number as before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    #[serde(with = "hex_id")]
    pub id: SessionId,
    pub kind: SessionKind,
    pub state: SessionState,
    pub user: Option<String>,
    /// Tokens bound to this session.
    pub tokens: Vec<String>,
    /// The appliance showing it now.
    pub appliance: Option<ApplianceId>,
    pub pid: Option<u32>,
    pub wayland_display: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub created_ms: u64,
    pub changed_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplianceInfo {
    pub id: ApplianceId,
    /// The appliance's address as the server sees it.
    pub remote: String,
    pub client_name: String,
    pub token: Option<String>,
    /// The session it shows; 16 hex digits in JSON, like [`SessionInfo::id`].
    #[serde(with = "hex_id::option")]
    pub session: Option<SessionId>,
    pub screen: (u32, u32),
    pub connected_ms: u64,
}

/// Whether an appliance (known by its certificate) may have sessions. Lowercase in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApplianceAuthState {
    /// Seen, not yet approved: under `appliance_auth = "enrol"` it waits for an administrator.
    Pending,
    /// Approved by an administrator: gets sessions under every policy.
    Approved,
    /// Revoked by an administrator: refused under every policy until approved again.
    Revoked,
}

impl ApplianceAuthState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "approved" => Self::Approved,
            "revoked" => Self::Revoked,
            _ => return None,
        })
    }
}

/// An appliance the server knows by its certificate, for `wradm appliances`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownApplianceInfo {
    /// SHA-256 of the certificate's public key, 64 hex digits (see [`crate::identity`]).
    pub fingerprint: String,
    pub state: ApplianceAuthState,
    /// Milliseconds since the Unix epoch.
    pub first_seen_ms: u64,
    pub last_seen_ms: u64,
    /// Where it last connected from, when it got as far as a connection.
    pub last_address: Option<String>,
    /// The client name of its last Hello.
    pub client_name: Option<String>,
    /// Its live connections (ids as in [`ApplianceInfo`]); empty when not connected now.
    pub connections: Vec<ApplianceId>,
}

/// `wradm` → daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminRequest {
    ListSessions,
    ShowSession(SessionId),
    /// Take the session off its appliance; it keeps running (Suspended).
    Detach(SessionId),
    /// End the session and its clients.
    Kill(SessionId),
    /// The connected appliances (connections, with the token and session of each).
    ListAppliances,
    /// What the session's cgroup says it used (`wradm show` asks after `ShowSession`).
    SessionUsage(SessionId),
    /// Every appliance the server knows by its certificate (`wradm appliances`).
    ListKnownAppliances,
    /// Let the appliance whose id starts with this (at least 8 hex digits) have sessions.
    ApproveAppliance(String),
    /// Refuse the appliance whose id starts with this from now on; its connection ends at once.
    RevokeAppliance(String),
    /// The servers of this server's pool (`wradm server list`).
    PoolServers,
    /// Stop (`drain: true`) or resume placing new sessions on the pool server `server`; its
    /// existing sessions stay (`wradm server drain|undrain NAME`).
    Drain {
        server: String,
        drain: bool,
    },
}

/// One server of the pool as the asking server sees it (`wradm server list`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolServerInfo {
    pub name: String,
    /// `HOST:PORT` of its QUIC endpoint.
    pub address: String,
    /// SHA-256 of its key (64 hex digits).
    pub fingerprint: String,
    /// How many sessions it is meant to hold (config `[pool] capacity`).
    pub capacity: u32,
    /// Live load it last reported: sessions it runs, CPU busy in thousandths, memory used and
    /// total in bytes.
    pub sessions: u32,
    pub cpu_permille: u32,
    pub memory_used: u64,
    pub memory_total: u64,
    /// No new sessions are placed on it.
    pub draining: bool,
    /// The server answering the request.
    pub this_server: bool,
}

/// A session's use of its cgroup. `None`: not known (no cgroup, or no such controller).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionUsage {
    /// CPU time of all its processes, in microseconds.
    pub cpu_usec: Option<u64>,
    /// Memory in bytes: now, the most it has used, and its limit.
    pub memory_current: Option<u64>,
    pub memory_peak: Option<u64>,
    pub memory_max: Option<u64>,
}

/// Daemon → `wradm`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminReply {
    Sessions(Vec<SessionInfo>),
    Session(SessionInfo),
    Appliances(Vec<ApplianceInfo>),
    KnownAppliances(Vec<KnownApplianceInfo>),
    /// The appliance as it is after an approve or revoke.
    KnownAppliance(KnownApplianceInfo),
    Done,
    Error(String),
    Usage(SessionUsage),
    PoolServers(Vec<PoolServerInfo>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing;

    #[test]
    fn frames_relay_without_copy_per_byte_encoding() {
        let msg = FromSession::Frame {
            appliance: 3,
            seq: 9,
            bytes: vec![7; 100_000],
            encode_us: 1234,
        };
        let bytes = framing::encode(&msg).unwrap();
        // serde_bytes: one length and the raw bytes, not a sequence of 100 000 elements.
        assert!(bytes.len() < 100_000 + 32);
        let mut reader = crate::FrameReader::new(1 << 20);
        reader.push(&bytes);
        assert_eq!(reader.next::<FromSession>().unwrap(), Some(msg));
    }

    #[test]
    fn scale_choices_parse_and_round() {
        assert_eq!("auto".parse(), Ok(ScaleChoice::Auto));
        assert_eq!(" Auto ".parse(), Ok(ScaleChoice::Auto));
        assert_eq!("1.5".parse(), Ok(ScaleChoice::Fixed(1.5)));
        assert_eq!("2".parse(), Ok(ScaleChoice::Fixed(2.0)));
        // 1.33 is not a multiple of 1/120; the nearest one is 160/120.
        assert_eq!("1.33".parse(), Ok(ScaleChoice::Fixed(160.0 / 120.0)));
        for bad in ["0.1", "5", "big", "", "NaN", "inf"] {
            assert!(bad.parse::<ScaleChoice>().is_err(), "{bad:?} accepted");
        }
        assert_eq!(ScaleChoice::Fixed(1.25).to_string(), "1.25");
        assert_eq!(ScaleChoice::Auto.fixed_value(), None);
    }

    fn sample_session() -> SessionInfo {
        SessionInfo {
            id: 0xab,
            kind: SessionKind::Shared,
            state: SessionState::Active,
            user: None,
            tokens: vec!["t".into()],
            appliance: Some(3),
            pid: Some(42),
            wayland_display: None,
            created_ms: 1,
            changed_ms: 2,
        }
    }

    #[test]
    fn admin_json_has_hex_ids_and_words_while_postcard_keeps_numbers() {
        let info = sample_session();
        let json = serde_json::to_value(&info).unwrap();
        assert_eq!(json["id"], "00000000000000ab");
        assert_eq!(json["kind"], "shared");
        assert_eq!(json["state"], "active");
        assert_eq!(serde_json::from_value::<SessionInfo>(json).unwrap(), info);
        // postcard: the id is still a varint (0xab → ab 01), then the variant indexes.
        let bytes = postcard::to_stdvec(&info).unwrap();
        assert_eq!(&bytes[..4], &[0xab, 0x01, 2, 1]);
        assert_eq!(postcard::from_bytes::<SessionInfo>(&bytes).unwrap(), info);

        let appliance = ApplianceInfo {
            id: 3,
            remote: "r".into(),
            client_name: "c".into(),
            token: None,
            session: Some(0xab),
            screen: (1, 2),
            connected_ms: 0,
        };
        let json = serde_json::to_value(&appliance).unwrap();
        assert_eq!(json["session"], "00000000000000ab");
        assert_eq!(
            serde_json::from_value::<ApplianceInfo>(json).unwrap(),
            appliance
        );
        let none = ApplianceInfo {
            session: None,
            ..appliance
        };
        let json = serde_json::to_value(&none).unwrap();
        assert!(json["session"].is_null());
        let bytes = postcard::to_stdvec(&none).unwrap();
        assert_eq!(postcard::from_bytes::<ApplianceInfo>(&bytes).unwrap(), none);
    }

    #[test]
    fn session_ids_print_and_parse() {
        assert_eq!(session_id_string(0xab), "00000000000000ab");
        assert_eq!(parse_session_id("00000000000000ab"), Some(0xab));
        assert_eq!(parse_session_id("zz"), None);
    }
}
