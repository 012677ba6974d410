//! Without a launcher the daemon runs one session itself, as its own user, shown on whichever
//! appliance connected last: the demo, kiosk and test setup. It is still a separate compositor
//! process behind the same relay as every other session, and it is restarted if it crashes.

use std::{
    path::PathBuf,
    process::{Child, Command},
    time::Duration,
};

use wayray_protocol::sessions::{session_id_string, SessionId, SessionKind};

use super::Shared;

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
    /// `false` passes `--no-clipboard`.
    pub clipboard: bool,
    pub spawn: Vec<String>,
    /// `--desktop`: the default desktop before the `spawn` clients.
    pub desktop: bool,
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
            .env("WAYRAY_SESSION_SECRET", secret);
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
        for s in &self.spawn {
            cmd.arg("--spawn").arg(s);
        }
        if self.desktop {
            cmd.arg("--desktop");
        }
        Ok(cmd)
    }
}

/// Starts the shared session and keeps it running until the daemon shuts down.
pub fn start(daemon: Shared, opts: SharedSession) {
    std::thread::Builder::new()
        .name("shared-session".into())
        .spawn(move || supervise(daemon, opts))
        .map(|_| ())
        .unwrap_or_else(|err| tracing::error!(%err, "cannot start the shared-session thread"));
}

fn supervise(daemon: Shared, opts: SharedSession) {
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
        let child: std::io::Result<Child> = opts.command(id, &secret).and_then(|mut c| c.spawn());
        let status = match child {
            Ok(mut child) => {
                if let Ok(mut d) = daemon.lock() {
                    d.session_started(id, child.id());
                }
                tracing::info!(session = %session_id_string(id), pid = child.id(), "started the shared session");
                match child.wait() {
                    Ok(status) => status.to_string(),
                    Err(err) => format!("cannot wait: {err}"),
                }
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
