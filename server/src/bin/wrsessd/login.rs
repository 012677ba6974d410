//! `login.sock`: greeters (`wrlogin`, running as the greeter user) and lockers (`wrlogin --lock`
//! in users' sessions) send [`LoginRequest`]s and get a [`LoginReply`] for each. The socket is world-writable because the greeter user must
//! reach it; what authorizes a login is the greeter's ticket, not the connecting process.
//!
//! Each connection has its own thread, so PAM's delay after a wrong password holds up only
//! the greeter that typed it.

use std::{
    fs,
    io::{self, Read, Write},
    os::unix::{
        fs::{FileTypeExt, PermissionsExt},
        net::{UnixListener, UnixStream},
    },
    path::Path,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use wayray_protocol::{
    framing::{self, FrameReader},
    sessions::{LoginReply, LoginRequest},
};
use zeroize::Zeroize;

use crate::launcher::Launcher;

/// A login request is a ticket, a user name and a password.
const MAX_REQUEST_LEN: u32 = 8 * 1024;
/// Greeter connections at once; more are closed straight away.
const MAX_CONNECTIONS: usize = 128;
/// A connection that sends nothing for this long is closed (the greeter reconnects).
const IDLE_TIMEOUT: Duration = Duration::from_secs(15 * 60);
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds `path` (replacing a socket left by an earlier run) with mode 0666.
pub fn listen(path: &Path) -> io::Result<UnixListener> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => fs::remove_file(path)?,
        Ok(_) => {
            return Err(io::Error::other(format!(
                "{} exists and is not a socket; not replacing it",
                path.display()
            )))
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(err),
    }
    let listener = UnixListener::bind(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o666))?;
    Ok(listener)
}

/// Accepts greeter connections forever.
pub fn serve(listener: UnixListener, launcher: Arc<Launcher>) {
    let open = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(stream) => stream,
            Err(err) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!(%err, "accepting a greeter connection failed");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if open.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            open.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!("too many greeter connections; closing a new one");
            continue;
        }
        let guard = ConnectionCount(Arc::clone(&open));
        let launcher = Arc::clone(&launcher);
        let spawned = std::thread::Builder::new()
            .name("login".into())
            .spawn(move || {
                let _guard = guard;
                if let Err(err) = serve_connection(stream, &launcher) {
                    tracing::debug!(%err, "greeter connection ended");
                }
            });
        if let Err(err) = spawned {
            tracing::warn!(%err, "no thread for a greeter connection");
        }
    }
}

struct ConnectionCount(Arc<AtomicUsize>);

impl Drop for ConnectionCount {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn serve_connection(mut stream: UnixStream, launcher: &Launcher) -> io::Result<()> {
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let mut reader = FrameReader::new(MAX_REQUEST_LEN);
    let mut buf = vec![0u8; 4096];
    let result = loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => break reader.finish().map_err(io::Error::other),
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => break Err(err),
        };
        reader.push(&buf[..n]);
        let answered = answer_requests(&mut reader, &mut stream, launcher);
        if answered.is_err() {
            break answered;
        }
    };
    buf.zeroize();
    result
}

fn answer_requests(
    reader: &mut FrameReader,
    stream: &mut UnixStream,
    launcher: &Launcher,
) -> io::Result<()> {
    while let Some(request) = reader.next::<LoginRequest>().map_err(io::Error::other)? {
        let reply = match request {
            LoginRequest::Login {
                ticket,
                username,
                mut password,
            } => {
                let reply = launcher.login(&ticket, &username, &password);
                password.zeroize();
                reply
            }
            LoginRequest::Unlock {
                ticket,
                mut password,
            } => {
                let reply = launcher.unlock(&ticket, &password);
                password.zeroize();
                reply
            }
        };
        let bytes = framing::encode::<LoginReply>(&reply).map_err(io::Error::other)?;
        stream.write_all(&bytes)?;
    }
    Ok(())
}
