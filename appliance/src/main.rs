//! `wrclient`, the WayRay appliance firmware: connects to a WayRay server and shows the desktop
//! session it streams. This file only wires the pieces together.

mod atomic_file;
mod audio;
mod backoff;
mod card;
mod config;
mod confine;
mod connection;
mod display;
mod identity;
mod input;
mod keymap;
mod latency;
mod local;
mod pinning;
mod pointer;
mod pool_file;
mod report;
mod route;
mod screen;
mod screenshot;
mod signals;
mod supervisor;
mod token;
mod transport;
mod usb;

use std::io::IsTerminal;

use clap::Parser;
use miette::{Context, IntoDiagnostic};
use tracing_subscriber::EnvFilter;

fn main() -> miette::Result<()> {
    let cli = config::Cli::parse();
    let ansi = std::io::stderr().is_terminal();
    tracing_subscriber::fmt()
        .with_env_filter(
            // libseat narrates every backend it tries at info level; its warnings are enough.
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,libseat=warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
    // Unwrapped lines, so a file path in an error (which file to remove) can be copied whole.
    miette::set_hook(Box::new(move |_| {
        Box::new(
            miette::MietteHandlerOpts::new()
                .wrap_lines(false)
                .color(ansi)
                .build(),
        )
    }))
    .into_diagnostic()?;
    let config = config::Config::resolve(cli).into_diagnostic()?;
    let keyboard =
        keymap::Layout::compile(&keymap::Rmlvo::system(config.xkb.clone())).into_diagnostic()?;
    tracing::info!(layout = %keyboard.wire.layout, "keyboard layout");
    let input_source = input::open_source(&config.input, &keyboard).into_diagnostic()?;
    let identity = identity::ApplianceIdentity::load_or_create(&config.state_dir)
        .into_diagnostic()
        .wrap_err("cannot load or make this appliance's identity")?;
    tracing::info!(
        id = identity.short_id(),
        fingerprint = %identity.fingerprint,
        created = identity.created,
        "appliance identity (the server lists it by this id)"
    );
    let tokens = token::Tokens::start(&config.tokens, identity.pseudo_token()).into_diagnostic()?;
    let connector = transport::Connector::new(std::sync::Arc::new(identity));

    // Before the filter: ALSA reads its configuration and opens devices, the threads start.
    let audio = audio::Audio::start(&config.audio)
        .into_diagnostic()
        .wrap_err("cannot set up sound")?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .into_diagnostic()
        .wrap_err("cannot start the async runtime")?;
    // One thread for the protocol loop and quinn's I/O: a frame is a few hundred bytes most of
    // the time, and handing every packet between threads cost more CPU than decoding it
    // (measured: 35 % less appliance CPU while typing). Blocking work (pcscd, libinput) has
    // threads of its own.
    // Everything that needs more than the allow-list (the keymap, the runtime, the card and
    // input threads) is set up; the filter goes on every thread now.
    confine::install(config.seccomp).map_err(|e| miette::miette!("{e}"))?;
    match &config.display {
        config::DisplayChoice::Headless => runtime.block_on(supervisor::run(
            &config,
            display::HeadlessSink::new(),
            keyboard.wire,
            input_source,
            display::Hotplug::none(),
            tokens,
            connector,
            audio,
        )),
        #[cfg(feature = "drm")]
        config::DisplayChoice::Drm { card, mode } => {
            let sink = display::DrmSink::open(card, *mode).into_diagnostic()?;
            runtime.block_on(async {
                // Inside the runtime: the uevent socket registers with its reactor.
                let hotplug = display::Hotplug::watch();
                supervisor::run(
                    &config,
                    sink,
                    keyboard.wire,
                    input_source,
                    hotplug,
                    tokens,
                    connector,
                    audio,
                )
                .await
            })
        }
        #[cfg(not(feature = "drm"))]
        config::DisplayChoice::Drm { .. } => {
            return Err(miette::miette!(
                "this wrclient was built without DRM support (cargo feature `drm`); use --display headless"
            ))
        }
    }
    .into_diagnostic()
}
