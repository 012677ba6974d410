//! Framed messages over the daemon's Unix sockets (same framing as the QUIC streams).

use serde::{de::DeserializeOwned, Serialize};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::unix::{OwnedReadHalf, OwnedWriteHalf},
    sync::mpsc,
};
use wayray_protocol::{framing, FrameReader, DEFAULT_MAX_MESSAGE_LEN};

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad message: {0}")]
    Framing(#[from] wayray_protocol::FramingError),
}

/// Reads framed messages of one type from a socket.
pub struct MessageReader {
    half: OwnedReadHalf,
    frames: FrameReader,
    buf: Vec<u8>,
}

impl MessageReader {
    pub fn new(half: OwnedReadHalf) -> Self {
        Self {
            half,
            frames: FrameReader::new(DEFAULT_MAX_MESSAGE_LEN),
            buf: vec![0; 64 * 1024],
        }
    }

    /// The next message; `Ok(None)` when the peer closed the socket.
    pub async fn next<T: DeserializeOwned>(&mut self) -> Result<Option<T>, WireError> {
        loop {
            if let Some(msg) = self.frames.next::<T>()? {
                return Ok(Some(msg));
            }
            let want = self.frames.wanted().clamp(1, self.buf.len());
            let n = self.half.read(&mut self.buf[..want]).await?;
            if n == 0 {
                self.frames.finish()?;
                return Ok(None);
            }
            self.frames.push(&self.buf[..n]);
        }
    }
}

/// Writes everything sent on the returned channel to `half`, in order, until either side ends.
pub fn spawn_writer<T: Serialize + Send + 'static>(
    mut half: OwnedWriteHalf,
    what: &'static str,
) -> mpsc::UnboundedSender<T> {
    let (tx, mut rx) = mpsc::unbounded_channel::<T>();
    tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            let bytes = match framing::encode(&msg) {
                Ok(b) => b,
                Err(err) => {
                    tracing::error!(%err, what, "cannot encode a message");
                    continue;
                }
            };
            if let Err(err) = half.write_all(&bytes).await {
                tracing::debug!(%err, what, "peer socket closed");
                return;
            }
        }
    });
    tx
}

/// Binds a Unix socket, replacing a stale one left by a previous run.
pub fn bind(path: &std::path::Path, mode: u32) -> std::io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err),
    }
    let listener = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(listener)
}

/// The uid of the process at the other end of `stream`.
pub fn peer_uid(stream: &tokio::net::UnixStream) -> Option<u32> {
    stream.peer_cred().ok().map(|c| c.uid())
}

/// Accepts connections on `listener` until it fails, handling each on its own task.
pub async fn accept_loop<F, Fut>(
    listener: tokio::net::UnixListener,
    daemon: super::Shared,
    what: &'static str,
    handle: F,
) where
    F: Fn(tokio::net::UnixStream, super::Shared) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(handle(stream, daemon.clone()));
            }
            Err(err) => {
                tracing::error!(%err, what, "socket failed");
                return;
            }
        }
    }
}
