//! The session compositor's end of `sessions.sock`: turns the daemon's [`ToSession`] messages
//! into compositor events and relays encoded frames back.
//!
//! The session connects to the daemon, not the other way round, so when the daemon restarts the
//! session finds it again (saying `reconnect: true`) and the user's desktop survives. While the
//! daemon is away the session counts as detached: it renders nothing and its clients tick slowly.

use std::{
    io::{Read, Write},
    os::unix::net::UnixStream,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use smithay::reexports::calloop::channel::Sender;
use wayray_protocol::{
    framing,
    sessions::{session_id_string, FromSession, SessionHello, SessionId, ToSession},
    FrameReader, DEFAULT_MAX_MESSAGE_LEN,
};

use crate::link::{ToCompositor, ToTransport};

/// How to reach the daemon and prove who we are.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    pub socket: PathBuf,
    pub session: SessionId,
    pub secret: String,
    /// Without a daemon for this long, the session gives up and exits.
    pub orphan_timeout: Duration,
}

type Writer = Arc<Mutex<Option<UnixStream>>>;

/// A daemon that reads nothing for this long is taken as hung: the link is dropped and the read
/// side reconnects, rather than the compositor waiting forever.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// The compositor's sending end: frames and cursors are written to the daemon's socket on the
/// compositor's own thread. Handing each one to a writer thread cost a thread wake-up per frame,
/// more CPU than the write; the socket buffer takes a typical frame without blocking, and a key
/// frame blocks only until the daemon (which reads at once) has taken it.
#[derive(Clone, Default)]
pub struct LinkTx {
    writer: Writer,
}

impl LinkTx {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends `msg` if the daemon is connected; while it is not, the session counts as detached
    /// and the message is dropped.
    pub fn send(&self, msg: ToTransport) {
        let msg = match msg {
            ToTransport::Frame {
                appliance,
                seq,
                bytes,
            } => FromSession::Frame {
                appliance,
                seq,
                bytes: bytes.to_vec(),
            },
            ToTransport::Cursor { appliance, bytes } => FromSession::Cursor {
                appliance,
                bytes: bytes.to_vec(),
            },
        };
        let bytes = match framing::encode(&msg) {
            Ok(b) => b,
            Err(err) => {
                tracing::error!(%err, "cannot encode a message for the daemon");
                return;
            }
        };
        let Ok(mut guard) = self.writer.lock() else {
            return;
        };
        if let Some(stream) = guard.as_mut() {
            if let Err(err) = stream.write_all(&bytes) {
                // A partial message leaves the stream out of step: end it, and the read side
                // reconnects.
                tracing::warn!(%err, "writing to the daemon failed; reconnecting");
                let _ = stream.shutdown(std::net::Shutdown::Both);
                *guard = None;
            }
        }
    }
}

/// Starts the link's reading thread, which (re)connects to the daemon and hands `tx` the
/// socket. `wayland_display` is the session's socket name, for the daemon.
pub fn start(
    config: LinkConfig,
    wayland_display: String,
    to_compositor: Sender<ToCompositor>,
    tx: LinkTx,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("session-link-rx".into())
        .spawn(move || read_loop(config, wayland_display, to_compositor, tx.writer))?;
    Ok(())
}

