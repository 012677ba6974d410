//! What the launcher does for the daemon: start greeters and user sessions, stop sessions,
//! report them ending, and decide logins. Shared by the daemon link (one thread, messages in
//! order), the login server (a thread per greeter connection) and one watcher thread per
//! running session.

use std::{
    collections::HashMap,
    ffi::OsString,
    fs,
    io::{self, Read},
    path::{Path, PathBuf},
    process::Child,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use nix::sys::signal::Signal;
use tracing::Span;
use wayray_protocol::sessions::{
    session_id_string, FromLauncher, LoginReply, SessionId, ToLauncher,
};

use crate::{
    config::{Config, DEFAULT_PATH, GREETER_GRACE, STOP_GRACE, USER_RUNTIME_BASE},
    daemon_link::DaemonLink,
    lock, pam_auth,
    process::{self, Launch},
    session_toml,
    tickets::{Claim, Tickets, UnlockClaim, UnlockTickets},
    users::{self, Account},
};

/// What a greeter shows after a failed login: never which of the two was wrong.
pub const WRONG_CREDENTIALS: &str = "Wrong user name or password";
const STALE_TICKET: &str = "This login screen has expired; reconnect to get a new one";
const BUSY_TICKET: &str = "A login is already being checked; wait a moment";
const DAEMON_AWAY: &str = "The server is restarting; try again in a moment";
/// What a locker shows after a wrong password.
pub const WRONG_PASSWORD: &str = "Wrong password";
const STALE_UNLOCK_TICKET: &str = "This lock screen does not belong to a running session";
/// Used when the configured greeter user does not exist.
const FALLBACK_GREETER_USER: &str = "nobody";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Greeter,
    User,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Greeter => "greeter",
            Kind::User => "user",
        }
    }
}

#[derive(Debug)]
struct Running {
    /// The compositor's pid, which is also its process group's id.
    pid: u32,
    /// A stop was asked for; a second one adds nothing.
    stopping: bool,
}

pub struct Launcher {
    config: Config,
    link: Arc<DaemonLink>,
    /// Sessions whose compositor has not been reaped yet. An entry is removed only while the
    /// exited compositor is still a zombie, so a pid found here is never a recycled one.
    sessions: Mutex<HashMap<SessionId, Running>>,
    tickets: Mutex<Tickets>,
    /// Users' sessions' `WAYRAY_UNLOCK_TICKET`s, for their lockers.
    unlock_tickets: Mutex<UnlockTickets>,
    greeter_fallback_warned: AtomicBool,
}

impl Launcher {
    pub fn new(config: Config, link: Arc<DaemonLink>) -> Self {
        Launcher {
            config,
            link,
            sessions: Mutex::new(HashMap::new()),
            tickets: Mutex::new(Tickets::default()),
            unlock_tickets: Mutex::new(UnlockTickets::default()),
            greeter_fallback_warned: AtomicBool::new(false),
        }
    }

    /// One message from the daemon. Runs on the daemon link's thread, so messages are handled
    /// in the order they came and a session's `Started` always precedes its `Exited`.
    pub fn handle(self: &Arc<Self>, msg: ToLauncher) {
        match msg {
            ToLauncher::GreeterRequested {
                token,
                session,
                secret,
            } => {
                let span = session_span(session, Kind::Greeter, None);
                let started = span.in_scope(|| self.start_greeter(session, &token, &secret));
                self.report_start(session, Kind::Greeter, started, span);
            }
            ToLauncher::StartUserSession {
                greeter,
                token: _,
                user,
                session,
                secret,
            } => {
                let span = session_span(session, Kind::User, Some(&user));
                let started = span.in_scope(|| self.start_user(session, &user, &secret));
                let ok = started.is_ok();
                self.report_start(session, Kind::User, started, span);
                if ok {
                    session_span(greeter, Kind::Greeter, None)
                        .in_scope(|| self.stop(greeter, GREETER_GRACE, "its user's session is up"));
                }
            }
            ToLauncher::Stop { session } => {
                // The kind is not known here and does not matter for stopping.
                let span = tracing::info_span!("session", id = %session_id_string(session));
                span.in_scope(|| self.stop(session, STOP_GRACE, "the daemon asked"));
            }
        }
    }

