//! The session compositor's end of `sessions.sock`: turns the daemon's [`ToSession`] messages
//! into compositor events and relays encoded frames back.
//!
//! The session connects to the daemon, not the other way round, so when the daemon restarts the
//! session finds it again (saying `reconnect: true`) and the user's desktop survives. While the
//! daemon is away the session counts as detached: it renders nothing and its clients tick slowly.

use std::{
    io::{IoSlice, Read, Write},
    os::unix::net::UnixStream,
    path::PathBuf,
    sync::{mpsc, Arc, Mutex},
    time::{Duration, Instant},
};

use smithay::reexports::calloop::channel::Sender;
use wayray_protocol::{
    frame_relay, framing,
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
        match msg {
            // The frame goes out from the encoder's buffer, between its envelope's head and
            // tail: no copy into a message (`wayray_protocol::frame_relay`).
            ToTransport::Frame {
                appliance,
                seq,
                bytes,
                encode_us,
            } => match frame_relay::frame_envelope(appliance, seq, bytes.len(), encode_us) {
                Ok(env) => self.write([&env.head, &bytes, &env.tail]),
                Err(err) => tracing::error!(%err, seq, "cannot frame a frame for the daemon"),
            },
            ToTransport::Cursor { appliance, bytes } => self.send_message(&FromSession::Cursor {
                appliance,
                bytes: bytes.to_vec(),
            }),
            ToTransport::Audio { appliance, bytes } => {
                self.send_message(&FromSession::Audio { appliance, bytes })
            }
            ToTransport::Microphone { appliance, open } => {
                self.send_message(&FromSession::Microphone { appliance, open })
            }
        }
    }

    fn send_message(&self, msg: &FromSession) {
        match framing::encode(msg) {
            Ok(bytes) => self.write([&bytes]),
            Err(err) => tracing::error!(%err, "cannot encode a message for the daemon"),
        }
    }

    /// Writes `parts` back to back as one message, if the daemon is connected.
    fn write<const N: usize>(&self, parts: [&[u8]; N]) {
        let Ok(mut guard) = self.writer.lock() else {
            return;
        };
        if let Some(stream) = guard.as_mut() {
            if let Err(err) = write_all_vectored(stream, parts) {
                // A partial message leaves the stream out of step: end it, and the read side
                // reconnects.
                tracing::warn!(%err, "writing to the daemon failed; reconnecting");
                let _ = stream.shutdown(std::net::Shutdown::Both);
                *guard = None;
            }
        }
    }
}

