//! The waiter that stands in for `Xwayland` until an X client connects.
//!
//! Smithay starts "`Xwayland`" found on `PATH` with the display's listening sockets
//! (`-listenfd`), the window-manager socket, the readiness pipe and `WAYLAND_SOCKET`. The session
//! puts a private directory first on that `PATH`, holding a link named `Xwayland` to wrsrvd. So
//! wrsrvd starts as `Xwayland`, polls the listening sockets, and on the first connection `exec`s
//! the real Xwayland with the same arguments and file descriptors, which accepts the client.
//! If the session ends first (its end of `WAYLAND_SOCKET` closes), the waiter just exits.

use std::{
    ffi::OsString,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::Command,
};

/// The real Xwayland binary, told to the waiter.
pub const REAL_XWAYLAND_ENV: &str = "WAYRAY_XWAYLAND_BIN";
/// The `PATH` Xwayland should see (without the waiter's directory).
pub const ORIGINAL_PATH_ENV: &str = "WAYRAY_XWAYLAND_PATH";

/// A private directory with an `Xwayland` link to the running wrsrvd, removed when dropped.
pub struct StubDir(PathBuf);

impl StubDir {
    pub fn create() -> std::io::Result<Self> {
        let base = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let dir = base.join(format!("wayray-xwayland-{}", std::process::id()));
        // A directory left by a crashed session with a reused pid is stale.
        let _ = std::fs::remove_dir_all(&dir);
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        }
        let exe = std::env::current_exe()?;
        std::os::unix::fs::symlink(exe, dir.join("Xwayland"))?;
        Ok(Self(dir))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for StubDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// When this process was started as the `Xwayland` stand-in, waits for an X client and becomes
/// Xwayland; never returns then. Otherwise returns at once. Call first thing in `main`.
pub fn run_if_invoked() {
    let mut args = std::env::args_os();
    let is_stub = args
        .next()
        .is_some_and(|a| Path::new(&a).file_name() == Some("Xwayland".as_ref()));
    let Some(real) = std::env::var_os(REAL_XWAYLAND_ENV).filter(|_| is_stub) else {
        return;
    };
    let args: Vec<OsString> = args.collect();
    let listen_fds: Vec<i32> = args
        .windows(2)
        .filter(|w| w[0] == "-listenfd")
        .filter_map(|w| w[1].to_str()?.parse().ok())
        .collect();
    let wayland_fd: Option<i32> = std::env::var("WAYLAND_SOCKET")
        .ok()
        .and_then(|v| v.parse().ok());

    if !wait_for_client(&listen_fds, wayland_fd) {
        // The session went away before any X client came.
        std::process::exit(0);
    }

    let mut cmd = Command::new(&real);
    cmd.arg0("Xwayland")
        .args(&args)
        .env_remove(REAL_XWAYLAND_ENV);
    match std::env::var_os(ORIGINAL_PATH_ENV) {
        Some(path) => cmd.env("PATH", path).env_remove(ORIGINAL_PATH_ENV),
        None => cmd.env_remove("PATH"),
    };
    let err = cmd.exec();
    eprintln!("wrsrvd: cannot start {}: {err}", Path::new(&real).display());
    std::process::exit(127);
}

/// Blocks until one of `listen_fds` has a connection waiting (`true`) or the compositor's end
/// of `wayland_fd` closes (`false`).
fn wait_for_client(listen_fds: &[i32], wayland_fd: Option<i32>) -> bool {
    if listen_fds.is_empty() {
        return true;
    }
    let mut fds: Vec<libc::pollfd> = listen_fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    if let Some(fd) = wayland_fd {
        // No events asked: only a hang-up or error is reported, never data (the compositor
        // sends none before Xwayland speaks).
        fds.push(libc::pollfd {
            fd,
            events: 0,
            revents: 0,
        });
    }
    loop {
        // SAFETY: `fds` is a valid array of pollfd of the given length for the whole call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            // Cannot wait: let Xwayland start now rather than never.
            return true;
        }
        let (listen, wayland) = fds.split_at(listen_fds.len());
        if wayland.iter().any(|p| p.revents != 0) {
            return false;
        }
        if listen.iter().any(|p| p.revents != 0) {
            return true;
        }
    }
}