fn read_loop(
    config: LinkConfig,
    wayland_display: String,
    to_compositor: Sender<ToCompositor>,
    writer: Writer,
) {
    let span = tracing::info_span!("daemon_link", session = %session_id_string(config.session));
    let _guard = span.enter();
    let mut reconnect = false;
    loop {
        let Some(mut stream) = connect(&config, &wayland_display, reconnect) else {
            tracing::error!(
                timeout = ?config.orphan_timeout,
                "no daemon for too long; ending the session"
            );
            let _ = to_compositor.send(ToCompositor::Shutdown);
            return;
        };
        reconnect = true;
        match stream.try_clone() {
            Ok(w) => {
                if let Err(err) = w.set_write_timeout(Some(WRITE_TIMEOUT)) {
                    tracing::warn!(%err, "cannot set a write timeout on the daemon socket");
                }
                if let Ok(mut guard) = writer.lock() {
                    *guard = Some(w);
                }
            }
            Err(err) => {
                tracing::error!(%err, "cannot clone the daemon socket");
                continue;
            }
        }
        tracing::info!("connected to the daemon");
        let mut attached = None;
        let shutdown = serve(&mut stream, &to_compositor, &mut attached);
        if let Ok(mut guard) = writer.lock() {
            *guard = None;
        }
        if let Some(appliance) = attached {
            let _ = to_compositor.send(ToCompositor::Detached { appliance });
        }
        if shutdown {
            let _ = to_compositor.send(ToCompositor::Shutdown);
            return;
        }
        tracing::warn!("lost the daemon; the session keeps running and reconnects");
    }
}

/// Connects and registers, retrying until `orphan_timeout`.
fn connect(config: &LinkConfig, wayland_display: &str, reconnect: bool) -> Option<UnixStream> {
    let start = Instant::now();
    let mut logged = false;
    loop {
        match UnixStream::connect(&config.socket) {
            Ok(mut stream) => {
                let hello = SessionHello {
                    session: config.session,
                    secret: config.secret.clone(),
                    pid: std::process::id(),
                    wayland_display: wayland_display.to_owned(),
                    reconnect,
                };
                match framing::encode(&hello).map(|b| stream.write_all(&b)) {
                    Ok(Ok(())) => return Some(stream),
                    Ok(Err(err)) => tracing::warn!(%err, "cannot register with the daemon"),
                    Err(err) => tracing::error!(%err, "cannot encode the session hello"),
                }
            }
            Err(err) if !logged => {
                tracing::info!(socket = %config.socket.display(), %err, "waiting for the daemon");
                logged = true;
            }
            Err(_) => {}
        }
        if start.elapsed() > config.orphan_timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Relays daemon messages until the socket ends; returns true when the daemon said Shutdown.
fn serve(
    stream: &mut UnixStream,
    to_compositor: &Sender<ToCompositor>,
    attached: &mut Option<u64>,
) -> bool {
    let mut reader = FrameReader::new(DEFAULT_MAX_MESSAGE_LEN);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        loop {
            match reader.next::<ToSession>() {
                Ok(Some(msg)) => {
                    let event = match msg {
                        ToSession::Attached {
                            appliance,
                            screen,
                            output,
                            keymap,
                        } => {
                            *attached = Some(appliance);
                            ToCompositor::Attached {
                                appliance,
                                screen,
                                output,
                                keymap,
                            }
                        }
                        ToSession::Resize { appliance, output } => {
                            ToCompositor::Resize { appliance, output }
                        }
                        ToSession::Input { appliance, event } => {
                            ToCompositor::Input { appliance, event }
                        }
                        ToSession::FrameAck { appliance, seq } => {
                            ToCompositor::FrameAck { appliance, seq }
                        }
                        ToSession::LinkQuality {
                            appliance,
                            video_bitrate,
                        } => ToCompositor::LinkQuality {
                            appliance,
                            video_bitrate,
                        },
                        ToSession::Detached { appliance } => {
                            if *attached == Some(appliance) {
                                *attached = None;
                            }
                            ToCompositor::Detached { appliance }
                        }
                        ToSession::Shutdown => return true,
                    };
                    if to_compositor.send(event).is_err() {
                        return true;
                    }
                }
                Ok(None) => break,
                Err(err) => {
                    tracing::error!(%err, "bad message from the daemon; reconnecting");
                    return false;
                }
            }
        }
        match stream.read(&mut buf[..reader.wanted().clamp(1, 64 * 1024)]) {
            Ok(0) => return false,
            Ok(n) => reader.push(&buf[..n]),
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => {
                tracing::warn!(%err, "daemon socket failed");
                return false;
            }
        }
    }
}
