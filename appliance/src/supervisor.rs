//! Keeps the appliance connected: connect, show the session, and when the connection ends for a
//! reason that may heal (server restarting, network blip, a bad frame), say why on screen and
//! try again with backoff. Only a person can fix the fatal cases (a changed certificate, a
//! protocol version mismatch), so those end the program with an error.

use std::future::Future;
use std::time::Duration;

use tracing::Instrument;

use crate::backoff::Backoff;
use crate::config::Config;
use crate::connection::{self, ConnectionError, Ended};
use crate::display::DisplaySink;
use crate::pinning::{PinError, TrustStore};
use crate::report::error_chain;
use crate::screen::{Screen, ScreenError};
use crate::signals::{self, Command, Commands};
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
            Self::Pin(_) | Self::Screen(_) | Self::Signals(_) => true,
            Self::ConnectTimeout => false,
        }
    }
}

/// Runs the appliance until a shutdown request, `--exit-after-frames`, or a fatal error; writes
/// the `--screenshot` on the way out in every case.
pub async fn run<S: DisplaySink>(config: &Config, sink: S) -> Result<(), ApplianceError> {
    let trust = TrustStore::open(config.server_cert.as_deref(), &config.state_dir)?;
    let mut screen = Screen::new(
        sink,
        config.frame_log.as_deref(),
        config.screenshot.clone(),
        config.exit_after_frames,
    )?;
    let mut commands = signals::listen(config.exit_after).map_err(ApplianceError::Signals)?;

    let result = reconnect_loop(config, &trust, &mut screen, &mut commands).await;
    if let Err(e) = &result {
        screen.show_status(&e.to_string());
    }
    screen.write_screenshot();
    result
}

async fn reconnect_loop<S: DisplaySink>(
    config: &Config,
    trust: &TrustStore,
    screen: &mut Screen<S>,
    commands: &mut Commands,
) -> Result<(), ApplianceError> {
    let mut backoff = Backoff::RECONNECT;
    for attempt in 1u64.. {
        let span = tracing::info_span!("connection", server = %config.server, attempt);
        let outcome = attempt_once(config, trust, screen, commands, &mut backoff)
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
                    frames = screen.frames_presented(),
                    "--exit-after-frames reached; exiting"
                );
                return Ok(());
            }
            // main reports it; logging it here too would print it twice.
            Err(e) if e.is_fatal() => return Err(e),
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(parent: &span, error = %error_chain(&e), retry_in = ?delay, "connection ended");
                screen.show_status(&format!(
                    "{e}; reconnecting in {:.1} s",
                    delay.as_secs_f64()
                ));
                if unless_shutdown(tokio::time::sleep(delay), screen, commands)
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
    screen: &mut Screen<S>,
    commands: &mut Commands,
    backoff: &mut Backoff,
) -> Result<Option<Ended>, ApplianceError> {
    tracing::info!("connecting");
    screen.show_status(&format!("connecting to {}", config.server));
    let trust = trust.load(&config.server)?;
    let connect = async {
        let link = transport::connect(&config.server, &config.server_name, trust).await?;
        match connection::handshake(&link.connection, connection::hello(config.screen)).await {
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
    let Some(connected) = unless_shutdown(connect, screen, commands).await else {
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
    screen.show_status(&format!("connected to {}", welcome.server_name));
    let ended = established.run(screen, commands).await;
    link.finish().await;
    Ok(Some(ended?))
}

/// Runs `work` while still obeying commands: screenshots are taken meanwhile, and a shutdown
/// abandons `work` and returns `None`.
async fn unless_shutdown<T, S: DisplaySink>(
    work: impl Future<Output = T>,
    screen: &Screen<S>,
    commands: &mut Commands,
) -> Option<T> {
    let mut work = std::pin::pin!(work);
    loop {
        tokio::select! {
            done = &mut work => return Some(done),
            command = commands.next() => match command {
                Command::Screenshot => screen.write_screenshot(),
                Command::Shutdown(why) => {
                    tracing::info!(why, "shutting down");
                    return None;
                }
            },
        }
    }
}
