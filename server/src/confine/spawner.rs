//! A confined process's way to start programs that must not inherit its seccomp filter.
//!
//! A seccomp filter (and `no_new_privs`) is inherited by every child, so a session compositor
//! under its filter cannot start a client that needs more than the compositor itself, and the
//! daemon, once it has left root, must not start the shared session as its own restricted self.
//! So before the filter goes on, such a process forks a *spawner*: a small child that has
//! neither the filter nor anything else the process set up later, and that starts programs on
//! request over a socket pair and reports their exits.
//!
//! The interface is one call: [`Spawner::spawn`] with an argv and environment changes, answered
//! with the pid and a channel that yields the exit status. What a request may start is decided
//! in the spawner by the `build` function it was forked with: the session's spawner runs any
//! client command (its clients are the user's own programs), the daemon's spawner only the
//! shared session with a fixed command line.

use std::{
    collections::HashMap,
    ffi::OsString,
    io::{Read, Write},
    os::unix::{
        ffi::{OsStrExt, OsStringExt},
        net::UnixStream,
    },
    process::Command,
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc, Arc, Mutex, OnceLock,
    },
};

use serde::{Deserialize, Serialize};
use wayray_protocol::{framing, FrameReader};

/// What to start: `argv[0]` is looked up on `PATH`; `env` sets (`Some`) or removes (`None`)
/// variables of the spawner's environment (the process's own, as it was when it forked it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub argv: Vec<Vec<u8>>,
    pub env: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// SIGTERM it when the spawner exits (`PR_SET_PDEATHSIG`), as the spawner does when the
    /// process that forked it ends, even by a crash: a session's own services (its PipeWire)
    /// must never outlive it.
    pub die_with_parent: bool,
}

impl Request {
    /// `program args…` with no environment changes.
    pub fn new<I, S>(program: impl Into<OsString>, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let mut argv = vec![program.into().into_vec()];
        argv.extend(args.into_iter().map(|a| a.into().into_vec()));
        Self {
            argv,
            env: Vec::new(),
            die_with_parent: false,
        }
    }

    /// See [`Request::die_with_parent`].
    pub fn die_with_parent(mut self) -> Self {
        self.die_with_parent = true;
        self
    }

    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env
            .push((key.into().into_vec(), Some(value.into().into_vec())));
        self
    }

    pub fn env_remove(mut self, key: impl Into<OsString>) -> Self {
        self.env.push((key.into().into_vec(), None));
        self
    }

    /// The request as a [`Command`] (what the session's spawner runs).
    pub fn command(&self) -> std::io::Result<Command> {
        let (program, args) = self
            .argv
            .split_first()
            .ok_or_else(|| std::io::Error::other("empty argv"))?;
        let mut cmd = Command::new(std::ffi::OsStr::from_bytes(program));
        cmd.args(args.iter().map(|a| std::ffi::OsStr::from_bytes(a)));
        for (k, v) in &self.env {
            let k = std::ffi::OsStr::from_bytes(k);
            match v {
                Some(v) => cmd.env(k, std::ffi::OsStr::from_bytes(v)),
                None => cmd.env_remove(k),
            };
        }
        if self.die_with_parent {
            use std::os::unix::process::CommandExt;
            // SAFETY: prctl is async-signal-safe and touches nothing of the parent's.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        Ok(cmd)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Call {
    id: u64,
    request: Request,
}

#[derive(Debug, Serialize, Deserialize)]
enum Reply {
    Started { id: u64, pid: u32 },
    Failed { id: u64, error: String },
    Exited { pid: u32, status: String },
}

/// A program the spawner started.
#[derive(Debug)]
pub struct Spawned {
    pub pid: u32,
    /// Yields the exit status ("exit status: 0", "signal: 9 (SIGKILL)") once it exits; closed
    /// without a value if the spawner itself went away.
    pub exit: mpsc::Receiver<String>,
}

type Waiters = HashMap<u64, mpsc::Sender<Result<Spawned, String>>>;

/// The confined process's end of its spawner.
pub struct Spawner {
    writer: Mutex<UnixStream>,
    next: AtomicU64,
    waiting: Arc<Mutex<Waiters>>,
}

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("cannot fork the spawner: {0}")]
    Fork(std::io::Error),
    #[error("the spawner is gone: {0}")]
    Gone(std::io::Error),
    #[error("the spawner is gone")]
    NoReply,
    #[error("cannot start it: {0}")]
    Start(String),
}

