//! The link to the daemon on `launcher.sock`: we connect, say [`LauncherHello`], then read
//! [`ToLauncher`] and write [`FromLauncher`]. When the daemon is not there (yet, or any more)
//! we retry every [`RECONNECT_INTERVAL`]; sessions keep running meanwhile, and the daemon
//! re-adopts them by itself once it is back, so nothing special is said on reconnect.

use std::{
    collections::VecDeque,
    io::{self, Read, Write},
    os::unix::net::UnixStream,
    path::Path,
    sync::Mutex,
    time::Duration,
};

use wayray_protocol::{
    framing::{self, FrameReader},
    sessions::{FromLauncher, LauncherHello, ToLauncher},
};

use crate::{config::RECONNECT_INTERVAL, lock};

/// Largest message accepted from the daemon (they are a few short strings).
const MAX_MESSAGE_LEN: u32 = 64 * 1024;
/// A daemon that does not take a message for this long is treated as gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Session reports kept while the daemon is away; beyond this the oldest are dropped.
const MAX_BACKLOG: usize = 1024;

/// The writing half, shared by everything that reports to the daemon.
#[derive(Debug, Default)]
pub struct DaemonLink {
    conn: Mutex<Option<UnixStream>>,
    /// Session starts and exits that happened while the daemon was away, sent after the next
    /// hello so the daemon learns about sessions that ended in between.
    backlog: Mutex<VecDeque<FromLauncher>>,
}

#[derive(Debug)]
pub struct NotConnected;

impl DaemonLink {
    /// Sends now or not at all: for reports that are only true at this moment (logins).
    pub fn send(&self, msg: &FromLauncher) -> Result<(), NotConnected> {
        let mut conn = lock(&self.conn);
        Self::write_or_drop(&mut conn, msg)
    }

    /// Sends now, or after the next hello if the daemon is away: session starts and exits.
    pub fn send_or_keep(&self, msg: FromLauncher) {
        let mut conn = lock(&self.conn);
        if Self::write_or_drop(&mut conn, &msg).is_err() {
            let mut backlog = lock(&self.backlog);
            if backlog.len() >= MAX_BACKLOG {
                backlog.pop_front();
            }
            tracing::debug!(?msg, "daemon away; report kept for later");
            backlog.push_back(msg);
        }
    }

    fn write_or_drop(
        conn: &mut Option<UnixStream>,
        msg: &FromLauncher,
    ) -> Result<(), NotConnected> {
        let stream = conn.as_mut().ok_or(NotConnected)?;
        let bytes = framing::encode(msg).map_err(|err| {
            tracing::error!(%err, ?msg, "cannot encode a message for the daemon");
            NotConnected
        })?;
        if let Err(err) = stream.write_all(&bytes) {
            tracing::warn!(%err, "writing to the daemon failed; dropping the link");
            // The reading side sees the shutdown and reconnects.
            let _ = stream.shutdown(std::net::Shutdown::Both);
            *conn = None;
            return Err(NotConnected);
        }
        Ok(())
    }

    /// Installs a fresh connection: hello first, then what was kept while away.
    fn attach(&self, mut stream: UnixStream) -> io::Result<()> {
        stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
        let hello = LauncherHello {
            pid: std::process::id(),
        };
        stream.write_all(&framing::encode(&hello).map_err(io::Error::other)?)?;
        let mut conn = lock(&self.conn);
        let mut backlog = lock(&self.backlog);
        while let Some(msg) = backlog.pop_front() {
            stream.write_all(&framing::encode(&msg).map_err(io::Error::other)?)?;
        }
        *conn = Some(stream);
        Ok(())
    }

    fn detach(&self) {
        if let Some(stream) = lock(&self.conn).take() {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Connects (and reconnects) forever, handing every daemon message to `handle` in order.
pub fn run(link: &DaemonLink, socket: &Path, mut handle: impl FnMut(ToLauncher)) -> ! {
    let mut waiting_logged = false;
    loop {
        let stream = match UnixStream::connect(socket) {
            Ok(stream) => stream,
            Err(err) => {
                if !waiting_logged {
                    tracing::warn!(
                        socket = %socket.display(),
                        %err,
                        "daemon not reachable; retrying every {} ms",
                        RECONNECT_INTERVAL.as_millis()
                    );
                    waiting_logged = true;
                }
                std::thread::sleep(RECONNECT_INTERVAL);
                continue;
            }
        };
        let attached = stream.try_clone().and_then(|writer| link.attach(writer));
        if let Err(err) = attached {
            tracing::warn!(%err, "daemon hung up during hello");
            std::thread::sleep(RECONNECT_INTERVAL);
            continue;
        }
        waiting_logged = false;
        tracing::info!(socket = %socket.display(), "connected to the daemon");
        match read_messages(stream, &mut handle) {
            Ok(()) => tracing::warn!("daemon closed the launcher link; reconnecting"),
            Err(err) => tracing::warn!(%err, "launcher link broken; reconnecting"),
        }
        link.detach();
        std::thread::sleep(RECONNECT_INTERVAL);
    }
}

fn read_messages(mut stream: UnixStream, handle: &mut impl FnMut(ToLauncher)) -> io::Result<()> {
    let mut reader = FrameReader::new(MAX_MESSAGE_LEN);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => return reader.finish().map_err(io::Error::other),
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        reader.push(&buf[..n]);
        while let Some(msg) = reader.next::<ToLauncher>().map_err(io::Error::other)? {
            tracing::debug!(msg = %without_secrets(&msg), "from the daemon");
            handle(msg);
        }
    }
}

/// A request as logs may show it: session secrets stay out of log files.
fn without_secrets(msg: &ToLauncher) -> String {
    match msg {
        ToLauncher::GreeterRequested { token, session, .. } => {
            format!("GreeterRequested {{ token: {token:?}, session: {session:x} }}")
        }
        ToLauncher::StartUserSession {
            greeter,
            token,
            user,
            session,
            ..
        } => format!(
            "StartUserSession {{ greeter: {greeter:x}, token: {token:?}, user: {user:?}, session: {session:x} }}"
        ),
        ToLauncher::Stop { session } => format!("Stop {{ session: {session:x} }}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_requests_hold_no_secret() {
        let requests = [
            ToLauncher::GreeterRequested {
                token: "t".into(),
                session: 1,
                secret: "hunter2".into(),
                notice: None,
            },
            ToLauncher::StartUserSession {
                greeter: 1,
                token: "t".into(),
                user: "alice".into(),
                session: 2,
                secret: "hunter2".into(),
            },
        ];
        for request in &requests {
            let logged = without_secrets(request);
            assert!(!logged.contains("hunter2"), "{logged}");
            assert!(logged.contains("token"), "{logged}");
        }
    }
}
