//! Starting a session compositor as its user, signalling its process group, and waiting for it.

use std::{
    ffi::{CString, OsString},
    fs, io,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
        unix::{
            ffi::OsStrExt,
            fs::OpenOptionsExt,
            process::{CommandExt, ExitStatusExt},
        },
    },
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
};

use nix::{
    errno::Errno,
    sys::{
        signal::{killpg, Signal},
        wait::{waitid, Id, WaitPidFlag},
    },
    unistd::{setgid, setgroups, setuid, Pid},
};

use crate::users::Account;

/// Everything needed to start one session compositor.
#[derive(Debug, Clone)]
pub struct Launch {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// The whole environment: nothing of ours leaks into a session.
    pub env: Vec<(String, OsString)>,
    /// Entered after the switch to the user (root may not see into an NFS home); `/` when the
    /// user cannot enter it, as login(1) does.
    pub cwd: PathBuf,
    pub account: Account,
    /// Where stdout and stderr go (appended).
    pub log: PathBuf,
    /// The session cgroup's `cgroup.procs` files: the child joins them before exec.
    pub cgroup_join: Vec<RawFd>,
}

/// The compositor's command line: `session --id ID --daemon SOCKET [FLAGS]... [--spawn CMD]...`.
pub fn session_args(
    id: &str,
    daemon_socket: &Path,
    flags: &[String],
    spawn: &[String],
) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![
        "session".into(),
        "--id".into(),
        id.into(),
        "--daemon".into(),
        daemon_socket.into(),
    ];
    args.extend(flags.iter().map(OsString::from));
    for command in spawn {
        args.push("--spawn".into());
        args.push(command.into());
    }
    args
}

/// Starts `launch` as its account in a new process group (so the whole session, clients
/// included, can be signalled at once).
pub fn spawn(launch: &Launch) -> io::Result<Child> {
    if let Some(dir) = launch.log.parent() {
        fs::DirBuilder::new().recursive(true).create(dir)?;
    }
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(&launch.log)?;
    let log_err = log.try_clone()?;

    let mut command = Command::new(&launch.program);
    command
        .args(&launch.args)
        .env_clear()
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0);
    // The administrator's way to debug confinement in launched sessions (README.md,
    // "Confinement"): `WAYRAY_SECCOMP=log wrsessd` reaches every session compositor.
    if let Some(mode) = std::env::var_os("WAYRAY_SECCOMP") {
        command.env("WAYRAY_SECCOMP", mode);
    }

    let uid = launch.account.uid;
    let gid = launch.account.gid;
    let groups = launch.account.groups.clone();
    let cgroup_join = launch.cgroup_join.clone();
    let cwd = CString::new(launch.cwd.as_os_str().as_bytes())
        .map_err(|_| io::Error::other("working directory contains NUL"))?;
    // SAFETY: between fork and exec only async-signal-safe calls are allowed: setgroups,
    // setgid, setuid and chdir are plain system calls here, on data prepared before the fork
    // (initgroups would read /etc/group and allocate in the child).
    unsafe {
        command.pre_exec(move || {
            // First, while still root: from here on the session and everything it starts
            // is inside its cgroup.
            crate::cgroup::join_current(&cgroup_join)?;
            setgroups(&groups).map_err(io::Error::from)?;
            setgid(gid).map_err(io::Error::from)?;
            setuid(uid).map_err(io::Error::from)?;
            if libc::chdir(cwd.as_ptr()) != 0 {
                libc::chdir(c"/".as_ptr());
            }
            Ok(())
        });
    }
    command.spawn()
}

/// Signals every process of the session `leader` started (its process group). A group that
/// is already empty is not an error.
pub fn signal_session(leader: u32, signal: Signal) -> io::Result<()> {
    let pgid = Pid::from_raw(leader as i32);
    match killpg(pgid, signal) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// Blocks until `child` has exited but leaves it unreaped, so its pid (and with it the
/// process group id) cannot be reused while the caller cleans up.
pub fn wait_exited_unreaped(child: &Child) -> io::Result<()> {
    let pid = Pid::from_raw(child.id() as i32);
    loop {
        match waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
            Ok(_) => return Ok(()),
            Err(Errno::EINTR) => continue,
            Err(err) => return Err(err.into()),
        }
    }
}

/// A handle that becomes readable when process `pid` exits, for processes that are not our
/// children (sessions adopted from an earlier launcher).
pub fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor was just returned to us and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Blocks until the process behind `pidfd` has exited.
pub fn wait_pidfd(pidfd: &OwnedFd) -> io::Result<()> {
    loop {
        let mut poll = libc::pollfd {
            fd: pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, no timeout.
        let n = unsafe { libc::poll(&mut poll, 1, -1) };
        if n > 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if n < 0 && err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// The process's start time (clock ticks since boot, field 22 of `/proc/PID/stat`): with the
/// pid it names one process, even after the pid is reused.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// How a session ended, as `FromLauncher::Exited` reports it: "exit status: 0", "signal: 9".
pub fn describe_exit(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        format!("exit status: {code}")
    } else if let Some(signal) = status.signal() {
        format!("signal: {signal}")
    } else {
        status.to_string()
    }
}

/// Quotes `word` for `sh -c` (session compositors run `--spawn` commands through the shell).
pub fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_read_like_the_protocol_says() {
        assert_eq!(describe_exit(ExitStatus::from_raw(0)), "exit status: 0");
        assert_eq!(
            describe_exit(ExitStatus::from_raw(3 << 8)),
            "exit status: 3"
        );
        assert_eq!(describe_exit(ExitStatus::from_raw(9)), "signal: 9");
        assert_eq!(describe_exit(ExitStatus::from_raw(15)), "signal: 15");
    }

    #[test]
    fn session_arguments_keep_spawn_order() {
        let args = session_args(
            "00000000000000ab",
            Path::new("/run/wayray/sessions.sock"),
            &["--desktop".to_string()],
            &["wm".to_string(), "foot -e top".to_string()],
        );
        let args: Vec<_> = args.iter().map(|a| a.to_string_lossy()).collect();
        assert_eq!(
            args,
            [
                "session",
                "--id",
                "00000000000000ab",
                "--daemon",
                "/run/wayray/sessions.sock",
                "--desktop",
                "--spawn",
                "wm",
                "--spawn",
                "foot -e top"
            ]
        );
    }

    #[test]
    fn shell_quoting_survives_sh() {
        assert_eq!(shell_quote("/usr/bin/wrlogin"), "/usr/bin/wrlogin");
        assert_eq!(shell_quote("/opt/my dir/it's"), r"'/opt/my dir/it'\''s'");
        assert_eq!(shell_quote(""), "''");
        let tricky = "/tmp/a b/$(x)'`y`";
        let out = Command::new("sh")
            .args(["-c", &format!("printf %s {}", shell_quote(tricky))])
            .output();
        let out = out.unwrap_or_else(|e| panic!("sh: {e}"));
        assert_eq!(String::from_utf8_lossy(&out.stdout), tricky);
    }
}
