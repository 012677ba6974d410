//! `wrsrvd`: the WayRay server daemon. Runs a headless Wayland session and streams it over QUIC
//! to the appliance that is attached to it.

mod compositor;
mod config;
mod link;
mod transport;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{atomic::AtomicU64, Arc, Mutex},
    time::Duration,
};

use clap::Parser;
use miette::{Context, IntoDiagnostic};
use smithay::reexports::calloop::channel;

use crate::{
    compositor::SessionOptions,
    config::Config,
    transport::{Router, Shared},
};

/// WayRay server: a headless Wayland compositor whose session is shown on WayRay appliances.
///
/// Prints `WAYLAND_DISPLAY=…` and `WAYRAY_LISTEN=…` on stdout once ready, so scripts can start
/// clients and appliances against it.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Cli {
    /// TOML config file; flags given here override its values. See `Config` for every key.
    #[arg(long, short = 'c', env = "WAYRAY_CONFIG")]
    config: Option<PathBuf>,
    /// UDP address for appliances (QUIC), e.g. 0.0.0.0:7390. Port 0 picks a free port.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Directory for the server's TLS certificate and key (created on first start).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Session output size, WIDTHxHEIGHT, until an appliance attaches (default 1280x800). The
    /// output then takes the appliance's screen size unless --fixed-size is given.
    #[arg(long, value_parser = parse_size)]
    size: Option<(u32, u32)>,
    /// Keep the output at --size whatever the appliance's screen (it is then shown centred).
    #[arg(long)]
    fixed_size: bool,
    /// Wayland socket name under $XDG_RUNTIME_DIR (default: first free wayland-N).
    #[arg(long)]
    socket: Option<String>,
    /// Frames in flight to the appliance before damage is merged instead of sent (default 2).
    #[arg(long)]
    max_frames_in_flight: Option<usize>,
    /// Append `<seq> <digest> <w>x<h>` for every frame sent, for tests comparing framebuffers.
    #[arg(long)]
    frame_log: Option<PathBuf>,
    /// Start this shell command as a client of the session; repeat for several clients.
    #[arg(long = "spawn", value_name = "COMMAND")]
    spawn: Vec<String>,
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("expected WIDTHxHEIGHT, got {s:?}"))?;
    let num = |v: &str| v.trim().parse::<u32>().map_err(|e| format!("{v:?}: {e}"));
    Ok((num(w)?, num(h)?))
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

    let mut config = match &cli.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(v) = cli.listen {
        config.listen = v;
    }
    if let Some(v) = cli.state_dir {
        config.state_dir = v;
    }
    if let Some((w, h)) = cli.size {
        config.output_width = w;
        config.output_height = h;
    }
    if cli.fixed_size {
        config.output_follows_appliance = false;
    }
    if let Some(v) = cli.socket {
        config.wayland_socket = v;
    }
    if let Some(v) = cli.max_frames_in_flight {
        config.max_frames_in_flight = v;
    }
    config.validate()?;
    ensure_runtime_dir()?;

    let identity = transport::load_or_create(
        &config.state_dir,
        &[config.server_name.clone(), "localhost".into()],
    )?;
    if identity.created {
        tracing::info!(dir = %config.state_dir.display(), "created a new server certificate");
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("wrsrvd-net")
        .enable_all()
        .build()
        .into_diagnostic()
        .wrap_err("cannot start the network runtime")?;
    let endpoint = {
        let _guard = runtime.enter();
        transport::endpoint(config.listen, &identity)?
    };
    let local = endpoint
        .local_addr()
        .into_diagnostic()
        .wrap_err("cannot read the QUIC endpoint's address")?;
    println!("WAYRAY_LISTEN={local}");
    tracing::info!(%local, "listening for appliances");

    let (to_compositor, from_transport) = channel::channel();
    let (to_transport, frames) = tokio::sync::mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        router: Mutex::new(Router::default()),
        compositor: to_compositor,
        next_id: AtomicU64::new(0),
        server_name: config.server_name.clone(),
        default_output_size: (config.output_width, config.output_height),
        follow_appliance: config.output_follows_appliance,
    });
    let net = std::thread::Builder::new()
        .name("wrsrvd-quic".into())
        .spawn(move || runtime.block_on(transport::serve(endpoint, shared, frames)))
        .into_diagnostic()?;

    let opts = SessionOptions {
        output_size: (config.output_width, config.output_height),
        socket_name: (!config.wayland_socket.is_empty()).then(|| config.wayland_socket.clone()),
        spawn: cli.spawn,
        frame_log: cli.frame_log,
        max_frames_in_flight: config.max_frames_in_flight,
        detached_frame_interval: Duration::from_millis(config.detached_frame_interval_ms),
        refresh_hz: config.refresh_hz,
        cursor: compositor::CursorSettings {
            theme: config.resolved_cursor_theme(),
            size: config.resolved_cursor_size(),
        },
    };
    let result = compositor::run(opts, to_transport, from_transport);
    if net.join().is_err() {
        tracing::error!("network thread panicked");
    }
    Ok(result?)
}

/// Wayland sockets live in `$XDG_RUNTIME_DIR`; on a server started outside a login session it is
/// often unset, so fall back to a private directory instead of failing.
fn ensure_runtime_dir() -> miette::Result<()> {
    if std::env::var_os("XDG_RUNTIME_DIR").is_some() {
        return Ok(());
    }
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let dir = PathBuf::from(format!("/tmp/wayray-runtime-{uid}"));
    create_private_dir(&dir)?;
    tracing::info!(dir = %dir.display(), "XDG_RUNTIME_DIR was unset; using a private directory");
    // SAFETY: called before any other thread is started.
    unsafe { std::env::set_var("XDG_RUNTIME_DIR", &dir) };
    Ok(())
}

fn create_private_dir(dir: &Path) -> miette::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot create {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot restrict {}", dir.display()))
}
