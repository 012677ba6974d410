//! `wrsrvd`: the WayRay server daemon. Accepts appliances over QUIC, routes each one to the
//! session of the token it presents, and relays frames and input between them. Each session is
//! a separate compositor process (`wrsrvd session`), started by the daemon itself (one shared
//! session, the default) or by the session launcher `wrsessd` (`--launcher`: a greeter per
//! token, then the user's own session, running as that user).

mod api;
mod cards;
// The daemon only reads sessions' usage from their cgroups; wrsessd uses the rest.
#[allow(dead_code)]
mod cgroup;
mod compositor;
mod config;
mod confine;
mod daemon;
mod font;
mod link;
mod pcsc;
mod pool;
mod session_link;
// The store's read side (audit log, lookups) serves its tests and future wradm commands.
#[allow(dead_code)]
mod store;
mod transport;
mod usb;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{atomic::AtomicU64, Arc, Mutex},
    time::Duration,
};

use clap::Parser;
use miette::{Context, IntoDiagnostic};
use smithay::reexports::calloop::channel;
use wayray_protocol::sessions::{parse_session_id, ScaleChoice};

use crate::{
    compositor::SessionOptions,
    config::Config,
    daemon::{Daemon, Mode, RunDir},
    transport::Shared,
};

/// WayRay server: shows headless Wayland sessions on WayRay appliances.
///
/// Prints `WAYRAY_API=http://…` (unless the admin API is off), `WAYRAY_LISTEN=…` and (for the
/// shared session) `WAYLAND_DISPLAY=…` on stdout once ready, so scripts can start clients and
/// appliances against it.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    daemon: DaemonArgs,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Run one session compositor (started by the daemon or by wrsessd, not by hand). It
    /// connects to the daemon's sessions socket and proves itself with $WAYRAY_SESSION_SECRET.
    Session(SessionArgs),
}

