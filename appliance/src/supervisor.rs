//! Keeps the appliance connected: connect, show the session, and when the connection ends for a
//! reason that may heal (server restarting, network blip, a bad frame), say why on screen and
//! try again with backoff. Only a person can fix the fatal cases (a changed certificate, a
//! protocol version mismatch), so those end the program with an error.
//!
//! In a pool of servers, where the next connection goes is `route.rs`'s decision: a redirect is
//! followed at once, and a server lost without a goodbye is replaced by another of the pool's.

use std::future::Future;
use std::time::Duration;

use tracing::Instrument;

use wayray_protocol::{ByeReason, Keymap, PoolServer};

use crate::backoff::Backoff;
use crate::config::{Config, ScreenSize};
use crate::connection::{self, ConnectionError, Ended};
use crate::display::{DisplaySink, Hotplug};
use crate::input::{Input, InputSource};
use crate::latency::{LatencyError, LatencyLog};
use crate::local::Local;
use crate::pinning::{PinError, Trust, TrustStore};
use crate::pool_file::PoolFile;
use crate::report::error_chain;
use crate::route::{Pace, Route, Target};
use crate::screen::{Screen, ScreenError, Screenshot};
use crate::signals::{self, Command};
use crate::token::Tokens;
use crate::transport::{self, Connector, Refusal, TransportError};

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
    /// A stopped server (QUIC has no "connection refused"), or one that never answers Hello.
    #[error("no answer from the server within {} s", .0.as_secs())]
    ConnectTimeout(Duration),
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
            Self::ConnectTimeout(_) | Self::NotApproved { .. } | Self::Revoked { .. } => false,
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
        usb: config.usb.clone(),
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
    let pool_file = PoolFile::new(&config.state_dir);
    let mut route = Route::new(config.server.clone(), pool_file.load());
    if !route.pool().is_empty() {
        tracing::info!(
            servers = route.pool().len(),
            "a pool list is kept from before: its servers are tried if the configured one stays away"
        );
    }
    let mut backoff = Backoff::RECONNECT;
    for attempt in 1u64.. {
        let target = route.next().clone();
        let span = tracing::info_span!(
            "connection",
            server = %target.address,
            name = target.name.as_deref().unwrap_or(""),
            attempt
        );
        let outcome = attempt_once(config, trust, connector, local, &target)
            .instrument(span.clone())
            .await;
        let (pace, why) = match outcome {
            Attempt::Abandoned => return Ok(()),
            Attempt::Failed(e) => {
                let e = e.explain(connector);
                // main reports it; logging it here too would print it twice.
                if e.is_fatal() {
                    return Err(e);
                }
                let pace = route.failed();
                tracing::warn!(parent: &span, error = %error_chain(&e), "cannot connect");
                (pace, e.to_string())
            }
            Attempt::Welcomed {
                server_name,
                pool,
                showed_frames,
                ended,
            } => {
                if route.welcomed(&server_name, pool) {
                    tracing::info!(parent: &span, servers = route.pool().len(), "the pool list changed");
                    pool_file.store(route.pool());
                }
                if showed_frames {
                    route.frames_shown();
                }
                if !matches!(ended, Ok(Ended::Redirected(_))) {
                    backoff.reset();
                }
                match ended {
                    Ok(Ended::Shutdown(why)) => {
                        tracing::info!(parent: &span, why, "said goodbye to the server; exiting");
                        return Ok(());
                    }
                    Ok(Ended::FrameBudgetSpent) => {
                        tracing::info!(
                            parent: &span,
                            frames = local.screen.frames_presented(),
                            "--exit-after-frames reached; exiting"
                        );
                        return Ok(());
                    }
                    Ok(Ended::Redirected(redirect)) => {
                        match route.redirected(&server_name, &redirect) {
                            Ok(()) => {
                                let to = route.next().label();
                                tracing::info!(parent: &span, %to, reason = %redirect.reason, "following the redirect");
                                (Pace::Now, format!("redirected: {}", redirect.reason))
                            }
                            Err(refused) => {
                                tracing::error!(parent: &span, error = %refused, "redirect refused");
                                (Pace::Backoff, refused.to_string())
                            }
                        }
                    }
                    Err(e) => {
                        let lost = e.is_lost_without_bye();
                        let e = ApplianceError::from(e).explain(connector);
                        if e.is_fatal() {
                            return Err(e);
                        }
                        let pace = match &e {
                            ApplianceError::Connection(ConnectionError::ServerBye(
                                ByeReason::Revoked,
                            )) => {
                                connector.forget_sessions();
                                route.retry_home(showed_frames);
                                Pace::Backoff
                            }
                            ApplianceError::Connection(ConnectionError::ServerBye(
                                ByeReason::Shutdown,
                            )) => {
                                route.server_restarting(showed_frames);
                                Pace::Backoff
                            }
                            _ if lost => route.lost(showed_frames),
                            _ => {
                                route.retry_home(showed_frames);
                                Pace::Backoff
                            }
                        };
                        tracing::warn!(parent: &span, error = %error_chain(&e), "connection ended");
                        (pace, e.to_string())
                    }
                }
            }
        };
        let next = route.next().label();
        match pace {
            Pace::Now => {
                tracing::info!(parent: &span, %next, "connecting at once");
                local
                    .screen
                    .show_status(&format!("{why}; connecting to {next}"));
            }
            Pace::Backoff => {
                let delay = backoff.next_delay();
                tracing::info!(parent: &span, %next, retry_in = ?delay, "reconnecting after a pause");
                local.screen.show_status(&format!(
                    "{why}; reconnecting to {next} in {:.1} s",
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

/// What one connection attempt came to.
enum Attempt {
    /// A shutdown arrived before the server welcomed the appliance.
    Abandoned,
    /// No server welcomed the appliance.
    Failed(ApplianceError),
    /// The server `server_name` welcomed the appliance, listing its pool `pool`; then the
    /// connection ended. `showed_frames`: frames from it reached the screen.
    Welcomed {
        server_name: String,
        pool: Vec<PoolServer>,
        showed_frames: bool,
        ended: Result<Ended, ConnectionError>,
    },
}

/// One connection to `target` from start to end.
async fn attempt_once<S: DisplaySink>(
    config: &Config,
    trust: &TrustStore,
    connector: &Connector,
    local: &mut Local<S>,
    target: &Target,
) -> Attempt {
    tracing::info!(arrival = ?target.arrival, "connecting");
    local
        .screen
        .show_status(&format!("connecting to {}", target.label()));
    let trust = match &target.fingerprint {
        // A pool server: exactly the key the pool announced, never known_servers/.
        Some(fingerprint) => Trust::Fingerprint {
            server: target.label(),
            fingerprint: fingerprint.clone(),
        },
        None => match trust.load(&target.address) {
            Ok(trust) => trust,
            Err(e) => return Attempt::Failed(e.into()),
        },
    };
    // The display's size now: one plugged in since the last connection counts.
    let screen_size = screen_size(config, local.screen.native_size());
    let hello = connection::hello(
        screen_size,
        local.screen.physical_size(),
        local.input.keymap().clone(),
        local.tokens.current(),
        local.audio.capabilities(),
        target.arrival.clone(),
    );
    let connect = async {
        let mut link =
            transport::connect(&target.address, &config.server_name, trust, connector).await?;
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
    let timeout = target.connect_timeout;
    let connect = async {
        tokio::time::timeout(timeout, connect)
            .await
            .unwrap_or(Err(ApplianceError::ConnectTimeout(timeout)))
    };
    let (link, established) = match unless_shutdown(connect, local).await {
        None => return Attempt::Abandoned,
        Some(Err(e)) => return Attempt::Failed(e),
        Some(Ok(connected)) => connected,
    };

    let welcome = &established.welcome;
    tracing::info!(
        server_name = %welcome.server_name,
        width = welcome.output_width,
        height = welcome.output_height,
        pool = welcome.pool.len(),
        "welcomed"
    );
    local
        .screen
        .show_status(&format!("connected to {}", welcome.server_name));
    let server_name = welcome.server_name.clone();
    let pool = welcome.pool.clone();
    let frames_before = local.screen.frames_presented();
    let ended = established.run(local).await;
    if matches!(ended, Ok(Ended::Redirected(_))) {
        // The next server is waiting: the close goes out in the background (measured: waiting
        // for it here cost 80 ms of every redirected card-in on loopback).
        tokio::spawn(link.finish());
    } else {
        link.finish().await;
    }
    Attempt::Welcomed {
        server_name,
        pool,
        showed_frames: local.screen.frames_presented() > frames_before,
        ended,
    }
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
