//! Command line, and the paths derived from it. Every default lives here.

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    time::Duration,
};

use clap::Parser;
use serde::Deserialize;
use wayray_protocol::sessions::{session_id_string, SessionId};

use crate::cgroup::Limits;

/// How long a stopped session gets between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long a greeter gets once the user's session it logged in is up.
pub const GREETER_GRACE: Duration = Duration::from_secs(3);
/// How often the daemon's socket is tried while the daemon is not there.
pub const RECONNECT_INTERVAL: Duration = Duration::from_millis(250);
/// PATH of every session: the user's shell profile may extend it.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games";
/// Where user sessions get their XDG_RUNTIME_DIR (`<base>/<uid>`), as logind does it.
pub const USER_RUNTIME_BASE: &str = "/run/user";

/// WayRay session launcher: starts greeters and users' sessions for the `wrsrvd` daemon.
///
/// Runs as root next to `wrsrvd`. It connects to the daemon's `launcher.sock` (and keeps
/// retrying while the daemon is away; running sessions stay up), starts a greeter session
/// (a session compositor running `wrlogin`, as the greeter user) for every token that has no
/// session, checks the greeter's logins with PAM on `login.sock`, and starts the user's session
/// compositor as the user, with the clients named in `~/.config/wayray/session.toml`.
///
/// Each session compositor is `wrsrvd session --id ID --daemon RUN_DIR/sessions.sock
/// [--spawn CMD]...`, in its own process group, with its output appended to
/// `RUN_DIR/sessions/ID.log`. `RUST_LOG` sets how much wrsessd logs (default `info`).
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
pub struct Cli {
    /// The daemon's run directory: `launcher.sock` and `sessions.sock` are the daemon's,
    /// `login.sock`, `sessions/ID.log` and `runtime/ID` (greeters' XDG_RUNTIME_DIR) are ours.
    #[arg(long, env = "WAYRAY_RUN_DIR", default_value = "/run/wayray")]
    pub run_dir: PathBuf,
    /// The `wrsrvd` binary started (in `session` mode) for every session. Default: `wrsrvd`
    /// next to this executable, else from PATH.
    #[arg(long, value_name = "PATH")]
    pub wrsrvd: Option<PathBuf>,
    /// The greeter client run inside greeter sessions. Default: `wrlogin` next to this
    /// executable, else from PATH.
    #[arg(long, value_name = "PATH")]
    pub wrlogin: Option<PathBuf>,
    /// The unprivileged user greeter sessions run as. When it does not exist, greeters run as
    /// `nobody` (with a warning): create it with `useradd --system wayray-greeter`.
    #[arg(long, value_name = "NAME", default_value = "wayray-greeter")]
    pub greeter_user: String,
    /// The PAM service (`/etc/pam.d/NAME`) logins are checked against (auth + account).
    #[arg(long, value_name = "NAME", default_value = "wayray")]
    pub pam_service: String,
    /// The launcher's TOML config (per-session limits). A missing file means the documented
    /// defaults; a file that cannot be parsed is an error.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
}

/// Where `--config` points by default.
pub const DEFAULT_CONFIG: &str = "/etc/wayray/wrsessd.toml";

/// The config file:
///
/// ```toml
/// # cgroup under which every session gets its own (`<hierarchy>/wayray/<session id>`).
/// cgroup_parent = "wayray"
/// # Users' sessions get their own PipeWire and sound on the appliance (greeters never).
/// audio = true
///
/// [limits.user]          # each user's session: compositor and all its clients
/// memory_max_mib = 4096  # 0: no limit
/// cpu_weight = 100       # 1..10000, relative to other sessions
/// tasks_max = 4096       # processes + threads; 0: no limit
///
/// [limits.greeter]       # each login screen
/// memory_max_mib = 512
/// cpu_weight = 100
/// tasks_max = 256
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    pub cgroup_parent: String,
    /// `false` starts users' sessions with `--no-audio`. Greeters never have sound.
    pub audio: bool,
    pub limits: LimitsConfig,
}

impl Default for FileConfig {
    fn default() -> Self {
        FileConfig {
            cgroup_parent: "wayray".to_string(),
            audio: true,
            limits: LimitsConfig::default(),
        }
    }
}

/// Per-kind session limits.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    pub user: Limits,
    pub greeter: Limits,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            user: Limits::default(),
            greeter: Limits::greeter_default(),
        }
    }
}

impl FileConfig {
    /// Reads `path`; a missing file is the defaults.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Ok(FileConfig::default())
            }
            Err(err) => return Err(format!("{}: {err}", path.display())),
        };
        let config: FileConfig =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if config.cgroup_parent.is_empty()
            || config
                .cgroup_parent
                .split('/')
                .any(|part| part.is_empty() || part == "." || part == "..")
        {
            return Err(format!(
                "{}: cgroup_parent {:?} must be a relative path like \"wayray\"",
                path.display(),
                config.cgroup_parent
            ));
        }
        Ok(config)
    }
}

/// What the launcher runs with: the command line with relative paths made absolute (sessions
/// start in other working directories).
#[derive(Debug, Clone)]
pub struct Config {
    pub run_dir: PathBuf,
    pub wrsrvd: Option<PathBuf>,
    pub wrlogin: Option<PathBuf>,
    pub greeter_user: String,
    pub pam_service: String,
    pub file: FileConfig,
}

impl Config {
    pub fn from_cli(cli: Cli) -> Result<Self, String> {
        Ok(Config {
            run_dir: absolute(cli.run_dir),
            wrsrvd: cli.wrsrvd.map(absolute),
            wrlogin: cli.wrlogin.map(absolute),
            greeter_user: cli.greeter_user,
            pam_service: cli.pam_service,
            file: FileConfig::load(&cli.config)?,
        })
    }

