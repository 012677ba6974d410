//! The session's own audio server: `pipewire`, `wireplumber` (its session manager: links
//! applications to the default sink, keeps volumes) and `pipewire-pulse` (PulseAudio clients),
//! started as the session's user in a directory of the session's runtime directory, so two
//! sessions (even of one user) never share a sound server.
//!
//! They are started through the session's spawner (outside the compositor's seccomp filter)
//! with `PR_SET_PDEATHSIG`: when the compositor ends, by a crash too, its spawner exits and the
//! kernel stops them. A normal end also stops them explicitly ([`Services`]'s `Drop`).

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::confine::spawner::{self, Request};

/// The processes, in start order, with their Debian packages for the warning.
pub const PROGRAMS: [(&str, &str); 3] = [
    ("pipewire", "pipewire"),
    ("wireplumber", "wireplumber"),
    ("pipewire-pulse", "pipewire-pulse"),
];

/// How long a service may take to open its socket before the session goes on without it.
const SOCKET_WAIT: Duration = Duration::from_secs(5);

/// Where a session's audio server lives: `<runtime dir>/wayray-audio-<pid of the compositor>`,
/// unique among the live sessions sharing that runtime directory, and short: its sockets'
/// paths must fit `sun_path` (108 bytes) even under a test's long temporary directory.
pub fn audio_dir(runtime: &Path, pid: u32) -> PathBuf {
    runtime.join(format!("wayray-audio-{pid}"))
}

