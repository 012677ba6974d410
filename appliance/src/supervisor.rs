//! Keeps the appliance connected: connect, show the session, and when the connection ends for a
//! reason that may heal (server restarting, network blip, a bad frame), say why on screen and
//! try again with backoff. Only a person can fix the fatal cases (a changed certificate, a
//! protocol version mismatch), so those end the program with an error.

use std::future::Future;
use std::time::Duration;

use tracing::Instrument;

use wayray_protocol::Keymap;

use crate::backoff::Backoff;
use crate::config::{Config, ScreenSize};
use crate::connection::{self, ConnectionError, Ended};
use crate::display::{DisplaySink, Hotplug};
use crate::input::{Input, InputSource};
use crate::latency::{LatencyError, LatencyLog};
use crate::local::Local;
use crate::pinning::{PinError, TrustStore};
use crate::report::error_chain;
use crate::screen::{Screen, ScreenError, Screenshot};
use crate::signals::{self, Command};
use crate::token::Tokens;
use crate::transport::{self, TransportError};

/// Bounds the QUIC handshake plus Hello/Welcome. QUIC has no "connection refused", so this is how
/// long a stopped server costs per attempt; a server that accepts but never answers Hello is
/// caught by it as well.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ApplianceError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    #[error(transparent)]
    Pin(#[from] PinError),
    #[error(transparent)]
    Screen(#[from] ScreenError),
    #[error(transparent)]
    Latency(#[from] LatencyError),
    #[error("no answer from the server within {} s", CONNECT_TIMEOUT.as_secs())]
    ConnectTimeout,
    #[error("cannot install signal handlers")]
    Signals(#[source] std::io::Error),
}

impl ApplianceError {
    fn is_fatal(&self) -> bool {
        match self {
            Self::Transport(e) => e.is_fatal(),
            Self::Connection(e) => e.is_fatal(),
            Self::Pin(_) | Self::Screen(_) | Self::Latency(_) | Self::Signals(_) => true,
            Self::ConnectTimeout => false,
        }
    }
}

/// Runs the appliance until a shutdown request, `--exit-after-frames`, the input script's `exit`,
/// or a fatal error; writes the `--screenshot` on the way out in every case. `keymap` is the
/// keyboard's layout, announced in every Hello until the input source switches it; `hotplug`
/// says when the sink should look at its display again.
pub async fn run<S: DisplaySink>(
    config: &Config,
    sink: S,
    keymap: Keymap,
    input_source: Option<Box<dyn InputSource>>,
    hotplug: Hotplug,
    tokens: Tokens,
) -> Result<(), ApplianceError> {
    let screen_size = screen_size(config, sink.native_size());
    if screen_size != config.screen {
        tracing::info!(screen = %screen_size, "announcing the display's size to the server");
    }
    let trust = TrustStore::open(config.server_cert.as_deref(), &config.state_dir)?;
    let screenshot = config.screenshot.clone().map(|path| Screenshot {
        path,
        with_cursor: config.screenshot_cursor,
    });
    let screen = Screen::new(
        sink,
        config.frame_log.as_deref(),
        screenshot,
        config.exit_after_frames,
    )?
    .with_physical_size(config.physical_size);
    let input = Input::new(keymap, screen_size.width, screen_size.height);
    let latency = config
        .latency_log
        .as_deref()
        .map(LatencyLog::open)
        .transpose()?;
    let commands = signals::listen(config.exit_after).map_err(ApplianceError::Signals)?;
    let mut local = Local {
        screen,
        input,
        commands,
        latency,
        hotplug,
        tokens,
    };
    local.screen.move_cursor(local.input.pointer());
    let frames = local.screen.watch_frames();
    local.input.start(input_source, frames);

    let result = reconnect_loop(config, &trust, &mut local).await;
    if let Err(e) = &result {
        local.screen.show_status(&e.to_string());
    }
    local.screen.write_screenshot();
    result
}

async fn reconnect_loop<S: DisplaySink>(
    config: &Config,
    trust: &TrustStore,
    local: &mut Local<S>,
) -> Result<(), ApplianceError> {
    let mut backoff = Backoff::RECONNECT;
    for attempt in 1u64.. {
        let span = tracing::info_span!("connection", server = %config.server, attempt);
        let outcome = attempt_once(config, trust, local, &mut backoff)
            .instrument(span.clone())
            .await;
        match outcome {
            Ok(None) => return Ok(()),
            Ok(Some(Ended::Shutdown(why))) => {
                tracing::info!(parent: &span, why, "said goodbye to the server; exiting");
                return Ok(());
            }
            Ok(Some(Ended::FrameBudgetSpent)) => {
                tracing::info!(
                    parent: &span,
                    frames = local.screen.frames_presented(),
                    "--exit-after-frames reached; exiting"
                );
                return Ok(());
            }
            // main reports it; logging it here too would print it twice.
            Err(e) if e.is_fatal() => return Err(e),
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(parent: &span, error = %error_chain(&e), retry_in = ?delay, "connection ended");
                local.screen.show_status(&format!(
                    "{e}; reconnecting in {:.1} s",
                    delay.as_secs_f64()
                ));
                if unless_shutdown(tokio::time::sleep(delay), local)
                    .await
                    .is_none()
                {
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}

/// One connection from start to end. `Ok(None)` means a shutdown arrived before the server
/// welcomed the appliance.
async fn attempt_once<S: DisplaySink>(
    config: &Config,
    trust: &TrustStore,
    local: &mut Local<S>,
    backoff: &mut Backoff,
) -> Result<Option<Ended>, ApplianceError> {
    tracing::info!("connecting");
    local
        .screen
        .show_status(&format!("connecting to {}", config.server));
    let trust = trust.load(&config.server)?;
    // The display's size now: one plugged in since the last connection counts.
    let screen_size = screen_size(config, local.screen.native_size());
    let hello = connection::hello(
        screen_size,
        local.screen.physical_size(),
        local.input.keymap().clone(),
        local.tokens.current(),
    );
    let connect = async {
        let link = transport::connect(&config.server, &config.server_name, trust).await?;
        match connection::handshake(&link.connection, hello).await {
            Ok(established) => Ok((link, established)),
            Err(e) => {
                link.finish().await;
                Err(ApplianceError::from(e))
            }
        }
    };
    let connect = async {
        tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .unwrap_or(Err(ApplianceError::ConnectTimeout))
    };
    let Some(connected) = unless_shutdown(connect, local).await else {
        return Ok(None);
    };
    let (link, established) = connected?;

    backoff.reset();
    let welcome = &established.welcome;
    tracing::info!(
        server_name = %welcome.server_name,
        width = welcome.output_width,
        height = welcome.output_height,
        "welcomed"
    );
    local
        .screen
        .show_status(&format!("connected to {}", welcome.server_name));
    let ended = established.run(local).await;
    link.finish().await;
    Ok(Some(ended?))
}

/// Runs `work` while still obeying commands and draining input: screenshots are taken
/// meanwhile, input moves only the local cursor, and a shutdown (or the input script's `exit`)
/// abandons `work` and returns `None`.
async fn unless_shutdown<T, S: DisplaySink>(
    work: impl Future<Output = T>,
    local: &mut Local<S>,
) -> Option<T> {
    let mut work = std::pin::pin!(work);
    loop {
        tokio::select! {
            done = &mut work => return Some(done),
            command = local.commands.next() => match command {
                Command::Screenshot => local.screen.write_screenshot(),
                Command::Shutdown(why) => {
                    tracing::info!(why, "shutting down");
                    return None;
                }
            },
            event = local.input.next() => if !local.drop_input(event) {
                tracing::info!("the input script said exit; shutting down");
                return None;
            },
            // Between connections too: the status goes up on a display plugged in meanwhile,
            // and the next Hello carries its size.
            () = local.hotplug.next() => {
                local.screen.rescan();
            }
        }
    }
}

/// The size to ask the server for: the display's own (`native`, a DRM mode) when it has one,
/// else `--screen`.
fn screen_size(config: &Config, native: Option<(u32, u32)>) -> ScreenSize {
    native.map_or(config.screen, |(width, height)| ScreenSize {
        width,
        height,
    })
}
