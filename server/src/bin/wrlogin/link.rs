//! The greeter's side of `login.sock`: one connection per attempt, one framed
//! [`LoginRequest`] out, one [`LoginReply`] back. It runs on its own thread (PAM takes seconds
//! on a wrong password) and hands the outcome to the event loop.

use std::{
    io::{Read, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::Duration,
};

use wayray_protocol::{
    framing::{self, FramingError},
    sessions::{LoginReply, LoginRequest},
    FrameReader,
};
use zeroize::{Zeroize, Zeroizing};

use crate::form::{Credentials, Outcome};

/// A reply is a few words; anything longer is not from the launcher.
const MAX_REPLY_LEN: u32 = 64 * 1024;
/// How long the launcher may take to answer (PAM delays wrong passwords by seconds; this only
/// catches a launcher that hangs).
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("no login socket (set WAYRAY_LOGIN_SOCKET or pass --login-socket)")]
    NoSocket,
    #[error("no login ticket (WAYRAY_LOGIN_TICKET is not set)")]
    NoTicket,
    #[error("cannot connect to {}: {source}", path.display())]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot send the login: {0}")]
    Send(std::io::Error),
    #[error("no answer: {0}")]
    Receive(std::io::Error),
    #[error("the login service closed the connection without answering")]
    Closed,
    #[error("the login service sent a bad reply: {0}")]
    Reply(FramingError),
}

/// Where logins go, as the greeter was started with.
#[derive(Debug, Clone)]
pub struct LoginLink {
    pub socket: Option<PathBuf>,
    /// The greeter's `WAYRAY_LOGIN_TICKET`: names this greeter session to the launcher; a
    /// locker's `WAYRAY_UNLOCK_TICKET`: names its session and user.
    pub ticket: Option<String>,
    /// A locker: send [`LoginRequest::Unlock`] (the ticket decides the user) instead of a login.
    pub unlock: bool,
}

impl LoginLink {
    /// Sends `creds` on a new thread and calls `done` there with the outcome.
    pub fn start(&self, creds: Credentials, done: impl Fn(Outcome) + Clone + Send + 'static) {
        let link = self.clone();
        let on_error = done.clone();
        let spawned = std::thread::Builder::new()
            .name("wrlogin-link".into())
            .spawn(move || {
                let username = creds.username.clone();
                let outcome = match link.login(creds) {
                    Ok(LoginReply::Accepted) => {
                        tracing::info!(user = %username, "login accepted");
                        Outcome::Accepted
                    }
                    Ok(LoginReply::Refused { message }) => {
                        tracing::info!(user = %username, %message, "login refused");
                        Outcome::Refused(message)
                    }
                    Err(err) => {
                        tracing::warn!(user = %username, %err, "login service unavailable");
                        Outcome::Unavailable(err.to_string())
                    }
                };
                done(outcome);
            });
        if let Err(err) = spawned {
            // Without a thread there is no answer coming: say so instead of "Checking…" forever.
            tracing::error!(%err, "cannot start the login thread");
            on_error(Outcome::Unavailable(format!(
                "cannot start a thread: {err}"
            )));
        }
    }

    fn login(&self, creds: Credentials) -> Result<LoginReply, LinkError> {
        let path = self.socket.as_deref().ok_or(LinkError::NoSocket)?;
        let ticket = self.ticket.clone().ok_or(LinkError::NoTicket)?;
        let mut stream = connect(path)?;
        let request = if self.unlock {
            LoginRequest::Unlock {
                ticket,
                password: creds.password.to_string(),
            }
        } else {
            LoginRequest::Login {
                ticket,
                username: creds.username,
                password: creds.password.to_string(),
            }
        };
        exchange(&mut stream, request)
    }
}

fn connect(path: &Path) -> Result<UnixStream, LinkError> {
    let stream = UnixStream::connect(path).map_err(|source| LinkError::Connect {
        path: path.to_path_buf(),
        source,
    })?;
    stream
        .set_read_timeout(Some(REPLY_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(REPLY_TIMEOUT)))
        .map_err(LinkError::Send)?;
    Ok(stream)
}

