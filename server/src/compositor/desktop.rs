//! The default desktop a session gets when its user configured nothing: a wallpaper (swaybg),
//! a panel with a clock and a taskbar (waybar), notifications (mako), and a launcher (fuzzel)
//! on a tap of Super. Their configuration ships with WayRay as an XDG config directory
//! (`server/desktop/`, installed to `/usr/share/wayray/desktop`) put after the user's own
//! `~/.config` in `XDG_CONFIG_DIRS`, so a user's own `~/.config/waybar/config` wins.

use std::{
    ffi::OsString,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

/// Where the installed desktop configuration lives.
pub const INSTALLED_DIR: &str = "/usr/share/wayray/desktop";

/// The program a tap of Super starts in the default desktop.
pub const LAUNCHER: &str = "fuzzel";

/// One client of the default desktop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesktopClient {
    /// What it is for, for the log.
    pub role: &'static str,
    /// The executable that must be on `PATH`.
    pub program: &'static str,
    /// The Debian package that has it, for the warning when it is missing.
    pub package: &'static str,
    pub command: String,
}

/// The default desktop's clients, in start order (wallpaper first, so nothing flashes). Each
/// reads the shipped configuration in `config_dir` unless the user has their own under
/// `user_config` (`$XDG_CONFIG_HOME` or `~/.config`): not every one of them searches
/// `XDG_CONFIG_DIRS` (waybar 0.9 does not), so the shipped files are named explicitly.
pub fn default_clients(
    config_dir: Option<&Path>,
    user_config: Option<&Path>,
) -> Vec<DesktopClient> {
    let shipped = |relative: &str| -> Option<PathBuf> {
        let users = user_config.is_some_and(|home| home.join(relative).exists());
        let ours = config_dir?.join(relative);
        (!users && ours.is_file()).then_some(ours)
    };
    let wallpaper = match config_dir.map(|d| d.join("wayray/wallpaper.png")) {
        Some(image) if image.is_file() => {
            format!("swaybg -m fill -c '#1d2b3a' -i {}", quoted(&image))
        }
        _ => "swaybg -c '#1d2b3a'".to_string(),
    };
    let mut panel = "waybar".to_string();
    if let Some(config) = shipped("waybar/config") {
        panel += &format!(" -c {}", quoted(&config));
        if let Some(style) = config_dir.map(|d| d.join("waybar/style.css")) {
            panel += &format!(" -s {}", quoted(&style));
        }
    }
    let notifications = match shipped("mako/config") {
        Some(config) => format!("mako --config {}", quoted(&config)),
        None => "mako".to_string(),
    };
    vec![
        DesktopClient {
            role: "wallpaper",
            program: "swaybg",
            package: "swaybg",
            command: wallpaper,
        },
        DesktopClient {
            role: "panel",
            program: "waybar",
            package: "waybar",
            command: panel,
        },
        DesktopClient {
            role: "notifications",
            program: "mako",
            package: "mako-notifier",
            command: notifications,
        },
    ]
}

/// The launcher a tap of Super starts, with the shipped configuration unless the user has one.
pub fn launcher(config_dir: Option<&Path>, user_config: Option<&Path>) -> String {
    let users = user_config.is_some_and(|home| home.join("fuzzel/fuzzel.ini").exists());
    match config_dir.map(|d| d.join("fuzzel/fuzzel.ini")) {
        Some(ini) if !users && ini.is_file() => format!("{LAUNCHER} --config={}", quoted(&ini)),
        _ => LAUNCHER.to_string(),
    }
}

/// Where the user's own configuration lives: `$XDG_CONFIG_HOME`, else `~/.config`.
pub fn user_config_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
}

/// `path` quoted for `sh -c`.
fn quoted(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', "'\\''"))
}

/// The shipped configuration directory: `$WAYRAY_DESKTOP_DIR`, the installed one, or the
/// source tree's (a development build run from its checkout).
pub fn config_dir() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("WAYRAY_DESKTOP_DIR").map(PathBuf::from),
        Some(PathBuf::from(INSTALLED_DIR)),
        Some(PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/desktop"
        ))),
    ];
    candidates.into_iter().flatten().find(|d| d.is_dir())
}