#[derive(Debug, clap::Args)]
struct DaemonArgs {
    /// TOML config file; flags given here override its values. See `Config` for every key.
    #[arg(long, short = 'c', env = "WAYRAY_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// System-call filter: `true` (enforce), `log` (allow but have the kernel log calls outside
    /// the list: `dmesg | grep type=1326`) or `false` (none, for debugging). Config `seccomp`.
    #[arg(
        long,
        env = "WAYRAY_SECCOMP",
        global = true,
        value_name = "true|log|false"
    )]
    seccomp: Option<confine::SeccompMode>,
    /// UDP address for appliances (QUIC), e.g. 0.0.0.0:7390. Port 0 picks a free port.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Directory for the server's TLS certificate and key (created on first start) and the
    /// session store (sessions.db).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Directory of the daemon's sockets (sessions, launcher, admin). Default:
    /// $XDG_RUNTIME_DIR/wayray, or /run/wayray when that is unset.
    #[arg(long, env = "WAYRAY_RUN_DIR")]
    run_dir: Option<PathBuf>,
    /// Per-token sessions through the session launcher (wrsessd): a greeter for a token with no
    /// session, the user's own session after login. Without it, one shared session is shown on
    /// whichever appliance connected last.
    #[arg(long)]
    launcher: bool,
    /// What a user session re-attached after a detach shows first (config `reattach`): `lock`
    /// (its lock screen, the user's password to get the desktop), `direct` (the desktop), or
    /// `auto` (lock unless a card proved its key).
    #[arg(long, value_enum, value_name = "POLICY")]
    reattach: Option<daemon::Reattach>,
    /// Session output size, WIDTHxHEIGHT, until an appliance attaches (default 1280x800). The
    /// output then takes the appliance's screen size unless --fixed-size is given.
    #[arg(long, value_parser = parse_size)]
    size: Option<(u32, u32)>,
    /// Keep the output at --size whatever the appliance's screen (it is then shown centred).
    #[arg(long)]
    fixed_size: bool,
    /// Output scale of every session: `auto` (from the appliance screen's pixel density, its
    /// physical size) or a number such as 1.5 (config `output_scale`). A user's own `scale` in
    /// session.toml wins.
    #[arg(long, value_name = "auto|SCALE")]
    scale: Option<ScaleChoice>,
    /// Wayland socket name of the shared session under $XDG_RUNTIME_DIR (default: first free
    /// wayland-N).
    #[arg(long)]
    socket: Option<String>,
    /// Frames in flight to the appliance before damage is merged instead of sent (default 2).
    #[arg(long)]
    max_frames_in_flight: Option<usize>,
    /// Bandwidth cap per appliance in kbit/s (0: none), for appliances no
    /// [[appliance_bandwidth]] rule of the config file matches. Changing regions then update
    /// less often and video gets a lower bitrate; static content stays exact.
    #[arg(long, value_name = "KBPS")]
    bandwidth_limit: Option<u64>,
    /// Send every pixel losslessly: no H.264 for regions that measure as video (config
    /// `video_regions = false`). Costs bytes on video, for links where exact pixels matter more.
    #[arg(long)]
    no_video: bool,
    /// No X11 display in sessions: X11 programs cannot run (config `xwayland = false`).
    #[arg(long)]
    no_xwayland: bool,
    /// Append `<seq> <digest> <w>x<h>` for every frame the shared session sends, for tests
    /// comparing framebuffers.
    #[arg(long)]
    frame_log: Option<PathBuf>,
    /// Start this shell command as a client of the shared session; repeat for several clients.
    #[arg(long = "spawn", value_name = "COMMAND")]
    spawn: Vec<String>,
    /// The shared session starts the default desktop: wallpaper (swaybg), panel (waybar),
    /// notifications (mako) and fuzzel on a tap of Super, before the --spawn clients.
    #[arg(long)]
    desktop: bool,
    /// The shared session's window manager, a shell command (e.g. `wr-wm-tiling`); the built-in
    /// floating WM manages windows without one and whenever it is gone.
    #[arg(long = "wm", value_name = "COMMAND")]
    wm: Option<String>,
    /// The shared session offers no clipboard (no selections, primary selection or
    /// data-control), as greeter sessions never do.
    #[arg(long)]
    no_clipboard: bool,
    /// Which appliances get sessions, by their certificates (config `appliance_auth`): `open`
    /// any; `enrol` unknown ones wait for `wradm appliances approve ID`; `required` only
    /// approved ones complete the TLS handshake.
    #[arg(long, value_enum, value_name = "POLICY")]
    appliance_auth: Option<crate::config::ApplianceAuth>,
    /// Join a pool of servers through these etcd client URLs, comma-separated (config `[pool]
    /// endpoints`), e.g. http://10.0.0.5:2379,http://10.0.0.6:2379. Needs --launcher.
    #[arg(long, value_name = "URL,…", value_delimiter = ',')]
    pool: Vec<String>,
    /// This server's name in the pool (config `[pool] name`; default: the host name).
    #[arg(long, value_name = "NAME")]
    pool_name: Option<String>,
    /// HOST:PORT appliances are sent to for this server (config `[pool] advertise`; default:
    /// the listen address, which must then not be 0.0.0.0).
    #[arg(long, value_name = "HOST:PORT")]
    pool_advertise: Option<String>,
    /// Sessions this server is meant to hold, weighed against its load when new sessions are
    /// placed (config `[pool] capacity`, default 100).
    #[arg(long, value_name = "N")]
    pool_capacity: Option<u32>,
    /// TCP address of the authenticated admin API and Prometheus metrics, e.g.
    /// 127.0.0.1:7391 (port 0 picks a free port), or `off` (config `[api] listen`). Requests
    /// need `Authorization: Bearer` and the contents of `[api] token_file`.
    #[arg(long, value_name = "ADDR|off")]
    api_listen: Option<String>,
}