/// Sends `request` and reads one reply. Every copy of the password this makes is wiped before
/// the reply is awaited.
pub fn exchange<S: Read + Write>(
    stream: &mut S,
    mut request: LoginRequest,
) -> Result<LoginReply, LinkError> {
    let encoded = framing::encode(&request);
    request.password_mut().zeroize();
    let bytes = Zeroizing::new(encoded.map_err(|e| LinkError::Send(std::io::Error::other(e)))?);
    stream.write_all(&bytes).map_err(LinkError::Send)?;
    stream.flush().map_err(LinkError::Send)?;
    drop(bytes);

    let mut reader = FrameReader::new(MAX_REPLY_LEN);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(reply) = reader.next::<LoginReply>().map_err(LinkError::Reply)? {
            return Ok(reply);
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Err(LinkError::Closed),
            Ok(n) => reader.push(&chunk[..n]),
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(LinkError::Receive(err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    fn request(password: &str) -> LoginRequest {
        LoginRequest::Login {
            ticket: "t-1".into(),
            username: "alice".into(),
            password: password.into(),
        }
    }

    /// Reads one request from `peer`, answers `reply` (already framed).
    fn serve_once(mut peer: UnixStream, reply: Vec<u8>) -> std::thread::JoinHandle<LoginRequest> {
        std::thread::spawn(move || {
            let mut reader = FrameReader::new(1 << 16);
            let mut buf = [0u8; 256];
            let req = loop {
                if let Some(req) = reader.next::<LoginRequest>().unwrap() {
                    break req;
                }
                let n = peer.read(&mut buf).unwrap();
                assert!(n > 0, "greeter hung up before its request");
                reader.push(&buf[..n]);
            };
            peer.write_all(&reply).unwrap();
            req
        })
    }

    #[test]
    fn a_login_round_trip_carries_ticket_user_and_password() {
        let (mut ours, theirs) = UnixStream::pair().unwrap();
        let server = serve_once(theirs, framing::encode(&LoginReply::Accepted).unwrap());
        assert_eq!(
            exchange(&mut ours, request("pw")).unwrap(),
            LoginReply::Accepted
        );
        assert_eq!(server.join().unwrap(), request("pw"));
    }

    #[test]
    fn a_refusal_carries_its_message() {
        let (mut ours, theirs) = UnixStream::pair().unwrap();
        let reply = LoginReply::Refused {
            message: "Wrong user name or password".into(),
        };
        let server = serve_once(theirs, framing::encode(&reply).unwrap());
        assert_eq!(exchange(&mut ours, request("bad")).unwrap(), reply);
        server.join().unwrap();
    }

    #[test]
    fn a_hang_up_or_garbage_is_an_error_not_a_panic() {
        let (mut ours, theirs) = UnixStream::pair().unwrap();
        let server = serve_once(theirs, Vec::new());
        assert!(matches!(
            exchange(&mut ours, request("pw")),
            Err(LinkError::Closed)
        ));
        server.join().unwrap();

        let (mut ours, theirs) = UnixStream::pair().unwrap();
        let server = serve_once(theirs, vec![2, 0, 0, 0, 99, 99]);
        assert!(matches!(
            exchange(&mut ours, request("pw")),
            Err(LinkError::Reply(_))
        ));
        server.join().unwrap();

        let (mut ours, theirs) = UnixStream::pair().unwrap();
        let server = serve_once(theirs, u32::MAX.to_le_bytes().to_vec());
        assert!(matches!(
            exchange(&mut ours, request("pw")),
            Err(LinkError::Reply(FramingError::TooLong { .. }))
        ));
        server.join().unwrap();
    }

    #[test]
    fn missing_socket_or_ticket_and_refused_connections_are_reported() {
        let creds = || Credentials {
            username: "alice".into(),
            password: Zeroizing::new("pw".into()),
        };
        let no_socket = LoginLink {
            socket: None,
            ticket: Some("t".into()),
            unlock: false,
        };
        assert!(matches!(no_socket.login(creds()), Err(LinkError::NoSocket)));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("login.sock");
        let no_ticket = LoginLink {
            socket: Some(path.clone()),
            ticket: None,
            unlock: false,
        };
        assert!(matches!(no_ticket.login(creds()), Err(LinkError::NoTicket)));
        let nobody = LoginLink {
            socket: Some(path.clone()),
            ticket: Some("t".into()),
            unlock: false,
        };
        let err = nobody.login(creds()).unwrap_err();
        assert!(matches!(err, LinkError::Connect { .. }));
        assert!(err.to_string().contains("login.sock"), "{err}");
    }

    #[test]
    fn a_locker_sends_an_unlock_with_its_ticket_and_no_user_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("login.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let link = LoginLink {
            socket: Some(path),
            ticket: Some("unlock-1".into()),
            unlock: true,
        };
        let (tx, rx) = std::sync::mpsc::channel();
        link.start(
            Credentials {
                username: "alice".into(),
                password: Zeroizing::new("pw".into()),
            },
            move |outcome| tx.send(outcome).unwrap(),
        );
        let (peer, _) = listener.accept().unwrap();
        let got = serve_once(peer, framing::encode(&LoginReply::Accepted).unwrap())
            .join()
            .unwrap();
        assert_eq!(
            got,
            LoginRequest::Unlock {
                ticket: "unlock-1".into(),
                password: "pw".into()
            }
        );
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)).unwrap(),
            Outcome::Accepted
        );
    }

    #[test]
    fn start_reports_the_outcome_from_its_thread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("login.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let link = LoginLink {
            socket: Some(path),
            ticket: Some("t-9".into()),
            unlock: false,
        };
        let (tx, rx) = std::sync::mpsc::channel();
        link.start(
            Credentials {
                username: "bob".into(),
                password: Zeroizing::new("hunter2".into()),
            },
            move |outcome| tx.send(outcome).unwrap(),
        );
        let (peer, _) = listener.accept().unwrap();
        let reply = LoginReply::Refused {
            message: "nope".into(),
        };
        let got = serve_once(peer, framing::encode(&reply).unwrap())
            .join()
            .unwrap();
        assert_eq!(
            got,
            LoginRequest::Login {
                ticket: "t-9".into(),
                username: "bob".into(),
                password: "hunter2".into()
            }
        );
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)).unwrap(),
            Outcome::Refused("nope".into())
        );
    }
}
