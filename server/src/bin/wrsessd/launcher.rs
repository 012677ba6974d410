//! What the launcher does for the daemon: start greeters and user sessions, stop sessions,
//! report them ending, and decide logins. Shared by the daemon link (one thread, messages in
//! order), the login server (a thread per greeter connection) and one watcher thread per
//! running session.

use std::{
    collections::HashMap,
    ffi::OsString,
    fs,
    io::{self, Read},
    os::fd::AsRawFd,
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
    cgroup::{self, Backend, Group, Limits},
    config::{Config, DEFAULT_PATH, GREETER_GRACE, STOP_GRACE, USER_RUNTIME_BASE},
    daemon_link::DaemonLink,
    launched::{Launched, Record},
    lock, pam_auth, pam_helper,
    process::{self, Launch},
    session_toml,
    tickets::{Claim, Tickets, UnlockClaim, UnlockTickets},
    users::{self, Account},
};

/// How often session cgroups are checked for OOM kills.
const OOM_POLL: Duration = Duration::from_millis(200);
/// How long a session's leftover processes get after SIGTERM before SIGKILL, at its end.
const LEFTOVER_GRACE: Duration = Duration::from_secs(1);

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

    fn parse(s: &str) -> Option<Kind> {
        match s {
            "greeter" => Some(Kind::Greeter),
            "user" => Some(Kind::User),
            _ => None,
        }
    }
}

struct Running {
    /// The compositor's pid, which is also its process group's id.
    pid: u32,
    /// A stop was asked for; a second one adds nothing.
    stopping: bool,
    /// The session's cgroup; `None` when the machine has no usable hierarchy.
    group: Option<Group>,
    limits: Limits,
    /// Why the launcher ended the session by itself ("memory limit of 512 MiB exceeded").
    ended_because: Option<String>,
}

/// The process a watcher waits for: our own child, or one adopted from an earlier launcher
/// (not our child, so only its pidfd says when it exits).
enum Watched {
    /// Our child: the compositor itself (greeters), or the PAM session helper that waits for
    /// it (user sessions); `pid` is the compositor's.
    Child { child: Child, pid: u32 },
    Adopted {
        pid: u32,
        pidfd: std::os::fd::OwnedFd,
    },
}

impl Watched {
    fn pid(&self) -> u32 {
        match self {
            Watched::Child { pid, .. } => *pid,
            Watched::Adopted { pid, .. } => *pid,
        }
    }
}

/// How `launch` starts the compositor.
enum Spawn {
    /// Ourselves (greeters: no PAM session).
    Direct(Launch),
    /// Through the PAM session helper (users' sessions).
    PamHelper(pam_helper::Request),
}

/// What `launch` made.
struct StartedSession {
    child: Child,
    /// The compositor's pid (the child is the PAM helper for user sessions).
    pid: u32,
    /// Why the session runs without its cgroup limits, if it does.
    unconfined: Option<String>,
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
    /// The cgroup implementation; `Err` says why sessions run without limits.
    cgroups: Result<Box<dyn Backend>, String>,
    /// The records a restarted launcher adopts sessions from.
    launched: Launched,
}

impl Launcher {
    pub fn new(config: Config, link: Arc<DaemonLink>) -> Self {
        let cgroups = cgroup::detect().map_err(|e| e.to_string());
        match &cgroups {
            Ok(backend) => tracing::info!(
                version = backend.version(),
                parent = %config.file.cgroup_parent,
                user = ?config.file.limits.user,
                greeter = ?config.file.limits.greeter,
                "sessions run in cgroups of their own"
            ),
            Err(err) => tracing::error!(
                %err,
                "sessions will run WITHOUT memory, CPU and process limits"
            ),
        }
        Launcher {
            launched: Launched::new(config.launched_dir()),
            config,
            link,
            sessions: Mutex::new(HashMap::new()),
            tickets: Mutex::new(Tickets::default()),
            unlock_tickets: Mutex::new(UnlockTickets::default()),
            greeter_fallback_warned: AtomicBool::new(false),
            cgroups,
        }
    }

