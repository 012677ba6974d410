//! `wrsessd`: the WayRay session launcher. Runs as root next to the daemon `wrsrvd`, starts
//! greeter sessions and users' sessions for it, and checks logins with PAM.
//!
//! - [`config`]: flags and the paths derived from them.
//! - [`daemon_link`]: `launcher.sock`, the daemon's requests in and our reports out.
//! - [`launcher`]: what each request does; the table of running sessions.
//! - [`login`]: `login.sock`, where greeters send user name and password.
//! - [`pam_auth`], [`users`], [`process`], [`session_toml`], [`tickets`]: one idea each.
//! - [`cgroup`]: each session's cgroup and its limits (shared with the daemon, which reads
//!   usage from it); [`launched`]: the records a restarted launcher adopts sessions from.
//! - [`pam_helper`]: `wrsessd pam-session-helper`, the root process that holds a user's PAM
//!   session (pam_open_session … pam_close_session) around their compositor.

#[path = "../../cgroup/mod.rs"]
mod cgroup;
mod config;
mod daemon_link;
mod launched;
mod launcher;
mod login;
mod pam_auth;
mod pam_helper;
mod process;
mod session_toml;
mod tickets;
mod users;

use std::{
    fs,
    os::unix::fs::{DirBuilderExt, PermissionsExt},
    path::Path,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use clap::Parser;
use miette::{Context, IntoDiagnostic};

use crate::{
    config::{Cli, Config},
    daemon_link::DaemonLink,
    launcher::Launcher,
};

/// Locks `mutex`, also after a thread panicked while holding it: the launcher's tables stay
/// consistent between statements, and one broken session must not stop all the others.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn main() -> miette::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == pam_helper::ARG)
    {
        pam_helper::run();
    }
    let config = Config::from_cli(Cli::parse())
        .map_err(|e| miette::miette!("cannot read the launcher's config: {e}"))?;
    if !nix::unistd::Uid::effective().is_root() {
        tracing::warn!(
            "not running as root: sessions cannot start as other users and PAM will likely \
             refuse every password"
        );
    }
    prepare_run_dir(&config)?;

    let link = Arc::new(DaemonLink::default());
    let launcher = Arc::new(Launcher::new(config.clone(), Arc::clone(&link)));
    launcher.adopt_previous();
    launcher.start_oom_monitor();

    let login_socket = config.login_socket();
    let listener = login::listen(&login_socket)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot listen on {}", login_socket.display()))?;
    let login_launcher = Arc::clone(&launcher);
    std::thread::Builder::new()
        .name("login-accept".into())
        .spawn(move || login::serve(listener, login_launcher))
        .into_diagnostic()
        .wrap_err("cannot start the login server")?;
    tracing::info!(
        run_dir = %config.run_dir.display(),
        pam_service = %config.pam_service,
        greeter_user = %config.greeter_user,
        "session launcher ready"
    );

    daemon_link::run(&link, &config.launcher_socket(), |msg| launcher.handle(msg))
}

/// The run directory and our parts of it: session logs (root only, they may say more than
/// users should read) and the greeters' runtime directories.
fn prepare_run_dir(config: &Config) -> miette::Result<()> {
    let make = |dir: &Path, mode: u32| -> miette::Result<()> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(dir)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot create {}", dir.display()))
    };
    make(&config.run_dir, 0o755)?;
    make(&config.session_log_dir(), 0o750)?;
    make(&config.greeter_runtime_base(), 0o755)?;
    // Users' session compositors and greeters reach the daemon and login.sock through the run
    // directory itself, whatever the umask made of it.
    let meta = fs::metadata(&config.run_dir).into_diagnostic()?;
    if meta.permissions().mode() & 0o001 == 0 {
        tracing::warn!(
            run_dir = %config.run_dir.display(),
            "run directory is not world-searchable; sessions of other users cannot reach its sockets"
        );
    }
    Ok(())
}
