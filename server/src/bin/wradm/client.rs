//! The admin socket exchange: connect, one framed [`AdminRequest`] out, one framed
//! [`AdminReply`] back, all within a deadline.

use std::{
    io::{ErrorKind, Read, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use wayray_protocol::{
    framing::{self, FramingError},
    sessions::{AdminReply, AdminRequest},
    FrameReader,
};

/// Longest reply accepted: a session list of thousands of sessions is well under this; more is
/// not from wrsrvd.
const MAX_REPLY_LEN: u32 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens on the socket, or it does not exist.
    #[error("is wrsrvd running? (socket {}): {reason}", path.display())]
    NotRunning { path: PathBuf, reason: String },
    #[error("no permission to use the admin socket {}: run wradm as the user wrsrvd runs as (root, normally)", path.display())]
    Permission { path: PathBuf },
    #[error("cannot connect to the admin socket {}: {source}", path.display())]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("wrsrvd did not answer within {} (socket {})", humanize(*timeout), path.display())]
    Timeout { path: PathBuf, timeout: Duration },
    #[error("cannot send the request to wrsrvd: {0}")]
    Send(std::io::Error),
    #[error("cannot read wrsrvd's answer: {0}")]
    Receive(std::io::Error),
    #[error("wrsrvd closed the connection without answering (see its log)")]
    Closed,
    #[error("wrsrvd sent a reply wradm does not understand (is it another version?): {0}")]
    Reply(FramingError),
}

impl ClientError {
    /// True when wrsrvd could not be reached at all, as opposed to failing the request.
    pub fn unreachable(&self) -> bool {
        matches!(
            self,
            ClientError::NotRunning { .. }
                | ClientError::Permission { .. }
                | ClientError::Connect { .. }
        )
    }
}

fn humanize(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// Sends `request` to the daemon at `socket` and waits at most `timeout` for its reply.
pub fn exchange(
    socket: &Path,
    request: &AdminRequest,
    timeout: Duration,
) -> Result<AdminReply, ClientError> {
    let deadline = Instant::now() + timeout;
    let mut stream = UnixStream::connect(socket).map_err(|source| {
        let path = socket.to_owned();
        match source.kind() {
            ErrorKind::ConnectionRefused | ErrorKind::NotFound => ClientError::NotRunning {
                path,
                reason: match source.kind() {
                    ErrorKind::NotFound => "no such socket".into(),
                    _ => "connection refused".into(),
                },
            },
            ErrorKind::PermissionDenied => ClientError::Permission { path },
            _ => ClientError::Connect { path, source },
        }
    })?;
    let timed_out = || ClientError::Timeout {
        path: socket.to_owned(),
        timeout,
    };
    let is_timeout =
        |e: &std::io::Error| matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut);

    let bytes =
        framing::encode(request).map_err(|e| ClientError::Send(std::io::Error::other(e)))?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(ClientError::Send)?;
    stream.write_all(&bytes).map_err(|e| {
        if is_timeout(&e) {
            timed_out()
        } else {
            ClientError::Send(e)
        }
    })?;

    let mut reader = FrameReader::new(MAX_REPLY_LEN);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        if let Some(reply) = reader.next::<AdminReply>().map_err(ClientError::Reply)? {
            return Ok(reply);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out());
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(ClientError::Receive)?;
        match stream.read(&mut chunk) {
            Ok(0) => {
                return Err(match reader.finish() {
                    Ok(()) => ClientError::Closed,
                    Err(e) => ClientError::Reply(e),
                })
            }
            Ok(n) => reader.push(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => return Err(timed_out()),
            Err(e) => return Err(ClientError::Receive(e)),
        }
    }
}