    fn report_start(
        self: &Arc<Self>,
        session: SessionId,
        kind: Kind,
        started: Result<Child, String>,
        span: Span,
    ) {
        match started {
            Ok(child) => {
                let pid = child.id();
                span.in_scope(|| tracing::info!(pid, "session started"));
                self.link
                    .send_or_keep(FromLauncher::Started { session, pid });
                self.watch(session, kind, child, span);
            }
            Err(reason) => {
                span.in_scope(|| tracing::warn!(%reason, "session not started"));
                self.link
                    .send_or_keep(FromLauncher::Failed { session, reason });
            }
        }
    }

    fn start_greeter(&self, id: SessionId, token: &str, secret: &str) -> Result<Child, String> {
        // Checked first: the cleanup below must never touch a running greeter's directory.
        self.check_not_running(id)?;
        let account = self.greeter_account()?;
        let wrsrvd = self.config.wrsrvd_program()?;
        let wrlogin = self.config.wrlogin_program()?;
        let runtime = self.config.greeter_runtime_dir(id);
        // A directory left by an earlier greeter with this id (a crash of ours) is not reused.
        remove_dir_if_present(&runtime)
            .map_err(|e| format!("removing the stale {}: {e}", runtime.display()))?;
        users::ensure_private_dir(&runtime, &account)
            .map_err(|e| format!("creating the greeter's runtime directory: {e}"))?;
        let ticket = random_hex().map_err(|e| format!("no login ticket: {e}"))?;

        let mut env = session_env(&account, &runtime, secret);
        env.push((
            "WAYRAY_LOGIN_SOCKET".into(),
            self.config.login_socket().into(),
        ));
        env.push(("WAYRAY_LOGIN_TICKET".into(), ticket.clone().into()));
        let mut args = process::session_args(
            &session_id_string(id),
            &self.config.sessions_socket(),
            &[],
            &[process::shell_quote(&wrlogin.to_string_lossy())],
        );
        // A login form has nothing to copy, and a password must not be pasteable elsewhere.
        args.push("--no-clipboard".into());
        let launch = Launch {
            program: wrsrvd,
            args,
            env,
            cwd: PathBuf::from("/"),
            account,
            log: self.config.session_log(id),
        };
        // Issued before the start so a fast greeter never meets an unknown ticket.
        lock(&self.tickets).issue(ticket.clone(), id, token.to_string());
        self.launch(id, &launch).inspect_err(|_| {
            lock(&self.tickets).spend(&ticket);
            let _ = remove_dir_if_present(&runtime);
        })
    }

    fn check_not_running(&self, id: SessionId) -> Result<(), String> {
        match lock(&self.sessions).get(&id) {
            Some(running) => Err(format!("session is already running (pid {})", running.pid)),
            None => Ok(()),
        }
    }