#[derive(Debug, clap::Args)]
struct SessionArgs {
    /// This session's id (16 hex digits), as the daemon or launcher allotted it.
    #[arg(long, value_parser = parse_id)]
    id: u64,
    /// The daemon's sessions socket.
    #[arg(long)]
    daemon: PathBuf,
    /// Initial output size, WIDTHxHEIGHT; the attached appliance's screen size then applies.
    #[arg(long, value_parser = parse_size)]
    size: Option<(u32, u32)>,
    /// Wayland socket name under $XDG_RUNTIME_DIR (default: first free wayland-N).
    #[arg(long)]
    socket: Option<String>,
    /// The user's own output scale, `auto` or a number such as 1.5 (wrsessd passes session.toml's
    /// `scale`); it wins over the server's `output_scale`. Unset: the server's.
    #[arg(long, value_name = "auto|SCALE")]
    scale: Option<ScaleChoice>,
    /// Frames in flight to the appliance before damage is merged instead of sent.
    #[arg(long)]
    max_frames_in_flight: Option<usize>,
    /// Append `<seq> <digest> <w>x<h>` for every frame sent.
    #[arg(long)]
    frame_log: Option<PathBuf>,
    /// No H.264 video regions: every pixel lossless (overrides the config).
    #[arg(long)]
    no_video: bool,
    /// No X11 display (overrides the config).
    #[arg(long)]
    no_xwayland: bool,
    /// Start this shell command as a client of the session; repeat for several clients.
    #[arg(long = "spawn", value_name = "COMMAND")]
    spawn: Vec<String>,
    /// Start the default desktop first: wallpaper (swaybg), panel (waybar), notifications
    /// (mako), configured from /usr/share/wayray/desktop, and fuzzel on a tap of Super.
    #[arg(long)]
    desktop: bool,
    /// Shell command a tap of Super starts (default with --desktop: fuzzel).
    #[arg(long, value_name = "COMMAND")]
    app_launcher: Option<String>,
    /// The session's window manager, a shell command (e.g. `wr-wm-tiling`): the one client that
    /// may bind the WM protocol. Without it, or while it is gone, the built-in floating WM
    /// manages the windows.
    #[arg(long = "wm", value_name = "COMMAND")]
    wm: Option<String>,
    /// No clipboard: no selection is ever offered to a client, and neither primary selection
    /// nor data-control is advertised. wrsessd passes it for greeters, so nothing typed at a
    /// login prompt can be read back.
    #[arg(long)]
    no_clipboard: bool,
    /// No sound: no PipeWire for the session, nothing played on the appliance, no
    /// microphone. wrsessd passes it for greeters (and with its config `audio = false`);
    /// config `audio = false` does the same.
    #[arg(long)]
    no_audio: bool,
    /// Seconds the session waits for a vanished daemon to come back before it ends.
    #[arg(long, default_value_t = 300)]
    orphan_timeout: u64,
    /// The locker (`wrlogin`, run with `--lock`) started when the session is locked for a
    /// re-attach; it unlocks with $WAYRAY_UNLOCK_TICKET at $WAYRAY_LOGIN_SOCKET (set by
    /// wrsessd, taken out of the environment clients inherit). Default: `wrlogin` next to this
    /// executable, else from PATH.
    #[arg(long, value_name = "PATH")]
    locker: Option<PathBuf>,
}

fn parse_id(s: &str) -> Result<u64, String> {
    parse_session_id(s).ok_or_else(|| format!("expected 16 hex digits, got {s:?}"))
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("expected WIDTHxHEIGHT, got {s:?}"))?;
    let num = |v: &str| v.trim().parse::<u32>().map_err(|e| format!("{v:?}: {e}"));
    Ok((num(w)?, num(h)?))
}

/// `RUST_LOG` decides what is logged (default `info`). Smithay wraps hot paths (every key,
/// every commit) in INFO-level spans whose fields the formatter renders on creation: about 7 %
/// of the session's CPU while someone types. They carry nothing a WayRay log needs, so they are
/// left out unless `RUST_LOG` asks for debug or more.
fn init_tracing() {
    use tracing_subscriber::{filter::LevelFilter, prelude::*, EnvFilter};
    let env = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let smithay_spans = env
        .max_level_hint()
        .is_some_and(|level| level >= LevelFilter::DEBUG);
    tracing_subscriber::fmt()
        .with_env_filter(env)
        .with_writer(std::io::stderr)
        .finish()
        .with(tracing_subscriber::filter::filter_fn(move |meta| {
            smithay_spans || !(meta.is_span() && meta.target().starts_with("smithay"))
        }))
        .init();
}

fn main() -> miette::Result<()> {
    // Started by a session as its `Xwayland` stand-in: wait for an X client, become Xwayland.
    compositor::run_xwayland_stub_if_invoked();
    init_tracing();
    let cli = Cli::parse();
    let mut config = match &cli.daemon.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(mode) = cli.daemon.seccomp {
        config.seccomp = mode;
    }
    match cli.command {
        Some(Command::Session(args)) => run_session(config, args),
        None => run_daemon(&mut config, cli.daemon),
    }
}

