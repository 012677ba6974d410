//! The WayRay locker: `wrlogin --lock`, started by the session itself when it is locked with no
//! locker holding the lock (a re-attach under the `reattach` policy, or a locker that died).
//! It takes the lock over through ext-session-lock and asks for the user's password, which
//! wrsessd checks with PAM; the session's unlock ticket goes to it alone, never to other clients.
//!
//! A locker that exits while the session is still locked is started again, after a pause that
//! grows while it keeps dying young (a missing font must not become a fork loop).

use std::{
    ffi::{OsStr, OsString},
    path::{Path, PathBuf},
    process::{Child, Command},
    time::{Duration, Instant},
};

/// What the session needs to start its locker.
#[derive(Debug, Clone)]
pub struct LockerConfig {
    /// The `wrlogin` binary (run with `--lock`).
    pub program: PathBuf,
    /// `WAYRAY_UNLOCK_TICKET`: names this session and its user to wrsessd.
    pub ticket: String,
    /// wrsessd's `login.sock`.
    pub login_socket: PathBuf,
}

impl LockerConfig {
    /// The locker from the environment wrsessd started the session with (the ticket and socket,
    /// taken out of the environment so no client inherits them; a greeter session keeps its
    /// login socket for its greeter) and `program` (`--locker`),
    /// else `wrlogin` next to our own executable, else from PATH. `None` when the session was
    /// not started by wrsessd: a lock then has no locker and stays until another one unlocks.
    pub fn from_env(program: Option<PathBuf>) -> Option<Self> {
        // A greeter session has no unlock ticket; its login socket stays for its greeter.
        let ticket = std::env::var_os("WAYRAY_UNLOCK_TICKET")?;
        let socket = std::env::var_os("WAYRAY_LOGIN_SOCKET");
        // SAFETY: called before any other thread is started.
        unsafe {
            std::env::remove_var("WAYRAY_UNLOCK_TICKET");
            std::env::remove_var("WAYRAY_LOGIN_SOCKET");
        }
        let ticket = ticket.into_string().ok().filter(|t| !t.is_empty())?;
        let socket = socket?;
        let program = program.or_else(find_wrlogin);
        let Some(program) = program else {
            tracing::error!(
                "wrlogin is neither next to wrsrvd nor in PATH: a locked session cannot be unlocked"
            );
            return None;
        };
        Some(Self {
            program,
            ticket,
            login_socket: PathBuf::from(socket),
        })
    }
}

fn find_wrlogin() -> Option<PathBuf> {
    let sibling = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("wrlogin")));
    sibling.filter(|p| p.is_file()).or_else(|| {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .filter(|dir| dir.is_absolute())
            .map(|dir| dir.join("wrlogin"))
            .find(|p| p.is_file())
    })
}

/// A locker that exits sooner than this after its start counts as dying young.
const YOUNG: Duration = Duration::from_secs(5);
const FIRST_PAUSE: Duration = Duration::from_millis(500);
const MAX_PAUSE: Duration = Duration::from_secs(30);

/// A started locker: through the session's spawner (so it does not inherit the compositor's
/// seccomp filter), or our own child when there is no spawner (tests, unconfined sessions).
#[derive(Debug)]
enum LockerProcess {
    Own(Child),
    Spawned(crate::confine::spawner::Spawned),
}

impl LockerProcess {
    fn id(&self) -> u32 {
        match self {
            Self::Own(child) => child.id(),
            Self::Spawned(spawned) => spawned.pid,
        }
    }

    /// Its exit status once it exited, `None` while it runs.
    fn try_wait(&mut self) -> std::io::Result<Option<String>> {
        match self {
            Self::Own(child) => Ok(child.try_wait()?.map(|s| s.to_string())),
            Self::Spawned(spawned) => match spawned.exit.try_recv() {
                Ok(status) => Ok(Some(status)),
                Err(std::sync::mpsc::TryRecvError::Empty) => Ok(None),
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    Ok(Some("lost: the spawner exited".into()))
                }
            },
        }
    }
}

/// The running locker process, if any, and when the next one may start.
#[derive(Debug)]
pub struct Locker {
    config: Option<LockerConfig>,
    child: Option<(LockerProcess, Instant)>,
    pause: Duration,
    next_start: Option<Instant>,
    warned: bool,
}

impl Locker {
    pub fn new(config: Option<LockerConfig>) -> Self {
        Self {
            config,
            child: None,
            pause: FIRST_PAUSE,
            next_start: None,
            warned: false,
        }
    }

    /// A locker process was started and not reaped yet.
    pub fn has_child(&self) -> bool {
        self.child.is_some()
    }