    fn greeter_account(&self) -> Result<Account, String> {
        let name = &self.config.greeter_user;
        if let Some(account) = users::lookup(name)? {
            return Ok(account);
        }
        if !self.greeter_fallback_warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "greeter user {name:?} does not exist; greeters run as {FALLBACK_GREETER_USER:?} \
                 (create it with `useradd --system {name}`, or pass --greeter-user)"
            );
        }
        users::lookup(FALLBACK_GREETER_USER)?.ok_or_else(|| {
            format!("neither the greeter user {name:?} nor {FALLBACK_GREETER_USER:?} exists")
        })
    }

    fn start_user(&self, id: SessionId, user: &str, secret: &str) -> Result<Child, String> {
        self.check_not_running(id)?;
        let account = users::lookup(user)?.ok_or_else(|| format!("no user named {user:?}"))?;
        let wrsrvd = self.config.wrsrvd_program()?;
        let runtime = Path::new(USER_RUNTIME_BASE).join(account.uid.to_string());
        users::ensure_private_dir(&runtime, &account)
            .map_err(|e| format!("runtime directory {}: {e}", runtime.display()))?;

        let config = self.user_session_toml(&account);
        let (mut flags, spawn) = (config.session_flags(), config.spawn_commands());
        tracing::info!(?flags, ?spawn, scale = ?config.scale, "starting the user's session");
        // The session's locker (wrlogin --lock, started when a re-attach is locked) checks
        // this user's password here with the unlock ticket.
        match self.config.wrlogin_program() {
            Ok(wrlogin) => {
                flags.push("--locker".into());
                flags.push(wrlogin.to_string_lossy().into_owned());
            }
            Err(err) => {
                tracing::warn!(%err, "the session's lock screen will look for wrlogin itself")
            }
        }
        let ticket = random_hex().map_err(|e| format!("no unlock ticket: {e}"))?;
        let mut env = session_env(&account, &runtime, secret);
        env.push((
            "WAYRAY_LOGIN_SOCKET".into(),
            self.config.login_socket().into(),
        ));
        env.push(("WAYRAY_UNLOCK_TICKET".into(), ticket.clone().into()));
        let launch = Launch {
            program: wrsrvd,
            args: process::session_args(
                &session_id_string(id),
                &self.config.sessions_socket(),
                &flags,
                &spawn,
            ),
            env,
            cwd: account.home.clone(),
            log: self.config.session_log(id),
            account,
        };
        lock(&self.unlock_tickets).issue(ticket, id, user.to_string());
        self.launch(id, &launch)
            .inspect_err(|_| lock(&self.unlock_tickets).forget_session(id))
    }

    /// The user's session.toml (desktop, clients, scale), read with the user's rights. A file
    /// that cannot be read or parsed means the defaults: logging in matters more.
    fn user_session_toml(&self, account: &Account) -> session_toml::SessionToml {
        let path = account.home.join(session_toml::RELATIVE_PATH);
        let text = users::read_as(account, &path, session_toml::MAX_LEN).unwrap_or_else(|err| {
            tracing::warn!(path = %path.display(), %err, "cannot read session.toml; using the defaults");
            None
        });
        let (config, warnings) = session_toml::resolve(text.as_deref());
        for warning in warnings {
            tracing::warn!(path = %path.display(), "session.toml: {warning}");
        }
        config
    }

    fn launch(&self, id: SessionId, launch: &Launch) -> Result<Child, String> {
        let mut sessions = lock(&self.sessions);
        let child = process::spawn(launch)
            .map_err(|e| format!("starting {}: {e}", launch.program.display()))?;
        sessions.insert(
            id,
            Running {
                pid: child.id(),
                stopping: false,
            },
        );
        Ok(child)
    }

    /// Waits for the session's compositor on a thread of its own and reports its end.
    fn watch(self: &Arc<Self>, id: SessionId, kind: Kind, child: Child, span: Span) {
        let this = Arc::clone(self);
        // The child moves into the thread; if the thread cannot start, it comes back through
        // this slot so it is still stopped and reaped here.
        let slot = Arc::new(Mutex::new(Some(child)));
        let thread_slot = Arc::clone(&slot);
        let spawned = std::thread::Builder::new()
            .name(format!("session-{}", session_id_string(id)))
            .spawn(move || {
                let _entered = span.enter();
                if let Some(child) = lock(&thread_slot).take() {
                    this.wait_for_exit(id, kind, child);
                }
            });
        if let Err(err) = spawned {
            tracing::error!(%err, "no thread to watch the session; killing it");
            if let Some(child) = lock(&slot).take() {
                let _ = process::signal_session(child.id(), Signal::SIGKILL);
                self.wait_for_exit(id, kind, child);
            }
        }
    }

    fn wait_for_exit(&self, id: SessionId, kind: Kind, mut child: Child) {
        if let Err(err) = process::wait_exited_unreaped(&child) {
            tracing::warn!(%err, "waiting for the session failed");
        }
        let status = {
            let mut sessions = lock(&self.sessions);
            sessions.remove(&id);
            // Clients the compositor left behind in its process group end with it. The leader
            // is still a zombie here, so the group id cannot have been reused.
            if let Err(err) = process::signal_session(child.id(), Signal::SIGTERM) {
                tracing::debug!(%err, "signalling the session's leftovers");
            }
            child.wait()
        };
        let status = match status {
            Ok(status) => process::describe_exit(status),
            Err(err) => format!("unknown ({err})"),
        };
        tracing::info!(%status, "session exited");
        match kind {
            Kind::Greeter => self.greeter_gone(id),
            Kind::User => lock(&self.unlock_tickets).forget_session(id),
        }
        self.link.send_or_keep(FromLauncher::Exited {
            session: id,
            status,
        });
    }

    fn greeter_gone(&self, id: SessionId) {
        lock(&self.tickets).forget_greeter(id);
        let runtime = self.config.greeter_runtime_dir(id);
        if let Err(err) = remove_dir_if_present(&runtime) {
            tracing::warn!(dir = %runtime.display(), %err, "cannot remove the greeter's runtime directory");
        }
    }

    /// SIGTERM to the session's process group now, SIGKILL after `grace` if it is still there.
    fn stop(self: &Arc<Self>, id: SessionId, grace: Duration, why: &str) {
        let pid = {
            let mut sessions = lock(&self.sessions);
            let Some(running) = sessions.get_mut(&id) else {
                tracing::info!(why, "asked to stop a session that is not running here");
                return;
            };
            if running.stopping {
                tracing::debug!(why, "already stopping");
                return;
            }
            running.stopping = true;
            if let Err(err) = process::signal_session(running.pid, Signal::SIGTERM) {
                tracing::warn!(%err, "cannot signal the session");
            }
            running.pid
        };
        tracing::info!(why, pid, "stopping the session (SIGKILL in {grace:?})");
        let this = Arc::clone(self);
        let span = Span::current();
        let killer = std::thread::Builder::new()
            .name(format!("stop-{}", session_id_string(id)))
            .spawn(move || {
                std::thread::sleep(grace);
                let _entered = span.enter();
                let sessions = lock(&this.sessions);
                if sessions.get(&id).is_some_and(|r| r.pid == pid) {
                    tracing::warn!("session ignored SIGTERM; sending SIGKILL");
                    if let Err(err) = process::signal_session(pid, Signal::SIGKILL) {
                        tracing::warn!(%err, "cannot kill the session");
                    }
                }
            });
        if let Err(err) = killer {
            tracing::error!(%err, "no thread for the SIGKILL deadline; the session only got SIGTERM");
        }
    }

    /// A greeter's login attempt. Blocks for as long as PAM takes (seconds when it fails):
    /// call it from the greeter connection's own thread.
    pub fn login(&self, ticket: &str, username: &str, password: &str) -> LoginReply {
        let (greeter, token) = match lock(&self.tickets).claim(ticket) {
            Claim::Unknown => {
                tracing::info!(user = ?username, "login with an unknown or used ticket refused");
                return refused(STALE_TICKET);
            }
            Claim::Busy => return refused(BUSY_TICKET),
            Claim::Granted { greeter, token } => (greeter, token),
        };
        let span =
            tracing::info_span!("login", greeter = %session_id_string(greeter), user = ?username);
        let _entered = span.enter();
        match pam_auth::authenticate(&self.config.pam_service, username, password) {
            Err(reason) => {
                tracing::warn!(%reason, "login failed");
                lock(&self.tickets).release(ticket);
                let report = FromLauncher::AuthFailed {
                    greeter,
                    token,
                    user: username.to_string(),
                    reason,
                };
                if self.link.send(&report).is_err() {
                    tracing::warn!("daemon away; the failed login is only in this log");
                }
                refused(WRONG_CREDENTIALS)
            }
            Ok(user) => {
                let Some(spent) = lock(&self.tickets).spend(ticket) else {
                    tracing::info!("greeter ended during the login; not reported");
                    return refused(STALE_TICKET);
                };
                let report = FromLauncher::Authenticated {
                    greeter,
                    token,
                    user: user.clone(),
                };
                if self.link.send(&report).is_err() {
                    tracing::warn!("daemon away; the login is not accepted");
                    if lock(&self.sessions).contains_key(&greeter) {
                        lock(&self.tickets).restore(ticket.to_string(), spent);
                    }
                    return refused(DAEMON_AWAY);
                }
                tracing::info!(%user, "login accepted");
                LoginReply::Accepted
            }
        }
    }
}