fn run_daemon(config: &mut Config, cli: DaemonArgs) -> miette::Result<()> {
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
    if let Some(v) = cli.scale {
        config.output_scale = v;
    }
    if let Some(v) = cli.socket {
        config.wayland_socket = v;
    }
    if let Some(v) = cli.max_frames_in_flight {
        config.max_frames_in_flight = v;
    }
    if cli.launcher {
        config.launcher = true;
    }
    if let Some(v) = cli.reattach {
        config.reattach = v;
    }
    if let Some(v) = cli.bandwidth_limit {
        config.bandwidth_limit_kbps = v;
    }
    if cli.no_video {
        config.video_regions = false;
    }
    if cli.no_xwayland {
        config.xwayland = false;
    }
    if let Some(v) = cli.appliance_auth {
        config.appliance_auth = v;
    }
    if !cli.pool.is_empty() {
        config.pool.endpoints = cli.pool.clone();
    }
    if let Some(v) = cli.pool_name.clone() {
        config.pool.name = v;
    }
    if let Some(v) = cli.pool_advertise.clone() {
        config.pool.advertise = v;
    }
    if let Some(v) = cli.pool_capacity {
        config.pool.capacity = v;
    }
    if let Some(v) = cli.api_listen {
        config.api.listen = v;
    }
    config.validate()?;
    daemon::usb::check_shared_user(&config.usb).map_err(|e| miette::miette!("{e}"))?;
    if config.pool.enabled() {
        config.pool.validate()?;
        if !config.launcher {
            return Err(miette::miette!(
                "a pool ([pool] endpoints, --pool) needs per-token sessions: add --launcher (config `launcher = true`)"
            ));
        }
    }
    let run_dir_path =
        cli.run_dir
            .clone()
            .unwrap_or_else(|| match std::env::var_os("XDG_RUNTIME_DIR") {
                Some(dir) => PathBuf::from(dir).join("wayray"),
                None => PathBuf::from("/run/wayray"),
            });
    let shared_session = (!config.launcher).then(|| daemon::shared::SharedSession {
        config: cli.config.clone(),
        sessions_socket: RunDir(run_dir_path.clone()).sessions(),
        size: (config.output_width, config.output_height),
        socket_name: (!config.wayland_socket.is_empty()).then(|| config.wayland_socket.clone()),
        frame_log: cli.frame_log.clone(),
        max_frames_in_flight: config.max_frames_in_flight,
        video_regions: config.video_regions,
        xwayland: config.xwayland,
        seccomp: config.seccomp,
        clipboard: !cli.no_clipboard,
        audio: config.audio,
        spawn: cli.spawn.clone(),
        desktop: cli.desktop,
        wm: cli.wm.clone(),
    });
    ensure_runtime_dir()?;
    // The shared session is started by a spawner forked now, while the daemon is still one
    // thread, root and unfiltered: the session must not inherit the daemon's filter or user.
    let shared_spawner = match &shared_session {
        Some(opts) => {
            let opts = opts.clone();
            Some(
                confine::spawner::Spawner::fork("shared-session", move |req| opts.command_for(req))
                    .into_diagnostic()?,
            )
        }
        None => None,
    };
    let run_dir = RunDir(run_dir_path);
    ensure_runtime_dir()?;
    create_private_dir(&run_dir.0)?;
    // Session processes of other users must reach sessions.sock inside it.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&run_dir.0, std::fs::Permissions::from_mode(0o755))
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot open up {}", run_dir.0.display()))?;
    }

    let identity = transport::load_or_create(
        &config.state_dir,
        &[config.server_name.clone(), "localhost".into()],
    )?;
    if identity.created {
        tracing::info!(dir = %config.state_dir.display(), "created a new server certificate");
    }
    let store_path = config.state_dir.join("sessions.db");
    let store = store::Store::open(&store_path)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot open the session store {}", store_path.display()))?;
    let mode = if config.launcher {
        Mode::Launcher
    } else {
        Mode::Shared
    };
    let mut daemon = Daemon::new(mode.clone(), store);
    // Sessions' PC/SC sockets: the daemon makes them after leaving root, so the directory
    // becomes its own (see `pcsc`).
    let pcsc_dir = run_dir.0.join("pcsc");
    match std::fs::create_dir_all(&pcsc_dir) {
        Ok(()) => daemon.pcsc = pcsc::Sessions::new(Some(pcsc_dir.clone())),
        Err(err) => {
            tracing::warn!(dir = %pcsc_dir.display(), %err, "no PC/SC for sessions")
        }
    }
    daemon.unproven_cards = config.unproven_cards;
    daemon.reattach = config.reattach;
    daemon.appliance_auth = config.appliance_auth;
    tracing::info!(
        appliance_auth = config.appliance_auth.as_str(),
        "appliance policy"
    );
    if mode == Mode::Launcher {
        daemon.load_store();
    }
    let daemon = Arc::new(Mutex::new(daemon));

    // One thread: the daemon relays small frames and acks, and waking other threads for each
    // of them cost more CPU than the relaying (30 % less daemon CPU while typing).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .thread_name("wrsrvd-net")
        .enable_all()
        .build()
        .into_diagnostic()
        .wrap_err("cannot start the network runtime")?;
    let _guard = runtime.enter();
    let endpoint = transport::endpoint(
        config.listen,
        &identity,
        config.appliance_auth,
        Arc::new(daemon::appliances::DaemonPolicy(daemon.clone())),
    )?;
    let local = endpoint
        .local_addr()
        .into_diagnostic()
        .wrap_err("cannot read the QUIC endpoint's address")?;

    if config.pool.enabled() {
        let me = pool::ServerRecord {
            name: config.pool.resolved_name()?,
            address: config.pool.resolved_advertise(local)?,
            fingerprint: transport::client_auth::fingerprint(&identity.cert)
                .map_err(|e| miette::miette!("cannot read the server certificate's key: {e}"))?,
            capacity: config.pool.capacity,
            load: pool::Load::default(),
        };
        let bindings = daemon
            .lock()
            .map(|d| d.bindings.clone())
            .unwrap_or_default();
        tracing::info!(name = %me.name, address = %me.address, endpoints = ?config.pool.endpoints, "joining the pool");
        let (pool, events) = pool::Pool::start(&config.pool, me, bindings);
        if let Ok(mut d) = daemon.lock() {
            d.pool = Some(pool);
        }
        runtime.spawn(daemon::pool_link::serve(events, daemon.clone()));
        runtime.spawn(daemon::pool_link::report_load(daemon.clone()));
    }
    // USB forwarding opens vhci-hcd's files and the uevent socket while still root; its node
    // keeper is settled once the daemon has left root (below).
    let usb_keeper = {
        // SAFETY: a plain system call.
        let euid = unsafe { libc::geteuid() };
        let root = if euid != 0 {
            Err("wrsrvd does not run as root (vhci-hcd's attach and the device nodes need root at start-up)")
        } else {
            Ok(())
        };
        let (forwarding, keeper) = usb::Forwarding::start(&config.usb, root);
        if let Ok(mut d) = daemon.lock() {
            d.usb = daemon::usb::UsbState {
                forwarding: Arc::new(forwarding),
                policy: config.usb.clone(),
                // The shared session runs as the account wrsrvd was started as.
                shared_user: (mode == Mode::Shared)
                    .then(daemon::usb::Account::current)
                    .flatten(),
            };
        }
        keeper
    };
    runtime.spawn(reload_usb_on_hangup(cli.config.clone(), daemon.clone()));
    // The admin API's socket and token, while still root (the token file may be anywhere).
    let api = match config.api.listen_addr()? {
        Some(addr) => {
            let token_path = config.api.token_path(&config.state_dir);
            let (token, created) = api::token::load_or_create(&token_path)?;
            if created {
                tracing::info!(path = %token_path.display(), "created the admin API token");
            }
            let listener = std::net::TcpListener::bind(addr)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .and_then(tokio::net::TcpListener::from_std)
                .into_diagnostic()
                .wrap_err_with(|| {
                    format!("cannot listen for the admin API on {addr} ([api] listen, --api-listen; \"off\" turns it off)")
                })?;
            let local = listener
                .local_addr()
                .into_diagnostic()
                .wrap_err("cannot read the admin API's address")?;
            Some((listener, local, token))
        }
        None => None,
    };

    let bind = |path: PathBuf, mode: u32| {
        daemon::wire::bind(&path, mode)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot listen on {}", path.display()))
    };
    runtime.spawn(daemon::sessions::serve(
        bind(run_dir.sessions(), 0o666)?,
        daemon.clone(),
    ));
    runtime.spawn(daemon::admin::serve(
        bind(run_dir.admin(), 0o600)?,
        daemon.clone(),
    ));
    if mode == Mode::Launcher {
        runtime.spawn(daemon::launcher::serve(
            bind(run_dir.launcher(), 0o600)?,
            daemon.clone(),
        ));
        // Tokens whose sessions died at start get their next one once their backoff is over;
        // sessions suspended too long end. One task sleeps until the next such deadline (none:
        // until the daemon names a new one), so an idle server does not wake for them.
        let timeout = Duration::from_secs(config.suspended_timeout_secs);
        let timeout = (!timeout.is_zero()).then_some(timeout);
        runtime.spawn(daemon_timers(daemon.clone(), timeout));
    } else {
        if let Some(spawner) = shared_spawner {
            daemon::shared::start(daemon.clone(), spawner);
        }
    }
    if let Some((listener, addr, token)) = api {
        runtime.spawn(api::serve(
            listener,
            api::ApiState {
                daemon: daemon.clone(),
                token: token.into(),
            },
        ));
        println!("WAYRAY_API=http://{addr}");
        tracing::info!(%addr, "serving the admin API and metrics");
    }
    println!("WAYRAY_LISTEN={local}");
    tracing::info!(%local, run_dir = %run_dir.0.display(), ?mode, "listening for appliances");

    // Root is no longer needed: the sockets are bound and the store is open.
    let mut owned: Vec<&std::path::Path> = vec![&config.state_dir];
    if pcsc_dir.is_dir() {
        owned.push(&pcsc_dir);
    }
    let left_root = match confine::privileges::drop_to(&config.user, &owned) {
        Ok(confine::privileges::Dropped::User { name, uid, gid }) => {
            tracing::info!(user = name, uid, gid, "left root");
            true
        }
        Ok(confine::privileges::Dropped::NotRoot) => false,
        Err(err) => return Err(miette::Report::new(err)),
    };
    if let Some(keeper) = usb_keeper {
        match keeper.settle(left_root) {
            Ok(()) if left_root => tracing::info!(
                "USB forwarding's node keeper kept CAP_CHOWN and CAP_FOWNER (nothing else does)"
            ),
            Ok(()) => {}
            Err(why) => {
                tracing::warn!(
                    why,
                    "USB forwarding is off: appliances keep their USB devices"
                );
                if let Ok(mut d) = daemon.lock() {
                    d.usb.forwarding = Arc::new(usb::Forwarding::off(&why));
                }
            }
        }
    }
    #[cfg(target_os = "linux")]
    confine::install("daemon", config.seccomp, &confine::seccomp::daemon())
        .map_err(|e| miette::miette!("{e}"))?;

    let shared = Arc::new(Shared {
        daemon: daemon.clone(),
        next_id: AtomicU64::new(0),
        server_name: config.server_name.clone(),
        default_output_size: (config.output_width, config.output_height),
        follow_appliance: config.output_follows_appliance,
        config: Arc::new(config.clone()),
    });
    runtime.block_on(transport::serve(endpoint, shared));
    // Let the shared session see its Shutdown before the runtime (and its sockets) go away.
    std::thread::sleep(Duration::from_millis(200));
    Ok(())
}

