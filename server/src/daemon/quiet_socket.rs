//! A Unix socket the runtime watches for reading only.
//!
//! Tokio registers its sockets for reading and writing, edge-triggered: every time the peer
//! reads what we wrote, the socket turns writable again and the daemon wakes up with nothing to
//! do. A session reads each input event and frame ack the daemon relays, so that was one empty
//! wake-up of the daemon per message (about two per key typed). Here the socket is registered
//! for reading; a write goes straight to the socket and waits for room (a temporary
//! registration for writing) only when the session has stopped reading.

use std::{
    io,
    os::{fd::AsRawFd, unix::net::UnixStream},
    sync::Arc,
};

use bytes::BytesMut;
use tokio::io::{unix::AsyncFd, Interest};

/// Both ends of one socket: the reader and the writer task each hold a clone.
#[derive(Clone)]
pub struct QuietSocket {
    fd: Arc<AsyncFd<UnixStream>>,
}

impl QuietSocket {
    /// Takes `stream` over from tokio's own registration.
    pub fn new(stream: tokio::net::UnixStream) -> io::Result<Self> {
        let stream = stream.into_std()?;
        stream.set_nonblocking(true)?;
        Ok(Self {
            fd: Arc::new(register(stream, Interest::READABLE)?),
        })
    }

    /// Reads what the socket has into `buf`'s spare capacity (reserved by the caller); 0 at the
    /// end of the stream.
    pub async fn read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
        loop {
            let mut ready = self.fd.readable().await?;
            let room = buf.capacity() - buf.len();
            match ready.try_io(|fd| recv_into(fd.get_ref(), buf)) {
                Ok(Ok(n)) => {
                    // Less than asked for: the socket is drained (as tokio's own streams
                    // assume), so the next read waits for data instead of trying again.
                    if n > 0 && n < room {
                        ready.clear_ready();
                    }
                    return Ok(n);
                }
                Ok(Err(err)) => return Err(err),
                Err(_would_block) => continue,
            }
        }
    }

    /// Writes all of `bytes`, waiting for room only when the socket buffer is full.
    pub async fn write_all(&self, mut bytes: &[u8]) -> io::Result<()> {
        let mut room: Option<AsyncFd<UnixStream>> = None;
        while !bytes.is_empty() {
            match send(self.fd.get_ref(), bytes) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => bytes = &bytes[n..],
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    // The session is behind: watch for room on a second descriptor, for as
                    // long as this message needs it.
                    let watch = match room.take() {
                        Some(watch) => watch,
                        None => register(self.fd.get_ref().try_clone()?, Interest::WRITABLE)?,
                    };
                    watch.writable().await?.clear_ready();
                    room = Some(watch);
                }
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }
}

/// Registers `stream` with the runtime for `interest` only.
fn register(stream: UnixStream, interest: Interest) -> io::Result<AsyncFd<UnixStream>> {
    // SAFETY: the `UnixStream` owns its descriptor, which stays open and the same for as long
    // as the `AsyncFd` holds the stream.
    unsafe { AsyncFd::register_with_interest(stream, interest) }.map_err(|e| e.into_parts().1)
}

/// One `send` of (a prefix of) `bytes`; a session gone away is an error, never SIGPIPE.
fn send(stream: &UnixStream, bytes: &[u8]) -> io::Result<usize> {
    // SAFETY: send reads at most `bytes.len()` bytes from the slice.
    let n = unsafe {
        libc::send(
            stream.as_raw_fd(),
            bytes.as_ptr().cast(),
            bytes.len(),
            libc::MSG_NOSIGNAL,
        )
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// One `recv` into `buf`'s spare capacity.
fn recv_into(stream: &UnixStream, buf: &mut BytesMut) -> io::Result<usize> {
    let spare = buf.spare_capacity_mut();
    // SAFETY: recv writes at most `spare.len()` bytes into memory `buf` owns and reports how
    // many it wrote; only those are added to `buf`'s length below.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            spare.as_mut_ptr().cast(),
            spare.len(),
            0,
        )
    };
    let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
    // SAFETY: the first `n` spare bytes were just written by recv.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[tokio::test]
    async fn reads_and_writes_including_past_a_full_socket_buffer() {
        let (ours, theirs) = tokio::net::UnixStream::pair().expect("socket pair");
        let socket = QuietSocket::new(ours).expect("register");
        let mut peer = theirs.into_std().expect("std");
        peer.set_nonblocking(false).expect("blocking");

        peer.write_all(b"hello").expect("write");
        let mut buf = BytesMut::with_capacity(64);
        let n = socket.read_buf(&mut buf).await.expect("read");
        assert_eq!(&buf[..n], b"hello");

        // Far more than a socket buffer holds: the write waits for the peer to read.
        let big: Vec<u8> = (0..4_000_000u32).map(|i| (i % 241) as u8).collect();
        let reader = std::thread::spawn(move || {
            let mut got = vec![0u8; 4_000_000];
            peer.read_exact(&mut got).expect("read");
            (got, peer)
        });
        socket.write_all(&big).await.expect("write");
        let (got, peer) = reader.join().expect("reader");
        assert!(got == big, "bytes differ");

        drop(peer);
        buf.clear();
        buf.reserve(64);
        assert_eq!(socket.read_buf(&mut buf).await.expect("eof"), 0);
    }
}