impl Spawner {
    /// Forks the spawner. Call it while the process has a single thread (early in `main`):
    /// the child runs `build` for each request and starts what it returns.
    pub fn fork(
        name: &'static str,
        build: impl Fn(&Request) -> std::io::Result<Command>,
    ) -> Result<Spawner, SpawnError> {
        let (ours, theirs) = UnixStream::pair().map_err(SpawnError::Fork)?;
        // SAFETY: called while single-threaded; the child only uses its own socket and exits.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(SpawnError::Fork(std::io::Error::last_os_error()));
        }
        if pid == 0 {
            drop(ours);
            serve(name, theirs, build);
        }
        drop(theirs);
        let reader = ours.try_clone().map_err(SpawnError::Fork)?;
        let waiting = Arc::new(Mutex::new(Waiters::new()));
        let w = waiting.clone();
        std::thread::Builder::new()
            .name("spawner-replies".into())
            .spawn(move || read_replies(reader, w))
            .map_err(SpawnError::Fork)?;
        tracing::debug!(name, pid, "spawner started");
        Ok(Spawner {
            writer: Mutex::new(ours),
            next: AtomicU64::new(1),
            waiting,
        })
    }

    /// Starts `request` in the spawner; returns once it runs (or failed to start).
    pub fn spawn(&self, request: Request) -> Result<Spawned, SpawnError> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        if let Ok(mut w) = self.waiting.lock() {
            w.insert(id, tx);
        }
        let bytes =
            framing::encode(&Call { id, request }).map_err(|e| SpawnError::Start(e.to_string()))?;
        match self.writer.lock() {
            Ok(mut s) => s.write_all(&bytes).map_err(SpawnError::Gone)?,
            Err(_) => return Err(SpawnError::NoReply),
        }
        match rx.recv() {
            Ok(Ok(spawned)) => Ok(spawned),
            Ok(Err(error)) => Err(SpawnError::Start(error)),
            Err(_) => Err(SpawnError::NoReply),
        }
    }
}

static GLOBAL: OnceLock<Spawner> = OnceLock::new();

/// Makes `spawner` the one [`global`] returns (a session compositor's, for every client start).
pub fn set_global(spawner: Spawner) {
    let _ = GLOBAL.set(spawner);
}

/// This process's spawner, if it forked one.
pub fn global() -> Option<&'static Spawner> {
    GLOBAL.get()
}

fn read_replies(mut stream: UnixStream, waiting: Arc<Mutex<Waiters>>) {
    let mut exits: HashMap<u32, mpsc::Sender<String>> = HashMap::new();
    let mut frames = FrameReader::new(1 << 20);
    let mut buf = [0u8; 4096];
    loop {
        loop {
            match frames.next::<Reply>() {
                Ok(Some(Reply::Started { id, pid })) => {
                    let (tx, exit) = mpsc::channel();
                    exits.insert(pid, tx);
                    if let Some(w) = waiting.lock().ok().and_then(|mut w| w.remove(&id)) {
                        let _ = w.send(Ok(Spawned { pid, exit }));
                    }
                }
                Ok(Some(Reply::Failed { id, error })) => {
                    if let Some(w) = waiting.lock().ok().and_then(|mut w| w.remove(&id)) {
                        let _ = w.send(Err(error));
                    }
                }
                Ok(Some(Reply::Exited { pid, status })) => {
                    if let Some(tx) = exits.remove(&pid) {
                        let _ = tx.send(status);
                    }
                }
                Ok(None) => break,
                Err(err) => {
                    tracing::error!(%err, "bad reply from the spawner");
                    return finish(&waiting);
                }
            }
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return finish(&waiting),
            Ok(n) => frames.push(&buf[..n]),
        }
    }
}

/// The spawner is gone: every waiting caller gets an error (its sender is dropped).
fn finish(waiting: &Mutex<Waiters>) {
    tracing::error!("the spawner exited; no more programs can be started");
    if let Ok(mut w) = waiting.lock() {
        w.clear();
    }
}

/// The spawner's loop (in the forked child): start what is asked, report starts and exits,
/// exit when the parent closes its end.
fn serve(
    name: &str,
    stream: UnixStream,
    build: impl Fn(&Request) -> std::io::Result<Command>,
) -> ! {
    let writer = match stream.try_clone() {
        Ok(w) => Arc::new(Mutex::new(w)),
        Err(_) => std::process::exit(1),
    };
    let send = move |writer: &Mutex<UnixStream>, reply: &Reply| {
        if let (Ok(bytes), Ok(mut w)) = (framing::encode(reply), writer.lock()) {
            let _ = w.write_all(&bytes);
        }
    };
    let mut stream = stream;
    let mut frames = FrameReader::new(1 << 20);
    let mut buf = [0u8; 4096];
    loop {
        loop {
            let call = match frames.next::<Call>() {
                Ok(Some(call)) => call,
                Ok(None) => break,
                Err(_) => std::process::exit(1),
            };
            match build(&call.request).and_then(|mut c| c.spawn()) {
                Ok(mut child) => {
                    let pid = child.id();
                    send(&writer, &Reply::Started { id: call.id, pid });
                    let writer = writer.clone();
                    let spawned = std::thread::Builder::new()
                        .name(format!("{name}-wait"))
                        .spawn(move || {
                            let status = match child.wait() {
                                Ok(s) => s.to_string(),
                                Err(e) => format!("cannot wait: {e}"),
                            };
                            send(&writer, &Reply::Exited { pid, status });
                        });
                    if spawned.is_err() {
                        // No thread to wait: the child becomes a zombie until the spawner exits.
                    }
                }
                Err(e) => send(
                    &writer,
                    &Reply::Failed {
                        id: call.id,
                        error: e.to_string(),
                    },
                ),
            }
        }
        match stream.read(&mut buf) {
            Ok(0) => std::process::exit(0),
            Ok(n) => frames.push(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => std::process::exit(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_becomes_a_command() {
        let req = Request::new("sh", ["-c", "exit 3"])
            .env("A", "1")
            .env_remove("B");
        let cmd = req.command().unwrap();
        assert_eq!(cmd.get_program(), "sh");
        assert_eq!(cmd.get_args().collect::<Vec<_>>(), ["-c", "exit 3"]);
        assert!(Request::default().command().is_err());
    }
}
