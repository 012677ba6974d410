//! Without a launcher the daemon runs one session itself, as its own user, shown on whichever
//! appliance connected last: the demo, kiosk and test setup. It is still a separate compositor
//! process behind the same relay as every other session, and it is restarted if it crashes.

use std::{path::PathBuf, process::Command, time::Duration};

use wayray_protocol::sessions::{parse_session_id, session_id_string, SessionId, SessionKind};

use super::Shared;
use crate::confine::{
    spawner::{Request, Spawner},
    SeccompMode,
};

/// The secret's variable in a spawner request (and the session's environment).
const SECRET_ENV: &str = "WAYRAY_SESSION_SECRET";

/// What the shared session is started with (the `wrsrvd session` flags).
#[derive(Debug, Clone)]
pub struct SharedSession {
    pub config: Option<PathBuf>,
    pub sessions_socket: PathBuf,
    pub size: (u32, u32),
    pub socket_name: Option<String>,
    pub frame_log: Option<PathBuf>,
    pub max_frames_in_flight: usize,
    /// `false` passes `--no-video` (a `--no-video` on the daemon's command line).
    pub video_regions: bool,
    /// `false` passes `--no-xwayland`.
    pub xwayland: bool,
    /// Passed as `--seccomp`.
    pub seccomp: SeccompMode,
    /// `false` passes `--no-clipboard`.
    pub clipboard: bool,
    /// `false` (config `audio = false`) passes `--no-audio`.
    pub audio: bool,
    pub spawn: Vec<String>,
    /// `--desktop`: the default desktop before the `spawn` clients.
    pub desktop: bool,
    /// `--wm`: the session's window manager (the built-in floating WM without one).
    pub wm: Option<String>,
}

impl SharedSession {
    fn command(&self, id: SessionId, secret: &str) -> std::io::Result<Command> {
        let exe = std::env::current_exe()?;
        let mut cmd = Command::new(exe);
        cmd.arg("session")
            .arg("--id")
            .arg(session_id_string(id))
            .arg("--daemon")
            .arg(&self.sessions_socket)
            .arg("--size")
            .arg(format!("{}x{}", self.size.0, self.size.1))
            .arg("--max-frames-in-flight")
            .arg(self.max_frames_in_flight.to_string())
            .arg("--seccomp")
            .arg(self.seccomp.to_string())
            .env(SECRET_ENV, secret);
        if let Some(c) = &self.config {
            cmd.arg("--config").arg(c);
        }
        if let Some(s) = &self.socket_name {
            cmd.arg("--socket").arg(s);
        }
        if let Some(f) = &self.frame_log {
            cmd.arg("--frame-log").arg(f);
        }
        if !self.video_regions {
            cmd.arg("--no-video");
        }
        if !self.xwayland {
            cmd.arg("--no-xwayland");
        }
        if !self.clipboard {
            cmd.arg("--no-clipboard");
        }
        if !self.audio {
            cmd.arg("--no-audio");
        }
        for s in &self.spawn {
            cmd.arg("--spawn").arg(s);
        }
        if self.desktop {
            cmd.arg("--desktop");
        }
        if let Some(wm) = &self.wm {
            cmd.arg("--wm").arg(wm);
        }
        Ok(cmd)
    }

    /// In the daemon's spawner: the one thing it starts, the shared session's compositor, for
    /// the session id and secret the (confined, unprivileged) daemon sends.
    pub fn command_for(&self, req: &Request) -> std::io::Result<Command> {
        let bad = || std::io::Error::other("not a shared-session request");
        let id = match req.argv.as_slice() {
            [id] => std::str::from_utf8(id).ok().and_then(parse_session_id),
            _ => None,
        }
        .ok_or_else(bad)?;
        let secret = match req.env.as_slice() {
            [(k, Some(v))] if k == SECRET_ENV.as_bytes() => std::str::from_utf8(v).ok(),
            _ => None,
        }
        .ok_or_else(bad)?;
        self.command(id, secret)
    }
}

/// Starts the shared session (through `spawner`, see [`SharedSession::command_for`]) and keeps
/// it running until the daemon shuts down.
pub fn start(daemon: Shared, spawner: Spawner) {
    std::thread::Builder::new()
        .name("shared-session".into())
        .spawn(move || supervise(daemon, spawner))
        .map(|_| ())
        .unwrap_or_else(|err| tracing::error!(%err, "cannot start the shared-session thread"));
}

fn supervise(daemon: Shared, spawner: Spawner) {
    let mut backoff = Duration::from_millis(250);
    loop {
        let (id, secret) = match daemon.lock() {
            Ok(mut d) if !d.shutting_down => {
                match d.create_session(SessionKind::Shared, None, None) {
                    Ok((id, secret)) => {
                        d.shared = Some(id);
                        (id, secret)
                    }
                    Err(err) => {
                        tracing::error!(%err, "cannot create the shared session; retrying");
                        drop(d);
                        std::thread::sleep(Duration::from_secs(1));
                        continue;
                    }
                }
            }
            _ => return,
        };
        let request =
            Request::new(session_id_string(id), Vec::<String>::new()).env(SECRET_ENV, secret);
        let status = match spawner.spawn(request) {
            Ok(child) => {
                if let Ok(mut d) = daemon.lock() {
                    d.session_started(id, child.pid);
                }
                tracing::info!(session = %session_id_string(id), pid = child.pid, "started the shared session");
                child
                    .exit
                    .recv()
                    .unwrap_or_else(|_| "lost: the daemon's spawner exited".to_string())
            }
            Err(err) => format!("cannot start: {err}"),
        };
        let stopping = match daemon.lock() {
            Ok(mut d) => {
                d.session_exited(id, &status);
                d.shutting_down
            }
            Err(_) => true,
        };
        if stopping {
            return;
        }
        tracing::error!(%status, ?backoff, "the shared session ended; restarting it");
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}