impl Launcher {
    /// A locker's unlock: `password` is checked for the user the ticket names (never another).
    /// Blocks for as long as PAM takes: call it from the connection's own thread.
    pub fn unlock(&self, ticket: &str, password: &str) -> LoginReply {
        let (session, user) = match lock(&self.unlock_tickets).claim(ticket) {
            UnlockClaim::Unknown => {
                tracing::info!("unlock with an unknown ticket refused");
                return refused(STALE_UNLOCK_TICKET);
            }
            UnlockClaim::Busy => return refused(BUSY_TICKET),
            UnlockClaim::Granted { session, user } => (session, user),
        };
        let span = tracing::info_span!("unlock", session = %session_id_string(session), %user);
        let _entered = span.enter();
        let result = pam_auth::authenticate(&self.config.pam_service, &user, password).and_then(
            |pam_user| {
                // A PAM module mapping the name to another account does not unlock this one.
                if pam_user == user {
                    Ok(())
                } else {
                    Err(format!(
                        "PAM authenticated {pam_user:?}, not the session's user"
                    ))
                }
            },
        );
        lock(&self.unlock_tickets).release(ticket);
        match result {
            Err(reason) => {
                tracing::warn!(%reason, "unlock failed");
                let report = FromLauncher::UnlockFailed {
                    session,
                    user,
                    reason,
                };
                if self.link.send(&report).is_err() {
                    tracing::warn!("daemon away; the failed unlock is only in this log");
                }
                refused(WRONG_PASSWORD)
            }
            Ok(()) => {
                tracing::info!("unlock accepted");
                if self
                    .link
                    .send(&FromLauncher::Unlocked { session, user })
                    .is_err()
                {
                    tracing::warn!("daemon away; the unlock is only in this log");
                }
                LoginReply::Accepted
            }
        }
    }
}