/// Writes all of `parts`, in order, with as few `writev` calls as the socket allows.
fn write_all_vectored<const N: usize>(
    stream: &mut impl Write,
    parts: [&[u8]; N],
) -> std::io::Result<()> {
    let mut slices = parts.map(IoSlice::new);
    let mut bufs = &mut slices[..];
    while bufs.iter().any(|b| !b.is_empty()) {
        match stream.write_vectored(bufs) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// The daemon's socket once registered, for the compositor's event loop to read: reading it
/// there, rather than on a thread that forwards each message through a channel, saves a thread
/// wake-up and an eventfd round trip per input event and frame ack.
#[derive(Debug)]
pub struct DaemonSocket {
    pub stream: UnixStream,
    pub reader: LinkReader,
}

/// What one read of the daemon's socket came to.
#[derive(Debug, PartialEq, Eq)]
pub enum LinkStatus {
    Open,
    /// The socket ended, failed or sent garbage: the connecting thread reconnects.
    Lost,
    /// The daemon said Shutdown.
    Shutdown,
}

/// Turns the daemon's bytes into compositor events; tells the connecting thread when the link
/// ends (by being dropped, or through [`LinkReader::lost`]).
#[derive(Debug)]
pub struct LinkReader {
    frames: FrameReader,
    buf: Vec<u8>,
    /// The appliance the daemon last attached, detached for the compositor if the link is lost.
    attached: Option<u64>,
    lost: mpsc::Sender<()>,
}

impl LinkReader {
    fn new(lost: mpsc::Sender<()>) -> Self {
        Self {
            frames: FrameReader::new(DEFAULT_MAX_MESSAGE_LEN),
            buf: vec![0u8; 64 * 1024],
            attached: None,
            lost,
        }
    }

    /// Reads once (the event loop calls this when the socket is readable, so it does not block;
    /// what is left is read on the next wake-up) and appends the whole messages to `out`.
    pub fn read(&mut self, mut stream: &UnixStream, out: &mut Vec<ToCompositor>) -> LinkStatus {
        match stream.read(&mut self.buf) {
            Ok(0) => return LinkStatus::Lost,
            Ok(n) => self.frames.push(&self.buf[..n]),
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(err) => {
                tracing::warn!(%err, "daemon socket failed");
                return LinkStatus::Lost;
            }
        }
        loop {
            match self.frames.next::<ToSession>() {
                Ok(Some(ToSession::Shutdown)) => return LinkStatus::Shutdown,
                Ok(Some(msg)) => out.push(self.event(msg)),
                Ok(None) => return LinkStatus::Open,
                Err(err) => {
                    tracing::error!(%err, "bad message from the daemon; reconnecting");
                    return LinkStatus::Lost;
                }
            }
        }
    }

    /// After [`LinkStatus::Lost`]: the event that detaches the appliance the link carried, if
    /// any; the connecting thread is told to reconnect.
    pub fn lost(&mut self) -> Option<ToCompositor> {
        let _ = self.lost.send(());
        self.attached
            .take()
            .map(|appliance| ToCompositor::Detached { appliance })
    }

    fn event(&mut self, msg: ToSession) -> ToCompositor {
        match msg {
            ToSession::Attached {
                appliance,
                screen,
                physical_size,
                output,
                keymap,
                scale,
                lock,
                audio,
            } => {
                self.attached = Some(appliance);
                ToCompositor::Attached {
                    appliance,
                    screen,
                    physical_size,
                    output,
                    keymap,
                    scale,
                    lock,
                    audio,
                }
            }
            ToSession::Resize {
                appliance,
                screen,
                physical_size,
                output,
            } => ToCompositor::Resize {
                appliance,
                screen,
                physical_size,
                output,
            },
            ToSession::Input { appliance, event } => ToCompositor::Input { appliance, event },
            ToSession::FrameAck { appliance, seq } => ToCompositor::FrameAck { appliance, seq },
            ToSession::Microphone { appliance, packet } => {
                ToCompositor::Microphone { appliance, packet }
            }
            ToSession::LinkQuality {
                appliance,
                video_bitrate,
            } => ToCompositor::LinkQuality {
                appliance,
                video_bitrate,
            },
            ToSession::Detached { appliance } => {
                if self.attached == Some(appliance) {
                    self.attached = None;
                }
                ToCompositor::Detached { appliance }
            }
            ToSession::Shutdown => ToCompositor::Shutdown,
        }
    }
}

/// Starts the link's connecting thread, which (re)connects to the daemon, gives `tx` the socket
/// for writing and the compositor ([`ToCompositor::Linked`]) the socket for reading, and waits
/// until the compositor reports the link lost. `wayland_display` is the session's socket name,
/// for the daemon.
pub fn start(
    config: LinkConfig,
    wayland_display: String,
    to_compositor: Sender<ToCompositor>,
    tx: LinkTx,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("session-link".into())
        .spawn(move || connect_loop(config, wayland_display, to_compositor, tx.writer))?;
    Ok(())
}

fn connect_loop(
    config: LinkConfig,
    wayland_display: String,
    to_compositor: Sender<ToCompositor>,
    writer: Writer,
) {
    let span = tracing::info_span!("daemon_link", session = %session_id_string(config.session));
    let _guard = span.enter();
    let mut reconnect = false;
    loop {
        let Some(stream) = connect(&config, &wayland_display, reconnect) else {
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
        let (lost_tx, lost_rx) = mpsc::channel();
        let socket = DaemonSocket {
            stream,
            reader: LinkReader::new(lost_tx),
        };
        if to_compositor.send(ToCompositor::Linked(socket)).is_err() {
            return;
        }
        // Err: the compositor dropped the reader without a loss, i.e. it is shutting down.
        let lost = lost_rx.recv();
        if let Ok(mut guard) = writer.lock() {
            *guard = None;
        }
        if lost.is_err() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use wayray_protocol::InputMessage;

    fn read_all(reader: &mut LinkReader, stream: &UnixStream) -> (Vec<ToCompositor>, LinkStatus) {
        let mut out = Vec::new();
        loop {
            let status = reader.read(stream, &mut out);
            if status != LinkStatus::Open || !out.is_empty() {
                return (out, status);
            }
        }
    }

    #[test]
    fn messages_arrive_in_order_and_a_lost_link_detaches_the_appliance() {
        let (mut daemon, session) = UnixStream::pair().expect("socket pair");
        let (lost_tx, lost_rx) = mpsc::channel();
        let mut reader = LinkReader::new(lost_tx);
        let mut bytes = Vec::new();
        for msg in [
            ToSession::Attached {
                appliance: 7,
                screen: (800, 600),
                physical_size: None,
                output: (800, 600),
                keymap: None,
                scale: None,
                lock: false,
                audio: Default::default(),
            },
            ToSession::Input {
                appliance: 7,
                event: InputMessage::Key {
                    time_ms: 1,
                    keycode: 30,
                    pressed: true,
                },
            },
            ToSession::FrameAck {
                appliance: 7,
                seq: 3,
            },
        ] {
            bytes.extend(framing::encode(&msg).expect("encode"));
        }
        daemon.write_all(&bytes).expect("write");
        let mut events = Vec::new();
        while events.len() < 3 {
            let (mut got, status) = read_all(&mut reader, &session);
            assert_eq!(status, LinkStatus::Open);
            events.append(&mut got);
        }
        assert!(matches!(
            events[0],
            ToCompositor::Attached { appliance: 7, .. }
        ));
        assert!(matches!(
            events[1],
            ToCompositor::Input {
                appliance: 7,
                event: InputMessage::Key { keycode: 30, .. }
            }
        ));
        assert!(matches!(
            events[2],
            ToCompositor::FrameAck {
                appliance: 7,
                seq: 3
            }
        ));

        drop(daemon);
        let (rest, status) = read_all(&mut reader, &session);
        assert!(rest.is_empty());
        assert_eq!(status, LinkStatus::Lost);
        assert!(matches!(
            reader.lost(),
            Some(ToCompositor::Detached { appliance: 7 })
        ));
        assert!(lost_rx.try_recv().is_ok(), "the connecting thread is told");
    }

    /// Takes at most `step` bytes per call, as a full socket buffer would.
    struct Trickle {
        got: Vec<u8>,
        step: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.step);
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_frame_written_in_pieces_is_the_framed_message() {
        let frame: Vec<u8> = (0..5000u32).map(|i| (i % 253) as u8).collect();
        let expected = framing::encode(&FromSession::Frame {
            appliance: 3,
            seq: 300,
            bytes: frame.clone(),
            encode_us: 99,
        })
        .expect("encode");
        let env = frame_relay::frame_envelope(3, 300, frame.len(), 99).expect("envelope");
        for step in [1, 3, 7, 4096, usize::MAX] {
            let mut out = Trickle {
                got: Vec::new(),
                step,
            };
            write_all_vectored(&mut out, [&env.head, &frame, &[], &env.tail]).expect("write");
            assert_eq!(out.got, expected, "{step} bytes per write");
        }
    }

    #[test]
    fn garbage_loses_the_link_and_shutdown_is_reported() {
        let (mut daemon, session) = UnixStream::pair().expect("socket pair");
        let (lost_tx, _lost_rx) = mpsc::channel();
        let mut reader = LinkReader::new(lost_tx);
        // A length prefix past the limit.
        daemon.write_all(&[0xff; 16]).expect("write");
        assert_eq!(read_all(&mut reader, &session).1, LinkStatus::Lost);
        assert!(reader.lost().is_none(), "nothing was attached");

        let (mut daemon, session) = UnixStream::pair().expect("socket pair");
        let (lost_tx, _lost_rx) = mpsc::channel();
        let mut reader = LinkReader::new(lost_tx);
        let bytes = framing::encode(&ToSession::Shutdown).expect("encode");
        daemon.write_all(&bytes).expect("write");
        assert_eq!(read_all(&mut reader, &session).1, LinkStatus::Shutdown);
    }
}