    /// Reaps a locker that exited; when `wanted` (locked, no locker holds the lock) and none
    /// runs, starts one (at once the first time, after a growing pause if it keeps dying).
    pub fn poll(&mut self, wanted: bool, socket: &OsStr, env: &[(String, OsString)]) {
        if let Some((child, started)) = &mut self.child {
            match child.try_wait() {
                Ok(None) => return,
                Ok(Some(status)) => {
                    let young = started.elapsed() < YOUNG;
                    if wanted {
                        tracing::warn!(%status, "the locker exited and the session is still locked; starting another");
                        self.pause = if young {
                            (self.pause * 2).min(MAX_PAUSE)
                        } else {
                            FIRST_PAUSE
                        };
                        self.next_start = Some(Instant::now() + self.pause);
                    } else {
                        tracing::info!(%status, "locker exited");
                        self.pause = FIRST_PAUSE;
                        self.next_start = None;
                    }
                }
                Err(err) => tracing::warn!(%err, "cannot wait for the locker"),
            }
            self.child = None;
        }
        if !wanted || self.next_start.is_some_and(|at| Instant::now() < at) {
            return;
        }
        let Some(config) = &self.config else {
            if !self.warned {
                tracing::warn!(
                    "locked without a locker and none configured (the session was not started \
                     by wrsessd): it stays locked until a locker unlocks it"
                );
                self.warned = true;
            }
            return;
        };
        match spawn(config, socket, env) {
            Ok(child) => {
                tracing::info!(pid = child.id(), program = %config.program.display(), "started the locker");
                self.child = Some((child, Instant::now()));
            }
            Err(err) => {
                tracing::error!(%err, program = %config.program.display(), "cannot start the locker");
                self.pause = (self.pause * 2).min(MAX_PAUSE);
                self.next_start = Some(Instant::now() + self.pause);
            }
        }
    }
}

fn spawn(
    config: &LockerConfig,
    socket: &OsStr,
    env: &[(String, OsString)],
) -> std::io::Result<LockerProcess> {
    if let Some(spawner) = crate::confine::spawner::global() {
        let mut request =
            crate::confine::spawner::Request::new(config.program.as_os_str(), ["--lock"])
                .env("WAYLAND_DISPLAY", socket)
                .env_remove("DISPLAY");
        for (k, v) in env {
            request = request.env(k, v);
        }
        let request = request
            .env("WAYRAY_UNLOCK_TICKET", &config.ticket)
            .env("WAYRAY_LOGIN_SOCKET", config.login_socket.as_os_str());
        return spawner
            .spawn(request)
            .map(LockerProcess::Spawned)
            .map_err(|err| std::io::Error::other(err.to_string()));
    }
    Command::new(&config.program)
        .arg("--lock")
        .env("WAYLAND_DISPLAY", socket)
        .env_remove("DISPLAY")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("WAYRAY_UNLOCK_TICKET", &config.ticket)
        .env("WAYRAY_LOGIN_SOCKET", Path::new(&config.login_socket))
        .spawn()
        .map(LockerProcess::Own)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(program: &str) -> LockerConfig {
        LockerConfig {
            program: PathBuf::from(program),
            ticket: "t".into(),
            login_socket: PathBuf::from("/nonexistent/login.sock"),
        }
    }

    fn wait_exit(locker: &mut Locker) {
        let start = Instant::now();
        while let Some((child, _)) = &mut locker.child {
            if matches!(child.try_wait(), Ok(Some(_))) {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_locker_that_dies_while_locked_is_restarted_after_a_growing_pause() {
        // `false --lock` exits at once with status 1: a locker dying young.
        let mut locker = Locker::new(Some(config("/bin/false")));
        locker.poll(true, OsStr::new("wayland-x"), &[]);
        assert!(locker.child.is_some(), "started when wanted");
        locker.poll(true, OsStr::new("wayland-x"), &[]);
        wait_exit(&mut locker);
        locker.poll(true, OsStr::new("wayland-x"), &[]);
        assert!(locker.child.is_none(), "not again at once");
        assert_eq!(locker.pause, FIRST_PAUSE * 2);
        std::thread::sleep(locker.pause + Duration::from_millis(50));
        locker.poll(true, OsStr::new("wayland-x"), &[]);
        assert!(locker.child.is_some(), "started again after the pause");
        wait_exit(&mut locker);
        // Unlocked meanwhile: reaped, not restarted, and the pause starts over.
        locker.poll(false, OsStr::new("wayland-x"), &[]);
        assert!(locker.child.is_none());
        assert_eq!(locker.pause, FIRST_PAUSE);
    }

    #[test]
    fn no_locker_without_a_config_or_when_not_wanted() {
        let mut none = Locker::new(None);
        none.poll(true, OsStr::new("wayland-x"), &[]);
        assert!(none.child.is_none());
        let mut idle = Locker::new(Some(config("/bin/false")));
        idle.poll(false, OsStr::new("wayland-x"), &[]);
        assert!(idle.child.is_none());
    }
}