    fn limits_for(&self, kind: Kind) -> Limits {
        match kind {
            Kind::Greeter => self.config.file.limits.greeter,
            Kind::User => self.config.file.limits.user,
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
                notice,
            } => {
                let span = session_span(session, Kind::Greeter, None);
                let started = span
                    .in_scope(|| self.start_greeter(session, &token, &secret, notice.as_deref()));
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
        started: Result<StartedSession, String>,
        span: Span,
    ) {
        match started {
            Ok(StartedSession {
                child,
                pid,
                unconfined,
            }) => {
                span.in_scope(|| tracing::info!(pid, "session started"));
                self.link
                    .send_or_keep(FromLauncher::Started { session, pid });
                if let Some(reason) = unconfined {
                    self.link
                        .send_or_keep(FromLauncher::Unconfined { session, reason });
                }
                self.watch(session, kind, Watched::Child { child, pid }, span);
            }
            Err(reason) => {
                span.in_scope(|| tracing::warn!(%reason, "session not started"));
                self.link
                    .send_or_keep(FromLauncher::Failed { session, reason });
            }
        }
    }

    fn start_greeter(
        &self,
        id: SessionId,
        token: &str,
        secret: &str,
        notice: Option<&str>,
    ) -> Result<StartedSession, String> {
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
        if let Some(notice) = notice {
            env.push(("WAYRAY_LOGIN_NOTICE".into(), notice.into()));
        }
        let mut args = process::session_args(
            &session_id_string(id),
            &self.config.sessions_socket(),
            &[],
            &[process::shell_quote(&wrlogin.to_string_lossy())],
        );
        // A login form has nothing to copy, and a password must not be pasteable elsewhere.
        args.push("--no-clipboard".into());
        // A login form plays no sound and records none: no audio server for greeters.
        args.push("--no-audio".into());
        let launch = Launch {
            program: wrsrvd,
            args,
            env,
            cwd: PathBuf::from("/"),
            account,
            log: self.config.session_log(id),
            cgroup_join: Vec::new(),
        };
        // Issued before the start so a fast greeter never meets an unknown ticket.
        lock(&self.tickets).issue(ticket.clone(), id, token.to_string());
        let record = Record {
            id: session_id_string(id),
            kind: Kind::Greeter.as_str().into(),
            pid: 0,
            start_time: 0,
            user: None,
            token: Some(token.to_string()),
            ticket: Some(ticket.clone()),
            limits: None,
        };
        self.launch(id, Kind::Greeter, Spawn::Direct(launch), record)
            .inspect_err(|_| {
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

    fn start_user(
        &self,
        id: SessionId,
        user: &str,
        secret: &str,
    ) -> Result<StartedSession, String> {
        self.check_not_running(id)?;
        let account = users::lookup(user)?.ok_or_else(|| format!("no user named {user:?}"))?;
        let wrsrvd = self.config.wrsrvd_program()?;
        let runtime = Path::new(USER_RUNTIME_BASE).join(account.uid.to_string());
        users::ensure_private_dir(&runtime, &account)
            .map_err(|e| format!("runtime directory {}: {e}", runtime.display()))?;

        let config = self.user_session_toml(&account);
        let (mut flags, spawn) = (config.session_flags(), config.spawn_commands());
        if !self.config.file.audio {
            flags.push("--no-audio".into());
        }
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
        // The PAM session (pam_limits, pam_env…) is opened by a helper process that starts
        // the compositor and holds the session until it ends: see pam_helper.
        let request = pam_helper::Request {
            service: self.config.pam_service.clone(),
            user: account.name.clone(),
            program: wrsrvd,
            args: process::session_args(
                &session_id_string(id),
                &self.config.sessions_socket(),
                &flags,
                &spawn,
            )
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
            env: env
                .into_iter()
                .map(|(k, v)| (k, v.to_string_lossy().into_owned()))
                .collect(),
            cwd: account.home.clone(),
            log: self.config.session_log(id),
            cgroup_procs: Vec::new(),
        };
        // The unlock ticket is kept with the record, so a restarted wrsessd that adopts the
        // session still answers its locker.
        let record = Record {
            id: session_id_string(id),
            kind: Kind::User.as_str().into(),
            pid: 0,
            start_time: 0,
            user: Some(user.to_string()),
            token: None,
            ticket: Some(ticket.clone()),
            limits: None,
        };
        lock(&self.unlock_tickets).issue(ticket, id, user.to_string());
        self.launch(id, Kind::User, Spawn::PamHelper(request), record)
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

    /// Starts the session's compositor inside a fresh cgroup with the limits of its kind, and
    /// notes it in its record. Without a usable cgroup hierarchy the session still starts,
    /// and the reason comes back in `unconfined` (logged here, audited by the daemon).
    fn launch(
        &self,
        id: SessionId,
        kind: Kind,
        spawn: Spawn,
        mut record: Record,
    ) -> Result<StartedSession, String> {
        let limits = self.limits_for(kind);
        let name = session_id_string(id);
        let (group, unconfined) = match &self.cgroups {
            Ok(backend) => match backend.create(&self.config.file.cgroup_parent, &name, &limits) {
                Ok(group) => (Some(group), None),
                Err(err) => (
                    None,
                    Some(format!("cannot create the session's cgroup: {err}")),
                ),
            },
            Err(err) => (None, Some(err.clone())),
        };
        if let Some(reason) = &unconfined {
            tracing::error!(%reason, "the session runs without memory, CPU and process limits");
        }
        let mut sessions = lock(&self.sessions);
        let started = match spawn {
            Spawn::Direct(mut launch) => match group.as_ref().map(Group::join_files).transpose() {
                Err(err) => Err(format!("cannot join the session's cgroup: {err}")),
                Ok(files) => {
                    let files = files.unwrap_or_default();
                    launch.cgroup_join = files.iter().map(|f| f.as_raw_fd()).collect();
                    process::spawn(&launch)
                        .map(|child| {
                            let pid = child.id();
                            (child, pid)
                        })
                        .map_err(|e| format!("starting {}: {e}", launch.program.display()))
                }
            },
            Spawn::PamHelper(mut request) => {
                request.cgroup_procs = group
                    .iter()
                    .flat_map(|g| g.dirs.iter().map(|d| d.join("cgroup.procs")))
                    .collect();
                pam_helper::start(&request)
            }
        };
        let (child, pid) = match started {
            Ok(started) => started,
            Err(err) => {
                drop(sessions);
                remove_group(group.as_ref());
                return Err(err);
            }
        };
        record.pid = pid;
        record.start_time = process::start_time(pid).unwrap_or(0);
        record.limits = group.is_some().then_some(limits);
        if let Err(err) = self.launched.save(&record) {
            tracing::warn!(%err, "cannot note the session; a restarted launcher will not find it");
        }
        tracing::info!(
            pid,
            cgroup = ?group.as_ref().and_then(|g| g.dirs.first()),
            memory_max_mib = limits.memory_max_mib,
            cpu_weight = limits.cpu_weight,
            tasks_max = limits.tasks_max,
            "session limits"
        );
        sessions.insert(
            id,
            Running {
                pid,
                stopping: false,
                group,
                limits,
                ended_because: None,
            },
        );
        Ok(StartedSession {
            child,
            pid,
            unconfined,
        })
    }

    /// Takes over the sessions an earlier launcher noted and that still run: they are
    /// watched (exit, OOM) and stopped as if we had started them. Those that ended meanwhile
    /// are reported to the daemon as ended.
    pub fn adopt_previous(self: &Arc<Self>) {
        for record in self.launched.load_all() {
            let (Some(id), Some(kind)) = (record.session(), Kind::parse(&record.kind)) else {
                tracing::warn!(?record, "dropping a session record that makes no sense");
                continue;
            };
            let span = session_span(id, kind, record.user.as_deref());
            let _entered = span.enter();
            let alive = process::start_time(record.pid) == Some(record.start_time);
            let pidfd = if alive {
                process::pidfd_open(record.pid).map_err(|e| e.to_string())
            } else {
                Err("not running".to_string())
            };
            let group = self
                .cgroups
                .as_ref()
                .ok()
                .and_then(|backend| backend.group_of(record.pid).ok())
                .filter(|g| g.name() == Some(record.id.as_str()));
            let pidfd = match pidfd {
                Ok(pidfd) => pidfd,
                Err(err) => {
                    tracing::info!(pid = record.pid, %err, "a session of the earlier launcher has ended");
                    if kind == Kind::Greeter {
                        self.greeter_gone(id);
                    }
                    self.launched.remove(id);
                    self.link.send_or_keep(FromLauncher::Exited {
                        session: id,
                        status: "ended while the session launcher was away".into(),
                    });
                    continue;
                }
            };
            match (&record.ticket, &record.token, &record.user) {
                // A greeter's login ticket.
                (Some(ticket), Some(token), _) => {
                    lock(&self.tickets).issue(ticket.clone(), id, token.clone());
                }
                // A user session's unlock ticket.
                (Some(ticket), None, Some(user)) if kind == Kind::User => {
                    lock(&self.unlock_tickets).issue(ticket.clone(), id, user.clone());
                }
                _ => {}
            }
            tracing::info!(pid = record.pid, cgroup = ?group.as_ref().and_then(|g| g.dirs.first()), "adopted a session of the earlier launcher");
            lock(&self.sessions).insert(
                id,
                Running {
                    pid: record.pid,
                    stopping: false,
                    group,
                    limits: record.limits.unwrap_or_else(|| self.limits_for(kind)),
                    ended_because: None,
                },
            );
            drop(_entered);
            self.watch(
                id,
                kind,
                Watched::Adopted {
                    pid: record.pid,
                    pidfd,
                },
                span,
            );
        }
    }

    /// Watches every session's cgroup for OOM kills on a thread of its own: a session that
    /// went over its memory limit is ended whole, and its end says why.
    pub fn start_oom_monitor(self: &Arc<Self>) {
        let Ok(_) = &self.cgroups else { return };
        let this = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("oom-monitor".into())
            .spawn(move || loop {
                std::thread::sleep(OOM_POLL);
                this.check_oom();
            });
        if let Err(err) = spawned {
            tracing::error!(%err, "no thread to watch for sessions over their memory limit");
        }
    }

    fn check_oom(&self) {
        let Ok(backend) = &self.cgroups else { return };
        let mut sessions = lock(&self.sessions);
        for (id, running) in sessions.iter_mut() {
            if running.ended_because.is_some() {
                continue;
            }
            let Some(group) = &running.group else {
                continue;
            };
            let kills = backend.oom_kills(group);
            if kills == 0 {
                continue;
            }
            let reason = if running.limits.memory_max_mib > 0 {
                format!(
                    "memory limit of {} MiB exceeded",
                    running.limits.memory_max_mib
                )
            } else {
                "out of memory".to_string()
            };
            let _entered = tracing::info_span!("session", id = %session_id_string(*id)).entered();
            tracing::warn!(%reason, oom_kills = kills, "ending the session");
            running.ended_because = Some(reason);
            running.stopping = true;
            group.signal_all(libc::SIGKILL);
            if let Err(err) = process::signal_session(running.pid, Signal::SIGKILL) {
                tracing::warn!(%err, "cannot kill the session");
            }
        }
    }

    /// Waits for the session's compositor on a thread of its own and reports its end.
    fn watch(self: &Arc<Self>, id: SessionId, kind: Kind, child: Watched, span: Span) {
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
                let _ = process::signal_session(child.pid(), Signal::SIGKILL);
                self.wait_for_exit(id, kind, child);
            }
        }
    }

    fn wait_for_exit(&self, id: SessionId, kind: Kind, watched: Watched) {
        let waited = match &watched {
            Watched::Child { child, .. } => process::wait_exited_unreaped(child),
            Watched::Adopted { pidfd, .. } => process::wait_pidfd(pidfd),
        };
        if let Err(err) = waited {
            tracing::warn!(%err, "waiting for the session failed");
        }
        let (status, running) = {
            let mut sessions = lock(&self.sessions);
            let running = sessions.remove(&id);
            // Clients the compositor left behind in its process group end with it. The leader
            // is still a zombie here (or, adopted, its pidfd pins nothing but the group is
            // empty of it), so the group id cannot have been reused.
            if let Err(err) = process::signal_session(watched.pid(), Signal::SIGTERM) {
                tracing::debug!(%err, "signalling the session's leftovers");
            }
            let status = match watched {
                Watched::Child { mut child, .. } => match child.wait() {
                    Ok(status) => process::describe_exit(status),
                    Err(err) => format!("unknown ({err})"),
                },
                Watched::Adopted { .. } => {
                    "exit status unknown (adopted after a launcher restart)".to_string()
                }
            };
            (status, running)
        };
        let status = match running.as_ref().and_then(|r| r.ended_because.as_ref()) {
            Some(reason) => format!("{reason} ({status})"),
            None => status,
        };
        if let Some(running) = running {
            self.end_session_resources(running);
        }
        self.launched.remove(id);
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

    /// What a session held beyond its process: leftover processes in its cgroup (SIGTERM,
    /// then SIGKILL), the cgroup itself, its PAM session.
    fn end_session_resources(&self, running: Running) {
        if let Some(group) = &running.group {
            if let Ok(backend) = &self.cgroups {
                let usage = backend.usage(group);
                tracing::info!(
                    cpu_ms = usage.cpu_usec.map(|u| u / 1000),
                    memory_peak_mib = usage.memory_peak.map(|b| b >> 20),
                    "session's use of its cgroup"
                );
            }
            group.signal_all(libc::SIGTERM);
            let deadline = std::time::Instant::now() + LEFTOVER_GRACE;
            while !group.pids().is_empty() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if let Err(err) = group.remove(Duration::from_secs(3)) {
                tracing::warn!(%err, "cannot remove the session's cgroup");
            }
        }
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
                if let Some(running) = sessions.get(&id).filter(|r| r.pid == pid) {
                    tracing::warn!("session ignored SIGTERM; sending SIGKILL");
                    if let Err(err) = process::signal_session(pid, Signal::SIGKILL) {
                        tracing::warn!(%err, "cannot kill the session");
                    }
                    if let Some(group) = &running.group {
                        group.signal_all(libc::SIGKILL);
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

fn remove_group(group: Option<&Group>) {
    if let Some(group) = group {
        if let Err(err) = group.remove(Duration::from_secs(1)) {
            tracing::warn!(%err, "cannot remove the session's cgroup");
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