/// `XDG_CONFIG_DIRS` with the shipped directory first, before the system's (`/etc/xdg`).
pub fn xdg_config_dirs(config_dir: &Path, current: Option<OsString>) -> OsString {
    let mut dirs = config_dir.as_os_str().to_os_string();
    dirs.push(":");
    match current.filter(|c| !c.is_empty()) {
        Some(current) => dirs.push(current),
        None => dirs.push("/etc/xdg"),
    }
    dirs
}

/// Whether `program` is an executable on `PATH`.
pub fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join(program))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// The session's own D-Bus session bus: notifications (`notify-send` → mako) and the panel
/// talk over it, and a user's two sessions must not share one. Stopped with the session.
pub struct SessionBus {
    child: Child,
    /// `DBUS_SESSION_BUS_ADDRESS` for the session's clients.
    pub address: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("cannot start dbus-daemon (apt-get install dbus-daemon): {0}")]
    Start(std::io::Error),
    #[error("dbus-daemon printed no address: {0}")]
    NoAddress(String),
}

impl SessionBus {
    /// Starts `dbus-daemon --session` listening at `socket` (a path in the runtime dir).
    pub fn start(socket: &Path) -> Result<SessionBus, BusError> {
        let _ = std::fs::remove_file(socket);
        let mut command = Command::new("dbus-daemon");
        // Ends with the session even when it crashes (it is started from the main thread,
        // which lives as long as the process).
        // SAFETY: prctl is async-signal-safe and touches nothing of the parent's.
        unsafe {
            use std::os::unix::process::CommandExt;
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command
            .arg("--session")
            .arg("--nofork")
            .arg("--nopidfile")
            .arg(format!("--address=unix:path={}", socket.display()))
            .arg("--print-address=1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(BusError::Start)?;
        let mut line = String::new();
        let read = child
            .stdout
            .take()
            .map(|out| BufReader::new(out).read_line(&mut line));
        let address = line.trim().to_string();
        if address.is_empty() {
            let _ = child.kill();
            let _ = child.wait();
            let why = match read {
                Some(Err(err)) => err.to_string(),
                _ => "it exited".to_string(),
            };
            return Err(BusError::NoAddress(why));
        }
        tracing::info!(address, pid = child.id(), "session bus started");
        Ok(SessionBus { child, address })
    }
}

impl Drop for SessionBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_dir_comes_before_the_system_dirs() {
        let dir = Path::new("/usr/share/wayray/desktop");
        assert_eq!(
            xdg_config_dirs(dir, None),
            OsString::from("/usr/share/wayray/desktop:/etc/xdg")
        );
        assert_eq!(
            xdg_config_dirs(dir, Some("/opt/xdg:/etc/xdg".into())),
            OsString::from("/usr/share/wayray/desktop:/opt/xdg:/etc/xdg")
        );
    }

    #[test]
    fn default_desktop_uses_the_shipped_files_unless_the_user_has_own() {
        let roles: Vec<_> = default_clients(None, None).iter().map(|c| c.role).collect();
        assert_eq!(roles, ["wallpaper", "panel", "notifications"]);
        let tree = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/desktop"));
        let home = tempfile::tempdir().unwrap();
        let clients = default_clients(Some(tree), Some(home.path()));
        assert!(
            clients[0].command.contains("wallpaper.png"),
            "{:?}",
            clients[0]
        );
        assert!(
            clients[1].command.contains("waybar/config"),
            "{:?}",
            clients[1]
        );
        assert!(
            clients[1].command.contains("waybar/style.css"),
            "{:?}",
            clients[1]
        );
        assert!(
            clients[2].command.contains("mako/config"),
            "{:?}",
            clients[2]
        );
        assert!(launcher(Some(tree), Some(home.path())).contains("fuzzel.ini"));

        // A user's own waybar and fuzzel configuration wins.
        std::fs::create_dir_all(home.path().join("waybar")).unwrap();
        std::fs::write(home.path().join("waybar/config"), "{}").unwrap();
        std::fs::create_dir_all(home.path().join("fuzzel")).unwrap();
        std::fs::write(home.path().join("fuzzel/fuzzel.ini"), "").unwrap();
        let clients = default_clients(Some(tree), Some(home.path()));
        assert_eq!(clients[1].command, "waybar");
        assert!(clients[2].command.contains("mako/config"));
        assert_eq!(launcher(Some(tree), Some(home.path())), "fuzzel");
    }

    #[test]
    fn path_lookup_finds_sh_and_not_nonsense() {
        assert!(on_path("sh"));
        assert!(!on_path("wayray-no-such-program"));
    }
}
