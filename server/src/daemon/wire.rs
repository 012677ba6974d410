//! Framed messages over the daemon's Unix sockets (same framing as the QUIC streams).

use bytes::{Buf, Bytes, BytesMut};
use serde::{de::DeserializeOwned, Serialize};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::unix::{OwnedReadHalf, OwnedWriteHalf},
    sync::mpsc,
};
use wayray_protocol::{
    framing::{self, HEADER_LEN},
    DEFAULT_MAX_MESSAGE_LEN,
};

use super::quiet_socket::QuietSocket;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad message: {0}")]
    Framing(#[from] wayray_protocol::FramingError),
}

/// Bytes asked of the socket per read when no large message is pending: a few small messages
/// (input, acks, typing's frames) arrive in one read, and a message's body is then a slice of
/// this buffer.
const READ_CHUNK: usize = 64 * 1024;

/// Where a [`MessageReader`] reads from.
enum ReadSide {
    Tokio(OwnedReadHalf),
    Quiet(QuietSocket),
}

impl ReadSide {
    async fn read_buf(&mut self, buf: &mut BytesMut) -> std::io::Result<usize> {
        match self {
            ReadSide::Tokio(half) => half.read_buf(buf).await,
            ReadSide::Quiet(socket) => socket.read_buf(buf).await,
        }
    }
}

/// Reads framed messages from a socket.
pub struct MessageReader {
    half: ReadSide,
    /// Bytes read and not yet returned; each message is split off it without a copy.
    buf: BytesMut,
    max_len: u32,
}

impl MessageReader {
    pub fn new(half: OwnedReadHalf) -> Self {
        Self::with_side(ReadSide::Tokio(half))
    }

    /// Reads a socket registered for reading only (a session's: see [`QuietSocket`]).
    pub fn quiet(socket: QuietSocket) -> Self {
        Self::with_side(ReadSide::Quiet(socket))
    }

    fn with_side(half: ReadSide) -> Self {
        Self {
            half,
            buf: BytesMut::new(),
            max_len: DEFAULT_MAX_MESSAGE_LEN,
        }
    }

    /// The next message; `Ok(None)` when the peer closed the socket.
    pub async fn next<T: DeserializeOwned>(&mut self) -> Result<Option<T>, WireError> {
        match self.next_body().await? {
            Some(body) => Ok(Some(framing::decode_body(&body)?)),
            None => Ok(None),
        }
    }

    /// The next message's body (without its length prefix), shared with the read buffer rather
    /// than copied out of it: a relayed frame goes on to the appliance's stream as it is.
    /// `Ok(None)` when the peer closed the socket between messages.
    pub async fn next_body(&mut self) -> Result<Option<Bytes>, WireError> {
        loop {
            let missing = match message_len(&self.buf, self.max_len)? {
                Some(len) if self.buf.len() >= HEADER_LEN + len => {
                    let mut message = self.buf.split_to(HEADER_LEN + len);
                    message.advance(HEADER_LEN);
                    return Ok(Some(message.freeze()));
                }
                Some(len) => HEADER_LEN + len - self.buf.len(),
                None => HEADER_LEN - self.buf.len(),
            };
            // Room for the rest of a large message in one go, or a chunk of small ones.
            self.buf.reserve(missing.max(READ_CHUNK));
            let n = self.half.read_buf(&mut self.buf).await?;
            if n == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(wayray_protocol::FramingError::Truncated {
                    buffered: self.buf.len(),
                }
                .into());
            }
        }
    }
}

/// The body length of the message at the start of `buf`, once its prefix is there.
fn message_len(buf: &[u8], max_len: u32) -> Result<Option<usize>, wayray_protocol::FramingError> {
    let Some(prefix) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let len = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    if len > max_len {
        return Err(wayray_protocol::FramingError::TooLong {
            len: len.into(),
            max: max_len,
        });
    }
    Ok(Some(len as usize))
}

/// At most this many bytes of queued messages go out in one write.
const WRITE_BATCH: usize = 64 * 1024;

/// Where a writer task writes.
enum WriteSide {
    Tokio(OwnedWriteHalf),
    Quiet(QuietSocket),
}