/// `SIGHUP` re-reads the config file's `[usb]` table (the rest needs a restart): appliances get
/// their new filters and devices the new policy refuses are detached.
async fn reload_usb_on_hangup(path: Option<PathBuf>, daemon: daemon::Shared) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(err) => {
            tracing::warn!(%err, "cannot watch SIGHUP: the USB policy is not reloaded");
            return;
        }
    };
    while hangups.recv().await.is_some() {
        let Some(path) = &path else {
            tracing::warn!("SIGHUP: no config file (--config) to reload the USB policy from");
            continue;
        };
        let loaded = Config::load(path)
            .and_then(|c| c.usb.validate().map(|()| c).map_err(Into::into))
            .map_err(|e| miette::Report::new(e).to_string())
            .and_then(|c| daemon::usb::check_shared_user(&c.usb).map(|()| c));
        match loaded {
            Ok(config) => {
                tracing::info!(path = %path.display(), "SIGHUP: USB policy reloaded");
                if let Ok(mut d) = daemon.lock() {
                    d.usb_policy_changed(config.usb);
                }
            }
            Err(err) => tracing::warn!(
                err,
                "SIGHUP: the config file is not valid; the USB policy stays as it was"
            ),
        }
    }
}

fn run_session(mut config: Config, args: SessionArgs) -> miette::Result<()> {
    let secret = std::env::var("WAYRAY_SESSION_SECRET")
        .into_diagnostic()
        .wrap_err("WAYRAY_SESSION_SECRET must hold the secret the session was started with")?;
    // SAFETY: no other thread exists yet; the secret must not leak into clients' environments.
    unsafe { std::env::remove_var("WAYRAY_SESSION_SECRET") };
    let locker = compositor::LockerConfig::from_env(args.locker);
    if let Some((w, h)) = args.size {
        config.output_width = w;
        config.output_height = h;
    }
    if let Some(v) = args.socket {
        config.wayland_socket = v;
    }
    if let Some(v) = args.max_frames_in_flight {
        config.max_frames_in_flight = v;
    }
    if args.no_video {
        config.video_regions = false;
    }
    if args.no_xwayland {
        config.xwayland = false;
    }
    config.validate()?;
    ensure_runtime_dir()?;
    // Clients are started by a spawner forked now (one thread, no filter yet), so they are not
    // bound by the filter the compositor installs once it is up.
    confine::spawner::set_global(
        confine::spawner::Spawner::fork("session-clients", |req| req.command())
            .into_diagnostic()?,
    );
    let span =
        tracing::info_span!("session", id = %wayray_protocol::sessions::session_id_string(args.id));
    let _enter = span.enter();

    let (to_compositor, from_link) = channel::channel();
    let to_link = session_link::LinkTx::new();
    let pcsc_socket = pcsc::socket_path(&args.daemon, args.id);
    let link = session_link::LinkConfig {
        socket: args.daemon,
        session: args.id,
        secret,
        orphan_timeout: Duration::from_secs(args.orphan_timeout),
    };
    let mut link_tx = Some(to_link.clone());
    let opts = SessionOptions {
        output_size: (config.output_width, config.output_height),
        socket_name: (!config.wayland_socket.is_empty()).then(|| config.wayland_socket.clone()),
        spawn: args.spawn,
        frame_log: args.frame_log,
        max_frames_in_flight: config.max_frames_in_flight,
        detached_frame_interval: Duration::from_millis(config.detached_frame_interval_ms),
        refresh_hz: config.refresh_hz,
        cursor: compositor::CursorSettings {
            theme: config.resolved_cursor_theme(),
            size: config.resolved_cursor_size(),
        },
        video_regions: config.video_regions,
        desktop: args.desktop,
        app_launcher: args.app_launcher,
        window_manager: args.wm,
        xwayland: config.xwayland,
        scale: args.scale,
        clipboard: !args.no_clipboard,
        locker,
        seccomp: config.seccomp,
        audio: config.audio && !args.no_audio,
        pcsc_socket: Some(pcsc_socket),
    };
    let result = compositor::run(opts, to_link, from_link, |socket| {
        if let Some(tx) = link_tx.take() {
            if let Err(err) =
                session_link::start(link.clone(), socket.to_owned(), to_compositor.clone(), tx)
            {
                tracing::error!(%err, "cannot start the daemon link");
            }
        }
    });
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

/// Runs the daemon's deadlines (token backoffs, lost servers' waits, the suspended timeout):
/// each pass does what is due, then sleeps until the next deadline or a new one.
async fn daemon_timers(daemon: daemon::Shared, suspended_timeout: Option<Duration>) {
    let Some(timers) = daemon.lock().ok().map(|d| d.timers.clone()) else {
        return;
    };
    loop {
        let next = match daemon.lock() {
            Ok(mut d) => {
                d.retry_due();
                if let Some(timeout) = suspended_timeout {
                    d.expire_suspended(timeout);
                }
                d.next_deadline_ms(suspended_timeout)
            }
            Err(_) => return,
        };
        match next {
            Some(at) => {
                // A deadline already past that the pass could not act on (no launcher yet, a
                // kill that failed) is retried at the old polling rate, not in a busy loop.
                let now = daemon::now_ms();
                let wait = Duration::from_millis(if at <= now { 250 } else { at - now });
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = timers.notified() => {}
                }
            }
            None => timers.notified().await,
        }
    }
}
