//! `wrsessd pam-session-helper`: the small root process that holds a user's PAM session.
//!
//! pam_limits, pam_env and friends act on the process that calls `pam_open_session` (its
//! resource limits, its environment), and a process may not raise its own hard limits back
//! without CAP_SYS_RESOURCE. So the launcher does not open user sessions itself: it starts this
//! helper (itself, re-executed), which opens the PAM session, starts the session's compositor
//! with what PAM set, waits for it, closes the PAM session and exits the way the compositor did.
//! The helper also outlives a launcher that crashes, so the PAM session is still closed when an
//! adopted session ends.
//!
//! The launcher writes one JSON [`Request`] on the helper's stdin; the helper answers one line
//! on stdout: `PID <compositor pid>` or `ERR <reason>`.

use std::{
    io::{self, BufRead, Read, Write},
    os::{fd::AsRawFd, unix::process::ExitStatusExt},
    path::PathBuf,
    process::{Child, ChildStdout, Command, ExitStatus, Stdio},
};

use serde::{Deserialize, Serialize};

use crate::{
    pam_auth::PamSession,
    process::{self, Launch},
    users,
};

/// The first argument that makes `wrsessd` the helper.
pub const ARG: &str = "pam-session-helper";
/// Largest request read (a command line and an environment).
const MAX_REQUEST_LEN: u64 = 256 * 1024;

/// What the helper starts, and for whom.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    pub service: String,
    pub user: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    pub log: PathBuf,
    /// `cgroup.procs` files of the session's cgroup, joined before exec.
    pub cgroup_procs: Vec<PathBuf>,
}

/// Starts the helper for `request`; returns it (our child) and the compositor's pid, or why
/// the session could not start.
pub fn start(request: &Request) -> Result<(Child, u32), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find wrsessd itself: {e}"))?;
    let json = serde_json::to_vec(request).map_err(|e| e.to_string())?;
    let mut helper = Command::new(exe)
        .arg(ARG)
        .env_clear()
        .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_default())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start the PAM session helper: {e}"))?;
    let answer = (|| -> Result<u32, String> {
        let mut stdin = helper.stdin.take().ok_or("helper has no stdin")?;
        stdin
            .write_all(&json)
            .map_err(|e| format!("writing to the PAM session helper: {e}"))?;
        drop(stdin);
        let stdout = helper.stdout.take().ok_or("helper has no stdout")?;
        read_answer(stdout)
    })();
    match answer {
        Ok(pid) => Ok((helper, pid)),
        Err(err) => {
            let _ = helper.kill();
            let _ = helper.wait();
            Err(err)
        }
    }
}

fn read_answer(stdout: ChildStdout) -> Result<u32, String> {
    let mut line = String::new();
    io::BufReader::new(stdout.take(4096))
        .read_line(&mut line)
        .map_err(|e| format!("reading the PAM session helper: {e}"))?;
    let line = line.trim();
    if let Some(pid) = line.strip_prefix("PID ") {
        return pid
            .parse()
            .map_err(|_| format!("the PAM session helper said {line:?}"));
    }
    match line.strip_prefix("ERR ") {
        Some(reason) => Err(reason.to_string()),
        None => Err(format!(
            "the PAM session helper ended without an answer ({line:?})"
        )),
    }
}

/// The helper's whole life (`wrsessd pam-session-helper`). Never returns.
pub fn run() -> ! {
    let mut out = io::stdout();
    let (mut child, pam) = match open_and_spawn() {
        Ok(v) => v,
        Err(reason) => {
            let _ = writeln!(out, "ERR {}", reason.replace('\n', " "));
            std::process::exit(1);
        }
    };
    let _ = writeln!(out, "PID {}", child.id());
    let _ = out.flush();
    // The launcher reads nothing more; a launcher that died must not kill us with SIGPIPE.
    // SAFETY: closing our own stdout descriptor.
    unsafe {
        libc::close(io::stdout().as_raw_fd());
    }
    // The session's own signals are for the session: we stay until it has ended.
    // SAFETY: ignoring signals has no memory-safety preconditions.
    unsafe {
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
    let status = loop {
        match child.wait() {
            Ok(status) => break Some(status),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => {
                tracing::warn!(%err, "waiting for the session");
                break None;
            }
        }
    };
    if let Err(err) = pam.close() {
        tracing::warn!(%err, "closing the PAM session");
    }
    exit_like(status)
}

fn open_and_spawn() -> Result<(Child, PamSession), String> {
    let mut text = String::new();
    io::stdin()
        .take(MAX_REQUEST_LEN)
        .read_to_string(&mut text)
        .map_err(|e| format!("reading the request: {e}"))?;
    let request: Request =
        serde_json::from_str(&text).map_err(|e| format!("a request that makes no sense: {e}"))?;
    let account =
        users::lookup(&request.user)?.ok_or_else(|| format!("no user named {:?}", request.user))?;
    let (pam, pam_env) = PamSession::open(&request.service, &account.name)?;
    let mut env: Vec<(String, std::ffi::OsString)> = request
        .env
        .into_iter()
        .map(|(k, v)| (k, v.into()))
        .collect();
    for (key, value) in pam_env {
        if !env.iter().any(|(k, _)| *k == key) {
            env.push((key, value));
        }
    }
    let join = request
        .cgroup_procs
        .iter()
        .map(|path| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| format!("cannot join the session's cgroup ({}): {e}", path.display()))
        })
        .collect::<Result<Vec<_>, _>>();
    let join = match join {
        Ok(join) => join,
        Err(err) => {
            let _ = pam.close();
            return Err(err);
        }
    };
    let launch = Launch {
        program: request.program.clone(),
        args: request.args.into_iter().map(Into::into).collect(),
        env,
        cwd: request.cwd,
        account,
        log: request.log,
        cgroup_join: join.iter().map(|f| f.as_raw_fd()).collect(),
    };
    match process::spawn(&launch) {
        Ok(child) => Ok((child, pam)),
        Err(err) => {
            let _ = pam.close();
            Err(format!("starting {}: {err}", request.program.display()))
        }
    }
}

/// Ends the helper the way the session ended: the same exit code, or the same signal.
fn exit_like(status: Option<ExitStatus>) -> ! {
    let Some(status) = status else {
        std::process::exit(1)
    };
    if let Some(code) = status.code() {
        std::process::exit(code);
    }
    if let Some(signal) = status.signal() {
        // SAFETY: restoring the default action and signalling ourselves.
        unsafe {
            libc::signal(signal, libc::SIG_DFL);
            libc::kill(libc::getpid(), signal);
        }
    }
    std::process::exit(1)
}