impl WriteSide {
    async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            WriteSide::Tokio(half) => half.write_all(bytes).await,
            WriteSide::Quiet(socket) => socket.write_all(bytes).await,
        }
    }
}

/// Writes everything sent on the returned channel to `half`, in order, until either side ends.
pub fn spawn_writer<T: Serialize + Send + 'static>(
    half: OwnedWriteHalf,
    what: &'static str,
) -> mpsc::UnboundedSender<T> {
    spawn_side_writer(WriteSide::Tokio(half), what)
}

/// [`spawn_writer`] for a socket registered for reading only (see [`QuietSocket`]).
pub fn spawn_quiet_writer<T: Serialize + Send + 'static>(
    socket: QuietSocket,
    what: &'static str,
) -> mpsc::UnboundedSender<T> {
    spawn_side_writer(WriteSide::Quiet(socket), what)
}

fn spawn_side_writer<T: Serialize + Send + 'static>(
    mut side: WriteSide,
    what: &'static str,
) -> mpsc::UnboundedSender<T> {
    let (tx, mut rx) = mpsc::unbounded_channel::<T>();
    tokio::spawn(async move {
        let mut batch = Vec::new();
        while let Some(msg) = rx.recv().await {
            batch.clear();
            append(&mut batch, &msg, what);
            // What was queued meanwhile (a key's press and release, an ack) goes in the same
            // write: one system call and one wake-up of the peer.
            while batch.len() < WRITE_BATCH {
                match rx.try_recv() {
                    Ok(msg) => append(&mut batch, &msg, what),
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                continue;
            }
            if let Err(err) = side.write_all(&batch).await {
                tracing::debug!(%err, what, "peer socket closed");
                return;
            }
        }
    });
    tx
}

/// Appends `msg`, framed, to `batch`.
fn append<T: Serialize>(batch: &mut Vec<u8>, msg: &T, what: &'static str) {
    match framing::encode(msg) {
        Ok(bytes) => batch.extend_from_slice(&bytes),
        Err(err) => tracing::error!(%err, what, "cannot encode a message"),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use wayray_protocol::sessions::FromSession;

    fn frame(seq: u64, len: usize) -> FromSession {
        FromSession::Frame {
            appliance: 1,
            seq,
            bytes: (0..len).map(|i| (i % 251) as u8).collect(),
            encode_us: 5,
        }
    }

    #[tokio::test]
    async fn small_and_large_messages_come_whole_and_in_order_then_a_cut_one_is_an_error() {
        let (a, b) = tokio::net::UnixStream::pair().expect("socket pair");
        let (read, _) = b.into_split();
        let mut reader = MessageReader::new(read);
        // Several small messages in one write, then one larger than a read chunk.
        let msgs = [
            frame(1, 10),
            frame(2, 0),
            frame(3, 300),
            frame(4, 3 * READ_CHUNK),
        ];
        let mut bytes = Vec::new();
        for m in &msgs {
            bytes.extend(framing::encode(m).expect("encode"));
        }
        let (_, mut write) = a.into_split();
        let writer = tokio::spawn(async move {
            write.write_all(&bytes).await.expect("write");
            // A message cut off by the peer closing.
            write.write_all(&[9, 0, 0, 0, 1]).await.expect("write");
        });
        for m in &msgs {
            let got: FromSession = reader.next().await.expect("read").expect("a message");
            assert_eq!(&got, m);
        }
        writer.await.expect("writer");
        assert!(matches!(
            reader.next_body().await,
            Err(WireError::Framing(
                wayray_protocol::FramingError::Truncated { buffered: 5 }
            ))
        ));
    }

    #[tokio::test]
    async fn an_oversized_length_is_refused_before_reading_the_body() {
        let (mut a, b) = tokio::net::UnixStream::pair().expect("socket pair");
        let (read, _) = b.into_split();
        let mut reader = MessageReader::new(read);
        a.write_all(&(DEFAULT_MAX_MESSAGE_LEN + 1).to_le_bytes())
            .await
            .expect("write");
        assert!(matches!(
            reader.next_body().await,
            Err(WireError::Framing(
                wayray_protocol::FramingError::TooLong { .. }
            ))
        ));
        drop(a);
    }
}
