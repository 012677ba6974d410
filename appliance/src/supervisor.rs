//! Keeps the appliance connected: connect, show the session, and when the connection ends for a
//! reason that may heal (server restarting, network blip, a bad frame), say why on screen and
//! try again with backoff. Only a person can fix the fatal cases (a changed certificate, a
//! protocol version mismatch), so those end the program with an error.

use std::future::Future;
use std::time::Duration;

use tracing::Instrument;

use wayray_protocol::{ByeReason, Keymap};

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
use crate::transport::{self, Connector, Refusal, TransportError};

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
    #[error(
        "the server does not admit this appliance (id {id}) until an administrator approves it: \
         `wradm appliances approve {id}`"
    )]
    NotApproved { id: String },
    #[error(
        "the server refuses this appliance (id {id}): an administrator revoked it; \
         `wradm appliances approve {id}` lets it in again"
    )]
    Revoked { id: String },
}

impl ApplianceError {
    fn is_fatal(&self) -> bool {
        match self {
            Self::Transport(e) => e.is_fatal(),
            Self::Connection(e) => e.is_fatal(),
            Self::Pin(_) | Self::Screen(_) | Self::Latency(_) | Self::Signals(_) => true,
            // An administrator may approve it any time: keep trying, slowly.
            Self::ConnectTimeout | Self::NotApproved { .. } | Self::Revoked { .. } => false,
        }
    }

    /// The server's refusal of this appliance's certificate, if that is what this error is.
    fn refusal(&self) -> Option<Refusal> {
        let error = match self {
            Self::Transport(e) => e.connection_error(),
            Self::Connection(e) => e.connection_error(),
            _ => None,
        }?;
        Refusal::of(error)
    }

    /// Says which appliance the server refused, and how to let it in, instead of "connection
    /// lost".
    fn explain(self, connector: &Connector) -> Self {
        let id = connector.identity().short_id().to_owned();
        match self.refusal() {
            Some(Refusal::NotApproved) => Self::NotApproved { id },
            Some(Refusal::Revoked) => Self::Revoked { id },
            None => self,
        }
    }
}

/// Runs the appliance until a shutdown request, `--exit-after-frames`, the input script's `exit`,
/// or a fatal error; writes the `--screenshot` on the way out in every case. `keymap` is the
/// keyboard's layout, announced in every Hello until the input source switches it; `hotplug`
/// says when the sink should look at its display again.
// Each is set up by main before the system-call filter goes on, so they arrive separately.
#[allow(clippy::too_many_arguments)]
pub async fn run<S: DisplaySink>(
    config: &Config,
    sink: S,
    keymap: Keymap,
    input_source: Option<Box<dyn InputSource>>,
    hotplug: Hotplug,
    tokens: Tokens,
    connector: Connector,
    audio: crate::audio::Audio,
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
        audio,
    };
    local.screen.move_cursor(local.input.pointer());
    let frames = local.screen.watch_frames();
    local.input.start(input_source, frames);

    let result = reconnect_loop(config, &trust, &connector, &mut local).await;
    if let Err(e) = &result {
        local.screen.show_status(&e.to_string());
    }
    local.screen.write_screenshot();
    local.audio.shutdown();
    result
}

async fn reconnect_loop<S: DisplaySink>(
    config: &Config,
    trust: &TrustStore,
    connector: &Connector,
    local: &mut Local<S>,
) -> Result<(), ApplianceError> {
    let mut backoff = Backoff::RECONNECT;
    for attempt in 1u64.. {
        let span = tracing::info_span!("connection", server = %config.server, attempt);
        let outcome = attempt_once(config, trust, connector, local, &mut backoff)
            .instrument(span.clone())
            .await
            .map_err(|e| e.explain(connector));
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
                if matches!(
                    e,
                    ApplianceError::Connection(ConnectionError::ServerBye(ByeReason::Revoked))
                ) {
                    connector.forget_sessions();
                }
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
    connector: &Connector,
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
        local.audio.capabilities(),
    );
    let connect = async {
        let mut link =
            transport::connect(&config.server, &config.server_name, trust, connector).await?;
        let zero_rtt = link.zero_rtt.take();
        let mut hello = hello;
        // A 0-RTT Hello must fit in the first flight: the keymap follows on the input stream.
        let deferred_keymap = match zero_rtt {
            Some(_) => hello.keymap.take(),
            None => None,
        };
        match connection::handshake(&link.connection, hello, zero_rtt).await {
            Ok(mut established) => {
                established.defer_keymap(deferred_keymap);
                Ok((link, established))
            }
            Err(e) => {
                // After a 0-RTT start the pin decides only if the server did a full handshake.
                let error = match link.rejection() {
                    Some(rejection) => TransportError::Rejected(rejection).into(),
                    None => ApplianceError::from(e),
                };
                link.finish().await;
                Err(error)
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
