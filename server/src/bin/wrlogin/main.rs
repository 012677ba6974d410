//! `wrlogin`: the greeter. The only Wayland client of a greeter session, shown on an appliance
//! whose token has no session yet: a full-screen login form whose logins go to the session
//! launcher (`wrsessd`) over `login.sock`. Exits 0 once a login is accepted; the launcher then
//! replaces this session with the user's.
//!
//! With `--lock` it is a user session's locker instead: the same form (user name fixed) on an
//! ext-session-lock surface, started by the session when it is re-attached under the `reattach`
//! policy; the password goes to wrsessd as an unlock, and it unlocks and exits once accepted.
//!
//! - [`form`]: the form's state machine (pure).
//! - [`render`]: draws the form into an XRGB8888 buffer (pure).
//! - [`link`]: the login request/reply on `login.sock`, on its own thread.
//! - [`app`]: the Wayland client (smithay-client-toolkit) and the event loop.

mod app;
// Shared with the compositor's title bars.
#[path = "../../font.rs"]
mod font;
mod form;
mod link;
mod render;

use std::path::PathBuf;

use clap::Parser;

/// WayRay greeter: a full-screen login form for a smart card (or appliance) that has no session
/// yet. Logins go to the session launcher; exits 0 once one is accepted.
#[derive(Debug, Parser)]
#[command(
    name = "wrlogin",
    version,
    about,
    long_about,
    after_help = "Environment:\n  \
        WAYLAND_DISPLAY       the greeter session to show the form in\n  \
        WAYRAY_LOGIN_TICKET   names this greeter to the launcher (set by wrsessd; kept out of the command line)\n  \
        WAYRAY_UNLOCK_TICKET  with --lock: names the session and its user (set by the session)\n  \
        WAYRAY_LOGIN_SOCKET   default for --login-socket\n  \
        RUST_LOG              log filter (default \"info\"); logins are logged with the user name, never the password"
)]
struct Cli {
    /// TrueType/OpenType font for the form [default: the first of /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf
    /// and other common DejaVu, Liberation and Noto Sans paths that exists].
    #[arg(long, value_name = "PATH")]
    font: Option<PathBuf>,
    /// The launcher's login socket, where logins are sent.
    #[arg(long, value_name = "PATH", env = "WAYRAY_LOGIN_SOCKET")]
    login_socket: Option<PathBuf>,
    /// Host name shown under the title [default: this machine's host name].
    #[arg(long, value_name = "NAME")]
    host: Option<String>,
    /// Be the session's locker instead of a greeter: take the session's lock
    /// (ext-session-lock), show this user's name and a password field, and unlock once the
    /// launcher accepts the password (checked for the user $WAYRAY_UNLOCK_TICKET names). The
    /// session starts it by itself when it is re-attached under `reattach = "lock"`.
    #[arg(long)]
    lock: bool,
    /// A line shown under the form until the first login attempt, e.g. that the user's last
    /// session was lost with the server it ran on (the session launcher sets it).
    #[arg(long, value_name = "TEXT", env = "WAYRAY_LOGIN_NOTICE")]
    notice: Option<String>,
}

fn main() -> miette::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();

    let font_path = font::find(cli.font.as_deref())?;
    let painter = render::Painter::new(font::load(&font_path)?);
    let ticket_var = if cli.lock {
        "WAYRAY_UNLOCK_TICKET"
    } else {
        "WAYRAY_LOGIN_TICKET"
    };
    let ticket = std::env::var(ticket_var).ok().filter(|t| !t.is_empty());
    if ticket.is_none() {
        tracing::warn!("{ticket_var} is not set: logins will fail");
    }
    if cli.login_socket.is_none() {
        tracing::warn!("no login socket (WAYRAY_LOGIN_SOCKET or --login-socket): logins will fail");
    }
    tracing::info!(font = %font_path.display(), "wrlogin starting");
    app::run(app::Config {
        painter,
        host: cli.host.unwrap_or_else(host_name),
        link: link::LoginLink {
            socket: cli.login_socket,
            ticket,
            unlock: cli.lock,
        },
        lock_user: cli.lock.then(user_name),
        notice: cli.notice.filter(|n| !n.trim().is_empty()),
    })?;
    Ok(())
}

/// Who we run as (a locker runs as the session's user): $USER, else the account of our uid.
fn user_name() -> String {
    if let Some(user) = std::env::var("USER").ok().filter(|u| !u.is_empty()) {
        return user;
    }
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                (fields.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_string())
            })
        })
        .unwrap_or_else(|| format!("uid {uid}"))
}

/// This machine's host name, or "" if it cannot be read (the title alone is then shown).
fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}
