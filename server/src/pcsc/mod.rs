//! The session's own PC/SC service: a pcsc-lite compatible socket per session (its path is
//! `PCSCLITE_CSOCK_NAME` in the session's environment) whose requests run at the pcscd of the
//! appliance the session is attached to, on the card in that appliance's reader.
//!
//! The daemon listens, because it holds the appliance's QUIC connection. It has left root by
//! the time sessions start, so it cannot hand a socket to the session's user: the socket is
//! `<run dir>/pcsc/<session id>`, open to all (0666), and every connection is checked by its
//! peer credentials: only the session's own user (the uid of the session process that
//! registered) and root are served, as pcscd itself checks its clients with polkit.
//!
//! [`lite`] parses pcsc-lite's messages; [`client`] runs one client connection (one PC/SC
//! context) as typed operations over one [`wayray_protocol::StreamKind::Pcsc`] stream to the
//! appliance ([`link`]). While the session is detached its clients see a service without
//! readers; a session attached elsewhere sees that appliance's reader, and cards connected at
//! the previous one answer `SCARD_W_REMOVED_CARD`.

pub mod client;
pub mod link;
pub mod lite;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use tokio::sync::watch;
use tracing::Instrument;
use wayray_protocol::sessions::{session_id_string, SessionId};

pub use wayray_protocol::pcsc::codes;

/// Where a session's PC/SC socket is, given the daemon's sessions socket (which the session
/// process is told with `--daemon`): both sides derive it, so the session can put it into its
/// clients' environment before the daemon has heard of it.
pub fn socket_path(sessions_socket: &Path, session: SessionId) -> PathBuf {
    sessions_socket
        .parent()
        .unwrap_or(Path::new("/"))
        .join("pcsc")
        .join(session_id_string(session))
}

/// The appliance a session is attached to, as its PC/SC service needs it.
#[derive(Clone)]
pub struct Attachment {
    pub appliance: u64,
    pub connection: quinn::Connection,
}

/// Every session's PC/SC service.
pub struct Sessions {
    /// `<run dir>/pcsc`, made by `main` while it could; `None`: no PC/SC for sessions.
    dir: Option<PathBuf>,
    services: HashMap<SessionId, Service>,
}

impl Sessions {
    pub fn new(dir: Option<PathBuf>) -> Self {
        Self {
            dir,
            services: HashMap::new(),
        }
    }

    /// The session registered from a process running as `uid`: its socket is opened if it is
    /// not open yet (a daemon restart, a re-registration keep the one they find).
    pub fn session_started(&mut self, session: SessionId, uid: u32) {
        let Some(dir) = &self.dir else { return };
        if self.services.get(&session).is_some_and(|s| s.uid == uid) {
            return;
        }
        let path = dir.join(session_id_string(session));
        match Service::start(session, path.clone(), uid) {
            Ok(service) => {
                tracing::info!(session = %session_id_string(session), socket = %path.display(), uid, "PC/SC service for the session");
                self.services.insert(session, service);
            }
            Err(err) => {
                tracing::warn!(session = %session_id_string(session), socket = %path.display(), %err, "no PC/SC for the session")
            }
        }
    }

    /// The session is shown on an appliance now (`None`: detached).
    pub fn attachment(&mut self, session: SessionId, to: Option<Attachment>) {
        if let Some(service) = self.services.get(&session) {
            service.attachment.send_replace(to);
        }
    }

    pub fn session_ended(&mut self, session: SessionId) {
        self.services.remove(&session);
    }
}

/// One session's listener.
struct Service {
    uid: u32,
    path: PathBuf,
    attachment: watch::Sender<Option<Attachment>>,
    task: tokio::task::JoinHandle<()>,
}

impl Service {
    fn start(session: SessionId, path: PathBuf, uid: u32) -> std::io::Result<Self> {
        match std::fs::remove_file(&path) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err),
            _ => {}
        }
        let listener = std::os::unix::net::UnixListener::bind(&path)?;
        // Open to all at the file level; peer credentials decide (see the module docs).
        nix::sys::stat::fchmodat(
            nix::fcntl::AT_FDCWD,
            &path,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )?;
        listener.set_nonblocking(true)?;
        let listener = tokio::net::UnixListener::from_std(listener)?;
        let (attachment, watching) = watch::channel(None);
        let shared = Arc::new(client::SessionPcsc::new(watching));
        let span = tracing::info_span!("pcsc", session = %session_id_string(session));
        let task = tokio::spawn(accept(listener, uid, shared).instrument(span));
        Ok(Self {
            uid,
            path,
            attachment,
            task,
        })
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn accept(listener: tokio::net::UnixListener, uid: u32, session: Arc<client::SessionPcsc>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                tracing::warn!(%err, "the PC/SC socket failed");
                return;
            }
        };
        let peer = stream.peer_cred().ok().map(|c| c.uid());
        if peer != Some(uid) && peer != Some(0) {
            tracing::warn!(?peer, owner = uid, "refused a PC/SC client of another user");
            continue;
        }
        tokio::spawn(client::serve(stream, session.clone()).in_current_span());
    }
}