/// Waits (at most [`SOCKET_WAIT`]) for a service's socket; a slow start is logged, and the
/// session goes on either way (clients retry, WirePlumber links streams once nodes appear).
fn wait_for(socket: &Path) {
    let deadline = Instant::now() + SOCKET_WAIT;
    while !socket.exists() {
        if Instant::now() >= deadline {
            tracing::warn!(socket = %socket.display(), "an audio service has not opened its socket yet");
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Removes the audio directories of sessions that crashed (their compositor's pid is gone):
/// a crash leaves its sockets behind, though its services ended with it.
fn remove_stale(runtime: &Path) {
    let Ok(entries) = std::fs::read_dir(runtime) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("wayray-audio-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            tracing::debug!(dir = %entry.path().display(), "removing a crashed session's audio directory");
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The longest socket path a `sockaddr_un` holds.
const MAX_SOCKET_PATH: usize = 107;

/// The PipeWire socket in `dir`.
pub fn pipewire_socket(dir: &Path) -> PathBuf {
    dir.join("pipewire-0")
}

/// What the session's clients need to reach its audio server: PipeWire clients (`pw-play`,
/// `wpctl`) look in `PIPEWIRE_RUNTIME_DIR`, PulseAudio clients (`paplay`, `pactl`, the
/// panel's volume) connect to `PULSE_SERVER`, and ALSA programs reach it through the ALSA
/// configuration in `ALSA_CONFIG_PATH` (the system's, plus a default device that is the
/// session's PulseAudio server).
pub fn client_env(dir: &Path) -> Vec<(String, OsString)> {
    let mut alsa = OsString::from("/usr/share/alsa/alsa.conf:");
    alsa.push(dir.join("asound.conf"));
    vec![
        ("PIPEWIRE_RUNTIME_DIR".into(), dir.into()),
        (
            "PULSE_SERVER".into(),
            format!("unix:{}", dir.join("pulse/native").display()).into(),
        ),
        ("ALSA_CONFIG_PATH".into(), alsa),
    ]
}

/// The ALSA configuration that makes `default` the session's PulseAudio server (the `pulse`
/// plugin of libasound2-plugins reads `PULSE_SERVER`).
const ASOUND_CONF: &str = "pcm.!default { type pulse }\nctl.!default { type pulse }\n";

/// The running services; stopped when dropped. `None` once stopping: exits are expected.
type Pids = Arc<Mutex<Option<Vec<(&'static str, u32)>>>>;

/// The running services; stopped when dropped.
pub struct Services {
    pids: Pids,
    dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ServicesError {
    #[error("{program} is not installed (apt-get install {package}); the session has no sound")]
    Missing {
        program: &'static str,
        package: &'static str,
    },
    #[error("cannot create {0}: {1}")]
    Dir(PathBuf, std::io::Error),
    #[error("cannot start {0}: {1}")]
    Start(&'static str, String),
    #[error("{0} is too long a path for a socket (at most {MAX_SOCKET_PATH} bytes)")]
    PathTooLong(PathBuf),
    #[error("the session has no spawner to start its audio server")]
    NoSpawner,
}

impl Services {
    /// Checks the programs and prepares `dir`; [`Services::start`] then starts them.
    pub fn prepare(dir: &Path) -> Result<Services, ServicesError> {
        for (program, package) in PROGRAMS {
            if !crate::compositor::desktop::on_path(program) {
                return Err(ServicesError::Missing { program, package });
            }
        }
        if spawner::global().is_none() {
            return Err(ServicesError::NoSpawner);
        }
        let pulse = dir.join("pulse/native");
        if pulse.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(ServicesError::PathTooLong(pulse));
        }
        if let Some(runtime) = dir.parent() {
            remove_stale(runtime);
        }
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| ServicesError::Dir(dir.to_owned(), e))?;
        // A socket left by a crashed session of the same name would look alive.
        let _ = std::fs::remove_file(pipewire_socket(dir));
        let _ = std::fs::remove_file(dir.join("pipewire-0.lock"));
        std::fs::write(dir.join("asound.conf"), ASOUND_CONF)
            .map_err(|e| ServicesError::Dir(dir.to_owned(), e))?;
        Ok(Services {
            pids: Arc::new(Mutex::new(Some(Vec::new()))),
            dir: dir.to_owned(),
        })
    }

    /// Starts the three programs with `bus` as their D-Bus session bus (WirePlumber exits at
    /// once without one).
    pub fn start(&self, dir: &Path, bus: Option<&str>) -> Result<(), ServicesError> {
        let spawner = spawner::global().ok_or(ServicesError::NoSpawner)?;
        for (i, (program, _)) in PROGRAMS.into_iter().enumerate() {
            let mut req = Request::new(program, Vec::<String>::new())
                .env("XDG_RUNTIME_DIR", dir)
                .env("PIPEWIRE_RUNTIME_DIR", dir)
                // WirePlumber's remembered volumes and defaults live with the session: every
                // session starts at full volume on the WayRay nodes, whatever an earlier
                // session of the user (or test) left behind.
                .env("XDG_STATE_HOME", dir.join("state"))
                .env_remove("PULSE_SERVER")
                .env_remove("WAYLAND_DISPLAY")
                .env_remove("DISPLAY")
                .die_with_parent();
            if let Some(bus) = bus {
                req = req.env("DBUS_SESSION_BUS_ADDRESS", bus);
            }
            let child = spawner
                .spawn(req)
                .map_err(|e| ServicesError::Start(program, e.to_string()))?;
            tracing::info!(program, pid = child.pid, dir = %dir.display(), "audio service started");
            let pid = child.pid;
            match self.pids.lock().as_deref_mut() {
                Ok(Some(pids)) => pids.push((program, pid)),
                // Stopping already (the session ended while it started).
                _ => kill(program, pid),
            }
            let pids = self.pids.clone();
            let watched = std::thread::Builder::new()
                .name("audio-exit".into())
                .spawn(move || {
                    let status = child.exit.recv().unwrap_or_else(|_| "lost".into());
                    let running = match pids.lock().as_deref_mut() {
                        Ok(Some(pids)) => {
                            pids.retain(|&(_, p)| p != pid);
                            true
                        }
                        _ => false,
                    };
                    if !running {
                        tracing::debug!(program, %status, "audio service exited");
                    } else {
                        tracing::warn!(program, %status, "audio service exited; the session's sound may stop");
                    }
                });
            if let Err(err) = watched {
                tracing::warn!(%err, "cannot watch an audio service");
            }
            if i == 0 {
                wait_for(&pipewire_socket(dir));
            }
        }
        wait_for(&dir.join("pulse/native"));
        Ok(())
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        let pids = match self.pids.lock() {
            Ok(mut pids) => pids.take().unwrap_or_default(),
            Err(_) => return,
        };
        // Reverse order: clients of pipewire first.
        for (program, pid) in pids.into_iter().rev() {
            kill(program, pid);
        }
        // Its sockets and files; the services may still be exiting, so this is a best effort.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Stops one service. Its pid is still its own: an exited service is taken off the list when
/// the spawner reports the exit, before the spawner could start anything reusing the pid.
fn kill(program: &str, pid: u32) {
    // SAFETY: kill has no memory preconditions.
    if unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) } == 0 {
        tracing::debug!(program, pid, "audio service stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_find_the_sessions_own_server() {
        let dir = audio_dir(Path::new("/run/user/1000"), 4321);
        assert_eq!(dir, Path::new("/run/user/1000/wayray-audio-4321"));
        let env = client_env(&dir);
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(get("PIPEWIRE_RUNTIME_DIR"), Some(dir.clone().into()));
        assert_eq!(
            get("PULSE_SERVER"),
            Some("unix:/run/user/1000/wayray-audio-4321/pulse/native".into())
        );
        assert!(get("ALSA_CONFIG_PATH")
            .unwrap()
            .to_string_lossy()
            .ends_with("wayray-audio-4321/asound.conf"));
    }
}