    /// Where the launcher notes the sessions it started, one file each, so a restarted
    /// launcher finds and keeps watching them.
    pub fn launched_dir(&self) -> PathBuf {
        self.run_dir.join("launched")
    }

    /// The daemon's socket for us.
    pub fn launcher_socket(&self) -> PathBuf {
        self.run_dir.join("launcher.sock")
    }

    /// The daemon's socket for session compositors (passed to them as `--daemon`).
    pub fn sessions_socket(&self) -> PathBuf {
        self.run_dir.join("sessions.sock")
    }

    /// Our socket for greeters.
    pub fn login_socket(&self) -> PathBuf {
        self.run_dir.join("login.sock")
    }

    pub fn session_log_dir(&self) -> PathBuf {
        self.run_dir.join("sessions")
    }

    /// A session compositor's stdout and stderr.
    pub fn session_log(&self, id: SessionId) -> PathBuf {
        self.session_log_dir()
            .join(format!("{}.log", session_id_string(id)))
    }

    pub fn greeter_runtime_base(&self) -> PathBuf {
        self.run_dir.join("runtime")
    }

    /// A greeter session's XDG_RUNTIME_DIR.
    pub fn greeter_runtime_dir(&self, id: SessionId) -> PathBuf {
        self.greeter_runtime_base().join(session_id_string(id))
    }

    pub fn wrsrvd_program(&self) -> Result<PathBuf, String> {
        find_program(self.wrsrvd.as_deref(), "wrsrvd", "--wrsrvd")
    }

    pub fn wrlogin_program(&self) -> Result<PathBuf, String> {
        find_program(self.wrlogin.as_deref(), "wrlogin", "--wrlogin")
    }
}

fn absolute(path: PathBuf) -> PathBuf {
    if path.is_absolute() {
        return path;
    }
    match std::env::current_dir() {
        Ok(cwd) => cwd.join(path),
        Err(_) => path,
    }
}

/// `explicit` if given; else `name` next to our own executable; else `name` from our PATH.
/// Looked up at every start, so installing the binary later does not need a restart.
pub fn find_program(explicit: Option<&Path>, name: &str, flag: &str) -> Result<PathBuf, String> {
    if let Some(path) = explicit {
        return if path.is_file() {
            Ok(path.to_path_buf())
        } else {
            Err(format!("{flag} {}: no such file", path.display()))
        };
    }
    let sibling = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(name)));
    if let Some(sibling) = sibling.filter(|p| p.is_file()) {
        return Ok(sibling);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    search_path(&path, name).ok_or_else(|| {
        format!("{name} is neither next to wrsessd nor in PATH: give its location with {flag}")
    })
}

fn search_path(path: &OsStr, name: &str) -> Option<PathBuf> {
    std::env::split_paths(path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_run_dir() {
        let config = Config::from_cli(Cli::parse_from([
            "wrsessd",
            "--run-dir",
            "/run/x",
            "--config",
            "/nonexistent/wrsessd.toml",
        ]))
        .unwrap();
        assert_eq!(config.launcher_socket(), Path::new("/run/x/launcher.sock"));
        assert_eq!(config.sessions_socket(), Path::new("/run/x/sessions.sock"));
        assert_eq!(config.login_socket(), Path::new("/run/x/login.sock"));
        assert_eq!(
            config.session_log(0xab),
            Path::new("/run/x/sessions/00000000000000ab.log")
        );
        assert_eq!(
            config.greeter_runtime_dir(1),
            Path::new("/run/x/runtime/0000000000000001")
        );
        assert_eq!(config.greeter_user, "wayray-greeter");
        assert_eq!(config.pam_service, "wayray");
    }

    #[test]
    fn config_file_sets_limits() {
        let config: FileConfig = toml::from_str("[limits.user]\nmemory_max_mib = 64\n").unwrap();
        assert_eq!(config.limits.user.memory_max_mib, 64);
        assert_eq!(config.limits.user.cpu_weight, 100);
        assert_eq!(config.limits.greeter, Limits::greeter_default());
        assert_eq!(config.cgroup_parent, "wayray");
        assert!(toml::from_str::<FileConfig>("[limits.user]\nmemroy = 1\n").is_err());
        let dir = std::env::temp_dir().join(format!("wrsessd-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.toml");
        std::fs::write(&path, "cgroup_parent = \"../x\"\n").unwrap();
        assert!(FileConfig::load(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn example_config_is_the_defaults() {
        let text = include_str!("../../../wrsessd.example.toml");
        assert_eq!(
            toml::from_str::<FileConfig>(text).unwrap(),
            FileConfig::default()
        );
    }

    #[test]
    fn explicit_program_must_exist() {
        let err = find_program(Some(Path::new("/nonexistent/wrsrvd")), "wrsrvd", "--wrsrvd");
        assert!(err.is_err_and(|e| e.contains("--wrsrvd")));
        assert_eq!(
            find_program(Some(Path::new("/bin/sh")), "wrsrvd", "--wrsrvd"),
            Ok(PathBuf::from("/bin/sh"))
        );
    }

    #[test]
    fn path_search_skips_relative_entries() {
        assert_eq!(
            search_path(OsStr::new("relative:/bin"), "sh"),
            Some(PathBuf::from("/bin/sh"))
        );
        assert_eq!(search_path(OsStr::new("/nonexistent"), "sh"), None);
    }
}