fn refused(message: &str) -> LoginReply {
    LoginReply::Refused {
        message: message.to_string(),
    }
}

fn session_span(id: SessionId, kind: Kind, user: Option<&str>) -> Span {
    tracing::info_span!("session", id = %session_id_string(id), kind = kind.as_str(), user)
}

/// A session's whole environment: who it runs as and where its runtime files go, nothing
/// inherited from us but the language.
fn session_env(account: &Account, runtime: &Path, secret: &str) -> Vec<(String, OsString)> {
    let shell = if account.shell.as_os_str().is_empty() {
        PathBuf::from("/bin/sh")
    } else {
        account.shell.clone()
    };
    let mut env: Vec<(String, OsString)> = vec![
        ("HOME".into(), account.home.clone().into()),
        ("USER".into(), account.name.clone().into()),
        ("LOGNAME".into(), account.name.clone().into()),
        ("SHELL".into(), shell.into()),
        ("PATH".into(), DEFAULT_PATH.into()),
        ("XDG_RUNTIME_DIR".into(), runtime.into()),
        ("XDG_SESSION_TYPE".into(), "wayland".into()),
        ("WAYRAY_SESSION_SECRET".into(), secret.into()),
    ];
    if let Some(lang) = std::env::var_os("LANG") {
        env.push(("LANG".into(), lang));
    }
    env
}

/// 32 hex digits from the kernel's random source.
fn random_hex() -> io::Result<String> {
    let mut bytes = [0u8; 16];
    fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn remove_dir_if_present(dir: &Path) -> io::Result<()> {
    match fs::remove_dir_all(dir) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::unistd::{Gid, Uid};

    #[test]
    fn tickets_are_fresh_hex() {
        let a = random_hex().unwrap_or_default();
        let b = random_hex().unwrap_or_default();
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn session_environment_is_clean() {
        let account = Account {
            name: "alice".into(),
            uid: Uid::from_raw(1000),
            gid: Gid::from_raw(1000),
            groups: vec![Gid::from_raw(1000)],
            home: "/home/alice".into(),
            shell: "".into(),
        };
        let env = session_env(&account, Path::new("/run/user/1000"), "s3cret");
        let get = |k: &str| {
            env.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.to_string_lossy().into_owned())
        };
        assert_eq!(get("HOME").as_deref(), Some("/home/alice"));
        assert_eq!(get("USER").as_deref(), Some("alice"));
        assert_eq!(get("LOGNAME").as_deref(), Some("alice"));
        assert_eq!(get("SHELL").as_deref(), Some("/bin/sh"));
        assert_eq!(get("XDG_RUNTIME_DIR").as_deref(), Some("/run/user/1000"));
        assert_eq!(get("XDG_SESSION_TYPE").as_deref(), Some("wayland"));
        assert_eq!(get("WAYRAY_SESSION_SECRET").as_deref(), Some("s3cret"));
        assert_eq!(get("PATH").as_deref(), Some(DEFAULT_PATH));
        assert!(env
            .iter()
            .all(|(k, _)| k != "RUST_LOG" && k != "WAYRAY_RUN_DIR"));
    }
}
